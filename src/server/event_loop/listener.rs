//! Listening sockets (made with socket2 for the backlog and socket options) and the
//! acceptor thread that hands each new connection to a worker, round robin.

use super::stream::{Accepted, Listener, Stream};
use crate::server::Shared;
use crate::server::config::Config;
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

/// What a listener serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// The ASP.NET State Server protocol rather than memcached's.
    pub aspnet: bool,
    /// TLS (`-Z`, unless the address was given as `notls:`).
    pub tls: bool,
}

/// Resolves `-l` entries (each `ip`, `ip:port`, `[v6]:port` or a host name, maybe
/// after memcached's `notls:`) with `-p`; each comes with whether it serves TLS.
fn listen_addrs(config: &Config) -> io::Result<Vec<(SocketAddr, bool)>> {
    let tls = config.tls.enabled;
    if config.listen.is_empty() {
        // memcached's default: every interface, IPv4 and IPv6.
        return Ok(vec![
            (SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.port), tls),
            (SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), config.port), tls),
        ]);
    }
    let mut addrs = Vec::new();
    for entry in &config.listen {
        let (notls, entry) = crate::server::config::split_notls(entry.trim());
        let tls = tls && !notls;
        if let Ok(ip) = entry.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            addrs.push((SocketAddr::new(ip, config.port), tls));
        } else if let Ok(addr) = entry.parse::<SocketAddr>() {
            addrs.push((addr, tls));
        } else {
            let resolved = (entry, config.port)
                .to_socket_addrs()
                .or_else(|_| entry.to_socket_addrs())
                .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve listen address '{entry}': {e}")))?;
            addrs.extend(resolved.map(|addr| (addr, tls)));
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

/// The ASP.NET State Server listener, when `--aspnet-listen` asks for one: TLS
/// under `-Z` unless given as `notls:ADDR:PORT`.
pub fn bind_aspnet(config: &Config) -> io::Result<Option<(Listener, Port)>> {
    let Some(listen) = &config.aspnet.listen else {
        return Ok(None);
    };
    let (notls, listen) = crate::server::config::split_notls(listen);
    let port = Port { aspnet: true, tls: config.tls.enabled && !notls };
    let addr: SocketAddr = listen.parse().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("--aspnet-listen '{listen}' is not an ADDR:PORT"))
    })?;
    let listener = bind_one(addr, config.backlog)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (--aspnet-listen): {e}")))?;
    if !addr.ip().is_loopback() {
        log::warn!("ASP.NET State Server clients on {addr} are served without authentication (README, ASP.NET)");
    }
    Ok(Some((Listener::Tcp(listener), port)))
}

/// Binds every listen address, or only the unix socket when `-s` is given (as in
/// memcached, it turns the network off). With the default (all interfaces), a host
/// without IPv6 still starts on IPv4.
pub fn bind(config: &Config) -> io::Result<Vec<(Listener, Port)>> {
    if let Some(path) = &config.unix_socket {
        // A unix socket reaches no one off this host: plaintext, as memcached serves it.
        return Ok(vec![(bind_unix(path, config.unix_mask, config.backlog)?, Port::default())]);
    }
    let addrs = listen_addrs(config)?;
    let mut listeners = Vec::new();
    for (i, (addr, tls)) in addrs.iter().enumerate() {
        match bind_one(*addr, config.backlog) {
            Ok(listener) => listeners.push((Listener::Tcp(listener), Port { aspnet: false, tls: *tls })),
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
/// (TLS hides the traffic; it authenticates clients only under `ssl_verify_mode` 2
/// or 3.)
fn warn_if_open(config: &Config, addrs: &[(SocketAddr, bool)]) {
    if config.sasl || config.auth_file.is_some() {
        return;
    }
    let verified = matches!(config.tls.verify_mode, crate::tls::VerifyMode::Require | crate::tls::VerifyMode::Once);
    for (addr, _) in addrs.iter().filter(|(addr, tls)| !(addr.ip().is_loopback() || *tls && verified)) {
        log::warn!(
            "clients on {addr} are served without authentication: anyone who reaches it can read, write and \
             flush every item (bind with -l 127.0.0.1, or require -S or -Y; README, Security)"
        );
    }
}

pub struct Acceptor {
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<(Listener, Port)>,
    handoffs: Vec<(Sender<Accepted>, Arc<Waker>)>,
    shared: Arc<Shared>,
    next_worker: usize,
}

impl Acceptor {
    /// Accepts on `listeners`, each serving what its [`Port`] says.
    pub fn new(
        mut listeners: Vec<(Listener, Port)>,
        handoffs: Vec<(Sender<Accepted>, Arc<Waker>)>,
        shared: Arc<Shared>,
    ) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        for (i, (listener, _)) in listeners.iter_mut().enumerate() {
            poll.registry().register(listener.as_source(), Token(i), Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Acceptor { poll, waker, listeners, handoffs, shared, next_worker: 0 })
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
            let (listener, port) = &self.listeners[index];
            match listener.accept() {
                Ok(mut accepted) => {
                    accepted.aspnet = port.aspnet;
                    if !self.shared.connections.try_open(self.shared.config.max_connections) {
                        let max = self.shared.config.max_connections;
                        log::info!("refusing {}: {max} connections open (-c)", accepted.peer);
                        // Over TLS the line would be garbage before a handshake.
                        if !accepted.aspnet && !port.tls {
                            let _ = accepted.stream.write(TOO_MANY_CONNECTIONS);
                        }
                        continue;
                    }
                    if port.tls
                        && let Some(tls) = self.shared.tls.as_deref()
                    {
                        accepted.stream = match accepted.stream {
                            Stream::Tcp(sock) => match tls.accept(sock) {
                                Ok(stream) => Stream::Tls(Box::new(stream)),
                                Err(e) => {
                                    log::warn!("cannot start TLS with {}: {e}", accepted.peer);
                                    self.shared.connections.closed();
                                    continue;
                                }
                            },
                            other => other,
                        };
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
