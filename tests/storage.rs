//! The storage engine from outside: real files in a temp dir, a real monoio runtime.
//!
//! Covers reopen-after-write, group commit (fsync counts), torn and garbage tails, compaction,
//! the size limits, the three fsync policies and the directory lock. The crash test (a child
//! process killed mid-write) is `tests/storage_crash.rs`: a test binary that spawns a process
//! must not hold another test's lock file when it forks (see there).

mod common;

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    time::{Duration, Instant},
};

use common::{block_on, TempDir};

use partyring::storage::{
    FsyncPolicy, ListOptions, Storage, StorageError, StorageOptions, MAX_KEYS_PER_OP,
    MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_VALUE_BYTES,
};

type Dump = BTreeMap<(String, String), (BTreeMap<String, Vec<u8>>, Option<u64>)>;

/// Everything in the store, in a comparable shape.
fn dump(s: &Storage) -> Dump {
    s.read(|idx| {
        idx.rooms()
            .map(|(p, r, d)| ((p.to_owned(), r.to_owned()), (d.map.clone(), d.alarm)))
            .collect()
    })
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn keys(s: &Storage, party: &str, room: &str) -> Vec<String> {
    let all = s.list(party, room, &ListOptions::default()).unwrap();
    all.into_iter().map(|(k, _)| k).collect()
}

/// The keys of a room that a fresh open of `dir` finds.
fn keys_after_reopen(dir: &TempDir, party: &str, room: &str) -> Vec<String> {
    let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
    keys(&s, party, room)
}

#[test]
fn everything_written_is_back_after_reopen() {
    let dir = TempDir::new("reopen");
    let before = block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        s.put("main", "lobby", kv(&[("a", "1"), ("b", "2"), ("c", "3")]))
            .await
            .unwrap();
        s.put("main", "other", kv(&[("a", "x")])).await.unwrap();
        s.put("chat", "lobby", kv(&[("msg:1", "hi"), ("msg:2", "yo")]))
            .await
            .unwrap();
        s.put("main", "lobby", kv(&[("b", "22")])).await.unwrap();
        assert_eq!(
            s.delete("main", "lobby", vec!["a".into(), "nope".into()])
                .await,
            Ok(1)
        );
        s.set_alarm("main", "lobby", Some(1_700_000_000_000))
            .await
            .unwrap();
        s.set_alarm("chat", "lobby", Some(5)).await.unwrap();
        s.set_alarm("chat", "lobby", None).await.unwrap();
        s.put("gone", "room", kv(&[("x", "1"), ("y", "2")]))
            .await
            .unwrap();
        assert_eq!(s.delete_all("gone", "room").await, Ok(2));
        s.put("alarm", "only", kv(&[("k", "v")])).await.unwrap();
        s.set_alarm("alarm", "only", Some(42)).await.unwrap();
        assert_eq!(s.delete_all("alarm", "only").await, Ok(1));
        s.put_one("bin", "r", "blob", vec![0, 255, 0, 10, 13])
            .await
            .unwrap();
        let d = dump(&s);
        s.close().await.unwrap();
        d
    });
    assert_eq!(before.len(), 5, "{before:?}");

    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(dump(&s), before);
        assert_eq!(keys(&s, "main", "lobby"), ["b", "c"]);
        assert_eq!(s.get("main", "lobby", "b"), Some(b"22".to_vec()));
        assert_eq!(s.alarm("main", "lobby"), Some(1_700_000_000_000));
        assert_eq!(s.alarm("chat", "lobby"), None);
        assert_eq!(
            s.alarm("alarm", "only"),
            Some(42),
            "deleteAll keeps the alarm"
        );
        assert!(keys(&s, "gone", "room").is_empty());
        let mut alarms = s.alarms();
        alarms.sort();
        assert_eq!(
            alarms,
            [
                ("alarm".into(), "only".into(), 42),
                ("main".into(), "lobby".into(), 1_700_000_000_000)
            ]
        );
        s.close().await.unwrap();
    });
}

