//! Reading a log file into an [`Index`]: the replay at open (a torn tail is cut, damage in the
//! middle refuses the open), the read-back after a failed write or fsync, and the file names.
//!
//! Owns: `replay`, `reopen`, `read_back`, the errors they report and `stop_reason` (also used
//! by `repair.rs`), and the paths `core-<k>.log` / `.compact`. Blocking file IO, run at open
//! and once per failure. Does not own: the append path (`log.rs` encodes, `writer.rs`
//! writes) or the state they share (`state.rs`). Names no other file of `storage` but the
//! format (`record.rs`) and the index.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{
    index::Index,
    record::{self, FILE_MAGIC},
};

/// `<dir>/core-<core_id>.log`.
pub(super) fn log_path(dir: &Path, core_id: usize) -> PathBuf {
    dir.join(format!("core-{core_id}.log"))
}

/// Validates the magic, replays the records into `index`, truncates a bad tail. Returns the
/// length of the file that is kept.
pub(super) fn replay(
    path: &Path,
    file: &mut fs::File,
    bytes: &[u8],
    index: &mut Index,
) -> io::Result<u64> {
    if bytes.len() < FILE_MAGIC.len() {
        if !FILE_MAGIC.starts_with(bytes) {
            return Err(not_a_log(path));
        }
        // New file, or a crash while it was being created: (re)write the magic.
        file.set_len(0)?;
        io::Write::write_all(file, &FILE_MAGIC)?;
        file.sync_all()?;
        return Ok(FILE_MAGIC.len() as u64);
    }
    if bytes[..FILE_MAGIC.len()] != FILE_MAGIC {
        return Err(not_a_log(path));
    }
    let body = &bytes[FILE_MAGIC.len()..];
    let mut decoder = record::Decoder::new(body);
    let mut records = 0u64;
    for rec in decoder.by_ref() {
        index.apply(rec);
        records += 1;
    }
    let good = (FILE_MAGIC.len() + decoder.good_len()) as u64;
    if let Some(stop) = decoder.stop() {
        if let Some(next) = record::find_record(body, decoder.good_len() + 1) {
            return Err(corrupt(path, good, stop, (FILE_MAGIC.len() + next) as u64));
        }
        tracing::warn!(
            path = %path.display(),
            ?stop,
            records,
            kept_bytes = good,
            dropped_bytes = bytes.len() as u64 - good,
            "storage log has a torn or corrupt tail; truncating it at the last good record"
        );
        file.set_len(good)?;
        file.sync_all()?;
    }
    Ok(good)
}

/// The open error for damage in the middle of a log: one line, naming the file, the offset,
/// and the way out.
fn corrupt(path: &Path, at: u64, stop: record::Stop, next: u64) -> io::Error {
    let dir = path.parent().unwrap_or(Path::new("."));
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: corrupt record at byte offset {at} ({}), with intact records after it (the next \
             at byte offset {next}); refusing to start rather than skip it. \
             `partyring repair --data-dir {}` cuts the log at byte offset {at}, dropping \
             everything from there on",
            path.display(),
            stop_reason(stop),
            dir.display()
        ),
    )
}

/// What went wrong with a record, for people.
pub(super) fn stop_reason(stop: record::Stop) -> &'static str {
    match stop {
        record::Stop::Torn => "cut short",
        record::Stop::BadLength => "impossible length",
        record::Stop::BadChecksum => "checksum mismatch",
        record::Stop::BadBody => "unreadable body",
    }
}

/// Reopens the log after a failed write or fsync: cuts it to `keep` bytes (the last offset
/// known to be on disk), fsyncs that, and reads it back into a fresh index. Blocking, like
/// open: it runs once per failure, and the core must not serve reads of discarded records
/// meanwhile. A fresh descriptor, so nothing is written through the one that saw the error.
///
/// `dsync` opens it `O_DSYNC` (see [`log_options`]).
///
/// # Errors
///
/// IO errors, and `InvalidData` if the kept bytes do not decode cleanly (then nothing on disk
/// can be trusted and the caller fails the storage).
pub(super) fn reopen(path: &Path, keep: u64, dsync: bool) -> io::Result<(fs::File, Index)> {
    let file = log_options(dsync).read(true).write(true).open(path)?;
    file.set_len(keep)?;
    file.sync_all()?;
    let index = read_back(&file, keep, path)?;
    Ok((file, index))
}

/// Replays the first `keep` bytes of the log open as `file` into a fresh index.
///
/// # Errors
///
/// IO errors, and `InvalidData` unless those bytes are the magic and whole, valid records.
pub(super) fn read_back(file: &fs::File, keep: u64, path: &Path) -> io::Result<Index> {
    let mut bytes = vec![0u8; keep as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, 0)?;
    if !bytes.starts_with(&FILE_MAGIC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: does not read back as written", path.display()),
        ));
    }
    let mut index = Index::new();
    let mut decoder = record::Decoder::new(&bytes[FILE_MAGIC.len()..]);
    for rec in decoder.by_ref() {
        index.apply(rec);
    }
    if let Some(stop) = decoder.stop() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: record at byte offset {} is bad ({}) after a failed write",
                path.display(),
                FILE_MAGIC.len() + decoder.good_len(),
                stop_reason(stop)
            ),
        ));
    }
    index.set_log_bytes(keep);
    Ok(index)
}

fn not_a_log(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is not a partyring storage log (bad magic); refusing to touch it",
            path.display()
        ),
    )
}

pub(super) fn compact_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".compact");
    PathBuf::from(p)
}

/// Options for opening a log file: with `dsync`, `O_DSYNC`, so that each write returns only
/// once its data (and the size needed to read it) is on disk, as if followed by an
/// `fdatasync`. Under `--fsync always` the writer then needs one blocking operation per batch
/// instead of two (a write and an fdatasync, each run by io_uring in a worker thread).
pub(super) fn log_options(dsync: bool) -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = fs::OpenOptions::new();
    if dsync {
        o.custom_flags(libc::O_DSYNC);
    }
    o
}

/// Whether `file` was opened `O_DSYNC` (its writes are durable when they return). The writer
/// asks the descriptor rather than trusting how it meant to open it, so a file opened without
/// the flag is fsynced as before: only speed, never durability, depends on the open flags.
pub(super) fn is_dsync(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL only reads the status flags of the descriptor, which `file` keeps open
    // for the duration of the call; it has no memory-safety preconditions.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_DSYNC == libc::O_DSYNC
}

/// fsync a directory, so a created or renamed entry in it survives power loss.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_open_o_dsync_only_when_asked() {
        let dir = std::env::temp_dir().join(format!("partyring-dsync-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.log");
        for dsync in [true, false] {
            let f = log_options(dsync)
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            assert_eq!(is_dsync(&f), dsync);
            // A clone shares the open file's flags (the writer asks its twin).
            assert_eq!(is_dsync(&f.try_clone().unwrap()), dsync);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compact_path_appends_a_suffix() {
        assert_eq!(
            compact_path(Path::new("/d/core-3.log")),
            PathBuf::from("/d/core-3.log.compact")
        );
    }
}
