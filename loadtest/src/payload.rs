//! The messages `fanout` and `echo` send, and the check of every one received.
//!
//! Each message carries a fixed-width ASCII header: 8 hex digits publisher id, 8 hex digits
//! sequence number, 16 hex digits send time (CLOCK_MONOTONIC ns). Around it is a body that
//! depends only on `--payload` and `--size`, built once ([`Payload::new`]): a received message
//! must equal that template everywhere outside the header, so a message that was compressed
//! and inflated on the way is checked byte for byte, not only its numbers.
//!
//! - `dots` (default): the header, then `.` up to the size (at least the header's 32 bytes).
//! - `json`: a chat message as a browser app would send it (`{"type":"chat","id":"<header>",
//!   "user":{...},"room":...,"text":"<English words>"}`), compressible the way real chat is.
//! - `random`: the header, then bytes from a fixed pseudo-random sequence, sent as *binary*
//!   frames (random bytes are not UTF-8): deflate cannot shrink it, the worst case for a
//!   server that compresses. Each message is compressed on its own (no context takeover), so
//!   one fixed sequence is as incompressible as a fresh one per message.
//! - `zeros`: the header, then NUL bytes (valid UTF-8 text): the best case.

use clap::ValueEnum;
use serde::Serialize;

/// Bytes of the header.
pub const HEADER: usize = 32;

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Kind {
    #[default]
    Dots,
    Json,
    Random,
    Zeros,
}

/// A message template of one kind and size.
pub struct Payload {
    template: Vec<u8>,
    /// Where the header sits in the template.
    at: usize,
    /// 1 (text) or 2 (binary).
    pub opcode: u8,
}

const JSON_HEAD: &str = r#"{"type":"chat","id":""#;
const JSON_MID: &str = r#"","user":{"id":"u-0042","name":"Ada Lovelace","avatar":"/a/42.png"},"room":"lobby","text":""#;
const JSON_TAIL: &str = r#""}"#;
const WORDS: &[&str] = &[
    "the", "meeting", "is", "moved", "to", "three", "o'clock", "can", "you", "share", "slides",
    "please", "I", "think", "we", "should", "ship", "it", "today", "sounds", "good", "thanks",
    "for", "update", "let", "me", "check", "and", "get", "back", "later", "with", "numbers",
];

/// A fixed xorshift sequence: the same bytes in every process, so receivers know them.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl Payload {
    /// # Errors
    /// A size too small for the kind (`json` needs its fixed fields).
    pub fn new(kind: Kind, size: usize) -> Result<Payload, String> {
        let size = size.max(HEADER);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let (template, at, opcode) = match kind {
            Kind::Dots => (vec![b'.'; size], 0, 1),
            Kind::Zeros => (vec![0; size], 0, 1),
            Kind::Random => {
                let t = (0..size).map(|_| xorshift(&mut seed) as u8).collect();
                (t, 0, 2)
            }
            Kind::Json => {
                let fixed = JSON_HEAD.len() + HEADER + JSON_MID.len() + JSON_TAIL.len();
                if size < fixed + 1 {
                    return Err(format!("--payload json needs --size >= {}", fixed + 1));
                }
                let mut text = String::new();
                while text.len() < size - fixed {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(WORDS[xorshift(&mut seed) as usize % WORDS.len()]);
                }
                text.truncate(size - fixed);
                let t = format!(
                    "{JSON_HEAD}{}{JSON_MID}{text}{JSON_TAIL}",
                    "0".repeat(HEADER)
                );
                (t.into_bytes(), JSON_HEAD.len(), 1)
            }
        };
        debug_assert_eq!(template.len(), size);
        Ok(Payload {
            template,
            at,
            opcode,
        })
    }

    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// Where the part that is the same in every message starts (after the header), and that
    /// part.
    pub fn fixed_tail(&self) -> (usize, &[u8]) {
        let at = self.at + HEADER;
        (at, &self.template[at..])
    }

    /// The message for (`publisher`, `seq`, `ts`) into `out` (cleared first).
    pub fn fill(&self, out: &mut Vec<u8>, publisher: u32, seq: u32, ts: u64) {
        out.clear();
        out.extend_from_slice(&self.template[..self.at]);
        put_hex(out, u64::from(publisher), 8);
        put_hex(out, u64::from(seq), 8);
        put_hex(out, ts, 16);
        out.extend_from_slice(&self.template[self.at + HEADER..]);
    }

    /// (publisher, seq, ts) of a received message, or `None` if it is not exactly one of ours.
    pub fn parse(&self, p: &[u8]) -> Option<(u32, u32, u64)> {
        let (a, h) = (self.at, self.at + HEADER);
        if p.len() != self.template.len()
            || p[..a] != self.template[..a]
            || p[h..] != self.template[h..]
        {
            return None;
        }
        let hd = &p[a..h];
        Some((
            get_hex(&hd[..8])? as u32,
            get_hex(&hd[8..16])? as u32,
            get_hex(&hd[16..32])?,
        ))
    }
}

fn put_hex(out: &mut Vec<u8>, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xF) as usize]);
    }
}

fn get_hex(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_checks_its_body() {
        for kind in [Kind::Dots, Kind::Json, Kind::Random, Kind::Zeros] {
            for size in [200usize, 512, 4096] {
                let p = Payload::new(kind, size).unwrap();
                let mut b = Vec::new();
                p.fill(&mut b, 0xABCD, 7, 123_456_789_012);
                assert_eq!(b.len(), size, "{kind:?}");
                assert_eq!(p.parse(&b), Some((0xABCD, 7, 123_456_789_012)));
                let last = b.len() - 2;
                b[last] ^= 1;
                assert_eq!(p.parse(&b), None, "{kind:?}: a changed body byte is caught");
                b[last] ^= 1;
                b.pop();
                assert_eq!(p.parse(&b), None);
                assert_eq!(p.opcode == 1, std::str::from_utf8(&b).is_ok());
            }
        }
        assert_eq!(Payload::new(Kind::Dots, 10).unwrap().len(), HEADER);
        assert!(Payload::new(Kind::Json, 64).is_err());
    }

    #[test]
    fn json_messages_are_json() {
        let p = Payload::new(Kind::Json, 512).unwrap();
        let mut b = Vec::new();
        p.fill(&mut b, 1, 2, 3);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "chat");
        assert_eq!(p.parse(v["id"].as_str().unwrap().as_bytes()), None);
        assert!(v["text"].as_str().unwrap().contains(' '));
    }

    #[test]
    fn dots_are_the_old_format() {
        let p = Payload::new(Kind::Dots, 64).unwrap();
        let mut b = Vec::new();
        p.fill(&mut b, 0xABCD, 7, 0x1234);
        assert_eq!(&b[..32], b"0000abcd000000070000000000001234");
        assert!(b[32..].iter().all(|&c| c == b'.'));
    }
}
