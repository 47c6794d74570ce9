//! Warm restart (`-e FILE`): at a graceful stop the node writes its items to FILE,
//! and the next start with the same `-e` loads them before it listens, so that an
//! upgrade logs nobody out. memcached's `-e` keeps its slab memory in a mapped file;
//! here the file is a stream of records, written once at the stop.
//!
//! The file, all integers little-endian:
//!
//! ```text
//! magic "STKLWARM" | format u32 | saved_at u32 (Unix seconds) | node_id u16
//! history u64 | last_seq u64   (replication; 0: none)
//! flush_version u64 | flush_at u32
//! peer_count u16 | per peer: node u16 | history u64 | applied u64   (what this node applied of it)
//! newest_version u64   (the newest version this node made or observed)
//! records: key_len u16 (0 ends them) | value_len u32 | flags u32 | expires_at u32 | version u64 | key | value
//!          | part_count u16 (0xffff: no counter) [| base_version u64 | agreed i128 | agreed_version u64
//!          | per part: node u16 | delta i128 | version u64]
//! tombstones: key_len u16 (0 ends them) | version u64 | kept_until u32 | key
//! SHA-256 of every byte before it
//! ```
//!
//! Values, flags, CAS uniques (versions) and absolute expiry times are kept; items
//! that expired meanwhile are dropped. So are the tombstones of recent deletes, so
//! that a peer holding an older copy of a deleted key cannot bring it back when
//! the two resync. The file is written beside FILE and renamed
//! over it, so a stop that dies half way leaves the last good one; and it is
//! removed once loaded, so a node that later crashes does not come back with a
//! stale copy (and stale replication positions) of an earlier run.
//!
//! Format 1, written by builds that linked with one peer, had `peer_history u64 |
//! peer_applied u64` after `last_seq` and no peer list; it is still read, its items
//! and own position kept, and the peer's position dropped (that peer sends a full
//! sync once). Format 2 had no counters after the values; it is still read, and
//! its counters start again from their values. Format 3 had no newest version;
//! it is still read, and the clock starts from what the items and tombstones
//! carry.
//!
//! The newest version matters when the clock is behind a peer's: a delete
//! applied from a peer leaves no tombstone here, so without it a write made after
//! the restart could carry an older version than that delete, win here and lose
//! on the peer, and the two would hold different states for good.

use crate::replication::replicator::{PeerProgress, Progress};
use crate::store::{Counter, KeyChange, KeyState, Part, Store, SyncCursor};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const MAGIC: &[u8; 8] = b"STKLWARM";
const FORMAT: u32 = 4;
/// The single-peer format this build still reads.
const FORMAT_SINGLE_PEER: u32 = 1;
/// The format without counters this build still reads.
const FORMAT_UNCOUNTED: u32 = 2;
/// The format without the newest version this build still reads.
const FORMAT_UNCLOCKED: u32 = 3;
/// A record's part count when its value has no counter (a counter has at most one
/// part per node, 4096 at most).
const NO_COUNTER: u16 = u16::MAX;
/// Buckets copied out per shard lock while saving: the copy is written to the file
/// after the lock is released.
const SAVE_SLICE: usize = 4096;
/// Bytes of the fixed header after the magic (both formats).
const HEADER_LEN: usize = 4 + 4 + 2 + 8 * 2 + 8 + 4 + 2;
const HEADER_LEN_SINGLE_PEER: usize = 4 + 4 + 2 + 8 * 4 + 8 + 4;
/// Bytes of one peer's position.
const PEER_LEN: usize = 2 + 8 + 8;

/// Where replication stood at the save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationPosition {
    pub history: u64,
    pub last_seq: u64,
    /// What this node had applied of each peer's changes.
    pub progress: Vec<PeerProgress>,
}

/// What a save wrote or a load read.
#[derive(Debug)]
pub struct Report {
    pub items: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Items left out on load because they expired meanwhile.
    pub expired: u64,
    /// Items the store had no room for on load (a smaller `-m` than before).
    pub no_memory: u64,
    pub replication: Option<ReplicationPosition>,
}

