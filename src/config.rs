//! Every knob of the server in one place.
//!
//! `Config` is plain data: the binary fills it from the command line and `PARTYRING_*`
//! environment variables (see `main.rs`), tests build it with [`Config::test`]. Each field says
//! its default and what changes when you move it. Limits are named here, never inlined.
//!
//! [`Config::validate`] is the one place for the checks a configuration can fail without
//! touching the system: a value no server can run with, or settings that contradict each
//! other. Checks that need the file system or the kernel (the `--serve` directory, the data
//! directory's core count, binding the port, cron expressions) stay where that happens.

use std::{net::IpAddr, path::PathBuf, time::Duration};

pub use crate::storage::FsyncPolicy;

/// Bytes of frame header the outbound bound must leave room for beside one largest message.
const FRAME_HEADER_ALLOWANCE: usize = crate::ws::frame::MAX_HEADER_LEN;

/// Default port, the same as `partykit dev`, so PartySocket's `host: "127.0.0.1:1999"` works.
pub const DEFAULT_PORT: u16 = 1999;

#[derive(Clone, Debug)]
pub struct Config {
    /// Address every core listens on. Default: 127.0.0.1.
    pub host: IpAddr,
    /// TCP port shared by every core through SO_REUSEPORT. 0 picks one free port for all.
    /// Default: 1999.
    pub port: u16,
    /// Number of cores (OS threads, one monoio ring each). Default: every available core.
    /// Rooms are sharded over this number, so changing it moves rooms between cores.
    pub threads: usize,
    /// Whether thread k is pinned to CPU k. Default: true when `threads` equals the CPU count.
    pub pin_threads: bool,

    /// Largest request head (request line + headers) accepted: beyond it, 431. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in one request: beyond it, 431. Default 100.
    pub max_headers: usize,
    /// Longest request target: beyond it, 414. Default 8 KiB.
    pub max_target_bytes: usize,
    /// Largest request body (after chunked decoding): beyond it, 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// A request whose head (or body) has not fully arrived this long after its first byte is
    /// answered 408 and closed (slowloris). Default 10 s.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this. Default 60 s.
    pub idle_timeout: Duration,

    /// Messages kept per room for `GET` (the oldest are dropped). Default 10,000.
    pub history_limit: usize,
    /// Largest WebSocket message (sum of its fragments): beyond it, close 1009.
    /// Default 1 MiB, PartyKit's limit.
    pub max_message_bytes: usize,
    /// Bytes queued for one WebSocket before it is closed with 1008: a reader that cannot keep up
    /// must not grow the server without bound. Default 4 MiB.
    pub max_outbound_bytes: usize,
    /// permessage-deflate (RFC 7692): accept a client's offer, compress messages to it (each
    /// broadcast once) and inflate what it compresses. No compression state is kept per
    /// connection (both sides agree to no context takeover), so this costs CPU, not idle
    /// memory. Default on: every browser offers it and JSON shrinks several times over; see the
    /// README ("Compression") for the reasoning and what to measure. Off: offers are declined
    /// and the 101 carries no extension.
    pub compression: bool,
    /// Messages shorter than this many bytes are sent uncompressed even to connections that
    /// negotiated compression (RSV1 clear; legal per message). Default 128 bytes
    /// (`ws::deflate::DEFAULT_THRESHOLD`): below it deflate saves a few bytes for the cost of a
    /// compressor reset.
    pub compression_threshold: usize,
    /// How long a server-initiated WebSocket close waits for the peer's close frame. Default 5 s.
    pub close_timeout: Duration,
    /// On SIGINT/SIGTERM, how long in-flight requests and WebSocket closing handshakes get
    /// before the process exits anyway. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Connections one core holds at most; a connection accepted beyond it is answered
    /// `503` (HTTP) or `101` + close `1013` (WebSocket upgrade) and closed. 0 (the default)
    /// means no per-core cap. Whatever this is, the process as a whole also refuses
    /// connections beyond its open-file limit less a reserve ([`process_connection_cap`]), so
    /// a connection storm is answered "try again later" instead of failing `accept` with
    /// EMFILE. (A per-core default would be wrong: one big room puts all its members on one
    /// core.)
    pub max_connections_per_core: usize,
    /// Ping WebSockets that stay silent: each core sweeps its connections once per interval,
    /// pings those it has not heard from since the last sweep (or since they connected: a new
    /// connection may be pinged at the first sweep), and closes those still silent at the sweep
    /// after (a dead peer): a silent peer is dropped one to two intervals after it connected or
    /// last spoke (`ws/session.rs`, `Session::tick`). Off by
    /// default, like PartyKit (partysocket sends no heartbeat and needs none).
    pub ws_ping_interval: Option<Duration>,
    /// Capacity of each core's handoff inbox: when full, the connection is answered 503.
    /// Default 4096.
    pub inbox_capacity: usize,

