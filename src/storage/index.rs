//! The in-memory index: every room's keys, values and alarm, for one core.
//!
//! This is the "in-memory cache" that Durable Objects serve reads from, except that here it
//! holds everything: the log is only read at startup, so every `get` and `list` is a map
//! lookup. Writes are applied here first (reads see them at once, as in a DO) and made durable
//! by `log.rs` afterwards.
//!
//! Rooms are a two-level map, party → room → data, rather than one map keyed by
//! `(String, String)`: a lookup with two `&str` then needs no allocation, and rooms are looked
//! up on every storage call. A room with no keys and no alarm is removed, so transient rooms do
//! not accumulate.
//!
//! The index also keeps the two counters compaction is decided on: `log_bytes` (what the log
//! file holds, dead records included) and `live_bytes` (what a freshly written log holding only
//! the current state would take). No IO here.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
};

use super::{
    record::{put_entry_len, Op, Record, FILE_MAGIC, HEADER_LEN},
    StorageError,
};

/// One room's storage.
#[derive(Debug, Default)]
pub struct RoomData {
    /// Keys in UTF-8 byte order, which is Durable Objects' list order.
    pub map: BTreeMap<String, Vec<u8>>,
    /// The room's single alarm, ms since the Unix epoch.
    pub alarm: Option<u64>,
    /// `Σ put_entry_len` over `map`: this room's share of `live_bytes`, kept so that a
    /// `DeleteAll` can subtract it without walking the map.
    entry_bytes: u64,
}

/// Durable Objects' `list()` options. `Default` lists every key in ascending order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOptions<'a> {
    /// Only keys that start with this.
    pub prefix: Option<&'a str>,
    /// Only keys `>= start`. Exclusive with `start_after`.
    pub start: Option<&'a str>,
    /// Only keys `> start_after`. Exclusive with `start`.
    pub start_after: Option<&'a str>,
    /// Only keys `< end`.
    pub end: Option<&'a str>,
    /// At most this many entries, counted in the output order (so with `reverse` these are
    /// the *last* keys of the range). Must be positive.
    pub limit: Option<usize>,
    /// Descending key order.
    pub reverse: bool,
}

/// Every room of one core, plus the byte counters that drive compaction.
#[derive(Debug)]
pub struct Index {
    parties: HashMap<String, HashMap<String, RoomData>>,
    /// Estimated size of a compacted log: the magic, plus per room one Put record with all its
    /// entries and one SetAlarm record if it has an alarm. Exact unless compaction has to split
    /// a very large room over several records.
    live_bytes: u64,
    /// Bytes in the log file, plus records encoded but not yet written (they will be).
    log_bytes: u64,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

/// Record overhead of a room's Put record (header, kind, names, entry count).
fn put_overhead(party: &str, room: &str) -> u64 {
    (HEADER_LEN + 1 + 2 + party.len() + 2 + room.len() + 4) as u64
}

/// Size of a room's `SetAlarm { Some(_) }` record.
fn alarm_record_len(party: &str, room: &str) -> u64 {
    (HEADER_LEN + 1 + 2 + party.len() + 2 + room.len() + 9) as u64
}

impl Index {
    pub fn new() -> Self {
        Index {
            parties: HashMap::new(),
            live_bytes: FILE_MAGIC.len() as u64,
            log_bytes: FILE_MAGIC.len() as u64,
        }
    }

    pub fn room(&self, party: &str, room: &str) -> Option<&RoomData> {
        self.parties.get(party)?.get(room)
    }

    pub fn get(&self, party: &str, room: &str, key: &str) -> Option<&[u8]> {
        self.room(party, room)?.map.get(key).map(Vec::as_slice)
    }

    pub fn alarm(&self, party: &str, room: &str) -> Option<u64> {
        self.room(party, room)?.alarm
    }

    /// Every room that has keys or an alarm, in no particular order.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, &str, &RoomData)> + '_ {
        self.parties.iter().flat_map(|(p, rooms)| {
            rooms
                .iter()
                .map(move |(r, data)| (p.as_str(), r.as_str(), data))
        })
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// The log grew (a record was encoded) or was replaced (compaction, replay): `log.rs` is
    /// the only caller.
    pub fn set_log_bytes(&mut self, n: u64) {
        self.log_bytes = n;
    }

