//! The HTTP/1.1 subset partyring speaks, written by hand around `httparse`.
//!
//! Accepted: HTTP/1.0 and 1.1 requests; bodies framed by `Content-Length` or
//! `Transfer-Encoding: chunked`; keep-alive (default in 1.1, opt-in in 1.0); pipelining
//! (answered in order, several responses in one write); `Expect: 100-continue`; `HEAD`.
//!
//! Rejected, always with a status, a one-line reason and `Connection: close`
//! (the table is [`error::HttpError::status`]):
//! - head over `max_head_bytes` or more than `max_headers` fields → 431;
//! - request target over `max_target_bytes` → 414; body over `max_body_bytes` → 413;
//! - `Content-Length` together with `Transfer-Encoding`, two `Content-Length`s, a
//!   `Content-Length` that is not a plain decimal, `Transfer-Encoding` in HTTP/1.0 → 400
//!   (each is a request-smuggling vector, so we refuse rather than guess);
//! - a transfer coding other than `chunked` → 501; an `Expect` other than `100-continue` → 417;
//! - an HTTP/1.1 request without `Host`, or anything httparse refuses → 400.
//!
//! Everything here is sans-IO: parsers take `&[u8]` and say how much they consumed, and
//! `session` is a whole connection's state machine (bytes and events in, actions out); the
//! socket loop that drives it lives in `runtime/http_conn.rs`.
//!
//! - `parse`: request heads; `body`: body framing; `response`: writing responses; `error`: the
//!   status table; `cors`: the CORS headers and preflights; `session`: one connection;
//!   `client`: the party-fetch client's request and response; `static_files`: request target
//!   to a path under `--serve DIR`.

pub mod body;
pub mod client;
pub mod cors;
pub mod error;
pub mod parse;
pub mod response;
pub mod session;
pub mod static_files;

pub use body::{BodyDecoder, BodyProgress};
pub use error::HttpError;
pub use parse::{parse_head, Head, Limits, Method};
pub use response::{DateCache, Response};
