//! The state a storage's handles, its [`Durable`](super::Durable) futures and its writer task
//! share, on the owner core.
//!
//! Owns: [`Inner`] (the index, the disk half, the counters), [`Disk`] (the bytes not yet
//! handed to the writer, the sequence marks of what is written and fsynced, the waiting
//! futures, the ranges of discarded records, the failure episode) and [`StorageStats`]. Does
//! not own: the write API and opening (`log.rs`), the writer's loop (`writer.rs`) or reading a
//! log file (`replay.rs`). Those three build on this file; it names none of them, which keeps
//! the dependencies one-way: `log -> writer -> state`, `log -> state`.
//!
//! Single-threaded: `Cell`/`RefCell` and a list of wakers suffice.

use std::{
    cell::{Cell, RefCell},
    fs, io,
    path::PathBuf,
    task::Waker,
};

use super::{faults::Faults, index::Index, StorageError, StorageOptions};

/// Counters for tests and metrics. Plain numbers, read on the owner core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// `fdatasync`/`fsync` calls on log files (batches, the `Every` deadline, flush,
    /// close, compaction); under `Always`, each batch's `O_DSYNC` write counts as one.
    pub fsyncs: u64,
    /// Batches written (one `write_all_at` each).
    pub batches: u64,
    /// Records encoded (one per write that changed something).
    pub records: u64,
    /// Bytes appended to the log by batches (compaction not included).
    pub bytes_written: u64,
    /// Completed compactions.
    pub compactions: u64,
    /// Bytes in the log, including records not yet written.
    pub log_bytes: u64,
    /// Estimated size of the log after a compaction.
    pub live_bytes: u64,
    /// Log writes and fsyncs that failed (each one discarded the records not yet on disk).
    pub failures: u64,
    /// Records discarded by those failures: writes whose futures resolved to the error.
    pub lost_records: u64,
    /// 1 while writes are failing (from a failure until a write succeeds) or the storage is
    /// failed for good; 0 otherwise.
    pub degraded: u64,
}

/// Everything one storage is: every [`Storage`](super::Storage) clone holds an `Rc` of it.
pub(super) struct Inner {
    pub(super) index: RefCell<Index>,
    /// `None` in the in-memory mode: writes resolve at once and nothing is kept on restart.
    pub(super) disk: Option<Disk>,
    pub(super) stats: Cell<StorageStats>,
}

/// The on-disk half. Shared by the handles (which append to `pending`) and the writer task
/// (which drains it); single-threaded, so `Cell`/`RefCell` and a waker list suffice.
pub(super) struct Disk {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) opts: StorageOptions,
    /// The replayed log file, until [`Storage::start`](super::Storage::start) moves it into the writer task.
    pub(super) file: RefCell<Option<(fs::File, u64)>>,
    /// `flock`ed for the life of the storage: a second process on the same directory fails to
    /// open instead of interleaving records. Released by the kernel when the fd closes, crash
    /// included.
    /// Dropped by [`Storage::close`](super::Storage::close) (nothing is written after it), so the same process can
    /// open the directory again.
    lock: RefCell<Option<fs::File>>,
    /// Encoded records not yet handed to the writer.
    pub(super) pending: RefCell<Vec<u8>>,
    /// Sequence number of the newest record in `pending` (records count from 1).
    pub(super) last_seq: Cell<u64>,
    /// Writes refused at once (storage failed for good, or closed): they get no sequence
    /// number, so the output gate counts them here (see [`Storage::barrier_since`](super::Storage::barrier_since)).
    pub(super) refused: Cell<u64>,
    /// Every record with a sequence number `<=` this is written to the file.
    pub(super) written_seq: Cell<u64>,
    /// Every record with a sequence number `<=` this is written and fsynced.
    pub(super) synced_seq: Cell<u64>,
    /// Futures waiting for `written_seq`/`synced_seq` to reach their record (or for the writer
    /// to stop, `seq == u64::MAX`). The writer wakes and removes the satisfied ones per batch.
    waiters: RefCell<Vec<Waiter>>,
    /// Where the idle writer task parks; taken and woken by anything that gives it work.
    pub(super) writer: RefCell<Option<Waker>>,
    /// Records up to this sequence number should be fsynced as soon as they are written
    /// (`flush`, the `Every` deadline). A target rather than a flag, so a request made while
    /// its record is still pending survives the batch before it.
    pub(super) sync_wanted: Cell<u64>,
    /// Someone asked for a compaction regardless of the thresholds.
    pub(super) compact_requested: Cell<bool>,
    pub(super) started: Cell<bool>,
    /// `close` was called: flush what is pending, sync, stop.
    pub(super) closing: Cell<bool>,
    /// The writer has stopped (after `close` or a failure); nothing more becomes durable.
    pub(super) stopped: Cell<bool>,
    /// Set when recovery itself failed; from then on every write fails with it.
    pub(super) failed: Cell<Option<io::ErrorKind>>,
    /// Records discarded after a failed write or fsync: inclusive sequence ranges, ascending,
    /// with the error. Their futures resolve to it even once later sequence numbers are done.
    /// One range per failure episode (consecutive failures merge).
    lost: RefCell<Vec<Lost>>,
    /// The failure episode under way (`None` while writes succeed): logged once when it starts
    /// and once when a write succeeds again, not per failure.
    pub(super) episode: Cell<Option<Episode>>,
    /// The test hook (`faults.rs`); `None` in normal operation.
    pub(super) faults: Option<Faults>,
}

