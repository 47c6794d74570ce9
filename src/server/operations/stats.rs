//! Counters and the `stats` replies.
//!
//! Each worker owns a set of counters that only it writes, so an increment is a
//! plain load and store rather than a locked read-modify-write; `stats` sums all
//! workers' sets (memcached keeps per-thread stats the same way, `threadlocal_stats`).

use crate::protocol::binary::{Header, status, write_header};
use crate::protocol::reply::write_stat;
use crate::server::Shared;
use std::fmt::Arguments;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a `stats` group goes, one statistic at a time: memcached's text lines, or
/// its binary STAT responses.
pub trait StatSink {
    fn stat(&mut self, name: &str, value: Arguments<'_>);
    /// The group is complete.
    fn end(&mut self);
}

/// `STAT <name> <value>` lines, then `END`.
pub struct TextStats<'a>(pub &'a mut Vec<u8>);

impl StatSink for TextStats<'_> {
    fn stat(&mut self, name: &str, value: Arguments<'_>) {
        write_stat(self.0, name, value);
    }
    fn end(&mut self) {
        self.0.extend_from_slice(b"END\r\n");
    }
}

/// One binary response per statistic (the key its name, the value its value), then
/// an empty one (memcached's proto_bin.c `append_bin_stats`).
pub struct BinaryStats<'a> {
    out: &'a mut Vec<u8>,
    header: &'a Header,
    value: Vec<u8>,
}

impl<'a> BinaryStats<'a> {
    pub fn new(out: &'a mut Vec<u8>, header: &'a Header) -> BinaryStats<'a> {
        BinaryStats { out, header, value: Vec::new() }
    }
}

impl StatSink for BinaryStats<'_> {
    fn stat(&mut self, name: &str, value: Arguments<'_>) {
        use std::io::Write;
        self.value.clear();
        let _ = self.value.write_fmt(value);
        let (name, value) = (name.as_bytes(), &self.value);
        let body = (name.len() + value.len()) as u32;
        write_header(self.out, self.header, status::SUCCESS, 0, name.len() as u16, body, 0);
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(value);
    }
    fn end(&mut self) {
        write_header(self.out, self.header, status::SUCCESS, 0, 0, 0, 0);
    }
}

/// A counter with a single writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // Only the owning worker writes, so load + store loses nothing (except a
        // racing `stats reset`, which memcached tolerates as well).
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// One worker's protocol counters (memcached's names).
        #[derive(Default, Debug)]
        pub struct Counters { $(pub $name: Counter,)* }

        /// The sum of all workers' counters.
        #[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
        pub struct CounterTotals { $(pub $name: u64,)* }

        impl Counters {
            pub fn add_to(&self, totals: &mut CounterTotals) {
                $(totals.$name += self.$name.get();)*
            }
            pub fn reset(&self) {
                $(self.$name.reset();)*
            }
        }
    };
}

counters!(
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    get_hits,
    get_misses,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    bytes_read,
    bytes_written,
    conn_yields,
    idle_kicks,
    aspnet_get,
    aspnet_acquire,
    aspnet_release,
    aspnet_put,
    aspnet_delete,
    aspnet_head,
    aspnet_bad_requests,
    aspnet_locks_granted,
    aspnet_locks_contended,
    aspnet_locks_stolen,
);

/// CPU time of this process, user and system, as `seconds.micros` strings.
fn rusage() -> (String, String) {
    // SAFETY: an all-zero `rusage` is a valid value for this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid and writable; getrusage only writes to it.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let fmt = |tv: libc::timeval| format!("{}.{:06}", tv.tv_sec, tv.tv_usec);
    (fmt(usage.ru_utime), fmt(usage.ru_stime))
}

impl Shared {
    pub fn counter_totals(&self) -> CounterTotals {
        let mut totals = CounterTotals::default();
        for counters in self.counters.iter() {
            counters.add_to(&mut totals);
        }
        totals
    }

    pub fn reset_stats(&self) {
        for counters in self.counters.iter() {
            counters.reset();
        }
        self.node.view().reset_stats();
        self.connections.reset();
        if let Some(replicator) = self.node.replicator() {
            replicator.stats.lag.reset();
        }
    }

