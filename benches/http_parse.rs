//! Request-head parsing (`http::parse_head`), on the requests the server really sees: a small
//! keep-alive GET (wrk's), a partysocket WebSocket upgrade, a POST, and a head with many headers.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use partyring::http::{parse::head_end, parse_head, Limits};

const LIMITS: Limits = Limits {
    max_head_bytes: 16 * 1024,
    max_headers: 100,
    max_target_bytes: 8 * 1024,
};

const GET: &[u8] = b"GET /parties/main/room-1 HTTP/1.1\r\nHost: 127.0.0.1:1999\r\n\r\n";
const POST: &[u8] = b"POST /parties/main/room-1? HTTP/1.1\r\nHost: 127.0.0.1:1999\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n";
const UPGRADE: &[u8] = b"GET /parties/main/room-1?_pk=4b1a3c2e-8f9d-4e6a-b7c5-1d2e3f4a5b6c HTTP/1.1\r\nHost: 127.0.0.1:1999\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn browser_like() -> Vec<u8> {
    let mut req = b"GET /parties/main/room-1 HTTP/1.1\r\nHost: example.com\r\n".to_vec();
    for i in 0..30 {
        req.extend_from_slice(
            format!("X-Header-{i}: some-value-{i}-with-a-bit-of-length\r\n").as_bytes(),
        );
    }
    req.extend_from_slice(b"\r\n");
    req
}

fn bench(c: &mut Criterion) {
    let many = browser_like();
    let mut group = c.benchmark_group("parse_head");
    for (name, req) in [
        ("get", GET),
        ("post", POST),
        ("upgrade", UPGRADE),
        ("30_headers", &many[..]),
    ] {
        group.throughput(Throughput::Bytes(req.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = black_box(req);
                assert!(head_end(req, 0));
                parse_head(req, &LIMITS).unwrap().unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
