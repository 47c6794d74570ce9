"""An embedded stickless node, through the library's C ABI (cffi, ABI mode).

    from stickless import Store
    with Store(memory_limit=64 << 20) as store:
        store.set(b"sess:abc", b"data", ttl=1440)
        store.get(b"sess:abc")                       # b"data"
        store.serve("-l 127.0.0.1 -p 11211 --peer 10.0.0.2:11212")

The library is found at ``$STICKLESS_LIBRARY``, else as ``libstickless.so.1`` on the
loader's path. Answers a caller acts on come back as values: a missing key is
``None``, a refused ``add``/``replace`` is ``False``, a ``cas`` that lost is
``False``. Every other status raises :class:`StickError`.
"""

import os
import threading
from collections import namedtuple

from cffi import FFI

__all__ = ["Store", "StickError", "Item", "LockInfo", "ABI_VERSION"]

# The ABI this module was written against (stickless_abi_version()).
ABI_VERSION = 1

_ffi = FFI()
with open(os.path.join(os.path.dirname(__file__), "stickless.ffi.h")) as _header:
    _ffi.cdef(_header.read())
_lib = _ffi.dlopen(os.environ.get("STICKLESS_LIBRARY") or "libstickless.so.1")
if _lib.stickless_abi_version() != ABI_VERSION:
    raise ImportError(
        "libstickless speaks ABI %d, this module ABI %d" % (_lib.stickless_abi_version(), ABI_VERSION)
    )

_OK = _lib.STICKLESS_OK
_NOT_FOUND = _lib.STICKLESS_NOT_FOUND
_EXISTS = _lib.STICKLESS_EXISTS
_NOT_STORED = _lib.STICKLESS_NOT_STORED
_BUFFER_TOO_SMALL = _lib.STICKLESS_BUFFER_TOO_SMALL

# The first buffer a thread reads into; a larger value grows it once.
_FIRST_BUFFER = 4096

Item = namedtuple("Item", "value flags cas ttl")
LockInfo = namedtuple("LockInfo", "token age_ms ttl")
LockInfo.__doc__ = "A held lock: its token, milliseconds since it was taken, and seconds of lease left."
Item.__doc__ = "A value with its flags, CAS unique and seconds to live (None: never expires)."


class StickError(Exception):
    """A status that is an error: bad input, a closed or forked handle, no memory...
    `detail` says why, when the library said (a refused `serve` argument)."""

    def __init__(self, status, detail=None):
        self.status = status
        self.name = _ffi.string(_lib.stickless_result_str(status)).decode()
        self.detail = detail
        text = "%s (%d)" % (self.name, status)
        super().__init__(text + ": " + detail if detail else text)


def _last_error():
    """Why the last call on this thread failed, if the library said."""
    length = _ffi.new("size_t *")
    if _lib.stickless_last_error(_ffi.NULL, 0, length) != _lib.STICKLESS_BUFFER_TOO_SMALL:
        return None
    buf = _ffi.new("char[]", length[0])
    if _lib.stickless_last_error(buf, length[0], length) != _OK:
        return None
    return _ffi.buffer(buf, length[0])[:].decode("utf-8", "replace")


def _check(status):
    if status != _OK:
        raise StickError(status, _last_error())


def _bytes(data):
    return data.encode() if isinstance(data, str) else data


def _options(memory_limit, item_size_max, node_id, no_evict, no_cas):
    options = _ffi.new("StickOptions *")
    options.struct_size = _ffi.sizeof("StickOptions")
    options.flags = (_lib.STICKLESS_OPEN_NO_EVICT if no_evict else 0) | (
        _lib.STICKLESS_OPEN_NO_CAS if no_cas else 0
    )
    options.memory_limit = memory_limit
    options.item_size_max = item_size_max
    options.node_id = node_id
    return options


