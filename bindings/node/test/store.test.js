'use strict';
// Tests of the Node binding against the real library (node --test). Needs
// STICKLESS_LIBRARY, and STICKLESS_TEST_DAEMON and STICKLESS_TEST_PEER (a stickless
// daemon's memcached and replication addresses) for the embedded node that
// replicates with it. tests/bindings.rs sets all three.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { Store, StickError, ABI_VERSION } = require('..');

// How long a replicated write may take to show on the other node.
const CONVERGE_MS = 5000;

async function waitFor(what, check) {
  const deadline = Date.now() + CONVERGE_MS;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function address(variable) {
  const value = process.env[variable];
  assert.ok(value, `${variable} is set`);
  const colon = value.lastIndexOf(':');
  return { host: value.slice(0, colon), port: Number(value.slice(colon + 1)) };
}

/** One request to a memcached text listener, read up to end. */
function exchange({ host, port }, request, end) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => socket.write(request));
    let reply = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.endsWith(end)) {
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', reject);
  });
}

function status(call) {
  try {
    call();
  } catch (error) {
    if (error instanceof StickError) return error.code;
    throw error;
  }
  return 'none';
}

test('version and ABI', () => {
  assert.equal(ABI_VERSION, 1);
  assert.match(Store.version(), /^\d+\.\d+\.\d+/);
});

test('reads and writes are binary-safe', () => {
  const store = Store.open();
  const key = Buffer.from([0x6b, 0, 0xff]);
  store.set(key, Buffer.from('v\0\r\n'));
  assert.deepEqual(store.get(key), Buffer.from('v\0\r\n'));
  assert.equal(store.get('missing'), null);
  store.set('empty', '');
  assert.deepEqual(store.get('empty'), Buffer.alloc(0));
  const big = Buffer.alloc(256000, 0).map((_, i) => i & 0xff);
  store.set('big', big);
  assert.deepEqual(store.get('big'), big);
  assert.deepEqual(store.get('big'), big);
  store.close();
});

test('items carry flags, CAS and TTL', () => {
  const store = Store.open();
  const cas = store.set('k', 'v', { flags: 42, ttl: 100 });
  const item = store.getItem('k');
  assert.equal(item.flags, 42);
  assert.equal(item.cas, cas);
  assert.ok(item.ttl >= 99 && item.ttl <= 100, `ttl ${item.ttl}`);
  store.set('forever', 'v');
  assert.equal(store.getItem('forever').ttl, null);
  assert.equal(store.getItem('missing'), null);
  store.close();
});

test('conditional stores answer with values', () => {
  const store = Store.open();
  assert.equal(store.add('a', 'b'), true);
  assert.equal(store.add('a', 'x'), false);
  assert.equal(store.append('a', 'c'), true);
  assert.equal(store.prepend('a', 'a'), true);
  assert.equal(store.get('a').toString(), 'abc');
  assert.equal(store.replace('a', 'new'), true);
  assert.equal(store.replace('none', 'x'), false);
  assert.equal(store.append('none', 'x'), false);
  assert.equal(store.prepend('none', 'x'), false);
  const cas = store.set('c', '1');
  assert.equal(store.cas('c', '2', cas), 'stored');
  assert.equal(store.cas('c', '3', cas), 'exists');
  assert.equal(store.get('c').toString(), '2');
  assert.equal(store.cas('gone', 'x', cas), 'not_found');
  store.close();
});

test('counters, touch and delete', () => {
  const store = Store.open();
  store.set('n', '10');
  assert.equal(store.incr('n', 5), 15);
  assert.equal(store.decr('n', 20), 0);
  assert.equal(store.incr('n', 2n ** 64n - 1n), 2n ** 64n - 1n);
  assert.equal(store.incr('none'), null);
  assert.equal(store.decr('none'), null);
  assert.equal(store.touch('n', 50), true);
  const ttl = store.getItem('n').ttl;
  assert.ok(ttl >= 49 && ttl <= 50, `ttl ${ttl}`);
  assert.equal(store.touch('none', 50), false);
  assert.equal(store.delete('n'), true);
  assert.equal(store.delete('n'), false);
  store.close();
});

