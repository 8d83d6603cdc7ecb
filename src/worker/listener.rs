//! Public listeners: one `SO_REUSEPORT` socket per worker on the same port,
//! so the kernel spreads new connections across workers without a shared
//! accept queue or lock.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

pub fn bind_reuseport(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // Inherited by accepted sockets on Linux: no per-connection setsockopt.
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s.into())
}

/// Binds `n` sockets on `addr`. Port 0 is resolved by the first bind and the
/// others join that port, so `127.0.0.1:0` works with any worker count.
pub fn bind_all(addr: SocketAddr, n: usize, backlog: u32) -> io::Result<Vec<TcpListener>> {
    let first = bind_reuseport(addr, backlog)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(bind_reuseport(actual, backlog)?);
    }
    Ok(all)
}

/// A plain listener (admin): no port sharing, so a second gateway on the same
/// admin address fails loudly instead of splitting the admin traffic.
pub fn bind_single(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}
