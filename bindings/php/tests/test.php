<?php
/**
 * Tests of the PHP binding against the real library, run with php-cli; exits 0 when
 * every check holds. Needs STICKLESS_LIBRARY (the cdylib), and STICKLESS_TEST_DAEMON
 * and STICKLESS_TEST_PEER (a stickless daemon's memcached and replication addresses)
 * for the embedded node that replicates with it. tests/bindings.rs sets all three.
 */

declare(strict_types=1);

require __DIR__ . '/../src/Store.php';
require __DIR__ . '/../src/SessionHandler.php';

use Stickless\SessionHandler;
use Stickless\StickError;
use Stickless\Store;

/** How long a replicated write may take to show on the other node. */
const CONVERGE_SECONDS = 5.0;

$failures = 0;

function check(bool $condition, string $what): void
{
    global $failures;
    if (!$condition) {
        $failures++;
        $trace = debug_backtrace();
        $line = end($trace)['line'];
        fwrite(STDERR, "line $line: $what\n");
    }
}

function same(mixed $got, mixed $expected, string $what): void
{
    check($got === $expected, $what . ': got ' . var_export($got, true) . ', expected ' . var_export($expected, true));
}

/** The status name a call throws, or 'none'. */
function thrown(callable $call): string
{
    try {
        $call();
    } catch (StickError $error) {
        return $error->name;
    }
    return 'none';
}

function wait_for(string $what, callable $condition): void
{
    $deadline = microtime(true) + CONVERGE_SECONDS;
    while (!$condition()) {
        if (microtime(true) > $deadline) {
            check(false, "timed out waiting for $what");
            return;
        }
        usleep(10000);
    }
}

/** One request to a memcached text listener, read up to $end. */
function exchange(string $address, string $request, string $end): string
{
    $socket = stream_socket_client("tcp://$address", $errno, $error, 5.0);
    if ($socket === false) {
        return "<no connection: $error>";
    }
    fwrite($socket, $request);
    $reply = '';
    while (!str_ends_with($reply, $end) && !feof($socket)) {
        $reply .= fread($socket, 65536);
    }
    fclose($socket);
    return $reply;
}

// The library and its ABI.
same(Store::ABI_VERSION, 1, 'ABI version');
check(preg_match('/^\d+\.\d+\.\d+/', Store::version()) === 1, 'version string');

// Reads and writes, binary-safe.
$store = Store::open(memoryLimit: 16 << 20);
$store->set("k\0\xff", "v\0\r\n");
same($store->get("k\0\xff"), "v\0\r\n", 'binary key and value');
same($store->get('missing'), null, 'missing key');
$store->set('empty', '');
same($store->get('empty'), '', 'empty value');
$big = str_repeat(implode('', array_map('chr', range(0, 255))), 1000);
$store->set('big', $big);
same($store->get('big'), $big, 'a value larger than the first buffer');
same($store->get('big'), $big, 'the same value from the grown buffer');

$cas = $store->set('k', 'v', flags: 42, ttl: 100);
$item = $store->getItem('k');
same([$item['value'], $item['flags'], $item['cas']], ['v', 42, $cas], 'item details');
check($item['ttl'] >= 99 && $item['ttl'] <= 100, 'ttl ' . $item['ttl']);
same($store->getItem('empty')['ttl'], null, 'no expiry');
same($store->getItem('missing'), null, 'missing item');

// Conditional stores answer with booleans.
same($store->add('a', 'b'), true, 'add new');
same($store->add('a', 'x'), false, 'add present');
same($store->append('a', 'c'), true, 'append');
same($store->prepend('a', 'a'), true, 'prepend');
same($store->get('a'), 'abc', 'after append and prepend');
same($store->replace('a', 'new'), true, 'replace present');
same($store->replace('none', 'x'), false, 'replace missing');
same($store->append('none', 'x'), false, 'append missing');
same($store->prepend('none', 'x'), false, 'prepend missing');
$cas = $store->set('c', '1');
same($store->cas('c', '2', $cas), true, 'cas current');
same($store->cas('c', '3', $cas), false, 'cas stale');
same($store->get('c'), '2', 'cas kept the winner');
same($store->cas('gone', 'x', $cas), null, 'cas missing');

// Counters, touch, delete.
$store->set('n', '10');
same($store->incr('n', 5), 15, 'incr');
same($store->decr('n', 20), 0, 'decr stops at 0');
same($store->incr('none'), null, 'incr missing');
same($store->decr('none'), null, 'decr missing');
same($store->touch('n', 50), true, 'touch');
$ttl = $store->getItem('n')['ttl'];
check($ttl >= 49 && $ttl <= 50, "touched ttl $ttl");
same($store->touch('none', 50), false, 'touch missing');
same($store->delete('n'), true, 'delete');
same($store->delete('n'), false, 'delete missing');

