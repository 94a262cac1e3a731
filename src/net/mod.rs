//! IO primitives: listeners, raw non-blocking socket calls, and each WebSocket's bounded
//! outbound queue with the core's flusher.
//!
//! These know sockets, not rooms, parties or cores: the runtime (`runtime`) builds the
//! connection tasks on top of them, and the application layer (`room`) pushes frames into an
//! [`writer::Outbox`] without knowing how it is sent.

pub mod listener;
pub mod sock;
pub mod writer;
