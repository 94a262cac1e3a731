//! partyring: a PartyKit-compatible realtime room server, thread-per-core on io_uring.
//!
//! Rooms live at `/parties/:party/:room` (and `/party/:room` for party `main`). A room's
//! WebSockets, broadcasts and message history all stay on one core, chosen by a stable hash of
//! party and room; a connection that arrives on another core is handed to the owner before
//! anything is answered. Nothing on the hot path is shared between cores.
//!
//! # Layers
//!
//! Each layer depends only on the ones below it; `.ci/layers.py` fails CI on an import cycle
//! between modules (or between the files of one module) and on a file in `src/` over 800 lines.
//!
//! 1. **Pure leaves** (no IO, no cores, fuzzed and table-tested):
//!    - [`config`]: every knob, with its default, and `Config::validate`;
//!    - [`shard`]: which core owns a room (a stable hash; an external contract);
//!    - `router`: request target → party and room;
//!    - `http`: HTTP/1.1 head parsing, body framing, responses, the error table, `session`
//!      (one connection's state machine: bytes and time in, actions out), `cors`, `client`
//!      (the party-fetch request and response codec), `static_files` (request target to a
//!      path under `--serve DIR`);
//!    - `ws`: RFC 6455 frames, masking, the streaming decoder, close codes, `handshake`,
//!      `upgrade` (the upgrade checks and the 101), `session` (one WebSocket's state machine:
//!      close handshake and ping liveness), `deflate` (permessage-deflate, RFC 7692);
//!    - `storage`: per-core durable key-value storage (append-only log, group commit, replay,
//!      compaction, repair, fault injection);
//!    - `metrics`: per-core counters, the snapshot type and the Prometheus rendering.
//! 2. **IO primitives**, `net`: listeners, raw non-blocking socket calls, each WebSocket's
//!    bounded outbound queue with the core's flusher, and `poller`, the epoll instance where
//!    open WebSockets wait (generic over what waits: the runtime's WebSocket reader). They know
//!    sockets, not rooms or cores.
//! 3. **The application** (what a party author uses):
//!    - [`room`]: the room handle parties get (connections, broadcast, storage, alarm, state,
//!      other parties' rooms), the party-facing [`room::Connection`], the per-core room table,
//!      and [`room::RoomHost`], the one narrow trait through which a room reaches its core;
//!    - [`party`]: the Party API (the `Party` trait, hooks, `Request`, `Reply`), the party set
//!      and its panic guard, crons, and the built-in parties (`main`: PartyKit's
//!      MessageServer, which owns its history and output gate; `echo`);
//!    - [`yjs`]: Yjs documents in rooms for y-partykit clients, the built-in `yjs` party.
//! 4. **`runtime`**, the only layer that names `Core`: starting the cores ([`Server`], its
//!    [`Builder`]), the per-core state and event loop, the HTTP and WebSocket connection tasks
//!    (IO drivers around the sans-IO sessions), the route table (party, `/metrics`, static
//!    files, `on_fetch`, the demo page), the inbox and handoff between cores (the only `Send`
//!    code), alarms, crons, the party-fetch transport and the `/metrics` endpoint; `demo` is
//!    the chat page at `/` and its vendored partysocket bundle.
//!
//! The public API is layer 3, [`config`], [`shard`] and the re-exports below. The other
//! modules are crate-private unless the `internals` feature is on (the fuzz targets, benches
//! and integration tests turn it on), so the compiler reports what nothing uses.
//!
//! # Data path
//!
//! ```text
//! core k (one OS thread, one monoio ring, !Send state)
//!  net::listener  accept on core k's SO_REUSEPORT socket (the kernel picks k, not us)
//!   -> runtime::http_conn  readiness, then recv into the connection's buffer
//!   -> http::session  Read more | error: status + close | a complete request:
//!   -> router  /parties/:party/:room -> (party, room)
//!   -> shard::owner(party, room) == k ?
//!        no  -> runtime::handoff: fd + unanswered bytes -> owner's inbox; k forgets it
//!        yes -> upgrade ? ws::upgrade: 101, join the room, park in net::poller
//!                       : body (http::body) -> party.on_request -> response -> one send per batch
//!  ws: the core's epoll fd readable (one io_uring poll) -> epoll_wait: the ready sockets
//!   -> each: recv into the core's buffer -> ws::session (decoder) -> party.on_message
//!   -> room broadcast: encode the frame once (Rc) -> each member's Outbox
//!   -> the core's flusher, once per pass: one send of everything queued per member (an
//!      io_uring SQE, 16 per enter; a sendmsg where the kernel has no such ring)
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
pub mod shard;
pub mod yjs;

internal!(demo, http, metrics, net, router, runtime, storage, ws);

pub use config::Config;
pub use http::{Method, Response};
pub use metrics::{set_heap_probe, set_heap_trim};
pub use runtime::{Builder, CoreStats, Server};
pub use storage::{faults, repair, Durable, ListOptions, Repaired, StorageError, MAX_VALUE_BYTES};
pub use ws::{deflate::DEFAULT_THRESHOLD as DEFAULT_COMPRESSION_THRESHOLD, Message, OpCode};
