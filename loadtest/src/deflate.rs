//! The client side of permessage-deflate (RFC 7692, summarised in docs/permessage-deflate.md):
//! the offer, reading the server's answer in the 101, compressing what we send and inflating
//! what we receive.
//!
//! The generator behaves like a browser: with `--deflate` it offers
//! `permessage-deflate; client_max_window_bits`, and once the server accepts it every data
//! message it sends is compressed (RSV1 set), however small. It never keeps context between
//! its own messages (a fresh stream per message is legal whatever the answer says), so one
//! compressor serves the whole process. Inflating: a server that answered
//! `server_no_context_takeover` sends each message as a stream of its own, and one inflater
//! per process, reset per message, reads them all; for a server that keeps its context the
//! connection gets an inflater of its own, created at its first compressed message.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The `Sec-WebSocket-Extensions` value of the upgrade request with `--deflate`.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The end of a sync flush, removed from each message by the sender (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Inflated messages larger than this are refused (the server's own default limit is 1 MiB).
pub const MAX_INFLATED: usize = 64 << 20;

/// An output buffer grown past this by one large message is dropped rather than kept.
pub const RETAINED: usize = 1 << 20;

/// Whether the member at `index` (its place in its room; a connection's index for echo)
/// inflates and checks every compressed message it receives under `--inflate-sample n`: one in
/// `n`, index 0 always, so every room keeps a fully checked member. `n` 0 or 1: all of them.
pub fn sampled(index: usize, n: u32) -> bool {
    n <= 1 || index.is_multiple_of(n as usize)
}

/// What the server's 101 agreed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Agreed {
    /// The server starts every message it sends with an empty window.
    pub server_no_context_takeover: bool,
    /// The server asks us not to keep context (we never do).
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    /// The largest window our compressor may use (8-15), if the server limited it.
    pub client_max_window_bits: Option<u8>,
}

impl Agreed {
    /// Window bits for our compressor, or `None` when it may not compress at all: zlib cannot
    /// make raw deflate with a 2^8 window, so such a connection sends plain messages (legal per
    /// message).
    pub fn compress_bits(self) -> Option<u8> {
        match self.client_max_window_bits.unwrap_or(15) {
            8 => None,
            b => Some(b),
        }
    }
}

fn window_bits(v: Option<&str>) -> Result<u8, String> {
    let v = v.ok_or("window bits without a value")?;
    let v = v.trim_matches('"');
    match v.parse::<u8>() {
        Ok(n @ 8..=15) if !v.starts_with('0') => Ok(n),
        _ => Err(format!("window bits {v:?} not in 8..15")),
    }
}

/// Reads the `Sec-WebSocket-Extensions` values of a 101 answer to [`OFFER`].
///
/// # Returns
/// `Ok(None)` when the server declined (no value), `Ok(Some(_))` for an accepted offer.
///
/// # Errors
/// What RFC 7692 §5 says a client must fail the connection for: an extension we did not
/// offer, more than one, a parameter we do not know or given twice, or a bad value.
pub fn parse_answer(values: &[&str]) -> Result<Option<Agreed>, String> {
    let exts: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let [ext] = exts.as_slice() else {
        return match exts.len() {
            0 => Ok(None),
            n => Err(format!("{n} extensions in the answer; one was offered")),
        };
    };
    let mut parts = ext.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return Err(format!("extension {name:?} was not offered"));
    }
    let mut a = Agreed::default();
    let mut seen = Vec::new();
    for p in parts {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p, None),
        };
        let k = k.to_ascii_lowercase();
        if seen.contains(&k) {
            return Err(format!("parameter {k} given twice"));
        }
        match (k.as_str(), v) {
            ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
            ("server_max_window_bits", v) => a.server_max_window_bits = Some(window_bits(v)?),
            ("client_max_window_bits", v) => a.client_max_window_bits = Some(window_bits(v)?),
            _ => return Err(format!("parameter {p:?} not understood")),
        }
        seen.push(k);
    }
    Ok(Some(a))
}

/// Raw deflate, one message per stream (no context takeover), for the whole process.
#[derive(Default)]
pub struct Deflater {
    /// One compressor per window size used so far (index: bits - 9).
    comps: [Option<Compress>; 7],
    pub out: Vec<u8>,
}

