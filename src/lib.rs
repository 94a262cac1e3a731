//! partyring: a PartyKit-compatible realtime room server, thread-per-core on io_uring.
//!
//! Rooms live at `/parties/:party/:room` (and `/party/:room` for party `main`). A room's
//! WebSockets, broadcasts and message history all stay on one core, chosen by a stable hash of
//! party and room; a connection that arrives on another core is handed to the owner before
//! anything is answered. Nothing on the hot path is shared between cores.
//!
//! # Layout
//!
//! - [`config`]: every knob, with its default.
//! - [`runtime`]: starting the cores ([`runtime::Server`], its builder takes the parties);
//!   `shard` (which core owns a room), `handoff` (moving a connection, a party fetch or a
//!   metrics request to another core: the only `Send` code), `core` (the per-thread state and
//!   accept/inbox loops), `alarms` (each core's room alarm timer), `fetch` (party-to-party),
//!   `cron` (scheduled handlers, on core 0).
//! - [`net`]: sockets. `conn` (the HTTP/1.1 connection loop), `ws_conn` (a WebSocket's reader),
//!   `ws_poll` (the core's epoll instance where open WebSockets wait, with no task each),
//!   `writer` (each WebSocket's bounded outbound queue and the core's flusher), `sock` (raw
//!   non-blocking syscalls), `assets` (requests outside the rooms: static files, `on_fetch`).
//! - [`http`]: sans-IO HTTP/1.1: head parsing, body framing, responses, the error table,
//!   `static_files` (request target to a path under `--serve DIR`, validators).
//! - [`ws`]: sans-IO RFC 6455: handshake, frames, masking, the streaming decoder, close codes;
//!   `deflate` (permessage-deflate, RFC 7692: the negotiation and each core's codec).
//! - [`router`]: request target → party and room.
//! - [`room`]: the room handle parties get (connections, broadcast, storage, alarm, state,
//!   other parties' rooms, the `main` history) and the per-core room table.
//! - [`party`]: the Party API (the `Party` trait, hooks, `Reply`, `Connection`), the built-in
//!   parties (`main`: PartyKit's MessageServer; `echo`), and the panic guard around every
//!   party handler.
//! - [`yjs`]: Yjs documents in rooms for y-partykit clients (the y-websocket protocol on yrs,
//!   awareness, snapshot/history persistence in room storage), the built-in `yjs` party.
//! - [`storage`]: per-core durable key-value storage (append-only log, group commit, replay,
//!   compaction), opened by each core at start under `data_dir` (or in memory with
//!   `persist: false`); rooms reach it through [`room::RoomStorage`].
//! - [`demo`]: the chat page at `/` and its vendored partysocket bundle, embedded in the binary.
//! - [`metrics`]: `GET /metrics` (Prometheus text format): plain per-core counters, gathered
//!   from every core through the inboxes on request.
//!
//! # Data path
//!
//! ```text
//! core k (one OS thread, one monoio ring, !Send state)
//!  net::listener  accept on core k's SO_REUSEPORT socket (the kernel picks k, not us)
//!   -> net::conn  readiness, then recv into the connection's buffer
//!   -> http::parse  Partial -> read more | Err -> status + close | Complete(head)
//!   -> router  /parties/:party/:room -> (party, room)
//!   -> shard::owner(party, room) == k ?
//!        no  -> runtime::handoff: fd + unanswered bytes -> owner's inbox; k forgets it
//!        yes -> upgrade ? 101, join the room, park in net::ws_poll
//!                       : body (http::body) -> party.on_request -> response -> one send per batch
//!  ws: the core's epoll fd readable (one io_uring poll) -> epoll_wait: the ready sockets
//!   -> each: recv into the core's buffer -> ws::Decoder -> party.on_message
//!   -> room broadcast: encode the frame once (Rc) -> each member's Outbox
//!   -> the core's flusher, once per pass: one sendmsg of everything queued per member
//! ```
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

/// Declares an internal module: public with the `internals` feature (fuzz targets, benches,
/// integration tests), crate-private otherwise, so that what no party author can reach and
/// nothing in the crate uses is reported as dead code.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    )*};
}

pub mod config;
pub mod party;
pub mod room;
pub mod yjs;

internal!(demo, http, metrics, net, router, runtime, shard, storage, ws);

pub use config::Config;
pub use http::{Method, Response};
pub use metrics::set_heap_probe;
pub use runtime::{Builder, CoreStats, Server};
pub use storage::{faults, repair, Durable, ListOptions, Repaired, StorageError};
pub use ws::{deflate::DEFAULT_THRESHOLD as DEFAULT_COMPRESSION_THRESHOLD, Message, OpCode};