#[test]
fn reads_see_writes_before_they_are_durable_and_no_ops_wait_for_earlier_writes() {
    let dir = TempDir::new("immediate");
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        let put = s.put_one("p", "r", "k", b"v".to_vec());
        assert_eq!(s.get("p", "r", "k"), Some(b"v".to_vec()));
        assert_eq!(s.stats().fsyncs, 0);
        // Deleting a missing key writes nothing, but still waits for the put before it.
        let noop = s.delete("p", "r", vec!["missing".into()]);
        assert_eq!(noop.await, Ok(0));
        assert_eq!(s.stats().fsyncs, 1);
        put.await.unwrap();
        assert_eq!(s.stats().records, 1);
        s.close().await.unwrap();
        assert_eq!(
            s.put_one("p", "r", "k", vec![]).await,
            Err(StorageError::Closed)
        );
        assert_eq!(
            s.get("p", "r", "k"),
            Some(b"v".to_vec()),
            "reads work after close"
        );
    });
}

#[test]
fn group_commit_shares_fsyncs() {
    let dir = TempDir::new("group");
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        let writes: Vec<_> = (0..1000)
            .map(|i| s.put_one("p", "r", &format!("k{i:04}"), vec![7; 100]))
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        let stats = s.stats();
        eprintln!("1000 puts in one pass: {stats:?}");
        assert_eq!(stats.records, 1000);
        assert!(stats.fsyncs <= 5, "{stats:?}");
        assert!(stats.batches <= 5, "{stats:?}");

        // Writers in separate tasks, each awaiting its own put in a loop: batches form while
        // the previous fsync runs, so there are far fewer fsyncs than writes.
        let before = s.stats().fsyncs;
        let tasks: Vec<_> = (0..50)
            .map(|t| {
                let s = s.clone();
                monoio::spawn(async move {
                    for i in 0..20 {
                        s.put_one("p", "tasks", &format!("{t}-{i}"), vec![1; 10])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let fsyncs = s.stats().fsyncs - before;
        eprintln!("50 tasks x 20 sequential puts: {fsyncs} fsyncs");
        assert!(
            fsyncs <= 100,
            "{fsyncs} fsyncs for 1000 writes from 50 tasks"
        );
        s.close().await.unwrap();
    });
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(keys(&s, "p", "r").len(), 1000);
        assert_eq!(keys(&s, "p", "tasks").len(), 1000);
    });
}

/// Writes `n` single-key puts, each its own record, and returns the log's size after each.
fn write_records(dir: &TempDir, n: usize) -> Vec<u64> {
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        let mut sizes = Vec::new();
        for i in 0..n {
            s.put_one(
                "p",
                "r",
                &format!("k{i}"),
                format!("value {i}").into_bytes(),
            )
            .await
            .unwrap();
            sizes.push(fs::metadata(dir.log(0)).unwrap().len());
        }
        s.close().await.unwrap();
        sizes
    })
}

#[test]
fn torn_tail_is_truncated_and_appends_continue_after_it() {
    let dir = TempDir::new("torn");
    let sizes = write_records(&dir, 10);
    // Cut the last record short.
    let f = fs::OpenOptions::new().write(true).open(dir.log(0)).unwrap();
    f.set_len(sizes[9] - 3).unwrap();
    drop(f);

    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(keys(&s, "p", "r").len(), 9);
        assert_eq!(s.get("p", "r", "k9"), None);
        assert_eq!(
            fs::metadata(dir.log(0)).unwrap().len(),
            sizes[8],
            "truncated at the last good"
        );
        s.start();
        s.put_one("p", "r", "after", b"torn".to_vec())
            .await
            .unwrap();
        s.close().await.unwrap();
    });
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        let mut want: Vec<String> = (0..9).map(|i| format!("k{i}")).collect();
        want.push("after".into());
        want.sort();
        assert_eq!(keys(&s, "p", "r"), want);
        assert_eq!(s.get("p", "r", "k8"), Some(b"value 8".to_vec()));
    });
}

