/* Tests for log/log.c and log/operation.c: CONTRACT section 3, masking, the queue, the sinks. */
#include "o11y/log.h"
#include "o11y/operation.h"
#include "o11y/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/o11y-log-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/service.log", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static o11y_logger *file_logger(const char *file, o11y_log_level min)
{
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    cfg.service_name = "test-service";
    cfg.file_path = file;
    cfg.min_level = min;
    static const char *const extra[] = {"ssn", NULL};
    cfg.mask_keys = extra;
    o11y_logger *lg;
    assert_int_equal(o11y_logger_create(&cfg, &lg), O11Y_OK);
    return lg;
}

/* Reads every line of file; each must be one JSON object. Returns a JSON array of them. */
static json_t *read_lines(const char *file)
{
    FILE *f = fopen(file, "r");
    json_t *all = json_array();
    if (!f)
        return all;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        assert_int_equal(line[n - 1], '\n');
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)n - 1, JSON_REJECT_DUPLICATES, &err);
        if (!j)
            fail_msg("not a JSON line: %s (%s)", line, err.text);
        assert_true(json_is_object(j));
        json_array_append_new(all, j);
    }
    free(line);
    fclose(f);
    return all;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void line_has_the_contract_shape(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_DEBUG);
    o11y_logger_set_default(lg);
    o11y_trace_ctx ctx;
    o11y_trace_ctx_new(&ctx);
    assert_int_equal(o11y_trace_ctx_set_job_id(&ctx, "job_456", 7), O11Y_OK);
    o11y_trace_set_current(&ctx);
    o11y_log_info("Episode creation completed", O11Y_INT("episode_number", 1),
                  O11Y_INT("tokens", 1250), O11Y_DOUBLE("ratio", 0.5), O11Y_BOOL("cached", false),
                  O11Y_STR("none", NULL), O11Y_OBJ("model"), O11Y_STR("name", "gpt"),
                  O11Y_INT("size", 7), O11Y_OBJ_END, O11Y_DURATION_MS(1234));
    o11y_trace_set_current(NULL);
    o11y_log_warn("no context");
    o11y_logger_destroy(lg);

    json_t *lines = read_lines(path);
    assert_int_equal(json_array_size(lines), 2);
    json_t *l = json_array_get(lines, 0);
    const char *ts = str(l, "timestamp");
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    assert_int_equal(ts[19], '.');
    assert_string_equal(str(l, "level"), "INFO");
    assert_string_equal(str(l, "service"), "test-service");
    assert_string_equal(str(l, "trace_id"), ctx.trace_id);
    assert_string_equal(str(l, "job_id"), "job_456");
    assert_null(json_object_get(l, "project_id")); /* absent, not null */
    assert_string_equal(str(l, "message"), "Episode creation completed");
    assert_true(json_real_value(json_object_get(l, "duration_ms")) == 1234.0);
    json_t *md = json_object_get(l, "metadata");
    assert_int_equal(json_integer_value(json_object_get(md, "tokens")), 1250);
    assert_true(json_is_false(json_object_get(md, "cached")));
    assert_true(json_is_null(json_object_get(md, "none")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(md, "model"), "size")), 7);
    json_t *l2 = json_array_get(lines, 1);
    assert_string_equal(str(l2, "level"), "WARN");
    assert_null(json_object_get(l2, "trace_id"));
    assert_null(json_object_get(l2, "metadata"));
    json_decref(lines);
}

static void sensitive_values_are_masked(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, "login", O11Y_STR("password", "hunter2"),
                O11Y_STR("Authorization", "Bearer abc"), O11Y_STR("X-Api-Key", "k1"),
                O11Y_STR("access_token", "t1"), O11Y_INT("SSN", 123), O11Y_OBJ("cookie"),
                O11Y_STR("session", "s1"), O11Y_OBJ_END, O11Y_INT("tokens", 1250),
                O11Y_STR("user", "ann"), O11Y__END);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path);
    json_t *md = json_object_get(json_array_get(lines, 0), "metadata");
    static const char *const masked[] = {"password",     "Authorization", "X-Api-Key",
                                         "access_token", "SSN",           "cookie"};
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++)
        assert_string_equal(str(md, masked[i]), "***");
    assert_int_equal(json_integer_value(json_object_get(md, "tokens")), 1250);
    assert_string_equal(str(md, "user"), "ann");
    json_decref(lines);
    /* The secrets never reached the file in any form. */
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_null(strstr(buf, "hunter2"));
    assert_null(strstr(buf, "s1"));
}

