//! The client side of HTTP/1.1, for a party fetch sent through a load balancer
//! (`Config::fetch_entry`): the request bytes, and the response parsed back.
//!
//! Owns: writing one request (`Connection: close`, the body with `Content-Length`, the caller's
//! headers minus the ones that describe a hop or the framing, each checked with
//! [`field_is_safe`]), and parsing a response from bytes (status line, headers, body framed by
//! `Content-Length`, chunked, or the end of the connection).
//!
//! Does not own: the socket, the connection's timeouts and size cap, or where the request
//! goes (`runtime::fetch`); the party-facing request type and its target (`room`).

use std::fmt;

use super::{parse::field_is_safe, BodyDecoder, HttpError, Method, Response};

/// Headers that describe one hop, not the message (RFC 9110 7.6.1), plus the framing ones:
/// never forwarded in either direction (each hop writes its own).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Header fields of a response read at most (a response with more is refused).
const MAX_RESPONSE_HEADERS: usize = 64;

/// The request for `target` on `host`: `Connection: close`, `body` with its `Content-Length`,
/// then the caller's `headers` except `Host`, `Content-Length`, `Expect` (an interim
/// `100 Continue` would be taken for the answer), the hop-by-hop ones, and any that could break
/// the framing. `Method::Other` is sent as `GET`.
pub fn encode_request(
    method: Method,
    target: &str,
    host: impl fmt::Display,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let method = match method {
        Method::Get | Method::Other => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Patch => "PATCH",
    };
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        let own = ["host", "content-length", "expect"];
        if own
            .iter()
            .chain(HOP_BY_HOP)
            .any(|h| k.eq_ignore_ascii_case(h))
            || !field_is_safe(k, v)
        {
            continue;
        }
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A response that cannot be read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The status line or a header breaks the grammar (or there are too many headers).
    Head(httparse::Error),
    /// A `Content-Length` that is not a decimal number.
    ContentLength,
    /// A chunked body that breaks the chunk grammar.
    Chunked(HttpError),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Head(e) => write!(f, "bad response head: {e}"),
            ResponseError::ContentLength => f.write_str("bad Content-Length"),
            ResponseError::Chunked(e) => write!(f, "bad chunked body: {e}"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Parses a complete response from the start of `buf`.
///
/// `eof`: no more is coming, so a body without a length ends here; `head_only`: the answer to
/// a HEAD, which has no body whatever its headers say.
///
/// # Returns
/// `Ok(None)` while more is needed. The status, the end-to-end headers and the body; not
/// `Connection`, `Keep-Alive`, `Date` or the framing headers (the party's response gets its
/// own when it goes out).
///
/// # Errors
/// [`ResponseError`] for bytes that are not a response.
pub fn parse_response(
    buf: &[u8],
    eof: bool,
    head_only: bool,
) -> Result<Option<Response>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Head(e)),
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
                    .map_err(|_| ResponseError::ContentLength)?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if !HOP_BY_HOP
            .iter()
            .chain(&["date"])
            .any(|hop| h.name.eq_ignore_ascii_case(hop))
        {
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
            .map_err(ResponseError::Chunked)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let headers = [
            ("X-Token".to_owned(), "t".to_owned()),
            ("Host".to_owned(), "evil".to_owned()),
            ("X-Bad".to_owned(), "a\r\nInjected: 1".to_owned()),
            ("Expect".to_owned(), "100-continue".to_owned()),
            ("Transfer-Encoding".to_owned(), "chunked".to_owned()),
            ("content-length".to_owned(), "99".to_owned()),
        ];
        assert_eq!(
            String::from_utf8(encode_request(
                Method::Post,
                "/parties/counter/r1/x?y=1",
                "127.0.0.1:8080",
                &headers,
                b"{}"
            ))
            .unwrap(),
            "POST /parties/counter/r1/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\
             Content-Length: 2\r\nX-Token: t\r\n\r\n{}"
        );
        let get = encode_request(Method::Other, "/", "h", &[], b"");
        assert_eq!(
            get,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn response_framing() {
        let full = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Core: 1\r\n\
                     Connection: close\r\nDate: Sat, 28 Nov 2026 04:00:00 GMT\r\nContent-Length: 2\r\n\r\n[]";
        for cut in 0..full.len() {
            assert_eq!(
                parse_response(&full[..cut], false, false),
                Ok(None),
                "{cut}"
            );
        }
        let r = parse_response(full, false, false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"[]"[..]));
        assert_eq!(
            r.headers,
            [
                ("Content-Type".into(), "application/json".to_owned()),
                ("X-Core".into(), "1".to_owned())
            ]
        );
        // (response bytes, eof, head_only, the body, if complete)
        type Case = (&'static [u8], bool, bool, Option<&'static [u8]>);
        let cases: &[Case] = &[
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                false,
                false,
                Some(b"ok"),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
                false,
                false,
                None,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nabc", false, false, None),
            (b"HTTP/1.1 200 OK\r\n\r\nabc", true, false, Some(b"abc")),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                true,
                Some(b""),
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false, false, Some(b"")),
            (
                b"HTTP/1.1 304 Not Modified\r\n\r\n",
                false,
                false,
                Some(b""),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabcd",
                false,
                false,
                Some(b"ab"),
            ),
        ];
        for &(bytes, eof, head_only, want) in cases {
            let got = parse_response(bytes, eof, head_only).unwrap();
            assert_eq!(
                got.map(|r| r.body).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn response_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"garbage\r\n\r\n", "bad response head"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "bad chunked body",
            ),
        ];
        for &(bytes, want) in cases {
            let e = parse_response(bytes, true, false).unwrap_err();
            assert!(e.to_string().starts_with(want), "{e}");
        }
    }
}
