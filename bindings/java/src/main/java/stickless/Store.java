package stickless;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import java.nio.charset.StandardCharsets;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * An embedded stickless node: a memcached-compatible store in this JVM, which can also
 * serve memcached clients and replicate with stickless daemons ({@link #serve}).
 *
 * <pre>{@code
 * try (Store store = Store.open()) {
 *     store.set("sess:abc", "data", 0, 1440);
 *     byte[] value = store.get("sess:abc");          // null when missing
 *     store.serve("-l 127.0.0.1 -p 11211 --peer 10.0.0.2:11212");
 * }
 * }</pre>
 *
 * <p>The library is {@code $STICKLESS_LIBRARY}, else {@code libstickless.so} on JNA's
 * search path. Safe to share between threads. Answers a caller acts on are return
 * values (null for a missing key, false for a refused add or replace, {@link
 * CasResult} for cas); every other status throws {@link StickError}. String keys and
 * values are UTF-8.
 */
public final class Store implements AutoCloseable {
    private static final int SET = 1;
    private static final int ADD = 2;
    private static final int REPLACE = 3;
    private static final int APPEND = 4;
    private static final int PREPEND = 5;
    private static final int CAS = 6;
    private static final int NO_EVICT = 1;
    private static final int NO_CAS = 2;
    /** The first buffer a thread reads into; a larger value grows it once. */
    private static final int FIRST_BUFFER = 4096;

    /** Settings for {@link #open(Options)}; 0 means the default. */
    public static final class Options {
        /** Bytes the items may use (the daemon's -m); default 64 MiB. */
        public long memoryLimit;
        /** The largest item in bytes (the daemon's -I); default 1 MiB. */
        public int itemSizeMax;
        /** This node's id, 1 to 4095, different from every peer's; default random. */
        public int nodeId;
        /** Refuse stores when memory is full instead of evicting (the daemon's -M). */
        public boolean noEvict;
        /** Every CAS unique is 0 (the daemon's -C). */
        public boolean noCas;

        Native.StickOptions toNative() {
            Native.StickOptions options = new Native.StickOptions();
            options.flags = (noEvict ? NO_EVICT : 0) | (noCas ? NO_CAS : 0);
            options.memory_limit = memoryLimit;
            options.item_size_max = itemSizeMax;
            options.node_id = nodeId;
            return options;
        }
    }

    /** A value with its flags, CAS unique and seconds to live (-1: never expires). */
    public record Item(byte[] value, int flags, long cas, long ttl) {}

    /** The store's counters. */
    public record Stats(long currItems, long totalItems, long bytes, long limitMaxbytes, long evictions,
        long reclaimed) {}

    /** A held lock: its token, milliseconds since it was taken, seconds of lease left. */
    public record LockInfo(long token, long ageMs, long ttl) {}

    /** What {@link #cas} did. */
    public enum CasResult { STORED, EXISTS, NOT_FOUND }

    private final ThreadLocal<Memory> buffers = ThreadLocal.withInitial(() -> new Memory(FIRST_BUFFER));
    private volatile Pointer handle;

    private Store(long handle) {
        this.handle = new Pointer(handle);
    }

    /** The library's version, e.g. "0.1.0". */
    public static String version() {
        return Native.stickless_version();
    }

    static void check(int status) {
        if (status != Native.OK) {
            throw new StickError(status, Native.stickless_result_str(status), lastError());
        }
    }

    /** Why the last call on this thread failed, if the library said. */
    private static String lastError() {
        long[] length = new long[1];
        if (Native.stickless_last_error(null, 0, length) != Native.BUFFER_TOO_SMALL) {
            return null;
        }
        byte[] message = new byte[(int) length[0]];
        if (Native.stickless_last_error(message, message.length, length) != Native.OK) {
            return null;
        }
        return new String(message, StandardCharsets.UTF_8);
    }

    private static byte[] utf8(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    /** A store of its own, with the defaults. */
    public static Store open() {
        return open(new Options());
    }

    public static Store open(Options options) {
        long[] out = new long[1];
        check(Native.stickless_open(options.toNative(), out));
        return new Store(out[0]);
    }

    /**
     * The process-wide store called {@code name}, created with {@code options} on first
     * use; it outlives this object until {@link #releaseShared}.
     */
    public static Store openShared(String name, Options options) {
        byte[] bytes = utf8(name);
        long[] out = new long[1];
        check(Native.stickless_open_shared(bytes, bytes.length, options.toNative(), out));
        return new Store(out[0]);
    }

    /** Lets the process-wide store {@code name} go once its handles close; false if none. */
    public static boolean releaseShared(String name) {
        byte[] bytes = utf8(name);
        int status = Native.stickless_release_shared(bytes, bytes.length);
        if (status == Native.NOT_FOUND) {
            return false;
        }
        check(status);
        return true;
    }

    /** Closes this handle; the store stops when its last one closes. Idempotent. */
    @Override
    public synchronized void close() {
        Pointer open = handle;
        if (open != null) {
            handle = null;
            Native.stickless_close(open);
        }
    }

    private Pointer handle() {
        Pointer open = handle;
        if (open == null) {
            throw new IllegalStateException("the store is closed");
        }
        return open;
    }

    private byte[] read(byte[] key, int[] flags, long[] cas, long[] ttl) {
        long[] length = new long[1];
        Memory buffer = buffers.get();
        while (true) {
            int status = Native.stickless_get(handle(), key, key.length, buffer, buffer.size(), length, flags, cas, ttl);
            if (status == Native.BUFFER_TOO_SMALL) {
                buffer = new Memory(Math.max(1, length[0]));
                buffers.set(buffer);
                continue;
            }
            if (status == Native.NOT_FOUND) {
                return null;
            }
            check(status);
            return buffer.getByteArray(0, Math.toIntExact(length[0]));
        }
    }

    /** The value of {@code key}, or null. */
    public byte[] get(byte[] key) {
        return read(key, null, null, null);
    }

    public byte[] get(String key) {
        return get(utf8(key));
    }

    /** The value of {@code key} as UTF-8 text, or null. */
    public String getString(String key) {
        byte[] value = get(key);
        return value == null ? null : new String(value, StandardCharsets.UTF_8);
    }

    /** The {@link Item} at {@code key}, or null. */
    public Item getItem(byte[] key) {
        int[] flags = new int[1];
        long[] cas = new long[1];
        long[] ttl = new long[1];
        byte[] value = read(key, flags, cas, ttl);
        return value == null ? null : new Item(value, flags[0], cas[0], ttl[0]);
    }

    public Item getItem(String key) {
        return getItem(utf8(key));
    }

    private int store(int mode, byte[] key, byte[] value, int flags, int ttl, long cas, long[] outCas) {
        return Native.stickless_store(handle(), mode, key, key.length, value, value.length, flags, ttl, cas, outCas);
    }

    private static boolean stored(int status) {
        if (status == Native.NOT_STORED) {
            return false;
        }
        check(status);
        return true;
    }

    /** Stores {@code value} ({@code ttl} seconds, 0: no expiry); returns its CAS unique. */
    public long set(byte[] key, byte[] value, int flags, int ttl) {
        long[] cas = new long[1];
        check(store(SET, key, value, flags, ttl, 0, cas));
        return cas[0];
    }

    public long set(String key, String value, int flags, int ttl) {
        return set(utf8(key), utf8(value), flags, ttl);
    }

    /** Stores only if {@code key} holds nothing; false if it does. */
    public boolean add(byte[] key, byte[] value, int flags, int ttl) {
        return stored(store(ADD, key, value, flags, ttl, 0, null));
    }

    public boolean add(String key, String value, int flags, int ttl) {
        return add(utf8(key), utf8(value), flags, ttl);
    }

    /** Stores only if {@code key} holds an item; false if not. */
    public boolean replace(byte[] key, byte[] value, int flags, int ttl) {
        return stored(store(REPLACE, key, value, flags, ttl, 0, null));
    }

    public boolean replace(String key, String value, int flags, int ttl) {
        return replace(utf8(key), utf8(value), flags, ttl);
    }

    /** Adds {@code value} after the item's; false if there is no item. */
    public boolean append(byte[] key, byte[] value) {
        return stored(store(APPEND, key, value, 0, 0, 0, null));
    }

    public boolean append(String key, String value) {
        return append(utf8(key), utf8(value));
    }

    /** Adds {@code value} before the item's; false if there is no item. */
    public boolean prepend(byte[] key, byte[] value) {
        return stored(store(PREPEND, key, value, 0, 0, 0, null));
    }

    public boolean prepend(String key, String value) {
        return prepend(utf8(key), utf8(value));
    }

    /** Stores only if the item's CAS unique is still {@code cas}. */
    public CasResult cas(byte[] key, byte[] value, long cas, int flags, int ttl) {
        int status = store(CAS, key, value, flags, ttl, cas, null);
        if (status == Native.EXISTS) {
            return CasResult.EXISTS;
        }
        if (status == Native.NOT_FOUND) {
            return CasResult.NOT_FOUND;
        }
        check(status);
        return CasResult.STORED;
    }

    public CasResult cas(String key, String value, long cas, int flags, int ttl) {
        return cas(utf8(key), utf8(value), cas, flags, ttl);
    }

    private static boolean found(int status) {
        if (status == Native.NOT_FOUND) {
            return false;
        }
        check(status);
        return true;
    }

    /** Deletes {@code key}; false if it held nothing. */
    public boolean delete(byte[] key) {
        return found(Native.stickless_delete(handle(), key, key.length));
    }

    public boolean delete(String key) {
        return delete(utf8(key));
    }

    private static OptionalLong counted(int status, long[] value) {
        if (status == Native.NOT_FOUND) {
            return OptionalLong.empty();
        }
        check(status);
        return OptionalLong.of(value[0]);
    }

    /**
     * The number at {@code key} plus {@code delta}, or empty if missing. Both are
     * unsigned 64-bit (Long.toUnsignedString shows them); the sum wraps at 2^64.
     */
    public OptionalLong incr(String key, long delta) {
        byte[] bytes = utf8(key);
        long[] value = new long[1];
        return counted(Native.stickless_incr(handle(), bytes, bytes.length, delta, value), value);
    }

    /** The number at {@code key} minus {@code delta} (not below 0), or empty if missing. */
    public OptionalLong decr(String key, long delta) {
        byte[] bytes = utf8(key);
        long[] value = new long[1];
        return counted(Native.stickless_decr(handle(), bytes, bytes.length, delta, value), value);
    }

    /** A new time to live for {@code key}; false if it holds nothing. */
    public boolean touch(String key, int ttl) {
        byte[] bytes = utf8(key);
        return found(Native.stickless_touch(handle(), bytes, bytes.length, ttl));
    }

    /**
     * Takes the lease lock {@code key} for {@code lease} seconds with {@code owner} as
     * its value: its token, or empty while another holds it. With a peer linked, the
     * two nodes never both grant it.
     */
    public OptionalLong lock(String key, String owner, int lease) {
        byte[] k = utf8(key);
        byte[] o = utf8(owner);
        long[] token = new long[1];
        int status = Native.stickless_lock(handle(), k, k.length, o, o.length, lease, token);
        if (status == Native.EXISTS) {
            return OptionalLong.empty();
        }
        check(status);
        return OptionalLong.of(token[0]);
    }

    /** Releases the lock {@code key} if {@code token} still holds it; false if not. */
    public boolean unlock(String key, long token) {
        byte[] k = utf8(key);
        int status = Native.stickless_unlock(handle(), k, k.length, token);
        if (status == Native.EXISTS || status == Native.NOT_FOUND) {
            return false;
        }
        check(status);
        return true;
    }

    /** The lock {@code key}, or null if nobody holds it. */
    public LockInfo lockInfo(String key) {
        byte[] k = utf8(key);
        long[] token = new long[1];
        long[] age = new long[1];
        long[] ttl = new long[1];
        int status = Native.stickless_lock_info(handle(), k, k.length, token, age, ttl);
        if (status == Native.NOT_FOUND) {
            return null;
        }
        check(status);
        return new LockInfo(token[0], age[0], ttl[0]);
    }

    /** Invalidates every item, now or in {@code delay} seconds (and on every peer). */
    public void flush(int delay) {
        check(Native.stickless_flush(handle(), delay));
    }

    public Stats stats() {
        Native.StickStats stats = new Native.StickStats();
        check(Native.stickless_stats(handle(), stats));
        return new Stats(stats.curr_items, stats.total_items, stats.bytes, stats.limit_maxbytes, stats.evictions,
            stats.reclaimed);
    }

    /**
     * Starts the memcached listener and replication on this store, with the daemon's
     * own flags, e.g. "-l 127.0.0.1 -p 11211 --peer 10.0.0.2:11212".
     */
    public void serve(String args) {
        byte[] bytes = utf8(args);
        check(Native.stickless_serve(handle(), bytes, bytes.length));
    }

    private OptionalInt listenerPort(int kind) {
        short[] port = new short[1];
        int status = Native.stickless_port(handle(), kind, port);
        if (status == Native.NOT_FOUND) {
            return OptionalInt.empty();
        }
        check(status);
        return OptionalInt.of(Short.toUnsignedInt(port[0]));
    }

    /** The memcached port this store serves on, if it serves. */
    public OptionalInt port() {
        return listenerPort(0);
    }

    /** The port peers connect to, if it listens for them. */
    public OptionalInt replicationPort() {
        return listenerPort(1);
    }
}
