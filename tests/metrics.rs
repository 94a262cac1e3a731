//! `GET /metrics` over real sockets: the Prometheus text format, a series per core plus the total
//! for every family, and counters that move with traffic on both cores (HTTP, WebSocket
//! messages and broadcasts, a 400, a 1002 close, a handoff, storage writes).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use common::{
    eventually, get, post_message, raw_frame, room_on_core, start, start_with, Client, TempDir,
    TestServer,
};
use partyring::ws::OpCode;

const CORES: usize = 2;

/// A scrape: every sample, keyed by metric name and its labels (without `core`), then by core
/// (`None`: the total).
#[derive(Debug)]
struct Scrape(BTreeMap<(String, String), BTreeMap<Option<usize>, u64>>);

impl Scrape {
    /// The value of `name{labels}` on `core` (`None`: the total); panics if it is missing.
    fn get(&self, name: &str, labels: &str, core: Option<usize>) -> u64 {
        *self
            .0
            .get(&(name.to_owned(), labels.to_owned()))
            .and_then(|by_core| by_core.get(&core))
            .unwrap_or_else(|| panic!("no series {name}{{{labels}}} for core {core:?}"))
    }
}

/// Parses the text format, checking that every sample follows its family's `# HELP` and
/// `# TYPE` lines.
fn parse(text: &str) -> Scrape {
    let mut families = BTreeSet::new();
    let mut help = None;
    let mut current = None;
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(!rest[name.len()..].trim().is_empty(), "empty HELP: {line}");
            help = Some(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert_eq!(help.as_deref(), Some(name), "TYPE right after HELP: {line}");
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert!(families.insert(name.to_owned()), "family twice: {name}");
            current = Some(name.to_owned());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "odd line: {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: u64 = value.parse().expect("integer value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert_eq!(current.as_deref(), Some(name), "sample outside its family");
        let mut core = None;
        let mut rest = Vec::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label=value");
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .expect("quoted label value");
            if k == "core" {
                core = Some(v.parse::<usize>().expect("core number"));
            } else {
                rest.push(format!("{k}=\"{v}\""));
            }
        }
        let key = (name.to_owned(), rest.join(","));
        let by_core: &mut BTreeMap<Option<usize>, u64> = samples.entry(key).or_default();
        assert!(by_core.insert(core, value).is_none(), "duplicate: {line}");
    }
    assert!(text.ends_with('\n'));
    Scrape(samples)
}

