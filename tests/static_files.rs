//! `--serve DIR`: static files over real sockets, with a raw HTTP client (exact statuses and
//! headers, keep-alive and pipelining after file bodies) and with curl; `on_fetch` beside them.
//!
//! Every test builds its own site in a fresh temp directory, next to an `outside/` directory
//! holding a secret that must never be served, whatever the path or symlink.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use common::{get, spawn_binary, temp_dir, Client, HttpResponse};
use partyring::{config::Serve, http::Response, party::Reply, room::FetchRequest, Server};

const SECRET: &str = "TOP-SECRET-outside-the-root";

/// Deterministic bytes that do not repeat on a short period (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `<tmp>/site` (the root) and `<tmp>/outside` (with the secret); `index`: whether the root has
/// an `index.html`.
fn site(tag: &str, index: bool) -> PathBuf {
    let base = temp_dir(tag);
    let root = base.join("site");
    let outside = base.join("outside");
    for d in [
        root.join("sub"),
        root.join(".git"),
        root.join("docs"),
        outside.clone(),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    std::fs::write(outside.join("index.html"), SECRET).unwrap();
    if index {
        std::fs::write(root.join("index.html"), "<h1>the app</h1>").unwrap();
    }
    std::fs::write(root.join("sub/style.css"), "body { color: red }").unwrap();
    std::fs::write(root.join("sub/index.html"), "<h1>sub</h1>").unwrap();
    std::fs::write(root.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(root.join("app.js"), "export const x = 1;").unwrap();
    std::fs::write(root.join("logo.png"), b"\x89PNG\r\n\x1a\nfake").unwrap();
    std::fs::write(root.join("a b.txt"), "space").unwrap();
    std::fs::write(root.join(".env"), SECRET).unwrap();
    std::fs::write(root.join(".git/config"), SECRET).unwrap();
    let link = |to: &Path, name: &str| std::os::unix::fs::symlink(to, root.join(name)).unwrap();
    link(Path::new("../outside/secret.txt"), "leak.txt");
    link(&outside.join("secret.txt"), "abs-leak.txt");
    link(Path::new("../outside"), "outdir");
    link(Path::new("sub/style.css"), "inner.css");
    link(Path::new(".env"), "env-link.txt");
    root
}

fn serve(root: &Path) -> common::TestServer {
    let root = root.to_owned();
    common::start_with(2, move |c| c.serve = Some(Serve::new(root)))
}

fn fetch(addr: SocketAddr, target: &str) -> HttpResponse {
    Client::connect(addr).request(get(target).as_bytes())
}

fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    (
        String::from_utf8_lossy(&text[..split]).into_owned(),
        text[split + 4..].to_vec(),
    )
}

#[test]
fn files_have_type_validators_cache_control_and_head() {
    let root = site("static-basic", true);
    let s = serve(&root);
    let mut c = s.connect();
    let cases = [
        (
            "/sub/style.css",
            "text/css; charset=utf-8",
            "body { color: red }",
        ),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "export const x = 1;",
        ),
        (
            "/index.html",
            "text/html; charset=utf-8",
            "<h1>the app</h1>",
        ),
        ("/", "text/html; charset=utf-8", "<h1>the app</h1>"),
        ("/?room=x", "text/html; charset=utf-8", "<h1>the app</h1>"),
        ("/sub/", "text/html; charset=utf-8", "<h1>sub</h1>"),
        ("/a%20b.txt", "text/plain; charset=utf-8", "space"),
        (
            "/inner.css",
            "text/css; charset=utf-8",
            "body { color: red }",
        ),
    ];
    for (target, ctype, body) in cases {
        // One keep-alive connection for all: each body is exactly Content-Length long.
        let r = c.request(get(target).as_bytes());
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("Content-Type"), Some(ctype), "{target}");
        assert_eq!(r.text(), body, "{target}");
        assert_eq!(r.header("Cache-Control"), Some("no-cache"), "{target}");
        assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
        let etag = r.header("ETag").expect("ETag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let lm = r.header("Last-Modified").expect("Last-Modified");
        assert!(httpdate::parse_http_date(lm).is_ok(), "{lm}");
        // HEAD: the same head, no body (the next response on the connection parses).
        c.send(format!("HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let h = c.response_for(true);
        assert_eq!(h.status, 200);
        assert_eq!(h.header("Content-Length"), Some(&*body.len().to_string()));
        assert_eq!(h.header("ETag"), Some(etag));
    }
    let png = c.request(get("/logo.png").as_bytes());
    assert_eq!(png.header("Content-Type"), Some("image/png"));
    assert_eq!(png.body, b"\x89PNG\r\n\x1a\nfake");
    // A directory named without its slash is redirected, so relative links in it work.
    let r = c.request(get("/docs?x=1").as_bytes());
    assert_eq!((r.status, r.header("Location")), (301, Some("/docs/")));
    // Other methods are not file requests: 404 (no on_fetch here).
    let r = c.request(b"POST /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 404);
}

#[test]
fn conditional_requests_are_answered_304() {
    let root = site("static-304", true);
    let s = serve(&root);
    let mut c = s.connect();
    let first = c.request(get("/sub/style.css").as_bytes());
    let etag = first.header("ETag").unwrap().to_owned();
    let lm = first.header("Last-Modified").unwrap().to_owned();
    let cond = |h: &str| format!("GET /sub/style.css HTTP/1.1\r\nHost: x\r\n{h}\r\n\r\n");
    let cases: Vec<(String, u16)> = vec![
        (format!("If-None-Match: {etag}"), 304),
        (format!("If-None-Match: W/{etag}"), 304),
        (format!("If-None-Match: \"nope\", {etag}"), 304),
        ("If-None-Match: *".to_owned(), 304),
        ("If-None-Match: \"nope\"".to_owned(), 200),
        (format!("If-Modified-Since: {lm}"), 304),
        (
            "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT".to_owned(),
            200,
        ),
        ("If-Modified-Since: garbage".to_owned(), 200),
        // If-None-Match decides when both are present.
        (
            format!("If-None-Match: \"nope\"\r\nIf-Modified-Since: {lm}"),
            200,
        ),
    ];
    for (header, want) in cases {
        let r = c.request(cond(&header).as_bytes());
        assert_eq!(r.status, want, "{header}");
        if want == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("Content-Length"), None, "RFC 9110 8.6");
            assert_eq!(r.header("ETag"), Some(&*etag));
            assert_eq!(r.header("Cache-Control"), Some("no-cache"));
        } else {
            assert_eq!(r.text(), "body { color: red }");
        }
    }
    // A changed file has a new validator: the old one no longer matches.
    std::fs::write(root.join("sub/style.css"), "body { color: blue; }").unwrap();
    let r = c.request(cond(&format!("If-None-Match: {etag}")).as_bytes());
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "body { color: blue; }")
    );
    assert_ne!(r.header("ETag"), Some(&*etag));
}

