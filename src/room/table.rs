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

use super::Room;
use crate::storage::Storage;

pub struct RoomTable {
    by_party: Vec<HashMap<String, Room, RandomState>>,
    party_names: Vec<Rc<str>>,
    history_limit: usize,
    storage: Storage,
}

impl RoomTable {
    pub fn new(party_names: Vec<Rc<str>>, history_limit: usize, storage: Storage) -> Self {
        RoomTable {
            by_party: party_names
                .iter()
                .map(|_| HashMap::with_hasher(RandomState::new()))
                .collect(),
            party_names,
            history_limit,
            storage,
        }
    }

    /// The room, created empty (not yet started) if it is not in memory.
    pub fn get_or_create(&mut self, party: usize, id: &str) -> &mut Room {
        let (names, limit, storage) = (&self.party_names, self.history_limit, &self.storage);
        self.by_party[party]
            .entry_ref(id)
            .or_insert_with(|| Room::new(party, names[party].clone(), id, limit, storage.clone()))
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

    #[test]
    fn memory_rooms_keep_history_only_in_the_room() {
        let storage = Storage::memory();
        let mut t = RoomTable::new(vec!["main".into()], 3, storage.clone());
        let r = t.get_or_create(0, "a");
        drop(r.publish("1".into(), None));
        assert_eq!(
            r.history().collect::<Vec<_>>(),
            ["1"],
            "nothing to wait for"
        );
        assert!(storage
            .list("main", "a", &Default::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn rooms_come_and_go() {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(rooms_come_and_go_on_a_log());
    }

    /// Publishes `m` and waits until it is durable and shown (outside a core there is no gate
    /// task: the test releases the gate itself).
    async fn publish(r: &mut Room, m: &str) {
        let durable = r.publish(m.into(), None);
        assert!(r.history().all(|h| h != m), "held until durable");
        durable.await.unwrap();
        r.release_gate();
    }

    async fn rooms_come_and_go_on_a_log() {
        let dir = std::env::temp_dir().join(format!("partyring-table-{}", std::process::id()));
        let storage = Storage::open(&dir, 0, crate::storage::FsyncPolicy::Never).unwrap();
        storage.start();
        let mut t = RoomTable::new(vec!["p".into(), "main".into()], 3, storage.clone());
        t.get_or_create(0, "a");
        assert_eq!(t.len(), 1);
        t.remove_if_empty(0, "a");
        assert!(t.is_empty());
        let r = t.get_or_create(1, "a");
        for m in ["1", "2", "3", "4"] {
            publish(r, m).await;
        }
        assert_eq!(r.history().collect::<Vec<_>>(), ["2", "3", "4"]);
        assert_eq!(&*r.history_json(), br#"["2","3","4"]"#);
        t.remove_if_empty(1, "a");
        assert_eq!(t.len(), 1, "a room with history stays");
        assert!(t.get_mut(0, "a").is_none());
        storage.flush().await.unwrap();
        // The history is in storage, under ordered keys, the evicted one deleted.
        let keys: Vec<String> = storage
            .list("main", "a", &Default::default())
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "history/00000000000000000001",
                "history/00000000000000000002",
                "history/00000000000000000003"
            ]
        );
        // A fresh room over the same storage replays it and continues the numbering.
        let mut fresh = Room::new(1, "main".into(), "a", 3, storage.clone());
        fresh.load_history();
        assert_eq!(fresh.history().collect::<Vec<_>>(), ["2", "3", "4"]);
        publish(&mut fresh, "5").await;
        assert_eq!(fresh.history().collect::<Vec<_>>(), ["3", "4", "5"]);
        assert!(storage
            .get("main", "a", "history/00000000000000000004")
            .is_some());
        assert!(storage
            .get("main", "a", "history/00000000000000000001")
            .is_none());
        storage.close().await.unwrap();
        drop((t, fresh, storage));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