    /// `stats`: the general statistics, in memcached 1.6's order and names.
    pub fn write_general_stats(&self, sink: &mut impl StatSink) {
        let c = self.counter_totals();
        let s = self.node.view().stats();
        let now = self.node.view().clock().now_secs();
        let (user, system) = rusage();
        let conns = &self.connections;
        let mut stat = |name: &str, value: Arguments<'_>| sink.stat(name, value);
        stat("pid", format_args!("{}", std::process::id()));
        stat("uptime", format_args!("{}", self.started.elapsed().as_secs()));
        stat("time", format_args!("{now}"));
        stat("version", format_args!("{}", crate::server::VERSION));
        stat("pointer_size", format_args!("{}", usize::BITS));
        stat("rusage_user", format_args!("{user}"));
        stat("rusage_system", format_args!("{system}"));
        stat("max_connections", format_args!("{}", self.config.max_connections));
        stat("curr_connections", format_args!("{}", conns.current()));
        stat("total_connections", format_args!("{}", conns.total.load(Ordering::Relaxed)));
        stat("rejected_connections", format_args!("{}", conns.rejected.load(Ordering::Relaxed)));
        stat("connection_structures", format_args!("{}", conns.peak.load(Ordering::Relaxed)));
        stat("cmd_get", format_args!("{}", c.cmd_get));
        stat("cmd_set", format_args!("{}", c.cmd_set));
        stat("cmd_flush", format_args!("{}", c.cmd_flush));
        stat("cmd_touch", format_args!("{}", c.cmd_touch));
        stat("get_hits", format_args!("{}", c.get_hits));
        stat("get_misses", format_args!("{}", c.get_misses));
        stat("get_expired", format_args!("{}", s.get_expired));
        stat("get_flushed", format_args!("{}", s.get_flushed));
        stat("delete_misses", format_args!("{}", c.delete_misses));
        stat("delete_hits", format_args!("{}", c.delete_hits));
        stat("incr_misses", format_args!("{}", c.incr_misses));
        stat("incr_hits", format_args!("{}", c.incr_hits));
        stat("decr_misses", format_args!("{}", c.decr_misses));
        stat("decr_hits", format_args!("{}", c.decr_hits));
        stat("cas_misses", format_args!("{}", c.cas_misses));
        stat("cas_hits", format_args!("{}", c.cas_hits));
        stat("cas_badval", format_args!("{}", c.cas_badval));
        stat("touch_hits", format_args!("{}", c.touch_hits));
        stat("touch_misses", format_args!("{}", c.touch_misses));
        stat("store_too_large", format_args!("{}", c.store_too_large));
        stat("store_no_memory", format_args!("{}", c.store_no_memory));
        stat("auth_cmds", format_args!("{}", c.auth_cmds));
        stat("auth_errors", format_args!("{}", c.auth_errors));
        stat("bytes_read", format_args!("{}", c.bytes_read));
        stat("bytes_written", format_args!("{}", c.bytes_written));
        stat("limit_maxbytes", format_args!("{}", s.memory_limit));
        stat("accepting_conns", format_args!("{}", u8::from(conns.accepting.load(Ordering::Relaxed))));
        stat("listen_disabled_num", format_args!("{}", conns.listen_disabled.load(Ordering::Relaxed)));
        stat("threads", format_args!("{}", self.config.threads));
        stat("conn_yields", format_args!("{}", c.conn_yields));
        stat("idle_kicks", format_args!("{}", c.idle_kicks));
        // memcached's hash table is one power-of-two table; ours is striped, so
        // report the total bucket memory and the power of its item count.
        let power = (s.curr_items.max(1).next_power_of_two().trailing_zeros()).max(16);
        stat("hash_power_level", format_args!("{power}"));
        stat("hash_bytes", format_args!("{}", s.table_bytes));
        stat("hash_is_expanding", format_args!("0"));
        stat("bytes", format_args!("{}", s.item_bytes));
        stat("curr_items", format_args!("{}", s.curr_items));
        stat("total_items", format_args!("{}", s.total_items));
        stat("expired_unfetched", format_args!("{}", s.expired_unfetched));
        stat("evicted_unfetched", format_args!("{}", s.evicted_unfetched));
        stat("evictions", format_args!("{}", s.evictions));
        stat("evictions_skipped_protected", format_args!("{}", s.evictions_skipped_protected));
        stat("reclaimed", format_args!("{}", s.reclaimed));
        stat("memory_used", format_args!("{}", s.memory_used));
        if let Some(tls) = &self.tls {
            stat("ssl_handshake_errors", format_args!("{}", tls.handshake_errors.load(Ordering::Relaxed)));
            stat("time_since_server_cert_refresh", format_args!("{}", tls.since_refresh()));
        }
        if self.config.aspnet.listen.is_some() {
            stat("aspnet_get", format_args!("{}", c.aspnet_get));
            stat("aspnet_acquire", format_args!("{}", c.aspnet_acquire));
            stat("aspnet_release", format_args!("{}", c.aspnet_release));
            stat("aspnet_put", format_args!("{}", c.aspnet_put));
            stat("aspnet_delete", format_args!("{}", c.aspnet_delete));
            stat("aspnet_head", format_args!("{}", c.aspnet_head));
            stat("aspnet_bad_requests", format_args!("{}", c.aspnet_bad_requests));
            stat("aspnet_locks_granted", format_args!("{}", c.aspnet_locks_granted));
            stat("aspnet_locks_contended", format_args!("{}", c.aspnet_locks_contended));
            stat("aspnet_locks_stolen", format_args!("{}", c.aspnet_locks_stolen));
            let items = self.node.view().count_prefix(crate::protocol::aspnet::KEY_PREFIX);
            stat("aspnet_items", format_args!("{items}"));
        }
        if let Some(replicator) = self.node.replicator() {
            replicator.stats_lines(|name, value| stat(name, format_args!("{value}")));
        }
        sink.end();
    }

