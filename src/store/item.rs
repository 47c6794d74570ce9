//! One cache item in one heap block: a 22-byte header, the client flags when they are
//! not zero, the key, then the value.
//!
//! A single allocation per item keeps memory per item low (the table stores only a
//! pointer) and keeps key and value on the same cache lines. Flags of zero take no
//! space, as in memcached (`ITEM_CFLAGS`): a 100-byte value under a 14-byte key then
//! fits a 144-byte malloc chunk instead of a 160-byte one. This is the only module
//! of the store with `unsafe`, and all of it serves this layout.

use std::alloc::{Layout, alloc, dealloc};
use std::ptr::NonNull;

/// The item's metadata. `packed(2)` keeps it at 22 bytes instead of 24; fields are
/// only ever copied in and out, never borrowed.
#[repr(C, packed(2))]
#[derive(Clone, Copy)]
struct Header {
    cas: u64,
    /// Unix seconds after which the item is gone; 0 = never.
    expires_at: u32,
    value_len: u32,
    /// Unix seconds of the last store or fetch (memcached's `it->time`).
    last_access: u32,
    key_len: u8,
    bits: u8,
}

const HEADER_LEN: usize = std::mem::size_of::<Header>();
const _: () = assert!(HEADER_LEN == 22);
/// Bytes of the client flags, present when [`BIT_HAS_FLAGS`] is set.
const FLAGS_LEN: usize = 4;

/// Bits of [`Header::bits`].
pub const BIT_REFERENCED: u8 = 1 << 0;
pub const BIT_FETCHED: u8 = 1 << 1;
/// The four bytes after the header hold non-zero client flags.
const BIT_HAS_FLAGS: u8 = 1 << 2;

/// glibc malloc rounds each block up to a 16-byte multiple and adds an 8-byte size
/// word (malloc/malloc.c `request2size`); we charge that, so the memory limit counts
/// what the allocator really takes.
pub fn allocated_size(requested: usize) -> usize {
    (requested + 8).div_ceil(16) * 16
}

/// An owned item. Dropping it frees the block.
pub struct Item {
    ptr: NonNull<u8>,
}

// SAFETY: an `Item` uniquely owns its heap block (like a `Box<[u8]>`); nothing else
// aliases it, so it may move to and be shared with other threads.
unsafe impl Send for Item {}
// SAFETY: shared access only reads the block; mutation needs `&mut Item`.
unsafe impl Sync for Item {}

/// What is needed to create an item, apart from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct ItemMeta {
    pub flags: u32,
    pub expires_at: u32,
    pub cas: u64,
    pub now: u32,
}

impl Item {
    /// Block size for a key and value of these lengths.
    pub fn block_len(key_len: usize, value_len: usize, flags: u32) -> usize {
        HEADER_LEN + Self::flags_len(flags) + key_len + value_len
    }

    fn flags_len(flags: u32) -> usize {
        if flags == 0 { 0 } else { FLAGS_LEN }
    }

    fn layout(block_len: usize) -> Layout {
        // Alignment 2 matches the packed header; sizes are bounded by -I (≤ 1 GiB).
        Layout::from_size_align(block_len, 2).expect("item size fits a Layout")
    }

