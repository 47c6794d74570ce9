<?php
/**
 * PHP sessions in an embedded stickless node:
 *
 *     session_set_save_handler(new Stickless\SessionHandler(Stickless\Store::openShared('sessions')));
 *     session_start();
 *
 * Keys carry php-memcached's default prefix (`memcached.sess_prefix`,
 * "memc.sess.key.") and values are the raw session string with flags 0, as
 * php-memcached writes them: a peer daemon that this node replicates with serves the
 * same sessions to apps that use php-memcached's own handler.
 */

declare(strict_types=1);

namespace Stickless;

final class SessionHandler implements \SessionHandlerInterface, \SessionUpdateTimestampHandlerInterface
{
    /** php-memcached's default `memcached.sess_prefix`. */
    public const PREFIX = 'memc.sess.key.';

    private readonly int $lifetime;

    /** $lifetime in seconds; by default session.gc_maxlifetime. */
    public function __construct(private readonly Store $store, private readonly string $prefix = self::PREFIX, ?int $lifetime = null)
    {
        $this->lifetime = $lifetime ?? (int) ini_get('session.gc_maxlifetime');
    }

    public function open(string $path, string $name): bool
    {
        return true;
    }

    public function close(): bool
    {
        return true;
    }

    public function read(string $id): string|false
    {
        return $this->store->get($this->prefix . $id) ?? '';
    }

    public function write(string $id, string $data): bool
    {
        $this->store->set($this->prefix . $id, $data, 0, $this->lifetime);
        return true;
    }

    public function destroy(string $id): bool
    {
        $this->store->delete($this->prefix . $id);
        return true;
    }

    /** Items expire on their own: nothing to collect. */
    public function gc(int $max_lifetime): int|false
    {
        return 0;
    }

    /** With session.use_strict_mode, an id is accepted only if its session exists. */
    public function validateId(string $id): bool
    {
        return $this->store->get($this->prefix . $id) !== null;
    }

    /** With session.lazy_write, an unchanged session only has its lifetime renewed. */
    public function updateTimestamp(string $id, string $data): bool
    {
        return $this->store->touch($this->prefix . $id, $this->lifetime) || $this->write($id, $data);
    }
}
