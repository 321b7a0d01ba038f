/* core/alloc.c — the one file that calls the C allocator, so every allocation is findable. */
#include "core/internal.h"

#include <stdlib.h>

void *o11y__malloc(size_t size)
{
    return malloc(size ? size : 1);
}

void *o11y__calloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size ? size : 1);
}

void *o11y__realloc(void *ptr, size_t size)
{
    return realloc(ptr, size ? size : 1);
}

void o11y__free(void *ptr)
{
    free(ptr);
}

char *o11y__strndup(const char *s, size_t len)
{
    char *p = o11y__malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *o11y__strdup(const char *s)
{
    return s ? o11y__strndup(s, strlen(s)) : NULL;
}

void *o11y__aligned_calloc(size_t alignment, size_t size)
{
    size = (size + alignment - 1) / alignment * alignment;
    void *p = aligned_alloc(alignment, size);
    if (p)
        memset(p, 0, size);
    return p;
}
