//! The daemon: a listener thread that accepts, worker threads that each run a mio
//! event loop over their connections, and a sweeper that reclaims expired items.
//! With a peer, worker 0 also hosts the replication link (its poll is one of worker
//! 0's sources); every worker tells the link of the changes its connections'
//! receipts say were recorded, once per turn.
//!
//! ```text
//!   acceptor ──(channel + Waker, round robin)──► worker 0 .. worker t-1
//!                                                 │ receipts ► announce
//!   replication link ◄── hosted by worker 0 ◄─────┘
//!   sweeper  ──(every tick)──► Store::sweep_step
//! ```
//!
//! ```text
//!  frontend/    where a protocol's command meets the node: text, meta, binary and
//!               ASP.NET, the outcome mapping and reply buffer they share, SASL/-Y
//!               credentials
//!  event_loop/  the acceptor, the workers' mio loops, connections and their
//!               sockets, and the registry `stats conns` reads
//!  operations/  stats, Prometheus metrics, `watch` and warm restart
//!  config/      the flags, -o options and configuration file, and their checks
//!  mod.rs       Server: starts the threads above, replication and the sweeper
//! ```
//!
//! The folders import one way: event_loop/ runs frontend/, and both count in
//! operations/, which imports neither.
//!
//! Every front end writes through [`crate::node::Node`] and holds the reply on the
//! write's receipt, so a new front end (another protocol) follows the same steps
//! (see `frontend/mod.rs`).

mod config;
mod event_loop;
pub mod frontend;
pub mod operations;

use event_loop::{listener, registry, worker};
use frontend::auth;
use operations::{metrics, stats, warm, watch};

pub use config::{
    Config, Invocation, ProtocolChoice, ReplSync, ReplicationConfig, USAGE, config_file_options, parse_args,
};

use crate::node::Node;
use crate::protocol::{Limits, WatchKinds};
use crate::replication::handshake::Identity;
use crate::replication::heartbeat::DEFAULT_INTERVAL;
use crate::replication::{LinkRunner, LinkThread, Replicator, Settings, SyncMode};
use crate::store::sweeper::Sweeper;
use crate::store::{Store, StoreConfig};
use crate::tls;
use crossbeam_utils::CachePadded;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// Version reported by `version` and `stats`: memcached's protocol level first, since
/// clients parse it to pick features, then ours.
pub const VERSION: &str = concat!("1.6.18-stickless-", env!("CARGO_PKG_VERSION"));

/// Connection counters shared by the acceptor and the workers.
#[derive(Default, Debug)]
pub struct ConnectionStats {
    /// Shared with connections that leave their worker (a `watch` over TLS).
    current: Arc<AtomicUsize>,
    pub total: AtomicU64,
    pub rejected: AtomicU64,
    pub peak: AtomicUsize,
    pub accepting: AtomicBool,
    pub listen_disabled: AtomicU64,
}

impl ConnectionStats {
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
    /// Counts a new connection unless `max` are open; false means refuse it.
    fn try_open(&self, max: usize) -> bool {
        let opened = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| if n < max { Some(n + 1) } else { None })
            .is_ok();
        if opened {
            self.total.fetch_add(1, Ordering::Relaxed);
            self.peak.fetch_max(self.current(), Ordering::Relaxed);
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }
    pub fn closed(&self) {
        self.current.fetch_sub(1, Ordering::AcqRel);
    }
    /// An open connection that leaves its worker for another owner: still counted
    /// until the returned guard is dropped.
    pub fn handed_over(&self) -> OpenConnection {
        OpenConnection(Arc::clone(&self.current))
    }
    fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.rejected.store(0, Ordering::Relaxed);
    }
}

/// A connection counted in `curr_connections` away from the workers; dropping it
/// counts the connection closed.
#[derive(Debug)]
pub struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// State every thread of the server sees.
pub struct Shared {
    pub config: Config,
    pub limits: Limits,
    /// The store and its replication: every command's write goes through it.
    pub node: Arc<Node>,
    pub counters: Box<[CachePadded<stats::Counters>]>,
    pub connections: ConnectionStats,
    pub started: Instant,
    pub verbosity: AtomicU8,
    pub shutting_down: AtomicBool,
    /// With `-S`: who may authenticate over SASL.
    pub sasl: Option<auth::Credentials>,
    /// With `-Y`: who may authenticate over the text protocol.
    pub text_auth: Option<auth::Credentials>,
    /// With `-Z`: the client ports' TLS.
    pub tls: Option<Arc<tls::ServerTls>>,
    /// Listeners and connections, for `stats conns`.
    pub registry: registry::ConnRegistry,
    /// `watch` connections.
    pub watch: Arc<watch::Watch>,
}

