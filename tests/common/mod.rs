//! Shared helpers for the integration tests: an in-process server on port 0, raw TCP clients
//! with timeouts (a broken server fails a test, never hangs it), HTTP requests and response
//! reading, a WebSocket client, polling for an event ([`eventually`]), and a monoio runtime for
//! the storage tests ([`block_on`]). The submodules hold client frames ([`frames`]), temporary
//! directories ([`tmp`]) and what a test can observe of a server ([`observe`]); all re-exported
//! here, so `use common::*` brings everything.
#![allow(dead_code)]

pub mod frames;
pub mod observe;
pub mod tmp;

// Not every test file uses every module.
#[allow(unused_imports)]
pub use frames::*;
#[allow(unused_imports)]
pub use observe::*;
#[allow(unused_imports)]
pub use tmp::*;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use partyring::{
    ws::OpCode,
    Config, Server,
    {runtime::CoreStats, shard},
};

/// How long any single read in a test may wait.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Server,
    pub threads: usize,
}

impl TestServer {
    pub fn handoffs_sent(&self) -> u64 {
        self.server
            .stats
            .iter()
            .map(|s| CoreStats::get(&s.handoffs_sent))
            .sum()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }
}

/// Polls `pred` every 10 ms until it holds; panics naming `what` after 10 s. For waiting on an
/// event the test cannot be told about directly, instead of sleeping a guessed time.
pub fn eventually(what: &str, pred: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(10), pred);
}

