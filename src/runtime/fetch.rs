//! Party-to-party fetch: a request from inside one room to another room's `on_request`, on the
//! other room's owner core (PartyKit's `room.context.parties.<party>.get(id).fetch()`).
//!
//! When the owner is this core, it is a direct call (after the caller's handler has returned:
//! the fetch is a future, polled from a deferred reply or a spawned task, never inside a
//! handler). Otherwise the request travels to the owner's inbox as a [`FetchJob`] (plain `Send`
//! data, like a handoff) and the response comes back on a one-shot flume channel; the owner
//! runs it as a task of its own, so a slow room does not hold up its inbox. The edge hooks
//! (`on_before_request`) are skipped, as in PartyKit.
//!
//! With several nodes behind a load balancer (`Config::fetch_entry`), no node knows which one
//! owns a room, so every fetch is an HTTP/1.1 request to the balancer, which routes it like any
//! client request (by party and room): the target room sees a normal request, and its party's
//! `on_before_request` hook runs (a node cannot tell a fetch from a client there). One
//! connection per fetch, `Connection: close`, bounded in time and size. The bytes of the request
//! and the parsing of the response are `http::client`'s; this file owns the transport.

use std::{
    io,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use super::{
    core::{spawn_guarded, Core},
    http_conn::flush_all,
};
use crate::{
    http::{client, Response},
    net::sock,
    party::Reply,
    party::Request,
    room::FetchRequest,
    shard,
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
pub(crate) async fn fetch(
    core: Rc<Core>,
    party: Box<str>,
    room: Box<str>,
    req: FetchRequest,
) -> Response {
    if !(req.path.is_empty() || req.path.starts_with('/') || req.path.starts_with('?')) {
        return Response::text(400, "Party fetch path must start with / or ?");
    }
    // Spaces, control bytes and non-ASCII would break (or, through the entry, inject into)
    // the request line: such characters must be percent-encoded, as in any URL.
    let url_safe = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if !url_safe(&req.path) || !url_safe(&party) {
        return Response::text(
            400,
            "Party fetch path must be ASCII without spaces or controls: percent-encode it",
        );
    }
    if room.is_empty() || room.contains(['/', '?', '#']) || !url_safe(&room) {
        return Response::text(
            400,
            "Party fetch room id must be one non-empty path segment",
        );
    }
    if req.method == crate::http::Method::Other {
        return Response::text(
            400,
            "Party fetch method must be GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
        );
    }
    if let Some(entry) = core.config.fetch_entry {
        return via_entry(&core, entry, &party, &room, &req).await;
    }
    let Some(idx) = core.party_index(&party) else {
        return Response::text(404, format!("Party {party} not found"));
    };
    let owner = shard::owner(&party, &room, core.cores());
    if owner == core.id {
        return bounded(serve(&core, idx, &room, &req)).await;
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
    bounded(async move {
        match rx.recv_async().await {
            Ok(resp) => resp,
            Err(_) => Response::text(502, "The room's core dropped the request"),
        }
    })
    .await
}

/// A fetch answer within [`FETCH_TIMEOUT`], else 504: a room whose reply never resolves must
/// not hold its caller (or the task serving it) forever.
async fn bounded(fut: impl std::future::Future<Output = Response>) -> Response {
    match monoio::time::timeout(FETCH_TIMEOUT, fut).await {
        Ok(resp) => resp,
        Err(_) => Response::text(504, "Party fetch timed out: the room did not answer"),
    }
}

/// Runs a fetch on this core (the owner) and answers it.
pub fn serve_job(core: Rc<Core>, job: FetchJob) {
    spawn_guarded(core.id, async move {
        let resp = match core.party_index(&job.party) {
            Some(idx) => bounded(serve(&core, idx, &job.room, &job.req)).await,
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

/// How long any party fetch may take (through the entry: connect to last byte).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const ENTRY_TIMEOUT: Duration = FETCH_TIMEOUT;

/// A party fetch as an HTTP request to the load balancer at `entry`.
async fn via_entry(
    core: &Rc<Core>,
    entry: SocketAddr,
    party: &str,
    room: &str,
    req: &FetchRequest,
) -> Response {
    match monoio::time::timeout(ENTRY_TIMEOUT, entry_request(core, entry, party, room, req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::warn!(core = core.id, %entry, error = %e, "party fetch through the entry failed");
            Response::text(502, format!("Party fetch through {entry} failed: {e}"))
        }
        Err(_) => {
            tracing::warn!(core = core.id, %entry, "party fetch through the entry timed out");
            Response::text(504, format!("Party fetch through {entry} timed out"))
        }
    }
}

async fn entry_request(
    core: &Rc<Core>,
    entry: SocketAddr,
    party: &str,
    room: &str,
    req: &FetchRequest,
) -> io::Result<Response> {
    let stream = monoio::net::TcpStream::connect(entry).await?;
    let fd = sock::fd_of(&stream);
    let target = fetch_target(party, room, &req.path);
    let request = client::encode_request(req.method, &target, entry, &req.headers, &req.body);
    let head_only = req.method == crate::http::Method::Head;
    flush_all(&stream, &request, ENTRY_TIMEOUT, &core.metrics).await?;
    // Read to EOF (we asked for Connection: close), at most a body limit plus a head.
    let cap = core.config.max_body_bytes + core.config.max_head_bytes;
    let deadline = Instant::now() + ENTRY_TIMEOUT;
    let mut buf = Vec::new();
    loop {
        match sock::recv_into_vec(fd, &mut buf, 16 * 1024) {
            Ok(0) => break,
            Ok(_) if buf.len() > cap => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response too large",
                ))
            }
            Ok(_) => {
                if let Some(resp) = parse_entry_response(&buf, false, head_only)? {
                    return Ok(resp);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, stream.readable(false)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    parse_entry_response(&buf, true, head_only)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        )
    })
}

/// Builds the request a fetched room sees.
fn fetch_target(party: &str, room: &str, path: &str) -> String {
    format!("/parties/{party}/{room}{path}")
}

/// A [`FetchRequest`] as an `on_request` argument.
fn fetch_request<'a>(req: &'a FetchRequest, target: &'a str) -> Request<'a> {
    Request::new(req.method, target, &req.headers, &req.body)
}

/// [`client::parse_response`], its errors as `InvalidData`.
fn parse_entry_response(buf: &[u8], eof: bool, head_only: bool) -> io::Result<Option<Response>> {
    client::parse_response(buf, eof, head_only)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
