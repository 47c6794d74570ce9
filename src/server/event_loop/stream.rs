//! The kinds of socket the daemon serves: TCP (`-p`, `-l`) and a unix socket
//! (`-s`, `-a`), and TLS over TCP (`-Z`). Each is an enum over mio's types, so a connection reads, writes and
//! registers the same way whichever it is.

use crate::tls::TlsStream;
use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

/// A client connection.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS over TCP (`-Z`).
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Sends what TLS holds sealed for the socket; true when nothing is left
    /// (always, for a plain socket, which holds nothing of ours).
    pub fn push(&mut self) -> io::Result<bool> {
        match self {
            Stream::Tls(s) => s.push(),
            _ => Ok(true),
        }
    }

    /// A TLS connection whose handshake has not finished.
    pub fn handshaking(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.is_handshaking())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.socket().as_raw_fd(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Tls(s) => s.socket().as_fd(),
        }
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Tls(s) => s.socket_mut().register(registry, token, interests),
        }
    }
    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Tls(s) => s.socket_mut().reregister(registry, token, interests),
        }
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Tls(s) => s.socket_mut().deregister(registry),
        }
    }
}

/// A socket address as memcached's `stats conns` prints it: `tcp:1.2.3.4:5`,
/// `tcp6:[::1]:5`, `unix:/path`.
pub fn describe_tcp(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => format!("tcp:{v4}"),
        SocketAddr::V6(v6) => format!("tcp6:[{}]:{}", v6.ip(), v6.port()),
    }
}

pub fn describe_unix(path: &Path) -> String {
    format!("unix:{}", path.display())
}

/// A listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    /// The path is removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

/// A connection just accepted, with what `stats conns` says of it.
pub struct Accepted {
    pub stream: Stream,
    /// The client's address.
    pub peer: String,
    /// The address it connected to.
    pub local: String,
    /// It came in on the ASP.NET State Server port.
    pub aspnet: bool,
}

impl Listener {
    /// Accepts one connection (or `WouldBlock`).
    pub fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                // The address the client reached, which for a wildcard listener is
                // the interface it came in on.
                let local = stream.local_addr().map(describe_tcp).unwrap_or_else(|_| self.describe());
                Ok(Accepted { stream: Stream::Tcp(stream), peer: describe_tcp(peer), local, aspnet: false })
            }
            Listener::Unix(listener, _) => {
                let (stream, _) = listener.accept()?;
                // Unix clients are unnamed: the listener's path is all there is to say.
                Ok(Accepted {
                    stream: Stream::Unix(stream),
                    peer: "unix:".into(),
                    local: self.describe(),
                    aspnet: false,
                })
            }
        }
    }

    /// The address as `stats conns` prints it.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(listener) => {
                listener.local_addr().map(describe_tcp).unwrap_or_else(|e| format!("tcp:?({e})"))
            }
            Listener::Unix(_, path) => describe_unix(path),
        }
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    pub fn as_source(&mut self) -> &mut dyn Source {
        match self {
            Listener::Tcp(listener) => listener,
            Listener::Unix(listener, _) => listener,
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