test('errors throw with their status and lose nothing', () => {
  const store = Store.open({ memoryLimit: 16 << 20 });
  store.set('text', 'abc');
  assert.equal(status(() => store.incr('text')), 'STICKLESS_NON_NUMERIC');
  assert.equal(status(() => store.set('', 'v')), 'STICKLESS_BAD_KEY');
  assert.equal(status(() => store.set('k'.repeat(251), 'v')), 'STICKLESS_BAD_KEY');
  assert.equal(status(() => store.serve('--no-such-flag')), 'STICKLESS_BAD_CONFIG');
  assert.throws(() => store.serve('--no-such-flag'), (error) => error.detail.includes('--no-such-flag'));
  const small = Store.open({ itemSizeMax: 1024 });
  assert.equal(status(() => small.set('k', Buffer.alloc(2048))), 'STICKLESS_VALUE_TOO_LARGE');
  small.close();
  assert.equal(store.get('text').toString(), 'abc');
  const stats = store.stats();
  assert.equal(stats.curr_items, 1);
  assert.equal(stats.limit_maxbytes, 16 << 20);
  store.flush();
  assert.equal(store.get('text'), null);
  store.close();
  store.close();
  assert.throws(() => store.get('k'), /closed/);
});

test('lease locks are released only by their token', () => {
  const store = Store.open();
  const token = store.lock('lock:s1', 'host:1', 30);
  assert.ok(token);
  assert.equal(store.lock('lock:s1', 'host:2', 30), null);
  const info = store.lockInfo('lock:s1');
  assert.equal(info.token, token);
  assert.ok(info.ageMs >= 0 && info.ageMs < 60000 && info.ttl > 0 && info.ttl <= 30, JSON.stringify(info, (_, v) => String(v)));
  assert.equal(store.get('lock:s1').toString(), 'host:1');
  assert.equal(store.unlock('lock:s1', BigInt(token) + 1n), false);
  assert.equal(store.unlock('lock:s1', token), true);
  assert.equal(store.unlock('lock:s1', token), false);
  assert.equal(store.lockInfo('lock:s1'), null);
  assert.equal(status(() => store.lock('lock:s1', 'x', 0)), 'STICKLESS_INVALID_ARGUMENT');
  store.close();
});

test('a shared store outlives its objects', () => {
  const first = Store.openShared('node-test');
  first.set('kept', 'yes');
  first.close();
  const second = Store.openShared('node-test');
  assert.equal(second.get('kept').toString(), 'yes');
  second.close();
  assert.equal(Store.releaseShared('node-test'), true);
  assert.equal(Store.releaseShared('node-test'), false);
});

test('an embedded node serves the wire and replicates with a daemon', async () => {
  const daemon = address('STICKLESS_TEST_DAEMON');
  const peer = address('STICKLESS_TEST_PEER');
  const store = Store.open();
  try {
    assert.equal(store.port, null);
    store.serve(['-l', '127.0.0.1', '-p', '0', '--repl-listen', '127.0.0.1:0', '--peer', `${peer.host}:${peer.port}`]);
    assert.equal(status(() => store.serve('-p 0')), 'STICKLESS_ALREADY_SERVING');
    assert.ok(store.replicationPort > 0);
    store.set('js:sess', 'user|s:5:"grace";', { flags: 11 });
    const expected = 'VALUE js:sess 11 17\r\nuser|s:5:"grace";\r\nEND\r\n';
    await waitFor('the write through the ABI on the daemon',
      async () => (await exchange(daemon, 'get js:sess\r\n', 'END\r\n')) === expected);
    assert.equal(await exchange(daemon, 'set js:back 0 0 4\r\nback\r\n', '\r\n'), 'STORED\r\n');
    await waitFor("the daemon's write in this process", () => String(store.get('js:back')) === 'back');
    assert.equal(await exchange({ host: '127.0.0.1', port: store.port }, 'get js:sess\r\n', 'END\r\n'), expected);
  } finally {
    store.close();
  }
});