/// A new file that only this user may read: it holds every session. A file left
/// by an earlier attempt is made private too before it is written over.
fn private_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes `store`'s live items to `path`, atomically. Call once nothing writes any
/// more (after the workers stop).
pub fn save(store: &Store, replication: Option<ReplicationPosition>, path: &Path) -> io::Result<Report> {
    let started = Instant::now();
    // Expired items go first, as the tombstones a sweep leaves while replicating:
    // their versions must still beat an older state a peer holds, after the
    // restart as before it.
    for _ in 0..store.shard_count() {
        store.sweep_step(usize::MAX);
    }
    let temporary = temporary_path(path);
    let mut out =
        Hashing { inner: BufWriter::with_capacity(1 << 20, private_file(&temporary)?), hash: Sha256::new(), bytes: 0 };
    let position = replication.clone().unwrap_or(ReplicationPosition { history: 0, last_seq: 0, progress: Vec::new() });
    let (flush_version, flush_at) = store.flush_marks();
    let mut header = Vec::with_capacity(8 + HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&store.clock().now_secs().to_le_bytes());
    header.extend_from_slice(&store.node_id().to_le_bytes());
    for value in [position.history, position.last_seq, flush_version] {
        header.extend_from_slice(&value.to_le_bytes());
    }
    header.extend_from_slice(&flush_at.to_le_bytes());
    header.extend_from_slice(&(position.progress.len() as u16).to_le_bytes());
    for held in &position.progress {
        header.extend_from_slice(&held.node.to_le_bytes());
        header.extend_from_slice(&held.progress.history.to_le_bytes());
        header.extend_from_slice(&held.progress.applied.to_le_bytes());
    }
    header.extend_from_slice(&store.newest_version().to_le_bytes());
    out.write_all(&header)?;
    let mut cursor = SyncCursor::default();
    let mut slice = Vec::with_capacity(1 << 20);
    let mut items = 0;
    while !cursor.done {
        slice.clear();
        // Copied under the shard's lock, written after it is released.
        cursor = store.sync_slice(cursor, 0, SAVE_SLICE, |change| {
            if let KeyState::Value { value, flags, expires_at, counter } = change.state {
                slice.extend_from_slice(&(change.key.len() as u16).to_le_bytes());
                slice.extend_from_slice(&(value.len() as u32).to_le_bytes());
                slice.extend_from_slice(&flags.to_le_bytes());
                slice.extend_from_slice(&expires_at.to_le_bytes());
                slice.extend_from_slice(&change.version.to_le_bytes());
                slice.extend_from_slice(change.key);
                slice.extend_from_slice(value);
                let count = counter.map_or(NO_COUNTER, |counter| counter.parts.len() as u16);
                slice.extend_from_slice(&count.to_le_bytes());
                if let Some(counter) = counter {
                    slice.extend_from_slice(&counter.base_version.to_le_bytes());
                    slice.extend_from_slice(&counter.agreed.to_le_bytes());
                    slice.extend_from_slice(&counter.agreed_version.to_le_bytes());
                    for part in counter.parts {
                        slice.extend_from_slice(&part.origin.to_le_bytes());
                        slice.extend_from_slice(&part.delta.to_le_bytes());
                        slice.extend_from_slice(&part.version.to_le_bytes());
                    }
                }
                items += 1;
            }
        });
        out.write_all(&slice)?;
    }
    out.write_all(&0u16.to_le_bytes())?;
    for shard in 0..store.shard_count() {
        slice.clear();
        store.shard_tombstones(shard, |key, version, until| {
            slice.extend_from_slice(&(key.len() as u16).to_le_bytes());
            slice.extend_from_slice(&version.to_le_bytes());
            slice.extend_from_slice(&until.to_le_bytes());
            slice.extend_from_slice(key);
        });
        out.write_all(&slice)?;
    }
    out.write_all(&0u16.to_le_bytes())?;
    let digest = out.hash.clone().finalize();
    let mut file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.write_all(&digest)?;
    file.sync_all()?;
    let bytes = out.bytes + digest.len() as u64;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        File::open(dir)?.sync_all()?;
    }
    Ok(Report { items, bytes, seconds: started.elapsed().as_secs_f64(), expired: 0, no_memory: 0, replication })
}

