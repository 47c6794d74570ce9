//! One cache item in one heap block: a 22-byte header, a reference count for large
//! values, the client flags when they are not zero, the key, then the value.
//!
//! A value of [`SHARED_VALUE_MIN`] bytes or more is sent to clients straight from
//! its item (memcached does the same with an iovec and `it->refcount`): a reader
//! takes an [`ItemRef`] under the shard lock, the connection writes the value from
//! it with `writev`, and the block is freed when the table and every reader have let
//! go. Smaller values are copied into the write buffer, which costs less than the
//! two atomic operations and the extra iovec.
//!
//! A single allocation per item keeps memory per item low (the table stores only a
//! pointer) and keeps key and value on the same cache lines. Flags of zero take no
//! space, as in memcached (`ITEM_CFLAGS`): a 100-byte value under a 14-byte key then
//! fits a 144-byte malloc chunk instead of a 160-byte one. This is the only module
//! of the store with `unsafe`, and all of it serves this layout.

use std::alloc::{Layout, alloc, dealloc};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

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
/// Values this long or longer are shared with readers instead of copied: a 1 KiB
/// copy costs about as much as the reference counting that replaces it.
pub const SHARED_VALUE_MIN: usize = 1024;
/// A shared item keeps its `AtomicU32` reference count at this offset: the first
/// 4-aligned offset after the header (malloc blocks are 16-aligned).
const REFS_OFFSET: usize = 24;
/// Bytes a shared item spends on its count, padding included.
const REFS_LEN: usize = REFS_OFFSET + 4 - HEADER_LEN;

/// Bits of [`Header::bits`].
pub(super) const BIT_REFERENCED: u8 = 1 << 0;
pub(super) const BIT_FETCHED: u8 = 1 << 1;
/// The four bytes before the key hold non-zero client flags.
const BIT_HAS_FLAGS: u8 = 1 << 2;
/// The item has a reference count at [`REFS_OFFSET`] (its value is long).
const BIT_SHARED: u8 = 1 << 3;
/// Marked stale by a meta invalidation (memcached's `ITEM_STALE`).
pub(super) const BIT_STALE: u8 = 1 << 4;
/// A client was handed the recache token (memcached's `ITEM_TOKEN_SENT`).
pub(super) const BIT_TOKEN_SENT: u8 = 1 << 5;
/// The key was sent in base64 and is echoed that way (memcached's `ITEM_KEY_BINARY`).
pub(super) const BIT_KEY_BINARY: u8 = 1 << 6;
/// The CAS was chosen by the client (meta `E`), so it says nothing about when the
/// item was written and `flush_all` judges the item by its time alone.
pub(super) const BIT_CLIENT_CAS: u8 = 1 << 7;

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

