//! [`Storage`]: opening the per-core log file, the write API (the append path), the
//! [`Durable`] future of a write, and the in-memory mode.
//!
//! Opening is synchronous (it runs once per core at startup, before the event loop has anything
//! else to do): take the directory lock, read the whole file, replay it into the [`Index`]
//! (`replay.rs`), and truncate a torn or corrupt tail at the last good record. After that only
//! the writer task touches the file. The state shared with that task is in `state.rs`.
//!
//! # Write path and group commit
//!
//! A write validates, encodes its record onto `pending`, applies the op to the index and
//! returns a [`Durable`] holding the record's sequence number. The writer task (`writer.rs`,
//! spawned by [`Storage::start`]) takes the *whole* `pending` buffer at once, writes it at the
//! end of the file, fsyncs (under [`FsyncPolicy::Always`]), publishes the batch's last sequence
//! number and wakes the waiters. Writes issued meanwhile pile up in `pending` and become the
//! next batch: the number of fsyncs follows the disk's speed, not the write rate.
//!
//! # Compaction
//!
//! Between batches, if dead bytes dominate, the writer encodes the whole index in one step (a
//! snapshot of every write issued so far, pending ones included), writes it to
//! `core-<k>.log.compact` in ~1 MiB writes (so the core keeps serving between them), fsyncs
//! it, renames it over the log, fsyncs the directory, and continues appending to the new file.
//! The pending records the snapshot already holds are durable with it and are dropped from
//! `pending`; writes issued during the compaction are appended after the rename. A crash before
//! the rename leaves the old log intact (the stale `.compact` file is deleted at the next open).
//!
//! # Failure
//!
//! A failed write or fsync discards what it cannot vouch for and the storage carries on
//! (`writer.rs` has the states): the file is cut back to the last offset known to be on disk,
//! every record after it (the failed batch and everything issued since) is *lost*, and the
//! index is rebuilt from the file, so reads no longer show them. A lost record's [`Durable`]
//! resolves to the error ([`StorageError::NoSpace`] for a full disk), and the next write tries
//! the disk again. Only if the file cannot be reopened and read back is the storage failed for
//! good: every later write then returns [`StorageError::Io`].
//!
//! # Corruption
//!
//! At open (`replay.rs`), a bad record with nothing valid after it is a torn tail (a crash cut the last write
//! short) and is truncated. A bad record *followed by intact ones* is damage in the middle of
//! the log: open fails with `InvalidData`, naming the file and the offset, and touches nothing.
//! [`repair`](fn@super::repair) cuts such a log at its first bad record.

use std::{
    cell::{Cell, RefCell},
    fs, future,
    future::Future,
    io,
    path::Path,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use super::{
    faults::Faults,
    index::{Index, ListOptions},
    record::{self, Op},
    replay::{self, compact_path, log_path, replay, sync_dir},
    state::{Disk, Inner, StorageStats},
    writer, FsyncPolicy, StorageError, StorageOptions, MAX_KEYS_PER_OP, MAX_KEY_BYTES,
    MAX_NAME_BYTES, MAX_VALUE_BYTES,
};

/// One core's room storage. Cloning is cheap (an `Rc`); every clone is the same store.
#[derive(Clone)]
pub struct Storage {
    inner: Rc<Inner>,
}

/// What [`Storage::write_mark`] returns: where the writes stood, to compare with later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteMark {
    seq: u64,
    refused: u64,
}

impl Storage {
    /// Opens (or creates) `<dir>/core-<core_id>.log` and replays it. See [`Storage::open_with`].
    pub fn open(dir: impl AsRef<Path>, core_id: usize, fsync: FsyncPolicy) -> io::Result<Storage> {
        Self::open_with(dir, core_id, StorageOptions::new().fsync(fsync))
    }

