//! Close codes (RFC 6455 7.4): the named codes the server sends, and which codes a peer may put
//! on the wire.
//!
//! Owns: the constants and `is_valid_wire_code`. A leaf: it imports nothing, and the rest of
//! `ws` builds on it. Does not own: encoding the close frame (`frame::encode_close`), mapping
//! protocol errors to codes (`error::WsError::close_code`), reading a received Close payload
//! (`message::parse_close_payload`, where the decoder checks it) or the closing handshake
//! itself (the connection echoes the peer's Close and then shuts the socket).

/// 1000: the purpose of the connection has been fulfilled.
pub const NORMAL: u16 = 1000;
/// 1001: the endpoint is going away (server shutdown, browser navigating away).
pub const GOING_AWAY: u16 = 1001;
/// 1002: the peer broke the framing or fragmentation rules.
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1003: the endpoint received a kind of data it cannot accept.
pub const UNSUPPORTED: u16 = 1003;
/// 1007: a message's data was not consistent with its type (non-UTF-8 text).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: a policy was violated (generic; used when no more specific code fits).
pub const POLICY: u16 = 1008;
/// 1009: a message was too big to process.
pub const TOO_BIG: u16 = 1009;
/// 1011: the server hit an unexpected condition.
pub const INTERNAL: u16 = 1011;
/// 1005: local-only: the peer's close frame had no code (never sent on the wire).
pub const NO_STATUS: u16 = 1005;
/// 1006: local-only: the connection ended without a close frame (never sent on the wire).
pub const ABNORMAL: u16 = 1006;
/// 1013: the server is overloaded; the client should retry later (IANA registry).
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Whether `code` may appear in a Close frame on the wire.
///
/// Valid: 1000-1003 and 1007-1014 (RFC 6455 plus the IANA-registered 1012 service restart, 1013
/// try again later, 1014 bad gateway), and 3000-4999 (registered libraries and private use).
/// Invalid: 0-999 (unused), 1004 (reserved), 1005 and 1006 (RFC 6455 7.4.1: "MUST NOT be set as a
/// status code in a Close control frame", they are local-only "no code" / "abnormal"), 1015
/// (TLS failure, also local-only), and 1016-2999 (reserved for future RFCs: a peer cannot know
/// what they mean yet). Codes from 5000 up are outside the defined ranges.
pub const fn is_valid_wire_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_code_table() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ];
        let invalid = [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for c in valid {
            assert!(is_valid_wire_code(c), "{c} should be valid");
        }
        for c in invalid {
            assert!(!is_valid_wire_code(c), "{c} should be invalid");
        }
    }

    #[test]
    fn named_codes_are_sendable() {
        for c in [
            NORMAL,
            GOING_AWAY,
            PROTOCOL_ERROR,
            UNSUPPORTED,
            INVALID_PAYLOAD,
            POLICY,
            TOO_BIG,
            INTERNAL,
            TRY_AGAIN_LATER,
        ] {
            assert!(is_valid_wire_code(c), "{c}");
        }
    }
}
