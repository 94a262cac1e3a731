//! Negotiating permessage-deflate: reading the client's `Sec-WebSocket-Extensions` offers and
//! writing our answer (RFC 7692 §5 and §7.1, on RFC 6455 §9.1's header grammar).
//!
//! Owns: the header parser (syntax only: a header that breaks the grammar is [`Malformed`], and
//! the upgrade is refused with 400), the evaluation of each `permessage-deflate` offer in the
//! order the client listed them, and the response value. Does not own: reading the header out
//! of the request (`ws/upgrade.rs` does that) or the codec (`codec.rs`).
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! Our answer always carries `server_no_context_takeover; client_no_context_takeover` (RFC
//! 7692 §7.1.1.1 and §7.1.1.2 let a server add both to any offer): every message is then
//! compressed and inflated on its own, so no connection keeps a compressor or inflater between
//! messages. An offer is declined (and the next one tried) when it has a parameter we do not
//! know, a parameter twice, or a value out of range (§7: "MUST decline"); if none is left the
//! 101 carries no extension, and the connection works uncompressed.
//!
//! `server_max_window_bits=N` is answered with the same N, and outbound messages to that
//! connection are compressed with a window of 2^N bytes. N = 8 is accepted too, although the
//! codec cannot compress with a 256-byte window (zlib refuses it for raw deflate): such a
//! connection is simply sent every message uncompressed, which RFC 7692 allows per message.
//! `client_max_window_bits` needs no answer: the inflater uses a 32 KiB window, which reads a
//! stream made with any smaller one.

use std::borrow::Cow;

/// The extension's registered name (RFC 7692 §5).
pub const EXTENSION: &str = "permessage-deflate";

/// The window the RFC assumes when the client names none: 2^15 = 32 KiB.
pub const DEFAULT_WINDOW_BITS: u8 = 15;

/// The smallest window `*_max_window_bits` may name (RFC 7692 §7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;

/// An accepted offer: what the connection may do from now on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The client's `server_max_window_bits`, if it sent one.
    pub server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The largest window our messages to this connection may use, as a power of two (8-15).
    pub fn window_bits(self) -> u8 {
        self.server_max_window_bits.unwrap_or(DEFAULT_WINDOW_BITS)
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response(self) -> String {
        let mut s = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={bits}"));
        }
        s
    }
}

/// A `Sec-WebSocket-Extensions` header that does not follow the grammar. The text says where.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Evaluates the values of every `Sec-WebSocket-Extensions` header of an upgrade request (in
/// order; several headers are one comma-separated list, RFC 9110 §5.3).
///
/// # Returns
/// `Ok(Some(agreed))` for the first acceptable `permessage-deflate` offer, `Ok(None)` when there
/// is none (other extensions are ignored: we implement none of them).
///
/// # Errors
/// [`Malformed`] when any value breaks the header grammar, even after an acceptable offer: the
/// whole header is checked, so the answer does not depend on where the garbage is.
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Agreed>, Malformed> {
    let mut agreed = None;
    for value in values {
        for ext in parse_list(value)? {
            if agreed.is_none() && ext.name.eq_ignore_ascii_case(EXTENSION.as_bytes()) {
                agreed = evaluate(&ext.params);
            }
        }
    }
    Ok(agreed)
}

/// One extension parameter: its name and its value (unquoted), if it has one.
type Param<'a> = (&'a [u8], Option<Cow<'a, [u8]>>);

/// One element of the list: a name and its parameters.
struct Extension<'a> {
    name: &'a [u8],
    params: Vec<Param<'a>>,
}

