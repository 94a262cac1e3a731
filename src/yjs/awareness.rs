//! The server's copy of a document's awareness (presence: cursors, names), with the rules of
//! y-protocols' `applyAwarenessUpdate` and `removeAwarenessStates`, which is what a y-partykit
//! server runs.
//!
//! A state is a client id, a clock and a JSON value; `null` means "gone". An entry replaces
//! the known one if its clock is newer, or if it has the same clock and says `null` (that is
//! how a removal travels). The server has no state of its own, so the y-protocols rule that
//! protects the local client's state never applies here. Entries are kept after removal (their
//! clock is what makes a late, older update lose); they go when the document is unloaded.
//!
//! yrs has an `Awareness` too, but it owns a `Doc` and a concurrent map; this table is the
//! plain core-local part, and it validates a whole update (var-ints and every JSON value)
//! before changing anything, so a malformed update is refused as a unit and never relayed.

use std::collections::HashMap;

use yrs::encoding::{
    read::{Cursor, Read},
    write::Write,
};

const NULL: &str = "null";

/// Known awareness states by client id.
#[derive(Default)]
pub struct Awareness {
    states: HashMap<u64, State>,
}

struct State {
    clock: u64,
    /// The JSON value; `None` once removed.
    json: Option<Box<str>>,
}

/// What an update changed (y-protocols' `{ added, updated, removed }`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<u64>,
    pub updated: Vec<u64>,
    pub removed: Vec<u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }

    /// Every changed client, in y-protocols' order (added, updated, removed).
    pub fn all(&self) -> impl Iterator<Item = u64> + '_ {
        self.added
            .iter()
            .chain(&self.updated)
            .chain(&self.removed)
            .copied()
    }
}

/// Why an awareness update was refused (close 1007).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwarenessError {
    Truncated,
    /// A state is not JSON.
    NotJson,
}

impl AwarenessError {
    pub fn reason(self) -> &'static str {
        match self {
            AwarenessError::Truncated => "yjs: truncated awareness update",
            AwarenessError::NotJson => "yjs: awareness state is not JSON",
        }
    }
}

impl Awareness {
    /// Applies an encoded awareness update; nothing changes if it is malformed.
    ///
    /// # Errors
    /// [`AwarenessError`] if the update is cut short or a state is not JSON.
    pub fn apply(&mut self, encoded: &[u8]) -> Result<Changes, AwarenessError> {
        let entries = parse(encoded)?;
        let mut changes = Changes::default();
        for (client, clock, json) in entries {
            let json = (json != NULL).then(|| Box::<str>::from(json));
            match self.states.get_mut(&client) {
                // An unknown client counts as clock 0, as in y-protocols.
                None => {
                    if clock > 0 {
                        if json.is_some() {
                            changes.added.push(client);
                        }
                        self.states.insert(client, State { clock, json });
                    }
                }
                Some(state) => {
                    let removal = json.is_none();
                    if state.clock < clock
                        || (state.clock == clock && removal && state.json.is_some())
                    {
                        if removal {
                            changes.removed.push(client);
                        } else {
                            changes.updated.push(client);
                        }
                        state.clock = clock;
                        state.json = json;
                    }
                }
            }
        }
        Ok(changes)
    }

    /// Marks `clients` gone (their connection closed), keeping their clocks; returns those that
    /// had a state.
    pub fn remove(&mut self, clients: &[u64]) -> Vec<u64> {
        let mut removed = Vec::new();
        for client in clients {
            if let Some(state) = self.states.get_mut(client) {
                if state.json.take().is_some() {
                    removed.push(*client);
                }
            }
        }
        removed
    }

