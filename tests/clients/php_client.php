<?php
// PHP's memcached extension (libmemcached underneath) against a server given as
// argv[1] (host:port), with the binary protocol and, when argv[2] and argv[3] name a
// user and password, SASL. Prints one line per check; exits 1 on the first failure.
ini_set('memcached.use_sasl', '1');
[$host, $port] = explode(':', $argv[1]);
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_COMPRESSION, false);
if (isset($argv[2])) {
    $m->setSaslAuthData($argv[2], $argv[3]);
}
$m->addServer($host, (int)$port);

function check(string $what, bool $ok, Memcached $m): void {
    if (!$ok) {
        fwrite(STDERR, "FAIL $what: " . $m->getResultCode() . ' ' . $m->getResultMessage() . "\n");
        exit(1);
    }
    echo "ok $what\n";
}

check('set', $m->set('greeting', 'hello', 60), $m);
check('get', $m->get('greeting') === 'hello', $m);
check('miss', $m->get('absent') === false && $m->getResultCode() === Memcached::RES_NOTFOUND, $m);
// The binary protocol reports a failed add as "exists", as memcached does.
check('add existing fails', !$m->add('greeting', 'x') && $m->getResultCode() === Memcached::RES_DATA_EXISTS, $m);
check('add new', $m->add('fresh', 'x'), $m);
check('replace', $m->replace('fresh', 'y') && $m->get('fresh') === 'y', $m);
check('replace missing fails', !$m->replace('absent', 'y'), $m);
check('append', $m->append('greeting', ' world') && $m->get('greeting') === 'hello world', $m);
check('prepend', $m->prepend('greeting', '>') && $m->get('greeting') === '>hello world', $m);
$value = $m->get('greeting', null, Memcached::GET_EXTENDED);
check('gets', is_array($value) && $value['cas'] > 0, $m);
check('cas', $m->cas($value['cas'], 'greeting', 'swapped') && $m->get('greeting') === 'swapped', $m);
check('stale cas', !$m->cas($value['cas'], 'greeting', 'again') && $m->getResultCode() === Memcached::RES_DATA_EXISTS, $m);
check('increment creates', $m->increment('counter', 5, 10) === 10, $m);
check('increment', $m->increment('counter', 5) === 15, $m);
check('decrement floors at 0', $m->decrement('counter', 100) === 0, $m);
check('typed values', $m->set('array', ['a' => 1, 'b' => [2, 3]]) && $m->get('array') === ['a' => 1, 'b' => [2, 3]], $m);
check('integer values', $m->set('int', 42) && $m->get('int') === 42, $m);
check('setMulti', $m->setMulti(['m1' => 'one', 'm2' => 'two', 'm3' => 'three']), $m);
check('getMulti', $m->getMulti(['m1', 'm2', 'm3', 'absent']) === ['m1' => 'one', 'm2' => 'two', 'm3' => 'three'], $m);
check('touch', $m->touch('m1', 100), $m);
check('getDelayed', $m->getDelayed(['m1', 'm2']) && count($m->fetchAll()) === 2, $m);
check('deleteMulti', $m->deleteMulti(['m1', 'm2']) === ['m1' => true, 'm2' => true], $m);
check('delete', $m->delete('fresh') && $m->get('fresh') === false, $m);
check('delete missing', !$m->delete('fresh') && $m->getResultCode() === Memcached::RES_NOTFOUND, $m);
check('large value', $m->set('large', str_repeat('x', 500000)) && strlen($m->get('large')) === 500000, $m);
$version = $m->getVersion();
check('version', is_array($version) && str_starts_with(reset($version), '1.6'), $m);
$stats = $m->getStats();
check('stats', is_array($stats) && reset($stats)['curr_items'] > 0, $m);
check('flush', $m->flush() && $m->get('greeting') === false, $m);
echo "done\n";
