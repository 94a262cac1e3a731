//! Starting and stopping the cores: one OS thread per core, each with its own monoio ring and
//! listener.
//!
//! `Builder::start` binds every listener first (so a bad address fails synchronously and
//! `--port 0` resolves to one port), then spawns the threads and returns a [`Server`] handle.
//! `Server::shutdown` asks every core (through its inbox) to stop accepting, close its
//! WebSockets with 1001 and finish in-flight requests, and waits for them up to a deadline.

pub mod core;
pub mod handoff;
pub mod shard;

use std::{
    io,
    net::SocketAddr,
    sync::{atomic::AtomicUsize, mpsc, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    config::Config,
    net::listener,
    party::{Party, PartySet},
};

pub use self::core::CoreStats;

/// A running server.
pub struct Server {
    /// The address every core listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// One entry per core.
    pub stats: Vec<Arc<CoreStats>>,
    /// Whether the cores run the io_uring driver (false: the epoll fallback).
    pub io_uring: bool,
    inboxes: handoff::Inboxes,
    threads: Vec<JoinHandle<()>>,
    /// Each core thread sends its id here as it ends.
    finished: mpsc::Receiver<usize>,
}

/// Configures a server: its `Config` and the parties it serves.
///
/// ```no_run
/// use partyring::{party::{Party, Request}, http::Response, room::Room, Config, Server};
///
/// struct Hello;
/// impl Party for Hello {
///     fn on_request(&self, _room: &mut Room, _req: &Request<'_>) -> Response {
///         Response::text(200, "hello")
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

    /// Binds the listeners and starts the cores.
    ///
    /// # Errors
    /// An invalid configuration (`InvalidInput`), or binding the address or spawning a thread
    /// failed.
    pub fn start(self) -> io::Result<Server> {
        let Builder { config, parties } = self;
        if config.threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "threads must be at least 1",
            ));
        }
        // The outbound bound must hold at least one largest message with its frame header, or
        // echoing / broadcasting such a message would close the recipient every time.
        if config.max_outbound_bytes < config.max_message_bytes + 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max outbound bytes must exceed the max message size (plus 14 bytes of header)",
            ));
        }
        let config = Arc::new(config);
        let (listeners, addr) =
            listener::bind_all(SocketAddr::new(config.host, config.port), config.threads)?;
        let (inboxes, receivers) = handoff::Inboxes::new(config.threads, config.inbox_capacity);
        let io_uring = monoio::utils::detect_uring();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pin = config.pin_threads && config.threads <= cpus;
        let (done_tx, finished) = mpsc::channel();
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
            let thread = std::thread::Builder::new()
                .name(format!("partyring-core-{id}"))
                .spawn(move || {
                    if pin {
                        pin_to_cpu(id);
                    }
                    self::core::run(id, shared, listener, inbox, core_stats);
                    let _ = done_tx.send(id);
                })?;
            threads.push(thread);
        }
        Ok(Server {
            addr,
            stats,
            io_uring,
            inboxes,
            threads,
            finished,
        })
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
            parties: PartySet::builtin(),
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
