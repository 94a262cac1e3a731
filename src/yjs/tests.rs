//! The yjs party against fake connections (outboxes with no socket): what reaches whom, what
//! is refused, what is stored. Over real sockets: tests/yjs.rs and tests/yjs/.

use std::cell::RefCell;

use yrs::{GetString, Map, Text};

use super::*;
use crate::{
    net::writer::Outbox,
    party::WsConn,
    storage::{ListOptions, Storage},
};

fn conn(id: &str, serial: u64) -> Connection {
    Rc::new(WsConn::new(
        id.into(),
        serial,
        "http://x/parties/yjs/r".into(),
        Rc::new(Outbox::new(1 << 20)),
    ))
}

fn join(room: &mut Room, c: &Connection, opts: &Options) {
    c.slot.set(room.conns.insert(c.clone()));
    on_connect(room, c, opts);
}

fn leave(room: &mut Room, c: &Connection) {
    room.conns.remove(c.slot.get());
    on_close(room, c);
}

/// A client-side edit: the update a Yjs client would send after inserting `text`.
fn edit(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    t.push(&mut txn, text);
    txn.encode_update_v1()
}

fn text(room: &Room) -> String {
    let d = shared_doc(room).expect("loaded");
    let t = d.doc().get_or_insert_text("t");
    let s = t.get_string(&d.doc().transact());
    s
}

fn send(room: &mut Room, c: &Connection, msg: &[u8]) {
    assert!(on_message(room, Message::Binary(msg), c), "a member");
}

/// Runs `f` inside a monoio runtime with timers (the snapshot and callback timers spawn).
fn in_runtime(f: impl FnOnce()) {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(async { f() });
}

#[test]
fn updates_are_applied_once_relayed_to_the_others_and_bad_ones_refused() {
    let mut room = Room::new(
        0,
        "yjs".into(),
        "r",
        Storage::memory(),
        crate::room::host::Detached::host(),
    );
    let opts = Options::default();
    let (a, b) = (conn("a", 1), conn("b", 2));
    let c = conn("c", 3);
    join(&mut room, &a, &opts);
    join(&mut room, &b, &opts);
    join(
        &mut room,
        &c,
        &Options {
            read_only: true,
            ..Options::default()
        },
    );
    let queued = |x: &Connection| x.outbox.queued_bytes();
    let before = [queued(&a), queued(&b), queued(&c)];
    send(&mut room, &a, &protocol::update(&edit("hello")));
    assert_eq!(text(&room), "hello");
    assert_eq!(queued(&a), before[0], "not echoed to the sender");
    assert!(queued(&b) > before[1] && queued(&c) > before[2], "relayed");
    // The same update twice: applied once, relayed once.
    let again = protocol::update(&edit("x"));
    let before = queued(&b);
    send(&mut room, &a, &again);
    let one_relay = queued(&b) - before;
    assert!(one_relay > 0);
    send(&mut room, &a, &again);
    assert_eq!(queued(&b) - before, one_relay, "a duplicate is not relayed");
    assert_eq!(text(&room).len(), "hellox".len());

    // A read-only member's update is dropped.
    let t = text(&room);
    send(&mut room, &c, &protocol::update(&edit("ro")));
    assert_eq!(text(&room), t);
    assert_eq!(c.sent_close.get(), 0, "dropped, not closed (as y-partykit)");

    // A malformed update closes its sender with 1007; the document and the others are
    // unaffected.
    let before = [queued(&a), queued(&c)];
    send(&mut room, &b, &protocol::update(&[0xff, 0xff, 0xff]));
    assert_eq!(b.sent_close.get(), close::INVALID_PAYLOAD);
    assert_eq!(text(&room), t);
    assert_eq!([queued(&a), queued(&c)], before);
    // Further messages from it are ignored.
    send(&mut room, &b, &protocol::update(&edit("late")));
    assert_eq!(text(&room), t);

    // Text that is not a chunk marker: 1003. A truncated message: 1007.
    let d = conn("d", 4);
    join(&mut room, &d, &opts);
    assert!(on_message(&mut room, Message::Text("hi"), &d));
    assert_eq!(d.sent_close.get(), close::UNSUPPORTED);
    let e = conn("e", 5);
    join(&mut room, &e, &opts);
    send(&mut room, &e, &[0, 2, 9, 1]);
    assert_eq!(e.sent_close.get(), close::INVALID_PAYLOAD);
    let f = conn("f", 6);
    join(&mut room, &f, &opts);
    send(&mut room, &f, &protocol::sync_step1(&[0xff]));
    assert_eq!(f.sent_close.get(), close::INVALID_PAYLOAD);
    assert_eq!(text(&room), t);
}

