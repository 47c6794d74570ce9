//! The embedded node behind a C handle: a store, its sweeper, and the daemon's server
//! and replication once the host asks to serve. Safe Rust; `mod.rs` holds the ABI.

use super::StickStatus::{self, *};
use super::boundary::set_last_error;
use super::{StickOpenFlags, StickOptions};
use crate::node::{Node, Written};
use crate::protocol::command::{DEFAULT_ITEM_SIZE_MAX, KEY_MAX_LENGTH, memcached_item_size};
use crate::server::{Invocation, Server, parse_args};
use crate::store::sweeper::{self, Sweeper};
use crate::store::{Clock, DEFAULT_MEMORY_LIMIT, expiry};
use crate::store::{
    DeleteOutcome, DeleteRequest, DeltaOutcome, DeltaRequest, Found, Store, StoreConfig, StoreMode, StoreOutcome,
    StoreRequest, StoreStats,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::Duration;

/// How often the sweeper reclaims a slice of expired items: a tenth of the daemon's
/// rate ([`sweeper::DEFAULT_INTERVAL`]), since an embedded store shares its host's
/// cores and wakes up in every host process.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// How many link timeouts (`--repl-timeout`) a write through the ABI waits at most
/// for its acknowledgement in ack mode.
const ACK_WAIT_TIMEOUTS: u32 = 2;

/// Bumped in the child of every `fork`: handles from before answer `STICKLESS_FORKED`.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static AT_FORK: Once = Once::new();

extern "C" fn forked_child() {
    // An atomic add is async-signal-safe, as a fork handler must be.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

pub struct Embedded {
    /// The store, and once `serve` starts it, its replication: in ack mode a write
    /// through the ABI returns only once the peer holds it, as the daemon's reply does.
    node: Arc<Node>,
    item_size_max: usize,
    cas_enabled: bool,
    sweeper: Option<Sweeper>,
    server: Mutex<Option<Server>>,
}

impl Embedded {
    pub fn open(options: &StickOptions) -> Result<Embedded, StickStatus> {
        // SAFETY: registers a handler that only bumps an atomic; no preconditions.
        AT_FORK.call_once(|| unsafe {
            libc::pthread_atfork(None, None, Some(forked_child));
        });
        let flag = |bit: StickOpenFlags| options.flags & bit as u32 != 0;
        let cas_enabled = !flag(StickOpenFlags::STICKLESS_OPEN_NO_CAS);
        let memory = if options.memory_limit == 0 { DEFAULT_MEMORY_LIMIT as u64 } else { options.memory_limit };
        let item_size_max =
            if options.item_size_max == 0 { DEFAULT_ITEM_SIZE_MAX } else { options.item_size_max as usize };
        let node_id = if options.node_id == 0 { random_node_id() } else { options.node_id as u16 };
        let store = Arc::new(Store::new(
            StoreConfig {
                memory_limit: usize::try_from(memory).unwrap_or(usize::MAX),
                evict: !flag(StickOpenFlags::STICKLESS_OPEN_NO_EVICT),
                cas_enabled,
                node_id,
                ..StoreConfig::default()
            },
            Clock::System,
        ));
        let sweeper = Sweeper::start("stickless-sweeper", Arc::clone(&store), SWEEP_INTERVAL, sweeper::DEFAULT_BUCKETS)
            .map_err(|e| {
                set_last_error(format!("cannot start the sweeper thread: {e}"));
                STICKLESS_IO_ERROR
            })?;
        Ok(Embedded {
            node: Arc::new(Node::new(Arc::clone(&store))),
            item_size_max,
            cas_enabled,
            sweeper: Some(sweeper),
            server: Mutex::new(None),
        })
    }

    /// Waits until what a write recorded is settled, as a connection holds its reply:
    /// in ack mode until the peer has applied it (or the link is down: ack mode then
    /// degrades as the daemon's does). Returns the outcome.
    fn settled<T>(&self, written: Written<T>) -> T {
        if let Some(replicator) = self.node.replicator()
            && written.receipt.recorded != 0
        {
            // A host's thread has no event loop to batch announcements in.
            replicator.announce();
            // The link's own timeout takes it down long before this runs out; the
            // bound only keeps a host thread from hanging should that fail.
            replicator.wait_acknowledged(written.receipt.recorded, replicator.settings.timeout * ACK_WAIT_TIMEOUTS);
        }
        written.outcome
    }

    /// Runs a write that may be a claim (add, cas, append, prepend, incr, decr):
    /// with a peer linked it waits for the peer's verdict, and one the peer refused
    /// runs again on top of the winning write, as a connection's command does.
    fn claimed<T>(&self, write: impl Fn(&Node) -> Written<T>) -> T {
        loop {
            let written = write(&self.node);
            let claim = written.receipt.claim;
            let outcome = self.settled(written);
            match self.node.replicator() {
                Some(replicator) if claim != 0 => {
                    if replicator.wait_claim_verdict(claim, replicator.settings.timeout * ACK_WAIT_TIMEOUTS) {
                        return outcome;
                    }
                }
                _ => return outcome,
            }
        }
    }

    fn check_key(key: &[u8]) -> Result<(), StickStatus> {
        if key.is_empty() || key.len() > KEY_MAX_LENGTH { Err(STICKLESS_BAD_KEY) } else { Ok(()) }
    }

    /// Reads the item at `key` under its shard lock: `read` gets its value, flags,
    /// CAS and seconds left (-1: never expires).
    pub fn get(
        &self,
        key: &[u8],
        read: impl FnOnce(&[u8], u32, u64, i64) -> StickStatus,
    ) -> Result<StickStatus, StickStatus> {
        Self::check_key(key)?;
        let mut status = STICKLESS_NOT_FOUND;
        let clock = self.node.view().clock();
        // Without a touch, a read: it records nothing.
        let found = self.node.get(key, None, |item| {
            let expires_at = item.expires_at();
            // The clock is read only for items that expire.
            let ttl = if expires_at == 0 { -1 } else { i64::from(expires_at.saturating_sub(clock.now_secs())) };
            status = read(item.value(), item.flags(), item.cas(), ttl);
        });
        match found.outcome {
            Found::Hit => Ok(status),
            Found::Miss => Err(STICKLESS_NOT_FOUND),
        }
    }

    /// memcached's exptime for a TTL in seconds from now.
    fn exptime(&self, ttl: u32) -> i32 {
        // memcached reads an exptime above 30 days as a Unix time; the ABI's TTL is
        // always relative, so longer ones are sent as absolute times.
        if i64::from(ttl) <= expiry::MAX_RELATIVE_EXPTIME {
            ttl as i32
        } else {
            i32::try_from(u64::from(self.node.view().clock().now_secs()) + u64::from(ttl)).unwrap_or(i32::MAX)
        }
    }

    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: u32,
        cas: u64,
    ) -> Result<u64, StickStatus> {
        Self::check_key(key)?;
        let (limit, cas_enabled) = (self.item_size_max, self.cas_enabled);
        if memcached_item_size(key.len(), flags, value.len(), cas_enabled) > limit {
            return Err(STICKLESS_VALUE_TOO_LARGE);
        }
        // The same limit as the daemon's: an append whose result would be too large
        // is not stored.
        let fits = |flags: u32, len: usize| memcached_item_size(key.len(), flags, len, cas_enabled) <= limit;
        let request = StoreRequest {
            flags,
            exptime: self.exptime(ttl),
            cas_unique: cas,
            fits: Some(&fits),
            // As memcached: a set that cannot be stored leaves no stale value behind.
            failure_discards_old: mode == StoreMode::Set,
            ..StoreRequest::new(mode, key, value)
        };
        match self.claimed(|node| node.store_item(&request)) {
            StoreOutcome::Stored { cas, .. } => Ok(cas),
            StoreOutcome::NotStored => Err(STICKLESS_NOT_STORED),
            StoreOutcome::Exists => Err(STICKLESS_EXISTS),
            StoreOutcome::NotFound => Err(STICKLESS_NOT_FOUND),
            StoreOutcome::NoMemory => Err(STICKLESS_OUT_OF_MEMORY),
            StoreOutcome::NoMajority => Err(STICKLESS_NO_MAJORITY),
        }
    }

    pub fn delete(&self, key: &[u8]) -> StickStatus {
        if let Err(status) = Self::check_key(key) {
            return status;
        }
        match self.settled(self.node.delete(&DeleteRequest { key, ..Default::default() })) {
            DeleteOutcome::Deleted { .. } => STICKLESS_OK,
            _ => STICKLESS_NOT_FOUND,
        }
    }

    /// Takes the lease lock `key` for `lease` seconds, `owner` as its value: its
    /// token (the item's CAS unique), or `STICKLESS_EXISTS` while another holds it.
    /// With a peer linked, both nodes agree on who holds it (an `add`'s claim).
    pub fn lock(&self, key: &[u8], owner: &[u8], lease: u32) -> Result<u64, StickStatus> {
        if lease == 0 || !self.cas_enabled {
            // A lock without a lease outlives a crashed holder; without CAS uniques
            // there are no tokens.
            return Err(STICKLESS_INVALID_ARGUMENT);
        }
        match self.store(StoreMode::Add, key, owner, 0, lease, 0) {
            Err(STICKLESS_NOT_STORED) => Err(STICKLESS_EXISTS),
            taken => taken,
        }
    }

    /// Releases the lock `key` only if `token` still holds it (compare and delete):
    /// a holder whose lease ran out cannot release the next holder's lock.
    pub fn unlock(&self, key: &[u8], token: u64) -> StickStatus {
        if let Err(status) = Self::check_key(key) {
            return status;
        }
        let request = DeleteRequest { key, compare_cas: Some(token), ..Default::default() };
        match self.settled(self.node.delete(&request)) {
            DeleteOutcome::Deleted { .. } | DeleteOutcome::Kept => STICKLESS_OK,
            DeleteOutcome::NotFound => STICKLESS_NOT_FOUND,
            DeleteOutcome::Exists => STICKLESS_EXISTS,
            DeleteOutcome::NoMemory => STICKLESS_OUT_OF_MEMORY,
        }
    }

    /// The lock `key`'s token, milliseconds since it was taken (from the token's
    /// clock, so every node reports the same age) and seconds of lease left.
    pub fn lock_info(&self, key: &[u8]) -> Result<(u64, u64, i64), StickStatus> {
        let mut info = (0, 0, 0);
        self.get(key, |_, _, token, ttl| {
            let taken_ms = crate::store::version::unix_ms_of(token);
            info = (token, self.node.view().clock().now_ms().saturating_sub(taken_ms), ttl);
            STICKLESS_OK
        })?;
        Ok(info)
    }

    pub fn arithmetic(&self, key: &[u8], incr: bool, delta: u64) -> Result<u64, StickStatus> {
        Self::check_key(key)?;
        match self.claimed(|node| node.arithmetic(&DeltaRequest::new(key, incr, delta), |_, _, _| {})) {
            DeltaOutcome::Value(value) | DeltaOutcome::Created(value) => Ok(value),
            DeltaOutcome::NotFound => Err(STICKLESS_NOT_FOUND),
            DeltaOutcome::NonNumeric => Err(STICKLESS_NON_NUMERIC),
            DeltaOutcome::NoMemory => Err(STICKLESS_OUT_OF_MEMORY),
            DeltaOutcome::Exists => Err(STICKLESS_EXISTS),
            DeltaOutcome::NoMajority => Err(STICKLESS_NO_MAJORITY),
        }
    }

    pub fn touch(&self, key: &[u8], ttl: u32) -> StickStatus {
        if let Err(status) = Self::check_key(key) {
            return status;
        }
        match self.settled(self.node.get(key, Some(self.exptime(ttl)), |_| {})) {
            Found::Hit => STICKLESS_OK,
            Found::Miss => STICKLESS_NOT_FOUND,
        }
    }

    pub fn flush(&self, delay: u32) {
        self.settled(self.node.flush_all(self.exptime(delay)));
    }

    pub fn stats(&self) -> StoreStats {
        self.node.view().stats()
    }

    /// The node, for tests that reach inside it.
    #[cfg(test)]
    pub(super) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Starts the daemon's listeners, workers and replication over this store.
    pub fn serve(&self, args: &[u8]) -> StickStatus {
        let refuse = |message: &str| {
            log::error!("stickless_serve: {message}");
            set_last_error(message);
            STICKLESS_BAD_CONFIG
        };
        let Ok(args) = std::str::from_utf8(args) else {
            return refuse("the arguments are not UTF-8");
        };
        let mut config = match parse_args(args.split_ascii_whitespace().map(String::from)) {
            Ok(Invocation::Run(config)) => *config,
            Ok(_) => return refuse("-h and -V print and exit; they do not serve"),
            Err(message) => return refuse(&message),
        };
        // An embedded node accepts its peer only where told to: repcached's default
        // port is a local daemon's, and a node that only dials needs no port.
        config.replication.accept = config.replication.listen_given;
        // The store's own settings win over any given here.
        config.memory_limit = self.node.view().memory_limit();
        config.item_size_max = self.item_size_max;
        config.disable_cas = !self.cas_enabled;
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        if server.is_some() {
            set_last_error("this store already serves");
            return STICKLESS_ALREADY_SERVING;
        }
        // `--protect-prefix` is the one store setting taken from here (sessions kept
        // from eviction), the first time any is named.
        if !self.node.view().protect_prefixes(config.protected_prefixes.iter().map(|p| p.as_bytes().into()).collect()) {
            return refuse("--protect-prefix was already given to this store");
        }
        match Server::start_with_node(config, Arc::clone(&self.node)) {
            Ok(started) => {
                *server = Some(started);
                STICKLESS_OK
            }
            Err(e) => {
                log::error!("stickless_serve: {e}");
                set_last_error(e.to_string());
                if e.kind() == std::io::ErrorKind::InvalidInput { STICKLESS_BAD_CONFIG } else { STICKLESS_IO_ERROR }
            }
        }
    }

    pub fn memcached_port(&self) -> Option<u16> {
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server.as_ref().and_then(|server| server.local_addrs().first().map(|addr| addr.port()))
    }

    pub fn replication_port(&self) -> Option<u16> {
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server.as_ref().and_then(|server| server.replication_addr().map(|addr| addr.port()))
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(server) = self.server.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            server.shutdown();
        }
        // Joins the sweeper.
        self.sweeper.take();
    }
}