impl Shared {
    /// `shutdown [graceful]` under `-A`: signals this process as memcached does
    /// (SIGINT, or SIGUSR1 for graceful), so the daemon stops the way it stops on
    /// Ctrl-C: no longer accepting, finishing the replies in flight. The signal goes
    /// to the whole process, so only a daemon should enable the command.
    pub fn request_shutdown(&self, graceful: bool) {
        let signal = if graceful { libc::SIGUSR1 } else { libc::SIGINT };
        log::info!("shutdown requested by a client{}", if graceful { " (graceful)" } else { "" });
        // SAFETY: kill(2) with our own pid and a valid signal number touches no memory.
        unsafe { libc::kill(libc::getpid(), signal) };
    }

    /// `verbosity <n>`: 0 warnings and errors, 1 info, 2 and up every command.
    pub fn set_verbosity(&self, level: u32) {
        let level = level.min(2) as u8;
        self.verbosity.store(level, Ordering::Relaxed);
        log::set_max_level(log_filter(level));
    }
}

/// The log level for a memcached verbosity.
pub fn log_filter(verbosity: u8) -> log::LevelFilter {
    match verbosity {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Trace,
    }
}

/// A running server. Dropping it without `shutdown` leaves the threads running.
pub struct Server {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    /// Kept here so that no waker is dropped (closing its eventfd) before the
    /// thread it wakes has seen the wake.
    wakers: Vec<Arc<mio::Waker>>,
    sweeper: Sweeper,
    threads: Vec<JoinHandle<()>>,
    /// Where the peer reaches this node's replication.
    replication_addr: Option<SocketAddr>,
    /// The ASP.NET State Server port, under `--aspnet-listen`.
    aspnet_addr: Option<SocketAddr>,
    /// The Prometheus metrics port, under `--metrics-listen`.
    metrics_addr: Option<SocketAddr>,
}

/// The replication for `config`, when it replicates; `resume` continues where a
/// saved run stood (warm restart).
fn replicator(
    config: &Config,
    store: &Arc<Store>,
    resume: Option<warm::ReplicationPosition>,
) -> io::Result<Option<Arc<Replicator>>> {
    let repl = &config.replication;
    if !repl.enabled() {
        return Ok(None);
    }
    let secret = match &repl.secret {
        Some(path) => Identity::load_secret(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        None => Vec::new(),
    };
    let settings = Settings {
        peers: repl.peers.clone(),
        listen: repl.accept.then(|| repl.listen.clone()),
        identity: Identity::new(store.node_id(), repl.cluster.as_bytes(), &secret),
        backlog: repl.backlog,
        timeout: repl.timeout,
        // Several heartbeats fit in a timeout however short it is set.
        heartbeat: DEFAULT_INTERVAL.min(repl.timeout / 4),
        mode: match repl.sync {
            ReplSync::Async => SyncMode::Async,
            ReplSync::Ack => SyncMode::Ack,
            ReplSync::One => SyncMode::AckOne,
        },
        claims: repl.claims,
        tombstone_secs: repl.tombstone_secs,
        tls: repl
            .tls
            .as_ref()
            .map(tls::PeerTls::new)
            .transpose()
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, format!("replication TLS: {message}")))?
            .map(Arc::new),
    };
    let history = match &resume {
        Some(position) => position.history,
        None => u64::from_ne_bytes(crate::replication::handshake::fresh_nonce()?[..8].try_into().expect("8 bytes")),
    };
    let replicator = Arc::new(Replicator::new(Arc::clone(store), settings, history));
    if let Some(position) = &resume {
        replicator.resume(position.last_seq, &position.progress);
        let peers: Vec<String> = position
            .progress
            .iter()
            .map(|held| format!("change {} of node {}'s", held.progress.applied, held.node))
            .collect();
        log::info!(
            "replication: resuming change {} of this node's run{}{}",
            position.last_seq,
            if peers.is_empty() { "" } else { ", and " },
            peers.join(", ")
        );
    }
    replicator.observe();
    Ok(Some(replicator))
}

/// With --repl-wait-sync, a (re)started node catches up with its peer before it
/// listens, so that a load balancer's check sends it clients only then. The link
/// runs on a thread of its own meanwhile; it is handed to the first worker after.
fn wait_for_peer_sync(config: &Config, node: &Node) -> io::Result<Option<LinkThread>> {
    let repl = &config.replication;
    let (Some(replicator), false) = (node.replicator(), repl.peers.is_empty()) else {
        return Ok(None);
    };
    let peer = match &repl.peers[..] {
        [one] => format!("the peer {one}"),
        many => format!("a peer ({})", many.join(", ")),
    };
    if repl.wait_sync.is_zero() {
        return Ok(None);
    }
    let link = LinkThread::start(Arc::clone(replicator))?;
    let limit = repl.wait_sync.as_secs_f64();
    // At the default verbosity: a node that refuses clients for seconds must say
    // why, or it looks dead.
    log::warn!(
        "replication: waiting up to {limit} s for {peer} to send what it holds before serving clients \
         (--repl-wait-sync; 0 serves at once)"
    );
    if replicator.wait_synced(repl.wait_sync) {
        log::warn!("replication: synced from {peer}; serving clients");
    } else {
        log::warn!("replication: no sync from {peer} within {limit} s; serving clients from what this node holds");
    }
    Ok(Some(link))
}

