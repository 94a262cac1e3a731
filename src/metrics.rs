//! `GET /metrics`: per-core counters, gathered from every core on request and rendered in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Design:
//! - Counting: each core owns one [`Metrics`] (in `Core`, shared with its `Flusher` so the
//!   WebSocket queues reach it). Every field is a plain `Cell<u64>` bumped by the one thread that
//!   owns the core, where the event happens: no atomics, no locks, one add per event (and per
//!   read or write the number of bytes, never work per byte). Counters that already existed as
//!   the atomics of `CoreStats` (accepted, refused, handoffs; touched once per connection) are
//!   read from there rather than counted twice, and gauges that the core can compute when asked
//!   (connections held, rooms in memory, storage totals) are read at scrape time, so they cost
//!   nothing in between.
//! - Gathering: the scrape is answered on whichever core accepted it (there is no room to shard
//!   by). That core takes its own [`Snapshot`] directly and asks every other core for theirs
//!   through its inbox (`handoff::Inbound::Metrics`, carrying a flume sender for the reply). A
//!   core answers from its inbox loop with a snapshot of plain `Send` numbers. The scrape is a
//!   deferred reply (`Reply::later`), so the asking core keeps serving while it waits; a core
//!   that has not answered within [`GATHER_TIMEOUT`] (or whose inbox is full or closed) is
//!   reported missing (`partyring_core_up{core="k"} 0`, none of its series), never waited for.
//! - Per core and in total: every family has one series per answering core, labelled
//!   `core="k"`, followed by the total: the same series without the `core` label, the sum over
//!   the cores that answered. So `partyring_rooms{core=""}` is the total, and PromQL `sum()` over
//!   a whole family would count everything twice: sum over `{core!=""}`, or take the unlabelled
//!   series. (PartyKit has no such endpoint; this follows the usual exporter shape.) Counters
//!   start at 0 when the process starts.
//! - `GET` and `HEAD` on exactly `/metrics` (any query ignored); other methods get 405.
//!
//! Metric families (counters end in `_total`; `{...}`: the label besides `core`):
//! - `partyring_heap_bytes`: process-wide, no `core` label: heap the allocator holds, from the
//!   probe the program installed with [`set_heap_probe`] (the `partyring` binary: mimalloc's
//!   committed bytes); by default glibc's bytes in use (`mallinfo2()`: `uordblks + hblkhd`).
//!   The user-space memory per idle connection is its change divided by the connections
//!   opened (PERF.md §2). Read at scrape time.
//! - `partyring_core_up`: 1 if the core answered this scrape, 0 if it is reported missing.
//! - `partyring_connections_open`: connections held now (HTTP and WebSocket).
//! - `partyring_connections_accepted_total`: connections accepted on the core's listener.
//! - `partyring_connections_refused_total`: of those, refused at the connection cap.
//! - `partyring_websockets_open`: WebSocket connections open now.
//! - `partyring_websockets_parked`: of those, waiting in the core's poller (no task of their own).
//! - `partyring_rooms`: rooms in memory.
//! - `partyring_ws_messages_received_total`: WebSocket text/binary messages from clients.
//! - `partyring_ws_frames_queued_total`: WebSocket frames queued to clients (per recipient).
//! - `partyring_received_bytes_total`: bytes read from client sockets (HTTP and WebSocket).
//! - `partyring_sent_bytes_total`: bytes written to client sockets (HTTP and WebSocket).
//! - `partyring_handoffs_sent_total`, `partyring_handoffs_received_total`,
//!   `partyring_handoffs_refused_total`: connections moved between cores (refused: the owner's
//!   inbox was full or closed, answered 503).
//! - `partyring_http_errors_total{status}`: requests answered with an error status for
//!   breaking the protocol or a limit (400, 408, 413, 414, 417, 426, 431, 501, other).
//! - `partyring_ws_protocol_closes_total{code}`: WebSockets closed by the server for a
//!   violation: 1002 protocol error, 1007 invalid payload, 1008 outbound queue over its bound,
//!   1009 message too big (other: anything else).
//! - `partyring_storage_records_total`, `partyring_storage_fsyncs_total`: records written to
//!   the core's storage log and its fsyncs (`StorageStats`; 0 without `--persist`).
//! - `partyring_storage_failures_total`: log writes and fsyncs that failed (full disk, IO
//!   error); each discarded the records not yet on disk.
//! - `partyring_storage_lost_records_total`: records discarded by those failures (writes
//!   answered with an error: a POST's 507/503, a WebSocket sender's 1013).
//! - `partyring_storage_degraded`: 1 while the core's storage writes are failing (from a
//!   failure until a write succeeds again), else 0.

