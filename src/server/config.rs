//! Command-line settings, spelled as memcached spells them (memcached.c `usage()`),
//! so that `stickless` can replace `memcached` in a start script unchanged.

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
    /// Once the peer has applied it (or has been declared down).
    Ack,
}

/// Replication with a peer (repcached's `-x`/`-X`, rebuilt).
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// `--peer HOST:PORT` (or `-x HOST` with `-X PORT`): the peer's replication port.
    pub peer: Option<String>,
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
        self.peer.is_some() || self.listen_given
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
            peer: None,
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

/// memcached `-I` bounds (memcached.h `ITEM_SIZE_MAX_LOWER_LIMIT` / `_UPPER_LIMIT`).
const ITEM_SIZE_MIN: usize = 1024;
const ITEM_SIZE_MAX: usize = 1024 * 1024 * 1024;

pub const USAGE: &str = "\
stickless, a memcached-compatible session cache
-p, --port=<num>          TCP port to listen on (default: 11211)
-U, --udp-port=<num>      UDP port; only 0 (off) is supported (default: 0)
-l, --listen=<addr>       interfaces to listen on, comma separated, each as
                          <ip> or <ip>:<port> (default: INADDR_ANY)
-s, --unix-socket=<file>  unix socket to listen on (disables TCP)
-a, --unix-mask=<mask>    the unix socket's access mask, in octal (default: 700)
-b, --listen-backlog=<num> listen backlog (default: 1024)
-t, --threads=<num>       number of worker threads (default: 4)
-c, --conn-limit=<num>    max simultaneous connections (default: 1024)
-m, --memory-limit=<num>  item memory in megabytes (default: 64)
-M, --disable-evictions   return error on memory exhausted instead of evicting
-I, --max-item-size=<num> adjusts max item size (default: 1m, min: 1k, max: 1024m)
-R, --max-reqs-per-event  maximum number of requests per event, limits the
                          requests processed per connection to prevent
                          starvation (default: 20)
-B, --protocol=<name>     protocol - one of ascii, binary, or auto (default: auto)
-S, --enable-sasl         serve binary connections only, after SASL PLAIN
    --sasl-pwdb=<file>    user:password lines for SASL (default: the file named
                          by MEMCACHED_SASL_PWDB)
-Y, --auth-file=<file>    serve text connections only, after a user:password line
                          of this file sent as the value of a set (wins over -S)
-A, --enable-shutdown     enable the ascii shutdown command
-F, --disable-flush-all   disable flush_all command
-C, --disable-cas         disable use of CAS
    --protect-prefix=<prefix> never evict live items whose key begins with it
                          (repeatable; e.g. memc.sess.key. for php-memcached's
                          sessions): a store that needs their room answers
                          SERVER_ERROR out of memory storing object
    --peer=<host:port>    replicate with this peer's replication port
    --repl-listen=<addr:port> where the peer connects (default: 127.0.0.1:11212)
    --node-id=<0-4095>    this node's id (default: derived from host and ports)
    --repl-secret=<file>  shared secret of the pair, proved by both nodes
    --repl-tls-cert=<file> this node's certificate (PEM) for the replication link,
    --repl-tls-key=<file>  its key, and the CA the peer's must come from: the link
    --repl-tls-ca=<file>   runs over mutual TLS (required when --repl-listen is not
                          a loopback address, unless --repl-insecure)
    --repl-insecure       replicate in clear text on a non-loopback --repl-listen
                          (with --repl-secret)
    --repl-backlog=<size> changes kept for a reconnecting peer (default: 16m)
    --repl-timeout=<secs> a silent peer is down after this long (default: 3)
    --repl-sync=<mode>    async, or ack: answer a write once the peer has it
                          (default: async)
    --repl-cluster=<name> name both peers must share (default: stickless)
    --repl-tombstone=<secs> how long a delete is remembered (default: 600)
    --repl-wait-sync=<secs> at start, listen for clients only once the peer has
                          sent what it holds, or after this long if it is down
                          (default: 10; 0 serves at once from what is here)
    --aspnet-listen=<addr:port> also serve the ASP.NET State Server protocol here
                          (42424 is Windows' port; loopback unless --repl-secret
                          or --aspnet-allow-remote is given; notls:<addr:port>
                          keeps it plaintext under -Z)
    --aspnet-allow-remote serve a non-loopback --aspnet-listen without a secret
    --aspnet-max-body=<size> the largest session accepted (default: 20m)
    --metrics-listen=<addr:port> serve Prometheus metrics at /metrics there
-x, --peer-host=<host>    repcached's peer option (with -X for its port)
-X, --repl-port=<num>     repcached's replication port, listened on and dialled
-Z, --enable-ssl          serve TLS on the TCP ports (with -o ssl_chain_cert=...);
                          -l notls:<ip>:<port> keeps a listener plaintext
