//! Static assets (`--serve DIR`), the pure half: which file a request target names, and the
//! headers and conditional-request rules of the answer. No file system access here; the IO half
//! (open, check, stream) is `runtime::assets`.
//!
//! # Mapping a target to a path under the root
//!
//! [`map_target`] takes the request target as sent and gives a *relative* path of plain names
//! (each one a `std::path::Component::Normal`), or a [`Reject`]. It never resolves anything
//! against the file system; joining the result to the root can only go down. The rules, in order:
//!
//! - only origin-form targets (`/...`) name files: `*` and absolute-form (`http://h/x`) do not
//!   (404); the query is dropped;
//! - the path is split on `/` *before* percent-decoding, and each segment is decoded once, so an
//!   encoded `/` (`%2f`) cannot make a new segment: a decoded segment containing `/` is 400;
//! - a bad escape (`%zz`, a `%` near the end) or a decoded segment that is not UTF-8 is 400;
//! - NUL or any other control byte (raw or decoded) is 400;
//! - `\` (raw or `%5c`) is 400: not a separator on Linux, but refused so that no mapping depends
//!   on which separator a file system honours;
//! - `.` and `..` segments, raw or encoded in any mix (`%2e%2e`, `.%2e`), are 400;
//! - an empty segment other than the last (`//etc/passwd`, `/a//b`) is 400: joined to a path it
//!   would start a new absolute one;
//! - a segment starting with `.` (dotfiles and dot-directories such as `.git`, `.env`) is 404,
//!   as PartyKit does not serve them either;
//! - a last empty segment (`/docs/`, and `/` itself) asks for the directory's `index.html`.
//!
//! A double-encoded `%252e%252e` decodes once to the literal name `%2e%2e`: a file of that name
//! (harmless), never a parent directory.
//!
//! Symlinks cannot be judged here: `runtime::assets` resolves the joined path and serves it only if
//! it is still under the (resolved) root.
//!
//! # Conditional requests (RFC 9110 13)
//!
//! Every file answer carries a strong `ETag` made of the file's size and modification time (as
//! nginx does; no content hash, so no read is needed to answer a revalidation) and
//! `Last-Modified`. [`not_modified`] applies RFC 9110 13.2.2's order: `If-None-Match` when
//! present (weak comparison, `*` matches), else `If-Modified-Since` (a valid HTTP date at or after
//! the modification time, to the second).

use std::{
    borrow::Cow,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Why a request target names no file under the root.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Not origin-form (`*`, `http://host/x`): not a path at all.
    NotAPath,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A segment that decodes to bytes that are not UTF-8.
    NotUtf8,
    /// NUL or another control byte, raw or decoded.
    ControlByte,
    /// A `\`, raw or `%5c`.
    Backslash,
    /// A `/` made by decoding (`%2f`) inside a segment.
    EncodedSlash,
    /// A `.` or `..` segment, in any encoding.
    DotSegment,
    /// An empty segment before the last (`//x`, `/a//b`).
    EmptySegment,
    /// A segment starting with `.`: dotfiles are not served.
    Hidden,
}

impl Reject {
    /// The status that answers it: 404 for what is simply not served, 400 for a target that
    /// tries to leave the root or cannot be a file name.
    pub fn status(self) -> u16 {
        match self {
            Reject::NotAPath | Reject::Hidden => 404,
            _ => 400,
        }
    }

    /// A one-line reason for the response body and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::NotAPath | Reject::Hidden => "Not found",
            Reject::BadEscape => "Bad percent-encoding in the path",
            Reject::NotUtf8 => "Path is not UTF-8",
            Reject::ControlByte => "Control character in the path",
            Reject::Backslash => "Backslash in the path",
            Reject::EncodedSlash => "Encoded slash in a path segment",
            Reject::DotSegment => "Dot segment in the path",
            Reject::EmptySegment => "Empty segment in the path",
        }
    }
}

/// A file (or a directory's index) named by a request target, relative to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// Plain names only: joined to the root it stays below the root (before symlinks).
    pub path: PathBuf,
    /// The target ended in `/` (or was `/`): the file is `path/index.html`.
    pub dir: bool,
}

/// The name of a directory's index file, and the SPA fallback.
pub const INDEX: &str = "index.html";
/// Served with status 404 for a path that nothing answered, if the root has one (as PartyKit).
pub const NOT_FOUND_PAGE: &str = "404.html";

/// Maps a request target to a path under the root (see the module note for the rules).
pub fn map_target(target: &str) -> Result<Mapped, Reject> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(path) = path.strip_prefix('/') else {
        return Err(Reject::NotAPath);
    };
    let mut out = PathBuf::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, raw) in segments.iter().enumerate() {
        if raw.is_empty() {
            if i == last {
                break;
            }
            return Err(Reject::EmptySegment);
        }
        let name = decode_segment(raw)?;
        if name == "." || name == ".." {
            return Err(Reject::DotSegment);
        }
        if name.starts_with('.') {
            return Err(Reject::Hidden);
        }
        out.push(name);
    }
    let dir = path.is_empty() || path.ends_with('/');
    Ok(Mapped { path: out, dir })
}

