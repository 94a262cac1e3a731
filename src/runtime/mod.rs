//! Starting and stopping the cores: one OS thread per core, each with its own monoio ring and
//! listener.
//!
//! `Builder::start` binds every listener first (so a bad address fails synchronously and
//! `--port 0` resolves to one port), then spawns the threads and returns a [`Server`] handle.
//! `Server::shutdown` asks every core (through its inbox) to stop accepting, close its
//! WebSockets with 1001 and finish in-flight requests, and waits for them up to a deadline.

pub mod alarms;
pub mod assets;
pub mod core;
pub mod cron;
pub mod doorbell;
pub mod fetch;
pub mod handoff;
mod host;
pub mod http_conn;
pub mod metrics;
pub mod ring;
pub mod ws_conn;

use std::{
    io,
    net::SocketAddr,
    sync::{atomic::AtomicUsize, mpsc, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use std::future::Future;

use crate::{
    config::Config,
    net::listener,
    party::{CronEvent, CronJob, EchoParty, MainParty, Party, PartySet, Reply, Request},
    room::Context,
};

pub use self::core::CoreStats;

/// A running server.
pub struct Server {
    /// The address every core listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// One entry per core.
    pub stats: Vec<Arc<CoreStats>>,
    /// How the cores' event loops were set up (never `Auto`: the mode `Auto` resolved to).
    pub ring_mode: ring::RingMode,
    /// How the cores' parked WebSockets receive.
    pub ws_recv: crate::config::RecvMode,
    /// How the cores send WebSocket frames (never `Auto`: what it resolved to).
    pub ws_send: crate::config::SendMode,
    inboxes: handoff::Inboxes,
    threads: Vec<JoinHandle<()>>,
    /// Each core thread sends its id here as it ends.
    finished: mpsc::Receiver<usize>,
}

/// Configures a server: its `Config` and the parties it serves.
///
/// ```no_run
/// use partyring::{party::{Party, Reply, Request}, room::Room, Config, Response, Server};
///
/// struct Hello;
/// impl Party for Hello {
///     fn on_request(&self, _room: &mut Room, _req: &Request<'_>) -> Reply {
///         Response::text(200, "hello").into()
///     }
/// }
///
/// let server = Server::builder()
///     .config(Config::new())
///     .party("hello", || Hello)
///     .start()
///     .expect("binds");
/// println!("serving /parties/hello/:room on {}", server.addr);
/// server.wait();
/// ```
pub struct Builder {
    config: Config,
    parties: PartySet,
    /// The first bad cron expression given to the builder, reported by `start`.
    invalid: Option<String>,
}

impl Builder {
    /// Replaces the configuration (default: `Config::new()`).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Serves party `name` at `/parties/<name>/:room`, each core with its own instance made by
    /// `make`. Replaces a party of the same name (including the built-in `main` and `echo`).
    #[must_use]
    pub fn party<P: Party + 'static>(
        mut self,
        name: &str,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        self.parties = self.parties.with(name, make);
        self
    }

    /// A server-level handler for requests that reach no room, not `/metrics` and no static
    /// file (PartyKit's `static onFetch`): return `Some(reply)` to answer, `None` to pass (then
    /// `--serve-spa`'s `index.html`, the demo page at `/`, or 404). It runs on the core that
    /// accepted the connection, with the request (body included) and the lobby, which reaches
    /// any room (`ctx.party_room("x", "r").fetch(..)`, in a `Reply::later`).
    ///
    /// ```no_run
    /// use partyring::{Response, Server};
    ///
    /// Server::builder()
    ///     .on_fetch(|req, _lobby| {
    ///         (req.path() == "/health").then(|| Response::text(200, "ok").into())
    ///     })
    ///     .run()
    ///     .unwrap();
    /// ```
    #[must_use]
    pub fn on_fetch(
        mut self,
        handler: impl Fn(&Request<'_>, &Context) -> Option<Reply> + Send + Sync + 'static,
    ) -> Self {
        self.parties = self.parties.with_on_fetch(Arc::new(handler));
        self
    }

    /// Runs `handler` on schedule `expr` (five fields, or six with seconds first; UTC), on
    /// core 0, once per scheduled time (see `runtime/cron.rs`). The future it returns is
    /// spawned there; `cron.party_room(..)` reaches any room. A bad expression fails `start`
    /// with `InvalidInput`.
    ///
    /// ```no_run
    /// use partyring::{room::FetchRequest, Server};
    ///
    /// Server::builder()
    ///     .cron("*/5 * * * *", |cron| async move {
    ///         let resp = cron.party_room("main", "lobby").fetch(FetchRequest::get()).await;
    ///         println!("{} at {:?}: {}", cron.name, cron.scheduled, resp.status);
    ///     })
    ///     .run()
    ///     .unwrap();
    /// ```
    #[must_use]
    pub fn cron<F, Fut>(mut self, expr: &str, handler: F) -> Self
    where
        F: Fn(CronEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let handler: crate::party::cron::CronHandler =
            Arc::new(move |event| Box::pin(handler(event)));
        match CronJob::handler(expr, handler) {
            Ok(job) => self.parties = self.parties.with_cron(job),
            Err(e) => self.invalid = self.invalid.or(Some(e)),
        }
        self
    }

    /// A named cron (what `--cron NAME=EXPR` adds): at each time of `expr`, every party's
    /// `on_cron` runs with `name`, on core 0. A bad expression fails `start`.
    #[must_use]
    pub fn named_cron(mut self, name: &str, expr: &str) -> Self {
        match CronJob::named(name, expr) {
            Ok(job) => self.parties = self.parties.with_cron(job),
            Err(e) => self.invalid = self.invalid.or(Some(e)),
        }
        self
    }

    /// Binds the listeners and starts the cores.
    ///
    /// # Errors
    /// An invalid configuration (`InvalidInput`: a bad cron expression, a `--serve` directory
    /// that is not one), or binding the address or spawning a thread failed.
    pub fn start(self) -> io::Result<Server> {
        let Builder {
            mut config,
            mut parties,
            invalid,
        } = self;
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        if let Some(e) = invalid {
            return Err(bad(e));
        }
        for named in &config.crons {
            parties = parties.with_cron(CronJob::named(&named.name, &named.expr).map_err(bad)?);
        }
        if let Some(serve) = &mut config.serve {
            // Resolved once: each file's resolved path must lie under this one.
            serve.dir = std::fs::canonicalize(&serve.dir)
                .ok()
                .filter(|d| d.is_dir())
                .ok_or_else(|| bad(format!("--serve {}: not a directory", serve.dir.display())))?;
        }
        config.validate()?;
        if config.persist {
            check_data_dir(&config)?;
        }
        let config = Arc::new(config);
        let (listeners, addr) =
            listener::bind_all(SocketAddr::new(config.host, config.port), config.threads)?;
        let (inboxes, receivers) = handoff::Inboxes::new(config.threads, config.inbox_capacity)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pin = config.pin_threads && config.threads <= cpus;
        let (done_tx, finished) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let process_live = Arc::new(AtomicUsize::new(0));
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        for (id, (listener, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let core_stats = Arc::new(CoreStats::default());
            stats.push(core_stats.clone());
            let shared = self::core::Shared {
                config: config.clone(),
                parties: parties.clone(),
                inboxes: inboxes.clone(),
                process_live: process_live.clone(),
            };
            let done_tx = done_tx.clone();
            let ready_tx = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("partyring-core-{id}"))
                .spawn(move || {
                    if pin {
                        pin_to_cpu(id);
                    }
                    self::core::run(id, shared, listener, inbox, core_stats, ready_tx);
                    let _ = done_tx.send(id);
                })?;
            threads.push(thread);
        }
        drop(ready_tx);
        let mut server = Server {
            addr,
            stats,
            ring_mode: ring::RingMode::Auto,
            ws_recv: crate::config::RecvMode::Epoll,
            ws_send: crate::config::SendMode::Syscall,
            inboxes,
            threads,
            finished,
        };
        // Every core reports once it has opened its storage and built its ring; a core that
        // cannot stops the whole start (the others are shut down again).
        let mut failure = None;
        for _ in 0..config.threads {
            match ready_rx.recv() {
                Ok(Ok((mode, recv, send))) => {
                    server.ws_recv = recv;
                    if server.ring_mode != ring::RingMode::Auto && server.ws_send != send {
                        tracing::warn!(first = %server.ws_send, other = %send, "cores send websocket frames in different modes");
                    }
                    server.ws_send = send;
                    if server.ring_mode != ring::RingMode::Auto && server.ring_mode != mode {
                        tracing::warn!(first = %server.ring_mode, other = %mode, "cores run different ring modes");
                    }
                    server.ring_mode = mode;
                }
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => {
                    failure = failure.or_else(|| Some(io::Error::other("a core thread died")));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            server.shutdown(Duration::from_secs(1));
            return Err(e);
        }
        Ok(server)
    }

    /// Starts the server and blocks until its cores stop.
    ///
    /// # Errors
    /// As [`Builder::start`].
    pub fn run(self) -> io::Result<()> {
        self.start()?.wait();
        Ok(())
    }
}

impl Server {
    /// A builder serving the built-in parties (`main`, `echo`) with the default config.
    pub fn builder() -> Builder {
        Builder {
            config: Config::new(),
            parties: builtin_parties(),
            invalid: None,
        }
    }

    /// Starts a server with the built-in parties.
    ///
    /// # Errors
    /// As [`Builder::start`].
    pub fn start(config: Config) -> io::Result<Server> {
        Server::builder().config(config).start()
    }

    /// Blocks until every core has stopped.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Graceful shutdown: every core stops accepting, closes its WebSockets with 1001 and
    /// finishes in-flight requests; waits up to `timeout` for all of them. Returns true if every
    /// core finished in time (cores that did not are abandoned: the process is about to exit).
    pub fn shutdown(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.inboxes.shutdown_all(deadline);
        // A little grace past the cores' own deadline for them to report back.
        let report_by = deadline + Duration::from_millis(200);
        let mut left = self.threads.len();
        while left > 0 {
            let wait = report_by.saturating_duration_since(Instant::now());
            match self.finished.recv_timeout(wait) {
                Ok(_) => left -= 1,
                Err(_) => return false,
            }
        }
        for t in self.threads {
            let _ = t.join();
        }
        true
    }
}

/// The binary's parties: `main` (PartyKit's MessageServer, keeping `history_limit` messages
/// per room), `echo`, and `yjs` (Yjs documents with snapshot persistence, `crate::yjs`).
pub fn builtin_parties() -> PartySet {
    PartySet::default()
        .with_configured("main", |config| MainParty::new(config.history_limit))
        .with("echo", || EchoParty)
        .with("yjs", || {
            crate::yjs::YjsParty::new(crate::yjs::Persistence::snapshot())
        })
}

/// The file in a data directory that records how many cores wrote it.
const CORES_FILE: &str = "cores";

/// Rooms are sharded by core count, and each core replays only its own log: a data directory
/// written by N cores is only readable by N cores. Records N on first use; refuses another N.
fn check_data_dir(config: &Config) -> io::Result<()> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("data dir {}: {e}", dir.display())))?;
    let path = dir.join(CORES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n == config.threads => Ok(()),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "data dir {} was written by {n} cores and rooms are sharded by core count: \
                     start with --threads {n} (or use another --data-dir)",
                    dir.display()
                ),
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a core count", path.display()),
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::write(&path, format!("{}\n", config.threads))
        }
        Err(e) => Err(e),
    }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: `set` is a plain bitmask on the stack; sched_setaffinity only reads it, for the
    // calling thread (pid 0), and its size is passed exactly.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(
                cpu,
                "could not pin core thread: {}",
                io::Error::last_os_error()
            );
        }
    }
}
