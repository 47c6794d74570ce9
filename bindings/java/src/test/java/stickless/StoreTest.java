package stickless;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.OptionalLong;
import java.util.function.BooleanSupplier;

/**
 * Tests of the Java binding against the real library; exits 0 when every check
 * holds. Needs STICKLESS_LIBRARY, and STICKLESS_TEST_DAEMON and STICKLESS_TEST_PEER (a
 * stickless daemon's memcached and replication addresses) for the embedded node that
 * replicates with it. tests/bindings.rs sets all three.
 */
public final class StoreTest {
    /** How long a replicated write may take to show on the other node. */
    private static final long CONVERGE_MILLIS = 5000;

    private static int failures = 0;

    private static void check(boolean condition, String what) {
        if (!condition) {
            failures++;
            StackTraceElement caller = new Throwable().getStackTrace()[1];
            System.err.println("line " + caller.getLineNumber() + ": " + what);
        }
    }

    private static void same(Object got, Object expected, String what) {
        boolean equal = got instanceof byte[] a && expected instanceof byte[] b ? Arrays.equals(a, b)
            : Objects.equals(got, expected);
        if (!equal) {
            failures++;
            StackTraceElement caller = new Throwable().getStackTrace()[1];
            System.err.println("line " + caller.getLineNumber() + ": " + what + ": got " + got + ", expected "
                + expected);
        }
    }

    /** The status name a call throws, or "none". */
    private static String thrown(Runnable call) {
        try {
            call.run();
        } catch (StickError error) {
            return error.name();
        }
        return "none";
    }

