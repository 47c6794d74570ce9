//! The `stickless` daemon: `stickless -p 11211 -m 64` behaves as `memcached -p 11211 -m 64`.

mod service;

use service::PidFile;
use stickless::server::{Invocation, Server, USAGE, VERSION, log_filter, parse_args};

fn main() {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Run(config)) => *config,
        Ok(Invocation::Help) => {
            print!("{USAGE}");
            return;
        }
        Ok(Invocation::Version) => {
            println!("stickless {VERSION}");
            return;
        }
        Err(message) => {
            eprintln!("stickless: {message}");
            std::process::exit(64); // EX_USAGE
        }
    };
    // As root, the user to become is checked before anything starts, and refused
    // in memcached's words (no "stickless:" before them: scripts match them).
    if let Err(refused) = service::check_identity(config.service.user.as_deref()) {
        eprintln!("{}", refused.message);
        std::process::exit(refused.status);
    }
    // -d forks now, while this is the only thread; the parent returns once the
    // child listens.
    let mut detached = if config.service.daemonize {
        match service::detach() {
            Ok(detached) => Some(detached),
            Err(e) => {
                eprintln!("stickless: failed to daemon() in order to daemonize: {e}");
                std::process::exit(71); // EX_OSERR
            }
        }
    } else {
        None
    };
    let mut fail = |status: i32, message: String| -> ! {
        eprintln!("stickless: {message}");
        if let Some(detached) = detached.as_mut() {
            detached.failed(status as u8);
        }
        std::process::exit(status);
    };
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        .parse_default_env()
        .format_timestamp_millis()
        .init();
    log::set_max_level(log_filter(config.verbosity));
    for note in &config.notes {
        log::info!("{note}");
    }
    if config.service.core_dumps {
        service::enable_core_dumps();
    }
    if config.service.lock_memory {
        service::lock_memory();
    }
    let (pid_path, user, verbose) =
        (config.service.pid_file.clone(), config.service.user.clone(), config.verbosity > 0);

    // SIGINT, SIGTERM, SIGUSR1 and SIGHUP are blocked before any thread starts, so every
    // thread inherits the mask and only `wait_for_signal` below receives them.
    let signals = handled_signals();
    // SAFETY: `signals` is an initialised sigset; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "pthread_sigmask");

    let server = match Server::start(config) {
        Ok(server) => server,
        // A file named on the command line that holds the wrong thing (a short
        // secret, a key that does not load) is a usage error, as a bad flag is.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => fail(64, e.to_string()), // EX_USAGE
        Err(e) => fail(71, e.to_string()),                                                 // EX_OSERR
    };
    log_listeners(&server);
    let pid_file = pid_path.map(|path| PidFile::write(&path).unwrap_or_else(|e| fail(73, e.to_string()))); // EX_CANTCREAT
    // The ports are bound: root is needed no longer.
    if let Some(user) = &user
        && let Err(refused) = service::become_user(user)
    {
        fail(refused.status, refused.message);
    }
    if let Some(detached) = detached.as_mut()
        && let Err(e) = detached.ready(verbose)
    {
        log::error!("cannot detach from the terminal: {e}");
    }
    // Listening, and synced with the peer under --repl-wait-sync: systemd may start
    // what depends on the cache.
    service::notify_systemd("READY=1");
    let signal = loop {
        match wait_for_signal(&signals) {
            libc::SIGHUP => {
                service::notify_systemd("RELOADING=1");
                reload_certificates(&server);
                service::notify_systemd("READY=1");
            }
            signal => break signal,
        }
    };
    log::info!("signal {signal}: no longer accepting, finishing replies in flight");
    service::notify_systemd("STOPPING=1");
    stop_and_save(server);
    drop(pid_file);
}

/// Where the node listens, at `-v` (the tests read the addresses here).
fn log_listeners(server: &Server) {
    for addr in server.local_addrs() {
        log::info!("listening on {addr}");
    }
    if let Some(addr) = server.replication_addr() {
        log::info!("replication listening on {addr}");
    }
    if let Some(addr) = server.metrics_addr() {
        log::info!("metrics listening on {addr}");
    }
    if let Some(addr) = server.aspnet_addr() {
        log::info!("ASP.NET State Server listening on {addr}");
    }
    if let Some(path) = &server.shared().config.unix_socket {
        log::info!("listening on unix socket {}", path.display());
    }
}

/// Writes the replies in flight, stops every thread, and with `-e` saves the items.
fn stop_and_save(server: Server) {
    let memory_file = server.shared().config.memory_file.clone();
    match server.shutdown_and_save() {
        None => {}
        Some(Ok(report)) => log::warn!(
            "warm restart: saved {} items ({} bytes) to {} in {:.2} s",
            report.items,
            report.bytes,
            memory_file.unwrap_or_default().display(),
            report.seconds
        ),
        Some(Err(e)) => log::error!("warm restart: cannot save to {}: {e}", memory_file.unwrap_or_default().display()),
    }
}

fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given; sigaddset adds valid signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        // `shutdown graceful` (with -A) raises SIGUSR1, as in memcached.
        libc::sigaddset(&mut set, libc::SIGUSR1);
        // SIGHUP reloads the TLS certificates.
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// SIGHUP loads the TLS certificates again, as `refresh_certs` does.
fn reload_certificates(server: &Server) {
    let Some(tls) = &server.shared().tls else {
        log::info!("SIGHUP: no TLS certificates to reload");
        return;
    };
    match tls.reload() {
        Ok(()) => log::info!("SIGHUP: TLS certificates reloaded"),
        Err(message) => log::error!("SIGHUP: {message}; the certificates loaded before stay in use"),
    }
}

fn wait_for_signal(signals: &libc::sigset_t) -> i32 {
    loop {
        let mut signal = 0;
        // SAFETY: `signals` is an initialised set blocked in this thread; `signal` is writable.
        if unsafe { libc::sigwait(signals, &mut signal) } == 0 {
            return signal;
        }
    }
}