/* CONTRACT section 3's rule, key by key: normalise (lowercase, drop _ - .), mask when a
 * sensitive word is inside, except counts. */
static void masking_rule_table(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        bool masked;
    } table[] = {
        {"password", true},      {"accessToken", true},
        {"client.secret", true}, {"X-Api-Key", true},
        {"api_key", true},       {"privateKey", true},
        {"private-key", true},   {"Set-Cookie", true},
        {"DB_PASSWD", true},     {"refresh_token", true},
        {"AUTHORIZATION", true}, {"aws.credentials", true},
        {"credential_id", true}, {"session.token.value", true},
        {"total_tokens", false}, {"tokenCount", false},
        {"token_count", false},  {"prompt_tokens", false},
        {"user", false},         {"route", false},
        {"author", false},       {"secretary_count", false},
        {"ssn", true},
    };
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        o11y_log_va(lg, O11Y_LOG_INFO, NULL, "row", O11Y_STR(table[i].key, "VISIBLE"), O11Y__END);
    /* Keys of any length: 300 bytes ending in _password, and 90 bytes with a token inside. */
    char longkey[301], midkey[91];
    memset(longkey, 'k', 291);
    memcpy(longkey + 291, "_password", 10);
    memset(midkey, 'm', 90);
    memcpy(midkey + 40, "Token", 5);
    midkey[90] = '\0';
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, "long", O11Y_STR(longkey, "VISIBLE"), O11Y__END);
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, "mid", O11Y_STR(midkey, "VISIBLE"), O11Y__END);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path);
    size_t n = sizeof table / sizeof table[0];
    assert_int_equal(json_array_size(lines), n + 2);
    for (size_t i = 0; i < n; i++) {
        json_t *md = json_object_get(json_array_get(lines, i), "metadata");
        const char *v = str(md, table[i].key);
        if (strcmp(v, table[i].masked ? "***" : "VISIBLE") != 0)
            fail_msg("key %s: got %s", table[i].key, v);
    }
    for (size_t i = n; i < n + 2; i++) {
        json_t *md = json_object_get(json_array_get(lines, i), "metadata");
        const char *k;
        json_t *v;
        json_object_foreach(md, k, v) assert_string_equal(json_string_value(v), "***");
    }
    json_decref(lines);
}

/* A full disk, made with RLIMIT_FSIZE: a write stops part-way through a line, then fails. The
 * file must hold only whole lines, before and after the disk has room again. */
static void a_full_disk_never_tears_a_line(void **state)
{
    (void)state;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, small = {20000, 20000};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    char pad[301];
    memset(pad, 'p', 300);
    pad[300] = '\0';
    for (int i = 0; i < 200; i++) /* about 80 KB: the limit falls inside some line */
        o11y_log_va(lg, O11Y_LOG_INFO, NULL, "filler", O11Y_INT("i", i), O11Y_STR("pad", pad),
                    O11Y__END);
    o11y_logger_flush(lg, 2000);
    o11y_log_stats st;
    o11y_logger_stats(lg, &st);
    assert_true(st.write_errors > 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0); /* room again */
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, "after", O11Y_STR("pad", "x"), O11Y__END);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path); /* fails on any line that is not one JSON object */
    size_t n = json_array_size(lines);
    assert_true(n > 10 && n < 200);
    assert_string_equal(str(json_array_get(lines, n - 1), "message"), "after");
    assert_int_equal(st.lines_written + st.lines_failed, 200);
    json_decref(lines);
}

