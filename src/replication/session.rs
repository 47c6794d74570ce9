//! One link's conversation with the peer, without I/O: bytes in, bytes out. The
//! link's event loop moves the bytes; tests drive two sessions against each other.
//!
//! ```text
//!  dialer                         acceptor
//!   Hello(nonce d) ───────────►   checks it (a stranger gets nothing back)
//!                  ◄───────────   Hello(nonce a), Auth(mac over d)
//!   Auth(mac over a) ─────────►
//!   Resume(what I hold of you) ►  ◄── Resume(what I hold of you)
//!   changes from the backlog, or a full sync then changes, each way
//!   Ping/Pong every heartbeat, Ack after each batch applied
//! ```
//! Nothing of the cache is sent before a side has received the other's `Resume`,
//! which the other sends only once it has checked the proof.

use super::backlog::{Overflowed, Recorded};
use super::handshake::{PeerHello, fresh_nonce};
use super::heartbeat::{LinkTime, PeerClock, SKEW_WARNING_MS};
use super::replicator::{
    LINK_HANDSHAKE, LINK_SYNCING, LINK_UP, LinkEvent, MAX_PEERS, Progress, ReplStats, Replicator, applying_from,
};
use super::wire::{self, Frame, NONCE_LEN, Position};
use crate::store::{Applied, Counter, KeyChange, KeyState, Part, Proposal, SyncCursor};
use std::sync::atomic::Ordering;

/// Backlog entries copied out per hold of the backlog lock (writers wait for it):
/// a memcpy of their keys, a few microseconds.
const LIVE_BATCH: usize = 512;
/// Buckets of one shard sent per slice of a full sync (one shard lock hold each).
const SYNC_SLICE_BUCKETS: usize = 256;

#[derive(Clone, Copy, Debug)]
enum LinkPhase {
    /// Waiting for the peer's `Hello`.
    Hello,
    /// Waiting for the peer's proof.
    Auth(PeerHello),
    Ready(PeerHello),
}

#[derive(Clone, Copy, Debug)]
enum Sending {
    /// Until the peer says what it holds.
    AwaitResume,
    /// A full sync of changes up to `upto`; later ones go live alongside.
    Full {
        cursor: SyncCursor,
        upto: u64,
    },
    Live,
}

pub struct LinkSession {
    pub dialed: bool,
    /// The peer's slot in the replicator, once it has proved itself.
    slot: Option<usize>,
    /// The peer's run as the changes applied from it are recorded
    /// ([`super::replicator::Peer::run_tag`]); 0 until it has proved itself.
    run_tag: u32,
    our_nonce: [u8; NONCE_LEN],
    phase: LinkPhase,
    sending: Sending,
    /// Our next sequence number to send.
    next_seq: u64,
    /// The peer's full sync being received, with the sequence number it covers.
    receiving_sync: Option<u64>,
    /// The peer's last sequence number applied on this link.
    live_applied: u64,
    /// The peer's claims refused here and not yet answered: each with its key and
    /// our last change when it was refused. A refusal goes out only after all our
    /// changes up to then (the winning write among them, when it is a claim of ours
    /// still unsent), and acknowledgements stop short of it until it has gone: so
    /// the claimer applies our winning claim before it runs its command again.
    refusals: std::collections::VecDeque<(u64, Box<[u8]>, u64)>,
    ack_due: bool,
    bytes_read: u64,
    /// Bytes this session produced, and those the peer confirmed.
    bytes_made: u64,
    bytes_acked: u64,
    pub clock: PeerClock,
    /// When the session started, on both clocks.
    started: LinkTime,
    /// When the next heartbeat is due, on the monotonic clock.
    next_ping_ms: u64,
    skew_warned: bool,
    /// Set when the handshake completes; the link's event loop takes it.
    pub just_ready: bool,
    /// The peer's resume, held while a link this node is dialing to the same peer
    /// would replace this one ([`LinkSession::stand_by`]).
    held_resume: Option<Option<(u64, u64)>>,
    /// Frames to write.
    pub out: Vec<u8>,
    /// Backlog entries being sent, and their keys end to end (reused).
    batch: Vec<(u64, Pending)>,
    batch_keys: Vec<u8>,
    /// Frames encoded under the backlog's lock for the batch: proposals, whose
    /// state is nowhere else, and resolutions (reused).
    batch_frames: Vec<u8>,
    /// The counter of the value frame that comes next: its base version, agreed
    /// value and agreed version, with its parts in `counter_parts` (reused).
    counter_base: Option<(u64, i128, u64)>,
    counter_parts: Vec<Part>,
    /// A full sync's last change, until the peer acknowledges it. Until then the
    /// peer does not judge our claims: a claim made meanwhile may reach it only
    /// inside the sync, as a plain state (a link replaced by another that starts
    /// a full sync sends the first one's claims so), which no node refuses.
    sync_unacknowledged: Option<u64>,
    /// Our resume waits for a full sync on its way from another peer (see
    /// [`LinkSession::offer_resume`]).
    resume_waiting: bool,
    /// Our resume is still to be offered: at the first [`LinkSession::produce`]
    /// after the handshake, once the link is kept and not standing by.
    resume_due: bool,
    /// We asked the peer for a full sync, which has not ended yet.
    asked_full_sync: bool,
    /// A resume sends our changes from the backlog: once those up to here (our
    /// last when the link began) have gone, a `CaughtUp` says so.
    catching_up_to: Option<u64>,
    /// The votes this node held for the peer's proposals when its full sync began,
    /// resolved when it ends (see [`Replicator::votes_cast_for`]).
    votes_before_sync: Vec<(Box<[u8]>, u64)>,
    /// Where this node stood in its other peers' runs when the full sync being
    /// sent began, for its `SyncEnd`.
    sync_positions: Vec<Position>,
}

