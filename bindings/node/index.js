'use strict';
// An embedded stickless node for Node.js, through the library's C ABI (koffi).
//
//     const { Store } = require('stickless');
//     const store = Store.open();
//     store.set('sess:abc', 'data', { ttl: 1440 });
//     store.get('sess:abc');                  // a Buffer, or null when missing
//     store.serve('-l 127.0.0.1 -p 11211 --peer 10.0.0.2:11212');
//     store.close();
//
// The library is $STICKLESS_LIBRARY, else libstickless.so.1 on the loader's path.
// Answers a caller acts on are return values (null for a missing key, false for a
// refused add or replace, 'stored' / 'exists' / 'not_found' for cas); every other
// status throws a StickError. Keys and values are Buffers or UTF-8 strings; 64-bit
// numbers come back as Numbers when exact, else as BigInts.

const koffi = require('koffi');

// The ABI this module was written against (stickless_abi_version()).
const ABI_VERSION = 1;

const OK = 0;
const NOT_FOUND = 1;
const EXISTS = 2;
const NOT_STORED = 3;
const BUFFER_TOO_SMALL = 4;
const Mode = { SET: 1, ADD: 2, REPLACE: 3, APPEND: 4, PREPEND: 5, CAS: 6 };
const OpenFlags = { NO_EVICT: 1, NO_CAS: 2 };
// The first buffer a read tries; a larger value grows it once.
const FIRST_BUFFER = 4096;

const lib = koffi.load(process.env.STICKLESS_LIBRARY || 'libstickless.so.1');
koffi.opaque('Stickless');
const StickOptions = koffi.struct('StickOptions', {
  struct_size: 'uint32_t',
  flags: 'uint32_t',
  memory_limit: 'uint64_t',
  item_size_max: 'uint32_t',
  node_id: 'uint32_t',
});
const StickStats = koffi.struct('StickStats', {
  struct_size: 'uint32_t',
  reserved: 'uint32_t',
  curr_items: 'uint64_t',
  total_items: 'uint64_t',
  bytes: 'uint64_t',
  limit_maxbytes: 'uint64_t',
  evictions: 'uint64_t',
  reclaimed: 'uint64_t',
});

// include/stickless.h, function by function.
const abi = {
  version: lib.func('const char *stickless_version(void)'),
  abiVersion: lib.func('uint32_t stickless_abi_version(void)'),
  resultStr: lib.func('const char *stickless_result_str(int32_t status)'),
  lastError: lib.func('int32_t stickless_last_error(_Out_ void *buf, size_t buf_len, _Out_ size_t *out_len)'),
  open: lib.func('int32_t stickless_open(const StickOptions *options, _Out_ Stickless **out)'),
  openShared: lib.func(
    'int32_t stickless_open_shared(const void *name, size_t name_len, const StickOptions *options, _Out_ Stickless **out)'),
  releaseShared: lib.func('int32_t stickless_release_shared(const void *name, size_t name_len)'),
  close: lib.func('void stickless_close(Stickless *handle)'),
  get: lib.func('int32_t stickless_get(const Stickless *handle, const void *key, size_t key_len, _Out_ void *buf, ' +
    'size_t buf_len, _Out_ size_t *out_len, _Out_ uint32_t *out_flags, _Out_ uint64_t *out_cas, _Out_ int64_t *out_ttl)'),
  store: lib.func('int32_t stickless_store(const Stickless *handle, int32_t mode, const void *key, size_t key_len, ' +
    'const void *value, size_t value_len, uint32_t flags, uint32_t ttl, uint64_t cas, _Out_ uint64_t *out_cas)'),
  delete: lib.func('int32_t stickless_delete(const Stickless *handle, const void *key, size_t key_len)'),
  incr: lib.func(
    'int32_t stickless_incr(const Stickless *handle, const void *key, size_t key_len, uint64_t delta, _Out_ uint64_t *out_value)'),
  decr: lib.func(
    'int32_t stickless_decr(const Stickless *handle, const void *key, size_t key_len, uint64_t delta, _Out_ uint64_t *out_value)'),
  touch: lib.func('int32_t stickless_touch(const Stickless *handle, const void *key, size_t key_len, uint32_t ttl)'),
  lock: lib.func('int32_t stickless_lock(const Stickless *handle, const void *key, size_t key_len, ' +
    'const void *owner, size_t owner_len, uint32_t lease, _Out_ uint64_t *out_token)'),
  unlock: lib.func('int32_t stickless_unlock(const Stickless *handle, const void *key, size_t key_len, uint64_t token)'),
  lockInfo: lib.func('int32_t stickless_lock_info(const Stickless *handle, const void *key, size_t key_len, ' +
    '_Out_ uint64_t *out_token, _Out_ uint64_t *out_age_ms, _Out_ int64_t *out_ttl)'),
  flush: lib.func('int32_t stickless_flush(const Stickless *handle, uint32_t delay)'),
  stats: lib.func('int32_t stickless_stats(const Stickless *handle, _Inout_ StickStats *out)'),
  serve: lib.func('int32_t stickless_serve(const Stickless *handle, const char *args, size_t args_len)'),
  port: lib.func('int32_t stickless_port(const Stickless *handle, int32_t kind, _Out_ uint16_t *out_port)'),
};

