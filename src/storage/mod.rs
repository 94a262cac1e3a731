//! Durable room storage: PartyKit's `room.storage` (a Durable Object KV store), one
//! append-only log per core.
//!
//! Each core owns `<dir>/core-<k>.log`, holding every room sharded to that core, and nothing
//! else ever opens it (a `core-<k>.lock` file is `flock`ed to keep a second server off the
//! same directory). The whole state lives in memory ([`Index`]); the log exists to rebuild it
//! at startup. A write is applied to the index at once, so reads see it immediately (as with a
//! Durable Object's in-memory cache), and returns a [`Durable`] future that resolves once the
//! record is on disk under the [`FsyncPolicy`]. A write the disk refuses is taken back out
//! (`writer.rs`, "Failure states"): reads stop showing it and its future resolves to the error.
//!
//! ```text
//! Party API (core k)                     writer task (core k, one per Storage)
//!  put/delete/... -> validate             wait for pending bytes
//!   -> record::encode into `pending`  ==>  take the whole buffer (one "batch")
//!   -> index.apply_op (reads see it)       write_all_at(end of file) -> sync_data (Always)
//!   <- Durable(seq) ...................    wake every waiter with seq <= batch
//!                                          dead bytes dominate? rewrite the log (compaction)
//! ```
//!
//! Everything written during one fsync forms the next batch, so all the writes of an event-loop
//! pass share one fsync (group commit). There are no locks or atomics: the state is `Rc` +
//! `RefCell` + `Cell`, `!Send`, touched only by the owner core.
//!
//! # Layout
//!
//! - [`record`]: the file format, encode/decode, sans-IO (torn and corrupt tails).
//! - `crc`: CRC-32C for the records.
//! - `index`: the in-memory rooms, DO `list()` semantics, live/dead byte accounting.
//! - `log`: [`Storage`] and [`Durable`]: open, the write API, the in-memory mode.
//! - `state`: what the handles, the futures and the writer task share (`Inner`, `Disk`).
//! - `replay`: reading a log file into an index (at open, and after a failed write), the
//!   file names.
//! - `writer`: the per-core writer task: group commit, fsync policy, failure recovery,
//!   compaction.
//!
//! Dependencies run one way: `log -> writer -> {state, replay}`, `log -> {state, replay}`;
//! `state` and `replay` name neither `log` nor `writer`.
//! - [`faults`]: the test hook that makes log writes and fsyncs fail, or aborts mid-compaction.
//! - `repair`: [`repair()`], cutting a damaged log at its first bad record (offline).

use std::{fmt, io, time::Duration};

mod crc;
pub mod faults;
mod index;
mod log;
pub mod record;
mod repair;
mod replay;
mod state;
mod writer;

pub use index::{Index, ListOptions, RoomData};
pub use log::{Durable, Storage, WriteMark};
pub use repair::{repair, Repaired};
pub use state::StorageStats;

/// Longest key, in UTF-8 bytes (Durable Objects' limit).
pub const MAX_KEY_BYTES: usize = 2048;

/// Largest value, in bytes (Durable Objects' 128 KiB limit; the Party API stores JSON here).
pub const MAX_VALUE_BYTES: usize = 128 * 1024;

/// Most keys in one multi-key `put` or `delete` (Durable Objects' limit). It also bounds a
/// record's size, which lets the decoder reject impossible lengths.
pub const MAX_KEYS_PER_OP: usize = 128;

/// Longest party or room name, in bytes. Names are length-prefixed with a u16 on disk; real
/// names come from a URL path and are far shorter.
pub const MAX_NAME_BYTES: usize = 4096;

// The largest record the limits allow must fit what the decoder accepts.
const _: () = assert!(
    1 + 2 * (2 + MAX_NAME_BYTES) + 4 + MAX_KEYS_PER_OP * (2 + MAX_KEY_BYTES + 4 + MAX_VALUE_BYTES)
        <= record::MAX_BODY_LEN
);
// Keys and names are u16-length-prefixed on disk.
const _: () = assert!(MAX_KEY_BYTES <= u16::MAX as usize);
const _: () = assert!(MAX_NAME_BYTES <= u16::MAX as usize);

