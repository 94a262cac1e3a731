//! Backpressure at scale: a 10,000-member room with one member that never reads. The server
//! runs as a child process (one process holds at most ~19k fds here, and the 10,000 client
//! sockets need the test's own budget), so the test can also read its RSS from /proc.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::*;
use partyring::ws::OpCode;

const MEMBERS: usize = 10_000;
const MESSAGES: usize = 60;
const PAYLOAD: usize = 1024;

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill and setrlimit to read.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn ten_thousand_members_one_stuck_reader() {
    raise_nofile();
    let (child, addr) = spawn_binary(&[
        "--threads",
        "2",
        "--max-outbound",
        "16384",
        "--max-message-size",
        "8192",
    ]);
    let pid = child.0.id();
    let _guard = child;
    let path = "/parties/main/ten-thousand";

    // Members join over plain blocking sockets; the upgrade answer is read and dropped.
    let started = Instant::now();
    let mut members: Vec<TcpStream> = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let mut s = if i == 0 {
            // The stuck member: a tiny receive buffer, so the kernel cannot hide its backlog.
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.set_recv_buffer_size(2048).unwrap();
            sock.connect(&addr.into()).expect("connect");
            TcpStream::from(sock)
        } else {
            TcpStream::connect(addr).expect("connect")
        };
        s.write_all(ws_upgrade(path).as_bytes()).unwrap();
        members.push(s);
    }
    for s in &mut members {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).expect("101");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
    }
    eprintln!("{MEMBERS} members joined in {:?}", started.elapsed());
    let rss_joined = rss_kib(pid);

    // The stuck member is members[0]: it never reads again. A sender broadcasts; everyone
    // else must get every message, in order, while the stuck one is cut off at its bound.
    let mut sender = Client::ws_connect(addr, path);
    for i in 0..MESSAGES {
        let mut msg = format!("{i:08}").into_bytes();
        msg.resize(PAYLOAD, b'x');
        sender.ws_send(OpCode::Text, &msg);
    }
    let stuck = members.remove(0);
    let readers = members;
    let deadline = Instant::now() + Duration::from_secs(120);
    for (n, s) in readers.iter().enumerate() {
        let mut c = Client {
            stream: s.try_clone().unwrap(),
            buf: Vec::new(),
        };
        for i in 0..MESSAGES {
            let (fin, op, payload) = c.ws_frame();
            assert!(fin && op == 1, "member {n}: frame {i} is text");
            assert_eq!(
                &payload[..8],
                format!("{i:08}").as_bytes(),
                "member {n}: order"
            );
            assert_eq!(payload.len(), PAYLOAD);
        }
        assert!(Instant::now() < deadline, "too slow");
    }
    let rss_after = rss_kib(pid);
    eprintln!("RSS: joined {rss_joined} KiB, after the broadcast {rss_after} KiB");
    // Every message reached 9,999 readers (600 MB of frames in all) through one shared copy
    // per message: the server must not have grown by anything like that. Each member's queue
    // is bounded (16 KiB); allow generous slack for allocator behaviour.
    assert!(
        rss_after < rss_joined + 64 * 1024,
        "RSS grew from {rss_joined} to {rss_after} KiB"
    );

    // The stuck member now floods the server with pings and still reads nothing: its pongs
    // (12.7 MB, more than the kernel buffers on both ends hold) pass its 16 KiB bound, and it
    // alone is closed with 1008.
    let mut stuck = Client {
        stream: stuck,
        buf: Vec::new(),
    };
    let ping = partyring::ws::encode_client_frame(true, OpCode::Ping, &[b'p'; 125], [1, 2, 3, 4]);
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 10_000)
        .collect();
    for _ in 0..10 {
        if stuck.stream.write_all(&flood).is_err() {
            break; // already closed by the server
        }
    }
    let mut got = 0;
    let code = loop {
        match stuck.try_ws_frame() {
            Some((_, 1, _)) => got += 1,
            Some((_, 0xA, _)) => {}
            Some((_, 8, payload)) => break Some(u16::from_be_bytes([payload[0], payload[1]])),
            Some(other) => panic!("stuck member: unexpected frame {other:?}"),
            None => break None,
        }
    };
    eprintln!("stuck member: {got} messages, then close {code:?}");
    assert_eq!(
        got, MESSAGES,
        "the stuck member's broadcasts were queued before its pongs"
    );
    assert!(matches!(code, Some(1008) | None), "{code:?}");
    // The room still works for everyone else.
    sender.ws_send(OpCode::Text, b"after");
    let mut c = Client {
        stream: readers[MEMBERS / 2].try_clone().unwrap(),
        buf: Vec::new(),
    };
    loop {
        let (_, _, payload) = c.ws_frame();
        if payload == b"after" {
            break;
        }
    }
}
