/* trace/trace.c — trace ids in and out (CONTRACT section 2; W3C Trace Context level 1). */
#include "o11y/trace.h"

#include "core/internal.h"

static _Thread_local o11y_trace_ctx *current;

/* 1: allowed in X-Trace-Id, X-Job-Id and X-Project-Id. */
static const uint8_t id_char[256] = {
    ['-'] = 1, ['.'] = 1, [':'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

bool o11y_trace_id_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > O11Y_TRACE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char[(unsigned char)s[i]])
            return false;
    return true;
}

/*=== MARK: traceparent ===*/

static int lower_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Checks n lowercase hex digits; *all_zero tells whether every digit was '0'. */
static bool hex_field(const char *s, size_t n, bool *all_zero)
{
    bool zero = true;
    for (size_t i = 0; i < n; i++) {
        if (lower_hex(s[i]) < 0)
            return false;
        zero &= s[i] == '0';
    }
    if (all_zero)
        *all_zero = zero;
    return true;
}

o11y_status o11y_traceparent_parse(const char *s, size_t len, o11y_traceparent *out)
{
    bool zero;
    if (!s || !out || len < O11Y_TRACEPARENT_LEN)
        return O11Y_EINVAL;
    if (!hex_field(s, 2, NULL) || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return O11Y_EINVAL;
    int version = lower_hex(s[0]) * 16 + lower_hex(s[1]);
    if (version == 0xff)
        return O11Y_EINVAL;
    /* Version 00 has exactly four fields; a later version may append "-..." fields. */
    if (version == 0 ? len != O11Y_TRACEPARENT_LEN
                     : len > O11Y_TRACEPARENT_LEN && s[O11Y_TRACEPARENT_LEN] != '-')
        return O11Y_EINVAL;
    if (!hex_field(s + 3, 32, &zero) || zero)
        return O11Y_EINVAL;
    if (!hex_field(s + 36, 16, &zero) || zero)
        return O11Y_EINVAL;
    if (!hex_field(s + 53, 2, NULL))
        return O11Y_EINVAL;
    out->version = (uint8_t)version;
    memcpy(out->trace_id, s + 3, 32);
    out->trace_id[32] = '\0';
    memcpy(out->parent_id, s + 36, 16);
    out->parent_id[16] = '\0';
    out->flags = (uint8_t)(lower_hex(s[53]) * 16 + lower_hex(s[54]));
    return O11Y_OK;
}

/*=== MARK: contexts ===*/

static void new_span_id(char out[17])
{
    uint64_t v;
    do
        v = o11y__rand64();
    while (v == 0); /* an all-zero span id is invalid */
    o11y__hex_u64(v, out);
    out[16] = '\0';
}

/* Computed on demand rather than per request: only outgoing calls need it. */
void o11y_trace_w3c_id(const o11y_trace_ctx *ctx, char out[33])
{
    const char *s = ctx->trace_id;
    size_t len = ctx->trace_id_len, n = 0;
    bool ok =
        len == 32 || (len == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-');
    bool zero = true;
    for (size_t i = 0; ok && i < len; i++) {
        char c = s[i];
        if (c == '-' && len == 36)
            continue;
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (lower_hex(c) < 0)
            ok = false;
        else
            out[n++] = c;
        zero &= c == '0';
    }
    if (!ok || zero || n != 32) {
        /* Not 128 bits of hex: two FNV-1a hashes with different offsets, never all zero. */
        o11y__hex_u64(o11y__fnv1a(0xCBF29CE484222325ull, s, len), out);
        o11y__hex_u64(o11y__fnv1a(0x84222325CBF29CE4ull, s, len) | 1, out + 16);
    }
    out[32] = '\0';
}

static void set_id(char *dst, uint8_t *dst_len, const char *s, size_t len)
{
    memcpy(dst, s, len);
    dst[len] = '\0';
    *dst_len = (uint8_t)len;
}

void o11y_trace_new_id(char out[37])
{
    o11y__uuid7(o11y__now_real_ns(), out);
    out[36] = '\0';
}

void o11y_trace_ctx_new(o11y_trace_ctx *ctx)
{
    o11y_trace_ctx_from_headers(ctx, (o11y_str){0}, (o11y_str){0}, (o11y_str){0}, (o11y_str){0});
}

void o11y_trace_ctx_child(const o11y_trace_ctx *parent, o11y_trace_ctx *out)
{
    *out = *parent;
    memcpy(out->parent_span_id, parent->span_id, sizeof out->parent_span_id);
    new_span_id(out->span_id);
}

void o11y_trace_ctx_from_headers(o11y_trace_ctx *ctx, o11y_str x_trace_id, o11y_str traceparent,
                                 o11y_str x_job_id, o11y_str x_project_id)
{
    ctx->job_id[0] = ctx->project_id[0] = ctx->parent_span_id[0] = '\0';
    ctx->job_id_len = ctx->project_id_len = 0;
    ctx->trace_flags = 1;
    o11y_traceparent tp;
    bool have_tp =
        traceparent.ptr && o11y_traceparent_parse(traceparent.ptr, traceparent.len, &tp) == O11Y_OK;
    if (o11y_trace_id_valid(x_trace_id.ptr, x_trace_id.len)) {
        set_id(ctx->trace_id, &ctx->trace_id_len, x_trace_id.ptr, x_trace_id.len);
    } else if (have_tp) {
        set_id(ctx->trace_id, &ctx->trace_id_len, tp.trace_id, 32);
    } else {
        o11y_trace_new_id(ctx->trace_id);
        ctx->trace_id_len = 36;
    }
    if (have_tp) {
        memcpy(ctx->parent_span_id, tp.parent_id, 17);
        ctx->trace_flags = tp.flags;
    }
    /* A traceparent whose trace-id differs from a valid X-Trace-Id keeps the X-Trace-Id (it
     * wins by precedence); outgoing calls then carry the id derived from X-Trace-Id. */
    new_span_id(ctx->span_id);
    if (o11y_trace_id_valid(x_job_id.ptr, x_job_id.len))
        set_id(ctx->job_id, &ctx->job_id_len, x_job_id.ptr, x_job_id.len);
    if (o11y_trace_id_valid(x_project_id.ptr, x_project_id.len))
        set_id(ctx->project_id, &ctx->project_id_len, x_project_id.ptr, x_project_id.len);
}

o11y_status o11y_trace_ctx_set_job_id(o11y_trace_ctx *ctx, const char *s, size_t len)
{
    if (!ctx || !o11y_trace_id_valid(s, len))
        return O11Y_EINVAL;
    set_id(ctx->job_id, &ctx->job_id_len, s, len);
    return O11Y_OK;
}

o11y_status o11y_trace_ctx_set_project_id(o11y_trace_ctx *ctx, const char *s, size_t len)
{
    if (!ctx || !o11y_trace_id_valid(s, len))
        return O11Y_EINVAL;
    set_id(ctx->project_id, &ctx->project_id_len, s, len);
    return O11Y_OK;
}

o11y_trace_ctx *o11y_trace_current(void)
{
    return current;
}

o11y_trace_ctx *o11y_trace_set_current(o11y_trace_ctx *ctx)
{
    o11y_trace_ctx *prev = current;
    current = ctx;
    return prev;
}

void o11y_trace_format_traceparent(const o11y_trace_ctx *ctx, char out[56])
{
    memcpy(out, "00-", 3);
    char w3c[33];
    o11y_trace_w3c_id(ctx, w3c);
    memcpy(out + 3, w3c, 32);
    out[35] = '-';
    memcpy(out + 36, ctx->span_id, 16);
    out[52] = '-';
    out[53] = o11y__hex_digits[ctx->trace_flags >> 4];
    out[54] = o11y__hex_digits[ctx->trace_flags & 15];
    out[55] = '\0';
}