/// Loads a file [`save`] wrote into `store` (new, before it serves) and removes the
/// file; `None` when there is none. A file that is not one, of another format,
/// damaged or cut short is refused with why. The checksum is verified on a second
/// thread while the items are applied, so a start takes the slower of the two, not
/// both (BENCHMARKS.md, "Warm restart"). On `Err` the store may hold part of the
/// refused file: the caller starts with a new store instead.
pub fn load(store: &Store, path: &Path) -> Option<Result<Report, String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("cannot open {}: {e}", path.display()))),
    };
    let result = check_header(file, path).and_then(|checking| {
        let refused = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let checker = scope.spawn(|| {
                let checked = check_digest(checking, path);
                refused.store(checked.is_err(), Ordering::Relaxed);
                checked
            });
            let applied = apply(store, path, &refused);
            let checked = checker.join().unwrap_or_else(|_| Err(format!("{}: the check failed", path.display())));
            // A refused file's own reason comes first: what applying it met follows from it.
            checked.and(applied)
        })
    });
    if result.is_ok()
        && let Err(e) = std::fs::remove_file(path)
    {
        log::warn!("warm restart: loaded {} but cannot remove it: {e}", path.display());
    }
    Some(result)
}

/// A file whose magic and format were read, and the rest of whose bytes are to be
/// hashed.
struct Checking {
    reader: BufReader<File>,
    len: u64,
    head: [u8; 12],
}

/// Verifies the magic and the format, so a foreign file is refused before anything
/// of it is applied.
fn check_header(file: File, path: &Path) -> Result<Checking, String> {
    let refuse = |why: &str| format!("{} is not usable: {why}", path.display());
    let len = file.metadata().map_err(|e| refuse(&e.to_string()))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]).map_err(|e| refuse(&e.to_string()))? {
            0 => break,
            n => got += n,
        }
    }
    if got < MAGIC.len() || &head[..8] != MAGIC {
        return Err(refuse("not a stickless warm restart file"));
    }
    if got < head.len() || len < (MAGIC.len() + HEADER_LEN + 2 + 2 + 32) as u64 {
        return Err(refuse("too short to be a warm restart file (cut short)"));
    }
    let format = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if !(FORMAT_SINGLE_PEER..=FORMAT).contains(&format) {
        return Err(refuse(&format!("format {format}, and this build reads formats {FORMAT_SINGLE_PEER} to {FORMAT}")));
    }
    Ok(Checking { reader, len, head })
}

/// Verifies the checksum over every byte before it.
fn check_digest(checking: Checking, path: &Path) -> Result<(), String> {
    let refuse = |why: &str| format!("{} is not usable: {why}", path.display());
    let Checking { mut reader, len, head } = checking;
    let mut hash = Sha256::new();
    hash.update(head);
    let mut left = len - 12 - 32;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        reader.read_exact(&mut buf[..n]).map_err(|e| refuse(&e.to_string()))?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; 32];
    reader.read_exact(&mut stored).map_err(|e| refuse(&e.to_string()))?;
    if hash.finalize()[..] != stored {
        return Err(refuse("its checksum does not match (damaged or cut short)"));
    }
    Ok(())
}

/// Reads the counter after a record's value into `parts`: its base version,
/// agreed value and agreed version, or `None` for a value without one.
fn read_counter(reader: &mut impl Read, parts: &mut Vec<Part>) -> io::Result<Option<(u64, i128, u64)>> {
    let mut count = [0u8; 2];
    reader.read_exact(&mut count)?;
    let count = u16::from_le_bytes(count);
    if count == NO_COUNTER {
        return Ok(None);
    }
    let mut head = [0u8; 32];
    reader.read_exact(&mut head)?;
    parts.clear();
    let mut part = [0u8; 26];
    for _ in 0..count {
        reader.read_exact(&mut part)?;
        parts.push(Part {
            origin: u16::from_le_bytes([part[0], part[1]]),
            delta: i128::from_le_bytes(part[2..18].try_into().expect("16 bytes")),
            version: u64::from_le_bytes(part[18..].try_into().expect("8 bytes")),
        });
    }
    let base_version = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    let agreed = i128::from_le_bytes(head[8..24].try_into().expect("16 bytes"));
    Ok(Some((base_version, agreed, u64::from_le_bytes(head[24..].try_into().expect("8 bytes")))))
}

