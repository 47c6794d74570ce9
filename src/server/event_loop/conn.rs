//! One client connection: reused read and write buffers and the loop that reads,
//! runs commands and writes their replies.
//!
//! Per readiness event a connection reads what the socket holds, runs up to `-R`
//! complete commands, and writes all their replies with one `write` (memcached writes
//! each reply with its own syscall). A read that returns less than the space offered
//! means the socket is drained, which saves the `EAGAIN` read that would confirm it;
//! with edge-triggered epoll any later data raises a new event.

use super::registry::{ConnInfo, ConnState};
use super::stream::Stream;
use crate::protocol::WatchKinds;
use crate::protocol::binary;
use crate::protocol::{self, Limits, ParseError, text};
use crate::replication::{Replicator, SyncMode};
use crate::server::ProtocolChoice;
use crate::server::frontend::aspnet;
use crate::server::frontend::output::{Mark, Output};
use crate::server::frontend::{Dispatch, Flow, Session};
use crate::server::operations::watch::{WatchSink, Watcher};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::Arc;

/// memcached's `READ_BUFFER_SIZE`.
const READ_BUFFER: usize = 16 * 1024;
/// A read buffer grown past this (for a large value) is given back once empty.
const READ_BUFFER_KEEP: usize = 64 * 1024;
/// Stop running commands while this many reply bytes wait for the socket, so a
/// client that pipelines gets without reading cannot grow our memory without bound.
const WRITE_HIGH_WATER: usize = 256 * 1024;

/// Bytes read but not yet parsed. The vector stays fully initialised, so reads go
/// straight into it with no zeroing.
struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    fn new() -> Self {
        ReadBuf { buf: vec![0; READ_BUFFER], start: 0, end: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_BUFFER_KEEP {
                self.buf = vec![0; READ_BUFFER];
            }
        }
    }

    /// Makes room for `total` bytes of unparsed data (a value announced by its header).
    fn reserve_total(&mut self, total: usize) {
        if self.buf.len() - self.start >= total {
            return;
        }
        self.compact();
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Reads once; returns the bytes read and the space that was offered.
    fn read_from(&mut self, stream: &mut Stream) -> io::Result<(usize, usize)> {
        if self.end == self.buf.len() {
            self.compact();
            if self.end == self.buf.len() {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        let space = self.buf.len() - self.end;
        let n = stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok((n, space))
    }
}

/// Why `run_commands` stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The buffer holds no complete command (or a swallow is waiting for bytes).
    NeedInput,
    /// The `-R` budget is spent with input left.
    Budget,
    /// Too many reply bytes are waiting for the socket.
    Backpressure,
    /// The connection is to close.
    Closing,
    /// `watch`: the connection turns into a log stream.
    Watch,
    /// An `add` waits for the peer's verdict on its claim ([`PendingClaim`]).
    Claim,
}

/// An `add` that created its key while a peer is linked: its reply waits until the
/// peer has applied the claim, or refused it because a concurrent `add` there won.
/// The command stays in the read buffer until then: a refused one runs again and
/// meets the winner's item (or the loser's own, until the winner's arrives), so
/// it answers not stored in its protocol's own words.
#[derive(Clone, Copy, Debug)]
struct PendingClaim {
    seq: u64,
    /// Where the add's reply begins in the output.
    reply: Mark,
    consumed: usize,
    swallow: usize,
}

/// What the worker should do with a connection after driving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the socket (readable, or writable for a blocked reply).
    Idle,
    /// Used its `-R` budget with complete commands left: run it again soon.
    Yielded,
    /// Replies wait for the peer to apply a write (`--repl-sync ack`): run it
    /// again when the peer acknowledges, or is declared down.
    AwaitingAck,
    /// Done; drop it.
    Closed,
    /// `watch` on a TLS connection: the worker hands the whole connection to the
    /// watch writer, which seals the lines ([`Conn::into_stream`]).
    WatchOverTls(WatchKinds),
}

