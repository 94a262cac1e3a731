//! The log's record format: encode and decode, sans-IO.
//!
//! A log file is an 8-byte magic ([`FILE_MAGIC`]) followed by records, each self-delimiting:
//!
//! ```text
//! record = len: u32 LE | crc: u32 LE | body (len bytes)
//! crc    = CRC-32C over the 4 len bytes, then the body
//! body   = kind: u8 | party: str16 | room: str16 | payload
//!   kind 1 Put        payload = n: u32 | n × (key: str16 | value: u32 len + bytes)
//!   kind 2 Delete     payload = n: u32 | n × key: str16
//!   kind 3 DeleteAll  payload = (empty)
//!   kind 4 SetAlarm   payload = 0: u8               (delete the alarm)
//!                             | 1: u8 | at_ms: u64 LE
//! str16  = len: u16 LE | UTF-8 bytes
//! ```
//!
//! One record is one atomic operation on one room: a multi-key put is a single record, so a
//! crash keeps all of it or none of it. The checksum covers the length too, so a torn or
//! bit-flipped length cannot frame a "valid" record out of the wrong bytes (short of a 2^-32
//! collision). Decoding never guesses: the first record that is short ([`Stop::Torn`]) or
//! fails a check (a [`Stop`] other than reaching the end) ends the log, and [`Decoder::good_len`] says where the
//! last good record ended so the opener can truncate there.
//!
//! This file does no IO and knows nothing of rooms' state; `index.rs` applies decoded ops,
//! `log.rs`, `replay.rs` and `writer.rs` own the file.

use super::crc;

/// The first 8 bytes of every log file ("partyring log, format 1"). A file that starts with
/// anything else is not ours and is never truncated or overwritten.
pub const FILE_MAGIC: [u8; 8] = *b"PRTLOG\x00\x01";

/// `len` + `crc`.
pub const HEADER_LEN: usize = 8;

/// The smallest body: kind + two empty names.
const MIN_BODY_LEN: usize = 1 + 2 + 2;

/// The largest body the encoder can produce under the public limits (128 entries of a
/// 2048-byte key and a 128 KiB value is ~16.3 MiB, plus two names), rounded up. A length
/// above it can only be corruption, so the decoder stops there instead of trusting it.
pub const MAX_BODY_LEN: usize = 32 << 20;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_DELETE_ALL: u8 = 3;
const KIND_SET_ALARM: u8 = 4;

/// One atomic change to one room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set every key to its value (a multi-key put is one record, so it is all-or-nothing).
    Put { entries: Vec<(String, Vec<u8>)> },
    /// Remove these keys (absent ones are ignored).
    Delete { keys: Vec<String> },
    /// Remove every key of the room. The alarm stays (PartyKit's compatibility date predates
    /// Cloudflare's 2026-02-24 change that made `deleteAll` also delete the alarm).
    DeleteAll,
    /// Set (`Some`, ms since the Unix epoch) or delete (`None`) the room's single alarm.
    SetAlarm { at_ms: Option<u64> },
}

/// A decoded record: which room, and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub party: String,
    pub room: String,
    pub op: Op,
}

/// Why decoding stopped before the end of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The buffer ends inside a record (a write cut short by a crash).
    Torn,
    /// A length that no encoder writes, or a body shorter than the minimum.
    BadLength,
    /// The checksum does not match: bit rot, or garbage after a crash.
    BadChecksum,
    /// The checksum matched but the body does not parse (unknown kind, bad UTF-8, trailing
    /// bytes): a bug in whoever wrote it, treated like corruption.
    BadBody,
}

/// Bytes `encode` will append for this record (for the live-bytes estimate and buffer sizing).
pub fn encoded_len(party: &str, room: &str, op: &Op) -> usize {
    HEADER_LEN
        + MIN_BODY_LEN
        + party.len()
        + room.len()
        + match op {
            Op::Put { entries } => {
                4 + entries
                    .iter()
                    .map(|(k, v)| put_entry_len(k, v))
                    .sum::<usize>()
            }
            Op::Delete { keys } => 4 + keys.iter().map(|k| 2 + k.len()).sum::<usize>(),
            Op::DeleteAll => 0,
            Op::SetAlarm { at_ms: None } => 1,
            Op::SetAlarm { at_ms: Some(_) } => 9,
        }
}

/// Bytes one `(key, value)` takes inside a Put body.
pub fn put_entry_len(key: &str, value: &[u8]) -> usize {
    2 + key.len() + 4 + value.len()
}

