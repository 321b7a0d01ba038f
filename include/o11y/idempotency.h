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
} o11y_idem_memory_config;

O11Y_API O11Y_WARN_UNUSED o11y_status
o11y_idem_store_memory(const o11y_idem_memory_config *cfg, o11y_idem_store **out /* OUT */);
/* A table in the SQLite database at path (created; WAL): durable across restarts. Expired rows
 * are purged in small batches. Returns O11Y_EBACKEND when the database cannot be opened. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_sqlite(const char *path,
                                                             o11y_idem_store **out /* OUT */);
/* The same, with the database's size cap (the service's --db-max-bytes; 0: none): the table
 * counts toward it. A full database refuses new keys (503); a response that no longer fits is
 * stored as its status alone, so the key stays completed. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_sqlite_capped(const char *path,
                                                                    int64_t max_bytes,
                                                                    o11y_idem_store **out
                                                                    /* OUT */);
/* A Redis server shared by instances (hiredis): lock by SET NX PX with an owner token; complete
 * and release are atomic Lua scripts; reconnects after the server restarts. Connects lazily:
 * an unreachable server is not an error here, it makes requests 503. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_redis(const char *host, uint16_t port,
                                                            o11y_idem_store **out /* OUT */);
/* NULL is a no-op. No request may be using the store. */
O11Y_API void o11y_idem_store_destroy(o11y_idem_store *s);

/* All-zero except store is a valid config. */
typedef struct o11y_idem_config {
    o11y_idem_store *store;    /* kept; must outlive the service */
    unsigned ttl_s;            /* how long a response is kept; 0: 3600 */
    unsigned lease_s;          /* how long a key stays locked without completing; 0: 60 */
    bool fail_open;            /* store down: run the handler unprotected instead of 503 */
    const char *client_header; /* e.g. "Authorization": a hash of its value joins the key's
                                  scope, so two clients never share a key; NULL: none */
    int64_t (*clock_ms)(void *ctx); /* Unix time in ms; NULL: the real clock (tests inject) */
    void *clock_ctx;
} o11y_idem_config;

/* Turns idempotency on for the service's POST, PUT and PATCH routes. Copies cfg (not the store).
 * Returns O11Y_OK or O11Y_EINVAL. Call before serving. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_service_idempotency(o11y_service *svc,
                                                               const o11y_idem_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
