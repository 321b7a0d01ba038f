/* idempotency/api.h — what the idempotency module offers the http pipeline's stage: the key's
 * identity, the request's fingerprint, the store's operations and the stored record. The store
 * object's insides stay in idem_internal.h. */
#ifndef O11Y_IDEMPOTENCY_API_H
#define O11Y_IDEMPOTENCY_API_H

#include "core/internal.h"
#include "o11y/idempotency.h"

enum { O11Y__IDEM_KEY_MAX = 255 };

/* The key's identity in a store: a SHA-256 of its scope (method, route, the principal, the key)
 * as 64 hex digits in k->id, so a store never sees the raw key. */
void o11y__idem_key_make(o11y_idem_key *k, const char *method, o11y_str route, o11y_str principal,
                         o11y_str key);
/* The request's fingerprint: SHA-256 of method, path, query and body, hashed where they lie. */
void o11y__idem_fingerprint(uint8_t fp[O11Y_IDEM_FP_BYTES], const char *method, o11y_str path,
                            o11y_str query, o11y_str body);

/* The store's operations (o11y_idem_store_ops), called through the store object. */
o11y_idem_result o11y__idem_begin(o11y_idem_store *s, const o11y_idem_key *k,
                                  const uint8_t fp[O11Y_IDEM_FP_BYTES], int64_t now_ms,
                                  int64_t lease_ms, uint64_t *token, char **blob, size_t *blob_len);
o11y_idem_stored o11y__idem_complete(o11y_idem_store *s, const o11y_idem_key *k, uint64_t token,
                                     const uint8_t fp[O11Y_IDEM_FP_BYTES], const char *blob,
                                     size_t blob_len, int64_t now_ms, int64_t expires_ms);
void o11y__idem_release(o11y_idem_store *s, const o11y_idem_key *k, uint64_t token);
/* Copies the last backend error into out (for the log line of a store failure). */
void o11y__idem_store_last_error(o11y_idem_store *s, char *out, size_t len);

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

#endif