static void the_pretty_format_shows_the_same_fields(void **state)
{
    (void)state;
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    cfg.service_name = "pretty-service";
    cfg.file_path = path;
    cfg.format = O11Y_LOG_FORMAT_PRETTY;
    o11y_logger *lg;
    assert_int_equal(o11y_logger_create(&cfg, &lg), O11Y_OK);
    o11y_trace_ctx ctx;
    o11y_trace_ctx_from_headers(&ctx, (o11y_str){"trace-pretty", 12}, (o11y_str){0},
                                (o11y_str){"job_7", 5}, (o11y_str){0});
    o11y_trace_ctx *prev = o11y_trace_set_current(&ctx);
    o11y_log_va(lg, O11Y_LOG_WARN, "episode_created", "Episode created", O11Y_INT("number", 3),
                O11Y_STR("password", "hunter2"), O11Y__END);
    o11y_trace_set_current(prev);
    o11y_logger_destroy(lg);
    FILE *f = fopen(path, "r");
    char line[1024] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    /* hh:mm:ss.mmm LEVEL message  key=value ...: the same fields as the JSON line. */
    assert_int_equal(line[2], ':');
    assert_non_null(strstr(line, " WARN  Episode created"));
    assert_non_null(strstr(line, "service=pretty-service"));
    assert_non_null(strstr(line, "trace_id=trace-pretty"));
    assert_non_null(strstr(line, "job_id=job_7"));
    assert_non_null(strstr(line, "event=episode_created"));
    assert_non_null(strstr(line, "number=3"));
    assert_non_null(strstr(line, "password=***"));
    assert_null(strstr(line, "hunter2"));
    assert_null(strchr(line, '\033')); /* a file is not a terminal: no colours */
    o11y_log_format fmt;
    assert_int_equal(o11y_log_format_parse("PRETTY", &fmt), O11Y_OK);
    assert_int_equal(fmt, O11Y_LOG_FORMAT_PRETTY);
    assert_int_equal(o11y_log_format_parse("xml", &fmt), O11Y_EINVAL);
}

static void request_bytes_cannot_forge_fields_or_lines(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    const char evil[] = "x\"}\n{\"level\":\"FATAL\",\"message\":\"forged\xff\x01";
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, evil, O11Y_STR(evil, evil), O11Y__END);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path);
    assert_int_equal(json_array_size(lines), 1);
    json_t *l = json_array_get(lines, 0);
    assert_string_equal(str(l, "level"), "INFO");
    assert_non_null(strstr(str(l, "message"), "\xEF\xBF\xBD\x01"));
    json_decref(lines);
}

static void levels_filter(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_WARN);
    assert_false(o11y_logger_enabled(lg, O11Y_LOG_INFO));
    o11y_log_va(lg, O11Y_LOG_DEBUG, NULL, "d", O11Y__END);
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, "i", O11Y__END);
    o11y_log_va(lg, O11Y_LOG_ERROR, NULL, "e", O11Y__END);
    o11y_logger_set_min_level(lg, O11Y_LOG_DEBUG);
    o11y_log_va(lg, O11Y_LOG_DEBUG, NULL, "d2", O11Y__END);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path);
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(str(json_array_get(lines, 0), "message"), "e");
    assert_string_equal(str(json_array_get(lines, 1), "level"), "DEBUG");
    json_decref(lines);
    o11y_log_level lvl;
    assert_int_equal(o11y_log_level_parse("Warning", &lvl), O11Y_OK);
    assert_int_equal(lvl, O11Y_LOG_WARN);
    assert_int_equal(o11y_log_level_parse("loud", &lvl), O11Y_EINVAL);
}

static void oversized_lines_stay_valid(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    static char big[8000];
    memset(big, 'a', sizeof big - 1);
    o11y_field f[8];
    for (int i = 0; i < 8; i++)
        f[i] = O11Y_STR(i % 2 ? "x" : "y", big);
    o11y_log_fields(lg, O11Y_LOG_INFO, "big", big, f, 8);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path);
    json_t *l = json_array_get(lines, 0);
    assert_true(json_is_true(json_object_get(l, "metadata_truncated")));
    assert_null(json_object_get(l, "metadata"));
    /* The message is cut to max_value_bytes and marked with U+2026. */
    const char *m = str(l, "message");
    assert_int_equal(strlen(m), 4096 + 3);
    assert_string_equal(m + 4096, "\xE2\x80\xA6");
    json_decref(lines);
}

