//! Writing responses: status line and headers straight into the connection's reused output
//! buffer, so a pipelined batch of responses leaves in one `send`.
//!
//! Every response has `Content-Length` and a `Date` (RFC 9110 6.6.1); the `Date` value is
//! formatted once per second per core by [`DateCache`], not once per response.

use std::borrow::Cow;

use std::{
    cell::{Cell, RefCell},
    time::{SystemTime, UNIX_EPOCH},
};

/// A response produced by a party or by the server itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra header lines, each `Name: value` without CRLF. Names are usually literals; a
    /// response that came over HTTP (a party fetch through the entry) carries owned ones.
    /// Framing headers (`Content-Length`, `Transfer-Encoding`, `Connection`, `Keep-Alive`,
    /// `Date`) and any line that is not a valid field (a non-token name, a control byte in the
    /// value) are left out when the response is written.
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: Vec<u8>,
}

/// The content type PartyKit gives a string body (observed on `partykit dev`).
pub const TEXT_PLAIN: &str = "text/plain;charset=UTF-8";
pub const APPLICATION_JSON: &str = "application/json";

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: TEXT_PLAIN,
            headers: Vec::new(),
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: APPLICATION_JSON,
            headers: Vec::new(),
            body,
        }
    }

    #[must_use]
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The reason phrase for the statuses we send.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        409 => "Conflict",
        410 => "Gone",
        418 => "I'm a teapot",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Appends one complete response to `out`.
///
/// `head_only` leaves the body out (a `HEAD` request) but keeps its `Content-Length`;
/// `close` adds `Connection: close`.
pub fn write_response(
    out: &mut Vec<u8>,
    resp: &Response,
    date: &DateCache,
    head_only: bool,
    close: bool,
) {
    write_response_head(out, resp, date, resp.body.len() as u64, close);
    if !head_only && !matches!(resp.status, 204 | 304) {
        out.extend_from_slice(&resp.body);
    }
}

/// Appends a response's status line and headers with `Content-Length: content_length`, not
/// its body: for a body the caller sends itself (a static file streamed from disk).
/// A 204 and a 304 get no `Content-Length` (RFC 9110 8.6: a 304's would have to be the length
/// of the 200 it stands for) and never a body.
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &Response,
    date: &DateCache,
    content_length: u64,
    close: bool,
) {
    write_head(out, resp.status, date);
    // An empty content type means "no body to describe" (a 204), or a type set as a header.
    if !resp.content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(resp.content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &resp.headers {
        if !writable(name, value) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if matches!(resp.status, 204 | 304) {
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        return;
    }
    write_tail(out, content_length, close);
}

/// Header names the server writes itself: a party's copy would frame the message twice.
const SERVER_OWNED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "date",
];

/// False for a header a party must not set: one the server writes itself (see
/// [`SERVER_OWNED`]), or one that is not a valid field line (a name that is not a token, or a
/// control byte such as CR or LF in the value: see `parse::field_is_safe`). The header is left
/// out with a debug log line (a party may do this on every response); the rest goes.
fn writable(name: &str, value: &str) -> bool {
    if !crate::http::parse::field_is_safe(name, value) {
        tracing::debug!(name = ?name, "response header with a bad name or a control byte in its value left out");
        return false;
    }
    if SERVER_OWNED.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        tracing::debug!(
            name,
            "response header set by the party left out: the server writes it"
        );
        return false;
    }
    true
}

/// Appends a status line and `Date`; the caller adds its headers and ends with [`write_tail`].
pub fn write_head(out: &mut Vec<u8>, status: u16, date: &DateCache) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = [0u8; 3];
    digits[0] = b'0' + (status / 100) as u8;
    digits[1] = b'0' + (status / 10 % 10) as u8;
    digits[2] = b'0' + (status % 10) as u8;
    out.extend_from_slice(&digits);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    date.with(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\n");
}

