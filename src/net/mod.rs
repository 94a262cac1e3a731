//! IO primitives: listeners, raw non-blocking socket calls, each WebSocket's bounded outbound
//! queue with the core's flusher, and the poller where idle connections wait.
//!
//! These know sockets, not rooms, parties or cores: the runtime (`runtime`) builds the
//! connection tasks on top of them, and the application layer (`room`) pushes frames into an
//! [`writer::Outbox`] without knowing how it is sent.

pub mod listener;
pub mod poller;
pub mod recv_ring;
pub mod send_batch;
pub mod sock;
pub mod writer;

/// Runs a future on a fresh monoio runtime (io_uring, else epoll) with timers: the test helper
/// of this module's tests and the runtime's.
#[cfg(test)]
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}
