/* idempotency/idem_internal.h — the store object (the module's own; others use api.h). */
#ifndef O11Y_IDEM_INTERNAL_H
#define O11Y_IDEM_INTERNAL_H

#include "idempotency/api.h"

#include <pthread.h>

struct o11y_idem_store {
    const o11y_idem_store_ops *ops;
    void *impl;
    pthread_mutex_t error_lock;
    char last_error[160]; /* the backend's native error, for logs only */
};

/* SHA-256 over the pieces in order (pointer and length each), into out. */
void o11y__sha256(const o11y_str *pieces, size_t n, uint8_t out[32]);

#endif
