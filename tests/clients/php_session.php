<?php
// PHP's memcached session handler (binary protocol, locking on, SASL when a user is
// given) against the server argv[2] (host:port), for session id argv[3]:
//   count: increments $_SESSION['count'] and prints it;
//   hold:  takes the session (and its lock), prints "locked", waits for a line on
//          stdin, then writes held=yes and prints "released";
//   try:   tries to take the session with almost no waiting and prints "acquired"
//          (with the session's contents) or "refused".
[, $mode, $server, $id] = $argv;
ini_set('session.save_handler', 'memcached');
ini_set('session.save_path', $server);
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
ini_set('memcached.sess_locking', '1');
ini_set('memcached.sess_binary_protocol', '1');
ini_set('memcached.sess_lock_expire', '30');
if (isset($argv[4])) {
    ini_set('memcached.sess_sasl_username', $argv[4]);
    ini_set('memcached.sess_sasl_password', $argv[5]);
}
if ($mode === 'try') {
    // Two attempts 10 ms apart: a held lock makes session_start fail.
    ini_set('memcached.sess_lock_retries', '1');
    ini_set('memcached.sess_lock_wait_min', '10');
    ini_set('memcached.sess_lock_wait_max', '10');
}
session_id($id);
$started = @session_start();
switch ($mode) {
    case 'count':
        if (!$started) { fwrite(STDERR, "session_start failed\n"); exit(1); }
        $_SESSION['count'] = ($_SESSION['count'] ?? 0) + 1;
        session_write_close();
        echo $_SESSION['count'], "\n";
        break;
    case 'hold':
        if (!$started) { fwrite(STDERR, "session_start failed\n"); exit(1); }
        echo "locked\n";
        fgets(STDIN);
        $_SESSION['held'] = 'yes';
        session_write_close();
        echo "released\n";
        break;
    case 'try':
        if ($started) {
            echo 'acquired ', json_encode($_SESSION), "\n";
            session_write_close();
        } else {
            echo "refused\n";
        }
        break;
}
