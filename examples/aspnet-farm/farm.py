#!/usr/bin/env python3
"""An ASP.NET web farm's state server, replaced by a stickless pair, end to end on
one host. Two web servers (played by this script, which sends what System.Web's
OutOfProcSessionStateStore sends) reach the pair through haproxy TCP frontends,
each preferring one node and failing over to the other. The script starts a new
session, then serves a bounded series of page requests round-robin across the two
web servers, each page locking the session, reading it and saving it with the lock's
cookie. It kills a node with SIGKILL midway, goes on, restarts it, goes on, and checks
that every page saw the session and that its visit count never went backwards.

    examples/aspnet-farm/farm.py --stickless target/release/stickless

Needs haproxy. Everything listens on 127.0.0.1, on free ports; every process it
starts is stopped by PID when it ends. Exit status 0 and a last line "ok" when
every check holds.
"""

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

# Page requests in all, and when the node is killed and restarted.
REQUESTS = 60
KILL_AT = 20
RESTART_AT = 40
# A user's pace: pages 25 ms apart, so the run spans haproxy's health checks (every
# 100 ms) and the restarted node is back in rotation for the last third.
PACE_SECONDS = 0.025
# How long any one thing may take before the run fails (System.Web's
# stateNetworkTimeout is 10 s).
DEADLINE_SECONDS = 20
# The session key as the client builds it: UrlEncode(appId + "(" + hash + ")/" + id).
SESSION = "/%2fLM%2fW3SVC%2f1%2fROOT%2fshop(q7YxKmB0sLz%3d)%2fk2j4mq0abcdefghijklmnopq"


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


def exchange(port, request):
    """Sends one request on a new connection (the client reconnects whenever a
    pooled socket fails, and haproxy routes each connection) and returns the status,
    the headers and the body of the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_SECONDS) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response: {data!r}")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in a body")
            body += chunk
        return status, headers, body[:length]


def get_exclusive(port):
    return exchange(port, f"GET {SESSION} HTTP/1.1\r\nHost: state\r\nExclusive: acquire\r\n\r\n".encode())


def put(port, body, cookie, extra_flags=0):
    head = (
        f"PUT {SESSION} HTTP/1.1\r\nHost: state\r\nTimeout: 20\r\nLockCookie: {cookie}\r\n"
        f"ExtraFlags: {extra_flags}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return exchange(port, head.encode() + body)


class Farm:
    def __init__(self, stickless, workdir):
        self.stickless = stickless
        self.workdir = workdir
        self.processes = {}
        self.state_ports = {"a": free_port(), "b": free_port()}
        self.cache_ports = {"a": free_port(), "b": free_port()}
        self.repl_ports = {"a": free_port(), "b": free_port()}
        # Each web server's stateConnectionString points at its own frontend.
        self.frontends = {"web1": free_port(), "web2": free_port()}

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, f"{name}.log"), "ab")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

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
                # Run as root, a cache must be told which user to become.
                "-u", "nobody",
                "-l", "127.0.0.1", "-p", str(self.cache_ports[name]), "-t", "2",
                "--aspnet-listen", f"127.0.0.1:{self.state_ports[name]}",
                "--repl-listen", f"127.0.0.1:{self.repl_ports[name]}",
                "--peer", f"127.0.0.1:{self.repl_ports[other]}",
                # A save is answered once the other node has it; a restarted node
                # takes requests only once it holds every session; sessions are
                # never evicted for other items.
                "--repl-sync", "ack",
                "--repl-wait-sync", "10",
                "--protect-prefix", "aspnet:",
            ],
        )

    def start_all(self):
        self.start_node("a")
        self.start_node("b")
        for node in ("a", "b"):
            wait_listening(self.state_ports[node], f"stickless {node}")
        config = os.path.join(self.workdir, "haproxy.cfg")
        with open(config, "w") as out:
            out.write(self.haproxy_config())
        self.start("haproxy", ["haproxy", "-db", "-f", config])
        for web in self.frontends:
            wait_listening(self.frontends[web], f"haproxy for {web}")

    def haproxy_config(self):
        def frontend(web, first, second):
            # One node preferred, the other a backup; a refused connection marks the
            # node down at once and the connection goes to the backup.
            return (
                f"listen {web}_state\n"
                f"    bind 127.0.0.1:{self.frontends[web]}\n"
                "    mode tcp\n"
                "    option redispatch\n"
                "    retries 3\n"
                f"    server {first} 127.0.0.1:{self.state_ports[first]} check inter 100ms fall 1 rise 2"
                " observe layer4 error-limit 1 on-error mark-down\n"
                f"    server {second} 127.0.0.1:{self.state_ports[second]} check inter 100ms fall 1 rise 2 backup\n"
            )

        return (
            "defaults\n"
            "    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n"
            + frontend("web1", "a", "b")
            + frontend("web2", "b", "a")
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
    web1 = farm.frontends["web1"]
    # A new session, as the client starts one: no item yet, then an uninitialized
    # one, then the first lock says so with ActionFlags: 1.
    status, _, _ = get_exclusive(web1)
    assert status == 404, status
    status, _, _ = put(web1, b"\x14\x00\x00\x00\x00\x00\xff", cookie=0, extra_flags=1)
    assert status == 200, status
    status, headers, _ = get_exclusive(web1)
    assert status == 200 and headers.get("ActionFlags") == "1", (status, headers)
    status, _, _ = put(web1, b"count=0", cookie=headers["LockCookie"])
    assert status == 200, status
    last = 0
    webs = sorted(farm.frontends)
    for request in range(1, REQUESTS + 1):
        if request == KILL_AT:
            farm.stop("a", signal.SIGKILL)
            print(f"page {request}: killed stickless a", flush=True)
        if request == RESTART_AT:
            farm.start_node("a")
            wait_listening(farm.state_ports["a"], "stickless a")
            print(f"page {request}: restarted stickless a", flush=True)
        time.sleep(PACE_SECONDS)
        # Round-robin: consecutive pages on different web servers.
        port = farm.frontends[webs[request % len(webs)]]
        status, headers, body = get_exclusive(port)
        assert status == 200, (request, status, headers)
        assert "ActionFlags" not in headers, (request, headers)
        count = int(body.decode().split("=")[1])
        # Every page saw the session, and its count went on by one.
        assert count == last, (request, count, last)
        last = count + 1
        status, _, _ = put(port, f"count={last}".encode(), cookie=headers["LockCookie"])
        assert status == 200, (request, status)
    # The restarted node took requests again: web1's frontend prefers it.
    served = int(stats(farm.cache_ports["a"]).get("aspnet_acquire", "0"))
    assert served > 0, "the restarted node served no page"
    print(f"{REQUESTS} pages over {webs}: the session and its lock held through the kill and the restart")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stickless", required=True, help="the stickless binary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aspnet-farm-") as workdir:
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
