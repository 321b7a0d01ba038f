/* log/log.c — JSON log lines: formatting on the caller's thread, masking, the lock-free queue and
 * the writer thread.
 *
 * The line writer is hand-written (core/json.c) rather than built with jansson: a log line is
 * formatted on every request, and a tree plus json_dumps costs several times our budget. */
#include "o11y/log.h"

#include "core/internal.h"
#include "log/log_internal.h"
#include "o11y/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
    LINE_STORAGE = 64 * 1024, /* the thread-local buffer */
    LINE_MAX_CAP = 60 * 1024, /* the largest max_line_bytes */
    LINE_MIN_CAP = 4 * 1024,
    LINE_TAIL_RESERVE = 96, /* room kept for ,"metadata_truncated":true,"duration_ms":..} */
    QUEUE_MIN = 256 * 1024,
    BATCH_BYTES = 1024 * 1024,      /* what the writer hands to one write() */
    PRETTY_BYTES = 2 * BATCH_BYTES, /* a batch for people: colours and spacing add bytes */
    WRITER_IDLE_MS = 20,            /* the longest a line waits in an idle queue */
    MAX_MASK_KEYS = 64,
    MAX_DEPTH = 16,
};

enum { REC_EMPTY = 0, REC_LINE = 1, REC_PAD = 2 };

/* A queue record: this header, then the line, padded to 8 bytes. Whether a record is committed
 * lives apart, in one state byte per 8-byte granule of the ring (only the granule where a
 * record starts is ever set). Keeping the state out of the ring means no stale byte of an
 * earlier lap can pass for a commit, so the writer never has to clear the ring itself, and
 * the ring's cache lines stay with the producers. */
typedef struct rec_header {
    uint32_t len;
    uint32_t unused;
} rec_header;

struct o11y_logger {
    /* Producers and the writer share these; each hot counter sits on its own cache line. */
    _Alignas(64) atomic_uint_fast64_t head; /* bytes reserved by producers */
    _Alignas(64) atomic_uint_fast64_t tail; /* bytes released by the writer */
    _Alignas(64) atomic_uint sleeping;      /* futex word: 1 while the writer waits */
    atomic_uint_fast64_t written_pos;       /* queue position written out (for flush) */
    atomic_uint_fast64_t lines_dropped;
    atomic_int min_level;
    atomic_bool reopen_requested;
    atomic_bool stopping;

    char *ring;
    _Atomic uint8_t *ring_state; /* ring_cap / 8 bytes: REC_* of the record starting there */
    size_t ring_cap;             /* a power of two */
    size_t max_line;
    size_t max_value;

    /* Written by the writer thread only; read by o11y_logger_stats. */
    atomic_uint_fast64_t lines_written, lines_failed, write_errors, bytes_written;

    int fd;
    bool owns_fd;
    bool torn;           /* writer only: the output ends in a fragment that a newline must end */
    bool pretty, colour; /* PRETTY format (decided at creation), with ANSI colours */
    char *pretty_buf;    /* writer only: the batch rendered for people */
    char *file_path;
    char *service_json; /* ,"service":"name" pre-rendered */
    size_t service_json_len;
    char *mask[MAX_MASK_KEYS]; /* normalised: lowercase, '-' as '_' */
    size_t n_mask;
    char *batch;
    pthread_t writer;
};

/* CONTRACT section 3: a key is sensitive when its normalised form (lowercase, without '_', '-'
 * and '.') contains one of these. */
static const char *const default_mask[] = {
    "password", "passwd", "secret",     "token",      "authorization",
    "cookie",   "apikey", "privatekey", "credential",
};

static _Atomic(o11y_logger *) default_logger;

/*=== MARK: levels ===*/

static const char *const level_names[] = {"INFO", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"};

const char *o11y_log_level_name(o11y_log_level level)
{
    return (unsigned)level < O11Y_ARRAY_LEN(level_names) ? level_names[level] : "INFO";
}

o11y_status o11y_log_format_parse(const char *s, o11y_log_format *out)
{
    if (!s || !out)
        return O11Y_EINVAL;
    if (strcasecmp(s, "auto") == 0)
        *out = O11Y_LOG_FORMAT_AUTO;
    else if (strcasecmp(s, "json") == 0)
        *out = O11Y_LOG_FORMAT_JSON;
    else if (strcasecmp(s, "pretty") == 0)
        *out = O11Y_LOG_FORMAT_PRETTY;
    else
        return O11Y_EINVAL;
    return O11Y_OK;
}

o11y_status o11y_log_level_parse(const char *s, o11y_log_level *out)
{
    static const struct {
        const char *name;
        o11y_log_level level;
    } names[] = {{"debug", O11Y_LOG_DEBUG},  {"info", O11Y_LOG_INFO},   {"warn", O11Y_LOG_WARN},
                 {"warning", O11Y_LOG_WARN}, {"error", O11Y_LOG_ERROR}, {"fatal", O11Y_LOG_FATAL},
                 {"off", O11Y_LOG_OFF}};
    if (!s || !out)
        return O11Y_EINVAL;
    for (size_t i = 0; i < O11Y_ARRAY_LEN(names); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return O11Y_OK;
        }
    }
    return O11Y_EINVAL;
}

