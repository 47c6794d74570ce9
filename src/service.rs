//! The process as a service, the way memcached's start scripts run it: `-d` (detach,
//! and return once listening), `-P` (a pid file, removed at exit), `-u` (the user to
//! become once the ports are bound: required as root, as in memcached), `-k` (lock
//! memory) and `-r` (core dumps).
//!
//! Part of the `stickless` binary (`main.rs` declares it), not of the library: a
//! host that embeds the store manages its own process.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The detached child's line to its parent, which waits on it and exits with what
/// it hears: the start script's `memcached -d` returns once the node listens.
pub struct Detached {
    ready: Option<OwnedFd>,
}

/// `-d`: forks; the parent waits for the child to say it listens (exit 0) or to
/// fail (exit with its status, its message already on the terminal), and the
/// child, in a new session, carries on. Call before any thread starts: only the
/// calling thread survives a fork.
pub fn detach() -> io::Result<Detached> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made by pipe2 and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread runs yet (the caller's contract), so the child is a
    // whole copy of this process.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            // SAFETY: setsid has no preconditions; it fails only for a group leader,
            // which a just-forked child is not.
            unsafe { libc::setsid() };
            Ok(Detached { ready: Some(write) })
        }
        _ => {
            drop(write);
            let mut status = [0u8; 1];
            // SAFETY: reads at most one byte into `status`.
            let n = unsafe { libc::read(read.as_raw_fd(), status.as_mut_ptr().cast(), 1) };
            // A child that died before it said anything failed to start.
            std::process::exit(if n == 1 { i32::from(status[0]) } else { 71 });
        }
    }
}

impl Detached {
    /// The node listens: the standard streams go to /dev/null (standard error stays
    /// under `-v`, as in memcached), and the parent returns 0.
    pub fn ready(&mut self, keep_stderr: bool) -> io::Result<()> {
        let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
        let targets: &[i32] = if keep_stderr { &[0, 1] } else { &[0, 1, 2] };
        for &target in targets {
            // SAFETY: dup2 onto a standard stream of this process; both are open.
            if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.tell(0);
        Ok(())
    }

    /// The node could not start: the parent exits with `status`.
    pub fn failed(&mut self, status: u8) {
        self.tell(status);
    }

    fn tell(&mut self, status: u8) {
        if let Some(fd) = self.ready.take() {
            // SAFETY: writes one byte from a live buffer to the pipe's open end.
            unsafe { libc::write(fd.as_raw_fd(), [status].as_ptr().cast(), 1) };
        }
    }
}

/// `-P`: the pid file, removed when dropped (at exit).
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn write(path: &Path) -> io::Result<PidFile> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| io::Error::new(e.kind(), format!("Could not open the pid file {}: {e}", path.display())))?;
        // Removed at exit by whoever the process is by then (-u): absolute, since
        // the directory the process runs in may change.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("could not remove the pid file {}: {e}", self.path.display());
        }
    }
}

/// Why the process cannot take the identity it must run under: memcached's
/// message and exit status (memcached.c, "lose root privileges").
pub struct IdentityError {
    pub status: i32,
    pub message: String,
}

/// The user database's entry for `name`: its uid and gid.
fn lookup_user(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: getpwnam reads a NUL-terminated name; its result is read at once,
    // before any other call could reuse its static buffer (no thread runs getpw*).
    unsafe {
        let entry = libc::getpwnam(c_name.as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    }
}

/// memcached's refusal of a `-u` user the system does not know (EX_NOUSER).
fn no_such_user(name: &str) -> IdentityError {
    IdentityError { status: 67, message: format!("can't find the user {name} to switch to") }
}

fn running_as_root() -> bool {
    // SAFETY: getuid and geteuid have no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 || libc::geteuid() == 0 }
}

/// Before anything starts: as root, a cache must be told (`-u`) which user to
/// become, and that user must exist. memcached refuses both the same way, with
/// EX_USAGE (64) and EX_NOUSER (67). Not root: `-u` is ignored, as in memcached.
pub fn check_identity(user: Option<&str>) -> Result<(), IdentityError> {
    if !running_as_root() {
        return Ok(());
    }
    match user {
        None | Some("") => Err(IdentityError { status: 64, message: "can't run as root without the -u switch".into() }),
        Some(name) if lookup_user(name).is_none() => Err(no_such_user(name)),
        Some(_) => Ok(()),
    }
}

/// `-u USER`: when running as root, becomes that user (its group, and its
/// supplementary groups) for good, once the ports are bound. Not root: nothing to
/// do, as in memcached. Fails with EX_NOUSER or EX_OSERR, as memcached does.
pub fn become_user(name: &str) -> Result<(), IdentityError> {
    if !running_as_root() {
        return Ok(());
    }
    let Some((uid, gid)) = lookup_user(name) else {
        return Err(no_such_user(name));
    };
    let failed = |reason: io::Error| IdentityError {
        status: 71,
        message: format!("failed to assume identity of user {name}: {reason}"),
    };
    let c_name = CString::new(name).map_err(|e| failed(io::Error::other(e)))?;
    // SAFETY: initgroups, setgid and setuid take plain values and a NUL-terminated
    // name; the group goes first, while the process may still change it.
    unsafe {
        if libc::initgroups(c_name.as_ptr(), gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(failed(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Tells systemd (a `Type=notify` unit) how the service stands: `READY=1` once it
/// listens, `STOPPING=1` when it begins to stop. Nothing without `NOTIFY_SOCKET`
/// (sd_notify(3): a datagram to that unix socket, abstract when it starts with `@`).
pub fn notify_systemd(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> io::Result<()> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let target = target.as_encoded_bytes();
        let addr = match target.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(target))?,
        };
        socket.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        log::warn!("cannot tell systemd {state}: {e}");
    }
}

/// `-k`: locks the process's memory, now and to come; a failure is a warning, as in
/// memcached.
pub fn lock_memory() {
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        log::warn!("-k: mlockall() failed: {}; proceeding without", io::Error::last_os_error());
    }
}

/// `-r`: raises the core file size limit to the hard limit.
pub fn enable_core_dumps() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the one struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_CORE, &limit) != 0 {
                log::warn!("-r: failed to raise the core file limit: {}", io::Error::last_os_error());
            }
        }
    }
}
