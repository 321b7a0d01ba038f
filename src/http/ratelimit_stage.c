/* http/ratelimit_stage.c — the rate-limit stage of the pipeline: after routing, before the body
 * is read and before an idempotency key is begun. A request under a policy counts against it;
 * over the limit it is answered 429 RATE_LIMITED at once (its body is never read, no key is
 * stored, the handler never runs). Every answer under a policy carries the IETF fields
 * (draft-ietf-httpapi-ratelimit-headers): RateLimit-Policy: "name";q=Q;w=W and
 * RateLimit: "name";r=R;t=T, and a 429 Retry-After. */
#include "http/http_internal.h"

#include "idempotency/api.h"
#include "o11y/ratelimit.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <strings.h>

enum { MAX_POLICIES = 8, MAX_PROXIES = 32, KEY_MAX = 512, XFF_MAX = 2048, XFF_HOPS = 32 };

typedef struct cidr {
    uint8_t addr[16];
    uint8_t len;  /* 4 or 16 */
    uint8_t bits; /* prefix length */
} cidr;

typedef struct policy {
    char name[33];
    unsigned quota, window_s;
    const o11y__route *route; /* NULL: every route but the exempt ones */
    unsigned methods;
    o11y_ratelimit_key key;
    char *header;
    o11y_ratelimit_key_fn key_fn;
    void *key_ctx;
    char policy_item[96]; /* "name";q=30;w=60 */
    o11y_series *s_allowed, *s_limited, *s_error;
    _Atomic int64_t logged_limited_ns, logged_error_ns;
} policy;

struct o11y__ratelimit {
    o11y_ratelimit_store *store;
    bool fail_closed;
    int64_t log_interval_ns;
    cidr proxies[MAX_PROXIES];
    size_t n_proxies;
    policy policies[MAX_POLICIES];
    size_t n_policies;
    o11y_metric *m_decisions;
};

/*=== MARK: configuration ===*/

static bool parse_cidr(const char *s, size_t len, cidr *out)
{
    char text[64];
    if (len == 0 || len >= sizeof text)
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, text, out->addr) == 1)
        out->len = 4;
    else if (inet_pton(AF_INET6, text, out->addr) == 1)
        out->len = 16;
    else
        return false;
    unsigned long bits = out->len * 8u;
    if (slash) {
        char *end;
        bits = strtoul(slash + 1, &end, 10);
        if (*end || slash[1] == '\0' || bits > out->len * 8u)
            return false;
    }
    out->bits = (uint8_t)bits;
    return true;
}

static o11y_status parse_proxies(o11y__ratelimit *rl, const char *list)
{
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && (*p == ' ')) /* "a, b" */
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        if (rl->n_proxies == MAX_PROXIES || !parse_cidr(p, len, &rl->proxies[rl->n_proxies]))
            return O11Y_EINVAL;
        rl->n_proxies++;
        p = comma ? comma + 1 : p + len;
    }
    return O11Y_OK;
}

o11y_status o11y_service_ratelimit(o11y_service *svc, const o11y_ratelimit_config *cfg)
{
    if (!svc || !cfg || !cfg->store || svc->ratelimit)
        return O11Y_EINVAL;
    o11y__ratelimit *rl = o11y__calloc(1, sizeof *rl);
    if (!rl)
        return O11Y_ENOMEM;
    rl->store = cfg->store;
    rl->fail_closed = cfg->fail_closed;
    rl->log_interval_ns = (int64_t)(cfg->log_interval_s ? cfg->log_interval_s : 10) * 1000000000;
    static const char *const labels[] = {"policy", "decision"};
    o11y_metric_opts o = {.name = "o11y_rate_limit_decisions_total",
                          .help = "Rate-limit decisions, by policy and decision",
                          .type = O11Y_COUNTER,
                          .label_names = labels,
                          .n_labels = 2};
    o11y_status st = parse_proxies(rl, cfg->trusted_proxies);
    if (st == O11Y_OK)
        st = o11y_metric_register_or_get(svc->metrics, &o, &rl->m_decisions);
    if (st != O11Y_OK) {
        o11y__free(rl);
        return st;
    }
    svc->ratelimit = rl;
    return O11Y_OK;
}

