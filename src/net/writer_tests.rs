//! The writer's unit tests (`net/writer.rs`): queues, partial sends, and sends through the ring.
use std::{io::Read, os::fd::AsFd, os::unix::net::UnixStream};

use super::*;
use crate::net::block_on;
use crate::metrics::Metrics;

#[test]
fn partial_sends_keep_frame_boundaries_and_order() {
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let outbox = Outbox::new(64 << 20);
    let mut want = Vec::new();
    for i in 0..300u32 {
        // Frames of varied sizes, so sends stop mid-frame.
        let frame: Vec<u8> = (0..(i * 97 % 5000 + 1)).map(|j| (i + j) as u8).collect();
        want.extend_from_slice(&frame);
        assert_eq!(outbox.push(frame.into()), SendStatus::Queued);
    }
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 7000];
    for _ in 0..100_000 {
        match outbox.send_some(a.as_fd()) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
        }
        let n = b.read(&mut chunk).unwrap();
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(outbox.queued_bytes(), 0);
    drop(a);
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, want);
}

#[test]
fn close_frame_jumps_the_queue_when_discarding() {
    let outbox = Outbox::new(100);
    assert_eq!(outbox.push(vec![1; 60].into()), SendStatus::Queued);
    assert_eq!(outbox.push(vec![2; 60].into()), SendStatus::Backpressure);
    assert!(outbox.close_with(vec![8; 4].into(), true));
    assert_eq!(
        outbox.queued_bytes(),
        4,
        "pending frames dropped, close queued"
    );
    assert_eq!(outbox.push(vec![3; 1].into()), SendStatus::Dropped);
    assert!(
        !outbox.close_with(vec![8; 4].into(), true),
        "only one close"
    );
    outbox.shut();
    assert_eq!(
        (outbox.state(), outbox.queued_bytes()),
        (OutState::Closed, 0)
    );
}

/// Runs `test` on a fresh event loop with a running flusher that sends through a fresh ring
/// (skipped where the kernel has no such ring).
fn with_ring_flusher<F: std::future::Future<Output = ()>>(test: impl FnOnce(Rc<Flusher>) -> F) {
    let Ok(ring) = RecvRing::new(true) else {
        eprintln!("no io_uring ring on this kernel: skipped");
        return;
    };
    let ring = Rc::new(RefCell::new(ring));
    block_on(async move {
        let flusher = Flusher::new(Rc::new(Metrics::default()));
        flusher.send_through(ring);
        monoio::spawn(flusher.clone().run());
        test(flusher).await
    });
}

/// With `--ws-send ring`, three connections' queues go out through the ring's batches:
/// each peer gets exactly its own bytes, in order, across partial sends, a full socket (a
/// peer that reads slowly, so the drain task takes over) and more frames than one send
/// carries.
#[test]
fn ring_sends_keep_each_connections_bytes_and_order() {
    with_ring_flusher(|flusher| async move {
        let mut outboxes = Vec::new();
        let mut readers = Vec::new();
        for k in 0..3u32 {
            let (a, b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            outboxes.push(Outbox::attached(64 << 20, flusher.clone(), OwnedFd::from(a)));
            // The first peer reads slowly (its socket fills), the others at once.
            readers.push(std::thread::spawn(move || {
                let mut b = b;
                let mut got = Vec::new();
                let mut chunk = vec![0u8; 5000];
                loop {
                    if k == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    match b.read(&mut chunk) {
                        Ok(0) | Err(_) => return got,
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                    }
                }
            }));
        }
        let mut want = vec![Vec::new(); 3];
        for round in 0..40u32 {
            for (k, outbox) in outboxes.iter().enumerate() {
                // Varied sizes (small ones are corked, large ones sent as they are), and
                // 100 frames a round: more than one send's MAX_IOVECS.
                for i in 0..100u32 {
                    let len = ((round * 100 + i) * 97 + k as u32 * 13) % 3000 + 1;
                    let frame: Vec<u8> = (0..len).map(|j| (i + j + k as u32) as u8).collect();
                    want[k].extend_from_slice(&frame);
                    assert_eq!(outbox.push(frame.into()), SendStatus::Queued);
                }
            }
            crate::net::poller::yield_once().await;
        }
        for outbox in &outboxes {
            outbox.drained().await;
            assert_eq!(outbox.queued_bytes(), 0);
            assert_ne!(outbox.state(), OutState::Closed);
            outbox.shut();
            outbox.release_reader();
        }
        // A drain task lets go of its socket once it runs again.
        monoio::time::sleep(std::time::Duration::from_millis(20)).await;
        for (k, reader) in readers.into_iter().enumerate() {
            let got = reader.join().unwrap();
            assert!(got == want[k], "connection {k}: {} bytes, want {}", got.len(), want[k].len());
        }
    });
}

/// A send that fails through the ring (the peer is gone) shuts that connection only.
#[test]
fn a_failed_ring_send_shuts_only_its_connection() {
    with_ring_flusher(|flusher| async move {
        let (a, gone) = UnixStream::pair().unwrap();
        let (c, mut alive) = UnixStream::pair().unwrap();
        drop(gone);
        let dead = Outbox::attached(1 << 20, flusher.clone(), OwnedFd::from(a));
        let live = Outbox::attached(1 << 20, flusher.clone(), OwnedFd::from(c));
        assert_eq!(dead.push(Rc::from(&b"lost"[..])), SendStatus::Queued);
        assert_eq!(live.push(Rc::from(&b"kept"[..])), SendStatus::Queued);
        live.drained().await;
        dead.drained().await;
        assert_eq!(dead.state(), OutState::Closed);
        assert_eq!(live.state(), OutState::Open);
        let mut got = [0u8; 4];
        alive.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"kept");
    });
}
