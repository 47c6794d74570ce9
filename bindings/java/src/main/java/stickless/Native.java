package stickless;

import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;
import com.sun.jna.Structure;

/**
 * The C ABI of include/stickless.h, bound by JNA's direct mapping (the fastest it
 * has). size_t is a Java long: LP64 platforms only. Out-parameters are one-element
 * arrays, which JNA passes as pointers (null: NULL). A get reads into native memory:
 * a byte[] buffer would be copied both ways whole on every call.
 */
final class Native {
    static final int OK = 0;
    static final int NOT_FOUND = 1;
    static final int EXISTS = 2;
    static final int NOT_STORED = 3;
    static final int BUFFER_TOO_SMALL = 4;

    /** The ABI this binding was written against (stickless_abi_version()). */
    static final int ABI_VERSION = 1;

    static {
        String path = System.getenv("STICKLESS_LIBRARY");
        com.sun.jna.Native.register(Native.class, NativeLibrary.getInstance(path != null ? path : "stickless"));
        int abi = stickless_abi_version();
        if (abi != ABI_VERSION) {
            throw new UnsatisfiedLinkError("libstickless speaks ABI " + abi + ", this binding ABI " + ABI_VERSION);
        }
    }

    private Native() {}

    @Structure.FieldOrder({"struct_size", "flags", "memory_limit", "item_size_max", "node_id"})
    public static final class StickOptions extends Structure {
        public int struct_size;
        public int flags;
        public long memory_limit;
        public int item_size_max;
        public int node_id;

        StickOptions() {
            struct_size = size();
        }
    }

    @Structure.FieldOrder({"struct_size", "reserved", "curr_items", "total_items", "bytes", "limit_maxbytes",
        "evictions", "reclaimed"})
    public static final class StickStats extends Structure {
        public int struct_size;
        public int reserved;
        public long curr_items;
        public long total_items;
        public long bytes;
        public long limit_maxbytes;
        public long evictions;
        public long reclaimed;

        StickStats() {
            struct_size = size();
        }
    }

    static native String stickless_version();

    static native int stickless_abi_version();

    static native String stickless_result_str(int status);

    static native int stickless_last_error(byte[] buf, long bufLen, long[] outLen);

    static native int stickless_open(StickOptions options, long[] out);

    static native int stickless_open_shared(byte[] name, long nameLen, StickOptions options, long[] out);

    static native int stickless_release_shared(byte[] name, long nameLen);

    static native void stickless_close(Pointer handle);

    static native int stickless_get(Pointer handle, byte[] key, long keyLen, Pointer buf, long bufLen, long[] outLen,
        int[] outFlags, long[] outCas, long[] outTtl);

    static native int stickless_store(Pointer handle, int mode, byte[] key, long keyLen, byte[] value, long valueLen,
        int flags, int ttl, long cas, long[] outCas);

    static native int stickless_set(Pointer handle, byte[] key, long keyLen, byte[] value, long valueLen, int flags,
        int ttl);

    static native int stickless_add(Pointer handle, byte[] key, long keyLen, byte[] value, long valueLen, int flags,
        int ttl);

    static native int stickless_replace(Pointer handle, byte[] key, long keyLen, byte[] value, long valueLen,
        int flags, int ttl);

    static native int stickless_append(Pointer handle, byte[] key, long keyLen, byte[] value, long valueLen);

    static native int stickless_prepend(Pointer handle, byte[] key, long keyLen, byte[] value, long valueLen);

    static native int stickless_cas(Pointer handle, byte[] key, long keyLen, byte[] value, long valueLen, int flags,
        int ttl, long cas, long[] outCas);

    static native int stickless_delete(Pointer handle, byte[] key, long keyLen);

    static native int stickless_incr(Pointer handle, byte[] key, long keyLen, long delta, long[] outValue);

    static native int stickless_decr(Pointer handle, byte[] key, long keyLen, long delta, long[] outValue);

    static native int stickless_touch(Pointer handle, byte[] key, long keyLen, int ttl);

    static native int stickless_lock(Pointer handle, byte[] key, long keyLen, byte[] owner, long ownerLen, int lease,
        long[] outToken);

    static native int stickless_unlock(Pointer handle, byte[] key, long keyLen, long token);

    static native int stickless_lock_info(Pointer handle, byte[] key, long keyLen, long[] outToken, long[] outAgeMs,
        long[] outTtl);

    static native int stickless_flush(Pointer handle, int delay);

    static native int stickless_stats(Pointer handle, StickStats out);

    static native int stickless_serve(Pointer handle, byte[] args, long argsLen);

    static native int stickless_port(Pointer handle, int kind, short[] outPort);
}
