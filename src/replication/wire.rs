//! The peer link's frames: bytes to [`Frame`] and back, no I/O.
//!
//! A frame is a one-byte type, a big-endian `u32` body length, and the body. Keys
//! and values are length-delimited, so binary-protocol keys (any byte) and values
//! travel unchanged; memcached-style text lines could not carry them.
//!
//! Changes carry the key's resulting state with its version, never the command, so
//! the peer re-executes nothing; expiry is absolute Unix milliseconds (0 = never),
//! so both nodes agree on it whatever their uptime.

/// Bumped on any change to the frames; peers with another version are refused.
/// 2: `Claim` and `Refuse`, so that two nodes never both grant one `add`.
/// 3: `Counter`, so that increments made on both sides of a cut add up.
/// 4: `SyncEnd` carries the sender's positions in its other peers' sequences, so
/// that a node joining takes one full sync and resumes from the rest.
/// 5: `Propose`, `Resolve` and `CaughtUp`: claims by majority, invisible until
/// granted.
pub const PROTOCOL_VERSION: u16 = 5;
/// Bytes of one counter part on the wire: node, net change, version.
pub const PART_LEN: usize = 2 + 16 + 8;
/// Bytes of one position on the wire: node, history, sequence number.
pub const POSITION_LEN: usize = 2 + 8 + 8;
/// Type byte and body length.
pub const HEADER_LEN: usize = 5;
/// Nonces and MACs are HMAC-SHA-256 sized.
pub const NONCE_LEN: usize = 32;
/// The largest body accepted: memcached's largest item (`-I` 1024m) plus framing.
pub const MAX_BODY: usize = 1024 * 1024 * 1024 + 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The first frame each side sends: who it is and a challenge for the other.
    /// `history` names this run of the sender's change sequence (random at start),
    /// so a peer's remembered sequence number is never applied to a later run;
    /// `clock_ms` gives a first clock sample before any heartbeat.
    Hello { protocol: u16, node: u16, history: u64, clock_ms: u64, cluster: &'a [u8], nonce: [u8; NONCE_LEN] },
    /// The answer to the peer's challenge: HMAC(secret, peer's nonce ‖ own node id).
    Auth { mac: [u8; NONCE_LEN] },
    /// After authentication: the last sequence number of the peer's history
    /// `history` that this node applied, so the peer can resume from its backlog
    /// (`history` 0: this node holds nothing of the peer's current run).
    Resume { history: u64, applied: u64 },
    /// A key's state.
    Set { seq: u64, version: u64, flags: u32, expires_ms: u64, key: &'a [u8], value: &'a [u8] },
    /// A key's state after an `add` created it: applied as `Set`, except that the
    /// receiver answers `Refuse` when it holds a live item of a newer version.
    Claim { seq: u64, version: u64, flags: u32, expires_ms: u64, key: &'a [u8], value: &'a [u8] },
    /// The sender's `Claim` numbered `seq` lost (sent before the `Ack` covering it)
    /// to the state that follows, the receiver's newer item: the claimer applies it,
    /// then runs the command that made the claim again on top of it.
    Refuse { seq: u64, version: u64, flags: u32, expires_ms: u64, key: &'a [u8], value: &'a [u8] },
    /// A key deleted (or expired) at `version`.
    Delete { seq: u64, version: u64, key: &'a [u8] },
    /// `flush_all`: states up to `version` are gone; `at_ms` is a delayed flush's time.
    Flush { seq: u64, version: u64, at_ms: u64 },
    /// A full sync starts; the sender's changes up to `seq` are in it, and so are
    /// its flush marks (a flush hides items rather than sending anything).
    SyncBegin { seq: u64, flush_version: u64, flush_at_ms: u64 },
    /// The full sync is complete. `positions` ([`POSITION_LEN`] bytes each,
    /// [`positions`]) say how far the sender had applied each of its other peers'
    /// runs when the sync began: the receiver now holds those changes too.
    SyncEnd { seq: u64, positions: &'a [u8] },
    /// Heartbeat: the sender's applied sequence number and its clock.
    Ping { applied: u64, sent_ms: u64 },
    /// Heartbeat answer, echoing the ping's clock for the round trip.
    Pong { applied: u64, echo_ms: u64, sent_ms: u64 },
    /// The sender has applied the peer's changes up to `applied`, having read
    /// `bytes` of the link in all: the peer's lag in changes and in bytes, and
    /// what ack mode waits for.
    Ack { applied: u64, bytes: u64 },
    /// Changes up to `seq` need nothing applied: their keys were evicted or
    /// expired before they were sent.
    Skip { seq: u64 },
    /// The counter of the value in the `Set`, `Claim` or `Refuse` that follows
    /// (`store::Counter`), its `parts` [`PART_LEN`] bytes each ([`counter_parts`]).
    Counter { base_version: u64, agreed: i128, agreed_version: u64, parts: &'a [u8] },
    /// A claim proposed to a majority (`--repl-claims majority`): the receiver
    /// votes for it, and acknowledges it, or answers `Refuse` first (it holds a
    /// state newer than `base`, or its vote on the key is taken). Nothing is
    /// applied: the state arrives as a `Set` once the claim is granted.
    Propose {
        seq: u64,
        version: u64,
        base: u64,
        absent: bool,
        flags: u32,
        expires_ms: u64,
        key: &'a [u8],
        value: &'a [u8],
    },
    /// The sender's proposal of `version` on `key` is decided; a granted one's
    /// state came before it. The receiver's vote on the key is free again.
    Resolve { seq: u64, version: u64, key: &'a [u8] },
    /// On a link that resumed rather than took a full sync: every change the
    /// sender had recorded when the link began, up to `seq`, came before this
    /// frame. The receiver now holds what the sender held then (see
    /// `Replicator::caught_up_with_all`).
    CaughtUp { seq: u64 },
}

/// Appends a `Counter` frame for `counter` (its parts encoded straight from the
/// store's, where [`Frame::Counter`] holds them encoded already).
pub fn encode_counter(counter: &crate::store::Counter<'_>, out: &mut Vec<u8>) {
    framed(out, |out| {
        out.extend_from_slice(&counter.base_version.to_be_bytes());
        out.extend_from_slice(&counter.agreed.to_be_bytes());
        out.extend_from_slice(&counter.agreed_version.to_be_bytes());
        for part in counter.parts {
            out.extend_from_slice(&part.origin.to_be_bytes());
            out.extend_from_slice(&part.delta.to_be_bytes());
            out.extend_from_slice(&part.version.to_be_bytes());
        }
        kind::COUNTER
    });
}

/// Where a node stands in a peer's sequence: that peer's run (`history`) and the
/// last of its changes applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub node: u16,
    pub history: u64,
    pub applied: u64,
}

/// Appends a `SyncEnd` frame carrying `positions` (encoded straight from them,
/// where [`Frame::SyncEnd`] holds them encoded already).
pub fn encode_sync_end(seq: u64, positions: &[Position], out: &mut Vec<u8>) {
    framed(out, |out| {
        out.extend_from_slice(&seq.to_be_bytes());
        for position in positions {
            out.extend_from_slice(&position.node.to_be_bytes());
            out.extend_from_slice(&position.history.to_be_bytes());
            out.extend_from_slice(&position.applied.to_be_bytes());
        }
        kind::SYNC_END
    });
}

/// The positions of a `SyncEnd` frame.
pub fn positions(positions: &[u8]) -> impl Iterator<Item = Position> + '_ {
    positions.chunks_exact(POSITION_LEN).map(|position| Position {
        node: u16::from_be_bytes(position[..2].try_into().expect("two bytes")),
        history: u64::from_be_bytes(position[2..10].try_into().expect("eight bytes")),
        applied: u64::from_be_bytes(position[10..].try_into().expect("eight bytes")),
    })
}

/// Appends one frame: `body` writes its body and returns its type; the header
/// (type and body length) goes in front.
fn framed(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>) -> u8) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let kind = body(out);
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    out[start] = kind;
    out[start + 1..start + HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
}

/// The parts of a `Counter` frame, in the order sent (by node).
pub fn counter_parts(parts: &[u8]) -> impl Iterator<Item = crate::store::Part> + '_ {
    parts.chunks_exact(PART_LEN).map(|part| crate::store::Part {
        origin: u16::from_be_bytes(part[..2].try_into().expect("two bytes")),
        delta: i128::from_be_bytes(part[2..18].try_into().expect("sixteen bytes")),
        version: u64::from_be_bytes(part[18..].try_into().expect("eight bytes")),
    })
}

