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
//! connection per fetch, `Connection: close`, bounded in time and size.

use std::{
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    rc::Rc,
    time::{Duration, Instant},
};

use super::{
    core::{current, spawn_guarded, Core},
    http_conn::flush_all,
};
use crate::{
    http::{BodyDecoder, Response},
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
pub async fn fetch(party: Box<str>, room: Box<str>, req: FetchRequest) -> Response {
    let Some(core) = current() else {
        return Response::text(500, "Party fetch used outside a server core");
    };
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

/// Writes the request for the entry: `Connection: close`, the body with `Content-Length`.
pub(crate) fn encode_entry_request(
    entry: SocketAddr,
    party: &str,
    room: &str,
    req: &FetchRequest,
) -> Vec<u8> {
    let method = match req.method {
        crate::http::Method::Get => "GET",
        crate::http::Method::Head => "HEAD",
        crate::http::Method::Post => "POST",
        crate::http::Method::Put => "PUT",
        crate::http::Method::Delete => "DELETE",
        crate::http::Method::Options => "OPTIONS",
        crate::http::Method::Patch => "PATCH",
        crate::http::Method::Other => "GET",
    };
    let mut out = format!(
        "{method} {} HTTP/1.1\r\nHost: {entry}\r\nConnection: close\r\nContent-Length: {}\r\n",
        fetch_target(party, room, &req.path),
        req.body.len()
    )
    .into_bytes();
    for (k, v) in &req.headers {
        // `Expect` too: an interim `100 Continue` would be taken for the answer.
        let own = ["host", "content-length", "expect"];
        if own
            .iter()
            .chain(HOP_BY_HOP)
            .any(|h| k.eq_ignore_ascii_case(h))
            || !crate::http::parse::field_is_safe(k, v)
        {
            continue;
        }
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
}

async fn entry_request(
    core: &Rc<Core>,
    entry: SocketAddr,
    party: &str,
    room: &str,
    req: &FetchRequest,
) -> io::Result<Response> {
    let stream = monoio::net::TcpStream::connect(entry).await?;
    let fd = stream.as_raw_fd();
    let request = encode_entry_request(entry, party, room, req);
    let head_only = req.method == crate::http::Method::Head;
    flush_all(&stream, fd, &request, ENTRY_TIMEOUT, &core.metrics).await?;
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

/// Headers that describe one hop, not the message (RFC 9110 7.6.1), plus the framing ones:
/// never forwarded in either direction (each hop writes its own).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Parses a complete response from the entry: `Ok(None)` while more is needed (`eof`: no more
/// is coming, so a body without a length ends here; `head_only`: the answer to a HEAD, which
/// has no body whatever its headers say). The status, the end-to-end headers and the body come
/// back; `Connection`, `Keep-Alive`, `Date` and the framing headers do not.
pub(crate) fn parse_entry_response(
    buf: &[u8],
    eof: bool,
    head_only: bool,
) -> io::Result<Option<Response>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(&format!("bad response head: {e}"))),
    };
    let status = resp.code.unwrap_or(502);
    let mut out = Response {
        status,
        content_type: "",
        headers: Vec::new(),
        body: Vec::new(),
    };
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_owned();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad("bad Content-Length"))?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if !HOP_BY_HOP
            .iter()
            .chain(&["date"])
            .any(|hop| h.name.eq_ignore_ascii_case(hop))
        {
            // End-to-end headers go back to the party as the target sent them; framing and
            // hop-by-hop ones do not (ours are written when the party's response goes out).
            out.headers.push((h.name.to_owned().into(), value));
        }
    }
    let body = &buf[head_len..];
    if head_only || matches!(status, 204 | 304) || (100..200).contains(&status) {
        return Ok(Some(out));
    }
    if chunked {
        let mut decoder = BodyDecoder::chunked();
        let progress = decoder
            .feed(body, &mut out.body, usize::MAX)
            .map_err(|e| bad(&format!("bad chunked body: {e}")))?;
        return Ok(progress.done.then_some(out));
    }
    match length {
        Some(n) if body.len() >= n => {
            out.body = body[..n].to_vec();
            Ok(Some(out))
        }
        Some(_) => Ok(None),
        None if eof => {
            out.body = body.to_vec();
            Ok(Some(out))
        }
        None => Ok(None),
    }
}

/// Builds the request a fetched room sees.
fn fetch_target(party: &str, room: &str, path: &str) -> String {
    format!("/parties/{party}/{room}{path}")
}

/// A [`FetchRequest`] as an `on_request` argument.
fn fetch_request<'a>(req: &'a FetchRequest, target: &'a str) -> Request<'a> {
    Request::new(req.method, target, &req.headers, &req.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_request_and_response_bytes() {
        let req = FetchRequest::post("{}")
            .path("/x?y=1")
            .header("X-Token", "t")
            .header("Host", "evil")
            .header("X-Bad", "a\r\nInjected: 1");
        let entry: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            String::from_utf8(encode_entry_request(entry, "counter", "r1", &req)).unwrap(),
            "POST /parties/counter/r1/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\
             Content-Length: 2\r\nX-Token: t\r\n\r\n{}"
        );
        let full = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Core: 1\r\n\
                     Connection: close\r\nDate: Sat, 28 Nov 2026 04:00:00 GMT\r\nContent-Length: 2\r\n\r\n[]";
        for cut in 0..full.len() {
            assert!(
                parse_entry_response(&full[..cut], false, false)
                    .unwrap()
                    .is_none(),
                "{cut}"
            );
        }
        let r = parse_entry_response(full, false, false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"[]"[..]));
        assert_eq!(
            r.headers,
            [
                ("Content-Type".into(), "application/json".to_owned()),
                ("X-Core".into(), "1".to_owned())
            ]
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(
            parse_entry_response(chunked, false, false)
                .unwrap()
                .unwrap()
                .body,
            b"ok"
        );
        let until_eof = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert!(parse_entry_response(until_eof, false, false)
            .unwrap()
            .is_none());
        assert_eq!(
            parse_entry_response(until_eof, true, false)
                .unwrap()
                .unwrap()
                .body,
            b"abc"
        );
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let r = parse_entry_response(head, false, true).unwrap().unwrap();
        assert!(r.body.is_empty(), "a HEAD answer has no body");
        assert!(parse_entry_response(b"garbage\r\n\r\n", true, false).is_err());
    }
}
