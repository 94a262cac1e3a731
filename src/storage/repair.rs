//! `partyring repair`: cuts each storage log in a data directory at its first bad record.
//!
//! A server refuses to open a log with damage in the middle (`replay.rs`), because skipping a bad
//! record would silently lose it and everything that depended on it. Repair is the explicit,
//! offline decision to give up the damaged record and everything after it: the log is cut at
//! the start of the first bad record, so what remains is exactly the history before the
//! damage. It takes each core's lock first, so it cannot run beside a server on the same
//! directory, and reports what it dropped (records counted by resynchronising on the intact
//! records after the damage, so the number is what a skip would have kept).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{
    record::{self, FILE_MAGIC},
    replay::stop_reason,
};

/// What [`repair`] did to one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repaired {
    pub path: PathBuf,
    /// Byte offset of the first bad record, where the log was cut; `None` if it was intact.
    pub cut_at: Option<u64>,
    /// Why that record is bad.
    pub reason: Option<&'static str>,
    /// The bad record plus every intact record found after it.
    pub records_dropped: u64,
    /// Bytes removed from the end of the file.
    pub bytes_dropped: u64,
    /// Records kept.
    pub records_kept: u64,
}

/// Cuts every `core-<k>.log` in `dir` at its first bad record, in core order.
///
/// # Errors
///
/// IO errors; `WouldBlock` if a server holds the directory; `InvalidData` for a file that is
/// not a storage log (it is left alone); `NotFound` if `dir` holds no logs.
pub fn repair(dir: &Path) -> io::Result<Vec<Repaired>> {
    let mut logs: Vec<(usize, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(core) = name
            .strip_prefix("core-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            logs.push((core, path));
        }
    }
    if logs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no storage logs (core-<k>.log) here", dir.display()),
        ));
    }
    logs.sort();
    logs.into_iter()
        .map(|(core, path)| repair_one(dir, core, path))
        .collect()
}

fn repair_one(dir: &Path, core: usize, path: PathBuf) -> io::Result<Repaired> {
    let lock = fs::File::create(dir.join(format!("core-{core}.lock")))?;
    lock.try_lock().map_err(|e| match e {
        fs::TryLockError::WouldBlock => io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{}: in use by a running server; stop it first",
                path.display()
            ),
        ),
        fs::TryLockError::Error(e) => e,
    })?;
    let bytes = fs::read(&path)?;
    if !bytes.starts_with(&FILE_MAGIC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a partyring storage log (bad magic); left alone",
                path.display()
            ),
        ));
    }
    let body = &bytes[FILE_MAGIC.len()..];
    let mut decoder = record::Decoder::new(body);
    let kept = decoder.by_ref().count() as u64;
    let good = decoder.good_len();
    let Some(stop) = decoder.stop() else {
        return Ok(Repaired {
            path,
            cut_at: None,
            reason: None,
            records_dropped: 0,
            bytes_dropped: 0,
            records_kept: kept,
        });
    };
    let records_dropped = 1 + count_intact_after(body, good);
    let cut = (FILE_MAGIC.len() + good) as u64;
    let file = fs::OpenOptions::new().write(true).open(&path)?;
    file.set_len(cut)?;
    file.sync_all()?;
    Ok(Repaired {
        path,
        cut_at: Some(cut),
        reason: Some(stop_reason(stop)),
        records_dropped,
        bytes_dropped: bytes.len() as u64 - cut,
        records_kept: kept,
    })
}

/// Intact records after the bad one at `bad`: resynchronise on the next valid record, decode
/// the run that starts there, and repeat after each further bad spot.
fn count_intact_after(body: &[u8], bad: usize) -> u64 {
    let mut n = 0;
    let mut from = bad + 1;
    while let Some(at) = record::find_record(body, from) {
        let mut run = record::Decoder::new(&body[at..]);
        n += run.by_ref().count() as u64;
        if run.stop().is_none() {
            break;
        }
        from = at + run.good_len() + 1;
    }
    n
}
