//! The frame header (RFC 6455 5.2): opcodes, parsing a client frame's header, and encoding
//! server frames.
//!
//! Owns: `OpCode`, `FrameHeader::parse` (sans-IO, and the header-level rules: reserved bits,
//! opcode, masking, control-frame limits, length overflow) and the encoders. Does not own: the
//! payload (unmasking is `mask.rs`, reassembly, UTF-8 and size limits are `message.rs`).
//!
//! ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//!  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//!  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//!  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//!  | |1|2|3|       |K|             |                               |
//!  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//!  |     Extended payload length continued, if payload len == 127  |
//!  + - - - - - - - - - - - - - - - +-------------------------------+
//!  |                               |Masking-key, if MASK set to 1  |
//!  +-------------------------------+-------------------------------+
//! ```
//!
//! Server frames are never masked (5.1), so the server encoders write 2, 4 or 10 header bytes.
//! `encode_frame` makes one exact-size allocation per message: broadcast encodes once and shares
//! the bytes among every recipient, so it must not over-allocate.

use super::error::WsError;
#[cfg(any(test, feature = "internals"))]
use super::mask::unmask;

/// The longest header a client can send: 2 + 8 (64-bit length) + 4 (masking key).
pub const MAX_HEADER_LEN: usize = 14;

/// Control frames carry at most 125 payload bytes (5.5), so their length always fits the 7-bit
/// form.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

const FIN: u8 = 0b1000_0000;
/// RSV1: "Per-Message Compressed" when permessage-deflate was negotiated (RFC 7692 §6).
const RSV1: u8 = 0b0100_0000;
/// RSV2 and RSV3: no extension we speak gives them a meaning.
const RSV23: u8 = 0b0011_0000;
const OPCODE: u8 = 0b0000_1111;
const MASKED: u8 = 0b1000_0000;
const LEN7: u8 = 0b0111_1111;

/// Frame opcode (5.2). The discriminant is the 4-bit wire value.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0 denotes a continuation frame: the next piece of a fragmented message.
    Continuation = 0x0,
    /// 0x1 denotes a text frame: the message is UTF-8.
    Text = 0x1,
    /// 0x2 denotes a binary frame.
    Binary = 0x2,
    /// 0x8 denotes a connection close.
    Close = 0x8,
    /// 0x9 denotes a ping.
    Ping = 0x9,
    /// 0xA denotes a pong.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for a 4-bit wire value, or `None` for the reserved values 0x3-0x7 and 0xB-0xF.
    pub const fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, Ping and Pong: at most 125 bytes, never fragmented, allowed between fragments.
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed client-to-server frame header. Only client frames are ever parsed, and those are
/// always masked, so the key is not optional.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: the message this frame starts is compressed. Only ever true when the parser was
    /// told permessage-deflate is on, and then only on a Text or Binary frame.
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: [u8; 4],
    /// As announced; not yet checked against any message size limit (that is `message.rs`).
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a client frame header from the start of `buf`, for a connection without
    /// extensions (any RSV bit is an error). See [`FrameHeader::parse_ext`].
    #[cfg(any(test, feature = "internals"))]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, WsError> {
        FrameHeader::parse_ext(buf, false)
    }

    /// Parses a client frame header from the start of `buf`. `deflate`: the connection
    /// negotiated permessage-deflate, so RSV1 may be set on the first frame of a data message
    /// (RFC 7692 §6.1); it is an error on a control frame and on a continuation.
    ///
    /// Returns `Ok(Some((header, header_len)))` when the whole header is present, `Ok(None)` when
    /// more bytes are needed (nothing is consumed; call again with more), and `Err` as soon as
    /// the bytes present break a rule, even if the header is not complete yet. Rules are checked
    /// in the order the header lays them out.
    pub fn parse_ext(buf: &[u8], deflate: bool) -> Result<Option<(FrameHeader, usize)>, WsError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let rsv1 = b0 & RSV1 != 0;
        if b0 & RSV23 != 0 || (rsv1 && !deflate) {
            return Err(WsError::ReservedBitsSet);
        }
        let opcode = OpCode::from_u8(b0 & OPCODE).ok_or(WsError::UnknownOpcode)?;
        if rsv1 && opcode.is_control() {
            return Err(WsError::CompressedControlFrame);
        }
        if rsv1 && opcode == OpCode::Continuation {
            return Err(WsError::CompressedContinuation);
        }
        let fin = b0 & FIN != 0;
        if opcode.is_control() && !fin {
            return Err(WsError::ControlFrameFragmented);
        }

        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        if b1 & MASKED == 0 {
            return Err(WsError::UnmaskedFrame);
        }
        let len7 = b1 & LEN7;
        if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlFrameTooLong);
        }

        // Non-minimal length encodings (e.g. 5 sent in the 16-bit form) are accepted: the RFC
        // says senders MUST use the minimal form but gives receivers no rule, and rejecting them
        // protects nothing.
        let (payload_len, at) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(WsError::LengthOverflow);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };

        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        let mask = [key[0], key[1], key[2], key[3]];
        let header = FrameHeader {
            fin,
            rsv1,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, at + 4)))
    }
}

