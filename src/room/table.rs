//! A core's rooms, by party and room id.
//!
//! One `HashMap` per party (indexed by the party's position in the core's party list), keyed by
//! the raw room id, so a lookup borrows the id from the request buffer instead of allocating.

use std::collections::HashMap;

use super::Room;

pub struct RoomTable {
    by_party: Vec<HashMap<Box<str>, Room>>,
    history_limit: usize,
}

impl RoomTable {
    pub fn new(parties: usize, history_limit: usize) -> Self {
        RoomTable {
            by_party: (0..parties).map(|_| HashMap::new()).collect(),
            history_limit,
        }
    }

    /// The room, created empty if it does not exist yet.
    pub fn get_or_create(&mut self, party: usize, id: &str) -> &mut Room {
        let map = &mut self.by_party[party];
        if !map.contains_key(id) {
            map.insert(id.into(), Room::new(party, id, self.history_limit));
        }
        map.get_mut(id).expect("just inserted")
    }

    pub fn get_mut(&mut self, party: usize, id: &str) -> Option<&mut Room> {
        self.by_party[party].get_mut(id)
    }

    /// Drops the room if it has nothing left to keep.
    pub fn remove_if_empty(&mut self, party: usize, id: &str) {
        let map = &mut self.by_party[party];
        if map.get(id).is_some_and(Room::is_empty) {
            map.remove(id);
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
    fn rooms_come_and_go() {
        let mut t = RoomTable::new(2, 3);
        t.get_or_create(0, "a");
        assert_eq!(t.len(), 1);
        t.remove_if_empty(0, "a");
        assert!(t.is_empty());
        let r = t.get_or_create(1, "a");
        for m in ["1", "2", "3", "4"] {
            r.push_history(m.into());
        }
        assert_eq!(r.history().collect::<Vec<_>>(), ["2", "3", "4"]);
        assert_eq!(&*r.history_json(), br#"["2","3","4"]"#);
        t.remove_if_empty(1, "a");
        assert_eq!(t.len(), 1, "a room with history stays");
        assert!(t.get_mut(0, "a").is_none());
    }
}