    /// `stats replication`: the peer link, or `repl_enabled 0` without a peer.
    pub fn write_replication_stats(&self, sink: &mut impl StatSink) {
        let mut stat = |name: &str, value: Arguments<'_>| sink.stat(name, value);
        stat("repl_enabled", format_args!("{}", u8::from(self.node.replicator().is_some())));
        if let Some(replicator) = self.node.replicator() {
            replicator.stats_lines(|name, value| stat(name, format_args!("{value}")));
        }
        sink.end();
    }

    /// `stats sizes`: memcached's answer when it does not track sizes.
    pub fn write_sizes_stats(&self, sink: &mut impl StatSink) {
        sink.stat("sizes_status", format_args!("disabled"));
        sink.end();
    }

    /// `stats settings`.
    pub fn write_settings_stats(&self, sink: &mut impl StatSink) {
        let cfg = &self.config;
        let mut stat = |name: &str, value: Arguments<'_>| sink.stat(name, value);
        stat("maxbytes", format_args!("{}", self.node.view().memory_limit()));
        stat("maxconns", format_args!("{}", cfg.max_connections));
        stat("tcpport", format_args!("{}", cfg.port));
        stat("udpport", format_args!("0"));
        let inter = if cfg.listen.is_empty() { "NULL".to_string() } else { cfg.listen.join(",") };
        stat("inter", format_args!("{inter}"));
        stat("verbosity", format_args!("{}", self.verbosity.load(Ordering::Relaxed)));
        stat("evictions", format_args!("{}", if cfg.no_evict { "off" } else { "on" }));
        stat("domain_socket", format_args!("NULL"));
        stat("shutdown_command", format_args!("{}", yes_no(cfg.enable_shutdown)));
        stat("num_threads", format_args!("{}", cfg.threads));
        stat("reqs_per_event", format_args!("{}", cfg.reqs_per_event));
        stat("cas_enabled", format_args!("{}", if cfg.disable_cas { "no" } else { "yes" }));
        stat("tcp_backlog", format_args!("{}", cfg.backlog));
        let protocol = match cfg.protocol {
            crate::server::ProtocolChoice::Auto => "auto-negotiate",
            crate::server::ProtocolChoice::Ascii => "ascii",
            crate::server::ProtocolChoice::Binary => "binary",
        };
        stat("binding_protocol", format_args!("{protocol}"));
        stat("auth_enabled_sasl", format_args!("{}", yes_no(cfg.sasl)));
        stat("auth_enabled_ascii", format_args!("{}", yes_no(cfg.auth_file.is_some())));
        stat("item_size_max", format_args!("{}", cfg.item_size_max));
        stat("flush_enabled", format_args!("{}", yes_no(!cfg.disable_flush_all)));
        stat("hash_algorithm", format_args!("ahash"));
        stat("store_shards", format_args!("{}", self.node.view().shard_count()));
        // memcached's lines, with its spellings of unset paths: `(null)` for the
        // certificate and key, `NULL` for the rest.
        let tls = &cfg.tls;
        let path = |p: &Option<std::path::PathBuf>, unset: &str| {
            p.as_ref().map_or_else(|| unset.to_string(), |p| p.display().to_string())
        };
        stat("ssl_enabled", format_args!("{}", yes_no(tls.enabled)));
        stat("ssl_chain_cert", format_args!("{}", path(&tls.chain_cert, "(null)")));
        stat("ssl_key", format_args!("{}", path(&tls.key, "(null)")));
        stat("ssl_verify_mode", format_args!("{}", tls.verify_mode.openssl_flags()));
        // OpenSSL's SSL_FILETYPE_PEM.
        stat("ssl_keyformat", format_args!("1"));
        stat("ssl_ciphers", format_args!("{}", tls.ciphers.as_deref().unwrap_or("NULL")));
        stat("ssl_ca_cert", format_args!("{}", path(&tls.ca_cert, "NULL")));
        stat("ssl_wbuf_size", format_args!("{}", tls.wbuf_size));
        stat("ssl_session_cache", format_args!("{}", yes_no(tls.enabled)));
        stat("ssl_kernel_tls", format_args!("no"));
        stat("ssl_min_version", format_args!("{}", tls.min_version.name()));
        stat("idle_timeout", format_args!("{}", cfg.idle_timeout.as_secs()));
        stat("tls_handshake_timeout", format_args!("{}", tls.handshake_timeout.as_secs_f64()));
        sink.end();
    }