/// Why a storage call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    /// A key is over [`MAX_KEY_BYTES`]. Nothing was written.
    KeyTooLarge,
    /// A value is over [`MAX_VALUE_BYTES`]. Nothing was written.
    ValueTooLarge,
    /// More than [`MAX_KEYS_PER_OP`] keys in one call. Nothing was written.
    TooManyKeys,
    /// A party or room name is over [`MAX_NAME_BYTES`]. Nothing was written.
    NameTooLong,
    /// `list()` with both `start` and `start_after`, or `limit: 0`.
    InvalidListOptions,
    /// The disk is full (`ENOSPC`, or `EDQUOT`). The write was discarded (it is not in the
    /// index, not on disk); the next write tries again, and succeeds once space comes back.
    NoSpace,
    /// Writing or syncing the log failed with this error. The write was discarded, with every
    /// write issued after it that was not yet on disk; the log was cut back to its last durable
    /// record and the next write tries again. If even that failed (the file cannot be reopened
    /// or read back), the storage is failed for good and every later write returns this too.
    Io(io::ErrorKind),
    /// The storage was closed; nothing more is written.
    Closed,
    /// `put_json`: the value cannot be serialised as JSON (a map with non-string keys, a
    /// `Serialize` impl that fails). Nothing was written.
    NotJson,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::KeyTooLarge => write!(f, "key is over {MAX_KEY_BYTES} bytes"),
            StorageError::ValueTooLarge => write!(f, "value is over {MAX_VALUE_BYTES} bytes"),
            StorageError::TooManyKeys => write!(f, "more than {MAX_KEYS_PER_OP} keys in one call"),
            StorageError::NameTooLong => {
                write!(f, "party or room name over {MAX_NAME_BYTES} bytes")
            }
            StorageError::InvalidListOptions => {
                f.write_str("list: start and startAfter together, or limit not positive")
            }
            StorageError::NoSpace => f.write_str("no space left on the storage device"),
            StorageError::Io(kind) => write!(f, "storage log failed: {kind}"),
            StorageError::Closed => f.write_str("storage is closed"),
            StorageError::NotJson => f.write_str("value does not serialise as JSON"),
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    /// The error a failed write or fsync becomes: `ENOSPC`/`EDQUOT` are [`StorageError::NoSpace`],
    /// anything else [`StorageError::Io`].
    pub fn from_io(e: &io::Error) -> StorageError {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => StorageError::NoSpace,
            _ if e.kind() == io::ErrorKind::StorageFull => StorageError::NoSpace,
            _ => StorageError::Io(e.kind()),
        }
    }

    /// Whether the write was refused because the disk failed (full, IO error, closed) rather
    /// than because the call itself was bad: the same call may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::NoSpace | StorageError::Io(_) | StorageError::Closed
        )
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn fsync_policy_parses() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!(" Never ".parse(), Ok(FsyncPolicy::Never));
        for s in ["every 100", "every 100ms", "every:100", "every=100ms"] {
            assert_eq!(
                s.parse(),
                Ok(FsyncPolicy::Every(Duration::from_millis(100))),
                "{s}"
            );
        }
        for s in ["", "sometimes", "every", "every 0", "every -1", "every x"] {
            assert!(s.parse::<FsyncPolicy>().is_err(), "{s}");
        }
    }
}

/// When a write counts as durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// A write resolves after its batch was written *and* `fdatasync`ed: it survives power loss.
    /// One fsync per batch, however many writes the batch holds.
    #[default]
    Always,
    /// A write resolves once written to the file (it survives the process crashing, not the
    /// machine); the log is `fdatasync`ed on this period, so at most this much is lost on
    /// power loss. Needs a runtime built with `enable_timer()`.
    Every(Duration),
    /// Never fsync (tests, throwaway data). Writes still survive a process crash.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    /// `always`, `never`, or `every <ms>` (also `every:<ms>`, `every=<ms>`; `ms` may carry an
    /// `ms` suffix), as the `--fsync` flag takes it.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "always" => return Ok(FsyncPolicy::Always),
            "never" => return Ok(FsyncPolicy::Never),
            _ => {}
        }
        let bad = || format!("invalid fsync policy {s:?}: use always, never or \"every <ms>\"");
        let rest = t.strip_prefix("every").ok_or_else(bad)?;
        let ms = rest
            .trim_start_matches([' ', ':', '='])
            .trim()
            .trim_end_matches("ms")
            .trim();
        match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(FsyncPolicy::Every(Duration::from_millis(ms))),
            _ => Err(bad()),
        }
    }
}

/// Knobs of [`Storage::open_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    /// Default: [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// Compaction runs when the log is over this many bytes and over twice its live data.
    /// Lower means smaller files and more rewriting. Default: 1 MiB.
    pub compact_min_bytes: u64,
    /// Faults to inject (tests only; see [`faults`]). Default: the plan installed with
    /// [`faults::install`], normally none.
    pub faults: Option<&'static faults::FaultPlan>,
}

impl StorageOptions {
    pub const fn new() -> Self {
        StorageOptions {
            fsync: FsyncPolicy::Always,
            compact_min_bytes: 1 << 20,
            faults: None,
        }
    }

    #[must_use]
    pub const fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    #[must_use]
    pub const fn compact_min_bytes(mut self, bytes: u64) -> Self {
        self.compact_min_bytes = bytes;
        self
    }

    #[must_use]
    pub const fn faults(mut self, plan: &'static faults::FaultPlan) -> Self {
        self.faults = Some(plan);
        self
    }
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self::new()
    }
}