fn random_node_id() -> u16 {
    let mut random = [0u8; 2];
    // SAFETY: getrandom writes at most `random.len()` bytes into the buffer.
    unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    // 1..=NODE_MAX: 0 is what an unset id would look like.
    (u16::from_ne_bytes(random) % crate::store::version::NODE_MAX).max(1)
}

/// The process-wide stores of `stickless_open_shared`, by name, with the fork
/// generation they were opened in.
type SharedStores = HashMap<Vec<u8>, (u64, Arc<Embedded>)>;
static SHARED: Mutex<Option<SharedStores>> = Mutex::new(None);

pub fn open_shared(name: &[u8], options: &StickOptions) -> Result<Arc<Embedded>, StickStatus> {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    let stores = shared.get_or_insert_with(HashMap::new);
    let generation = fork_generation();
    if let Some((opened_in, store)) = stores.get(name) {
        if *opened_in == generation {
            return Ok(Arc::clone(store));
        }
        // Opened by a parent before fork: its threads are not here. Forget it
        // without running its destructor (which would join them) and start afresh.
        if let Some((_, stale)) = stores.remove(name) {
            std::mem::forget(stale);
        }
    }
    let store = Arc::new(Embedded::open(options)?);
    stores.insert(name.to_vec(), (generation, Arc::clone(&store)));
    Ok(store)
}

/// Drops the registry's reference to the shared store `name`; false if there is none.
pub fn release_shared(name: &[u8]) -> bool {
    let removed = {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        shared.as_mut().and_then(|stores| stores.remove(name))
    };
    match removed {
        // Dropped outside the registry lock: the last reference joins its threads.
        Some((opened_in, store)) if opened_in != fork_generation() => {
            std::mem::forget(store);
            true
        }
        Some(_) => true,
        None => false,
    }
}