use std::{cell::Cell, fmt::Write, time::Duration};

/// The Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape waits for the other cores; later ones are reported missing (the help
/// line of `partyring_core_up` names it).
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(1);

/// Statuses of `partyring_http_errors_total`: every `HttpError` status, and 426 (upgrade with a
/// WebSocket version other than 13). Anything else is counted as `other`.
const HTTP_ERROR_STATUSES: [u16; 8] = [400, 408, 413, 414, 417, 426, 431, 501];
const HTTP_ERROR_LABELS: [&str; 9] = [
    "400", "408", "413", "414", "417", "426", "431", "501", "other",
];

/// Codes of `partyring_ws_protocol_closes_total`: every `WsError` close code, and 1008 (the
/// outbound queue overflowed). Anything else is counted as `other`.
const WS_CLOSE_CODES: [u16; 4] = [1002, 1007, 1008, 1009];
const WS_CLOSE_LABELS: [&str; 5] = ["1002", "1007", "1008", "1009", "other"];

/// A per-core event counter: bumped only by its core's thread, so a `Cell` suffices.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A per-core count of things open now.
#[derive(Debug, Default)]
pub struct Gauge(Cell<u64>);

impl Gauge {
    /// Counts one more until the returned guard drops (a panic included).
    pub fn hold(&self) -> GaugeHold<'_> {
        self.0.set(self.0.get() + 1);
        GaugeHold(self)
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// One more, to be matched by [`Gauge::dec`] (for holders that cannot keep a borrow).
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    pub fn dec(&self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// See [`Gauge::hold`].
pub struct GaugeHold<'a>(&'a Gauge);

impl Drop for GaugeHold<'_> {
    fn drop(&mut self) {
        self.0 .0.set(self.0 .0.get() - 1);
    }
}

/// One core's counters (see the module note for what each family means). Owned by `Core`;
/// the core's `Flusher` holds a clone of the `Rc` for the WebSocket queues.
#[derive(Debug, Default)]
pub struct Metrics {
    pub websockets_open: Gauge,
    pub ws_messages_received: Counter,
    pub ws_frames_queued: Counter,
    pub received_bytes: Counter,
    pub sent_bytes: Counter,
    http_errors: [Counter; HTTP_ERROR_LABELS.len()],
    ws_protocol_closes: [Counter; WS_CLOSE_LABELS.len()],
}

impl Metrics {
    /// Counts a request answered with error `status` (a protocol violation or a limit).
    pub fn http_error(&self, status: u16) {
        self.http_errors[slot(&HTTP_ERROR_STATUSES, status)].inc();
    }

    /// Counts a WebSocket closed by the server with `code` for a violation.
    /// `partyring_http_errors_total`, in the order of its labels.
    pub fn http_error_counts(&self) -> [u64; HTTP_ERROR_LABELS.len()] {
        self.http_errors.each_ref().map(Counter::get)
    }

    /// `partyring_ws_protocol_closes_total`, in the order of its labels.
    pub fn ws_protocol_close_counts(&self) -> [u64; WS_CLOSE_LABELS.len()] {
        self.ws_protocol_closes.each_ref().map(Counter::get)
    }

    pub fn ws_protocol_close(&self, code: u16) {
        self.ws_protocol_closes[slot(&WS_CLOSE_CODES, code)].inc();
    }
}

/// The index of `value` in `known`, or the `other` slot just past it.
fn slot(known: &[u16], value: u16) -> usize {
    known
        .iter()
        .position(|&k| k == value)
        .unwrap_or(known.len())
}

