//! TLS for the client ports (memcached's `-Z`) and the replication link, on rustls's
//! buffered, non-blocking API: [`TlsStream`] reads and writes like a socket, so a
//! connection's event loop stays the same with or without it.
//!
//! Two choices keep it fast:
//! - **Reads** take up to `CIPHER_READ` bytes of ciphertext per system call into
//!   the stream's own buffer and feed rustls from memory (rustls reads 4 KiB per
//!   call when given the socket), and return as much plaintext as the caller has
//!   room for, so that a short read still means the socket is drained.
//! - **Writes** hand rustls every pending reply at once (`write_vectored`), which
//!   seals them into one record of up to 16 KiB, then send the records with one
//!   `writev`. memcached `-Z` calls `SSL_write` once per reply, a record each.

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Ciphertext taken from the socket per `read` call: one full record (RFC 8446,
/// 5.2: 2^14 bytes of plaintext, 256 of expansion, a 5-byte header), where rustls
/// alone would read 4 KiB per call.
const CIPHER_READ: usize = 16 * 1024 + 256 + 5;

/// Sealed records a connection holds for a socket that is not taking them, before
/// it accepts no more replies (rustls's own default, which memcached's
/// `ssl_wbuf_size` of 16 KiB is far below: ours holds a pipeline of 4 KiB values).
const SEND_BUFFER_LIMIT: usize = 64 * 1024;

/// Resumable sessions the server remembers (TLS 1.2 session ids; TLS 1.3 resumes
/// from tickets, which need no server memory).
const SESSION_CACHE: usize = 4096;

/// The first byte of every TLS connection: a handshake record (RFC 8446, 5.1).
const HANDSHAKE_RECORD: u8 = 0x16;

/// memcached's `ssl_verify_mode`: whether clients show a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// 0: no certificate is asked for.
    None,
    /// 1: asked for, checked against `ssl_ca_cert` if given, not required.
    Request,
    /// 2: required, and checked.
    Require,
    /// 3: required once per connection (OpenSSL's `SSL_VERIFY_CLIENT_ONCE`, which
    /// differs from 2 only on renegotiation, which rustls never does).
    Once,
}

impl VerifyMode {
    pub fn from_number(n: u8) -> Option<VerifyMode> {
        Some(match n {
            0 => VerifyMode::None,
            1 => VerifyMode::Request,
            2 => VerifyMode::Require,
            3 => VerifyMode::Once,
            _ => return None,
        })
    }

    /// The mode as memcached's `stats settings` shows it: the OpenSSL flags it
    /// stands for (`SSL_VERIFY_PEER` 1, `_FAIL_IF_NO_PEER_CERT` 2, `_CLIENT_ONCE` 4).
    pub fn openssl_flags(self) -> u8 {
        match self {
            VerifyMode::None => 0,
            VerifyMode::Request => 1,
            VerifyMode::Require => 3,
            VerifyMode::Once => 7,
        }
    }
}

/// memcached's `ssl_min_version`. TLS 1.0 and 1.1 are not offered by rustls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

impl MinVersion {
    /// memcached's names and numbers: `2`/`tlsv1.2`, `3`/`tlsv1.3`.
    pub fn parse(text: &str) -> Result<MinVersion, String> {
        match text {
            "2" | "tlsv1.2" => Ok(MinVersion::Tls12),
            "3" | "tlsv1.3" => Ok(MinVersion::Tls13),
            "0" | "1" | "tlsv1.0" | "tlsv1.1" | "tlsv1" => Err(format!(
                "ssl_min_version {text}: TLS 1.0 and 1.1 are not supported; use 2 (tlsv1.2) or 3 (tlsv1.3)"
            )),
            _ => Err("could not parse argument to ssl_min_version".into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MinVersion::Tls12 => "tlsv1.2",
            MinVersion::Tls13 => "tlsv1.3",
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            MinVersion::Tls12 => &BOTH,
            MinVersion::Tls13 => &BOTH[..1],
        }
    }
}

/// What a server's TLS is made of: memcached's `ssl_chain_cert`, `ssl_key`,
/// `ssl_ca_cert`, `ssl_verify_mode` and `ssl_min_version`.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub chain_cert: PathBuf,
    /// The private key; in `chain_cert` when not given, as memcached allows.
    pub key: Option<PathBuf>,
    /// The CAs whose certificates clients may show.
    pub ca_cert: Option<PathBuf>,
    pub verify_mode: VerifyMode,
    pub min_version: MinVersion,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain, in memcached's words when it cannot be read.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let failed = |reason: String| format!("Error loading the certificate chain: {} : {reason}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if chain.is_empty() {
        return Err(failed("no certificate in the file".into()));
    }
    Ok(chain)
}