-o, --extended            comma separated list of extended options:
   - idle_timeout:        close connections idle this many seconds (default: 0,
                          never); memcached's other options are accepted and
                          noted at -v
   - ssl_chain_cert:      certificate chain file in PEM format
   - ssl_key:             private key, if not part of the ssl_chain_cert
   - ssl_keyformat:       private key format (PEM only) (default: PEM)
   - ssl_verify_mode:     peer certificate verification mode, default is 0(None).
                          valid values are 0(None), 1(Request), 2(Require)
                          or 3(Once)
   - ssl_ciphers:         accepted; the modern suites of rustls are always used
   - ssl_ca_cert:         PEM format file of acceptable client CA's
   - ssl_wbuf_size:       accepted; replies are sealed in records of up to 16k
   - ssl_session_cache:   accepted; sessions always resume
   - ssl_kernel_tls:      accepted; encryption stays in user space
   - ssl_min_version:     minimum protocol version to accept (default: tlsv1.2)
                          valid values are 2(tlsv1.2) or 3(tlsv1.3)
    --tls-handshake-timeout=<secs> close a connection whose TLS handshake has
                          not finished by then (default: 10)
-d, --daemon              run as a daemon (returns once listening)
-P, --pidfile=<file>      save PID in <file> (removed at exit)
-u, --user=<user>         assume identity of <username> (only when run as root),
                          once the ports are bound
-e, --memory-file=<file>  warm restart: save the items here on SIGTERM, SIGINT,
                          SIGUSR1 or shutdown graceful, and load them at start
-k, --lock-memory         lock down all paged memory
-r, --enable-coredumps    maximize core file limit
-L, -f, -n, -D            accepted for start scripts (noted at -v)
-v, --verbose             verbose (print errors/warnings while in event loop)
-vv                       very verbose (also print client commands/responses)
    --config-file=<file>  read options from a file in /etc/memcached.conf's
                          style (one per line, # comments); later options win
-h, --help                print this help and exit
-V, --version             print version and exit
";

/// Parses memcached-style arguments (without the program name).
/// The protocol the client ports serve once authentication is taken into account,
/// by memcached's start-up rules (memcached.c `main`): `-S` authenticates binary
/// connections only, so it serves the binary protocol alone; `-Y` authenticates text
/// connections only, so it serves text alone, and wins over `-S` when both are given.
/// A `-B` (`specified`) that would leave a protocol open without its authentication
/// is refused with memcached's message, which `main` exits with EX_USAGE after. An
/// unspecified protocol is [`ProtocolChoice::Auto`], as in a [`Config`] built by hand.
pub fn authenticated_protocol(config: &Config, specified: bool) -> Result<ProtocolChoice, String> {
    let mut protocol = config.protocol;
    if config.sasl {
        if specified && protocol != ProtocolChoice::Binary {
            return Err("ERROR: You cannot allow the ASCII protocol while using SASL.".into());
        }
        protocol = ProtocolChoice::Binary;
    }
    if config.auth_file.is_some() {
        // memcached lets -S's binary stand for "unspecified" here: -S -Y serves text.
        if specified && protocol != ProtocolChoice::Ascii {
            return Err("ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.".into());
        }
        protocol = ProtocolChoice::Ascii;
    }
    Ok(protocol)
}

/// The options of a configuration file in `/etc/memcached.conf`'s style: one
/// option (and its value) per line, `#` comments, blank lines. Debian's start
/// script reads that file's `logfile` line itself; here the log goes to standard
/// error (the journal, under systemd), so the line is skipped.
pub fn config_file_options(path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the configuration file {path}: {e}"))?;
    let mut options = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with("logfile") {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((option, value)) if !option.contains('=') => {
                options.push(option.to_string());
                options.push(value.trim().to_string());
            }
            _ => options.push(line.to_string()),
        }
    }
    Ok(options)
}

pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, String> {
    let mut config = Config::default();
    // `--config-file FILE` stands for the options in the file, where it is given.
    let mut expanded = Vec::new();
    let mut given = args.into_iter();
    while let Some(arg) = given.next() {
        let file = match arg.strip_prefix("--config-file") {
            Some("") => Some(given.next().ok_or("option --config-file needs a file")?),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        };
        match file {
            Some(file) => expanded.extend(config_file_options(&file)?),
            None => expanded.push(arg),
        }
    }
    let mut args = expanded.into_iter();
    let (mut peer_host, mut repl_port): (Option<String>, Option<u16>) = (None, None);
    let (mut repl_cert, mut repl_key, mut repl_ca): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) =
        (None, None, None);
    let mut protocol_specified = false;
    while let Some(arg) = args.next() {
        // Split "--name=value", "-p11211" and "-p 11211" into a name and maybe a value.
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-') {
            if short.is_empty() {
                return Err(format!("unknown argument '{arg}'"));
            }
            if short.chars().all(|c| c == 'v') {
                config.verbosity = config.verbosity.saturating_add(short.len() as u8);
                continue;
            }
            let (n, rest) = short.split_at(short.chars().next().map_or(0, char::len_utf8));
            (n.to_string(), (!rest.is_empty()).then(|| rest.to_string()))
        } else {
            return Err(format!("unknown argument '{arg}'"));
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| format!("option -{name} needs {what}"))
        };
        match name.as_str() {
            "h" | "help" => return Ok(Invocation::Help),
            "V" | "version" => return Ok(Invocation::Version),
            "v" | "verbose" => config.verbosity = config.verbosity.saturating_add(1),
            "M" | "disable-evictions" => config.no_evict = true,
            "p" | "port" => config.port = number(&value("a port")?, "port")?,
            "U" | "udp-port" => {
                let udp: u16 = number(&value("a port")?, "UDP port")?;
                if udp != 0 {
                    return Err("UDP is not supported: -U accepts only 0 (off)".into());
                }
            }
            "l" | "listen" => config.listen.extend(value("an address")?.split(',').map(str::to_string)),
            "s" | "unix-socket" => config.unix_socket = Some(value("a path")?.into()),
            "a" | "unix-mask" => {
                let mask = value("an octal mask")?;
                config.unix_mask = u32::from_str_radix(&mask, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| format!("invalid unix socket mask '{mask}' (octal, at most 777)"))?;
            }
            "b" | "listen-backlog" => config.backlog = number(&value("a number")?, "backlog")?,
            "t" | "threads" => {
                config.threads = number(&value("a number")?, "threads")?;
                if config.threads == 0 {
                    return Err("Number of threads must be greater than 0".into());
                }
            }
            "c" | "conn-limit" => config.max_connections = number(&value("a number")?, "connection limit")?,
            "m" | "memory-limit" => {
                let megabytes: usize = number(&value("megabytes")?, "memory limit")?;
                if megabytes == 0 {
                    return Err("Memory limit must be at least 1 megabyte".into());
                }
                config.memory_limit = megabytes.saturating_mul(1024 * 1024);
            }
            "I" | "max-item-size" => config.item_size_max = size(&value("a size")?)?,
            "R" | "max-reqs-per-event" => {
                config.reqs_per_event = number(&value("a number")?, "requests per event")?;
                if config.reqs_per_event == 0 {
                    return Err("Number of requests per event must be greater than 0".into());
                }
            }
            "u" | "user" => config.service.user = Some(value("a user name")?),
            "d" | "daemon" => config.service.daemonize = true,
            "e" | "memory-file" => config.memory_file = Some(value("a file")?.into()),
            "P" | "pidfile" => config.service.pid_file = Some(value("a file")?.into()),
            "k" | "lock-memory" => config.service.lock_memory = true,
            "r" | "enable-coredumps" => config.service.core_dumps = true,
            "L" | "enable-largepages" => config
                .notes
                .push("-L: items live in the heap, not in preallocated pages; large pages are not asked for".into()),
            "f" | "slab-growth-factor" => {
                let factor: f64 = number(&value("a factor")?, "growth factor")?;
                if factor <= 1.0 {
                    return Err("Factor must be greater than 1".into());
                }
                config
                    .notes
                    .push(format!("-f {factor}: there are no slab classes; each item takes the memory it needs"));
            }
            "n" | "slab-min-size" => {
                let min: usize = number(&value("bytes")?, "minimum size")?;
                if min == 0 {
                    return Err("Chunk size must be greater than 0".into());
                }
                config.notes.push(format!("-n {min}: there are no slab chunks; each item takes the memory it needs"));
            }
            "D" => {
                let delimiter = value("a delimiter")?;
                config.notes.push(format!("-D {delimiter}: stats detail (per-prefix stats) is not kept"));
            }
            "B" | "protocol" => {
                protocol_specified = true;
                config.protocol = match value("a protocol")?.as_str() {
                    "auto" => ProtocolChoice::Auto,
                    "ascii" => ProtocolChoice::Ascii,
                    "binary" => ProtocolChoice::Binary,
                    other => return Err(format!("Invalid value for binding protocol: {other}")),
                }
            }
            "S" | "enable-sasl" => config.sasl = true,
            "A" | "enable-shutdown" => config.enable_shutdown = true,
            "F" | "disable-flush-all" => config.disable_flush_all = true,
            "C" | "disable-cas" => config.disable_cas = true,
            "protect-prefix" => {
                let prefix = value("a key prefix")?;
                if prefix.is_empty() || prefix.len() > crate::protocol::command::KEY_MAX_LENGTH {
                    return Err(format!(
                        "--protect-prefix must be 1 to {} bytes",
                        crate::protocol::command::KEY_MAX_LENGTH
                    ));
                }
                config.protected_prefixes.push(prefix);
            }
            "sasl-pwdb" => config.sasl_pwdb = Some(value("a file")?.into()),
            "peer" => config.replication.peer = Some(value("HOST:PORT")?),
            "x" | "peer-host" => peer_host = Some(value("a host")?),
            "X" | "repl-port" => repl_port = Some(number(&value("a port")?, "replication port")?),
            "repl-listen" => {
                config.replication.listen = value("ADDR:PORT")?;
                config.replication.listen_given = true;
            }
            "repl-cluster" => config.replication.cluster = value("a name")?,
            "aspnet-listen" => config.aspnet.listen = Some(value("ADDR:PORT")?),
            "aspnet-allow-remote" => config.aspnet.allow_remote = true,
            "metrics-listen" => {
                let listen = value("ADDR:PORT")?;
                listen.parse::<std::net::SocketAddr>().map_err(|_| {
                    format!("--metrics-listen '{listen}' is not an ADDR:PORT (use [::1]:PORT for IPv6)")
                })?;
                config.metrics_listen = Some(listen);
            }
            "aspnet-max-body" => config.aspnet.max_body = size(&value("a size")?)?,
            "repl-tombstone" => config.replication.tombstone_secs = number(&value("seconds")?, "tombstone time")?,
            "repl-wait-sync" => {
                let secs: f64 = number(&value("seconds")?, "sync wait")?;
                if !(0.0..=3600.0).contains(&secs) {
                    return Err("--repl-wait-sync must be between 0 and 3600 seconds".into());
                }
                config.replication.wait_sync = Duration::from_secs_f64(secs);
            }
            "node-id" => {
                let id: u16 = number(&value("a number")?, "node id")?;
                if id > crate::store::version::NODE_MAX {
                    return Err(format!("--node-id must be at most {}", crate::store::version::NODE_MAX));
                }
                config.replication.node_id = Some(id);
            }
            "repl-secret" => config.replication.secret = Some(value("a file")?.into()),
            "repl-tls-cert" => repl_cert = Some(value("a file")?.into()),
            "repl-tls-key" => repl_key = Some(value("a file")?.into()),
            "repl-tls-ca" => repl_ca = Some(value("a file")?.into()),
            "repl-insecure" => config.replication.insecure = true,
            "repl-backlog" => config.replication.backlog = size(&value("a size")?)?,
            "repl-timeout" => {
                let secs: f64 = number(&value("seconds")?, "replication timeout")?;
                if !(secs > 0.0 && secs <= 3600.0) {
                    return Err("--repl-timeout must be between 0 and 3600 seconds".into());
                }
                config.replication.timeout = Duration::from_secs_f64(secs);
            }
            "repl-sync" => {
                config.replication.sync = match value("a mode")?.as_str() {
                    "async" => ReplSync::Async,
                    "ack" => ReplSync::Ack,
                    other => return Err(format!("--repl-sync is async or ack, not '{other}'")),
                }
            }
            "Y" | "auth-file" => config.auth_file = Some(value("a file")?.into()),
            "Z" | "enable-ssl" => config.tls.enabled = true,
            "o" | "extended" => {
                for option in value("a list of options")?.split(',') {
                    extended_option(&mut config, option)?;
                }
            }
            "tls-handshake-timeout" => {
                let secs: f64 = number(&value("seconds")?, "handshake timeout")?;
                if !(secs > 0.0 && secs <= 3600.0) {
                    return Err("--tls-handshake-timeout must be between 0 and 3600 seconds".into());
                }
                config.tls.handshake_timeout = Duration::from_secs_f64(secs);
            }
            _ => return Err(format!("unknown option '{arg}'; see -h")),
        }
    }
    apply_repcached_aliases(&mut config.replication, peer_host, repl_port)?;
    config.replication.tls = match (repl_cert, repl_key, repl_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(PeerSettings { cert, key, ca }),
        (None, None, None) => None,
        _ => return Err("--repl-tls-cert, --repl-tls-key and --repl-tls-ca go together".into()),
    };
    check_replication(&config)?;
    check_aspnet(&config)?;
    config.tls.server_settings()?;
    config.protocol = authenticated_protocol(&config, protocol_specified)?;
    if config.sasl && config.sasl_pwdb.is_none() {
        config.sasl_pwdb = std::env::var_os("MEMCACHED_SASL_PWDB").map(PathBuf::from);
        if config.sasl_pwdb.is_none() {
            return Err("-S needs a password file: --sasl-pwdb <file> or MEMCACHED_SASL_PWDB".into());
        }
    }
    if config.item_size_max < ITEM_SIZE_MIN {
        return Err("Item max size cannot be less than 1024 bytes.".into());
    }
    if config.item_size_max > ITEM_SIZE_MAX {
        return Err("Cannot set item size limit higher than 1 gigabyte.".into());
    }
    if config.item_size_max > config.memory_limit / 2 {
        return Err("Cannot set item size limit higher than 1/2 of memory max.".into());
    }
    Ok(Invocation::Run(Box::new(config)))
}