    /// Whether rooms' storage (and the `main` party's history) is kept on disk under `data_dir`
    /// and replayed at start. Default true, as `partykit dev` persists under `.partykit/`; false
    /// keeps everything in memory (gone at exit).
    pub persist: bool,
    /// Where each core keeps its storage log (`core-<k>.log`). Default `./.partyring`.
    /// The directory remembers how many cores wrote it: rooms are sharded by core count, so a
    /// server with a different `threads` refuses to start on it.
    pub data_dir: PathBuf,
    /// When a storage write counts as durable (see [`FsyncPolicy`]). Default `Always`: a
    /// write (and the `main` party's `OK`) resolves only after its batch was fsynced.
    pub fsync: FsyncPolicy,
    /// Where party-to-party fetches go when several nodes serve the rooms (behind a load
    /// balancer that routes by party and room, see docs/deploy.md): every
    /// `room.party_room(..).fetch(..)` is then an HTTP request to this address, which routes it
    /// to the node that owns the room. `None` (the default): this node owns every room, and a
    /// fetch is a direct call or a message to the owner core.
    pub fetch_entry: Option<std::net::SocketAddr>,
    /// Cross-origin requests: off by default, as in PartyKit. When on, preflight `OPTIONS` is
    /// answered and `Access-Control-Allow-Origin` is added to every non-WebSocket response.
    pub cors: Cors,
    /// How each core's io_uring is set up (see `runtime/ring.rs` and docs/ring-modes.md).
    /// Default: [`RingMode::Auto`], the fastest mode the kernel accepts.
    pub ring_mode: RingMode,
    /// How a core's parked WebSockets receive (see `net/recv_ring.rs`). Default
    /// [`RecvMode::Epoll`]: the receive ring costs idle memory and was faster only on some
    /// shapes (PERF.md §1k, §1l).
    pub ws_recv: RecvMode,
    /// How WebSocket frames are sent (`--ws-send`): SQEs on the core's ring, submitted 16 per
    /// enter (`ring`), or one `sendmsg` per connection and pass (`syscall`). Default
    /// [`SendMode::Auto`]: the ring where the kernel builds it, else `syscall`. Measured
    /// against each other in PERF.md §1l and §1m.
    pub ws_send: SendMode,

    /// Static assets (`--serve DIR`, PartyKit's flag of the same name): files under a directory
    /// for every path that is not a room, `/metrics` or `/parties/...` (see `runtime/assets.rs`).
    /// Default `None`: no files; `/` is the demo page.
    pub serve: Option<Serve>,
    /// Named crons (`--cron NAME=EXPR`, PartyKit's `crons` in partykit.json): at each scheduled
    /// time (UTC), core 0 runs every party's `on_cron` with the name (see `runtime/cron.rs`).
    /// Default: none.
    pub crons: Vec<NamedCron>,
}

/// What `--serve` serves, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serve {
    /// The root. Resolved (symlinks, `..`) once at start: a file is served only if its own
    /// resolved path is under it.
    pub dir: PathBuf,
    /// `Cache-Control: public, max-age=<this>` on every file (`--serve-browser-ttl`). Default
    /// zero: `no-cache`, so browsers revalidate each time (a 304 while the ETag matches).
    pub browser_ttl: Duration,
    /// Single-page app (`--serve-spa`): a GET or HEAD for a path with no file (and that no
    /// `on_fetch` answered) gets `index.html`, so client-side routes load the app. Default off.
    pub spa: bool,
}

impl Serve {
    /// `dir` with the defaults: no browser caching, not a single-page app.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Serve {
            dir: dir.into(),
            browser_ttl: Duration::ZERO,
            spa: false,
        }
    }
}

/// One `--cron NAME=EXPR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedCron {
    pub name: String,
    /// A cron expression: five fields (minute to day of week) or six (seconds first).
    pub expr: String,
}

impl std::str::FromStr for NamedCron {
    type Err = String;

