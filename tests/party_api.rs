//! The Party API end to end, through real sockets: hooks (auth, header rewriting, run once
//! across a handoff), connection handles (uri, state, tags, broadcast exclusions, close with a
//! code), lifecycle callbacks (on_start, on_close codes, on_error), room storage (every method,
//! across a restart), alarms (fire, and fire after a restart), party-to-party fetch (same core
//! and across cores), and CORS (preflight bytes, allowed and refused origins).

mod common;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use common::{close_frame, eventually_within, http, room_on_core, temp_dir, ws_upgrade, Client};
use partyring::{
    config::Cors,
    http::{Method, Response},
    party::{Before, ConnectContext, Connection, Party, Reply, Request},
    room::{FetchRequest, Room},
    storage::ListOptions,
    ws::{Message, OpCode},
    Config, Server,
};

/// Everything the test party saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

#[derive(Clone, Default)]
struct Lab {
    log: Log,
    connect_hooks: Arc<AtomicUsize>,
}

impl Lab {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

/// The part of the path after `/parties/lab/<room>`.
fn rest<'a>(req: &Request<'a>, room: &Room) -> &'a str {
    let prefix_len = format!("/parties/{}/{}", room.party(), room.id()).len();
    req.path().get(prefix_len..).unwrap_or("")
}

impl Party for Lab {
    fn on_before_connect(&self, req: &Request<'_>) -> Before {
        self.connect_hooks.fetch_add(1, Ordering::SeqCst);
        match req.query_param("token").as_deref() {
            Some("good") => Before::SetHeaders(vec![("X-User".into(), "ann".into())]),
            Some("banned") => Before::Respond(Response::text(403, "banned")),
            _ => Before::unauthorized("Missing or bad token"),
        }
    }

    fn on_before_request(&self, req: &Request<'_>) -> Before {
        if req.header("x-block").is_some() {
            return Before::Respond(Response::text(403, "blocked"));
        }
        Before::SetHeaders(vec![("X-Seen".into(), "yes".into())])
    }

    fn on_start(&self, room: &mut Room) {
        self.note(format!("start:{}", room.id()));
    }

