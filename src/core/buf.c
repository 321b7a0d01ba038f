/* core/buf.c — capped byte buffers. */
#include "core/internal.h"

#include <stdarg.h>
#include <stdio.h>

void o11y__buf_init(o11y__buf *b, size_t max)
{
    *b = (o11y__buf){.max = max, .growable = true};
}

void o11y__buf_init_inline(o11y__buf *b, char *storage, size_t size, size_t max)
{
    /* One byte stays spare, as for heap storage, so o11y__buf_take can add a NUL. */
    *b = (o11y__buf){.ptr = storage, .cap = size - 1, .max = max, .growable = true};
}

void o11y__buf_init_fixed(o11y__buf *b, char *storage, size_t cap)
{
    *b = (o11y__buf){.ptr = storage, .cap = cap, .max = cap};
}

void o11y__buf_release(o11y__buf *b)
{
    if (b->heap)
        o11y__free(b->ptr);
    b->heap = false;
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
    char *p = b->heap ? o11y__realloc(b->ptr, cap) : o11y__malloc(cap);
    if (!p) {
        b->overflow = true;
        return false;
    }
    if (!b->heap && b->len)
        memcpy(p, b->ptr, b->len);
    b->ptr = p;
    b->heap = true;
    b->cap = cap - 1;
    return true;
}

char *o11y__buf_take(o11y__buf *b, size_t *len)
{
    if (b->overflow || !b->growable) {
        return NULL;
    }
    if (!b->heap && !o11y__buf_grow(b, 1))
        return NULL; /* moves inline (or absent) storage to the heap */
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

/*=== MARK: arena ===*/

struct o11y__arena_chunk {
    o11y__arena_chunk *next;
    char data[];
};

void o11y__arena_init(o11y__arena *a, char *storage, size_t size, size_t max)
{
    *a = (o11y__arena){.ptr = storage, .left = size, .max = max};
}

char *o11y__arena_alloc(o11y__arena *a, size_t n)
{
    if (n > a->max - a->total)
        return NULL;
    if (n > a->left) {
        size_t size = n > 1024 ? n : 1024;
        o11y__arena_chunk *c = o11y__malloc(sizeof *c + size);
        if (!c)
            return NULL;
        c->next = a->chunks;
        a->chunks = c;
        a->ptr = c->data;
        a->left = size;
    }
    char *p = a->ptr;
    a->ptr += n;
    a->left -= n;
    a->total += n;
    return p;
}

void o11y__arena_release(o11y__arena *a)
{
    while (a->chunks) {
        o11y__arena_chunk *c = a->chunks;
        a->chunks = c->next;
        o11y__free(c);
    }
    a->left = 0;
}