/// When `chain` stops being valid: the earliest `notAfter` of its certificates, in
/// seconds since the Unix epoch, since the chain is only as good as its
/// shortest-lived member. None if no certificate parses (rustls has accepted
/// them, so that is not expected).
pub fn chain_expiry(chain: &[CertificateDer<'_>]) -> Option<u64> {
    chain.iter().filter_map(|cert| not_after(cert.as_ref()).ok()).min()
}

/// A certificate's `notAfter`, in Unix seconds: RFC 5280, 4.1: Certificate is a
/// SEQUENCE whose first element is TBSCertificate, a SEQUENCE of an optional
/// `[0]` version, serialNumber, signature, issuer and validity, which is a
/// SEQUENCE of notBefore and notAfter (UTCTime or GeneralizedTime).
fn not_after(der_bytes: &[u8]) -> der::Result<u64> {
    use der::asn1::{AnyRef, GeneralizedTime, UtcTime};
    use der::{Decode, SliceReader, Tag, Tagged};
    let certificate = AnyRef::from_der(der_bytes)?;
    let mut certificate = SliceReader::new(certificate.value())?;
    let tbs = AnyRef::decode(&mut certificate)?;
    let mut fields = SliceReader::new(tbs.value())?;
    let mut serial = AnyRef::decode(&mut fields)?;
    if serial.tag().is_context_specific() {
        serial = AnyRef::decode(&mut fields)?;
    }
    serial.tag().assert_eq(Tag::Integer)?;
    // signature and issuer, then validity.
    AnyRef::decode(&mut fields)?;
    AnyRef::decode(&mut fields)?;
    let validity = AnyRef::decode(&mut fields)?;
    validity.tag().assert_eq(Tag::Sequence)?;
    let mut times = SliceReader::new(validity.value())?;
    let _not_before = AnyRef::decode(&mut times)?;
    let not_after = AnyRef::decode(&mut times)?;
    let since_epoch = match not_after.tag() {
        Tag::UtcTime => UtcTime::try_from(not_after)?.to_unix_duration(),
        _ => GeneralizedTime::try_from(not_after)?.to_unix_duration(),
    };
    Ok(since_epoch.as_secs())
}

/// A private key (PKCS#8, PKCS#1 or SEC1 PEM), in memcached's words when it cannot be read.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("Error loading the key: {} : {e}", path.display()))
}

/// The trusted CAs of a file.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let failed = |reason: String| format!("Error loading the CA certificate: {} : {reason}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| failed(e.to_string()))? {
        roots.add(cert.map_err(|e| failed(e.to_string()))?).map_err(|e| failed(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(failed("no certificate in the file".into()));
    }
    Ok(Arc::new(roots))
}

