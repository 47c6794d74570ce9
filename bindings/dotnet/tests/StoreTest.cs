// Tests of the .NET binding against the real library, run with Mono; exits 0 when
// every check holds. Needs libstickless.so.1 on LD_LIBRARY_PATH, and
// STICKLESS_TEST_DAEMON and STICKLESS_TEST_PEER (a stickless daemon's memcached and
// replication addresses) for the embedded node that replicates with it.
// tests/bindings.rs sets them.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using Stickless;

public static class StoreTest
{
    // How long a replicated write may take to show on the other node.
    private static readonly TimeSpan Converge = TimeSpan.FromSeconds(5);

    private static int failures;

    private static void Check(bool condition, string what, [CallerLineNumber] int line = 0)
    {
        if (!condition)
        {
            failures++;
            Console.Error.WriteLine("line " + line + ": " + what);
        }
    }

    private static void Same<T>(T got, T expected, string what, [CallerLineNumber] int line = 0)
    {
        if (!EqualityComparer<T>.Default.Equals(got, expected))
        {
            failures++;
            Console.Error.WriteLine("line " + line + ": " + what + ": got " + got + ", expected " + expected);
        }
    }

    // The status name a call throws, or "none".
    private static string Thrown(Action call)
    {
        try
        {
            call();
        }
        catch (StickException error)
        {
            return error.Name;
        }
        return "none";
    }

