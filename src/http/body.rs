//! Request body decoding (sans-IO): `Content-Length` and `chunked`, with the size cap applied
//! as the bytes arrive, never after buffering them.
//!
//! The decoder is fed whatever bytes follow the head, in as many pieces as the socket delivers;
//! it appends the decoded body to a caller-owned `Vec` and reports how many input bytes it
//! consumed, so pipelined bytes after the body stay in the caller's buffer.
//!
//! Chunked grammar (RFC 9112 7.1), with the limits we add:
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF     ; size ≤ 16 hex digits
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF                        ; ext ≤ MAX_EXT bytes
//! trailer-section = *( field-line CRLF )                           ; ≤ MAX_TRAILER bytes
//! ```
//! Trailer fields are read and dropped: no handler here looks at them.

use super::HttpError;

/// Longest chunk extension accepted per chunk; extensions are ignored, so a long one is abuse.
pub const MAX_EXT: usize = 1024;
/// Largest trailer section accepted.
pub const MAX_TRAILER: usize = 8 * 1024;

/// Where a body stands after a `feed`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BodyProgress {
    /// Input bytes consumed by this call.
    pub consumed: usize,
    /// The whole body has been decoded.
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyDecoder {
    /// This many body bytes are still to come.
    Length(u64),
    Chunked(Chunked),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
    /// Size digits seen for the current chunk (at most 16 hex digits fit in a u64).
    digits: u8,
    size: u64,
    /// Bytes of extension or trailer seen so far, against their caps.
    ext_len: usize,
    trailer_len: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

impl BodyDecoder {
    pub fn length(n: u64) -> Self {
        BodyDecoder::Length(n)
    }

    pub fn chunked() -> Self {
        BodyDecoder::Chunked(Chunked {
            state: ChunkState::Size,
            digits: 0,
            size: 0,
            ext_len: 0,
            trailer_len: 0,
        })
    }

    /// Decodes what it can from `input`, appending body bytes to `body`.
    ///
    /// # Errors
    /// `BodyTooLarge` once `body` would pass `max`; `InvalidChunk` on a framing error.
    pub fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max: usize,
    ) -> Result<BodyProgress, HttpError> {
        match self {
            BodyDecoder::Length(remaining) => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if body.len() + take > max {
                    return Err(HttpError::BodyTooLarge);
                }
                body.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                Ok(BodyProgress {
                    consumed: take,
                    done: *remaining == 0,
                })
            }
            BodyDecoder::Chunked(c) => c.feed(input, body, max),
        }
    }
}

