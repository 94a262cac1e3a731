//! The writer task: group commit, the fsync policy, failure recovery and compaction, for one
//! core's log.
//!
//! One task per [`Storage`](super::Storage), spawned by `Storage::start`, and the only code
//! that touches the log file after open. Each pass of its loop:
//!
//! 1. waits for work: pending records, an fsync request (`flush`, or the [`FsyncPolicy::Every`]
//!    deadline), a compaction request, or `close`;
//! 2. takes the whole `pending` buffer, writes it at the end of the file, fsyncs under
//!    [`FsyncPolicy::Always`], publishes the batch's last sequence number, wakes its waiters.
//!    Under `Always` the log is opened `O_DSYNC`, so the write itself is the fsync (one
//!    blocking operation per batch, which io_uring runs in a worker thread, instead of two);
//!    the writer checks the descriptor's flags and fsyncs as before if the flag is missing;
//! 3. compacts if dead bytes dominate (see `log.rs`);
//! 4. on `close`, once nothing is pending: a last fsync, then exit.
//!
//! Writes that arrive while step 2 awaits the disk go into the next batch, so the fsync rate
//! follows the disk, not the write rate: one fsync per pass, however many writes it carries.
//!
//! # Failure states
//!
//! The writer tracks two offsets: `len` (written to the file) and `synced_len` (fsynced).
//!
//! - **A write fails** (`ENOSPC`, `EIO`; possibly after part of the batch reached the file):
//!   the file is cut back to `len`, the end of the last whole batch. The batch and everything
//!   pending behind it are discarded (their futures resolve to the error). Under `every` and
//!   `never`, batches written before stay: nothing said they were lost.
//! - **An fsync fails**: after a failed fsync Linux may have dropped the dirty pages and marked
//!   them clean, so a retry would "succeed" without the data ever reaching the disk. Nothing
//!   written since the last good fsync is trusted: the file is cut back to `synced_len`, and
//!   every record after it is discarded, including (under `every`) records already reported
//!   written.
//!
//! Either way the log is reopened through a fresh descriptor, cut, fsynced and read back into
//! a fresh index (`replay::reopen`), so reads stop showing what was discarded; then the writer
//! carries on, and the next write tries the disk again (a full disk works again as soon as
//! space is freed). If the reopen fails too, the storage is failed for good (every later write
//! is refused); the index is still rebuilt from the durable part of the file, read through the
//! descriptor the writer already holds, unless even that read fails.

use std::{fs, future, io, rc::Rc, task::Poll, time::Instant};

use monoio::buf::IoBuf;

use super::{
    faults::{CompactStep, FaultOp},
    index::RoomData,
    record::{self, Op, FILE_MAGIC},
    replay::{self, compact_path, sync_dir},
    state::{Disk, Inner},
    FsyncPolicy, StorageError,
};

/// Compaction writes the new log in chunks of about this size, awaiting each, so a large store
/// does not stall the core for the whole write; it also bounds a compacted Put record.
const COMPACT_CHUNK_BYTES: usize = 1 << 20;

