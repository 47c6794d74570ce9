<?php
// One session request through PHP's handler argv[1] (memcached: php-memcached's,
// binary protocol; memcache: pecl memcache's) against the server argv[2]
// (host:port), for session id argv[3], locking on, waiting for a held lock at
// most about 2 s. Prints "refused" when session_start failed, else "acquired"
// and whether writing the session back at the end succeeded ("written" or
// "unwritten").
[, $handler, $server, $id] = $argv;
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
if ($handler === 'memcached') {
    ini_set('session.save_handler', 'memcached');
    ini_set('session.save_path', $server);
    ini_set('memcached.sess_locking', '1');
    ini_set('memcached.sess_binary_protocol', '1');
    ini_set('memcached.sess_lock_retries', '5');
    ini_set('memcached.sess_lock_wait_min', '100');
    ini_set('memcached.sess_lock_wait_max', '400');
} else {
    ini_set('session.save_handler', 'memcache');
    ini_set('session.save_path', "tcp://$server");
    ini_set('memcache.session_redundancy', '1');
    ini_set('memcache.lock_timeout', '2');
    ini_set('max_execution_time', '2');
}
session_id($id);
if (@session_start()) {
    $_SESSION['seen'] = ($_SESSION['seen'] ?? 0) + 1;
    echo 'acquired ', @session_write_close() ? 'written' : 'unwritten', "\n";
} else {
    $error = error_get_last();
    fwrite(STDERR, ($error['message'] ?? 'session_start failed') . "\n");
    echo "refused\n";
}