#[test]
fn garbage_tail_is_dropped_and_every_complete_record_kept() {
    let table: &[(&str, &[u8])] = &[
        ("zeros", &[0; 100]),
        ("ones", &[0xFF; 7]),
        (
            "plausible length, bad crc",
            &[
                20, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        ("one byte", &[1]),
    ];
    for &(name, garbage) in table {
        let dir = TempDir::new("garbage");
        let sizes = write_records(&dir, 5);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.log(0))
            .unwrap();
        f.write_all(garbage).unwrap();
        drop(f);
        block_on(async {
            let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
            assert_eq!(keys(&s, "p", "r").len(), 5, "{name}");
            assert_eq!(fs::metadata(dir.log(0)).unwrap().len(), sizes[4], "{name}");
            s.start();
            s.put_one("p", "r", "new", vec![]).await.unwrap();
            s.close().await.unwrap();
        });
        block_on(async {
            let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
            assert_eq!(keys(&s, "p", "r").len(), 6, "{name}");
        });
    }
}

#[test]
fn a_foreign_file_is_refused_and_left_alone() {
    let dir = TempDir::new("foreign");
    fs::write(dir.log(0), b"not a log at all").unwrap();
    let err = Storage::open(dir.path(), 0, FsyncPolicy::Always)
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(fs::read(dir.log(0)).unwrap(), b"not a log at all");
    // A file torn while its magic was being written is just a new log.
    fs::write(dir.log(1), b"PRT").unwrap();
    let s = Storage::open(dir.path(), 1, FsyncPolicy::Always).unwrap();
    assert!(dump(&s).is_empty());
}

#[test]
fn a_second_open_of_the_same_core_is_refused_while_the_first_lives() {
    let dir = TempDir::new("lock");
    let first = Storage::open(dir.path(), 3, FsyncPolicy::Always).unwrap();
    let err = Storage::open(dir.path(), 3, FsyncPolicy::Always)
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    Storage::open(dir.path(), 4, FsyncPolicy::Always).expect("another core is independent");
    drop(first);
    Storage::open(dir.path(), 3, FsyncPolicy::Always).expect("lock released on drop");
}

#[test]
fn compaction_shrinks_the_log_and_keeps_the_data() {
    let dir = TempDir::new("compact");
    let before = block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        // ~4 MiB of overwrites of a few keys: dead bytes dominate, so the default thresholds
        // (log > 1 MiB and > 2 x live) trigger compaction on their own.
        for i in 0..40u8 {
            s.put_one("p", "big", &format!("k{}", i % 3), vec![i; 100 * 1024])
                .await
                .unwrap();
        }
        s.put("p", "small", kv(&[("a", "1"), ("b", "2")]))
            .await
            .unwrap();
        s.set_alarm("p", "small", Some(77)).await.unwrap();
        let stats = s.stats();
        eprintln!("after overwrites: {stats:?}");
        assert!(stats.compactions >= 1, "{stats:?}");
        let size = fs::metadata(dir.log(0)).unwrap().len();
        assert!(size < 2 << 20, "log is {size} bytes after compaction");
        assert_eq!(stats.log_bytes, size);

        // A requested compaction brings the file to exactly the live size.
        s.delete("p", "big", vec!["k0".into()]).await.unwrap();
        s.request_compaction();
        s.flush().await.unwrap();
        let d = dump(&s);
        s.close().await.unwrap();
        let stats = s.stats();
        let size = fs::metadata(dir.log(0)).unwrap().len();
        assert_eq!(size, stats.live_bytes, "{stats:?}");
        assert!(!dir.path().join("core-0.log.compact").exists());
        d
    });
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(dump(&s), before);
        assert_eq!(s.get("p", "big", "k1"), Some(vec![37; 100 * 1024]));
        assert_eq!(s.alarm("p", "small"), Some(77));
        s.start();
        s.put_one("p", "small", "c", b"3".to_vec()).await.unwrap();
        s.close().await.unwrap();
    });
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(keys(&s, "p", "small"), ["a", "b", "c"]);
    });
}

