/* core/buf.c — capped byte buffers. */
#include "core/internal.h"

#include <stdarg.h>
#include <stdio.h>

void o11y__buf_init(o11y__buf *b, size_t max)
{
    *b = (o11y__buf){.max = max, .growable = true};
}

void o11y__buf_init_fixed(o11y__buf *b, char *storage, size_t cap)
{
    *b = (o11y__buf){.ptr = storage, .cap = cap, .max = cap};
}

void o11y__buf_release(o11y__buf *b)
{
    if (b->growable)
        o11y__free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
    b->overflow = false;
}

bool o11y__buf_grow(o11y__buf *b, size_t extra)
{
    if (b->overflow)
        return false;
    /* Keep one spare byte so o11y__buf_take can always NUL-terminate. */
    if (!b->growable || extra > b->max - b->len) {
        b->overflow = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = o11y__realloc(b->ptr, cap);
    if (!p) {
        b->overflow = true;
        return false;
    }
    b->ptr = p;
    b->cap = cap - 1;
    return true;
}

char *o11y__buf_take(o11y__buf *b, size_t *len)
{
    if (b->overflow || !b->growable) {
        return NULL;
    }
    if (!b->ptr && !o11y__buf_grow(b, 1))
        return NULL;
    char *p = b->ptr;
    p[b->len] = '\0'; /* cap excludes the spare byte, so this is in bounds */
    if (len)
        *len = b->len;
    *b = (o11y__buf){.max = b->max, .growable = true};
    return p;
}

void o11y__buf_printf(o11y__buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        o11y__buf_append(b, tmp, (size_t)n);
        return;
    }
    if (!o11y__buf_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}
