/* Exercises libstickless through include/stickless.h, as a C host would; exits 0 when
 * every check holds. STICKLESS_TEST_DAEMON and STICKLESS_TEST_PEER name a stickless
 * daemon's memcached and replication addresses (127.0.0.1:port), which the embedded
 * node replicates with. Built and run under valgrind by tests/bindings.rs:
 *   gcc -std=c11 -Wall -Wextra -Werror -Iinclude bindings/c/test.c -Ltarget/debug -lstickless
 */
#include "stickless.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

#define CHECK_STATUS(call, expected)                                                      \
    do {                                                                                  \
        int32_t got_ = (call);                                                            \
        if (got_ != (expected)) {                                                         \
            fprintf(stderr, "%s:%d: %s gave %s, expected %s\n", __FILE__, __LINE__, #call, \
                    stickless_result_str(got_), stickless_result_str(expected));          \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

#define KEY(s) (s), (sizeof(s) - 1)

/* Sends one request to the memcached listener and reads until `end`. */
static void exchange(uint16_t port, const char *request, const char *end, char *reply, size_t reply_len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    size_t used = 0;
    reply[0] = 0;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        write(fd, request, strlen(request)) == (ssize_t)strlen(request)) {
        while (used + 1 < reply_len) {
            ssize_t n = read(fd, reply + used, reply_len - 1 - used);
            if (n <= 0) break;
            used += (size_t)n;
            reply[used] = 0;
            if (used >= strlen(end) && strcmp(reply + used - strlen(end), end) == 0) break;
        }
    }
    close(fd);
}

/* The port of a "127.0.0.1:port" environment variable, 0 when unset. */
static uint16_t env_port(const char *name) {
    const char *value = getenv(name);
    const char *colon = value ? strrchr(value, ':') : NULL;
    return colon ? (uint16_t)atoi(colon + 1) : 0;
}

/* How long a replicated write may take to show on the other node (valgrind is slow). */
#define CONVERGE_SECONDS 20

static int before_deadline(time_t deadline) {
    usleep(10 * 1000);
    return time(NULL) < deadline;
}

/* An embedded node that memcached clients reach over the wire, replicating both ways
 * with the daemon. */
static void replicate_with_daemon(void) {
    uint16_t daemon = env_port("STICKLESS_TEST_DAEMON"), peer = env_port("STICKLESS_TEST_PEER");
    CHECK(daemon != 0 && peer != 0);
    if (daemon == 0 || peer == 0) return;
    Stickless *node = NULL;
    CHECK_STATUS(stickless_open(NULL, &node), STICKLESS_OK);
    char args[128];
    int args_len = snprintf(args, sizeof args, "-l 127.0.0.1 -p 0 --repl-listen 127.0.0.1:0 --peer 127.0.0.1:%u", peer);
    CHECK_STATUS(stickless_serve(node, args, (size_t)args_len), STICKLESS_OK);

    CHECK_STATUS(stickless_set(node, KEY("c:sess"), KEY("user|s:5:\"carol\";"), 3, 0), STICKLESS_OK);
    const char expected[] = "VALUE c:sess 3 17\r\nuser|s:5:\"carol\";\r\nEND\r\n";
    char reply[256];
    time_t deadline = time(NULL) + CONVERGE_SECONDS;
    do exchange(daemon, "get c:sess\r\n", "END\r\n", reply, sizeof reply);
    while (strcmp(reply, expected) != 0 && before_deadline(deadline));
    CHECK(strcmp(reply, expected) == 0);

    exchange(daemon, "set c:back 0 0 4\r\nback\r\n", "\r\n", reply, sizeof reply);
    CHECK(strcmp(reply, "STORED\r\n") == 0);
    char buf[16];
    size_t len = 0;
    int32_t status;
    deadline = time(NULL) + CONVERGE_SECONDS;
    while ((status = stickless_get(node, KEY("c:back"), buf, sizeof buf, &len, NULL, NULL, NULL)) != STICKLESS_OK &&
           before_deadline(deadline)) {
    }
    CHECK_STATUS(status, STICKLESS_OK);
    CHECK(len == 4 && memcmp(buf, "back", 4) == 0);

    uint16_t port = 0;
    CHECK_STATUS(stickless_port(node, STICKLESS_PORT_MEMCACHED, &port), STICKLESS_OK);
    exchange(port, "get c:back\r\n", "END\r\n", reply, sizeof reply);
    CHECK(strcmp(reply, "VALUE c:back 0 4\r\nback\r\nEND\r\n") == 0);
    stickless_close(node);
}

int main(void) {
    CHECK(stickless_abi_version() == STICKLESS_ABI_VERSION);
    CHECK(strcmp(stickless_result_str(STICKLESS_NOT_FOUND), "STICKLESS_NOT_FOUND") == 0);
    CHECK(strcmp(stickless_result_str(12345), "STICKLESS_UNKNOWN") == 0);
    CHECK(strlen(stickless_version()) > 0);

    StickOptions options = {.struct_size = sizeof options, .memory_limit = 16 << 20};
    Stickless *store = NULL;
    CHECK_STATUS(stickless_open(&options, &store), STICKLESS_OK);
    CHECK(store != NULL);

    /* Binary keys and values: NULs included. */
    const char value[] = "user|s:5:\"alice\";\0n|i:1;";
    CHECK_STATUS(stickless_set(store, KEY("sess:a\0b"), value, sizeof value, 42, 60), STICKLESS_OK);
    char buf[64];
    size_t len = 0;
    uint32_t flags = 0;
    uint64_t cas = 0;
    int64_t ttl = 0;
    CHECK_STATUS(stickless_get(store, KEY("sess:a\0b"), buf, sizeof buf, &len, &flags, &cas, &ttl), STICKLESS_OK);
    CHECK(len == sizeof value && memcmp(buf, value, len) == 0);
    CHECK(flags == 42 && cas != 0 && ttl >= 59 && ttl <= 60);

    /* A short buffer reports the length and copies nothing; NULL/0 asks for it. */
    memset(buf, 'x', sizeof buf);
    CHECK_STATUS(stickless_get(store, KEY("sess:a\0b"), buf, 4, &len, NULL, NULL, NULL), STICKLESS_BUFFER_TOO_SMALL);
    CHECK(len == sizeof value && buf[0] == 'x');
    CHECK_STATUS(stickless_get(store, KEY("sess:a\0b"), NULL, 0, &len, NULL, NULL, NULL), STICKLESS_BUFFER_TOO_SMALL);
    CHECK_STATUS(stickless_get(store, KEY("missing"), buf, sizeof buf, &len, NULL, NULL, NULL), STICKLESS_NOT_FOUND);

    /* Bad input gets a status, never a crash. */
    CHECK_STATUS(stickless_get(NULL, KEY("k"), buf, sizeof buf, &len, NULL, NULL, NULL), STICKLESS_INVALID_ARGUMENT);
    CHECK_STATUS(stickless_set(store, NULL, 3, "v", 1, 0, 0), STICKLESS_INVALID_ARGUMENT);
    CHECK_STATUS(stickless_set(store, "", 0, "v", 1, 0, 0), STICKLESS_BAD_KEY);
    char long_key[251];
    memset(long_key, 'k', sizeof long_key);
    CHECK_STATUS(stickless_set(store, long_key, sizeof long_key, "v", 1, 0, 0), STICKLESS_BAD_KEY);
    CHECK_STATUS(stickless_set(store, long_key, 250, "v", 1, 0, 0), STICKLESS_OK);
    char *big = calloc(1, 1 << 20);
    CHECK_STATUS(stickless_set(store, KEY("big"), big, 1 << 20, 0, 0), STICKLESS_VALUE_TOO_LARGE);
    free(big);
    CHECK_STATUS(stickless_store(store, 99, KEY("k"), "v", 1, 0, 0, 0, NULL), STICKLESS_INVALID_ARGUMENT);
    StickOptions unknown = {.struct_size = 4};
    Stickless *none = NULL;
    CHECK_STATUS(stickless_open(&unknown, &none), STICKLESS_INVALID_ARGUMENT);
    StickOptions bad_flags = {.struct_size = sizeof bad_flags, .flags = 1u << 30};
    CHECK_STATUS(stickless_open(&bad_flags, &none), STICKLESS_INVALID_ARGUMENT);
    CHECK(none == NULL);
    stickless_close(NULL);

    /* The storage modes, as memcached's commands. */
    CHECK_STATUS(stickless_add(store, KEY("m"), "1", 1, 0, 0), STICKLESS_OK);
    CHECK_STATUS(stickless_add(store, KEY("m"), "2", 1, 0, 0), STICKLESS_NOT_STORED);
    CHECK_STATUS(stickless_replace(store, KEY("nope"), "2", 1, 0, 0), STICKLESS_NOT_STORED);
    CHECK_STATUS(stickless_append(store, KEY("m"), "23", 2), STICKLESS_OK);
    CHECK_STATUS(stickless_prepend(store, KEY("m"), "0", 1), STICKLESS_OK);
    CHECK_STATUS(stickless_get(store, KEY("m"), buf, sizeof buf, &len, NULL, &cas, NULL), STICKLESS_OK);
    CHECK(len == 4 && memcmp(buf, "0123", 4) == 0);
    uint64_t new_cas = 0;
    CHECK_STATUS(stickless_cas(store, KEY("m"), "x", 1, 0, 0, cas, &new_cas), STICKLESS_OK);
    CHECK(new_cas != cas && new_cas != 0);
    CHECK_STATUS(stickless_cas(store, KEY("m"), "y", 1, 0, 0, cas, NULL), STICKLESS_EXISTS);
    CHECK_STATUS(stickless_cas(store, KEY("gone"), "y", 1, 0, 0, cas, NULL), STICKLESS_NOT_FOUND);

    uint64_t number = 0;
    CHECK_STATUS(stickless_set(store, KEY("n"), "10", 2, 0, 0), STICKLESS_OK);
    CHECK_STATUS(stickless_incr(store, KEY("n"), 5, &number), STICKLESS_OK);
    CHECK(number == 15);
    CHECK_STATUS(stickless_decr(store, KEY("n"), 100, &number), STICKLESS_OK);
    CHECK(number == 0);
    CHECK_STATUS(stickless_incr(store, KEY("m"), 1, &number), STICKLESS_NON_NUMERIC);
    CHECK_STATUS(stickless_incr(store, KEY("none"), 1, &number), STICKLESS_NOT_FOUND);

    CHECK_STATUS(stickless_touch(store, KEY("n"), 1000), STICKLESS_OK);
    CHECK_STATUS(stickless_get(store, KEY("n"), buf, sizeof buf, &len, NULL, NULL, &ttl), STICKLESS_OK);
    CHECK(ttl >= 999 && ttl <= 1000);
    CHECK_STATUS(stickless_touch(store, KEY("none"), 1), STICKLESS_NOT_FOUND);
    CHECK_STATUS(stickless_get(store, KEY("m"), buf, sizeof buf, &len, NULL, NULL, &ttl), STICKLESS_OK);
    CHECK(ttl == -1);
    CHECK_STATUS(stickless_delete(store, KEY("m")), STICKLESS_OK);
    CHECK_STATUS(stickless_delete(store, KEY("m")), STICKLESS_NOT_FOUND);

    StickStats stats = {.struct_size = sizeof stats};
    CHECK_STATUS(stickless_stats(store, &stats), STICKLESS_OK);
    CHECK(stats.curr_items == 3 && stats.limit_maxbytes == 16 << 20);

    /* Served over the memcached protocol while the host keeps using it. */
    const char args[] = "-l 127.0.0.1 -p 0 -U 0";
    CHECK_STATUS(stickless_serve(store, args, sizeof args - 1), STICKLESS_OK);
    CHECK_STATUS(stickless_serve(store, args, sizeof args - 1), STICKLESS_ALREADY_SERVING);
    uint16_t port = 0;
    CHECK_STATUS(stickless_port(store, STICKLESS_PORT_MEMCACHED, &port), STICKLESS_OK);
    CHECK_STATUS(stickless_port(store, STICKLESS_PORT_REPLICATION, &port), STICKLESS_NOT_FOUND);
    char reply[256];
    exchange(port, "get n\r\n", "END\r\n", reply, sizeof reply);
    /* decr pads to the old length, as memcached does in place. */
    CHECK(strcmp(reply, "VALUE n 0 2\r\n0 \r\nEND\r\n") == 0);
    exchange(port, "set wire 7 0 2\r\nhi\r\n", "\r\n", reply, sizeof reply);
    CHECK(strcmp(reply, "STORED\r\n") == 0);
    CHECK_STATUS(stickless_get(store, KEY("wire"), buf, sizeof buf, &len, &flags, NULL, NULL), STICKLESS_OK);
    CHECK(len == 2 && memcmp(buf, "hi", 2) == 0 && flags == 7);

    /* The refusal below is logged once the host asks for the log. */
    CHECK_STATUS(stickless_log_to_stderr(KEY("error")), STICKLESS_OK);
    CHECK_STATUS(stickless_log_to_stderr(NULL, 0), STICKLESS_EXISTS);
    CHECK_STATUS(stickless_log_to_stderr("\xff", 1), STICKLESS_BAD_CONFIG);
    CHECK_STATUS(stickless_log_to_stderr(NULL, 1), STICKLESS_INVALID_ARGUMENT);
    const char bad_args[] = "--no-such-flag";
    Stickless *other = NULL;
    CHECK_STATUS(stickless_open(NULL, &other), STICKLESS_OK);
    CHECK_STATUS(stickless_serve(other, bad_args, sizeof bad_args - 1), STICKLESS_BAD_CONFIG);
    stickless_close(other);

    /* flush_all empties it. */
    CHECK_STATUS(stickless_flush(store, 0), STICKLESS_OK);
    CHECK_STATUS(stickless_get(store, KEY("wire"), buf, sizeof buf, &len, NULL, NULL, NULL), STICKLESS_NOT_FOUND);

    /* A shared store outlives its handles, as PHP needs across requests. */
    Stickless *first = NULL, *second = NULL;
    CHECK_STATUS(stickless_open_shared(KEY("sessions"), NULL, &first), STICKLESS_OK);
    CHECK_STATUS(stickless_set(first, KEY("s"), "kept", 4, 0, 0), STICKLESS_OK);
    stickless_close(first);
    CHECK_STATUS(stickless_open_shared(KEY("sessions"), NULL, &second), STICKLESS_OK);
    CHECK_STATUS(stickless_get(second, KEY("s"), buf, sizeof buf, &len, NULL, NULL, NULL), STICKLESS_OK);
    CHECK(len == 4 && memcmp(buf, "kept", 4) == 0);

    /* A child of fork gets a status from the parent's handle, not undefined behaviour. */
    /* The child reports through a pipe: under valgrind its exit code is valgrind's,
     * which counts the parent's threads (absent in a child) as leaked. */
    int report[2];
    CHECK(pipe(report) == 0);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        int32_t got = stickless_get(store, KEY("n"), buf, sizeof buf, &len, NULL, NULL, NULL);
        ssize_t written = write(report[1], &got, sizeof got);
        _exit(written == sizeof got ? 0 : 1);
    }
    int32_t in_child = STICKLESS_OK;
    CHECK(read(report[0], &in_child, sizeof in_child) == sizeof in_child);
    CHECK(in_child == STICKLESS_FORKED);
    waitpid(child, NULL, 0);
    close(report[0]);
    close(report[1]);

    /* Lease locks: a token, released only by its holder, with an age. */
    uint64_t token = 0, other_token = 0, info_token = 0, age_ms = 99;
    int64_t lease_left = 0;
    CHECK_STATUS(stickless_lock(store, KEY("lock:s1"), KEY("host:1"), 30, &token), STICKLESS_OK);
    CHECK(token != 0);
    CHECK_STATUS(stickless_lock(store, KEY("lock:s1"), KEY("host:2"), 30, &other_token), STICKLESS_EXISTS);
    CHECK_STATUS(stickless_lock_info(store, KEY("lock:s1"), &info_token, &age_ms, &lease_left), STICKLESS_OK);
    CHECK(info_token == token && age_ms < 60000 && lease_left > 0 && lease_left <= 30);
    CHECK_STATUS(stickless_get(store, KEY("lock:s1"), buf, sizeof buf, &len, NULL, NULL, NULL), STICKLESS_OK);
    CHECK(len == 6 && memcmp(buf, "host:1", 6) == 0);
    CHECK_STATUS(stickless_unlock(store, KEY("lock:s1"), token + 1), STICKLESS_EXISTS);
    CHECK_STATUS(stickless_unlock(store, KEY("lock:s1"), token), STICKLESS_OK);
    CHECK_STATUS(stickless_unlock(store, KEY("lock:s1"), token), STICKLESS_NOT_FOUND);
    CHECK_STATUS(stickless_lock_info(store, KEY("lock:s1"), NULL, NULL, NULL), STICKLESS_NOT_FOUND);
    CHECK_STATUS(stickless_lock(store, KEY("lock:s1"), KEY("host:2"), 0, &other_token), STICKLESS_INVALID_ARGUMENT);
    CHECK_STATUS(stickless_lock(store, KEY("lock:s1"), KEY("host:2"), 30, NULL), STICKLESS_OK);

    replicate_with_daemon();

    CHECK_STATUS(stickless_release_shared(KEY("sessions")), STICKLESS_OK);
    CHECK_STATUS(stickless_release_shared(KEY("sessions")), STICKLESS_NOT_FOUND);
    CHECK_STATUS(stickless_get(second, KEY("s"), buf, sizeof buf, &len, NULL, NULL, NULL), STICKLESS_OK);
    stickless_close(second);
    stickless_close(store);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