/*=== MARK: lifecycle ===*/

void o11y_log_config_init(o11y_log_config *cfg)
{
    *cfg = (o11y_log_config){
        .service_name = "unknown",
        .min_level = O11Y_LOG_INFO,
        .queue_bytes = 4u << 20,
        .max_line_bytes = 16u << 10,
        .max_value_bytes = 4u << 10,
    };
}

/* Lowercase without '_', '-' and '.' (CONTRACT section 3) into out; returns the length. */
static size_t normalise_into(const char *key, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (c == '_' || c == '-' || c == '.')
            continue;
        out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return n;
}

static char *normalise_key(const char *key, size_t len)
{
    char *k = o11y__malloc(len + 1);
    if (!k)
        return NULL;
    k[normalise_into(key, len, k)] = '\0';
    return k;
}

static void *writer_main(void *arg);

static int open_log_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static void logger_free(o11y_logger *lg)
{
    if (lg->owns_fd && lg->fd >= 0)
        close(lg->fd);
    for (size_t i = 0; i < lg->n_mask; i++)
        o11y__free(lg->mask[i]);
    o11y__free(lg->file_path);
    o11y__free(lg->service_json);
    o11y__free(lg->ring);
    o11y__free((void *)lg->ring_state);
    o11y__free(lg->batch);
    o11y__free(lg->pretty_buf);
    o11y__free(lg);
}

static size_t round_pow2(size_t v)
{
    size_t p = QUEUE_MIN;
    while (p < v && p < ((size_t)1 << 40))
        p <<= 1;
    return p;
}

static o11y_status build_service_json(o11y_logger *lg, const char *name)
{
    o11y__buf b;
    o11y__buf_init(&b, 4096);
    o11y__buf_lit(&b, ",\"service\":");
    o11y__json_str(&b, name, strlen(name), 256);
    lg->service_json = o11y__buf_take(&b, &lg->service_json_len);
    return lg->service_json ? O11Y_OK : O11Y_ENOMEM;
}

static o11y_status add_mask_keys(o11y_logger *lg, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n && keys[i]; i++) {
        if (lg->n_mask == MAX_MASK_KEYS)
            return O11Y_ELIMIT;
        if (!(lg->mask[lg->n_mask] = normalise_key(keys[i], strlen(keys[i]))))
            return O11Y_ENOMEM;
        lg->n_mask++;
    }
    return O11Y_OK;
}

o11y_status o11y_logger_create(const o11y_log_config *cfg_in, o11y_logger **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    if (cfg_in) {
        if (cfg_in->service_name)
            cfg.service_name = cfg_in->service_name;
        if (cfg_in->min_level)
            cfg.min_level = cfg_in->min_level;
        if (cfg_in->queue_bytes)
            cfg.queue_bytes = cfg_in->queue_bytes;
        if (cfg_in->max_line_bytes)
            cfg.max_line_bytes = cfg_in->max_line_bytes;
        if (cfg_in->max_value_bytes)
            cfg.max_value_bytes = cfg_in->max_value_bytes;
        cfg.file_path = cfg_in->file_path;
        cfg.mask_keys = cfg_in->mask_keys;
        cfg.format = cfg_in->format;
    }
    if (cfg.min_level > O11Y_LOG_OFF || (unsigned)cfg.format > O11Y_LOG_FORMAT_PRETTY ||
        cfg.max_line_bytes < LINE_MIN_CAP || cfg.max_line_bytes > LINE_MAX_CAP ||
        cfg.max_value_bytes > cfg.max_line_bytes / 2 || cfg.queue_bytes > ((size_t)1 << 40))
        return O11Y_EINVAL;

    o11y_logger *lg = o11y__calloc(1, sizeof *lg);
    if (!lg)
        return O11Y_ENOMEM;
    lg->fd = STDOUT_FILENO;
    lg->max_line = cfg.max_line_bytes;
    lg->max_value = cfg.max_value_bytes;
    lg->ring_cap = round_pow2(cfg.queue_bytes);
    atomic_init(&lg->min_level, (int)cfg.min_level);
    o11y_status st = build_service_json(lg, cfg.service_name);
    if (st == O11Y_OK)
        st = add_mask_keys(lg, default_mask, O11Y_ARRAY_LEN(default_mask));
    if (st == O11Y_OK && cfg.mask_keys)
        st = add_mask_keys(lg, cfg.mask_keys, MAX_MASK_KEYS);
    if (st != O11Y_OK)
        goto fail;
    st = O11Y_ENOMEM;
    lg->ring = o11y__malloc(lg->ring_cap);
    lg->ring_state = o11y__calloc(lg->ring_cap / 8, 1);
    lg->batch = o11y__malloc(BATCH_BYTES);
    if (!lg->ring || !lg->ring_state || !lg->batch)
        goto fail;
    if (cfg.file_path) {
        if (!(lg->file_path = o11y__strdup(cfg.file_path)))
            goto fail;
        lg->fd = open_log_file(cfg.file_path);
        if (lg->fd < 0) {
            st = O11Y_EIO;
            goto fail;
        }
        lg->owns_fd = true;
    }
    bool terminal = isatty(lg->fd) == 1;
    lg->pretty =
        cfg.format == O11Y_LOG_FORMAT_PRETTY || (cfg.format == O11Y_LOG_FORMAT_AUTO && terminal);
    const char *no_colour = getenv("NO_COLOR"); /* https://no-color.org */
    lg->colour = lg->pretty && terminal && !(no_colour && *no_colour);
    if (lg->pretty && !(lg->pretty_buf = o11y__malloc(PRETTY_BYTES)))
        goto fail;
    if (pthread_create(&lg->writer, NULL, writer_main, lg) != 0) {
        st = O11Y_ENOMEM;
        goto fail;
    }
    *out = lg;
    return O11Y_OK;
fail:
    logger_free(lg);
    return st;
}

