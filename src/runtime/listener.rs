//! Listening sockets, set up with socket2: one SO_REUSEPORT listener per loop on the same
//! address, so the kernel spreads new connections over the loops without an acceptor thread
//! and without a shared accept queue (each loop accepts only its own).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds one non-blocking listener with SO_REUSEADDR and SO_REUSEPORT set.
pub fn bind_reuseport(addr: SocketAddr, backlog: u32) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Binds `loops` listeners on `addr`. With port 0 the first one picks the port and the others
/// join it, so tests get one free port shared by every loop.
pub fn bind_all(
    addr: SocketAddr,
    loops: usize,
    backlog: u32,
) -> io::Result<Vec<mio::net::TcpListener>> {
    let first = bind_reuseport(addr, backlog)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..loops {
        all.push(bind_reuseport(actual, backlog)?);
    }
    Ok(all)
}