#[test]
fn browser_ttl_sets_cache_control() {
    let root = site("static-ttl", true);
    let s = common::start_with(1, |c| {
        c.serve = Some(Serve {
            browser_ttl: std::time::Duration::from_secs(600),
            ..Serve::new(&root)
        })
    });
    let r = fetch(s.addr, "/app.js");
    assert_eq!(r.header("Cache-Control"), Some("public, max-age=600"));
}

#[test]
fn nothing_outside_the_root_is_ever_served() {
    let root = site("static-escape", true);
    let s = serve(&root);
    // (raw request target, status). Each on a fresh connection: a 400 closes it.
    let cases: &[(&str, u16)] = &[
        ("/../outside/secret.txt", 400),
        ("/sub/../../outside/secret.txt", 400),
        ("/%2e%2e/outside/secret.txt", 400),
        ("/%2E%2E/outside/secret.txt", 400),
        ("/.%2e/outside/secret.txt", 400),
        ("/%2e./outside/secret.txt", 400),
        ("/..%2foutside%2fsecret.txt", 400),
        ("/sub%2f..%2f..%2foutside%2fsecret.txt", 400),
        ("/%2e%2e%2foutside%2fsecret.txt", 400),
        ("/..%5coutside%5csecret.txt", 400),
        ("/..\\outside\\secret.txt", 400),
        ("/%5c..%5coutside", 400),
        ("//outside/secret.txt", 400),
        ("/%2f%2e%2e/outside/secret.txt", 400),
        ("/sub/./style.css", 400),
        ("/secret.txt%00.css", 400),
        ("/%00", 400),
        ("/%zz", 400),
        ("/%c0%ae%c0%ae/outside/secret.txt", 400),
        // Symlinks leading out of the root, relative, absolute, or through a directory.
        ("/leak.txt", 404),
        ("/abs-leak.txt", 404),
        ("/outdir/secret.txt", 404),
        ("/outdir/", 404),
        // Dotfiles, directly, encoded, or through a symlink.
        ("/.env", 404),
        ("/%2eenv", 404),
        ("/.git/config", 404),
        ("/env-link.txt", 404),
        // Not origin-form: no file.
        ("http://localhost/../outside/secret.txt", 404),
        // A double encoding is one literal name, not a parent.
        ("/%252e%252e/outside/secret.txt", 404),
    ];
    for (target, want) in cases {
        let r = fetch(s.addr, target);
        assert_eq!(r.status, *want, "{target}: {}", r.text());
        assert!(!r.text().contains(SECRET), "{target} leaked");
    }
    // An absolute path in the URL is a path under the root, never the file system's.
    let secret_abs = root.parent().unwrap().join("outside/secret.txt");
    let r = fetch(s.addr, &secret_abs.display().to_string());
    assert_eq!(r.status, 404);
    // curl with the path as given (no client-side normalisation).
    let addr = s.addr;
    for target in ["/../outside/secret.txt", "/%2e%2e/outside/secret.txt"] {
        let url = format!("http://{addr}{target}");
        let (head, body) = curl(&["--path-as-is", &url]);
        assert!(head.starts_with("HTTP/1.1 400"), "{target}: {head}");
        assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    }
}