    fn connection_tags(&self, _conn: &Connection, ctx: &ConnectContext<'_>) -> Vec<String> {
        ctx.request
            .query_param("tags")
            .map(|t| t.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn on_connect(&self, _room: &mut Room, conn: &Connection, ctx: &ConnectContext<'_>) {
        let user = ctx.request.header("x-user").unwrap_or("-");
        conn.set_state(&serde_json::json!({ "user": user }))
            .unwrap();
        conn.send_text(&format!("hello {user} {}", conn.uri()));
    }

    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Connection) {
        let Message::Text(text) = msg else {
            return;
        };
        if text == "state" {
            let state: serde_json::Value = sender.state().unwrap();
            sender.send_text(&state.to_string());
        } else if text == "big-state" {
            let err = sender.set_state(&"x".repeat(3000)).unwrap_err();
            sender.send_text(&err);
        } else if let Some(tag) = text.strip_prefix("tag:") {
            let mut ids: Vec<&str> = room.get_connections(tag).map(|c| c.id()).collect();
            ids.sort_unstable();
            sender.send_text(&ids.join(","));
        } else if let Some(t) = text.strip_prefix("others:") {
            room.broadcast_text(t, &[sender.id()]);
        } else if let Some(id) = text.strip_prefix("kick:") {
            if let Some(c) = room.get_connection(id) {
                c.close(4001, "kicked");
            }
        }
    }

    fn on_close(&self, _room: &mut Room, conn: &Connection, code: u16, reason: &str) {
        self.note(format!("close:{}:{code}:{reason}", conn.id()));
    }

    fn on_error(&self, _room: &mut Room, conn: &Connection, error: &str) {
        self.note(format!("error:{}:{error}", conn.id()));
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        let store = room.storage();
        let rest = rest(req, room);
        match (req.method, rest) {
            (Method::Get, "") => Response::text(
                200,
                format!(
                    "seen={} room={} party={}",
                    req.header("x-seen").unwrap_or("-"),
                    room.id(),
                    room.party()
                ),
            )
            .into(),
            // Headers a party should not (or cannot) set, next to ones it may.
            (Method::Get, "/headers") => Response::text(200, "hdrs")
                .header("Access-Control-Allow-Origin", "https://other.example")
                .header("Vary", "Accept-Encoding, origin")
                .header("Content-Length", "999")
                .header("Connection", "close")
                .header("X-Bad\r\nInjected", "1")
                .header("X-Split", "a\r\nSet-Cookie: evil=1")
                .header("X-Fine", "yes")
                .into(),
            (Method::Get, "/core") => {
                Response::text(200, std::thread::current().name().unwrap_or("?").to_owned()).into()
            }
            (Method::Get, "/list") => {
                let prefix = req.query_param("prefix");
                let start = req.query_param("start");
                let end = req.query_param("end");
                let opts = ListOptions {
                    prefix: prefix.as_deref(),
                    start: start.as_deref(),
                    end: end.as_deref(),
                    limit: req.query_param("limit").map(|l| l.parse().unwrap()),
                    reverse: req.query_param("reverse").is_some(),
                    ..ListOptions::default()
                };
                match store.list(&opts) {
                    Ok(list) => {
                        let keys: Vec<String> = list.into_iter().map(|(k, _)| k).collect();
                        Response::json(200, serde_json::to_vec(&keys).unwrap()).into()
                    }
                    Err(e) => Response::text(400, e.to_string()).into(),
                }
            }
            (Method::Post, "/many") => {
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(req.body).unwrap();
                let entries = map
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap().as_bytes().to_vec()))
                    .collect();
                let d = store.put_many(entries);
                Reply::later(async move {
                    d.await.unwrap();
                    Response::text(200, "OK")
                })
            }
            (Method::Delete, "/kv") => {
                let d = store.delete_all();
                Reply::later(async move { Response::text(200, d.await.unwrap().to_string()) })
            }
            (Method::Post, "/alarm") => {
                let ms: u64 = req.query_param("ms").unwrap().parse().unwrap();
                let d = room.set_alarm(SystemTime::now() + Duration::from_millis(ms));
                Reply::later(async move {
                    d.await.unwrap();
                    Response::text(200, "armed")
                })
            }
            (Method::Get, "/alarm") => Response::text(
                200,
                format!(
                    "fired={} pending={}",
                    store.get_json::<u64>("fired").unwrap_or(0),
                    room.alarm().is_some()
                ),
            )
            .into(),
            (Method::Get, "/fetch") => {
                let party = req.query_param("party").unwrap();
                let target = req.query_param("room").unwrap();
                let path = req.query_param("path").unwrap_or_default();
                let fut = room
                    .context()
                    .party(&party)
                    .room(&target)
                    .fetch(FetchRequest::get().path(path));
                Reply::later(async move {
                    let r = fut.await;
                    Response::text(
                        200,
                        format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                    )
                })
            }
            (method, key) if key.starts_with("/kv/") => {
                let key = &key[4..];
                match method {
                    Method::Put => {
                        let d = store.put(key, req.body.to_vec());
                        Reply::later(async move {
                            match d.await {
                                Ok(()) => Response::text(200, "OK"),
                                Err(e) => Response::text(400, e.to_string()),
                            }
                        })
                    }
                    Method::Get => match store.get(key) {
                        Some(v) => Response::text(200, String::from_utf8(v).unwrap()).into(),
                        None => Response::text(404, "no such key").into(),
                    },
                    Method::Delete => {
                        let d = store.delete(key);
                        Reply::later(
                            async move { Response::text(200, d.await.unwrap().to_string()) },
                        )
                    }
                    _ => Response::text(405, "Method not allowed").into(),
                }
            }
            _ => Response::text(404, "no such route").into(),
        }
    }

    fn on_alarm(&self, room: &mut Room) {
        let store = room.storage();
        let n = store.get_json::<u64>("fired").unwrap_or(0) + 1;
        drop(store.put_json("fired", &n));
        room.broadcast_text("alarm", &[]);
        self.note(format!("alarm:{}", room.id()));
    }
}

fn start_lab(lab: &Lab, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = common::config(2);
    tweak(&mut config);
    let lab = lab.clone();
    Server::builder()
        .config(config)
        .party("lab", move || lab.clone())
        .start()
        .expect("server starts")
}

fn text_frame(c: &mut Client) -> String {
    String::from_utf8(c.ws_next(0x1)).unwrap()
}