/// Whether an offer can be met, and how. `None`: decline it.
fn evaluate(params: &[Param<'_>]) -> Option<Agreed> {
    let mut seen = [false; 4];
    let mut server_bits = None;
    for (name, value) in params {
        let value = value.as_deref();
        let (i, ok) = match &*name.to_ascii_lowercase() {
            b"server_no_context_takeover" => (0, value.is_none()),
            b"client_no_context_takeover" => (1, value.is_none()),
            b"server_max_window_bits" => {
                server_bits = value.and_then(window_bits);
                (2, server_bits.is_some())
            }
            // With no value the client only says it understands the parameter in an answer.
            b"client_max_window_bits" => (3, value.is_none_or(|v| window_bits(v).is_some())),
            _ => return None,
        };
        if !ok || std::mem::replace(&mut seen[i], true) {
            return None;
        }
    }
    Some(Agreed {
        server_max_window_bits: server_bits,
    })
}

/// A window-bits value: the decimal numbers 8 to 15, written without leading zeros (the ABNF of
/// RFC 7692 §7.1.2.1 is `%x38-39 / "1" %x30-35`).
fn window_bits(v: &[u8]) -> Option<u8> {
    let n: u8 = std::str::from_utf8(v).ok()?.parse().ok()?;
    let canonical = v.first() != Some(&b'0') && !v.starts_with(b"+");
    (canonical && (MIN_WINDOW_BITS..=DEFAULT_WINDOW_BITS).contains(&n)).then_some(n)
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A cursor over one header value.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn ows(&mut self) {
        while matches!(self.s.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn token(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == start {
            return Err(Malformed(what));
        }
        Ok(&self.s[start..self.at])
    }

    /// A quoted-string (RFC 9110 §5.6.4) after its opening quote, unescaped.
    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, Malformed> {
        let start = self.at;
        let mut unescaped: Option<Vec<u8>> = None;
        loop {
            let Some(b) = self.peek() else {
                return Err(Malformed("unterminated quoted string"));
            };
            self.at += 1;
            match b {
                b'"' => {
                    return Ok(match unescaped {
                        Some(v) => Cow::Owned(v),
                        None => Cow::Borrowed(&self.s[start..self.at - 1]),
                    })
                }
                b'\\' => {
                    let v = unescaped.get_or_insert_with(|| self.s[start..self.at - 1].to_vec());
                    match self.peek() {
                        Some(e) if e == b'\t' || e == b' ' || e.is_ascii_graphic() || e >= 0x80 => {
                            v.push(e);
                            self.at += 1;
                        }
                        _ => return Err(Malformed("bad escape in quoted string")),
                    }
                }
                b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF => {
                    if let Some(v) = &mut unescaped {
                        v.push(b);
                    }
                }
                _ => return Err(Malformed("control character in quoted string")),
            }
        }
    }
}

/// Parses one header value into its extensions. Empty list elements (`a, , b`) are skipped, as
/// RFC 9110 §5.6.1 asks of recipients.
fn parse_list(value: &[u8]) -> Result<Vec<Extension<'_>>, Malformed> {
    let mut c = Cursor { s: value, at: 0 };
    let mut out = Vec::new();
    loop {
        c.ows();
        match c.peek() {
            None => return Ok(out),
            Some(b',') => {
                c.at += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = c.token("expected an extension name")?;
        let mut params = Vec::new();
        loop {
            c.ows();
            if !c.eat(b';') {
                break;
            }
            c.ows();
            let pname = c.token("expected a parameter name")?;
            c.ows();
            let value = if c.eat(b'=') {
                c.ows();
                Some(if c.eat(b'"') {
                    c.quoted()?
                } else {
                    Cow::Borrowed(c.token("expected a parameter value")?)
                })
            } else {
                None
            };
            params.push((pname, value));
        }
        out.push(Extension { name, params });
        c.ows();
        match c.peek() {
            None => return Ok(out),
            Some(b',') => c.at += 1,
            Some(_) => return Err(Malformed("expected ',' or ';' after an extension")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Option<Agreed>, Malformed>;

    fn neg(values: &[&str]) -> Outcome {
        negotiate(values.iter().map(|v| v.as_bytes()))
    }

    fn bits(b: Option<u8>) -> Outcome {
        Ok(Some(Agreed {
            server_max_window_bits: b,
        }))
    }

    #[test]
    fn offers_table() {
        let declined = Ok(None);
        let cases: &[(&[&str], Outcome)] = &[
            (&[], declined),
            (&[""], declined),
            (&["permessage-deflate"], bits(None)),
            // What Chrome, Firefox and Node's ws send.
            (&["permessage-deflate; client_max_window_bits"], bits(None)),
            (&["PerMessage-Deflate ;CLIENT_MAX_WINDOW_BITS"], bits(None)),
            (
                &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
                bits(None),
            ),
            (&["permessage-deflate; server_max_window_bits=9"], bits(Some(9))),
            (&["permessage-deflate; server_max_window_bits=\"12\""], bits(Some(12))),
            (&["permessage-deflate; server_max_window_bits=8"], bits(Some(8))),
            (&["permessage-deflate; client_max_window_bits=8"], bits(None)),
            (&["permessage-deflate; client_max_window_bits = 15"], bits(None)),
            // Declined: out of range, leading zero, missing value, value where none belongs,
            // duplicates, unknown parameters.
            (&["permessage-deflate; server_max_window_bits=16"], declined),
            (&["permessage-deflate; server_max_window_bits=7"], declined),
            (&["permessage-deflate; server_max_window_bits=09"], declined),
            (&["permessage-deflate; server_max_window_bits"], declined),
            (&["permessage-deflate; client_max_window_bits=x"], declined),
            (&["permessage-deflate; server_no_context_takeover=1"], declined),
            (
                &["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
                declined,
            ),
            (&["permessage-deflate; x=1"], declined),
            (&["x-webkit-deflate-frame"], declined),
            // Several offers, in order: the first we can meet wins.
            (
                &["permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=10, permessage-deflate"],
                bits(Some(10)),
            ),
            (&["foo, permessage-deflate; x", "permessage-deflate"], bits(None)),
            (&[" , ,permessage-deflate,"], bits(None)),
            // Malformed: refused with 400.
            (&["permessage-deflate;"], Err(Malformed("expected a parameter name"))),
            (&[";x"], Err(Malformed("expected an extension name"))),
            (&["permessage-deflate x"], Err(Malformed("expected ',' or ';' after an extension"))),
            (&["permessage-deflate; a="], Err(Malformed("expected a parameter value"))),
            (&["permessage-deflate; a=\"1"], Err(Malformed("unterminated quoted string"))),
            (&["permessage-deflate; a=\"\x01\""], Err(Malformed("control character in quoted string"))),
            (&["permessage-deflate; a=\"\\"], Err(Malformed("bad escape in quoted string"))),
            (&["permessage-deflate; a=@"], Err(Malformed("expected a parameter value"))),
            // Garbage after an acceptable offer still counts.
            (&["permessage-deflate", "??"], Err(Malformed("expected an extension name"))),
        ];
        for (values, want) in cases {
            assert_eq!(&neg(values), want, "{values:?}");
        }
    }

    #[test]
    fn quoted_values_unescape() {
        let exts = parse_list(br#"e; a="a\"b", f; b=" x ""#).unwrap();
        assert_eq!(exts.len(), 2);
        assert_eq!(exts[0].params[0].1.as_deref(), Some(&b"a\"b"[..]));
        assert_eq!(exts[1].params[0].1.as_deref(), Some(&b" x "[..]));
    }

    #[test]
    fn response_values() {
        let a = Agreed {
            server_max_window_bits: None,
        };
        assert_eq!(
            a.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(a.window_bits(), 15);
        let a = Agreed {
            server_max_window_bits: Some(9),
        };
        assert!(a.response().ends_with("; server_max_window_bits=9"));
        assert_eq!(a.window_bits(), 9);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every short byte string over an alphabet of the grammar's interesting bytes.
        let alphabet = b"p;=\", \\a9\x01";
        let mut v = Vec::new();
        for n in 0..5u32 {
            for i in 0..alphabet.len().pow(n) {
                v.clear();
                let mut k = i;
                for _ in 0..n {
                    v.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let _ = negotiate([&v[..]]);
            }
        }
    }
}
