import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.concurrent.CyclicBarrier;
import stickless.Store;

/**
 * Times gets and sets of 100-byte values from Java: in-process through the JNA
 * binding (bindings/java), or over loopback with a plain socket; run by
 * benches/embedded/main.rs with the same arguments and output as get_set.c:
 *
 * <pre>
 *   GetSet embedded KEYS OPS THREADS
 *   GetSet wire PORT KEYS OPS
 * </pre>
 *
 * Each measured loop runs once first to let the JIT compile it.
 */
public final class GetSet {
    /** Row (a) of BENCHMARKS.md: memtier's keys, 100-byte values. */
    private static final byte[] VALUE = new byte[100];

    static {
        Arrays.fill(VALUE, (byte) 'x');
    }

    /** The same fixed scatter of key indexes as benches/micro.rs. */
    private static int scattered(long i, int keys) {
        return (int) Long.remainderUnsigned((i * 0x9E3779B97F4A7C15L) >>> 7, keys);
    }

    private static byte[][] keys(int count) {
        byte[][] keys = new byte[count][];
        for (int n = 0; n < count; n++) {
            keys[n] = ("memtier-" + n).getBytes(StandardCharsets.US_ASCII);
        }
        return keys;
    }

    private static void fail(String what) {
        System.err.println("GetSet: " + what);
        System.exit(1);
    }

    private static void print(double getNs, double setNs, double getMops, double setMops) {
        System.out.printf("get_ns %.1f set_ns %.1f get_mops %.3f set_mops %.3f%n", getNs, setNs, getMops, setMops);
    }

    private static double timeGets(Store store, byte[][] keys, long ops, long offset) {
        long begin = System.nanoTime();
        for (long i = 0; i < ops; i++) {
            byte[] value = store.get(keys[scattered(i + offset, keys.length)]);
            if (value == null || value.length != VALUE.length) {
                fail("a get missed");
            }
        }
        return (double) (System.nanoTime() - begin) / ops;
    }

    private static double timeSets(Store store, byte[][] keys, long ops, long offset) {
        long begin = System.nanoTime();
        for (long i = 0; i < ops; i++) {
            store.set(keys[scattered(i + offset, keys.length)], VALUE, 0, 0);
        }
        return (double) (System.nanoTime() - begin) / ops;
    }

    private static void embedded(int keyCount, long ops, int threads) throws Exception {
        Store.Options options = new Store.Options();
        options.memoryLimit = 1024L << 20;
        try (Store store = Store.open(options)) {
            byte[][] keys = keys(keyCount);
            for (byte[] key : keys) {
                store.set(key, VALUE, 0, 0);
            }
            double[] getNs = new double[threads];
            double[] setNs = new double[threads];
            CyclicBarrier start = new CyclicBarrier(threads);
            Thread[] workers = new Thread[threads];
            for (int t = 0; t < threads; t++) {
                int thread = t;
                long offset = 7919L * t;
                workers[t] = new Thread(() -> {
                    try {
                        timeGets(store, keys, ops, offset);
                        start.await();
                        getNs[thread] = timeGets(store, keys, ops, offset);
                        timeSets(store, keys, ops, offset);
                        start.await();
                        setNs[thread] = timeSets(store, keys, ops, offset);
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                });
                workers[t].start();
            }
            double get = 0, set = 0, getRate = 0, setRate = 0;
            for (int t = 0; t < threads; t++) {
                workers[t].join();
                get += getNs[t] / threads;
                set += setNs[t] / threads;
                getRate += 1e3 / getNs[t];
                setRate += 1e3 / setNs[t];
            }
            print(get, set, getRate, setRate);
        }
    }

    /** Sends a request and reads until the reply ends with {@code end}; the reply's length. */
    private static int roundTrip(OutputStream out, InputStream in, byte[] request, byte[] end, byte[] reply)
        throws IOException {
        out.write(request);
        int used = 0;
        while (true) {
            int n = in.read(reply, used, reply.length - used);
            if (n <= 0) {
                fail("read");
            }
            used += n;
            if (used >= end.length && Arrays.equals(reply, used - end.length, used, end, 0, end.length)) {
                return used;
            }
        }
    }

    private static void wire(int port, int keyCount, long ops) throws IOException {
        byte[][] keys = keys(keyCount);
        byte[] end = "END\r\n".getBytes(StandardCharsets.US_ASCII);
        byte[] stored = "STORED\r\n".getBytes(StandardCharsets.US_ASCII);
        byte[] reply = new byte[512];
        String value = new String(VALUE, StandardCharsets.US_ASCII);
        try (Socket socket = new Socket("127.0.0.1", port)) {
            socket.setTcpNoDelay(true);
            OutputStream out = socket.getOutputStream();
            InputStream in = socket.getInputStream();
            for (byte[] key : keys) {
                String k = new String(key, StandardCharsets.US_ASCII);
                out.write(("set " + k + " 0 0 100 noreply\r\n" + value + "\r\n").getBytes(StandardCharsets.US_ASCII));
            }
            roundTrip(out, in, "mn\r\n".getBytes(StandardCharsets.US_ASCII), "MN\r\n".getBytes(StandardCharsets.US_ASCII),
                reply);
            double getNs = 0, setNs = 0;
            for (int pass = 0; pass < 2; pass++) {
                long begin = System.nanoTime();
                for (long i = 0; i < ops; i++) {
                    String k = new String(keys[scattered(i, keyCount)], StandardCharsets.US_ASCII);
                    int got = roundTrip(out, in, ("get " + k + "\r\n").getBytes(StandardCharsets.US_ASCII), end, reply);
                    if (got != "VALUE  0 100\r\n".length() + k.length() + VALUE.length + 7) {
                        fail("a get missed");
                    }
                }
                long middle = System.nanoTime();
                for (long i = 0; i < ops; i++) {
                    String k = new String(keys[scattered(i, keyCount)], StandardCharsets.US_ASCII);
                    roundTrip(out, in, ("set " + k + " 0 0 100\r\n" + value + "\r\n").getBytes(StandardCharsets.US_ASCII),
                        stored, reply);
                }
                getNs = (double) (middle - begin) / ops;
                setNs = (double) (System.nanoTime() - middle) / ops;
            }
            print(getNs, setNs, 1e3 / getNs, 1e3 / setNs);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 4 && args[0].equals("embedded")) {
            embedded(Integer.parseInt(args[1]), Long.parseLong(args[2]), Integer.parseInt(args[3]));
        } else if (args.length == 4 && args[0].equals("wire")) {
            wire(Integer.parseInt(args[1]), Integer.parseInt(args[2]), Long.parseLong(args[3]));
        } else {
            fail("usage: GetSet embedded KEYS OPS THREADS | GetSet wire PORT KEYS OPS");
        }
    }
}