#[test]
fn writes_during_compaction_are_not_lost() {
    let dir = TempDir::new("compact-race");
    let before = block_on(async {
        let opts = StorageOptions::new().compact_min_bytes(64 * 1024);
        let s = Storage::open_with(dir.path(), 0, opts).unwrap();
        s.start();
        // Many rooms so compaction takes several chunked writes; writes keep coming meanwhile.
        let mut futs = Vec::new();
        for round in 0..6 {
            for room in 0..200 {
                let v = vec![round as u8; 2000];
                futs.push(s.put_one("p", &format!("room{room}"), "k", v));
            }
            s.request_compaction();
            for f in futs.drain(..) {
                f.await.unwrap();
            }
            s.delete_all("p", &format!("room{round}")).await.unwrap();
        }
        let stats = s.stats();
        eprintln!("compaction race: {stats:?}");
        assert!(stats.compactions >= 3, "{stats:?}");
        let d = dump(&s);
        s.close().await.unwrap();
        d
    });
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(dump(&s), before);
        // Each round re-puts all 200 rooms, and only the last round's delete_all sticks.
        assert_eq!(before.len(), 199);
    });
}

#[test]
fn size_limits_are_errors_and_write_nothing() {
    let dir = TempDir::new("limits");
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        let long_name = "n".repeat(MAX_NAME_BYTES + 1);
        let too_many: Vec<_> = (0..=MAX_KEYS_PER_OP)
            .map(|i| (i.to_string(), vec![]))
            .collect();
        let table: Vec<(&str, _, StorageError)> = vec![
            (
                "key",
                s.put_one("p", "r", &long_key, vec![]),
                StorageError::KeyTooLarge,
            ),
            (
                "value",
                s.put_one("p", "r", "k", vec![0; MAX_VALUE_BYTES + 1]),
                StorageError::ValueTooLarge,
            ),
            (
                "count",
                s.put("p", "r", too_many),
                StorageError::TooManyKeys,
            ),
            (
                "party",
                s.put_one(&long_name, "r", "k", vec![]),
                StorageError::NameTooLong,
            ),
            (
                "room",
                s.set_alarm("p", &long_name, Some(1)),
                StorageError::NameTooLong,
            ),
        ];
        for (name, fut, want) in table {
            assert_eq!(fut.await, Err(want), "{name}");
        }
        assert_eq!(
            s.delete("p", "r", vec![long_key]).await,
            Err(StorageError::KeyTooLarge)
        );
        assert!(dump(&s).is_empty());
        assert_eq!(s.stats().records, 0);

        // Exactly at the limits is fine.
        let max: Vec<_> = (0..MAX_KEYS_PER_OP)
            .map(|i| {
                (
                    format!("{i:0>width$}", width = MAX_KEY_BYTES),
                    vec![i as u8; MAX_VALUE_BYTES],
                )
            })
            .collect();
        s.put("p", "max", max).await.unwrap();
        let opts = ListOptions {
            reverse: true,
            limit: Some(1),
            ..Default::default()
        };
        let last = s.list("p", "max", &opts).unwrap();
        assert_eq!(last[0].1, vec![127; MAX_VALUE_BYTES]);
        s.close().await.unwrap();
    });
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(keys(&s, "p", "max").len(), MAX_KEYS_PER_OP);
    });
}

#[test]
fn never_policy_does_not_fsync_and_still_persists() {
    let dir = TempDir::new("never");
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Never).unwrap();
        s.start();
        for i in 0..20 {
            s.put_one("p", "r", &i.to_string(), vec![1]).await.unwrap();
        }
        s.flush().await.unwrap();
        s.close().await.unwrap();
        assert_eq!(s.stats().fsyncs, 0);
        assert!(s.stats().batches >= 1);
    });
    block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Never).unwrap();
        assert_eq!(keys(&s, "p", "r").len(), 20);
    });
}

#[test]
fn every_policy_resolves_writes_without_an_fsync() {
    let dir = TempDir::new("every-write");
    block_on(async {
        // A period no run of this test reaches: an fsync seen here is not the timer's.
        let policy = FsyncPolicy::Every(Duration::from_secs(3600));
        let s = Storage::open(dir.path(), 0, policy).unwrap();
        s.start();
        for i in 0..10 {
            let put = s.put_one("p", "r", &i.to_string(), vec![1]);
            let done = monoio::time::timeout(Duration::from_secs(10), put).await;
            assert_eq!(done, Ok(Ok(())), "write {i} waited for the fsync period");
        }
        assert_eq!(
            s.stats().fsyncs,
            0,
            "writes resolve once written, before any fsync"
        );
        s.flush().await.unwrap();
        assert_eq!(s.stats().fsyncs, 1, "flush forces one fsync");
        s.close().await.unwrap();
        assert_eq!(s.stats().fsyncs, 1, "close: nothing left to sync");
    });
    assert_eq!(keys_after_reopen(&dir, "p", "r").len(), 10);
}