/// The client ports' TLS under -Z, and the log lines for the options rustls cannot
/// honour.
fn client_tls(config: &Config) -> io::Result<Option<Arc<tls::ServerTls>>> {
    let tls = config
        .tls
        .server_settings()
        .and_then(|settings| settings.map(tls::ServerTls::new).transpose())
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?
        .map(Arc::new);
    if config.tls.kernel_tls {
        log::warn!("ssl_kernel_tls: encryption stays in user space (rustls; BENCHMARKS.md, TLS)");
    }
    if let Some(ciphers) = &config.tls.ciphers {
        // An operator who narrows the ciphers must hear that the list is not
        // applied, not find out from a scanner.
        log::warn!(
            "ssl_ciphers={ciphers}: not applied; rustls offers only AEAD suites: TLS 1.3 AES-GCM and \
             ChaCha20-Poly1305, and TLS 1.2 ECDHE with the same ciphers"
        );
    }
    Ok(tls)
}

impl Server {
    /// Binds the listeners and starts every thread.
    pub fn start(config: Config) -> io::Result<Server> {
        let new_store = || {
            Arc::new(Store::new(
                StoreConfig {
                    memory_limit: config.memory_limit,
                    evict: !config.no_evict,
                    shards: config.shards,
                    cas_enabled: !config.disable_cas,
                    node_id: config.node_id(),
                    protected_prefixes: config.protected_prefixes.iter().map(|p| p.as_bytes().into()).collect(),
                    hash_seed: None,
                },
                config.clock.clone(),
            ))
        };
        let mut store = new_store();
        // -e: the items of the last graceful stop, before anything listens.
        let mut resume = None;
        if let Some(path) = &config.memory_file {
            match warm::load(&store, path) {
                None => log::info!("warm restart: no {} yet; starting empty", path.display()),
                Some(Ok(report)) => {
                    log::warn!(
                        "warm restart: loaded {} items from {} in {:.2} s ({} expired meanwhile, {} without room)",
                        report.items,
                        path.display(),
                        report.seconds,
                        report.expired,
                        report.no_memory
                    );
                    resume = report.replication;
                }
                Some(Err(message)) => {
                    log::error!("warm restart: {message}; starting empty");
                    // What was applied of a refused file goes with the store.
                    store = new_store();
                }
            }
        }
        Self::start_inner(config, Arc::new(Node::new(store)), resume)
    }

    /// Starts a server over an existing node (an embedding host's), which
    /// replicates from then on if `config` names a peer or a replication port.
    pub fn start_with_node(config: Config, node: Arc<Node>) -> io::Result<Server> {
        Self::start_inner(config, node, None)
    }

