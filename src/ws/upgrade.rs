//! The server side of the opening handshake (RFC 6455 4.2): is this upgrade request acceptable,
//! and the bytes of the `101 Switching Protocols` that accepts it.
//!
//! Owns: the checks on an upgrade request that the HTTP parser already took apart (method,
//! `Connection: upgrade`, `Sec-WebSocket-Version: 13` else 426, a well-formed key, no body),
//! reading the `Sec-WebSocket-Extensions` values out of the raw head and handing them to
//! `deflate::negotiate`, and writing the 101 (with the accept key and the agreed extension).
//!
//! Does not own: parsing the request head (`http::parse` found the fields given in [`Offer`]),
//! whether the room exists, who owns it, whether the server is shutting down, or turning a
//! [`Refusal`] into a response: those are the HTTP session's (`http::session`). Nothing here
//! depends on `http`, so `http` may call in here without a cycle.

use std::borrow::Cow;

use super::{
    deflate::{self, Agreed},
    handshake::{accept_key, valid_key},
};

/// The fields of an upgrade request the checks look at, as the HTTP parser found them.
#[derive(Copy, Clone, Debug)]
pub struct Offer<'a> {
    /// The method is `GET` (RFC 6455 4.1: "The method of the request MUST be GET").
    pub is_get: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    /// The `Sec-WebSocket-Version` value (trimmed), if present.
    pub version: Option<&'a [u8]>,
    /// The `Sec-WebSocket-Key` value (trimmed), if present.
    pub key: Option<&'a [u8]>,
    /// The request announces a body (`Content-Length` > 0 or chunked).
    pub has_body: bool,
    /// The whole request head, for the `Sec-WebSocket-Extensions` fields.
    pub head: &'a [u8],
}

/// Why an upgrade request is refused. [`Refusal::status`] is the one table to the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a `GET`.
    NotGet,
    /// `Upgrade: websocket` without `Connection: upgrade`.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13: 426, naming the version we speak.
    Version,
    /// `Sec-WebSocket-Key` missing, or not base64 of 16 bytes.
    Key,
    /// The request has a body: the bytes after the head must be WebSocket frames.
    Body,
    /// A `Sec-WebSocket-Extensions` value breaks the header grammar (the text says where).
    Extensions(&'static str),
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Version => 426,
            _ => 400,
        }
    }

    /// The one-line reason sent as the body.
    pub fn reason(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Refusal::NotGet => "WebSocket upgrade must be a GET",
            Refusal::NoConnectionUpgrade => "WebSocket upgrade without Connection: upgrade",
            Refusal::Version => "Unsupported WebSocket version: use 13",
            Refusal::Key => "Missing or invalid Sec-WebSocket-Key",
            Refusal::Body => "WebSocket upgrade with a body",
            Refusal::Extensions(why) => {
                return Cow::Owned(format!("Malformed Sec-WebSocket-Extensions: {why}"))
            }
        })
    }

    /// A header the refusal must carry: a 426 names the version the server speaks (4.4).
    pub fn header(&self) -> Option<(&'static str, &'static str)> {
        matches!(self, Refusal::Version).then_some(("Sec-WebSocket-Version", "13"))
    }
}

/// Checks an upgrade request, in the order the refusals are listed in [`Refusal`].
/// `compression`: the server offers permessage-deflate (else the extensions are not read).
///
/// # Returns
/// The accepted permessage-deflate offer, if any (`Ok(None)`: the connection is uncompressed).
///
/// # Errors
/// The first rule the request breaks.
pub fn check(offer: &Offer<'_>, compression: bool) -> Result<Option<Agreed>, Refusal> {
    if !offer.is_get {
        return Err(Refusal::NotGet);
    }
    if !offer.connection_upgrade {
        return Err(Refusal::NoConnectionUpgrade);
    }
    if offer.version != Some(b"13") {
        return Err(Refusal::Version);
    }
    if !offer.key.is_some_and(valid_key) {
        return Err(Refusal::Key);
    }
    if offer.has_body {
        return Err(Refusal::Body);
    }
    if !compression {
        return Ok(None);
    }
    // Raw values (not `http::parse::header_fields`, which skips non-UTF-8 ones): bytes outside
    // the grammar must be refused, not ignored. The head parsed before, so this parse cannot
    // fail; if it did, no offer is read and the connection is uncompressed.
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let _ = req.parse(offer.head);
    let offers = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| h.value);
    deflate::negotiate(offers).map_err(|deflate::Malformed(why)| Refusal::Extensions(why))
}

