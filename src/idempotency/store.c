/* idempotency/store.c — what every store shares: the error slot and lock tokens. */
#include "idempotency/idem_internal.h"

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
