// An embedded stickless node for .NET, through the library's C ABI (P/Invoke with a
// SafeHandle). Checked with Mono (mcs and mono, as Debian ships them); written to the
// subset of C# that both Mono and .NET compile.
//
//     using (var store = Store.Open()) {
//         store.Set("sess:abc", "data", 0, 1440);
//         byte[] value = store.Get("sess:abc");           // null when missing
//         store.Serve("-l 127.0.0.1 -p 11211 --peer 10.0.0.2:11212");
//     }
//
// The library is loaded as libstickless.so.1 from the loader's path (LD_LIBRARY_PATH
// or ldconfig's). Answers a caller acts on are return values (null for a missing key,
// false for a refused add or replace, CasResult for Cas); every other status throws
// StickException. String keys and values are UTF-8.

using System;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace Stickless
{
    /// <summary>A status that is an error: bad input, a closed or forked handle, no memory...</summary>
    public sealed class StickException : Exception
    {
        public int Status { get; private set; }
        public string Name { get; private set; }
        /// <summary>Why, when the library said (a refused Serve argument); null otherwise.</summary>
        public string Detail { get; private set; }

        internal StickException(int status, string name, string detail)
            : base(name + " (" + status + ")" + (detail == null ? "" : ": " + detail))
        {
            Status = status;
            Name = name;
            Detail = detail;
        }
    }

    /// <summary>What Store.Cas did.</summary>
    public enum CasResult { Stored, Exists, NotFound }

    /// <summary>A value with its flags, CAS unique and seconds to live (-1: never expires).</summary>
    public sealed class Item
    {
        public byte[] Value { get; internal set; }
        public uint Flags { get; internal set; }
        public ulong Cas { get; internal set; }
        public long Ttl { get; internal set; }
    }

    /// <summary>A held lock: its token, milliseconds since it was taken, seconds of lease left.</summary>
    public sealed class LockInfo
    {
        public ulong Token { get; internal set; }
        public ulong AgeMs { get; internal set; }
        public long Ttl { get; internal set; }
    }

    /// <summary>The store's counters.</summary>
    public struct Stats
    {
        public ulong CurrItems, TotalItems, Bytes, LimitMaxbytes, Evictions, Reclaimed;
    }

    /// <summary>Settings for Store.Open; 0 means the default.</summary>
    public sealed class Options
    {
        /// <summary>Bytes the items may use (the daemon's -m); default 64 MiB.</summary>
        public ulong MemoryLimit;
        /// <summary>The largest item in bytes (the daemon's -I); default 1 MiB.</summary>
        public uint ItemSizeMax;
        /// <summary>This node's id, 1 to 4095, different from every peer's; default random.</summary>
        public uint NodeId;
        /// <summary>Refuse stores when memory is full instead of evicting (the daemon's -M).</summary>
        public bool NoEvict;
        /// <summary>Every CAS unique is 0 (the daemon's -C).</summary>
        public bool NoCas;

        internal NativeMethods.StickOptions ToNative()
        {
            return new NativeMethods.StickOptions
            {
                struct_size = (uint)Marshal.SizeOf(typeof(NativeMethods.StickOptions)),
                flags = (NoEvict ? 1u : 0u) | (NoCas ? 2u : 0u),
                memory_limit = MemoryLimit,
                item_size_max = ItemSizeMax,
                node_id = NodeId,
            };
        }
    }

    /// <summary>An open handle: closed exactly once, by Dispose or by the finalizer.</summary>
    public sealed class StoreHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public StoreHandle() : base(true) { }

        protected override bool ReleaseHandle()
        {
            NativeMethods.stickless_close(handle);
            return true;
        }
    }

    /// <summary>include/stickless.h as P/Invoke declarations.</summary>
    internal static class NativeMethods
    {
        private const string Library = "libstickless.so.1";

        internal const int OK = 0, NOT_FOUND = 1, EXISTS = 2, NOT_STORED = 3, BUFFER_TOO_SMALL = 4;
        internal const int SET = 1, ADD = 2, REPLACE = 3, APPEND = 4, PREPEND = 5, CAS = 6;

        [StructLayout(LayoutKind.Sequential)]
        internal struct StickOptions
        {
            public uint struct_size, flags;
            public ulong memory_limit;
            public uint item_size_max, node_id;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct StickStats
        {
            public uint struct_size, reserved;
            public ulong curr_items, total_items, bytes, limit_maxbytes, evictions, reclaimed;
        }

        // The strings these return are static: IntPtr keeps the marshaller from freeing them.
        [DllImport(Library)] internal static extern IntPtr stickless_version();
        [DllImport(Library)] internal static extern uint stickless_abi_version();
        [DllImport(Library)] internal static extern IntPtr stickless_result_str(int status);
        [DllImport(Library)] internal static extern int stickless_last_error(byte[] buf, UIntPtr bufLen, out UIntPtr outLen);

        [DllImport(Library)]
        internal static extern int stickless_open(ref StickOptions options, out StoreHandle handle);
        [DllImport(Library)]
        internal static extern int stickless_open_shared(byte[] name, UIntPtr nameLen, ref StickOptions options,
            out StoreHandle handle);
        [DllImport(Library)] internal static extern int stickless_release_shared(byte[] name, UIntPtr nameLen);
        [DllImport(Library)] internal static extern void stickless_close(IntPtr handle);

        [DllImport(Library)]
        internal static extern int stickless_get(StoreHandle handle, byte[] key, UIntPtr keyLen, byte[] buf,
            UIntPtr bufLen, out UIntPtr outLen, out uint outFlags, out ulong outCas, out long outTtl);
        [DllImport(Library)]
        internal static extern int stickless_store(StoreHandle handle, int mode, byte[] key, UIntPtr keyLen,
            byte[] value, UIntPtr valueLen, uint flags, uint ttl, ulong cas, out ulong outCas);
        [DllImport(Library)]
        internal static extern int stickless_delete(StoreHandle handle, byte[] key, UIntPtr keyLen);
        [DllImport(Library)]
        internal static extern int stickless_incr(StoreHandle handle, byte[] key, UIntPtr keyLen, ulong delta,
            out ulong outValue);
        [DllImport(Library)]
        internal static extern int stickless_decr(StoreHandle handle, byte[] key, UIntPtr keyLen, ulong delta,
            out ulong outValue);
        [DllImport(Library)]
        internal static extern int stickless_touch(StoreHandle handle, byte[] key, UIntPtr keyLen, uint ttl);
        [DllImport(Library)]
        internal static extern int stickless_lock(StoreHandle handle, byte[] key, UIntPtr keyLen, byte[] owner,
            UIntPtr ownerLen, uint lease, out ulong outToken);
        [DllImport(Library)]
        internal static extern int stickless_unlock(StoreHandle handle, byte[] key, UIntPtr keyLen, ulong token);
        [DllImport(Library)]
        internal static extern int stickless_lock_info(StoreHandle handle, byte[] key, UIntPtr keyLen,
            out ulong outToken, out ulong outAgeMs, out long outTtl);
        [DllImport(Library)] internal static extern int stickless_flush(StoreHandle handle, uint delay);
        [DllImport(Library)] internal static extern int stickless_stats(StoreHandle handle, ref StickStats stats);
        [DllImport(Library)]
        internal static extern int stickless_serve(StoreHandle handle, byte[] args, UIntPtr argsLen);
        [DllImport(Library)]
        internal static extern int stickless_port(StoreHandle handle, int kind, out ushort port);
    }

    /// <summary>
    /// An embedded stickless node: a memcached-compatible store in this process, which can
    /// also serve memcached clients and replicate with stickless daemons (Serve). Safe to
    /// share between threads.
    /// </summary>
    public sealed class Store : IDisposable
    {
        /// <summary>The ABI this binding was written against (stickless_abi_version()).</summary>
        public const uint AbiVersion = 1;
        /// <summary>The first buffer a thread reads into; a larger value grows it once.</summary>
        private const int FirstBuffer = 4096;

        [ThreadStatic] private static byte[] buffer;
        private readonly StoreHandle handle;

        static Store()
        {
            uint abi = NativeMethods.stickless_abi_version();
            if (abi != AbiVersion)
            {
                throw new DllNotFoundException("libstickless speaks ABI " + abi + ", this binding ABI " + AbiVersion);
            }
        }

        private Store(StoreHandle handle)
        {
            this.handle = handle;
        }

        /// <summary>The library's version, e.g. "0.1.0".</summary>
        public static string Version
        {
            get { return Marshal.PtrToStringAnsi(NativeMethods.stickless_version()); }
        }

        /// <summary>Why the last call on this thread failed, if the library said.</summary>
        private static string LastError()
        {
            UIntPtr length;
            if (NativeMethods.stickless_last_error(null, UIntPtr.Zero, out length) != NativeMethods.BUFFER_TOO_SMALL)
            {
                return null;
            }
            byte[] message = new byte[(int)length.ToUInt64()];
            if (NativeMethods.stickless_last_error(message, (UIntPtr)message.Length, out length) != NativeMethods.OK)
            {
                return null;
            }
            return Encoding.UTF8.GetString(message);
        }

        internal static void Check(int status)
        {
            if (status != NativeMethods.OK)
            {
                throw new StickException(status, Marshal.PtrToStringAnsi(NativeMethods.stickless_result_str(status)), LastError());
            }
        }

        private static byte[] Utf8(string text)
        {
            return Encoding.UTF8.GetBytes(text);
        }

        private static UIntPtr Len(byte[] bytes)
        {
            return (UIntPtr)(ulong)bytes.Length;
        }

        /// <summary>A store of its own.</summary>
        public static Store Open(Options options = null)
        {
            var native = (options ?? new Options()).ToNative();
            StoreHandle handle;
            Check(NativeMethods.stickless_open(ref native, out handle));
            return new Store(handle);
        }

        /// <summary>
        /// The process-wide store called name, created with options on first use; it
        /// outlives this object until ReleaseShared.
        /// </summary>
        public static Store OpenShared(string name, Options options = null)
        {
            var native = (options ?? new Options()).ToNative();
            byte[] bytes = Utf8(name);
            StoreHandle handle;
            Check(NativeMethods.stickless_open_shared(bytes, Len(bytes), ref native, out handle));
            return new Store(handle);
        }

        /// <summary>Lets the process-wide store name go once its handles close; false if none.</summary>
        public static bool ReleaseShared(string name)
        {
            byte[] bytes = Utf8(name);
            return Found(NativeMethods.stickless_release_shared(bytes, Len(bytes)));
        }

        /// <summary>Closes this handle; the store stops when its last one closes.</summary>
        public void Dispose()
        {
            handle.Dispose();
        }

        private StoreHandle Handle
        {
            get
            {
                if (handle.IsClosed) throw new ObjectDisposedException("Store");
                return handle;
            }
        }

        private byte[] Read(byte[] key, out uint flags, out ulong cas, out long ttl)
        {
            if (buffer == null) buffer = new byte[FirstBuffer];
            while (true)
            {
                UIntPtr length;
                int status = NativeMethods.stickless_get(Handle, key, Len(key), buffer, Len(buffer), out length,
                    out flags, out cas, out ttl);
                if (status == NativeMethods.BUFFER_TOO_SMALL)
                {
                    buffer = new byte[checked((int)(ulong)length)];
                    continue;
                }
                if (status == NativeMethods.NOT_FOUND) return null;
                Check(status);
                var value = new byte[(int)(ulong)length];
                Buffer.BlockCopy(buffer, 0, value, 0, value.Length);
                return value;
            }
        }

        /// <summary>The value of key, or null.</summary>
        public byte[] Get(byte[] key)
        {
            uint flags;
            ulong cas;
            long ttl;
            return Read(key, out flags, out cas, out ttl);
        }

        public byte[] Get(string key) { return Get(Utf8(key)); }

        /// <summary>The value of key as UTF-8 text, or null.</summary>
        public string GetString(string key)
        {
            byte[] value = Get(key);
            return value == null ? null : Encoding.UTF8.GetString(value);
        }

        /// <summary>The item at key, or null.</summary>
        public Item GetItem(string key)
        {
            uint flags;
            ulong cas;
            long ttl;
            byte[] value = Read(Utf8(key), out flags, out cas, out ttl);
            return value == null ? null : new Item { Value = value, Flags = flags, Cas = cas, Ttl = ttl };
        }

        private int Store_(int mode, byte[] key, byte[] value, uint flags, uint ttl, ulong cas, out ulong outCas)
        {
            return NativeMethods.stickless_store(Handle, mode, key, Len(key), value, Len(value), flags, ttl, cas,
                out outCas);
        }

        private int Store_(int mode, string key, string value, uint flags, uint ttl)
        {
            ulong cas;
            return Store_(mode, Utf8(key), Utf8(value), flags, ttl, 0, out cas);
        }

        private static bool Stored(int status)
        {
            if (status == NativeMethods.NOT_STORED) return false;
            Check(status);
            return true;
        }

        private static bool Found(int status)
        {
            if (status == NativeMethods.NOT_FOUND) return false;
            Check(status);
            return true;
        }

        /// <summary>Stores value (ttl seconds, 0: no expiry); returns its CAS unique.</summary>
        public ulong Set(byte[] key, byte[] value, uint flags = 0, uint ttl = 0)
        {
            ulong cas;
            Check(Store_(NativeMethods.SET, key, value, flags, ttl, 0, out cas));
            return cas;
        }

        public ulong Set(string key, string value, uint flags = 0, uint ttl = 0)
        {
            return Set(Utf8(key), Utf8(value), flags, ttl);
        }

        /// <summary>Stores only if key holds nothing; false if it does.</summary>
        public bool Add(string key, string value, uint flags = 0, uint ttl = 0)
        {
            return Stored(Store_(NativeMethods.ADD, key, value, flags, ttl));
        }

        /// <summary>Stores only if key holds an item; false if not.</summary>
        public bool Replace(string key, string value, uint flags = 0, uint ttl = 0)
        {
            return Stored(Store_(NativeMethods.REPLACE, key, value, flags, ttl));
        }

        /// <summary>Adds value after the item's; false if there is no item.</summary>
        public bool Append(string key, string value)
        {
            return Stored(Store_(NativeMethods.APPEND, key, value, 0, 0));
        }

        /// <summary>Adds value before the item's; false if there is no item.</summary>
        public bool Prepend(string key, string value)
        {
            return Stored(Store_(NativeMethods.PREPEND, key, value, 0, 0));
        }

        /// <summary>Stores only if the item's CAS unique is still cas.</summary>
        public CasResult Cas(string key, string value, ulong cas, uint flags = 0, uint ttl = 0)
        {
            ulong stored;
            int status = Store_(NativeMethods.CAS, Utf8(key), Utf8(value), flags, ttl, cas, out stored);
            if (status == NativeMethods.EXISTS) return CasResult.Exists;
            if (status == NativeMethods.NOT_FOUND) return CasResult.NotFound;
            Check(status);
            return CasResult.Stored;
        }

        /// <summary>Deletes key; false if it held nothing.</summary>
        public bool Delete(string key)
        {
            byte[] bytes = Utf8(key);
            return Found(NativeMethods.stickless_delete(Handle, bytes, Len(bytes)));
        }

        /// <summary>The number at key plus delta (wrapping at 2^64), or null if missing.</summary>
        public ulong? Incr(string key, ulong delta = 1)
        {
            byte[] bytes = Utf8(key);
            ulong value;
            return Found(NativeMethods.stickless_incr(Handle, bytes, Len(bytes), delta, out value)) ? value : (ulong?)null;
        }

        /// <summary>The number at key minus delta (not below 0), or null if missing.</summary>
        public ulong? Decr(string key, ulong delta = 1)
        {
            byte[] bytes = Utf8(key);
            ulong value;
            return Found(NativeMethods.stickless_decr(Handle, bytes, Len(bytes), delta, out value)) ? value : (ulong?)null;
        }

        /// <summary>A new time to live for key; false if it holds nothing.</summary>
        public bool Touch(string key, uint ttl)
        {
            byte[] bytes = Utf8(key);
            return Found(NativeMethods.stickless_touch(Handle, bytes, Len(bytes), ttl));
        }

        /// <summary>
        /// Takes the lease lock key for lease seconds with owner as its value: its token, or
        /// null while another holds it. With a peer linked, the two nodes never both grant it.
        /// </summary>
        public ulong? Lock(string key, string owner, uint lease)
        {
            byte[] k = Utf8(key), o = Utf8(owner);
            ulong token;
            int status = NativeMethods.stickless_lock(Handle, k, Len(k), o, Len(o), lease, out token);
            if (status == NativeMethods.EXISTS) return null;
            Check(status);
            return token;
        }

        /// <summary>Releases the lock key if token still holds it; false if not.</summary>
        public bool Unlock(string key, ulong token)
        {
            byte[] k = Utf8(key);
            int status = NativeMethods.stickless_unlock(Handle, k, Len(k), token);
            if (status == NativeMethods.EXISTS || status == NativeMethods.NOT_FOUND) return false;
            Check(status);
            return true;
        }

        /// <summary>The lock key, or null if nobody holds it.</summary>
        public LockInfo GetLockInfo(string key)
        {
            byte[] k = Utf8(key);
            ulong token, age;
            long ttl;
            int status = NativeMethods.stickless_lock_info(Handle, k, Len(k), out token, out age, out ttl);
            if (status == NativeMethods.NOT_FOUND) return null;
            Check(status);
            return new LockInfo { Token = token, AgeMs = age, Ttl = ttl };
        }

        /// <summary>Invalidates every item, now or in delay seconds (and on every peer).</summary>
        public void Flush(uint delay = 0)
        {
            Check(NativeMethods.stickless_flush(Handle, delay));
        }

        public Stats GetStats()
        {
            var stats = new NativeMethods.StickStats { struct_size = (uint)Marshal.SizeOf(typeof(NativeMethods.StickStats)) };
            Check(NativeMethods.stickless_stats(Handle, ref stats));
            return new Stats
            {
                CurrItems = stats.curr_items, TotalItems = stats.total_items, Bytes = stats.bytes,
                LimitMaxbytes = stats.limit_maxbytes, Evictions = stats.evictions, Reclaimed = stats.reclaimed,
            };
        }

        /// <summary>
        /// Starts the memcached listener and replication on this store, with the daemon's own
        /// flags, e.g. "-l 127.0.0.1 -p 11211 --peer 10.0.0.2:11212".
        /// </summary>
        public void Serve(string args)
        {
            byte[] bytes = Utf8(args);
            Check(NativeMethods.stickless_serve(Handle, bytes, Len(bytes)));
        }

        private int? ListenerPort(int kind)
        {
            ushort port;
            return Found(NativeMethods.stickless_port(Handle, kind, out port)) ? port : (int?)null;
        }

        /// <summary>The memcached port this store serves on, or null.</summary>
        public int? Port { get { return ListenerPort(0); } }

        /// <summary>The port peers connect to, or null.</summary>
        public int? ReplicationPort { get { return ListenerPort(1); } }
    }
}
