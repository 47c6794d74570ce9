<?php
/**
 * An embedded stickless node for PHP, through the library's C ABI (PHP's FFI).
 *
 *     $store = Stickless\Store::openShared('sessions');   // survives the request
 *     $store->set('sess:abc', $data, ttl: 1440);
 *     $store->get('sess:abc');                             // $data, or null
 *
 * The declarations come from the `stickless` FFI scope when php.ini preloads one
 * (`ffi.preload`, as php-fpm needs: see README.md), else from stickless.ffi.h beside
 * this file, with the library at $STICKLESS_LIBRARY or `libstickless.so.1` on the
 * loader's path. Answers a caller acts on are return values (null for a missing key,
 * false for a refused add/replace or a lost cas); every other status throws
 * StickError.
 */

declare(strict_types=1);

namespace Stickless;

use FFI;

/** A status that is an error: bad input, a closed or forked handle, no memory... */
final class StickError extends \RuntimeException
{
    /** `$detail` says why, when the library said (a refused `serve` argument). */
    public function __construct(
        public readonly int $status,
        public readonly string $name,
        public readonly ?string $detail = null,
    ) {
        parent::__construct($detail === null ? "$name ($status)" : "$name ($status): $detail", $status);
    }
}

final class Store
{
    /** The ABI this class was written against (stickless_abi_version()). */
    public const ABI_VERSION = 1;

    public const OK = 0;
    public const NOT_FOUND = 1;
    public const EXISTS = 2;
    public const NOT_STORED = 3;
    public const BUFFER_TOO_SMALL = 4;

    private const SET = 1;
    private const ADD = 2;
    private const REPLACE = 3;
    private const APPEND = 4;
    private const PREPEND = 5;
    private const CAS = 6;

    /** The first buffer a read tries; a larger value grows it once. */
    private const FIRST_BUFFER = 4096;

    private static ?FFI $ffi = null;

    private ?FFI\CData $handle;
    private FFI\CData $buffer;

    private function __construct(FFI\CData $handle)
    {
        $this->handle = $handle;
        $this->buffer = self::ffi()->new('char[' . self::FIRST_BUFFER . ']');
    }

    /** The bound library, loaded once per process. */
    public static function ffi(): FFI
    {
        if (self::$ffi === null) {
            try {
                $ffi = FFI::scope('stickless');
            } catch (FFI\Exception) {
                $ffi = FFI::cdef(
                    file_get_contents(__DIR__ . '/stickless.ffi.h'),
                    getenv('STICKLESS_LIBRARY') ?: 'libstickless.so.1'
                );
            }
            $abi = $ffi->stickless_abi_version();
            if ($abi !== self::ABI_VERSION) {
                throw new \LogicException("libstickless speaks ABI $abi, this class ABI " . self::ABI_VERSION);
            }
            self::$ffi = $ffi;
        }
        return self::$ffi;
    }

    public static function version(): string
    {
        // FFI returns a `const char *` result as a PHP string.
        return self::ffi()->stickless_version();
    }

    private static function check(int $status): void
    {
        if ($status !== self::OK) {
            throw new StickError($status, self::ffi()->stickless_result_str($status), self::lastError());
        }
    }

    /** Why the last call failed, if the library said. */
    private static function lastError(): ?string
    {
        $ffi = self::ffi();
        $length = $ffi->new('size_t');
        if ($ffi->stickless_last_error(null, 0, FFI::addr($length)) !== self::BUFFER_TOO_SMALL) {
            return null;
        }
        $buffer = $ffi->new('char[' . $length->cdata . ']');
        if ($ffi->stickless_last_error($buffer, $length->cdata, FFI::addr($length)) !== self::OK) {
            return null;
        }
        return FFI::string($buffer, $length->cdata);
    }

    private static function options(int $memoryLimit, int $itemSizeMax, int $nodeId, bool $noEvict, bool $noCas): FFI\CData
    {
        $options = self::ffi()->new('StickOptions');
        $options->struct_size = FFI::sizeof($options);
        $options->flags = ($noEvict ? 1 : 0) | ($noCas ? 2 : 0);
        $options->memory_limit = $memoryLimit;
        $options->item_size_max = $itemSizeMax;
        $options->node_id = $nodeId;
        return $options;
    }

    /** A store of this object's own, closed with it. 0 means the default. */
    public static function open(
        int $memoryLimit = 0,
        int $itemSizeMax = 0,
        int $nodeId = 0,
        bool $noEvict = false,
        bool $noCas = false,
    ): self {
        $ffi = self::ffi();
        $handle = $ffi->new('Stickless *');
        $options = self::options($memoryLimit, $itemSizeMax, $nodeId, $noEvict, $noCas);
        self::check($ffi->stickless_open(FFI::addr($options), FFI::addr($handle)));
        return new self($handle);
    }