/// Percent-decodes one segment and checks the bytes it decodes to.
fn decode_segment(raw: &str) -> Result<String, Reject> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(Reject::BadEscape)?;
            let hi = hex_digit(hex[0]).ok_or(Reject::BadEscape)?;
            let lo = hex_digit(hex[1]).ok_or(Reject::BadEscape)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            bytes[i - 1]
        };
        match b {
            0..=0x1f | 0x7f => return Err(Reject::ControlByte),
            b'\\' => return Err(Reject::Backslash),
            b'/' => return Err(Reject::EncodedSlash),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| Reject::NotUtf8)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The `Content-Type` for a file, from its extension (`mime_guess`); text types (and
/// JavaScript, JSON, SVG) say UTF-8, anything unknown is `application/octet-stream`.
pub fn content_type(path: &std::path::Path) -> Cow<'static, str> {
    let Some(mime) = mime_guess::from_path(path).first_raw() else {
        return Cow::Borrowed("application/octet-stream");
    };
    let textual = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    if textual {
        Cow::Owned(format!("{mime}; charset=utf-8"))
    } else {
        Cow::Borrowed(mime)
    }
}

/// The `Cache-Control` value for `--serve-browser-ttl`: `no-cache` (revalidate each time, which
/// the ETag makes cheap) for zero, else `public, max-age=<seconds>`.
pub fn cache_control(browser_ttl: Duration) -> String {
    match browser_ttl.as_secs() {
        0 => "no-cache".to_owned(),
        s => format!("public, max-age={s}"),
    }
}

/// A strong validator from the file's size and modification time (nanoseconds since the epoch),
/// both in hex: a change of either changes it.
pub fn etag(len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

/// `Last-Modified`: the modification time as an IMF-fixdate (whole seconds).
pub fn last_modified(modified: SystemTime) -> String {
    httpdate::fmt_http_date(modified)
}

/// Whether a GET or HEAD with these conditional headers is answered `304 Not Modified`
/// (RFC 9110 13.2.2): `If-None-Match` decides when present; otherwise `If-Modified-Since`, if it
/// is a valid date and the file was not modified after it (compared in whole seconds, the
/// resolution of `Last-Modified`).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    modified: SystemTime,
) -> bool {
    if let Some(list) = if_none_match {
        return list
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || opaque(tag).is_some_and(|t| Some(t) == opaque(etag)));
    }
    let Some(since) = if_modified_since.and_then(|s| httpdate::parse_http_date(s.trim()).ok())
    else {
        return false;
    };
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs(modified) <= secs(since)
}

