//! The writer task: group commit, the fsync policy, and compaction, for one core's log.
//!
//! One task per [`Storage`](super::Storage), spawned by `Storage::start`, and the only code
//! that touches the log file after open. Each pass of its loop:
//!
//! 1. waits for work: pending records, an fsync request (`flush`, or the [`FsyncPolicy::Every`]
//!    deadline), a compaction request, or `close`;
//! 2. takes the whole `pending` buffer, writes it at the end of the file, fsyncs under
//!    [`FsyncPolicy::Always`], publishes the batch's last sequence number, wakes its waiters;
//! 3. compacts if dead bytes dominate (see `log.rs` for why the fuzzy snapshot is safe);
//! 4. on `close`, once nothing is pending: a last fsync, then exit.
//!
//! Writes that arrive while step 2 awaits the disk go into the next batch, so the fsync rate
//! follows the disk, not the write rate. The first IO error fails the storage and ends the task.

use std::{fs, future, io, rc::Rc, task::Poll, time::Instant};

use super::{
    index::Index,
    log::{compact_path, sync_dir, Disk, Inner},
    record::{self, Op, FILE_MAGIC},
    FsyncPolicy,
};

/// Compaction writes the new log in chunks of about this size, awaiting each, so a large store
/// does not stall the core for the whole rewrite.
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

/// One per storage, on the owner core: drains `pending` into the file batch by batch.
pub(super) async fn run(inner: Rc<Inner>, mut file: monoio::fs::File, mut file_len: u64) {
    let disk = inner.disk();
    let always = disk.opts.fsync == FsyncPolicy::Always;
    let never = disk.opts.fsync == FsyncPolicy::Never;
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
            let (res, buf) = file.write_all_at(spare, file_len).await;
            spare = buf;
            if let Err(e) = res {
                return inner.fail(&e);
            }
            file_len += spare.len() as u64;
            inner.bump(|s| {
                s.batches += 1;
                s.bytes_written += spare.len() as u64;
            });
            spare.clear();
            if spare.capacity() > KEEP_BUFFER_BYTES {
                spare = Vec::new();
            }
            disk.written_seq.set(batch_seq);
            if let (FsyncPolicy::Every(period), None) = (disk.opts.fsync, sync_deadline) {
                sync_deadline = Some(Instant::now() + period);
            }
            if always {
                if let Err(e) = sync(&inner, &file).await {
                    return inner.fail(&e);
                }
                disk.synced_seq.set(batch_seq);
            }
            disk.wake_waiters();
        }

        if !never && wants_sync(disk) {
            let seq = disk.written_seq.get();
            if let Err(e) = sync(&inner, &file).await {
                return inner.fail(&e);
            }
            disk.synced_seq.set(seq);
            if seq == disk.written_seq.get() {
                sync_deadline = None;
            }
            disk.wake_waiters();
        }

        let should = inner.index.borrow().should_compact(compact_floor);
        if disk.compact_requested.replace(false) || should {
            match compact(&inner, &mut file).await {
                Ok(len) => {
                    file_len = len;
                    compact_floor = disk.opts.compact_min_bytes;
                }
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
                if let Err(e) = sync(&inner, &file).await {
                    return inner.fail(&e);
                }
                disk.synced_seq.set(disk.written_seq.get());
            }
            disk.stopped.set(true);
            disk.wake_waiters();
            return;
        }
    }
}

async fn sync(inner: &Inner, file: &monoio::fs::File) -> io::Result<()> {
    inner.bump(|s| s.fsyncs += 1);
    file.sync_data().await
}

/// Rewrites the index into a fresh log and swaps it in; returns the new file's length. On
/// error the old log is untouched and still in use (the caller removes the partial file).
async fn compact(inner: &Inner, file: &mut monoio::fs::File) -> io::Result<u64> {
    let disk = inner.disk();
    let tmp_path = compact_path(&disk.path);
    let tmp = monoio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)
        .await?;
    let rooms: Vec<(String, String)> = inner
        .index
        .borrow()
        .rooms()
        .map(|(p, r, _)| (p.to_owned(), r.to_owned()))
        .collect();
    let mut buf = FILE_MAGIC.to_vec();
    let mut pos = 0u64;
    for (party, room) in &rooms {
        encode_room(&inner.index.borrow(), party, room, &mut buf);
        if buf.len() >= COMPACT_CHUNK_BYTES {
            let (res, b) = tmp.write_all_at(buf, pos).await;
            res?;
            pos += b.len() as u64;
            buf = b;
            buf.clear();
        }
    }
    let (res, b) = tmp.write_all_at(buf, pos).await;
    res?;
    pos += b.len() as u64;
    sync(inner, &tmp).await?;
    // Blocking, but both are metadata operations on one directory, once per compaction
    // (monoio's async rename needs a feature we do not enable).
    fs::rename(&tmp_path, &disk.path)?;
    sync_dir(&disk.dir)?;
    let old = std::mem::replace(file, tmp);
    // The old file is unlinked now; close it in the background.
    drop(old);
    let before = inner.index.borrow().log_bytes();
    let pending = disk.pending.borrow().len() as u64;
    inner.index.borrow_mut().set_log_bytes(pos + pending);
    inner.bump(|s| s.compactions += 1);
    tracing::info!(path = %disk.path.display(), before, after = pos, "storage log compacted");
    Ok(pos)
}

/// Appends one room's current state: Put records of at most ~`COMPACT_CHUNK_BYTES` each (so
/// no record nears the decoder's limit, however big the room), then its alarm. A room deleted
/// since the list of rooms was taken writes nothing.
fn encode_room(index: &Index, party: &str, room: &str, out: &mut Vec<u8>) {
    let Some(data) = index.room(party, room) else {
        return;
    };
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
