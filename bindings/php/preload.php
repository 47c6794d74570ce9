<?php
/**
 * The script for php.ini's `opcache.preload`, beside `ffi.preload` (see README.md):
 * the binding's classes are compiled once into every php-fpm worker, and being
 * preloaded they may use FFI under the default `ffi.enable=preload`.
 */

require_once __DIR__ . '/src/Store.php';
require_once __DIR__ . '/src/SessionHandler.php';