/// Builds a server configuration from the files, as they are now.
fn build_server(
    settings: &ServerSettings,
    ticketer: &Arc<dyn rustls::server::ProducesTickets>,
) -> Result<(ServerConfig, Option<u64>), String> {
    let chain = load_chain(&settings.chain_cert)?;
    let expiry = chain_expiry(&chain);
    let key = load_key(settings.key.as_deref().unwrap_or(&settings.chain_cert))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(settings.min_version.versions())
        .map_err(|e| e.to_string())?;
    let builder = match (settings.verify_mode, &settings.ca_cert) {
        (VerifyMode::None, _) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider());
            let verifier = if mode == VerifyMode::Request { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        (_, None) => {
            return Err("ssl_verify_mode 1 to 3 needs ssl_ca_cert: the CAs clients' certificates must come from".into());
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| format!("Error loading the key: {e}"))?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = Arc::clone(ticketer);
    config.send_half_rtt_data = false;
    Ok((config, expiry))
}

/// A client port's TLS: the configuration new connections get, rebuilt from the
/// files on `refresh_certs` or SIGHUP, and its counters for `stats`.
pub struct ServerTls {
    settings: ServerSettings,
    current: RwLock<Arc<ServerConfig>>,
    /// Kept across reloads, so that tickets issued before one still resume.
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    /// When the certificates were last loaded.
    refreshed: RwLock<Instant>,
    /// Connections whose handshake failed or never finished (`ssl_handshake_errors`).
    pub handshake_errors: AtomicU64,
    /// When the certificates loaded last stop being valid (Unix seconds; 0 unknown).
    expires_at: AtomicU64,
}

impl ServerTls {
    pub fn new(settings: ServerSettings) -> Result<ServerTls, String> {
        let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
        let (config, expiry) = build_server(&settings, &ticketer)?;
        Ok(ServerTls {
            settings,
            current: RwLock::new(Arc::new(config)),
            ticketer,
            refreshed: RwLock::new(Instant::now()),
            handshake_errors: AtomicU64::new(0),
            expires_at: AtomicU64::new(expiry.unwrap_or(0)),
        })
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// Loads the certificate files again; connections made from now on use them.
    /// On failure the current ones stay.
    pub fn reload(&self) -> Result<(), String> {
        let (config, expiry) = build_server(&self.settings, &self.ticketer)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.expires_at.store(expiry.unwrap_or(0), Ordering::Relaxed);
        *self.refreshed.write().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    /// Seconds since the certificates were loaded (`time_since_server_cert_refresh`).
    pub fn since_refresh(&self) -> u64 {
        self.refreshed.read().unwrap_or_else(|e| e.into_inner()).elapsed().as_secs()
    }

    /// When the certificates in use stop being valid, in Unix seconds.
    pub fn expires_at(&self) -> Option<u64> {
        Some(self.expires_at.load(Ordering::Relaxed)).filter(|&at| at != 0)
    }

    /// Wraps an accepted socket; the handshake runs as it is read.
    pub fn accept(&self, sock: TcpStream) -> io::Result<TlsStream> {
        let config = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream::new(sock, conn.into()))
    }

    pub fn count_handshake_error(&self) {
        self.handshake_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one node of a pair shows the other: its certificate and key, and the CA
/// the other's must come from (`--repl-tls-cert`, `--repl-tls-key`, `--repl-tls-ca`).
#[derive(Clone, Debug)]
pub struct PeerSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Both ends of a mutual-TLS link: each side verifies the other's certificate
/// against the CA, whichever dialled.
pub struct PeerTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    /// When this node's certificate chain stops being valid, in Unix seconds.
    expires_at: Option<u64>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    pub fn new(settings: &PeerSettings) -> Result<PeerTls, String> {
        let roots = load_roots(&settings.ca)?;
        let chain = load_chain(&settings.cert)?;
        let expires_at = chain_expiry(&chain);
        let key = load_key(&settings.key)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .map_err(|e| e.to_string())?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("Error loading the key: {} : {e}", settings.key.display()))?;
        server.session_storage = ServerSessionMemoryCache::new(16);
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("Error loading the key: {} : {e}", settings.key.display()))?;
        Ok(PeerTls { server: Arc::new(server), client: Arc::new(client), expires_at })
    }

    /// When this node's certificate chain stops being valid, in Unix seconds.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    pub fn accept(&self, sock: TcpStream) -> io::Result<TlsStream> {
        let conn = rustls::ServerConnection::new(Arc::clone(&self.server)).map_err(io::Error::other)?;
        Ok(TlsStream::new(sock, conn.into()))
    }

    /// Dials through TLS: `host` is the name (or address) the peer's certificate must carry.
    pub fn connect(&self, sock: TcpStream, host: &str) -> io::Result<TlsStream> {
        TlsStream::client(sock, Arc::clone(&self.client), host)
    }
}

/// A TCP socket, with or without TLS over it, read and written alike.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl MaybeTls {
    /// The socket, to register with a poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => s.socket_mut(),
        }
    }

    /// Sends the records TLS holds for the socket; false while some wait for it.
    pub fn push(&mut self) -> io::Result<bool> {
        match self {
            MaybeTls::Plain(_) => Ok(true),
            MaybeTls::Tls(s) => s.push(),
        }
    }
}

impl Read for MaybeTls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(s) => s.read(buf),
            MaybeTls::Tls(s) => s.read(buf),
        }
    }
}

impl Write for MaybeTls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeTls::Plain(s) => s.write(buf),
            MaybeTls::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TCP socket with TLS over it, read and written as the socket would be.