/// A backlog entry copied out for sending: a key's length in `batch_keys`, or a flush.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Key(usize),
    /// A key's length, and the run its state came from.
    Passed(usize, u32),
    /// A key's length, and the version its `add` made.
    Claim(usize, u64),
    /// A frame's length in `batch_frames`, encoded already.
    Encoded(usize),
    Flush {
        version: u64,
        at: u32,
    },
}

impl LinkSession {
    /// A new link; the dialing side speaks first.
    pub fn start(replicator: &Replicator, dialed: bool, now: LinkTime) -> std::io::Result<LinkSession> {
        let mut session = LinkSession {
            dialed,
            slot: None,
            run_tag: 0,
            our_nonce: fresh_nonce()?,
            phase: LinkPhase::Hello,
            sending: Sending::AwaitResume,
            next_seq: 1,
            receiving_sync: None,
            live_applied: 0,
            refusals: std::collections::VecDeque::new(),
            ack_due: false,
            bytes_read: 0,
            bytes_made: 0,
            bytes_acked: 0,
            clock: PeerClock { last_heard_ms: now.mono_ms, ..PeerClock::default() },
            started: now,
            next_ping_ms: 0,
            skew_warned: false,
            just_ready: false,
            held_resume: None,
            out: Vec::new(),
            batch: Vec::new(),
            batch_keys: Vec::new(),
            batch_frames: Vec::new(),
            counter_base: None,
            counter_parts: Vec::new(),
            sync_unacknowledged: None,
            resume_waiting: false,
            resume_due: false,
            asked_full_sync: false,
            catching_up_to: None,
            votes_before_sync: Vec::new(),
            sync_positions: Vec::new(),
        };
        if dialed {
            session.send_hello(replicator, now.wall_ms);
        }
        Ok(session)
    }

    fn emit(&mut self, frame: &Frame<'_>) {
        let before = self.out.len();
        wire::encode(frame, &mut self.out);
        self.bytes_made += (self.out.len() - before) as u64;
    }

    fn send_hello(&mut self, replicator: &Replicator, now_ms: u64) {
        let hello = replicator.settings.identity.hello(self.our_nonce, replicator.history, now_ms);
        let before = self.out.len();
        wire::encode(&hello, &mut self.out);
        self.bytes_made += (self.out.len() - before) as u64;
    }

