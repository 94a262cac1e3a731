//! The `partyring` binary: parses the command line and environment into a `Config`, sets up
//! logging, and runs the server; or, as `partyring repair --data-dir DIR`, cuts damaged
//! storage logs at their first bad record. Everything else lives in the library.
//!
//! Exit codes: 0 after a clean shutdown (or a repair), 2 for bad flags and for storage the
//! server refuses to open (damage in the middle of a log, a foreign file, another core
//! count), 1 for anything else that stops the start.

use std::{net::IpAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;

// See Cargo.toml for why (RSS per idle connection).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives the memory mimalloc holds unused on this thread back to the system
/// (`partyring::set_heap_trim`).
fn mimalloc_trim() {
    // SAFETY: mi_collect takes no arguments to check; it only releases memory mimalloc itself
    // holds unused, and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(false) };
}

/// mimalloc's committed bytes, for `/metrics` (`partyring_heap_bytes`).
fn mimalloc_committed() -> u64 {
    let mut commit = 0usize;
    // SAFETY: every out-pointer but `current_commit` is null, which mi_process_info allows
    // ("all parameters are optional (nullable) out-params"); `commit` is a valid usize.
    unsafe {
        libmimalloc_sys::mi_process_info(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut commit,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
    }
    commit as u64
}
use partyring::{
    config::{Cors, FsyncPolicy, NamedCron, Serve, DEFAULT_PORT},
    faults::FaultPlan,
    Config, Server,
};

/// A PartyKit-compatible realtime room server (thread-per-core, io_uring).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PARTYRING_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one, printed at start).
    #[arg(long, env = "PARTYRING_PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Cores (threads with an event loop each). Default: every available core.
    #[arg(long, env = "PARTYRING_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Messages kept per room (oldest dropped).
    #[arg(long, env = "PARTYRING_HISTORY_LIMIT", default_value_t = 10_000)]
    history_limit: usize,
    /// Largest WebSocket message in bytes (larger: close 1009).
    #[arg(long, env = "PARTYRING_MAX_MESSAGE_SIZE", default_value_t = 1024 * 1024)]
    max_message_size: usize,
    /// Largest HTTP request body in bytes (larger: 413).
    #[arg(long, env = "PARTYRING_MAX_BODY_SIZE", default_value_t = 1024 * 1024)]
    max_body_size: usize,
    /// Bytes queued for one WebSocket before it is closed with 1008.
    #[arg(long, env = "PARTYRING_MAX_OUTBOUND", default_value_t = 4 * 1024 * 1024)]
    max_outbound: usize,
    /// permessage-deflate: `on` accepts a client's offer (compressed messages, no compression
    /// state per connection), `off` declines every offer.
    #[arg(long, env = "PARTYRING_COMPRESSION", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    compression: bool,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, env = "PARTYRING_COMPRESSION_THRESHOLD", default_value_t = partyring::DEFAULT_COMPRESSION_THRESHOLD)]
    compression_threshold: usize,
    /// Seconds a request may take to arrive completely (then 408).
    #[arg(long, env = "PARTYRING_HEADER_TIMEOUT", default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, env = "PARTYRING_IDLE_TIMEOUT", default_value_t = 60.0)]
    idle_timeout: f64,
    /// Connections per core before new ones get 503 / close 1013 (0: from the open-file limit).
    #[arg(long, env = "PARTYRING_MAX_CONNECTIONS_PER_CORE", default_value_t = 0)]
    max_connections_per_core: usize,
    /// Ping interval in seconds: a WebSocket silent for one to two intervals is pinged, and
    /// closed if another interval passes in silence. 0 = off (the default, like PartyKit).
    #[arg(long, env = "PARTYRING_WS_PING_INTERVAL", default_value_t = 0.0)]
    ws_ping_interval: f64,
    /// Seconds a graceful shutdown (SIGINT/SIGTERM) waits for in-flight work.
    #[arg(long, env = "PARTYRING_SHUTDOWN_TIMEOUT", default_value_t = 10.0)]
    shutdown_timeout: f64,
    /// Seconds a server-initiated WebSocket close waits for the peer's close frame.
    #[arg(long, env = "PARTYRING_CLOSE_TIMEOUT", default_value_t = 5.0)]
    close_timeout: f64,
    /// Keep room storage (and the `main` party's history) on disk and replay it at start.
    #[arg(long, env = "PARTYRING_PERSIST", default_value_t = true, action = clap::ArgAction::Set)]
    persist: bool,
    /// Directory for the storage logs (one per core).
    #[arg(long, env = "PARTYRING_DATA_DIR", default_value = ".partyring")]
    data_dir: PathBuf,
    /// When a storage write is durable: `always` (fsync before answering), `every <ms>`, `never`.
    #[arg(long, env = "PARTYRING_FSYNC", default_value = "always")]
    fsync: FsyncPolicy,
    /// Cross-origin requests: `off`, `*` (any origin), or a comma-separated list of origins.
    #[arg(long, env = "PARTYRING_CORS", default_value = "off", value_parser = parse_cors)]
    cors: Cors,
    /// With several nodes behind a load balancer: the balancer's address (`host:port`), where
    /// party-to-party fetches are sent so they reach the node that owns the room.
    #[arg(long, env = "PARTYRING_FETCH_ENTRY")]
    fetch_entry: Option<std::net::SocketAddr>,
    /// Event loop setup: `auto` (the fastest the kernel accepts: defer, then coop, then plain,
    /// then epoll), or force one of `defer` (io_uring SINGLE_ISSUER|DEFER_TASKRUN), `coop`
    /// (COOP_TASKRUN|TASKRUN_FLAG), `plain` (no setup flags), `epoll` (no io_uring). A forced
    /// mode the kernel refuses stops the start.
    #[arg(long, env = "PARTYRING_RING_MODE", default_value = "auto")]
    ring_mode: partyring::config::RingMode,
    /// How parked WebSockets receive: `epoll` (readiness, then a recv syscall; the default) or
    /// `ring` (io_uring: one multishot recv per socket into a core's shared provided buffers,
    /// 2 MiB per core; stops the start if the kernel refuses). PERF.md §1k measures both.
    #[arg(long, env = "PARTYRING_WS_RECV", default_value = "epoll")]
    ws_recv: partyring::config::RecvMode,
    /// How WebSocket frames are sent: `auto` (the default: `ring` where the kernel has it,
    /// else `syscall`), `ring` (io_uring send SQEs, 16 per enter; stops the start if the kernel
    /// refuses) or `syscall` (one sendmsg per connection and event-loop pass). PERF.md §1m
    /// measures both.
    #[arg(long, env = "PARTYRING_WS_SEND", default_value = "auto")]
    ws_send: partyring::config::SendMode,
    /// Serve the static files under this directory (PartyKit's `--serve`): every path that is
    /// not a room, `/metrics` or `/parties/...`; `/` is its `index.html` (else the demo page).
    #[arg(long, env = "PARTYRING_SERVE")]
    serve: Option<PathBuf>,
    /// Seconds browsers may cache served files (`Cache-Control: public, max-age=N`); 0: `no-cache`
    /// (revalidated each time, answered 304 while unchanged).
    #[arg(
        long,
        env = "PARTYRING_SERVE_BROWSER_TTL",
        default_value_t = 0,
        requires = "serve"
    )]
    serve_browser_ttl: u64,
    /// Single-page app: a GET for a path with no file gets `index.html`.
    #[arg(long, env = "PARTYRING_SERVE_SPA", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", requires = "serve")]
    serve_spa: bool,
    /// A named cron, `NAME=EXPR` (repeatable; `;` separates several in the variable): at each
    /// time of EXPR (5 fields, or 6 with seconds first; UTC) every party's `on_cron` runs, on
    /// core 0. The built-in `main` party posts `{"cron":NAME,...}` into its room NAME.
    #[arg(long, env = "PARTYRING_CRON", value_delimiter = ';', value_parser = parse_cron)]
    cron: Vec<NamedCron>,
    /// How the built-in `yjs` party keeps its documents in room storage: `snapshot` (the merged
    /// state when the last client leaves and every 10 s while edits continue), `history`
    /// (every update, compacted past 10 MB), or `none`.
    #[arg(long, env = "PARTYRING_YJS_PERSIST", default_value = "snapshot", value_parser = parse_yjs_persist)]
    yjs_persist: partyring::yjs::Persistence,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive such as
    /// `partyring=debug`). `RUST_LOG` is used when this is not given.
    #[arg(long, env = "PARTYRING_LOG")]
    log: Option<String>,
    /// Test hook: storage faults to inject (docs/storage-faults.md). Never set in production.
    #[arg(long, env = "PARTYRING_STORAGE_FAULTS", hide = true)]
    storage_faults: Option<FaultPlan>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Cut each storage log in the data directory at its first bad record (the server refuses
    /// to start on a log damaged in the middle). Says what it dropped. Stop the server first.
    Repair {
        /// Directory of the storage logs (default: the server's `--data-dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `partyring repair`: one line per log, exit 0; an error is one line and exit 1.
fn repair(dir: &std::path::Path) -> ExitCode {
    match partyring::repair(dir) {
        Ok(logs) => {
            for r in logs {
                match r.cut_at {
                    None => println!(
                        "{}: intact ({} records), nothing dropped",
                        r.path.display(),
                        r.records_kept
                    ),
                    Some(at) => println!(
                        "{}: first bad record at byte offset {at} ({}); cut there: dropped {} \
                         records ({} bytes), kept {} records",
                        r.path.display(),
                        r.reason.unwrap_or("bad"),
                        r.records_dropped,
                        r.bytes_dropped,
                        r.records_kept
                    ),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: repair: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_cors(s: &str) -> Result<Cors, String> {
    match s.trim() {
        "" | "off" | "false" => Ok(Cors::Off),
        "*" | "any" | "true" => Ok(Cors::Any),
        list => {
            let origins: Vec<String> = list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect();
            match origins
                .iter()
                .find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
            {
                Some(bad) => Err(format!("{bad:?} is not an origin (scheme://host[:port])")),
                None => Ok(Cors::Origins(origins)),
            }
        }
    }
}

fn parse_cron(s: &str) -> Result<NamedCron, String> {
    let named: NamedCron = s.parse()?;
    partyring::party::cron::parse(&named.expr)?;
    Ok(named)
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(format!("{other:?}: expected on or off")),
    }
}

fn parse_yjs_persist(s: &str) -> Result<partyring::yjs::Persistence, String> {
    use partyring::yjs::Persistence;
    match s.trim() {
        "none" | "false" => Ok(Persistence::None),
        "snapshot" => Ok(Persistence::snapshot()),
        "history" | "true" => Ok(Persistence::history()),
        other => Err(format!("{other:?} is not one of snapshot, history, none")),
    }
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("--{name}: {e}"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print and exit 0 as usual.
        Err(e) if !e.use_stderr() => e.exit(),
        // A bad flag or value: clap's first line only ("error: invalid value ..."), exit 2.
        Err(e) => {
            let text = e.to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Repair { data_dir }) = &cli.command {
        return repair(data_dir.as_ref().unwrap_or(&cli.data_dir));
    }
    if let Some(plan) = cli.storage_faults.clone() {
        partyring::faults::install(plan);
    }
    partyring::set_heap_probe("mimalloc committed bytes", mimalloc_committed);
    partyring::set_heap_trim(mimalloc_trim);
    // Logs go to stderr; stdout carries only the "listening on" line, for scripts and tests.
    let filter = match &cli.log {
        Some(directive) => match tracing_subscriber::EnvFilter::try_new(directive) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: invalid value {directive:?} for '--log <LOG>': {e}");
                return ExitCode::from(2);
            }
        },
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let mut config = Config::new();
    config.host = cli.host;
    config.port = cli.port;
    if let Some(t) = cli.threads {
        config.threads = usize::from(t);
    }
    config.history_limit = cli.history_limit;
    config.max_message_bytes = cli.max_message_size;
    config.max_body_bytes = cli.max_body_size;
    config.max_outbound_bytes = cli.max_outbound;
    config.compression = cli.compression;
    config.compression_threshold = cli.compression_threshold;
    config.max_connections_per_core = cli.max_connections_per_core;
    config.persist = cli.persist;
    config.data_dir = cli.data_dir;
    config.fsync = cli.fsync;
    config.cors = cli.cors;
    config.fetch_entry = cli.fetch_entry;
    config.ring_mode = cli.ring_mode;
    config.ws_recv = cli.ws_recv;
    config.ws_send = cli.ws_send;
    config.serve = cli.serve.map(|dir| Serve {
        dir,
        browser_ttl: Duration::from_secs(cli.serve_browser_ttl),
        spa: cli.serve_spa,
    });
    config.crons = cli.cron;
    match (
        seconds("header-timeout", cli.header_timeout),
        seconds("idle-timeout", cli.idle_timeout),
        seconds("shutdown-timeout", cli.shutdown_timeout),
        seconds("ws-ping-interval", cli.ws_ping_interval),
        seconds("close-timeout", cli.close_timeout),
    ) {
        (Ok(h), Ok(i), Ok(s), Ok(p), Ok(c)) => {
            config.header_timeout = h;
            config.idle_timeout = i;
            config.shutdown_timeout = s;
            config.ws_ping_interval = (!p.is_zero()).then_some(p);
            config.close_timeout = c;
        }
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    raise_fd_limit();
    let signals = block_shutdown_signals();
    let (threads, shutdown_timeout) = (config.threads, config.shutdown_timeout);
    let yjs_persist = cli.yjs_persist;
    let server = Server::builder()
        .config(config)
        .party("yjs", move || partyring::yjs::YjsParty::new(yjs_persist))
        .start();
    match server {
        Ok(server) => {
            let (ring, recv, send) = (
                server.ring_mode.describe(),
                server.ws_recv.describe(),
                server.ws_send.describe(),
            );
            // The log line names the ring, receive and send modes; stdout keeps the one line
            // scripts parse.
            tracing::info!(addr = %server.addr, cores = threads, "partyring listening, ring mode {ring}, websocket receive {recv}, websocket send {send}");
            println!("partyring listening on http://{}", server.addr);
            let signal = wait_for_signal(&signals);
            tracing::info!(
                signal,
                "shutting down: closing WebSockets with 1001, finishing requests"
            );
            if server.shutdown(shutdown_timeout) {
                tracing::info!("shutdown complete");
            } else {
                tracing::warn!("shutdown deadline passed; exiting anyway");
            }
            ExitCode::SUCCESS
        }
        // Bad settings, and storage that must not be opened as it is (`InvalidData`: a log
        // damaged in the middle, a foreign file): the operator has to act, so exit 2.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            ) =>
        {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread before any core thread exists, so every thread
/// inherits the mask and the signals are only ever taken by `wait_for_signal`.
fn block_shutdown_signals() -> libc::sigset_t {
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before use; sigaddset and
    // pthread_sigmask only read and write it (and the thread's own mask).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for SIGINT or SIGTERM; returns its number.
fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised sigset_t and `sig` a valid out-pointer for the call.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
    sig
}

/// Raises the soft open-file limit to the hard one: every connection is an fd.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill and setrlimit to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