if (abi.abiVersion() !== ABI_VERSION) {
  throw new Error(`libstickless speaks ABI ${abi.abiVersion()}, this module ABI ${ABI_VERSION}`);
}

/** A status that is an error: bad input, a closed or forked handle, no memory... */
class StickError extends Error {
  // `detail` says why, when the library said (a refused serve argument).
  constructor(status, detail) {
    const name = abi.resultStr(status);
    super(detail === undefined ? `${name} (${status})` : `${name} (${status}): ${detail}`);
    this.status = status;
    this.code = name;
    this.detail = detail;
  }
}

// Why the last call on this thread failed, if the library said.
function lastError() {
  const length = [0];
  if (abi.lastError(null, 0, length) !== BUFFER_TOO_SMALL) return undefined;
  const buf = Buffer.alloc(Number(length[0]));
  if (abi.lastError(buf, buf.length, length) !== OK) return undefined;
  return buf.toString('utf8');
}

function check(status) {
  if (status !== OK) throw new StickError(status, lastError());
}

function bytes(data) {
  return Buffer.isBuffer(data) ? data : Buffer.from(String(data), 'utf8');
}

function nativeOptions({ memoryLimit = 0, itemSizeMax = 0, nodeId = 0, noEvict = false, noCas = false } = {}) {
  return {
    struct_size: koffi.sizeof(StickOptions),
    flags: (noEvict ? OpenFlags.NO_EVICT : 0) | (noCas ? OpenFlags.NO_CAS : 0),
    memory_limit: memoryLimit,
    item_size_max: itemSizeMax,
    node_id: nodeId,
  };
}

/** An open store. Close it when done: the store stops when its last handle closes. */
class Store {
  constructor(handle) {
    this._handle = handle;
    this._buffer = Buffer.alloc(FIRST_BUFFER);
  }

  /** The library's version string. */
  static version() {
    return abi.version();
  }

  /**
   * A store of its own. Options (0: the default): memoryLimit (bytes, -m), itemSizeMax
   * (-I), nodeId (1 to 4095), noEvict (-M), noCas (-C).
   */
  static open(options) {
    const out = [null];
    check(abi.open(nativeOptions(options), out));
    return new Store(out[0]);
  }

  /** The process-wide store called name, created with options on first use. */
  static openShared(name, options) {
    const key = bytes(name);
    const out = [null];
    check(abi.openShared(key, key.length, nativeOptions(options), out));
    return new Store(out[0]);
  }

  /** Lets the process-wide store name go once its handles close; false if none. */
  static releaseShared(name) {
    const key = bytes(name);
    return found(abi.releaseShared(key, key.length));
  }

  close() {
    if (this._handle !== null) {
      abi.close(this._handle);
      this._handle = null;
    }
  }

  [Symbol.dispose]() {
    this.close();
  }

  get handle() {
    if (this._handle === null) throw new Error('the store is closed');
    return this._handle;
  }

  _read(key) {
    key = bytes(key);
    const length = [0];
    const flags = [0];
    const cas = [0];
    const ttl = [0];
    for (;;) {
      const status = abi.get(this.handle, key, key.length, this._buffer, this._buffer.length, length, flags, cas, ttl);
      if (status === BUFFER_TOO_SMALL) {
        this._buffer = Buffer.alloc(Number(length[0]));
        continue;
      }
      if (status === NOT_FOUND) return null;
      check(status);
      const value = Buffer.from(this._buffer.subarray(0, Number(length[0])));
      return { value, flags: flags[0], cas: cas[0], ttl: ttl[0] < 0 ? null : ttl[0] };
    }
  }

  /** The value of key as a Buffer, or null. */
  get(key) {
    const item = this._read(key);
    return item && item.value;
  }

  /** { value, flags, cas, ttl } (ttl null: never expires), or null. */
  getItem(key) {
    return this._read(key);
  }

