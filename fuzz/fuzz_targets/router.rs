//! Arbitrary UTF-8 → `router::route` and `router::query_param`.
//!
//! Input: the bytes (lossily made UTF-8) are the target; the first `\0`, if any, separates a
//! query parameter name in front of it.
//!
//! Checks: nothing panics; a `Route::Room` has a non-empty party and room without `/` or `?`;
//! room, rest and query are slices of the target; party is one too, except `main` for the
//! legacy `/party/:room` form; the target is exactly prefix + party + `/` + room + rest, then
//! `?` and query if the target has a `?`; a room-shaped path is never `NotFound`.
//! `query_param` returns the first value under a name, form-decoded: a query built by
//! `form_urlencoded`'s serializer round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use partyring::router::{query_param, route, Route};

/// `part` lies inside `whole` (as a subslice, not just equal text somewhere).
fn is_slice_of(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (name, target) = match text.split_once('\0') {
        Some((n, t)) => (n, t),
        None => ("_pk", &*text),
    };

    match route(target) {
        Route::Room {
            party,
            room,
            rest,
            query,
        } => {
            assert!(!party.is_empty() && !room.is_empty(), "{target:?}");
            for (what, s) in [("party", party), ("room", room)] {
                assert!(
                    !s.contains('/') && !s.contains('?'),
                    "{what} {s:?} of {target:?}"
                );
            }
            assert!(is_slice_of(room, target), "room not in {target:?}");
            assert!(is_slice_of(rest, target) || rest.is_empty());
            assert!(is_slice_of(query, target) || query.is_empty());
            assert!(rest.is_empty() || rest.starts_with('/'), "rest {rest:?}");
            assert!(!rest.contains('?'));
            let prefix = if is_slice_of(party, target) {
                format!("/parties/{party}/")
            } else {
                assert_eq!(party, "main", "party not in {target:?}");
                "/party/".to_owned()
            };
            let mut rebuilt = format!("{prefix}{room}{rest}");
            if target.contains('?') {
                rebuilt.push('?');
                rebuilt.push_str(query);
            }
            assert_eq!(rebuilt, target);
        }
        Route::NotFound => {
            let path = target.split('?').next().unwrap_or("");
            let room_like = |tail: &str| !tail.split('/').next().unwrap_or("").is_empty();
            if let Some(t) = path.strip_prefix("/parties/") {
                let mut it = t.splitn(2, '/');
                let party = it.next().unwrap_or("");
                assert!(
                    party.is_empty() || !it.next().is_some_and(room_like),
                    "room route reported NotFound: {target:?}"
                );
            } else if let Some(t) = path.strip_prefix("/party/") {
                assert!(
                    !room_like(t),
                    "legacy room route reported NotFound: {target:?}"
                );
            }
        }
    }

    // query_param on anything: no panic.
    let _ = query_param(target, name);
    let _ = query_param(target, "_pk");

    // Round trip: serialize (name, value) pairs and read the first one back.
    let value = target;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("x", "1")
        .append_pair(name, value)
        .append_pair(name, "second")
        .finish();
    let got = query_param(&query, name);
    if name == "x" {
        assert_eq!(got.as_deref(), Some("1"));
    } else {
        assert_eq!(got.as_deref(), Some(value), "query {query:?}");
    }
});