    private static void WaitFor(string what, Func<bool> condition, [CallerLineNumber] int line = 0)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Converge)
            {
                Check(false, "timed out waiting for " + what, line);
                return;
            }
            Thread.Sleep(10);
        }
    }

    private static int PortOf(string variable)
    {
        string address = Environment.GetEnvironmentVariable(variable);
        if (address == null) throw new InvalidOperationException(variable + " is not set");
        return int.Parse(address.Substring(address.LastIndexOf(':') + 1));
    }

    // One request to a memcached text listener on 127.0.0.1, read up to end.
    private static string Exchange(int port, string request, string end)
    {
        using (var client = new TcpClient("127.0.0.1", port))
        {
            var stream = client.GetStream();
            stream.ReadTimeout = 5000;
            byte[] bytes = Encoding.UTF8.GetBytes(request);
            stream.Write(bytes, 0, bytes.Length);
            var reply = new StringBuilder();
            var chunk = new byte[4096];
            while (!reply.ToString().EndsWith(end, StringComparison.Ordinal))
            {
                int n = stream.Read(chunk, 0, chunk.Length);
                if (n <= 0) break;
                reply.Append(Encoding.UTF8.GetString(chunk, 0, n));
            }
            return reply.ToString();
        }
    }

    public static int Main()
    {
        Check(System.Text.RegularExpressions.Regex.IsMatch(Store.Version, @"^\d+\.\d+\.\d+"), "version " + Store.Version);

        using (var store = Store.Open(new Options { MemoryLimit = 16 << 20 }))
        {
            byte[] key = { (byte)'k', 0, 0xff };
            byte[] value = { (byte)'v', 0, (byte)'\r', (byte)'\n' };
            store.Set(key, value);
            Same(Convert.ToBase64String(store.Get(key)), Convert.ToBase64String(value), "binary key and value");
            Same(store.Get("missing"), null, "missing key");
            store.Set("empty", "");
            Same(store.GetString("empty"), "", "empty value");
            var big = new byte[256000];
            for (int i = 0; i < big.Length; i++) big[i] = (byte)i;
            store.Set(Encoding.UTF8.GetBytes("big"), big);
            Same(Convert.ToBase64String(store.Get("big")), Convert.ToBase64String(big), "a value larger than the first buffer");

            ulong cas = store.Set("k", "v", 42, 100);
            Item item = store.GetItem("k");
            Same(item.Flags, 42u, "flags");
            Same(item.Cas, cas, "cas");
            Check(item.Ttl >= 99 && item.Ttl <= 100, "ttl " + item.Ttl);
            Same(store.GetItem("empty").Ttl, -1L, "no expiry");
            Same(store.GetItem("missing"), null, "missing item");

            Same(store.Add("a", "b"), true, "add new");
            Same(store.Add("a", "x"), false, "add present");
            Same(store.Append("a", "c"), true, "append");
            Same(store.Prepend("a", "a"), true, "prepend");
            Same(store.GetString("a"), "abc", "after append and prepend");
            Same(store.Replace("a", "new"), true, "replace present");
            Same(store.Replace("none", "x"), false, "replace missing");
            Same(store.Append("none", "x"), false, "append missing");
            Same(store.Prepend("none", "x"), false, "prepend missing");
            cas = store.Set("c", "1");
            Same(store.Cas("c", "2", cas), CasResult.Stored, "cas current");
            Same(store.Cas("c", "3", cas), CasResult.Exists, "cas stale");
            Same(store.GetString("c"), "2", "cas kept the winner");
            Same(store.Cas("gone", "x", cas), CasResult.NotFound, "cas missing");

            store.Set("n", "10");
            Same(store.Incr("n", 5), (ulong?)15, "incr");
            Same(store.Decr("n", 20), (ulong?)0, "decr stops at 0");
            Same(store.Incr("n", ulong.MaxValue), (ulong?)ulong.MaxValue, "incr to 2^64-1");
            Same(store.Incr("none"), null, "incr missing");
            Same(store.Decr("none"), null, "decr missing");
            Same(store.Touch("n", 50), true, "touch");
            long ttl = store.GetItem("n").Ttl;
            Check(ttl >= 49 && ttl <= 50, "touched ttl " + ttl);
            Same(store.Touch("none", 50), false, "touch missing");
            Same(store.Delete("n"), true, "delete");
            Same(store.Delete("n"), false, "delete missing");

            store.Set("text", "abc");
            Same(Thrown(() => store.Incr("text")), "STICKLESS_NON_NUMERIC", "incr on text");
            Same(Thrown(() => store.Set("", "v")), "STICKLESS_BAD_KEY", "empty key");
            Same(Thrown(() => store.Set(new string('k', 251), "v")), "STICKLESS_BAD_KEY", "long key");
            Same(Thrown(() => store.Serve("--no-such-flag")), "STICKLESS_BAD_CONFIG", "bad serve flag");
            try
            {
                store.Serve("--no-such-flag");
            }
            catch (StickException error)
            {
                Same(error.Detail != null && error.Detail.Contains("--no-such-flag"), true, "a refused serve says which flag");
            }
            using (var tiny = Store.Open(new Options { ItemSizeMax = 1024 }))
            {
                Same(Thrown(() => tiny.Set(Encoding.UTF8.GetBytes("k"), new byte[2048])), "STICKLESS_VALUE_TOO_LARGE",
                    "value too large");
            }
            Same(store.GetString("text"), "abc", "nothing lost");

            Stats stats = store.GetStats();
            Same(stats.CurrItems, 7ul, "curr_items");
            Same(stats.LimitMaxbytes, 16ul << 20, "limit_maxbytes");
            store.Flush();
            Same(store.Get("text"), null, "flushed");
        }

        // Lease locks: released only with their token.
        using (var store = Store.Open())
        {
            ulong token = store.Lock("lock:s1", "host:1", 30).Value;
            Same(store.Lock("lock:s1", "host:2", 30), null, "a held lock");
            LockInfo info = store.GetLockInfo("lock:s1");
            Same(info.Token, token, "lock token");
            Check(info.AgeMs < 60000 && info.Ttl > 0 && info.Ttl <= 30, "lock info");
            Same(store.Unlock("lock:s1", token + 1), false, "unlock with another token");
            Same(store.Unlock("lock:s1", token), true, "unlock");
            Same(store.Unlock("lock:s1", token), false, "unlock twice");
            Same(store.GetLockInfo("lock:s1"), null, "released lock");
            Same(Thrown(() => store.Lock("lock:s1", "x", 0)), "STICKLESS_INVALID_ARGUMENT", "lock without a lease");
        }

        var closed = Store.Open();
        closed.Dispose();
        closed.Dispose();
        try
        {
            closed.Get("k");
            Check(false, "a closed store answered");
        }
        catch (ObjectDisposedException)
        {
        }

        // Eight threads share one handle.
        using (var store = Store.Open())
        {
            var errors = new List<string>();
            var threads = new List<Thread>();
            for (int t = 0; t < 8; t++)
            {
                int thread = t;
                threads.Add(new Thread(() =>
                {
                    for (int i = 0; i < 2000; i++)
                    {
                        string k = "t" + thread + ":" + i;
                        store.Set(k, k);
                        if (store.GetString(k) != k) lock (errors) errors.Add(k);
                    }
                }));
            }
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Same(errors.Count, 0, "threads");
            Same(store.GetStats().CurrItems, 16000ul, "items from the threads");
        }

        // A shared store outlives its objects.
        using (var first = Store.OpenShared("dotnet-test")) first.Set("kept", "yes");
        using (var second = Store.OpenShared("dotnet-test")) Same(second.GetString("kept"), "yes", "shared store");
        Same(Store.ReleaseShared("dotnet-test"), true, "release");
        Same(Store.ReleaseShared("dotnet-test"), false, "release again");

        // An embedded node that memcached clients reach and that replicates with a daemon.
        int daemon = PortOf("STICKLESS_TEST_DAEMON");
        int peer = PortOf("STICKLESS_TEST_PEER");
        using (var node = Store.Open())
        {
            Same(node.Port, null, "not serving yet");
            node.Serve("-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --peer 127.0.0.1:" + peer);
            Same(Thrown(() => node.Serve("-p 0")), "STICKLESS_ALREADY_SERVING", "serve twice");
            Check(node.ReplicationPort > 0, "replication port");
            node.Set("cs:sess", "user|s:5:\"frank\";", 9);
            string expected = "VALUE cs:sess 9 17\r\nuser|s:5:\"frank\";\r\nEND\r\n";
            WaitFor("the write through the ABI on the daemon", () => Exchange(daemon, "get cs:sess\r\n", "END\r\n") == expected);
            Same(Exchange(daemon, "set cs:back 0 0 4\r\nback\r\n", "\r\n"), "STORED\r\n", "set on the daemon");
            WaitFor("the daemon's write in this process", () => node.GetString("cs:back") == "back");
            Same(Exchange(node.Port.Value, "get cs:sess\r\n", "END\r\n"), expected, "the node's own listener");
        }

        if (failures > 0)
        {
            Console.Error.WriteLine(failures + " checks failed");
            return 1;
        }
        Console.WriteLine("ok");
        return 0;
    }
}
