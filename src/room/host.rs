//! What a room reaches outside itself: its core's alarm timer, a way back into a room later,
//! and other rooms (party-to-party fetch). One narrow trait, [`RoomHost`], that the runtime
//! implements for its cores; rooms, their handles ([`RoomRef`](super::RoomRef)) and their
//! context ([`Context`](super::Context)) hold it as an `Rc<dyn RoomHost>`.
//!
//! Owns: the contract between the application layer and whatever runs it. Does not own: how
//! a core keeps its rooms, when alarms fire, or how a fetch travels to another core (all in
//! `runtime`). The calls are rare (an alarm set, a deferred reply coming back, a fetch), never
//! per message, so one virtual call each costs nothing that matters and keeps `room` free of
//! any dependency on the runtime.

use std::{future::Future, pin::Pin, rc::Rc};

use super::{FetchRequest, Room};
use crate::http::Response;

/// The runtime's side of a room.
pub trait RoomHost {
    /// The room's alarm was set to `at_ms` (milliseconds since the epoch, stored already):
    /// fire `on_alarm` then, on this core.
    fn arm_alarm(&self, party: usize, room: &str, at_ms: u64);

    /// Runs `f` on a room of this core, loading it (and running `on_start`) if it is not in
    /// memory.
    fn with_room(&self, party: usize, room: &str, f: &mut dyn FnMut(&mut Room)) -> Reach;

    /// Sends `req` to `party`'s room `room` on its owner core and resolves to its answer.
    fn fetch(
        &self,
        party: Box<str>,
        room: Box<str>,
        req: FetchRequest,
    ) -> Pin<Box<dyn Future<Output = Response>>>;
}

/// Whether [`RoomHost::with_room`] ran its closure.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    Done,
    /// The core's rooms are borrowed (called from inside a room handler): try again after an
    /// await.
    Busy,
    /// No core runs here any more (shutdown), or never did (a room outside a server).
    Gone,
}

/// How rooms hold their host.
pub type Host = Rc<dyn RoomHost>;

/// The host of rooms that live outside any server (unit tests): alarms are stored but never
/// fire, nothing can come back to a room later, and fetches fail with 503.
#[cfg(test)]
pub(crate) struct Detached;

#[cfg(test)]
impl Detached {
    pub(crate) fn host() -> Host {
        Rc::new(Detached)
    }
}

#[cfg(test)]
impl RoomHost for Detached {
    fn arm_alarm(&self, _party: usize, _room: &str, _at_ms: u64) {}

    fn with_room(&self, _party: usize, _room: &str, _f: &mut dyn FnMut(&mut Room)) -> Reach {
        Reach::Gone
    }

    fn fetch(
        &self,
        _party: Box<str>,
        _room: Box<str>,
        _req: FetchRequest,
    ) -> Pin<Box<dyn Future<Output = Response>>> {
        Box::pin(async { Response::text(503, "No server core runs this room") })
    }
}
