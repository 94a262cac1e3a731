//! The Yjs party over real sockets, with yrs as the client (the Rust port of Yjs, so the bytes
//! are what a `yjs` client sends): the built-in `/parties/yjs/:room` (sync, relay without echo,
//! query awareness, 1007 on a malformed update) and the library API in a party of our own
//! (periodic snapshot, debounced callback). tests/yjs/ runs the JavaScript clients.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use partyring::{
    http::{Method, Response},
    party::{ConnectContext, Connection, Party, Reply, Request},
    room::Room,
    ws::{Message, OpCode},
    yjs::{
        self,
        protocol::{self, Incoming},
        Callback, Options, Persistence,
    },
    Server,
};
use yrs::{
    updates::{decoder::Decode, encoder::Encode},
    Doc, GetString, ReadTxn, StateVector, Text, Transact, Update,
};

fn apply(doc: &Doc, update: &[u8]) {
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
}

fn text(doc: &Doc) -> String {
    let t = doc.get_or_insert_text("t");
    let s = t.get_string(&doc.transact());
    s
}

/// Connects and completes the sync handshake into `doc`.
fn join(addr: std::net::SocketAddr, path: &str, doc: &Doc) -> Client {
    let mut c = Client::ws_connect(addr, path);
    let first = c.ws_next(0x2);
    let Ok(Incoming::SyncStep1(server_sv)) = protocol::decode(&first) else {
        panic!("the server speaks first with sync step 1: {first:?}");
    };
    // Answer its step 1 with what it lacks, and send ours.
    let sv = StateVector::decode_v1(server_sv).unwrap();
    let diff = doc.transact().encode_state_as_update_v1(&sv);
    c.ws_send(OpCode::Binary, &protocol::sync_step2(&diff));
    let ours = doc.transact().state_vector().encode_v1();
    c.ws_send(OpCode::Binary, &protocol::sync_step1(&ours));
    loop {
        let msg = c.ws_next(0x2);
        if let Ok(Incoming::SyncStep2(update)) = protocol::decode(&msg) {
            apply(doc, update);
            return c;
        }
    }
}

fn edit(doc: &Doc, s: &str) -> Vec<u8> {
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = t.len(&txn);
    t.insert(&mut txn, len, s);
    txn.encode_update_v1()
}

fn start(threads: usize, persist: Persistence) -> TestServer {
    let server = Server::builder()
        .config(common::config(threads))
        .party("yjs", move || yjs::YjsParty::new(persist))
        .party("docs", || Docs)
        .start()
        .expect("server starts");
    TestServer {
        addr: server.addr,
        server,
        threads,
    }
}

#[test]
fn built_in_party_syncs_relays_without_echo_answers_queries_and_refuses_bad_updates() {
    let srv = start(2, Persistence::None);
    let path = "/parties/yjs/relay";
    let (da, db) = (Doc::new(), Doc::new());
    let mut a = join(srv.addr, path, &da);
    let mut b = join(srv.addr, path, &db);

    let update = edit(&da, "hello");
    a.ws_send(OpCode::Binary, &protocol::update(&update));
    let got = b.ws_next(0x2);
    assert_eq!(
        protocol::decode(&got),
        Ok(Incoming::Update(&update[..])),
        "relayed as sent"
    );
    apply(&db, &update);
    assert_eq!(text(&db), "hello");

    // The next thing `a` gets is the answer to its query, not an echo of its own update.
    a.ws_send(OpCode::Binary, &[protocol::MSG_QUERY_AWARENESS]);
    let answer = a.ws_next(0x2);
    assert_eq!(
        protocol::decode(&answer),
        Ok(Incoming::Awareness(&[0][..])),
        "no states yet"
    );

    // A malformed update closes its sender with 1007; the others go on.
    b.ws_send(OpCode::Binary, &protocol::update(&[0xff, 0xff, 0xff, 0xff]));
    assert_eq!(b.ws_close_code(), Some(1007));
    let more = edit(&da, " world");
    a.ws_send(OpCode::Binary, &protocol::update(&more));
    // `a`'s messages are handled in order: once its query is answered, `more` is applied.
    a.ws_send(OpCode::Binary, &[protocol::MSG_QUERY_AWARENESS]);
    a.ws_next(0x2);
    let dc = Doc::new();
    let _c = join(srv.addr, path, &dc);
    assert_eq!(text(&dc), "hello world", "unchanged by the bad update");
}

/// A party of our own on the library API: snapshot every 50 ms while edits continue, and a
/// callback (debounced 20 ms, at most 200 ms) that stores the text it saw under `seen`.
struct Docs;

impl Docs {
    fn options() -> Options {
        Options {
            persist: Persistence::Snapshot {
                interval: Duration::from_millis(50),
            },
            callback: Some(Callback {
                debounce_wait: Duration::from_millis(20),
                debounce_max_wait: Duration::from_millis(200),
                ..Callback::new(|room: &Room, doc: &Doc| {
                    drop(room.storage().put("seen", text(doc).into_bytes()));
                })
            }),
            ..Options::default()
        }
    }
}

impl Party for Docs {
    fn on_connect(&self, room: &mut Room, conn: &Connection, _ctx: &ConnectContext<'_>) {
        yjs::on_connect(room, conn, &Self::options());
    }

    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        yjs::on_message(room, msg, sender);
    }

    fn on_close(&self, room: &mut Room, conn: &Connection, _code: u16, _reason: &str) {
        yjs::on_close(room, conn);
    }

    /// GET: how many stored entries the document has, and what the callback saw.
    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        assert_eq!(req.method, Method::Get);
        let store = room.storage();
        let entries = store
            .list(&partyring::storage::ListOptions {
                prefix: Some("yjs/"),
                ..Default::default()
            })
            .unwrap()
            .len();
        let seen = store
            .get("seen")
            .map(|v| String::from_utf8(v).unwrap())
            .unwrap_or_default();
        Response::text(200, format!("{entries} {seen}")).into()
    }
}

#[test]
fn library_api_snapshots_while_edits_continue_and_runs_the_debounced_callback() {
    let srv = start(1, Persistence::None);
    let path = "/parties/docs/d1";
    let doc = Doc::new();
    let mut a = join(srv.addr, path, &doc);
    a.ws_send(OpCode::Binary, &protocol::update(&edit(&doc, "abc")));
    // The member stays connected: the snapshot and the callback come from the timers.
    let mut http = srv.connect();
    common::eventually("the snapshot and the callback (\"1 abc\")", || {
        http.request(common::get(path).as_bytes()).text() == "1 abc"
    });
}
