//! A core's rooms, by party and room id.
//!
//! One `HashMap` per party (indexed by the party's position in the core's party list), keyed by
//! the raw room id, so a lookup borrows the id from the request buffer instead of allocating.
//!
//! The map is hashbrown's (std's own table) for its `entry_ref`: finding or creating a room, and
//! dropping it when it is empty, hash the id once each. With std's `HashMap` that took five
//! hashes per request to a room not in memory (a GET of an empty room), among the top entries
//! of a pipelined-GET profile (PERF.md §2d). The hasher stays std's keyed SipHash: room ids
//! come from clients.

use std::{hash::RandomState, rc::Rc};

use hashbrown::{hash_map::EntryRef, HashMap};

use super::{Host, Room};
use crate::storage::Storage;

pub struct RoomTable {
    by_party: Vec<HashMap<String, Room, RandomState>>,
    party_names: Vec<Rc<str>>,
    storage: Storage,
    host: Host,
}

impl RoomTable {
    pub fn new(party_names: Vec<Rc<str>>, storage: Storage, host: Host) -> Self {
        RoomTable {
            by_party: party_names
                .iter()
                .map(|_| HashMap::with_hasher(RandomState::new()))
                .collect(),
            party_names,
            storage,
            host,
        }
    }

    /// The room, created empty (not yet started) if it is not in memory.
    pub fn get_or_create(&mut self, party: usize, id: &str) -> &mut Room {
        let (names, storage, host) = (&self.party_names, &self.storage, &self.host);
        self.by_party[party].entry_ref(id).or_insert_with(|| {
            Room::new(
                party,
                names[party].clone(),
                id,
                storage.clone(),
                host.clone(),
            )
        })
    }

    pub fn get_mut(&mut self, party: usize, id: &str) -> Option<&mut Room> {
        self.by_party[party].get_mut(id)
    }

    /// Drops the room if it has nothing left to keep.
    pub fn remove_if_empty(&mut self, party: usize, id: &str) {
        if let EntryRef::Occupied(room) = self.by_party[party].entry_ref(id) {
            if room.get().is_empty() {
                room.remove();
            }
        }
    }

    /// Every room on this core.
    pub fn iter(&self) -> impl Iterator<Item = &Room> {
        self.by_party.iter().flat_map(HashMap::values)
    }

    /// Number of rooms on this core.
    pub fn len(&self) -> usize {
        self.by_party.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::host::Detached;

    #[test]
    fn rooms_come_and_go() {
        let mut t = RoomTable::new(
            vec!["p".into(), "main".into()],
            Storage::memory(),
            Detached::host(),
        );
        t.get_or_create(0, "a");
        assert_eq!(t.len(), 1);
        t.remove_if_empty(0, "a");
        assert!(t.is_empty());
        t.get_or_create(1, "a").set_state(1u8);
        t.get_or_create(1, "b");
        t.remove_if_empty(1, "a");
        t.remove_if_empty(1, "b");
        assert_eq!(t.len(), 1, "a room with party state stays");
        assert!(t.get_mut(1, "a").is_some());
        assert!(t.get_mut(1, "b").is_none());
        assert!(t.get_mut(0, "a").is_none());
    }
}