    fn start_inner(
        mut config: Config,
        node: Arc<Node>,
        resume: Option<warm::ReplicationPosition>,
    ) -> io::Result<Server> {
        // Whoever built the config, no client port serves a protocol its authentication
        // does not cover (an explicit contradiction is refused, as parse_args does).
        let specified = config.protocol != config::ProtocolChoice::Auto;
        config.protocol = config::authenticated_protocol(&config, specified)
            .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
        let load = |path: &Option<std::path::PathBuf>| -> io::Result<Option<auth::Credentials>> {
            path.as_deref()
                .map(auth::Credentials::load)
                .transpose()
                .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))
        };
        let sasl = if config.sasl { load(&config.sasl_pwdb)? } else { None };
        let text_auth = load(&config.auth_file)?;
        let store = Arc::clone(node.store_for_upkeep());
        if let Some(replicator) = replicator(&config, &store, resume)?
            && !node.replicate(replicator)
        {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the store already replicates"));
        }
        let early_link = wait_for_peer_sync(&config, &node)?;
        let tls = client_tls(&config)?;
        let mut listeners = listener::bind(&config)?;
        let addrs = listeners.iter().filter_map(|(l, _)| l.tcp_addr()).collect();
        let aspnet = listener::bind_aspnet(&config)?;
        let aspnet_addr = aspnet.as_ref().and_then(|(l, _)| l.tcp_addr());
        listeners.extend(aspnet);
        let listener_infos = listeners
            .iter()
            .map(|(l, _)| registry::ListenerInfo { fd: std::os::fd::AsRawFd::as_raw_fd(l), addr: l.describe() })
            .collect();
        let registry = registry::ConnRegistry::new(listener_infos, config.threads, store.clock().now_secs());
        let shared = Arc::new(Shared {
            limits: Limits { item_size_max: config.item_size_max, cas_enabled: !config.disable_cas },
            node,
            counters: (0..config.threads).map(|_| CachePadded::new(stats::Counters::default())).collect(),
            connections: ConnectionStats { accepting: AtomicBool::new(true), ..Default::default() },
            started: Instant::now(),
            verbosity: AtomicU8::new(config.verbosity),
            shutting_down: AtomicBool::new(false),
            sasl,
            text_auth,
            tls,
            registry,
            watch: Arc::new(watch::Watch::default()),
            config,
        });
        let watch_writer = shared.watch.start_writer()?;
        let evictions = Arc::clone(&shared.watch);
        store.observe_evictions(Box::new(move |evicted| {
            if evictions.wants(WatchKinds::EVICTIONS) {
                evictions.evicted(evicted);
            }
        }));
        if let Some(replicator) = shared.node.replicator() {
            let links = Arc::clone(&shared.watch);
            replicator.observe_links(Box::new(move |event| {
                if links.wants(WatchKinds::REPLICATION) {
                    links.link(event);
                }
            }));
        }
        // The first worker hosts the link: its own clients' writes then reach the
        // peer, and their acknowledgements come back, without a thread hand-off.
        let mut link = match (shared.node.replicator(), early_link) {
            (Some(_), Some(early)) => Some(early.into_runner()),
            (Some(replicator), None) => Some(LinkRunner::new(Arc::clone(replicator))?),
            (None, _) => None,
        };
        let replication_addr = link.as_ref().and_then(LinkRunner::local_addr);
        let mut workers = Vec::new();
        let mut handoffs = Vec::new();
        for index in 0..shared.config.threads {
            let (tx, rx) = crossbeam_channel::unbounded();
            let (mut worker, waker) = worker::Worker::new(index, rx, Arc::clone(&shared))?;
            worker.link = link.take();
            handoffs.push((tx, Arc::new(waker)));
            workers.push(worker);
        }
        let mut wakers: Vec<Arc<mio::Waker>> = handoffs.iter().map(|(_, w)| Arc::clone(w)).collect();
        if let Some(replicator) = shared.node.replicator() {
            replicator.set_ack_wakers(wakers.clone());
        }
        let mut threads = Vec::new();
        for worker in workers {
            let name = format!("worker-{}", worker.index);
            threads.push(std::thread::Builder::new().name(name).spawn(move || worker.run())?);
        }
        let acceptor = listener::Acceptor::new(listeners, handoffs, Arc::clone(&shared))?;
        wakers.push(acceptor.waker());
        threads.push(std::thread::Builder::new().name("acceptor".into()).spawn(move || acceptor.run())?);
        let sweeper = Sweeper::start("sweeper", store, shared.config.sweep_interval, shared.config.sweep_buckets)?;
        threads.push(watch_writer);
        let mut metrics_addr = None;
        if let Some(listen) = shared.config.metrics_listen.clone() {
            let (addr, thread, waker) = metrics::start(&listen, Arc::clone(&shared))?;
            metrics_addr = Some(addr);
            threads.push(thread);
            wakers.push(waker);
        }
        Ok(Server { shared, addrs, wakers, sweeper, threads, replication_addr, aspnet_addr, metrics_addr })
    }

    /// Where the peer reaches this node's replication (useful with port 0).
    pub fn replication_addr(&self) -> Option<SocketAddr> {
        self.replication_addr
    }

    /// The ASP.NET State Server's bound address (useful with port 0).
    pub fn aspnet_addr(&self) -> Option<SocketAddr> {
        self.aspnet_addr
    }

    /// The Prometheus metrics port (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The bound TCP addresses (useful with port 0); empty under `-s`.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The node every front end writes through (tests and hosts write through it too).
    pub fn node(&self) -> &Arc<Node> {
        &self.shared.node
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops as [`Server::shutdown`] does, then saves the items to `-e`'s file (if
    /// given), with where replication stood.
    pub fn shutdown_and_save(self) -> Option<io::Result<warm::Report>> {
        let node = Arc::clone(&self.shared.node);
        let path = self.shared.config.memory_file.clone();
        self.shutdown();
        let path = path?;
        let position = node.replicator().map(|replicator| {
            let (history, last_seq, progress) = replicator.position();
            warm::ReplicationPosition { history, last_seq, progress }
        });
        Some(warm::save(node.store_for_upkeep(), position, &path))
    }

    /// Stops accepting, lets workers write the replies in flight, and joins every thread.
    pub fn shutdown(self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
        drop(self.sweeper);
        self.shared.watch.stop();
        for handle in self.threads {
            let _ = handle.join();
        }
    }
}
