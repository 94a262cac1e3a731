//! Fault injection for the storage writer: the test hook behind `PARTYRING_STORAGE_FAULTS`.
//!
//! Real disks fail rarely and not on demand, so the tests make the writer fail instead: a
//! [`FaultPlan`] says which log writes or fsyncs (counted per core, from 1) return `EIO` or
//! `ENOSPC`, and at which step of a compaction the process aborts. The binary installs a plan
//! from the environment ([`install`], called by `main.rs` only); [`Storage::open`] picks it up,
//! and without one the writer pays one `Option` check per batch.
//!
//! A failing write first writes half of its batch for real, so recovery has a torn tail to cut.
//! A failing fsync does not sync at all: whatever was written stays in the page cache, exactly
//! the state Linux leaves after a real writeback error, which recovery must not trust.
//!
//! [`Storage::open`]: super::Storage::open

use std::{cell::Cell, fmt, io, str::FromStr, sync::OnceLock};

/// One failure the plan injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Log writes (`Write`) or fsyncs (`Sync`) number `from..=to` of a core fail with `errno`.
    Fail {
        op: FaultOp,
        errno: i32,
        from: u64,
        to: u64,
    },
    /// The process aborts (no cleanup, like SIGKILL) when compaction reaches this step.
    Abort(CompactStep),
}

/// The IO operations a plan can make fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// Appending a batch to the log.
    Write,
    /// An `fdatasync` by the writer: of the log (a batch under `always`, the `every` deadline,
    /// a flush, close) or of a compaction's new file.
    Sync,
}

/// The steps of a compaction, in order, where a plan can abort the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactStep {
    /// The new file `core-<k>.log.compact` exists, empty.
    Created,
    /// About half of the snapshot is written to it.
    Half,
    /// All of it is written, not yet fsynced.
    Written,
    /// It is fsynced, not yet renamed over the log.
    Synced,
    /// It is renamed over the log; the directory is not yet fsynced.
    Renamed,
    /// The directory is fsynced: the compaction is complete.
    Done,
}

impl CompactStep {
    pub const ALL: [CompactStep; 6] = [
        CompactStep::Created,
        CompactStep::Half,
        CompactStep::Written,
        CompactStep::Synced,
        CompactStep::Renamed,
        CompactStep::Done,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CompactStep::Created => "created",
            CompactStep::Half => "half",
            CompactStep::Written => "written",
            CompactStep::Synced => "synced",
            CompactStep::Renamed => "renamed",
            CompactStep::Done => "done",
        }
    }
}

/// What to break, parsed from a comma-separated list:
///
/// - `write-eio@N`, `write-enospc@N`, `fsync-eio@N`, `fsync-enospc@N`: the core's `N`th log
///   write (or fsync) fails; `@N-M` fails `N` to `M` inclusive;
/// - `compact-abort@STEP`: abort at that step of every compaction (`created`, `half`,
///   `written`, `synced`, `renamed`, `done`);
/// - `compact-min=BYTES`: compact once the log is over this size (and over twice its live
///   data) instead of the default 1 MiB, so tests reach a compaction quickly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    rules: Vec<Rule>,
    /// Overrides `StorageOptions::compact_min_bytes`.
    pub compact_min_bytes: Option<u64>,
}

impl FromStr for FaultPlan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut plan = FaultPlan::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || format!("invalid storage fault {item:?}");
            if let Some(n) = item.strip_prefix("compact-min=") {
                plan.compact_min_bytes = Some(n.parse().map_err(|_| bad())?);
                continue;
            }
            let (what, at) = item.split_once('@').ok_or_else(bad)?;
            if what == "compact-abort" {
                let step = CompactStep::ALL
                    .into_iter()
                    .find(|s| s.name() == at)
                    .ok_or_else(bad)?;
                plan.rules.push(Rule::Abort(step));
                continue;
            }
            let (op, errno) = match what {
                "write-eio" => (FaultOp::Write, libc::EIO),
                "write-enospc" => (FaultOp::Write, libc::ENOSPC),
                "fsync-eio" => (FaultOp::Sync, libc::EIO),
                "fsync-enospc" => (FaultOp::Sync, libc::ENOSPC),
                _ => return Err(bad()),
            };
            let (from, to) = match at.split_once('-') {
                Some((a, b)) => (a.parse(), b.parse()),
                None => (at.parse(), at.parse()),
            };
            let (Ok(from), Ok(to)) = (from, to) else {
                return Err(bad());
            };
            if from == 0 || to < from {
                return Err(bad());
            }
            plan.rules.push(Rule::Fail {
                op,
                errno,
                from,
                to,
            });
        }
        Ok(plan)
    }
}