/// Appends one record to `out` and returns its length.
///
/// The caller has already enforced the limits (names and keys fit a u16, values a u32, the
/// body `MAX_BODY_LEN`); they are re-checked with `debug_assert!` only.
pub fn encode(party: &str, room: &str, op: &Op, out: &mut Vec<u8>) -> usize {
    let kind = match op {
        Op::Put { .. } => KIND_PUT,
        Op::Delete { .. } => KIND_DELETE,
        Op::DeleteAll => KIND_DELETE_ALL,
        Op::SetAlarm { .. } => KIND_SET_ALARM,
    };
    let start = begin(out, kind, party, room);
    match op {
        Op::Put { entries } => {
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for (k, v) in entries {
                put_entry(out, k, v);
            }
        }
        Op::Delete { keys } => {
            out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
            for k in keys {
                put_str16(out, k);
            }
        }
        Op::DeleteAll => {}
        Op::SetAlarm { at_ms: None } => out.push(0),
        Op::SetAlarm { at_ms: Some(at) } => {
            out.push(1);
            out.extend_from_slice(&at.to_le_bytes());
        }
    }
    finish(out, start)
}

/// Appends a Put record from borrowed entries (compaction writes the index out this way
/// without cloning the values). Same bytes as `encode(.., &Op::Put { .. }, ..)`.
pub fn encode_put_refs(
    party: &str,
    room: &str,
    entries: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) -> usize {
    let start = begin(out, KIND_PUT, party, room);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, v) in entries {
        put_entry(out, k, v);
    }
    finish(out, start)
}

/// Reserves the header and writes the common body prefix; returns where the record starts.
fn begin(out: &mut Vec<u8>, kind: u8, party: &str, room: &str) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.push(kind);
    put_str16(out, party);
    put_str16(out, room);
    start
}

/// Fills in the header of the record that starts at `start`; returns the record's length.
fn finish(out: &mut [u8], start: usize) -> usize {
    let body_len = out.len() - start - HEADER_LEN;
    debug_assert!(
        body_len <= MAX_BODY_LEN,
        "record body {body_len} over the limit"
    );
    let len = (body_len as u32).to_le_bytes();
    let crc = crc::update(crc::crc32c(&len), &out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

fn put_entry(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    put_str16(out, key);
    debug_assert!(value.len() <= u32::MAX as usize);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= u16::MAX as usize);
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes the record at the start of `buf`.
///
/// # Returns
///
/// `Ok(None)` if `buf` is empty (a clean end), `Ok(Some((record, consumed)))` for a good
/// record, `Err(stop)` if the bytes at the start of `buf` are not a complete, valid record.
/// Nothing is consumed on `Err`.
pub fn decode_one(buf: &[u8]) -> Result<Option<(Record, usize)>, Stop> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.len() < HEADER_LEN {
        return Err(Stop::Torn);
    }
    let len_bytes = [buf[0], buf[1], buf[2], buf[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    // An impossible length is corruption even if the buffer happens to be short: checking it
    // first means a garbage tail is reported as garbage, not as a torn write.
    if !(MIN_BODY_LEN..=MAX_BODY_LEN).contains(&len) {
        return Err(Stop::BadLength);
    }
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Err(Stop::Torn);
    };
    let want = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if crc::update(crc::crc32c(&len_bytes), body) != want {
        return Err(Stop::BadChecksum);
    }
    let record = parse_body(body).ok_or(Stop::BadBody)?;
    Ok(Some((record, HEADER_LEN + len)))
}

fn parse_body(body: &[u8]) -> Option<Record> {
    let mut c = Cursor { buf: body };
    let kind = c.u8()?;
    let party = c.str16()?;
    let room = c.str16()?;
    let op = match kind {
        KIND_PUT => {
            let n = c.u32()? as usize;
            // Every entry takes at least 6 bytes: a huge `n` is caught before it allocates.
            if n > c.buf.len() / 6 {
                return None;
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let k = c.str16()?;
                let vlen = c.u32()? as usize;
                entries.push((k, c.take(vlen)?.to_vec()));
            }
            Op::Put { entries }
        }
        KIND_DELETE => {
            let n = c.u32()? as usize;
            if n > c.buf.len() / 2 {
                return None;
            }
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(c.str16()?);
            }
            Op::Delete { keys }
        }
        KIND_DELETE_ALL => Op::DeleteAll,
        KIND_SET_ALARM => match c.u8()? {
            0 => Op::SetAlarm { at_ms: None },
            1 => Op::SetAlarm {
                at_ms: Some(u64::from_le_bytes(c.take(8)?.try_into().ok()?)),
            },
            _ => return None,
        },
        _ => return None,
    };
    c.buf.is_empty().then_some(Record { party, room, op })
}

/// A bounds-checked reader over a record body; every getter is `None` past the end.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn str16(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// The first offset `>= from` in `buf` where a whole, valid record starts, if any.
///
/// After a bad record this tells a torn or garbage *tail* (nothing valid follows: a crash cut
/// the last write short) from damage in the *middle* of the log (intact records follow, which
/// skipping would lose or, worse, replay out of context). Each offset costs a length check;
/// the checksum is only computed where the length fits, which zeros and random bytes rarely
/// pass, so the scan is about linear in practice. Only run after a bad record, never per read.
pub fn find_record(buf: &[u8], from: usize) -> Option<usize> {
    let last = buf.len().checked_sub(HEADER_LEN + MIN_BODY_LEN)?;
    (from..=last).find(|&at| matches!(decode_one(&buf[at..]), Ok(Some(_))))
}

/// Iterates over the good records at the start of a buffer (a whole log file minus its magic).
///
/// After the iterator returns `None`, [`Decoder::good_len`] is the offset just past the last
/// good record and [`Decoder::stop`] says why decoding ended (`None` = clean end of buffer).
pub struct Decoder<'a> {
    buf: &'a [u8],
    /// INVARIANT: `pos <= buf.len()` and `buf[..pos]` is a sequence of good records.
    pos: usize,
    stop: Option<Stop>,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder {
            buf,
            pos: 0,
            stop: None,
        }
    }

    /// Offset just past the last good record returned so far.
    pub fn good_len(&self) -> usize {
        self.pos
    }

    /// Why decoding ended; `None` while iterating or after a clean end.
    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }
}

