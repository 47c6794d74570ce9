//! The vocabulary of the store's operations: what a front end asks (a storage,
//! delta or meta delete request) and what the store answers, which every front end
//! counts and spells on its own wire (`server/frontend/outcome.rs`).

use super::StoreMode;

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Hit,
    Miss,
}

/// The result of a storage command (memcached's `store_item_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// With what the stored item became: its CAS, its expiry (Unix seconds, 0 for
    /// never) and its value's length (which differ from the request's for appends).
    Stored {
        cas: u64,
        expires_at: u32,
        value_len: usize,
    },
    NotStored,
    Exists,
    NotFound,
    NoMemory,
    /// A claim refused untried: claims need a majority of the nodes
    /// (`--repl-claims majority`) and this node cannot reach one.
    NoMajority,
}

/// The result of incr/decr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaOutcome {
    Value(u64),
    /// A meta `ma` with `N` made the item with its initial value.
    Created(u64),
    NotFound,
    NonNumeric,
    NoMemory,
    /// The compare-CAS did not match.
    Exists,
    /// Refused untried: under `--repl-claims majority` an increment is a claim,
    /// and this node cannot reach a majority of the nodes.
    NoMajority,
}

/// incr/decr with the meta options (memcached's `do_add_delta` plus `ma`'s flags).
#[derive(Clone, Copy, Debug)]
pub struct DeltaRequest<'a> {
    pub key: &'a [u8],
    pub incr: bool,
    pub delta: u64,
    /// Fail with `Exists` unless the item has this CAS; 0 means no check, as in
    /// memcached's `do_add_delta`.
    pub compare_cas: u64,
    /// On a miss, create the item with this value instead of failing.
    pub vivify: Option<u64>,
    /// The CAS the changed item takes instead of a fresh one.
    pub new_cas: Option<u64>,
    /// This node is not linked with every peer: the change is counted in its own
    /// part of the key's counter, to be added to the others' once they meet, and
    /// is no claim (see `counter`). Set by the node, not by front ends.
    pub apart: bool,
    /// A claim a majority of the nodes must accept: proposed, and applied only
    /// once granted (see `Proposal`). Set by the node, not by front ends.
    pub propose: bool,
}

impl<'a> DeltaRequest<'a> {
    pub fn new(key: &'a [u8], incr: bool, delta: u64) -> Self {
        DeltaRequest { key, incr, delta, compare_cas: 0, vivify: None, new_cas: None, apart: false, propose: false }
    }
}

/// A meta delete (`md`): delete, or mark stale, or empty the value.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteRequest<'a> {
    pub key: &'a [u8],
    /// Act only if the item has this CAS.
    pub compare_cas: Option<u64>,
    /// Keep the item, marked stale with a new CAS (and `ttl`, when given).
    pub invalidate: bool,
    pub ttl: Option<i32>,
    /// The CAS an invalidated or emptied item takes instead of a fresh one.
    pub new_cas: Option<u64>,
    /// Replace the item by an empty one with these client flags and this exptime.
    pub empty_value: Option<(u32, i32)>,
}

/// The result of a [`DeleteRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed; the value had this many bytes.
    Deleted {
        value_len: usize,
    },
    /// Marked stale (or emptied) and kept.
    Kept,
    NotFound,
    Exists,
    NoMemory,
}

/// What a meta get (`mg`) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaFound {
    Hit,
    /// Missed, and an empty item was created (`mg` with `N`).
    Created,
    Miss,
}

/// Creating an empty item on a miss (`mg`'s `N` flag).
#[derive(Clone, Copy, Debug)]
pub struct Vivify {
    pub exptime: i32,
    pub cas: Option<u64>,
    pub binary_key: bool,
}

/// A storage request.
#[derive(Clone, Copy)]
pub struct StoreRequest<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i32,
    pub data: &'a [u8],
    /// For `Cas`: the unique the client read.
    pub cas_unique: u64,
    /// For append and prepend: whether an item with these flags and this value
    /// length is within the item size limit; a longer result is `NotStored`, as in
    /// memcached, whose concatenation allocates a new item of the joined size.
    pub fits: Option<&'a dyn Fn(u32, usize) -> bool>,
    /// With `Cas`: a unique lower than the item's still stores, marking the new
    /// item stale and keeping the old TTL (meta `ms` with `I`).
    pub allow_stale: bool,
    /// The CAS the new item takes instead of a fresh one (meta `E`).
    pub new_cas: Option<u64>,
    /// Append or prepend to a missing item stores the data alone (meta `ms` `N`).
    pub vivify: bool,
    /// The key was sent in base64 (meta `b`).
    pub binary_key: bool,
    /// A write refused for want of memory removes the key's old value, so that a
    /// failed set never leaves a stale one readable (memcached proto_text.c
    /// `process_update_command` for `set`; `process_mset_command` for every `ms`).
    pub failure_discards_old: bool,
    /// A claim a majority of the nodes must accept: proposed, and applied only
    /// once granted (see `Proposal`). Set by the node, not by front ends.
    pub propose: bool,
}

impl<'a> StoreRequest<'a> {
    pub fn new(mode: StoreMode, key: &'a [u8], data: &'a [u8]) -> Self {
        StoreRequest {
            mode,
            key,
            flags: 0,
            exptime: 0,
            data,
            cas_unique: 0,
            fits: None,
            allow_stale: false,
            new_cas: None,
            vivify: false,
            binary_key: false,
            failure_discards_old: false,
            propose: false,
        }
    }

    /// Whether the write is a claim: it depends on what the key held (add, cas,
    /// append, prepend, a compare), so with a peer, of two such writes made at once
    /// on two nodes only one may succeed; the other runs again on top of it.
    pub fn is_claim(&self) -> bool {
        matches!(self.mode, StoreMode::Add | StoreMode::Cas | StoreMode::Append | StoreMode::Prepend)
            || self.cas_unique != 0
    }
}