// Errors throw with their status, and lose nothing.
$store->set('text', 'abc');
same(thrown(fn () => $store->incr('text')), 'STICKLESS_NON_NUMERIC', 'incr on text');
same(thrown(fn () => $store->set('', 'v')), 'STICKLESS_BAD_KEY', 'empty key');
same(thrown(fn () => $store->set(str_repeat('k', 251), 'v')), 'STICKLESS_BAD_KEY', 'long key');
same(thrown(fn () => $store->serve('--no-such-flag')), 'STICKLESS_BAD_CONFIG', 'bad serve flag');
try {
    $store->serve('--no-such-flag');
} catch (StickError $error) {
    same(str_contains((string) $error->detail, '--no-such-flag'), true, 'a refused serve says which flag');
}
$small = Store::open(itemSizeMax: 1024);
same(thrown(fn () => $small->set('k', str_repeat('x', 2048))), 'STICKLESS_VALUE_TOO_LARGE', 'value too large');
$small->close();
same($store->get('text'), 'abc', 'nothing lost');

// Lease locks: released only with their token.
$token = $store->lock('lock:s1', 'host:1', 30);
check(is_int($token) && $token > 0, 'lock token');
same($store->lock('lock:s1', 'host:2', 30), null, 'a held lock');
$info = $store->lockInfo('lock:s1');
same($info['token'], $token, 'lock info token');
check($info['age_ms'] >= 0 && $info['age_ms'] < 60000 && $info['ttl'] > 0 && $info['ttl'] <= 30, 'lock info');
same($store->unlock('lock:s1', $token + 1), false, 'unlock with another token');
same($store->unlock('lock:s1', $token), true, 'unlock');
same($store->unlock('lock:s1', $token), false, 'unlock twice');
same($store->lockInfo('lock:s1'), null, 'released lock');
same(thrown(fn () => $store->lock('lock:s1', 'x', 0)), 'STICKLESS_INVALID_ARGUMENT', 'lock without a lease');

// Stats and flush.// Stats and flush.
$stats = $store->stats();
same($stats['limit_maxbytes'], 16 << 20, 'limit_maxbytes');
same($stats['curr_items'], 7, 'curr_items');
$store->flush();
same($store->get('text'), null, 'flushed');
$store->close();
$store->close();
try {
    $store->get('k');
    check(false, 'a closed store answered');
} catch (LogicException) {
}

// A shared store outlives the objects of one request.
$first = Store::openShared('php-test');
$first->set('kept', 'across requests');
unset($first);
$second = Store::openShared('php-test');
same($second->get('kept'), 'across requests', 'shared store');
same(Store::releaseShared('php-test'), true, 'release');
same(Store::releaseShared('php-test'), false, 'release again');
unset($second);
same(Store::openShared('php-test')->get('kept'), null, 'a released name starts empty');
Store::releaseShared('php-test');

// PHP sessions through the handler, stored as php-memcached stores them.
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '1');
ini_set('session.lazy_write', '1');
ini_set('session.gc_maxlifetime', '1440');
$sessions = Store::openShared('sessions');
session_set_save_handler(new SessionHandler($sessions), true);
session_id('unknown-id');
session_start();
check(session_id() !== 'unknown-id', 'strict mode refuses an unknown session id');
$id = session_id();
$_SESSION['count'] = 1;
session_write_close();
$item = $sessions->getItem(SessionHandler::PREFIX . $id);
same([$item['value'], $item['flags']], ['count|i:1;', 0], 'the stored session');
check($item['ttl'] > 1400, 'session lifetime');
session_id($id);
session_start();
same($_SESSION['count'], 1, 'the session read back');
$_SESSION['count']++;
session_write_close();
same($sessions->get(SessionHandler::PREFIX . $id), 'count|i:2;', 'the session written back');
$sessions->touch(SessionHandler::PREFIX . $id, 60);
session_id($id);
session_start();
session_write_close();
check($sessions->getItem(SessionHandler::PREFIX . $id)['ttl'] > 1400, 'lazy write renews the lifetime');
session_id($id);
session_start();
session_destroy();
same($sessions->get(SessionHandler::PREFIX . $id), null, 'destroyed session');

// An embedded node that memcached clients reach and that replicates with a daemon:
// a session written in this process is on the daemon.
$daemon = getenv('STICKLESS_TEST_DAEMON');
$peer = getenv('STICKLESS_TEST_PEER');
check($daemon !== false && $peer !== false, 'STICKLESS_TEST_DAEMON and STICKLESS_TEST_PEER are set');
same($sessions->port(), null, 'not serving yet');
$sessions->serve("-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --peer $peer");
same(thrown(fn () => $sessions->serve('-p 0')), 'STICKLESS_ALREADY_SERVING', 'serve twice');
check($sessions->replicationPort() > 0, 'replication port');
session_id('');
session_start();
$id = session_id();
$_SESSION['user'] = 'dave';
session_write_close();
$key = SessionHandler::PREFIX . $id;
wait_for('the session on the daemon', fn () => exchange($daemon, "get $key\r\n", "END\r\n")
    === "VALUE $key 0 16\r\nuser|s:4:\"dave\";\r\nEND\r\n");
same(exchange($daemon, "set php:back 0 0 4\r\nback\r\n", "\r\n"), "STORED\r\n", 'set on the daemon');
wait_for("the daemon's write in this process", fn () => $sessions->get('php:back') === 'back');
same(
    exchange('127.0.0.1:' . $sessions->port(), "get $key\r\n", "END\r\n"),
    "VALUE $key 0 16\r\nuser|s:4:\"dave\";\r\nEND\r\n",
    "the node's own listener"
);

if ($failures > 0) {
    fwrite(STDERR, "$failures checks failed\n");
    exit(1);
}
echo "ok\n";