/// An entity tag without its weakness prefix (weak comparison, RFC 9110 8.8.3.2), if well
/// formed (`"..."` or `W/"..."`).
fn opaque(tag: &str) -> Option<&str> {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    (tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str, dir: bool) -> Result<Mapped, Reject> {
        Ok(Mapped {
            path: PathBuf::from(path),
            dir,
        })
    }

    #[test]
    fn targets_map_to_plain_relative_paths() {
        let cases: &[(&str, Result<Mapped, Reject>)] = &[
            ("/", ok("", true)),
            ("/?x=1", ok("", true)),
            ("/index.html", ok("index.html", false)),
            ("/a/b.js", ok("a/b.js", false)),
            ("/a/b.js?v=3#frag", ok("a/b.js", false)),
            ("/docs/", ok("docs", true)),
            ("/a%20b.txt", ok("a b.txt", false)),
            ("/caf%C3%A9.txt", ok("café.txt", false)),
            ("/%252e%252e/x", ok("%2e%2e/x", false)),
            ("/a..b", ok("a..b", false)),
            ("/x.", ok("x.", false)),
            ("/...x", Err(Reject::Hidden)),
            // Leaving the root, in every encoding.
            ("/..", Err(Reject::DotSegment)),
            ("/../etc/passwd", Err(Reject::DotSegment)),
            ("/a/../../etc/passwd", Err(Reject::DotSegment)),
            ("/%2e%2e/etc/passwd", Err(Reject::DotSegment)),
            ("/%2E%2E/etc/passwd", Err(Reject::DotSegment)),
            ("/.%2e/etc/passwd", Err(Reject::DotSegment)),
            ("/%2e./etc/passwd", Err(Reject::DotSegment)),
            ("/a/./b", Err(Reject::DotSegment)),
            ("/%2e", Err(Reject::DotSegment)),
            ("/..%2fetc%2fpasswd", Err(Reject::EncodedSlash)),
            ("/a%2f..%2f..%2fetc", Err(Reject::EncodedSlash)),
            ("/%2fetc/passwd", Err(Reject::EncodedSlash)),
            ("/..%5c..%5cetc", Err(Reject::Backslash)),
            ("/a\\..\\b", Err(Reject::Backslash)),
            ("/%5c", Err(Reject::Backslash)),
            ("//etc/passwd", Err(Reject::EmptySegment)),
            ("/a//b", Err(Reject::EmptySegment)),
            ("/a.txt%00.html", Err(Reject::ControlByte)),
            ("/a\0b", Err(Reject::ControlByte)),
            ("/a%0d%0aX:1", Err(Reject::ControlByte)),
            ("/a%7f", Err(Reject::ControlByte)),
            ("/%zz", Err(Reject::BadEscape)),
            ("/a%2", Err(Reject::BadEscape)),
            ("/a%", Err(Reject::BadEscape)),
            ("/%ff%fe", Err(Reject::NotUtf8)),
            // Not origin-form.
            ("*", Err(Reject::NotAPath)),
            ("", Err(Reject::NotAPath)),
            ("http://example.com/etc/passwd", Err(Reject::NotAPath)),
            ("etc/passwd", Err(Reject::NotAPath)),
            // Dotfiles and dot-directories.
            ("/.env", Err(Reject::Hidden)),
            ("/.git/config", Err(Reject::Hidden)),
            ("/a/.hidden/x", Err(Reject::Hidden)),
            ("/%2egit/config", Err(Reject::Hidden)),
            ("/.well-known/x", Err(Reject::Hidden)),
        ];
        for (target, want) in cases {
            assert_eq!(&map_target(target), want, "{target:?}");
        }
    }

    #[test]
    fn rejections_map_to_400_or_404() {
        assert_eq!(Reject::DotSegment.status(), 400);
        assert_eq!(Reject::ControlByte.status(), 400);
        assert_eq!(Reject::Backslash.status(), 400);
        assert_eq!(Reject::EncodedSlash.status(), 400);
        assert_eq!(Reject::EmptySegment.status(), 400);
        assert_eq!(Reject::Hidden.status(), 404);
        assert_eq!(Reject::NotAPath.status(), 404);
    }

    #[test]
    fn mapped_paths_never_leave_the_root() {
        use std::path::Component;
        let root = std::path::Path::new("/srv/site");
        for target in ["/a/b", "/x%20y/z.txt", "/", "/d/", "/%252e%252e"] {
            let m = map_target(target).unwrap();
            assert!(m.path.is_relative(), "{target}");
            assert!(m
                .path
                .components()
                .all(|c| matches!(c, Component::Normal(_))));
            assert!(root.join(&m.path).starts_with(root), "{target}");
        }
    }

    #[test]
    fn content_types_come_from_the_extension() {
        let ct = |p: &str| content_type(std::path::Path::new(p)).into_owned();
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a/style.css"), "text/css; charset=utf-8");
        assert!(ct("app.js").contains("javascript"), "{}", ct("app.js"));
        assert!(ct("app.js").ends_with("; charset=utf-8"));
        assert_eq!(ct("logo.png"), "image/png");
        assert_eq!(ct("x.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(ct("data.json"), "application/json; charset=utf-8");
        assert_eq!(ct("font.woff2"), "font/woff2");
        assert_eq!(ct("blob.unknownext"), "application/octet-stream");
        assert_eq!(ct("README"), "application/octet-stream");
    }

    #[test]
    fn cache_control_from_the_ttl() {
        assert_eq!(cache_control(Duration::ZERO), "no-cache");
        assert_eq!(
            cache_control(Duration::from_secs(3600)),
            "public, max-age=3600"
        );
    }

    #[test]
    fn conditional_requests() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let tag = etag(1234, t);
        assert_eq!(tag, format!("\"4d2-{:x}\"", 1_700_000_000_250_000_000u128));
        assert_ne!(etag(1235, t), tag);
        assert_ne!(etag(1234, t + Duration::from_nanos(1)), tag);
        let lm = last_modified(t);
        assert_eq!(lm, "Tue, 14 Nov 2023 22:13:20 GMT");
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            (None, None, false),
            (Some(&tag), None, true),
            (Some(&format!("W/{tag}")), None, true),
            (Some(&format!("\"other\", {tag}")), None, true),
            (Some("*"), None, true),
            (Some("\"other\""), None, false),
            (Some("garbage"), None, false),
            // If-None-Match decides when present, even against a matching date.
            (Some("\"other\""), Some(&lm), false),
            (None, Some(&lm), true),
            (None, Some("Wed, 15 Nov 2023 00:00:00 GMT"), true),
            (None, Some("Tue, 14 Nov 2023 22:13:19 GMT"), false),
            (None, Some("not a date"), false),
        ];
        for (inm, ims, want) in cases {
            assert_eq!(not_modified(*inm, *ims, &tag, t), *want, "{inm:?} {ims:?}");
        }
    }
}
