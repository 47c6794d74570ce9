//! Claims by majority (`--repl-claims majority`): a claim (an `add`, `cas`,
//! `append`, `incr`... whose result depends on what its key held) is proposed to
//! the other nodes, not applied, and every node votes for at most one undecided
//! proposal per key. Two majorities share a node, and that node voted once: no
//! partition, and no race, grants two rival claims.
//!
//! ```text
//!  claimer                                   every other node (a judge)
//!  store: a Proposal, nothing visible ─────► Propose: votes for it unless its vote on
//!  its own vote on the key, if free           the key is taken or it holds a state
//!                                             newer than the proposal's base
//!                                   ◄──────── Ack past it (accepted), or Refuse with
//!                                             its state first (refused)
//!  granted: accepts, itself included, reach a majority: installed here and sent
//!  as a plain state; lost: no majority is left: nothing was ever visible, and
//!  the command runs again on what the refusals brought
//!  either way, Resolve ───────────────────► the vote is free again
//! ```
//!
//! A node's own undecided proposal holds its vote. When a newer rival arrives
//! before the own one has its majority, the node yields: it withdraws its vote
//! from its own and gives it to the rival, so that two nodes racing alone (a
//! pair, or a mesh missing its third node) do not both lose forever. A vote
//! lapses when the proposal's item would have expired anyway, so a claimer that
//! vanished without resolving holds its key no longer than its own lease; and
//! a peer seen in a new run (restarted empty) forgets what it proposed before.

use super::backlog::Proposed;
use crate::store::Proposal;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Stripes of the vote table: claims on different keys never wait for each other.
const STRIPES: usize = 64;

/// How far behind the newest verdict an uncollected one is dropped: verdicts are
/// collected as soon as decided, so only a claim whose client left leaves one.
const VERDICTS_KEPT: u64 = 1 << 20;

/// One node's vote on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Vote {
    /// The node that proposed the claim voted for.
    pub claimer: u16,
    pub version: u64,
    /// Unix seconds after which the vote lapses (the claim's item would be gone by
    /// now even if it was granted); 0 for never.
    pub expires_at: u32,
    /// Our own proposal's sequence number, when the vote is for it.
    pub own: Option<u64>,
}

impl Vote {
    pub fn lapsed(&self, now_secs: u32) -> bool {
        self.expires_at != 0 && now_secs >= self.expires_at
    }
}

pub(super) type VoteTable = HashMap<Box<[u8]>, Vote>;

/// Every node's vote on every key with a proposal undecided.
pub(super) struct Votes {
    stripes: Box<[Mutex<VoteTable>]>,
    hasher: ahash::RandomState,
}

impl Votes {
    pub fn new() -> Votes {
        Votes { stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(), hasher: ahash::RandomState::new() }
    }