    /// Opens (or creates) `<dir>/core-<core_id>.log`, replays it into memory, and truncates a
    /// torn or corrupt tail (logged with `tracing::warn!`). Blocking: call it at core startup.
    /// Writes resolve only once [`Storage::start`] has spawned the writer task.
    ///
    /// # Errors
    ///
    /// IO errors; `WouldBlock` if another process holds the directory's lock for this core;
    /// `InvalidData` if the file does not start with the log magic (it is left untouched).
    pub fn open_with(
        dir: impl AsRef<Path>,
        core_id: usize,
        opts: StorageOptions,
    ) -> io::Result<Storage> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let lock = fs::File::create(dir.join(format!("core-{core_id}.lock")))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{}: core {core_id}'s log is in use by another process",
                    dir.display()
                ),
            ),
            fs::TryLockError::Error(e) => e,
        })?;
        let path = log_path(&dir, core_id);
        let compact = compact_path(&path);
        match fs::remove_file(&compact) {
            Ok(()) => tracing::warn!(path = %compact.display(), "removed an unfinished compaction"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }

        let faults = Faults::new(opts.faults);
        let mut opts = opts;
        if let Some(min) = faults.as_ref().and_then(Faults::compact_min_bytes) {
            opts.compact_min_bytes = min;
        }
        let existed = path.exists();
        let mut file = replay::log_options(opts.fsync == FsyncPolicy::Always)
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let bytes = {
            let mut v = Vec::new();
            io::Read::read_to_end(&mut file, &mut v)?;
            v
        };
        let mut index = Index::new();
        let file_len = replay(&path, &mut file, &bytes, &mut index)?;
        drop(bytes);
        if !existed {
            sync_dir(&dir)?;
        }
        index.set_log_bytes(file_len);

        let disk = Disk::new(dir, path, opts, (file, file_len), lock, faults);
        Ok(Storage::from_parts(index, Some(disk)))
    }

    /// A store with the same API and no file (`--persist false`): writes resolve at once.
    pub fn memory() -> Storage {
        Storage::from_parts(Index::new(), None)
    }

    fn from_parts(index: Index, disk: Option<Disk>) -> Storage {
        let stats = StorageStats {
            log_bytes: index.log_bytes(),
            live_bytes: index.live_bytes(),
            ..StorageStats::default()
        };
        Storage {
            inner: Rc::new(Inner {
                index: RefCell::new(index),
                disk,
                stats: Cell::new(stats),
            }),
        }
    }

    /// Spawns the writer task on the current monoio runtime. Call once, inside the core's
    /// runtime; later calls do nothing. Call [`Storage::close`] before the runtime is dropped:
    /// monoio does not drop parked tasks with the runtime, so a writer still waiting would keep
    /// the file (and its lock) open.
    pub fn start(&self) {
        let Some(disk) = &self.inner.disk else {
            return;
        };
        if disk.started.replace(true) {
            return;
        }
        let (file, len) = disk.file.borrow_mut().take().expect("taken only here");
        match file
            .try_clone()
            .and_then(|twin| Ok((monoio::fs::File::from_std(file)?, twin)))
        {
            Ok((file, twin)) => {
                monoio::spawn(writer::run(self.inner.clone(), file, twin, len));
            }
            Err(e) => self.inner.fail(&e),
        }
    }

    /// Whether writes go to a file ([`Storage::open`]) or only to memory ([`Storage::memory`]).
    pub fn is_persistent(&self) -> bool {
        self.inner.disk.is_some()
    }

    // ---- reads: straight from the index, never wait ----

    /// A copy of one value.
    pub fn get(&self, party: &str, room: &str, key: &str) -> Option<Vec<u8>> {
        self.inner
            .index
            .borrow()
            .get(party, room, key)
            .map(<[u8]>::to_vec)
    }

    /// Borrowed access to the index, for reads that should not copy (e.g. serialising values
    /// straight into a response). Do not call storage methods from inside `f`.
    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.inner.index.borrow())
    }

    /// Durable Objects' `list()`: entries of one room in key order. See [`ListOptions`].
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidListOptions`].
    pub fn list(
        &self,
        party: &str,
        room: &str,
        opts: &ListOptions<'_>,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let index = self.inner.index.borrow();
        let entries = index.list(party, room, opts)?;
        Ok(entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect())
    }

    /// The room's alarm, ms since the Unix epoch.
    pub fn alarm(&self, party: &str, room: &str) -> Option<u64> {
        self.inner.index.borrow().alarm(party, room)
    }

    /// Every room's alarm: `(party, room, at_ms)`, for the core to arm its timers at startup.
    pub fn alarms(&self) -> Vec<(String, String, u64)> {
        let index = self.inner.index.borrow();
        index
            .rooms()
            .filter_map(|(p, r, d)| Some((p.to_owned(), r.to_owned(), d.alarm?)))
            .collect()
    }

    // ---- writes: applied now, durable when the returned future resolves ----

    /// Sets every `(key, value)` atomically (one record). Later duplicates of a key win.
    pub fn put(&self, party: &str, room: &str, entries: Vec<(String, Vec<u8>)>) -> Durable<()> {
        let check = || {
            check_names(party, room)?;
            if entries.len() > MAX_KEYS_PER_OP {
                return Err(StorageError::TooManyKeys);
            }
            for (k, v) in &entries {
                if k.len() > MAX_KEY_BYTES {
                    return Err(StorageError::KeyTooLarge);
                }
                if v.len() > MAX_VALUE_BYTES {
                    return Err(StorageError::ValueTooLarge);
                }
            }
            Ok(())
        };
        if let Err(e) = check() {
            return Durable::ready(Err(e));
        }
        let changes = !entries.is_empty();
        self.write(party, room, Op::Put { entries }, changes)
            .map(|_| ())
    }

    /// Sets one key.
    pub fn put_one(&self, party: &str, room: &str, key: &str, value: Vec<u8>) -> Durable<()> {
        self.put(party, room, vec![(key.to_owned(), value)])
    }

    /// Removes the keys atomically; resolves to how many existed.
    pub fn delete(&self, party: &str, room: &str, keys: Vec<String>) -> Durable<usize> {
        if let Err(e) = check_names(party, room) {
            return Durable::ready(Err(e));
        }
        if keys.len() > MAX_KEYS_PER_OP {
            return Durable::ready(Err(StorageError::TooManyKeys));
        }
        if keys.iter().any(|k| k.len() > MAX_KEY_BYTES) {
            return Durable::ready(Err(StorageError::KeyTooLarge));
        }
        let changes = {
            let index = self.inner.index.borrow();
            keys.iter().any(|k| index.get(party, room, k).is_some())
        };
        self.write(party, room, Op::Delete { keys }, changes)
    }

    /// Removes every key of the room (not its alarm); resolves to how many there were.
    pub fn delete_all(&self, party: &str, room: &str) -> Durable<usize> {
        if let Err(e) = check_names(party, room) {
            return Durable::ready(Err(e));
        }
        let changes = self
            .inner
            .index
            .borrow()
            .room(party, room)
            .is_some_and(|d| !d.map.is_empty());
        self.write(party, room, Op::DeleteAll, changes)
    }

    /// Sets (`Some(ms since the epoch)`) or deletes (`None`) the room's alarm. Only stores it:
    /// arming a timer is the caller's job.
    pub fn set_alarm(&self, party: &str, room: &str, at_ms: Option<u64>) -> Durable<()> {
        if let Err(e) = check_names(party, room) {
            return Durable::ready(Err(e));
        }
        let changes = self.alarm(party, room) != at_ms;
        self.write(party, room, Op::SetAlarm { at_ms }, changes)
            .map(|_| ())
    }

    /// Resolves once every write issued so far is durable, fsynced even under
    /// [`FsyncPolicy::Every`] (Durable Objects' `sync()`).
    pub fn flush(&self) -> Durable<()> {
        let Some(disk) = &self.inner.disk else {
            return Durable::ready(Ok(()));
        };
        if let Some(e) = self.inner.write_error() {
            return Durable::ready(Err(e));
        }
        let seq = disk.barrier_seq();
        let need_sync = disk.opts.fsync != FsyncPolicy::Never;
        if need_sync && !disk.done(seq, true) {
            disk.sync_wanted.set(disk.sync_wanted.get().max(seq));
            disk.wake_writer();
        }
        Durable::waiting(self.inner.clone(), seq, need_sync, ())
    }

    /// A mark of the writes issued so far (the newest sequence number, and how many writes were
    /// refused at once because the storage had failed or closed), for
    /// [`Storage::barrier_since`].
    pub fn write_mark(&self) -> WriteMark {
        self.inner
            .disk
            .as_ref()
            .map_or(WriteMark::default(), |d| WriteMark {
                seq: d.last_seq.get(),
                refused: d.refused.get(),
            })
    }

    /// A future that resolves once every write issued since `mark` is durable (under the fsync
    /// policy, as their own futures would), or to the error one of them failed with; `None`
    /// if none was issued. This is how an answer computed by code that wrote is held back until
    /// those writes are safe (the output gate, `party/set.rs`).
    pub fn barrier_since(&self, mark: WriteMark) -> Option<Durable<()>> {
        let disk = self.inner.disk.as_ref()?;
        if disk.refused.get() != mark.refused {
            // A write since the mark was refused outright (it never got a sequence number):
            // whatever was computed after it must not go out as if it had been stored.
            let e = self.inner.write_error().unwrap_or(StorageError::Closed);
            return Some(Durable::ready(Err(e)));
        }
        let last = disk.last_seq.get();
        if last <= mark.seq {
            return None;
        }
        let need_sync = disk.opts.fsync == FsyncPolicy::Always;
        Some(Durable::waiting(self.inner.clone(), last, need_sync, ()))
    }

    /// Asks the writer to compact at its next pass, whatever the thresholds.
    pub fn request_compaction(&self) {
        if let Some(disk) = &self.inner.disk {
            disk.compact_requested.set(true);
            disk.wake_writer();
        }
    }

    /// Writes what is pending, fsyncs (unless [`FsyncPolicy::Never`]), and stops the writer.
    /// Later writes fail with [`StorageError::Closed`]; reads keep working. The directory lock
    /// is released here, so the same process may open the directory again.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`] if the log had failed.
    pub async fn close(&self) -> Result<(), StorageError> {
        let Some(disk) = &self.inner.disk else {
            return Ok(());
        };
        self.start();
        disk.closing.set(true);
        disk.wake_writer();
        future::poll_fn(|cx| {
            if disk.stopped.get() {
                return Poll::Ready(());
            }
            disk.wait(u64::MAX, false, cx.waker());
            Poll::Pending
        })
        .await;
        disk.release_lock();
        match disk.failed.get() {
            Some(kind) => Err(StorageError::Io(kind)),
            None => Ok(()),
        }
    }

    /// Failed writes and fsyncs so far ([`StorageStats::failures`]), without the rest of the
    /// stats: it changes exactly when writes were discarded, and is read on hot paths.
    pub fn failures(&self) -> u64 {
        self.inner.stats.get().failures
    }

    pub fn stats(&self) -> StorageStats {
        let index = self.inner.index.borrow();
        let degraded = self
            .inner
            .disk
            .as_ref()
            .is_some_and(|d| d.episode.get().is_some() || d.failed.get().is_some());
        StorageStats {
            log_bytes: index.log_bytes(),
            live_bytes: index.live_bytes(),
            degraded: u64::from(degraded),
            ..self.inner.stats.get()
        }
    }

    /// Encodes `op` (if it `changes` anything), applies it, and returns its future. An op that
    /// changes nothing writes no record but still waits for the writes before it, so awaiting
    /// any write means everything issued earlier is durable too.
    fn write(&self, party: &str, room: &str, op: Op, changes: bool) -> Durable<usize> {
        let inner = &self.inner;
        let Some(disk) = &inner.disk else {
            let removed = inner.index.borrow_mut().apply_op(party, room, op);
            return Durable::ready(Ok(removed));
        };
        if let Some(e) = inner.write_error() {
            disk.refused.set(disk.refused.get() + 1);
            return Durable::ready(Err(e));
        }
        let need_sync = disk.opts.fsync == FsyncPolicy::Always;
        if !changes {
            return Durable::waiting(inner.clone(), disk.barrier_seq(), need_sync, 0);
        }
        let n = record::encode(party, room, &op, &mut disk.pending.borrow_mut());
        let seq = disk.last_seq.get() + 1;
        disk.last_seq.set(seq);
        inner.bump(|s| s.records += 1);
        let removed = {
            let mut index = inner.index.borrow_mut();
            index.add_log_bytes(n as u64);
            index.apply_op(party, room, op)
        };
        disk.wake_writer();
        Durable::waiting(inner.clone(), seq, need_sync, removed)
    }
}

