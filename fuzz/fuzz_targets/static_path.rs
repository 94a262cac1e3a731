//! Arbitrary UTF-8 → `http::static_files::map_target` (`--serve`'s request target → file path).
//!
//! Input: the bytes, lossily made UTF-8, are the request target.
//!
//! Checks: nothing panics; a mapped path is relative, made of plain names only (no `..`, `.`,
//! root or prefix component), none starting with `.` or holding NUL, a control byte, `\` or
//! `/`; joined to a root it stays under the root with exactly one more component per name;
//! `dir` is "the path part ends in `/`"; the query never changes the mapping; percent-encoding
//! every byte of every mapped name and mapping that again gives the same path (decoding is
//! exactly one level); every refusal is answered 400 or 404.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use partyring::http::static_files::{map_target, Reject};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let target = &*text;
    let result = map_target(target);
    let path_part = target.split(['?', '#']).next().unwrap_or("");

    // The query and fragment never matter.
    if !target.contains(['?', '#']) {
        assert_eq!(map_target(&format!("{target}?x=/../..")), result);
    }

    match &result {
        Ok(mapped) => {
            assert!(mapped.path.is_relative(), "{target:?}");
            assert_eq!(mapped.dir, path_part.ends_with('/'), "{target:?}");
            let root = Path::new("/srv/root");
            let joined = root.join(&mapped.path);
            assert!(joined.starts_with(root), "{target:?} -> {joined:?}");
            let mut names = 0;
            let mut encoded = String::new();
            for c in mapped.path.components() {
                let Component::Normal(name) = c else {
                    panic!("{target:?}: component {c:?}");
                };
                let name = name.to_str().expect("names are UTF-8");
                assert!(!name.is_empty() && !name.starts_with('.'), "{target:?}");
                assert!(
                    !name
                        .bytes()
                        .any(|b| b < 0x20 || b == 0x7f || b == b'\\' || b == b'/'),
                    "{target:?}: {name:?}"
                );
                encoded.push('/');
                for b in name.bytes() {
                    encoded.push_str(&format!("%{b:02X}"));
                }
                names += 1;
            }
            assert_eq!(
                joined.components().count(),
                root.components().count() + names,
                "{target:?}"
            );
            if mapped.dir {
                encoded.push('/');
            }
            if encoded.is_empty() {
                encoded.push('/');
            }
            assert_eq!(map_target(&encoded).as_ref(), Ok(mapped), "{encoded:?}");
        }
        Err(r) => {
            assert!(matches!(r.status(), 400 | 404), "{r:?}");
            assert_eq!(
                r.status() == 404,
                matches!(r, Reject::NotAPath | Reject::Hidden)
            );
            assert!(!r.reason().is_empty());
        }
    }
});
