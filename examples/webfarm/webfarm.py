#!/usr/bin/env python3
"""A web farm on one host, end to end: haproxy sends requests round-robin to two PHP
app servers; each keeps its sessions in a stickless pair through php-memcached,
reaching the pair through an haproxy TCP frontend that prefers one node and fails
over to the other. The driver logs in, makes a bounded series of requests, kills a
stickless node with SIGKILL midway, goes on, restarts it, goes on, and checks that
every request saw the session and that its visit count never went backwards.

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
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
# Requests in all, and when the node is killed and restarted.
REQUESTS = 60
KILL_AT = 20
RESTART_AT = 40
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
        self.cache_ports = {"a": free_port(), "b": free_port()}
        self.repl_ports = {"a": free_port(), "b": free_port()}
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
        other = "b" if name == "a" else "a"
        self.start(
            name,
            [
                self.stickless,
                "-l", "127.0.0.1", "-p", str(self.cache_ports[name]), "-t", "2",
                "--repl-listen", f"127.0.0.1:{self.repl_ports[name]}",
                "--peer", f"127.0.0.1:{self.repl_ports[other]}",
                # A write's reply means the other node has it; a restarted node
                # takes clients only once it holds every session; sessions are
                # never evicted for other items.
                "--repl-sync", "ack",
                "--repl-wait-sync", "10",
                "--protect-prefix", "memc.sess.key.",
            ],
        )

    def start_all(self):
        self.start_node("a")
        self.start_node("b")
        wait_listening(self.cache_ports["a"], "stickless a")
        wait_listening(self.cache_ports["b"], "stickless b")
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
        def cache(app, first, second):
            # One node preferred, the other a backup; a refused connection marks the
            # node down at once and the request goes to the backup.
            return (
                f"listen {app}_cache\n"
                f"    bind 127.0.0.1:{self.frontends[app]}\n"
                "    mode tcp\n"
                "    option redispatch\n"
                "    retries 3\n"
                f"    server {first} 127.0.0.1:{self.cache_ports[first]} check inter 100ms fall 1 rise 2"
                " observe layer4 error-limit 1 on-error mark-down\n"
                f"    server {second} 127.0.0.1:{self.cache_ports[second]} check inter 100ms fall 1 rise 2 backup\n"
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
            + cache("app1", "a", "b")
            + cache("app2", "b", "a")
        )

    def stop_all(self):
        for name in list(self.processes):
            self.stop(name, signal.SIGKILL if name in ("a", "b") else signal.SIGTERM)


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
            print(f"request {request}: restarted stickless a", flush=True)
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
    print(f"{REQUESTS} requests over {sorted(servers)}: the session held through the kill and the restart")


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
