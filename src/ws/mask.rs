//! Payload masking (RFC 6455 5.3): XOR with a 4-byte key that repeats from the start of the
//! frame's payload.
//!
//! Owns: `unmask` (also used to mask, since XOR is its own inverse). Does not own: reading the key
//! from the header (`frame.rs`) or tracking where in the payload a piece starts (`message.rs`).
//!
//! Every byte a client sends goes through here, so it works a word at a time: the key repeated
//! to eight bytes is one `u64`, and whole 8-byte chunks are XORed with it, then the tail byte by
//! byte. Safe code only: `chunks_exact_mut` plus `u64::from_ne_bytes` compiles to plain
//! unaligned loads and stores, and already runs at ~30 GiB/s for 4-64 KiB on the dev VM
//! (`benches/ws_frame.rs`), so the usual `align_to_mut` + `unsafe` would buy nothing worth its
//! proof obligation.

/// XORs `buf` with `mask`, where `buf[0]` is byte number `offset` of the frame payload.
///
/// `offset` lets a payload that arrives in pieces be unmasked piece by piece: pass the number of
/// payload bytes already unmasked (only `offset % 4` matters).
pub fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate the key so that its first byte applies to buf[0]; from there the pattern has period
    // 4, and 8 is a multiple of 4, so every 8-byte chunk uses the same word. Rotating as a u32
    // (little-endian, so byte order in memory is fixed) keeps this branch- and call-free, which
    // matters for the many tiny frames of chat traffic.
    let shift = 8 * (offset % 4) as u32;
    let key = u32::from_le_bytes(mask).rotate_right(shift).to_le_bytes();
    let wide = [
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ];
    // Native byte order on both sides: the word is only a carrier for eight independent XORs.
    let word = u64::from_ne_bytes(wide);

    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail (< 8 bytes) starts a multiple of 8 past buf[0], so it lines up with `wide`.
    for (b, k) in chunks.into_remainder().iter_mut().zip(wide) {
        *b ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    const LENS: [usize; 15] = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 1000];
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn matches_naive_for_alignment_edges() {
        for len in LENS {
            for offset in 0..4 {
                // Misalign the slice start too: buf[1..] starts at an odd address.
                let orig: Vec<u8> = (0..len + 1).map(|i| (i * 31 + 7) as u8).collect();
                let mut fast = orig.clone();
                let mut slow = orig.clone();
                unmask(&mut fast[1..], MASK, offset);
                naive(&mut slow[1..], MASK, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                // Applying it twice restores the input.
                unmask(&mut fast[1..], MASK, offset);
                assert_eq!(fast, orig, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let orig: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        let mut whole = orig.clone();
        unmask(&mut whole, MASK, 0);
        for split in [1, 2, 3, 5, 8, 9, 499, 999] {
            let mut pieces = orig.clone();
            let (a, b) = pieces.split_at_mut(split);
            unmask(a, MASK, 0);
            unmask(b, MASK, split);
            assert_eq!(pieces, whole, "split {split}");
        }
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
        let mut buf = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        unmask(&mut buf, MASK, 0);
        assert_eq!(&buf, b"Hello");
    }
}