    /// The stripe holding `key`'s vote. Taken before the store's shard lock, never
    /// after: a vote is checked and cast with the key's state read under it. A
    /// table only inserted into and removed from whole is used as is when poisoned.
    pub fn stripe(&self, key: &[u8]) -> MutexGuard<'_, VoteTable> {
        let index = (self.hasher.hash_one(key) as usize) % STRIPES;
        self.stripes[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the votes for peer `claimer`'s proposals (it restarted empty, and
    /// will resolve none of them).
    pub fn forget_claimer(&self, claimer: u16) {
        for stripe in self.stripes.iter() {
            let mut stripe = stripe.lock().unwrap_or_else(PoisonError::into_inner);
            stripe.retain(|_, vote| vote.own.is_some() || vote.claimer != claimer);
        }
    }

    /// The votes held for peer `claimer`'s proposals: its key and version each.
    pub fn cast_for(&self, claimer: u16) -> Vec<(Box<[u8]>, u64)> {
        let mut cast = Vec::new();
        for stripe in self.stripes.iter() {
            let stripe = stripe.lock().unwrap_or_else(PoisonError::into_inner);
            let of_claimer = stripe.iter().filter(|(_, vote)| vote.own.is_none() && vote.claimer == claimer);
            cast.extend(of_claimer.map(|(key, vote)| (key.clone(), vote.version)));
        }
        cast
    }

    /// Votes held, for `stats`.
    pub fn held(&self) -> usize {
        self.stripes.iter().map(|stripe| stripe.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}

/// One of our proposals, undecided.
#[derive(Debug)]
pub(super) struct OpenClaim {
    pub proposed: Box<Proposed>,
    /// This node voted for it (its vote on the key was free, and it has not
    /// yielded to a rival since).
    pub voted: bool,
    /// Its writer has cast this node's vote (or found it taken): it may be decided.
    pub opened: bool,
}

/// The first number of a wait for a key's vote (a claim made while this node's
/// vote on the key was taken), apart from the backlog's sequence numbers.
pub(super) const FIRST_WAIT: u64 = 1 << 63;

/// The verdict on one of our proposals, kept until its writer collects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Granted, and installed here as the change recorded at this number: in ack
    /// mode its writer is answered once the peers have that change too, as any
    /// write's is.
    Granted {
        installed: u64,
    },
    Lost,
}

/// Our proposals until decided, the verdicts until their writers collect them, and
/// the claims waiting for this node's vote on their key.
pub(super) struct OwnClaims {
    pub open: Mutex<BTreeMap<u64, OpenClaim>>,
    pub decided: Mutex<BTreeMap<u64, Verdict>>,
    /// Each wait's key: it ends once the key's vote is free, and its claim runs
    /// again then (a proposal made meanwhile could gather no vote here).
    pub waiting: Mutex<BTreeMap<u64, Box<[u8]>>>,
    pub next_wait: std::sync::atomic::AtomicU64,
    /// One thread decides at a time, so a claim is installed once.
    pub deciding: Mutex<()>,
}

impl Default for OwnClaims {
    fn default() -> OwnClaims {
        OwnClaims {
            open: Mutex::default(),
            decided: Mutex::default(),
            waiting: Mutex::default(),
            next_wait: std::sync::atomic::AtomicU64::new(FIRST_WAIT),
            deciding: Mutex::default(),
        }
    }
}

impl OwnClaims {
    pub fn waiting(&self) -> MutexGuard<'_, BTreeMap<u64, Box<[u8]>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new wait for `key`'s vote; its number.
    pub fn wait_for_vote(&self, key: &[u8]) -> u64 {
        let wait = self.next_wait.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut waiting = self.waiting();
        // Waits whose writers went away (the client left) go once far behind.
        while waiting.first_key_value().is_some_and(|(&oldest, _)| oldest + VERDICTS_KEPT < wait) {
            waiting.pop_first();
        }
        waiting.insert(wait, key.into());
        wait
    }

    pub fn open(&self) -> MutexGuard<'_, BTreeMap<u64, OpenClaim>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn decided(&self) -> MutexGuard<'_, BTreeMap<u64, Verdict>> {
        self.decided.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the verdict on `seq` for its writer.
    pub fn decide(&self, seq: u64, verdict: Verdict) {
        let mut decided = self.decided();
        while decided.first_key_value().is_some_and(|(&oldest, _)| oldest + VERDICTS_KEPT < seq) {
            decided.pop_first();
        }
        decided.insert(seq, verdict);
    }
}

/// How a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    Granted,
    Lost,
    Open,
}

/// Whether a judge holding `held` (its state's version, and whether that state is
/// a live item) accepts `proposal` on its state: it refuses one made on an older
/// state than its own, since the claimer had not seen that write; except that a
/// claim made on an absent key stands on a node where the key is absent too, as
/// long as the claim is the newer (it then wins over the tombstone everywhere).
pub(super) fn stands_on(proposal: &Proposal<'_>, held: (u64, bool)) -> bool {
    let (version, live) = held;
    version <= proposal.base || (proposal.absent && !live && version < proposal.version)
}