    /// `NAME=EXPR`, the name non-empty and without spaces or `=`; the expression is checked
    /// when the server starts (and by `main.rs` when the flag is read).
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, expr) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=EXPR"))?;
        let name = name.trim();
        // The built-in `main` party posts to the room of this name: a plain path segment.
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.~".contains(c);
        if name.is_empty() || !name.chars().all(plain) {
            return Err(format!(
                "cron name {name:?} must be letters, digits, '-', '_', '.' or '~'"
            ));
        }
        Ok(NamedCron {
            name: name.to_owned(),
            expr: expr.trim().to_owned(),
        })
    }
}

/// How a core's event loop talks to the kernel. The modes differ in how the kernel tells the
/// core's thread that a completion (a socket became readable, a write finished) is ready:
/// see docs/ring-modes.md for what each costs per request, measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RingMode {
    /// The first of `defer`, `coop`, `plain`, `epoll` that this kernel accepts (the default).
    #[default]
    Auto,
    /// io_uring with `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1+): completions are produced only
    /// when the core waits in the ring, never by interrupting it.
    Defer,
    /// io_uring with `COOP_TASKRUN | TASKRUN_FLAG` (Linux 5.19+): no interrupt; completions are
    /// produced at the thread's next entry into the kernel.
    Coop,
    /// io_uring with no setup flags: the kernel interrupts the running core (an IPI) for each
    /// completion that another CPU produced.
    Plain,
    /// monoio's epoll ("legacy") driver, for kernels or sandboxes without io_uring.
    Epoll,
}

impl RingMode {
    /// Every mode's name, as `--ring-mode` takes it.
    pub const NAMES: [&'static str; 5] = ["auto", "defer", "coop", "plain", "epoll"];

    pub fn name(self) -> &'static str {
        match self {
            RingMode::Auto => "auto",
            RingMode::Defer => "defer",
            RingMode::Coop => "coop",
            RingMode::Plain => "plain",
            RingMode::Epoll => "epoll",
        }
    }
}

impl RingMode {
    /// The mode with what it means, for the start line.
    pub fn describe(self) -> &'static str {
        match self {
            RingMode::Auto => "auto",
            RingMode::Defer => "defer (io_uring, SINGLE_ISSUER|DEFER_TASKRUN)",
            RingMode::Coop => "coop (io_uring, COOP_TASKRUN|TASKRUN_FLAG)",
            RingMode::Plain => "plain (io_uring, no setup flags)",
            RingMode::Epoll => "epoll (no io_uring)",
        }
    }
}

impl std::fmt::Display for RingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => RingMode::Auto,
            "defer" => RingMode::Defer,
            "coop" => RingMode::Coop,
            "plain" => RingMode::Plain,
            "epoll" | "legacy" => RingMode::Epoll,
            other => {
                return Err(format!(
                    "{other:?} is not a ring mode (one of: {})",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }
}

/// How the WebSockets that wait in a core's poller receive their bytes. Measured against each
/// other in PERF.md §1k and §1l: with the send ring too, the rings beat epoll on echo at 500
/// connections and showed no difference elsewhere, and the receive ring keeps 2 MiB of buffers
/// per core (idle memory over its target), so epoll is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecvMode {
    /// An epoll instance per core: readiness, then a `recv` syscall per readable socket (the
    /// default).
    #[default]
    Epoll,
    /// A receive ring per core (Linux 6.0+): one multishot `recv` per socket into shared
    /// provided buffers; the kernel reads, no syscall per read.
    Ring,
}

impl RecvMode {
    /// Every mode's name, as `--ws-recv` takes it.
    pub const NAMES: [&'static str; 2] = ["epoll", "ring"];

    pub fn name(self) -> &'static str {
        match self {
            RecvMode::Ring => "ring",
            RecvMode::Epoll => "epoll",
        }
    }

    /// The mode with what it means, for the start line.
    pub fn describe(self) -> &'static str {
        match self {
            RecvMode::Ring => "ring (multishot recv, provided buffers)",
            RecvMode::Epoll => "epoll (readiness, then recv)",
        }
    }
}

impl std::fmt::Display for RecvMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RecvMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "epoll" | "" => RecvMode::Epoll,
            "ring" | "multishot" => RecvMode::Ring,
            other => {
                return Err(format!(
                    "{other:?} is not a receive mode (one of: {})",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }
}

/// How a core sends queued WebSocket frames (see `net/writer.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendMode {
    /// `Ring` where the kernel builds the core's ring, else `Syscall` (logged); the default.
    /// A running core never reports `Auto`, only what it resolved to.
    #[default]
    Auto,
    /// One `sendmsg` (or `send`) syscall per connection with something queued, per event-loop
    /// pass.
    Syscall,
    /// The pass's sends become SQEs on the core's io_uring (the receive ring's instance),
    /// submitted 16 per `io_uring_enter` (Linux 6.0+); stops the start where the kernel
    /// refuses the ring.
    Ring,
}

