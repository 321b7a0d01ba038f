/* o11y/idempotency.h — exactly-once POST, PUT and PATCH with an Idempotency-Key (CONTRACT
 * section 4; the IETF Idempotency-Key draft), over a memory, SQLite or Redis store.
 *
 * With a store configured on a service, a request that carries a key is fingerprinted (method,
 * path, query and body), the key is locked while the handler runs, and the response is stored
 * for the TTL; a retry replays it without running the handler. A store that cannot answer makes
 * key-bearing requests 503 (fail closed) unless fail_open is set. */
#ifndef O11Y_IDEMPOTENCY_H
#define O11Y_IDEMPOTENCY_H

#include "o11y/common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct o11y_idem_store o11y_idem_store;
typedef struct o11y_service o11y_service;

/* The in-memory store: bounded; expired entries are reclaimed a few at a time as keys arrive.
 * Each client (the peer address, or the config's client_header principal) holds at most a
 * share of the entries and bytes; past it, its own oldest completed keys make room (responses
 * first, keeping their status; then the keys). Keys in flight are never evicted; a client whose
 * share is all in flight, or a store full of live keys, gets 503 for a new key. A response
 * that cannot be kept leaves its status: a retry is answered 422 (already completed) and the
 * handler never runs twice within the TTL. 0 means the default. */
typedef struct o11y_idem_memory_config {
    size_t max_entries;        /* 0: 100,000 */
    size_t max_bytes;          /* stored responses in all; 0: 64 MiB */
    size_t max_client_entries; /* one client's share; 0: max_entries / 16 */
    size_t max_client_bytes;   /* one client's share, and the largest response kept;
                                  0: max_bytes / 16 */
    O11Y_RESERVED;             /* zero: room to grow (common.h) */
} o11y_idem_memory_config;

/* Creates the memory store (cfg NULL: the defaults). Returns O11Y_OK, O11Y_EINVAL (a share
 * larger than the whole, over 2^28 entries) or O11Y_ENOMEM; *out is the caller's, freed with
 * o11y_idem_store_destroy. Thread-safe store. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_memory(const o11y_idem_memory_config *cfg,
                                                             o11y_idem_store **out /* OUT */);
/* The SQLite store (o11y/sqlite.h) and the Redis store (o11y/redis.h) are optional parts. */

/* Frees a store of any kind. NULL is a no-op. No request may be using the store. */
O11Y_API void o11y_idem_store_destroy(o11y_idem_store *s);

/*=== Writing a store (the SQLite and Redis backends use only this) ===*/

enum {
    O11Y_IDEM_FP_BYTES = 16, /* a request's fingerprint: SHA-256 of method, path, query, body */
    /* Every stored record begins with the response status, 2 bytes little-endian. A store that
     * cannot keep a whole record (full, over a per-client share) keeps these 2 bytes: the key
     * then stays completed with its status, and its handler never runs again within the TTL. */
    O11Y_IDEM_STATUS_BYTES = 2,
};

/* The key's identity in a store: a SHA-256 of its scope (method, route, principal, key) as 64
 * hex digits (the raw key never reaches a store), and who holds it (the peer address or the
 * principal, hashed: the unit of the memory store's fairness). */
typedef struct o11y_idem_key {
    char id[65];
    uint64_t client;
} o11y_idem_key;

typedef enum o11y_idem_result {
    O11Y_IDEM_NEW,         /* locked for the caller: run the handler */
    O11Y_IDEM_REPLAY,      /* completed with the same fingerprint: the record is returned */
    O11Y_IDEM_IN_USE,      /* locked by a request in flight */
    O11Y_IDEM_REUSED,      /* the key was used with another request */
    O11Y_IDEM_FULL,        /* no room for a new key */
    O11Y_IDEM_STORE_ERROR, /* the store did not answer */
} o11y_idem_result;

typedef enum o11y_idem_stored {
    O11Y_IDEM_NOT_STORED, /* failed: the key stays locked until its lease ends */
    O11Y_IDEM_STORED,
    O11Y_IDEM_STATUS_ONLY, /* only the record's first O11Y_IDEM_STATUS_BYTES were kept */
} o11y_idem_stored;

/* A store's operations; impl is the pointer given to o11y_idem_store_create. Each is called
 * from many threads at once. */
typedef struct o11y_idem_store_ops {
    /* Looks the key up and, when absent or expired, locks it for lease_ms with a fresh token
     * (o11y_idem_token). A live key with another fingerprint is REUSED (checked before IN_USE).
     * On REPLAY, *blob (malloc'd; the library frees it with free) and *blob_len get the
     * record. */
    o11y_idem_result (*begin)(void *impl, const o11y_idem_key *k,
                              const uint8_t fp[O11Y_IDEM_FP_BYTES], int64_t now_ms,
                              int64_t lease_ms, uint64_t *token, char **blob, size_t *blob_len);
    /* Stores the record (borrowed) for the key held with token, until expires_ms. */
    o11y_idem_stored (*complete)(void *impl, const o11y_idem_key *k, uint64_t token,
                                 const uint8_t fp[O11Y_IDEM_FP_BYTES], const char *blob,
                                 size_t blob_len, int64_t now_ms, int64_t expires_ms);
    /* Drops the lock held with token (the handler answered 5xx or 400). */
    void (*release)(void *impl, const o11y_idem_key *k, uint64_t token);
    /* Frees impl (o11y_idem_store_destroy). */
    void (*destroy)(void *impl);
} o11y_idem_store_ops;

/* Wraps a backend (ops kept, impl owned: freed by ops->destroy). O11Y_EINVAL or O11Y_ENOMEM
 * (impl is then not destroyed: the caller frees it). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_create(const o11y_idem_store_ops *ops,
                                                             void *impl,
                                                             o11y_idem_store **out /* OUT */);
/* Records the backend's last error (for the library's log line; never sent to a client).
 * Thread-safe. */
O11Y_API void o11y_idem_store_set_error(o11y_idem_store *s, const char *fmt, ...) O11Y_PRINTF(2, 3);
/* A fresh random lock token, never 0. Thread-safe. */
O11Y_API uint64_t o11y_idem_token(void);

/* All-zero except store is a valid config. */
typedef struct o11y_idem_config {
    o11y_idem_store *store;         /* kept; must outlive the service */
    unsigned ttl_s;                 /* how long a response is kept; 0: 3600 */
    unsigned lease_s;               /* how long a key stays locked without completing; 0: 60 */
    bool fail_open;                 /* store down: run the handler unprotected instead of 503 */
    const char *client_header;      /* e.g. "Authorization": a hash of its value joins the key's
                                       scope, so two clients never share a key; NULL: none */
    int64_t (*clock_ms)(void *ctx); /* Unix time in ms; NULL: the real clock (tests inject) */
    void *clock_ctx;
    O11Y_RESERVED; /* zero: room to grow (common.h) */
} o11y_idem_config;

/* Turns idempotency on for the service's POST, PUT and PATCH routes. Copies cfg (not the store).
 * Returns O11Y_OK or O11Y_EINVAL. Call before serving. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_idempotency(o11y_service *svc,
                                                               const o11y_idem_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
