"""Tests of the Python binding against the real library.

Needs STICKLESS_LIBRARY (the cdylib), and for the replication test a stickless daemon:
STICKLESS_TEST_DAEMON (its memcached address) and STICKLESS_TEST_PEER (its replication
address). tests/bindings.rs sets all three.
"""

import os
import socket
import threading
import time
import unittest

from stickless import ABI_VERSION, Item, Store, StickError, version

# How long a replicated write may take to show on the other node.
CONVERGE_SECONDS = 5.0


def wait_for(what, check):
    deadline = time.monotonic() + CONVERGE_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


def address(variable):
    host, port = os.environ[variable].rsplit(":", 1)
    return host, int(port)


class Wire:
    """A memcached text-protocol connection that reads whole replies."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=5)
        self.pending = b""

    def request(self, data, end):
        self.sock.sendall(data)
        while not self.pending.endswith(end):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed after %r" % self.pending)
            self.pending += chunk
        reply, self.pending = self.pending, b""
        return reply

    def close(self):
        self.sock.close()


class StoreTest(unittest.TestCase):
    def setUp(self):
        self.store = Store()

    def tearDown(self):
        self.store.close()

    def test_version_and_abi(self):
        self.assertEqual(ABI_VERSION, 1)
        self.assertRegex(version(), r"^\d+\.\d+\.\d+")

    def test_set_then_get_round_trips_bytes_and_text(self):
        self.store.set(b"k\x00\xff", b"v\x00\r\n")
        self.assertEqual(self.store.get(b"k\x00\xff"), b"v\x00\r\n")
        self.store.set("sess:é", "text")
        self.assertEqual(self.store.get("sess:é".encode()), b"text")
        self.assertIsNone(self.store.get(b"missing"))
        self.store.set(b"empty", b"")
        self.assertEqual(self.store.get(b"empty"), b"")

    def test_values_larger_than_the_first_buffer(self):
        big = bytes(range(256)) * 1000
        self.store.set(b"big", big)
        self.assertEqual(self.store.get(b"big"), big)
        self.assertEqual(self.store.get(b"big"), big)

    def test_get_item_reports_flags_cas_and_ttl(self):
        cas = self.store.set(b"k", b"v", flags=42, ttl=100)
        item = self.store.get_item(b"k")
        self.assertEqual(item.value, b"v")
        self.assertEqual(item.flags, 42)
        self.assertEqual(item.cas, cas)
        self.assertTrue(99 <= item.ttl <= 100, item.ttl)
        self.store.set(b"forever", b"v")
        self.assertEqual(self.store.get_item(b"forever").ttl, None)
        self.assertIsNone(self.store.get_item(b"missing"))
        self.assertIsInstance(item, Item)

    def test_add_replace_append_prepend_answer_with_booleans(self):
        self.assertTrue(self.store.add(b"k", b"b"))
        self.assertFalse(self.store.add(b"k", b"x"))
        self.assertTrue(self.store.append(b"k", b"c"))
        self.assertTrue(self.store.prepend(b"k", b"a"))
        self.assertEqual(self.store.get(b"k"), b"abc")
        self.assertTrue(self.store.replace(b"k", b"new"))
        self.assertFalse(self.store.replace(b"none", b"x"))
        self.assertFalse(self.store.append(b"none", b"x"))
        self.assertFalse(self.store.prepend(b"none", b"x"))
        self.assertIsNone(self.store.get(b"none"))

    def test_cas_is_true_false_or_none(self):
        cas = self.store.set(b"k", b"1")
        self.assertTrue(self.store.cas(b"k", b"2", cas))
        self.assertFalse(self.store.cas(b"k", b"3", cas))
        self.assertEqual(self.store.get(b"k"), b"2")
        self.assertIsNone(self.store.cas(b"gone", b"x", cas))

    def test_delete_touch_incr_decr(self):
        self.assertFalse(self.store.delete(b"k"))
        self.store.set(b"k", b"10")
        self.assertEqual(self.store.incr(b"k", 5), 15)
        self.assertEqual(self.store.decr(b"k", 20), 0)
        self.assertEqual(self.store.incr(b"k", 2**64 - 1), 2**64 - 1)
        self.assertEqual(self.store.incr(b"k"), 0)
        self.assertIsNone(self.store.incr(b"none"))
        self.assertIsNone(self.store.decr(b"none"))
        self.assertTrue(self.store.touch(b"k", 50))
        self.assertTrue(49 <= self.store.get_item(b"k").ttl <= 50)
        self.assertFalse(self.store.touch(b"none", 50))
        self.assertTrue(self.store.delete(b"k"))
        self.assertIsNone(self.store.get(b"k"))

    def test_errors_raise_with_their_status(self):
        self.store.set(b"text", b"abc")
        with self.assertRaises(StickError) as raised:
            self.store.incr(b"text")
        self.assertEqual((raised.exception.status, raised.exception.name), (5, "STICKLESS_NON_NUMERIC"))
        for key in (b"", b"k" * 251):
            with self.assertRaises(StickError) as raised:
                self.store.set(key, b"v")
            self.assertEqual(raised.exception.name, "STICKLESS_BAD_KEY")
        self.store.set(b"k" * 250, b"longest key")
        self.assertEqual(self.store.get(b"k" * 250), b"longest key")
        with Store(item_size_max=1024) as small:
            with self.assertRaises(StickError) as raised:
                small.set(b"k", b"x" * 2048)
            self.assertEqual(raised.exception.name, "STICKLESS_VALUE_TOO_LARGE")
        with self.assertRaises(StickError) as raised:
            self.store.serve("--no-such-flag")
        self.assertEqual(raised.exception.name, "STICKLESS_BAD_CONFIG")
        # The library says which argument it refused.
        self.assertIn("--no-such-flag", raised.exception.detail)
        self.assertIn("--no-such-flag", str(raised.exception))
        # Nothing was lost on the way.
        self.assertEqual(self.store.get(b"text"), b"abc")

    def test_lease_locks_are_released_only_by_their_token(self):
        token = self.store.lock(b"lock:s1", b"host:1", 30)
        self.assertIsNotNone(token)
        self.assertIsNone(self.store.lock(b"lock:s1", b"host:2", 30))
        info = self.store.lock_info(b"lock:s1")
        self.assertEqual(info.token, token)
        self.assertTrue(0 <= info.age_ms < 60000 and 0 < info.ttl <= 30, info)
        self.assertEqual(self.store.get(b"lock:s1"), b"host:1")
        self.assertFalse(self.store.unlock(b"lock:s1", token + 1))
        self.assertTrue(self.store.unlock(b"lock:s1", token))
        self.assertFalse(self.store.unlock(b"lock:s1", token))
        self.assertIsNone(self.store.lock_info(b"lock:s1"))
        with self.assertRaises(StickError) as raised:
            self.store.lock(b"lock:s1", b"x", 0)
        self.assertEqual(raised.exception.name, "STICKLESS_INVALID_ARGUMENT")

    def test_flush_and_stats(self):
        for i in range(10):
            self.store.set(b"k%d" % i, b"v")
        stats = self.store.stats()
        self.assertEqual(stats["curr_items"], 10)
        self.assertEqual(stats["total_items"], 10)
        self.assertEqual(stats["limit_maxbytes"], 64 << 20)
        self.store.flush()
        self.assertIsNone(self.store.get(b"k0"))

    def test_closed_store_refuses_calls(self):
        store = Store()
        store.close()
        store.close()
        with self.assertRaises(ValueError):
            store.get(b"k")

    def test_shared_store_outlives_its_objects(self):
        with Store(shared="python-test") as first:
            first.set(b"k", b"kept")
        with Store(shared="python-test") as second:
            self.assertEqual(second.get(b"k"), b"kept")
        self.assertTrue(Store.release_shared("python-test"))
        self.assertFalse(Store.release_shared("python-test"))
        with Store(shared="python-test") as third:
            self.assertIsNone(third.get(b"k"))
        Store.release_shared("python-test")

    def test_threads_share_one_store(self):
        errors = []

        def work(thread):
            try:
                for i in range(2000):
                    key = b"t%d:%d" % (thread, i)
                    self.store.set(key, key * 3)
                    if self.store.get(key) != key * 3:
                        errors.append(key)
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(self.store.stats()["curr_items"], 8000)

    def test_forked_child_gets_a_clear_error(self):
        self.store.set(b"k", b"v")
        pid = os.fork()
        if pid == 0:
            try:
                self.store.get(b"k")
                code = 1
            except StickError as error:
                code = 0 if error.name == "STICKLESS_FORKED" else 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(self.store.get(b"k"), b"v")


class EmbeddedNodeTest(unittest.TestCase):
    """A node in this process, reachable by memcached clients and replicating with a
    daemon: what a Python worker embeds."""

    def test_serves_the_wire_and_replicates_with_a_daemon(self):
        daemon = Wire(address("STICKLESS_TEST_DAEMON"))
        host, peer_port = address("STICKLESS_TEST_PEER")
        with Store() as store:
            self.assertIsNone(store.port)
            store.serve(["-l", "127.0.0.1", "-p", "0", "--repl-listen", "127.0.0.1:0", "--peer", "%s:%d" % (host, peer_port)])
            self.assertGreater(store.replication_port, 0)
            with self.assertRaises(StickError) as raised:
                store.serve("-p 0")
            self.assertEqual(raised.exception.name, "STICKLESS_ALREADY_SERVING")
            store.set(b"py:sess", b"user|s:3:\"bob\";", flags=7)
            wait_for(
                "the write through the ABI on the daemon",
                lambda: daemon.request(b"get py:sess\r\n", b"END\r\n")
                == b"VALUE py:sess 7 15\r\nuser|s:3:\"bob\";\r\nEND\r\n",
            )
            self.assertEqual(daemon.request(b"set py:back 0 0 4\r\nback\r\n", b"\r\n"), b"STORED\r\n")
            wait_for("the daemon's write through the ABI", lambda: store.get(b"py:back") == b"back")

            local = Wire(("127.0.0.1", store.port))
            self.assertEqual(
                local.request(b"get py:back py:sess\r\n", b"END\r\n"),
                b"VALUE py:back 0 4\r\nback\r\nVALUE py:sess 7 15\r\nuser|s:3:\"bob\";\r\nEND\r\n",
            )
            local.close()
            daemon.close()


if __name__ == "__main__":
    unittest.main()