mod kind {
    pub const HELLO: u8 = 1;
    pub const AUTH: u8 = 2;
    pub const RESUME: u8 = 3;
    pub const SET: u8 = 4;
    pub const DELETE: u8 = 5;
    pub const FLUSH: u8 = 6;
    pub const SYNC_BEGIN: u8 = 7;
    pub const SYNC_END: u8 = 8;
    pub const PING: u8 = 9;
    pub const PONG: u8 = 10;
    pub const ACK: u8 = 11;
    pub const SKIP: u8 = 12;
    pub const CLAIM: u8 = 13;
    pub const REFUSE: u8 = 14;
    pub const COUNTER: u8 = 15;
    pub const PROPOSE: u8 = 16;
    pub const RESOLVE: u8 = 17;
    pub const CAUGHT_UP: u8 = 18;
}

/// Why the bytes are not a frame; the link is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    UnknownType(u8),
    TooLong(usize),
    Malformed(&'static str),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            WireError::TooLong(n) => write!(f, "frame of {n} bytes is over the limit"),
            WireError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

/// Appends `frame` to `out`.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    framed(out, |out| match *frame {
        Frame::Hello { protocol, node, history, clock_ms, cluster, nonce } => {
            out.extend_from_slice(&protocol.to_be_bytes());
            out.extend_from_slice(&node.to_be_bytes());
            out.extend_from_slice(&history.to_be_bytes());
            out.extend_from_slice(&clock_ms.to_be_bytes());
            out.extend_from_slice(&nonce);
            out.extend_from_slice(cluster);
            kind::HELLO
        }
        Frame::Auth { mac } => {
            out.extend_from_slice(&mac);
            kind::AUTH
        }
        Frame::Resume { history, applied } => {
            out.extend_from_slice(&history.to_be_bytes());
            out.extend_from_slice(&applied.to_be_bytes());
            kind::RESUME
        }
        Frame::Set { seq, version, flags, expires_ms, key, value }
        | Frame::Claim { seq, version, flags, expires_ms, key, value }
        | Frame::Refuse { seq, version, flags, expires_ms, key, value } => {
            for n in [seq, version, expires_ms] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&(key.len() as u16).to_be_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(value);
            match frame {
                Frame::Claim { .. } => kind::CLAIM,
                Frame::Refuse { .. } => kind::REFUSE,
                _ => kind::SET,
            }
        }
        Frame::Delete { seq, version, key } => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(key);
            kind::DELETE
        }
        Frame::Flush { seq, version, at_ms } => {
            for n in [seq, version, at_ms] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            kind::FLUSH
        }
        Frame::SyncBegin { seq, flush_version, flush_at_ms } => {
            for n in [seq, flush_version, flush_at_ms] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            kind::SYNC_BEGIN
        }
        Frame::SyncEnd { seq, positions } => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(positions);
            kind::SYNC_END
        }
        Frame::Ping { applied, sent_ms } => {
            out.extend_from_slice(&applied.to_be_bytes());
            out.extend_from_slice(&sent_ms.to_be_bytes());
            kind::PING
        }
        Frame::Pong { applied, echo_ms, sent_ms } => {
            for n in [applied, echo_ms, sent_ms] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            kind::PONG
        }
        Frame::Ack { applied, bytes } => {
            out.extend_from_slice(&applied.to_be_bytes());
            out.extend_from_slice(&bytes.to_be_bytes());
            kind::ACK
        }
        Frame::Skip { seq } => {
            out.extend_from_slice(&seq.to_be_bytes());
            kind::SKIP
        }
        Frame::Counter { base_version, agreed, agreed_version, parts } => {
            out.extend_from_slice(&base_version.to_be_bytes());
            out.extend_from_slice(&agreed.to_be_bytes());
            out.extend_from_slice(&agreed_version.to_be_bytes());
            out.extend_from_slice(parts);
            kind::COUNTER
        }
        Frame::Propose { seq, version, base, absent, flags, expires_ms, key, value } => {
            for n in [seq, version, base, expires_ms] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.extend_from_slice(&flags.to_be_bytes());
            out.push(u8::from(absent));
            out.extend_from_slice(&(key.len() as u16).to_be_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(value);
            kind::PROPOSE
        }
        Frame::Resolve { seq, version, key } => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(key);
            kind::RESOLVE
        }
        Frame::CaughtUp { seq } => {
            out.extend_from_slice(&seq.to_be_bytes());
            kind::CAUGHT_UP
        }
    });
}