#[test]
fn hooks_authorize_rewrite_and_run_once_per_request() {
    let lab = Lab::default();
    let server = start_lab(&lab, |_| {});
    let addr = server.addr;
    let room = room_on_core("lab", 1, 2, "hooks");

    // on_before_connect: no token is 401 with the hook's reason, a banned one 403; no upgrade.
    let mut c = Client::connect(addr);
    let r = c.request(ws_upgrade(&format!("/parties/lab/{room}")).as_bytes());
    assert_eq!((r.status, r.text().as_str()), (401, "Missing or bad token"));
    let r = c.request(ws_upgrade(&format!("/parties/lab/{room}?token=banned")).as_bytes());
    assert_eq!((r.status, r.text().as_str()), (403, "banned"));

    // A good token gets through with the header the hook set, whichever core accepted it; the
    // hook runs once per upgrade even when the connection is handed to the owner core.
    let before = lab.connect_hooks.load(Ordering::SeqCst);
    for i in 0..10 {
        let mut ws = Client::ws_connect(addr, &format!("/parties/lab/{room}?token=good&_pk=u{i}"));
        assert_eq!(
            text_frame(&mut ws),
            format!("hello ann http://localhost/parties/lab/{room}?token=good&_pk=u{i}")
        );
    }
    assert_eq!(lab.connect_hooks.load(Ordering::SeqCst) - before, 10);

    // on_before_request: it can answer, or set a header the room then sees.
    let mut c = Client::connect(addr);
    let r = c.request(
        format!("GET /parties/lab/{room} HTTP/1.1\r\nHost: a\r\nX-Block: 1\r\n\r\n").as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (403, "blocked"));
    for _ in 0..4 {
        // Fresh connections land on either core: rewritten on one, answered on the other.
        let r = http(addr, "GET", &format!("/parties/lab/{room}"), "");
        assert_eq!(r.text(), format!("seen=yes room={room} party=lab"));
    }
    // A POST with a body that a hook refuses: answered, then the connection is closed (the
    // body is never read).
    let mut c = Client::connect(addr);
    let r = c.request(
        format!("POST /parties/lab/{room} HTTP/1.1\r\nHost: a\r\nX-Block: 1\r\nContent-Length: 3\r\n\r\nabc")
            .as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.header("connection"), Some("close"));
    server.shutdown(Duration::from_secs(2));
}

#[test]
fn connection_handles_and_lifecycle() {
    let lab = Lab::default();
    let server = start_lab(&lab, |_| {});
    let addr = server.addr;
    let path = "/parties/lab/handles?token=good";
    let mut a = Client::ws_connect(addr, &format!("{path}&_pk=a&tags=red,blue"));
    let mut b = Client::ws_connect(addr, &format!("{path}&_pk=b&tags=red"));
    let mut c = Client::ws_connect(addr, &format!("{path}&_pk=c"));
    for ws in [&mut a, &mut b, &mut c] {
        assert!(text_frame(ws).starts_with("hello ann http://localhost/parties/lab/handles?"));
    }
    // on_start ran once for the room, before the first connect.
    assert_eq!(
        lab.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == "start:handles")
            .count(),
        1
    );

    // State set in on_connect (from the hook's header), and the 2 KiB limit.
    a.ws_send(OpCode::Text, b"state");
    assert_eq!(text_frame(&mut a), r#"{"user":"ann"}"#);
    a.ws_send(OpCode::Text, b"big-state");
    assert!(text_frame(&mut a).contains("over the 2048-byte limit"));

    // Tags (and the id as a tag).
    a.ws_send(OpCode::Text, b"tag:red");
    assert_eq!(text_frame(&mut a), "a,b");
    a.ws_send(OpCode::Text, b"tag:blue");
    assert_eq!(text_frame(&mut a), "a");
    a.ws_send(OpCode::Text, b"tag:c");
    assert_eq!(text_frame(&mut a), "c");

    // Broadcast without the sender.
    a.ws_send(OpCode::Text, b"others:hi");
    assert_eq!(text_frame(&mut b), "hi");
    assert_eq!(text_frame(&mut c), "hi");
    a.ws_send(OpCode::Text, b"tag:none");
    assert_eq!(text_frame(&mut a), "", "a got no 'hi' of its own");

    // close(4001, "kicked") reaches the client; its echo is the code on_close sees.
    a.ws_send(OpCode::Text, b"kick:b");
    let (_, op, payload) = b.ws_frame();
    assert_eq!(op, 0x8);
    assert_eq!(&payload[..2], &4001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"kicked");
    b.send(&close_frame(4001, b""));
    // The client closes with its own code and reason.
    c.send(&close_frame(4000, b"bye"));
    assert_eq!(c.ws_close_code(), Some(4000));
    // A protocol violation: on_error, then on_close with the code the server sent.
    a.send(&common::raw_frame(0x81, false, b"unmasked"));
    assert_eq!(a.ws_close_code(), Some(1002));
    // A failed connection is not processed further (RFC 6455 7.1.7), so the client ends it by
    // closing TCP, as real clients do; left open, the server would wait for that EOF until its
    // close timeout (5 s), as long as `wait_for` below waits.
    drop(a);
    // A vanished peer: 1006.
    let mut d = Client::ws_connect(addr, &format!("{path}&_pk=d"));
    text_frame(&mut d);
    drop(d);

    common::eventually("four closes", || {
        lab.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("close:"))
            .count()
            == 4
    });
    let log = lab.log.lock().unwrap().clone();
    for want in [
        "close:b:4001:",
        "close:c:4000:bye",
        "close:a:1002:",
        "close:d:1006:",
    ] {
        assert!(log.iter().any(|l| l == want), "{want} not in {log:?}");
    }
    let err = log
        .iter()
        .position(|l| l.starts_with("error:a:"))
        .expect("on_error for a");
    let close = log.iter().position(|l| l == "close:a:1002:").unwrap();
    assert!(err < close, "on_error comes before on_close: {log:?}");
    server.shutdown(Duration::from_secs(2));
}

