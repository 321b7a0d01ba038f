/* idempotency/idem_internal.h — the store interface and the stored-response record. */
#ifndef O11Y_IDEM_INTERNAL_H
#define O11Y_IDEM_INTERNAL_H

#include "core/internal.h"
#include "o11y/idempotency.h"

#include <pthread.h>

enum { O11Y__IDEM_FP = 16, O11Y__IDEM_KEY_MAX = 255 };

/* Every stored record begins with the response status, 2 bytes little-endian. A store that
 * cannot keep a whole record (full, over a per-client share) keeps these 2 bytes: the key then
 * stays completed with its status, and its handler never runs again within the TTL. */
enum { O11Y__IDEM_STATUS_BYTES = 2 };

typedef enum o11y__idem_result {
    O11Y__IDEM_NEW,         /* locked for us: run the handler */
    O11Y__IDEM_REPLAY,      /* completed with the same fingerprint: the record is returned */
    O11Y__IDEM_IN_USE,      /* locked by a request in flight */
    O11Y__IDEM_REUSED,      /* the key was used with another request */
    O11Y__IDEM_FULL,        /* no room for a new key (memory store) */
    O11Y__IDEM_STORE_ERROR, /* the store did not answer */
} o11y__idem_result;

/* The key's identity in a store: a SHA-256 of its scope (method, route, client, key) as hex. */
typedef struct o11y__idem_key {
    char id[65];
    uint64_t client; /* who holds the key (address or principal, hashed): the fairness unit */
} o11y__idem_key;

typedef enum o11y__idem_stored {
    O11Y__IDEM_NOT_STORED,
    O11Y__IDEM_STORED,
    O11Y__IDEM_STATUS_ONLY,
} o11y__idem_stored;

typedef struct o11y__idem_store_ops {
    /* fp: the request's fingerprint. On REPLAY, *blob and *blob_len get the stored record
     * (owned: o11y__free). On NEW, *token identifies the lock for complete/release. */
    o11y__idem_result (*begin)(o11y_idem_store *s, const o11y__idem_key *k,
                               const uint8_t fp[O11Y__IDEM_FP], int64_t now_ms, int64_t lease_ms,
                               uint64_t *token, char **blob, size_t *blob_len);
    /* Stores the record for the key we hold. NOT_STORED when the store failed (the key stays
     * locked until its lease ends); STATUS_ONLY when only the record's status fit. */
    o11y__idem_stored (*complete)(o11y_idem_store *s, const o11y__idem_key *k, uint64_t token,
                     const uint8_t fp[O11Y__IDEM_FP], const char *blob, size_t blob_len,
                     int64_t now_ms, int64_t expires_ms);
    /* Drops the lock we hold (the handler answered 5xx). */
    void (*release)(o11y_idem_store *s, const o11y__idem_key *k, uint64_t token);
    void (*destroy)(o11y_idem_store *s);
} o11y__idem_store_ops;

struct o11y_idem_store {
    const o11y__idem_store_ops *ops;
    pthread_mutex_t error_lock;
    char last_error[160]; /* the backend's native error, for logs only */
};

void o11y__idem_store_init(o11y_idem_store *s, const o11y__idem_store_ops *ops);
void o11y__idem_store_error(o11y_idem_store *s, const char *fmt, ...) O11Y_PRINTF(2, 3);
/* Copies the last backend error into out (for the log line of a store failure). */
void o11y__idem_store_last_error(o11y_idem_store *s, char *out, size_t len);

/* SHA-256 over the pieces in order (pointer and length each), into out. The digest context is
 * kept per thread and the algorithm fetched once, so no allocation happens per call. Returns
 * false when OpenSSL fails. */
bool o11y__sha256(const o11y_str *pieces, size_t n, uint8_t out[32]);

/* The stored response (record.c has the byte layout). Decoded fields point into the blob. */
typedef struct o11y__idem_record {
    int status;
    o11y_str trace_id, content_type, location, job_id, project_id, body;
} o11y__idem_record;

typedef enum o11y__idem_record_kind {
    O11Y__IDEM_RECORD_BAD,         /* damaged: not a record */
    O11Y__IDEM_RECORD_STATUS_ONLY, /* completed; only the status was kept */
    O11Y__IDEM_RECORD_FULL,
} o11y__idem_record_kind;

/* Appends the record to b (check b->overflow). Field lengths must fit their prefixes (trace,
 * content type, job and project ids under 256 bytes, location under 65,536). */
void o11y__idem_record_encode(o11y__buf *b, const o11y__idem_record *r);
/* Appends the status-only record. */
void o11y__idem_record_encode_status(o11y__buf *b, int status);
/* Decodes blob; any input is safe (fuzzed: tests/fuzz/fuzz_idem_record.c). */
o11y__idem_record_kind o11y__idem_record_decode(const char *blob, size_t len,
                                                o11y__idem_record *out);

/* A fresh random lock token (never 0). */
uint64_t o11y__idem_token(void);

#endif
