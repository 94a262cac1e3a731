//! Starting the cores: one OS thread per core, each with its own monoio ring and listener.
//!
//! `Server::start` binds every listener first (so a bad address fails synchronously and
//! `--port 0` resolves to one port), then spawns the threads and returns. The threads run until
//! the process exits.

pub mod core;
pub mod handoff;
pub mod shard;

use std::{io, net::SocketAddr, sync::Arc, thread::JoinHandle};

use crate::{config::Config, net::listener};

pub use self::core::CoreStats;

/// A running server.
pub struct Server {
    /// The address every core listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// One entry per core.
    pub stats: Vec<Arc<CoreStats>>,
    /// Whether the cores run the io_uring driver (false: the epoll fallback).
    pub io_uring: bool,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners and starts `config.threads` cores.
    ///
    /// # Errors
    /// Binding the address or spawning a thread failed.
    pub fn start(config: Config) -> io::Result<Server> {
        if config.threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "threads must be at least 1",
            ));
        }
        let config = Arc::new(config);
        let (listeners, addr) =
            listener::bind_all(SocketAddr::new(config.host, config.port), config.threads)?;
        let (inboxes, receivers) = handoff::Inboxes::new(config.threads, config.inbox_capacity);
        let io_uring = monoio::utils::detect_uring();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pin = config.pin_threads && config.threads <= cpus;
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        for (id, (listener, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let core_stats = Arc::new(CoreStats::default());
            stats.push(core_stats.clone());
            let (config, inboxes) = (config.clone(), inboxes.clone());
            let thread = std::thread::Builder::new()
                .name(format!("partyring-core-{id}"))
                .spawn(move || {
                    if pin {
                        pin_to_cpu(id);
                    }
                    self::core::run(id, config, listener, inbox, inboxes, core_stats);
                })?;
            threads.push(thread);
        }
        Ok(Server {
            addr,
            stats,
            io_uring,
            threads,
        })
    }

    /// Blocks until every core has stopped (in practice: until the process exits).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
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
