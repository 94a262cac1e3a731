use super::*;
use crate::{
    room::{host::Detached, RoomTable},
    storage::Storage,
};

#[test]
fn memory_rooms_keep_history_only_in_the_room() {
    let storage = Storage::memory();
    let mut t = RoomTable::new(vec!["main".into()], storage.clone(), Detached::host());
    let r = t.get_or_create(0, "a");
    drop(publish(r, 3, "1".into(), None));
    assert_eq!(history(r), ["1"], "nothing to wait for");
    assert!(storage
        .list("main", "a", &Default::default())
        .unwrap()
        .is_empty());
}

#[test]
fn an_empty_history_keeps_no_room_in_memory() {
    let mut t = RoomTable::new(vec!["main".into()], Storage::memory(), Detached::host());
    let r = t.get_or_create(0, "a");
    load_history(r, 3);
    assert_eq!(&*history_json(r), b"[]");
    t.remove_if_empty(0, "a");
    assert!(
        t.is_empty(),
        "a GET of a room with no history leaves nothing behind"
    );
}

#[test]
fn history_is_stored_in_order_and_replayed() {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(history_on_a_log());
}

/// Publishes `m` and waits until it is durable and shown (outside a core there is no gate
/// task: the test releases the gate itself).
async fn publish_durably(r: &mut Room, m: &str) {
    let durable = publish(r, 3, m.into(), None);
    assert!(history(r).iter().all(|h| *h != m), "held until durable");
    durable.await.unwrap();
    release_gate(r);
}

async fn history_on_a_log() {
    let dir = std::env::temp_dir().join(format!("partyring-main-{}", std::process::id()));
    let storage = Storage::open(&dir, 0, crate::storage::FsyncPolicy::Never).unwrap();
    storage.start();
    let mut t = RoomTable::new(
        vec!["p".into(), "main".into()],
        storage.clone(),
        Detached::host(),
    );
    let r = t.get_or_create(1, "a");
    for m in ["1", "2", "3", "4"] {
        publish_durably(r, m).await;
    }
    assert_eq!(history(r), ["2", "3", "4"]);
    assert_eq!(&*history_json(r), br#"["2","3","4"]"#);
    t.remove_if_empty(1, "a");
    assert_eq!(t.len(), 1, "a room with history stays");
    storage.flush().await.unwrap();
    // The history is in storage, under ordered keys, the evicted one deleted.
    let keys: Vec<String> = storage
        .list("main", "a", &Default::default())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "history/00000000000000000001",
            "history/00000000000000000002",
            "history/00000000000000000003"
        ]
    );
    // A fresh room over the same storage replays it and continues the numbering.
    let mut fresh = Room::new(1, "main".into(), "a", storage.clone(), Detached::host());
    load_history(&mut fresh, 3);
    assert_eq!(history(&fresh), ["2", "3", "4"]);
    publish_durably(&mut fresh, "5").await;
    assert_eq!(history(&fresh), ["3", "4", "5"]);
    assert!(storage
        .get("main", "a", "history/00000000000000000004")
        .is_some());
    assert!(storage
        .get("main", "a", "history/00000000000000000001")
        .is_none());
    storage.close().await.unwrap();
    drop((t, fresh, storage));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_fsync_under_every_takes_the_lost_messages_out_of_the_history() {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(lost_messages_leave_the_history());
}

async fn lost_messages_leave_the_history() {
    use crate::storage::{faults::FaultPlan, FsyncPolicy, StorageOptions};
    let dir = std::env::temp_dir().join(format!("partyring-main-lost-{}", std::process::id()));
    let plan: &'static FaultPlan = Box::leak(Box::new("fsync-eio@1".parse().unwrap()));
    let opts = StorageOptions::new()
        .fsync(FsyncPolicy::Every(std::time::Duration::from_secs(3600)))
        .faults(plan);
    let storage = Storage::open_with(&dir, 0, opts).unwrap();
    storage.start();
    let mut room = Room::new(0, "main".into(), "a", storage.clone(), Detached::host());
    load_history(&mut room, 10);
    // Under `every` a message is shown once written, before its fsync.
    publish_durably(&mut room, "shown, then lost").await;
    assert_eq!(&*history_json(&mut room), br#"["shown, then lost"]"#);
    // The fsync fails: the storage discards what was only written.
    assert!(storage.flush().await.is_err());
    assert_eq!(&*history_json(&mut room), b"[]", "GET no longer shows it");
    // Writing goes on, numbered after the lost one.
    let durable = publish(&mut room, 10, "kept".into(), None);
    durable.await.unwrap();
    release_gate(&mut room);
    storage.flush().await.unwrap();
    assert_eq!(&*history_json(&mut room), br#"["kept"]"#);
    assert!(storage
        .get("main", "a", "history/00000000000000000001")
        .is_some());
    storage.close().await.unwrap();
    drop((room, storage));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_post_body_is_read_as_text_or_as_bytes_alike() {
    assert_eq!(parse_post(br#"{"message":"hi"}"#).unwrap().message, "hi");
    let utf8 = r#"{"message":"caf\u00e9 é ✓"}"#;
    assert_eq!(parse_post(utf8.as_bytes()).unwrap().message, "café é ✓");
    // Not UTF-8 inside the string, or outside it: refused, as serde_json refuses the bytes.
    for bad in [
        &b"{\"message\":\"\xff\"}"[..],
        b"\xff{\"message\":\"x\"}",
        b"{\"message\":1}",
    ] {
        let ours = parse_post(bad).unwrap_err().to_string();
        let bytes = serde_json::from_slice::<PostBody>(bad)
            .unwrap_err()
            .to_string();
        assert_eq!(ours, bytes);
    }
}
