//! The key exchange of the opening handshake (RFC 6455 4.2): checking the client's
//! `Sec-WebSocket-Key` and computing `Sec-WebSocket-Accept`.
//!
//! Owns: the two key functions. Does not own: the rest of the upgrade request (method, `Upgrade`,
//! `Connection`, `Sec-WebSocket-Version: 13`) or writing the 101 response; those are HTTP
//! concerns and live with the HTTP code, which calls in here for the key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID every server appends to the client's key (RFC 6455 1.3). It proves the server speaks
/// WebSocket, nothing more; it is not a secret.
pub const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key ++ GUID)).
///
/// `key` is the header value as received (already trimmed; see [`valid_key`]). The key is hashed
/// as text, not decoded first: that is what the RFC specifies.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    STANDARD.encode(sha.finalize())
}

/// Whether a `Sec-WebSocket-Key` value is well formed: after trimming optional whitespace (the
/// header grammar's OWS: spaces and tabs), it is base64 that decodes to exactly 16 bytes (4.1:
/// "a randomly selected 16-byte value that has been base64-encoded").
pub fn valid_key(key: &[u8]) -> bool {
    let key = trim_ows(key);
    // 16 bytes always encode to 22 characters plus "==", so anything else is wrong before we
    // decode; checking first also bounds the stack buffer below.
    if key.len() != 24 {
        return false;
    }
    // The base64 crate sizes its output check conservatively (3 bytes per 4 characters = 18).
    let mut out = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut out), Ok(16))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn key_validation_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"dGhlIHNhbXBsZSBub25jZQ==", true),
            (b"  dGhlIHNhbXBsZSBub25jZQ==\t", true),
            (b"AAAAAAAAAAAAAAAAAAAAAA==", true),
            (b"", false),
            (b"   ", false),
            // 15 and 17 bytes.
            (b"AAAAAAAAAAAAAAAAAAAA", false),
            (b"AAAAAAAAAAAAAAAAAAAAAAA=", false),
            // Right length, not base64, or padding in the wrong place.
            (b"dGhlIHNhbXBsZSBub25jZQ!=", false),
            (b"dGhlIHNhbXBsZSBub25jZ===", false),
            (b"dGhlIHNhbXBsZSBub25jZQ", false),
            // Interior whitespace is not trimmed.
            (b"dGhlIHNhbXBs ZSBub25jZQ==", false),
            // Non-canonical trailing bits (the last character must end in zero bits).
            (b"dGhlIHNhbXBsZSBub25jZR==", false),
        ];
        for &(key, want) in cases {
            assert_eq!(valid_key(key), want, "{:?}", String::from_utf8_lossy(key));
        }
    }
}
