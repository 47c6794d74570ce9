<?php
// The web application of the farm: PHP sessions in a stickless mesh through
// php-memcached's session handler (its binary protocol and locking, as shipped).
// /login?user=NAME starts a session; every other request counts a visit in it.
// Replies are one JSON line naming the app server that answered.

header('Content-Type: application/json');
session_start();
if (parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) === '/login') {
    session_regenerate_id(true);
    $_SESSION = ['user' => $_GET['user'] ?? 'anonymous', 'count' => 0];
} elseif (!isset($_SESSION['user'])) {
    http_response_code(401);
    echo json_encode(['error' => 'no session', 'server' => getenv('APP_NAME')]), "\n";
    exit;
} else {
    $_SESSION['count']++;
}
echo json_encode(['user' => $_SESSION['user'], 'count' => $_SESSION['count'], 'server' => getenv('APP_NAME')]), "\n";