impl Chunked {
    fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max: usize,
    ) -> Result<BodyProgress, HttpError> {
        use ChunkState::*;
        let bad = HttpError::InvalidChunk;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let b = input[i];
            match self.state {
                Size => match hex(b) {
                    Some(d) => {
                        self.digits += 1;
                        if self.digits > 16 {
                            return Err(bad("Chunk size too large"));
                        }
                        self.size = self.size << 4 | u64::from(d);
                    }
                    None if self.digits == 0 => return Err(bad("Invalid chunk size")),
                    None if b == b';' || b == b' ' || b == b'\t' => {
                        self.ext_len = 0;
                        self.state = Ext;
                    }
                    None if b == b'\r' => self.state = SizeLf,
                    None => return Err(bad("Invalid chunk size")),
                },
                Ext => {
                    if b == b'\r' {
                        self.state = SizeLf;
                    } else {
                        self.ext_len += 1;
                        if self.ext_len > MAX_EXT || b == b'\n' {
                            return Err(bad("Invalid chunk extension"));
                        }
                    }
                }
                SizeLf => {
                    if b != b'\n' {
                        return Err(bad("Expected LF after chunk size"));
                    }
                    if self.size == 0 {
                        self.state = TrailerStart;
                    } else {
                        // `size` may be near u64::MAX (16 hex digits): compare without adding.
                        if self.size > (max as u64).saturating_sub(body.len() as u64) {
                            return Err(HttpError::BodyTooLarge);
                        }
                        self.state = Data;
                    }
                }
                Data => {
                    let take = self.size.min((input.len() - i) as u64) as usize;
                    body.extend_from_slice(&input[i..i + take]);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => {
                    if b != b'\r' {
                        return Err(bad("Expected CRLF after chunk data"));
                    }
                    self.state = DataLf;
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(bad("Expected CRLF after chunk data"));
                    }
                    self.digits = 0;
                    self.size = 0;
                    self.state = Size;
                }
                TrailerStart => {
                    self.state = if b == b'\r' { FinalLf } else { TrailerLine };
                    self.trailer_len += 1;
                }
                TrailerLine => {
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILER {
                        return Err(bad("Trailer section too large"));
                    }
                    if b == b'\r' {
                        self.state = TrailerLf;
                    }
                }
                TrailerLf => {
                    if b != b'\n' {
                        return Err(bad("Expected CRLF in trailer"));
                    }
                    self.state = TrailerStart;
                }
                FinalLf => {
                    if b != b'\n' {
                        return Err(bad("Expected CRLF after last chunk"));
                    }
                    self.state = Done;
                }
                Done => unreachable!("loop stops at Done"),
            }
            i += 1;
        }
        Ok(BodyProgress {
            consumed: i,
            done: self.state == Done,
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8], max: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let mut d = BodyDecoder::chunked();
        let mut body = Vec::new();
        let p = d.feed(input, &mut body, max)?;
        assert!(p.done, "not done");
        Ok((body, p.consumed))
    }

    #[test]
    fn chunked_cases() {
        let ok: &[(&[u8], &[u8])] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                b"hello world",
            ),
            (b"A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", b"0123456789"),
            (b"0\r\n\r\n", b""),
            (b"000\r\n\r\n", b""),
        ];
        for (input, want) in ok {
            let (body, used) = decode_all(input, 1 << 20).unwrap();
            assert_eq!(&body, want);
            assert_eq!(used, input.len());
        }
        let bad: &[&[u8]] = &[
            b"x\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
        ];
        for input in bad {
            let mut d = BodyDecoder::chunked();
            assert!(
                matches!(
                    d.feed(input, &mut Vec::new(), 1 << 20),
                    Err(HttpError::InvalidChunk(_))
                ),
                "{input:?}"
            );
        }
        let ext = format!("1;{}\r\n", "e".repeat(MAX_EXT + 1));
        let mut d = BodyDecoder::chunked();
        assert!(d.feed(ext.as_bytes(), &mut Vec::new(), 1 << 20).is_err());
        // The declared size alone is enough to refuse.
        let mut d = BodyDecoder::chunked();
        assert_eq!(
            d.feed(b"FFFFFF\r\n", &mut Vec::new(), 1 << 20),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn stops_at_end_of_body() {
        let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (body, used) = decode_all(input, 100).unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(&input[used..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn length_cap() {
        let mut d = BodyDecoder::length(10);
        let mut body = Vec::new();
        assert_eq!(
            d.feed(b"12345", &mut body, 100).unwrap(),
            BodyProgress {
                consumed: 5,
                done: false
            }
        );
        assert_eq!(
            d.feed(b"67890abc", &mut body, 100).unwrap(),
            BodyProgress {
                consumed: 5,
                done: true
            }
        );
        assert_eq!(body, b"1234567890");
        assert_eq!(
            BodyDecoder::length(10).feed(b"1234567890", &mut Vec::new(), 5),
            Err(HttpError::BodyTooLarge)
        );
    }

    proptest! {
        /// Any split of a chunked body decodes to the same bytes as the whole.
        #[test]
        fn any_split_same_result(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
                                 cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:x};e=1\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
                want.extend_from_slice(c);
            }
            wire.extend_from_slice(b"0\r\nT: v\r\n\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = BodyDecoder::chunked();
            let mut body = Vec::new();
            let mut start = 0;
            let mut done = false;
            for end in cuts.into_iter().chain([wire.len()]) {
                let p = d.feed(&wire[start..end.max(start)], &mut body, 1 << 20).unwrap();
                prop_assert_eq!(p.consumed, end.max(start) - start);
                start = end.max(start);
                done = p.done;
            }
            prop_assert!(done);
            prop_assert_eq!(body, want);
        }
    }
}
