//! Listening sockets: one per worker on the same address, with SO_REUSEPORT so the kernel spreads
//! new connections across the workers and nothing crosses threads on the request path.
//!
//! SO_REUSEPORT would also let a second process bind the same port and silently take half the
//! connections. Before binding, a plain socket without SO_REUSEPORT is bound to the address: if
//! anyone listens there already (another uring-httpd included), that bind fails and start-up stops
//! with a clear message instead.
//!
//! Listening on `::` is dual stack: IPV6_V6ONLY is turned off explicitly, because its default
//! comes from the `net.ipv6.bindv6only` sysctl, which some systems and containers set to 1, and
//! `host = "::"` should mean every address, IPv4 included, wherever it runs.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog per listener; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;

/// Binds `count` listeners on `addr`. Port 0 picks one free port shared by all of them.
pub fn bind_all(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    if addr.port() != 0 {
        ensure_free(addr)?;
    }
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(bind_one(addr)?);
    }
    Ok(all)
}

fn socket_for(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.ip().is_unspecified() && addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    Ok(s)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket_for(addr)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into()).map_err(|e| in_use(addr, e))?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Fails with EADDRINUSE when any socket already listens on `addr`.
fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    let probe = socket_for(addr)?;
    probe.bind(&addr.into()).map_err(|e| in_use(addr, e))
}

fn in_use(addr: SocketAddr, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: the address is already in use by another program"),
        )
    } else {
        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
    }
}