#[test]
fn chunked_updates_are_reassembled() {
    let mut room = Room::new(
        0,
        "yjs".into(),
        "r",
        Storage::memory(),
        crate::room::host::Detached::host(),
    );
    let opts = Options::default();
    let (a, b) = (conn("a", 1), conn("b", 2));
    join(&mut room, &a, &opts);
    join(&mut room, &b, &opts);
    let msg = protocol::update(&edit("chunked"));
    let (x, y) = msg.split_at(msg.len() / 2);
    let marker = |kind: &str| {
        format!(
            r#"y-pk-batch#{{"id":"q1","type":"{kind}","size":{},"count":2}}"#,
            msg.len()
        )
    };
    assert!(on_message(&mut room, Message::Text(&marker("start")), &a));
    send(&mut room, &a, x);
    send(&mut room, &a, y);
    assert!(on_message(&mut room, Message::Text(&marker("end")), &a));
    assert_eq!(text(&room), "chunked");
    // An end that does not match its start: 1007.
    assert!(on_message(&mut room, Message::Text(&marker("start")), &b));
    send(&mut room, &b, x);
    assert!(on_message(&mut room, Message::Text(&marker("end")), &b));
    assert_eq!(b.sent_close.get(), close::INVALID_PAYLOAD);
    assert_eq!(text(&room), "chunked");
}