static bool name_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > 32)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static o11y_series *decision_series(o11y__ratelimit *rl, const char *name, const char *decision)
{
    o11y_series *s = NULL;
    const char *values[] = {name, decision};
    return o11y_metric_series(rl->m_decisions, values, &s) == O11Y_OK ? s : NULL;
}

o11y_status o11y_service_ratelimit_policy(o11y_service *svc, const o11y_ratelimit_policy *p)
{
    if (!svc || !p || !svc->ratelimit || !name_valid(p->name) || !p->quota || p->quota > 1000000 ||
        !p->window_s || p->window_s > 86400 ||
        (p->key == O11Y_RATELIMIT_BY_HEADER && (!p->header || !*p->header)) ||
        (p->key == O11Y_RATELIMIT_BY_FN && !p->key_fn) || (unsigned)p->key > O11Y_RATELIMIT_BY_FN)
        return O11Y_EINVAL;
    o11y__ratelimit *rl = svc->ratelimit;
    if (rl->n_policies == MAX_POLICIES)
        return O11Y_ELIMIT;
    const o11y__route *route = NULL;
    if (p->route) {
        for (size_t i = 0; i < svc->n_routes && !route; i++)
            if (strcmp(svc->routes[i]->template, p->route) == 0)
                route = svc->routes[i];
        if (!route)
            return O11Y_EINVAL;
    }
    policy *pol = &rl->policies[rl->n_policies];
    memset(pol, 0, sizeof *pol);
    if (p->header && !(pol->header = o11y__strdup(p->header)))
        return O11Y_ENOMEM;
    snprintf(pol->name, sizeof pol->name, "%s", p->name);
    const char *name = p->name; /* not pol->name: the item is written next to it */
    pol->quota = p->quota;
    pol->window_s = p->window_s;
    pol->route = route;
    pol->methods = p->methods;
    pol->key = p->key;
    pol->key_fn = p->key_fn;
    pol->key_ctx = p->key_ctx;
    snprintf(pol->policy_item, sizeof pol->policy_item, "\"%s\";q=%u;w=%u", name, p->quota,
             p->window_s);
    pol->s_allowed = decision_series(rl, pol->name, "allowed");
    pol->s_limited = decision_series(rl, pol->name, "limited");
    pol->s_error = decision_series(rl, pol->name, "store_error");
    rl->n_policies++;
    return O11Y_OK;
}

void o11y__ratelimit_free(o11y__ratelimit *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < rl->n_policies; i++)
        o11y__free(rl->policies[i].header);
    o11y__free(rl);
}

/*=== MARK: the client's address ===*/

