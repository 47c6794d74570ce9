<?php
/**
 * A page served by php-fpm that counts visits in its session, kept in the worker's
 * embedded store. The classes come from `opcache.preload` (bindings/php/preload.php)
 * and the declarations from `ffi.preload`, as README.md sets them up. The store
 * serves memcached clients and replicates with the daemon at $STICKLESS_TEST_PEER.
 * Driven by tests/bindings.rs through cgi-fcgi.
 */

declare(strict_types=1);

use Stickless\SessionHandler;
use Stickless\Store;

// The shared store outlives this request: the worker's next request finds it serving.
$store = Store::openShared('sessions');
if ($store->port() === null) {
    $store->serve('-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --peer ' . getenv('STICKLESS_TEST_PEER'));
}
session_set_save_handler(new SessionHandler($store), true);
session_start();
$_SESSION['count'] = ($_SESSION['count'] ?? 0) + 1;
header('Content-Type: text/plain');
printf("count=%d id=%s port=%d\n", $_SESSION['count'], session_id(), $store->port());
