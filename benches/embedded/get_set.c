/* Times gets and sets of 100-byte values, in-process through include/stickless.h or
 * over loopback to a memcached-protocol server; run by benches/embedded/main.rs.
 *
 *   get_set embedded KEYS OPS THREADS   a store in this process, THREADS threads
 *   get_set wire PORT KEYS OPS          one connection to 127.0.0.1:PORT, pipeline 1
 *
 * Prints one line: "get_ns G set_ns S get_mops GM set_mops SM", where G and S are
 * nanoseconds per operation on one thread, and GM and SM million operations per
 * second over all threads. Every reply is checked; a wrong one exits 1.
 */
#include "stickless.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

/* Row (a) of BENCHMARKS.md: memtier's keys, 100-byte values. */
#define VALUE_LEN 100
#define MAX_THREADS 16

static char value[VALUE_LEN];

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The same fixed scatter of key indexes as benches/micro.rs. */
static size_t scattered(size_t i, size_t keys) {
    return (size_t)((i * 0x9E3779B97F4A7C15ull) >> 7) % keys;
}

static int key_of(size_t n, char *key) {
    return sprintf(key, "memtier-%zu", n);
}

static void fail(const char *what) {
    fprintf(stderr, "get_set: %s\n", what);
    exit(1);
}

struct job {
    Stickless *store;
    size_t keys, ops, offset;
    double get_ns, set_ns;
    pthread_barrier_t *start;
};

static void *embedded_thread(void *arg) {
    struct job *job = arg;
    char key[32], buf[256];
    size_t len;
    pthread_barrier_wait(job->start);
    double begin = now_ns();
    for (size_t i = 0; i < job->ops; i++) {
        int key_len = key_of(scattered(i + job->offset, job->keys), key);
        if (stickless_get(job->store, key, (size_t)key_len, buf, sizeof buf, &len, NULL, NULL, NULL) != STICKLESS_OK ||
            len != VALUE_LEN)
            fail("a get missed");
    }
    double middle = now_ns();
    pthread_barrier_wait(job->start);
    middle = now_ns();
    for (size_t i = 0; i < job->ops; i++) {
        int key_len = key_of(scattered(i + job->offset, job->keys), key);
        if (stickless_set(job->store, key, (size_t)key_len, value, VALUE_LEN, 0, 0) != STICKLESS_OK)
            fail("a set failed");
    }
    double end = now_ns();
    job->get_ns = (middle - begin) / (double)job->ops;
    job->set_ns = (end - middle) / (double)job->ops;
    return NULL;
}

static void embedded(size_t keys, size_t ops, int threads) {
    Stickless *store = NULL;
    StickOptions options = {.struct_size = sizeof options, .memory_limit = 1024ull << 20};
    if (stickless_open(&options, &store) != STICKLESS_OK) fail("open");
    char key[32];
    for (size_t n = 0; n < keys; n++) {
        int key_len = key_of(n, key);
        if (stickless_set(store, key, (size_t)key_len, value, VALUE_LEN, 0, 0) != STICKLESS_OK) fail("load");
    }
    pthread_t ids[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){.store = store, .keys = keys, .ops = ops, .offset = (size_t)t * 7919, .start = &start};
        pthread_create(&ids[t], NULL, embedded_thread, &jobs[t]);
    }
    double get_ns = 0, set_ns = 0, get_rate = 0, set_rate = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        get_ns += jobs[t].get_ns / threads;
        set_ns += jobs[t].set_ns / threads;
        get_rate += 1e3 / jobs[t].get_ns;
        set_rate += 1e3 / jobs[t].set_ns;
    }
    printf("get_ns %.1f set_ns %.1f get_mops %.3f set_mops %.3f\n", get_ns, set_ns, get_rate, set_rate);
    stickless_close(store);
}

/* Sends `request` and reads until the reply ends with `end`; the reply's length. */
static size_t round_trip(int fd, const char *request, size_t request_len, const char *end, char *reply, size_t cap) {
    if (write(fd, request, request_len) != (ssize_t)request_len) fail("write");
    size_t used = 0, end_len = strlen(end);
    for (;;) {
        ssize_t n = read(fd, reply + used, cap - used);
        if (n <= 0) fail("read");
        used += (size_t)n;
        if (used >= end_len && memcmp(reply + used - end_len, end, end_len) == 0) return used;
        if (used == cap) fail("reply too long");
    }
}

static void wire(int port, size_t keys, size_t ops) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) fail("connect");
    char request[256], reply[512], key[32];
    for (size_t n = 0; n < keys; n++) {
        key_of(n, key);
        int len = sprintf(request, "set %s 0 0 %d noreply\r\n%.*s\r\n", key, VALUE_LEN, VALUE_LEN, value);
        if (write(fd, request, (size_t)len) != len) fail("load");
    }
    round_trip(fd, "mn\r\n", 4, "MN\r\n", reply, sizeof reply);
    double begin = now_ns();
    for (size_t i = 0; i < ops; i++) {
        key_of(scattered(i, keys), key);
        int len = sprintf(request, "get %s\r\n", key);
        size_t got = round_trip(fd, request, (size_t)len, "END\r\n", reply, sizeof reply);
        /* "VALUE <key> 0 100\r\n" + value + "\r\nEND\r\n" */
        if (got != strlen("VALUE  0 100\r\n") + strlen(key) + VALUE_LEN + 7) fail("a get missed");
    }
    double middle = now_ns();
    for (size_t i = 0; i < ops; i++) {
        key_of(scattered(i, keys), key);
        int len = sprintf(request, "set %s 0 0 %d\r\n%.*s\r\n", key, VALUE_LEN, VALUE_LEN, value);
        round_trip(fd, request, (size_t)len, "STORED\r\n", reply, sizeof reply);
    }
    double end = now_ns();
    close(fd);
    double get_ns = (middle - begin) / (double)ops, set_ns = (end - middle) / (double)ops;
    printf("get_ns %.1f set_ns %.1f get_mops %.3f set_mops %.3f\n", get_ns, set_ns, 1e3 / get_ns, 1e3 / set_ns);
}

int main(int argc, char **argv) {
    memset(value, 'x', sizeof value);
    if (argc == 5 && strcmp(argv[1], "embedded") == 0) {
        int threads = atoi(argv[4]);
        if (threads < 1 || threads > MAX_THREADS) fail("threads: 1 to 16");
        embedded(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), threads);
    } else if (argc == 5 && strcmp(argv[1], "wire") == 0) {
        wire(atoi(argv[2]), strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    } else {
        fail("usage: get_set embedded KEYS OPS THREADS | get_set wire PORT KEYS OPS");
    }
    return 0;
}