static void full_disk_is_counted_not_fatal(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger("/dev/full", O11Y_LOG_INFO);
    for (int i = 0; i < 100; i++)
        o11y_log_va(lg, O11Y_LOG_INFO, NULL, "line", O11Y_INT("i", i), O11Y__END);
    assert_int_equal(o11y_logger_flush(lg, 5000), O11Y_OK);
    o11y_log_stats st;
    o11y_logger_stats(lg, &st);
    assert_true(st.write_errors >= 1);
    assert_int_equal(st.lines_failed + st.lines_written, 100);
    assert_int_equal(st.lines_written, 0);
    o11y_logger_destroy(lg);
}

static void *drain_fifo(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    size_t lines = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                usleep(1000);
                continue;
            }
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    return (void *)lines;
}

static void full_queue_drops_and_counts(void **state)
{
    (void)state;
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK); /* a reader that does not read yet */
    assert_true(rfd >= 0);
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    cfg.file_path = fifo;
    cfg.queue_bytes = 256 * 1024;
    o11y_logger *lg;
    assert_int_equal(o11y_logger_create(&cfg, &lg), O11Y_OK);
    enum { N = 20000 };
    for (int i = 0; i < N; i++)
        o11y_log_va(lg, O11Y_LOG_INFO, NULL, "a line that fills the pipe and then the queue",
                    O11Y_INT("i", i), O11Y__END);
    o11y_log_stats st;
    o11y_logger_stats(lg, &st);
    assert_true(st.lines_dropped > 0); /* the caller never waited for the stuck reader */
    pthread_t t;
    pthread_create(&t, NULL, drain_fifo, &rfd);
    o11y_logger_destroy(lg); /* flushes the rest into the pipe, then closes it */
    void *lines;
    pthread_join(t, &lines);
    close(rfd);
    assert_int_equal((size_t)lines + st.lines_dropped, N);
}

static void reopen_follows_logrotate(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, "before", O11Y__END);
    assert_int_equal(o11y_logger_flush(lg, 5000), O11Y_OK);
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    assert_int_equal(rename(path, rotated), 0);
    o11y_logger_reopen(lg);
    for (int i = 0; i < 200 && access(path, F_OK) != 0; i++)
        usleep(5000);
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, "after", O11Y__END);
    o11y_logger_destroy(lg);
    json_t *old = read_lines(rotated), *cur = read_lines(path);
    assert_int_equal(json_array_size(old), 1);
    assert_string_equal(str(json_array_get(old, 0), "message"), "before");
    assert_int_equal(json_array_size(cur), 1);
    assert_string_equal(str(json_array_get(cur, 0), "message"), "after");
    json_decref(old);
    json_decref(cur);
}

enum { THREADS = 4, PER_THREAD = 5000 };

static void *log_many(void *arg)
{
    o11y_logger *lg = arg;
    o11y_trace_ctx ctx;
    o11y_trace_ctx_new(&ctx);
    o11y_trace_set_current(&ctx);
    for (int i = 0; i < PER_THREAD; i++)
        o11y_log_va(lg, O11Y_LOG_INFO, "tick", "tick", O11Y_INT("i", i),
                    O11Y_STR("filler", "0123456789abcdefghijklmnopqrstuvwxyz"), O11Y__END);
    o11y_trace_set_current(NULL);
    return NULL;
}

static void concurrent_writers_lose_nothing(void **state)
{
    (void)state;
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    cfg.file_path = path;
    cfg.queue_bytes = 64u << 20; /* room for every line: nothing may be dropped */
    o11y_logger *lg;
    assert_int_equal(o11y_logger_create(&cfg, &lg), O11Y_OK);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, log_many, lg);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    o11y_log_stats st;
    o11y_logger_stats(lg, &st);
    assert_int_equal(st.lines_dropped, 0);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path);
    assert_int_equal(json_array_size(lines), THREADS * PER_THREAD);
    /* Per thread (trace id), the sequence numbers arrive complete and in order. */
    json_t *next = json_object();
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        const char *tid = str(l, "trace_id");
        json_int_t seq = json_integer_value(json_object_get(json_object_get(l, "metadata"), "i"));
        json_int_t want = json_integer_value(json_object_get(next, tid));
        assert_int_equal(seq, want);
        json_object_set_new(next, tid, json_integer(want + 1));
    }
    assert_int_equal(json_object_size(next), THREADS);
    json_decref(next);
    json_decref(lines);
}

