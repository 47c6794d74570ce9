// A session state service on Mono: it embeds a stickless node that replicates with
// the stickless daemon at PEER, so the sessions it holds are the daemon's too, and
// another service (bindings/java/examples/StateService.java) takes over a session
// where this one left it.
//
//   mono StateService.exe PEER SESSION    counts a visit; prints the count

using System;
using Stickless;

public static class StateService
{
    // How long the node waits at start for the daemon to send it every session.
    private const int WaitSyncSeconds = 10;
    // A session's lifetime (ASP.NET's default session timeout: 20 minutes).
    private const uint SessionTtl = 1200;

    public static int Main(string[] args)
    {
        string peer = args[0];
        string key = "state:" + args[1];
        using (var node = Store.Open())
        {
            // Ack mode: a write returns once the daemon holds it, so the next service
            // finds it even if this one exits at once.
            node.Serve("-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --repl-sync ack --repl-wait-sync "
                + WaitSyncSeconds + " --peer " + peer);
            string state = node.GetString(key);
            int count = state == null ? 0 : int.Parse(state.Substring("count=".Length));
            count++;
            node.Set(key, "count=" + count, 0, SessionTtl);
            Console.WriteLine("mono " + count);
        }
        return 0;
    }
}