/// memcached 1.6's other `-o` options (memcached.c `usage()`): accepted, since start
/// scripts pass them, and said at `-v` with why they change nothing here.
const UNUSED_EXTENDED_OPTIONS: &[(&str, &str)] = &[
    ("hashpower", "the hash tables grow by themselves, shard by shard"),
    ("no_hashexpand", "the hash tables grow by themselves, shard by shard"),
    ("tail_repair_time", "there is no LRU tail to repair"),
    ("hash_algorithm", "keys are hashed with ahash"),
    ("lru_crawler", "expired items are swept by the sweeper thread"),
    ("no_lru_crawler", "expired items are swept by the sweeper thread"),
    ("lru_crawler_sleep", "expired items are swept by the sweeper thread"),
    ("lru_crawler_tocrawl", "expired items are swept by the sweeper thread"),
    ("lru_maintainer", "eviction takes the least recently used item of a shard"),
    ("no_lru_maintainer", "eviction takes the least recently used item of a shard"),
    ("lru_segmented", "eviction takes the least recently used item of a shard"),
    ("no_lru_segmented", "eviction takes the least recently used item of a shard"),
    ("hot_lru_pct", "there are no segmented LRUs"),
    ("warm_lru_pct", "there are no segmented LRUs"),
    ("hot_max_factor", "there are no segmented LRUs"),
    ("warm_max_factor", "there are no segmented LRUs"),
    ("temporary_ttl", "there is no temporary LRU"),
    ("read_buf_mem_limit", "read buffers are given back once they empty"),
    ("slab_reassign", "there are no slab classes"),
    ("slab_automove", "there are no slab classes"),
    ("slab_automove_ratio", "there are no slab classes"),
    ("slab_automove_window", "there are no slab classes"),
    ("slab_automove_freeratio", "there are no slab classes"),
    ("slab_chunk_max", "there are no slab chunks"),
    ("slab_sizes", "there are no slab classes"),
    ("watcher_logbuf_size", "each watcher holds up to 256 KiB of lines"),
    ("worker_logbuf_size", "each watcher holds up to 256 KiB of lines"),
    ("track_sizes", "there are no slab classes to track sizes for"),
    ("modern", "its settings are the defaults here"),
    ("no_modern", "its settings are the defaults here"),
    ("inline_ascii_response", "replies are built whole before they are written"),
    ("no_inline_ascii_response", "replies are built whole before they are written"),
    ("sock_cookie_id", "sockets are not marked"),
    ("ext_path", "there is no external storage: every item is in memory"),
    ("ext_page_size", "there is no external storage"),
    ("ext_wbuf_size", "there is no external storage"),
    ("ext_threads", "there is no external storage"),
    ("ext_io_depth", "there is no external storage"),
    ("ext_item_size", "there is no external storage"),
    ("ext_item_age", "there is no external storage"),
    ("ext_low_ttl", "there is no external storage"),
    ("ext_drop_unread", "there is no external storage"),
    ("ext_recache_rate", "there is no external storage"),
    ("ext_compact_under", "there is no external storage"),
    ("ext_drop_under", "there is no external storage"),
    ("ext_max_frag", "there is no external storage"),
    ("ext_max_sleep", "there is no external storage"),
    ("ext_direct_io", "there is no external storage"),
    ("proxy_config", "there is no proxy mode"),
    ("proxy_startfile", "there is no proxy mode"),
    ("proxy_startarg", "there is no proxy mode"),
];