#[test]
fn root_is_index_html_or_the_demo_page() {
    let with = serve(&site("static-index", true));
    assert_eq!(fetch(with.addr, "/").text(), "<h1>the app</h1>");
    let without = serve(&site("static-noindex", false));
    let r = fetch(without.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("partysocket"), "the demo page");
    let r = fetch(without.addr, "/_demo/partysocket.js");
    assert_eq!(r.status, 200);
    // Files still come from the root.
    assert_eq!(fetch(without.addr, "/app.js").text(), "export const x = 1;");
}

#[test]
fn rooms_metrics_and_parties_paths_are_never_files() {
    let root = site("static-routes", true);
    std::fs::create_dir_all(root.join("parties/main")).unwrap();
    std::fs::write(root.join("parties/main/r1"), SECRET).unwrap();
    std::fs::write(root.join("parties/nope"), SECRET).unwrap();
    std::fs::create_dir_all(root.join("party")).unwrap();
    std::fs::write(root.join("party/r1"), SECRET).unwrap();
    std::fs::write(root.join("metrics"), SECRET).unwrap();
    let s = serve(&root);
    let r = fetch(s.addr, "/parties/main/r1");
    assert_eq!((r.status, r.text().as_str()), (200, "[]"), "the room");
    let r = fetch(s.addr, "/party/r1");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "[]"),
        "the legacy room"
    );
    let r = fetch(s.addr, "/metrics");
    assert!(r.text().contains("partyring_"), "metrics");
    let r = fetch(s.addr, "/parties/nope");
    assert_eq!(r.status, 404);
    assert!(!r.text().contains(SECRET));
}

#[test]
fn spa_serves_index_for_unknown_paths_and_404_html_otherwise() {
    let root = site("static-spa", true);
    std::fs::write(root.join("404.html"), "<h1>missing</h1>").unwrap();
    let spa = common::start_with(2, |c| {
        c.serve = Some(Serve {
            spa: true,
            ..Serve::new(&root)
        })
    });
    for target in ["/some/client/route", "/settings?tab=1", "/missing.js"] {
        let r = fetch(spa.addr, target);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "<h1>the app</h1>"),
            "{target}"
        );
    }
    // Real files, rooms and refusals are unchanged.
    assert_eq!(fetch(spa.addr, "/app.js").text(), "export const x = 1;");
    assert_eq!(fetch(spa.addr, "/parties/main/r").text(), "[]");
    assert_eq!(fetch(spa.addr, "/%2e%2e/outside/secret.txt").status, 400);
    assert_eq!(fetch(spa.addr, "/.env").status, 404);
    assert_eq!(fetch(spa.addr, "/parties/x").status, 404);

    // Not a single-page app: the root's 404.html, with status 404.
    let plain = serve(&root);
    let r = fetch(plain.addr, "/some/client/route");
    assert_eq!((r.status, r.text().as_str()), (404, "<h1>missing</h1>"));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
}