  _store(mode, key, value, { flags = 0, ttl = 0 } = {}, cas = 0) {
    key = bytes(key);
    value = bytes(value);
    const outCas = [0];
    const status = abi.store(this.handle, mode, key, key.length, value, value.length, flags, ttl, cas, outCas);
    return [status, outCas[0]];
  }

  /** Stores value ({ flags, ttl } in seconds, 0: no expiry); returns its CAS unique. */
  set(key, value, options) {
    const [status, cas] = this._store(Mode.SET, key, value, options);
    check(status);
    return cas;
  }

  /** Stores only if key holds nothing; false if it does. */
  add(key, value, options) {
    return stored(this._store(Mode.ADD, key, value, options)[0]);
  }

  /** Stores only if key holds an item; false if not. */
  replace(key, value, options) {
    return stored(this._store(Mode.REPLACE, key, value, options)[0]);
  }

  /** Adds value after the item's; false if there is no item. */
  append(key, value) {
    return stored(this._store(Mode.APPEND, key, value)[0]);
  }

  /** Adds value before the item's; false if there is no item. */
  prepend(key, value) {
    return stored(this._store(Mode.PREPEND, key, value)[0]);
  }

  /** Stores only if the item's CAS unique is still cas: 'stored', 'exists' or 'not_found'. */
  cas(key, value, cas, options) {
    const [status] = this._store(Mode.CAS, key, value, options, cas);
    if (status === EXISTS) return 'exists';
    if (status === NOT_FOUND) return 'not_found';
    check(status);
    return 'stored';
  }

  /** Deletes key; false if it held nothing. */
  delete(key) {
    key = bytes(key);
    return found(abi.delete(this.handle, key, key.length));
  }

  /** The number at key plus delta (wrapping at 2^64), or null if missing. */
  incr(key, delta = 1) {
    return this._count(abi.incr, key, delta);
  }

  /** The number at key minus delta (not below 0), or null if missing. */
  decr(key, delta = 1) {
    return this._count(abi.decr, key, delta);
  }

  _count(call, key, delta) {
    key = bytes(key);
    const out = [0];
    return found(call(this.handle, key, key.length, delta, out)) ? out[0] : null;
  }

  /** A new time to live for key; false if it holds nothing. */
  touch(key, ttl) {
    key = bytes(key);
    return found(abi.touch(this.handle, key, key.length, ttl));
  }

  /**
   * Takes the lease lock key for lease seconds with owner as its value: its token, or
   * null while another holds it. With a peer linked, the two nodes never both grant it.
   */
  lock(key, owner, lease) {
    key = bytes(key);
    owner = bytes(owner);
    const token = [0];
    const status = abi.lock(this.handle, key, key.length, owner, owner.length, lease, token);
    if (status === EXISTS) return null;
    check(status);
    return token[0];
  }

  /** Releases the lock key if token still holds it; false if not. */
  unlock(key, token) {
    key = bytes(key);
    const status = abi.unlock(this.handle, key, key.length, token);
    if (status === EXISTS || status === NOT_FOUND) return false;
    check(status);
    return true;
  }

  /** { token, ageMs, ttl } of the lock key, or null if nobody holds it. */
  lockInfo(key) {
    key = bytes(key);
    const [token, ageMs, ttl] = [[0], [0], [0]];
    if (!found(abi.lockInfo(this.handle, key, key.length, token, ageMs, ttl))) return null;
    return { token: token[0], ageMs: ageMs[0], ttl: ttl[0] };
  }

  /** Invalidates every item, now or in delay seconds (and on every peer). */
  flush(delay = 0) {
    check(abi.flush(this.handle, delay));
  }

  /** The store's counters. */
  stats() {
    const stats = { struct_size: koffi.sizeof(StickStats) };
    check(abi.stats(this.handle, stats));
    const { curr_items, total_items, bytes, limit_maxbytes, evictions, reclaimed } = stats;
    return { curr_items, total_items, bytes, limit_maxbytes, evictions, reclaimed };
  }

  /** Starts the memcached listener and replication with the daemon's own flags. */
  serve(args) {
    const text = Array.isArray(args) ? args.join(' ') : String(args);
    check(abi.serve(this.handle, text, Buffer.byteLength(text)));
  }

  _port(kind) {
    const port = [0];
    return found(abi.port(this.handle, kind, port)) ? port[0] : null;
  }

  /** The memcached port this store serves on, or null. */
  get port() {
    return this._port(0);
  }

  /** The port peers connect to, or null. */
  get replicationPort() {
    return this._port(1);
  }
}

function stored(status) {
  if (status === NOT_STORED) return false;
  check(status);
  return true;
}

function found(status) {
  if (status === NOT_FOUND) return false;
  check(status);
  return true;
}

module.exports = { Store, StickError, ABI_VERSION };
