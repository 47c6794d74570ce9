"""pymemcache's whole Client API against the server argv[1] (host:port), through
the plain, pooled and hashing clients, with its serializer for Python objects.
Prints one line per check and exits 1 on the first failure."""
import sys

from pymemcache import serde
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheIllegalInputError, MemcacheServerError

host, port = sys.argv[1].rsplit(":", 1)
server = (host, int(port))


def check(what, ok):
    if not ok:
        print("FAIL", what, file=sys.stderr)
        sys.exit(1)
    print("ok", what)


def raises(error, call):
    try:
        call()
    except error:
        return True
    return False


def exercise(name, c):
    c.flush_all()
    check(f"{name} set/get", c.set("k", b"v") and c.get("k") == b"v")
    check(f"{name} get default", c.get("absent", default=b"d") == b"d")
    check(f"{name} add", c.add("k", b"x", noreply=False) is False and c.add("n", b"1", noreply=False) is True)
    check(f"{name} replace", c.replace("n", b"2", noreply=False) and not c.replace("absent", b"2", noreply=False))
    check(f"{name} append/prepend", c.append("k", b">", noreply=False) and c.prepend("k", b"<", noreply=False))
    check(f"{name} value after concat", c.get("k") == b"<v>")
    value, cas = c.gets("k")
    check(f"{name} gets", value == b"<v>" and int(cas) > 0)
    check(f"{name} cas", c.cas("k", b"new", cas) is True and c.cas("k", b"old", cas) is False)
    check(f"{name} cas missing", c.cas("absent", b"x", cas) is None)
    check(f"{name} set_many", c.set_many({"a": b"1", "b": b"2", "c": b"3"}) == [])
    check(f"{name} get_many", c.get_many(["a", "b", "c", "absent"]) == {"a": b"1", "b": b"2", "c": b"3"})
    many = c.gets_many(["a", "b"])
    check(f"{name} gets_many", set(many) == {"a", "b"} and all(int(cas) > 0 for _, cas in many.values()))
    check(f"{name} incr/decr", c.incr("a", 9) == 10 and c.decr("a", 20) == 0 and c.incr("absent", 1) is None)
    check(f"{name} incr large", c.set("big", b"18446744073709551615") and c.incr("big", 1) == 0)
    check(f"{name} touch", c.touch("b", 100, noreply=False) and not c.touch("absent", 100, noreply=False))
    check(f"{name} delete", c.delete("c", noreply=False) and not c.delete("c", noreply=False))
    check(f"{name} delete_many", c.delete_many(["a", "b"]) and c.get_many(["a", "b"]) == {})
    check(f"{name} noreply set", c.set("quiet", b"q", noreply=True) and c.get("quiet") == b"q")
    check(f"{name} expire", c.set("ttl", b"t", expire=100) and c.get("ttl") == b"t")
    check(f"{name} large value", c.set("large", b"x" * 500_000) and len(c.get("large")) == 500_000)
    check(f"{name} too large", raises(MemcacheServerError, lambda: c.set("huge", b"x" * 2_000_000, noreply=False)))
    check(f"{name} key too long", raises(MemcacheIllegalInputError, lambda: c.get("k" * 251)))
    c.flush_all(noreply=False)
    check(f"{name} flush_all", c.get("k") is None and c.get("large") is None)


plain = Client(server, serde=serde.pickle_serde, connect_timeout=5, timeout=5)
exercise("plain", plain)
check("objects", plain.set("obj", {"a": [1, 2]}) and plain.get("obj") == {"a": [1, 2]})
check("ints", plain.set("int", 7) and plain.get("int") == 7)
stats = plain.stats()
check("stats", stats[b"pid"] > 0 and b"curr_items" in stats)
check("stats settings", plain.stats("settings")[b"maxconns"] > 0)
check("version", plain.version().startswith(b"1.6"))
check("cache_memlimit", plain.cache_memlimit(64))
plain.quit()
check("reconnect after quit", plain.get("int") == 7)
plain.close()

exercise("pooled", PooledClient(server, max_pool_size=4, connect_timeout=5, timeout=5))
exercise("hash", HashClient([server], connect_timeout=5, timeout=5))
if "--shutdown" in sys.argv[2:]:
    # The server closes the connection without a reply, as memcached does.
    Client(server, connect_timeout=5, timeout=5).shutdown()
    check("shutdown", True)
print("done")