/// One core's numbers at one moment: plain `Send` data, sent back through a flume channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub core: usize,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub websockets_open: u64,
    pub websockets_parked: u64,
    pub rooms: u64,
    pub ws_messages_received: u64,
    pub ws_frames_queued: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    pub handoffs_sent: u64,
    pub handoffs_received: u64,
    pub handoffs_refused: u64,
    /// In the order of `HTTP_ERROR_LABELS`.
    pub http_errors: [u64; HTTP_ERROR_LABELS.len()],
    /// In the order of `WS_CLOSE_LABELS`.
    pub ws_protocol_closes: [u64; WS_CLOSE_LABELS.len()],
    pub storage_records: u64,
    pub storage_fsyncs: u64,
    pub storage_failures: u64,
    pub storage_lost_records: u64,
    pub storage_degraded: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its name, type, help line, and where its values are in a snapshot.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// The label splitting the family (besides `core`) and its values, in the order of
    /// `values`; `None` for a family with one value per core.
    split: Option<(&'static str, &'static [&'static str])>,
    values: fn(&Snapshot) -> &[u64],
}

const FAMILIES: &[Family] = &[
    Family {
        name: "partyring_connections_open",
        kind: Kind::Gauge,
        help: "Connections held now (HTTP and WebSocket; a handed-off one counts on its new core).",
        split: None,
        values: |s| std::slice::from_ref(&s.connections_open),
    },
    Family {
        name: "partyring_connections_accepted_total",
        kind: Kind::Counter,
        help: "Connections accepted on the core's listener (those refused at capacity included).",
        split: None,
        values: |s| std::slice::from_ref(&s.connections_accepted),
    },
    Family {
        name: "partyring_connections_refused_total",
        kind: Kind::Counter,
        help: "Connections refused at the per-core or process connection cap.",
        split: None,
        values: |s| std::slice::from_ref(&s.connections_refused),
    },
    Family {
        name: "partyring_websockets_open",
        kind: Kind::Gauge,
        help: "WebSocket connections open now.",
        split: None,
        values: |s| std::slice::from_ref(&s.websockets_open),
    },
    Family {
        name: "partyring_websockets_parked",
        kind: Kind::Gauge,
        help: "Open WebSockets waiting in the core's poller (no task of their own).",
        split: None,
        values: |s| std::slice::from_ref(&s.websockets_parked),
    },
    Family {
        name: "partyring_rooms",
        kind: Kind::Gauge,
        help: "Rooms in memory.",
        split: None,
        values: |s| std::slice::from_ref(&s.rooms),
    },
    Family {
        name: "partyring_ws_messages_received_total",
        kind: Kind::Counter,
        help: "WebSocket text and binary messages received from clients.",
        split: None,
        values: |s| std::slice::from_ref(&s.ws_messages_received),
    },
    Family {
        name: "partyring_ws_frames_queued_total",
        kind: Kind::Counter,
        help: "WebSocket frames queued to clients (data, ping, pong, close; a broadcast counts once per recipient).",
        split: None,
        values: |s| std::slice::from_ref(&s.ws_frames_queued),
    },
    Family {
        name: "partyring_received_bytes_total",
        kind: Kind::Counter,
        help: "Bytes read from client sockets (HTTP and WebSocket).",
        split: None,
        values: |s| std::slice::from_ref(&s.received_bytes),
    },
    Family {
        name: "partyring_sent_bytes_total",
        kind: Kind::Counter,
        help: "Bytes written to client sockets (HTTP and WebSocket).",
        split: None,
        values: |s| std::slice::from_ref(&s.sent_bytes),
    },
    Family {
        name: "partyring_handoffs_sent_total",
        kind: Kind::Counter,
        help: "Connections handed to the core that owns their room.",
        split: None,
        values: |s| std::slice::from_ref(&s.handoffs_sent),
    },
    Family {
        name: "partyring_handoffs_received_total",
        kind: Kind::Counter,
        help: "Connections adopted from another core.",
        split: None,
        values: |s| std::slice::from_ref(&s.handoffs_received),
    },
    Family {
        name: "partyring_handoffs_refused_total",
        kind: Kind::Counter,
        help: "Handoffs refused because the owner's inbox was full or closed (answered 503).",
        split: None,
        values: |s| std::slice::from_ref(&s.handoffs_refused),
    },
    Family {
        name: "partyring_http_errors_total",
        kind: Kind::Counter,
        help: "Requests answered with an error status for breaking the protocol or a limit, by status.",
        split: Some(("status", &HTTP_ERROR_LABELS)),
        values: |s| &s.http_errors,
    },
    Family {
        name: "partyring_ws_protocol_closes_total",
        kind: Kind::Counter,
        help: "WebSockets closed by the server for a violation, by close code (1008: outbound queue over its bound).",
        split: Some(("code", &WS_CLOSE_LABELS)),
        values: |s| &s.ws_protocol_closes,
    },
    Family {
        name: "partyring_storage_records_total",
        kind: Kind::Counter,
        help: "Records written to the core's storage log.",
        split: None,
        values: |s| std::slice::from_ref(&s.storage_records),
    },
    Family {
        name: "partyring_storage_fsyncs_total",
        kind: Kind::Counter,
        help: "fsyncs of the core's storage log (under --fsync always: its O_DSYNC batch writes).",
        split: None,
        values: |s| std::slice::from_ref(&s.storage_fsyncs),
    },
    Family {
        name: "partyring_storage_failures_total",
        kind: Kind::Counter,
        help: "Storage log writes and fsyncs that failed (each discarded the records not yet on disk).",
        split: None,
        values: |s| std::slice::from_ref(&s.storage_failures),
    },
    Family {
        name: "partyring_storage_lost_records_total",
        kind: Kind::Counter,
        help: "Storage records discarded by failed writes (answered with an error, never shown).",
        split: None,
        values: |s| std::slice::from_ref(&s.storage_lost_records),
    },
    Family {
        name: "partyring_storage_degraded",
        kind: Kind::Gauge,
        help: "1 while the core's storage writes are failing, else 0.",
        split: None,
        values: |s| std::slice::from_ref(&s.storage_degraded),
    },
];

/// Renders every core's snapshot (`None`: the core is missing) in the text format: for each
/// family its `# HELP` and `# TYPE` lines, a series per answering core (`core="k"`), then the
/// total over them without the `core` label.
pub fn render(cores: &[Option<Snapshot>]) -> String {
    let mut out = String::with_capacity(1024 + 256 * FAMILIES.len() * (cores.len() + 1));
    // `write!` into a String cannot fail.
    let heap = "partyring_heap_bytes";
    let _ = writeln!(
        out,
        "# HELP {heap} Heap bytes held by the whole process ({}).",
        heap_probe().0
    );
    let _ = writeln!(out, "# TYPE {heap} gauge");
    let _ = writeln!(out, "{heap} {}", (heap_probe().1)());
    let up = "partyring_core_up";
    let _ = writeln!(out, "# HELP {up} 1 if the core answered this scrape within {GATHER_TIMEOUT:?}, 0 if not (its series are missing); the total counts the cores that answered.");
    let _ = writeln!(out, "# TYPE {up} gauge");
    for (k, s) in cores.iter().enumerate() {
        let _ = writeln!(out, "{up}{{core=\"{k}\"}} {}", u8::from(s.is_some()));
    }
    let _ = writeln!(out, "{up} {}", cores.iter().flatten().count());
    for f in FAMILIES {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        let labels: &[&str] = f.split.map_or(&[""], |(_, values)| values);
        let mut totals = vec![0u64; labels.len()];
        for s in cores.iter().flatten() {
            let values = (f.values)(s);
            debug_assert_eq!(values.len(), labels.len(), "{}", f.name);
            for (i, v) in values.iter().enumerate() {
                totals[i] += v;
                let _ = match f.split {
                    Some((name, labels)) => writeln!(
                        out,
                        "{}{{core=\"{}\",{name}=\"{}\"}} {v}",
                        f.name, s.core, labels[i]
                    ),
                    None => writeln!(out, "{}{{core=\"{}\"}} {v}", f.name, s.core),
                };
            }
        }
        for (i, v) in totals.iter().enumerate() {
            let _ = match f.split {
                Some((name, labels)) => {
                    writeln!(out, "{}{{{name}=\"{}\"}} {v}", f.name, labels[i])
                }
                None => writeln!(out, "{} {v}", f.name),
            };
        }
    }
    out
}

/// What `partyring_heap_bytes` measures, and how.
pub type HeapProbe = (&'static str, fn() -> u64);

static HEAP_PROBE: std::sync::OnceLock<HeapProbe> = std::sync::OnceLock::new();

/// Installs the heap probe for `partyring_heap_bytes` (a program with its own global allocator
/// knows how to ask it); the first call wins. Without one, glibc's `mallinfo2()` is read.
pub fn set_heap_probe(what: &'static str, probe: fn() -> u64) {
    let _ = HEAP_PROBE.set((what, probe));
}

static HEAP_TRIM: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Installs the heap trim: it asks the program's global allocator to give the memory it holds
/// unused back to the system, on the calling thread (the `partyring` binary: mimalloc's
/// `mi_collect`). A core calls it once a burst of new WebSockets has passed: their handshakes'
/// tasks and buffers are freed by then, and an allocator keeps freed pages until it is next
/// busy, which an idle server never is. The first call wins; without one nothing is trimmed.
pub fn set_heap_trim(trim: fn()) {
    let _ = HEAP_TRIM.set(trim);
}

/// The installed heap trim, if any.
pub(crate) fn heap_trim() -> Option<fn()> {
    HEAP_TRIM.get().copied()
}

fn heap_probe() -> HeapProbe {
    *HEAP_PROBE.get_or_init(|| ("glibc mallinfo2: uordblks + hblkhd", glibc_heap_in_use))
}

/// Heap bytes in use through glibc's malloc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn glibc_heap_in_use() -> u64 {
    // SAFETY: mallinfo2 takes no arguments, only reads the allocator's statistics (under its own
    // lock) and returns them by value.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// Heap bytes in use by the process: unknown off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn glibc_heap_in_use() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{http::HttpError, ws::WsError};

    fn snap(core: usize, base: u64) -> Snapshot {
        let mut s = Snapshot {
            core,
            connections_open: base + 1,
            connections_accepted: base + 2,
            rooms: base + 3,
            ws_messages_received: base + 4,
            storage_fsyncs: base + 5,
            ..Snapshot::default()
        };
        s.http_errors[0] = base + 6;
        s.ws_protocol_closes[3] = base + 7;
        s
    }

    /// The sample lines of `text`, as (series, value).
    fn samples(text: &str) -> Vec<(&str, u64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("series value");
                (series, value.parse().expect("integer value"))
            })
            .collect()
    }

    fn value(text: &str, series: &str) -> Option<u64> {
        samples(text)
            .into_iter()
            .find(|(s, _)| *s == series)
            .map(|(_, v)| v)
    }

    #[test]
    fn per_core_series_then_the_total() {
        let text = render(&[Some(snap(0, 10)), Some(snap(1, 100))]);
        for (series, want) in [
            ("partyring_core_up{core=\"0\"}", 1),
            ("partyring_core_up", 2),
            ("partyring_rooms{core=\"0\"}", 13),
            ("partyring_rooms{core=\"1\"}", 103),
            ("partyring_rooms", 116),
            ("partyring_storage_fsyncs_total", 120),
            (
                "partyring_http_errors_total{core=\"1\",status=\"400\"}",
                106,
            ),
            ("partyring_http_errors_total{status=\"400\"}", 122),
            ("partyring_http_errors_total{status=\"other\"}", 0),
            (
                "partyring_ws_protocol_closes_total{core=\"0\",code=\"1009\"}",
                17,
            ),
            ("partyring_ws_protocol_closes_total{code=\"1009\"}", 124),
        ] {
            assert_eq!(value(&text, series), Some(want), "{series}");
        }
        // Every family: one series per core and label value, plus the totals.
        let lines = samples(&text).len();
        let per_family: usize = FAMILIES
            .iter()
            .map(|f| f.split.map_or(1, |(_, l)| l.len()) * 3)
            .sum();
        // 3 for `partyring_core_up`, 1 for the process-wide heap gauge.
        assert_eq!(lines, 3 + 1 + per_family);
    }

    #[test]
    fn help_and_type_precede_every_family_and_names_are_valid() {
        let text = render(&[Some(snap(0, 0))]);
        let mut seen = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
                let kind = lines[i + 1]
                    .strip_prefix(&format!("# TYPE {name} "))
                    .unwrap();
                assert!(kind == "counter" || kind == "gauge");
                assert_eq!(name.ends_with("_total"), kind == "counter", "{name}");
                assert!(!rest.contains('\\'), "HELP needs no escaping");
                seen.push(name);
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert_eq!(Some(&name), seen.last(), "sample outside its family: {l}");
            }
        }
        // `partyring_core_up` and `partyring_heap_bytes` besides the families.
        assert_eq!(seen.len(), FAMILIES.len() + 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_missing_core_is_down_and_left_out_of_the_totals() {
        let text = render(&[Some(snap(0, 10)), None]);
        assert_eq!(value(&text, "partyring_core_up{core=\"1\"}"), Some(0));
        assert_eq!(value(&text, "partyring_core_up"), Some(1));
        assert_eq!(value(&text, "partyring_rooms{core=\"1\"}"), None);
        assert_eq!(value(&text, "partyring_rooms"), Some(13));
    }

    #[test]
    fn every_error_has_its_own_label() {
        assert_eq!(HTTP_ERROR_LABELS.len(), HTTP_ERROR_STATUSES.len() + 1);
        for (s, l) in HTTP_ERROR_STATUSES.iter().zip(HTTP_ERROR_LABELS) {
            assert_eq!(s.to_string(), l);
        }
        assert_eq!(WS_CLOSE_LABELS.len(), WS_CLOSE_CODES.len() + 1);
        for (c, l) in WS_CLOSE_CODES.iter().zip(WS_CLOSE_LABELS) {
            assert_eq!(c.to_string(), l);
        }
        let http = [
            HttpError::Malformed("x"),
            HttpError::HeadTooLarge,
            HttpError::TooManyHeaders,
            HttpError::UriTooLong,
            HttpError::BodyTooLarge,
            HttpError::LengthAndChunked,
            HttpError::DuplicateContentLength,
            HttpError::InvalidContentLength,
            HttpError::TransferEncodingInHttp10,
            HttpError::UnsupportedTransferEncoding,
            HttpError::InvalidChunk("x"),
            HttpError::UnsupportedExpectation,
            HttpError::MissingHost,
            HttpError::Timeout,
        ];
        for e in http {
            assert!(HTTP_ERROR_STATUSES.contains(&e.status()), "{e:?}");
        }
        use WsError::*;
        for e in [
            UnmaskedFrame,
            ReservedBitsSet,
            UnknownOpcode,
            ControlFrameTooLong,
            ControlFrameFragmented,
            UnexpectedContinuation,
            ExpectedContinuation,
            InvalidUtf8,
            MessageTooBig,
            LengthOverflow,
            InvalidCloseCode,
            InvalidClosePayload,
            InvalidCloseReason,
        ] {
            assert!(WS_CLOSE_CODES.contains(&e.close_code()), "{e:?}");
        }
        let m = Metrics::default();
        m.http_error(431);
        m.http_error(599);
        m.ws_protocol_close(1008);
        assert_eq!(m.http_errors[6].get(), 1);
        assert_eq!(m.http_errors[8].get(), 1, "unknown status counts as other");
        assert_eq!(m.ws_protocol_closes[2].get(), 1);
        let g = Gauge::default();
        {
            let _a = g.hold();
            let _b = g.hold();
            assert_eq!(g.get(), 2);
        }
        assert_eq!(g.get(), 0);
    }
}