impl fmt::Display for FaultOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultOp::Write => "write",
            FaultOp::Sync => "fsync",
        })
    }
}

static PLAN: OnceLock<FaultPlan> = OnceLock::new();

/// Installs the process's plan; storages opened afterwards follow it. Only the first call
/// counts. For tests and fault drills: never set in production.
pub fn install(plan: FaultPlan) {
    let _ = PLAN.set(plan);
}

/// One storage's view of the installed plan, with its own operation counters.
pub(super) struct Faults {
    plan: &'static FaultPlan,
    writes: Cell<u64>,
    syncs: Cell<u64>,
}

impl Faults {
    /// `given`, else the installed plan; `None` if neither.
    pub(super) fn new(given: Option<&'static FaultPlan>) -> Option<Faults> {
        given.or_else(|| PLAN.get()).map(|plan| Faults {
            plan,
            writes: Cell::new(0),
            syncs: Cell::new(0),
        })
    }

    pub(super) fn compact_min_bytes(&self) -> Option<u64> {
        self.plan.compact_min_bytes
    }

    /// Counts one `op` and returns the error it must fail with, if the plan says so.
    pub(super) fn next(&self, op: FaultOp) -> Option<io::Error> {
        let counter = match op {
            FaultOp::Write => &self.writes,
            FaultOp::Sync => &self.syncs,
        };
        let n = counter.get() + 1;
        counter.set(n);
        self.plan.rules.iter().find_map(|r| match *r {
            Rule::Fail {
                op: o,
                errno,
                from,
                to,
            } if o == op && (from..=to).contains(&n) => {
                tracing::debug!(%op, n, errno, "storage fault hook: failing this operation");
                Some(io::Error::from_raw_os_error(errno))
            }
            _ => None,
        })
    }

    /// Aborts the process if the plan says to at this compaction step.
    pub(super) fn compact_step(&self, step: CompactStep) {
        if self.plan.rules.contains(&Rule::Abort(step)) {
            eprintln!(
                "storage fault hook: aborting at compaction step {}",
                step.name()
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_bad_ones_are_refused() {
        let plan: FaultPlan =
            "write-eio@3, fsync-enospc@2-4,compact-abort@renamed,compact-min=4096"
                .parse()
                .unwrap();
        assert_eq!(plan.compact_min_bytes, Some(4096));
        assert_eq!(plan.rules.len(), 3);
        for bad in [
            "write-eio",
            "write-eio@0",
            "write-eio@3-2",
            "read-eio@1",
            "compact-abort@never",
            "compact-min=x",
        ] {
            assert!(bad.parse::<FaultPlan>().is_err(), "{bad}");
        }
        assert_eq!("".parse::<FaultPlan>(), Ok(FaultPlan::default()));
    }

    #[test]
    fn operations_fail_by_number() {
        let plan: &'static FaultPlan =
            Box::leak(Box::new("write-eio@2,fsync-enospc@1-2".parse().unwrap()));
        let f = Faults {
            plan,
            writes: Cell::new(0),
            syncs: Cell::new(0),
        };
        let writes: Vec<bool> = (0..3).map(|_| f.next(FaultOp::Write).is_some()).collect();
        assert_eq!(writes, [false, true, false]);
        let e = f.next(FaultOp::Sync).unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(f.next(FaultOp::Sync).is_some());
        assert!(f.next(FaultOp::Sync).is_none());
    }
}
