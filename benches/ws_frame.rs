//! WebSocket codec micro-benches: the per-byte and per-message costs on the hot path.
//!
//! - decode: a read full of small masked text frames (chat traffic: header + unmask + UTF-8 per
//!   frame, all on the zero-copy path) and one 64 KiB binary frame (unmask-bound).
//! - encode_frame: the once-per-broadcast encode (one exact allocation + copy).
//! - unmask: the XOR loop alone, across sizes that hit its tail and its word loop.
//!
//! Reading the numbers: `encode_frame/64KiB` is dominated by one 64 KiB `memcpy`, whose speed
//! depends on where the allocator puts source and destination. On AMD Zen with glibc 2.36 the
//! `rep movsb` path is ~20x slower when the two are 4 KiB-aliased, so that bench can swing
//! between ~2 and ~40 GiB/s with no change in this crate.
//!
//! The decoder unmasks in place, so decode benches feed a fresh copy of the input each iteration
//! (`iter_batched_ref`; the copy is made in setup and is not timed).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use partyring::ws::{encode_client_frame, encode_frame, unmask, Decoder, Message, OpCode};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// A typical chat/presence message: 20 bytes of JSON-ish text.
const SMALL_TEXT: &[u8] = b"{\"t\":\"move\",\"x\":12}!";
const SMALL_FRAMES: usize = 200;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_decode");

    let small: Vec<u8> = (0..SMALL_FRAMES)
        .flat_map(|_| encode_client_frame(true, OpCode::Text, SMALL_TEXT, MASK))
        .collect();
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("text_20B_x200", |b| {
        let mut dec = Decoder::new(16 << 20);
        b.iter_batched_ref(
            || small.clone(),
            |buf| {
                let mut n = 0usize;
                dec.feed(buf, &mut |m| {
                    if let Message::Text(t) = m {
                        n += t.len();
                    }
                })
                .unwrap();
                black_box(n)
            },
            BatchSize::SmallInput,
        );
    });

    let big = encode_client_frame(true, OpCode::Binary, &vec![0xA5; 64 << 10], MASK);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("binary_64KiB", |b| {
        let mut dec = Decoder::new(16 << 20);
        b.iter_batched_ref(
            || big.clone(),
            |buf| {
                let mut n = 0usize;
                dec.feed(buf, &mut |m| {
                    if let Message::Binary(p) = m {
                        n += p.len();
                    }
                })
                .unwrap();
                black_box(n)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_encode_frame");
    for (name, len) in [("32B", 32), ("1KiB", 1 << 10), ("64KiB", 64 << 10)] {
        let payload = vec![b'x'; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| {
            b.iter(|| encode_frame(OpCode::Text, black_box(&payload)))
        });
    }
    g.finish();
}

fn unmask_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_unmask");
    for (name, len) in [
        ("16B", 16),
        ("256B", 256),
        ("4KiB", 4 << 10),
        ("64KiB", 64 << 10),
    ] {
        let mut buf = vec![0x5Au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        // XOR twice is identity, so reusing the buffer keeps the input realistic without setup.
        g.bench_function(name, |b| {
            b.iter(|| unmask(black_box(&mut buf), black_box(MASK), black_box(1)))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode, unmask_bench);
criterion_main!(benches);
