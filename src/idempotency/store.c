/* idempotency/store.c — what every store shares: the error slot and lock tokens. */
#include "idempotency/idem_internal.h"

#include <sha2.h>
#include <stdarg.h>
#include <stdio.h>

o11y_status o11y_idem_store_create(const o11y_idem_store_ops *ops, void *impl,
                                   o11y_idem_store **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    if (!ops || !ops->begin || !ops->complete || !ops->release || !ops->destroy)
        return O11Y_EINVAL;
    o11y_idem_store *s = o11y__calloc(1, sizeof *s);
    if (!s)
        return O11Y_ENOMEM;
    s->ops = ops;
    s->impl = impl;
    pthread_mutex_init(&s->error_lock, NULL);
    *out = s;
    return O11Y_OK;
}

void o11y_idem_store_set_error(o11y_idem_store *s, const char *fmt, ...)
{
    if (!s || !fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&s->error_lock);
    vsnprintf(s->last_error, sizeof s->last_error, fmt, ap);
    pthread_mutex_unlock(&s->error_lock);
    va_end(ap);
}

void o11y__idem_store_last_error(o11y_idem_store *s, char *out, size_t len)
{
    pthread_mutex_lock(&s->error_lock);
    snprintf(out, len, "%s", s->last_error);
    pthread_mutex_unlock(&s->error_lock);
}

uint64_t o11y_idem_token(void)
{
    uint64_t t;
    do
        t = o11y__rand64();
    while (t == 0);
    return t;
}

void o11y_idem_store_destroy(o11y_idem_store *s)
{
    if (!s)
        return;
    s->ops->destroy(s->impl);
    pthread_mutex_destroy(&s->error_lock);
    o11y__free(s);
}

/*=== MARK: SHA-256 ===*/

/* libmd (the BSD message-digest library, Debian's libmd0) rather than OpenSSL: the core needs
 * one hash, and a hello-world consumer should not load libcrypto for it. No allocation, no
 * per-thread state: the context lives on the stack. */
bool o11y__sha256(const o11y_str *pieces, size_t n, uint8_t out[32])
{
    SHA2_CTX ctx;
    SHA256Init(&ctx);
    for (size_t i = 0; i < n; i++)
        SHA256Update(&ctx, (const uint8_t *)(pieces[i].ptr ? pieces[i].ptr : ""), pieces[i].len);
    SHA256Final(out, &ctx);
    return true;
}