fn check_names(party: &str, room: &str) -> Result<(), StorageError> {
    if party.len() > MAX_NAME_BYTES || room.len() > MAX_NAME_BYTES {
        return Err(StorageError::NameTooLong);
    }
    Ok(())
}

/// The future of one write: resolves to `Ok(value)` once the write is durable under the fsync
/// policy, or to the error that prevented it.
///
/// Dropping it does not cancel the write (it is already applied and queued); awaiting is only
/// how you learn that it reached the disk.
#[must_use = "the write happens either way; await it to know it is durable or why it failed"]
#[derive(Clone)]
pub struct Durable<T = ()> {
    value: Option<T>,
    state: DurableState,
}

#[derive(Clone)]
enum DurableState {
    Ready(Result<(), StorageError>),
    Waiting {
        inner: Rc<Inner>,
        seq: u64,
        need_sync: bool,
    },
}

impl<T> Durable<T> {
    /// An already-finished write (nothing to wait for, or an error found before writing).
    pub fn ready(result: Result<T, StorageError>) -> Self {
        match result {
            Ok(v) => Durable {
                value: Some(v),
                state: DurableState::Ready(Ok(())),
            },
            Err(e) => Durable {
                value: None,
                state: DurableState::Ready(Err(e)),
            },
        }
    }

