//! A party that closes a connection in `on_connect` never sees the messages the client sent
//! right behind its handshake (partysocket flushes its queue as soon as the socket opens), even
//! when they arrive in the same read as the upgrade.

mod common;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use common::{frame, ws_upgrade, Client};
use partyring::{
    party::{ConnectContext, Connection, Party},
    room::Room,
    Message, OpCode, Server,
};

#[derive(Clone, Default)]
struct Refuses {
    messages: Arc<AtomicUsize>,
}

impl Party for Refuses {
    fn on_connect(&self, _room: &mut Room, conn: &Connection, _ctx: &ConnectContext<'_>) {
        conn.close(4001, "not allowed");
    }

    fn on_message(&self, _room: &mut Room, _msg: Message<'_>, _sender: &Connection) {
        self.messages.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn messages_behind_the_handshake_of_a_refused_connection_are_not_delivered() {
    let party = Refuses::default();
    let seen = party.messages.clone();
    let server = Server::builder()
        .config(common::config(1))
        .party("refuses", move || party.clone())
        .start()
        .expect("server starts");
    let mut c = Client::connect(server.addr);
    let mut bytes = ws_upgrade("/parties/refuses/r").into_bytes();
    for i in 0..3 {
        bytes.extend(frame(true, OpCode::Text, format!("queued {i}").as_bytes()));
    }
    c.send(&bytes);
    let resp = c.response();
    assert_eq!(resp.status, 101);
    assert_eq!(c.ws_close_code(), Some(4001));
    // The close was answered after the queued frames were read: they have been decoded by now.
    c.ws_send(OpCode::Close, &4001u16.to_be_bytes());
    assert!(c.closed_by_server());
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "on_message ran after on_connect closed"
    );
    server.shutdown(std::time::Duration::from_secs(2));
}