#[test]
fn every_policy_fsyncs_each_batch_once_on_the_timer() {
    let dir = TempDir::new("every-timer");
    block_on(async {
        let s =
            Storage::open(dir.path(), 0, FsyncPolicy::Every(Duration::from_millis(30))).unwrap();
        s.start();
        // Issued before this task first yields, so before the writer task runs: group commit
        // makes them one batch, however slow the machine.
        let writes: Vec<_> = (0..10)
            .map(|i| s.put_one("p", "r", &i.to_string(), vec![1]))
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        assert_eq!(
            s.stats().batches,
            1,
            "ten writes queued together: one batch"
        );
        // The timer syncs that batch, whenever it gets to run...
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.stats().fsyncs == 0 {
            assert!(Instant::now() < deadline, "the timer never synced");
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        // ... exactly once: that fsync covered everything written, so the timer is not re-armed.
        // (Checking an absence: a slow machine lets fewer periods pass, never more fsyncs.)
        monoio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.stats().fsyncs, 1, "nothing new written, no new fsync");

        // A write and a flush issued together: one batch and one fsync, whatever the timer does.
        let write = s.put_one("p", "r", "x", vec![2]);
        let flush = s.flush();
        write.await.unwrap();
        flush.await.unwrap();
        assert_eq!(
            (s.stats().batches, s.stats().fsyncs),
            (2, 2),
            "flush forces an fsync"
        );
        s.close().await.unwrap();
        assert_eq!(s.stats().fsyncs, 2, "close: nothing left to sync");
    });
    assert_eq!(keys_after_reopen(&dir, "p", "r").len(), 11);
}

#[test]
fn flush_under_every_does_not_wait_for_the_period() {
    let dir = TempDir::new("every-flush");
    block_on(async {
        let policy = FsyncPolicy::Every(Duration::from_secs(60));
        let s = Storage::open(dir.path(), 0, policy).unwrap();
        s.start();
        let first = s.put_one("p", "r", "a", vec![1]);
        // Runs while the writer is (typically) in the middle of writing `first`: the flush's
        // record is still pending then, and the request must survive that batch.
        let t = monoio::spawn({
            let s = s.clone();
            async move {
                let second = s.put_one("p", "r", "b", vec![2]);
                let flushed = monoio::time::timeout(Duration::from_secs(5), s.flush()).await;
                assert_eq!(flushed, Ok(Ok(())), "flush waited for the 60 s period");
                second.await.unwrap();
            }
        });
        first.await.unwrap();
        t.await;
        assert!(s.stats().fsyncs >= 1);
        s.close().await.unwrap();
    });
}

/// The same write → close → reopen cycle on the epoll ("legacy") driver, which FusionDriver
/// falls back to where io_uring is unavailable (file ops then run as blocking syscalls).
#[test]
fn legacy_driver_writes_and_reopens() {
    let dir = TempDir::new("legacy");
    let rt = || {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("legacy runtime")
    };
    rt().block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        s.start();
        let writes: Vec<_> = (0..100)
            .map(|i| s.put_one("p", "r", &i.to_string(), vec![i as u8]))
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        assert!(s.stats().fsyncs <= 5, "{:?}", s.stats());
        s.request_compaction();
        s.flush().await.unwrap();
        s.close().await.unwrap();
        assert_eq!(s.stats().compactions, 1);
    });
    rt().block_on(async {
        let s = Storage::open(dir.path(), 0, FsyncPolicy::Always).unwrap();
        assert_eq!(keys(&s, "p", "r").len(), 100);
        assert_eq!(s.get("p", "r", "42"), Some(vec![42]));
    });
}
