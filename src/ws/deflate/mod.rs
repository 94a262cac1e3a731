//! permessage-deflate (RFC 7692): compressed messages with no compression state per
//! connection.
//!
//! - `offer`: reading the client's `Sec-WebSocket-Extensions` offers and writing our answer,
//!   which always adds `server_no_context_takeover; client_no_context_takeover`.
//! - `codec`: the core's one inflater and its compressors (a thread-local: one per core), and
//!   [`OutFrames`], which encodes a message's plain and compressed frames once each.
//!
//! What a connection keeps is one byte: the window bits it agreed to (0 when it did not
//! negotiate the extension), in `WsConn` and as a flag in its `Decoder`. The RSV1 rules are
//! header rules and live in `frame.rs`; reassembling a compressed message and checking its
//! inflated size and UTF-8 live in `message.rs`, which calls [`inflate`] once per message.
//!
//! Why no context takeover: with it, each connection would hold a compressor (a few hundred
//! KiB with a 32 KiB window) and an inflater (~40 KiB) for its whole life, a hundred times the
//! ~2 KiB an idle connection costs here, and a broadcast would have to compress once per member
//! instead of once. Without it, chat-sized JSON still shrinks several times over, because the
//! repetition deflate finds is mostly inside each message.

pub mod codec;
pub mod offer;

pub use codec::{inbound_payload, inflate, set_threshold, OutFrames, DEFAULT_THRESHOLD};
#[cfg(feature = "internals")]
pub use codec::compressed_frame;
pub use offer::{negotiate, Agreed, Malformed};