/// Scrapes `/metrics` and checks its shape: every core answered, and every series has a value
/// per core and a total that is their sum.
fn scrape(server: &TestServer) -> Scrape {
    let mut c = server.connect();
    let resp = c.request(get("/metrics").as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let s = parse(&resp.text());
    for k in 0..CORES {
        assert_eq!(
            s.get("partyring_core_up", "", Some(k)),
            1,
            "core {k} answered"
        );
    }
    for ((name, labels), by_core) in &s.0 {
        if name == "partyring_heap_bytes" {
            // Process-wide: one series, no core label.
            assert_eq!(by_core.len(), 1);
            assert!(by_core[&None] > 0, "the heap is in use");
            continue;
        }
        let per_core: Vec<u64> = (0..CORES)
            .map(|k| {
                *by_core
                    .get(&Some(k))
                    .unwrap_or_else(|| panic!("{name}{{{labels}}} has no series for core {k}"))
            })
            .collect();
        assert_eq!(
            by_core.len(),
            CORES + 1,
            "{name}{{{labels}}}: cores and total"
        );
        assert_eq!(
            by_core[&None],
            per_core.iter().sum::<u64>(),
            "{name}{{{labels}}}: total is the sum of the cores"
        );
    }
    s
}

#[test]
fn counters_move_with_traffic_on_every_core() {
    let dir = TempDir::new("traffic");
    let server = start_with(CORES, |c| {
        c.persist = true;
        c.data_dir = dir.path().to_path_buf();
    });
    let before = scrape(&server);
    let rooms: Vec<String> = (0..CORES)
        .map(|k| room_on_core("main", k, CORES, "metrics"))
        .collect();

    // On each core: two members of a room; one sends, the other gets the broadcast.
    let mut members = Vec::new();
    for (k, room) in rooms.iter().enumerate() {
        let path = format!("/parties/main/{room}");
        let mut a = Client::ws_connect(server.addr, &path);
        let mut b = Client::ws_connect(server.addr, &path);
        let text = format!("hello core {k}");
        a.ws_send(OpCode::Text, text.as_bytes());
        assert_eq!(b.ws_frame(), (true, 0x1, text.into_bytes()));
        members.push((a, b));
    }

    // One keep-alive connection POSTs to the room on core 0, then to the one on core 1: the
    // second request is for another core than the one now holding the connection, so at least
    // one handoff happens whichever core the kernel gave the connection to.
    let mut http = server.connect();
    for (k, room) in rooms.iter().enumerate() {
        let path = format!("/parties/main/{room}");
        let resp = http.request(post_message(&path, &format!("post {k}")).as_bytes());
        assert_eq!(resp.status, 200, "{}", resp.text());
        let (a, b) = &mut members[k];
        for c in [a, b] {
            assert_eq!(c.ws_frame(), (true, 0x1, format!("post {k}").into_bytes()));
        }
        assert_eq!(http.request(get(&path).as_bytes()).status, 200);
    }

    // A request without Host: 400.
    let mut bad = server.connect();
    let resp = bad.request(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(resp.status, 400);

    // An unmasked frame on a WebSocket of the room on core 0: close 1002.
    let mut rude = Client::ws_connect(server.addr, &format!("/parties/main/{}", rooms[0]));
    rude.send(&raw_frame(0x81, false, b"unmasked"));
    assert_eq!(rude.ws_close_code(), Some(1002));

    let after = scrape(&server);
    let delta = |name: &str, labels: &str, core: Option<usize>| {
        after.get(name, labels, core) - before.get(name, labels, core)
    };
    for k in 0..CORES {
        let core = Some(k);
        let at_least = |name: &str, labels: &str, min: u64| {
            let d = delta(name, labels, core);
            assert!(
                d >= min,
                "{name}{{{labels}}} on core {k} moved by {d}, want >= {min}"
            );
        };
        at_least("partyring_ws_messages_received_total", "", 1);
        // The broadcast to the other member, and the POST's broadcast to both.
        at_least("partyring_ws_frames_queued_total", "", 3);
        at_least("partyring_received_bytes_total", "", 1);
        at_least("partyring_sent_bytes_total", "", 1);
        at_least("partyring_storage_records_total", "", 2);
        at_least("partyring_storage_fsyncs_total", "", 1);
        assert!(after.get("partyring_rooms", "", core) >= 1, "core {k}");
        assert!(
            after.get("partyring_websockets_open", "", core) >= 2,
            "core {k}"
        );
    }
    assert!(
        delta(
            "partyring_ws_protocol_closes_total",
            "code=\"1002\"",
            Some(0)
        ) >= 1
    );
    assert!(delta("partyring_http_errors_total", "status=\"400\"", None) >= 1);
    assert!(delta("partyring_handoffs_sent_total", "", None) >= 1);
    assert!(delta("partyring_handoffs_received_total", "", None) >= 1);
    assert_eq!(delta("partyring_handoffs_refused_total", "", None), 0);
    // 4 members, the POSTing connection, the bad request, the rude socket, this scrape.
    assert!(delta("partyring_connections_accepted_total", "", None) >= 8);
    // The 4 members and this scrape.
    assert!(after.get("partyring_connections_open", "", None) >= 5);
    assert_eq!(after.get("partyring_core_up", "", None), CORES as u64);

    // Once the members leave, the WebSocket gauge falls back.
    drop(members);
    drop(rude);
    eventually("no WebSocket counted open", || {
        scrape(&server).get("partyring_websockets_open", "", None) == 0
    });
}

#[test]
fn only_get_and_head_on_exactly_metrics() {
    let server = start(CORES);
    let mut c = server.connect();
    c.send(b"HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let head = c.response_for(true);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let query = c.request(get("/metrics?x=1").as_bytes());
    assert_eq!(query.status, 200);
    assert!(query.text().contains("# TYPE partyring_rooms gauge\n"));
    let post = c.request(b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(c.request(get("/metrics/x").as_bytes()).status, 404);
    assert_eq!(c.request(get("/metricsx").as_bytes()).status, 404);
}

/// Open WebSockets wait in their core's poller, not in a task each: the parked gauge counts
/// them on both cores. Parked connections still read (a member's message reaches the others)
/// and are written to (a POST's broadcast). A close from our side takes them out of the
/// poller: at shutdown every member gets 1001, and members that never answer the close frame
/// are let go after `close_timeout` (0.3 s), so the shutdown does not sit out its 30 s
/// deadline (it would if an unparked connection were left without its closing task).
#[test]
fn idle_websockets_are_parked_and_closing_unparks_them() {
    const PER_CORE: usize = 10;
    let server = start_with(CORES, |c| {
        c.close_timeout = Duration::from_millis(300);
    });
    let rooms: Vec<String> = (0..CORES)
        .map(|k| room_on_core("main", k, CORES, "parked"))
        .collect();
    let mut members: Vec<Vec<Client>> = rooms
        .iter()
        .map(|room| {
            (0..PER_CORE)
                .map(|_| Client::ws_connect(server.addr, &format!("/parties/main/{room}")))
                .collect()
        })
        .collect();

    eventually("every member parked on its core", || {
        let s = scrape(&server);
        (0..CORES).all(|k| s.get("partyring_websockets_parked", "", Some(k)) == PER_CORE as u64)
    });

    for (k, room) in rooms.iter().enumerate() {
        let text = format!("from member 0 on core {k}");
        members[k][0].ws_send(OpCode::Text, text.as_bytes());
        for m in &mut members[k][1..] {
            assert_eq!(m.ws_frame(), (true, 0x1, text.clone().into_bytes()));
        }
        let posted = format!("posted to core {k}");
        let resp = server
            .connect()
            .request(post_message(&format!("/parties/main/{room}"), &posted).as_bytes());
        assert_eq!(resp.status, 200, "{}", resp.text());
        for m in &mut members[k] {
            assert_eq!(m.ws_frame(), (true, 0x1, posted.clone().into_bytes()));
        }
    }
    // Still parked after reading and being written to.
    let s = scrape(&server);
    assert_eq!(
        s.get("partyring_websockets_parked", "", None),
        (CORES * PER_CORE) as u64
    );

    let TestServer { server, .. } = server;
    let started = Instant::now();
    let stopping = std::thread::spawn(move || server.shutdown(Duration::from_secs(30)));
    for (k, core_members) in members.iter_mut().enumerate() {
        for (i, m) in core_members.iter_mut().enumerate() {
            assert_eq!(m.ws_close_code(), Some(1001), "core {k} member {i}");
            // Never answered; the server half-closes once its close frame is out.
            assert!(
                m.closed_by_server(),
                "core {k} member {i}: no EOF after an unanswered close"
            );
        }
    }
    assert!(stopping.join().unwrap(), "shutdown did not finish");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown waited {:?} for connections whose close had timed out",
        started.elapsed()
    );
}