impl Iterator for Decoder<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.stop.is_some() {
            return None;
        }
        match decode_one(&self.buf[self.pos..]) {
            Ok(Some((record, n))) => {
                self.pos += n;
                debug_assert!(self.pos <= self.buf.len());
                Some(record)
            }
            Ok(None) => None,
            Err(stop) => {
                self.stop = Some(stop);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rec(party: &str, room: &str, op: Op) -> Record {
        Record {
            party: party.into(),
            room: room.into(),
            op,
        }
    }

    fn encode_all(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for r in records {
            let n = encode(&r.party, &r.room, &r.op, &mut buf);
            assert_eq!(n, encoded_len(&r.party, &r.room, &r.op));
            ends.push(buf.len());
        }
        (buf, ends)
    }

    fn decode_all(buf: &[u8]) -> (Vec<Record>, usize, Option<Stop>) {
        let mut d = Decoder::new(buf);
        let records: Vec<Record> = d.by_ref().collect();
        (records, d.good_len(), d.stop())
    }

    fn samples() -> Vec<Record> {
        vec![
            rec(
                "main",
                "lobby",
                Op::Put {
                    entries: vec![("a".into(), b"1".to_vec())],
                },
            ),
            rec(
                "main",
                "lobby",
                Op::Put {
                    entries: vec![("b".into(), vec![]), ("ключ".into(), vec![0, 255, 7])],
                },
            ),
            rec(
                "",
                "",
                Op::Delete {
                    keys: vec!["a".into(), "zz".into()],
                },
            ),
            rec("chat", "r1", Op::Delete { keys: vec![] }),
            rec("chat", "r1", Op::DeleteAll),
            rec(
                "chat",
                "r1",
                Op::SetAlarm {
                    at_ms: Some(1_700_000_000_123),
                },
            ),
            rec("chat", "r1", Op::SetAlarm { at_ms: None }),
            rec("chat", "r2", Op::Put { entries: vec![] }),
        ]
    }

    #[test]
    fn round_trip_every_kind() {
        let records = samples();
        let (buf, ends) = encode_all(&records);
        let (got, good, stop) = decode_all(&buf);
        assert_eq!(got, records);
        assert_eq!(good, *ends.last().unwrap());
        assert_eq!(stop, None);
    }

    #[test]
    fn put_refs_encodes_the_same_bytes() {
        let entries = vec![("a".to_string(), b"1".to_vec()), ("bc".to_string(), vec![])];
        let refs: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_put_refs("p", "r", &refs, &mut b);
        encode(
            "p",
            "r",
            &Op::Put {
                entries: entries.clone(),
            },
            &mut a,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn known_bytes_of_a_small_record() {
        let mut buf = Vec::new();
        encode("p", "r", &Op::SetAlarm { at_ms: None }, &mut buf);
        // body = kind 4, "p", "r", flag 0 → 8 bytes.
        assert_eq!(&buf[..4], &8u32.to_le_bytes());
        assert_eq!(&buf[8..], &[4, 1, 0, b'p', 1, 0, b'r', 0]);
        let crc = crc::update(crc::crc32c(&8u32.to_le_bytes()), &buf[8..]);
        assert_eq!(&buf[4..8], &crc.to_le_bytes());
    }

    #[test]
    fn find_record_resynchronises_only_on_whole_valid_records() {
        let (buf, ends) = encode_all(&samples()[..3]);
        assert_eq!(find_record(&buf, 0), Some(0));
        assert_eq!(
            find_record(&buf, 1),
            Some(ends[0]),
            "the next record's start"
        );
        assert_eq!(
            find_record(&buf, ends[1] + 1),
            None,
            "the last one starts before"
        );
        let mut flipped = buf.clone();
        flipped[ends[0] + 9] ^= 1;
        assert_eq!(
            find_record(&flipped, ends[0]),
            Some(ends[1]),
            "skips the damaged one"
        );
        assert_eq!(find_record(&[0u8; 256], 0), None, "zeros are no record");
        assert_eq!(
            find_record(&buf[..ends[0] - 1], 0),
            None,
            "a cut record is none"
        );
    }

    #[test]
    fn bad_tails_stop_with_the_right_reason() {
        let (good, ends) = encode_all(&samples()[..2]);
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0u8; 64]);
        let mut huge = good.clone();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut short_header = good.clone();
        short_header.extend_from_slice(&[9, 0, 0]);
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        let (mut unknown_kind, _) = encode_all(&samples()[..1]);
        // Rewrite the kind byte and fix the checksum: the body check must still catch it.
        unknown_kind[8] = 99;
        let crc = crc::update(crc::crc32c(&unknown_kind[..4]), &unknown_kind[8..]);
        unknown_kind[4..8].copy_from_slice(&crc.to_le_bytes());

        // (case, bytes, records decoded, good_len, why it stopped)
        type Row<'a> = (&'a str, &'a [u8], usize, usize, Option<Stop>);
        let table: &[Row<'_>] = &[
            ("clean", &good, 2, ends[1], None),
            ("empty", &[], 0, 0, None),
            ("zero tail", &zeros, 2, ends[1], Some(Stop::BadLength)),
            ("huge length", &huge, 2, ends[1], Some(Stop::BadLength)),
            ("short header", &short_header, 2, ends[1], Some(Stop::Torn)),
            (
                "cut body",
                &good[..good.len() - 1],
                1,
                ends[0],
                Some(Stop::Torn),
            ),
            ("flipped bit", &flipped, 1, ends[0], Some(Stop::BadChecksum)),
            ("unknown kind", &unknown_kind, 0, 0, Some(Stop::BadBody)),
        ];
        for &(name, buf, n, good_len, stop) in table {
            let (got, g, s) = decode_all(buf);
            assert_eq!((got.len(), g, s), (n, good_len, stop), "{name}");
        }
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-c]{1,3}", "\\PC{0,6}"]
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec(
                (arb_name(), prop::collection::vec(any::<u8>(), 0..40)),
                0..4
            )
            .prop_map(|entries| Op::Put { entries }),
            prop::collection::vec(arb_name(), 0..4).prop_map(|keys| Op::Delete { keys }),
            Just(Op::DeleteAll),
            any::<Option<u64>>().prop_map(|at_ms| Op::SetAlarm { at_ms }),
        ]
    }

    fn arb_records() -> impl Strategy<Value = Vec<Record>> {
        prop::collection::vec(
            (arb_name(), arb_name(), arb_op()).prop_map(|(party, room, op)| Record {
                party,
                room,
                op,
            }),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn any_cut_decodes_to_exactly_the_whole_records_before_it(
            records in arb_records(),
            cut in any::<prop::sample::Index>(),
        ) {
            let (buf, ends) = encode_all(&records);
            let cut = cut.index(buf.len() + 1);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            let (got, good, stop) = decode_all(&buf[..cut]);
            prop_assert_eq!(&got[..], &records[..whole]);
            prop_assert_eq!(good, if whole == 0 { 0 } else { ends[whole - 1] });
            prop_assert_eq!(stop.is_none(), cut == good);
        }

        #[test]
        fn any_flipped_byte_decodes_to_exactly_the_records_before_it(
            records in arb_records(),
            at in any::<prop::sample::Index>(),
            mask in 1u8..,
        ) {
            let (mut buf, ends) = encode_all(&records);
            prop_assume!(!buf.is_empty());
            let at = at.index(buf.len());
            buf[at] ^= mask;
            // The record holding the flipped byte and everything after it must be dropped.
            let before = ends.iter().filter(|&&e| e <= at).count();
            let (got, good, stop) = decode_all(&buf);
            prop_assert_eq!(&got[..], &records[..before]);
            prop_assert_eq!(good, if before == 0 { 0 } else { ends[before - 1] });
            prop_assert!(stop.is_some());
        }
    }
}
