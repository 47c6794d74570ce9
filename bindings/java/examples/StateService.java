import java.nio.charset.StandardCharsets;
import stickless.Store;

/**
 * A session state service in a JVM: it embeds a stickless node that replicates with
 * the stickless daemon at PEER, so the sessions it holds are the daemon's too, and
 * another service (bindings/dotnet/examples/StateService.cs) takes over a session
 * where this one left it.
 *
 * <pre>
 *   java -cp jna.jar:classes StateService PEER SESSION   counts a visit; prints the count
 * </pre>
 */
public final class StateService {
    /** How long the node waits at start for the daemon to send it every session. */
    private static final int WAIT_SYNC_SECONDS = 10;
    /** A session's lifetime (PHP's default session.gc_maxlifetime). */
    private static final int SESSION_TTL = 1440;

    public static void main(String[] args) {
        String peer = args[0];
        String key = "state:" + args[1];
        try (Store node = Store.open()) {
            // Ack mode: a write returns once the daemon holds it, so the next service
            // finds it even if this one exits at once.
            node.serve("-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --repl-sync ack --repl-wait-sync "
                + WAIT_SYNC_SECONDS + " --peer " + peer);
            String state = node.getString(key);
            int count = state == null ? 0 : Integer.parseInt(state.substring("count=".length()));
            count++;
            node.set(key.getBytes(StandardCharsets.UTF_8), ("count=" + count).getBytes(StandardCharsets.UTF_8), 0,
                SESSION_TTL);
            System.out.println("java " + count);
        }
    }
}
