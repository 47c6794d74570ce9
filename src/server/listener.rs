//! Listening sockets (made with socket2 for the backlog and socket options) and the
//! acceptor thread that hands each new connection to a worker, round robin.

use super::Shared;
use super::config::Config;
use super::stream::{Accepted, Listener};
use crossbeam_channel::Sender;
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const WAKER: Token = Token(usize::MAX);

/// What memcached sends to a connection over `-c` before closing it
/// (memcached.c `conn_new` with `maxconns_fast`).
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Resolves `-l` entries (each `ip`, `ip:port`, `[v6]:port` or a host name) with `-p`.
fn listen_addrs(config: &Config) -> io::Result<Vec<SocketAddr>> {
    if config.listen.is_empty() {
        // memcached's default: every interface, IPv4 and IPv6.
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), config.port),
        ]);
    }
    let mut addrs = Vec::new();
    for entry in &config.listen {
        let entry = entry.trim();
        if let Ok(ip) = entry.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            addrs.push(SocketAddr::new(ip, config.port));
        } else if let Ok(addr) = entry.parse::<SocketAddr>() {
            addrs.push(addr);
        } else {
            let resolved = (entry, config.port)
                .to_socket_addrs()
                .or_else(|_| entry.to_socket_addrs())
                .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve listen address '{entry}': {e}")))?;
            addrs.extend(resolved);
        }
    }
    Ok(addrs)
}

fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit TCP_NODELAY, as memcached sets it on its listeners.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Binds `-s`: a stale socket file left by a crash is replaced (as memcached does),
/// anything else at the path is an error, and the permissions are `-a`'s.
fn bind_unix(path: &Path, mask: u32, backlog: i32) -> io::Result<Listener> {
    let context =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on unix socket {}: {e}", path.display()));
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(context(io::Error::new(io::ErrorKind::AlreadyExists, "the path exists and is not a socket")));
        }
        std::fs::remove_file(path).map_err(context)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(context)?;
    socket.bind(&SockAddr::unix(path)?).map_err(context)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask)).map_err(context)?;
    socket.listen(backlog).map_err(context)?;
    socket.set_nonblocking(true)?;
    let std_listener: std::os::unix::net::UnixListener = socket.into();
    Ok(Listener::Unix(UnixListener::from_std(std_listener), path.to_path_buf()))
}

/// The ASP.NET State Server listener, when `--aspnet-listen` asks for one.
pub fn bind_aspnet(config: &Config) -> io::Result<Option<Listener>> {
    let Some(listen) = &config.aspnet.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = listen.parse().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("--aspnet-listen '{listen}' is not an ADDR:PORT"))
    })?;
    let listener = bind_one(addr, config.backlog)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (--aspnet-listen): {e}")))?;
    if !addr.ip().is_loopback() {
        log::warn!("ASP.NET State Server clients on {addr} are served without authentication (README, ASP.NET)");
    }
    Ok(Some(Listener::Tcp(listener)))
}

/// Binds every listen address, or only the unix socket when `-s` is given (as in
/// memcached, it turns the network off). With the default (all interfaces), a host
/// without IPv6 still starts on IPv4.
pub fn bind(config: &Config) -> io::Result<Vec<Listener>> {
    if let Some(path) = &config.unix_socket {
        return Ok(vec![bind_unix(path, config.unix_mask, config.backlog)?]);
    }
    let addrs = listen_addrs(config)?;
    let mut listeners = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        match bind_one(*addr, config.backlog) {
            Ok(listener) => listeners.push(Listener::Tcp(listener)),
            Err(e) if config.listen.is_empty() && i > 0 => log::warn!("not listening on {addr}: {e}"),
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))),
        }
    }
    warn_if_open(config, &addrs);
    Ok(listeners)
}

/// memcached's default bind (every interface) is kept for drop-in use, but a port
/// anyone on the network can reach without authentication is said at start, at the
/// default verbosity: every session in the cache is readable and writable there.
fn warn_if_open(config: &Config, addrs: &[SocketAddr]) {
    if config.sasl || config.auth_file.is_some() {
        return;
    }
    for addr in addrs.iter().filter(|addr| !addr.ip().is_loopback()) {
        log::warn!(
            "clients on {addr} are served without authentication: anyone who reaches it can read, write and \
             flush every item (bind with -l 127.0.0.1, or require -S or -Y; README, Security)"
        );
    }
}

pub struct Acceptor {
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<Listener>,
    handoffs: Vec<(Sender<Accepted>, Arc<Waker>)>,
    shared: Arc<Shared>,
    next_worker: usize,
    /// The last this many listeners serve the ASP.NET State Server protocol.
    aspnet_listeners: usize,
}

impl Acceptor {
    /// Accepts on `listeners`, the last `aspnet_listeners` of which serve the ASP.NET
    /// State Server protocol.
    pub fn new(
        mut listeners: Vec<Listener>,
        aspnet_listeners: usize,
        handoffs: Vec<(Sender<Accepted>, Arc<Waker>)>,
        shared: Arc<Shared>,
    ) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(listener.as_source(), Token(i), Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Acceptor { poll, waker, listeners, handoffs, shared, next_worker: 0, aspnet_listeners })
    }

    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut backoff = None;
        while !self.shared.shutting_down.load(Ordering::Acquire) {
            if let Err(e) = self.poll.poll(&mut events, backoff) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("acceptor: poll failed: {e}");
                    break;
                }
                continue;
            }
            backoff = None;
            // After running out of file descriptors, retry every listener once the
            // pause is over (readiness is edge-triggered, so no new event may come).
            let ready: Vec<usize> = if events.is_empty() {
                (0..self.listeners.len()).collect()
            } else {
                events.iter().map(|e| e.token().0).filter(|&t| t < self.listeners.len()).collect()
            };
            for index in ready {
                if !self.accept_all(index) {
                    // memcached stops accepting for a while when out of descriptors.
                    self.shared.connections.listen_disabled.fetch_add(1, Ordering::Relaxed);
                    backoff = Some(Duration::from_millis(10));
                }
            }
        }
        // Stop accepting: dropping the listeners closes them.
        self.shared.connections.accepting.store(false, Ordering::Relaxed);
        self.listeners.clear();
    }

    /// Accepts until the listener would block. False when out of file descriptors.
    fn accept_all(&mut self, index: usize) -> bool {
        loop {
            match self.listeners[index].accept() {
                Ok(mut accepted) => {
                    accepted.aspnet = index >= self.listeners.len() - self.aspnet_listeners;
                    if !self.shared.connections.try_open(self.shared.config.max_connections) {
                        let max = self.shared.config.max_connections;
                        log::info!("refusing {}: {max} connections open (-c)", accepted.peer);
                        if !accepted.aspnet {
                            let _ = accepted.stream.write(TOO_MANY_CONNECTIONS);
                        }
                        continue;
                    }
                    let (tx, waker) = &self.handoffs[self.next_worker];
                    self.next_worker = (self.next_worker + 1) % self.handoffs.len();
                    if tx.send(accepted).is_ok() {
                        let _ = waker.wake();
                    } else {
                        self.shared.connections.closed();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    log::warn!("accept: {e}; pausing accepts (raise the file limit or lower -c)");
                    return false;
                }
                Err(e) => {
                    log::warn!("accept: {e}");
                    return true;
                }
            }
        }
    }
}