// SAFETY: an `Item` owns its heap block (like a `Box<[u8]>`). The only other handles
// are `ItemRef`s of shared items, which read nothing but the immutable value bytes
// and the atomic reference count, so the block may move to other threads.
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
        Self::prefix_len(value_len >= SHARED_VALUE_MIN, flags != 0) + key_len + value_len
    }

    /// Bytes before the key: header, reference count, flags.
    #[inline]
    fn prefix_len(shared: bool, has_flags: bool) -> usize {
        HEADER_LEN + if shared { REFS_LEN } else { 0 } + if has_flags { FLAGS_LEN } else { 0 }
    }

    fn layout(block_len: usize, shared: bool) -> Layout {
        // Alignment 2 matches the packed header, 4 the count of a shared item; sizes
        // are bounded by -I (≤ 1 GiB).
        Layout::from_size_align(block_len, if shared { 4 } else { 2 }).expect("item size fits a Layout")
    }

    /// Allocates an item whose value is the concatenation of `parts`.
    /// Returns `None` when the allocator fails. Keys are at most 250 bytes.
    pub fn new(key: &[u8], parts: &[&[u8]], meta: ItemMeta) -> Option<Item> {
        assert!(key.len() <= u8::MAX as usize, "keys are at most 250 bytes");
        let value_len: usize = parts.iter().map(|p| p.len()).sum();
        let value_len_u32 = u32::try_from(value_len).ok()?;
        let block_len = Self::block_len(key.len(), value_len, meta.flags);
        let shared = value_len >= SHARED_VALUE_MIN;
        // SAFETY: the layout has a non-zero size (the header alone is 22 bytes).
        let raw = unsafe { alloc(Self::layout(block_len, shared)) };
        let ptr = NonNull::new(raw)?;
        let header = Header {
            cas: meta.cas,
            expires_at: meta.expires_at,
            value_len: value_len_u32,
            last_access: meta.now,
            key_len: key.len() as u8,
            bits: if meta.flags == 0 { 0 } else { BIT_HAS_FLAGS } | if shared { BIT_SHARED } else { 0 },
        };
        // SAFETY: the block is `block_len` bytes: the header, the count of a shared
        // item, the flags when not zero, the key, then exactly `value_len` bytes that
        // the parts fill completely, so every byte is initialised before an `Item`
        // exists (the padding before the count included). The header type has
        // alignment 2, which the layout provides; the count's offset is 4-aligned in
        // a block the allocator aligned to 16 (the layout asks for 4 when shared);
        // the flags are written unaligned.
        unsafe {
            ptr.as_ptr().cast::<Header>().write(header);
            let mut at = ptr.as_ptr().add(HEADER_LEN);
            if shared {
                at.write_bytes(0, REFS_OFFSET - HEADER_LEN);
                // The table's own reference.
                ptr.as_ptr().add(REFS_OFFSET).cast::<AtomicU32>().write(AtomicU32::new(1));
                at = ptr.as_ptr().add(REFS_OFFSET + 4);
            }
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
        Self::prefix_len(h.bits & BIT_SHARED != 0, h.bits & BIT_HAS_FLAGS != 0)
    }

    /// True when readers may hold the value through [`ItemRef`]s.
    #[inline]
    pub fn is_shared(&self) -> bool {
        self.header().bits & BIT_SHARED != 0
    }

    /// A handle that keeps the value readable after the shard lock is released;
    /// `None` for small items, whose values are copied instead.
    pub fn share(&self) -> Option<ItemRef> {
        let h = self.header();
        if h.bits & BIT_SHARED == 0 {
            return None;
        }
        // Relaxed suffices to take a reference from one already held (as Arc::clone).
        let previous = self.refs().fetch_add(1, Ordering::Relaxed);
        // A count near overflow would mean billions of replies queued at once.
        assert!(previous < u32::MAX / 2, "item reference count overflow");
        Some(ItemRef {
            ptr: self.ptr,
            value_at: (Self::key_offset(&h) + h.key_len as usize) as u32,
            value_len: h.value_len,
            block_len: self.block_size() as u32,
        })
    }

    fn refs(&self) -> &AtomicU32 {
        debug_assert!(self.is_shared());
        // SAFETY: a shared item holds an initialised AtomicU32 at the 4-aligned
        // REFS_OFFSET for as long as any handle exists.
        unsafe { &*self.ptr.as_ptr().add(REFS_OFFSET).cast::<AtomicU32>() }
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

    /// The value, to change in place. Not for shared items: readers may be sending it.
    #[inline]
    pub fn value_mut(&mut self) -> &mut [u8] {
        assert!(!self.is_shared(), "a shared value is immutable");
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
        let bits = self.header().bits;
        if bits & BIT_HAS_FLAGS == 0 {
            return 0;
        }
        let at = Self::prefix_len(bits & BIT_SHARED != 0, false);
        // SAFETY: with BIT_HAS_FLAGS the four bytes before the key hold the flags.
        unsafe { self.ptr.as_ptr().add(at).cast::<u32>().read_unaligned() }
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
    pub(super) fn has_bit(&self, bit: u8) -> bool {
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
    /// Marks a use that is not a fetch (memcached's `do_item_update` after `incr`,
    /// `decr`, or an `add` that found the item): referenced for CLOCK, its last
    /// access moved, and `h`, `fetch=` and the `*_unfetched` counters unchanged.
    #[inline]
    pub fn touch_update(&mut self, now: u32) {
        self.update(|h| {
            h.last_access = now;
            h.bits |= BIT_REFERENCED;
        });
    }
    pub(super) fn clear_bit(&mut self, bit: u8) {
        self.update(|h| h.bits &= !bit);
    }
    /// Sets one of the meta bits: [`BIT_STALE`], [`BIT_TOKEN_SENT`], [`BIT_KEY_BINARY`],
    /// [`BIT_CLIENT_CAS`].
    pub(super) fn set_bit(&mut self, bit: u8) {
        debug_assert!(bit & (BIT_HAS_FLAGS | BIT_SHARED) == 0, "layout bits are fixed at allocation");
        self.update(|h| h.bits |= bit);
    }

    /// Whether a read has fetched the item since it was stored (meta `h`, `me`'s
    /// `fetch=`).
    #[inline]
    pub fn was_fetched(&self) -> bool {
        self.has_bit(BIT_FETCHED)
    }

    /// Whether the key was sent in base64 and is echoed that way (meta `b`).
    #[inline]
    pub fn key_is_binary(&self) -> bool {
        self.has_bit(BIT_KEY_BINARY)
    }

    /// Whether a meta invalidation or a stale `ms I` marked the item stale (meta `X`).
    #[inline]
    pub fn is_stale(&self) -> bool {
        self.has_bit(BIT_STALE)
    }

    /// Whether a client already holds the item's recache token (meta `Z`).
    #[inline]
    pub fn recache_token_taken(&self) -> bool {
        self.has_bit(BIT_TOKEN_SENT)
    }

    /// Hands the recache token to the reading client (meta `W`): later readers see
    /// it taken until a write or an invalidation frees it.
    pub fn take_recache_token(&mut self) {
        self.set_bit(BIT_TOKEN_SENT);
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
        if self.is_shared() {
            // SAFETY: the table's reference is given up once, here.
            unsafe { release(self.ptr, block_len) };
            return;
        }
        // SAFETY: `ptr` came from `alloc` with exactly this layout (lengths and flags
        // never change after allocation) and is freed only here, once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(block_len, false)) }
    }
}

/// Drops one reference to a shared item's block and frees it with the last one.
///
/// # Safety
/// `ptr` is a live shared item of `block_len` bytes, and the caller owns one of its
/// references, which it does not use again.
unsafe fn release(ptr: NonNull<u8>, block_len: usize) {
    // SAFETY: the block is live while the caller's reference is counted.
    let refs = unsafe { &*ptr.as_ptr().add(REFS_OFFSET).cast::<AtomicU32>() };
    // Release orders this handle's reads before the free; the last one's Acquire
    // sees every other handle's (the protocol of Arc's drop).
    if refs.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    std::sync::atomic::fence(Ordering::Acquire);
    // SAFETY: this was the last reference; the block came from `alloc` with this layout.
    unsafe { dealloc(ptr.as_ptr(), Item::layout(block_len, true)) }
}

/// A reader's hold on a shared item's value, taken under the shard lock and used
/// after it (to write the value to a socket). It never reads the header, which the
/// lock holder may be changing.
pub struct ItemRef {
    ptr: NonNull<u8>,
    value_at: u32,
    value_len: u32,
    block_len: u32,
}

// SAFETY: an ItemRef reads only the value bytes, which no one writes after the item
// is built (`value_mut` refuses shared items), and the atomic count.
unsafe impl Send for ItemRef {}
// SAFETY: as for Send; `&ItemRef` gives only reads of the immutable value.
unsafe impl Sync for ItemRef {}

impl ItemRef {
    #[inline]
    pub fn value(&self) -> &[u8] {
        // SAFETY: the value bytes stay allocated and unchanged while this reference is counted.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(self.value_at as usize), self.value_len as usize) }
    }
}

impl Drop for ItemRef {
    fn drop(&mut self) {
        // SAFETY: this handle owns one reference and is dropped once.
        unsafe { release(self.ptr, self.block_len as usize) }
    }
}

impl std::fmt::Debug for ItemRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemRef").field("value_len", &self.value_len).finish()
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
        assert!(plain.share().is_none());
    }

    #[test]
    fn a_shared_value_outlives_its_item() {
        let value: Vec<u8> = (0..SHARED_VALUE_MIN + 7).map(|i| i as u8).collect();
        let meta = ItemMeta { flags: 9, expires_at: 3, cas: 4, now: 5 };
        let mut item = Item::new(b"session", &[&value], meta).unwrap();
        assert!(item.is_shared());
        assert_eq!((item.key(), item.value(), item.flags()), (&b"session"[..], &value[..], 9));
        let first = item.share().unwrap();
        let second = item.share().unwrap();
        // Header changes under the lock do not disturb readers.
        item.touch_access(6);
        item.set_cas(8);
        drop(item);
        assert_eq!(first.value(), &value[..]);
        let moved = std::thread::spawn(move || second.value().to_vec()).join().unwrap();
        assert_eq!(moved, value);
        drop(first);
    }

    #[test]
    #[should_panic(expected = "immutable")]
    fn a_shared_value_cannot_change_in_place() {
        let value = vec![b'1'; SHARED_VALUE_MIN];
        let meta = ItemMeta { flags: 0, expires_at: 0, cas: 1, now: 0 };
        Item::new(b"n", &[&value], meta).unwrap().value_mut()[0] = b'2';
    }
}