    /**
     * The process-wide store called $name, created with these options on first use:
     * it outlives this object and the request, so the next request of this worker
     * finds what this one stored.
     */
    public static function openShared(
        string $name,
        int $memoryLimit = 0,
        int $itemSizeMax = 0,
        int $nodeId = 0,
        bool $noEvict = false,
        bool $noCas = false,
    ): self {
        $ffi = self::ffi();
        $handle = $ffi->new('Stickless *');
        $options = self::options($memoryLimit, $itemSizeMax, $nodeId, $noEvict, $noCas);
        self::check($ffi->stickless_open_shared($name, strlen($name), FFI::addr($options), FFI::addr($handle)));
        return new self($handle);
    }

    /** Lets the process-wide store $name go once its handles close; false if none. */
    public static function releaseShared(string $name): bool
    {
        $status = self::ffi()->stickless_release_shared($name, strlen($name));
        if ($status === self::NOT_FOUND) {
            return false;
        }
        self::check($status);
        return true;
    }

    public function close(): void
    {
        if ($this->handle !== null) {
            self::ffi()->stickless_close($this->handle);
            $this->handle = null;
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    private function handle(): FFI\CData
    {
        return $this->handle ?? throw new \LogicException('the store is closed');
    }

    /** @return array{0: ?string, 1: int, 2: int, 3: ?int} value, flags, cas, ttl */
    private function read(string $key, bool $details): array
    {
        $ffi = self::ffi();
        $length = $ffi->new('size_t');
        $flags = $details ? $ffi->new('uint32_t') : null;
        $cas = $details ? $ffi->new('uint64_t') : null;
        $ttl = $details ? $ffi->new('int64_t') : null;
        while (true) {
            $status = $ffi->stickless_get(
                $this->handle(),
                $key,
                strlen($key),
                $this->buffer,
                FFI::sizeof($this->buffer),
                FFI::addr($length),
                $flags === null ? null : FFI::addr($flags),
                $cas === null ? null : FFI::addr($cas),
                $ttl === null ? null : FFI::addr($ttl),
            );
            if ($status === self::BUFFER_TOO_SMALL) {
                $this->buffer = $ffi->new('char[' . $length->cdata . ']');
                continue;
            }
            if ($status === self::NOT_FOUND) {
                return [null, 0, 0, null];
            }
            self::check($status);
            $value = $length->cdata === 0 ? '' : FFI::string($this->buffer, $length->cdata);
            if (!$details) {
                return [$value, 0, 0, null];
            }
            return [$value, $flags->cdata, $cas->cdata, $ttl->cdata < 0 ? null : $ttl->cdata];
        }
    }

    /** The value of $key, or null. */
    public function get(string $key): ?string
    {
        return $this->read($key, false)[0];
    }

    /**
     * The item at $key with its flags, CAS unique and seconds to live (null: never
     * expires), or null.
     *
     * @return ?array{value: string, flags: int, cas: int, ttl: ?int}
     */
    public function getItem(string $key): ?array
    {
        [$value, $flags, $cas, $ttl] = $this->read($key, true);
        return $value === null ? null : ['value' => $value, 'flags' => $flags, 'cas' => $cas, 'ttl' => $ttl];
    }

    /** @return array{0: int, 1: int} status, the stored item's CAS unique */
    private function store(int $mode, string $key, string $value, int $flags, int $ttl, int $cas = 0): array
    {
        $ffi = self::ffi();
        $outCas = $ffi->new('uint64_t');
        $status = $ffi->stickless_store(
            $this->handle(), $mode, $key, strlen($key), $value, strlen($value), $flags, $ttl, $cas, FFI::addr($outCas)
        );
        return [$status, $outCas->cdata];
    }

    private static function stored(int $status): bool
    {
        if ($status === self::NOT_STORED) {
            return false;
        }
        self::check($status);
        return true;
    }

    /** Stores $value ($ttl seconds, 0: no expiry); returns the item's CAS unique. */
    public function set(string $key, string $value, int $flags = 0, int $ttl = 0): int
    {
        [$status, $cas] = $this->store(self::SET, $key, $value, $flags, $ttl);
        self::check($status);
        return $cas;
    }

    /** Stores only if $key holds nothing; false if it does. */
    public function add(string $key, string $value, int $flags = 0, int $ttl = 0): bool
    {
        return self::stored($this->store(self::ADD, $key, $value, $flags, $ttl)[0]);
    }

    /** Stores only if $key holds an item; false if not. */
    public function replace(string $key, string $value, int $flags = 0, int $ttl = 0): bool
    {
        return self::stored($this->store(self::REPLACE, $key, $value, $flags, $ttl)[0]);
    }

    /** Adds $value after the item's; false if there is no item. */
    public function append(string $key, string $value): bool
    {
        return self::stored($this->store(self::APPEND, $key, $value, 0, 0)[0]);
    }

    /** Adds $value before the item's; false if there is no item. */
    public function prepend(string $key, string $value): bool
    {
        return self::stored($this->store(self::PREPEND, $key, $value, 0, 0)[0]);
    }

    /**
     * Stores only if the item's CAS unique is still $cas: true if stored, false if it
     * changed, null if it is gone.
     */
    public function cas(string $key, string $value, int $cas, int $flags = 0, int $ttl = 0): ?bool
    {
        $status = $this->store(self::CAS, $key, $value, $flags, $ttl, $cas)[0];
        if ($status === self::EXISTS) {
            return false;
        }
        if ($status === self::NOT_FOUND) {
            return null;
        }
        self::check($status);
        return true;
    }

    /** Deletes $key; false if it held nothing. */
    public function delete(string $key): bool
    {
        $status = self::ffi()->stickless_delete($this->handle(), $key, strlen($key));
        if ($status === self::NOT_FOUND) {
            return false;
        }
        self::check($status);
        return true;
    }

    private function count(string $function, string $key, int $delta): ?int
    {
        $ffi = self::ffi();
        $out = $ffi->new('uint64_t');
        $status = $ffi->$function($this->handle(), $key, strlen($key), $delta, FFI::addr($out));
        if ($status === self::NOT_FOUND) {
            return null;
        }
        self::check($status);
        return $out->cdata;
    }

    /**
     * The number at $key plus $delta, or null if missing. The library wraps at 2^64;
     * PHP's int shows results past 2^63 as negative.
     */
    public function incr(string $key, int $delta = 1): ?int
    {
        return $this->count('stickless_incr', $key, $delta);
    }

    /** The number at $key minus $delta (not below 0), or null if missing. */
    public function decr(string $key, int $delta = 1): ?int
    {
        return $this->count('stickless_decr', $key, $delta);
    }

    /** A new time to live for $key; false if it holds nothing. */
    public function touch(string $key, int $ttl): bool
    {
        $status = self::ffi()->stickless_touch($this->handle(), $key, strlen($key), $ttl);
        if ($status === self::NOT_FOUND) {
            return false;
        }
        self::check($status);
        return true;
    }

    /**
     * Takes the lease lock $key for $lease seconds with $owner as its value: its
     * token, or null while another holds it. With a peer linked, the two nodes never
     * both grant it.
     */
    public function lock(string $key, string $owner, int $lease): ?int
    {
        $ffi = self::ffi();
        $token = $ffi->new('uint64_t');
        $status = $ffi->stickless_lock($this->handle(), $key, strlen($key), $owner, strlen($owner), $lease, FFI::addr($token));
        if ($status === self::EXISTS) {
            return null;
        }
        self::check($status);
        return $token->cdata;
    }

    /** Releases the lock $key if $token still holds it; false if not. */
    public function unlock(string $key, int $token): bool
    {
        $status = self::ffi()->stickless_unlock($this->handle(), $key, strlen($key), $token);
        if ($status === self::EXISTS || $status === self::NOT_FOUND) {
            return false;
        }
        self::check($status);
        return true;
    }

    /**
     * The lock $key: its token, milliseconds since it was taken and seconds of lease
     * left; null if nobody holds it.
     *
     * @return ?array{token: int, age_ms: int, ttl: int}
     */
    public function lockInfo(string $key): ?array
    {
        $ffi = self::ffi();
        $token = $ffi->new('uint64_t');
        $age = $ffi->new('uint64_t');
        $ttl = $ffi->new('int64_t');
        $status = $ffi->stickless_lock_info(
            $this->handle(), $key, strlen($key), FFI::addr($token), FFI::addr($age), FFI::addr($ttl)
        );
        if ($status === self::NOT_FOUND) {
            return null;
        }
        self::check($status);
        return ['token' => $token->cdata, 'age_ms' => $age->cdata, 'ttl' => $ttl->cdata];
    }

    /** Invalidates every item, now or in $delay seconds (and on every peer). */
    public function flush(int $delay = 0): void
    {
        self::check(self::ffi()->stickless_flush($this->handle(), $delay));
    }

    /** @return array<string, int> the store's counters */
    public function stats(): array
    {
        $ffi = self::ffi();
        $stats = $ffi->new('StickStats');
        $stats->struct_size = FFI::sizeof($stats);
        self::check($ffi->stickless_stats($this->handle(), FFI::addr($stats)));
        $fields = ['curr_items', 'total_items', 'bytes', 'limit_maxbytes', 'evictions', 'reclaimed'];
        return array_combine($fields, array_map(fn ($field) => $stats->$field, $fields));
    }

    /**
     * Starts the memcached listener and replication on this store with the daemon's
     * own flags, e.g. "-l 127.0.0.1 -p 11211 --peer 10.0.0.2:11212".
     */
    public function serve(string $args): void
    {
        self::check(self::ffi()->stickless_serve($this->handle(), $args, strlen($args)));
    }

    private function listenerPort(int $kind): ?int
    {
        $ffi = self::ffi();
        $port = $ffi->new('uint16_t');
        $status = $ffi->stickless_port($this->handle(), $kind, FFI::addr($port));
        if ($status === self::NOT_FOUND) {
            return null;
        }
        self::check($status);
        return $port->cdata;
    }

    /** The memcached port this store serves on, or null. */
    public function port(): ?int
    {
        return $this->listenerPort(0);
    }

    /** The port peers connect to, or null. */
    public function replicationPort(): ?int
    {
        return $this->listenerPort(1);
    }
}