    pub fn add_log_bytes(&mut self, n: u64) {
        self.log_bytes += n;
    }

    /// Whether rewriting the log would pay off: dead records are over half of it and it is big
    /// enough for that to matter.
    pub fn should_compact(&self, min_log_bytes: u64) -> bool {
        self.log_bytes > min_log_bytes && self.log_bytes > 2 * self.live_bytes
    }

    /// Entries of one room in Durable Objects' `list()` semantics.
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidListOptions`] if both `start` and `start_after` are given, or
    /// `limit` is zero.
    pub fn list<'s>(
        &'s self,
        party: &str,
        room: &str,
        opts: &ListOptions<'_>,
    ) -> Result<Vec<(&'s str, &'s [u8])>, StorageError> {
        if (opts.start.is_some() && opts.start_after.is_some()) || opts.limit == Some(0) {
            return Err(StorageError::InvalidListOptions);
        }
        let Some(data) = self.room(party, room) else {
            return Ok(Vec::new());
        };
        let (lo, hi) = list_bounds(opts);
        if empty_range(&lo, &hi) {
            return Ok(Vec::new());
        }
        let limit = opts.limit.unwrap_or(usize::MAX);
        let hi = match &hi {
            Bound::Included(s) => Bound::Included(s.as_str()),
            Bound::Excluded(s) => Bound::Excluded(s.as_str()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let range = data.map.range::<str, _>((lo, hi));
        let pick = |(k, v): (&'s String, &'s Vec<u8>)| (k.as_str(), v.as_slice());
        Ok(if opts.reverse {
            range.rev().take(limit).map(pick).collect()
        } else {
            range.take(limit).map(pick).collect()
        })
    }

    /// Applies a replayed record.
    pub fn apply(&mut self, record: Record) {
        self.apply_op(&record.party, &record.room, record.op);
    }

    /// Applies one op to one room and returns how many keys it removed (for `delete`'s
    /// result; 0 for puts and alarms).
    pub fn apply_op(&mut self, party: &str, room: &str, op: Op) -> usize {
        let removed = match op {
            Op::Put { entries } => {
                if entries.is_empty() {
                    return 0;
                }
                let overhead = put_overhead(party, room);
                let data = self.room_mut(party, room);
                let mut delta: i64 = if data.map.is_empty() {
                    overhead as i64
                } else {
                    0
                };
                for (k, v) in entries {
                    let add = put_entry_len(&k, &v) as u64;
                    let sub = match data.map.get(k.as_str()) {
                        Some(old) => put_entry_len(&k, old) as u64,
                        None => 0,
                    };
                    data.map.insert(k, v);
                    data.entry_bytes = data.entry_bytes + add - sub;
                    delta += add as i64 - sub as i64;
                }
                self.live_bytes = self.live_bytes.wrapping_add_signed(delta);
                0
            }
            Op::Delete { keys } => {
                let Some(data) = self.parties.get_mut(party).and_then(|r| r.get_mut(room)) else {
                    return 0;
                };
                let was_empty = data.map.is_empty();
                let mut removed = 0;
                let mut freed = 0;
                for k in keys {
                    if let Some(v) = data.map.remove(k.as_str()) {
                        removed += 1;
                        freed += put_entry_len(&k, &v) as u64;
                    }
                }
                data.entry_bytes -= freed;
                if !was_empty && data.map.is_empty() {
                    freed += put_overhead(party, room);
                }
                self.live_bytes -= freed;
                removed
            }
            Op::DeleteAll => {
                let Some(data) = self.parties.get_mut(party).and_then(|r| r.get_mut(room)) else {
                    return 0;
                };
                let removed = data.map.len();
                if removed > 0 {
                    self.live_bytes -= data.entry_bytes + put_overhead(party, room);
                }
                data.map.clear();
                data.entry_bytes = 0;
                removed
            }
            Op::SetAlarm { at_ms } => {
                let len = alarm_record_len(party, room);
                let data = self.room_mut(party, room);
                let before = data.alarm.is_some();
                data.alarm = at_ms;
                match (before, at_ms.is_some()) {
                    (false, true) => self.live_bytes += len,
                    (true, false) => self.live_bytes -= len,
                    _ => {}
                }
                0
            }
        };
        self.drop_if_empty(party, room);
        removed
    }

    /// The room's data, created empty if absent (allocating its names only then).
    fn room_mut(&mut self, party: &str, room: &str) -> &mut RoomData {
        if !self.parties.contains_key(party) {
            self.parties.insert(party.to_owned(), HashMap::new());
        }
        let rooms = self.parties.get_mut(party).expect("inserted above");
        // Two lookups on the first write of a room, one afterwards; `entry` would allocate
        // the name on every call.
        if !rooms.contains_key(room) {
            rooms.insert(room.to_owned(), RoomData::default());
        }
        rooms.get_mut(room).expect("inserted above")
    }

    fn drop_if_empty(&mut self, party: &str, room: &str) {
        let Some(rooms) = self.parties.get_mut(party) else {
            return;
        };
        if let Some(d) = rooms.get(room) {
            if d.map.is_empty() && d.alarm.is_none() {
                rooms.remove(room);
            }
        }
        if rooms.is_empty() {
            self.parties.remove(party);
        }
    }
}

/// The key range `[lo, hi)` that `opts` selects, before `limit` and `reverse`.
fn list_bounds<'a>(opts: &ListOptions<'a>) -> (Bound<&'a str>, Bound<String>) {
    let mut lo = match (opts.start, opts.start_after) {
        (Some(s), _) => Bound::Included(s),
        (None, Some(s)) => Bound::Excluded(s),
        (None, None) => Bound::Unbounded,
    };
    let mut hi = opts
        .end
        .map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_owned()));
    if let Some(p) = opts.prefix {
        // The prefix narrows both ends: keys >= prefix, and < the first string after every
        // string that starts with it.
        let tighter_lo = match lo {
            Bound::Unbounded => true,
            Bound::Included(s) | Bound::Excluded(s) => s < p,
        };
        if tighter_lo {
            lo = Bound::Included(p);
        }
        if let Some(succ) = prefix_successor(p) {
            let tighter_hi = match &hi {
                Bound::Unbounded => true,
                Bound::Included(e) | Bound::Excluded(e) => succ < *e,
            };
            if tighter_hi {
                hi = Bound::Excluded(succ);
            }
        }
    }
    (lo, hi)
}

/// The smallest string greater than every string that starts with `prefix`, or `None` if there
/// is none (empty prefix, or only `char::MAX`s).
///
/// Drop trailing `char::MAX`s, then bump the last char to the next scalar value. This is right
/// for byte order because UTF-8 preserves code-point order.
fn prefix_successor(prefix: &str) -> Option<String> {
    let trimmed = prefix.trim_end_matches(char::MAX);
    let last = trimmed.chars().next_back()?;
    let next = match last as u32 + 1 {
        0xD800 => '\u{E000}',
        n => char::from_u32(n).expect("below char::MAX and not a surrogate"),
    };
    let mut s = trimmed[..trimmed.len() - last.len_utf8()].to_owned();
    s.push(next);
    Some(s)
}

/// `BTreeMap::range` panics on an inverted or empty-exclusive range; those list nothing.
fn empty_range(lo: &Bound<&str>, hi: &Bound<String>) -> bool {
    let (l, l_incl) = match lo {
        Bound::Unbounded => return false,
        Bound::Included(s) => (*s, true),
        Bound::Excluded(s) => (*s, false),
    };
    let (h, h_incl) = match hi {
        Bound::Unbounded => return false,
        Bound::Included(s) => (s.as_str(), true),
        Bound::Excluded(s) => (s.as_str(), false),
    };
    l > h || (l == h && !(l_incl && h_incl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::encode;

    fn put(idx: &mut Index, party: &str, room: &str, kv: &[(&str, &str)]) {
        let entries = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        idx.apply_op(party, room, Op::Put { entries });
    }

    fn keys(idx: &Index, opts: ListOptions<'_>) -> Vec<String> {
        idx.list("p", "r", &opts)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect()
    }

    fn sample() -> Index {
        let mut idx = Index::new();
        let ks = [
            "",
            "a",
            "ab",
            "abc",
            "abd",
            "ac",
            "b",
            "ba",
            "c",
            "\u{10FFFF}",
            "é",
        ];
        put(&mut idx, "p", "r", &ks.map(|k| (k, "v")));
        put(&mut idx, "p", "other", &[("a", "x")]);
        idx
    }

    #[test]
    fn list_follows_durable_object_semantics() {
        let idx = sample();
        let o = ListOptions::default;
        #[rustfmt::skip]
        let table: Vec<(&str, ListOptions<'_>, &[&str])> = vec![
            ("all", o(), &["", "a", "ab", "abc", "abd", "ac", "b", "ba", "c", "é", "\u{10FFFF}"]),
            ("prefix", ListOptions { prefix: Some("ab"), ..o() }, &["ab", "abc", "abd"]),
            ("empty prefix = all", ListOptions { prefix: Some(""), limit: Some(2), ..o() }, &["", "a"]),
            ("prefix no match", ListOptions { prefix: Some("zz"), ..o() }, &[]),
            ("prefix max char", ListOptions { prefix: Some("\u{10FFFF}"), ..o() }, &["\u{10FFFF}"]),
            ("start inclusive", ListOptions { start: Some("b"), ..o() }, &["b", "ba", "c", "é", "\u{10FFFF}"]),
            ("start between", ListOptions { start: Some("abe"), end: Some("b"), ..o() }, &["ac"]),
            ("startAfter exclusive", ListOptions { start_after: Some("b"), end: Some("c"), ..o() }, &["ba"]),
            ("end exclusive", ListOptions { end: Some("ab"), ..o() }, &["", "a"]),
            ("start == end", ListOptions { start: Some("b"), end: Some("b"), ..o() }, &[]),
            ("start > end", ListOptions { start: Some("c"), end: Some("a"), ..o() }, &[]),
            ("startAfter == end", ListOptions { start_after: Some("a"), end: Some("a"), ..o() }, &[]),
            ("limit", ListOptions { limit: Some(3), ..o() }, &["", "a", "ab"]),
            ("limit > len", ListOptions { prefix: Some("b"), limit: Some(99), ..o() }, &["b", "ba"]),
            ("reverse", ListOptions { prefix: Some("a"), reverse: true, ..o() }, &["ac", "abd", "abc", "ab", "a"]),
            ("reverse then limit", ListOptions { reverse: true, limit: Some(2), ..o() }, &["\u{10FFFF}", "é"]),
            ("reverse range limit", ListOptions { start: Some("ab"), end: Some("b"), reverse: true, limit: Some(2), ..o() }, &["ac", "abd"]),
            ("prefix ∩ start", ListOptions { prefix: Some("ab"), start: Some("abd"), ..o() }, &["abd"]),
            ("start below prefix", ListOptions { prefix: Some("ab"), start: Some("a"), ..o() }, &["ab", "abc", "abd"]),
            ("prefix ∩ startAfter", ListOptions { prefix: Some("ab"), start_after: Some("ab"), ..o() }, &["abc", "abd"]),
            ("prefix ∩ end", ListOptions { prefix: Some("ab"), end: Some("abd"), ..o() }, &["ab", "abc"]),
            ("end above prefix", ListOptions { prefix: Some("ab"), end: Some("zz"), ..o() }, &["ab", "abc", "abd"]),
            ("prefix disjoint from range", ListOptions { prefix: Some("b"), end: Some("ab"), ..o() }, &[]),
            ("all options", ListOptions { prefix: Some("a"), start_after: Some("a"), end: Some("ac"), limit: Some(2), reverse: true, ..o() }, &["abd", "abc"]),
        ];
        for (name, opts, want) in table {
            assert_eq!(keys(&idx, opts), want, "{name}");
        }
    }

    #[test]
    fn list_rejects_what_durable_objects_reject() {
        let idx = sample();
        let both = ListOptions {
            start: Some("a"),
            start_after: Some("a"),
            ..Default::default()
        };
        let zero = ListOptions {
            limit: Some(0),
            ..Default::default()
        };
        assert_eq!(
            idx.list("p", "r", &both),
            Err(StorageError::InvalidListOptions)
        );
        assert_eq!(
            idx.list("p", "r", &zero),
            Err(StorageError::InvalidListOptions)
        );
        assert_eq!(
            idx.list("p", "missing", &ListOptions::default()),
            Ok(vec![])
        );
    }

    #[test]
    fn prefix_successor_table() {
        let table = [
            ("", None),
            ("a", Some("b")),
            ("az", Some("a{")),
            ("a\u{10FFFF}", Some("b")),
            ("\u{10FFFF}\u{10FFFF}", None),
            ("x\u{D7FF}", Some("x\u{E000}")),
            ("é", Some("ê")),
        ];
        for (p, want) in table {
            assert_eq!(prefix_successor(p).as_deref(), want, "{p:?}");
        }
    }

    #[test]
    fn ops_and_empty_rooms() {
        let mut idx = Index::new();
        put(&mut idx, "p", "r", &[("a", "1"), ("b", "2"), ("c", "3")]);
        put(&mut idx, "p", "r", &[("a", "9")]);
        assert_eq!(idx.get("p", "r", "a"), Some(&b"9"[..]));
        let n = idx.apply_op(
            "p",
            "r",
            Op::Delete {
                keys: vec!["a".into(), "zz".into()],
            },
        );
        assert_eq!(n, 1);
        idx.apply_op("p", "r", Op::SetAlarm { at_ms: Some(5) });
        assert_eq!(idx.apply_op("p", "r", Op::DeleteAll), 2);
        // The alarm survives deleteAll, so the room does too.
        assert_eq!(idx.alarm("p", "r"), Some(5));
        assert_eq!(idx.rooms().count(), 1);
        idx.apply_op("p", "r", Op::SetAlarm { at_ms: None });
        assert_eq!(idx.rooms().count(), 0);
        assert_eq!(idx.live_bytes(), FILE_MAGIC.len() as u64);
        // Deleting in a room that does not exist creates nothing.
        idx.apply_op(
            "q",
            "r",
            Op::Delete {
                keys: vec!["a".into()],
            },
        );
        idx.apply_op("q", "r", Op::DeleteAll);
        assert_eq!(idx.rooms().count(), 0);
    }

    /// `live_bytes` must equal the size of the log compaction would write: check it against
    /// actually encoding one Put and one SetAlarm per room after a mixed sequence.
    #[test]
    fn live_bytes_matches_a_compacted_log() {
        let mut idx = Index::new();
        put(&mut idx, "p", "r", &[("a", "1"), ("bb", "22")]);
        put(&mut idx, "p", "r", &[("a", "longer value")]);
        put(&mut idx, "party", "room", &[("k", "v")]);
        idx.apply_op("party", "room", Op::SetAlarm { at_ms: Some(1) });
        idx.apply_op("party", "room", Op::SetAlarm { at_ms: Some(2) });
        idx.apply_op(
            "p",
            "r",
            Op::Delete {
                keys: vec!["bb".into()],
            },
        );
        put(&mut idx, "x", "y", &[("gone", "soon")]);
        idx.apply_op("x", "y", Op::DeleteAll);
        idx.apply_op("q", "alarm-only", Op::SetAlarm { at_ms: Some(3) });

        let mut buf = FILE_MAGIC.to_vec();
        for (party, room, data) in idx.rooms() {
            if !data.map.is_empty() {
                let entries = data
                    .map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                encode(party, room, &Op::Put { entries }, &mut buf);
            }
            if data.alarm.is_some() {
                encode(party, room, &Op::SetAlarm { at_ms: data.alarm }, &mut buf);
            }
        }
        assert_eq!(idx.live_bytes(), buf.len() as u64);
    }
}