    /// Clients that have a state now.
    pub fn present(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .states
            .iter()
            .filter(|(_, s)| s.json.is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Encodes the current entries of `clients` (y-protocols' `encodeAwarenessUpdate`): a
    /// removed or unknown client is sent as `null`.
    pub fn encode(&self, clients: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let clients: Vec<u64> = clients.into_iter().collect();
        let mut out = Vec::new();
        out.write_var(clients.len());
        for client in clients {
            let state = self.states.get(&client);
            out.write_var(client);
            out.write_var(state.map_or(0, |s| s.clock));
            out.write_string(state.and_then(|s| s.json.as_deref()).unwrap_or(NULL));
        }
        out
    }

    /// The JSON state of `client`, if it has one.
    pub fn state(&self, client: u64) -> Option<&str> {
        self.states.get(&client)?.json.as_deref()
    }
}

/// Every entry of an update, checked: var-ints complete and each state valid JSON.
fn parse(encoded: &[u8]) -> Result<Vec<(u64, u64, &str)>, AwarenessError> {
    let mut cur = Cursor::new(encoded);
    let n: u64 = cur.read_var().map_err(|_| AwarenessError::Truncated)?;
    // Each entry takes at least 3 bytes: a claimed count beyond that is a lie, not a reason to
    // reserve memory.
    let n = usize::try_from(n).map_err(|_| AwarenessError::Truncated)?;
    if n > encoded.len() / 3 {
        return Err(AwarenessError::Truncated);
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let client: u64 = cur.read_var().map_err(|_| AwarenessError::Truncated)?;
        let clock: u64 = cur.read_var().map_err(|_| AwarenessError::Truncated)?;
        let len: usize = cur.read_var().map_err(|_| AwarenessError::Truncated)?;
        let end = cur.next.checked_add(len).ok_or(AwarenessError::Truncated)?;
        let bytes = encoded
            .get(cur.next..end)
            .ok_or(AwarenessError::Truncated)?;
        cur.next = end;
        let json = std::str::from_utf8(bytes).map_err(|_| AwarenessError::NotJson)?;
        serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(|_| AwarenessError::NotJson)?;
        entries.push((client, clock, json));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(entries: &[(u64, u64, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.write_var(entries.len());
        for (c, k, j) in entries {
            out.write_var(*c);
            out.write_var(*k);
            out.write_string(j);
        }
        out
    }

    #[test]
    fn add_update_remove_like_y_protocols() {
        let mut a = Awareness::default();
        let ch = a.apply(&update(&[(7, 1, r#"{"u":"a"}"#)])).unwrap();
        assert_eq!(ch.added, [7]);
        // An older or equal clock with a state loses.
        assert!(a
            .apply(&update(&[(7, 1, r#"{"u":"b"}"#)]))
            .unwrap()
            .is_empty());
        assert_eq!(a.state(7), Some(r#"{"u":"a"}"#));
        let ch = a.apply(&update(&[(7, 2, r#"{"u":"b"}"#)])).unwrap();
        assert_eq!(ch.updated, [7]);
        // Same clock and null: removed.
        let ch = a.apply(&update(&[(7, 2, "null")])).unwrap();
        assert_eq!(ch.removed, [7]);
        assert_eq!(a.present(), Vec::<u64>::new());
        // A late update with an older clock cannot bring it back.
        assert!(a.apply(&update(&[(7, 1, "{}")])).unwrap().is_empty());
        // Clock 0 for an unknown client is ignored, as y-protocols does.
        assert!(a.apply(&update(&[(8, 0, "{}")])).unwrap().is_empty());
    }

    #[test]
    fn removal_on_close_keeps_the_clock_and_encodes_null() {
        let mut a = Awareness::default();
        a.apply(&update(&[(1, 3, "{}"), (2, 1, "{}")])).unwrap();
        assert_eq!(a.remove(&[1, 9]), [1]);
        assert_eq!(a.encode([1]), update(&[(1, 3, "null")]));
        // Peers applying that encoding drop client 1 (same clock, null).
        let mut peer = Awareness::default();
        peer.apply(&update(&[(1, 3, "{}")])).unwrap();
        assert_eq!(peer.apply(&a.encode([1])).unwrap().removed, [1]);
        assert_eq!(a.present(), [2]);
    }

    #[test]
    fn malformed_updates_change_nothing() {
        let mut a = Awareness::default();
        let mut bad = update(&[(1, 1, "{}"), (2, 1, "{not json")]);
        assert_eq!(a.apply(&bad), Err(AwarenessError::NotJson));
        assert!(
            a.present().is_empty(),
            "the valid first entry was not applied"
        );
        bad.truncate(4);
        assert_eq!(a.apply(&bad), Err(AwarenessError::Truncated));
        assert_eq!(
            a.apply(&[0xff, 0xff, 0xff, 0x0f]),
            Err(AwarenessError::Truncated)
        );
        assert_eq!(a.apply(&[]), Err(AwarenessError::Truncated));
    }
}
