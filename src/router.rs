//! Request target → route. A pure function, table-tested.
//!
//! PartyKit's URL scheme (docs/partykit-protocol.md):
//! - `/parties/:party/:room[/*rest]` → that party's room;
//! - `/party/:room[/*rest]` → party `main` (the legacy form partysocket ≤ 1.0.0 used);
//! - anything else (including an empty party or room) → not a room.
//!
//! The room id is the raw path segment, *not* percent-decoded (`/parties/main/r%20x` is room
//! `r%20x`), because that is what PartyKit does and clients rely on ids round-tripping. The
//! query string is never part of the id; a trailing bare `?` (PartySocket.fetch always adds one)
//! is just an empty query.

/// Where a request target leads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// A room of a party. `party` may be unknown: the caller answers 404 for it.
    Room {
        party: &'a str,
        room: &'a str,
        /// The rest of the path after the room (`/extra/path`), empty if none.
        rest: &'a str,
        /// The query string without its `?`, empty if none.
        query: &'a str,
    },
    NotFound,
}

/// Splits a request target into a route.
pub fn route(target: &str) -> Route<'_> {
    let (path, query) = match find_byte(target, b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, ""),
    };
    let (party, tail) = if let Some(t) = path.strip_prefix("/parties/") {
        match find_byte(t, b'/') {
            Some(i) => (&t[..i], &t[i + 1..]),
            None => return Route::NotFound,
        }
    } else if let Some(t) = path.strip_prefix("/party/") {
        ("main", t)
    } else {
        return Route::NotFound;
    };
    let (room, rest) = match find_byte(tail, b'/') {
        Some(i) => (&tail[..i], &tail[i..]),
        None => (tail, ""),
    };
    if party.is_empty() || room.is_empty() {
        return Route::NotFound;
    }
    Route::Room {
        party,
        room,
        rest,
        query,
    }
}

/// The index of the first `byte` (ASCII) in `s`: a plain byte loop, which for the short
/// strings of a request target is cheaper than `str::find(char)`'s searcher (a profile of
/// keep-alive GET put that at ~1% of the server's CPU). An ASCII byte is always a char boundary.
pub fn find_byte(s: &str, byte: u8) -> Option<usize> {
    debug_assert!(byte.is_ascii());
    s.bytes().position(|b| b == byte)
}

/// The value of query parameter `name`, form-decoded (`+` is a space, `%xx` decoded), as
/// partysocket form-encodes `_pk`. The first occurrence wins.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room<'a>(party: &'a str, room: &'a str, rest: &'a str, query: &'a str) -> Route<'a> {
        Route::Room {
            party,
            room,
            rest,
            query,
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, Route)] = &[
            ("/parties/main/r1", room("main", "r1", "", "")),
            ("/party/r1", room("main", "r1", "", "")),
            (
                "/parties/chat/r1/extra/path",
                room("chat", "r1", "/extra/path", ""),
            ),
            ("/party/r1/x", room("main", "r1", "/x", "")),
            ("/parties/main/r1?", room("main", "r1", "", "")),
            (
                "/parties/main/r1?_pk=a&b=2",
                room("main", "r1", "", "_pk=a&b=2"),
            ),
            ("/parties/main/r%20x", room("main", "r%20x", "", "")),
            ("/parties/main/r1/", room("main", "r1", "/", "")),
            ("/parties/main", Route::NotFound),
            ("/parties/main/", Route::NotFound),
            ("/parties//r1", Route::NotFound),
            ("/party/", Route::NotFound),
            ("/party", Route::NotFound),
            ("/", Route::NotFound),
            ("/partiesx/main/r1", Route::NotFound),
            ("*", Route::NotFound),
            ("http://example.com/parties/main/r1", Route::NotFound),
        ];
        for (target, want) in cases {
            assert_eq!(route(target), *want, "{target}");
        }
    }

    #[test]
    fn query_params_are_form_decoded() {
        assert_eq!(
            query_param("_pk=a+b%21&x=1", "_pk").as_deref(),
            Some("a b!")
        );
        assert_eq!(
            query_param("x=1&_pk=first&_pk=second", "_pk").as_deref(),
            Some("first")
        );
        assert_eq!(query_param("x=1", "_pk"), None);
        assert_eq!(query_param("", "_pk"), None);
    }
}
