//! The checks that run once every flag is read: settings that are refused together
//! (memcached's own start-up refusals among them), and repcached's aliases, which
//! mean something only once both are known.

use super::{Config, ProtocolChoice, REPL_DEFAULT_PORT, ReplicationConfig, split_notls};

/// memcached `-I` bounds (memcached.h `ITEM_SIZE_MAX_LOWER_LIMIT` / `_UPPER_LIMIT`).
const ITEM_SIZE_MIN: usize = 1024;
const ITEM_SIZE_MAX: usize = 1024 * 1024 * 1024;

/// Refuses an `-I` outside memcached's bounds, with memcached's messages.
pub(super) fn check_item_size(config: &Config) -> Result<(), String> {
    if config.item_size_max < ITEM_SIZE_MIN {
        return Err("Item max size cannot be less than 1024 bytes.".into());
    }
    if config.item_size_max > ITEM_SIZE_MAX {
        return Err("Cannot set item size limit higher than 1 gigabyte.".into());
    }
    if config.item_size_max > config.memory_limit / 2 {
        return Err("Cannot set item size limit higher than 1/2 of memory max.".into());
    }
    Ok(())
}

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

/// repcached's `-x HOST` names the peer and `-X PORT` is the replication port on
/// both sides (it listens on it and dials the peer's).
pub(super) fn apply_repcached_aliases(
    repl: &mut ReplicationConfig,
    peer_host: Option<String>,
    repl_port: Option<u16>,
) -> Result<(), String> {
    let port = repl_port.unwrap_or(REPL_DEFAULT_PORT);
    if let Some(host) = peer_host {
        if !repl.peers.is_empty() {
            return Err("give the peer once: --peer or -x, not both".into());
        }
        repl.peers.push(if host.contains(':') && !host.starts_with('[') {
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
pub(super) fn check_replication(config: &Config) -> Result<(), String> {
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
pub(super) fn check_aspnet(config: &Config) -> Result<(), String> {
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