/// One of memcached's `-o` options (`key=value`, or a bare `key`). Unknown keys are
/// refused with memcached's message (memcached.c, the `-o` suboption loop).
fn extended_option(config: &mut Config, option: &str) -> Result<(), String> {
    let (key, value) = match option.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (option, None),
    };
    let needs = |what: &str| value.filter(|v| !v.is_empty()).ok_or_else(|| format!("Missing {what} argument"));
    let tls = &mut config.tls;
    match key {
        "ssl_chain_cert" => tls.chain_cert = Some(needs("ssl_chain_cert")?.into()),
        "ssl_key" => tls.key = Some(needs("ssl_key")?.into()),
        "ssl_ca_cert" => tls.ca_cert = Some(needs("ssl_ca_cert")?.into()),
        "ssl_verify_mode" => {
            tls.verify_mode = needs("ssl_verify_mode")?
                .parse()
                .ok()
                .and_then(VerifyMode::from_number)
                .ok_or("Invalid ssl_verify_mode. Use help to see valid options.")?;
        }
        "ssl_min_version" => tls.min_version = MinVersion::parse(needs("ssl_min_version")?)?,
        "ssl_keyformat" => {
            // 1 is OpenSSL's SSL_FILETYPE_PEM, memcached's default; PEM is all rustls reads.
            if !matches!(needs("ssl_keyformat")?, "1" | "PEM" | "pem") {
                return Err("ssl_keyformat: only PEM keys (1) are supported".into());
            }
        }
        "ssl_ciphers" => tls.ciphers = Some(needs("ssl_ciphers")?.to_string()),
        "ssl_wbuf_size" => {
            let kib: usize = number(needs("ssl_wbuf_size")?, "ssl_wbuf_size")?;
            tls.wbuf_size = kib.saturating_mul(1024);
        }
        // Sessions always resume: TLS 1.3 tickets and a TLS 1.2 session cache.
        "ssl_session_cache" => {}
        "ssl_kernel_tls" => tls.kernel_tls = true,
        "idle_timeout" => {
            let secs: u64 = number(needs("idle_timeout")?, "idle_timeout")?;
            config.idle_timeout = Duration::from_secs(secs);
        }
        // Honoured as memcached honours it: a connection over -c is told so and closed.
        "maxconns_fast" => {}
        "no_maxconns_fast" => {
            config.notes.push("no_maxconns_fast: a connection over -c is always closed at once".into())
        }
        _ => match UNUSED_EXTENDED_OPTIONS.iter().find(|(name, _)| *name == key) {
            Some((_, why)) => config.notes.push(format!("-o {option}: {why}")),
            None => return Err(format!("Illegal suboption \"{option}\"")),
        },
    }
    Ok(())
}

/// repcached's `-x HOST` names the peer and `-X PORT` is the replication port on
/// both sides (it listens on it and dials the peer's).
fn apply_repcached_aliases(
    repl: &mut ReplicationConfig,
    peer_host: Option<String>,
    repl_port: Option<u16>,
) -> Result<(), String> {
    let port = repl_port.unwrap_or(REPL_DEFAULT_PORT);
    if let Some(host) = peer_host {
        if repl.peer.is_some() {
            return Err("give the peer once: --peer or -x, not both".into());
        }
        repl.peer = Some(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        });
    }
    if repl_port.is_some() {
        let host = repl.listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h).to_string();
        repl.listen = format!("{host}:{port}");
        repl.listen_given = true;
    }
    Ok(())
}

