//! Counters whose increments add up across a cut.
//!
//! While every node is linked, `incr` and `decr` are claims: the node that loses
//! a race takes the winner's value and counts again on top of it, so concurrent
//! increments return distinct values (applications hand out ids with `incr`). A
//! node cut off from a peer cannot ask it, and two sides that each take the
//! other's value lose one side's increments. So while replicating, a counted key
//! keeps a ledger in two layers:
//!
//! - the *agreed* value: what the increments decided among linked nodes made it,
//!   with the version of the last of them. Of two agreed values the newer wins, as
//!   any value does;
//! - one *part* per node that counted while it was not linked with every peer
//!   (a PN-counter: Shapiro et al., "A comprehensive study of Convergent and
//!   Commutative Replicated Data Types", 2011): that node's net change, with the
//!   version of its last one. Only a part's own node changes it, so two states
//!   merge by keeping each node's newer part, and every part counts.
//!
//! The value is the agreed value plus every part. Both layers count from a *base*,
//! the write that last replaced the value (`set`, `append`, `cas`...): a newer base
//! wins with its layers, so a `set` wins over every increment made on the value it
//! replaced.
//!
//! ```text
//!  before the cut: base @v1, agreed 10 @v5                       value 10
//!  node A, cut off: agreed 10 @v5, parts {A: +3 @v7}             value 13
//!  node B, cut off: agreed 10 @v5, parts {B: +4 @v8}             value 14
//!  healed, both:    agreed 10 @v5, parts {A: +3 @v7, B: +4 @v8}  value 17
//! ```
//!
//! The value follows memcached's rules where it is counted: `incr` wraps at 2^64
//! and `decr` stops at 0. A node's layer is set so that the sum gives exactly the
//! value its own command produced; merged sums below 0 read as 0 (two sides that
//! each decremented to 0), and sums past 2^64 wrap as `incr` does.

/// One node's net change to a counter, made while it was not linked with every peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub origin: u16,
    pub delta: i128,
    /// The version of the node's last change to its part.
    pub version: u64,
}

/// A counter's state as it travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter<'a> {
    /// The version of the write the counter counts from.
    pub base_version: u64,
    /// The agreed value, and the version of the write that made it.
    pub agreed: i128,
    pub agreed_version: u64,
    /// Every node's part, sorted by node.
    pub parts: &'a [Part],
}

impl Counter<'_> {
    /// The counter's value: the agreed value plus every part, read as memcached would.
    pub fn value(&self) -> u64 {
        value_of(self.agreed + self.parts.iter().map(|part| part.delta).sum::<i128>())
    }
}

/// A sum as the value a client reads: below 0 is 0, and past 2^64 wraps.
fn value_of(total: i128) -> u64 {
    // Truncating to 64 bits is the wrap of `incr` (memcached's do_add_delta).
    if total <= 0 { 0 } else { total as u64 }
}

/// A key's counter as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Ledger {
    base_version: u64,
    agreed: i128,
    agreed_version: u64,
    parts: Vec<Part>,
}

/// Bytes a ledger takes beside its key and parts: the map's entry and the vector's
/// header, rounded up (`hashbrown` keeps one control byte beside each entry).
const LEDGER_OVERHEAD: usize = 96;

impl Ledger {
    /// A ledger for `value`, made by the write at `version`.
    pub(super) fn start(value: u64, version: u64) -> Ledger {
        Ledger { base_version: version, agreed: i128::from(value), agreed_version: version, parts: Vec::new() }
    }

    /// A ledger holding a counter that came from elsewhere (a peer, a warm restart).
    pub(super) fn from_counter(counter: &Counter<'_>) -> Ledger {
        Ledger {
            base_version: counter.base_version,
            agreed: counter.agreed,
            agreed_version: counter.agreed_version,
            parts: counter.parts.to_vec(),
        }
    }

    pub(super) fn view(&self) -> Counter<'_> {
        Counter {
            base_version: self.base_version,
            agreed: self.agreed,
            agreed_version: self.agreed_version,
            parts: &self.parts,
        }
    }

    /// Bytes charged against the memory limit for this ledger of a `key_len`-byte key.
    pub(super) fn charge(&self, key_len: usize) -> usize {
        LEDGER_OVERHEAD + key_len + self.parts.capacity() * std::mem::size_of::<Part>()
    }

    fn apart(&self, except: Option<u16>) -> i128 {
        self.parts.iter().filter(|part| Some(part.origin) != except).map(|part| part.delta).sum()
    }

    /// A claim linked nodes judge made the counter read `value` at `version`.
    pub(super) fn agree(&mut self, value: u64, version: u64) {
        self.agreed = i128::from(value) - self.apart(None);
        self.agreed_version = version;
    }

    /// Node `node`, not linked with every peer, made the counter read `value` at
    /// `version`: its part becomes what the rest leaves to make it so.
    pub(super) fn count_apart(&mut self, node: u16, value: u64, version: u64) {
        let delta = i128::from(value) - self.agreed - self.apart(Some(node));
        let part = Part { origin: node, delta, version };
        match self.parts.binary_search_by_key(&node, |part| part.origin) {
            Ok(at) => self.parts[at] = part,
            Err(at) => self.parts.insert(at, part),
        }
    }
}

