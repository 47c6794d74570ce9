//! The command line: memcached's flags (memcached.c `usage()`) and ours, as one
//! table of names, the value each takes and what it sets.

use super::checks::{
    apply_repcached_aliases, authenticated_protocol, check_aspnet, check_item_size, check_replication,
};
use super::extended::extended_option;
use super::file::config_file_options;
use super::{Config, Invocation, ProtocolChoice, ReplSync};
use crate::protocol::command::KEY_MAX_LENGTH;
use crate::replication::ClaimRule;
use crate::store::version::NODE_MAX;
use crate::tls::PeerSettings;
use std::path::PathBuf;
use std::time::Duration;

/// Parses memcached-style arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, String> {
    let mut parsing = Parsing::default();
    let mut args = expand_config_files(args)?.into_iter();
    while let Some(arg) = args.next() {
        let Some((name, inline)) = split_flag(&arg)? else {
            // -v, -vv, -vvv: one level each.
            parsing.config.verbosity = parsing.config.verbosity.saturating_add((arg.len() - 1) as u8);
            continue;
        };
        let flag = FLAGS
            .iter()
            .find(|flag| {
                (!name.is_empty() && flag.long == name) || (name.chars().count() == 1 && name.starts_with(flag.short))
            })
            .ok_or_else(|| format!("unknown option '{arg}'; see -h"))?;
        let value = match flag.value {
            Some(what) => inline.or_else(|| args.next()).ok_or_else(|| format!("option -{name} needs {what}"))?,
            None => String::new(),
        };
        (flag.apply)(&mut parsing, &value)?;
        if let Some(answer) = parsing.answer.take() {
            return Ok(answer);
        }
    }
    parsing.finish().map(|config| Invocation::Run(Box::new(config)))
}

/// `--config-file FILE` stands for the options in the file, where it is given.
fn expand_config_files<I: IntoIterator<Item = String>>(args: I) -> Result<Vec<String>, String> {
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
    Ok(expanded)
}

/// Splits "--name=value", "-p11211" and "-p" into a name and maybe a value; `None`
/// for a run of `v`s (`-vv`), which counts its letters.
fn split_flag(arg: &str) -> Result<Option<(&str, Option<String>)>, String> {
    if let Some(long) = arg.strip_prefix("--") {
        return Ok(Some(match long.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (long, None),
        }));
    }
    match arg.strip_prefix('-') {
        // A bare "-", or no dash at all.
        None | Some("") => Err(format!("unknown argument '{arg}'")),
        Some(short) if short.chars().all(|c| c == 'v') => Ok(None),
        Some(short) => {
            let (name, rest) = short.split_at(short.chars().next().map_or(0, char::len_utf8));
            Ok(Some((name, (!rest.is_empty()).then(|| rest.to_string()))))
        }
    }
}

/// What the flags have set so far, with what only means something together.
#[derive(Default)]
struct Parsing {
    config: Config,
    /// repcached's `-x` and `-X` (see [`apply_repcached_aliases`]).
    peer_host: Option<String>,
    repl_port: Option<u16>,
    /// `--repl-tls-cert`, `--repl-tls-key`, `--repl-tls-ca`: all three or none.
    repl_cert: Option<PathBuf>,
    repl_key: Option<PathBuf>,
    repl_ca: Option<PathBuf>,
    /// `-B` was given, which authentication may refuse (see [`authenticated_protocol`]).
    protocol_specified: bool,
    /// `-h` or `-V`: the answer, whatever else is on the line.
    answer: Option<Invocation>,
}

