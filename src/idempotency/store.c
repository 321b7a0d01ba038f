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
void o11y__sha256(const o11y_str *pieces, size_t n, uint8_t out[32])
{
    SHA2_CTX ctx;
    SHA256Init(&ctx);
    for (size_t i = 0; i < n; i++)
        SHA256Update(&ctx, (const uint8_t *)(pieces[i].ptr ? pieces[i].ptr : ""), pieces[i].len);
    SHA256Final(out, &ctx);
}

/*=== MARK: identities ===*/

void o11y__idem_key_make(o11y_idem_key *k, const char *method, o11y_str route, o11y_str principal,
                         o11y_str key)
{
    uint8_t digest[32];
    /* NUL and newline separate the pieces, so no two scopes hash the same bytes. */
    const o11y_str scope[] = {
        {method, strlen(method) + 1}, {route.ptr, route.len}, {"", 1}, principal, {"\n", 1}, key};
    o11y__sha256(scope, O11Y_ARRAY_LEN(scope), digest);
    o11y__hex(digest, sizeof digest, k->id);
}

void o11y__idem_fingerprint(uint8_t fp[O11Y_IDEM_FP_BYTES], const char *method, o11y_str path,
                            o11y_str query, o11y_str body)
{
    uint8_t digest[32];
    const o11y_str parts[] = {{method, strlen(method) + 1}, path, {"?", 1}, query, {"\n", 1}, body};
    o11y__sha256(parts, O11Y_ARRAY_LEN(parts), digest);
    memcpy(fp, digest, O11Y_IDEM_FP_BYTES);
}

/*=== MARK: the store's operations ===*/

o11y_idem_result o11y__idem_begin(o11y_idem_store *s, const o11y_idem_key *k,
                                  const uint8_t fp[O11Y_IDEM_FP_BYTES], int64_t now_ms,
                                  int64_t lease_ms, uint64_t *token, char **blob, size_t *blob_len)
{
    return s->ops->begin(s->impl, k, fp, now_ms, lease_ms, token, blob, blob_len);
}

o11y_idem_stored o11y__idem_complete(o11y_idem_store *s, const o11y_idem_key *k, uint64_t token,
                                     const uint8_t fp[O11Y_IDEM_FP_BYTES], const char *blob,
                                     size_t blob_len, int64_t now_ms, int64_t expires_ms)
{
    return s->ops->complete(s->impl, k, token, fp, blob, blob_len, now_ms, expires_ms);
}

void o11y__idem_release(o11y_idem_store *s, const o11y_idem_key *k, uint64_t token)
{
    s->ops->release(s->impl, k, token);
}
