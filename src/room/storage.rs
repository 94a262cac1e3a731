//! [`RoomStorage`]: one room's view of its core's [`Storage`] (PartyKit's `room.storage`, the
//! Durable Object API): the party and room names are bound, so a party cannot touch another
//! room's keys by mistake. Reads are served from memory at once; writes are visible at once and
//! return a [`Durable`] that resolves when they are on disk (group commit: every write of one
//! event-loop pass shares one fsync). A write that cannot be made durable is discarded: reads
//! no longer show it, and its future resolves to the [`StorageError`] (`NoSpace` for a full
//! disk). Await the future before telling anyone about the write; an HTTP answer is held for
//! it automatically (the output gate, `party/set.rs`, `Parties::request`).

use std::rc::Rc;

use crate::storage::{Durable, ListOptions, Storage, StorageError};

/// One room's durable key-value storage. Cheap to clone; valid after its room is dropped.
#[derive(Clone)]
pub struct RoomStorage {
    storage: Storage,
    party: Rc<str>,
    room: Rc<str>,
}

impl RoomStorage {
    pub(crate) fn new(storage: Storage, party: Rc<str>, room: Rc<str>) -> Self {
        RoomStorage {
            storage,
            party,
            room,
        }
    }

    /// A copy of the value under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.storage.get(&self.party, &self.room, key)
    }

    /// The value under `key`, deserialised from JSON (`None` if absent or not a `T`).
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_slice(&self.get(key)?).ok()
    }

    /// Several keys at once, in the order asked.
    pub fn get_many(&self, keys: &[&str]) -> Vec<Option<Vec<u8>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Entries in key order (Durable Objects' `list()`: prefix, start, start_after, end, limit,
    /// reverse).
    ///
    /// # Errors
    /// [`StorageError::InvalidListOptions`] (`start` with `start_after`, or `limit: 0`).
    pub fn list(&self, opts: &ListOptions<'_>) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.storage.list(&self.party, &self.room, opts)
    }

    /// Whether writes go to a log on disk (`false`: memory only, `persist: false`).
    pub fn is_persistent(&self) -> bool {
        self.storage.is_persistent()
    }

    /// Sets one key.
    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Durable<()> {
        self.storage
            .put_one(&self.party, &self.room, key, value.into())
    }

    /// Sets one key to `value` as JSON.
    pub fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Durable<()> {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.put(key, bytes),
            Err(e) => {
                tracing::warn!(key, error = %e, "storage put_json: value does not serialise");
                Durable::ready(Err(StorageError::NotJson))
            }
        }
    }

    /// Sets every entry atomically (one record: after a crash, all or none).
    pub fn put_many(&self, entries: Vec<(String, Vec<u8>)>) -> Durable<()> {
        self.storage.put(&self.party, &self.room, entries)
    }

    /// Deletes one key; resolves to whether it existed.
    pub fn delete(&self, key: &str) -> Durable<bool> {
        self.storage
            .delete(&self.party, &self.room, vec![key.to_owned()])
            .map(|n| n > 0)
    }

    /// Deletes the keys atomically; resolves to how many existed.
    pub fn delete_many(&self, keys: Vec<String>) -> Durable<usize> {
        self.storage.delete(&self.party, &self.room, keys)
    }

    /// Deletes every key of the room (not its alarm); resolves to how many there were.
    pub fn delete_all(&self) -> Durable<usize> {
        self.storage.delete_all(&self.party, &self.room)
    }

    /// Resolves once every write issued so far is durable (Durable Objects' `sync()`).
    pub fn sync(&self) -> Durable<()> {
        self.storage.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn put_json_refuses_a_value_that_is_not_json_and_writes_nothing() {
        let run = async {
            let storage = Storage::memory();
            storage.start();
            let room = RoomStorage::new(storage, "p".into(), "r".into());
            // JSON object keys must be strings: a map keyed by tuples does not serialise.
            let not_json: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
            assert_eq!(
                room.put_json("k", &not_json).await,
                Err(StorageError::NotJson)
            );
            assert_eq!(room.get("k"), None);
            room.put_json("k", &[1, 2]).await.unwrap();
            assert_eq!(room.get_json::<Vec<u8>>("k"), Some(vec![1, 2]));
        };
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(run);
    }
}
