//! The storage engine under faults, from outside: injected `EIO`/`ENOSPC` on log writes and
//! fsyncs (the writer's fault hook, `src/storage/faults.rs`), damage in the middle of a log,
//! and `repair`.
//!
//! What each test pins: a write that fails is discarded everywhere (its future resolves to a
//! typed error, reads stop showing it, a reopen does not find it), the writes that did succeed
//! are all there, and the next write after a failure succeeds.

mod common;

use std::fs;

use common::{block_on, TempDir};

use partyring::storage::{
    faults::FaultPlan, repair, FsyncPolicy, ListOptions, Storage, StorageError, StorageOptions,
};

fn plan(s: &str) -> &'static FaultPlan {
    Box::leak(Box::new(s.parse().unwrap()))
}

fn open(dir: &TempDir, fsync: FsyncPolicy, faults: &str) -> Storage {
    let opts = StorageOptions::new().fsync(fsync).faults(plan(faults));
    Storage::open_with(dir.path(), 0, opts).unwrap()
}

fn keys(s: &Storage) -> Vec<String> {
    let all = s.list("p", "r", &ListOptions::default()).unwrap();
    all.into_iter().map(|(k, _)| k).collect()
}

/// The keys a fresh open of `dir` finds.
fn keys_after_reopen(dir: &TempDir) -> Vec<String> {
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        let k = keys(&s);
        s.start();
        s.close().await.unwrap();
        k
    })
}

fn put(s: &Storage, key: &str) -> partyring::storage::Durable<()> {
    s.put_one("p", "r", key, format!("value of {key}").into_bytes())
}

#[test]
fn each_injected_failure_discards_the_write_and_the_next_one_succeeds() {
    // (fault, policy, the error the failed write resolves to)
    let table: &[(&str, FsyncPolicy, StorageError)] = &[
        (
            "write-eio@2",
            FsyncPolicy::Always,
            StorageError::Io(std::io::Error::from_raw_os_error(libc::EIO).kind()),
        ),
        ("write-enospc@2", FsyncPolicy::Always, StorageError::NoSpace),
        (
            "fsync-eio@2",
            FsyncPolicy::Always,
            StorageError::Io(std::io::Error::from_raw_os_error(libc::EIO).kind()),
        ),
        ("write-enospc@2", FsyncPolicy::Never, StorageError::NoSpace),
    ];
    for &(fault, policy, want) in table {
        let dir = TempDir::new("one");
        block_on(async {
            let s = open(&dir, policy, fault);
            s.start();
            put(&s, "a").await.unwrap();
            let len_before = fs::metadata(dir.log(0)).unwrap().len();
            assert_eq!(put(&s, "b").await, Err(want), "{fault}");
            assert_eq!(keys(&s), ["a"], "{fault}: the failed write is not readable");
            assert_eq!(
                fs::metadata(dir.log(0)).unwrap().len(),
                len_before,
                "{fault}: the file is cut back to the last durable record"
            );
            let stats = s.stats();
            assert_eq!((stats.failures, stats.lost_records), (1, 1), "{fault}");
            assert_eq!(
                stats.degraded, 1,
                "{fault}: degraded until a write succeeds"
            );
            put(&s, "c").await.unwrap();
            assert_eq!(s.stats().degraded, 0, "{fault}");
            assert_eq!(keys(&s), ["a", "c"], "{fault}");
            s.close().await.unwrap();
        });
        assert_eq!(keys_after_reopen(&dir), ["a", "c"], "{fault}");
    }
}

#[test]
fn writes_queued_behind_a_failed_batch_are_discarded_with_it() {
    let dir = TempDir::new("queued");
    block_on(async {
        let s = open(&dir, FsyncPolicy::Always, "fsync-eio@2");
        s.start();
        put(&s, "a").await.unwrap();
        // Issued together: whichever batches they land in, the first fsync after `a` fails,
        // and nothing issued before the recovery may survive it.
        let pending: Vec<_> = ["b", "c", "d"].iter().map(|k| put(&s, k)).collect();
        let delete_a = s.delete("p", "r", vec!["a".into()]);
        assert_eq!(
            keys(&s),
            ["b", "c", "d"],
            "applied at once, before the disk"
        );
        let mut results = Vec::new();
        for d in pending {
            results.push(d.await);
        }
        assert!(delete_a.await.is_err());
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert_eq!(
            keys(&s),
            ["a"],
            "back to what is on disk: the delete is undone too"
        );
        // A future of a lost write keeps its error after later writes succeed.
        let lost = put(&s, "x");
        drop(put(&s, "y"));
        let later = put(&s, "z");
        later.await.unwrap();
        assert_eq!(
            lost.await,
            Ok(()),
            "issued after the recovery: a normal write"
        );
        s.close().await.unwrap();
    });
    assert_eq!(keys_after_reopen(&dir), ["a", "x", "y", "z"]);
}

