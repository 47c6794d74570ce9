//! One mapping from what the store did to the counters `stats` shows and to each
//! protocol's answer, used by the text, meta and binary front ends alike.
//!
//! The pattern, for the next front end: run the write through the node
//! ([`crate::node`]), count its outcome here, and answer with its own row of the
//! reply tables below, so that two protocols never count one outcome differently.

use crate::protocol::binary::{StoreOp, status};
use crate::protocol::reply::{self, ErrorReply};
use crate::server::operations::stats::Counters;
use crate::store::{DeleteOutcome, DeltaOutcome, StoreMode, StoreOutcome};

impl Counters {
    /// A read, or with `touch` a gat or touch, that hit or missed.
    #[inline]
    pub fn count_read(&self, touch: bool, hit: bool) {
        let (cmds, hits, misses) = match touch {
            true => (&self.cmd_touch, &self.touch_hits, &self.touch_misses),
            false => (&self.cmd_get, &self.get_hits, &self.get_misses),
        };
        cmds.inc();
        if hit { hits.inc() } else { misses.inc() }
    }

    /// A storage command's outcome (the command itself is counted as it arrives).
    /// The `cas_*` counters count compare-and-swaps alone, as memcached's
    /// `do_store_item` does; an append's CAS mismatch is no `cas_badval`.
    #[inline]
    pub fn count_store(&self, mode: StoreMode, outcome: &StoreOutcome) {
        let cas = mode == StoreMode::Cas;
        match outcome {
            StoreOutcome::Stored { .. } if cas => self.cas_hits.inc(),
            StoreOutcome::Exists if cas => self.cas_badval.inc(),
            StoreOutcome::NotFound if cas => self.cas_misses.inc(),
            StoreOutcome::NoMemory => self.store_no_memory.inc(),
            _ => {}
        }
    }

    /// A delete's outcome, by its protocol's rule: memcached counts them differently
    /// in its text, binary and meta paths, and clients of each read those counts.
    #[inline]
    pub fn count_delete(&self, outcome: &DeleteOutcome, protocol: DeleteCounting) {
        let hit = match (outcome, protocol) {
            (DeleteOutcome::Deleted { .. }, _) => Some(true),
            // `delete` answers NOT_FOUND to anything but a removal.
            (_, DeleteCounting::Text) => Some(false),
            // A stale mark (`md ... I`) is no hit; a kept item otherwise is.
            (DeleteOutcome::Kept, DeleteCounting::Meta { invalidate }) => (!invalidate).then_some(true),
            (DeleteOutcome::Kept, DeleteCounting::Binary) => Some(true),
            (DeleteOutcome::NotFound, _) => Some(false),
            // A CAS mismatch: a miss to meta, neither to binary.
            (DeleteOutcome::Exists, DeleteCounting::Meta { .. }) => Some(false),
            (DeleteOutcome::Exists, DeleteCounting::Binary) | (DeleteOutcome::NoMemory, _) => None,
        };
        match hit {
            Some(true) => self.delete_hits.inc(),
            Some(false) => self.delete_misses.inc(),
            None => {}
        }
    }

    /// An incr or decr: an item it created is neither hit nor miss, as in memcached.
    #[inline]
    pub fn count_delta(&self, incr: bool, outcome: &DeltaOutcome) {
        let (hits, misses) =
            if incr { (&self.incr_hits, &self.incr_misses) } else { (&self.decr_hits, &self.decr_misses) };
        match outcome {
            DeltaOutcome::Value(_) => hits.inc(),
            DeltaOutcome::NotFound => misses.inc(),
            _ => {}
        }
    }
}

/// Which protocol's rule a delete is counted by.
#[derive(Clone, Copy, Debug)]
pub enum DeleteCounting {
    Text,
    Binary,
    /// `md`, which with `I` marks the item stale rather than removing it.
    Meta {
        invalidate: bool,
    },
}

/// The text protocol's line for a delete's outcome.
pub fn text_delete_line(outcome: &DeleteOutcome) -> &'static [u8] {
    match outcome {
        DeleteOutcome::Deleted { .. } => reply::DELETED,
        _ => reply::NOT_FOUND,
    }
}

/// The meta protocol's status for an `md` (running out of memory answers
/// memcached's error line instead).
pub fn meta_delete_status(outcome: &DeleteOutcome) -> &'static [u8] {
    match outcome {
        DeleteOutcome::Deleted { .. } | DeleteOutcome::Kept => b"HD",
        DeleteOutcome::NotFound => b"NF",
        DeleteOutcome::Exists => b"EX",
        DeleteOutcome::NoMemory => ErrorReply::OutOfMemory.line(),
    }
}

/// The binary protocol's status for a DELETE.
pub fn binary_delete_status(outcome: &DeleteOutcome) -> u16 {
    match outcome {
        DeleteOutcome::Deleted { .. } | DeleteOutcome::Kept => status::SUCCESS,
        DeleteOutcome::Exists => status::KEY_EEXISTS,
        DeleteOutcome::NotFound => status::KEY_ENOENT,
        DeleteOutcome::NoMemory => status::ENOMEM,
    }
}

/// The text protocol's line for a storage command's outcome.
pub fn text_store_line(outcome: &StoreOutcome) -> &'static [u8] {
    match outcome {
        StoreOutcome::Stored { .. } => reply::STORED,
        StoreOutcome::NotStored => reply::NOT_STORED,
        StoreOutcome::Exists => reply::EXISTS,
        StoreOutcome::NotFound => reply::NOT_FOUND,
        StoreOutcome::NoMemory => ErrorReply::OutOfMemoryStoring.line(),
        StoreOutcome::NoMajority => ErrorReply::NoMajority.line(),
    }
}

/// The meta protocol's status for an `ms` that did not store (`HD` is written with
/// its return flags; running out of memory answers memcached's error line).
pub fn meta_store_status(outcome: &StoreOutcome) -> &'static [u8] {
    match outcome {
        StoreOutcome::Stored { .. } => b"HD",
        StoreOutcome::NotStored => b"NS",
        StoreOutcome::Exists => b"EX",
        StoreOutcome::NotFound => b"NF",
        StoreOutcome::NoMemory => ErrorReply::OutOfMemoryStoring.line(),
        StoreOutcome::NoMajority => ErrorReply::NoMajority.line(),
    }
}

/// The binary protocol's status for a storage command's outcome. memcached reports
/// a failed add as "exists" and a failed replace as "not found"; append and prepend
/// (`op` None) answer "not stored" for a missing item.
pub fn binary_store_status(outcome: &StoreOutcome, op: Option<StoreOp>) -> u16 {
    match (outcome, op) {
        (StoreOutcome::Stored { .. }, _) => status::SUCCESS,
        (StoreOutcome::Exists, _) => status::KEY_EEXISTS,
        (StoreOutcome::NoMemory, _) => status::ENOMEM,
        (StoreOutcome::NoMajority, _) => status::ETMPFAIL,
        (StoreOutcome::NotFound, Some(_)) => status::KEY_ENOENT,
        (StoreOutcome::NotStored, Some(StoreOp::Add)) => status::KEY_EEXISTS,
        (StoreOutcome::NotStored, Some(StoreOp::Replace)) => status::KEY_ENOENT,
        (StoreOutcome::NotFound | StoreOutcome::NotStored, _) => status::NOT_STORED,
    }
}
