//! The runtime's side of a room ([`RoomHost`]): a core's alarm timer, its room table for
//! coming back to a room later, and the party-to-party fetch transport.
//!
//! Holds the core weakly: rooms (and the handles and futures that outlive a handler) hold the
//! host, and the core holds the rooms, so a strong pointer would be a cycle. Once the core is
//! gone (its event loop ended), every call reports it.

use std::{
    future::Future,
    pin::Pin,
    rc::{Rc, Weak},
};

use super::core::Core;
use crate::{
    http::Response,
    room::{FetchRequest, Host, Reach, Room, RoomHost},
};

pub(crate) struct CoreHost(Weak<Core>);

impl CoreHost {
    pub(crate) fn shared(core: Weak<Core>) -> Host {
        Rc::new(CoreHost(core))
    }
}

impl RoomHost for CoreHost {
    fn arm_alarm(&self, party: usize, room: &str, at_ms: u64) {
        if let Some(core) = self.0.upgrade() {
            core.alarms.push(at_ms, party, room.into());
        }
    }

    fn with_room(&self, party: usize, room: &str, f: &mut dyn FnMut(&mut Room)) -> Reach {
        match self.0.upgrade() {
            None => Reach::Gone,
            Some(core) => match core.try_with_room(party, room, f) {
                Some(()) => Reach::Done,
                None => Reach::Busy,
            },
        }
    }

    fn fetch(
        &self,
        party: Box<str>,
        room: Box<str>,
        req: FetchRequest,
    ) -> Pin<Box<dyn Future<Output = Response>>> {
        match self.0.upgrade() {
            Some(core) => Box::pin(super::fetch::fetch(core, party, room, req)),
            None => Box::pin(async {
                Response::text(503, "Server shutting down: party fetch not sent")
            }),
        }
    }
}
