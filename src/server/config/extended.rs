//! memcached's `-o` options: the TLS settings and `idle_timeout` that it shares
//! with us, and the rest, accepted because start scripts pass them.

use super::Config;
use super::flags::number;
use crate::tls::{MinVersion, VerifyMode};
use std::time::Duration;

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
pub(super) fn extended_option(config: &mut Config, option: &str) -> Result<(), String> {
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