#[test]
fn awareness_is_relayed_and_removed_when_its_connection_leaves() {
    let mut room = Room::new(
        0,
        "yjs".into(),
        "r",
        Storage::memory(),
        crate::room::host::Detached::host(),
    );
    let opts = Options::default();
    let (a, b) = (conn("a", 1), conn("b", 2));
    join(&mut room, &a, &opts);
    join(&mut room, &b, &opts);
    let mut upd = Vec::new();
    yrs::encoding::write::Write::write_var(&mut upd, 1u32);
    yrs::encoding::write::Write::write_var(&mut upd, 77u32);
    yrs::encoding::write::Write::write_var(&mut upd, 1u32);
    yrs::encoding::write::Write::write_string(&mut upd, r#"{"user":"a"}"#);
    let qb = b.outbox.queued_bytes();
    send(&mut room, &a, &protocol::awareness(&upd));
    assert!(b.outbox.queued_bytes() > qb);
    let d = shared_doc(&room).unwrap();
    assert_eq!(d.awareness_state(77), Some(r#"{"user":"a"}"#));
    // Malformed JSON: refused, table unchanged.
    let mut bad = upd.clone();
    let n = bad.len();
    bad[n - 1] = b'{';
    send(&mut room, &b, &protocol::awareness(&bad));
    assert_eq!(b.sent_close.get(), close::INVALID_PAYLOAD);
    let c = conn("c", 3);
    join(&mut room, &c, &opts);
    let qc = c.outbox.queued_bytes();
    leave(&mut room, &a);
    assert!(
        c.outbox.queued_bytes() > qc,
        "the removal reaches the others"
    );
    assert_eq!(shared_doc(&room).unwrap().awareness_state(77), None);
}

#[test]
fn snapshot_written_when_the_last_member_leaves_then_unloaded_and_reloaded() {
    in_runtime(|| {
        let storage = Storage::memory();
        let mut room = Room::new(
            0,
            "yjs".into(),
            "r",
            storage.clone(),
            crate::room::host::Detached::host(),
        );
        let opts = Options {
            persist: Persistence::snapshot(),
            ..Options::default()
        };
        let a = conn("a", 1);
        join(&mut room, &a, &opts);
        send(&mut room, &a, &protocol::update(&edit("kept")));
        assert!(
            storage
                .list("yjs", "r", &ListOptions::default())
                .unwrap()
                .is_empty(),
            "nothing written before the snapshot is due"
        );
        leave(&mut room, &a);
        assert!(shared_doc(&room).is_none(), "unloaded");
        assert_eq!(
            storage
                .list("yjs", "r", &ListOptions::default())
                .unwrap()
                .len(),
            1
        );
        let b = conn("b", 2);
        join(&mut room, &b, &opts);
        assert_eq!(text(&room), "kept");
    });
}

#[test]
fn history_appends_and_compacts_past_its_bound() {
    in_runtime(|| {
        let storage = Storage::memory();
        let mut room = Room::new(
            0,
            "yjs".into(),
            "r",
            storage.clone(),
            crate::room::host::Detached::host(),
        );
        let opts = Options {
            persist: Persistence::History {
                max_updates: 3,
                max_bytes: usize::MAX,
            },
            ..Options::default()
        };
        let a = conn("a", 1);
        join(&mut room, &a, &opts);
        let count = || {
            storage
                .list("yjs", "r", &ListOptions::default())
                .unwrap()
                .len()
        };
        for (i, w) in ["a", "b", "c"].iter().enumerate() {
            send(&mut room, &a, &protocol::update(&edit(w)));
            assert_eq!(count(), i + 1, "appended at once");
        }
        send(&mut room, &a, &protocol::update(&edit("d")));
        assert_eq!(count(), 1, "four entries > 3: compacted into one");
        leave(&mut room, &a);
        let b = conn("b", 2);
        join(&mut room, &b, &opts);
        assert_eq!(text(&room).len(), 4);
    });
}

#[test]
fn load_hook_seeds_only_an_empty_document_and_the_callback_runs_on_leave() {
    in_runtime(|| {
        let storage = Storage::memory();
        let mut room = Room::new(
            0,
            "yjs".into(),
            "r",
            storage.clone(),
            crate::room::host::Detached::host(),
        );
        let loads = Rc::new(Cell::new(0));
        let seen = Rc::new(RefCell::new(Vec::<String>::new()));
        let (l, s) = (loads.clone(), seen.clone());
        let opts = Options {
            persist: Persistence::snapshot(),
            load: Some(Rc::new(move |_room: &Room| {
                l.set(l.get() + 1);
                let doc = Doc::new();
                doc.get_or_insert_map("m")
                    .insert(&mut doc.transact_mut(), "seed", true);
                Some(doc)
            })),
            callback: Some(Callback::new(move |_room: &Room, doc: &Doc| {
                let t = doc.get_or_insert_text("t");
                let text = t.get_string(&doc.transact());
                s.borrow_mut().push(text);
            })),
            ..Options::default()
        };
        let a = conn("a", 1);
        join(&mut room, &a, &opts);
        assert_eq!(loads.get(), 1);
        send(&mut room, &a, &protocol::update(&edit("x")));
        leave(&mut room, &a);
        assert_eq!(
            *seen.borrow(),
            ["x"],
            "the pending callback ran when the last one left"
        );
        let b = conn("b", 2);
        join(&mut room, &b, &opts);
        assert_eq!(loads.get(), 1, "stored content: not seeded again");
        let d = shared_doc(&room).unwrap();
        let m = d.doc().get_or_insert_map("m");
        assert!(m.get(&d.doc().transact(), "seed").is_some());
    });
}

#[test]
fn mutated_updates_never_panic_and_never_change_the_document_when_refused() {
    // Deterministic byte flips, truncations and insertions over real updates: each is either
    // applied (it still decodes) or refused with 1007, and nothing panics.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = {
        let doc = Doc::new();
        let t = doc.get_or_insert_text("t");
        let m = doc.get_or_insert_map("m");
        let mut txn = doc.transact_mut();
        t.push(&mut txn, "hello world");
        t.remove_range(&mut txn, 2, 3);
        m.insert(&mut txn, "k", "v");
        txn.encode_update_v1()
    };
    let mut refused = 0;
    for i in 0..3000u64 {
        let mut bytes = base.clone();
        let pos = (rand() as usize) % bytes.len();
        match i % 3 {
            0 => bytes[pos] = rand() as u8,
            1 => bytes.truncate(pos),
            _ => bytes.insert(pos, rand() as u8),
        }
        let mut room = Room::new(
            0,
            "yjs".into(),
            "r",
            Storage::memory(),
            crate::room::host::Detached::host(),
        );
        let c = conn("c", 1);
        join(&mut room, &c, &Options::default());
        let before = shared_doc(&room)
            .unwrap()
            .doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        send(&mut room, &c, &protocol::update(&bytes));
        if c.sent_close.get() != 0 {
            refused += 1;
            assert_eq!(c.sent_close.get(), close::INVALID_PAYLOAD);
            let after = shared_doc(&room)
                .unwrap()
                .doc()
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            assert_eq!(after, before, "refused update {i} changed the document");
        }
    }
    assert!(
        refused > 100,
        "the mutations do break updates ({refused} refused)"
    );
}