    private static void waitFor(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.currentTimeMillis() + CONVERGE_MILLIS;
        while (!condition.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                check(false, "timed out waiting for " + what);
                return;
            }
            Thread.sleep(10);
        }
    }

    private static int port(String variable) {
        String address = Objects.requireNonNull(System.getenv(variable), variable + " is not set");
        return Integer.parseInt(address.substring(address.lastIndexOf(':') + 1));
    }

    /** One request to a memcached text listener on 127.0.0.1, read up to {@code end}. */
    private static String exchange(int port, String request, String end) {
        try (Socket socket = new Socket("127.0.0.1", port)) {
            socket.setSoTimeout(5000);
            socket.getOutputStream().write(request.getBytes(StandardCharsets.UTF_8));
            InputStream in = socket.getInputStream();
            ByteArrayOutputStream reply = new ByteArrayOutputStream();
            byte[] chunk = new byte[4096];
            while (!reply.toString(StandardCharsets.UTF_8).endsWith(end)) {
                int n = in.read(chunk);
                if (n < 0) {
                    break;
                }
                reply.write(chunk, 0, n);
            }
            return reply.toString(StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "<" + e + ">";
        }
    }

    private static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        check(Store.version().matches("\\d+\\.\\d+\\.\\d+.*"), "version " + Store.version());

        try (Store store = Store.open()) {
            byte[] key = {'k', 0, (byte) 0xff};
            byte[] value = {'v', 0, '\r', '\n'};
            store.set(key, value, 0, 0);
            same(store.get(key), value, "binary key and value");
            same(store.get("missing"), null, "missing key");
            store.set("empty", "", 0, 0);
            same(store.getString("empty"), "", "empty value");
            byte[] big = new byte[256_000];
            for (int i = 0; i < big.length; i++) {
                big[i] = (byte) i;
            }
            store.set(bytes("big"), big, 0, 0);
            same(store.get("big"), big, "a value larger than the first buffer");
            same(store.get("big"), big, "the same value from the grown buffer");

            long cas = store.set("k", "v", 42, 100);
            Store.Item item = store.getItem("k");
            same(item.flags(), 42, "flags");
            same(item.cas(), cas, "cas");
            check(item.ttl() >= 99 && item.ttl() <= 100, "ttl " + item.ttl());
            same(store.getItem("empty").ttl(), -1L, "no expiry");
            same(store.getItem("missing"), null, "missing item");

            same(store.add("a", "b", 0, 0), true, "add new");
            same(store.add("a", "x", 0, 0), false, "add present");
            same(store.append("a", "c"), true, "append");
            same(store.prepend("a", "a"), true, "prepend");
            same(store.getString("a"), "abc", "after append and prepend");
            same(store.replace("a", "new", 0, 0), true, "replace present");
            same(store.replace("none", "x", 0, 0), false, "replace missing");
            same(store.append("none", "x"), false, "append missing");
            same(store.prepend("none", "x"), false, "prepend missing");
            cas = store.set("c", "1", 0, 0);
            same(store.cas("c", "2", cas, 0, 0), Store.CasResult.STORED, "cas current");
            same(store.cas("c", "3", cas, 0, 0), Store.CasResult.EXISTS, "cas stale");
            same(store.getString("c"), "2", "cas kept the winner");
            same(store.cas("gone", "x", cas, 0, 0), Store.CasResult.NOT_FOUND, "cas missing");

            store.set("n", "10", 0, 0);
            same(store.incr("n", 5), OptionalLong.of(15), "incr");
            same(store.decr("n", 20), OptionalLong.of(0), "decr stops at 0");
            same(store.incr("n", -1L), OptionalLong.of(-1L), "incr to 2^64-1");
            same(store.getString("n"), "18446744073709551615", "unsigned 64-bit");
            same(store.incr("none", 1), OptionalLong.empty(), "incr missing");
            same(store.decr("none", 1), OptionalLong.empty(), "decr missing");
            same(store.touch("n", 50), true, "touch");
            long ttl = store.getItem("n").ttl();
            check(ttl >= 49 && ttl <= 50, "touched ttl " + ttl);
            same(store.touch("none", 50), false, "touch missing");
            same(store.delete("n"), true, "delete");
            same(store.delete("n"), false, "delete missing");

            store.set("text", "abc", 0, 0);
            same(thrown(() -> store.incr("text", 1)), "STICKLESS_NON_NUMERIC", "incr on text");
            same(thrown(() -> store.set("", "v", 0, 0)), "STICKLESS_BAD_KEY", "empty key");
            same(thrown(() -> store.set("k".repeat(251), "v", 0, 0)), "STICKLESS_BAD_KEY", "long key");
            same(thrown(() -> store.serve("--no-such-flag")), "STICKLESS_BAD_CONFIG", "bad serve flag");
            try {
                store.serve("--no-such-flag");
            } catch (StickError error) {
                same(error.detail() != null && error.detail().contains("--no-such-flag"), true, "a refused serve says which flag");
            }
            Store.Options small = new Store.Options();
            small.itemSizeMax = 1024;
            try (Store tiny = Store.open(small)) {
                same(thrown(() -> tiny.set(bytes("k"), new byte[2048], 0, 0)), "STICKLESS_VALUE_TOO_LARGE",
                    "value too large");
            }
            same(store.getString("text"), "abc", "nothing lost");

            Store.Stats stats = store.stats();
            same(stats.currItems(), 7L, "curr_items");
            same(stats.limitMaxbytes(), 64L << 20, "limit_maxbytes");
            store.flush(0);
            same(store.get("text"), null, "flushed");
        }

        // Eight threads share the handle.
        try (Store store = Store.open()) {
            List<Thread> threads = new ArrayList<>();
            List<String> errors = java.util.Collections.synchronizedList(new ArrayList<>());
            for (int t = 0; t < 8; t++) {
                int thread = t;
                threads.add(new Thread(() -> {
                    for (int i = 0; i < 2000; i++) {
                        String k = "t" + thread + ":" + i;
                        store.set(k, k, 0, 0);
                        if (!k.equals(store.getString(k))) {
                            errors.add(k);
                        }
                    }
                }));
            }
            threads.forEach(Thread::start);
            for (Thread thread : threads) {
                thread.join();
            }
            same(errors, List.of(), "threads");
            same(store.stats().currItems(), 16_000L, "items from the threads");
        }

        // Lease locks: released only with their token.
        try (Store store = Store.open()) {
            long token = store.lock("lock:s1", "host:1", 30).getAsLong();
            same(store.lock("lock:s1", "host:2", 30), OptionalLong.empty(), "a held lock");
            Store.LockInfo info = store.lockInfo("lock:s1");
            same(info.token(), token, "lock token");
            check(info.ageMs() >= 0 && info.ageMs() < 60000 && info.ttl() > 0 && info.ttl() <= 30, "lock " + info);
            same(store.getString("lock:s1"), "host:1", "lock owner");
            same(store.unlock("lock:s1", token + 1), false, "unlock with another token");
            same(store.unlock("lock:s1", token), true, "unlock");
            same(store.unlock("lock:s1", token), false, "unlock twice");
            same(store.lockInfo("lock:s1"), null, "released lock");
            same(thrown(() -> store.lock("lock:s1", "x", 0)), "STICKLESS_INVALID_ARGUMENT", "lock without a lease");
        }

        Store closed = Store.open();
        closed.close();
        closed.close();
        try {
            closed.get("k");
            check(false, "a closed store answered");
        } catch (IllegalStateException expected) {
            // as documented
        }

        // A shared store outlives its objects.
        try (Store first = Store.openShared("java-test", new Store.Options())) {
            first.set("kept", "yes", 0, 0);
        }
        try (Store second = Store.openShared("java-test", new Store.Options())) {
            same(second.getString("kept"), "yes", "shared store");
        }
        same(Store.releaseShared("java-test"), true, "release");
        same(Store.releaseShared("java-test"), false, "release again");

        // An embedded node that memcached clients reach and that replicates with a daemon.
        int daemon = port("STICKLESS_TEST_DAEMON");
        int peer = port("STICKLESS_TEST_PEER");
        try (Store node = Store.open()) {
            same(node.port().isPresent(), false, "not serving yet");
            node.serve("-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --peer 127.0.0.1:" + peer);
            same(thrown(() -> node.serve("-p 0")), "STICKLESS_ALREADY_SERVING", "serve twice");
            check(node.replicationPort().getAsInt() > 0, "replication port");
            node.set("java:sess", "user|s:3:\"eve\";", 5, 0);
            String expected = "VALUE java:sess 5 15\r\nuser|s:3:\"eve\";\r\nEND\r\n";
            waitFor("the write through the ABI on the daemon",
                () -> exchange(daemon, "get java:sess\r\n", "END\r\n").equals(expected));
            same(exchange(daemon, "set java:back 0 0 4\r\nback\r\n", "\r\n"), "STORED\r\n", "set on the daemon");
            waitFor("the daemon's write in this JVM", () -> "back".equals(node.getString("java:back")));
            same(exchange(node.port().getAsInt(), "get java:sess\r\n", "END\r\n"), expected, "the node's own listener");
        }

        if (failures > 0) {
            System.err.println(failures + " checks failed");
            System.exit(1);
        }
        System.out.println("ok");
    }
}
