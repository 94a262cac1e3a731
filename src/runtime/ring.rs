//! Building a core's event loop: which io_uring setup flags, or the epoll driver.
//!
//! Owns: the choice of [`RingMode`] for one core and the monoio runtime built for it.
//! Does not own: anything that runs on the loop (see `core`).
//!
//! Why it matters (measured in PERF.md §1e; background in docs/ring-modes.md): on a ring built
//! with no setup flags, every completion that another CPU produces (a socket woken by the
//! client's send, say) makes the kernel *interrupt* the core's running thread so that it posts
//! the completion at once. Under keep-alive HTTP that was half an inter-processor interrupt per
//! request and a sixth of the server's CPU. `COOP_TASKRUN` drops the interrupt (the completion
//! is posted at the thread's next kernel entry); `DEFER_TASKRUN` goes further and posts
//! completions only when the thread waits in the ring.
//!
//! `DEFER_TASKRUN` is safe here because of how monoio 0.2.4's loop waits (its
//! `driver/uring/mod.rs::inner_park`): whenever the run queue is empty it calls
//! `io_uring_enter` with `GETEVENTS` (`submit_and_wait(1)`, or with a timeout when a timer is
//! pending), and that is where the kernel runs the deferred work. Two calls do *not* wait: a
//! plain `submit` when tasks are still queued after a round of the run queue (a task that
//! yielded, say), and the park that found a cross-thread waker queued (monoio's `sync`
//! feature). The first is harmless: only a completion can wake a task that waits for IO, so the
//! run queue empties and the next park waits. A core that received a cross-thread wake at every
//! single park, though, would never reap its sockets. Cross-thread
//! wakes therefore must not come as a stream: the inbox (connections handed over, fetches,
//! shutdown) rings a [`Doorbell`](super::doorbell::Doorbell), an eventfd read through the ring
//! like any socket, not a monoio waker. The remaining cross-thread wakes are single replies
//! (a `/metrics` scrape's snapshots, a cross-core party fetch's answer), at most one per
//! request in flight, and each delays reaping by one loop pass at most. Timers, alarms, storage
//! group commit and party fetches all wait through the ring (timeouts and file ops are ring
//! ops), so they reap completions like a socket read does. The epoll fallback has no deferred
//! work at all.

use std::io;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

pub use crate::config::RingMode;

/// The runtime type every core runs, whichever driver it got.
pub type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<IoUringDriver>,
    monoio::time::TimeDriver<LegacyDriver>,
>;

/// Submission queue entries per ring (monoio's default is 1,024). A loop pass that flushes
/// thousands of WebSocket writes submits them in one `io_uring_enter` when they fit.
const RING_ENTRIES: u32 = 4096;

/// The modes `Auto` tries, fastest first.
const AUTO_ORDER: [RingMode; 4] = [
    RingMode::Defer,
    RingMode::Coop,
    RingMode::Plain,
    RingMode::Epoll,
];

/// Builds the event loop for `mode` on the calling thread (a ring with `SINGLE_ISSUER` belongs
/// to the thread that made it). `Auto` takes the first mode of [`AUTO_ORDER`] the kernel
/// accepts; a forced mode that fails is an error, never a silent fallback, so an A/B run
/// measures what it asked for.
///
/// # Returns
/// The runtime and the mode it really uses (never `Auto`).
///
/// # Errors
/// The forced mode cannot be built here, or (`Auto`) not even the epoll driver could be.
pub fn build(mode: RingMode) -> io::Result<(Runtime, RingMode)> {
    if mode != RingMode::Auto {
        return build_exact(mode).map(|rt| (rt, mode));
    }
    // monoio's own probe: io_uring present and offering every opcode its driver uses (and not
    // disabled with MONOIO_FORCE_LEGACY_DRIVER=1).
    let uring = monoio::utils::detect_uring();
    let mut last = None;
    for m in AUTO_ORDER {
        if m != RingMode::Epoll && !uring {
            continue;
        }
        match build_exact(m) {
            Ok(rt) => return Ok((rt, m)),
            Err(e) => {
                tracing::debug!(mode = %m, error = %e, "ring mode unavailable; trying the next");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no event loop driver available")))
}

fn build_exact(mode: RingMode) -> io::Result<Runtime> {
    let mut urb = io_uring::IoUring::builder();
    match mode {
        RingMode::Epoll => {
            return RuntimeBuilder::<LegacyDriver>::new()
                .with_entries(RING_ENTRIES)
                .enable_timer()
                .build()
                .map(Into::into)
        }
        RingMode::Defer => {
            urb.setup_single_issuer().setup_defer_taskrun();
        }
        RingMode::Coop => {
            urb.setup_coop_taskrun().setup_taskrun_flag();
        }
        RingMode::Plain => {}
        RingMode::Auto => unreachable!("resolved by build"),
    }
    RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(RING_ENTRIES)
        .uring_builder(urb)
        .enable_timer()
        .build()
        .map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mode this kernel offers builds a loop that runs timers and socket IO; `Auto`
    /// resolves to a concrete mode.
    #[test]
    fn each_available_mode_runs_io_and_timers() {
        let (_, auto) = build(RingMode::Auto).expect("some driver builds");
        assert_ne!(auto, RingMode::Auto);
        for mode in AUTO_ORDER {
            let Ok(mut rt) = build_exact(mode) else {
                // Older kernels lack DEFER/COOP; the fallback order covers them.
                assert_ne!(mode, RingMode::Epoll, "the epoll driver always builds");
                continue;
            };
            let echoed = rt.block_on(async {
                let l = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                let client = monoio::spawn(async move {
                    use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};
                    let mut s = monoio::net::TcpStream::connect(addr).await.unwrap();
                    let (r, _) = s.write_all(b"ping").await;
                    r.unwrap();
                    let (r, buf) = s.read_exact(vec![0u8; 4]).await;
                    r.unwrap();
                    buf
                });
                let (mut s, _) = l.accept().await.unwrap();
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};
                let (r, buf) = s.read_exact(vec![0u8; 4]).await;
                r.unwrap();
                let (r, _) = s.write_all(buf).await;
                r.unwrap();
                client.await
            });
            assert_eq!(echoed, b"ping", "mode {mode}");
        }
    }
}