/// What one side of a merge holds of a key's value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Layer<'a> {
    /// A value no counter has touched, made at `version`.
    Plain {
        version: u64,
    },
    Counted(Counter<'a>),
}

impl<'a> Layer<'a> {
    fn base_version(&self) -> u64 {
        match self {
            Layer::Plain { version } => *version,
            Layer::Counted(counter) => counter.base_version,
        }
    }

    /// The version of the value as linked nodes agreed it.
    fn agreed_version(&self) -> u64 {
        match self {
            Layer::Plain { version } => *version,
            Layer::Counted(counter) => counter.agreed_version,
        }
    }

    /// Whether this state wins [`merge`] over `other` without taking anything
    /// from it but parts counted apart: a newer base, or on one base a newer
    /// agreed value. Two claims judge each other by it on both nodes, so the one
    /// that loses is the one whose state the merge drops (comparing agreed
    /// versions alone let an `incr` on an old base pass where an `append` on a
    /// newer base won the merge: both clients told they won, one value lost).
    pub(super) fn outranks(&self, other: &Layer<'_>) -> bool {
        (self.base_version(), self.agreed_version()) > (other.base_version(), other.agreed_version())
    }

    /// This side's parts over `other`'s agreed value, when both count from one
    /// base (a claim that lost still brings the parts counted apart).
    pub(super) fn parts_over(self, other: &Layer<'_>) -> Option<Layer<'a>> {
        match (self, other) {
            (Layer::Counted(counter), Layer::Counted(other)) if counter.base_version == other.base_version => {
                Some(Layer::Counted(Counter { agreed: other.agreed, agreed_version: other.agreed_version, ..counter }))
            }
            _ => None,
        }
    }
}

/// Which value a merge keeps.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Merged {
    /// The local value already holds everything the incoming one does.
    Local,
    /// The incoming value holds everything the local one does.
    Incoming,
    /// Each holds what the other lacks: the value is their union.
    Joined(Ledger),
}

