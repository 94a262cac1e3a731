//! `WsError`: every way a client can break RFC 6455, and the one table that turns each into the
//! close code we send back.
//!
//! Owns: the error enum, its close code (`close_code`) and its short human reason (`reason`).
//! Does not own: deciding *when* a rule is broken (that is `frame.rs` for header rules and
//! `message.rs` for message rules) or sending the close frame (the connection does that with
//! `frame::encode_close(err.close_code(), err.reason())`).
//!
//! The enum is `Copy` and one byte wide because it is returned on the per-frame hot path; nothing
//! here allocates. Every variant is a peer fault: none indicates a bug in the server.

use std::fmt;

use super::close;

/// A protocol violation by the client. After any of these the decoder is poisoned and the
/// connection must be closed with [`WsError::close_code`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum WsError {
    /// RFC 6455 5.1: "a client MUST mask all frames that it sends to the server".
    UnmaskedFrame,
    /// RSV2 or RSV3 set, or RSV1 on a connection that did not negotiate permessage-deflate: no
    /// extension gives them a meaning there (5.2).
    ReservedBitsSet,
    /// Opcode 0x3-0x7 or 0xB-0xF: reserved for future use (5.2).
    UnknownOpcode,
    /// A control frame announced a payload over 125 bytes (5.5).
    ControlFrameTooLong,
    /// A control frame with FIN clear: "control frames MUST NOT be fragmented" (5.5).
    ControlFrameFragmented,
    /// A continuation frame arrived with no fragmented message in progress (5.4).
    UnexpectedContinuation,
    /// A new Text or Binary frame arrived while a fragmented message was still open (5.4).
    ExpectedContinuation,
    /// A Text message is not valid UTF-8, detected as early as the offending byte arrives (8.1).
    InvalidUtf8,
    /// The message (sum of its fragments) would exceed the decoder's `max_message_size`.
    MessageTooBig,
    /// A 64-bit payload length with the most significant bit set (5.2 forbids it).
    LengthOverflow,
    /// A Close frame carried a code that may not appear on the wire (7.4).
    InvalidCloseCode,
    /// A Close frame with a 1-byte payload: too short to hold the 2-byte code (5.5.1).
    InvalidClosePayload,
    /// A Close frame whose reason is not UTF-8 (5.5.1).
    InvalidCloseReason,
    /// RSV1 on a control frame: control frames are never compressed (RFC 7692 §6.1).
    CompressedControlFrame,
    /// RSV1 on a continuation frame: only a message's first frame carries it (RFC 7692 §6.1).
    CompressedContinuation,
    /// A compressed message's payload is not a valid deflate stream (RFC 7692 §7.2.2).
    BadCompressedData,
}

impl WsError {
    /// The close code to send for this error. This is the one place that maps errors to the wire:
    /// framing and protocol violations are 1002, bad UTF-8 (in a message or a close reason) is
    /// 1007, and an oversize message is 1009.
    pub const fn close_code(self) -> u16 {
        use WsError::*;
        match self {
            UnmaskedFrame
            | ReservedBitsSet
            | UnknownOpcode
            | ControlFrameTooLong
            | ControlFrameFragmented
            | UnexpectedContinuation
            | ExpectedContinuation
            | LengthOverflow
            | InvalidCloseCode
            | InvalidClosePayload
            | CompressedControlFrame
            | CompressedContinuation => close::PROTOCOL_ERROR,
            InvalidUtf8 | InvalidCloseReason | BadCompressedData => close::INVALID_PAYLOAD,
            MessageTooBig => close::TOO_BIG,
        }
    }

    /// A short reason, sent as the close frame's reason and used in logs. Each is ASCII and well
    /// under the 123 bytes a close reason may take, so it is never truncated.
    pub const fn reason(self) -> &'static str {
        use WsError::*;
        match self {
            UnmaskedFrame => "client frame not masked",
            ReservedBitsSet => "reserved bits set",
            UnknownOpcode => "unknown opcode",
            ControlFrameTooLong => "control frame too long",
            ControlFrameFragmented => "control frame fragmented",
            UnexpectedContinuation => "continuation without a message",
            ExpectedContinuation => "expected a continuation frame",
            InvalidUtf8 => "invalid UTF-8 in text message",
            MessageTooBig => "message too big",
            LengthOverflow => "payload length overflow",
            InvalidCloseCode => "invalid close code",
            InvalidClosePayload => "invalid close payload",
            InvalidCloseReason => "invalid UTF-8 in close reason",
            CompressedControlFrame => "compressed control frame",
            CompressedContinuation => "RSV1 set on a continuation frame",
            BadCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for WsError {}

// Returned by value from `Decoder::feed` for every chunk read; keep it a single byte.
const _: () = assert!(std::mem::size_of::<WsError>() == 1);

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [WsError; 16] = [
        WsError::UnmaskedFrame,
        WsError::ReservedBitsSet,
        WsError::UnknownOpcode,
        WsError::ControlFrameTooLong,
        WsError::ControlFrameFragmented,
        WsError::UnexpectedContinuation,
        WsError::ExpectedContinuation,
        WsError::InvalidUtf8,
        WsError::MessageTooBig,
        WsError::LengthOverflow,
        WsError::InvalidCloseCode,
        WsError::InvalidClosePayload,
        WsError::InvalidCloseReason,
        WsError::CompressedControlFrame,
        WsError::CompressedContinuation,
        WsError::BadCompressedData,
    ];

    #[test]
    fn close_code_table() {
        for e in ALL {
            let want = match e {
                WsError::InvalidUtf8 | WsError::InvalidCloseReason | WsError::BadCompressedData => {
                    1007
                }
                WsError::MessageTooBig => 1009,
                _ => 1002,
            };
            assert_eq!(e.close_code(), want, "{e:?}");
            assert!(close::is_valid_wire_code(e.close_code()), "{e:?}");
        }
    }

    #[test]
    fn reasons_fit_a_close_frame() {
        for e in ALL {
            let r = e.reason();
            assert!(!r.is_empty() && r.len() <= 123 && r.is_ascii(), "{e:?}");
            assert!(e.to_string().starts_with(r));
        }
    }
}