/// Header length of an unmasked (server) frame carrying `payload_len` bytes: 2, 4 or 10.
pub const fn header_len(payload_len: usize) -> usize {
    if payload_len <= 125 {
        2
    } else if payload_len <= 0xFFFF {
        4
    } else {
        10
    }
}

/// Appends an unmasked (server) frame header to `out`, using the shortest length form.
pub fn write_header(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload_len: usize) {
    write_header_inner(out, fin, opcode, payload_len, 0);
}

/// Appends the header of a complete compressed (RSV1) server frame to `out`.
pub fn write_header_rsv1(out: &mut Vec<u8>, opcode: OpCode, payload_len: usize) {
    let at = out.len();
    write_header_inner(out, true, opcode, payload_len, 0);
    out[at] |= RSV1;
}

fn write_header_inner(out: &mut Vec<u8>, fin: bool, opcode: OpCode, len: usize, mask_bit: u8) {
    let b0 = if fin { FIN } else { 0 } | opcode as u8;
    if len <= 125 {
        out.extend_from_slice(&[b0, mask_bit | len as u8]);
    } else if let Ok(len16) = u16::try_from(len) {
        let [hi, lo] = len16.to_be_bytes();
        out.extend_from_slice(&[b0, mask_bit | 126, hi, lo]);
    } else {
        out.extend_from_slice(&[b0, mask_bit | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// One complete unmasked frame (FIN set) in a single allocation of exactly
/// `header_len(payload.len()) + payload.len()` bytes.
///
/// This is the broadcast path: encode once, then share the bytes with every recipient.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    write_header(&mut out, true, opcode, payload.len());
    out.extend_from_slice(payload);
    debug_assert_eq!(out.len(), out.capacity());
    out
}

/// A complete Close frame with `code` and `reason`.
///
/// The reason is cut at the last char boundary that keeps the payload within 125 bytes (2 for the
/// code, at most 123 for the reason), so the frame is always valid.
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let reason = truncate_at_char_boundary(reason, MAX_CONTROL_PAYLOAD - 2);
    let len = 2 + reason.len();
    let mut out = Vec::with_capacity(header_len(len) + len);
    write_header(&mut out, true, OpCode::Close, len);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    // A UTF-8 char is at most 4 bytes, so this steps back at most 3 times.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A masked frame as a client sends it: header with the MASK bit, the key, then the payload
/// XORed with the key. For tests and the load generator; the server itself never masks.
#[cfg(any(test, feature = "internals"))]
pub fn encode_client_frame(fin: bool, opcode: OpCode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + 4 + payload.len());
    write_header_inner(&mut out, fin, opcode, payload.len(), MASKED);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 4] = [1, 2, 3, 4];

    #[test]
    fn opcode_wire_values() {
        for v in 0u8..16 {
            match OpCode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op as u8, v);
                    assert_eq!(op.is_control(), v >= 8);
                }
                None => assert!(matches!(v, 3..=7 | 0xB..=0xF), "{v:#x}"),
            }
        }
    }

    #[test]
    fn header_lengths_and_forms() {
        // (payload len, expected header bytes after byte 0)
        let cases: &[(usize, &[u8])] = &[
            (0, &[0]),
            (125, &[125]),
            (126, &[126, 0, 126]),
            (0xFFFF, &[126, 0xFF, 0xFF]),
            (0x1_0000, &[127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for &(len, want) in cases {
            let mut out = Vec::new();
            write_header(&mut out, true, OpCode::Binary, len);
            assert_eq!(out[0], 0x82);
            assert_eq!(&out[1..], want, "len {len}");
            assert_eq!(header_len(len), out.len(), "len {len}");
        }
        let mut out = Vec::new();
        write_header(&mut out, false, OpCode::Continuation, 3);
        assert_eq!(out, [0x00, 3]);
    }

    #[test]
    fn encode_frame_is_exact() {
        for len in [0, 1, 125, 126, 65535, 65536] {
            let payload = vec![7u8; len];
            let f = encode_frame(OpCode::Text, &payload);
            assert_eq!(f.len(), header_len(len) + len);
            assert_eq!(f.capacity(), f.len());
            assert_eq!(&f[header_len(len)..], &payload[..]);
        }
        assert_eq!(encode_frame(OpCode::Text, b"hi"), [0x81, 2, b'h', b'i']);
    }

    #[test]
    fn encode_close_truncates_at_char_boundary() {
        assert_eq!(encode_close(1000, ""), [0x88, 2, 0x03, 0xE8]);
        assert_eq!(encode_close(1002, "x"), [0x88, 3, 0x03, 0xEA, b'x']);
        // 122 ASCII bytes then a 2-byte char: 124 bytes, so the char must go.
        let reason = format!("{}é", "a".repeat(122));
        let f = encode_close(1000, &reason);
        assert_eq!(f[1] as usize, 2 + 122);
        assert_eq!(f.len(), 2 + 2 + 122);
        // Many 3-byte chars: cut to 123 bytes exactly (41 chars).
        let f = encode_close(1000, &"€".repeat(100));
        assert_eq!(f[1] as usize, 2 + 123);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        // Long ASCII: exactly 125.
        assert_eq!(encode_close(1000, &"b".repeat(500))[1], 125);
    }

    #[test]
    fn parse_round_trips_client_frames() {
        for len in [0usize, 5, 125, 126, 65535, 65536, 100_000] {
            for (fin, op) in [(true, OpCode::Text), (false, OpCode::Binary)] {
                let f = encode_client_frame(fin, op, &vec![9u8; len], M);
                let (h, n) = FrameHeader::parse(&f).unwrap().unwrap();
                assert_eq!(
                    h,
                    FrameHeader {
                        fin,
                        rsv1: false,
                        opcode: op,
                        mask: M,
                        payload_len: len as u64
                    }
                );
                assert_eq!(n + len, f.len());
                // Every strict prefix of the header asks for more and consumes nothing.
                for cut in 0..n {
                    assert_eq!(
                        FrameHeader::parse(&f[..cut]),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn parse_rejects_table() {
        let cases: &[(&[u8], WsError)] = &[
            (&[0x81, 0x00], WsError::UnmaskedFrame),
            (&[0xC1], WsError::ReservedBitsSet),
            (&[0xA1], WsError::ReservedBitsSet),
            (&[0x91], WsError::ReservedBitsSet),
            (&[0x83], WsError::UnknownOpcode),
            (&[0x87], WsError::UnknownOpcode),
            (&[0x8B], WsError::UnknownOpcode),
            (&[0x8F], WsError::UnknownOpcode),
            (&[0x09], WsError::ControlFrameFragmented),
            (&[0x89, 0x80 | 126], WsError::ControlFrameTooLong),
            (&[0x88, 0x80 | 127], WsError::ControlFrameTooLong),
            (
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::LengthOverflow,
            ),
        ];
        for &(bytes, err) in cases {
            assert_eq!(FrameHeader::parse(bytes), Err(err), "{bytes:x?}");
        }
        // With permessage-deflate, RSV1 is allowed on the first frame of a data message only.
        let deflate: &[(&[u8], Result<bool, WsError>)] = &[
            (&[0xC1, 0x80, 0, 0, 0, 0], Ok(true)),
            (&[0x42, 0x80, 0, 0, 0, 0], Ok(true)),
            (&[0x81, 0x80, 0, 0, 0, 0], Ok(false)),
            (&[0x40], Err(WsError::CompressedContinuation)),
            (&[0xC0], Err(WsError::CompressedContinuation)),
            (&[0xC9], Err(WsError::CompressedControlFrame)),
            (&[0xC8], Err(WsError::CompressedControlFrame)),
            (&[0xCA], Err(WsError::CompressedControlFrame)),
            (&[0xE1], Err(WsError::ReservedBitsSet)),
            (&[0xD1], Err(WsError::ReservedBitsSet)),
        ];
        for &(bytes, want) in deflate {
            let got = FrameHeader::parse_ext(bytes, true).map(|h| h.map(|(h, _)| h.rsv1));
            match want {
                Ok(rsv1) => assert_eq!(got, Ok(Some(rsv1)), "{bytes:x?}"),
                Err(e) => assert_eq!(got, Err(e), "{bytes:x?}"),
            }
            // Without the extension every RSV bit is an error.
            if bytes[0] & 0x70 != 0 {
                assert_eq!(FrameHeader::parse(bytes), Err(WsError::ReservedBitsSet));
            }
        }
        let mut out = Vec::new();
        write_header_rsv1(&mut out, OpCode::Text, 300);
        assert_eq!(out, [0xC1, 126, 1, 44]);
        // 125 is the largest control payload.
        assert!(FrameHeader::parse(&[0x89, 0x80 | 125, 0, 0, 0, 0])
            .unwrap()
            .is_some());
    }
}
