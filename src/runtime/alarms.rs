//! Room alarms: one per room, stored in the room's storage (so they survive a restart), fired
//! on the room's owner core by one timer task per core.
//!
//! The task keeps a min-heap of `(at_ms, party, room)`. `Room::set_alarm` stores the alarm and
//! pushes an entry only if it is earlier than the room's entry already queued (`armed`), so a
//! room that re-arms on every message does not grow the heap. Entries are never removed in
//! place, so one may be stale (the alarm was moved or deleted): when it comes up, the task
//! checks it against storage, which is the truth, and queues the stored time if it is later. Firing clears the stored alarm first, then runs `on_alarm` (loading the room, and
//! running `on_start`, if it is not in memory), so `on_alarm` may set the next one.
//!
//! At startup the heap is filled from every alarm in the core's storage; alarms whose time has
//! passed while the server was down fire at once.

use std::{
    cell::{Cell, RefCell},
    cmp::Reverse,
    collections::BinaryHeap,
    future::poll_fn,
    rc::Rc,
    task::{Poll, Waker},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::core::Core;

/// A queued alarm: when (ms since the epoch), party index, room id.
type Entry = (u64, usize, Rc<str>);

/// One core's pending alarms.
#[derive(Default)]
pub struct Alarms {
    heap: RefCell<BinaryHeap<Reverse<Entry>>>,
    /// The earliest entry queued per room: a later time is not pushed (the earlier entry
    /// re-checks storage when it comes up).
    armed: RefCell<std::collections::HashMap<(usize, Rc<str>), u64>>,
    /// Bumped by every `push`; the task sleeps until the earliest alarm or a change.
    generation: Cell<u64>,
    waker: Cell<Option<Waker>>,
}

impl Alarms {
    pub(crate) fn push(&self, at_ms: u64, party: usize, room: Rc<str>) {
        {
            let mut armed = self.armed.borrow_mut();
            let key = (party, room.clone());
            if armed.get(&key).is_some_and(|&t| t <= at_ms) {
                return;
            }
            armed.insert(key, at_ms);
        }
        self.heap.borrow_mut().push(Reverse((at_ms, party, room)));
        self.generation.set(self.generation.get() + 1);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Alarms queued (stale entries included).
    pub fn len(&self) -> usize {
        self.heap.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The core's alarm task: loads the stored alarms, then fires each when due.
pub async fn run(core: Rc<Core>) {
    for (party, room, at) in core.storage.alarms() {
        match core.party_index(&party) {
            Some(idx) => core.alarms.push(at, idx, room.into()),
            None => {
                tracing::warn!(
                    core = core.id,
                    party,
                    room,
                    "stored alarm for a party this server does not serve: ignored"
                )
            }
        }
    }
    loop {
        let next = core.alarms.heap.borrow().peek().map(|Reverse(e)| e.clone());
        let Some((at, party, room)) = next else {
            changed(&core.alarms).await;
            continue;
        };
        let now = now_ms();
        if at > now {
            let wait = Duration::from_millis(at - now);
            monoio::select! {
                _ = monoio::time::sleep(wait) => {},
                _ = changed(&core.alarms) => {},
            }
            continue;
        }
        core.alarms.heap.borrow_mut().pop();
        {
            let mut armed = core.alarms.armed.borrow_mut();
            let key = (party, room.clone());
            if armed.get(&key) == Some(&at) {
                armed.remove(&key);
            }
        }
        fire(&core, party, &room, at);
    }
}

/// Resolves at the next change to the heap.
async fn changed(alarms: &Alarms) {
    let seen = alarms.generation.get();
    poll_fn(|cx| {
        if alarms.generation.get() != seen {
            Poll::Ready(())
        } else {
            alarms.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    })
    .await;
}

fn fire(core: &Rc<Core>, party: usize, room: &str, at: u64) {
    let name = core.parties.name(party).clone();
    match core.storage.alarm(&name, room) {
        Some(stored) if stored == at => {}
        // Moved later since this entry was pushed (and not queued then): queue it now.
        Some(stored) if stored > at => {
            core.alarms.push(stored, party, room.into());
            return;
        }
        // Deleted, or moved earlier (that entry is queued already).
        _ => return,
    }
    // Cleared before `on_alarm`, so the handler can set the next one.
    drop(core.storage.set_alarm(&name, room, None));
    core.with_room(party, room, |r| core.parties.alarm(party, r));
}
