/* idempotency/store.c — what every store shares: the error slot and lock tokens. */
#include "idempotency/idem_internal.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>

void o11y__idem_store_init(o11y_idem_store *s, const o11y__idem_store_ops *ops)
{
    s->ops = ops;
    pthread_mutex_init(&s->error_lock, NULL);
    s->last_error[0] = '\0';
}

void o11y__idem_store_error(o11y_idem_store *s, const char *fmt, ...)
{
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

uint64_t o11y__idem_token(void)
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
    pthread_mutex_destroy(&s->error_lock);
    s->ops->destroy(s);
}

/*=== MARK: SHA-256 ===*/

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;

static void free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void sha256_init(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); /* once, not per digest */
    pthread_key_create(&ctx_key, free_ctx);
}

bool o11y__sha256(const o11y_str *pieces, size_t n, uint8_t out[32])
{
    pthread_once(&sha256_once, sha256_init);
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (!ctx) {
        if (!(ctx = EVP_MD_CTX_new()))
            return false;
        pthread_setspecific(ctx_key, ctx); /* freed when the thread exits */
    }
    unsigned int len = 0;
    bool ok = sha256_md && EVP_DigestInit_ex(ctx, sha256_md, NULL);
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, pieces[i].ptr ? pieces[i].ptr : "", pieces[i].len);
    return ok && EVP_DigestFinal_ex(ctx, out, &len) && len == 32;
}
