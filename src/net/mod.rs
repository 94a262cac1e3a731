//! Sockets: listeners, the HTTP connection loop, WebSocket connections and their writers.
//!
//! The only module that does IO. Readiness comes from the core's io_uring (monoio); bytes move
//! with non-blocking syscalls (`sock`).

pub mod assets;
pub mod conn;
pub mod listener;
pub mod sock;
pub mod writer;
pub mod ws_conn;
pub mod ws_poll;
