/* backends/redis/connect.c — see connect.h; and o11y_redis_parse_url. */
#include "backends/redis/connect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*=== MARK: redis:// URLs ===*/

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes [p, p + len) into *out (advancing it); false on a bad escape or a NUL. */
static bool decode(const char *p, size_t len, char **out, char *end)
{
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '%') {
            if (i + 2 >= len)
                return false;
            int hi = hexval(p[i + 1]);
            int lo = hexval(p[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (*out >= end)
            return false;
        *(*out)++ = c;
    }
    if (*out >= end)
        return false;
    *(*out)++ = '\0';
    return true;
}

o11y_status o11y_redis_parse_url(const char *url, char *buf, size_t buf_len, o11y_redis_target *out)
{
    if (!url || !buf || !out)
        return O11Y_EINVAL;
    memset(out, 0, sizeof *out);
    if (strncmp(url, "redis://", 8) != 0)
        return O11Y_EINVAL; /* rediss:// too: this hiredis is built without TLS */
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    char *w = buf, *end = buf + buf_len;
    if (at) { /* [user][:password]@ */
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *user_end = colon ? colon : at;
        if (user_end > p) {
            out->user = w;
            if (!decode(p, (size_t)(user_end - p), &w, end))
                return O11Y_EINVAL;
        }
        if (colon) {
            out->password = w;
            if (!decode(colon + 1, (size_t)(at - colon - 1), &w, end))
                return O11Y_EINVAL;
        }
        p = at + 1;
    }
    const char *hp_end = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    if (*p == '[') { /* [IPv6]:port */
        const char *close = memchr(p, ']', (size_t)(hp_end - p));
        if (!close)
            return O11Y_EINVAL;
        out->host = w;
        if (!decode(p + 1, (size_t)(close - p - 1), &w, end))
            return O11Y_EINVAL;
        colon = close + 1 < hp_end && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(hp_end - p));
        out->host = w;
        if (!decode(p, (size_t)((colon ? colon : hp_end) - p), &w, end))
            return O11Y_EINVAL;
    }
    if (!out->host[0])
        return O11Y_EINVAL;
    out->port = 6379;
    if (colon) {
        char *e;
        errno = 0;
        unsigned long port = strtoul(colon + 1, &e, 10);
        if (e != hp_end || colon + 1 == hp_end || errno || port == 0 || port > 65535)
            return O11Y_EINVAL;
        out->port = (uint16_t)port;
    }
    if (slash && slash[1]) {
        char *e;
        errno = 0;
        unsigned long db = strtoul(slash + 1, &e, 10);
        if (*e || errno || db > 1000000 || slash[1] == '-' || slash[1] == '+')
            return O11Y_EINVAL;
        out->db = (unsigned)db;
    }
    return O11Y_OK;
}

/*=== MARK: connecting ===*/

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

bool redis_target_copy(const o11y_redis_target *t, redis_target *out)
{
    bool ok = true;
    *out = (redis_target){.port = t->port, .db = t->db};
    out->host = dup_or_null(t->host, &ok);
    out->user = dup_or_null(t->user, &ok);
    out->password = dup_or_null(t->password, &ok);
    if (!ok || !out->host)
        redis_target_free(out);
    return ok && out->host;
}

void redis_target_free(redis_target *t)
{
    free(t->host);
    free(t->user);
    if (t->password) { /* not left in freed memory */
        volatile char *p = t->password;
        while (*p)
            *p++ = 0;
        free(t->password);
    }
    *t = (redis_target){0};
}

/* Runs a command that must answer +OK; false with a reason (the server's words are left out
 * for AUTH: they could echo what was sent). */
static bool must_ok(redisContext *c, const char *what, char *error, size_t len, redisReply *r)
{
    bool ok = r && r->type == REDIS_REPLY_STATUS && r->str && strcmp(r->str, "OK") == 0;
    if (!ok)
        snprintf(error, len, "%s refused%s", what,
                 r && r->type == REDIS_REPLY_ERROR ? ""
                 : c->err                          ? ": connection failed"
                                                   : "");
    if (r)
        freeReplyObject(r);
    return ok;
}

redisContext *redis_target_connect(const redis_target *t, unsigned timeout_ms, char *error,
                                   size_t len)
{
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(t->host, t->port, tv);
    if (!c) {
        snprintf(error, len, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(error, len, "%s",
                 c->err == REDIS_ERR_IO && errno == ECONNREFUSED ? "connection refused"
                 : c->err == REDIS_ERR_IO &&
                         (errno == EAGAIN || errno == ETIMEDOUT || errno == EINPROGRESS)
                     ? "timeout"
                     : "connection failed");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    bool ok = true;
    if (t->password)
        ok = must_ok(c, "AUTH", error, len,
                     t->user ? redisCommand(c, "AUTH %s %s", t->user, t->password)
                             : redisCommand(c, "AUTH %s", t->password));
    if (ok && t->db)
        ok = must_ok(c, "SELECT", error, len, redisCommand(c, "SELECT %u", t->db));
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}
