//! A document in room storage: an ordered log of Yjs updates, each stored under its sequence
//! number and split into values of at most `MAX_VALUE_BYTES` (128 KiB, Durable Objects' limit).
//!
//! ```text
//! yjs/u/<seq, 20 digits>/<chunk, 3 digits>-<chunks, 3 digits>   one update, in order
//! ```
//!
//! Both persistence modes use the same log. `history` appends every applied update and,
//! past its bound, *compacts*: the merged state is written as the next entry and every older
//! entry is deleted. `snapshot` only ever compacts (the merged state, written when the last
//! connection leaves and periodically while edits continue). Loading applies every complete
//! entry in order. Because Yjs updates are idempotent and commute, the crash windows are
//! harmless: a crash after a compaction's write but before its deletes leaves old entries
//! that the merged one already contains, and an entry whose chunks were partly deleted is
//! incomplete, skipped, and contained in a later one. One entry's chunks are written with one
//! atomic `put_many`, so an entry is never half-written.

use yrs::{updates::decoder::Decode, Doc, ReadTxn, StateVector, Transact, Update};

use crate::{
    room::RoomStorage,
    storage::{Durable, ListOptions, StorageError, MAX_KEYS_PER_OP, MAX_VALUE_BYTES},
};

const PREFIX: &str = "yjs/u/";

/// The largest update one entry holds (128 chunks of 128 KiB).
pub const MAX_ENTRY_BYTES: usize = MAX_KEYS_PER_OP * MAX_VALUE_BYTES;

/// A document's update log in its room's storage.
pub struct UpdateLog {
    storage: RoomStorage,
    /// The sequence number of the next entry.
    next: u64,
    /// Entries and their total bytes since the last compaction (the `history` bound).
    pub entries: usize,
    pub bytes: usize,
}

/// What `UpdateLog::load` found.
pub struct Loaded {
    pub log: UpdateLog,
    /// The stored updates, oldest first.
    pub updates: Vec<Vec<u8>>,
}

impl UpdateLog {
    /// Reads every complete entry; deletes incomplete ones (leftovers of an interrupted
    /// compaction).
    pub fn load(storage: RoomStorage) -> Loaded {
        let opts = ListOptions {
            prefix: Some(PREFIX),
            ..ListOptions::default()
        };
        let listed = storage.list(&opts).unwrap_or_default();
        let mut updates = Vec::new();
        let mut stale = Vec::new();
        let mut next = 0;
        let mut bytes = 0;
        let mut i = 0;
        while i < listed.len() {
            let Some((seq, _, n)) = parse_key(&listed[i].0) else {
                stale.push(listed[i].0.clone());
                i += 1;
                continue;
            };
            // The run of keys with this sequence number.
            let mut j = i;
            while j < listed.len() && parse_key(&listed[j].0).is_some_and(|(s, ..)| s == seq) {
                j += 1;
            }
            let run = &listed[i..j];
            let complete = run.len() == n
                && run
                    .iter()
                    .enumerate()
                    .all(|(k, (key, _))| parse_key(key) == Some((seq, k, n)));
            if complete {
                let update: Vec<u8> = run.iter().flat_map(|(_, v)| v.iter().copied()).collect();
                bytes += update.len();
                updates.push(update);
            } else {
                tracing::warn!(seq, "yjs: incomplete stored update skipped");
                stale.extend(run.iter().map(|(k, _)| k.clone()));
            }
            next = seq + 1;
            i = j;
        }
        let log = UpdateLog {
            storage,
            next,
            entries: updates.len(),
            bytes,
        };
        log.delete_keys(stale);
        Loaded { log, updates }
    }

    /// Appends one update.
    ///
    /// # Errors
    /// [`StorageError::ValueTooLarge`] past [`MAX_ENTRY_BYTES`]; nothing is written then.
    pub fn append(&mut self, update: &[u8]) -> Result<Durable<()>, StorageError> {
        let durable = self.write(update)?;
        self.entries += 1;
        self.bytes += update.len();
        Ok(durable)
    }

    /// Replaces the whole log by the document's merged state.
    ///
    /// # Errors
    /// As [`UpdateLog::append`]; the old entries are kept then.
    pub fn compact(&mut self, doc: &Doc) -> Result<Durable<()>, StorageError> {
        let merged = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let first_new = self.next;
        let durable = self.write(&merged)?;
        let opts = ListOptions {
            prefix: Some(PREFIX),
            ..ListOptions::default()
        };
        let old: Vec<String> = self
            .storage
            .list(&opts)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| parse_key(k).is_some_and(|(seq, ..)| seq < first_new))
            .collect();
        self.delete_keys(old);
        self.entries = 1;
        self.bytes = merged.len();
        Ok(durable)
    }

    fn write(&mut self, update: &[u8]) -> Result<Durable<()>, StorageError> {
        if update.len() > MAX_ENTRY_BYTES {
            return Err(StorageError::ValueTooLarge);
        }
        let chunks: Vec<&[u8]> = if update.is_empty() {
            vec![update]
        } else {
            update.chunks(MAX_VALUE_BYTES).collect()
        };
        let n = chunks.len();
        let seq = self.next;
        let entries = chunks
            .into_iter()
            .enumerate()
            .map(|(k, c)| (key(seq, k, n), c.to_vec()))
            .collect();
        self.next += 1;
        Ok(self.storage.put_many(entries))
    }

    fn delete_keys(&self, keys: Vec<String>) {
        for batch in keys.chunks(MAX_KEYS_PER_OP) {
            drop(self.storage.delete_many(batch.to_vec()));
        }
    }
}

