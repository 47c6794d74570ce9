//! What `stats conns` reports: every listening socket and every open connection, by
//! file descriptor, with its addresses, its state and the seconds since its last
//! command (memcached's `conn_stats` in memcached.c).
//!
//! A connection publishes its state with one relaxed store when a readiness event
//! starts and one when it ends; the registry's locks (one per worker) are taken only
//! when a connection opens or closes and when `stats conns` runs.

use crate::protocol::reply;
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// memcached's connection states, as `stats conns` names them (memcached.c
/// `state_text`), limited to those a stickless connection passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Connected, and nothing received yet.
    NewCmd = 0,
    /// Waiting for a command.
    Read,
    /// Running commands (the connection asking for `stats conns` is in this state).
    ParseCmd,
    /// Waiting for the rest of a value.
    Nread,
    /// Discarding a rejected value.
    Swallow,
    /// Waiting for the socket to take its replies.
    Mwrite,
    /// A `watch` connection: it receives log lines and runs no commands.
    Watch,
}

impl ConnState {
    fn name(self) -> &'static str {
        match self {
            ConnState::NewCmd => "conn_new_cmd",
            ConnState::Read => "conn_read",
            ConnState::ParseCmd => "conn_parse_cmd",
            ConnState::Nread => "conn_nread",
            ConnState::Swallow => "conn_swallow",
            ConnState::Mwrite => "conn_mwrite",
            ConnState::Watch => "conn_watch",
        }
    }

    fn from_u8(value: u8) -> ConnState {
        match value {
            1 => ConnState::Read,
            2 => ConnState::ParseCmd,
            3 => ConnState::Nread,
            4 => ConnState::Swallow,
            5 => ConnState::Mwrite,
            6 => ConnState::Watch,
            _ => ConnState::NewCmd,
        }
    }
}

/// One open connection as others may see it.
#[derive(Debug)]
pub struct ConnInfo {
    pub fd: RawFd,
    /// The client's address (`tcp:127.0.0.1:40000`).
    pub peer: String,
    /// The address it reached (`tcp:127.0.0.1:11211`).
    pub local: String,
    state: AtomicU8,
    /// Store-clock seconds of the last command run.
    last_cmd: AtomicU32,
    /// Bytes of its read and write buffers, for the metrics.
    buffer_bytes: AtomicU32,
}

impl ConnInfo {
    pub fn new(fd: RawFd, peer: String, local: String, now_secs: u32) -> ConnInfo {
        ConnInfo {
            fd,
            peer,
            local,
            state: AtomicU8::new(ConnState::NewCmd as u8),
            last_cmd: AtomicU32::new(now_secs),
            buffer_bytes: AtomicU32::new(0),
        }
    }

    #[inline]
    pub fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Seconds since the last input, at `now_secs`.
    pub fn idle_secs(&self, now_secs: u32) -> u32 {
        now_secs.saturating_sub(self.last_cmd.load(Ordering::Relaxed))
    }