#[test]
fn big_files_stream_intact_and_pipelining_keeps_order() {
    let root = site("static-big", true);
    let big = noise(5 * 1024 * 1024 + 123);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let s = serve(&root);
    // Pipelined: a small file, the big one, a room, HEAD of the big one, a small file.
    let mut c = s.connect();
    c.send(
        format!(
            "{}{}{}HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n{}",
            get("/app.js"),
            get("/big.bin"),
            get("/parties/main/r"),
            get("/sub/style.css")
        )
        .as_bytes(),
    );
    assert_eq!(c.response().text(), "export const x = 1;");
    let r = c.response();
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    assert!(r.body == big, "big file intact ({} bytes)", r.body.len());
    assert_eq!(c.response().text(), "[]");
    let h = c.response_for(true);
    assert_eq!(h.header("Content-Length"), Some(&*big.len().to_string()));
    assert_eq!(c.response().text(), "body { color: red }");
    // And with curl.
    let (head, body) = curl(&[&format!("http://{}/big.bin", s.addr)]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body == big, "curl got {} bytes", body.len());
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}

/// Peak resident memory of a process, from /proc (VmHWM, KiB).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_file_larger_than_memory_allows_is_never_read_whole() {
    // The binary, one core: its peak RSS must not grow by anything near the file's size.
    let root = site("static-rss", true);
    let size = 64 * 1024 * 1024;
    std::fs::write(root.join("huge.bin"), noise(size)).unwrap();
    let dir = root.display().to_string();
    let (server, addr) = spawn_binary(&["--threads", "1", "--serve", &dir]);
    assert_eq!(fetch(addr, "/app.js").status, 200);
    let before = peak_rss_kib(server.0.id());
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(format!("http://{addr}/huge.bin"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), size.to_string());
    let after = peak_rss_kib(server.0.id());
    assert!(
        after - before < 16 * 1024,
        "peak RSS grew by {} KiB sending a {} KiB file",
        after - before,
        size / 1024
    );
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}

