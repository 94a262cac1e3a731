//! Lifecycle: a panicking party fails only what it touched; SIGTERM shuts the binary down
//! gracefully (WebSockets closed with 1001, in-flight requests answered, exit 0).

mod common;

use std::{net::SocketAddr, rc::Rc};

use common::*;
use partyring::{
    http::Response,
    party::WsConn,
    party::{Party, Reply, Request},
    room::Room,
    ws::{Message, OpCode},
    Server,
};

/// Panics on demand: a request body or a message that says "panic".
struct Panicky;

impl Party for Panicky {
    fn on_request(&self, _room: &mut Room, req: &Request<'_>) -> Reply {
        if req.body == b"panic" {
            panic!("asked to panic in on_request");
        }
        Response::text(200, "fine").into()
    }

    fn on_message(&self, room: &mut Room, msg: Message<'_>, sender: &Rc<WsConn>) {
        if let Message::Text(text) = msg {
            if text == "panic" {
                panic!("asked to panic in on_message");
            }
            room.broadcast_text(text, &[]);
        }
        let _ = sender;
    }
}

fn start_panicky() -> SocketAddr {
    let mut config = common::config(2);
    config.port = 0;
    let server = Server::builder()
        .config(config)
        .party("panicky", || Panicky)
        .start()
        .expect("starts");
    let addr = server.addr;
    std::mem::forget(server); // runs until the test process exits
    addr
}

#[test]
fn a_panic_fails_only_its_request_or_connection() {
    let addr = start_panicky();
    let mut c = Client::connect(addr);
    let post = |body: &str| {
        format!(
            "POST /parties/panicky/p HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let r = c.request(post("panic").as_bytes());
    assert_eq!(r.status, 500);
    // The same connection and the room keep working; built-in parties too.
    assert_eq!(c.request(post("ok").as_bytes()).text(), "fine");
    assert_eq!(c.request(get("/parties/main/p").as_bytes()).status, 200);

    let mut a = Client::ws_connect(addr, "/parties/panicky/room");
    let mut b = Client::ws_connect(addr, "/parties/panicky/room");
    a.ws_send(OpCode::Text, b"panic");
    assert_eq!(a.ws_close_code(), Some(1011));
    assert!(a.closed_by_server());
    // The other member and the room are unaffected.
    let mut d = Client::ws_connect(addr, "/parties/panicky/room");
    b.ws_send(OpCode::Text, b"still here");
    assert_eq!(d.ws_frame(), (true, 1, b"still here".to_vec()));
    assert_eq!(b.ws_frame(), (true, 1, b"still here".to_vec()));
}

#[test]
fn sigterm_closes_websockets_finishes_requests_and_exits_zero() {
    let (mut child, addr) = spawn_binary(&["--threads", "2", "--shutdown-timeout", "5"]);

    let mut sockets: Vec<Client> = (0..4)
        .map(|i| Client::ws_connect(addr, &format!("/parties/main/sd{i}")))
        .collect();
    // A request whose body is only half sent when the signal arrives.
    let mut inflight = Client::connect(addr);
    let half = b"POST /party/sd HTTP/1.1\r\nHost: a\r\nContent-Length: 18\r\n\r\n{\"message\":";
    let before = received_bytes(addr);
    inflight.send(half);
    // The signal must find the request in flight: wait until the server has read it.
    wait_until_read(addr, before, half.len(), "the half request is read");

    // SAFETY: kill only sends a signal to the child we spawned (its pid is live: not waited).
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    for s in &mut sockets {
        assert_eq!(s.ws_close_code(), Some(1001));
    }
    inflight.send(b"\"late\"}");
    let r = inflight.response();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    assert_eq!(r.header("connection"), Some("close"));
    for s in &mut sockets {
        s.ws_send(OpCode::Close, &1001u16.to_be_bytes());
    }
    let mut status = None;
    eventually("the server exits", || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{status:?}");
}
