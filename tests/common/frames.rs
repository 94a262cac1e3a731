//! WebSocket client frames for the tests: well-formed masked frames through the crate's own
//! client encoder, and raw frames it would refuse to build (RSV bits, unknown opcodes,
//! unmasked). Every masked frame uses [`MASK`].

use partyring::ws::{self, OpCode};

/// The mask the helpers put on client frames.
pub const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A masked client frame built by the crate's client encoder.
pub fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    ws::encode_client_frame(fin, opcode, payload, MASK)
}

/// A Close payload: the code, big-endian, then the reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A masked Close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    frame(true, OpCode::Close, &close_payload(code, reason))
}

/// A frame with first byte `b0` (FIN, RSV bits and opcode exactly as given), the shortest length
/// form, and the payload masked with [`MASK`] if `masked`: for frames the crate's own encoder
/// would refuse to build (RSV bits, unknown opcodes, unmasked).
pub fn raw_frame(b0: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}
