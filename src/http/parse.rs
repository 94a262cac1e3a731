//! Request head parsing: bytes in, a [`Head`] of offsets out.
//!
//! `httparse` does the tokenising; this file applies our limits and framing rules and records
//! what the rest of the server needs as *offsets into the read buffer* rather than borrows, so a
//! `Head` can outlive the borrow, cross an `.await`, or travel with a handed-off connection.
//!
//! `parse_head` returns `Ok(None)` while the head is incomplete and consumes nothing; the caller
//! reads more and calls again with the longer buffer. To keep a byte-at-a-time sender from costing
//! a full re-parse per byte, the caller only calls again once [`head_end`] finds the blank line.

use std::ops::Range;

use super::HttpError;

/// Header fields parsed per request at most; `Limits::max_headers` may only lower it.
/// 100 is the limit the core issue names; 100 × 32 B of `httparse::Header` sit on the stack.
pub const MAX_HEADERS: usize = 100;

/// The size limits that apply while parsing a head (from `Config`).
#[derive(Copy, Clone, Debug)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_target_bytes: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// How the body of a request is delimited.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (no `Content-Length`, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Ranges index the buffer that was passed to [`parse_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The request target (path and query) as sent.
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Bytes the head occupies, blank line included: the body (if any) starts here.
    pub len: usize,
    pub framing: Framing,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: answer `100 Continue` before waiting for the body.
    pub expect_continue: bool,
    /// `Upgrade` lists `websocket`.
    pub upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    pub ws_key: Option<Range<usize>>,
    pub ws_version: Option<Range<usize>>,
}

/// `bytes` as text: a request target is almost always ASCII, which is checked word by word for
/// a fraction of what a full UTF-8 validation of a short string costs (PERF.md §1t: ~136
/// instructions per call; the target was validated three times per request).
pub fn text(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match ascii(bytes) {
        Some(text) => Ok(text),
        None => std::str::from_utf8(bytes),
    }
}

/// `bytes` as text if every byte is ASCII.
pub fn ascii(bytes: &[u8]) -> Option<&str> {
    if !bytes.is_ascii() {
        return None;
    }
    // SAFETY: every byte is below 0x80 (checked just above), and ASCII bytes are valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// Every header field of a complete request head, in order (fields whose value is not UTF-8
/// are left out). For handlers that ask for headers; the hot path never calls it.
pub fn header_fields(head: &[u8]) -> Vec<(&str, &str)> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    if req.parse(head).is_err() {
        return Vec::new();
    }
    req.headers
        .iter()
        .filter_map(|h| Some((h.name, std::str::from_utf8(h.value).ok()?.trim())))
        .collect()
}

/// The value of the first header `name` (case-insensitive) in a complete head.
pub fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    header_fields(head)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// True if `name: value` is a valid header line (RFC 9110 5.1, 5.5): a non-empty token for the
/// name, and a value of visible characters, spaces, tabs and obs-text (no CR, LF, NUL or other
/// controls), so it can neither change the message's framing nor be refused by a strict parser.
/// Every header line that carries a party's (or a client's) text is checked with this first.
pub fn field_is_safe(name: &str, value: &str) -> bool {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TCHAR.contains(&b))
        && value
            .bytes()
            .all(|b| b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80)
}