    /// Whether the peer got as far as a valid hello (so a failure is a refusal,
    /// not a connection that never formed).
    pub fn met_peer(&self) -> bool {
        !matches!(self.phase, LinkPhase::Hello)
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase, LinkPhase::Ready(_))
    }

    /// The peer's slot in the replicator, once it has proved itself.
    pub fn slot(&self) -> Option<usize> {
        self.slot
    }

    /// The figures this link counts in: its peer's, or the node's before the
    /// peer has proved itself.
    fn stats<'r>(&self, replicator: &'r Replicator) -> &'r ReplStats {
        match self.slot {
            Some(slot) => &replicator.peer(slot).stats,
            None => &replicator.stats,
        }
    }

    pub fn peer_node(&self) -> Option<u16> {
        match self.phase {
            LinkPhase::Ready(peer) => Some(peer.node),
            _ => None,
        }
    }

    /// The peer's run (its `history`), once it has proved itself.
    pub fn peer_history(&self) -> Option<u64> {
        match self.phase {
            LinkPhase::Ready(peer) => Some(peer.history),
            _ => None,
        }
    }

    /// Whether the peer has asked for our changes (after its resume).
    pub fn is_sending(&self) -> bool {
        self.is_ready() && !matches!(self.sending, Sending::AwaitResume)
    }

    /// Whether the peer judges our claims (and acknowledges for ack mode): it has
    /// asked for our changes, and holds our full sync if it needed one.
    pub fn peer_judges(&self) -> bool {
        self.is_sending() && self.sync_unacknowledged.is_none()
    }

    /// The peer has applied our changes up to `applied`; a full sync it has
    /// acknowledged makes it judge our claims from now on.
    fn peer_applied(&mut self, replicator: &Replicator, slot: usize, applied: u64) {
        replicator.peer_applied(slot, applied);
        if self.sync_unacknowledged.is_some_and(|upto| applied >= upto) {
            self.sync_unacknowledged = None;
            replicator.set_acking(slot, true);
        }
    }

    /// The link's state for `stats`.
    pub fn link_state(&self) -> u8 {
        if !self.is_ready() {
            LINK_HANDSHAKE
        } else if self.resume_due || self.asked_full_sync || !self.peer_judges() {
            // Until the peer has asked for our changes and holds our full sync, it
            // does not judge our claims: the link is not up for them.
            LINK_SYNCING
        } else {
            LINK_UP
        }
    }

    /// Handles every whole frame in `input`; returns the bytes used. An error is
    /// the reason to close the link.
    ///
    /// It stops after the frame that completes the handshake ([`Self::just_ready`]):
    /// both nodes dial, and the caller first decides which of two links to one
    /// peer stays, so that the one closed starts no full sync for a resume that
    /// came in the same read.
    pub fn receive(&mut self, replicator: &Replicator, input: &[u8], now: LinkTime) -> Result<usize, String> {
        let mut used = 0;
        let applied_before = self.live_applied;
        let was_ready = self.is_ready();
        while let Some((frame, n)) = wire::decode(&input[used..]).map_err(|e| e.to_string())? {
            used += n;
            self.bytes_read += n as u64;
            self.clock.heard(now.mono_ms);
            self.handle(replicator, frame, now)?;
            if !was_ready && self.is_ready() {
                break;
            }
        }
        self.stats(replicator).received_bytes.fetch_add(used as u64, Ordering::Relaxed);
        if self.live_applied != applied_before
            && self.receiving_sync.is_none()
            && let (LinkPhase::Ready(peer), Some(slot)) = (self.phase, self.slot)
        {
            *replicator.peer(slot).progress() = Progress { history: peer.history, applied: self.live_applied };
        }
        if self.ack_due {
            self.ack_due = false;
            self.emit(&Frame::Ack { applied: self.ackable(), bytes: self.bytes_read });
        }
        Ok(used)
    }

    fn handle(&mut self, replicator: &Replicator, frame: Frame<'_>, now: LinkTime) -> Result<(), String> {
        let identity = &replicator.settings.identity;
        match self.phase {
            LinkPhase::Hello => {
                let peer = identity.check_hello(&frame)?;
                if !self.dialed {
                    self.send_hello(replicator, now.wall_ms);
                }
                let mac = identity.prove(&peer.nonce);
                self.emit(&Frame::Auth { mac });
                // A first clock sample, until pongs refine it. The dialer knows the
                // round trip of its hello (NTP's estimate, as for pongs); the acceptor
                // reads the peer's clock one delivery late.
                let midpoint = if self.dialed { (self.started.wall_ms + now.wall_ms) / 2 } else { now.wall_ms };
                self.clock.skew_ms = Some(peer.clock_ms as i64 - midpoint as i64);
                self.phase = LinkPhase::Auth(peer);
                Ok(())
            }
            LinkPhase::Auth(peer) => {
                identity.check_auth(&frame, &peer, &self.our_nonce)?;
                let slot = replicator.peer_slot(peer.node).ok_or_else(|| {
                    format!("node {} would be a peer over the most a node links with ({MAX_PEERS})", peer.node)
                })?;
                self.slot = Some(slot);
                if replicator.peer(slot).progress().history != peer.history {
                    // A run not seen before: what an earlier run proposed is gone with it.
                    replicator.forget_votes_of(peer.node);
                }
                self.run_tag = replicator.peer(slot).run_tag(slot, peer.history);
                self.phase = LinkPhase::Ready(peer);
                self.just_ready = true;
                self.resume_due = true;
                self.next_ping_ms = now.mono_ms;
                Ok(())
            }
            LinkPhase::Ready(peer) => {
                let slot = self.slot.expect("a ready link has its peer's slot");
                // What this applies is recorded as the peer's run's, which is not sent it back.
                applying_from(self.run_tag, || self.handle_ready(replicator, slot, peer, frame, now.wall_ms))
            }
        }
    }

    fn handle_ready(
        &mut self,
        replicator: &Replicator,
        slot: usize,
        peer: PeerHello,
        frame: Frame<'_>,
        now_ms: u64,
    ) -> Result<(), String> {
        let stats = &replicator.peer(slot).stats;
        match frame {
            Frame::Resume { history, applied } => {
                if !matches!(self.sending, Sending::AwaitResume) || self.held_resume.is_some_and(|held| held.is_some())
                {
                    return Err("the peer sent a second resume".into());
                }
                match &mut self.held_resume {
                    Some(held) => *held = Some((history, applied)),
                    None => self.start_sending(replicator, slot, history, applied),
                }
            }
            Frame::Counter { base_version, agreed, agreed_version, parts } => {
                self.counter_parts.clear();
                self.counter_parts.extend(wire::counter_parts(parts));
                self.counter_base = Some((base_version, agreed, agreed_version));
            }
            Frame::Set { seq, version, flags, expires_ms, key, value } => {
                let expires_at = self.to_local_secs(expires_ms);
                let parts = std::mem::take(&mut self.counter_parts);
                let counter = self.take_counter(&parts);
                let state = KeyState::Value { value, flags, expires_at, counter };
                self.apply(replicator, seq, &KeyChange { key, version, state });
                self.counter_parts = parts;
            }
            Frame::Claim { seq, version, flags, expires_ms, key, value } => {
                let expires_at = self.to_local_secs(expires_ms);
                let parts = std::mem::take(&mut self.counter_parts);
                let counter = self.take_counter(&parts);
                let state = KeyState::Value { value, flags, expires_at, counter };
                let change = KeyChange { key, version, state };
                if replicator.store.apply_peer_change(&change, true, replicator.passes_on()) == Applied::Refused {
                    stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    stats.claims_refused.fetch_add(1, Ordering::Relaxed);
                    self.refusals.push_back((seq, key.into(), replicator.last_seq()));
                    replicator.make_urgent();
                } else {
                    stats.changes_applied.fetch_add(1, Ordering::Relaxed);
                }
                self.counter_parts = parts;
                self.applied(replicator, seq);
            }
            Frame::Refuse { seq, version, flags, expires_ms, key, value } => {
                let parts = std::mem::take(&mut self.counter_parts);
                let counter = self.take_counter(&parts);
                if version != 0 {
                    let expires_at = self.to_local_secs(expires_ms);
                    let state = KeyState::Value { value, flags, expires_at, counter };
                    replicator.store.apply_peer_change(
                        &KeyChange { key, version, state },
                        false,
                        replicator.passes_on(),
                    );
                }
                self.counter_parts = parts;
                replicator.claim_refused(seq, slot);
            }
            Frame::Propose { seq, version, base, absent, flags, expires_ms, key, value } => {
                let expires_at = self.to_local_secs(expires_ms);
                let proposal = Proposal { key, version, base, absent, value, flags, expires_at };
                if replicator.judge(peer.node, &proposal) {
                    stats.changes_applied.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.claims_refused.fetch_add(1, Ordering::Relaxed);
                    self.refusals.push_back((seq, key.into(), replicator.last_seq()));
                    replicator.make_urgent();
                }
                self.applied(replicator, seq);
            }
            Frame::Resolve { seq, version, key } => {
                replicator.resolved(peer.node, key, version);
                self.applied(replicator, seq);
            }
            Frame::CaughtUp { .. } => replicator.caught_up_with(slot),
            Frame::Delete { seq, version, key } => {
                self.apply(replicator, seq, &KeyChange { key, version, state: KeyState::Deleted });
            }
            Frame::Flush { seq, version, at_ms } => {
                replicator.store.apply_peer_flush(version, self.to_local_secs(at_ms), replicator.passes_on());
                self.applied(replicator, seq);
            }
            Frame::Skip { seq } => self.applied(replicator, seq),
            Frame::SyncBegin { seq, flush_version, flush_at_ms } => {
                self.receiving_sync = Some(seq);
                self.asked_full_sync = true;
                self.votes_before_sync = replicator.votes_cast_for(peer.node);
                let at = self.to_local_secs(flush_at_ms);
                replicator.store.apply_peer_flush(flush_version, at, replicator.passes_on());
                stats.receiving_sync.store(true, Ordering::Relaxed);
                stats.sync_items_received.store(0, Ordering::Relaxed);
                log::info!("replication: receiving a full sync from node {}", peer.node);
            }
            Frame::SyncEnd { seq, positions } => {
                let Some(upto) = self.receiving_sync.take() else {
                    return Err("the peer ended a full sync it never began".into());
                };
                self.asked_full_sync = false;
                for (key, version) in std::mem::take(&mut self.votes_before_sync) {
                    replicator.resolved(peer.node, &key, version);
                }
                // What the peer had applied of the others' runs is here now: a link
                // to one of them resumes from there rather than taking a sync too.
                replicator.offer_positions(wire::positions(positions));
                // Changes after `upto` arrived live, in order, alongside the sync.
                let applied = upto.max(seq).max(self.live_applied);
                self.live_applied = applied;
                self.ack_due = true;
                *replicator.peer(slot).progress() = Progress { history: peer.history, applied };
                stats.receiving_sync.store(false, Ordering::Relaxed);
                stats.applied_seq.store(applied, Ordering::Relaxed);
                replicator.mark_synced();
                replicator.caught_up_with(slot);
                log::info!(
                    "replication: full sync from node {} complete, {} items",
                    peer.node,
                    stats.sync_items_received.load(Ordering::Relaxed)
                );
            }
            Frame::Ping { applied, sent_ms } => {
                self.peer_applied(replicator, slot, applied);
                self.emit(&Frame::Pong { applied: self.ackable(), echo_ms: sent_ms, sent_ms: now_ms });
            }
            Frame::Pong { applied, echo_ms, sent_ms } => {
                self.peer_applied(replicator, slot, applied);
                let skew = self.clock.pong(now_ms, echo_ms, sent_ms);
                stats.rtt_ms.store(self.clock.rtt_ms.unwrap_or(0), Ordering::Relaxed);
                stats.skew_ms.store(skew, Ordering::Relaxed);
                if skew.abs() > SKEW_WARNING_MS && !self.skew_warned {
                    self.skew_warned = true;
                    log::warn!(
                        "replication: node {}'s clock is {skew} ms from ours; expiry times are corrected by it, \
                         but fix the clocks (NTP)",
                        peer.node
                    );
                }
            }
            Frame::Ack { applied, bytes } => {
                if let Some(at) = replicator.backlog().recorded_at(applied) {
                    replicator.stats.lag.record(replicator.micros().saturating_sub(at));
                }
                self.peer_applied(replicator, slot, applied);
                self.bytes_acked = bytes;
                stats.lag_bytes.store(self.bytes_made.saturating_sub(bytes), Ordering::Relaxed);
            }
            Frame::Hello { .. } | Frame::Auth { .. } => return Err("the peer repeated its handshake".into()),
        }
        Ok(())
    }

    /// The counter the peer sent just before this value frame, over `parts` (the
    /// session's parts, moved out while the value is applied).
    fn take_counter<'p>(&mut self, parts: &'p [Part]) -> Option<Counter<'p>> {
        let (base_version, agreed, agreed_version) = self.counter_base.take()?;
        Some(Counter { base_version, agreed, agreed_version, parts })
    }

    /// A time on the peer's clock (Unix ms, 0 for none) as Unix seconds on ours.
    /// Clocks within a second of each other are taken to agree: the time is kept
    /// as is, so both nodes hold the same expiry to the second. Beyond that the
    /// estimated skew is taken off (and the log has warned), so that a peer whose
    /// clock is ahead does not expire everything it is sent at once.
    fn to_local_secs(&self, remote_ms: u64) -> u32 {
        if remote_ms == 0 {
            return 0;
        }
        let skew = self.clock.skew_ms.filter(|skew| skew.abs() > SKEW_WARNING_MS).unwrap_or(0);
        let local = remote_ms as i64 - skew;
        ((local + 500) / 1000).clamp(1, i64::from(u32::MAX)) as u32
    }

    fn apply(&mut self, replicator: &Replicator, seq: u64, change: &KeyChange<'_>) {
        let stats = self.stats(replicator);
        match replicator.store.apply_peer_change(change, false, replicator.passes_on()) {
            Applied::Applied => stats.changes_applied.fetch_add(1, Ordering::Relaxed),
            Applied::Older => stats.conflicts.fetch_add(1, Ordering::Relaxed),
            Applied::NoMemory => {
                if stats.apply_failures.fetch_add(1, Ordering::Relaxed) == 0 {
                    log::warn!("replication: no memory for a peer's value (raise -m, or allow eviction)");
                }
                0
            }
            Applied::Refused => unreachable!("only claims are refused"),
        };
        if seq == 0 {
            stats.sync_items_received.fetch_add(1, Ordering::Relaxed);
        } else {
            self.applied(replicator, seq);
        }
    }

    fn applied(&mut self, replicator: &Replicator, seq: u64) {
        self.live_applied = seq;
        self.ack_due = true;
        self.stats(replicator).applied_seq.store(seq, Ordering::Relaxed);
    }

    /// Says what we hold of the peer's changes, so that it resumes from there. A
    /// resume that would take a full sync while another peer's is on its way
    /// waits, and is tried again on each [`LinkSession::produce`]: that sync's
    /// positions may spare it, so a node that comes back empty takes one full sync
    /// and catches up from the rest.
    fn offer_resume(&mut self, replicator: &Replicator, slot: usize, peer: PeerHello) {
        let resume = replicator.resume_point(slot, peer.node, peer.history);
        let full = resume.history == 0;
        if full && replicator.syncing_besides(slot) {
            if !self.resume_waiting {
                self.resume_waiting = true;
                log::info!("replication: node {} waits for the full sync on its way from another peer", peer.node);
            }
            return;
        }
        self.resume_waiting = false;
        self.resume_due = false;
        if full {
            self.asked_full_sync = true;
            replicator.peer(slot).stats.receiving_sync.store(true, Ordering::Relaxed);
        } else {
            // A run this node already holds: only the rest follows.
            replicator.mark_synced();
        }
        // Acknowledged from the first heartbeat on: a write of the peer's that
        // waits on us (ack mode) need not wait for a newer change to be applied.
        self.live_applied = resume.applied;
        self.emit(&Frame::Resume { history: resume.history, applied: resume.applied });
    }

    /// Holds both resumes, ours and the peer's, until [`LinkSession::go_ahead`]:
    /// this node is dialing the peer too, and that link, once up, replaces this
    /// one (the one the lower node id dialed stays). A full sync started here,
    /// either way, would be cut off and sent again there.
    pub fn stand_by(&mut self) {
        self.held_resume = Some(None);
    }

    /// Whether the link stands by ([`LinkSession::stand_by`]).
    pub fn stands_by(&self) -> bool {
        self.held_resume.is_some()
    }

    /// The dial that would have replaced this link failed: answer the peer's
    /// resume, if it came (ours goes at the next [`LinkSession::produce`]).
    pub fn go_ahead(&mut self, replicator: &Replicator) {
        if let (Some(held), Some(slot)) = (self.held_resume.take(), self.slot)
            && let Some((history, applied)) = held
        {
            self.start_sending(replicator, slot, history, applied);
        }
    }

    /// Whether we asked the peer for a full sync that has not ended.
    pub fn asked_full_sync(&self) -> bool {
        self.asked_full_sync
    }

    /// The peer said what it holds of our changes: resume from the backlog if it
    /// covers that, else send everything.
    fn start_sending(&mut self, replicator: &Replicator, slot: usize, history: u64, applied: u64) {
        let stats = &replicator.peer(slot).stats;
        let backlog = replicator.backlog();
        if history == replicator.history && backlog.covers(applied) {
            self.next_seq = applied + 1;
            self.sending = Sending::Live;
            self.catching_up_to = Some(backlog.last_seq());
            drop(backlog);
            replicator.judges_after(slot, applied);
            stats.partial_syncs.fetch_add(1, Ordering::Relaxed);
            let from = format!("from change {}", applied + 1);
            self.tell(replicator, slot, "partial_sync", &from);
            log::info!(
                "replication: partial resync to node {} from change {}",
                self.peer_node().unwrap_or(0),
                applied + 1
            );
        } else {
            let upto = backlog.last_seq();
            drop(backlog);
            self.sync_positions = self.peer_node().map(|node| replicator.positions_for(node)).unwrap_or_default();
            let (flush_version, flush_at) = replicator.store.flush_marks();
            let flush_at_ms = u64::from(flush_at) * 1000;
            self.emit(&Frame::SyncBegin { seq: upto, flush_version, flush_at_ms });
            self.next_seq = upto + 1;
            self.sending = Sending::Full { cursor: SyncCursor::default(), upto };
            stats.full_syncs.fetch_add(1, Ordering::Relaxed);
            stats.sync_items_sent.store(0, Ordering::Relaxed);
            self.tell(replicator, slot, "full_sync", &format!("up to change {upto}"));
            log::info!(
                "replication: full sync to node {} (it holds nothing of this run's changes up to {upto})",
                self.peer_node().unwrap_or(0)
            );
            replicator.judges_after(slot, upto);
            if upto != 0 {
                // It judges our claims once it holds the sync (`sync_unacknowledged`).
                self.sync_unacknowledged = Some(upto);
                return;
            }
        }
        replicator.set_acking(slot, true);
    }

    /// Tells `watch replication` of a resync this link starts.
    fn tell(&self, replicator: &Replicator, slot: usize, event: &'static str, detail: &str) {
        let address = replicator.peer(slot).address();
        let peer = self.peer_node().unwrap_or_default();
        replicator.link_event(&LinkEvent { peer, address, event, detail });
    }

    /// Fills `out` up to about `budget` bytes with changes and sync slices, and
    /// says whether there is more to send. `Err` when the peer fell behind the
    /// backlog: the link is closed and the peer gets a full sync when it returns.
    pub fn produce(&mut self, replicator: &Replicator, budget: usize) -> Result<bool, String> {
        if self.resume_due
            && !self.stands_by()
            && let (LinkPhase::Ready(peer), Some(slot)) = (self.phase, self.slot)
        {
            self.offer_resume(replicator, slot, peer);
        }
        if !self.is_ready() || matches!(self.sending, Sending::AwaitResume) {
            return Ok(false);
        }
        let made_before = self.bytes_made;
        while self.out.len() < budget {
            let sent = self.send_live(replicator).map_err(|Overflowed| {
                format!(
                    "the peer fell more than --repl-backlog ({} bytes) behind; it takes a full sync when it returns",
                    replicator.settings.backlog
                )
            })?;
            match self.sending {
                Sending::Full { cursor, upto } => {
                    let cursor = self.send_slice(replicator, cursor, upto);
                    if cursor.done {
                        let before = self.out.len();
                        wire::encode_sync_end(upto, &self.sync_positions, &mut self.out);
                        self.bytes_made += (self.out.len() - before) as u64;
                        self.sending = Sending::Live;
                        log::info!(
                            "replication: full sync sent to node {}, {} items",
                            self.peer_node().unwrap_or(0),
                            self.stats(replicator).sync_items_sent.load(Ordering::Relaxed)
                        );
                    } else {
                        self.sending = Sending::Full { cursor, upto };
                    }
                }
                _ if sent == 0 => break,
                _ => {}
            }
        }
        self.send_refusals(replicator);
        if self.catching_up_to.is_some_and(|upto| self.next_seq > upto) {
            let seq = self.catching_up_to.take().unwrap_or_default();
            self.emit(&Frame::CaughtUp { seq });
        }
        if self.bytes_made != made_before {
            self.stats(replicator).lag_bytes.store(self.bytes_made.saturating_sub(self.bytes_acked), Ordering::Relaxed);
        }
        Ok(self.out.len() >= budget)
    }

    /// What we may acknowledge: everything applied, short of the first claim whose
    /// refusal has not gone out yet.
    fn ackable(&self) -> u64 {
        self.refusals.front().map_or(self.live_applied, |&(seq, ..)| self.live_applied.min(seq - 1))
    }

    /// Sends the refusals whose preceding changes have all gone, each with the
    /// winning state, then acknowledges past them.
    fn send_refusals(&mut self, replicator: &Replicator) {
        let mut sent = false;
        while let Some((seq, key, after)) = self.refusals.front() {
            if *after >= self.next_seq {
                break;
            }
            let (seq, key) = (*seq, key.clone());
            self.refusals.pop_front();
            let before = self.out.len();
            let mut out = std::mem::take(&mut self.out);
            replicator.store.key_state(&key, |winner| {
                if let KeyState::Value { value, flags, expires_at, counter } = winner.state {
                    let (version, expires_ms) = (winner.version, u64::from(expires_at) * 1000);
                    let key = &key[..];
                    if let Some(counter) = counter {
                        wire::encode_counter(&counter, &mut out);
                    }
                    wire::encode(&Frame::Refuse { seq, version, flags, expires_ms, key, value }, &mut out);
                }
            });
            self.out = out;
            self.bytes_made += (self.out.len() - before) as u64;
            if self.out.len() == before {
                // Gone since (it expired, or was deleted): a refusal without a state
                // still makes the claimer run its command again.
                self.emit(&Frame::Refuse { seq, version: 0, flags: 0, expires_ms: 0, key: &key, value: &[] });
            }
            sent = true;
        }
        if sent {
            self.emit(&Frame::Ack { applied: self.ackable(), bytes: self.bytes_read });
        }
    }

    /// Sends the next backlog entries, each as its key's current state. The
    /// entries are copied out under the backlog lock and the store is read after
    /// it is released, so writers recording changes never wait for the store.
    fn send_live(&mut self, replicator: &Replicator) -> Result<usize, Overflowed> {
        let (mut batch, mut keys) = (std::mem::take(&mut self.batch), std::mem::take(&mut self.batch_keys));
        let mut frames = std::mem::take(&mut self.batch_frames);
        batch.clear();
        keys.clear();
        frames.clear();
        let visited = replicator.backlog().visit_from(self.next_seq, LIVE_BATCH, |seq, change| {
            batch.push(match change {
                Recorded::Key(key) => {
                    keys.extend_from_slice(key);
                    (seq, Pending::Key(key.len()))
                }
                &Recorded::Passed { ref key, from } => {
                    keys.extend_from_slice(key);
                    (seq, Pending::Passed(key.len(), from))
                }
                &Recorded::Claim { ref key, version } => {
                    keys.extend_from_slice(key);
                    (seq, Pending::Claim(key.len(), version))
                }
                &Recorded::Flush { version, at } => (seq, Pending::Flush { version, at }),
                Recorded::Propose(proposed) => {
                    let before = frames.len();
                    let Proposal { key, version, base, absent, value, flags, expires_at } = proposed.as_proposal();
                    let expires_ms = u64::from(expires_at) * 1000;
                    let frame = Frame::Propose { seq, version, base, absent, flags, expires_ms, key, value };
                    wire::encode(&frame, &mut frames);
                    (seq, Pending::Encoded(frames.len() - before))
                }
                &Recorded::Resolve { ref key, version } => {
                    let before = frames.len();
                    wire::encode(&Frame::Resolve { seq, version, key }, &mut frames);
                    (seq, Pending::Encoded(frames.len() - before))
                }
            })
        });
        let mut out = std::mem::take(&mut self.out);
        let before = out.len();
        let mut last_skipped = None;
        let peer_node = self.peer_node();
        let mut lost = Vec::new();
        let (mut key_at, mut frame_at) = (0, 0);
        for &(seq, pending) in &batch {
            match pending {
                Pending::Encoded(len) => {
                    out.extend_from_slice(&frames[frame_at..frame_at + len]);
                    frame_at += len;
                    last_skipped = None;
                }
                // A state that came from this link's peer, in the run linked now: it
                // holds it (or something newer) already.
                Pending::Passed(len, from) if from == self.run_tag => {
                    key_at += len;
                    last_skipped = Some(seq);
                }
                Pending::Key(len) | Pending::Passed(len, _) | Pending::Claim(len, _) => {
                    let key = &keys[key_at..key_at + len];
                    key_at += len;
                    let claimed = match pending {
                        Pending::Claim(_, version) => Some(version),
                        _ => None,
                    };
                    let sent = replicator.store.key_state_sent(key, seq, |change| {
                        // An add's claim goes as such only while the key holds what
                        // the add made. A state from this peer that replaced it since
                        // was a concurrent write there that won: the add lost. One from
                        // a third node may have been made on top of the add (that node
                        // had it first); the third node judges the claim itself.
                        let agreed = change.agreed_version();
                        let claim = claimed == Some(agreed);
                        if claimed.is_some_and(|made| agreed > made && Some(version_node(agreed)) == peer_node) {
                            lost.push(seq);
                        }
                        // A state the peer made itself goes back to it too: the peer
                        // may have restarted empty since it made it, and a version does
                        // not say which of its runs made it.
                        encode_change(&mut out, seq, &change, claim);
                    });
                    if sent.is_none() && claimed.is_some() {
                        // The add's item is gone, and no state of ours took its place:
                        // a change from the peer, made without seeing the add, replaced
                        // it and was deleted there since (a delete applied from the
                        // peer leaves no tombstone). The add lost, and runs again.
                        lost.push(seq);
                    }
                    last_skipped = if sent.is_some() { None } else { Some(seq) };
                }
                Pending::Flush { version, at } => {
                    wire::encode(&Frame::Flush { seq, version, at_ms: u64::from(at) * 1000 }, &mut out);
                    last_skipped = None;
                }
            }
        }
        // Before the frames go, so the verdicts are in when their acks come back.
        if let Some(slot) = self.slot {
            for seq in lost {
                replicator.claim_refused(seq, slot);
            }
        }
        self.bytes_made += (out.len() - before) as u64;
        self.out = out;
        let last = batch.last().map(|&(seq, _)| seq);
        (self.batch, self.batch_keys, self.batch_frames) = (batch, keys, frames);
        let visited = visited?;
        if let Some(seq) = last_skipped {
            // The peer learns it has everything up to here.
            self.emit(&Frame::Skip { seq });
        }
        if let Some(seq) = last {
            self.next_seq = seq + 1;
            self.stats(replicator).sent_seq.store(seq, Ordering::Relaxed);
        }
        Ok(visited)
    }

    fn send_slice(&mut self, replicator: &Replicator, cursor: SyncCursor, upto: u64) -> SyncCursor {
        let before = self.out.len();
        let mut items = 0;
        let out = &mut self.out;
        let cursor = replicator.store.sync_slice(cursor, upto, SYNC_SLICE_BUCKETS, |change| {
            encode_change(out, 0, &change, false);
            items += 1;
        });
        self.bytes_made += (self.out.len() - before) as u64;
        self.stats(replicator).sync_items_sent.fetch_add(items, Ordering::Relaxed);
        cursor
    }

    /// Heartbeat and timeouts; `Err` is the reason to close the link.
    pub fn tick(&mut self, replicator: &Replicator, now: LinkTime) -> Result<(), String> {
        let (now_ms, timeout) = (now.mono_ms, replicator.settings.timeout);
        if !self.is_ready() {
            if now_ms.saturating_sub(self.started.mono_ms) > timeout.as_millis() as u64 {
                return Err(format!("handshake not completed within {} ms", timeout.as_millis()));
            }
            return Ok(());
        }
        if self.clock.is_down(now_ms, timeout) {
            return Err(format!(
                "peer silent for {} ms (--repl-timeout {} ms): declared down",
                now_ms.saturating_sub(self.clock.last_heard_ms),
                timeout.as_millis()
            ));
        }
        // Shown by `stats` as a wall-clock time: as long ago as on the monotonic clock.
        let heard_wall_ms = now.wall_ms.saturating_sub(now_ms.saturating_sub(self.clock.last_heard_ms));
        self.stats(replicator).last_heard_ms.store(heard_wall_ms, Ordering::Relaxed);
        if now_ms >= self.next_ping_ms {
            self.emit(&Frame::Ping { applied: self.ackable(), sent_ms: now.wall_ms });
            self.next_ping_ms = now_ms + replicator.settings.heartbeat.as_millis() as u64;
        }
        Ok(())
    }

    /// When the next heartbeat is due (monotonic ms), for the link's poll timeout.
    pub fn next_ping_ms(&self) -> u64 {
        self.next_ping_ms
    }
}

/// The node that made a version (its low bits).
fn version_node(version: u64) -> u16 {
    (version & u64::from(crate::store::version::NODE_MAX)) as u16
}

/// A key's state as a frame; a value made by an `add` (`claim`) as a `Claim`.
fn encode_change(out: &mut Vec<u8>, seq: u64, change: &KeyChange<'_>, claim: bool) {
    let frame = match change.state {
        KeyState::Value { value, flags, expires_at, counter } => {
            if let Some(counter) = counter {
                wire::encode_counter(&counter, out);
            }
            let (version, expires_ms, key) = (change.version, u64::from(expires_at) * 1000, change.key);
            if claim {
                Frame::Claim { seq, version, flags, expires_ms, key, value }
            } else {
                Frame::Set { seq, version, flags, expires_ms, key, value }
            }
        }
        KeyState::Deleted => Frame::Delete { seq, version: change.version, key: change.key },
    };
    wire::encode(&frame, out);
}