/// Reads the file and stores its items, while `refused` (the checksum's verdict,
/// reached on another thread) is not set.
fn apply(store: &Store, path: &Path, refused: &AtomicBool) -> Result<Report, String> {
    let started = Instant::now();
    let refuse = |why: String| format!("{} is not usable: {why}", path.display());
    let file = File::open(path).map_err(|e| refuse(e.to_string()))?;
    let len = file.metadata().map_err(|e| refuse(e.to_string()))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; 8 + HEADER_LEN_SINGLE_PEER];
    reader.read_exact(&mut header[..12]).map_err(|e| refuse(e.to_string()))?;
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let (single_peer, counted) = (format == FORMAT_SINGLE_PEER, format > FORMAT_UNCOUNTED);
    let header_len = if single_peer { HEADER_LEN_SINGLE_PEER } else { HEADER_LEN };
    reader.read_exact(&mut header[12..8 + header_len]).map_err(|e| refuse(e.to_string()))?;
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let node_id = u16::from_le_bytes([header[16], header[17]]);
    let (history, last_seq) = (u64_at(18), u64_at(26));
    // Format 1 put the one peer's position here, without its node id.
    let flush_at_offset = if single_peer { 58 } else { 42 };
    let flush_version = u64_at(flush_at_offset - 8);
    let flush_at = u32::from_le_bytes(header[flush_at_offset..flush_at_offset + 4].try_into().expect("4 bytes"));
    let mut progress = Vec::new();
    if !single_peer {
        let count = u16::from_le_bytes([header[46], header[47]]) as usize;
        let mut peer = [0u8; PEER_LEN];
        for _ in 0..count {
            reader.read_exact(&mut peer).map_err(|e| refuse(e.to_string()))?;
            let at = |offset: usize| u64::from_le_bytes(peer[offset..offset + 8].try_into().expect("8 bytes"));
            let node = u16::from_le_bytes([peer[0], peer[1]]);
            progress.push(PeerProgress { node, progress: Progress { history: at(2), applied: at(10) } });
        }
    }
    if format > FORMAT_UNCLOCKED {
        let mut newest = [0u8; 8];
        reader.read_exact(&mut newest).map_err(|e| refuse(e.to_string()))?;
        store.observe_version(u64::from_le_bytes(newest));
    }
    if node_id != store.node_id() {
        log::warn!(
            "warm restart: {} was saved by node {node_id}, this is node {}: items are loaded, the replication \
             position is not",
            path.display(),
            store.node_id()
        );
    }
    if flush_version != 0 || flush_at != 0 {
        store.apply_remote_flush(flush_version, flush_at);
    }
    let now = store.clock().now_secs();
    let (mut items, mut expired, mut no_memory) = (0, 0, 0);
    let mut record = [0u8; 22];
    let mut key = Vec::with_capacity(256);
    let mut value = Vec::new();
    let mut parts = Vec::new();
    loop {
        if refused.load(Ordering::Relaxed) {
            return Err(refuse("refused while loading".to_string()));
        }
        reader.read_exact(&mut record[..2]).map_err(|e| refuse(e.to_string()))?;
        let key_len = u16::from_le_bytes([record[0], record[1]]) as usize;
        if key_len == 0 {
            break;
        }
        reader.read_exact(&mut record[2..]).map_err(|e| refuse(e.to_string()))?;
        let value_len = u32::from_le_bytes(record[2..6].try_into().expect("4 bytes")) as usize;
        let flags = u32::from_le_bytes(record[6..10].try_into().expect("4 bytes"));
        let expires_at = u32::from_le_bytes(record[10..14].try_into().expect("4 bytes"));
        let version = u64::from_le_bytes(record[14..22].try_into().expect("8 bytes"));
        if value_len as u64 > len {
            return Err(refuse(format!("a record claims {value_len} bytes")));
        }
        key.resize(key_len, 0);
        value.resize(value_len, 0);
        reader.read_exact(&mut key).map_err(|e| refuse(e.to_string()))?;
        reader.read_exact(&mut value).map_err(|e| refuse(e.to_string()))?;
        let counter =
            if counted { read_counter(&mut reader, &mut parts).map_err(|e| refuse(e.to_string()))? } else { None };
        if expires_at != 0 && expires_at <= now {
            expired += 1;
            continue;
        }
        let counter = counter.map(|(base_version, agreed, agreed_version)| Counter {
            base_version,
            agreed,
            agreed_version,
            parts: &parts,
        });
        let state = KeyState::Value { value: &value, flags, expires_at, counter };
        let change = KeyChange { key: &key, version, state };
        match store.apply_remote(&change) {
            crate::store::Applied::NoMemory => no_memory += 1,
            _ => items += 1,
        }
    }
    let mut tomb = [0u8; 12];
    loop {
        reader.read_exact(&mut record[..2]).map_err(|e| refuse(e.to_string()))?;
        let key_len = u16::from_le_bytes([record[0], record[1]]) as usize;
        if key_len == 0 {
            break;
        }
        reader.read_exact(&mut tomb).map_err(|e| refuse(e.to_string()))?;
        key.resize(key_len, 0);
        reader.read_exact(&mut key).map_err(|e| refuse(e.to_string()))?;
        let version = u64::from_le_bytes(tomb[..8].try_into().expect("8 bytes"));
        let until = u32::from_le_bytes(tomb[8..].try_into().expect("4 bytes"));
        if until > now {
            store.restore_tombstone(&key, version, until);
        }
    }
    let replication =
        (history != 0 && node_id == store.node_id()).then_some(ReplicationPosition { history, last_seq, progress });
    Ok(Report { items, bytes: len, seconds: started.elapsed().as_secs_f64(), expired, no_memory, replication })
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".saving");
    path.with_file_name(name)
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Applied, Clock, DeltaRequest, ManualClock, StoreConfig, StoreMode, StoreRequest};

    fn replicated_store(node_id: u16, clock: &ManualClock) -> Store {
        let store = Store::new(StoreConfig { node_id, ..StoreConfig::default() }, Clock::Manual(clock.clone()));
        // As replication does: deletes leave tombstones.
        assert!(store.observe_changes(Box::new(|_| 1), 600));
        store
    }

    #[test]
    fn items_tombstones_and_the_replication_position_come_back() {
        let clock = ManualClock::new(1_700_000_000_000);
        let first = replicated_store(7, &clock);
        first.store(&StoreRequest::new(StoreMode::Set, b"kept", b"value"));
        first.store(&StoreRequest::new(StoreMode::Set, b"counted", b"10"));
        let apart = DeltaRequest { apart: true, ..DeltaRequest::new(b"counted", true, 5) };
        first.arithmetic_with(&apart, |_, _, _| {});
        first.store(&StoreRequest::new(StoreMode::Set, b"deleted", b"gone"));
        assert!(first.delete(b"deleted").is_some());
        let kept_version = first.key_state(b"kept", |change| change.version).unwrap();
        let counter = |store: &Store| {
            store.key_state(b"counted", |change| match change.state {
                KeyState::Value { value, counter: Some(counter), .. } => {
                    (value.to_vec(), counter.base_version, counter.agreed, counter.parts.to_vec())
                }
                _ => panic!("a counter"),
            })
        };
        let counted = counter(&first);
        let deleted_version = first.key_state(b"deleted", |change| change.version).unwrap();
        let path = std::env::temp_dir().join(format!("stickless-warm-unit-{}", std::process::id()));
        let progress = vec![
            PeerProgress { node: 3, progress: Progress { history: 9, applied: 5 } },
            PeerProgress { node: 4, progress: Progress { history: 11, applied: 6 } },
        ];
        let position = ReplicationPosition { history: 42, last_seq: 3, progress };
        let saved = save(&first, Some(position.clone()), &path).unwrap();
        assert_eq!(saved.items, 2);

        clock.advance_secs(10);
        let second = replicated_store(7, &clock);
        let loaded = load(&second, &path).expect("a file").unwrap();
        assert_eq!((loaded.items, loaded.replication), (2, Some(position)));
        assert_eq!(second.key_state(b"kept", |change| change.version), Some(kept_version));
        // A counter keeps what each node counted apart, to add to the peers' counts.
        assert_eq!(counter(&second), counted);
        assert_eq!(counted.as_ref().map(|(value, ..)| &value[..]), Some(&b"15"[..]));
        // The delete is still remembered, with its version, for the peer.
        let deleted = second.key_state(b"deleted", |change| (change.version, change.state == KeyState::Deleted));
        assert_eq!(deleted, Some((deleted_version, true)));
        assert_eq!(second.tombstones(), 1);
        assert!(!path.exists(), "a loaded file is used up");
    }

    /// A delete applied from a peer whose clock is ahead leaves no tombstone here;
    /// after a warm restart this node's writes of the key must still be newer than
    /// it, or the peer would keep the delete and this node the write, for good.
    #[test]
    fn writes_after_a_restart_stay_newer_than_a_peers_delete_applied_before_it() {
        let clock = ManualClock::new(1_700_000_000_000);
        let first = replicated_store(2, &clock);
        first.store(&StoreRequest::new(StoreMode::Set, b"k", b"v"));
        // The peer (node 1) deleted it a second ahead of this node's clock.
        let ahead = (1_700_000_001_000 - crate::store::version::EPOCH_UNIX_MS) << 23 | 1;
        let delete = KeyChange { key: b"k", version: ahead, state: KeyState::Deleted };
        assert_eq!(first.apply_remote(&delete), Applied::Applied);
        assert_eq!(first.key_state(b"k", |change| change.version), None, "no tombstone of a peer's delete");
        let path = std::env::temp_dir().join(format!("stickless-warm-clock-{}", std::process::id()));
        save(&first, None, &path).unwrap();
        let second = replicated_store(2, &clock);
        load(&second, &path).expect("a file").unwrap();
        second.store(&StoreRequest::new(StoreMode::Set, b"k", b"again"));
        let version = second.key_state(b"k", |change| change.version).unwrap();
        assert!(version > ahead, "{version:x} is not newer than the delete {ahead:x}");
    }

    /// An item that expired before the save comes back as its tombstone: its
    /// version must still beat an older state a peer holds. Only this node's
    /// own in a pair; a peer's too in a mesh.
    #[test]
    fn an_expired_item_comes_back_as_its_tombstone() {
        let clock = ManualClock::new(1_700_000_000_000);
        let expiring = |key: &'static [u8]| StoreRequest { exptime: 1, ..StoreRequest::new(StoreMode::Set, key, b"v") };
        let path = std::env::temp_dir().join(format!("stickless-warm-expired-{}", std::process::id()));
        for (mesh, tombstones) in [(false, 1), (true, 2)] {
            let (first, peer) = (replicated_store(7, &clock), replicated_store(8, &clock));
            if mesh {
                first.keep_every_expiry();
            }
            first.store(&expiring(b"own"));
            peer.store(&expiring(b"peer's"));
            peer.key_state(b"peer's", |change| assert_eq!(first.apply_remote(&change), Applied::Applied));
            clock.advance_secs(2);
            assert_eq!(save(&first, None, &path).unwrap().items, 0);
            let second = replicated_store(7, &clock);
            load(&second, &path).expect("a file").unwrap();
            assert_eq!(second.tombstones(), tombstones, "mesh {mesh}");
            assert_eq!(second.key_state(b"own", |change| change.state == KeyState::Deleted), Some(true));
        }
    }

    /// A file an earlier build wrote (format 2: no counters after the values) is
    /// still read: its items come back, and a counter starts again from its value.
    #[test]
    fn a_file_without_counters_is_still_read() {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&FORMAT_UNCOUNTED.to_le_bytes());
        file.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        file.extend_from_slice(&7u16.to_le_bytes());
        for header_word in [42u64, 3, 0] {
            file.extend_from_slice(&header_word.to_le_bytes());
        }
        file.extend_from_slice(&0u32.to_le_bytes());
        file.extend_from_slice(&0u16.to_le_bytes());
        for (key, value) in [(&b"hits"[..], &b"41"[..]), (b"page", b"html")] {
            file.extend_from_slice(&(key.len() as u16).to_le_bytes());
            file.extend_from_slice(&(value.len() as u32).to_le_bytes());
            file.extend_from_slice(&0u32.to_le_bytes());
            file.extend_from_slice(&0u32.to_le_bytes());
            file.extend_from_slice(&(1u64 << 40).to_le_bytes());
            file.extend_from_slice(key);
            file.extend_from_slice(value);
        }
        file.extend_from_slice(&[0; 4]);
        let checksum = Sha256::digest(&file);
        file.extend_from_slice(&checksum);
        let path = std::env::temp_dir().join(format!("stickless-warm-format2-{}", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let clock = ManualClock::new(1_700_000_000_000);
        let store = replicated_store(7, &clock);
        let loaded = load(&store, &path).expect("a file").unwrap();
        assert_eq!(loaded.items, 2);
        assert_eq!(store.arithmetic(b"hits", true, 1), crate::store::DeltaOutcome::Value(42));
        assert_eq!(store.key_state(b"page", |change| change.state == KeyState::Deleted), Some(false));
    }
}
