/* core/internal.h — the library's private toolkit: allocation, byte buffers, the JSON writer,
 * clocks and RFC 3339 time, random numbers and UUIDv7. Not installed, not exported. */
#ifndef O11Y_CORE_INTERNAL_H
#define O11Y_CORE_INTERNAL_H

#include "o11y/common.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define O11Y_LIKELY(x)    __builtin_expect(!!(x), 1)
#define O11Y_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define O11Y_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/*=== MARK: allocation (the only place that calls malloc/free: core/alloc.c) ===*/
void *o11y__malloc(size_t size);
void *o11y__calloc(size_t n, size_t size);
void *o11y__realloc(void *ptr, size_t size);
void o11y__free(void *ptr);
char *o11y__strndup(const char *s, size_t len);
char *o11y__strdup(const char *s);
/* Zeroed memory aligned to alignment (a power of two); free with o11y__free. */
void *o11y__aligned_calloc(size_t alignment, size_t size);

/*=== MARK: byte buffer ===*/
/* A byte buffer with a hard cap. Either growable (heap, grows up to max) or fixed (caller's
 * storage, cap == max). Appends past the cap set `overflow` and write nothing more, so a
 * formatter can append blindly and check once at the end. */
typedef struct o11y__buf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max;
    bool growable;
    bool heap; /* ptr is ours to free */
    bool overflow;
} o11y__buf;

void o11y__buf_init(o11y__buf *b, size_t max); /* growable, empty */
/* Growable, starting in the caller's storage (borrowed) and moving to the heap past it. */
void o11y__buf_init_inline(o11y__buf *b, char *storage, size_t size, size_t max);
void o11y__buf_init_fixed(o11y__buf *b, char *storage, size_t cap); /* borrows storage */
void o11y__buf_release(o11y__buf *b);                               /* frees heap storage */
bool o11y__buf_grow(o11y__buf *b, size_t extra);                    /* false: over max or ENOMEM */
/* Hands the heap storage to the caller (NUL-terminated) and resets b; NULL on failure. */
char *o11y__buf_take(o11y__buf *b, size_t *len);

static inline bool o11y__buf_reserve(o11y__buf *b, size_t extra)
{
    if (O11Y_LIKELY(b->cap - b->len >= extra && !b->overflow))
        return true;
    return o11y__buf_grow(b, extra);
}

static inline void o11y__buf_append(o11y__buf *b, const void *p, size_t n)
{
    if (O11Y_UNLIKELY(!o11y__buf_reserve(b, n)))
        return;
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
}

static inline void o11y__buf_putc(o11y__buf *b, char c)
{
    if (O11Y_UNLIKELY(!o11y__buf_reserve(b, 1)))
        return;
    b->ptr[b->len++] = c;
}

#define o11y__buf_lit(b, lit) o11y__buf_append((b), (lit), sizeof(lit) - 1)

static inline void o11y__buf_cstr(o11y__buf *b, const char *s)
{
    o11y__buf_append(b, s, strlen(s));
}

void o11y__buf_printf(o11y__buf *b, const char *fmt, ...) O11Y_PRINTF(2, 3);

/*=== MARK: arena ===*/
/* Bump allocation for one request's small strings. Starts in the caller's storage, then takes
 * chunks from the heap; nothing moves, so returned pointers stay valid until release. */
typedef struct o11y__arena_chunk o11y__arena_chunk;
typedef struct o11y__arena {
    char *ptr;
    size_t left;
    size_t total; /* bytes handed out, capped by max */
    size_t max;
    o11y__arena_chunk *chunks;
} o11y__arena;

void o11y__arena_init(o11y__arena *a, char *storage, size_t size, size_t max);
/* NULL past max or on ENOMEM. */
char *o11y__arena_alloc(o11y__arena *a, size_t n);
void o11y__arena_release(o11y__arena *a);

/*=== MARK: JSON writer ===*/
/* Hand-written rather than jansson's json_dumps because these run on every request and every
 * log line: they append straight into a caller's buffer with no tree and no allocation. */

/* Appends s as a JSON string with quotes: RFC 8259 escapes, control characters as \u00XX,
 * invalid UTF-8 replaced by U+FFFD, so no input can break the line or forge a field.
 * At most max_bytes of input are written (cut on a character boundary); SIZE_MAX: no limit. */
void o11y__json_str(o11y__buf *b, const char *s, size_t len, size_t max_bytes);
/* The same without the surrounding quotes. */
void o11y__json_str_body(o11y__buf *b, const char *s, size_t len, size_t max_bytes);
void o11y__json_i64(o11y__buf *b, int64_t v);
void o11y__json_u64(o11y__buf *b, uint64_t v);
/* Shortest round-trip-safe text for v; non-finite values become null. */
void o11y__json_f64(o11y__buf *b, double v);
/* v with exactly three decimals ("0.412"), for milliseconds. */
void o11y__json_fixed3(o11y__buf *b, double v);
/* True when s is valid UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF). */
bool o11y__utf8_valid(const char *s, size_t len);
/* Number of code points in valid UTF-8. */
size_t o11y__utf8_count(const char *s, size_t len);

/*=== MARK: time ===*/
int64_t o11y__now_real_ns(void);
int64_t o11y__now_mono_ns(void);
enum { O11Y__RFC3339_LEN = 24 }; /* "2026-11-27T10:30:00.123Z" */
/* Writes the RFC 3339 UTC form with milliseconds (no NUL). Caches the formatted second per
 * thread, so consecutive calls within one second cost a few stores. */
void o11y__rfc3339_ms(int64_t real_ns, char out[O11Y__RFC3339_LEN]);

/*=== MARK: random numbers and ids ===*/
/* Per-thread xoshiro256** seeded once from getrandom (and again in a forked child): no lock and
 * no system call per number. Not for secrets. */
uint64_t o11y__rand64(void);
enum { O11Y__UUID_LEN = 36 };
/* A lowercase UUIDv7 (RFC 9562) for the given Unix time in nanoseconds. */
void o11y__uuid7(int64_t unix_ns, char out[O11Y__UUID_LEN]);
extern const char o11y__hex_digits[16];
void o11y__hex_u64(uint64_t v, char out[16]);

/* The library's one hash for tables and identities (FNV-1a, 64 bits): h continues a hash (start
 * with O11Y__FNV_BASIS, or a random basis where a client must not aim at a bucket). Not for
 * anything that needs to resist forgery: SHA-256 does that (idempotency). */
#define O11Y__FNV_BASIS 0xCBF29CE484222325ull
static inline uint64_t o11y__fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}
/* n bytes as 2n lowercase hex digits and a NUL into out. */
void o11y__hex(const uint8_t *bytes, size_t n, char *out);

#endif
