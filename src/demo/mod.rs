//! The demo page: `GET /` serves a small chat page that joins a room of party `main` with the
//! real partysocket client, so a person can see partyring work in a browser with nothing else
//! installed.
//!
//! Design:
//! - Two files, embedded in the binary at compile time (`include_str!`), so the page works
//!   offline and the binary stays one file: `index.html` (page, style and script, no framework)
//!   and `partysocket.js`, partysocket@1.3.0 bundled into one ES module by esbuild (made by
//!   `vendor.sh`; `README.md` beside this file says how, and its MIT license heads the file).
//! - Routes: `/` (any query: the page reads `?room=`) and [`PARTYSOCKET_PATH`]. `GET` and
//!   `HEAD` answer 200; any other method 405 with `Allow: GET, HEAD`; every other target is
//!   `None`, so the caller goes on to its own 404. Nothing here shadows a room route
//!   (`/parties/...`, `/party/...`).
//! - The page is `Cache-Control: no-cache` (always revalidated, so a new binary's page shows at
//!   once). The script is cacheable for a day; the page imports it as
//!   `/_demo/partysocket.js?v=<version>`, so a new partysocket version is a new URL (the server
//!   ignores the query). A test checks that the `?v=` matches the vendored version.
//! - Off the hot path: it is answered on whatever core accepted the connection (there is no room
//!   to shard by), and each response copies the ~25 KiB body into a `Vec` because that is what
//!   [`Response`] holds; fine for a demo page, not for serving assets under load.
//! - The page itself: history with `PartySocket.fetch` (GET) each time the socket opens, live
//!   messages from the socket, and two ways to post: the socket (`send`, which party `main`
//!   broadcasts to the *other* members, so the page shows its own message at once) and
//!   `PartySocket.fetch` POST `{"message": ...}` (broadcast to every member, the page's own
//!   socket included, so the page waits for it). `tests/browser/` drives it in Chromium.

use crate::http::{Method, Response};

/// Where the page loads the vendored partysocket bundle from.
pub const PARTYSOCKET_PATH: &str = "/_demo/partysocket.js";

pub const TEXT_HTML: &str = "text/html; charset=utf-8";
pub const TEXT_JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const INDEX_HTML: &str = include_str!("index.html");
const PARTYSOCKET_JS: &str = include_str!("partysocket.js");

/// The demo's answer to `method` on `target`, or `None` if `target` is not one of its paths.
pub fn response(method: Method, target: &str) -> Option<Response> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let (content_type, body, cache) = match path {
        "/" => (TEXT_HTML, INDEX_HTML, "no-cache"),
        PARTYSOCKET_PATH => (TEXT_JAVASCRIPT, PARTYSOCKET_JS, "public, max-age=86400"),
        _ => return None,
    };
    Some(match method {
        Method::Get | Method::Head => Response {
            status: 200,
            content_type,
            headers: vec![
                ("Cache-Control".into(), cache.to_owned()),
                ("X-Content-Type-Options".into(), "nosniff".to_owned()),
            ],
            body: body.as_bytes().to_vec(),
        },
        _ => Response::text(405, "Method not allowed").header("Allow", "GET, HEAD"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
        resp.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn page_is_served_with_or_without_a_query() {
        for target in ["/", "/?room=lobby", "/?", "/?room=a%20b&x=1"] {
            for method in [Method::Get, Method::Head] {
                let resp = response(method, target).unwrap_or_else(|| panic!("{target}"));
                assert_eq!(resp.status, 200, "{target}");
                assert_eq!(resp.content_type, "text/html; charset=utf-8");
                assert_eq!(header(&resp, "Cache-Control"), Some("no-cache"));
                assert_eq!(header(&resp, "X-Content-Type-Options"), Some("nosniff"));
                assert_eq!(resp.body, INDEX_HTML.as_bytes());
            }
        }
    }

    #[test]
    fn script_is_served() {
        for target in ["/_demo/partysocket.js", "/_demo/partysocket.js?v=1.3.0"] {
            for method in [Method::Get, Method::Head] {
                let resp = response(method, target).unwrap();
                assert_eq!(resp.status, 200);
                assert_eq!(resp.content_type, "text/javascript; charset=utf-8");
                assert_eq!(
                    header(&resp, "Cache-Control"),
                    Some("public, max-age=86400")
                );
                assert_eq!(resp.body, PARTYSOCKET_JS.as_bytes());
            }
        }
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        for target in ["/", "/?room=x", PARTYSOCKET_PATH] {
            for method in [
                Method::Post,
                Method::Put,
                Method::Delete,
                Method::Options,
                Method::Patch,
                Method::Other,
            ] {
                let resp = response(method, target).unwrap();
                assert_eq!(resp.status, 405, "{method:?} {target}");
                assert_eq!(header(&resp, "Allow"), Some("GET, HEAD"));
            }
        }
    }

    #[test]
    fn other_targets_are_not_ours() {
        for target in [
            "",
            "*",
            "/index.html",
            "//",
            "/_demo",
            "/_demo/",
            "/_demo/partysocket.js/",
            "/_demo/other.js",
            "/parties/main/lobby",
            "/party/lobby",
            "http://example.com/",
        ] {
            for method in [Method::Get, Method::Post] {
                assert_eq!(response(method, target), None, "{method:?} {target}");
            }
        }
    }

    #[test]
    fn page_imports_the_vendored_version() {
        // The bundle's banner names its version; the page's import must carry the same `?v=` so
        // that a browser never runs a cached older bundle.
        let version = PARTYSOCKET_JS
            .split_once("partysocket@")
            .and_then(|(_, rest)| rest.split_once(' '))
            .map(|(v, _)| v)
            .expect("banner names partysocket@<version>");
        let import = format!("{PARTYSOCKET_PATH}?v={version}\"");
        assert!(
            INDEX_HTML.contains(&import),
            "index.html must import {import}"
        );
        assert!(PARTYSOCKET_JS.contains("MIT License"));
        assert!(PARTYSOCKET_JS.contains("export {"), "an ES module");
    }
}
