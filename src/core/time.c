/* core/time.c — clocks and RFC 3339 timestamps. */
#include "core/internal.h"

#include <time.h>

int64_t o11y__now_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* vDSO: no system call */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t o11y__now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The formatted "YYYY-MM-DDThh:mm:ss." of the last second this thread formatted: gmtime_r and
 * the digit work run once a second per thread instead of once per line. */
static _Thread_local struct {
    int64_t second;
    char text[20];
} cached = {.second = INT64_MIN};

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

void o11y__rfc3339_ms(int64_t real_ns, char out[O11Y__RFC3339_LEN])
{
    int64_t sec = real_ns / 1000000000;
    int64_t ms = real_ns / 1000000 % 1000;
    if (real_ns < 0) { /* before 1970: floor, not truncate */
        sec = (real_ns - 999999999) / 1000000000;
        ms = (real_ns - sec * 1000000000) / 1000000;
    }
    if (O11Y_UNLIKELY(sec != cached.second)) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        int year = tm.tm_year + 1900;
        if (year < 0 || year > 9999)
            year = year < 0 ? 0 : 9999;
        put2(cached.text, year / 100);
        put2(cached.text + 2, year % 100);
        cached.text[4] = '-';
        put2(cached.text + 5, tm.tm_mon + 1);
        cached.text[7] = '-';
        put2(cached.text + 8, tm.tm_mday);
        cached.text[10] = 'T';
        put2(cached.text + 11, tm.tm_hour);
        cached.text[13] = ':';
        put2(cached.text + 14, tm.tm_min);
        cached.text[16] = ':';
        put2(cached.text + 17, tm.tm_sec);
        cached.text[19] = '.';
        cached.second = sec;
    }
    memcpy(out, cached.text, 20);
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
}