impl Parsing {
    /// The configuration once every flag is read, or why it is refused.
    fn finish(mut self) -> Result<Config, String> {
        let config = &mut self.config;
        apply_repcached_aliases(&mut config.replication, self.peer_host, self.repl_port)?;
        config.replication.tls = match (self.repl_cert, self.repl_key, self.repl_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(PeerSettings { cert, key, ca }),
            (None, None, None) => None,
            _ => return Err("--repl-tls-cert, --repl-tls-key and --repl-tls-ca go together".into()),
        };
        check_replication(config)?;
        check_aspnet(config)?;
        config.tls.server_settings()?;
        config.protocol = authenticated_protocol(config, self.protocol_specified)?;
        if config.sasl && config.sasl_pwdb.is_none() {
            config.sasl_pwdb = std::env::var_os("MEMCACHED_SASL_PWDB").map(PathBuf::from);
            if config.sasl_pwdb.is_none() {
                return Err("-S needs a password file: --sasl-pwdb <file> or MEMCACHED_SASL_PWDB".into());
            }
        }
        check_item_size(config)?;
        Ok(self.config)
    }
}

/// One flag of the command line.
struct Flag {
    /// `-p`; `NO_SHORT` for the long-only flags.
    short: char,
    /// `--port`.
    long: &'static str,
    /// What its value is, as "option -p needs a port" says; `None` for a switch.
    value: Option<&'static str>,
    /// Sets what the flag sets from its value ("" for a switch).
    apply: fn(&mut Parsing, &str) -> Result<(), String>,
}

/// The short name of a flag that has none: a character no argument is split into.
const NO_SHORT: char = '\0';

const fn switch(short: char, long: &'static str, apply: fn(&mut Parsing, &str) -> Result<(), String>) -> Flag {
    Flag { short, long, value: None, apply }
}

const fn valued(
    short: char,
    long: &'static str,
    what: &'static str,
    apply: fn(&mut Parsing, &str) -> Result<(), String>,
) -> Flag {
    Flag { short, long, value: Some(what), apply }
}

