#!/usr/bin/env python3
"""A web farm on one host, end to end: haproxy sends requests round-robin to two PHP
app servers; each keeps its sessions in a mesh of three stickless nodes through
php-memcached, reaching the mesh through an haproxy TCP frontend that prefers one
node and fails over to the others. haproxy checks each node's `GET /health`, which
answers 503 while the node cannot reach a majority of the mesh (its session locks
would be refused there). The nodes link through relays the driver can cut. The
driver logs in, makes a bounded series of requests, kills a stickless node with
SIGKILL, restarts it, later cuts it off from the other two and heals it, and checks
that every request saw the session and that its visit count went up by one each
time.

    examples/webfarm/webfarm.py --stickless target/release/stickless

Needs php-cli with php-memcached, and haproxy. Everything listens on 127.0.0.1,
on free ports; every process it starts is stopped by PID when it ends. Exit status
0 and a last line "ok" when every check holds.
"""

import argparse
import http.cookiejar
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
# Requests in all; when the node is killed and restarted, and cut off and healed.
REQUESTS = 80
KILL_AT = 15
RESTART_AT = 30
CUT_AT = 45
HEAL_AT = 60
NODES = ("a", "b", "c")
# A user's pace: requests 25 ms apart, so the run spans haproxy's health checks
# (every 100 ms) and the restarted node is back in rotation for the last third.
PACE_SECONDS = 0.025
# How long any one thing may take before the run fails.
DEADLINE_SECONDS = 20


_handed_out = set()


def free_port():
    """A free port below Linux's ephemeral range (32768 on): a node killed and
    started again binds its ports once more, and a port the kernel hands out to
    outgoing connections (the peer's dials) could meanwhile be one's local port."""
    while True:
        port = random.randrange(20000, 32000)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def shut_down(*ends):
    """Shuts both ways of each socket, which may be closed already."""
    for end in ends:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Relay:
    """A TCP relay standing for the network between two nodes, which the driver cuts
    (closing what it carries, and any connection made while cut) and restores."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.open = True
        self.carried = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = free_port()
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=1)
            except OSError:
                client.close()
                continue
            with self.lock:
                # Cut while connecting: cut() takes the carried list under this
                # lock once it has closed the relay, so this pair would outlive it.
                if not self.open:
                    shut_down(client, upstream)
                    continue
                self.carried += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        shut_down(source, sink)

    def cut(self):
        self.open = False
        with self.lock:
            carried, self.carried = self.carried, []
        shut_down(*carried)

    def restore(self):
        self.open = True

    def close(self):
        self.cut()
        self.listener.close()


def health(port):
    """The status of a node's GET /health (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def wait_for(what, check):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_listening(port, what):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} never listened on {port}")
            time.sleep(0.02)


class Farm:
    def __init__(self, stickless, workdir):
        self.stickless = stickless
        self.workdir = workdir
        self.processes = {}
        self.cache_ports = {node: free_port() for node in NODES}
        self.repl_ports = {node: free_port() for node in NODES}
        self.metrics_ports = {node: free_port() for node in NODES}
        # Node `x` reaches node `y` through relays[x, y].
        self.relays = {(x, y): Relay(self.repl_ports[y]) for x in NODES for y in NODES if x != y}
        self.app_ports = {"app1": free_port(), "app2": free_port()}
        self.frontends = {"app1": free_port(), "app2": free_port()}
        self.web_port = free_port()

    def start(self, name, argv, **kwargs):
        log = open(os.path.join(self.workdir, f"{name}.log"), "ab")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, **kwargs)

    def stop(self, name, sig=signal.SIGTERM):
        process = self.processes.pop(name)
        process.send_signal(sig)
        process.wait(timeout=DEADLINE_SECONDS)

    def start_node(self, name):
        peers = ",".join(f"127.0.0.1:{self.relays[name, other].port}" for other in NODES if other != name)
        self.start(
            name,
            [
                self.stickless,
                # Run as root, a cache must be told which user to become.
                "-u", "nobody",
                "-l", "127.0.0.1", "-p", str(self.cache_ports[name]), "-t", "2",
                "--node-id", str(NODES.index(name) + 1),
                "--repl-listen", f"127.0.0.1:{self.repl_ports[name]}",
                "--peer", peers,
                # A write's reply means the other nodes have it; a restarted node
                # takes clients only once it holds every session; sessions are
                # never evicted for other items; a node cut off knows it within a
                # second, and /health says so.
                "--repl-sync", "ack",
                "--repl-wait-sync", "10",
                "--protect-prefix", "memc.sess.key.",
                "--repl-timeout", "1",
                "--metrics-listen", f"127.0.0.1:{self.metrics_ports[name]}",
            ],
        )

    def isolate(self, name, cut):
        for (x, y), relay in self.relays.items():
            if name in (x, y):
                relay.cut() if cut else relay.restore()

    def start_all(self):
        for node in NODES:
            self.start_node(node)
        for node in NODES:
            wait_listening(self.cache_ports[node], f"stickless {node}")
        wait_for("every node to reach the majority", lambda: all(health(self.metrics_ports[n]) == 200 for n in NODES))
        for app, preferred in (("app1", "a"), ("app2", "b")):
            self.start(
                app,
                [
                    "php",
                    "-d", "session.save_handler=memcached",
                    "-d", f"session.save_path=127.0.0.1:{self.frontends[app]}",
                    "-d", "memcached.sess_locking=1",
                    "-d", "memcached.sess_binary_protocol=1",
                    "-d", "session.use_strict_mode=1",
                    "-S", f"127.0.0.1:{self.app_ports[app]}",
                    os.path.join(HERE, "app.php"),
                ],
                env={**os.environ, "APP_NAME": app},
            )
        for app in self.app_ports:
            wait_listening(self.app_ports[app], app)
        # haproxy after the app servers: a health check that finds one not yet
        # listening marks it down, and the first requests would get 503s.
        config = os.path.join(self.workdir, "haproxy.cfg")
        with open(config, "w") as out:
            out.write(self.haproxy_config())
        self.start("haproxy", ["haproxy", "-db", "-f", config])
        wait_listening(self.web_port, "haproxy")

    def haproxy_config(self):
        def cache(app, first, *backups):
            # One node preferred, the others backups. The check asks the node's
            # /health: a node that cannot reach a majority (it would refuse the
            # session locks) answers 503 and is taken out like a dead one; a refused
            # connection marks the node down at once and the request goes on.
            def server(node, backup):
                return (
                    f"    server {node} 127.0.0.1:{self.cache_ports[node]} check port {self.metrics_ports[node]}"
                    " inter 100ms fall 1 rise 2 observe layer4 error-limit 1 on-error mark-down"
                    + (" backup" if backup else "") + "\n"
                )

            return (
                f"listen {app}_cache\n"
                f"    bind 127.0.0.1:{self.frontends[app]}\n"
                "    mode tcp\n"
                "    option redispatch\n"
                "    retries 3\n"
                "    option httpchk GET /health\n"
                "    http-check expect status 200\n"
                + server(first, False)
                + "".join(server(node, True) for node in backups)
            )

        return (
            "defaults\n"
            "    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n"
            "frontend web\n"
            f"    bind 127.0.0.1:{self.web_port}\n"
            "    mode http\n"
            "    default_backend apps\n"
            "backend apps\n"
            "    mode http\n"
            "    balance roundrobin\n"
            f"    server app1 127.0.0.1:{self.app_ports['app1']} check inter 500ms\n"
            f"    server app2 127.0.0.1:{self.app_ports['app2']} check inter 500ms\n"
            + cache("app1", "a", "b", "c")
            + cache("app2", "b", "c", "a")
        )

    def stop_all(self):
        for name in list(self.processes):
            self.stop(name, signal.SIGKILL if name in NODES else signal.SIGTERM)
        for relay in self.relays.values():
            relay.close()


