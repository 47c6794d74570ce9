typedef enum StickStatus {
  STICKLESS_OK = 0,
  STICKLESS_NOT_FOUND = 1,
  STICKLESS_EXISTS = 2,
  STICKLESS_NOT_STORED = 3,
  STICKLESS_BUFFER_TOO_SMALL = 4,
  STICKLESS_NON_NUMERIC = 5,
  STICKLESS_INVALID_ARGUMENT = -1,
  STICKLESS_BAD_KEY = -2,
  STICKLESS_VALUE_TOO_LARGE = -3,
  STICKLESS_OUT_OF_MEMORY = -4,
  STICKLESS_FORKED = -5,
  STICKLESS_PANIC = -6,
  STICKLESS_IO_ERROR = -7,
  STICKLESS_BAD_CONFIG = -8,
  STICKLESS_ALREADY_SERVING = -9,
  STICKLESS_NO_MAJORITY = -10,
} StickStatus;

typedef enum StickOpenFlags {
  STICKLESS_OPEN_NO_EVICT = 1,
  STICKLESS_OPEN_NO_CAS = 2,
} StickOpenFlags;

typedef enum StickStoreMode {
  STICKLESS_SET = 1,
  STICKLESS_ADD = 2,
  STICKLESS_REPLACE = 3,
  STICKLESS_APPEND = 4,
  STICKLESS_PREPEND = 5,
  STICKLESS_CAS = 6,
} StickStoreMode;

typedef enum StickPortKind {
  STICKLESS_PORT_MEMCACHED = 0,
  STICKLESS_PORT_REPLICATION = 1,
} StickPortKind;

typedef struct Stickless Stickless;

typedef struct StickOptions {
  uint32_t struct_size;
  uint32_t flags;
  uint64_t memory_limit;
  uint32_t item_size_max;
  uint32_t node_id;
} StickOptions;

typedef struct StickStats {
  uint32_t struct_size;
  uint32_t reserved;
  uint64_t curr_items;
  uint64_t total_items;
  uint64_t bytes;
  uint64_t limit_maxbytes;
  uint64_t evictions;
  uint64_t reclaimed;
} StickStats;

const char *stickless_version(void);

uint32_t stickless_abi_version(void);

const char *stickless_result_str(int32_t status);

int32_t stickless_last_error(char *buf, size_t buf_len, size_t *out_len);

int32_t stickless_log_to_stderr(const char *filter, size_t filter_len);

int32_t stickless_open(const struct StickOptions *options, struct Stickless **out);

int32_t stickless_open_shared(const void *name,
                              size_t name_len,
                              const struct StickOptions *options,
                              struct Stickless **out);

int32_t stickless_release_shared(const void *name, size_t name_len);

void stickless_close(struct Stickless *handle);

int32_t stickless_get(const struct Stickless *handle,
                      const void *key,
                      size_t key_len,
                      void *buf,
                      size_t buf_len,
                      size_t *out_len,
                      uint32_t *out_flags,
                      uint64_t *out_cas,
                      int64_t *out_ttl);

int32_t stickless_store(const struct Stickless *handle,
                        int32_t mode,
                        const void *key,
                        size_t key_len,
                        const void *value,
                        size_t value_len,
                        uint32_t flags,
                        uint32_t ttl,
                        uint64_t cas,
                        uint64_t *out_cas);

int32_t stickless_set(const struct Stickless *handle,
                      const void *key,
                      size_t key_len,
                      const void *value,
                      size_t value_len,
                      uint32_t flags,
                      uint32_t ttl);

int32_t stickless_add(const struct Stickless *handle,
                      const void *key,
                      size_t key_len,
                      const void *value,
                      size_t value_len,
                      uint32_t flags,
                      uint32_t ttl);

int32_t stickless_replace(const struct Stickless *handle,
                          const void *key,
                          size_t key_len,
                          const void *value,
                          size_t value_len,
                          uint32_t flags,
                          uint32_t ttl);

int32_t stickless_append(const struct Stickless *handle,
                         const void *key,
                         size_t key_len,
                         const void *value,
                         size_t value_len);

int32_t stickless_prepend(const struct Stickless *handle,
                          const void *key,
                          size_t key_len,
                          const void *value,
                          size_t value_len);

int32_t stickless_cas(const struct Stickless *handle,
                      const void *key,
                      size_t key_len,
                      const void *value,
                      size_t value_len,
                      uint32_t flags,
                      uint32_t ttl,
                      uint64_t cas,
                      uint64_t *out_cas);

int32_t stickless_delete(const struct Stickless *handle, const void *key, size_t key_len);

int32_t stickless_lock(const struct Stickless *handle,
                       const void *key,
                       size_t key_len,
                       const void *owner,
                       size_t owner_len,
                       uint32_t lease,
                       uint64_t *out_token);

int32_t stickless_unlock(const struct Stickless *handle,
                         const void *key,
                         size_t key_len,
                         uint64_t token);

int32_t stickless_lock_info(const struct Stickless *handle,
                            const void *key,
                            size_t key_len,
                            uint64_t *out_token,
                            uint64_t *out_age_ms,
                            int64_t *out_ttl);

int32_t stickless_incr(const struct Stickless *handle,
                       const void *key,
                       size_t key_len,
                       uint64_t delta,
                       uint64_t *out_value);

int32_t stickless_decr(const struct Stickless *handle,
                       const void *key,
                       size_t key_len,
                       uint64_t delta,
                       uint64_t *out_value);

int32_t stickless_touch(const struct Stickless *handle,
                        const void *key,
                        size_t key_len,
                        uint32_t ttl);

int32_t stickless_flush(const struct Stickless *handle, uint32_t delay);

int32_t stickless_stats(const struct Stickless *handle, struct StickStats *out);

int32_t stickless_serve(const struct Stickless *handle, const char *args, size_t args_len);

int32_t stickless_port(const struct Stickless *handle, int32_t kind, uint16_t *out_port);