#[test]
fn a_failed_fsync_under_every_loses_what_was_only_written() {
    let dir = TempDir::new("every");
    block_on(async {
        let opts = StorageOptions::new()
            .fsync(FsyncPolicy::Every(std::time::Duration::from_secs(3600)))
            .faults(plan("fsync-eio@1"));
        let s = Storage::open_with(dir.path(), 0, opts).unwrap();
        s.start();
        // Under `every`, a write resolves once written; the fsync comes later, and fails.
        put(&s, "a").await.unwrap();
        assert_eq!(keys(&s), ["a"]);
        assert!(s.flush().await.is_err());
        assert_eq!(keys(&s), Vec::<String>::new(), "never fsynced: discarded");
        put(&s, "b").await.unwrap();
        s.flush().await.unwrap();
        s.close().await.unwrap();
    });
    assert_eq!(keys_after_reopen(&dir), ["b"]);
}

/// Writes `n` one-key records and returns the file offset where each one starts.
fn write_records(dir: &TempDir, n: usize) -> Vec<u64> {
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(fs::metadata(dir.log(0)).unwrap().len());
            put(&s, &format!("k{i:02}")).await.unwrap();
        }
        s.close().await.unwrap();
        starts
    })
}

#[test]
fn a_flipped_byte_mid_log_refuses_to_open_and_repair_cuts_there() {
    let dir = TempDir::new("corrupt");
    let starts = write_records(&dir, 10);
    let before = fs::read(dir.log(0)).unwrap();
    let mut bytes = before.clone();
    // A byte in the body of record 3 (0-based): records 0..3 stay, 3..10 are behind it.
    let at = starts[3] as usize + 12;
    bytes[at] ^= 0x20;
    fs::write(dir.log(0), &bytes).unwrap();

    let err = Storage::open(dir.path(), 0, FsyncPolicy::Always)
        .err()
        .expect("a damaged log must not open");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(msg.contains(&dir.log(0).display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("byte offset {}", starts[3])),
        "names the record's offset: {msg}"
    );
    assert!(msg.contains("partyring repair"), "{msg}");
    assert_eq!(fs::read(dir.log(0)).unwrap(), bytes, "open touches nothing");

    let report = repair(dir.path()).unwrap();
    assert_eq!(report.len(), 1);
    let r = &report[0];
    assert_eq!(r.cut_at, Some(starts[3]));
    assert_eq!(
        r.records_dropped, 7,
        "the damaged record and the 6 intact ones after it"
    );
    assert_eq!(r.records_kept, 3);
    assert_eq!(r.bytes_dropped, bytes.len() as u64 - starts[3]);
    assert_eq!(keys_after_reopen(&dir), ["k00", "k01", "k02"]);
    // Repairing an intact log changes nothing.
    let again = repair(dir.path()).unwrap();
    assert_eq!((again[0].cut_at, again[0].records_dropped), (None, 0));
}

#[test]
fn a_corrupt_length_mid_log_is_caught_too() {
    let dir = TempDir::new("length");
    let starts = write_records(&dir, 6);
    let mut bytes = fs::read(dir.log(0)).unwrap();
    // Record 2's length field says "bigger than the rest of the file": it looks torn, but
    // intact records follow.
    let at = starts[2] as usize;
    bytes[at..at + 4].copy_from_slice(&4000u32.to_le_bytes());
    fs::write(dir.log(0), &bytes).unwrap();
    let err = Storage::open(dir.path(), 0, FsyncPolicy::Always)
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains(&format!("byte offset {}", starts[2])),
        "{err}"
    );
    let r = &repair(dir.path()).unwrap()[0];
    assert_eq!((r.cut_at, r.records_dropped), (Some(starts[2]), 4));
}

#[test]
fn repair_refuses_a_directory_in_use_and_one_without_logs() {
    let dir = TempDir::new("busy");
    write_records(&dir, 2);
    let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
    let err = repair(dir.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
    drop(s);
    let empty = TempDir::new("empty");
    assert_eq!(
        repair(empty.path()).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

#[test]
fn if_the_log_cannot_be_reopened_the_storage_refuses_every_later_write() {
    let dir = TempDir::new("gone");
    block_on(async {
        let s = open(&dir, FsyncPolicy::Always, "write-eio@2");
        s.start();
        put(&s, "a").await.unwrap();
        // The recovery after the failing write reopens the log by name: make that impossible.
        fs::remove_file(dir.log(0)).unwrap();
        assert!(matches!(put(&s, "b").await, Err(StorageError::Io(_))));
        assert_eq!(
            put(&s, "c").await,
            Err(StorageError::Io(std::io::ErrorKind::NotFound)),
            "failed for good, with the error that stopped the recovery"
        );
        assert_eq!(s.stats().degraded, 1);
        assert_eq!(
            keys(&s),
            ["a"],
            "the failed write is not readable, the durable one is"
        );
        assert!(s.close().await.is_err());
    });
}

/// The output gate's barrier also covers writes refused outright (the storage closed or failed
/// for good): they take no sequence number, and without being counted an answer computed after
/// one would go out as if it had been stored.
#[test]
fn a_barrier_reports_a_write_refused_outright() {
    let dir = TempDir::new("refused");
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        let mark = s.write_mark();
        assert!(s.barrier_since(mark).is_none(), "nothing written yet");
        put(&s, "a").await.unwrap();
        let durable = s.barrier_since(mark).expect("a write since the mark");
        assert_eq!(durable.await, Ok(()));
        s.close().await.unwrap();
        let mark = s.write_mark();
        assert_eq!(put(&s, "b").await, Err(StorageError::Closed));
        let refused = s.barrier_since(mark).expect("the refused write counts");
        assert_eq!(refused.await, Err(StorageError::Closed));
    });
}