    /// Records the bytes of the connection's read and write buffers (written only
    /// when they change, which is rarely: buffers grow for large values only).
    #[inline]
    pub fn set_buffer_bytes(&self, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        if self.buffer_bytes.load(Ordering::Relaxed) != bytes {
            self.buffer_bytes.store(bytes, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn ran_command(&self, now_secs: u32) {
        self.last_cmd.store(now_secs, Ordering::Relaxed);
    }
}

/// A listening socket's line in `stats conns`.
#[derive(Debug)]
pub struct ListenerInfo {
    pub fd: RawFd,
    pub addr: String,
}

/// One worker's open connections, by descriptor.
type WorkerConns = Mutex<BTreeMap<RawFd, Arc<ConnInfo>>>;

/// Every listener and open connection, for `stats conns`.
#[derive(Debug)]
pub struct ConnRegistry {
    listeners: Vec<ListenerInfo>,
    /// Store-clock seconds when the server started (listeners count from it).
    started_secs: u32,
    /// One map per worker, so opening and closing contend only within a worker.
    workers: Box<[WorkerConns]>,
}

impl ConnRegistry {
    pub fn new(listeners: Vec<ListenerInfo>, workers: usize, started_secs: u32) -> ConnRegistry {
        ConnRegistry { listeners, started_secs, workers: (0..workers).map(|_| Mutex::default()).collect() }
    }

    pub fn add(&self, worker: usize, info: Arc<ConnInfo>) {
        self.workers[worker].lock().unwrap_or_else(|e| e.into_inner()).insert(info.fd, info);
    }

    /// Bytes of every open connection's buffers.
    pub fn buffer_bytes(&self) -> u64 {
        self.workers
            .iter()
            .map(|conns| {
                let conns = conns.lock().unwrap_or_else(|e| e.into_inner());
                conns.values().map(|info| u64::from(info.buffer_bytes.load(Ordering::Relaxed))).sum::<u64>()
            })
            .sum()
    }

    pub fn remove(&self, worker: usize, fd: RawFd) {
        self.workers[worker].lock().unwrap_or_else(|e| e.into_inner()).remove(&fd);
    }

    /// Appends `stats conns` (memcached's format, `END` included), listeners first,
    /// then connections by descriptor.
    pub fn write_stats(&self, out: &mut Vec<u8>, now_secs: u32) {
        for listener in &self.listeners {
            let fd = listener.fd;
            reply::write_stat(out, &format!("{fd}:addr"), format_args!("{}", listener.addr));
            reply::write_stat(out, &format!("{fd}:state"), format_args!("conn_listening"));
            let idle = now_secs.saturating_sub(self.started_secs);
            reply::write_stat(out, &format!("{fd}:secs_since_last_cmd"), format_args!("{idle}"));
        }
        let mut conns: Vec<Arc<ConnInfo>> = Vec::new();
        for worker in self.workers.iter() {
            conns.extend(worker.lock().unwrap_or_else(|e| e.into_inner()).values().cloned());
        }
        conns.sort_by_key(|c| c.fd);
        for conn in conns {
            let fd = conn.fd;
            reply::write_stat(out, &format!("{fd}:addr"), format_args!("{}", conn.peer));
            reply::write_stat(out, &format!("{fd}:listen_addr"), format_args!("{}", conn.local));
            reply::write_stat(out, &format!("{fd}:state"), format_args!("{}", conn.state().name()));
            let idle = now_secs.saturating_sub(conn.last_cmd.load(Ordering::Relaxed));
            reply::write_stat(out, &format!("{fd}:secs_since_last_cmd"), format_args!("{idle}"));
        }
        out.extend_from_slice(reply::END);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_listeners_then_connections_by_descriptor() {
        let listeners = vec![ListenerInfo { fd: 5, addr: "tcp:0.0.0.0:11211".into() }];
        let registry = ConnRegistry::new(listeners, 2, 100);
        let late = Arc::new(ConnInfo::new(9, "tcp:127.0.0.1:2".into(), "tcp:127.0.0.1:11211".into(), 100));
        let early = Arc::new(ConnInfo::new(7, "unix:".into(), "unix:/s".into(), 100));
        registry.add(1, Arc::clone(&late));
        registry.add(0, Arc::clone(&early));
        early.set_state(ConnState::Nread);
        late.ran_command(103);
        late.set_state(ConnState::ParseCmd);
        let mut out = Vec::new();
        registry.write_stats(&mut out, 104);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "STAT 5:addr tcp:0.0.0.0:11211\r\nSTAT 5:state conn_listening\r\nSTAT 5:secs_since_last_cmd 4\r\n\
             STAT 7:addr unix:\r\nSTAT 7:listen_addr unix:/s\r\nSTAT 7:state conn_nread\r\n\
             STAT 7:secs_since_last_cmd 4\r\n\
             STAT 9:addr tcp:127.0.0.1:2\r\nSTAT 9:listen_addr tcp:127.0.0.1:11211\r\n\
             STAT 9:state conn_parse_cmd\r\nSTAT 9:secs_since_last_cmd 1\r\nEND\r\n"
        );
        registry.remove(0, 7);
        let mut out = Vec::new();
        registry.write_stats(&mut out, 104);
        assert!(!String::from_utf8(out).unwrap().contains("STAT 7:"));
    }
}
