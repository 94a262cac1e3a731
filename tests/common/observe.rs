//! What a test can see of a server from outside, to wait for an event instead of sleeping a
//! guessed time: `/metrics` values, and the memory and descriptors of a process.

use std::net::SocketAddr;

use super::{eventually, get, Client};

/// The unlabelled (all cores) value of the `/metrics` series `name`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = Client::connect(addr)
        .request(get("/metrics").as_bytes())
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// `partyring_received_bytes_total`: bytes the server read from client sockets, HTTP and
/// WebSocket, all cores. The scrape's own request is counted in it.
pub fn received_bytes(addr: SocketAddr) -> u64 {
    metric(addr, "partyring_received_bytes_total")
}

/// Waits until the server has read `n` more bytes than `before` (a [`received_bytes`] value),
/// not counting the scrapes this makes: a barrier for "the server has read what I sent", so the
/// next write lands in a later read, or a signal finds a request in flight. Other clients'
/// bytes count too, so it proves the bytes were read only where nothing else is talking.
pub fn wait_until_read(addr: SocketAddr, before: u64, n: usize, what: &str) {
    let scrape = get("/metrics").len() as u64;
    let mut scrapes = 0;
    eventually(what, || {
        scrapes += 1;
        received_bytes(addr) >= before + scrapes * scrape + n as u64
    });
}

/// The resident set of process `pid` (`/proc/<pid>/status` VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}