    /// Allocates an item whose value is the concatenation of `parts`.
    /// Returns `None` when the allocator fails. Keys are at most 250 bytes.
    pub fn new(key: &[u8], parts: &[&[u8]], meta: ItemMeta) -> Option<Item> {
        assert!(key.len() <= u8::MAX as usize, "keys are at most 250 bytes");
        let value_len: usize = parts.iter().map(|p| p.len()).sum();
        let value_len_u32 = u32::try_from(value_len).ok()?;
        let block_len = Self::block_len(key.len(), value_len, meta.flags);
        // SAFETY: the layout has a non-zero size (the header alone is 22 bytes).
        let raw = unsafe { alloc(Self::layout(block_len)) };
        let ptr = NonNull::new(raw)?;
        let header = Header {
            cas: meta.cas,
            expires_at: meta.expires_at,
            value_len: value_len_u32,
            last_access: meta.now,
            key_len: key.len() as u8,
            bits: if meta.flags == 0 { 0 } else { BIT_HAS_FLAGS },
        };
        // SAFETY: the block is `block_len` bytes: the header, the flags when not
        // zero, the key, then exactly `value_len` bytes that the parts fill
        // completely, so every byte is initialised before an `Item` exists; the
        // header type has alignment 2, which the layout provides, and the flags are
        // written unaligned.
        unsafe {
            ptr.as_ptr().cast::<Header>().write(header);
            let mut at = ptr.as_ptr().add(HEADER_LEN);
            if meta.flags != 0 {
                at.cast::<u32>().write_unaligned(meta.flags);
                at = at.add(FLAGS_LEN);
            }
            std::ptr::copy_nonoverlapping(key.as_ptr(), at, key.len());
            at = at.add(key.len());
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        Some(Item { ptr })
    }

    #[inline]
    fn header(&self) -> Header {
        // SAFETY: every item starts with an initialised header (see `new`).
        unsafe { self.ptr.as_ptr().cast::<Header>().read() }
    }

    #[inline]
    fn update(&mut self, f: impl FnOnce(&mut Header)) {
        let mut h = self.header();
        f(&mut h);
        // SAFETY: as in `header`; `&mut self` guarantees exclusive access.
        unsafe { self.ptr.as_ptr().cast::<Header>().write(h) }
    }

    /// Offset of the key in the block.
    #[inline]
    fn key_offset(h: &Header) -> usize {
        HEADER_LEN + if h.bits & BIT_HAS_FLAGS != 0 { FLAGS_LEN } else { 0 }
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        let h = self.header();
        // SAFETY: the key is `key_len` initialised bytes at `key_offset`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(Self::key_offset(&h)), h.key_len as usize) }
    }

    #[inline]
    pub fn value(&self) -> &[u8] {
        let h = self.header();
        let at = Self::key_offset(&h) + h.key_len as usize;
        // SAFETY: the value is `value_len` initialised bytes after the key.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at), h.value_len as usize) }
    }

    #[inline]
    pub fn value_mut(&mut self) -> &mut [u8] {
        let h = self.header();
        let at = Self::key_offset(&h) + h.key_len as usize;
        // SAFETY: as in `value`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), h.value_len as usize) }
    }

    #[inline]
    pub fn cas(&self) -> u64 {
        self.header().cas
    }
    #[inline]
    pub fn flags(&self) -> u32 {
        if self.header().bits & BIT_HAS_FLAGS == 0 {
            return 0;
        }
        // SAFETY: with BIT_HAS_FLAGS the four bytes after the header hold the flags.
        unsafe { self.ptr.as_ptr().add(HEADER_LEN).cast::<u32>().read_unaligned() }
    }
    #[inline]
    pub fn expires_at(&self) -> u32 {
        self.header().expires_at
    }
    #[inline]
    pub fn last_access(&self) -> u32 {
        self.header().last_access
    }
    #[inline]
    pub fn has_bit(&self, bit: u8) -> bool {
        self.header().bits & bit != 0
    }

    pub fn set_cas(&mut self, cas: u64) {
        self.update(|h| h.cas = cas);
    }
    pub fn set_expires_at(&mut self, expires_at: u32) {
        self.update(|h| h.expires_at = expires_at);
    }
    /// Marks a fetch: referenced for CLOCK, fetched for the `*_unfetched` counters.
    #[inline]
    pub fn touch_access(&mut self, now: u32) {
        self.update(|h| {
            h.last_access = now;
            h.bits |= BIT_REFERENCED | BIT_FETCHED;
        });
    }
    pub fn clear_bit(&mut self, bit: u8) {
        self.update(|h| h.bits &= !bit);
    }

    /// Bytes this item's block costs (the table's own memory is counted separately).
    pub fn charge(&self) -> usize {
        allocated_size(self.block_size())
    }

    pub fn charge_for(key_len: usize, value_len: usize, flags: u32) -> usize {
        allocated_size(Self::block_len(key_len, value_len, flags))
    }

    fn block_size(&self) -> usize {
        let h = self.header();
        Self::key_offset(&h) + h.key_len as usize + h.value_len as usize
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        let block_len = self.block_size();
        // SAFETY: `ptr` came from `alloc` with exactly this layout (lengths and flags
        // never change after allocation) and is freed only here, once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(block_len)) }
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value().len())
            .field("cas", &self.cas())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_fields_and_bytes() {
        let meta = ItemMeta { flags: 7, expires_at: 99, cas: 1 << 40, now: 5 };
        let mut item = Item::new(b"key", &[b"hel", b"lo"], meta).unwrap();
        assert_eq!(item.key(), b"key");
        assert_eq!(item.value(), b"hello");
        assert_eq!((item.flags(), item.expires_at(), item.cas(), item.last_access()), (7, 99, 1 << 40, 5));
        item.value_mut()[0] = b'j';
        item.set_cas(3);
        item.touch_access(8);
        assert!(item.has_bit(BIT_FETCHED) && item.has_bit(BIT_REFERENCED));
        item.clear_bit(BIT_REFERENCED);
        assert!(!item.has_bit(BIT_REFERENCED));
        assert_eq!((item.value(), item.cas(), item.last_access()), (&b"jello"[..], 3, 8));
    }

    #[test]
    fn empty_value_and_charge() {
        let meta = ItemMeta { flags: 0, expires_at: 0, cas: 1, now: 0 };
        let item = Item::new(b"k", &[], meta).unwrap();
        assert_eq!(item.value(), b"");
        assert_eq!(item.flags(), 0);
        // A 22 + 1 byte block takes a 32-byte malloc chunk.
        assert_eq!(item.charge(), 32);
    }

    #[test]
    fn flags_take_space_only_when_set() {
        let key = b"memtier-123456";
        let value = [b'v'; 100];
        let plain = Item::new(key, &[&value], ItemMeta { flags: 0, expires_at: 0, cas: 1, now: 0 }).unwrap();
        let flagged = Item::new(key, &[&value], ItemMeta { flags: u32::MAX, expires_at: 0, cas: 1, now: 0 }).unwrap();
        assert_eq!((plain.key(), plain.value(), plain.flags()), (&key[..], &value[..], 0));
        assert_eq!((flagged.key(), flagged.value(), flagged.flags()), (&key[..], &value[..], u32::MAX));
        // 22 + 14 + 100 = 136 bytes fit a 144-byte chunk; the flags push it to 160.
        assert_eq!((plain.charge(), flagged.charge()), (144, 160));
    }
}
