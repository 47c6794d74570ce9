<?php
// One PHP request whose session settings come from the php.ini files PHP read (the
// README's, given through PHP_INI_SCAN_DIR), each request its own process as under
// php-fpm:
//   php php_ini_session.php MODE ID
//   write:  starts the session with count=1
//   update: adds one to count
//   read:   prints count, or "missing" when the session came back empty
// Prints "failed" when session_start fails (the request would show an error page).
// The handler's warnings go to standard error.
[, $mode, $id] = $argv;
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
ini_set('display_errors', 'stderr');
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
