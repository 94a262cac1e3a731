//! CORS for responses the HTTP session writes: the headers a response gets under the server's
//! policy (`Config::cors`), and the answer to a preflight.
//!
//! Owns: `Access-Control-Allow-Origin` (and `Vary: Origin` for a list of origins) by the
//! policy, replacing whatever a party set; the preflight's 204 (allowed methods, the requested
//! headers, a day's max age) or 403 for an origin not on the list.
//!
//! Does not own: the policy itself (`config::Cors`, set by the operator), or which requests get
//! which answer (`http::session`).

use crate::config::Cors;

use super::{parse::header_value, Response};

/// CORS response headers for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsHeaders {
    allow_origin: String,
    vary: bool,
}

/// The CORS headers for a response to a request whose head is `raw` (`None`: the head did not
/// get far enough to be read), if CORS is on and its origin allowed.
pub fn headers_for(cors: &Cors, raw: Option<&[u8]>) -> Option<CorsHeaders> {
    if !cors.is_on() {
        return None;
    }
    let origin = raw.and_then(|raw| header_value(raw, "origin"));
    cors.allow_origin(origin).map(|o| CorsHeaders {
        allow_origin: o.to_owned(),
        vary: matches!(cors, Cors::Origins(_)),
    })
}

/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`, head `raw`): 204 with the
/// allowed methods and headers, or 403 for an origin not on the list. `None`: not a preflight.
/// [`apply`] adds the origin (and `Vary`) from the returned CORS headers.
pub fn preflight(cors: &Cors, raw: &[u8]) -> Option<(Response, Option<CorsHeaders>)> {
    header_value(raw, "access-control-request-method")?;
    let Some(allowed) = headers_for(cors, Some(raw)) else {
        tracing::info!(origin = ?header_value(raw, "origin"), "CORS preflight from an origin not allowed: 403");
        return Some((Response::text(403, "CORS: origin not allowed"), None));
    };
    let mut resp = Response {
        status: 204,
        content_type: "",
        headers: Vec::new(),
        body: Vec::new(),
    }
    .header(
        "Access-Control-Allow-Methods",
        "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
    )
    .header("Access-Control-Max-Age", "86400");
    if let Some(h) = header_value(raw, "access-control-request-headers") {
        resp = resp.header("Access-Control-Allow-Headers", h);
    }
    Some((resp, Some(allowed)))
}

/// Sets a response's CORS headers by the server's policy.
pub fn apply(cors: &Cors, resp: &mut Response, allowed: Option<CorsHeaders>) {
    if cors.is_on() {
        // The server's policy decides the origin: a party's own value (say, a response
        // fetched from another room and passed on as it came) is replaced, not doubled,
        // and for an origin the policy refuses it is dropped, not passed on.
        resp.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("access-control-allow-origin"));
    }
    if let Some(c) = allowed {
        resp.headers
            .push(("Access-Control-Allow-Origin".into(), c.allow_origin));
        let varies_by_origin = resp.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("vary")
                && v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
        });
        if c.vary && !varies_by_origin {
            resp.headers.push(("Vary".into(), "Origin".to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM_A: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\n\r\n";

    fn headers(r: &Response) -> Vec<(&str, &str)> {
        r.headers
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect()
    }

    #[test]
    fn policy_table() {
        let list = Cors::Origins(vec!["https://a".into()]);
        // (policy, request head, the allowed origin and whether it varies)
        type Case<'a> = (&'a Cors, Option<&'a [u8]>, Option<(&'a str, bool)>);
        let cases: &[Case] = &[
            (&Cors::Off, Some(FROM_A), None),
            (&Cors::Any, Some(FROM_A), Some(("*", false))),
            (&Cors::Any, None, Some(("*", false))),
            (&list, Some(FROM_A), Some(("https://a", true))),
            (
                &list,
                Some(b"GET / HTTP/1.1\r\nOrigin: https://b\r\n\r\n"),
                None,
            ),
            (&list, None, None),
        ];
        for &(cors, raw, want) in cases {
            let got = headers_for(cors, raw);
            let want = want.map(|(o, vary)| CorsHeaders {
                allow_origin: o.into(),
                vary,
            });
            assert_eq!(got, want, "{cors:?}");
        }
    }

    #[test]
    fn apply_replaces_the_partys_origin_and_adds_vary_once() {
        let list = Cors::Origins(vec!["https://a".into()]);
        let mut r = Response::text(200, "x").header("Access-Control-Allow-Origin", "evil");
        apply(&list, &mut r, headers_for(&list, Some(FROM_A)));
        assert_eq!(
            headers(&r),
            [
                ("Access-Control-Allow-Origin", "https://a"),
                ("Vary", "Origin")
            ]
        );
        let mut r = Response::text(200, "x")
            .header("Access-Control-Allow-Origin", "evil")
            .header("Vary", "Accept, origin");
        apply(&list, &mut r, None);
        assert_eq!(headers(&r), [("Vary", "Accept, origin")]);
        let mut r = Response::text(200, "x").header("Access-Control-Allow-Origin", "p");
        apply(&Cors::Off, &mut r, None);
        assert_eq!(headers(&r), [("Access-Control-Allow-Origin", "p")]);
    }

    #[test]
    fn preflights() {
        let list = Cors::Origins(vec!["https://a".into()]);
        assert_eq!(preflight(&list, FROM_A), None, "not a preflight");
        let ok = b"OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\n\
                   Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-a\r\n\r\n";
        let (mut resp, allowed) = preflight(&list, ok).expect("a preflight");
        assert_eq!(resp.status, 204);
        apply(&list, &mut resp, allowed);
        assert_eq!(
            headers(&resp),
            [
                (
                    "Access-Control-Allow-Methods",
                    "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
                ),
                ("Access-Control-Max-Age", "86400"),
                ("Access-Control-Allow-Headers", "x-a"),
                ("Access-Control-Allow-Origin", "https://a"),
                ("Vary", "Origin"),
            ]
        );
        let other = b"OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: https://b\r\n\
                      Access-Control-Request-Method: PUT\r\n\r\n";
        let (resp, allowed) = preflight(&list, other).expect("a preflight");
        assert_eq!((resp.status, allowed), (403, None));
    }
}
