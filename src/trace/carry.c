/* trace/carry.c — what an outgoing call passes on of a request's tracestate and baggage.
 *
 * Both are lists that a service forwards without owning them, so the rule is to pass on only
 * what is well formed: a member that does not parse is dropped on its own (one vendor's bad
 * entry does not cost the others theirs), and the output is rebuilt from the parsed pieces, so
 * no byte the grammar does not allow reaches an outgoing header. Written by hand: the two
 * grammars are a few character classes, and no Debian library parses them. */
#include "o11y/trace.h"

#include <stdbool.h>
#include <string.h>

enum { TRACESTATE_MEMBERS = 32, BAGGAGE_MEMBERS = 64 };

typedef struct span {
    const char *p;
    size_t n;
} span;

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

static span trim(span s)
{
    while (s.n && ows(s.p[0]))
        s.p++, s.n--;
    while (s.n && ows(s.p[s.n - 1]))
        s.n--;
    return s;
}

/* The next comma-separated item of *rest. */
static span next_item(span *rest)
{
    const char *comma = memchr(rest->p, ',', rest->n);
    size_t n = comma ? (size_t)(comma - rest->p) : rest->n;
    span item = {rest->p, n};
    rest->p += comma ? n + 1 : n;
    rest->n -= comma ? n + 1 : n;
    return item;
}

static bool lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool key_char(char c)
{
    return lcalpha(c) || digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* key = simple-key / multi-tenant-key (tenant-id "@" system-id). */
static bool tracestate_key(span k)
{
    const char *at = memchr(k.p, '@', k.n);
    if (!at) {
        if (k.n < 1 || k.n > 256 || !lcalpha(k.p[0]))
            return false;
        for (size_t i = 1; i < k.n; i++)
            if (!key_char(k.p[i]))
                return false;
        return true;
    }
    size_t tenant = (size_t)(at - k.p), system = k.n - tenant - 1;
    if (tenant < 1 || tenant > 241 || system < 1 || system > 14)
        return false;
    if (!lcalpha(k.p[0]) && !digit(k.p[0]))
        return false;
    for (size_t i = 1; i < tenant; i++)
        if (!key_char(k.p[i]))
            return false;
    if (!lcalpha(at[1]))
        return false;
    for (size_t i = 2; i <= system; i++)
        if (!key_char(at[i]))
            return false;
    return true;
}

/* value = 0*255(chr) nblk-chr: printable ASCII but ',' and '=', not ending in a space. */
static bool tracestate_value(span v)
{
    if (v.n < 1 || v.n > 256 || v.p[v.n - 1] == ' ')
        return false;
    for (size_t i = 0; i < v.n; i++) {
        char c = v.p[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return false;
    }
    return true;
}

static size_t put(char *out, size_t at, const char *s, size_t n)
{
    memcpy(out + at, s, n);
    return at + n;
}

size_t o11y_tracestate_normalize(const char *in, size_t len, char *out, size_t cap)
{
    if (!out || !cap)
        return 0;
    out[0] = '\0';
    if (!in || len > O11Y_TRACE_CARRIED_MAX)
        return 0;
    span keys[TRACESTATE_MEMBERS];
    size_t kept = 0, w = 0;
    span rest = {in, len};
    while (rest.n && kept < TRACESTATE_MEMBERS) {
        span m = trim(next_item(&rest));
        const char *eq = m.n ? memchr(m.p, '=', m.n) : NULL;
        if (!eq)
            continue; /* empty (allowed) or malformed */
        span k = {m.p, (size_t)(eq - m.p)}, v = {eq + 1, m.n - k.n - 1};
        if (!tracestate_key(k) || !tracestate_value(v))
            continue;
        bool seen = false;
        for (size_t i = 0; i < kept && !seen; i++)
            seen = keys[i].n == k.n && memcmp(keys[i].p, k.p, k.n) == 0;
        if (seen)
            continue; /* the first (left-most) entry of a key is the current one */
        if (w + (w ? 1 : 0) + m.n + 1 > cap)
            break;
        if (w)
            out[w++] = ',';
        w = put(out, w, m.p, m.n);
        keys[kept++] = k;
    }
    out[w] = '\0';
    return w;
}

/* tchar (RFC 9110 section 5.6.2). */
static bool token_char(char c)
{
    return lcalpha(c) || (c >= 'A' && c <= 'Z') || digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool token(span t)
{
    if (!t.n)
        return false;
    for (size_t i = 0; i < t.n; i++)
        if (!token_char(t.p[i]))
            return false;
    return true;
}

/* baggage-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E. */
static bool baggage_value(span v)
{
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\')
            return false;
    }
    return true;
}

/* key OWS "=" OWS value, or (for a property) a key alone. Writes the normalized form. */
static bool key_value(span s, bool key_alone_ok, char *out, size_t *w, size_t cap)
{
    const char *eq = memchr(s.p, '=', s.n);
    span k = trim((span){s.p, eq ? (size_t)(eq - s.p) : s.n});
    if (!token(k))
        return false;
    if (!eq) {
        if (!key_alone_ok || *w + k.n > cap)
            return false;
        *w = put(out, *w, k.p, k.n);
        return true;
    }
    span v = trim((span){eq + 1, s.n - (size_t)(eq + 1 - s.p)});
    if (!baggage_value(v) || *w + k.n + 1 + v.n > cap)
        return false;
    *w = put(out, *w, k.p, k.n);
    out[(*w)++] = '=';
    *w = put(out, *w, v.p, v.n);
    return true;
}

size_t o11y_baggage_normalize(const char *in, size_t len, char *out, size_t cap)
{
    if (!out || !cap)
        return 0;
    out[0] = '\0';
    if (!in || len > O11Y_TRACE_CARRIED_MAX)
        return 0;
    size_t kept = 0, w = 0, room = cap - 1; /* the NUL */
    span rest = {in, len};
    while (rest.n && kept < BAGGAGE_MEMBERS) {
        span m = trim(next_item(&rest));
        if (!m.n)
            continue;
        size_t start = w;
        if (w) {
            if (w + 1 > room)
                break;
            out[w++] = ',';
        }
        /* The member's pieces are separated by ';': the first is key=value, the rest
         * properties. */
        bool ok = true, first = true;
        span parts = m;
        while (ok) {
            const char *semi = memchr(parts.p, ';', parts.n);
            span piece = {parts.p, semi ? (size_t)(semi - parts.p) : parts.n};
            if (!first) {
                ok = w + 1 <= room;
                if (ok)
                    out[w++] = ';';
            }
            ok = ok && key_value(piece, !first, out, &w, room);
            first = false;
            if (!semi)
                break;
            parts.p = semi + 1;
            parts.n -= piece.n + 1;
        }
        if (!ok) {
            w = start; /* the member is dropped whole */
            continue;
        }
        kept++;
    }
    out[w] = '\0';
    return w;
}
