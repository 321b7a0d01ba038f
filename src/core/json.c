/* core/json.c — the JSON writer used by log lines, envelopes and exposition.
 * Hand-written for speed (see internal.h); RFC 8259 section 7 for strings. */
#include "core/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* 0: copy as is; 1: ASCII that needs an escape; 2: first byte of a multi-byte sequence. */
static const uint8_t byte_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

const char o11y__hex_digits[16] = "0123456789abcdef";

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* True when none of the 8 bytes at p needs attention: no control character, no '"', no '\\',
 * nothing >= 0x80. Each test sets a byte's high bit where the byte may match (the borrow trick
 * can flag a byte next to a real match, never miss one), so a false answer is only ever
 * conservative: the byte loop then looks closer. */
static inline bool word_is_plain(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    uint64_t quote = v ^ (ONES * '"'), backslash = v ^ (ONES * '\\');
    uint64_t flags = ((v - ONES * 0x20) & ~v) | ((quote - ONES) & ~quote) |
                     ((backslash - ONES) & ~backslash) | v;
    return (flags & HIGHS) == 0;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629 section 4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

bool o11y__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

size_t o11y__utf8_count(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static void put_escape(o11y__buf *b, unsigned char c)
{
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    switch (c) {
    case '"':
        e[1] = '"';
        break;
    case '\\':
        e[1] = '\\';
        break;
    case '\n':
        e[1] = 'n';
        break;
    case '\r':
        e[1] = 'r';
        break;
    case '\t':
        e[1] = 't';
        break;
    case '\b':
        e[1] = 'b';
        break;
    case '\f':
        e[1] = 'f';
        break;
    default:
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = o11y__hex_digits[c >> 4];
        e[5] = o11y__hex_digits[c & 15];
        n = 6;
    }
    o11y__buf_append(b, e, n);
}

void o11y__json_str_body(o11y__buf *b, const char *s, size_t len, size_t max_bytes)
{
    const unsigned char *p = (const unsigned char *)s;
    bool truncated = false;
    if (len > max_bytes) {
        /* Cut on a character boundary: back up over continuation bytes of the cut character. */
        len = max_bytes;
        while (len > 0 && (p[len] & 0xC0) == 0x80)
            len--;
        truncated = true;
    }
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run + 8 <= len && word_is_plain(p + run))
            run += 8;
        while (run < len && byte_class[p[run]] == 0)
            run++;
        o11y__buf_append(b, p + i, run - i);
        i = run;
        if (i >= len)
            break;
        if (byte_class[p[i]] == 1) {
            put_escape(b, p[i]);
            i++;
            continue;
        }
        size_t n = utf8_seq(p + i, len - i);
        if (n) {
            o11y__buf_append(b, p + i, n);
            i += n;
        } else {
            o11y__buf_lit(b, "\xEF\xBF\xBD");
            i++;
        }
    }
    if (truncated)
        o11y__buf_lit(b, "\xE2\x80\xA6"); /* U+2026: the value was cut */
}

void o11y__json_str(o11y__buf *b, const char *s, size_t len, size_t max_bytes)
{
    o11y__buf_putc(b, '"');
    o11y__json_str_body(b, s, len, max_bytes);
    o11y__buf_putc(b, '"');
}

static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

static size_t decimal_digits(uint64_t v)
{
    size_t n = 1;
    for (; v >= 10000; v /= 10000)
        n += 4;
    return n + (v >= 10) + (v >= 100) + (v >= 1000);
}

/* Written in place, back to front, two digits per division: every access line has three numbers
 * and a request's processing time one more (a scratch copy cost 40 instructions each). */
void o11y__json_u64(o11y__buf *b, uint64_t v)
{
    size_t n = decimal_digits(v);
    if (O11Y_UNLIKELY(!o11y__buf_reserve(b, n)))
        return;
    char *end = b->ptr + b->len + n;
    b->len += n;
    while (v >= 100) {
        size_t pair = (size_t)(v % 100) * 2;
        v /= 100;
        *--end = digit_pairs[pair + 1];
        *--end = digit_pairs[pair];
    }
    if (v >= 10) {
        *--end = digit_pairs[v * 2 + 1];
        *--end = digit_pairs[v * 2];
    } else {
        *--end = (char)('0' + v);
    }
}

void o11y__json_i64(o11y__buf *b, int64_t v)
{
    if (v < 0) {
        o11y__buf_putc(b, '-');
        o11y__json_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        o11y__json_u64(b, (uint64_t)v);
    }
}

void o11y__json_f64(o11y__buf *b, double v)
{
    if (!isfinite(v)) {
        o11y__buf_lit(b, "null");
        return;
    }
    char tmp[32];
    /* %.17g round-trips every double; try the shorter %.15g first for readable output. */
    int n = snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof tmp, "%.17g", v);
    if (n > 0)
        o11y__buf_append(b, tmp, (size_t)n);
}

void o11y__json_fixed3(o11y__buf *b, double v)
{
    if (!isfinite(v) || v >= 9.2e15 || v <= -9.2e15) {
        o11y__json_f64(b, v);
        return;
    }
    if (v < 0) {
        o11y__buf_putc(b, '-');
        v = -v;
    }
    uint64_t thousandths = (uint64_t)(v * 1000.0 + 0.5);
    o11y__json_u64(b, thousandths / 1000);
    char frac[4] = {'.', (char)('0' + thousandths / 100 % 10), (char)('0' + thousandths / 10 % 10),
                    (char)('0' + thousandths % 10)};
    o11y__buf_append(b, frac, 4);
}