    /// `stats items`: stickless has no slab classes, so everything is class 1.
    pub fn write_items_stats(&self, sink: &mut impl StatSink) {
        let s = self.node.view().stats();
        if s.curr_items > 0 {
            let mut stat = |name: &str, value: u64| sink.stat(&format!("items:1:{name}"), format_args!("{value}"));
            stat("number", s.curr_items);
            stat("mem_requested", s.item_bytes);
            stat("evicted", s.evictions);
            stat("outofmemory", self.counter_totals().store_no_memory);
            stat("reclaimed", s.reclaimed);
            stat("expired_unfetched", s.expired_unfetched);
            stat("evicted_unfetched", s.evicted_unfetched);
        }
        sink.end();
    }

    /// `stats slabs`: one pseudo-class holding every item.
    pub fn write_slabs_stats(&self, sink: &mut impl StatSink) {
        let s = self.node.view().stats();
        let c = self.counter_totals();
        let active = u64::from(s.curr_items > 0);
        let mut stat = |name: &str, value: u64| sink.stat(name, format_args!("{value}"));
        if active == 1 {
            stat("1:used_chunks", s.curr_items);
            stat("1:get_hits", c.get_hits);
            stat("1:cmd_set", c.cmd_set);
            stat("1:delete_hits", c.delete_hits);
            stat("1:incr_hits", c.incr_hits);
            stat("1:decr_hits", c.decr_hits);
            stat("1:cas_hits", c.cas_hits);
            stat("1:cas_badval", c.cas_badval);
            stat("1:touch_hits", c.touch_hits);
        }
        stat("active_slabs", active);
        stat("total_malloced", s.memory_used);
        sink.end();
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}