/// Appends `Content-Length`, the optional `Connection: close`, and the blank line.
pub fn write_tail(out: &mut Vec<u8>, content_length: u64, close: bool) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(&itoa_buf(content_length));
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

fn itoa_buf(mut n: u64) -> smallvec::SmallVec<[u8; 20]> {
    let mut digits = smallvec::SmallVec::<[u8; 20]>::new();
    loop {
        digits.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    digits
}

/// The `Date` header value, reformatted at most once per second. One per core (not `Sync`).
pub struct DateCache {
    second: Cell<u64>,
    value: RefCell<[u8; 29]>,
}

impl DateCache {
    pub fn new() -> Self {
        let cache = DateCache {
            second: Cell::new(u64::MAX),
            value: RefCell::new([b' '; 29]),
        };
        cache.refresh();
        cache
    }

    fn refresh(&self) {
        let second = unix_seconds_coarse();
        if second != self.second.get() {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(second));
            // IMF-fixdate is always 29 bytes ("Sun, 06 Nov 1994 08:49:37 GMT").
            if text.len() == 29 {
                self.value.borrow_mut().copy_from_slice(text.as_bytes());
            }
            self.second.set(second);
        }
    }

    /// Runs `f` with the current value (refreshing it if the second has changed).
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        self.refresh();
        f(&self.value.borrow()[..])
    }
}

/// Seconds since the epoch from `CLOCK_REALTIME_COARSE`: the time of the last scheduler tick
/// (one jiffy behind at most: ≤ 10 ms at HZ=100), read without touching the clock source.
/// Every response asks, so this matters: the precise clock was ~1.3% of a keep-alive GET's server CPU (PERF.md §2d), and a
/// `Date` header has one-second resolution anyway.
fn unix_seconds_coarse() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and the clock id
    // is a constant the kernel knows (Linux ≥ 2.6.32); a failure leaves `ts` unread.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        return u64::try_from(ts.tv_sec).unwrap_or(0);
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_the_current_second() {
        let date = DateCache::new();
        let text = date.with(|d| String::from_utf8(d.to_vec()).unwrap());
        let shown = httpdate::parse_http_date(&text).expect("an IMF-fixdate");
        let now = SystemTime::now();
        let off = now.duration_since(shown).unwrap_or_else(|e| e.duration());
        // The coarse clock lags by a tick at most, the header truncates to the second.
        assert!(off < std::time::Duration::from_secs(2), "{text} vs {now:?}");
    }

    #[test]
    fn unsafe_and_framing_headers_are_left_out() {
        let date = DateCache::new();
        let resp = Response::text(200, "OK")
            .header("Content-Length", "5")
            .header("transfer-encoding", "chunked")
            .header("X-A\r\nB", "1")
            .header("X-C", "1\r\n\r\nHTTP/1.1 200 OK")
            .header("X-D", "kept");
        let mut out = Vec::new();
        write_response(&mut out, &resp, &date, false, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\r\nX-D: kept\r\nContent-Length: 2\r\n\r\nOK"),
            "{text}"
        );
        assert_eq!(text.matches("\r\n\r\n").count(), 1, "{text}");
        assert!(!text.to_ascii_lowercase().contains("chunked"), "{text}");
    }

    #[test]
    fn response_bytes() {
        let date = DateCache::new();
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(200, "OK"), &date, false, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(
            text.ends_with(
                "\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 2\r\n\r\nOK"
            ),
            "{text}"
        );
        let mut out = Vec::new();
        let resp = Response::text(405, "Method not allowed").header("Allow", "GET, POST");
        write_response(&mut out, &resp, &date, true, true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Allow: GET, POST\r\nContent-Length: 18\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn date_is_imf_fixdate() {
        let date = DateCache::new();
        date.with(|d| {
            let s = std::str::from_utf8(d).unwrap();
            assert!(s.ends_with(" GMT"), "{s}");
            assert!(httpdate::parse_http_date(s).is_ok());
        });
    }
}
