/* Tests for core/json.c and core/buf.c: the writer every log line and envelope goes through. */
#include "core/internal.h"

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>

static char out[4096];

static const char *render(const char *s, size_t len, size_t max)
{
    o11y__buf b;
    o11y__buf_init_fixed(&b, out, sizeof out - 1);
    o11y__json_str(&b, s, len, max);
    out[b.len] = '\0';
    return out;
}

static void escapes_quotes_backslashes_and_controls(void **state)
{
    (void)state;
    assert_string_equal(render("a\"b\\c", 5, SIZE_MAX), "\"a\\\"b\\\\c\"");
    assert_string_equal(render("\n\r\t\b\f", 5, SIZE_MAX), "\"\\n\\r\\t\\b\\f\"");
    assert_string_equal(render("\x01\x1f", 2, SIZE_MAX), "\"\\u0001\\u001f\"");
    assert_string_equal(render("a\0b", 3, SIZE_MAX), "\"a\\u0000b\"");
}

static void keeps_valid_utf8(void **state)
{
    (void)state;
    const char *s = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
    assert_string_equal(render(s, strlen(s), SIZE_MAX),
                        "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
}

static void replaces_invalid_utf8(void **state)
{
    (void)state;
    /* A lone continuation byte, an overlong '/', a surrogate, a byte past U+10FFFF, a cut
     * sequence at the end. */
    assert_string_equal(render("a\x80z", 3, SIZE_MAX), "\"a\xEF\xBF\xBDz\"");
    assert_string_equal(render("\xC0\xAF", 2, SIZE_MAX), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");
    assert_string_equal(render("\xED\xA0\x80", 3, SIZE_MAX),
                        "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    assert_string_equal(render("\xF5\x80\x80\x80", 4, SIZE_MAX),
                        "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
    assert_string_equal(render("x\xE2\x82", 3, SIZE_MAX), "\"x\xEF\xBF\xBD\xEF\xBF\xBD\"");
}

static void truncates_on_a_character_boundary(void **state)
{
    (void)state;
    /* "aé€": cutting at 3 bytes would split the euro sign's first byte off: drop it whole. */
    const char *s = "a\xC3\xA9\xE2\x82\xAC";
    assert_string_equal(render(s, strlen(s), 4), "\"a\xC3\xA9\xE2\x80\xA6\"");
    assert_string_equal(render("abcdef", 6, 3), "\"abc\xE2\x80\xA6\"");
    assert_string_equal(render("abc", 3, 3), "\"abc\"");
}

static void numbers(void **state)
{
    (void)state;
    o11y__buf b;
    o11y__buf_init_fixed(&b, out, sizeof out - 1);
    o11y__json_i64(&b, INT64_MIN);
    o11y__buf_putc(&b, ' ');
    o11y__json_u64(&b, UINT64_MAX);
    o11y__buf_putc(&b, ' ');
    o11y__json_fixed3(&b, 0.4123);
    o11y__buf_putc(&b, ' ');
    o11y__json_fixed3(&b, 12.0);
    o11y__buf_putc(&b, ' ');
    o11y__json_f64(&b, 0.1);
    o11y__buf_putc(&b, ' ');
    o11y__json_f64(&b, 1.0 / 0.0);
    out[b.len] = '\0';
    assert_string_equal(out, "-9223372036854775808 18446744073709551615 0.412 12.000 0.1 null");
}

/* Every digit count, both sides of each power of ten, against printf. */
static void integers_match_printf(void **state)
{
    (void)state;
    char want[32];
    for (uint64_t p = 1;; p *= 10) {
        uint64_t around[] = {p - 1, p, p + 1, p * 2 - 1};
        for (size_t i = 0; i < 4; i++) {
            o11y__buf b;
            o11y__buf_init_fixed(&b, out, sizeof out - 1);
            o11y__json_u64(&b, around[i]);
            out[b.len] = '\0';
            snprintf(want, sizeof want, "%" PRIu64, around[i]);
            assert_string_equal(out, want);
        }
        if (p > UINT64_MAX / 10)
            break;
    }
    /* No room for all the digits: nothing written, and the overflow kept. */
    char small[3];
    o11y__buf b;
    o11y__buf_init_fixed(&b, small, 2);
    o11y__json_u64(&b, 123);
    assert_int_equal(b.len, 0);
    assert_true(b.overflow);
}

static void fixed_buffer_overflow_is_sticky(void **state)
{
    (void)state;
    char small[8];
    o11y__buf b;
    o11y__buf_init_fixed(&b, small, sizeof small);
    o11y__buf_lit(&b, "12345");
    o11y__buf_lit(&b, "6789");
    assert_true(b.overflow);
    assert_int_equal(b.len, 5);
    o11y__buf_lit(&b, "x");
    assert_int_equal(b.len, 5);
}

static void growable_buffer_respects_its_max(void **state)
{
    (void)state;
    o11y__buf b;
    o11y__buf_init(&b, 1000);
    for (int i = 0; i < 100; i++)
        o11y__buf_lit(&b, "0123456789");
    assert_false(b.overflow);
    o11y__buf_putc(&b, 'x');
    assert_true(b.overflow);
    assert_null(o11y__buf_take(&b, NULL));
    o11y__buf_release(&b);

    o11y__buf_init(&b, 100);
    o11y__buf_printf(&b, "%d-%s", 42, "x");
    size_t len;
    char *s = o11y__buf_take(&b, &len);
    assert_string_equal(s, "42-x");
    assert_int_equal(len, 4);
    o11y__free(s);
}

static void utf8_validation(void **state)
{
    (void)state;
    assert_true(o11y__utf8_valid("h\xC3\xA9", 3));
    assert_false(o11y__utf8_valid("\xC3", 1));
    assert_false(o11y__utf8_valid("\xE0\x80\x80", 3));     /* overlong */
    assert_false(o11y__utf8_valid("\xF4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_int_equal(o11y__utf8_count("a\xC3\xA9\xE2\x82\xAC", 6), 3);
}

static void rfc3339_has_three_fraction_digits(void **state)
{
    (void)state;
    char ts[O11Y__RFC3339_LEN + 1] = {0};
    o11y__rfc3339_ms(1795775400123000000LL, ts); /* 2026-11-27T10:30:00.123Z */
    assert_string_equal(ts, "2026-11-27T10:30:00.123Z");
    o11y__rfc3339_ms(1795775401000000000LL, ts);
    assert_string_equal(ts, "2026-11-27T10:30:01.000Z");
    o11y__rfc3339_ms(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes_quotes_backslashes_and_controls),
        cmocka_unit_test(keeps_valid_utf8),
        cmocka_unit_test(replaces_invalid_utf8),
        cmocka_unit_test(truncates_on_a_character_boundary),
        cmocka_unit_test(numbers),
        cmocka_unit_test(integers_match_printf),
        cmocka_unit_test(fixed_buffer_overflow_is_sticky),
        cmocka_unit_test(growable_buffer_respects_its_max),
        cmocka_unit_test(utf8_validation),
        cmocka_unit_test(rfc3339_has_three_fraction_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
