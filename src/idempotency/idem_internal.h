/* idempotency/idem_internal.h — the store interface and the stored-response record. */
#ifndef O11Y_IDEM_INTERNAL_H
#define O11Y_IDEM_INTERNAL_H

#include "core/internal.h"
#include "o11y/idempotency.h"

#include <pthread.h>

enum { O11Y__IDEM_KEY_MAX = 255 };

struct o11y_idem_store {
    const o11y_idem_store_ops *ops;
    void *impl;
    pthread_mutex_t error_lock;
    char last_error[160]; /* the backend's native error, for logs only */
};

/* Copies the last backend error into out (for the log line of a store failure). */
void o11y__idem_store_last_error(o11y_idem_store *s, char *out, size_t len);

/* SHA-256 over the pieces in order (pointer and length each), into out. Never fails. */
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
uint64_t o11y_idem_token(void);

#endif
