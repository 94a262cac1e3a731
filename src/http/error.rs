//! One `Copy` error per rule a request can break, and the one table mapping it to a status.
//!
//! Every variant closes the connection after its response: once framing is in doubt, the next
//! byte on the wire cannot be trusted to start a request.

use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// httparse refused the head (bad token, bad version, obs-fold, NUL, ...).
    Malformed(&'static str),
    /// The head grew past `max_head_bytes` without ending.
    HeadTooLarge,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// The request target is longer than `max_target_bytes`.
    UriTooLong,
    /// The body (declared or decoded) is larger than `max_body_bytes`.
    BodyTooLarge,
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// More than one `Content-Length` field.
    DuplicateContentLength,
    /// A `Content-Length` that is not a plain decimal number that fits in 64 bits.
    InvalidContentLength,
    /// `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 6.1: the framing is faulty).
    TransferEncodingInHttp10,
    /// A transfer coding other than a lone `chunked`.
    UnsupportedTransferEncoding,
    /// Bad chunk size line, missing CRLF after chunk data, oversized extension or trailer.
    InvalidChunk(&'static str),
    /// `Expect` with something other than `100-continue`.
    UnsupportedExpectation,
    /// HTTP/1.1 request without `Host` (RFC 9112 3.2).
    MissingHost,
    /// The request did not fully arrive within `header_timeout`.
    Timeout,
}

impl HttpError {
    /// The status code sent for this error.
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UriTooLong => 414,
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::UnsupportedExpectation => 417,
            HttpError::Timeout => 408,
            HttpError::Malformed(_)
            | HttpError::LengthAndChunked
            | HttpError::DuplicateContentLength
            | HttpError::InvalidContentLength
            | HttpError::TransferEncodingInHttp10
            | HttpError::InvalidChunk(_)
            | HttpError::MissingHost => 400,
        }
    }

    /// The one-line reason sent as the body and logged.
    pub fn reason(self) -> &'static str {
        match self {
            HttpError::Malformed(why) => why,
            HttpError::HeadTooLarge => "Request header fields too large",
            HttpError::TooManyHeaders => "Too many header fields",
            HttpError::UriTooLong => "Request target too long",
            HttpError::BodyTooLarge => "Request body too large",
            HttpError::LengthAndChunked => "Both Content-Length and Transfer-Encoding",
            HttpError::DuplicateContentLength => "More than one Content-Length",
            HttpError::InvalidContentLength => "Invalid Content-Length",
            HttpError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            HttpError::UnsupportedTransferEncoding => "Only chunked transfer coding is supported",
            HttpError::InvalidChunk(why) => why,
            HttpError::UnsupportedExpectation => "Only Expect: 100-continue is supported",
            HttpError::MissingHost => "Missing Host header",
            HttpError::Timeout => "Request timeout",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for HttpError {}