impl Deflater {
    /// Compresses `msg` into `self.out` as an RFC 7692 message body (the sync flush's tail
    /// removed), with a window of 2^`bits` bytes (9-15).
    pub fn compress(&mut self, msg: &[u8], bits: u8) -> Result<(), String> {
        let bits = bits.clamp(9, 15);
        let c = self.comps[usize::from(bits - 9)].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::default(), false, bits)
        });
        c.reset();
        self.out.clear();
        self.out.reserve(msg.len() / 2 + 64);
        loop {
            let at = c.total_in() as usize;
            c.compress_vec(&msg[at..], &mut self.out, FlushCompress::Sync)
                .map_err(|e| format!("deflate: {e}"))?;
            if c.total_in() as usize == msg.len() && self.out.ends_with(&TAIL) {
                break;
            }
            self.out.reserve(self.out.capacity().max(64));
        }
        self.out.truncate(self.out.len() - TAIL.len());
        Ok(())
    }
}

/// `--client-deflate composed`: a message made of a varying head and a fixed tail, compressed
/// without running deflate per message. The stream is a stored block holding the head (its
/// bytes as they are) and then the tail, deflated once at the start with a sync flush. A
/// sync flush ends on a byte boundary and a stored block is byte-aligned, and the tail's
/// back-references reach only inside the tail, so the two concatenate into one valid raw
/// deflate stream of the whole message (RFC 1951 §3.2.4; the receiver appends `00 00 FF FF`).
pub struct Composed {
    split: usize,
    tail_src: Vec<u8>,
    /// The tail, deflated, without the sync flush's `00 00 FF FF`.
    tail: Vec<u8>,
}

impl Composed {
    /// # Errors
    /// A head longer than a stored block holds, or a failing compressor.
    pub fn new(split: usize, tail_src: &[u8]) -> Result<Composed, String> {
        if split > 0xFFFF {
            return Err(format!("a composed head of {split} bytes (at most 65535)"));
        }
        let mut d = Deflater::default();
        d.compress(tail_src, 15)?;
        Ok(Composed {
            split,
            tail_src: tail_src.to_vec(),
            tail: d.out,
        })
    }

    /// The compressed body of `msg` for a peer that allows 2^`bits`-byte windows, or `None`
    /// if `msg` does not end in the tail (or the tail is longer than that window).
    pub fn message(&self, msg: &[u8], bits: u8) -> Option<Vec<u8>> {
        let fits = bits >= 15 || self.tail_src.len() <= 1usize << bits;
        if !fits
            || msg.len() != self.split + self.tail_src.len()
            || msg[self.split..] != self.tail_src[..]
        {
            return None;
        }
        let len = self.split as u16;
        let mut out = Vec::with_capacity(5 + self.split + self.tail.len());
        // BFINAL 0, BTYPE 00 (stored), padded to the byte; then LEN and NLEN, little-endian.
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(&msg[..self.split]);
        out.extend_from_slice(&self.tail);
        Some(out)
    }
}