/// Merges two states of one key's value: the newer base wins with its layers, and
/// on one base the newer agreed value wins and each node's newer part wins. Every
/// node that has seen both states reaches the same value, whatever the order they
/// came in.
pub(super) fn merge(local: Layer<'_>, incoming: Layer<'_>) -> Merged {
    let (local_base, incoming_base) = (local.base_version(), incoming.base_version());
    if incoming_base != local_base {
        return if incoming_base > local_base { Merged::Incoming } else { Merged::Local };
    }
    let (local, incoming) = match (local, incoming) {
        (Layer::Counted(local), Layer::Counted(incoming)) => (local, incoming),
        // One base, and only the incoming side has counted on it.
        (Layer::Plain { .. }, Layer::Counted(_)) => return Merged::Incoming,
        (_, Layer::Plain { .. }) => return Merged::Local,
    };
    let (mut local_newer, mut incoming_newer) = (false, false);
    let local_agreed = (local.agreed_version, local.agreed);
    let incoming_agreed = (incoming.agreed_version, incoming.agreed);
    if local_agreed != incoming_agreed {
        if local_agreed > incoming_agreed { local_newer = true } else { incoming_newer = true }
    }
    let (agreed_version, agreed) = local_agreed.max(incoming_agreed);
    let mut parts = Vec::with_capacity(local.parts.len().max(incoming.parts.len()));
    let (mut l, mut i) = (local.parts.iter().peekable(), incoming.parts.iter().peekable());
    loop {
        let part = match (l.peek(), i.peek()) {
            (None, None) => break,
            (Some(&&a), Some(&&b)) if a.origin == b.origin => {
                l.next();
                i.next();
                let a_wins = (a.version, a.delta) >= (b.version, b.delta);
                if a != b {
                    if a_wins { local_newer = true } else { incoming_newer = true }
                }
                if a_wins { a } else { b }
            }
            (Some(&&a), Some(&&b)) if a.origin < b.origin => {
                l.next();
                local_newer = true;
                a
            }
            (Some(&&a), None) => {
                l.next();
                local_newer = true;
                a
            }
            (_, Some(&&b)) => {
                i.next();
                incoming_newer = true;
                b
            }
        };
        parts.push(part);
    }
    match (local_newer, incoming_newer) {
        (_, false) => Merged::Local,
        (false, true) => Merged::Incoming,
        (true, true) => Merged::Joined(Ledger { base_version: local_base, agreed, agreed_version, parts }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(origin: u16, delta: i128, version: u64) -> Part {
        Part { origin, delta, version }
    }

    fn counted(agreed_version: u64, parts: &[Part]) -> Layer<'_> {
        Layer::Counted(Counter { base_version: 5, agreed: 10, agreed_version, parts })
    }

    fn joined(local: Layer<'_>, incoming: Layer<'_>) -> Ledger {
        match merge(local, incoming) {
            Merged::Joined(ledger) => ledger,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parts_counted_apart_add_up() {
        let (a, b) = ([part(1, 3, 7)], [part(2, 4, 8)]);
        let ledger = joined(counted(5, &a), counted(5, &b));
        assert_eq!(ledger.view().value(), 17);
        assert_eq!(joined(counted(5, &b), counted(5, &a)), ledger, "both orders meet");
    }

    #[test]
    fn a_newer_part_of_one_node_replaces_its_older_one() {
        let (old, new) = ([part(1, 3, 7), part(2, 1, 6)], [part(1, 5, 9), part(2, 1, 6)]);
        assert_eq!(merge(counted(5, &old), counted(5, &new)), Merged::Incoming);
        assert_eq!(merge(counted(5, &new), counted(5, &old)), Merged::Local);
        assert_eq!(merge(counted(5, &new), counted(5, &new)), Merged::Local);
    }

    #[test]
    fn the_newer_agreed_value_wins_and_parts_still_add() {
        let mut linked = Ledger::start(10, 5);
        linked.agree(11, 9);
        let apart = [part(2, 4, 8)];
        let ledger = joined(Layer::Counted(linked.view()), counted(5, &apart));
        assert_eq!(ledger.view().value(), 15);
        assert_eq!(ledger.view().agreed_version, 9);
    }

    #[test]
    fn a_newer_base_wins_with_its_layers() {
        let parts = [part(1, 3, 7)];
        let set_later = Layer::Plain { version: 6 };
        assert_eq!(merge(counted(5, &parts), set_later), Merged::Incoming);
        assert_eq!(merge(set_later, counted(5, &parts)), Merged::Local);
        let set_before = Layer::Plain { version: 4 };
        assert_eq!(merge(counted(5, &parts), set_before), Merged::Local);
        // The very value the counter started from: the counter holds more.
        let its_base = Layer::Plain { version: 5 };
        assert_eq!(merge(its_base, counted(5, &parts)), Merged::Incoming);
        assert_eq!(merge(counted(5, &parts), its_base), Merged::Local);
    }

    #[test]
    fn a_lost_claim_brings_only_its_parts() {
        let (winner, loser) = ([part(1, 1, 6)], [part(2, 2, 7)]);
        let (winner, loser) = (counted(9, &winner), counted(8, &loser));
        let Some(Layer::Counted(brought)) = loser.parts_over(&winner) else { panic!("counted") };
        assert_eq!((brought.agreed_version, brought.parts), (9, &[part(2, 2, 7)][..]));
        assert_eq!(joined(winner, Layer::Counted(brought)).view().value(), 13);
        assert!(Layer::Plain { version: 3 }.parts_over(&winner).is_none());
    }

    #[test]
    fn a_node_counts_to_the_value_its_command_made() {
        let mut ledger = Ledger::start(10, 5);
        ledger.count_apart(1, 11, 20);
        let b = [part(2, -10, 21)];
        let mut merged = joined(Layer::Counted(ledger.view()), counted(5, &b));
        assert_eq!(merged.view().value(), 1);
        merged.count_apart(1, 0, 22);
        assert_eq!(merged.view().value(), 0);
        // Both sides decremented to 0: the sum reads 0, and the next incr counts from it.
        let (a, b) = ([part(1, -10, 20)], [part(2, -10, 21)]);
        let mut merged = joined(counted(5, &a), counted(5, &b));
        assert_eq!(merged.view().value(), 0);
        merged.agree(1, 23);
        assert_eq!(merged.view().value(), 1);
        // incr past 2^64 wraps, as memcached's does.
        let mut ledger = Ledger::start(u64::MAX, 5);
        ledger.count_apart(1, 0, 6);
        assert_eq!(ledger.view().value(), 0);
    }
}