/// What a connection does with its input (memcached's `conn_states` that outlast a
/// readiness event; `stats conns` shows them through `resting_state`).
/// Replies held for replication are kept beside it, in `awaiting_ack` and
/// `pending_claim`: a connection may be closing, or about to watch, with replies
/// still held.
enum Phase {
    /// Running commands as input arrives.
    Commands,
    /// Closing once the pending replies are written: `quit`, framing lost, a refused
    /// credential, or the end of input.
    Closing,
    /// `watch`: it becomes a log stream once the replies before it are written.
    WatchRequested(WatchKinds),
    /// A log stream: input is read only to notice the client leaving.
    Watching(Arc<Watcher>),
}

/// The protocol a connection speaks, settled by its first byte under `-B auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Undecided,
    Text,
    Binary,
    /// The ASP.NET State Server protocol (`--aspnet-listen`).
    AspNet,
}

/// Where reading the next command stands between events, as memcached's states
/// name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// At a command, or in a line not yet complete (`conn_new_cmd`, `conn_read`).
    Command,
    /// The buffer holds the start of a value whose end has not arrived (`conn_nread`).
    Value,
    /// Bytes of a rejected data block still to discard as they arrive (`conn_swallow`).
    Swallow(usize),
}

impl Reading {
    /// After a command: its refused data block's bytes still to come, if any.
    fn after(swallow: usize) -> Reading {
        if swallow > 0 { Reading::Swallow(swallow) } else { Reading::Command }
    }
}

pub struct Conn {
    pub stream: Stream,
    /// What `stats conns` shows of this connection.
    pub info: Arc<ConnInfo>,
    /// Where reading the next command stands.
    reading: Reading,
    /// An ASP.NET State Server connection's buffers, grown once and reused.
    aspnet_scratch: aspnet::Scratch,
    /// Nothing has been received yet.
    silent: bool,
    protocol: Protocol,
    session: Session,
    rbuf: ReadBuf,
    output: Output,
    phase: Phase,
    /// Queued on the worker's yield list.
    pub queued: bool,
    /// Under `--repl-sync ack`: the change whose acknowledgement the pending
    /// replies wait for (0: none).
    awaiting_ack: u64,
    /// An `add` waiting for the peer's verdict.
    pending_claim: Option<PendingClaim>,
    /// On the worker's list of connections waiting for acknowledgements.
    pub held: bool,
    /// The last read took all the socket held and no readiness event came since,
    /// so another would only return `WouldBlock` (the poll is edge-triggered: new
    /// input brings an event).
    input_drained: bool,
    /// The commands run since the worker last asked recorded changes the link has
    /// not been told of (their receipts said so).
    unannounced: bool,
    /// The client has shut its writing side: the end of input may already be in the
    /// socket behind the last bytes read, and no further event will say so, so reads
    /// go on until they return it.
    input_closed: bool,
}

impl Conn {
    pub fn new(stream: Stream, info: Arc<ConnInfo>) -> Self {
        Conn {
            stream,
            session: Session { fd: info.fd, ..Session::default() },
            info,
            reading: Reading::Command,
            aspnet_scratch: aspnet::Scratch::default(),
            silent: true,
            protocol: Protocol::Undecided,
            rbuf: ReadBuf::new(),
            output: Output::with_capacity(READ_BUFFER),
            phase: Phase::Commands,
            queued: false,
            awaiting_ack: 0,
            pending_claim: None,
            unannounced: false,
            held: false,
            input_drained: false,
            input_closed: false,
        }
    }

    /// The connection came in on the ASP.NET State Server port.
    pub fn speak_aspnet(&mut self) {
        self.protocol = Protocol::AspNet;
    }

    /// The log stream this connection became, if it did (`watch`).
    pub fn watcher(&self) -> Option<&Arc<Watcher>> {
        match &self.phase {
            Phase::Watching(watcher) => Some(watcher),
            _ => None,
        }
    }

    fn pending_output(&self) -> usize {
        self.output.pending()
    }