/// Inflates one compressed message (`payload` is its body without the tail) into `out`
/// (cleared first); `reset` starts from an empty window (the server keeps no context).
///
/// # Errors
/// A payload that is not a deflate stream, or inflates past [`MAX_INFLATED`].
pub fn inflate(
    d: &mut Decompress,
    reset: bool,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if reset {
        d.reset(false);
    }
    out.clear();
    for input in [payload, &TAIL[..]] {
        let start = d.total_in();
        loop {
            let at = (d.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() > MAX_INFLATED {
                    return Err("inflated message over 64 MiB".into());
                }
                out.reserve(out.len().max(4096));
            }
            let before = (d.total_in(), out.len());
            let st = d
                .decompress_vec(&input[at..], out, FlushDecompress::Sync)
                .map_err(|e| format!("inflate: {e}"))?;
            let done = (d.total_in() - start) as usize == input.len();
            if st == Status::StreamEnd {
                // A final block ends the message; what follows is not part of it (§7.2.2).
                return Ok(());
            }
            if done && out.len() < out.capacity() {
                break;
            }
            if (d.total_in(), out.len()) == before && out.len() < out.capacity() {
                return Err("inflate: no progress".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(n: usize) -> Vec<u8> {
        let unit = br#"{"type":"message","user":"ada","text":"hello there, how are you?"}"#;
        unit.iter().cycle().take(n).copied().collect()
    }

    #[test]
    fn compressed_messages_inflate_to_themselves() {
        let mut def = Deflater::default();
        let mut inf = Decompress::new(false);
        let mut out = Vec::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for bits in [9u8, 12, 15] {
            for msg in [&b""[..], b"a", &chat(512), &chat(70_000), &random] {
                def.compress(msg, bits).unwrap();
                assert!(!def.out.ends_with(&TAIL));
                inflate(&mut inf, true, &def.out, &mut out).unwrap();
                assert_eq!(out, msg, "bits {bits}, len {}", msg.len());
            }
        }
        def.compress(&chat(4000), 15).unwrap();
        assert!(def.out.len() < 400, "chat JSON shrinks: {}", def.out.len());
    }

    #[test]
    fn one_member_in_n_is_sampled_and_index_0_always() {
        for n in [0u32, 1] {
            assert!((0..40).all(|i| sampled(i, n)), "n {n}: every member");
        }
        let picked: Vec<usize> = (0..16).filter(|&i| sampled(i, 8)).collect();
        assert_eq!(picked, [0, 8]);
        assert_eq!((0..16).filter(|&i| sampled(i, 3)).count(), 6);
        // More than the room holds: still its first member.
        let picked: Vec<usize> = (0..4).filter(|&i| sampled(i, 100)).collect();
        assert_eq!(picked, [0]);
    }

    #[test]
    fn the_rfc_examples_inflate() {
        // RFC 7692 §7.2.3.1 and §7.2.3.3: "Hello" compressed, and as a stored block.
        let mut inf = Decompress::new(false);
        let mut out = Vec::new();
        inflate(
            &mut inf,
            true,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        inflate(&mut inf, true, &stored, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        inflate(&mut inf, true, &[0x00], &mut out).unwrap();
        assert_eq!(out, b"");
        assert!(inflate(&mut inf, true, &[0xff, 0xff, 0xff], &mut out).is_err());
    }

    #[test]
    fn context_takeover_needs_the_inflater_kept() {
        // The second "Hello" of §7.2.3.2 refers back to the first one.
        let mut inf = Decompress::new(false);
        let mut out = Vec::new();
        inflate(
            &mut inf,
            true,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &mut out,
        )
        .unwrap();
        inflate(&mut inf, false, &[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn answers_are_read_as_the_rfc_says() {
        assert_eq!(parse_answer(&[]), Ok(None));
        assert_eq!(parse_answer(&[""]), Ok(None));
        let a = parse_answer(&[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ])
        .unwrap()
        .unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert_eq!(a.compress_bits(), Some(15));
        let a = parse_answer(&[
            "permessage-deflate;client_max_window_bits=10; server_max_window_bits=\"12\"",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (a.client_max_window_bits, a.server_max_window_bits),
            (Some(10), Some(12))
        );
        assert!(!a.server_no_context_takeover);
        let a = parse_answer(&["permessage-deflate; client_max_window_bits=8"]).unwrap();
        assert_eq!(a.unwrap().compress_bits(), None);
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=09",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; mystery",
        ] {
            assert!(parse_answer(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_composed_message_inflates_to_the_message() {
        let msg = b"{\"type\":\"chat\",\"id\":\"0123456789abcdef0123456789abcdef\",\"text\":\"the meeting is moved to three the meeting is moved\"}".to_vec();
        let split = 52;
        let c = Composed::new(split, &msg[split..]).unwrap();
        let body = c.message(&msg, 15).unwrap();
        let mut d = Decompress::new(false);
        let mut out = Vec::new();
        inflate(&mut d, true, &body, &mut out).unwrap();
        assert_eq!(out, msg);
        // Another head, the same tail.
        let mut other = msg.clone();
        other[30] = b'f';
        inflate(&mut d, true, &c.message(&other, 15).unwrap(), &mut out).unwrap();
        assert_eq!(out, other);
        // A message with another tail is not composed.
        let mut wrong = msg.clone();
        *wrong.last_mut().unwrap() = b']';
        assert!(c.message(&wrong, 15).is_none());
        assert!(c.message(&msg[..10], 15).is_none());
    }
}