fn persistent(dir: &Path) -> impl FnOnce(&mut Config) + '_ {
    move |c| {
        c.persist = true;
        c.data_dir = dir.to_path_buf();
    }
}

#[test]
fn room_storage_api_survives_a_restart() {
    let dir = temp_dir("storage");
    let lab = Lab::default();
    let base = "/parties/lab/store";
    let server = start_lab(&lab, persistent(&dir));
    let addr = server.addr;
    for (k, v) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("p/x", "4"),
        ("p/y", "5"),
    ] {
        assert_eq!(http(addr, "PUT", &format!("{base}/kv/{k}"), v).text(), "OK");
    }
    assert_eq!(http(addr, "GET", &format!("{base}/kv/b"), "").text(), "2");
    assert_eq!(http(addr, "GET", &format!("{base}/kv/zz"), "").status, 404);
    let list = |addr, q: &str| http(addr, "GET", &format!("{base}/list?{q}"), "").text();
    assert_eq!(list(addr, ""), r#"["a","b","c","p/x","p/y"]"#);
    assert_eq!(list(addr, "prefix=p/"), r#"["p/x","p/y"]"#);
    assert_eq!(list(addr, "start=b&end=p/y"), r#"["b","c","p/x"]"#);
    assert_eq!(list(addr, "limit=2&reverse"), r#"["p/y","p/x"]"#);
    assert_eq!(
        http(addr, "GET", &format!("{base}/list?limit=0"), "").status,
        400
    );
    assert_eq!(
        http(addr, "DELETE", &format!("{base}/kv/a"), "").text(),
        "true"
    );
    assert_eq!(
        http(addr, "DELETE", &format!("{base}/kv/a"), "").text(),
        "false"
    );
    assert_eq!(
        http(
            addr,
            "POST",
            &format!("{base}/many"),
            r#"{"m1":"x","m2":"y"}"#
        )
        .text(),
        "OK"
    );
    // Over the key limit: a clear error, nothing written.
    let long = "k".repeat(3000);
    let r = http(addr, "PUT", &format!("{base}/kv/{long}"), "v");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "key is over 2048 bytes")
    );
    assert!(server.shutdown(Duration::from_secs(2)));

    // Same directory, new server: everything is still there, and on_start runs again.
    let server = start_lab(&lab, persistent(&dir));
    let addr = server.addr;
    assert_eq!(list(addr, ""), r#"["b","c","m1","m2","p/x","p/y"]"#);
    assert_eq!(http(addr, "GET", &format!("{base}/kv/m2"), "").text(), "y");
    assert_eq!(http(addr, "DELETE", &format!("{base}/kv"), "").text(), "6");
    assert_eq!(list(addr, ""), "[]");
    assert!(server.shutdown(Duration::from_secs(2)));
    let server = start_lab(&lab, persistent(&dir));
    let addr = server.addr;
    assert_eq!(list(addr, ""), "[]", "delete_all is durable too");
    server.shutdown(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alarms_fire_on_time_and_after_a_restart() {
    let dir = temp_dir("alarms");
    let lab = Lab::default();
    let server = start_lab(&lab, persistent(&dir));
    let addr = server.addr;
    let room = room_on_core("lab", 1, 2, "alarm");
    let base = format!("/parties/lab/{room}");
    let mut ws = Client::ws_connect(addr, &format!("{base}?token=good"));
    text_frame(&mut ws);
    // Far in the future, so "not fired yet" holds however slow this machine is.
    assert_eq!(
        http(addr, "POST", &format!("{base}/alarm?ms=600000"), "").text(),
        "armed"
    );
    assert_eq!(
        http(addr, "GET", &format!("{base}/alarm"), "").text(),
        "fired=0 pending=true"
    );
    // Re-arming replaces: the near time fires, once, and nothing stays pending.
    http(addr, "POST", &format!("{base}/alarm?ms=50"), "");
    assert_eq!(
        text_frame(&mut ws),
        "alarm",
        "on_alarm broadcast to the room"
    );
    assert_eq!(
        http(addr, "GET", &format!("{base}/alarm"), "").text(),
        "fired=1 pending=false"
    );
    // Set twice, far then near: the last one set wins, and the far one never fires.
    http(addr, "POST", &format!("{base}/alarm?ms=600000"), "");
    http(addr, "POST", &format!("{base}/alarm?ms=100"), "");
    assert_eq!(text_frame(&mut ws), "alarm");
    assert_eq!(
        http(addr, "GET", &format!("{base}/alarm"), "").text(),
        "fired=2 pending=false"
    );
    drop(ws);

    // Armed, then the server stops before it is due: it fires after the restart. That needs the
    // shutdown to come before the alarm is due; on a machine too slow for that, the alarm fired
    // before the shutdown (and counts in `fired`), and the case is tried again, due later.
    let alarms = || {
        lab.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("alarm:"))
            .count()
    };
    let (mut server, mut addr, mut fired) = (server, addr, 2);
    let mut delay = Duration::from_secs(2);
    let before = loop {
        let before = alarms();
        let arm = format!("{base}/alarm?ms={}", delay.as_millis());
        assert_eq!(http(addr, "POST", &arm, "").text(), "armed");
        assert!(server.shutdown(Duration::from_secs(2)));
        let pending_at_shutdown = alarms() == before;
        server = start_lab(&lab, persistent(&dir));
        addr = server.addr;
        if pending_at_shutdown {
            break before;
        }
        fired += 1;
        assert!(
            delay < Duration::from_secs(60),
            "the server never stopped before its alarm was due"
        );
        delay *= 4;
    };
    eventually_within(
        "the alarm after the restart",
        delay + Duration::from_secs(10),
        || alarms() > before,
    );
    assert_eq!(
        http(addr, "GET", &format!("{base}/alarm"), "").text(),
        format!("fired={} pending=false", fired + 1)
    );
    server.shutdown(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn party_fetch_reaches_rooms_on_either_core() {
    let lab = Lab::default();
    let server = start_lab(&lab, |_| {});
    let addr = server.addr;
    let from = room_on_core("lab", 0, 2, "from");
    for core in [0, 1] {
        let target = room_on_core("lab", core, 2, "target");
        let r = http(
            addr,
            "GET",
            &format!("/parties/lab/{from}/fetch?party=lab&room={target}&path=/core"),
            "",
        );
        assert_eq!(r.text(), format!("200 partyring-core-{core}"));
        // Skips on_before_request: the target sees no X-Seen header.
        let r = http(
            addr,
            "GET",
            &format!("/parties/lab/{from}/fetch?party=lab&room={target}"),
            "",
        );
        assert_eq!(r.text(), format!("200 seen=- room={target} party=lab"));
    }
    // Another party, and the main party's history through a fetch.
    let main_room = room_on_core("main", 1, 2, "hist");
    let mut c = Client::connect(addr);
    c.request(common::post_message(&format!("/parties/main/{main_room}"), "via main").as_bytes());
    let r = http(
        addr,
        "GET",
        &format!("/parties/lab/{from}/fetch?party=main&room={main_room}"),
        "",
    );
    assert_eq!(r.text(), r#"200 ["via main"]"#);
    // Errors are answers, not hangs.
    let r = http(
        addr,
        "GET",
        &format!("/parties/lab/{from}/fetch?party=nope&room=x"),
        "",
    );
    assert_eq!(r.text(), "404 Party nope not found");
    let r = http(
        addr,
        "GET",
        &format!("/parties/lab/{from}/fetch?party=lab&room=x&path=bad"),
        "",
    );
    assert_eq!(r.text(), "400 Party fetch path must start with / or ?");
    // A path that would break the request line is refused, never sent.
    let r = http(
        addr,
        "GET",
        &format!("/parties/lab/{from}/fetch?party=lab&room=x&path=/a%20HTTP/1.1%0D%0AX:%201"),
        "",
    );
    assert_eq!(
        r.text(),
        "400 Party fetch path must be ASCII without spaces or controls: percent-encode it"
    );
    server.shutdown(Duration::from_secs(2));
}

#[test]
fn cors_preflight_and_headers() {
    // Off (the default): OPTIONS goes to the party like any request, and no CORS headers.
    let server = Server::start(common::config(2)).unwrap();
    let preflight = "OPTIONS /parties/main/c HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n\
                     Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n";
    let mut c = Client::connect(server.addr);
    let r = c.request(preflight.as_bytes());
    assert_eq!(r.status, 405);
    assert_eq!(r.header("access-control-allow-origin"), None);
    server.shutdown(Duration::from_secs(2));

    // Any origin.
    let mut config = common::config(2);
    config.cors = Cors::Any;
    let server = Server::start(config).unwrap();
    let mut c = Client::connect(server.addr);
    c.send(preflight.as_bytes());
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n\r\n") {
        let n = c.fill();
        assert!(n > 0, "EOF");
        raw = c.buf.clone();
    }
    let text = String::from_utf8(raw).unwrap();
    let date = text
        .lines()
        .find(|l| l.starts_with("Date: "))
        .expect("a Date header");
    assert_eq!(
        text,
        format!(
            "HTTP/1.1 204 No Content\r\n{date}\r\n\
             Access-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS\r\n\
             Access-Control-Max-Age: 86400\r\n\
             Access-Control-Allow-Headers: content-type\r\n\
             Access-Control-Allow-Origin: *\r\n\r\n"
        )
    );
    c.buf.clear();
    let r = c.request(common::get("/parties/main/c").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    server.shutdown(Duration::from_secs(2));

    // A list: an allowed origin is echoed with Vary, another is refused, and responses to it
    // carry no CORS header.
    let mut config = common::config(2);
    config.cors = Cors::Origins(vec!["https://app.example".into()]);
    config.max_body_bytes = 64;
    let server = Server::start(config).unwrap();
    let mut c = Client::connect(server.addr);
    let r = c.request(preflight.as_bytes());
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let evil = preflight.replace("https://app.example", "https://evil.example");
    let r = c.request(evil.as_bytes());
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "CORS: origin not allowed")
    );
    let r = c.request(
        b"GET /parties/main/c HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);

    // Errors the server answers itself carry the headers too, so a page can read them: a body
    // over the limit (413) and a malformed head (400), each on a fresh connection (both close).
    let too_big = "POST /parties/main/c HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n\
                   Content-Length: 1000\r\n\r\n";
    let r = Client::connect(server.addr).request(too_big.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let bad = "POST /parties/main/c HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n\
               Content-Length: ten\r\n\r\n";
    let r = Client::connect(server.addr).request(bad.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let r = Client::connect(server.addr)
        .request(too_big.replace("app.example", "evil.example").as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(r.header("access-control-allow-origin"), None);
    server.shutdown(Duration::from_secs(2));
}

#[test]
fn party_headers_cannot_break_framing_or_double_cors() {
    let lab = Lab::default();
    let server = start_lab(&lab, |c| {
        c.cors = Cors::Origins(vec!["https://app.example".into()]);
    });
    let mut c = Client::connect(server.addr);
    let req =
        "GET /parties/lab/h/headers HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n\r\n";
    for _ in 0..2 {
        let r = c.request(req.as_bytes());
        assert_eq!((r.status, r.text().as_str()), (200, "hdrs"));
        let all = |name: &str| {
            r.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        // One origin, the server's; the party's Vary already names Origin, so none is added.
        assert_eq!(all("access-control-allow-origin"), ["https://app.example"]);
        assert_eq!(all("vary"), ["Accept-Encoding, origin"]);
        // The server frames the message; the party's framing headers are left out.
        assert_eq!(all("content-length"), ["4"]);
        assert_eq!(all("connection"), Vec::<&str>::new());
        // Lines that would split the response are left out whole; the rest goes.
        assert_eq!(all("set-cookie"), Vec::<&str>::new());
        assert_eq!(all("injected"), Vec::<&str>::new());
        assert_eq!(all("x-split"), Vec::<&str>::new());
        assert_eq!(all("x-fine"), ["yes"]);
    }
    // Still keep-alive after two such responses: the framing held.
    assert!(c.buf.is_empty());
    // An origin the policy refuses gets no origin at all, not the party's.
    let evil = req.replace("https://app.example", "https://evil.example");
    let r = c.request(evil.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("x-fine"), Some("yes"));
    server.shutdown(Duration::from_secs(2));
}

/// Answers with the name of the node it runs on; `/fetch?room=R` fetches `node` room R.
struct Node(&'static str);

impl Party for Node {
    fn on_before_request(&self, req: &Request<'_>) -> Before {
        if req.header("x-deny").is_some() {
            return Before::unauthorized("denied at the edge");
        }
        Before::Continue
    }

    fn on_request(&self, room: &mut Room, req: &Request<'_>) -> Reply {
        if req.path().ends_with("/fetch") {
            let target = req.query_param("room").unwrap();
            let mut fetch = FetchRequest::post("ping").path("/echo?q=1");
            if req.query_param("deny").is_some() {
                fetch = fetch.header("X-Deny", "1");
            }
            let fut = room.party_room("node", &target).fetch(fetch);
            return Reply::later(async move {
                let r = fut.await;
                // The answering node's own header comes back with the response.
                let node = r
                    .headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("x-node"))
                    .map_or("none".to_owned(), |(_, v)| v.clone());
                Response::text(r.status, String::from_utf8_lossy(&r.body).into_owned())
                    .header("X-Answered-By", node)
            });
        }
        Response::text(
            200,
            format!(
                "{} {} {} {}",
                self.0,
                room.id(),
                req.target,
                String::from_utf8_lossy(req.body)
            ),
        )
        .header("X-Node", self.0)
        .into()
    }
}

#[test]
fn party_fetch_through_an_entry_reaches_another_node() {
    // Node B stands in for the load balancer's choice: A sends every fetch to it.
    let b = Server::builder()
        .config(common::config(2))
        .party("node", || Node("b"))
        .start()
        .unwrap();
    let mut config = common::config(2);
    config.fetch_entry = Some(b.addr);
    let a = Server::builder()
        .config(config)
        .party("node", || Node("a"))
        .start()
        .unwrap();
    let r = http(a.addr, "GET", "/parties/node/here/fetch?room=there", "");
    assert_eq!(
        (r.status, r.text()),
        (200, "b there /parties/node/there/echo?q=1 ping".to_owned())
    );
    assert_eq!(r.header("x-answered-by"), Some("b"), "headers come back");
    // Through the entry the target's edge hook runs, as for any client.
    let r = http(
        a.addr,
        "GET",
        "/parties/node/here/fetch?room=there&deny=1",
        "",
    );
    assert_eq!((r.status, r.text()), (401, "denied at the edge".to_owned()));
    assert!(b.shutdown(Duration::from_secs(2)));
    // The entry is gone: a clear 502, not a hang.
    let r = http(a.addr, "GET", "/parties/node/here/fetch?room=there", "");
    assert_eq!(r.status, 502);
    assert!(r.text().starts_with("Party fetch through"), "{}", r.text());
    a.shutdown(Duration::from_secs(2));
}