    /// Writes pending replies; true when all are out.
    fn flush(&mut self, dispatch: &Dispatch<'_>) -> io::Result<bool> {
        while self.output.pending() > 0 {
            match self.output.write_to(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => dispatch.counters.bytes_written.add(n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.reset();
        // TLS may hold sealed records the socket has not taken yet.
        self.stream.push()
    }

    /// The connection ends on a read: a TLS handshake that ends this way failed.
    fn read_ended(&self, dispatch: &Dispatch<'_>) -> Status {
        if self.stream.handshaking()
            && let Some(tls) = &dispatch.shared.tls
        {
            tls.count_handshake_error();
        }
        Status::Closed
    }

    /// Whether `-o idle_timeout` may close this connection now: it waits for a
    /// command, with nothing to write and nothing held for the peer (memcached
    /// times out connections waiting in `conn_new_cmd`, `conn_read` and `conn_waiting`).
    pub fn waits_for_input(&self) -> bool {
        matches!(self.phase, Phase::Commands)
            && self.pending_output() == 0
            && self.awaiting_ack == 0
            && self.pending_claim.is_none()
    }

    /// A TLS connection still in its handshake.
    pub fn handshaking(&self) -> bool {
        self.stream.handshaking()
    }

    /// Runs buffered commands until input runs out, the budget is spent, or output
    /// backs up, and says which.
    fn run_commands(&mut self, dispatch: &Dispatch<'_>, limits: &Limits, budget: &mut usize) -> Stop {
        loop {
            if let Reading::Swallow(left) = self.reading {
                let n = left.min(self.rbuf.data().len());
                self.rbuf.consume(n);
                self.reading = Reading::after(left - n);
                if n < left {
                    return Stop::NeedInput;
                }
            }
            if matches!(self.phase, Phase::Closing) {
                return Stop::Closing;
            }
            if self.rbuf.data().is_empty() {
                return Stop::NeedInput;
            }
            if self.pending_output() > WRITE_HIGH_WATER {
                return Stop::Backpressure;
            }
            if *budget == 0 {
                return Stop::Budget;
            }
            if self.protocol == Protocol::Undecided {
                self.protocol = match dispatch.shared.config.protocol {
                    ProtocolChoice::Ascii => Protocol::Text,
                    ProtocolChoice::Binary => Protocol::Binary,
                    ProtocolChoice::Auto if self.rbuf.data()[0] == binary::REQUEST_MAGIC => Protocol::Binary,
                    ProtocolChoice::Auto => Protocol::Text,
                };
            }
            let reply = self.output.mark();
            let parsed = match self.protocol {
                Protocol::AspNet => {
                    let scratch = &mut self.aspnet_scratch;
                    aspnet::serve(dispatch, self.rbuf.data(), &mut self.output, &mut self.session, scratch)
                }
                Protocol::Binary => binary::parse(self.rbuf.data(), limits).map(|parsed| {
                    if log::log_enabled!(log::Level::Trace) {
                        log::trace!("<{:?}", parsed.cmd);
                    }
                    let flow = dispatch.execute_binary(parsed, &mut self.output, &mut self.session);
                    (parsed.consumed, parsed.swallow, flow)
                }),
                _ => {
                    // Under -Y nothing but credentials is read until they are accepted.
                    let must_authenticate = dispatch.shared.text_auth.is_some() && !self.session.authenticated;
                    let data = self.rbuf.data();
                    let parsed = if must_authenticate { text::parse_auth(data) } else { protocol::parse(data, limits) };
                    parsed.map(|parsed| {
                        if log::log_enabled!(log::Level::Trace) && !must_authenticate {
                            log::trace!("<{:?}", parsed.cmd);
                        }
                        let (consumed, swallow) = (parsed.consumed, parsed.swallow);
                        (consumed, swallow, dispatch.execute(parsed.cmd, &mut self.output, &mut self.session))
                    })
                }
            };
            let (consumed, swallow, flow) = match parsed {
                Ok(done) => done,
                Err(ParseError::Incomplete { need }) => {
                    self.reading = if need.is_some() { Reading::Value } else { Reading::Command };
                    if let Some(total) = need {
                        self.rbuf.reserve_total(total);
                    }
                    return Stop::NeedInput;
                }
                Err(ParseError::Close) => {
                    self.phase = Phase::Closing;
                    return Stop::Closing;
                }
            };
            *budget -= 1;
            self.reading = Reading::Command;
            let claimed = std::mem::take(&mut self.session.written.claim);
            if claimed != 0
                && let Some(replicator) = dispatch.shared.node.replicator()
            {
                // The verdict is collected even when it is in already: the peer may
                // have refused the claim, and acknowledged past it, before this
                // thread got here, and an uncollected refusal would answer STORED.
                match replicator.take_claim_verdict(claimed) {
                    None => {
                        self.pending_claim = Some(PendingClaim { seq: claimed, reply, consumed, swallow });
                        return Stop::Claim;
                    }
                    Some(true) => {}
                    // Run the command again: its key is now taken.
                    Some(false) => {
                        self.output.rewind(reply);
                        continue;
                    }
                }
            }
            self.rbuf.consume(consumed);
            self.reading = Reading::after(swallow);
            match flow {
                Flow::Continue => {}
                Flow::Close => self.phase = Phase::Closing,
                Flow::Watch(kinds) => {
                    self.phase = Phase::WatchRequested(kinds);
                    return Stop::Watch;
                }
            }
        }
    }

    /// Serves the connection after a readiness event (or a yield), publishing its
    /// state for `stats conns`.
    pub fn drive(&mut self, dispatch: &Dispatch<'_>, limits: &Limits, reqs_per_event: usize) -> Status {
        self.info.set_state(ConnState::ParseCmd);
        let mut budget = reqs_per_event;
        let status = self.serve(dispatch, limits, &mut budget);
        self.info.set_state(self.resting_state());
        self.info.set_buffer_bytes(self.rbuf.buf.len() + self.output.capacity());
        status
    }

    /// Whether the commands run since the last call recorded changes the link has
    /// not been told of; the worker tells it, once for all its connections.
    pub fn take_unannounced(&mut self) -> bool {
        std::mem::take(&mut self.unannounced)
    }

    /// The state between events, in memcached's terms.
    fn resting_state(&self) -> ConnState {
        if matches!(self.phase, Phase::Watching(_)) {
            ConnState::Watch
        } else if self.pending_output() > 0 {
            ConnState::Mwrite
        } else {
            match self.reading {
                Reading::Swallow(_) => ConnState::Swallow,
                Reading::Value => ConnState::Nread,
                Reading::Command if self.silent => ConnState::NewCmd,
                Reading::Command => ConnState::Read,
            }
        }
    }

    /// Whether the replies this connection holds may go now.
    pub fn ack_arrived(&self, replicator: &Replicator) -> bool {
        (self.awaiting_ack == 0 || replicator.acknowledged(self.awaiting_ack))
            && self.pending_claim.is_none_or(|claim| replicator.claim_settled(claim.seq))
    }

    /// Settles an `add` waiting for its claim's verdict; false while it still waits.
    fn settle_claim(&mut self, dispatch: &Dispatch<'_>) -> bool {
        let Some(claim) = self.pending_claim else {
            return true;
        };
        let verdict = match dispatch.shared.node.replicator() {
            Some(replicator) => replicator.take_claim_verdict(claim.seq),
            None => Some(true),
        };
        match verdict {
            None => return false,
            Some(true) => {
                self.rbuf.consume(claim.consumed);
                self.reading = Reading::after(claim.swallow);
            }
            // Run the add again: its key is now taken.
            Some(false) => self.output.rewind(claim.reply),
        }
        self.pending_claim = None;
        true
    }

    /// A readiness event came: the socket may hold input again; `read_closed` when
    /// the event says the client shut its writing side.
    pub fn readiness(&mut self, read_closed: bool) {
        self.input_drained = false;
        self.input_closed |= read_closed;
    }

    /// Whether replies must wait for the peer to apply this connection's writes.
    fn awaiting_ack(&mut self, dispatch: &Dispatch<'_>) -> bool {
        if self.awaiting_ack == 0 {
            return false;
        }
        let acknowledged =
            dispatch.shared.node.replicator().is_none_or(|replicator| replicator.acknowledged(self.awaiting_ack));
        if acknowledged {
            self.awaiting_ack = 0;
        }
        !acknowledged
    }

    fn serve(&mut self, dispatch: &Dispatch<'_>, limits: &Limits, budget: &mut usize) -> Status {
        if self.awaiting_ack(dispatch) || !self.settle_claim(dispatch) {
            return Status::AwaitingAck;
        }
        if matches!(self.phase, Phase::WatchRequested(_) | Phase::Watching(_)) {
            return self.serve_watcher(dispatch);
        }
        let ack_mode =
            dispatch.shared.node.replicator().is_some_and(|replicator| replicator.settings.mode == SyncMode::Ack);
        // A connection re-run after a yield or an acknowledgement reads only if an
        // event said there is input.
        let mut drained = self.input_drained;
        loop {
            let stop = self.run_commands(dispatch, limits, budget);
            let recorded = std::mem::take(&mut self.session.written.recorded);
            self.unannounced |= recorded != 0;
            if ack_mode {
                if recorded != 0 {
                    self.awaiting_ack = recorded;
                }
                if self.awaiting_ack(dispatch) {
                    // Run again when acknowledged: the commands' replies (and the
                    // input after them) wait until then.
                    return Status::AwaitingAck;
                }
            }
            if matches!(stop, Stop::Claim) {
                // The replies so far, and the input after the add, wait for the verdict.
                return Status::AwaitingAck;
            }
            let flushed = match self.flush(dispatch) {
                Ok(flushed) => flushed,
                Err(_) => return Status::Closed,
            };
            if !flushed {
                // The writable event resumes us; a closing connection finishes the write first.
                return Status::Idle;
            }
            match stop {
                Stop::Closing => return Status::Closed,
                Stop::Watch => return self.serve_watcher(dispatch),
                Stop::Budget => {
                    dispatch.counters.conn_yields.inc();
                    return Status::Yielded;
                }
                Stop::Backpressure => continue,
                Stop::Claim => unreachable!("returned above"),
                Stop::NeedInput if drained => return Status::Idle,
                Stop::NeedInput => {}
            }
            match self.rbuf.read_from(&mut self.stream) {
                Ok((0, _)) => {
                    // End of input: replies to what was received have been written.
                    return self.read_ended(dispatch);
                }
                Ok((n, space)) => {
                    self.silent = false;
                    // Input means commands: stamped once per read, not per command.
                    self.info.ran_command(dispatch.shared.node.view().clock().now_secs());
                    dispatch.counters.bytes_read.add(n as u64);
                    drained = n < space && !self.input_closed;
                    self.input_drained = drained;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    self.input_drained = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        log::info!("closing {}: {e}", self.info.peer);
                    }
                    return self.read_ended(dispatch);
                }
            }
        }
    }

    /// A `watch` connection: once the replies before `watch` are written, the
    /// watch writer owns the socket's output; input is read only to notice the
    /// client leaving, and discarded, as memcached stops reading a watcher.
    fn serve_watcher(&mut self, dispatch: &Dispatch<'_>) -> Status {
        match self.flush(dispatch) {
            Err(_) => return Status::Closed,
            Ok(false) => return Status::Idle,
            Ok(true) => {}
        }
        if let Phase::WatchRequested(kinds) = self.phase {
            self.phase = Phase::Commands;
            if self.stream.is_tls() {
                // The lines must be sealed: the writer takes the TLS stream itself.
                return Status::WatchOverTls(kinds);
            }
            let sink = match self.stream.as_fd().try_clone_to_owned() {
                Ok(fd) => socket2::Socket::from(fd),
                Err(e) => {
                    log::warn!("watch: cannot duplicate the connection: {e}");
                    return Status::Closed;
                }
            };
            match dispatch.shared.watch.add(kinds, WatchSink::Socket(sink), b"OK\r\n") {
                Ok(watcher) => self.phase = Phase::Watching(watcher),
                Err((refused, _)) => {
                    // Still an ordinary connection: say why, and go on serving it.
                    self.output.bytes().extend_from_slice(refused.line());
                    let mut budget = dispatch.shared.config.reqs_per_event;
                    return self.serve(dispatch, &dispatch.shared.limits, &mut budget);
                }
            }
        }
        loop {
            match self.rbuf.read_from(&mut self.stream) {
                Ok((0, _)) => return Status::Closed,
                Ok(_) => {
                    let unread = self.rbuf.data().len();
                    self.rbuf.consume(unread);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Status::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Status::Closed,
            }
        }
    }

    /// The connection's stream, for a TLS watcher's writer to own.
    pub fn into_stream(self) -> Stream {
        self.stream
    }

    /// At shutdown: try to write what is pending, without reading anything new.
    pub fn finish(&mut self, dispatch: &Dispatch<'_>) -> bool {
        matches!(self.flush(dispatch), Ok(true) | Err(_))
    }
}
