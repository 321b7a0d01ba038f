/* Tests for trace/trace.c: CONTRACT section 2 and W3C Trace Context. */
#include "o11y/trace.h"

#include "core/internal.h"

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define S(lit) ((o11y_str){(lit), sizeof(lit) - 1})
#define NONE   ((o11y_str){NULL, 0})

static const char valid_tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void id_validity(void **state)
{
    (void)state;
    assert_true(o11y_trace_id_valid("abc-DEF_1.2:3", 13));
    char long_id[129];
    memset(long_id, 'a', sizeof long_id);
    assert_true(o11y_trace_id_valid(long_id, 128));
    assert_false(o11y_trace_id_valid(long_id, 129));
    assert_false(o11y_trace_id_valid("", 0));
    assert_false(o11y_trace_id_valid(NULL, 3));
    assert_false(o11y_trace_id_valid("a b", 3));
    assert_false(o11y_trace_id_valid("a\r\nb", 4));
    assert_false(o11y_trace_id_valid("a\"b", 3));
    assert_false(o11y_trace_id_valid("a\\b", 3));
    assert_false(o11y_trace_id_valid("caf\xC3\xA9", 5));
}

static void traceparent_strict(void **state)
{
    (void)state;
    o11y_traceparent tp;
    assert_int_equal(o11y_traceparent_parse(valid_tp, strlen(valid_tp), &tp), O11Y_OK);
    assert_string_equal(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(tp.parent_id, "00f067aa0ba902b7");
    assert_int_equal(tp.flags, 1);
    static const char *const bad[] = {
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* uppercase */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero parent */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* 00 is exactly 55 */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   /* short */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* later version, no '-' */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(o11y_traceparent_parse(bad[i], strlen(bad[i]), &tp), O11Y_EINVAL);
    /* A later version may carry more fields after a '-'. */
    const char *v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
    assert_int_equal(o11y_traceparent_parse(v1, strlen(v1), &tp), O11Y_OK);
}

static bool is_uuid7(const char *s)
{
    if (strlen(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
        return false;
    for (int i = 0; i < 36; i++)
        if (s[i] != '-' && !strchr("0123456789abcdef", s[i]))
            return false;
    return s[14] == '7' && strchr("89ab", s[19]) != NULL;
}

static void precedence(void **state)
{
    (void)state;
    o11y_trace_ctx ctx;
    o11y_trace_ctx_from_headers(&ctx, S("my-trace"), S(valid_tp), NONE, NONE);
    assert_string_equal(ctx.trace_id, "my-trace");
    assert_string_equal(ctx.parent_span_id, "00f067aa0ba902b7");

    o11y_trace_ctx_from_headers(&ctx, S("bad trace\r\n"), S(valid_tp), NONE, NONE);
    assert_string_equal(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    char w3c[33];
    o11y_trace_w3c_id(&ctx, w3c);
    assert_string_equal(w3c, "4bf92f3577b34da6a3ce929d0e0e4736");

    o11y_trace_ctx_from_headers(&ctx, NONE, S("00-garbage"), S("job_1"), S("proj\n1"));
    assert_true(is_uuid7(ctx.trace_id));
    assert_int_equal(ctx.trace_id_len, 36);
    assert_string_equal(ctx.job_id, "job_1");
    assert_string_equal(ctx.project_id, "");
    assert_int_equal(ctx.project_id_len, 0);
    assert_int_equal(strlen(ctx.span_id), 16);
}

static void outgoing_traceparent_keeps_the_128_bits(void **state)
{
    (void)state;
    o11y_trace_ctx ctx;
    o11y_trace_ctx_from_headers(&ctx, S("0193F0A2-7C1E-7D3A-9B1C-2F4E5D6A7B8C"), NONE, NONE, NONE);
    char tp[56];
    o11y_trace_format_traceparent(&ctx, tp);
    assert_memory_equal(tp, "00-0193f0a27c1e7d3a9b1c2f4e5d6a7b8c-", 36);
    o11y_traceparent parsed;
    assert_int_equal(o11y_traceparent_parse(tp, strlen(tp), &parsed), O11Y_OK);
    assert_string_equal(parsed.parent_id, ctx.span_id);

    /* Not a UUID or 32 hex digits: a valid id derived from it, the same in every service. */
    o11y_trace_ctx_from_headers(&ctx, S("trace_abc123"), NONE, NONE, NONE);
    o11y_trace_format_traceparent(&ctx, tp);
    assert_int_equal(o11y_traceparent_parse(tp, strlen(tp), &parsed), O11Y_OK);
    o11y_trace_ctx other;
    o11y_trace_ctx_from_headers(&other, S("trace_abc123"), NONE, NONE, NONE);
    char w3c[33];
    o11y_trace_w3c_id(&other, w3c);
    assert_string_equal(parsed.trace_id, w3c);
    o11y_trace_ctx_from_headers(&other, S("00000000000000000000000000000000"), NONE, NONE, NONE);
    o11y_trace_w3c_id(&other, w3c);
    assert_string_not_equal(w3c, "00000000000000000000000000000000");
}

static void ids_are_unique_uuid7(void **state)
{
    (void)state;
    enum { N = 20000 };
    static char ids[N][37];
    for (int i = 0; i < N; i++) {
        o11y_trace_new_id(ids[i]);
        assert_true(is_uuid7(ids[i]));
    }
    /* The time (48-bit milliseconds, then 12 bits of the millisecond in rand_a) never goes
     * backwards within a thread. */
    for (int i = 1; i < N; i++)
        assert_true(memcmp(ids[i - 1], ids[i], 18) <= 0);
    for (int i = 1; i < N; i += 997)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
}

static void *other_thread(void *arg)
{
    (void)arg;
    return o11y_trace_current();
}

static void current_context_is_per_thread(void **state)
{
    (void)state;
    o11y_trace_ctx ctx;
    o11y_trace_ctx_new(&ctx);
    assert_null(o11y_trace_set_current(&ctx));
    assert_ptr_equal(o11y_trace_current(), &ctx);
    pthread_t t;
    void *seen = &ctx;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &seen);
    assert_null(seen);
    assert_ptr_equal(o11y_trace_set_current(NULL), &ctx);
    assert_null(o11y_trace_current());
}

static void setters_validate(void **state)
{
    (void)state;
    o11y_trace_ctx ctx;
    o11y_trace_ctx_new(&ctx);
    assert_int_equal(o11y_trace_ctx_set_job_id(&ctx, "job_1", 5), O11Y_OK);
    assert_int_equal(o11y_trace_ctx_set_job_id(&ctx, "job 2", 5), O11Y_EINVAL);
    assert_string_equal(ctx.job_id, "job_1");
    assert_int_equal(o11y_trace_ctx_set_project_id(&ctx, "p\"", 2), O11Y_EINVAL);
    assert_int_equal(ctx.project_id_len, 0);
}

static void a_child_is_a_new_span_of_the_same_trace(void **state)
{
    (void)state;
    o11y_trace_ctx parent, child;
    const char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    o11y_trace_ctx_from_headers(&parent, (o11y_str){0}, (o11y_str){tp, sizeof tp - 1},
                                (o11y_str){"job_1", 5}, (o11y_str){"proj_1", 6});
    o11y_trace_ctx_child(&parent, &child);
    assert_string_equal(child.trace_id, parent.trace_id);
    assert_string_equal(child.job_id, "job_1");
    assert_string_equal(child.project_id, "proj_1");
    assert_int_equal(child.trace_flags, 1);
    assert_string_equal(child.parent_span_id, parent.span_id);
    assert_string_not_equal(child.span_id, parent.span_id);
    assert_int_equal(strspn(child.span_id, "0123456789abcdef"), 16);
    /* Its traceparent names the same trace and the child's span. */
    char out[56];
    o11y_trace_format_traceparent(&child, out);
    assert_memory_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
    assert_memory_equal(out + 36, child.span_id, 16);
}

static const char *ts(const char *in)
{
    static char out[O11Y_TRACE_CARRIED_MAX + 1];
    size_t n = o11y_tracestate_normalize(in, strlen(in), out, sizeof out);
    assert_int_equal(n, strlen(out));
    assert_true(n <= strlen(in));
    return out;
}

static void tracestate_keeps_only_valid_members(void **state)
{
    (void)state;
    assert_string_equal(ts("congo=t61rcWkgMzE"), "congo=t61rcWkgMzE");
    assert_string_equal(ts(" rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE\t"),
                        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    assert_string_equal(ts("a=1,,b=2, ,"), "a=1,b=2"); /* empty members are allowed */
    assert_string_equal(ts("tenant1@vendor=x,t@v-2*/=y"), "tenant1@vendor=x,t@v-2*/=y");
    /* Each invalid member is dropped on its own. */
    assert_string_equal(ts("Upper=1,ok=2"), "ok=2"); /* uppercase key */
    assert_string_equal(ts("1abc=1,ok=2"), "ok=2");  /* simple key starts with a digit */
    assert_string_equal(ts("k=a=b,ok=2"), "ok=2");   /* '=' in the value */
    assert_string_equal(ts("k=,ok=2"), "ok=2");      /* empty value */
    assert_string_equal(ts("novalue,ok=2"), "ok=2"); /* no '=' */
    assert_string_equal(ts("k=\x01,ok=2"), "ok=2");  /* control character */
    assert_string_equal(ts("t@=1,@v=1,t@Vend=1,ok=2"), "ok=2");
    assert_string_equal(ts("t@abcdefghijklmno=1,ok=2"), "ok=2"); /* system-id over 14 */
    assert_string_equal(ts("dup=1,other=2,dup=3"), "dup=1,other=2");
    assert_string_equal(ts("\"evil\"\r\nX-Injected: 1"), "");
    /* At most 32 members, the left-most. */
    char many[33 * 8 + 1] = "", want[32 * 8] = "";
    for (int i = 0; i < 33; i++) {
        char m[16];
        snprintf(m, sizeof m, "%sk%d=v", i ? "," : "", i);
        strcat(many, m);
        if (i < 32)
            strcat(want, m);
    }
    assert_string_equal(ts(many), want);
    /* Over 8,192 bytes: dropped whole. */
    static char huge[O11Y_TRACE_CARRIED_MAX + 2];
    memset(huge, 'a', sizeof huge - 1);
    memcpy(huge, "k=", 2);
    huge[sizeof huge - 1] = '\0';
    assert_string_equal(ts(huge), "");
    /* A key of 256 characters is valid, 257 is not. */
    char key[300];
    memset(key, 'k', 257);
    memcpy(key + 256, "=v", 3);
    assert_string_equal(ts(key), key);
    memset(key, 'k', 257);
    memcpy(key + 257, "=v", 3);
    assert_string_equal(ts(key), "");
    /* An output buffer too small keeps what fits, whole members only. */
    char small[8];
    assert_int_equal(o11y_tracestate_normalize("a=1,b=2,c=3", 11, small, sizeof small), 7);
    assert_string_equal(small, "a=1,b=2");
    assert_int_equal(o11y_tracestate_normalize(NULL, 3, small, sizeof small), 0);
    assert_string_equal(small, "");
}

static const char *bg(const char *in)
{
    static char out[O11Y_TRACE_CARRIED_MAX + 1];
    size_t n = o11y_baggage_normalize(in, strlen(in), out, sizeof out);
    assert_int_equal(n, strlen(out));
    assert_true(n <= strlen(in));
    return out;
}

static void baggage_keeps_only_valid_members(void **state)
{
    (void)state;
    assert_string_equal(bg("userId=alice"), "userId=alice");
    assert_string_equal(bg(" userId = alice , isProduction=false"),
                        "userId=alice,isProduction=false");
    assert_string_equal(bg("k=v%2C1;prop1;p2 = x"), "k=v%2C1;prop1;p2=x");
    assert_string_equal(bg("bad key=1,ok=2"), "ok=2");
    assert_string_equal(bg("k=\"q\",ok=2"), "ok=2");
    assert_string_equal(bg("k=a b,ok=2"), "ok=2");
    assert_string_equal(bg("k=v;bad prop,ok=2"), "ok=2");
    assert_string_equal(bg("novalue,ok=2"), "ok=2"); /* a member needs a value */
    assert_string_equal(bg("k=\\,ok=2"), "ok=2");
    assert_string_equal(bg(",,"), "");
    assert_string_equal(bg("k=\r\nX: 1"), "");
}

/* The word-at-a-time hex of ids against printf, on the edges and a million random values. */
static void hex_u64_matches_printf(void **state)
{
    (void)state;
    uint64_t edges[] = {0,
                        1,
                        9,
                        10,
                        15,
                        16,
                        0xA0,
                        0xFF,
                        0x9999999999999999ull,
                        0xAAAAAAAAAAAAAAAAull,
                        0x0123456789ABCDEFull,
                        0xFEDCBA9876543210ull,
                        UINT64_MAX};
    char want[17], got[17] = {0};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        snprintf(want, sizeof want, "%016" PRIx64, edges[i]);
        o11y__hex_u64(edges[i], got);
        assert_string_equal(got, want);
    }
    for (int i = 0; i < 1000000; i++) {
        uint64_t v = o11y__rand64();
        snprintf(want, sizeof want, "%016" PRIx64, v);
        o11y__hex_u64(v, got);
        if (memcmp(got, want, 16) != 0)
            fail_msg("%016" PRIx64 ": %.16s", v, got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hex_u64_matches_printf),
        cmocka_unit_test(id_validity),
        cmocka_unit_test(traceparent_strict),
        cmocka_unit_test(precedence),
        cmocka_unit_test(outgoing_traceparent_keeps_the_128_bits),
        cmocka_unit_test(ids_are_unique_uuid7),
        cmocka_unit_test(current_context_is_per_thread),
        cmocka_unit_test(setters_validate),
        cmocka_unit_test(a_child_is_a_new_span_of_the_same_trace),
        cmocka_unit_test(tracestate_keeps_only_valid_members),
        cmocka_unit_test(baggage_keeps_only_valid_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