static void shutdown_flushes_everything(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    for (int i = 0; i < 3000; i++)
        o11y_log_va(lg, O11Y_LOG_INFO, NULL, "queued", O11Y_INT("i", i), O11Y__END);
    o11y_log_stats st;
    o11y_logger_stats(lg, &st);
    o11y_logger_destroy(lg);
    json_t *lines = read_lines(path);
    assert_int_equal(json_array_size(lines) + st.lines_dropped, 3000);
    assert_int_equal(st.lines_dropped, 0);
    json_decref(lines);
}

static void operations_and_events(void **state)
{
    (void)state;
    o11y_logger *lg = file_logger(path, O11Y_LOG_INFO);
    o11y_logger_set_default(lg);
    {
        O11Y_OPERATION_SCOPE(op, "episode_creation");
        usleep(2000);
    }
    o11y_operation op = o11y_operation_start("generation");
    o11y_operation_fail(&op, "SERVICE_UNAVAILABLE");
    assert_true(o11y_operation_end(&op) >= 0);
    assert_true(o11y_operation_end(&op) == 0); /* a second end is a no-op */
    /* A service's own catalog of events, on the generic call. */
    o11y_log_event("episode_created", O11Y_STR("project_id", "proj_1"),
                   O11Y_STR("episode_id", "ep_1"), O11Y_INT("episode_number", 3),
                   O11Y_STR("title", "Pilot"));
    o11y_log_event("episode_updated", O11Y_STR("project_id", "proj_1"), O11Y_OBJ("changes"),
                   O11Y_STR("title", "New"), O11Y_OBJ_END);
    o11y_log_event("episode_deleted", O11Y_STR("project_id", "proj_1"),
                   O11Y_INT("episode_number", 3));
    o11y_logger_destroy(lg);
    assert_null(o11y_logger_default());
    json_t *lines = read_lines(path);
    assert_int_equal(json_array_size(lines), 5);
    json_t *l = json_array_get(lines, 0);
    assert_string_equal(str(l, "event"), "operation");
    assert_string_equal(str(json_object_get(l, "metadata"), "outcome"), "success");
    assert_true(json_real_value(json_object_get(l, "duration_ms")) >= 2.0);
    l = json_array_get(lines, 1);
    assert_string_equal(str(l, "level"), "ERROR");
    assert_string_equal(str(json_object_get(l, "metadata"), "error_code"), "SERVICE_UNAVAILABLE");
    l = json_array_get(lines, 2);
    assert_string_equal(str(l, "event"), "episode_created");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(l, "metadata"), "episode_number")), 3);
    l = json_array_get(lines, 3);
    assert_string_equal(str(json_object_get(json_object_get(l, "metadata"), "changes"), "title"),
                        "New");
    json_decref(lines);
}

static void bad_configs_are_refused(void **state)
{
    (void)state;
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    o11y_logger *lg = (o11y_logger *)&cfg;
    cfg.max_line_bytes = 100;
    assert_int_equal(o11y_logger_create(&cfg, &lg), O11Y_EINVAL);
    assert_null(lg);
    o11y_log_config_init(&cfg);
    cfg.file_path = "/nonexistent-dir/x.log";
    assert_int_equal(o11y_logger_create(&cfg, &lg), O11Y_EIO);
    assert_int_equal(o11y_logger_create(&cfg, NULL), O11Y_EINVAL);
    o11y_logger_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(line_has_the_contract_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(sensitive_values_are_masked, setup, teardown),
        cmocka_unit_test_setup_teardown(masking_rule_table, setup, teardown),
        cmocka_unit_test_setup_teardown(a_full_disk_never_tears_a_line, setup, teardown),
        cmocka_unit_test_setup_teardown(the_pretty_format_shows_the_same_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(request_bytes_cannot_forge_fields_or_lines, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(levels_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(oversized_lines_stay_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(full_disk_is_counted_not_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(full_queue_drops_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_follows_logrotate, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_writers_lose_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_flushes_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(operations_and_events, setup, teardown),
        cmocka_unit_test(bad_configs_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