/// A complete head (up to and including its blank line) rewritten with the fields in `set`
/// replacing any of the same name (case-insensitive) or added at the end. `None` if the head
/// does not parse or a new name or value could break the framing (CR, LF, or an empty name).
pub fn rewrite_head(head: &[u8], set: &[(String, String)]) -> Option<Vec<u8>> {
    if set.iter().any(|(k, v)| !field_is_safe(k, v)) {
        return None;
    }
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let httparse::Status::Complete(_) = req.parse(head).ok()? else {
        return None;
    };
    // The request line is rebuilt from what httparse parsed, never copied: with a bare-LF line
    // end a copy up to the first CRLF would carry a client's header past the rewrite.
    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(req.method?.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path?.as_bytes());
    out.extend_from_slice(if req.version? == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in req.headers.iter() {
        if set.iter().any(|(k, _)| k.eq_ignore_ascii_case(h.name)) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in set {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// Finds the end of a request head (the blank line) in `buf`, scanning from `from` (the length
/// already scanned by an earlier call, so each byte is looked at about once). Bare-LF line ends
/// count too, so that httparse, not a timeout, answers them.
pub fn head_end(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        let rest = &buf[nl + 1..];
        if rest.first() == Some(&b'\n') || rest.starts_with(b"\r\n") {
            return true;
        }
        // The line might end exactly at the buffer's end: not complete yet.
        if rest.is_empty() || rest == b"\r" {
            return false;
        }
        i = nl + 1;
    }
    false
}

/// Parses one request head from the start of `buf`.
///
/// # Returns
/// `Ok(None)` if the head has not fully arrived (nothing consumed), `Ok(Some(head))` when it
/// has; `head.len` is where the body starts.
///
/// # Errors
/// Any [`HttpError`] the head breaks; the caller answers with its status and closes.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HttpError> {
    // Uninitialised: zeroing 100 headers (3.2 KB) for every request was most of this
    // function's cost on small pipelined GETs; httparse initialises what it fills.
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let max_headers = limits.max_headers.min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut storage[..max_headers]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial_limits(buf, limits).map(|()| None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(e) => return Err(HttpError::Malformed(malformed_reason(e))),
    };
    let target = req.path.expect("complete request has a path");
    if target.len() > limits.max_target_bytes {
        return Err(HttpError::UriTooLong);
    }
    if len > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    let offset = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let minor_version = req.version.expect("complete request has a version");

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut head = Head {
        method: Method::from_token(req.method.expect("complete request has a method")),
        target: offset(target.as_bytes()),
        minor_version,
        len,
        framing: Framing::None,
        keep_alive: false,
        expect_continue: false,
        upgrade_websocket: false,
        connection_upgrade: false,
        ws_key: None,
        ws_version: None,
    };
    let mut host = false;
    for h in req.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(HttpError::DuplicateContentLength);
            }
            content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                // Two fields mean a list of codings ("chunked, chunked" at best).
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            transfer_encoding = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    head.connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case("expect") {
            if !trim(value).eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::UnsupportedExpectation);
            }
            head.expect_continue = true;
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.ws_key = Some(offset(trim(value)));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.ws_version = Some(offset(trim(value)));
        }
    }

    head.framing = match (content_length, transfer_encoding) {
        (Some(_), Some(_)) => return Err(HttpError::LengthAndChunked),
        (_, Some(_)) if minor_version == 0 => return Err(HttpError::TransferEncodingInHttp10),
        (_, Some(te)) if trim(te).eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        (_, Some(_)) => return Err(HttpError::UnsupportedTransferEncoding),
        (Some(0), None) | (None, None) => Framing::None,
        (Some(n), None) => Framing::Length(n),
    };
    if minor_version == 1 && !host {
        return Err(HttpError::MissingHost);
    }
    head.keep_alive = !conn_close && (minor_version == 1 || conn_keep_alive);
    Ok(Some(head))
}