/// [`eventually`], giving up after `limit` instead: for an event due at a known later time.
pub fn eventually_within(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` to completion on a fresh monoio runtime (io_uring, or epoll where that is missing)
/// with the timer on: the storage engine's tests drive it directly, without a server.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// `Config::test(threads)` in the ring mode that `PARTYRING_RING_MODE` names, the receive mode
/// that `PARTYRING_WS_RECV` names and the send mode that `PARTYRING_WS_SEND` names, if set: CI
/// runs the suites once per mode (.ci/run), and the binary reads the same variables itself.
pub fn config(threads: usize) -> Config {
    let mut config = Config::test(threads);
    if let Ok(mode) = std::env::var("PARTYRING_RING_MODE") {
        config.ring_mode = mode.parse().expect("PARTYRING_RING_MODE is a ring mode");
    }
    if let Ok(mode) = std::env::var("PARTYRING_WS_RECV") {
        config.ws_recv = mode.parse().expect("PARTYRING_WS_RECV is a receive mode");
    }
    if let Ok(mode) = std::env::var("PARTYRING_WS_SEND") {
        config.ws_send = mode.parse().expect("PARTYRING_WS_SEND is a send mode");
    }
    config
}

/// Starts a server with `threads` cores and the test defaults.
pub fn start(threads: usize) -> TestServer {
    start_with(threads, |_| {})
}

/// Starts a server with `threads` cores after `tweak` adjusts the config.
pub fn start_with(threads: usize, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = config(threads);
    tweak(&mut config);
    let server = Server::start(config).expect("server starts");
    TestServer {
        addr: server.addr,
        server,
        threads,
    }
}

/// A room name of `party` owned by core `core`, unique to `tag`.
pub fn room_on_core(party: &str, core: usize, cores: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|r| shard::owner(party, r, cores) == core)
        .expect("some room lands on every core")
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    pub stream: TcpStream,
    /// Bytes read and not yet consumed.
    pub buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads more bytes; returns 0 at EOF. Panics on timeout.
    pub fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return 0,
                Err(e) => panic!("read failed (timeout?): {e}"),
            }
        }
    }

    /// Reads one response (body by Content-Length; `head_only` for HEAD requests).
    pub fn response_for(&mut self, head_only: bool) -> HttpResponse {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf).expect("valid response") {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = if head_only || matches!(status, 100 | 101 | 204 | 304) {
                    0
                } else {
                    headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .map(|(_, v)| v.parse().unwrap())
                        .expect("every response but 204 and 304 has Content-Length")
                };
                while self.buf.len() < n + len {
                    assert!(self.fill() > 0, "EOF inside a response body");
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return HttpResponse {
                    status,
                    headers,
                    body,
                };
            }
            assert!(
                self.fill() > 0,
                "EOF before a complete response: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    pub fn response(&mut self) -> HttpResponse {
        self.response_for(false)
    }

    /// Sends a request and reads its response.
    pub fn request(&mut self, bytes: &[u8]) -> HttpResponse {
        self.send(bytes);
        self.response()
    }

    /// True if the server closes the connection (EOF or reset) within `IO_TIMEOUT`,
    /// discarding anything it still sends.
    pub fn closed_by_server(&mut self) -> bool {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = [0u8; 65536];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        false
    }

    // ---- WebSocket ----

    /// Upgrades to a WebSocket on `path`; panics unless the answer is 101.
    pub fn ws_connect(addr: SocketAddr, path: &str) -> Client {
        let mut c = Client::connect(addr);
        let resp = c.request(ws_upgrade(path).as_bytes());
        assert_eq!(resp.status, 101, "upgrade refused: {}", resp.text());
        c
    }

    pub fn ws_send(&mut self, opcode: OpCode, payload: &[u8]) {
        self.send(&frame(true, opcode, payload));
    }

    /// Reads one server frame: (fin, opcode byte, payload). Panics on EOF or timeout.
    pub fn ws_frame(&mut self) -> (bool, u8, Vec<u8>) {
        self.try_ws_frame().expect("EOF before a frame")
    }

    /// Reads one server frame, or None at EOF.
    pub fn try_ws_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        let (b0, payload) = self.try_ws_raw_frame()?;
        Some((b0 & 0x80 != 0, b0 & 0x0f, payload))
    }

    /// Reads one server frame as its first byte (FIN, RSV bits, opcode) and payload, or None at
    /// EOF. Panics on a read timeout.
    pub fn try_ws_raw_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are never masked");
                let (len, hdr) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n @ 0..=125 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if hdr > 0 && self.buf.len() >= hdr + len {
                    let b0 = self.buf[0];
                    let payload = self.buf[hdr..hdr + len].to_vec();
                    self.buf.drain(..hdr + len);
                    return Some((b0, payload));
                }
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// Reads frames until one with `opcode` and returns its payload; the frames before it are
    /// skipped, but a close frame before it fails the test.
    pub fn ws_next(&mut self, opcode: u8) -> Vec<u8> {
        loop {
            let (_, op, payload) = self.ws_frame();
            if op == opcode {
                return payload;
            }
            assert_ne!(
                op, 0x8,
                "closed before a frame of opcode {opcode}: {payload:?}"
            );
        }
    }

    /// Reads frames until a close frame; returns its code (None for an empty payload).
    pub fn ws_close_code(&mut self) -> Option<u16> {
        loop {
            let (_, op, payload) = self.ws_frame();
            if op == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }
}

/// A valid upgrade request for `path` (RFC 6455's example key).
pub fn ws_upgrade(path: &str) -> String {
    ws_upgrade_with(path, "")
}

/// [`ws_upgrade`] with `headers` (whole lines, each ending in CRLF) added.
pub fn ws_upgrade_with(path: &str, headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// A GET request for `path`.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// Sends `method path` with `body` (and its Content-Length) on a fresh connection; returns the
/// response.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> HttpResponse {
    Client::connect(addr).request(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// The message history of `main` room `room` (a GET on a fresh connection, which must be 200).
pub fn history(addr: SocketAddr, room: &str) -> Vec<String> {
    let r = Client::connect(addr).request(get(&format!("/parties/main/{room}")).as_bytes());
    assert_eq!(r.status, 200, "history of {room}: {}", r.text());
    serde_json::from_slice(&r.body).expect("history is a JSON array of strings")
}

/// A POST of `{"message": msg}` to `path`.
pub fn post_message(path: &str, msg: &str) -> String {
    let body = serde_json::json!({ "message": msg }).to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A child server process, killed (if still running) when the test ends, even by a panic.
pub struct ChildServer(pub std::process::Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `partyring` binary with `args` (plus `--port 0`); returns the child and the
/// address it printed on stdout.
pub fn spawn_binary(args: &[&str]) -> (ChildServer, SocketAddr) {
    // Storage in memory unless the test asks for a data directory: tests run in parallel and
    // must not share (or lock) one.
    let storage: &[&str] = if args.iter().any(|a| a.starts_with("--data-dir")) {
        &[]
    } else {
        &["--persist", "false"]
    };
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_partyring"));
    cmd.args(["--port", "0"])
        .args(storage)
        .args(args)
        .stderr(std::process::Stdio::null());
    spawn_command(cmd)
}

/// Spawns `cmd` (a partyring server the test set up: flags, environment, stderr) with stdout
/// piped; returns the child and the address of its "listening on http://ADDR" line.
pub fn spawn_command(mut cmd: std::process::Command) -> (ChildServer, SocketAddr) {
    use std::io::BufRead;
    let mut child = ChildServer(
        cmd.stdout(std::process::Stdio::piped())
            .spawn()
            .expect("binary starts"),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no address printed: {line:?}"));
    (child, addr)
}