/// A batch buffer bigger than this is freed after use instead of kept for the next batch, so
/// one burst of large values does not pin that much memory per core.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Waits until the writer has something to do.
async fn work(disk: &Disk) {
    future::poll_fn(|cx| {
        let sync_pending = wants_sync(disk);
        if !disk.pending.borrow().is_empty()
            || sync_pending
            || disk.closing.get()
            || disk.compact_requested.get()
        {
            return Poll::Ready(());
        }
        *disk.writer.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Whether written records that someone asked to have synced are not synced yet.
fn wants_sync(disk: &Disk) -> bool {
    let synced = disk.synced_seq.get();
    synced < disk.written_seq.get() && synced < disk.sync_wanted.get()
}

/// What the writer knows about the log file.
struct LogFile {
    file: monoio::fs::File,
    /// The same open file, for blocking reads: reading the log back when even reopening it
    /// after a failure fails.
    twin: fs::File,
    /// Bytes written (whole batches only).
    len: u64,
    /// Bytes known to be on disk: fsynced, or found there at open.
    synced_len: u64,
    /// The file is open `O_DSYNC` (`replay::log_options`, under `--fsync always`): a batch is
    /// on disk once its write returns, and needs no fdatasync of its own.
    dsync: bool,
}

/// Which kind of operation failed, for [`recover`].
#[derive(Clone, Copy, Debug)]
enum Failed {
    Write,
    Sync,
}

/// One per storage, on the owner core: drains `pending` into the file batch by batch.
pub(super) async fn run(inner: Rc<Inner>, file: monoio::fs::File, twin: fs::File, file_len: u64) {
    let disk = inner.disk();
    let always = disk.opts.fsync == FsyncPolicy::Always;
    let never = disk.opts.fsync == FsyncPolicy::Never;
    let mut log = LogFile {
        file,
        dsync: always && replay::is_dsync(&twin),
        twin,
        len: file_len,
        synced_len: file_len,
    };
    let mut spare: Vec<u8> = Vec::new();
    // Raised after a failed compaction so it is not retried on every batch.
    let mut compact_floor = disk.opts.compact_min_bytes;
    // Under `Every`: when the oldest written-but-unsynced batch must be synced by.
    let mut sync_deadline: Option<Instant> = None;
    loop {
        match (disk.opts.fsync, sync_deadline) {
            (FsyncPolicy::Every(_), Some(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if monoio::time::timeout(left, work(disk)).await.is_err() {
                    let written = disk.written_seq.get();
                    disk.sync_wanted.set(disk.sync_wanted.get().max(written));
                }
            }
            _ => work(disk).await,
        }

        if !disk.pending.borrow().is_empty() {
            std::mem::swap(&mut *disk.pending.borrow_mut(), &mut spare);
            let batch_seq = disk.last_seq.get();
            let (res, buf) = write_batch(disk, &log.file, spare, log.len).await;
            spare = buf;
            let batch_len = spare.len() as u64;
            spare.clear();
            if spare.capacity() > KEEP_BUFFER_BYTES {
                spare = Vec::new();
            }
            if let Err(e) = res {
                if !recover(&inner, &mut log, Failed::Write, &e) {
                    return;
                }
                sync_deadline = None;
                continue;
            }
            log.len += batch_len;
            inner.bump(|s| {
                s.batches += 1;
                s.bytes_written += batch_len;
            });
            disk.written_seq.set(batch_seq);
            if let (FsyncPolicy::Every(period), None) = (disk.opts.fsync, sync_deadline) {
                sync_deadline = Some(Instant::now() + period);
            }
            if always {
                // Under O_DSYNC the write was the fdatasync: `sync_batch` only counts it (and
                // lets the fault hook fail it as a failed fsync would).
                if let Err(e) = sync_batch(&inner, &log).await {
                    if !recover(&inner, &mut log, Failed::Sync, &e) {
                        return;
                    }
                    continue;
                }
                log.synced_len = log.len;
                disk.synced_seq.set(batch_seq);
            }
            end_episode(&inner);
            disk.wake_waiters();
        }

        if !never && wants_sync(disk) {
            let seq = disk.written_seq.get();
            let len = log.len;
            if let Err(e) = sync(&inner, &log.file).await {
                if !recover(&inner, &mut log, Failed::Sync, &e) {
                    return;
                }
                sync_deadline = None;
                continue;
            }
            log.synced_len = len;
            disk.synced_seq.set(seq);
            if seq == disk.written_seq.get() {
                sync_deadline = None;
            }
            disk.wake_waiters();
        }

        let should = inner.index.borrow().should_compact(compact_floor);
        if disk.compact_requested.replace(false) || should {
            match compact(&inner, &mut log).await {
                Ok(()) => compact_floor = disk.opts.compact_min_bytes,
                Err(e) => {
                    tracing::warn!(path = %disk.path.display(), error = %e,
                        "compaction failed; the old log stays in use");
                    let _ = fs::remove_file(compact_path(&disk.path));
                    compact_floor = inner.index.borrow().log_bytes().saturating_mul(2);
                }
            }
        }

        if disk.closing.get() && disk.pending.borrow().is_empty() {
            if !never && disk.synced_seq.get() < disk.written_seq.get() {
                if let Err(e) = sync(&inner, &log.file).await {
                    if !recover(&inner, &mut log, Failed::Sync, &e) {
                        return;
                    }
                    continue;
                }
                disk.synced_seq.set(disk.written_seq.get());
            }
            disk.stopped.set(true);
            disk.wake_waiters();
            return;
        }
    }
}

/// Appends `buf` at `at`, or fails as the fault hook says (after writing half of it, so that
/// recovery has a torn batch to cut).
async fn write_batch(
    disk: &Disk,
    file: &monoio::fs::File,
    buf: Vec<u8>,
    at: u64,
) -> (io::Result<()>, Vec<u8>) {
    if let Some(e) = disk.faults.as_ref().and_then(|f| f.next(FaultOp::Write)) {
        let half = buf.len() / 2;
        let (_, slice) = file.write_all_at(buf.slice(..half), at).await;
        return (Err(e), slice.into_inner());
    }
    file.write_all_at(buf, at).await
}

/// The fsync of a batch just written under `--fsync always`: none when the file is `O_DSYNC`
/// (its write already was one), but counted and open to the fault hook all the same.
async fn sync_batch(inner: &Inner, log: &LogFile) -> io::Result<()> {
    if log.dsync {
        count_sync(inner)
    } else {
        sync(inner, &log.file).await
    }
}

async fn sync(inner: &Inner, file: &monoio::fs::File) -> io::Result<()> {
    count_sync(inner)?;
    file.sync_data().await
}

/// Counts one fsync, which the fault hook may fail (without touching the disk).
fn count_sync(inner: &Inner) -> io::Result<()> {
    inner.bump(|s| s.fsyncs += 1);
    match inner
        .disk()
        .faults
        .as_ref()
        .and_then(|f| f.next(FaultOp::Sync))
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// After a failed write or fsync (see the module note): discards every record not known to be
/// on disk, cuts the file back and rebuilds the index from it. Returns `false` if that failed
/// too: the storage is then failed for good and the writer must stop.
fn recover(inner: &Inner, log: &mut LogFile, what: Failed, e: &io::Error) -> bool {
    let disk = inner.disk();
    let error = StorageError::from_io(e);
    let (keep, first_lost) = match what {
        Failed::Write => (log.len, disk.written_seq.get() + 1),
        Failed::Sync => (log.synced_len, disk.synced_seq.get() + 1),
    };
    let last = disk.last_seq.get();
    let lost = (last + 1).saturating_sub(first_lost);
    disk.pending.borrow_mut().clear();
    disk.add_lost(first_lost, last, error);
    inner.bump(|s| {
        s.failures += 1;
        s.lost_records += lost;
    });
    let mut episode = disk.episode.get().unwrap_or_default();
    if episode.failures == 0 {
        tracing::error!(
            path = %disk.path.display(),
            op = ?what,
            error = %e,
            lost,
            kept_bytes = keep,
            "storage write failed: the log is cut back to its last durable record and the \
             records after it are discarded; writes are retried (further failures are counted, \
             not logged, until one succeeds)"
        );
    }
    episode.failures += 1;
    episode.lost += lost;
    disk.episode.set(Some(episode));
    let always = disk.opts.fsync == FsyncPolicy::Always;
    match replay::reopen(&disk.path, keep, always).and_then(|(file, index)| {
        let twin = file.try_clone()?;
        Ok((monoio::fs::File::from_std(file)?, twin, index))
    }) {
        Ok((file, twin, index)) => {
            *inner.index.borrow_mut() = index;
            log.file = file;
            log.dsync = always && replay::is_dsync(&twin);
            log.twin = twin;
            log.len = keep;
            log.synced_len = keep;
            // Everything up to `last` is now either on disk or lost; `Disk::status` checks
            // the lost ranges first.
            disk.written_seq.set(last);
            disk.synced_seq.set(last);
            disk.wake_waiters();
            true
        }
        Err(e) => {
            // Reads must not show the discarded writes even so: rebuild from the file still
            // open, if its durable part reads back.
            match replay::read_back(&log.twin, keep, &disk.path) {
                Ok(index) => *inner.index.borrow_mut() = index,
                Err(e) => tracing::error!(path = %disk.path.display(), error = %e,
                    "cannot read the log back either: until a restart, reads may show the \
                     discarded writes"),
            }
            inner.fail(&e);
            false
        }
    }
}

/// A batch went through: if a failure episode was under way, log its end.
fn end_episode(inner: &Inner) {
    let disk = inner.disk();
    if let Some(ep) = disk.episode.take() {
        tracing::warn!(
            path = %disk.path.display(),
            failures = ep.failures,
            lost_records = ep.lost,
            "storage writes succeed again"
        );
    }
}

/// Rewrites the index into a fresh log and swaps it in. On error before the rename the old log
/// is untouched and still in use (the caller removes the partial file).
///
/// The snapshot is the whole index, encoded in one go with nothing else running, so it holds
/// exactly the records issued so far, including those still in `pending`. Once the new file
/// is fsynced and renamed those records are durable: they are dropped from `pending` and their
/// waiters woken. (A snapshot taken piecemeal while writes continue would contain records
/// that may still fail, and the log could not be cut back past them.) The price is a copy of
/// the live data in memory during the compaction.
async fn compact(inner: &Inner, log: &mut LogFile) -> io::Result<()> {
    let disk = inner.disk();
    let step = |s: CompactStep| {
        if let Some(f) = &disk.faults {
            f.compact_step(s);
        }
    };
    let snapshot_seq = disk.last_seq.get();
    let snapshot_pending = disk.pending.borrow().len();
    let mut buf = FILE_MAGIC.to_vec();
    {
        let index = inner.index.borrow();
        for (party, room, data) in index.rooms() {
            encode_room(party, room, data, &mut buf);
        }
    }
    let total = buf.len();
    let tmp_path = compact_path(&disk.path);
    // Blocking, like the rename below: one metadata operation per compaction.
    let always = disk.opts.fsync == FsyncPolicy::Always;
    let tmp = replay::log_options(always)
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)?;
    let twin = tmp.try_clone()?;
    let tmp = monoio::fs::File::from_std(tmp)?;
    step(CompactStep::Created);
    let mut pos = 0;
    while pos < total {
        let mut end = (pos + COMPACT_CHUNK_BYTES).min(total);
        // A chunk ends at the middle too, where the fault hook may stop the process.
        let half = total / 2;
        if pos < half && end > half {
            end = half;
        }
        let (res, slice) = tmp.write_all_at(buf.slice(pos..end), pos as u64).await;
        buf = slice.into_inner();
        res?;
        pos = end;
        if pos == half {
            step(CompactStep::Half);
        }
    }
    drop(buf);
    step(CompactStep::Written);
    sync(inner, &tmp).await?;
    step(CompactStep::Synced);
    // Blocking, but both are metadata operations on one directory, once per compaction
    // (monoio's async rename needs a feature we do not enable).
    fs::rename(&tmp_path, &disk.path)?;
    step(CompactStep::Renamed);
    // The path names the new file now, whatever happens next: append there.
    let old = std::mem::replace(&mut log.file, tmp);
    drop(old);
    log.dsync = always && replay::is_dsync(&twin);
    log.twin = twin;
    log.len = total as u64;
    log.synced_len = total as u64;
    if let Err(e) = sync_dir(&disk.dir) {
        // The rename may not survive power loss, so the snapshot's pending records are not
        // confirmed by it: they stay pending and are appended again (replaying a record over
        // a state that already has it changes nothing).
        let pending = disk.pending.borrow().len() as u64;
        inner.index.borrow_mut().set_log_bytes(log.len + pending);
        return Err(e);
    }
    step(CompactStep::Done);
    disk.pending.borrow_mut().drain(..snapshot_pending);
    disk.written_seq
        .set(disk.written_seq.get().max(snapshot_seq));
    disk.synced_seq.set(disk.synced_seq.get().max(snapshot_seq));
    let before = inner.index.borrow().log_bytes();
    let pending = disk.pending.borrow().len() as u64;
    inner.index.borrow_mut().set_log_bytes(log.len + pending);
    inner.bump(|s| s.compactions += 1);
    disk.wake_waiters();
    tracing::info!(path = %disk.path.display(), before, after = total, "storage log compacted");
    Ok(())
}

/// Appends one room's current state: Put records of at most ~`COMPACT_CHUNK_BYTES` each (so
/// no record nears the decoder's limit, however big the room), then its alarm.
fn encode_room(party: &str, room: &str, data: &RoomData, out: &mut Vec<u8>) {
    let mut chunk: Vec<(&str, &[u8])> = Vec::new();
    let mut chunk_bytes = 0;
    for (k, v) in &data.map {
        chunk.push((k, v));
        chunk_bytes += record::put_entry_len(k, v);
        if chunk_bytes >= COMPACT_CHUNK_BYTES {
            record::encode_put_refs(party, room, &chunk, out);
            chunk.clear();
            chunk_bytes = 0;
        }
    }
    if !chunk.is_empty() {
        record::encode_put_refs(party, room, &chunk, out);
    }
    if data.alarm.is_some() {
        record::encode(party, room, &Op::SetAlarm { at_ms: data.alarm }, out);
    }
}
