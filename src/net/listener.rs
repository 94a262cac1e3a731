//! One SO_REUSEPORT listening socket per core, all on the same address.
//!
//! The sockets are bound here, on the starting thread, before any core runs: binding errors are
//! reported synchronously, and `--port 0` can pick one free port with the first socket and bind
//! the others to it. The kernel then spreads incoming connections over the cores' sockets by a
//! hash of the 4-tuple; which core *owns* a connection's room is decided later (`shard`).

use std::{io, net::SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept queue length per socket (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;

/// Binds `count` SO_REUSEPORT listeners on `addr`; returns them and the address they share.
pub fn bind_all(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(BACKLOG)?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listener has no inet address"))?;
        }
        listeners.push(socket.into());
    }
    Ok((listeners, bound))
}
