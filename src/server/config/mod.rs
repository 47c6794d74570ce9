//! Command-line settings, spelled as memcached spells them (memcached.c `usage()`),
//! so that `stickless` can replace `memcached` in a start script unchanged.
//!
//! ```text
//!  mod.rs       what a server is configured with (Config and its parts)
//!  flags.rs     the command line: one table of flags, and the usage text
//!  extended.rs  memcached's -o options
//!  file.rs      --config-file, in /etc/memcached.conf's style
//!  checks.rs    what is refused once every flag is read
//! ```

mod checks;
mod extended;
mod file;
mod flags;
#[cfg(test)]
mod tests;

pub use checks::authenticated_protocol;
pub use file::config_file_options;
pub use flags::{USAGE, parse_args};

use crate::store::Clock;
use crate::tls::{MinVersion, PeerSettings, ServerSettings, VerifyMode};
use std::path::PathBuf;
use std::time::Duration;

/// `-B`: which protocols a connection may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// Decided by the first byte of each connection: 0x80 is binary.
    Auto,
    Ascii,
    Binary,
}

/// `--repl-sync`: when a write is acknowledged to its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplSync {
    /// At once; the peer applies it shortly after.
    Async,
    /// Once every linked peer has applied it (a peer declared down is not waited for).
    Ack,
    /// Once any one linked peer has applied it.
    One,
}

/// Replication with a peer (repcached's `-x`/`-X`, rebuilt).
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// `--peer HOST:PORT` (or `-x HOST` with `-X PORT`): the peer's replication port.
    /// Every `--peer`, in the order given; a node links with each.
    pub peers: Vec<String>,
    /// `--repl-listen ADDR:PORT`: where this node accepts its peer.
    pub listen: String,
    /// `--node-id`: this node's id in every version it makes; derived from the host
    /// name and ports when not given.
    pub node_id: Option<u16>,
    /// `--repl-secret FILE`: the shared secret both peers prove they hold.
    pub secret: Option<PathBuf>,
    /// `--repl-backlog SIZE`: bytes of recent changes kept for a peer that reconnects.
    pub backlog: usize,
    /// `--repl-timeout`: a peer silent for this long is declared down.
    pub timeout: Duration,
    /// `--repl-sync`.
    pub sync: ReplSync,
    /// `--repl-claims`: who must accept a claim; unset, a majority from three
    /// nodes on and every linked peer for a pair.
    pub claims: Option<crate::replication::ClaimRule>,
    /// `--repl-listen` was given: replicate (accepting the peer) even without `--peer`.
    pub listen_given: bool,
    /// Whether the node accepts its peer on `listen`. The daemon always does
    /// (repcached's port when `--repl-listen` is not given); an embedded node only
    /// when given `--repl-listen`, so that it never takes a local daemon's port.
    pub accept: bool,
    /// `--repl-cluster`: a name both peers must share, so that a node is never
    /// joined to another pair's cache by a wrong address.
    pub cluster: String,
    /// `--repl-tombstone`: seconds a deleted key's version is kept, so that an
    /// older write arriving late (a reconnecting peer's) cannot bring it back.
    pub tombstone_secs: u32,
    /// `--repl-wait-sync SECS`: at start, a node that dials a peer serves clients
    /// only once the peer has sent everything it holds (or after this long, if it
    /// cannot be reached). 0: at once.
    pub wait_sync: Duration,
    /// `--repl-tls-cert`, `--repl-tls-key`, `--repl-tls-ca`: the link runs over
    /// mutual TLS, each node verifying the other's certificate against the CA.
    pub tls: Option<PeerSettings>,
    /// `--repl-insecure`: a non-loopback `--repl-listen` replicates in clear text
    /// (still authenticated by `--repl-secret`).
    pub insecure: bool,
}

impl ReplicationConfig {
    /// Whether this node replicates: it names a peer, or waits for one.
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty() || self.listen_given
    }
}

/// repcached's replication port (`-X` default), kept for the listener.
pub const REPL_DEFAULT_PORT: u16 = 11212;

