//! Command-line settings, spelled as memcached spells them (memcached.c `usage()`),
//! so that `stickless` can replace `memcached` in a start script unchanged.

use crate::store::Clock;
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
            memory_limit: 64 * 1024 * 1024,
            no_evict: false,
            item_size_max: 1024 * 1024,
            reqs_per_event: 20,
            verbosity: 0,
            shards: crate::store::DEFAULT_SHARDS,
            // 100 slices of 1024 buckets a second sweep a million items (about two
            // million buckets) in 20 s while holding each lock for microseconds.
            sweep_interval: Duration::from_millis(10),
            sweep_buckets: 1024,
            clock: Clock::System,
            protocol: ProtocolChoice::Auto,
            sasl: false,
            sasl_pwdb: None,
            auth_file: None,
            enable_shutdown: false,
            disable_flush_all: false,
            disable_cas: false,
        }
    }
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
-S, --enable-sasl         binary connections must authenticate with SASL PLAIN
    --sasl-pwdb=<file>    user:password lines for SASL (default: the file named
                          by MEMCACHED_SASL_PWDB)
-Y, --auth-file=<file>    text connections must authenticate with a user:password
                          line of this file, sent as the value of a set
-A, --enable-shutdown     enable the ascii shutdown command
-F, --disable-flush-all   disable flush_all command
-C, --disable-cas         disable use of CAS
-u, --user=<user>         accepted for compatibility; stickless does not switch users
-v, --verbose             verbose (print errors/warnings while in event loop)
-vv                       very verbose (also print client commands/responses)
-h, --help                print this help and exit
-V, --version             print version and exit
";

/// Parses memcached-style arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, String> {
    let mut config = Config::default();
    let mut args = args.into_iter();
    let mut memory_mb: usize = 64;
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
                memory_mb = number(&value("megabytes")?, "memory limit")?;
                if memory_mb == 0 {
                    return Err("Memory limit must be at least 1 megabyte".into());
                }
            }
            "I" | "max-item-size" => config.item_size_max = size(&value("a size")?)?,
            "R" | "max-reqs-per-event" => {
                config.reqs_per_event = number(&value("a number")?, "requests per event")?;
                if config.reqs_per_event == 0 {
                    return Err("Number of requests per event must be greater than 0".into());
                }
            }
            "u" | "user" => {
                value("a user name")?;
            }
            "B" | "protocol" => {
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
            "sasl-pwdb" => config.sasl_pwdb = Some(value("a file")?.into()),
            "Y" | "auth-file" => config.auth_file = Some(value("a file")?.into()),
            _ => return Err(format!("unknown option '{arg}'; see -h")),
        }
    }
    config.memory_limit = memory_mb.saturating_mul(1024 * 1024);
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

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Invocation::Run(config) => Ok(*config),
            other => Err(format!("{other:?}")),
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
        let c = run(&["-B", "binary", "-S", "--sasl-pwdb", "/p", "-Y", "/a"]).unwrap();
        assert_eq!(c.protocol, ProtocolChoice::Binary);
        assert!(c.sasl);
        assert_eq!((c.sasl_pwdb.unwrap(), c.auth_file.unwrap()), (PathBuf::from("/p"), PathBuf::from("/a")));
        let c = run(&["-s", "/tmp/m.sock", "-a", "770"]).unwrap();
        assert_eq!((c.unix_socket.unwrap(), c.unix_mask), (PathBuf::from("/tmp/m.sock"), 0o770));
        assert_eq!(run(&[]).unwrap().unix_mask, 0o700);
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
}