static void futex_wake(atomic_uint *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void wake_writer(o11y_logger *lg)
{
    if (atomic_load(&lg->sleeping) && atomic_exchange(&lg->sleeping, 0))
        futex_wake(&lg->sleeping);
}

void o11y_logger_destroy(o11y_logger *lg)
{
    if (!lg)
        return;
    o11y_logger *expected = lg;
    atomic_compare_exchange_strong(&default_logger, &expected, NULL);
    atomic_store(&lg->stopping, true);
    atomic_store(&lg->sleeping, 0);
    futex_wake(&lg->sleeping);
    pthread_join(lg->writer, NULL);
    logger_free(lg);
}

void o11y_logger_reopen(o11y_logger *lg)
{
    if (!lg)
        return;
    atomic_store(&lg->reopen_requested, true);
    wake_writer(lg);
}

o11y_status o11y_logger_flush(o11y_logger *lg, int timeout_ms)
{
    if (!lg)
        return O11Y_EINVAL;
    uint64_t target = atomic_load(&lg->head);
    int64_t deadline = o11y__now_mono_ns() + (int64_t)timeout_ms * 1000000;
    while (atomic_load(&lg->written_pos) < target) {
        if (o11y__now_mono_ns() > deadline)
            return O11Y_ELIMIT;
        atomic_store(&lg->sleeping, 0);
        futex_wake(&lg->sleeping);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return O11Y_OK;
}

void o11y_logger_stats(const o11y_logger *lg, o11y_log_stats *out)
{
    if (!lg || !out)
        return;
    out->lines_written = atomic_load_explicit(&lg->lines_written, memory_order_relaxed);
    out->lines_dropped = atomic_load_explicit(&lg->lines_dropped, memory_order_relaxed);
    out->lines_failed = atomic_load_explicit(&lg->lines_failed, memory_order_relaxed);
    out->write_errors = atomic_load_explicit(&lg->write_errors, memory_order_relaxed);
    out->bytes_written = atomic_load_explicit(&lg->bytes_written, memory_order_relaxed);
}

void o11y_logger_set_min_level(o11y_logger *lg, o11y_log_level level)
{
    if (lg && level >= O11Y_LOG_DEBUG && level <= O11Y_LOG_OFF)
        atomic_store_explicit(&lg->min_level, (int)level, memory_order_relaxed);
}

bool o11y_logger_enabled(const o11y_logger *lg, o11y_log_level level)
{
    return lg && level != O11Y_LOG_OFF &&
           (int)level >= atomic_load_explicit(&lg->min_level, memory_order_relaxed);
}

void o11y_logger_set_default(o11y_logger *lg)
{
    atomic_store(&default_logger, lg);
}

o11y_logger *o11y_logger_default(void)
{
    return atomic_load_explicit(&default_logger, memory_order_acquire);
}

/*=== MARK: hot path: the queue ===*/

static inline size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Copies one line into the queue; false when there is no room (the line is dropped). */
static bool enqueue(o11y_logger *lg, const char *line, size_t len)
{
    const size_t cap = lg->ring_cap, need = sizeof(rec_header) + align8(len);
    uint_fast64_t head = atomic_load_explicit(&lg->head, memory_order_relaxed);
    size_t off, to_end, total;
    for (;;) {
        uint_fast64_t tail = atomic_load_explicit(&lg->tail, memory_order_acquire);
        if (O11Y_UNLIKELY(head < tail)) {
            /* Our head is older than the writer's progress: reload it, or the free space
             * computed below would wrap around and look like a full queue. */
            head = atomic_load_explicit(&lg->head, memory_order_relaxed);
            continue;
        }
        off = (size_t)head & (cap - 1);
        to_end = cap - off;
        /* A record never wraps: when it does not fit before the end, pad to the end. */
        total = need <= to_end ? need : to_end + need;
        if (head + total - tail > cap)
            return false;
        if (atomic_compare_exchange_weak_explicit(&lg->head, &head, head + total,
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }
    if (total != need) {
        rec_header *pad = (rec_header *)(void *)(lg->ring + off);
        pad->len = (uint32_t)(to_end - sizeof(rec_header));
        atomic_store_explicit(&lg->ring_state[off / 8], REC_PAD, memory_order_release);
        off = 0;
    }
    rec_header *h = (rec_header *)(void *)(lg->ring + off);
    h->len = (uint32_t)len;
    memcpy(lg->ring + off + sizeof(rec_header), line, len);
    atomic_store_explicit(&lg->ring_state[off / 8], REC_LINE, memory_order_release);
    /* A system call per line would cost more than the line itself. The sleeping writer wakes on
     * its own every WRITER_IDLE_MS; it is woken early only once the queue is an eighth full,
     * which leaves it seven eighths of the queue to catch up before anything is dropped. */
    if (O11Y_UNLIKELY(head + total - atomic_load_explicit(&lg->tail, memory_order_relaxed) >
                      cap / 8))
        wake_writer(lg);
    return true;
}

/*=== MARK: hot path: formatting ===*/

static _Thread_local char line_storage[LINE_STORAGE];

static bool ends_with(const char *s, size_t len, const char *lit, size_t lit_len)
{
    return len >= lit_len && memcmp(s + len - lit_len, lit, lit_len) == 0;
}

/* CONTRACT section 3, for keys of any length: the normalised key contains a sensitive word,
 * unless it names a count ("total_tokens", "tokenCount"). */
static bool is_masked(const o11y_logger *lg, const char *key, size_t len)
{
    char small[128];
    char *k = len <= sizeof small ? small : o11y__malloc(len);
    if (!k)
        return true; /* cannot tell: hide the value rather than risk it */
    size_t n = normalise_into(key, len, k);
    bool masked = false;
    if (!ends_with(k, n, "tokens", 6) && !ends_with(k, n, "count", 5)) {
        for (size_t i = 0; i < lg->n_mask && !masked; i++)
            masked = memmem(k, n, lg->mask[i], strlen(lg->mask[i])) != NULL;
    }
    if (k != small)
        o11y__free(k);
    return masked;
}

/* The line's start as "{...,"level":"X"" pieces, one per level, so no strlen runs per line. */
static const struct {
    const char *text;
    size_t len;
} level_json[] = {
#define LEVEL_JSON(name)                                                                           \
    {                                                                                              \
        "\",\"level\":\"" name "\"", sizeof("\",\"level\":\"" name "\"") - 1                       \
    }
    LEVEL_JSON("INFO"),  LEVEL_JSON("DEBUG"), LEVEL_JSON("INFO"), LEVEL_JSON("WARN"),
    LEVEL_JSON("ERROR"), LEVEL_JSON("FATAL"), LEVEL_JSON("OFF"),
#undef LEVEL_JSON
};

static char *put_raw(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

/* ,"key":"value" for a context id, which was validated to [A-Za-z0-9._:-]: no escaping. */
static char *put_ctx_id(char *p, const char *key_json, size_t key_len, const char *v, size_t len)
{
    if (!len)
        return p;
    p = put_raw(p, key_json, key_len);
    p = put_raw(p, v, len);
    *p++ = '"';
    return p;
}
#define PUT_CTX_ID(p, lit, v, n) put_ctx_id((p), (lit), sizeof(lit) - 1, (v), (n))

/* Everything before the message: bounded (service name at most 256 bytes escaped, three ids of
 * at most 128, two span ids of 16), so it is written with one capacity check instead of one per
 * piece. */
static bool line_prefix(o11y__line *l, o11y_logger *lg, o11y_log_level level)
{
    if (!o11y_logger_enabled(lg, level))
        return false;
    l->lg = lg;
    l->meta_open = false;
    o11y__buf_init_fixed(&l->b, line_storage, lg->max_line - LINE_TAIL_RESERVE);
    char *p = line_storage;
    p = put_raw(p, "{\"timestamp\":\"", 14);
    o11y__rfc3339_ms(o11y__now_real_ns(), p);
    p += O11Y__RFC3339_LEN;
    p = put_raw(p, level_json[level].text, level_json[level].len);
    p = put_raw(p, lg->service_json, lg->service_json_len);
    const o11y_trace_ctx *ctx = o11y_trace_current();
    if (ctx) {
        p = PUT_CTX_ID(p, ",\"trace_id\":\"", ctx->trace_id, ctx->trace_id_len);
        p = PUT_CTX_ID(p, ",\"job_id\":\"", ctx->job_id, ctx->job_id_len);
        p = PUT_CTX_ID(p, ",\"project_id\":\"", ctx->project_id, ctx->project_id_len);
        p = PUT_CTX_ID(p, ",\"span_id\":\"", ctx->span_id, ctx->span_id[0] ? 16 : 0);
        p = PUT_CTX_ID(p, ",\"parent_span_id\":\"", ctx->parent_span_id,
                       ctx->parent_span_id[0] ? 16 : 0);
    }
    l->b.len = (size_t)(p - line_storage);
    return true;
}

bool o11y__line_begin(o11y__line *l, o11y_logger *lg, o11y_log_level level, const char *event,
                      const char *msg, size_t msg_len)
{
    if (!line_prefix(l, lg, level))
        return false;
    o11y__buf *b = &l->b;
    o11y__buf_lit(b, ",\"message\":");
    o11y__json_str(b, msg ? msg : "", msg ? msg_len : 0, lg->max_value);
    if (event) {
        o11y__buf_lit(b, ",\"event\":");
        o11y__json_str(b, event, strlen(event), 256);
    }
    return true;
}

bool o11y__line_begin_json(o11y__line *l, o11y_logger *lg, o11y_log_level level, const char *json,
                           size_t len)
{
    if (!line_prefix(l, lg, level))
        return false;
    o11y__buf_append(&l->b, json, len);
    return true;
}

void o11y__line_end(o11y__line *l, double duration_ms)
{
    o11y__buf *b = &l->b;
    if (O11Y_UNLIKELY(b->overflow)) {
        /* Only metadata can outgrow the line (message and ids are capped): drop it whole. */
        b->len = l->meta_open ? l->meta_mark : b->len;
        b->overflow = false;
        l->meta_open = false;
        o11y__buf_lit(b, ",\"metadata_truncated\":true");
    }
    b->cap = b->max = LINE_STORAGE; /* the reserved tail */
    if (l->meta_open)
        o11y__buf_putc(b, '}');
    if (duration_ms >= 0) {
        o11y__buf_lit(b, ",\"duration_ms\":");
        o11y__json_fixed3(b, duration_ms);
    }
    o11y__buf_lit(b, "}\n");
    if (!enqueue(l->lg, b->ptr, b->len))
        atomic_fetch_add_explicit(&l->lg->lines_dropped, 1, memory_order_relaxed);
}

static int fields_nesting(o11y_field_type t)
{
    return t == O11Y_FIELD_OBJ_BEGIN ? 1 : t == O11Y_FIELD_OBJ_END ? -1 : 0;
}

/* Writes one field into the metadata; returns how many of fields[] it consumed. */
static size_t put_field(o11y__line *l, const o11y_field *f, size_t avail, int *depth, bool *first,
                        double *duration)
{
    o11y__buf *b = &l->b;
    if (f->type == O11Y_FIELD_DURATION_MS) {
        *duration = f->v.d;
        return 1;
    }
    if (f->type == O11Y_FIELD_OBJ_END) {
        if (*depth > 0) {
            o11y__buf_putc(b, '}');
            (*depth)--;
            first[*depth + 1] = false;
        }
        return 1;
    }
    const char *key = f->key ? f->key : "";
    size_t key_len = strlen(key);
    if (*depth == 0) {
        if (!l->meta_open) {
            l->meta_mark = b->len;
            l->meta_open = true;
            o11y__buf_lit(b, ",\"metadata\":{");
        } else {
            o11y__buf_putc(b, ',');
        }
    } else if (!first[*depth]) {
        o11y__buf_putc(b, ',');
    }
    first[*depth] = false;
    o11y__json_str(b, key, key_len, 256);
    o11y__buf_putc(b, ':');
    if (is_masked(l->lg, key, key_len)) {
        o11y__buf_lit(b, "\"***\"");
        if (f->type != O11Y_FIELD_OBJ_BEGIN)
            return 1;
        /* A masked object is replaced whole: skip to its matching end. */
        size_t i = 1;
        for (int nest = 1; i < avail && nest > 0; i++)
            nest += fields_nesting(f[i].type);
        return i;
    }
    switch (f->type) {
    case O11Y_FIELD_STR:
        if (!f->v.s.ptr)
            o11y__buf_lit(b, "null");
        else
            o11y__json_str(b, f->v.s.ptr, f->v.s.len == SIZE_MAX ? strlen(f->v.s.ptr) : f->v.s.len,
                           l->lg->max_value);
        break;
    case O11Y_FIELD_INT:
        o11y__json_i64(b, f->v.i);
        break;
    case O11Y_FIELD_DOUBLE:
        o11y__json_f64(b, f->v.d);
        break;
    case O11Y_FIELD_BOOL:
        if (f->v.b)
            o11y__buf_lit(b, "true");
        else
            o11y__buf_lit(b, "false");
        break;
    case O11Y_FIELD_OBJ_BEGIN:
        if (*depth + 1 >= MAX_DEPTH) {
            o11y__buf_lit(b, "null");
            size_t i = 1;
            for (int nest = 1; i < avail && nest > 0; i++)
                nest += fields_nesting(f[i].type);
            return i;
        }
        o11y__buf_putc(b, '{');
        (*depth)++;
        first[*depth] = true;
        break;
    default:
        o11y__buf_lit(b, "null");
    }
    return 1;
}

static void log_fields(o11y_logger *lg, o11y_log_level level, const char *event,
                       const char *message, const o11y_field *fields, size_t n)
{
    if (!lg)
        lg = o11y_logger_default();
    o11y__line l;
    if (!o11y__line_begin(&l, lg, level, event, message, message ? strlen(message) : 0))
        return;
    int depth = 0;
    bool first[MAX_DEPTH + 1] = {false};
    double duration = -1;
    for (size_t i = 0; i < n && fields[i].type != O11Y_FIELD_END;)
        i += put_field(&l, &fields[i], n - i, &depth, first, &duration);
    while (depth-- > 0)
        o11y__buf_putc(&l.b, '}'); /* an unbalanced O11Y_OBJ: close it */
    o11y__line_end(&l, duration);
}

void o11y__log_sourced(o11y_logger *lg, o11y_log_level level, const char *source, const char *event,
                       const char *message, size_t message_len, const o11y_field *fields, size_t n)
{
    if (!lg)
        lg = o11y_logger_default();
    o11y__line l;
    if (!o11y__line_begin(&l, lg, level, event, message, message_len))
        return;
    o11y__buf_lit(&l.b, ",\"source\":");
    o11y__json_str(&l.b, source, strlen(source), 64);
    int depth = 0;
    bool first[MAX_DEPTH + 1] = {false};
    double duration = -1;
    for (size_t i = 0; i < n && fields[i].type != O11Y_FIELD_END;)
        i += put_field(&l, &fields[i], n - i, &depth, first, &duration);
    while (depth-- > 0)
        o11y__buf_putc(&l.b, '}');
    o11y__line_end(&l, duration);
}

void o11y_log_fields(o11y_logger *lg, o11y_log_level level, const char *event, const char *message,
                     const o11y_field *fields, size_t n_fields)
{
    log_fields(lg, level, event, message, fields, fields ? n_fields : 0);
}

void o11y_log_va(o11y_logger *lg, o11y_log_level level, const char *event, const char *message, ...)
{
    if (!lg)
        lg = o11y_logger_default();
    if (!o11y_logger_enabled(lg, level))
        return;
    o11y_field fields[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, message);
    for (;;) {
        o11y_field f = va_arg(ap, o11y_field);
        if (f.type == O11Y_FIELD_END)
            break;
        if (n < O11Y_ARRAY_LEN(fields))
            fields[n++] = f;
    }
    va_end(ap);
    log_fields(lg, level, event, message, fields, n);
}

/*=== MARK: the access line ===*/

void o11y__log_access(o11y_logger *lg, const o11y__access_line *a)
{
    /* The one line every request writes: built from pre-rendered pieces; only the path is
     * escaped. */
    static const char head[] = ",\"message\":\"request completed\",\"event\":\"http_request\"";
    o11y__line l;
    if (!o11y__line_begin_json(&l, lg, a->status >= 500 ? O11Y_LOG_ERROR : O11Y_LOG_INFO, head,
                               sizeof head - 1))
        return;
    o11y__buf *b = &l.b;
    l.meta_mark = b->len;
    l.meta_open = true;
    o11y__buf_lit(b, ",\"metadata\":{\"method\":\"");
    o11y__buf_cstr(b, a->method);
    o11y__buf_lit(b, "\",\"route\":\"");
    o11y__buf_append(b, a->route, a->route_len);
    o11y__buf_lit(b, "\",\"path\":");
    o11y__json_str(b, a->path, a->path_len, 1024);
    o11y__buf_lit(b, ",\"status\":");
    o11y__json_u64(b, (uint64_t)a->status);
    o11y__buf_lit(b, ",\"bytes\":");
    o11y__json_u64(b, a->bytes);
    if (a->aborted)
        o11y__buf_lit(b, ",\"aborted\":true");
    o11y__line_end(&l, a->elapsed_ms);
}

/*=== MARK: the writer thread ===*/

static void futex_wait(atomic_uint *word, unsigned expected, long timeout_ms)
{
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
}

/* A write failed after `done` bytes of the batch p: the file must hold only whole lines
 * (CONTRACT section 3). A regular file is cut back to the end of the last whole line; where
 * that cannot be done (a pipe, a terminal), the fragment is ended with a newline before the
 * next write, so at most that one line is broken and nothing is glued to it. */
static void end_torn_line(o11y_logger *lg, const char *p, size_t done)
{
    size_t whole = done;
    while (whole && p[whole - 1] != '\n')
        whole--;
    size_t fragment = done - whole;
    if (!fragment)
        return;
    struct stat st;
    if (fstat(lg->fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= (off_t)fragment &&
        ftruncate(lg->fd, st.st_size - (off_t)fragment) == 0)
        return;
    lg->torn = true;
}

static void write_batch(o11y_logger *lg, const char *p, size_t len, uint64_t lines)
{
    if (lg->torn) {
        if (write(lg->fd, "\n", 1) != 1) {
            atomic_fetch_add_explicit(&lg->write_errors, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&lg->lines_failed, lines, memory_order_relaxed);
            return; /* still failing: nothing of this batch is written either */
        }
        lg->torn = false;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(lg->fd, p + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        /* Full disk, closed pipe, revoked file: count it and drop the batch; never retry in a
         * loop that could stall the queue forever. The lines already written stay, whole. */
        end_torn_line(lg, p, done);
        uint64_t whole_lines = 0;
        for (size_t i = 0; i < done; i++)
            whole_lines += p[i] == '\n';
        atomic_fetch_add_explicit(&lg->write_errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&lg->lines_failed, lines - whole_lines, memory_order_relaxed);
        atomic_fetch_add_explicit(&lg->lines_written, whole_lines, memory_order_relaxed);
        atomic_fetch_add_explicit(&lg->bytes_written, done, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&lg->lines_written, lines, memory_order_relaxed);
    atomic_fetch_add_explicit(&lg->bytes_written, len, memory_order_relaxed);
}

/* Moves committed lines from the queue into the batch buffer; returns the bytes copied and
 * sets *pending when a reserved record is not committed yet. */
static size_t drain(o11y_logger *lg, uint64_t *lines, bool *pending)
{
    const size_t cap = lg->ring_cap;
    uint_fast64_t pos = atomic_load_explicit(&lg->tail, memory_order_relaxed);
    uint_fast64_t head = atomic_load_explicit(&lg->head, memory_order_acquire);
    uint_fast64_t start = pos;
    size_t out = 0;
    *lines = 0;
    *pending = false;
    while (pos < head) {
        size_t off = (size_t)pos & (cap - 1);
        rec_header *h = (rec_header *)(void *)(lg->ring + off);
        uint8_t state = atomic_load_explicit(&lg->ring_state[off / 8], memory_order_acquire);
        if (state == REC_EMPTY) {
            *pending = true;
            break;
        }
        size_t len = h->len;
        if (state == REC_LINE) {
            if (out + len > BATCH_BYTES)
                break;
            memcpy(lg->batch + out, lg->ring + off + sizeof(rec_header), len);
            out += len;
            (*lines)++;
        }
        /* Cleared before tail moves past it (release below), so the next producer here finds
         * it empty until it commits. */
        atomic_store_explicit(&lg->ring_state[off / 8], REC_EMPTY, memory_order_relaxed);
        pos += sizeof(rec_header) + align8(len);
    }
    if (pos != start)
        atomic_store_explicit(&lg->tail, pos, memory_order_release);
    return out;
}

static void reopen_file(o11y_logger *lg)
{
    if (!lg->file_path)
        return;
    int fd = open_log_file(lg->file_path);
    if (fd < 0) {
        atomic_fetch_add_explicit(&lg->write_errors, 1, memory_order_relaxed);
        return; /* keep writing to the old file rather than lose lines */
    }
    close(lg->fd);
    lg->fd = fd;
}

/*=== MARK: the pretty format ===*/

/* The pretty format is made from the JSON line, on the writer thread: one formatting path on the
 * hot path, and the cost of parsing only where a person reads the output. */
static void pretty_value(o11y__buf *b, const json_t *v)
{
    if (json_is_string(v)) {
        o11y__buf_append(b, json_string_value(v), json_string_length(v));
        return;
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text) {
        o11y__buf_cstr(b, text);
        o11y__free(text); /* jansson allocates with the C allocator, as o11y__ does */
    }
}

static void pretty_line(const o11y_logger *lg, o11y__buf *b, const char *line, size_t len)
{
    json_error_t err;
    json_t *j = json_loadb(line, len, 0, &err);
    if (!json_is_object(j)) { /* cannot happen for our lines; keep it rather than lose it */
        json_decref(j);
        o11y__buf_append(b, line, len);
        o11y__buf_putc(b, '\n');
        return;
    }
    const char *level = json_string_value(json_object_get(j, "level"));
    const char *ts = json_string_value(json_object_get(j, "timestamp"));
    const char *colour = !lg->colour || !level                                        ? ""
                         : strcmp(level, "ERROR") == 0 || strcmp(level, "FATAL") == 0 ? "\033[31m"
                         : strcmp(level, "WARN") == 0                                 ? "\033[33m"
                         : strcmp(level, "DEBUG") == 0                                ? "\033[2m"
                                                                                      : "\033[32m";
    /* 12:30:00.123 INFO  message  key=value ... */
    if (ts && strlen(ts) >= 23)
        o11y__buf_append(b, ts + 11, 12);
    o11y__buf_putc(b, ' ');
    o11y__buf_cstr(b, colour);
    char lv[8];
    snprintf(lv, sizeof lv, "%-5s", level ? level : "?");
    o11y__buf_cstr(b, lv);
    if (*colour)
        o11y__buf_lit(b, "\033[0m");
    o11y__buf_putc(b, ' ');
    json_t *message = json_object_get(j, "message");
    if (message)
        pretty_value(b, message);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        if (!strcmp(key, "timestamp") || !strcmp(key, "level") || !strcmp(key, "message") ||
            !strcmp(key, "metadata") || !strcmp(key, "span_id") || !strcmp(key, "parent_span_id"))
            continue;
        o11y__buf_lit(b, "  ");
        o11y__buf_cstr(b, key);
        o11y__buf_putc(b, '=');
        pretty_value(b, v);
    }
    json_t *meta = json_object_get(j, "metadata");
    json_object_foreach(meta, key, v)
    {
        o11y__buf_lit(b, "  ");
        o11y__buf_cstr(b, key);
        o11y__buf_putc(b, '=');
        pretty_value(b, v);
    }
    o11y__buf_putc(b, '\n');
    json_decref(j);
}

/* Renders a batch of JSON lines into lg->pretty_buf; returns its length. */
static size_t prettify(o11y_logger *lg, const char *batch, size_t len)
{
    o11y__buf b;
    o11y__buf_init_fixed(&b, lg->pretty_buf, PRETTY_BYTES);
    for (const char *p = batch, *end = batch + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t before = b.len;
        pretty_line(lg, &b, p, line);
        if (b.overflow) { /* a line that does not fit is written as it came */
            b.overflow = false;
            b.len = before;
            break;
        }
        p += line + 1;
    }
    return b.len;
}

static void *writer_main(void *arg)
{
    o11y_logger *lg = arg;
    /* Signals belong to the application's threads; a closed pipe must give EPIPE here, not kill
     * the process with SIGPIPE. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        uint64_t lines;
        bool pending;
        /* Read before draining: when it says stop, this drain sees every line committed before
         * the stop was requested, so the loop may end as soon as the drain finds nothing. */
        bool stop = atomic_load(&lg->stopping);
        uint_fast64_t before = atomic_load_explicit(&lg->tail, memory_order_relaxed);
        size_t n = drain(lg, &lines, &pending);
        if (n && lg->pretty)
            write_batch(lg, lg->pretty_buf, prettify(lg, lg->batch, n), lines);
        else if (n)
            write_batch(lg, lg->batch, n, lines);
        uint_fast64_t now = atomic_load_explicit(&lg->tail, memory_order_relaxed);
        atomic_store_explicit(&lg->written_pos, now, memory_order_release);
        if (atomic_exchange(&lg->reopen_requested, false))
            reopen_file(lg);
        if (now != before)
            continue;
        if (pending) {
            sched_yield(); /* a producer is between reserving and committing */
            continue;
        }
        if (stop)
            break;
        atomic_store(&lg->sleeping, 1);
        if (atomic_load(&lg->head) != now || atomic_load(&lg->stopping) ||
            atomic_load(&lg->reopen_requested)) {
            atomic_store(&lg->sleeping, 0);
            continue;
        }
        futex_wait(&lg->sleeping, 1, WRITER_IDLE_MS);
        atomic_store(&lg->sleeping, 0);
    }
    return NULL;
}