#[derive(Clone, Copy, Debug)]
struct Lost {
    first: u64,
    last: u64,
    error: StorageError,
}

/// Counts of one failure episode, for the log line that ends it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Episode {
    pub(super) failures: u64,
    pub(super) lost: u64,
}

struct Waiter {
    seq: u64,
    need_sync: bool,
    waker: Waker,
}

impl Disk {
    /// The disk half of a storage whose log `path` (in `dir`) was just replayed: `file` is
    /// open at `file_len`, `lock` is the directory lock, held until [`Disk::release_lock`].
    pub(super) fn new(
        dir: PathBuf,
        path: PathBuf,
        opts: StorageOptions,
        (file, file_len): (fs::File, u64),
        lock: fs::File,
        faults: Option<Faults>,
    ) -> Disk {
        Disk {
            dir,
            path,
            opts,
            file: RefCell::new(Some((file, file_len))),
            lock: RefCell::new(Some(lock)),
            pending: RefCell::new(Vec::new()),
            last_seq: Cell::new(0),
            refused: Cell::new(0),
            written_seq: Cell::new(0),
            synced_seq: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            writer: RefCell::new(None),
            sync_wanted: Cell::new(0),
            compact_requested: Cell::new(false),
            started: Cell::new(false),
            closing: Cell::new(false),
            stopped: Cell::new(false),
            failed: Cell::new(None),
            lost: RefCell::new(Vec::new()),
            episode: Cell::new(None),
            faults,
        }
    }

    /// Drops the directory lock: nothing is written after this, and the same process may open
    /// the directory again.
    pub(super) fn release_lock(&self) {
        self.lock.borrow_mut().take();
    }

    /// Parks `waker` until record `seq` is written (`need_sync`: and fsynced), or the writer
    /// stops; `seq == u64::MAX` waits for the stop alone.
    pub(super) fn wait(&self, seq: u64, need_sync: bool, waker: &Waker) {
        self.waiters.borrow_mut().push(Waiter {
            seq,
            need_sync,
            waker: waker.clone(),
        });
    }

    /// The error record `seq` was discarded with, if it was.
    fn lost(&self, seq: u64) -> Option<StorageError> {
        let lost = self.lost.borrow();
        for l in lost.iter().rev() {
            if seq > l.last {
                return None;
            }
            if seq >= l.first {
                return Some(l.error);
            }
        }
        None
    }

    /// Records `first..=last` were discarded with `error`.
    pub(super) fn add_lost(&self, first: u64, last: u64, error: StorageError) {
        if first > last {
            return;
        }
        let mut lost = self.lost.borrow_mut();
        match lost.last_mut() {
            Some(l) if l.last + 1 == first && l.error == error => l.last = last,
            _ => lost.push(Lost { first, last, error }),
        }
    }

    /// The newest sequence number that was not discarded: what a write that changes nothing
    /// (or a flush) waits for, so it does not report an earlier episode's loss.
    pub(super) fn barrier_seq(&self) -> u64 {
        let last = self.last_seq.get();
        match self.lost.borrow().last() {
            Some(l) if l.last == last => l.first - 1,
            _ => last,
        }
    }

    pub(super) fn done(&self, seq: u64, need_sync: bool) -> bool {
        seq <= if need_sync {
            self.synced_seq.get()
        } else {
            self.written_seq.get()
        }
    }

    /// A write's outcome if it has one: lost (checked first: a lost record's number may be
    /// below the durable mark), durable, or refused because the writer stopped.
    pub(super) fn status(&self, seq: u64, need_sync: bool) -> Option<Result<(), StorageError>> {
        if let Some(e) = self.lost(seq) {
            Some(Err(e))
        } else if self.done(seq, need_sync) {
            Some(Ok(()))
        } else if let Some(kind) = self.failed.get() {
            Some(Err(StorageError::Io(kind)))
        } else if self.stopped.get() {
            Some(Err(StorageError::Closed))
        } else {
            None
        }
    }

    pub(super) fn wake_writer(&self) {
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    /// Wakes every waiter whose record is now durable (or all of them once stopped).
    pub(super) fn wake_waiters(&self) {
        let stopped = self.stopped.get();
        self.waiters.borrow_mut().retain(|w| {
            let done = stopped || self.done(w.seq, w.need_sync);
            if done {
                w.waker.wake_by_ref();
            }
            !done
        });
    }
}

impl Inner {
    pub(super) fn disk(&self) -> &Disk {
        self.disk
            .as_ref()
            .expect("only the writer calls this, and only with a disk")
    }

    pub(super) fn bump(&self, f: impl FnOnce(&mut StorageStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Why a new write must be refused, if it must.
    pub(super) fn write_error(&self) -> Option<StorageError> {
        let disk = self.disk.as_ref()?;
        if let Some(kind) = disk.failed.get() {
            return Some(StorageError::Io(kind));
        }
        (disk.closing.get() || disk.stopped.get()).then_some(StorageError::Closed)
    }

    /// Fails the storage for good (recovery was impossible): stops the writer and fails every
    /// waiter.
    pub(super) fn fail(&self, e: &io::Error) {
        let disk = self.disk();
        tracing::error!(
            path = %disk.path.display(),
            error = %e,
            "storage log cannot be recovered; every write fails from now on"
        );
        if disk.failed.get().is_none() {
            disk.failed.set(Some(e.kind()));
        }
        disk.stopped.set(true);
        disk.wake_waiters();
    }
}