impl SendMode {
    /// Every mode's name, as `--ws-send` takes it.
    pub const NAMES: [&'static str; 3] = ["auto", "syscall", "ring"];

    pub fn name(self) -> &'static str {
        match self {
            SendMode::Auto => "auto",
            SendMode::Syscall => "syscall",
            SendMode::Ring => "ring",
        }
    }

    /// The mode with what it means, for the start line.
    pub fn describe(self) -> &'static str {
        match self {
            SendMode::Auto => "auto (ring where the kernel has it, else syscall)",
            SendMode::Ring => "ring (send SQEs, 16 per io_uring_enter)",
            SendMode::Syscall => "syscall (sendmsg per connection)",
        }
    }
}

impl std::fmt::Display for SendMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SendMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => SendMode::Auto,
            "syscall" | "sendmsg" => SendMode::Syscall,
            "ring" | "sqe" => SendMode::Ring,
            other => {
                return Err(format!(
                    "{other:?} is not a send mode (one of: {})",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }
}

/// Which origins may make cross-origin HTTP requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers at all (the default).
    #[default]
    Off,
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// Only these exact origins (e.g. `https://app.example.com`), echoed back with
    /// `Vary: Origin`.
    Origins(Vec<String>),
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    pub fn allow_origin<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        match self {
            Cors::Off => None,
            Cors::Any => Some("*"),
            Cors::Origins(list) => origin.filter(|o| list.iter().any(|l| l == o)),
        }
    }

    pub fn is_on(&self) -> bool {
        *self != Cors::Off
    }
}

impl Config {
    /// The defaults listed on each field.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            threads,
            pin_threads: true,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            history_limit: 10_000,
            max_message_bytes: 1024 * 1024,
            max_outbound_bytes: 4 * 1024 * 1024,
            compression: true,
            compression_threshold: crate::ws::deflate::DEFAULT_THRESHOLD,
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            max_connections_per_core: 0,
            ws_ping_interval: None,
            inbox_capacity: 4096,
            persist: true,
            data_dir: PathBuf::from(".partyring"),
            fsync: FsyncPolicy::Always,
            cors: Cors::Off,
            fetch_entry: None,
            ring_mode: RingMode::Auto,
            ws_recv: RecvMode::Epoll,
            ws_send: SendMode::Auto,
            serve: None,
            crons: Vec::new(),
        }
    }

    /// Defaults for an in-process test server: port 0, `threads` cores, not pinned (tests run in
    /// parallel and must not fight over CPUs), storage in memory.
    pub fn test(threads: usize) -> Self {
        Self {
            port: 0,
            threads,
            pin_threads: false,
            persist: false,
            ..Self::new()
        }
    }
}

impl Config {
    /// Checks the settings on their own and against each other, without IO. `Server::start`'s
    /// own checks (threads, the outbound bound) are the same rules; `main.rs` calls this before
    /// starting, so a bad flag is one line and exit 2.
    ///
    /// # Errors
    ///
    /// The first rule broken, in the order of [`ConfigError`]'s variants.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.threads == 0 {
            return Err(ConfigError::NoThreads);
        }
        // The outbound bound must hold at least one largest message with its frame header, or
        // echoing / broadcasting such a message would close the recipient every time.
        let need = self.max_message_bytes.checked_add(FRAME_HEADER_ALLOWANCE);
        if need.is_none_or(|need| self.max_outbound_bytes < need) {
            return Err(ConfigError::OutboundBelowMessage {
                max_outbound_bytes: self.max_outbound_bytes,
                max_message_bytes: self.max_message_bytes,
            });
        }
        if self.inbox_capacity == 0 {
            return Err(ConfigError::NoInbox);
        }
        if self.ws_ping_interval == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroPingInterval);
        }
        Ok(())
    }
}