/// Limits that can be judged before the head is complete, so an oversized head is refused as
/// soon as it crosses the line instead of after it ends.
fn partial_limits(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    // "GET " + target + " HTTP/1.1\r\n": allow the longest method we might see plus the version.
    let line_budget = limits.max_target_bytes + 32;
    let line_done = buf.iter().take(line_budget).any(|&b| b == b'\n');
    if !line_done && buf.len() > line_budget {
        return Err(HttpError::UriTooLong);
    }
    if buf.len() > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    Ok(())
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::InvalidContentLength);
    }
    // 19 decimal digits always fit in a u64.
    Ok(digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn malformed_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "Invalid header name",
        httparse::Error::HeaderValue => "Invalid header value",
        httparse::Error::NewLine => "Invalid line ending",
        httparse::Error::Token => "Invalid method or request target",
        httparse::Error::Version => "Invalid HTTP version",
        httparse::Error::Status => "Invalid request line",
        httparse::Error::TooManyHeaders => "Too many header fields",
    }
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// The comma-separated tokens of a list-valued field, trimmed, empty ones skipped.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{field_is_safe, text};

    #[test]
    fn text_takes_ascii_and_utf8_and_refuses_other_bytes() {
        assert_eq!(text(b"/parties/main/r1?_pk=abc").unwrap(), "/parties/main/r1?_pk=abc");
        assert_eq!(text(b"").unwrap(), "");
        assert_eq!(text("/party/caf\u{e9}".as_bytes()).unwrap(), "/party/caf\u{e9}");
        assert!(text(b"/party/\xff").is_err());
        assert!(text(b"/party/\xc3").is_err()); // a sequence cut short
    }

    #[test]
    fn header_fields_must_be_tokens_and_visible_values() {
        assert!(field_is_safe("X-Fine_1", "a b\tc é"));
        for (name, value) in [
            ("", "v"),
            ("X Y", "v"),
            ("X(Y", "v"),
            ("X:Y", "v"),
            ("X", "a\rb"),
            ("X", "a\nb"),
            ("X", "a\0b"),
            ("X", "a\x01b"),
            ("X", "a\x7fb"),
        ] {
            assert!(!field_is_safe(name, value), "{name:?}: {value:?}");
        }
    }

    use super::*;

    #[test]
    fn headers_are_read_and_rewritten() {
        let head =
            b"GET /parties/main/r?x=1 HTTP/1.1\r\nHost: h\r\nX-Token: abc\r\nx-token: dup\r\n\r\n";
        assert_eq!(
            header_fields(head),
            [("Host", "h"), ("X-Token", "abc"), ("x-token", "dup")]
        );
        assert_eq!(header_value(head, "x-TOKEN"), Some("abc"));
        assert_eq!(header_value(head, "missing"), None);
        let set = vec![
            ("X-Token".to_owned(), "new".to_owned()),
            ("X-User".to_owned(), "ann".to_owned()),
        ];
        let out = rewrite_head(head, &set).unwrap();
        assert_eq!(
            out,
            b"GET /parties/main/r?x=1 HTTP/1.1\r\nHost: h\r\nX-Token: new\r\nX-User: ann\r\n\r\n"
        );
        let limits = Limits {
            max_head_bytes: 1 << 14,
            max_headers: 100,
            max_target_bytes: 1 << 13,
        };
        assert_eq!(parse_head(&out, &limits).unwrap().unwrap().len, out.len());
        for bad in [
            ("X-A", "a\r\nX-B: b"),
            ("", "v"),
            ("X A", "v"),
            ("X:A", "v"),
        ] {
            let set = vec![(bad.0.to_owned(), bad.1.to_owned())];
            assert!(rewrite_head(head, &set).is_none(), "{bad:?}");
        }
    }

    const LIMITS: Limits = Limits {
        max_head_bytes: 16 * 1024,
        max_headers: 100,
        max_target_bytes: 8 * 1024,
    };

    fn parse(bytes: &[u8]) -> Result<Option<Head>, HttpError> {
        parse_head(bytes, &LIMITS)
    }

    #[test]
    fn simple_get() {
        let req = b"GET /parties/main/r1?x=1 HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let head = parse(req).unwrap().unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(&req[head.target.clone()], b"/parties/main/r1?x=1");
        assert_eq!(head.len, req.len() - 4);
        assert!(head.keep_alive);
        assert_eq!(head.framing, Framing::None);
    }

    #[test]
    fn partial_is_none() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(parse(b"GE"), Ok(None));
    }

    #[test]
    fn table() {
        use HttpError::*;
        let cases: &[(&str, &[u8], Result<Framing, HttpError>)] = &[
            ("length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", Ok(Framing::Length(5))),
            ("zero length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", Ok(Framing::None)),
            ("chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", Ok(Framing::Chunked)),
            ("cl+te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Err(LengthAndChunked)),
            ("te+cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", Err(LengthAndChunked)),
            ("two cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Err(DuplicateContentLength)),
            ("negative cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Err(InvalidContentLength)),
            ("plus cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", Err(InvalidContentLength)),
            ("overflow cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", Err(InvalidContentLength)),
            ("list cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", Err(InvalidContentLength)),
            ("gzip te", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err(UnsupportedTransferEncoding)),
            ("te in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err(TransferEncodingInHttp10)),
            ("no host", b"GET / HTTP/1.1\r\n\r\n", Err(MissingHost)),
            ("1.0 no host", b"GET / HTTP/1.0\r\n\r\n", Ok(Framing::None)),
            ("expect other", b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", Err(UnsupportedExpectation)),
            ("bad version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(Malformed("Invalid HTTP version"))),
            ("nul in header", b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", Err(Malformed("Invalid header value"))),
            ("space in name", b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", Err(Malformed("Invalid header name"))),
        ];
        for (name, bytes, want) in cases {
            let got = parse(bytes).map(|h| h.expect(name).framing);
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |b: &[u8]| parse(b).unwrap().unwrap().keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn websocket_fields() {
        let req = b"GET /parties/echo/a HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: abc \r\nSec-WebSocket-Version: 13\r\n\r\n";
        let h = parse(req).unwrap().unwrap();
        assert!(h.upgrade_websocket && h.connection_upgrade);
        assert_eq!(&req[h.ws_key.unwrap()], b"abc");
        assert_eq!(&req[h.ws_version.unwrap()], b"13");
    }

    #[test]
    fn limits() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(8 * 1024));
        assert_eq!(parse(long_target.as_bytes()), Err(HttpError::UriTooLong));
        // An unfinished request line is refused as soon as it is over budget.
        let unfinished = format!("GET /{}", "a".repeat(9 * 1024));
        assert_eq!(parse(unfinished.as_bytes()), Err(HttpError::UriTooLong));
        let big_header = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n",
            "a".repeat(17 * 1024)
        );
        assert_eq!(parse(big_header.as_bytes()), Err(HttpError::HeadTooLarge));
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(parse(req.as_bytes()), Err(HttpError::TooManyHeaders));
    }

    #[test]
    fn head_end_finds_blank_line_across_calls() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for split in 0..req.len() {
            assert!(!head_end(&req[..split], 0), "split {split}");
            assert!(head_end(req, split), "resume at {split}");
        }
        assert!(head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn request() -> impl Strategy<Value = Vec<u8>> {
            (
                prop::sample::select(vec!["GET", "POST", "PUT", "HEAD"]),
                "/[a-z0-9%/?=&_.-]{0,40}",
                prop::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,30}"), 0..8),
                any::<bool>(),
            )
                .prop_map(|(method, path, headers, chunked)| {
                    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
                    for (name, value) in headers {
                        let lower = name.to_ascii_lowercase();
                        if ["host", "content-length", "transfer-encoding", "expect"]
                            .contains(&lower.as_str())
                        {
                            continue;
                        }
                        req += &format!("X-{name}: {value}\r\n");
                    }
                    if chunked {
                        req += "Transfer-Encoding: chunked\r\n";
                    }
                    req += "\r\n";
                    req.into_bytes()
                })
        }

        proptest! {
            /// Every proper prefix of a valid head is "incomplete" (never an error, never a
            /// different head), and head_end resumed at any point agrees with a full scan.
            #[test]
            fn prefixes_are_incomplete_and_whole_is_complete(req in request(), resume in 0usize..400) {
                let whole = parse(&req).expect("valid").expect("complete");
                prop_assert_eq!(whole.len, req.len());
                for k in 0..req.len() {
                    prop_assert_eq!(parse(&req[..k]), Ok(None), "prefix {}", k);
                    prop_assert!(!head_end(&req[..k], 0));
                }
                let from = resume % req.len();
                prop_assert!(!head_end(&req[..from], 0));
                prop_assert!(head_end(&req, from));
                // Bytes after the head (a body, a pipelined request) do not change it.
                let mut more = req.clone();
                more.extend_from_slice(b"GET / HTTP/1.1\r\n");
                prop_assert_eq!(parse(&more).unwrap().unwrap(), whole);
            }
        }
    }
}