/// Refuses settings that would replicate unsafely.
fn check_replication(config: &Config) -> Result<(), String> {
    let repl = &config.replication;
    if !repl.enabled() {
        return Ok(());
    }
    if config.disable_cas {
        return Err("-C cannot be combined with a peer: versions are what replication compares".into());
    }
    let listen: std::net::SocketAddr = repl
        .listen
        .parse()
        .map_err(|_| format!("--repl-listen '{}' is not an ADDR:PORT (use [::1]:PORT for IPv6)", repl.listen))?;
    if !listen.ip().is_loopback() && repl.tls.is_none() {
        if !repl.insecure {
            return Err(format!(
                "--repl-listen {} is reachable beyond this host: give --repl-tls-cert, --repl-tls-key and \
                 --repl-tls-ca so that the link is encrypted and only the peer can replicate, or \
                 --repl-insecure (with --repl-secret) to replicate in clear text",
                repl.listen
            ));
        }
        if repl.secret.is_none() {
            return Err(format!(
                "--repl-listen {} is reachable beyond this host: --repl-insecure still needs --repl-secret FILE \
                 so that only the peer can replicate",
                repl.listen
            ));
        }
    }
    Ok(())
}

/// Refuses a state server port anyone could reach, unless the operator says so: the
/// protocol has no authentication (Windows listens on loopback unless
/// `AllowRemoteConnection` is set).
fn check_aspnet(config: &Config) -> Result<(), String> {
    let Some(listen) = &config.aspnet.listen else {
        return Ok(());
    };
    // `notls:ADDR:PORT` keeps the port plaintext under -Z (as `-l` takes it); the
    // address is what follows the prefix.
    let (_, listen) = split_notls(listen);
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("--aspnet-listen '{listen}' is not an ADDR:PORT (use [::1]:PORT for IPv6)"))?;
    if !addr.ip().is_loopback() && config.replication.secret.is_none() && !config.aspnet.allow_remote {
        return Err(format!(
            "--aspnet-listen {listen} is reachable beyond this host and the protocol has no authentication: \
             give --repl-secret FILE for the pair, or --aspnet-allow-remote"
        ));
    }
    if config.aspnet.max_body == 0 {
        return Err("--aspnet-max-body must be positive".into());
    }
    Ok(())
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("invalid {what} '{text}'"))
}