class Store:
    """An open store. Safe to share between threads; close it (or use ``with``).

    ``shared="name"`` opens the process-wide store of that name instead of a new one:
    it outlives this object, for hosts that rebuild their objects per request.
    """

    def __init__(self, *, memory_limit=0, item_size_max=0, node_id=0, no_evict=False, no_cas=False, shared=None):
        options = _options(memory_limit, item_size_max, node_id, no_evict, no_cas)
        out = _ffi.new("Stickless **")
        if shared is None:
            _check(_lib.stickless_open(options, out))
        else:
            name = _bytes(shared)
            _check(_lib.stickless_open_shared(name, len(name), options, out))
        # Closed by close(), or by the collector if the caller forgets.
        self._handle = _ffi.gc(out[0], _lib.stickless_close)
        self._buffers = threading.local()

    @staticmethod
    def release_shared(name):
        """Lets the process-wide store ``name`` go once its handles close; False if none."""
        name = _bytes(name)
        status = _lib.stickless_release_shared(name, len(name))
        if status == _NOT_FOUND:
            return False
        _check(status)
        return True

    def close(self):
        if self._handle is not None:
            handle, self._handle = self._handle, None
            _ffi.release(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def handle(self):
        if self._handle is None:
            raise ValueError("the store is closed")
        return self._handle

    def _buffer(self, at_least=0):
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None or len(buffer) < at_least:
            buffer = _ffi.new("char[]", max(at_least, _FIRST_BUFFER))
            self._buffers.buffer = buffer
        return buffer

    def _read(self, key, flags, cas, ttl):
        key = _bytes(key)
        length = _ffi.new("size_t *")
        buffer = self._buffer()
        while True:
            status = _lib.stickless_get(self.handle, key, len(key), buffer, len(buffer), length, flags, cas, ttl)
            if status == _BUFFER_TOO_SMALL:
                buffer = self._buffer(length[0])
                continue
            if status == _NOT_FOUND:
                return None
            _check(status)
            return _ffi.unpack(buffer, length[0])

    def get(self, key):
        """The value of ``key``, or None."""
        return self._read(key, _ffi.NULL, _ffi.NULL, _ffi.NULL)

    def get_item(self, key):
        """The :class:`Item` at ``key``, or None."""
        flags = _ffi.new("uint32_t *")
        cas = _ffi.new("uint64_t *")
        ttl = _ffi.new("int64_t *")
        value = self._read(key, flags, cas, ttl)
        if value is None:
            return None
        return Item(value, flags[0], cas[0], None if ttl[0] < 0 else ttl[0])

    def _store(self, mode, key, value, flags, ttl, cas=0):
        key, value = _bytes(key), _bytes(value)
        out_cas = _ffi.new("uint64_t *")
        status = _lib.stickless_store(self.handle, mode, key, len(key), value, len(value), flags, ttl, cas, out_cas)
        return status, out_cas[0]

    def set(self, key, value, flags=0, ttl=0):
        """Stores ``value``; returns the item's CAS unique. ``ttl`` in seconds, 0: none."""
        status, cas = self._store(_lib.STICKLESS_SET, key, value, flags, ttl)
        _check(status)
        return cas

    def _stored(self, status):
        if status == _NOT_STORED:
            return False
        _check(status)
        return True

    def add(self, key, value, flags=0, ttl=0):
        """Stores only if ``key`` holds nothing; False if it does."""
        return self._stored(self._store(_lib.STICKLESS_ADD, key, value, flags, ttl)[0])

    def replace(self, key, value, flags=0, ttl=0):
        """Stores only if ``key`` holds an item; False if not."""
        return self._stored(self._store(_lib.STICKLESS_REPLACE, key, value, flags, ttl)[0])

    def append(self, key, value):
        """Adds ``value`` after the item's; False if there is no item."""
        return self._stored(self._store(_lib.STICKLESS_APPEND, key, value, 0, 0)[0])

    def prepend(self, key, value):
        """Adds ``value`` before the item's; False if there is no item."""
        return self._stored(self._store(_lib.STICKLESS_PREPEND, key, value, 0, 0)[0])

    def cas(self, key, value, cas, flags=0, ttl=0):
        """Stores only if the item's unique is still ``cas``: True if stored, False if
        it changed, None if it is gone (as pymemcache)."""
        status, _ = self._store(_lib.STICKLESS_CAS, key, value, flags, ttl, cas)
        if status == _EXISTS:
            return False
        if status == _NOT_FOUND:
            return None
        _check(status)
        return True

    def delete(self, key):
        """Deletes ``key``; False if it held nothing."""
        key = _bytes(key)
        status = _lib.stickless_delete(self.handle, key, len(key))
        if status == _NOT_FOUND:
            return False
        _check(status)
        return True

    def _count(self, function, key, delta):
        key = _bytes(key)
        out = _ffi.new("uint64_t *")
        status = function(self.handle, key, len(key), delta, out)
        if status == _NOT_FOUND:
            return None
        _check(status)
        return out[0]

    def incr(self, key, delta=1):
        """The number at ``key`` plus ``delta`` (wrapping at 2**64), or None if missing."""
        return self._count(_lib.stickless_incr, key, delta)

    def decr(self, key, delta=1):
        """The number at ``key`` minus ``delta`` (not below 0), or None if missing."""
        return self._count(_lib.stickless_decr, key, delta)

    def touch(self, key, ttl):
        """A new time to live for ``key``; False if it holds nothing."""
        key = _bytes(key)
        status = _lib.stickless_touch(self.handle, key, len(key), ttl)
        if status == _NOT_FOUND:
            return False
        _check(status)
        return True

    def lock(self, key, owner, lease):
        """Takes the lease lock ``key`` for ``lease`` seconds with ``owner`` as its
        value: its token, or None while another holds it. With a peer linked, the two
        nodes never both grant it."""
        key, owner = _bytes(key), _bytes(owner)
        token = _ffi.new("uint64_t *")
        status = _lib.stickless_lock(self.handle, key, len(key), owner, len(owner), lease, token)
        if status == _EXISTS:
            return None
        _check(status)
        return token[0]

    def unlock(self, key, token):
        """Releases the lock ``key`` if ``token`` still holds it; False if it does not
        (the lease ran out, and it is gone or another's)."""
        key = _bytes(key)
        status = _lib.stickless_unlock(self.handle, key, len(key), token)
        if status in (_EXISTS, _NOT_FOUND):
            return False
        _check(status)
        return True

    def lock_info(self, key):
        """The :class:`LockInfo` of the lock ``key``, or None if nobody holds it."""
        key = _bytes(key)
        token, age, ttl = _ffi.new("uint64_t *"), _ffi.new("uint64_t *"), _ffi.new("int64_t *")
        status = _lib.stickless_lock_info(self.handle, key, len(key), token, age, ttl)
        if status == _NOT_FOUND:
            return None
        _check(status)
        return LockInfo(token[0], age[0], ttl[0])

    def flush(self, delay=0):
        """Invalidates every item, now or in ``delay`` seconds (and on every peer)."""
        _check(_lib.stickless_flush(self.handle, delay))

    def stats(self):
        """The store's counters, as a dict."""
        stats = _ffi.new("StickStats *")
        stats.struct_size = _ffi.sizeof("StickStats")
        _check(_lib.stickless_stats(self.handle, stats))
        fields = ("curr_items", "total_items", "bytes", "limit_maxbytes", "evictions", "reclaimed")
        return {field: getattr(stats, field) for field in fields}

    def serve(self, args):
        """Starts the memcached listener and replication on this store, with the
        daemon's own flags (a string, or a list of words)."""
        if not isinstance(args, (str, bytes)):
            args = " ".join(args)
        args = _bytes(args)
        _check(_lib.stickless_serve(self.handle, args, len(args)))

    def _port(self, kind):
        port = _ffi.new("uint16_t *")
        status = _lib.stickless_port(self.handle, kind, port)
        if status == _NOT_FOUND:
            return None
        _check(status)
        return port[0]

    @property
    def port(self):
        """The memcached port this store serves on, or None."""
        return self._port(_lib.STICKLESS_PORT_MEMCACHED)

    @property
    def replication_port(self):
        """The port peers connect to, or None."""
        return self._port(_lib.STICKLESS_PORT_REPLICATION)


def version():
    """The library's version string."""
    return _ffi.string(_lib.stickless_version()).decode()