    fn waiting(inner: Rc<Inner>, seq: u64, need_sync: bool, value: T) -> Self {
        Durable {
            value: Some(value),
            state: DurableState::Waiting {
                inner,
                seq,
                need_sync,
            },
        }
    }

    /// How the write ended, without waiting: `None` while it is not yet durable (nor lost).
    /// For code that holds output back until a write is durable (the `main` party's gate).
    pub fn status(&self) -> Option<Result<(), StorageError>> {
        match &self.state {
            DurableState::Ready(r) => Some(*r),
            DurableState::Waiting {
                inner,
                seq,
                need_sync,
            } => inner.disk().status(*seq, *need_sync),
        }
    }

    /// The same write, resolving to `f` of its value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Durable<U> {
        Durable {
            value: self.value.map(f),
            state: self.state,
        }
    }
}

impl<T: Unpin> Future for Durable<T> {
    type Output = Result<T, StorageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = match &this.state {
            DurableState::Ready(r) => *r,
            DurableState::Waiting {
                inner,
                seq,
                need_sync,
            } => {
                let disk = inner.disk();
                if let Some(r) = disk.status(*seq, *need_sync) {
                    r
                } else {
                    disk.wait(*seq, *need_sync, cx.waker());
                    return Poll::Pending;
                }
            }
        };
        Poll::Ready(result.map(|()| this.value.take().expect("Durable polled after completion")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn memory_mode_resolves_at_once_and_reads_see_writes() {
        block_on(async {
            let s = Storage::memory();
            s.start();
            assert!(!s.is_persistent());
            s.put_one("p", "r", "a", b"1".to_vec()).await.unwrap();
            assert_eq!(s.get("p", "r", "a"), Some(b"1".to_vec()));
            assert_eq!(
                s.delete("p", "r", vec!["a".into(), "b".into()]).await,
                Ok(1)
            );
            s.set_alarm("p", "r", Some(9)).await.unwrap();
            assert_eq!(s.alarms(), vec![("p".into(), "r".into(), 9)]);
            assert_eq!(
                s.put_one("p", "r", &"k".repeat(MAX_KEY_BYTES + 1), vec![])
                    .await,
                Err(StorageError::KeyTooLarge)
            );
            assert_eq!(s.flush().await, Ok(()));
            assert_eq!(s.close().await, Ok(()));
        });
    }
}
