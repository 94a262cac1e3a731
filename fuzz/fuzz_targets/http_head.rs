//! Raw bytes → `http::parse_head` (tight and default limits) and `http::parse::head_end`.
//!
//! Checks:
//! - `head_end(buf, 0)` is exactly "buf contains `\n\n` or `\n\r\n`";
//! - resuming `head_end` from any point a previous scan reached without finding the end gives
//!   the same answer as a full scan (the caller's `scanned` contract in `http::session`);
//! - a complete head: `len <= buf.len()`, its ranges lie in `buf[..len]`, the limits hold, it
//!   parses the same from `buf[..len]` alone, no shorter prefix parses as complete, and
//!   `head_end` sees its blank line (else the server would wait for a head it already has);
//! - tight limits only ever add errors: whatever parses under them parses the same under the
//!   default limits, and "incomplete" under them is "incomplete" under the defaults.
#![no_main]

use libfuzzer_sys::fuzz_target;
use partyring::http::parse::{head_end, Framing};
use partyring::http::{parse_head, Head, HttpError, Limits};

const DEFAULT: Limits = Limits {
    max_head_bytes: 16 * 1024,
    max_headers: 100,
    max_target_bytes: 8 * 1024,
};

const TIGHT: Limits = Limits {
    max_head_bytes: 96,
    max_headers: 4,
    max_target_bytes: 24,
};

/// The reference for `head_end(buf, 0)`: a bare-LF or CRLF blank line ends the head.
fn has_blank_line(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\n\n") || buf.windows(3).any(|w| w == b"\n\r\n")
}

/// Where a full scan first sees the end: the shortest prefix length `k` for which
/// `has_blank_line(&buf[..k])`, or `None`.
fn first_end(buf: &[u8]) -> Option<usize> {
    (1..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        if buf[i - 1] == b'\n' || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n') {
            Some(i + 1)
        } else {
            None
        }
    })
}

fn check_head(buf: &[u8], head: &Head, limits: &Limits) {
    assert!(
        head.len <= buf.len(),
        "len {} > buf {}",
        head.len,
        buf.len()
    );
    let in_head = |r: &std::ops::Range<usize>, what: &str| {
        assert!(
            r.start <= r.end && r.end <= head.len,
            "{what} {r:?} outside head of {} bytes",
            head.len
        );
    };
    in_head(&head.target, "target");
    if let Some(r) = &head.ws_key {
        in_head(r, "ws_key");
    }
    if let Some(r) = &head.ws_version {
        in_head(r, "ws_version");
    }
    assert!(!head.target.is_empty(), "empty target");
    assert!(head.target.len() <= limits.max_target_bytes);
    assert!(head.len <= limits.max_head_bytes);
    assert!(head.minor_version <= 1);
    assert_ne!(head.framing, Framing::Length(0), "Length(0) must be None");
    // The head ends with its blank line.
    assert_eq!(buf[head.len - 1], b'\n');
    assert!(
        has_blank_line(&buf[..head.len]),
        "complete head without a blank line head_end can see"
    );
}

fn check(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HttpError> {
    let res = parse_head(buf, limits);
    if let Ok(Some(head)) = &res {
        check_head(buf, head, limits);
        // The head does not depend on anything after it...
        assert_eq!(
            parse_head(&buf[..head.len], limits).as_ref(),
            Ok(&Some(head.clone())),
            "head changes when the bytes after it are cut"
        );
        // ...and is not complete before its last byte.
        if let Ok(Some(short)) = parse_head(&buf[..head.len - 1], limits) {
            panic!(
                "prefix of {} bytes already complete: {short:?}",
                head.len - 1
            );
        }
    }
    res
}

fuzz_target!(|buf: &[u8]| {
    // head_end from scratch against the reference.
    let full = head_end(buf, 0);
    assert_eq!(full, has_blank_line(buf), "head_end(buf, 0)");
    let end = first_end(buf);
    assert_eq!(end.is_some(), full);

    // Resume points consistent with an earlier scan: a prefix `buf[..from]` in which no end was
    // found. Every one when short; when long (each call scans to the end, so all of them would
    // be quadratic) a sample, always including the last few before the end.
    let last = end.map_or(buf.len(), |e| e - 1);
    let mut resume = |from: usize| {
        assert_eq!(head_end(buf, from), full, "head_end resumed at {from}");
    };
    if last <= 64 {
        (0..=last).for_each(&mut resume);
    } else {
        (0..16).map(|k| k * last / 16).for_each(&mut resume);
        (last - 4..=last).for_each(&mut resume);
    }

    let tight = check(buf, &TIGHT);
    let default = check(buf, &DEFAULT);
    if full {
        // `http::session` only calls parse_head once head_end says the blank line is there; a head
        // that parses without it would never be answered.
    } else {
        assert!(
            !matches!(default, Ok(Some(_))),
            "parse_head complete but head_end false"
        );
    }
    match &tight {
        Ok(Some(h)) => assert_eq!(
            default.as_ref(),
            Ok(&Some(h.clone())),
            "tight ok, default not"
        ),
        Ok(None) => assert_eq!(default.as_ref(), Ok(&None), "tight incomplete, default not"),
        Err(_) => {}
    }
});