static bool in_cidr(const cidr *c, const uint8_t *addr, size_t len)
{
    if (c->len != len)
        return false;
    size_t full = c->bits / 8u, rest = c->bits % 8u;
    if (memcmp(c->addr, addr, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

static bool trusted(const o11y__ratelimit *rl, const uint8_t *addr, size_t len)
{
    for (size_t i = 0; i < rl->n_proxies; i++)
        if (in_cidr(&rl->proxies[i], addr, len))
            return true;
    return false;
}

/* One X-Forwarded-For element as an address (IPv6 possibly in brackets); false when it is not
 * one (a name, a port, garbage). */
static bool xff_addr(const char *s, size_t len, uint8_t out[16], uint8_t *out_len)
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
        s++, len -= 2;
    char text[64];
    if (len == 0 || len >= sizeof text)
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    if (inet_pton(AF_INET, text, out) == 1) {
        *out_len = 4;
        return true;
    }
    if (inet_pton(AF_INET6, text, out) == 1) {
        *out_len = 16;
        return true;
    }
    return false;
}

/* The client: the peer, or behind a trusted proxy the first untrusted address of
 * X-Forwarded-For read from the right. A header that is too long, has too many hops or holds
 * anything but addresses is ignored as a whole: it never decides the key. */
static size_t client_key(const o11y_request *req, const o11y__ratelimit *rl, uint8_t out[16])
{
    memcpy(out, req->peer, req->peer_len);
    size_t len = req->peer_len;
    if (!len || !rl->n_proxies || !trusted(rl, req->peer, len))
        return len;
    o11y_str xff = o11y_req_header(req, "X-Forwarded-For");
    if (!xff.ptr || xff.len == 0 || xff.len > XFF_MAX)
        return len;
    uint8_t hops[XFF_HOPS][16], hop_len[XFF_HOPS];
    size_t n = 0;
    for (const char *p = xff.ptr, *end = xff.ptr + xff.len; p <= end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        if (n == XFF_HOPS || !xff_addr(p, (size_t)(item_end - p), hops[n], &hop_len[n]))
            return len; /* malformed or huge: the peer decides */
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    for (size_t i = n; i-- > 0;) {
        if (i == 0 || !trusted(rl, hops[i], hop_len[i])) {
            memcpy(out, hops[i], hop_len[i]);
            return hop_len[i];
        }
    }
    return len;
}

/* The policy's key for req into buf: 'c' + the client's address bytes, 'h' + the first 16 bytes
 * of SHA-256 of a header's value (never the value itself), or 'f' + the service's own key. 0:
 * this policy does not limit req. */
static size_t policy_key(policy *p, o11y_request *req, const o11y__ratelimit *rl, char *buf)
{
    size_t n = strlen(p->name) + 1;
    memcpy(buf, p->name, n); /* the policy's name and a NUL: policies never share a key */
    if (p->key == O11Y_RATELIMIT_BY_FN) {
        size_t k = p->key_fn(req, buf + n + 1, KEY_MAX - n - 1, p->key_ctx);
        if (!k || k > KEY_MAX - n - 1)
            return 0;
        buf[n] = 'f';
        return n + 1 + k;
    }
    if (p->key == O11Y_RATELIMIT_BY_HEADER) {
        o11y_str v = o11y_req_header(req, p->header);
        if (v.ptr && v.len) {
            uint8_t fp[O11Y_IDEM_FP_BYTES];
            o11y__idem_fingerprint(fp, "", (o11y_str){p->header, strlen(p->header)}, (o11y_str){0},
                                   v);
            buf[n] = 'h';
            memcpy(buf + n + 1, fp, sizeof fp);
            return n + 1 + sizeof fp;
        }
    }
    uint8_t addr[16];
    size_t len = client_key(req, rl, addr);
    buf[n] = 'c';
    memcpy(buf + n + 1, addr, len);
    return n + 1 + len;
}

/*=== MARK: the stage ===*/

static bool exempt_route(const o11y__route *r)
{
    return r &&
           (strncmp(r->template, "/health", 7) == 0 || strncmp(r->template, "/metrics", 8) == 0);
}

static bool applies(const policy *p, const o11y_request *req, bool preflight)
{
    if (p->methods && !(p->methods & req->method))
        return false;
    if (p->route)
        return p->route == req->route;
    return req->route && !exempt_route(req->route) && !preflight;
}

/* At most one line per interval for a kind of event (the others are counted by the metric). */
static bool log_due(_Atomic int64_t *last, int64_t interval)
{
    int64_t now = o11y__now_mono_ns(), prev = atomic_load_explicit(last, memory_order_relaxed);
    return (!prev || now - prev >= interval) && atomic_compare_exchange_strong(last, &prev, now);
}

/* Adds a header to the answer; a full header list (16 entries, which these answers never
 * reach) leaves it out rather than failing the request. */
static bool header(o11y_response *res, const char *name, const char *value)
{
    return o11y_res_header(res, name, value) == O11Y_OK;
}

static void append(char *dst, size_t cap, size_t *len, const char *s)
{
    int n = snprintf(dst + *len, cap - *len, "%s%s", *len ? ", " : "", s);
    if (n > 0 && (size_t)n < cap - *len)
        *len += (size_t)n;
}

bool o11y__ratelimit_check(o11y__exchange *ex, bool body_follows)
{
    o11y_request *req = &ex->req;
    o11y_service *svc = req->svc;
    o11y__ratelimit *rl = svc->ratelimit;
    if (!rl || !rl->n_policies)
        return false;
    bool preflight = req->method == O11Y_OPTIONS &&
                     o11y_req_header(req, "Access-Control-Request-Method").ptr != NULL;
    char policies[8 * 100], states[8 * 100];
    size_t plen = 0, slen = 0;
    unsigned retry_after = 0;
    const policy *refused_by = NULL;
    bool store_failed = false;
    for (size_t i = 0; i < rl->n_policies; i++) {
        policy *p = &rl->policies[i];
        if (!applies(p, req, preflight))
            continue;
        char key[KEY_MAX];
        size_t key_len = policy_key(p, req, rl, key);
        if (!key_len)
            continue;
        o11y_ratelimit_decision d;
        o11y_status st = o11y_ratelimit_decide(rl->store, key, key_len, p->quota, p->window_s, &d);
        if (st != O11Y_OK) {
            if (p->s_error)
                o11y_counter_inc(p->s_error);
            if (log_due(&p->logged_error_ns, rl->log_interval_ns))
                o11y_log_va(svc->logger, O11Y_LOG_WARN, "rate_limit_store_error",
                            rl->fail_closed ? "rate-limit store unavailable: refusing"
                                            : "rate-limit store unavailable: letting through",
                            O11Y_STR("policy", p->name), O11Y__END);
            store_failed = true;
            continue;
        }
        char state[96];
        snprintf(state, sizeof state, "\"%s\";r=%u;t=%u", p->name, d.remaining, d.reset_s);
        append(policies, sizeof policies, &plen, p->policy_item);
        append(states, sizeof states, &slen, state);
        if (d.allowed) {
            if (p->s_allowed)
                o11y_counter_inc(p->s_allowed);
            continue;
        }
        if (p->s_limited)
            o11y_counter_inc(p->s_limited);
        if (d.retry_after_s > retry_after)
            retry_after = d.retry_after_s;
        refused_by = p;
        if (log_due(&p->logged_limited_ns, rl->log_interval_ns)) {
            /* The key is never logged: its hash tells a client's lines apart. */
            char key_hash[17];
            o11y__hex_u64(o11y__fnv1a(O11Y__FNV_BASIS, key, key_len), key_hash);
            key_hash[16] = '\0';
            o11y_trace_ctx *prev = o11y_trace_set_current(&req->trace);
            o11y_log_va(svc->logger, O11Y_LOG_WARN, "rate_limited", "rate_limited",
                        O11Y_STR("policy", p->name), O11Y_STR("key_hash", key_hash),
                        O11Y_INT("retry_after_s", d.retry_after_s), O11Y__END);
            o11y_trace_set_current(prev);
        }
    }
    o11y_response *res = &ex->res;
    if (plen) {
        policies[plen] = states[slen] = '\0';
        header(res, "RateLimit-Policy", policies);
        header(res, "RateLimit", states);
    }
    if (refused_by) {
        char value[16];
        snprintf(value, sizeof value, "%u", retry_after ? retry_after : 1);
        o11y_res_fail(res, &o11y_err_RATE_LIMITED,
                      json_pack("{s:s,s:i}", "policy", refused_by->name, "retryAfterSeconds",
                                (int)(retry_after ? retry_after : 1)),
                      "Too many requests; retry after %s s", value);
        header(res, "Retry-After", value);
    } else if (store_failed && rl->fail_closed) {
        o11y_res_fail(res, &o11y_err_SERVICE_UNAVAILABLE, NULL, "rate-limit store unavailable");
        header(res, "Retry-After", "1");
    } else {
        return false;
    }
    /* Answered before the body: nothing of it is read, and a connection that would still carry
     * it is closed. */
    req->answer_now = true;
    res->close = body_follows;
    return true;
}