/// Why [`Config::validate`] refused a configuration. Every variant is the operator's to fix;
/// `Display` names the setting and the way out, in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `threads` is 0: there would be no core to serve anything.
    NoThreads,
    /// `max_outbound_bytes` cannot hold one message of `max_message_bytes` with its frame
    /// header: echoing or broadcasting such a message would close the recipient every time.
    OutboundBelowMessage {
        max_outbound_bytes: usize,
        max_message_bytes: usize,
    },
    /// `inbox_capacity` is 0: every handoff to another core (a connection, a party fetch, a
    /// metrics request) would be refused.
    NoInbox,
    /// `ws_ping_interval` is `Some(0)`: every sweep would ping and then close every idle
    /// WebSocket at once. Off is `None`.
    ZeroPingInterval,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoThreads => f.write_str("threads must be at least 1"),
            ConfigError::OutboundBelowMessage {
                max_outbound_bytes,
                max_message_bytes,
            } => write!(
                f,
                "max outbound bytes ({max_outbound_bytes}) must exceed the max message size \
                 ({max_message_bytes}) plus {FRAME_HEADER_ALLOWANCE} bytes of header"
            ),
            ConfigError::NoInbox => f.write_str("inbox capacity must be at least 1"),
            ConfigError::ZeroPingInterval => {
                f.write_str("ws ping interval must be positive (leave it unset for no pings)")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A refused configuration is bad input: `InvalidInput`, as `Server::start` reports it.
impl From<ConfigError> for std::io::Error {
    fn from(e: ConfigError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// File descriptors kept back from the connection cap for listeners, the ring, logs and the
/// few connections being refused at any moment.
pub const FD_RESERVE: usize = 64;

/// Connections the whole process accepts at most: the open-file limit less [`FD_RESERVE`].
pub fn process_connection_cap() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    soft.saturating_sub(FD_RESERVE).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_test_configs_are_valid() {
        assert_eq!(Config::new().validate(), Ok(()));
        assert_eq!(Config::test(1).validate(), Ok(()));
        assert_eq!(Config::test(4).validate(), Ok(()));
    }

    #[test]
    fn validate_table() {
        type Case = (&'static str, fn(&mut Config), Result<(), ConfigError>);
        let outbound = |out: usize, msg: usize| ConfigError::OutboundBelowMessage {
            max_outbound_bytes: out,
            max_message_bytes: msg,
        };
        let cases: &[Case] = &[
            ("threads 0", |c| c.threads = 0, Err(ConfigError::NoThreads)),
            ("threads 1", |c| c.threads = 1, Ok(())),
            (
                "outbound exactly message + header",
                |c| (c.max_message_bytes, c.max_outbound_bytes) = (1000, 1014),
                Ok(()),
            ),
            (
                "outbound one short of message + header",
                |c| (c.max_message_bytes, c.max_outbound_bytes) = (1000, 1013),
                Err(outbound(1013, 1000)),
            ),
            (
                "outbound below message",
                |c| (c.max_message_bytes, c.max_outbound_bytes) = (1 << 20, 1 << 10),
                Err(outbound(1 << 10, 1 << 20)),
            ),
            (
                "message size at usize::MAX does not overflow",
                |c| (c.max_message_bytes, c.max_outbound_bytes) = (usize::MAX, usize::MAX),
                Err(outbound(usize::MAX, usize::MAX)),
            ),
            (
                "autobahn's 16 MiB messages, 32 MiB outbound (.ci/run)",
                |c| (c.max_message_bytes, c.max_outbound_bytes) = (16 << 20, 32 << 20),
                Ok(()),
            ),
            (
                "inbox 0",
                |c| c.inbox_capacity = 0,
                Err(ConfigError::NoInbox),
            ),
            ("inbox 1", |c| c.inbox_capacity = 1, Ok(())),
            (
                "ping interval 0",
                |c| c.ws_ping_interval = Some(Duration::ZERO),
                Err(ConfigError::ZeroPingInterval),
            ),
            (
                "ping interval 1 ms",
                |c| c.ws_ping_interval = Some(Duration::from_millis(1)),
                Ok(()),
            ),
            ("no pings", |c| c.ws_ping_interval = None, Ok(())),
            (
                "threads checked first",
                |c| (c.threads, c.inbox_capacity) = (0, 0),
                Err(ConfigError::NoThreads),
            ),
            (
                "compression off with any threshold",
                |c| (c.compression, c.compression_threshold) = (false, usize::MAX),
                Ok(()),
            ),
        ];
        for (name, set, want) in cases {
            let mut c = Config::test(2);
            set(&mut c);
            assert_eq!(c.validate(), *want, "{name}");
        }
    }

    #[test]
    fn errors_read_as_one_line_and_are_invalid_input() {
        let e = ConfigError::OutboundBelowMessage {
            max_outbound_bytes: 10,
            max_message_bytes: 20,
        };
        assert_eq!(
            e.to_string(),
            "max outbound bytes (10) must exceed the max message size (20) plus 14 bytes of header"
        );
        let io: std::io::Error = ConfigError::NoThreads.into();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(io.to_string(), "threads must be at least 1");
    }
}