#[test]
fn binary_flags_and_environment() {
    let root = site("static-flags", true);
    std::fs::write(root.join("404.html"), "nf").unwrap();
    let dir = root.display().to_string();
    let (_s, addr) = spawn_binary(&["--serve", &dir, "--serve-browser-ttl", "120", "--serve-spa"]);
    let (head, body) = curl(&[&format!("http://{addr}/client/route")]);
    assert!(
        head.contains("Cache-Control: public, max-age=120"),
        "{head}"
    );
    assert_eq!(body, b"<h1>the app</h1>");
    let (head, _) = curl(&["-I", &format!("http://{addr}/app.js")]);
    assert!(head.contains("Content-Length: 19"), "{head}");
    // PARTYRING_SERVE does the same as --serve.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_partyring"));
    cmd.args(["--port", "0", "--persist", "false", "--threads", "1"])
        .env("PARTYRING_SERVE", &dir)
        .stderr(std::process::Stdio::null());
    let (_child, addr) = common::spawn_command(cmd);
    assert_eq!(fetch(addr, "/app.js").text(), "export const x = 1;");
    // A --serve that is not a directory stops the start with exit code 2.
    let out = Command::new(env!("CARGO_BIN_EXE_partyring"))
        .args(["--port", "0", "--persist", "false", "--serve"])
        .arg(root.join("app.js"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

#[test]
fn on_fetch_answers_what_no_room_and_no_file_did() {
    let root = site("static-onfetch", true);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut config = common::config(2);
    config.serve = Some(Serve {
        spa: true,
        ..Serve::new(&root)
    });
    let server = Server::builder()
        .config(config)
        .on_fetch(move |req, lobby| {
            seen.fetch_add(1, Ordering::SeqCst);
            match req.path() {
                "/api/echo" => Some(
                    Response::text(
                        200,
                        format!("{:?} {}", req.method, String::from_utf8_lossy(req.body)),
                    )
                    .header("X-Query", req.query())
                    .into(),
                ),
                // Reaching a room through the lobby: the `main` party's history.
                "/api/history" => {
                    let room = req.query_param("room").unwrap_or_default();
                    let fetch = lobby.party_room("main", &room).fetch(FetchRequest::get());
                    Some(Reply::later(async move {
                        let r = fetch.await;
                        Response::text(
                            200,
                            format!("history: {}", String::from_utf8_lossy(&r.body)),
                        )
                    }))
                }
                "/api/panic" => panic!("on_fetch bug"),
                _ => None,
            }
        })
        .start()
        .unwrap();
    let addr = server.addr;
    let mut c = Client::connect(addr);
    let r = c.request(b"POST /api/echo?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!((r.status, r.text().as_str()), (200, "Post hi"));
    assert_eq!(r.header("X-Query"), Some("a=1"));
    c.request(common::post_message("/parties/main/lobby", "hello").as_bytes());
    let r = c.request(get("/api/history?room=lobby").as_bytes());
    assert_eq!(r.text(), r#"history: ["hello"]"#);
    let before = calls.load(Ordering::SeqCst);
    // A file is served before on_fetch is asked; a room never reaches it.
    assert_eq!(
        c.request(get("/app.js").as_bytes()).text(),
        "export const x = 1;"
    );
    assert_eq!(c.request(get("/parties/main/lobby").as_bytes()).status, 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "files and rooms skip on_fetch"
    );
    // Passed: the SPA index (this server is a single-page app).
    let r = c.request(get("/client/route").as_bytes());
    assert_eq!(r.text(), "<h1>the app</h1>");
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
    // A panic in on_fetch fails that request only.
    let r = Client::connect(addr).request(get("/api/panic").as_bytes());
    assert_eq!(r.status, 500);
    assert_eq!(c.request(get("/api/echo").as_bytes()).status, 200);
    server.shutdown(std::time::Duration::from_secs(5));
}

#[test]
fn on_fetch_without_serve_passes_to_the_demo_and_404() {
    let server = Server::builder()
        .config(common::config(1))
        .on_fetch(|req, _| (req.path() == "/hello").then(|| Response::text(200, "hi").into()))
        .start()
        .unwrap();
    assert_eq!(fetch(server.addr, "/hello").text(), "hi");
    assert!(fetch(server.addr, "/").text().contains("partysocket"));
    let r = fetch(server.addr, "/nothing");
    assert_eq!((r.status, r.text().as_str()), (404, "Not found"));
    server.shutdown(std::time::Duration::from_secs(5));
}

#[test]
fn a_fifo_in_the_root_is_not_opened() {
    // Opening a FIFO blocks until a writer comes: the server must not even try (one core, so a
    // blocked core would leave the next request unanswered and the client's read would time out).
    let root = site("static-fifo", true);
    let made = Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let s = common::start_with(1, |c| c.serve = Some(Serve::new(&root)));
    let mut c = s.connect();
    assert_eq!(c.request(get("/pipe").as_bytes()).status, 404);
    assert_eq!(c.request(get("/app.js").as_bytes()).status, 200);
}

#[test]
fn a_reader_that_stalls_mid_file_holds_up_no_one_else() {
    // One core: the stalled transfer and everyone else share it.
    let root = site("static-stall", true);
    let big = noise(8 * 1024 * 1024);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let s = common::start_with(1, |c| c.serve = Some(Serve::new(&root)));
    let mut stalled = s.connect();
    stalled.send(get("/big.bin").as_bytes());
    // Far more than the socket buffers hold is still unsent; the core goes on serving.
    for _ in 0..20 {
        let r = fetch(s.addr, "/app.js");
        assert_eq!(r.text(), "export const x = 1;");
    }
    assert_eq!(fetch(s.addr, "/parties/main/r").text(), "[]");
    // The stalled reader then gets the whole file, intact.
    let r = stalled.response();
    assert!(r.body == big, "{} bytes", r.body.len());
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}

/// A file that is not in the page cache (evicted with `posix_fadvise(DONTNEED)`, on a disk
/// file system: target/tmp) is read from disk and sent whole. (The server clears the
/// O_NONBLOCK it opens files with, since an io_uring read of an O_NONBLOCK file may end with
/// EAGAIN on a cache miss; on ext4, which waits for such reads anyway, this test passes either
/// way: what it guards here is the cold-cache path itself.)
#[test]
fn a_file_not_in_the_page_cache_is_sent_whole() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cold-{}", std::process::id()));
    let root = base.join("site");
    std::fs::create_dir_all(&root).unwrap();
    let big = noise(4 * 1024 * 1024 + 17);
    let path = root.join("cold.bin");
    std::fs::write(&path, &big).unwrap();
    let s = serve(&root);
    for round in 0..2 {
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: the descriptor is open for the call; fadvise only drops clean cached pages.
        let rc = unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(rc, 0, "posix_fadvise");
        let r = fetch(s.addr, "/cold.bin");
        assert_eq!(r.status, 200);
        assert!(
            r.body == big,
            "round {round}: got {} of {} bytes",
            r.body.len(),
            big.len()
        );
    }
    std::fs::remove_dir_all(&base).unwrap();
}