/// Every flag, grouped as `USAGE` groups them. memcached's refusals keep memcached's words.
const FLAGS: &[Flag] = &[
    valued('p', "port", "a port", |p, v| set(&mut p.config.port, number(v, "port"))),
    valued('U', "udp-port", "a port", |_, v| match number::<u16>(v, "UDP port")? {
        0 => Ok(()),
        _ => Err("UDP is not supported: -U accepts only 0 (off)".into()),
    }),
    valued('l', "listen", "an address", |p, v| {
        p.config.listen.extend(v.split(',').map(str::to_string));
        Ok(())
    }),
    valued('s', "unix-socket", "a path", |p, v| set(&mut p.config.unix_socket, Ok(Some(v.into())))),
    valued('a', "unix-mask", "an octal mask", |p, v| {
        let mask = u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o777);
        set(&mut p.config.unix_mask, mask.ok_or_else(|| format!("invalid unix socket mask '{v}' (octal, at most 777)")))
    }),
    valued('b', "listen-backlog", "a number", |p, v| set(&mut p.config.backlog, number(v, "backlog"))),
    valued('t', "threads", "a number", |p, v| {
        let threads = positive(number(v, "threads")?, "Number of threads must be greater than 0");
        set(&mut p.config.threads, threads)
    }),
    valued('c', "conn-limit", "a number", |p, v| set(&mut p.config.max_connections, number(v, "connection limit"))),
    valued('m', "memory-limit", "megabytes", |p, v| {
        let megabytes: usize = positive(number(v, "memory limit")?, "Memory limit must be at least 1 megabyte")?;
        set(&mut p.config.memory_limit, Ok(megabytes.saturating_mul(1024 * 1024)))
    }),
    switch('M', "disable-evictions", |p, _| set(&mut p.config.no_evict, Ok(true))),
    valued('I', "max-item-size", "a size", |p, v| set(&mut p.config.item_size_max, size(v))),
    valued('R', "max-reqs-per-event", "a number", |p, v| {
        let reqs = positive(number(v, "requests per event")?, "Number of requests per event must be greater than 0");
        set(&mut p.config.reqs_per_event, reqs)
    }),
    valued('B', "protocol", "a protocol", |p, v| {
        p.protocol_specified = true;
        p.config.protocol = match v {
            "auto" => ProtocolChoice::Auto,
            "ascii" => ProtocolChoice::Ascii,
            "binary" => ProtocolChoice::Binary,
            other => return Err(format!("Invalid value for binding protocol: {other}")),
        };
        Ok(())
    }),
    switch('S', "enable-sasl", |p, _| set(&mut p.config.sasl, Ok(true))),
    valued(NO_SHORT, "sasl-pwdb", "a file", |p, v| set(&mut p.config.sasl_pwdb, Ok(Some(v.into())))),
    valued('Y', "auth-file", "a file", |p, v| set(&mut p.config.auth_file, Ok(Some(v.into())))),
    switch('A', "enable-shutdown", |p, _| set(&mut p.config.enable_shutdown, Ok(true))),
    switch('F', "disable-flush-all", |p, _| set(&mut p.config.disable_flush_all, Ok(true))),
    switch('C', "disable-cas", |p, _| set(&mut p.config.disable_cas, Ok(true))),
    valued(NO_SHORT, "protect-prefix", "a key prefix", |p, v| {
        if v.is_empty() || v.len() > KEY_MAX_LENGTH {
            return Err(format!("--protect-prefix must be 1 to {KEY_MAX_LENGTH} bytes"));
        }
        p.config.protected_prefixes.push(v.to_string());
        Ok(())
    }),
    valued(NO_SHORT, "peer", "HOST:PORT", |p, v| {
        // Repeated, or a list as -l takes: the node links with every one.
        for peer in v.split(',').map(str::trim) {
            let peers = &mut p.config.replication.peers;
            if peer.is_empty() {
                return Err(format!("--peer '{v}': an empty address in the list"));
            }
            if peers.iter().any(|given| given == peer) {
                return Err(format!("--peer {peer} is given twice"));
            }
            peers.push(peer.to_string());
        }
        Ok(())
    }),
    valued(NO_SHORT, "repl-listen", "ADDR:PORT", |p, v| {
        p.config.replication.listen = v.to_string();
        set(&mut p.config.replication.listen_given, Ok(true))
    }),
    valued(NO_SHORT, "node-id", "a number", |p, v| {
        let id: u16 = number(v, "node id")?;
        let id = if id > NODE_MAX { Err(format!("--node-id must be at most {NODE_MAX}")) } else { Ok(Some(id)) };
        set(&mut p.config.replication.node_id, id)
    }),
    valued(NO_SHORT, "repl-secret", "a file", |p, v| set(&mut p.config.replication.secret, Ok(Some(v.into())))),
    valued(NO_SHORT, "repl-tls-cert", "a file", |p, v| set(&mut p.repl_cert, Ok(Some(v.into())))),
    valued(NO_SHORT, "repl-tls-key", "a file", |p, v| set(&mut p.repl_key, Ok(Some(v.into())))),
    valued(NO_SHORT, "repl-tls-ca", "a file", |p, v| set(&mut p.repl_ca, Ok(Some(v.into())))),
    switch(NO_SHORT, "repl-insecure", |p, _| set(&mut p.config.replication.insecure, Ok(true))),
    valued(NO_SHORT, "repl-backlog", "a size", |p, v| set(&mut p.config.replication.backlog, size(v))),
    valued(NO_SHORT, "repl-timeout", "seconds", |p, v| {
        let timeout = seconds(v, "replication timeout", "--repl-timeout must be between 0 and 3600 seconds");
        set(&mut p.config.replication.timeout, timeout)
    }),
    valued(NO_SHORT, "repl-sync", "a mode", |p, v| {
        let sync = match v {
            "async" => Ok(ReplSync::Async),
            "ack" => Ok(ReplSync::Ack),
            "one" => Ok(ReplSync::One),
            other => Err(format!("--repl-sync is async, ack or one, not '{other}'")),
        };
        set(&mut p.config.replication.sync, sync)
    }),
    valued(NO_SHORT, "repl-claims", "a rule", |p, v| {
        let claims = match v {
            "majority" => Ok(ClaimRule::Majority),
            "local" => Ok(ClaimRule::Local),
            other => Err(format!("--repl-claims is majority or local, not '{other}'")),
        };
        set(&mut p.config.replication.claims, claims.map(Some))
    }),
    valued(NO_SHORT, "repl-cluster", "a name", |p, v| set(&mut p.config.replication.cluster, Ok(v.to_string()))),
    valued(NO_SHORT, "repl-tombstone", "seconds", |p, v| {
        set(&mut p.config.replication.tombstone_secs, number(v, "tombstone time"))
    }),
    valued(NO_SHORT, "repl-wait-sync", "seconds", |p, v| {
        // Unlike the timeouts, 0 is allowed: it serves at once.
        let secs: f64 = number(v, "sync wait")?;
        if !(0.0..=3600.0).contains(&secs) {
            return Err("--repl-wait-sync must be between 0 and 3600 seconds".into());
        }
        set(&mut p.config.replication.wait_sync, Ok(Duration::from_secs_f64(secs)))
    }),
    valued(NO_SHORT, "aspnet-listen", "ADDR:PORT", |p, v| set(&mut p.config.aspnet.listen, Ok(Some(v.to_string())))),
    switch(NO_SHORT, "aspnet-allow-remote", |p, _| set(&mut p.config.aspnet.allow_remote, Ok(true))),
    valued(NO_SHORT, "aspnet-max-body", "a size", |p, v| set(&mut p.config.aspnet.max_body, size(v))),
    valued(NO_SHORT, "metrics-listen", "ADDR:PORT", |p, v| {
        v.parse::<std::net::SocketAddr>()
            .map_err(|_| format!("--metrics-listen '{v}' is not an ADDR:PORT (use [::1]:PORT for IPv6)"))?;
        set(&mut p.config.metrics_listen, Ok(Some(v.to_string())))
    }),
    valued('x', "peer-host", "a host", |p, v| set(&mut p.peer_host, Ok(Some(v.to_string())))),
    valued('X', "repl-port", "a port", |p, v| set(&mut p.repl_port, number(v, "replication port").map(Some))),
    switch('Z', "enable-ssl", |p, _| set(&mut p.config.tls.enabled, Ok(true))),
    valued('o', "extended", "a list of options", |p, v| {
        v.split(',').try_for_each(|option| extended_option(&mut p.config, option))
    }),
    valued(NO_SHORT, "tls-handshake-timeout", "seconds", |p, v| {
        let timeout = seconds(v, "handshake timeout", "--tls-handshake-timeout must be between 0 and 3600 seconds");
        set(&mut p.config.tls.handshake_timeout, timeout)
    }),
    switch('d', "daemon", |p, _| set(&mut p.config.service.daemonize, Ok(true))),
    valued('P', "pidfile", "a file", |p, v| set(&mut p.config.service.pid_file, Ok(Some(v.into())))),
    valued('u', "user", "a user name", |p, v| set(&mut p.config.service.user, Ok(Some(v.to_string())))),
    valued('e', "memory-file", "a file", |p, v| set(&mut p.config.memory_file, Ok(Some(v.into())))),
    switch('k', "lock-memory", |p, _| set(&mut p.config.service.lock_memory, Ok(true))),
    switch('r', "enable-coredumps", |p, _| set(&mut p.config.service.core_dumps, Ok(true))),
    switch('L', "enable-largepages", |p, _| {
        note(p, "-L: items live in the heap, not in preallocated pages; large pages are not asked for".into())
    }),
    valued('f', "slab-growth-factor", "a factor", |p, v| {
        let factor: f64 = number(v, "growth factor")?;
        if factor <= 1.0 {
            return Err("Factor must be greater than 1".into());
        }
        note(p, format!("-f {factor}: there are no slab classes; each item takes the memory it needs"))
    }),
    valued('n', "slab-min-size", "bytes", |p, v| {
        let min: usize = positive(number(v, "minimum size")?, "Chunk size must be greater than 0")?;
        note(p, format!("-n {min}: there are no slab chunks; each item takes the memory it needs"))
    }),
    // memcached's -D has no long name.
    valued('D', "", "a delimiter", |p, v| note(p, format!("-D {v}: stats detail (per-prefix stats) is not kept"))),
    switch('v', "verbose", |p, _| {
        p.config.verbosity = p.config.verbosity.saturating_add(1);
        Ok(())
    }),
    switch('h', "help", |p, _| set(&mut p.answer, Ok(Some(Invocation::Help)))),
    switch('V', "version", |p, _| set(&mut p.answer, Ok(Some(Invocation::Version)))),
];

