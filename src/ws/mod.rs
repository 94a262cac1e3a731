//! RFC 6455 WebSocket, server side, sans-IO: bytes in, messages out; frames out as bytes.
//!
//! Nothing in here reads or writes a socket. The connection feeds whatever it read into
//! [`Decoder::feed`], gets complete messages back through a callback, and writes the frames the
//! encoders return. That keeps the codec fuzzable and benchable on plain byte slices.
//!
//! # The subset we implement
//!
//! - Version 13 only; one extension, permessage-deflate (RFC 7692, `deflate`), when the
//!   server has it on and the client offers it; no subprotocols. Without the extension any RSV
//!   bit is a protocol error; with it, RSV1 marks a compressed message (first frame only).
//! - Client frames must be masked; server frames are never masked.
//! - Text is validated as UTF-8 incrementally: a connection fails as soon as the first invalid
//!   byte arrives, even mid-frame or across fragments (Autobahn's "fail fast" cases).
//! - Control frames (ping, pong, close) may arrive between the fragments of a message and are
//!   delivered immediately. Answering a ping with a pong and echoing a close is the session's
//!   job (`session`), performing them its driver's.
//!
//! # Limits
//!
//! - `max_message_size` (given to [`Decoder::new`]): the sum of a message's fragment lengths. A
//!   frame header that would exceed it fails with 1009 before any of its payload is buffered.
//! - Control payloads: 125 bytes (RFC). Close reasons we send are cut to fit.
//! - A whole unfragmented frame inside one read is unmasked in place and handed out without a
//!   copy; only fragmented messages and frames split across reads are buffered.
//!
//! # Close rules
//!
//! Every protocol violation is one [`WsError`] variant; [`WsError::close_code`] is the one table
//! from error to close code (framing and protocol rules 1002, bad UTF-8 1007, too big 1009). After
//! an error the caller sends `encode_close(err.close_code(), err.reason())` and closes. A peer's
//! Close is checked (`close::is_valid_wire_code`, UTF-8 reason) before it is delivered; bytes
//! after it are ignored.
//!
//! # Module map
//!
//! - `handshake`: `Sec-WebSocket-Key` check and `Sec-WebSocket-Accept` computation.
//! - `frame`: opcodes, client header parsing (header-level rules), server frame encoding.
//! - `mask`: XOR masking, a word at a time.
//! - `message`: the streaming decoder: reassembly, UTF-8, size limit, the Close payload,
//!   delivery. Its unit tests are `message/tests.rs` and the groups under `message/tests/`.
//! - `session`: one connection's protocol state: the decoder, the closing handshake, ping
//!   liveness, what it leaves its room with (`session_tests.rs` holds its unit tests).
//! - `close`: close code constants and which codes are valid on the wire (a leaf).
//! - `error`: `WsError` and its close-code table.
//! - `deflate`: permessage-deflate: the negotiation and the core's codec.
//!
//! There is no `unsafe` in this module: word-at-a-time masking is done with safe
//! `u64::from_ne_bytes` chunks, and reassembled text is re-validated rather than trusted.

pub mod close;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod session;
pub mod upgrade;

pub use frame::{encode_close, encode_frame, OpCode};
pub use handshake::valid_key;
pub use message::{Decoder, Message};
// For the fuzz targets, benches and tests (the `internals` feature).
#[cfg(feature = "internals")]
pub use error::WsError;
#[cfg(any(test, feature = "internals"))]
pub use frame::encode_client_frame;
#[cfg(feature = "internals")]
pub use frame::{header_len, write_header};
#[cfg(feature = "internals")]
pub use handshake::accept_key;
#[cfg(feature = "internals")]
pub use mask::unmask;