/// memcached's `-I` syntax: a number with an optional k or m suffix.
fn size(text: &str) -> Result<usize, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.strip_suffix('k') {
        Some(d) => (d, 1024),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1024 * 1024),
            None => (lower.as_str(), 1),
        },
    };
    let n: usize = number(digits, "item size")?;
    n.checked_mul(unit).ok_or_else(|| format!("invalid item size '{text}'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Invocation::Run(config) => Ok(*config),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn authentication_decides_the_protocol_as_memcached_does() {
        use ProtocolChoice::{Ascii, Auto, Binary};
        const SASL: &str = "ERROR: You cannot allow the ASCII protocol while using SASL.";
        const ASCII_AUTH: &str = "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.";
        // (flags, the protocol served or memcached's refusal), as memcached 1.6 starts.
        let table: &[(&[&str], Result<ProtocolChoice, &str>)] = &[
            (&[], Ok(Auto)),
            (&["-B", "ascii"], Ok(Ascii)),
            (&["-S"], Ok(Binary)),
            (&["-S", "-B", "binary"], Ok(Binary)),
            (&["-S", "-B", "ascii"], Err(SASL)),
            (&["-S", "-B", "auto"], Err(SASL)),
            (&["-Y", "/a"], Ok(Ascii)),
            (&["-Y", "/a", "-B", "ascii"], Ok(Ascii)),
            (&["-Y", "/a", "-B", "binary"], Err(ASCII_AUTH)),
            (&["-Y", "/a", "-B", "auto"], Err(ASCII_AUTH)),
            (&["-S", "-Y", "/a"], Ok(Ascii)),
            (&["-Y", "/a", "-S"], Ok(Ascii)),
            (&["-S", "-Y", "/a", "-B", "binary"], Err(ASCII_AUTH)),
            (&["-S", "-Y", "/a", "-B", "ascii"], Err(SASL)),
        ];
        for (flags, expected) in table {
            let mut args = flags.to_vec();
            args.extend(["--sasl-pwdb", "/p"]);
            let got = run(&args).map(|c| c.protocol);
            assert_eq!(got, expected.map_err(String::from), "{flags:?}");
        }
    }

    #[test]
    fn memcached_spellings() {
        let c =
            run(&["-p", "22000", "-l127.0.0.1,::1", "-t", "2", "-m64", "-M", "-I", "2m", "-c", "10", "-vv"]).unwrap();
        assert_eq!((c.port, c.threads, c.memory_limit, c.no_evict), (22000, 2, 64 << 20, true));
        assert_eq!((c.item_size_max, c.max_connections, c.verbosity), (2 << 20, 10, 2));
        assert_eq!(c.listen, vec!["127.0.0.1", "::1"]);
        let c = run(&["--port=1", "--max-item-size=512k", "--memory-limit", "8", "-U", "0", "-R", "5"]).unwrap();
        assert_eq!((c.port, c.item_size_max, c.memory_limit, c.reqs_per_event), (1, 512 << 10, 8 << 20, 5));
        let c = run(&["-A", "-F", "-C"]).unwrap();
        assert!(c.enable_shutdown && c.disable_flush_all && c.disable_cas);
        let c = run(&["-S", "--sasl-pwdb", "/p", "-Y", "/a"]).unwrap();
        assert!(c.sasl);
        assert_eq!((c.sasl_pwdb.unwrap(), c.auth_file.unwrap()), (PathBuf::from("/p"), PathBuf::from("/a")));
        let c = run(&["-s", "/tmp/m.sock", "-a", "770"]).unwrap();
        assert_eq!((c.unix_socket.unwrap(), c.unix_mask), (PathBuf::from("/tmp/m.sock"), 0o770));
        assert_eq!(run(&[]).unwrap().unix_mask, 0o700);
    }

    #[test]
    fn replication_flags_and_repcached_aliases() {
        let c = run(&[
            "--peer",
            "10.0.0.2:11212",
            "--repl-secret",
            "/s",
            "--repl-listen",
            "0.0.0.0:11300",
            "--repl-insecure",
        ])
        .unwrap();
        let r = &c.replication;
        assert_eq!((r.peer.as_deref(), r.listen.as_str()), (Some("10.0.0.2:11212"), "0.0.0.0:11300"));
        let c = run(&["-x", "127.0.0.1", "-X", "11400", "--node-id", "9", "--repl-sync", "ack"]).unwrap();
        let r = &c.replication;
        assert_eq!((r.peer.as_deref(), r.listen.as_str()), (Some("127.0.0.1:11400"), "127.0.0.1:11400"));
        assert_eq!((r.node_id, r.sync), (Some(9), ReplSync::Ack));
        let c = run(&["--peer", "h:1", "--repl-backlog", "1m", "--repl-timeout", "0.5"]).unwrap();
        assert_eq!((c.replication.backlog, c.replication.timeout), (1 << 20, Duration::from_millis(500)));
        assert_eq!(run(&["-x", "::1"]).unwrap().replication.peer.as_deref(), Some("[::1]:11212"));
    }

    #[test]
    fn derived_node_ids_are_stable_and_differ_by_port() {
        let a = run(&["-p", "11211"]).unwrap();
        let b = run(&["-p", "11311"]).unwrap();
        assert_eq!(a.node_id(), run(&["-p", "11211"]).unwrap().node_id());
        assert_ne!(a.node_id(), b.node_id());
        assert_eq!(run(&["--node-id", "77"]).unwrap().node_id(), 77);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a's published value for \"a\"");
    }

    #[test]
    fn unsafe_replication_is_refused() {
        let open = run(&["--peer", "h:1", "--repl-listen", "0.0.0.0:11212"]).unwrap_err();
        assert!(open.contains("--repl-tls-cert"), "{open}");
        let clear = run(&["--peer", "h:1", "--repl-listen", "0.0.0.0:11212", "--repl-insecure"]).unwrap_err();
        assert!(clear.contains("--repl-secret"), "{clear}");
        let tls = ["--repl-tls-cert", "/c", "--repl-tls-key", "/k", "--repl-tls-ca", "/ca"];
        let c = run(&[&["--peer", "h:1", "--repl-listen", "0.0.0.0:11212"][..], &tls].concat()).unwrap();
        let files = c.replication.tls.unwrap();
        assert_eq!((files.cert, files.key, files.ca), ("/c".into(), "/k".into(), "/ca".into()));
        assert!(run(&["--repl-tls-cert", "/c"]).unwrap_err().contains("go together"));
        assert!(run(&["--peer", "h:1", "-C"]).unwrap_err().contains("-C"));
        assert!(run(&["--peer", "h:1", "-x", "h"]).is_err());
        assert!(run(&["--node-id", "4096"]).is_err());
        assert!(run(&["--repl-sync", "sometimes"]).is_err());
        assert!(run(&["--repl-timeout", "0"]).is_err());
        assert!(run(&["--peer", "h:1", "--repl-listen", "nonsense"]).is_err());
    }

    #[test]
    fn refusals_say_why() {
        assert!(run(&["-U", "11211"]).unwrap_err().contains("only 0"));
        assert!(run(&["-t", "0"]).is_err());
        assert!(run(&["-I", "512"]).is_err());
        assert!(run(&["-m", "1", "-I", "1m"]).unwrap_err().contains("1/2"));
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["-p"]).is_err());
        assert!(matches!(parse_args(["-h".to_string()]), Ok(Invocation::Help)));
        assert!(run(&["-B", "udp"]).is_err());
        assert!(run(&["-a", "800"]).unwrap_err().contains("octal"));
        assert!(run(&["-a", "1777"]).is_err());
    }

    #[test]
    fn protect_prefix_repeats_and_refuses_an_empty_prefix() {
        let c = run(&["--protect-prefix", "memc.sess.key.", "--protect-prefix=lock:"]).unwrap();
        assert_eq!(c.protected_prefixes, ["memc.sess.key.", "lock:"]);
        assert!(run(&["--protect-prefix="]).unwrap_err().contains("--protect-prefix"));
    }

    #[test]
    fn tls_options_in_memcacheds_spelling() {
        let c = run(&[
            "-Z",
            "-o",
            "ssl_chain_cert=/c.pem,ssl_key=/k.pem,ssl_ca_cert=/ca.pem,ssl_verify_mode=3,ssl_min_version=tlsv1.3",
            "-o",
            "ssl_wbuf_size=32,ssl_session_cache,ssl_ciphers=HIGH,ssl_keyformat=1",
            "-l",
            "notls:127.0.0.1:11311,127.0.0.1",
        ])
        .unwrap();
        let tls = &c.tls;
        assert!(tls.enabled);
        assert_eq!(
            (tls.chain_cert.as_deref(), tls.key.as_deref()),
            (Some(Path::new("/c.pem")), Some(Path::new("/k.pem")))
        );
        assert_eq!((tls.verify_mode, tls.min_version, tls.wbuf_size), (VerifyMode::Once, MinVersion::Tls13, 32 << 10));
        assert_eq!(tls.ciphers.as_deref(), Some("HIGH"));
        assert_eq!(split_notls(&c.listen[0]), (true, "127.0.0.1:11311"));
        assert_eq!(run(&["-o", "ssl_min_version=2"]).unwrap().tls.min_version, MinVersion::Tls12);
    }

    #[test]
    fn every_memcached_extended_option_is_accepted_and_unknown_ones_refused() {
        // memcached 1.6.18's `-o` options (`memcached -h`), with values as a start
        // script would give them.
        let all = "maxconns_fast,hashpower=16,tail_repair_time=0,hash_algorithm=murmur3,no_lru_crawler,\
                   lru_crawler_sleep=100,lru_crawler_tocrawl=0,read_buf_mem_limit=0,no_lru_maintainer,\
                   hot_lru_pct=20,warm_lru_pct=40,hot_max_factor=0.2,warm_max_factor=2.0,temporary_ttl=61,\
                   idle_timeout=600,slab_chunk_max=524288,watcher_logbuf_size=256,worker_logbuf_size=64,\
                   track_sizes,no_hashexpand,modern,no_modern,sock_cookie_id=0,ext_path=/tmp/x:64m,\
                   ext_page_size=64,ext_wbuf_size=8,ext_threads=1,ext_item_size=512,ext_item_age=0,\
                   ext_low_ttl=0,ext_drop_unread,ext_recache_rate=2000,ext_compact_under=0,ext_drop_under=0,\
                   ext_max_frag=0.8,ext_max_sleep=1000000,slab_automove_freeratio=0.01,slab_reassign,\
                   slab_automove=1,lru_crawler,lru_maintainer,ssl_session_cache,ssl_kernel_tls";
        let c = run(&["-o", all]).unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
        assert!(c.notes.iter().any(|n| n.starts_with("-o hashpower=16: ")), "{:?}", c.notes);
        // A note for each of the 43 but the four honoured here (maxconns_fast,
        // idle_timeout, ssl_session_cache, ssl_kernel_tls).
        assert_eq!(c.notes.len(), 39, "{:#?}", c.notes);
        assert_eq!(run(&["-o", "modern,bogus"]).unwrap_err(), "Illegal suboption \"bogus\"");
        assert!(run(&["-o", "idle_timeout=x"]).is_err());
        let c =
            run(&["-L", "-f", "1.25", "-n", "48", "-D", ":", "-k", "-r", "-d", "-P", "/p", "-u", "nobody"]).unwrap();
        assert_eq!(c.notes.len(), 4);
        let s = &c.service;
        assert!(s.daemonize && s.lock_memory && s.core_dumps);
        assert_eq!((s.pid_file.as_deref(), s.user.as_deref()), (Some(Path::new("/p")), Some("nobody")));
        assert!(run(&["-f", "1"]).is_err());
    }

    #[test]
    fn tls_refusals_use_memcacheds_words() {
        assert_eq!(run(&["-o", "bogus=1"]).unwrap_err(), "Illegal suboption \"bogus=1\"");
        assert_eq!(
            run(&["-o", "ssl_verify_mode=4"]).unwrap_err(),
            "Invalid ssl_verify_mode. Use help to see valid options."
        );
        assert_eq!(run(&["-o", "ssl_min_version=9"]).unwrap_err(), "could not parse argument to ssl_min_version");
        assert!(run(&["-o", "ssl_min_version=1"]).unwrap_err().contains("not supported"));
        assert!(run(&["-o", "ssl_keyformat=2"]).unwrap_err().contains("PEM"));
        assert!(run(&["-Z"]).unwrap_err().contains("ssl_chain_cert"));
        assert!(run(&["--tls-handshake-timeout", "0"]).is_err());
    }

    #[test]
    fn aspnet_listen_takes_the_notls_prefix() {
        let c = run(&["--aspnet-listen", "notls:127.0.0.1:42424"]).unwrap();
        assert_eq!(split_notls(c.aspnet.listen.as_deref().unwrap()), (true, "127.0.0.1:42424"));
        let refused = run(&["--aspnet-listen", "notls:10.0.0.1:42424"]).unwrap_err();
        assert!(refused.contains("no authentication"), "{refused}");
        assert!(run(&["--aspnet-listen", "notls:nowhere"]).unwrap_err().contains("not an ADDR:PORT"));
    }

    #[test]
    fn repl_wait_sync_takes_seconds() {
        let c = run(&["--peer", "h:1", "--repl-wait-sync", "2.5"]).unwrap();
        assert_eq!(c.replication.wait_sync, Duration::from_millis(2500));
        assert!(run(&["--repl-wait-sync=-1"]).is_err());
    }
}
