//! Prometheus metrics on `--metrics-listen ADDR:PORT`: `GET /metrics` in the text
//! exposition format (version 0.0.4), names in Prometheus's conventions (a
//! `stickless_` prefix, base units, `_total` on counters); and `GET /health` for a
//! load balancer's checks.
//!
//! A thread of its own answers, one request per connection, reading what `stats`
//! reads: counters the workers keep anyway, so scraping adds nothing to the data
//! path.

use super::stats::CounterTotals;
use crate::replication::replicator::{BacklogFigures, LINK_UP, Peer, Replicator};
use crate::server::Shared;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a scrape may take to send its request and read the reply.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
const LISTENER: mio::Token = mio::Token(0);
const WAKER: mio::Token = mio::Token(1);

/// The exposition format's content type (Prometheus, "Exposition formats").
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr` and answers scrapes until the server shuts down (and rings the
/// waker returned).
pub fn start(addr: &str, shared: Arc<Shared>) -> io::Result<(SocketAddr, JoinHandle<()>, Arc<mio::Waker>)> {
    let std_listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (--metrics-listen): {e}")))?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let mut listener = mio::net::TcpListener::from_std(std_listener);
    let mut poll = mio::Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, mio::Interest::READABLE)?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let mut events = mio::Events::with_capacity(8);
        while !shared.shutting_down.load(Ordering::Acquire) {
            if let Err(e) = poll.poll(&mut events, None)
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("metrics: poll failed: {e}");
                return;
            }
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stream = TcpStream::from(std::os::fd::OwnedFd::from(stream));
                        if let Err(e) = answer(stream, &shared) {
                            log::debug!("metrics: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("metrics: accept failed: {e}");
                        break;
                    }
                }
            }
        }
    })?;
    Ok((local, thread, waker))
}

/// Reads one request and answers it: `GET /metrics` and `GET /health` (or `HEAD`),
/// 404 for other paths, 405 for other methods, 400 for what is not HTTP.
fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let (status, body, head_only) = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&request) {
            Ok(httparse::Status::Complete(_)) => {
                let path = parsed.path.unwrap_or("");
                let path = path.split('?').next().unwrap_or(path);
                break match (parsed.method.unwrap_or(""), path) {
                    ("GET" | "HEAD", "/metrics") => ("200 OK", render(shared), parsed.method == Some("HEAD")),
                    ("GET" | "HEAD", "/health") => {
                        let (status, body) = health(shared);
                        (status, body, parsed.method == Some("HEAD"))
                    }
                    ("GET" | "HEAD", _) => {
                        ("404 Not Found", "not found: metrics are at /metrics, health at /health\n".into(), false)
                    }
                    _ => ("405 Method Not Allowed", "only GET and HEAD\n".into(), false),
                };
            }
            Ok(httparse::Status::Partial) if request.len() < MAX_REQUEST => {}
            _ => break ("400 Bad Request", "bad request\n".into(), false),
        }
    };
    let content_type = if status.starts_with("200") { CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// `GET /health`, for a load balancer's check (haproxy `option httpchk`, a
/// Kubernetes readiness probe): 200 while the node serves and can grant claims,
/// 503 while its claims need a majority of the nodes (`--repl-claims majority`)
/// and it cannot reach one, so that clients go to a node that can.
fn health(shared: &Shared) -> (&'static str, String) {
    let Some(replicator) = shared.node.replicator() else {
        return ("200 OK", "ok\n".into());
    };
    let reached = replicator.nodes_reached();
    let (nodes, majority) = (replicator.nodes(), replicator.majority());
    if replicator.refuses_claims() {
        let body = format!("no majority: {reached} of {nodes} nodes reachable, {majority} needed\n");
        ("503 Service Unavailable", body)
    } else {
        ("200 OK", format!("ok: {reached} of {nodes} nodes reachable\n"))
    }
}

/// The exposition text: one family after another, each with its help and type.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP stickless_{name} {help}\n# TYPE stickless_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "stickless_{name}{labels} {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, "", value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, "", value);
    }

    /// A family with one sample per label value.
    fn labelled(&mut self, name: &str, kind: &str, help: &str, label: &str, samples: &[(&str, u64)]) {
        self.family(name, kind, help);
        for (value, count) in samples {
            self.sample(name, &format!("{{{label}=\"{value}\"}}"), count);
        }
    }
}

/// Every metric, read now.
/// The client connections: open, accepted, refused, closed idle, yielded.
fn connections(m: &mut Exposition, shared: &Shared, c: &CounterTotals) {
    let conns = &shared.connections;
    m.gauge("connections", "Client connections open now.", conns.current());
    m.gauge("connections_max", "The most client connections served at once (-c).", shared.config.max_connections);
    m.counter("connections_opened_total", "Client connections accepted.", conns.total.load(Ordering::Relaxed));
    m.counter(
        "connections_rejected_total",
        "Client connections refused for -c.",
        conns.rejected.load(Ordering::Relaxed),
    );
    m.counter("connections_idle_closed_total", "Connections closed by -o idle_timeout.", c.idle_kicks);
    m.counter("connection_yields_total", "Times a connection yielded after -R requests.", c.conn_yields);
}

pub fn render(shared: &Shared) -> String {
    let c = shared.counter_totals();
    let s = shared.node.view().stats();
    let mut m = Exposition { out: String::with_capacity(8 * 1024) };
    m.gauge("uptime_seconds", "Seconds since the node started.", shared.started.elapsed().as_secs());
    connections(&mut m, shared, &c);
    m.labelled(
        "commands_total",
        "counter",
        "Commands received, by kind (memcached's cmd_* stats).",
        "command",
        &[("get", c.cmd_get), ("set", c.cmd_set), ("flush", c.cmd_flush), ("touch", c.cmd_touch)],
    );
    m.family("lookups_total", "counter", "Reads, deletes, increments, CAS and touches, by command and result.");
    let results: [(&str, &str, u64); 15] = [
        ("get", "hit", c.get_hits),
        ("get", "miss", c.get_misses),
        ("get", "expired", s.get_expired),
        ("get", "flushed", s.get_flushed),
        ("delete", "hit", c.delete_hits),
        ("delete", "miss", c.delete_misses),
        ("incr", "hit", c.incr_hits),
        ("incr", "miss", c.incr_misses),
        ("decr", "hit", c.decr_hits),
        ("decr", "miss", c.decr_misses),
        ("cas", "hit", c.cas_hits),
        ("cas", "miss", c.cas_misses),
        ("cas", "badval", c.cas_badval),
        ("touch", "hit", c.touch_hits),
        ("touch", "miss", c.touch_misses),
    ];
    for (command, result, value) in results {
        m.sample("lookups_total", &format!("{{command=\"{command}\",result=\"{result}\"}}"), value);
    }
    m.labelled(
        "store_refused_total",
        "counter",
        "Stores refused, by reason.",
        "reason",
        &[("too_large", c.store_too_large), ("no_memory", c.store_no_memory)],
    );
    m.counter("auth_commands_total", "Authentication attempts (SASL or -Y).", c.auth_cmds);
    m.counter("auth_errors_total", "Failed authentication attempts.", c.auth_errors);
    m.counter("read_bytes_total", "Bytes read from clients.", c.bytes_read);
    m.counter("written_bytes_total", "Bytes written to clients.", c.bytes_written);
    m.gauge("items", "Items held now.", s.curr_items);
    m.counter("items_stored_total", "Items stored since start.", s.total_items);
    m.counter("evictions_total", "Live items evicted to make room.", s.evictions);
    m.counter("evictions_unfetched_total", "Evicted items never read.", s.evicted_unfetched);
    m.counter("expired_unfetched_total", "Expired items never read.", s.expired_unfetched);
    m.counter("reclaimed_total", "Expired items whose memory was reused.", s.reclaimed);
    m.counter(
        "evictions_skipped_protected_total",
        "Live --protect-prefix items the eviction passed over.",
        s.evictions_skipped_protected,
    );
    m.gauge("memory_limit_bytes", "Item memory allowed (-m).", s.memory_limit);
    m.gauge("memory_used_bytes", "Item memory in use: items and their hash tables, what -m limits.", s.memory_used);
    let replicator = shared.node.replicator();
    let backlog = replicator.map(|replicator| replicator.backlog_figures());
    let mut memory = vec![
        ("items", s.item_bytes),
        ("hash_tables", s.table_bytes),
        ("connection_buffers", shared.registry.buffer_bytes()),
    ];
    if let Some(backlog) = &backlog {
        memory.push(("tombstones", shared.node.view().tombstone_bytes() as u64));
        memory.push(("backlog", backlog.bytes as u64));
    }
    m.labelled("memory_bytes", "gauge", "Memory by what holds it.", "kind", &memory);
    if let Some(tls) = &shared.tls {
        m.counter(
            "tls_handshake_errors_total",
            "TLS handshakes that failed or did not finish in time.",
            tls.handshake_errors.load(Ordering::Relaxed),
        );
        m.gauge("tls_certificate_age_seconds", "Seconds since the certificates were loaded.", tls.since_refresh());
    }
    certificate_expiry(&mut m, shared);
    if shared.config.aspnet.listen.is_some() {
        m.labelled(
            "aspnet_requests_total",
            "counter",
            "ASP.NET State Server requests, by kind.",
            "request",
            &[
                ("get", c.aspnet_get),
                ("acquire", c.aspnet_acquire),
                ("release", c.aspnet_release),
                ("put", c.aspnet_put),
                ("delete", c.aspnet_delete),
                ("head", c.aspnet_head),
                ("bad", c.aspnet_bad_requests),
            ],
        );
        m.labelled(
            "aspnet_locks_total",
            "counter",
            "ASP.NET session locks, by outcome.",
            "outcome",
            &[
                ("granted", c.aspnet_locks_granted),
                ("contended", c.aspnet_locks_contended),
                ("stolen", c.aspnet_locks_stolen),
            ],
        );
        let sessions = shared.node.view().count_prefix(crate::protocol::aspnet::KEY_PREFIX);
        m.gauge("aspnet_sessions", "ASP.NET sessions held.", sessions);
    }
    if let (Some(replicator), Some(backlog)) = (replicator, backlog) {
        replication(&mut m, replicator, &backlog);
    }
    m.out
}

/// When each certificate chain in use stops being valid: the client ports' (`-Z`)
/// and the replication link's. An expired one ends every TLS connection, and a
/// pair's replication with it.
fn certificate_expiry(m: &mut Exposition, shared: &Shared) {
    let clients = shared.tls.as_ref().and_then(|tls| tls.expires_at());
    let replication = shared.node.replicator().and_then(|r| r.settings.tls.as_ref()).and_then(|tls| tls.expires_at());
    let samples: Vec<(&str, u64)> =
        [("clients", clients), ("replication", replication)].into_iter().filter_map(|(u, at)| Some((u, at?))).collect();
    if samples.is_empty() {
        return;
    }
    m.labelled(
        "tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the certificate chain in use stops being valid (the earliest notAfter in it), by what it serves.",
        "serves",
        &samples,
    );
}

/// Upper bounds of the replication lag histogram's buckets, in microseconds: from
/// a tenth of a millisecond (the lag on one host) to seconds (a peer far behind).
const LAG_BOUNDS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000];

fn replication(m: &mut Exposition, replicator: &Replicator, backlog: &BacklogFigures) {
    let stats = &replicator.stats;
    let stat = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let total = |field| replicator.total(field);
    let up = stats.state.load(Ordering::Relaxed) == LINK_UP;
    m.gauge("replication_peer_up", "1 when the links to every peer are up.", u8::from(up));
    let peers = replicator.known_peers();
    let skew = peers.iter().map(|peer| peer.stats.skew_ms.load(Ordering::Relaxed)).max_by_key(|skew| skew.abs());
    m.gauge(
        "replication_clock_skew_seconds",
        "The furthest peer's clock minus this node's, as heartbeats measure it.",
        skew.unwrap_or(0) as f64 / 1000.0,
    );
    per_peer(m, replicator, backlog);
    m.gauge(
        "replication_lag_changes",
        "Changes recorded here that the peer has not acknowledged.",
        backlog.last_seq.saturating_sub(replicator.acked()),
    );
    m.gauge("replication_lag_bytes", "Bytes of changes the peer has not acknowledged.", replicator.lag_bytes());
    let (below, count, sum_us) = replicator.stats.lag.cumulative(&LAG_BOUNDS_US);
    m.family("replication_lag_seconds", "histogram", "Time from recording a change to the peer's acknowledgement.");
    for (bound, n) in LAG_BOUNDS_US.iter().zip(&below) {
        m.sample("replication_lag_seconds_bucket", &format!("{{le=\"{}\"}}", *bound as f64 / 1e6), n);
    }
    m.sample("replication_lag_seconds_bucket", "{le=\"+Inf\"}", count);
    m.sample("replication_lag_seconds_sum", "", sum_us as f64 / 1e6);
    m.sample("replication_lag_seconds_count", "", count);
    m.labelled(
        "replication_syncs_total",
        "counter",
        "Resyncs after the link came up, by kind.",
        "kind",
        &[("full", total(|s| &s.full_syncs)), ("partial", total(|s| &s.partial_syncs))],
    );
    m.labelled(
        "replication_claims_total",
        "counter",
        "Claims (add and the like) the peer refused, that lost to the peer's, or refused untried for lack of a \
         majority.",
        "outcome",
        &[
            ("refused", total(|s| &s.claims_refused)),
            ("lost", total(|s| &s.claims_lost)),
            ("no_majority", replicator.stats.claims_no_majority.load(Ordering::Relaxed)),
        ],
    );
    m.gauge(
        "replication_minority",
        "1 while claims need a majority (--repl-claims majority) and this node cannot reach one, or has not caught up \
         with every peer since it started: claims are refused and GET /health answers 503.",
        u8::from(replicator.refuses_claims()),
    );
    m.gauge(
        "replication_majority",
        "1 while this node and the peers it reaches are a majority of the nodes (claims need one under \
         --repl-claims majority).",
        u8::from(replicator.reaches_majority()),
    );
    m.counter("replication_changes_applied_total", "The peer's changes applied here.", total(|s| &s.changes_applied));
    m.counter(
        "replication_conflicts_total",
        "The peer's changes that lost to a newer version here.",
        total(|s| &s.conflicts),
    );
    m.counter("replication_sent_bytes_total", "Bytes sent to the peer.", total(|s| &s.sent_bytes));
    m.counter("replication_received_bytes_total", "Bytes received from the peer.", total(|s| &s.received_bytes));
    m.counter("replication_links_total", "Links established with the peer.", total(|s| &s.links));
    m.counter("replication_refused_total", "Connections refused on the replication port.", stat(&stats.refused));
    m.counter(
        "replication_tls_mismatches_total",
        "Links refused because only one side ran TLS.",
        stat(&stats.tls_mismatches),
    );
    m.gauge(
        "replication_link_tls",
        "1 when the link runs over mutual TLS.",
        u64::from(replicator.settings.tls.is_some()),
    );
    m.gauge("replication_tombstones", "Deleted keys remembered against late writes.", replicator.tombstones());
    m.counter(
        "replication_tombstones_shed_total",
        "Deletes forgotten for memory before every peer applied them: an older write from a peer can bring such a \
         key back.",
        replicator.tombstones_shed(),
    );
    m.gauge("replication_backlog_size_bytes", "Room for recent changes (--repl-backlog).", backlog.capacity);
}

/// Each peer's link, labelled by its node id.
fn per_peer(m: &mut Exposition, replicator: &Replicator, backlog: &BacklogFigures) {
    let peers: Vec<(String, &crate::replication::replicator::Peer)> =
        (replicator.known_peers().iter()).filter_map(|peer| Some((peer.node()?.to_string(), peer))).collect();
    let family = |m: &mut Exposition, name: &str, kind: &str, help: &str, value: &dyn Fn(&Peer) -> f64| {
        m.family(name, kind, help);
        for (node, peer) in &peers {
            m.sample(name, &format!("{{peer=\"{node}\"}}"), value(peer));
        }
    };
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
    family(m, "replication_link_up", "gauge", "1 when the link to the peer is up.", &|peer| {
        f64::from(u8::from(peer.stats.state.load(Ordering::Relaxed) == LINK_UP))
    });
    family(m, "replication_link_rtt_seconds", "gauge", "The link's round trip, from heartbeats.", &|peer| {
        load(&peer.stats.rtt_ms) / 1000.0
    });
    family(m, "replication_link_clock_skew_seconds", "gauge", "The peer's clock minus this node's.", &|peer| {
        peer.stats.skew_ms.load(Ordering::Relaxed) as f64 / 1000.0
    });
    family(
        m,
        "replication_link_lag_changes",
        "gauge",
        "Changes recorded here the peer has not acknowledged.",
        &|peer| backlog.last_seq.saturating_sub(peer.acked()) as f64,
    );
    family(m, "replication_link_lag_bytes", "gauge", "Bytes sent the peer has not acknowledged.", &|peer| {
        peer.lag_bytes() as f64
    });
    family(m, "replication_link_full_syncs_total", "counter", "Full syncs sent to the peer.", &|peer| {
        load(&peer.stats.full_syncs)
    });
    family(m, "replication_link_partial_syncs_total", "counter", "Partial resyncs sent to the peer.", &|peer| {
        load(&peer.stats.partial_syncs)
    });
    family(m, "replication_link_changes_applied_total", "counter", "The peer's changes applied here.", &|peer| {
        load(&peer.stats.changes_applied)
    });
}