/// How long a (re)started node that dials a peer waits for the peer's sync before it
/// serves anyway: a full sync of a million 100-byte items takes 1.2-1.3 s here
/// (BENCHMARKS.md, full sync), and a load balancer's health checks usually give a
/// starting server 10 s or more.
pub const DEFAULT_WAIT_SYNC: Duration = Duration::from_secs(10);

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            peers: Vec::new(),
            listen: format!("127.0.0.1:{REPL_DEFAULT_PORT}"),
            accept: true,
            node_id: None,
            secret: None,
            // Room for about 100,000 changes to session-sized keys: a reconnect
            // after a blip of seconds under load resyncs partially.
            backlog: 16 * 1024 * 1024,
            // Six missed heartbeats at the default 500 ms interval.
            timeout: Duration::from_secs(3),
            sync: ReplSync::Async,
            claims: None,
            listen_given: false,
            cluster: "stickless".into(),
            // Ten minutes: longer than a peer may stay away and still resume from
            // a 16 MiB backlog at a few thousand writes a second.
            tombstone_secs: 600,
            wait_sync: DEFAULT_WAIT_SYNC,
            tls: None,
            insecure: false,
        }
    }
}

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// `-p`: TCP port.
    pub port: u16,
    /// `-l`: addresses to listen on; each may carry its own `:port`.
    pub listen: Vec<String>,
    /// `-s`: a unix socket to listen on instead of TCP (as in memcached, it
    /// disables the network listeners).
    pub unix_socket: Option<PathBuf>,
    /// `-a`: the unix socket's permission bits.
    pub unix_mask: u32,
    /// `-b`: listen backlog.
    pub backlog: i32,
    /// `-t`: worker threads.
    pub threads: usize,
    /// `-c`: simultaneous connections.
    pub max_connections: usize,
    /// `-m`: item memory in bytes.
    pub memory_limit: usize,
    /// `-M`: answer out-of-memory instead of evicting.
    pub no_evict: bool,
    /// `-I`: largest item, in bytes.
    pub item_size_max: usize,
    /// `-R`: requests served per connection before it yields to the others.
    pub reqs_per_event: usize,
    /// `-v`: 0 errors only, 1 warnings, 2 every request.
    pub verbosity: u8,
    /// Store shards (a power of two).
    pub shards: usize,
    /// How often the background sweep looks at a slice of one shard.
    pub sweep_interval: Duration,
    /// Buckets one sweep step looks at.
    pub sweep_buckets: usize,
    /// The store's clock; tests use a manual one.
    pub clock: Clock,
    /// `-B`: protocol negotiation.
    pub protocol: ProtocolChoice,
    /// `-S`: binary connections must authenticate with SASL PLAIN first.
    pub sasl: bool,
    /// The `user:password` file SASL checks against (`--sasl-pwdb`, or memcached's
    /// `MEMCACHED_SASL_PWDB` environment variable).
    pub sasl_pwdb: Option<PathBuf>,
    /// `-Y`: text connections must authenticate first, against this file.
    pub auth_file: Option<PathBuf>,
    /// `-A`: the `shutdown` command stops the daemon.
    pub enable_shutdown: bool,
    /// `-F`: `flush_all` is refused.
    pub disable_flush_all: bool,
    /// `-C`: no CAS uniques (every one reads 0).
    pub disable_cas: bool,
    /// `--protect-prefix`, repeatable: keys never evicted while live.
    pub protected_prefixes: Vec<String>,
    /// Replication settings; replication runs when a peer is named.
    pub replication: ReplicationConfig,
    /// The ASP.NET State Server port; off unless given.
    pub aspnet: AspNetConfig,
    /// `-Z` and `-o ssl_*`: TLS on the client ports.
    pub tls: TlsConfig,
    /// How the process runs: `-d`, `-P`, `-u`, `-k`, `-r`.
    pub service: ServiceConfig,
    /// `-o idle_timeout`: connections idle this long are closed (0: never).
    pub idle_timeout: Duration,
    /// Options memcached knows that mean nothing here, each with why; said at `-v`.
    pub notes: Vec<String>,
    /// `--metrics-listen ADDR:PORT`: Prometheus metrics at `/metrics`.
    pub metrics_listen: Option<String>,
    /// `-e FILE`: items are saved here at a graceful stop and loaded at start.
    pub memory_file: Option<PathBuf>,
}

/// How the process runs, as memcached's service flags say.
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    /// `-d`: fork, detach from the terminal, and return once listening.
    pub daemonize: bool,
    /// `-P`: where the process id is written (removed at exit).
    pub pid_file: Option<PathBuf>,
    /// `-u`: the user to become, when started as root, once the ports are bound.
    pub user: Option<String>,
    /// `-k`: lock all memory (`mlockall`).
    pub lock_memory: bool,
    /// `-r`: raise the core file limit to its maximum.
    pub core_dumps: bool,
}

/// `-Z` and memcached's `-o ssl_*` options.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// `-Z`: TCP listeners serve TLS, except those given as `-l notls:ADDR`.
    pub enabled: bool,
    pub chain_cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    pub verify_mode: VerifyMode,
    pub min_version: MinVersion,
    /// `ssl_ciphers`: an OpenSSL cipher list, which rustls has no use for (it offers
    /// only its own modern suites); kept for `stats settings`.
    pub ciphers: Option<String>,
    /// `ssl_wbuf_size`, in bytes; kept for `stats settings` (rustls seals replies in
    /// records of its own size).
    pub wbuf_size: usize,
    /// `ssl_kernel_tls`: asked for; rustls keeps the encryption in user space.
    pub kernel_tls: bool,
    /// `--tls-handshake-timeout`: a connection whose handshake has not finished by
    /// then is closed, so that clients that never finish one hold nothing for long.
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: false,
            chain_cert: None,
            key: None,
            ca_cert: None,
            verify_mode: VerifyMode::None,
            min_version: MinVersion::Tls12,
            ciphers: None,
            // memcached's default (`ssl_wbuf_size`, 16 KiB).
            wbuf_size: 16 * 1024,
            kernel_tls: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// How long a TLS handshake may take: a client on a slow link completes one in a