/// Applies stored updates to a document; a stored update yrs cannot read is skipped and logged
/// (storage is ours, so that means a bug or a damaged disk, not a client).
pub fn apply_stored(doc: &Doc, updates: &[Vec<u8>]) {
    let mut txn = doc.transact_mut();
    for u in updates {
        match Update::decode_v1(u) {
            Ok(update) => {
                if let Err(e) = txn.apply_update(update) {
                    tracing::error!(error = %e, "yjs: a stored update does not apply");
                }
            }
            Err(e) => tracing::error!(error = %e, "yjs: a stored update does not decode"),
        }
    }
}

fn key(seq: u64, chunk: usize, chunks: usize) -> String {
    format!("{PREFIX}{seq:020}/{chunk:03}-{chunks:03}")
}

/// `(seq, chunk, chunks)` of a log key.
fn parse_key(key: &str) -> Option<(u64, usize, usize)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (seq, part) = rest.split_once('/')?;
    let (chunk, chunks) = part.split_once('-')?;
    Some((seq.parse().ok()?, chunk.parse().ok()?, chunks.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use yrs::{GetString, Text};

    use super::*;
    use crate::storage::Storage;

    fn storage() -> RoomStorage {
        RoomStorage::new(Storage::memory(), "yjs".into(), "r".into())
    }

    fn doc_with(text: &str) -> Doc {
        let doc = Doc::new();
        let t = doc.get_or_insert_text("t");
        t.push(&mut doc.transact_mut(), text);
        doc
    }

    fn text_of(updates: &[Vec<u8>]) -> String {
        let doc = Doc::new();
        apply_stored(&doc, updates);
        let t = doc.get_or_insert_text("t");
        let s = t.get_string(&doc.transact());
        s
    }

    #[test]
    fn keys_sort_in_log_order_and_parse_back() {
        assert!(key(9, 0, 1) < key(10, 0, 1));
        assert!(key(3, 1, 12) < key(3, 10, 12));
        assert_eq!(parse_key(&key(42, 7, 9)), Some((42, 7, 9)));
        assert_eq!(parse_key("yjs/u/x/000-001"), None);
    }

    #[test]
    fn appends_replay_in_order_and_compaction_keeps_the_content() {
        let store = storage();
        let mut log = UpdateLog::load(store.clone()).log;
        let doc = Doc::new();
        let t = doc.get_or_insert_text("t");
        for word in ["a", "b", "c"] {
            let mut txn = doc.transact_mut();
            t.push(&mut txn, word);
            drop(log.append(&txn.encode_update_v1()).unwrap());
        }
        let loaded = UpdateLog::load(store.clone());
        assert_eq!(loaded.updates.len(), 3);
        assert_eq!(text_of(&loaded.updates), "abc");
        drop(log.compact(&doc).unwrap());
        let loaded = UpdateLog::load(store.clone());
        assert_eq!(loaded.updates.len(), 1, "compacted to one entry");
        assert_eq!(text_of(&loaded.updates), "abc");
        // Numbering continues after a reload.
        let mut log = loaded.log;
        drop(log.append(&[0, 0]).unwrap());
        assert_eq!(UpdateLog::load(store).updates.len(), 2);
    }

    #[test]
    fn big_updates_are_chunked_and_incomplete_entries_skipped() {
        let store = storage();
        let mut log = UpdateLog::load(store.clone()).log;
        let big = "x".repeat(3 * MAX_VALUE_BYTES);
        let doc = doc_with(&big);
        drop(log.compact(&doc).unwrap());
        let keys: Vec<String> = store
            .list(&ListOptions::default())
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert_eq!(text_of(&UpdateLog::load(store.clone()).updates), big);
        // A later entry whose chunks were partly deleted is skipped (and removed).
        drop(
            log.append(
                &doc_with("zz")
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default()),
            ),
        );
        let extra = key(5, 0, 2);
        drop(store.put(&extra, vec![1, 2, 3]));
        let loaded = UpdateLog::load(store.clone());
        assert_eq!(
            loaded.updates.len(),
            2,
            "the big one and zz, not the torn one"
        );
        assert!(store.get(&extra).is_none());
        assert_eq!(
            log.append(&vec![0; MAX_ENTRY_BYTES + 1]).err(),
            Some(StorageError::ValueTooLarge)
        );
    }
}