/// Stores a flag's value once it is known to be good.
fn set<T>(field: &mut T, value: Result<T, String>) -> Result<(), String> {
    *field = value?;
    Ok(())
}

/// A flag accepted for start scripts that changes nothing here, said at `-v`.
fn note(parsing: &mut Parsing, why: String) -> Result<(), String> {
    parsing.config.notes.push(why);
    Ok(())
}

/// A count that must not be zero, refused with memcached's message.
fn positive<T: Default + PartialEq>(n: T, refusal: &str) -> Result<T, String> {
    if n == T::default() { Err(refusal.to_string()) } else { Ok(n) }
}

/// A duration in seconds (fractions allowed), above 0 and at most an hour.
fn seconds(text: &str, what: &str, refusal: &str) -> Result<Duration, String> {
    let secs: f64 = number(text, what)?;
    if secs > 0.0 && secs <= 3600.0 { Ok(Duration::from_secs_f64(secs)) } else { Err(refusal.to_string()) }
}

pub(super) fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("invalid {what} '{text}'"))
}

/// memcached's `-I` syntax: a number with an optional k or m suffix.
pub(super) fn size(text: &str) -> Result<usize, String> {
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
                          (repeatable, or a comma list: a full mesh)
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
    --repl-sync=<mode>    async; ack: answer a write once every linked peer
                          has it; one: once any one linked peer has it
                          (default: async)
    --repl-claims=<rule>  who must accept an add, cas, append or prepend before
                          it is granted: majority (of all nodes; a node that
                          cannot reach one refuses with SERVER_ERROR) or local
                          (every linked peer; alone, this node decides)
                          (default: majority from 3 nodes, local for a pair)
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
-u, --user=<user>         assume identity of <username> (only when run as root,
                          where it is required), once the ports are bound
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_in_the_usage_text_once() {
        for (i, flag) in FLAGS.iter().enumerate() {
            // "-p, --port", and "-L, -f, -n, -D" for those with no long name listed.
            let short_listed = [",", " "].iter().any(|after| USAGE.contains(&format!("-{}{after}", flag.short)));
            let listed = (flag.short != NO_SHORT && short_listed)
                || (!flag.long.is_empty() && USAGE.contains(&format!("--{}", flag.long)));
            assert!(listed, "-{} --{} is missing from USAGE", flag.short, flag.long);
            let same_name = |other: &Flag| {
                (flag.short != NO_SHORT && other.short == flag.short)
                    || (!flag.long.is_empty() && other.long == flag.long)
            };
            assert!(!FLAGS[i + 1..].iter().any(same_name), "-{} --{} is in the table twice", flag.short, flag.long);
        }
    }

    #[test]
    fn a_flag_is_found_by_either_name_and_nothing_else() {
        let parse = |args: &[&str]| parse_args(args.iter().map(|s| s.to_string()));
        for args in [&["-p", "1"][..], &["-p1"], &["--port", "1"], &["--port=1"], &["--p", "1"]] {
            let Ok(Invocation::Run(config)) = parse(args) else { panic!("{args:?} refused") };
            assert_eq!(config.port, 1, "{args:?}");
        }
        assert_eq!(parse(&["--"]).unwrap_err(), "unknown option '--'; see -h");
        assert_eq!(parse(&["-"]).unwrap_err(), "unknown argument '-'");
        assert_eq!(parse(&["port"]).unwrap_err(), "unknown argument 'port'");
        assert_eq!(parse(&["--po", "1"]).unwrap_err(), "unknown option '--po'; see -h");
        assert_eq!(parse(&["--port"]).unwrap_err(), "option -port needs a port");
        let Ok(Invocation::Run(config)) = parse(&["-vv", "-v", "--verbose"]) else { panic!() };
        assert_eq!(config.verbosity, 4);
        assert!(matches!(parse(&["-p", "1", "-V", "--bogus"]), Ok(Invocation::Version)));
    }
}
