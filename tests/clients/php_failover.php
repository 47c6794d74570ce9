<?php
// One PHP request, as php-fpm runs each in a fresh process (so php-memcached's
// count of a server's failures starts at zero every time), with the memcached
// session handler at its defaults but for the settings the setup names:
//   php php_failover.php MODE SAVE_PATH SETUP ID
// SETUP failover is php-memcached's failover: one replica of each session on the
// next server, and a server that fails once left out for the rest of the request
// (sess_number_of_replicas=1, sess_remove_failed_servers=1,
// sess_server_failure_limit=1); defaults leaves all three at their defaults; pecl
// is pecl memcache's handler instead, at its defaults (memcache.session_redundancy=2
// writes each session to two servers, memcache.allow_failover=1 reads the next);
// ini takes every setting from the php.ini files PHP read.
//   write:  starts the session with count=1
//   update: adds one to count
//   read:   prints count, or "missing" when the session came back empty
// Prints "failed" when session_start fails (the request would show an error page).
[, $mode, $savePath, $setup, $id] = $argv;
if ($setup === 'ini') {
    // The settings are the php.ini files' (the README's, through PHP_INI_SCAN_DIR);
    // SAVE_PATH is not used.
} elseif ($setup === 'pecl') {
    ini_set('session.save_handler', 'memcache');
    ini_set('session.save_path', implode(',', array_map(fn ($s) => "tcp://$s", explode(',', $savePath))));
} else {
    ini_set('session.save_handler', 'memcached');
    ini_set('session.save_path', $savePath);
}
// The handler's warnings (a server marked dead) go to standard error.
ini_set('display_errors', 'stderr');
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
if ($setup === 'failover') {
    ini_set('memcached.sess_number_of_replicas', '1');
    ini_set('memcached.sess_remove_failed_servers', '1');
    ini_set('memcached.sess_server_failure_limit', '1');
}
session_id($id);
if (!session_start()) {
    echo "failed\n";
    exit(0);
}
switch ($mode) {
    case 'write':
        $_SESSION['count'] = 1;
        echo "ok\n";
        break;
    case 'update':
        if (!isset($_SESSION['count'])) {
            echo "missing\n";
            break;
        }
        $_SESSION['count']++;
        echo "ok\n";
        break;
    case 'read':
        echo isset($_SESSION['count']) ? $_SESSION['count'] : 'missing', "\n";
        break;
}
session_write_close();