def stats(port):
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_SECONDS) as sock:
        sock.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            reply += sock.recv(65536)
    return dict(line.split(" ", 2)[1:] for line in reply.decode().splitlines() if line.startswith("STAT "))


def drive(farm):
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    base = f"http://127.0.0.1:{farm.web_port}"

    def get(path):
        with opener.open(base + path, timeout=DEADLINE_SECONDS) as reply:
            return json.loads(reply.read())

    login = get("/login?user=alice")
    assert login["user"] == "alice" and login["count"] == 0, login
    servers = set()
    last = 0
    for request in range(1, REQUESTS + 1):
        if request == KILL_AT:
            farm.stop("a", signal.SIGKILL)
            print(f"request {request}: killed stickless a", flush=True)
        if request == RESTART_AT:
            farm.start_node("a")
            wait_listening(farm.cache_ports["a"], "stickless a")
            wait_for("stickless a back in the majority", lambda: health(farm.metrics_ports["a"]) == 200)
            print(f"request {request}: restarted stickless a", flush=True)
        if request == CUT_AT:
            # Cut off, a cannot grant session locks: within --repl-timeout its
            # /health answers 503 and haproxy sends app1's sessions to b. (A
            # request in that second waits on a's lock, then fails.)
            farm.isolate("a", True)
            wait_for("stickless a to know it is cut off", lambda: health(farm.metrics_ports["a"]) == 503)
            time.sleep(0.3)  # haproxy's next check (every 100 ms)
            print(f"request {request}: cut stickless a off from b and c (/health 503)", flush=True)
        if request == HEAL_AT:
            farm.isolate("a", False)
            wait_for("stickless a back in the majority", lambda: health(farm.metrics_ports["a"]) == 200)
            print(f"request {request}: healed stickless a (/health 200)", flush=True)
        time.sleep(PACE_SECONDS)
        page = get("/")
        servers.add(page["server"])
        # Every request saw the session, and its count went on by one.
        assert page["user"] == "alice", (request, page)
        assert page["count"] == last + 1, (request, page, last)
        last = page["count"]
    assert servers == {"app1", "app2"}, servers
    # The restarted node took its share again: app1's session reads went to it.
    gets = int(stats(farm.cache_ports["a"])["cmd_get"])
    assert gets > 0, "the restarted node served no session"
    print(f"{REQUESTS} requests over {sorted(servers)}: the session held through the kill, the restart and the cut")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stickless", required=True, help="the stickless binary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="webfarm-") as workdir:
        farm = Farm(os.path.abspath(args.stickless), workdir)
        try:
            farm.start_all()
            drive(farm)
        except BaseException:
            for name in sorted(os.listdir(workdir)):
                if name.endswith(".log"):
                    with open(os.path.join(workdir, name), errors="replace") as log:
                        sys.stderr.write(f"--- {name}\n{log.read()[-2000:]}\n")
            raise
        finally:
            farm.stop_all()
    print("ok")


if __name__ == "__main__":
    main()
