//! Party-to-party fetch: a request from inside one room to another room's `on_request`, on the
//! other room's owner core (PartyKit's `room.context.parties.<party>.get(id).fetch()`).
//!
//! When the owner is this core, it is a direct call (after the caller's handler has returned:
//! the fetch is a future, polled from a deferred reply or a spawned task, never inside a
//! handler). Otherwise the request travels to the owner's inbox as a [`FetchJob`] (plain `Send`
//! data, like a handoff) and the response comes back on a one-shot flume channel; the owner
//! runs it as a task of its own, so a slow room does not hold up its inbox. The edge hooks
//! (`on_before_request`) are skipped, as in PartyKit.

use std::rc::Rc;

use super::{
    core::{current, spawn_guarded, Core},
    shard,
};
use crate::{
    http::Response,
    party::Reply,
    room::{fetch_request, fetch_target, FetchRequest},
};

/// A fetch in transit to the room's owner core.
#[derive(Debug)]
pub struct FetchJob {
    pub party: Box<str>,
    pub room: Box<str>,
    pub req: FetchRequest,
    /// Where the owner sends the response.
    pub reply: flume::Sender<Response>,
}

/// See [`crate::room::RoomStub::fetch`].
pub async fn fetch(party: Box<str>, room: Box<str>, req: FetchRequest) -> Response {
    let Some(core) = current() else {
        return Response::text(500, "Party fetch used outside a server core");
    };
    if !(req.path.is_empty() || req.path.starts_with('/') || req.path.starts_with('?')) {
        return Response::text(400, "Party fetch path must start with / or ?");
    }
    if room.is_empty() || room.contains(['/', '?', '#']) {
        return Response::text(
            400,
            "Party fetch room id must be one non-empty path segment",
        );
    }
    let Some(idx) = core.party_index(&party) else {
        return Response::text(404, format!("Party {party} not found"));
    };
    let owner = shard::owner(&party, &room, core.cores());
    if owner == core.id {
        return serve(&core, idx, &room, &req).await;
    }
    let (tx, rx) = flume::bounded(1);
    let job = FetchJob {
        party,
        room,
        req,
        reply: tx,
    };
    if core.inboxes.send_fetch(owner, job).is_err() {
        tracing::warn!(
            core = core.id,
            owner,
            "party fetch refused (inbox full or closed)"
        );
        return Response::text(503, "Service unavailable: try again");
    }
    match rx.recv_async().await {
        Ok(resp) => resp,
        Err(_) => Response::text(502, "The room's core dropped the request"),
    }
}

/// Runs a fetch on this core (the owner) and answers it.
pub fn serve_job(core: Rc<Core>, job: FetchJob) {
    spawn_guarded(core.id, async move {
        let resp = match core.party_index(&job.party) {
            Some(idx) => serve(&core, idx, &job.room, &job.req).await,
            None => Response::text(404, format!("Party {} not found", job.party)),
        };
        let _ = job.reply.send(resp);
    });
}

async fn serve(core: &Rc<Core>, idx: usize, room: &str, req: &FetchRequest) -> Response {
    let target = fetch_target(core.parties.name(idx), room, &req.path);
    let reply = core.try_with_room(idx, room, |r| {
        core.parties.request(idx, r, &fetch_request(req, &target))
    });
    match reply {
        Some(Reply::Now(resp)) => resp,
        Some(Reply::Later(fut)) => fut.await,
        None => {
            tracing::error!(core = core.id, "party fetch polled inside a room handler: await it from a deferred reply or a task");
            Response::text(500, "Party fetch polled inside a room handler")
        }
    }
}