pub struct TlsStream {
    sock: TcpStream,
    tls: rustls::Connection,
    /// Ciphertext read from the socket, not yet handed to rustls.
    cipher: Vec<u8>,
    cipher_start: usize,
    cipher_end: usize,
    /// The first byte received was not a TLS handshake: the client speaks
    /// something else, and gets nothing back, not even an alert.
    not_tls: bool,
    /// Nothing has been received yet.
    fresh: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("sock", &self.sock).field("handshaking", &self.is_handshaking()).finish()
    }
}

impl TlsStream {
    fn new(sock: TcpStream, mut tls: rustls::Connection) -> TlsStream {
        tls.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsStream { sock, tls, cipher: Vec::new(), cipher_start: 0, cipher_end: 0, not_tls: false, fresh: true }
    }

    /// A client's side, verifying the server as `name` (a host name or address);
    /// the handshake runs as the stream is written and read.
    pub fn client(sock: TcpStream, config: Arc<ClientConfig>, name: &str) -> io::Result<TlsStream> {
        let name = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("server name {name}: {e}")))?;
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsStream::new(sock, conn.into()))
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Whether the connection resumed an earlier session.
    pub fn resumed(&self) -> bool {
        matches!(self.tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed))
    }

    /// Sends the records rustls holds; false when the socket took only part of them
    /// (its writable event resumes the rest).
    pub fn push(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                // A dial still connecting: its writable event comes once it has.
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected) => {
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Hands rustls the ciphertext held, and answers what the handshake needs.
    fn feed(&mut self) -> io::Result<()> {
        let mut held = &self.cipher[self.cipher_start..self.cipher_end];
        let taken = self.tls.read_tls(&mut held)?;
        if taken == 0 {
            // rustls always makes room for more once its plaintext has been read,
            // which the caller does first.
            return Err(io::Error::other("TLS input stalled"));
        }
        self.cipher_start += taken;
        if self.cipher_start == self.cipher_end {
            self.cipher_start = 0;
            self.cipher_end = 0;
        }
        if let Err(error) = self.tls.process_new_packets() {
            if !self.not_tls {
                // The alert that says why (a certificate from an unknown CA, say).
                let _ = self.push();
            }
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        self.push().map(drop)
    }

    /// Reads the socket once into the ciphertext buffer; `Ok(None)` when it would
    /// block, `Ok(Some(drained))` otherwise, where drained means the read was short.
    fn fill(&mut self) -> io::Result<Option<bool>> {
        if self.cipher.is_empty() {
            self.cipher = vec![0; CIPHER_READ];
        }
        loop {
            match self.sock.read(&mut self.cipher[self.cipher_end..]) {
                Ok(0) => {
                    // End of the stream: rustls says whether it was closed cleanly.
                    let _ = self.tls.read_tls(&mut io::empty());
                    return Ok(Some(true));
                }
                Ok(n) => {
                    if self.fresh {
                        self.fresh = false;
                        self.not_tls = self.cipher[self.cipher_end] != HANDSHAKE_RECORD;
                    }
                    let offered = self.cipher.len() - self.cipher_end;
                    self.cipher_end += n;
                    return Ok(Some(n < offered));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Read for TlsStream {
    /// Returns as much plaintext as fits in `buf` or as the socket holds: a read
    /// shorter than `buf` means the socket is drained, as with plain TCP.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        let mut drained = false;
        loop {
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(n) => {
                    filled += n;
                    // `Ok(0)` with room left: the peer closed the session cleanly.
                    if n == 0 || filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The plaintext before an unclean end first; the error comes next call.
                Err(_) if filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
            }
            if self.cipher_start < self.cipher_end {
                self.feed()?;
                continue;
            }
            if drained {
                return if filled > 0 { Ok(filled) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            match self.fill()? {
                Some(short) => drained = short,
                None => return if filled > 0 { Ok(filled) } else { Err(io::ErrorKind::WouldBlock.into()) },
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Seals all of `bufs` that fits in the send buffer (in records of up to 16 KiB,
    /// spanning the slices), then sends what the socket takes.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        for _ in 0..2 {
            let accepted = self.tls.writer().write_vectored(bufs)?;
            let all_sent = self.push()?;
            if accepted > 0 {
                return Ok(accepted);
            }
            if !all_sent {
                break;
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TlsStream {
    /// Says goodbye properly when the socket takes it at once.
    fn drop(&mut self) {
        if !self.not_tls && !self.tls.is_handshaking() {
            self.tls.send_close_notify();
            let _ = self.push();
        }
    }
}