/// Header fields read when looking for the extension offers: the HTTP parser's own cap
/// (`http::parse::MAX_HEADERS`), which a parsed head never exceeds.
const MAX_FIELDS: usize = 100;

/// Appends the `101 Switching Protocols` for a client's (valid) `key`, with the agreed
/// permessage-deflate parameters if any.
pub fn write_101(out: &mut Vec<u8>, key: &[u8], deflate: Option<Agreed>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    if let Some(agreed) = deflate {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(agreed.response().as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn offer(head: &'static [u8]) -> Offer<'static> {
        Offer {
            is_get: true,
            connection_upgrade: true,
            version: Some(b"13"),
            key: Some(KEY),
            has_body: false,
            head,
        }
    }

    const PLAIN: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn refusals_table() {
        let base = offer(PLAIN);
        let cases: &[(&str, Offer<'static>, Refusal)] = &[
            (
                "POST",
                Offer {
                    is_get: false,
                    ..base
                },
                Refusal::NotGet,
            ),
            (
                "no Connection: upgrade",
                Offer {
                    connection_upgrade: false,
                    ..base
                },
                Refusal::NoConnectionUpgrade,
            ),
            (
                "no version",
                Offer {
                    version: None,
                    ..base
                },
                Refusal::Version,
            ),
            (
                "version 12",
                Offer {
                    version: Some(b"12"),
                    ..base
                },
                Refusal::Version,
            ),
            ("no key", Offer { key: None, ..base }, Refusal::Key),
            (
                "key of 20 bytes",
                Offer {
                    key: Some(b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                    ..base
                },
                Refusal::Key,
            ),
            (
                "a body",
                Offer {
                    has_body: true,
                    ..base
                },
                Refusal::Body,
            ),
            (
                "POST with a bad version: the method is judged first",
                Offer {
                    is_get: false,
                    version: None,
                    ..base
                },
                Refusal::NotGet,
            ),
            (
                "malformed extensions",
                offer(b"GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Extensions: ;;\r\n\r\n"),
                Refusal::Extensions(""),
            ),
        ];
        for (name, o, want) in cases {
            let got = check(o, true).expect_err(name);
            match (want, &got) {
                (Refusal::Extensions(_), Refusal::Extensions(_)) => {}
                _ => assert_eq!(&got, want, "{name}"),
            }
        }
        assert_eq!(Refusal::Version.status(), 426);
        assert_eq!(
            Refusal::Version.header(),
            Some(("Sec-WebSocket-Version", "13"))
        );
        assert_eq!((Refusal::Key.status(), Refusal::Key.header()), (400, None));
        assert!(Refusal::Extensions("x")
            .reason()
            .starts_with("Malformed Sec-WebSocket-Extensions: x"));
    }

    #[test]
    fn extensions_are_read_only_with_compression_on() {
        let head: &'static [u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\
              Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n";
        let agreed = check(&offer(head), true).unwrap().expect("offer accepted");
        assert_eq!(agreed.window_bits(), 10);
        assert_eq!(check(&offer(head), false), Ok(None));
        let garbage: &'static [u8] =
            b"GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Extensions: \xff\r\n\r\n";
        assert_eq!(check(&offer(garbage), false), Ok(None));
        assert!(check(&offer(garbage), true).is_err());
        assert_eq!(check(&offer(PLAIN), true), Ok(None));
    }

    #[test]
    fn the_101_bytes() {
        let mut out = Vec::new();
        write_101(&mut out, KEY, None);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        out.clear();
        let agreed = Agreed {
            server_max_window_bits: Some(12),
        };
        write_101(&mut out, KEY, Some(agreed));
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(&format!(
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: {}\r\n\r\n",
            agreed.response()
        )));
    }
}