/// Reads fixed-size fields off the front of a body.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed("body too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }
    fn array(&mut self) -> Result<[u8; NONCE_LEN], WireError> {
        Ok(self.take(NONCE_LEN)?.try_into().expect("nonce-sized"))
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
    fn end(self) -> Result<(), WireError> {
        if self.0.is_empty() { Ok(()) } else { Err(WireError::Malformed("trailing bytes")) }
    }
}

/// Parses the frame at the head of `buf`: `Ok(None)` until it is complete, else the
/// frame and the bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let kind = buf[0];
    if !(kind::HELLO..=kind::CAUGHT_UP).contains(&kind) {
        return Err(WireError::UnknownType(kind));
    }
    let body_len = u32::from_be_bytes(buf[1..HEADER_LEN].try_into().expect("four bytes")) as usize;
    if body_len > MAX_BODY {
        return Err(WireError::TooLong(body_len));
    }
    let total = HEADER_LEN + body_len;
    if buf.len() < total {
        return Ok(None);
    }
    let mut f = Fields(&buf[HEADER_LEN..total]);
    let frame = match kind {
        kind::HELLO => {
            let (protocol, node, history, clock_ms) = (f.u16()?, f.u16()?, f.u64()?, f.u64()?);
            let nonce = f.array()?;
            Frame::Hello { protocol, node, history, clock_ms, nonce, cluster: f.rest() }
        }
        kind::AUTH => {
            let mac = f.array()?;
            f.end()?;
            Frame::Auth { mac }
        }
        kind::SET | kind::CLAIM | kind::REFUSE => {
            let (seq, version, expires_ms, flags) = (f.u64()?, f.u64()?, f.u64()?, f.u32()?);
            let key_len = usize::from(f.u16()?);
            let key = f.take(key_len)?;
            let value = f.rest();
            match kind {
                kind::SET => Frame::Set { seq, version, flags, expires_ms, key, value },
                kind::CLAIM => Frame::Claim { seq, version, flags, expires_ms, key, value },
                _ => Frame::Refuse { seq, version, flags, expires_ms, key, value },
            }
        }
        kind::DELETE => {
            let (seq, version) = (f.u64()?, f.u64()?);
            Frame::Delete { seq, version, key: f.rest() }
        }
        kind::FLUSH => {
            let frame = Frame::Flush { seq: f.u64()?, version: f.u64()?, at_ms: f.u64()? };
            f.end()?;
            frame
        }
        kind::PONG => {
            let frame = Frame::Pong { applied: f.u64()?, echo_ms: f.u64()?, sent_ms: f.u64()? };
            f.end()?;
            frame
        }
        kind::RESUME => {
            let frame = Frame::Resume { history: f.u64()?, applied: f.u64()? };
            f.end()?;
            frame
        }
        kind::SYNC_BEGIN => {
            let frame = Frame::SyncBegin { seq: f.u64()?, flush_version: f.u64()?, flush_at_ms: f.u64()? };
            f.end()?;
            frame
        }
        kind::ACK => {
            let frame = Frame::Ack { applied: f.u64()?, bytes: f.u64()? };
            f.end()?;
            frame
        }
        kind::PING => {
            let frame = Frame::Ping { applied: f.u64()?, sent_ms: f.u64()? };
            f.end()?;
            frame
        }
        kind::SYNC_END => {
            let seq = f.u64()?;
            let positions = f.rest();
            if positions.len() % POSITION_LEN != 0 {
                return Err(WireError::Malformed("a position cut short"));
            }
            Frame::SyncEnd { seq, positions }
        }
        kind::COUNTER => {
            let base_version = f.u64()?;
            let agreed = i128::from_be_bytes(f.take(16)?.try_into().expect("sixteen bytes"));
            let agreed_version = f.u64()?;
            let parts = f.rest();
            if parts.len() % PART_LEN != 0 {
                return Err(WireError::Malformed("a counter part cut short"));
            }
            Frame::Counter { base_version, agreed, agreed_version, parts }
        }
        kind::SKIP => {
            let seq = f.u64()?;
            f.end()?;
            Frame::Skip { seq }
        }
        kind::PROPOSE => {
            let (seq, version, base, expires_ms, flags) = (f.u64()?, f.u64()?, f.u64()?, f.u64()?, f.u32()?);
            let absent = match f.take(1)?[0] {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed("a proposal's absent flag is neither 0 nor 1")),
            };
            let key_len = usize::from(f.u16()?);
            let key = f.take(key_len)?;
            Frame::Propose { seq, version, base, absent, flags, expires_ms, key, value: f.rest() }
        }
        kind::RESOLVE => {
            let (seq, version) = (f.u64()?, f.u64()?);
            Frame::Resolve { seq, version, key: f.rest() }
        }
        kind::CAUGHT_UP => {
            let seq = f.u64()?;
            f.end()?;
            Frame::CaughtUp { seq }
        }
        _ => unreachable!("the type is checked above"),
    };
    Ok(Some((frame, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_frame() -> Vec<Frame<'static>> {
        vec![
            Frame::Hello {
                protocol: PROTOCOL_VERSION,
                node: 4095,
                history: u64::MAX,
                clock_ms: 1_800_000_000_000,
                cluster: b"sessions",
                nonce: [7; NONCE_LEN],
            },
            Frame::Auth { mac: [9; NONCE_LEN] },
            Frame::Resume { history: 41, applied: 42 },
            Frame::Claim { seq: 5, version: 6, flags: 7, expires_ms: 8, key: b"lock:\x00", value: b"owner" },
            Frame::Refuse { seq: 5, version: 9, flags: 0, expires_ms: 0, key: b"lock:\x00", value: b"winner" },
            Frame::Set {
                seq: 1,
                version: u64::MAX,
                flags: 0xdead_beef,
                expires_ms: 1_800_000_000_000,
                key: b"a key\r\nwith any byte\0",
                value: b"value\r\n",
            },
            Frame::Set { seq: 2, version: 3, flags: 0, expires_ms: 0, key: b"k", value: b"" },
            Frame::Delete { seq: 3, version: 4, key: b"gone" },
            Frame::Flush { seq: 4, version: 5, at_ms: 6 },
            Frame::SyncBegin { seq: 7, flush_version: 70, flush_at_ms: 700 },
            Frame::SyncEnd { seq: 8, positions: &[] },
            Frame::SyncEnd { seq: 9, positions: &[1; 2 * POSITION_LEN] },
            Frame::Ping { applied: 9, sent_ms: 10 },
            Frame::Pong { applied: 11, echo_ms: 10, sent_ms: 12 },
            Frame::Ack { applied: 13, bytes: 130 },
            Frame::Skip { seq: 14 },
            Frame::Counter { base_version: 5, agreed: -10, agreed_version: 6, parts: &[0; 2 * PART_LEN] },
            Frame::Propose {
                seq: 15,
                version: 16,
                base: 14,
                absent: true,
                flags: 17,
                expires_ms: 18,
                key: b"lock:\x00",
                value: b"owner",
            },
            Frame::Propose {
                seq: 16,
                version: 17,
                base: 0,
                absent: false,
                flags: 0,
                expires_ms: 0,
                key: b"",
                value: b"",
            },
            Frame::Resolve { seq: 19, version: 16, key: b"lock:\x00" },
            Frame::CaughtUp { seq: 20 },
        ]
    }

    #[test]
    fn a_counter_travels_part_by_part() {
        use crate::store::{Counter, Part};
        let parts = [Part { origin: 1, delta: -3, version: 7 }, Part { origin: 4095, delta: i128::MAX, version: 9 }];
        let mut out = Vec::new();
        let counter = Counter { base_version: 6, agreed: i128::MIN, agreed_version: u64::MAX, parts: &parts };
        encode_counter(&counter, &mut out);
        let (frame, used) = decode(&out).unwrap().expect("a whole frame");
        assert_eq!(used, out.len());
        let Frame::Counter { base_version: 6, agreed: i128::MIN, agreed_version: u64::MAX, parts: sent } = frame else {
            panic!("{frame:?}")
        };
        assert_eq!(counter_parts(sent).collect::<Vec<_>>(), parts);
        let mut cut_short = vec![kind::COUNTER, 0, 0, 0, 33];
        cut_short.extend_from_slice(&[0; 33]);
        assert_eq!(decode(&cut_short), Err(WireError::Malformed("a counter part cut short")));
    }

    #[test]
    fn a_sync_end_carries_the_senders_positions() {
        let sent = [
            Position { node: 3, history: u64::MAX, applied: 17 },
            Position { node: 4095, history: 1, applied: u64::MAX },
        ];
        let mut out = Vec::new();
        encode_sync_end(99, &sent, &mut out);
        let (frame, used) = decode(&out).unwrap().expect("a whole frame");
        assert_eq!(used, out.len());
        let Frame::SyncEnd { seq: 99, positions: carried } = frame else { panic!("{frame:?}") };
        assert_eq!(positions(carried).collect::<Vec<_>>(), sent);
        let mut cut_short = vec![kind::SYNC_END, 0, 0, 0, 8 + 17];
        cut_short.extend_from_slice(&[0; 8 + 17]);
        assert_eq!(decode(&cut_short), Err(WireError::Malformed("a position cut short")));
    }

    #[test]
    fn every_frame_round_trips_whole_and_cut_anywhere() {
        let mut stream = Vec::new();
        for frame in every_frame() {
            encode(&frame, &mut stream);
        }
        let mut at = 0;
        for expected in every_frame() {
            let (frame, used) = decode(&stream[at..]).unwrap().expect("a whole frame");
            assert_eq!(frame, expected);
            for cut in 0..used {
                assert_eq!(decode(&stream[at..at + cut]), Ok(None), "{expected:?} cut at {cut}");
            }
            at += used;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        assert_eq!(decode(&[0, 0, 0, 0, 0]), Err(WireError::UnknownType(0)));
        assert_eq!(decode(&[kind::SET, 0xff, 0xff, 0xff, 0xff]), Err(WireError::TooLong(u32::MAX as usize)));
        let mut short_set = vec![kind::SET, 0, 0, 0, 4];
        short_set.extend_from_slice(&[0; 4]);
        assert_eq!(decode(&short_set), Err(WireError::Malformed("body too short")));
        let mut long_ack = vec![kind::ACK, 0, 0, 0, 17];
        long_ack.extend_from_slice(&[0; 17]);
        assert_eq!(decode(&long_ack), Err(WireError::Malformed("trailing bytes")));
        let mut key_past_end = Vec::new();
        encode(&Frame::Set { seq: 1, version: 1, flags: 0, expires_ms: 0, key: b"key", value: b"" }, &mut key_past_end);
        key_past_end[HEADER_LEN + 28 + 1] = 200;
        assert_eq!(decode(&key_past_end), Err(WireError::Malformed("body too short")));
    }
}