/// few round trips, well under a second; ten leaves room for a loaded host.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsConfig {
    /// The client ports' TLS settings, when `-Z` is given.
    pub fn server_settings(&self) -> Result<Option<ServerSettings>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let chain_cert = self.chain_cert.clone().ok_or_else(|| {
            "-Z needs -o ssl_chain_cert=FILE (and ssl_key=FILE unless the key is in that file)".to_string()
        })?;
        Ok(Some(ServerSettings {
            chain_cert,
            key: self.key.clone(),
            ca_cert: self.ca_cert.clone(),
            verify_mode: self.verify_mode,
            min_version: self.min_version,
        }))
    }
}

/// Splits memcached's `notls:` prefix off a `-l` entry: that listener stays
/// plaintext under `-Z`.
pub fn split_notls(entry: &str) -> (bool, &str) {
    match entry.strip_prefix("notls:") {
        Some(rest) => (true, rest),
        None => (false, entry),
    }
}

/// `--aspnet-listen` and its companions.
#[derive(Clone, Debug)]
pub struct AspNetConfig {
    /// `--aspnet-listen ADDR:PORT`.
    pub listen: Option<String>,
    /// `--aspnet-allow-remote`: serve a non-loopback address without a replication
    /// secret, as Windows' `AllowRemoteConnection` does.
    pub allow_remote: bool,
    /// `--aspnet-max-body BYTES`: the largest session accepted.
    pub max_body: usize,
}

impl Default for AspNetConfig {
    fn default() -> Self {
        AspNetConfig { listen: None, allow_remote: false, max_body: crate::protocol::aspnet::DEFAULT_MAX_BODY }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 11211,
            listen: Vec::new(),
            unix_socket: None,
            // memcached's `-a` default: only the owner may connect.
            unix_mask: 0o700,
            // memcached's defaults (memcached.c `settings_init`).
            backlog: 1024,
            threads: 4,
            max_connections: 1024,
            memory_limit: crate::store::DEFAULT_MEMORY_LIMIT,
            no_evict: false,
            item_size_max: crate::protocol::command::DEFAULT_ITEM_SIZE_MAX,
            reqs_per_event: 20,
            verbosity: 0,
            shards: crate::store::DEFAULT_SHARDS,
            sweep_interval: crate::store::sweeper::DEFAULT_INTERVAL,
            sweep_buckets: crate::store::sweeper::DEFAULT_BUCKETS,
            clock: Clock::System,
            protocol: ProtocolChoice::Auto,
            sasl: false,
            sasl_pwdb: None,
            auth_file: None,
            enable_shutdown: false,
            disable_flush_all: false,
            disable_cas: false,
            protected_prefixes: Vec::new(),
            aspnet: AspNetConfig::default(),
            tls: TlsConfig::default(),
            service: ServiceConfig::default(),
            idle_timeout: Duration::ZERO,
            notes: Vec::new(),
            metrics_listen: None,
            memory_file: None,
            replication: ReplicationConfig::default(),
        }
    }
}

impl Config {
    /// This node's id: `--node-id`, or one derived from the host name, the client
    /// port and the replication address, so that it stays the same across restarts
    /// and differs between two nodes on one host. Two nodes that still collide are
    /// told so when they meet, and one must be given `--node-id`.
    pub fn node_id(&self) -> u16 {
        if let Some(id) = self.replication.node_id {
            return id;
        }
        let mut host = [0u8; 256];
        // SAFETY: gethostname writes at most `host.len()` bytes into the buffer.
        let rc = unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) };
        let host_len = if rc == 0 { host.iter().position(|&b| b == 0).unwrap_or(host.len()) } else { 0 };
        let mut identity = [&host[..host_len], &self.port.to_be_bytes(), self.replication.listen.as_bytes()].concat();
        // Ports picked by the kernel (0) make nothing stable to derive from, and
        // two such nodes on one host would share an id: take a random one.
        if self.port == 0 || self.replication.listen.ends_with(":0") {
            let mut random = [0u8; 8];
            // SAFETY: getrandom writes at most `random.len()` bytes into the buffer.
            let _ = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
            identity.extend_from_slice(&random);
        }
        (fnv1a(&identity) % (u64::from(crate::store::version::NODE_MAX) + 1)) as u16
    }
}

/// FNV-1a, 64 bits (Fowler, Noll and Vo's published offset basis and prime): a hash
/// that is the same in every build, unlike std's, so a node keeps its derived id.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<Config>),
    Help,
    Version,
}
