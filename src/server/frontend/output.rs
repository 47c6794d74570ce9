//! A connection's pending replies: bytes, with the long values of shared items
//! spliced in by reference, all written with one `writev` (memcached builds the same
//! iovec list and calls `sendmsg` once per reply instead).

use crate::store::ItemRef;
use std::io::{self, IoSlice, Write};

/// Pieces handed to one `writev`; more wait for the next call. Well under Linux's
/// `IOV_MAX` of 1024 and enough for a pipeline of 16 large values with their lines.
const MAX_IOVECS: usize = 64;

/// A buffer grown past this is given back once flushed.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// Where a reply begins, to take back what was queued after it.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    bytes: usize,
    shared: usize,
}

pub struct Output {
    bytes: Vec<u8>,
    /// Shared values, each sent right after `bytes[..at]`; `at` never decreases.
    shared: Vec<(usize, ItemRef)>,
    shared_len: usize,
    /// Bytes of the whole sequence already written.
    written: usize,
    initial_capacity: usize,
}

impl Output {
    pub fn with_capacity(capacity: usize) -> Output {
        Output {
            bytes: Vec::with_capacity(capacity),
            shared: Vec::new(),
            shared_len: 0,
            written: 0,
            initial_capacity: capacity,
        }
    }

    /// The byte buffer, to append reply text to.
    #[inline]
    pub fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Queues a shared value after the bytes appended so far.
    pub fn push_shared(&mut self, value: ItemRef) {
        self.shared_len += value.value().len();
        self.shared.push((self.bytes.len(), value));
    }

    pub fn mark(&self) -> Mark {
        Mark { bytes: self.bytes.len(), shared: self.shared.len() }
    }

    /// Drops everything queued after `mark` (nothing of it has been written: replies
    /// are built whole before the next write).
    pub fn rewind(&mut self, mark: Mark) {
        debug_assert!(
            self.written <= mark.bytes + self.shared[..mark.shared].iter().map(|s| s.1.value().len()).sum::<usize>()
        );
        for (_, value) in self.shared.drain(mark.shared..) {
            self.shared_len -= value.value().len();
        }
        self.bytes.truncate(mark.bytes);
    }

    /// Bytes the buffer holds room for.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub fn pending(&self) -> usize {
        self.bytes.len() + self.shared_len - self.written
    }

    /// Writes as much as one `writev` takes; returns the bytes written.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut gather = Gather { slices: [IoSlice::new(&[]); MAX_IOVECS], count: 0, offset: 0, skip: self.written };
        let mut from = 0;
        let mut room = true;
        for (at, value) in &self.shared {
            room = gather.push(&self.bytes[from..*at]) && gather.push(value.value());
            from = *at;
            if !room {
                break;
            }
        }
        if room {
            gather.push(&self.bytes[from..]);
        }
        if gather.count == 0 {
            return Ok(0);
        }
        let n = match gather.count {
            1 => sink.write(&gather.slices[0])?,
            count => sink.write_vectored(&gather.slices[..count])?,
        };
        self.written += n;
        Ok(n)
    }

    /// After everything was written: empties the buffer and lets go of the values.
    pub fn reset(&mut self) {
        debug_assert_eq!(self.pending(), 0);
        self.written = 0;
        self.bytes.clear();
        self.shared.clear();
        self.shared_len = 0;
        if self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes = Vec::with_capacity(self.initial_capacity);
        }
    }
}

/// The iovec list of one write: the pieces of the sequence after its first `skip` bytes.
struct Gather<'a> {
    slices: [IoSlice<'a>; MAX_IOVECS],
    count: usize,
    /// Offset in the sequence of the next piece.
    offset: usize,
    skip: usize,
}

impl<'a> Gather<'a> {
    /// Adds the unwritten part of `piece`; false once the list is full.
    fn push(&mut self, piece: &'a [u8]) -> bool {
        let end = self.offset + piece.len();
        if end > self.skip {
            let from = self.skip.saturating_sub(self.offset);
            self.slices[self.count] = IoSlice::new(&piece[from..]);
            self.count += 1;
        }
        self.offset = end;
        self.count < MAX_IOVECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Item, ItemMeta, SHARED_VALUE_MIN};

    fn shared(byte: u8) -> (Item, ItemRef) {
        let value = vec![byte; SHARED_VALUE_MIN];
        let item = Item::new(b"k", &[&value], ItemMeta { flags: 0, expires_at: 0, cas: 1, now: 0 }).unwrap();
        let handle = item.share().unwrap();
        (item, handle)
    }

    /// A sink that takes at most `limit` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.limit);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut total = 0;
            for buf in bufs {
                let n = self.write(&buf[..buf.len().min(self.limit - total)])?;
                total += n;
                if total == self.limit {
                    break;
                }
            }
            Ok(total)
        }
    }

    #[test]
    fn partial_writes_resume_in_order() {
        let (_a, ref_a) = shared(b'a');
        let (_b, ref_b) = shared(b'b');
        let mut out = Output::with_capacity(64);
        out.bytes().extend_from_slice(b"VALUE x\r\n");
        out.push_shared(ref_a);
        out.bytes().extend_from_slice(b"\r\nVALUE y\r\n");
        out.push_shared(ref_b);
        out.bytes().extend_from_slice(b"\r\nEND\r\n");
        let mut expected = b"VALUE x\r\n".to_vec();
        expected.extend(std::iter::repeat_n(b'a', SHARED_VALUE_MIN));
        expected.extend_from_slice(b"\r\nVALUE y\r\n");
        expected.extend(std::iter::repeat_n(b'b', SHARED_VALUE_MIN));
        expected.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(out.pending(), expected.len());
        let mut sink = Trickle { got: Vec::new(), limit: 7 };
        while out.pending() > 0 {
            let before = out.pending();
            assert_eq!(out.write_to(&mut sink).unwrap(), before.min(7));
        }
        assert_eq!(sink.got, expected);
        out.reset();
        assert_eq!(out.pending(), 0);
    }

    #[test]
    fn rewind_drops_what_came_after_the_mark() {
        let (_a, ref_a) = shared(b'a');
        let mut out = Output::with_capacity(64);
        out.bytes().extend_from_slice(b"STORED\r\n");
        let mark = out.mark();
        out.bytes().extend_from_slice(b"VALUE x\r\n");
        out.push_shared(ref_a);
        out.rewind(mark);
        out.bytes().extend_from_slice(b"CLIENT_ERROR\r\n");
        let mut sink = Trickle { got: Vec::new(), limit: usize::MAX };
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink.got, b"STORED\r\nCLIENT_ERROR\r\n");
    }
}
