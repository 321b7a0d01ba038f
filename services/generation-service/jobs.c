/* jobs.c — generation jobs and their Server-Sent Events.
 *
 * Lifetime: a job is reference-counted under the jobs lock. The table holds one reference while
 * the job is listed; a worker running it, a cancel in progress and each subscriber hold one
 * each. Trimming only unlists a job and drops the table's reference, so whoever still works on
 * it keeps a valid job; the last reference frees it.
 *
 * One mutex guards the queue, the jobs and their subscribers; the work itself (a step's delay,
 * the database writes) happens outside it. Each job keeps the events it has published, so a
 * late subscriber gets the history first and Last-Event-ID resumes without a repeat. A stream
 * whose subscriber has nothing new sleeps without a thread (o11y_res_stream); the worker wakes
 * it when it publishes, and a heartbeat thread wakes every stream now and then so a comment
 * keeps proxies from timing out and a vanished client is noticed. */
#include "jobs.h"

#include "events.h"
#include <o11y/log.h>
#include <o11y/metrics.h>

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { JOBS_KEPT_DEFAULT = 1000, MAX_EVENTS = 64 };

typedef struct sse_event {
    long id;
    char type[16];
    char *frame; /* "id: N\nevent: T\ndata: {...}\n\n" */
    size_t len;
} sse_event;

typedef struct sub sub;

struct gs_job {
    gs_job *next_all, *next_queued;
    unsigned refs; /* under the jobs lock */
    gs_generation g;
    o11y_trace_ctx ctx;
    char *tracestate, *baggage; /* the POST's, normalized; NULL: none */
    atomic_bool cancel;
    char cancel_reason[64];
    bool finished;
    sse_event events[MAX_EVENTS];
    size_t n_events;
    sub *subs;
    int64_t started_ns;
};

struct sub {
    sub *next;
    gs_jobs *jobs;
    gs_job *job;
    o11y_stream *stream;
    size_t next_event;
    long after_id;
    bool sent_retry;
    int64_t opened_ns, last_send_ns;
    char client_id[48];
    o11y_trace_ctx ctx; /* the subscribing request's: its events and its end carry it */
};

struct gs_jobs {
    pthread_mutex_t lock;
    pthread_cond_t work, finished;
    gs_job *queue_head, *queue_tail, *all;
    size_t queued, reserved, n_all;
    bool stopping;
    gs_store *store;
    gs_jobs_config cfg;
    pthread_t *workers;
    pthread_t heartbeat;
    o11y_metric *m_generations, *m_messages;
    o11y_series *s_duration, *s_tokens, *s_sse_active, *s_sse_duration;
};

static void job_free(gs_job *job)
{
    for (size_t i = 0; i < job->n_events; i++)
        free(job->events[i].frame);
    free(job->g.prompt);
    free(job->g.output);
    free(job->tracestate);
    free(job->baggage);
    free(job);
}

/* Both with the jobs lock held. */
static void job_ref(gs_job *job)
{
    job->refs++;
}

static void job_unref(gs_job *job)
{
    if (--job->refs == 0)
        job_free(job);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*=== MARK: metrics ===*/

static o11y_metric *family(o11y_metrics *m, const char *name, const char *help,
                           o11y_metric_type type, const char *label)
{
    const char *labels[] = {label};
    o11y_metric_opts o = {
        .name = name, .help = help, .type = type, .label_names = labels, .n_labels = label ? 1 : 0};
    o11y_metric *f = NULL;
    return o11y_metric_register_or_get(m, &o, &f) == O11Y_OK ? f : NULL;
}

static o11y_series *series0(o11y_metric *f)
{
    o11y_series *s = NULL;
    return f && o11y_metric_series(f, NULL, &s) == O11Y_OK ? s : NULL;
}

static void count(o11y_metric *f, const char *label)
{
    o11y_series *s;
    const char *v[] = {label};
    if (f && o11y_metric_series(f, v, &s) == O11Y_OK)
        o11y_counter_inc(s);
}

static void register_metrics(gs_jobs *j)
{
    o11y_metrics *m = o11y_metrics_default();
    if (!m)
        return;
    j->m_generations =
        family(m, "generations_total", "Generations finished, by status", O11Y_COUNTER, "status");
    j->m_messages = family(m, "sse_messages_sent_total", "Server-Sent Events messages sent",
                           O11Y_COUNTER, "type");
    j->s_duration =
        series0(family(m, "generation_duration_seconds",
                       "Time from a generation's start to its end", O11Y_HISTOGRAM, NULL));
    j->s_tokens =
        series0(family(m, "generation_tokens_total", "Tokens generated", O11Y_COUNTER, NULL));
    j->s_sse_active =
        series0(family(m, "sse_connections_active", "Open event streams", O11Y_GAUGE, NULL));
    j->s_sse_duration = series0(family(m, "sse_connection_duration_seconds",
                                       "How long event streams stayed open", O11Y_HISTOGRAM, NULL));
}

/*=== MARK: events (lock held) ===*/

/* The streams to wake, collected under the jobs lock (each retained) and woken after it is
 * released: waking calls into the HTTP server, which may call back into our lock (a stream's
 * done callback), so it must never run under it. */
typedef struct wake_list {
    o11y_stream **streams;
    size_t n, cap;
} wake_list;

static void collect(gs_job *job, wake_list *w)
{
    for (sub *s = job->subs; s; s = s->next) {
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 16;
            o11y_stream **p = realloc(w->streams, cap * sizeof *p);
            if (!p)
                return; /* the heartbeat wakes the ones left out */
            w->streams = p;
            w->cap = cap;
        }
        o11y_stream_retain(s->stream);
        w->streams[w->n++] = s->stream;
    }
}

static void wake_all(wake_list *w)
{
    for (size_t i = 0; i < w->n; i++) {
        o11y_stream_wake(w->streams[i]);
        o11y_stream_release(w->streams[i]);
    }
    free(w->streams);
    *w = (wake_list){0};
}

/* Appends an SSE event to the job's history and wakes its subscribers. data: JSON text. */
static void publish(gs_job *job, const char *type, const char *data)
{
    if (job->n_events == MAX_EVENTS)
        return;
    sse_event *e = &job->events[job->n_events];
    e->id = (long)job->n_events + 1; /* from 1, increasing */
    snprintf(e->type, sizeof e->type, "%s", type);
    size_t cap = strlen(data) + 64;
    e->frame = malloc(cap);
    if (!e->frame)
        return;
    e->len = (size_t)snprintf(e->frame, cap, "id: %ld\nevent: %s\ndata: %s\n\n", e->id, type, data);
    job->n_events++;
}

/* Publishes under the lock, wakes the subscribers after it. */
static void publish_and_wake(gs_jobs *j, gs_job *job, const char *type, const char *data,
                             bool final)
{
    wake_list w = {0};
    pthread_mutex_lock(&j->lock);
    publish(job, type, data);
    if (final) {
        job->finished = true;
        pthread_cond_broadcast(&j->finished);
    }
    collect(job, &w);
    pthread_mutex_unlock(&j->lock);
    wake_all(&w);
}

/*=== MARK: the built-in generator ===*/

static const struct {
    const char *name;
    int percentage;
} steps[] = {{"outline", 25}, {"scenes", 50}, {"dialogue", 75}, {"polish", 100}};

/* The text a step adds: deterministic, from the prompt, so demos and tests need nothing else. */
static void append_step(gs_generation *g, size_t step)
{
    static const char *const before[] = {
        "OUTLINE\n1. Opening: ", "SCENES\nINT. STUDIO - DAY\nThe story of \"",
        "DIALOGUE\nHOST: Tonight we talk about ", "POLISH\n(Final pass over \""};
    static const char *const after[] = {"\n2. Turn\n3. Resolution\n\n", "\" begins.\n\n",
                                        ".\nGUEST: Where do we start?\n\n",
                                        "\": tightened pacing, consistent names.)\n"};
    char prompt[200];
    snprintf(prompt, sizeof prompt, "%.190s", g->prompt);
    size_t old = g->output ? strlen(g->output) : 0;
    size_t add = strlen(before[step]) + strlen(prompt) + strlen(after[step]);
    char *out = realloc(g->output, old + add + 1);
    if (!out)
        return;
    snprintf(out + old, add + 1, "%s%s%s", before[step], prompt, after[step]);
    g->output = out;
}

/* Sleeps one step in slices, returning early on cancel or stop. */
static bool wait_step(gs_jobs *j, gs_job *job)
{
    for (unsigned waited = 0; waited < j->cfg.step_ms; waited += 10) {
        if (atomic_load(&job->cancel))
            return false;
        pthread_mutex_lock(&j->lock);
        bool stopping = j->stopping;
        pthread_mutex_unlock(&j->lock);
        if (stopping)
            return false;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    return !atomic_load(&job->cancel);
}

static void save(gs_jobs *j, gs_job *job)
{
    if (gs_generation_save(j->store, &job->g) != GS_OK)
        o11y_log_error("cannot save the generation",
                       O11Y_STR("error", gs_store_last_error(j->store)));
}

static void finish(gs_jobs *j, gs_job *job, const char *status, const char *type, const char *data)
{
    /* Stored first: whoever learns the job finished (DELETE waits for it) reads the final row. */
    snprintf(job->g.status, sizeof job->g.status, "%s", status);
    save(j, job);
    publish_and_wake(j, job, type, data, true);
    count(j->m_generations, status);
    if (j->s_duration)
        o11y_histogram_observe(j->s_duration, (double)(now_ns() - job->started_ns) / 1e9);
}

typedef enum outcome { RUN_DONE, RUN_CANCELLED, RUN_INTERRUPTED, RUN_FAILED } outcome;

static void progress(gs_jobs *j, gs_job *job, int percentage, const char *step)
{
    job->g.progress = percentage;
    snprintf(job->g.step, sizeof job->g.step, "%s", step);
    save(j, job);
    char data[128];
    snprintf(data, sizeof data, "{\"percentage\":%d,\"step\":\"%s\"}", percentage, step);
    publish_and_wake(j, job, "progress", data, false);
    gs_event_generation_progress(job->g.id, percentage, step);
}

static outcome run_builtin(gs_jobs *j, gs_job *job)
{
    for (size_t done = 0; done < sizeof steps / sizeof steps[0]; done++) {
        if (!wait_step(j, job))
            return atomic_load(&job->cancel) ? RUN_CANCELLED : RUN_INTERRUPTED;
        append_step(&job->g, done);
        progress(j, job, steps[done].percentage, steps[done].name);
    }
    size_t len = job->g.output ? strlen(job->g.output) : 0;
    job->g.total_tokens = (int64_t)(len + 3) / 4; /* about four characters a token */
    return RUN_DONE;
}

typedef struct llm_ctx {
    gs_jobs *j;
    gs_job *job;
} llm_ctx;

static void llm_progress(void *ctx, int percentage, const char *step)
{
    llm_ctx *c = ctx;
    progress(c->j, c->job, percentage, step);
}

static bool llm_cancelled(void *ctx)
{
    llm_ctx *c = ctx;
    pthread_mutex_lock(&c->j->lock);
    bool stopping = c->j->stopping;
    pthread_mutex_unlock(&c->j->lock);
    return stopping || atomic_load(&c->job->cancel);
}

static outcome run_llm(gs_jobs *j, gs_job *job)
{
    llm_ctx c = {j, job};
    gs_llm_hooks hooks = {llm_progress, llm_cancelled, &c};
    char *output = NULL;
    int64_t tokens = 0;
    gs_llm_result r =
        gs_llm_generate(j->cfg.llm, job->g.model, job->g.prompt, job->tracestate, job->baggage,
                        &hooks, &output, &tokens, job->g.error_code, sizeof job->g.error_code,
                        job->g.error_message, sizeof job->g.error_message);
    if (r == GS_LLM_CANCELLED)
        return atomic_load(&job->cancel) ? RUN_CANCELLED : RUN_INTERRUPTED;
    if (r == GS_LLM_FAILED)
        return RUN_FAILED;
    free(job->g.output);
    job->g.output = output;
    job->g.total_tokens = tokens;
    progress(j, job, 100, "done");
    return RUN_DONE;
}

static void run_job(gs_jobs *j, gs_job *job)
{
    o11y_trace_set_current(&job->ctx); /* the POST's trace, job and project ids */
    job->started_ns = now_ns();
    snprintf(job->g.status, sizeof job->g.status, "running");
    save(j, job);
    gs_event_generation_started(job->g.id, job->g.project_id, job->g.episode_id, job->g.model,
                                (int64_t)strlen(job->g.prompt));
    outcome o = j->cfg.llm ? run_llm(j, job) : run_builtin(j, job);
    double ms = (double)(now_ns() - job->started_ns) / 1e6;
    char data[512];
    if (o == RUN_CANCELLED) {
        snprintf(data, sizeof data, "{\"reason\":\"%s\"}", job->cancel_reason);
        finish(j, job, "cancelled", "cancelled", data);
        gs_event_generation_cancelled(job->g.id, job->cancel_reason, ms);
    } else if (o == RUN_INTERRUPTED || o == RUN_FAILED) {
        if (o == RUN_INTERRUPTED) {
            snprintf(job->g.error_code, sizeof job->g.error_code, "INTERRUPTED");
            snprintf(job->g.error_message, sizeof job->g.error_message,
                     "The service stopped before the generation finished");
        }
        json_t *d =
            json_pack("{s:s,s:s}", "code", job->g.error_code, "message", job->g.error_message);
        char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        finish(j, job, "failed", "failed", text ? text : "{\"code\":\"INTERNAL_ERROR\"}");
        free(text);
        gs_event_generation_failed(job->g.id, job->g.error_code, job->g.error_message, ms);
    } else {
        size_t len = job->g.output ? strlen(job->g.output) : 0;
        snprintf(data, sizeof data,
                 "{\"outputLength\":%zu,\"totalTokens\":%lld,\"durationMs\":%.0f}", len,
                 (long long)job->g.total_tokens, ms);
        finish(j, job, "completed", "completed", data);
        if (j->s_tokens)
            o11y_counter_add(j->s_tokens, (uint64_t)job->g.total_tokens);
        gs_event_generation_completed(job->g.id, (int64_t)len, job->g.total_tokens, ms);
    }
    o11y_trace_set_current(NULL);
}

static void *worker_main(void *arg)
{
    gs_jobs *j = arg;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (!j->stopping && !j->queue_head)
            pthread_cond_wait(&j->work, &j->lock);
        if (j->stopping)
            break;
        gs_job *job = j->queue_head;
        j->queue_head = job->next_queued;
        if (!j->queue_head)
            j->queue_tail = NULL;
        j->queued--;
        job_ref(job); /* the job stays valid while it runs, trimmed or not */
        pthread_mutex_unlock(&j->lock);
        run_job(j, job);
        pthread_mutex_lock(&j->lock);
        job_unref(job);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

static void *heartbeat_main(void *arg)
{
    gs_jobs *j = arg;
    pthread_mutex_lock(&j->lock);
    while (!j->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + (int64_t)(j->cfg.heartbeat_ms / 2 + 1) * 1000000;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&j->finished, &j->lock, &until);
        /* Each reader decides whether a heartbeat is due; waking happens unlocked. */
        wake_list w = {0};
        for (gs_job *job = j->all; job && !j->stopping; job = job->next_all)
            collect(job, &w);
        pthread_mutex_unlock(&j->lock);
        wake_all(&w);
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/*=== MARK: lifecycle ===*/

gs_jobs *gs_jobs_start(gs_store *store, const gs_jobs_config *cfg)
{
    gs_jobs *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->store = store;
    j->cfg = *cfg;
    if (!j->cfg.workers)
        j->cfg.workers = 2;
    if (!j->cfg.queue_cap)
        j->cfg.queue_cap = 64;
    if (!j->cfg.step_ms)
        j->cfg.step_ms = 400;
    if (!j->cfg.heartbeat_ms)
        j->cfg.heartbeat_ms = 15000;
    if (!j->cfg.retry_ms)
        j->cfg.retry_ms = 3000;
    if (!j->cfg.jobs_kept)
        j->cfg.jobs_kept = JOBS_KEPT_DEFAULT;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->work, NULL);
    pthread_cond_init(&j->finished, NULL);
    register_metrics(j);
    j->workers = calloc(j->cfg.workers, sizeof *j->workers);
    for (unsigned i = 0; j->workers && i < j->cfg.workers; i++)
        pthread_create(&j->workers[i], NULL, worker_main, j);
    pthread_create(&j->heartbeat, NULL, heartbeat_main, j);
    return j;
}

void gs_jobs_stop(gs_jobs *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    pthread_cond_broadcast(&j->work);
    pthread_cond_broadcast(&j->finished);
    pthread_mutex_unlock(&j->lock);
    for (unsigned i = 0; j->workers && i < j->cfg.workers; i++)
        pthread_join(j->workers[i], NULL);
    pthread_join(j->heartbeat, NULL);
    /* Streams have ended with the server (it stops first); jobs still queued never ran: the
     * database says INTERRUPTED for them at the next start. */
    while (j->all) {
        gs_job *job = j->all;
        j->all = job->next_all;
        job_unref(job);
    }
    free(j->workers);
    pthread_cond_destroy(&j->work);
    pthread_cond_destroy(&j->finished);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* Unlists the oldest finished jobs without subscribers past jobs_kept (lock held); their state
 * stays in the database. A worker or a cancel still finishing one holds its own reference. */
static void trim(gs_jobs *j)
{
    while (j->n_all > j->cfg.jobs_kept) {
        gs_job **p = &j->all, **victim = NULL;
        for (; *p; p = &(*p)->next_all)
            if ((*p)->finished && !(*p)->subs)
                victim = p; /* the last such is the oldest (the list is newest first) */
        if (!victim)
            return;
        gs_job *old = *victim;
        *victim = old->next_all;
        j->n_all--;
        job_unref(old);
    }
}

bool gs_jobs_reserve(gs_jobs *j)
{
    pthread_mutex_lock(&j->lock);
    bool room = !j->stopping && j->queued + j->reserved < j->cfg.queue_cap;
    if (room)
        j->reserved++;
    pthread_mutex_unlock(&j->lock);
    return room;
}

void gs_jobs_unreserve(gs_jobs *j)
{
    pthread_mutex_lock(&j->lock);
    j->reserved--;
    pthread_mutex_unlock(&j->lock);
}

int gs_jobs_submit(gs_jobs *j, const gs_generation *g, const o11y_trace_ctx *ctx,
                   const char *tracestate, const char *baggage)
{
    gs_job *job = calloc(1, sizeof *job);
    bool copied = false;
    if (job) {
        job->g = *g;
        job->g.prompt = strdup(g->prompt);
        job->g.output = NULL;
        job->ctx = *ctx; /* a copy: the request's context ends with the request */
        job->refs = 1;   /* the table's */
        job->tracestate = tracestate && *tracestate ? strdup(tracestate) : NULL;
        job->baggage = baggage && *baggage ? strdup(baggage) : NULL;
        copied = job->g.prompt && (!tracestate || !*tracestate || job->tracestate) &&
                 (!baggage || !*baggage || job->baggage);
    }
    pthread_mutex_lock(&j->lock);
    j->reserved--;
    if (!job || !copied || j->stopping) {
        pthread_mutex_unlock(&j->lock);
        if (job)
            job_free(job);
        return -1;
    }
    job->next_all = j->all;
    j->all = job;
    j->n_all++;
    if (j->queue_tail)
        j->queue_tail->next_queued = job;
    else
        j->queue_head = job;
    j->queue_tail = job;
    j->queued++;
    trim(j);
    pthread_cond_signal(&j->work);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

static gs_job *find(gs_jobs *j, const char *id)
{
    for (gs_job *job = j->all; job; job = job->next_all)
        if (strcmp(job->g.id, id) == 0)
            return job;
    return NULL;
}

bool gs_jobs_cancel(gs_jobs *j, const char *id, const char *reason)
{
    pthread_mutex_lock(&j->lock);
    gs_job *job = find(j, id);
    if (!job || job->finished) {
        pthread_mutex_unlock(&j->lock);
        return false;
    }
    /* The first cancel decides the reason; a second one only waits for the end. */
    if (!atomic_load(&job->cancel)) {
        snprintf(job->cancel_reason, sizeof job->cancel_reason, "%s", reason);
        atomic_store(&job->cancel, true);
    }
    job_ref(job); /* ours until the answer is known, even if the job is trimmed meanwhile */
    /* Queued: take it out of the queue and end it here; running: its worker ends it within one
     * step. Either way, wait for the end, so the answer is the final state. */
    bool was_queued = false;
    for (gs_job **p = &j->queue_head, *prev = NULL; *p; prev = *p, p = &(*p)->next_queued) {
        if (*p == job) {
            *p = job->next_queued;
            if (j->queue_tail == job)
                j->queue_tail = prev;
            j->queued--;
            was_queued = true;
            break;
        }
    }
    pthread_mutex_unlock(&j->lock);
    if (was_queued) {
        job->started_ns = now_ns();
        char data[128];
        snprintf(data, sizeof data, "{\"reason\":\"%s\"}", job->cancel_reason);
        o11y_trace_ctx *prev = o11y_trace_set_current(&job->ctx);
        finish(j, job, "cancelled", "cancelled", data);
        gs_event_generation_cancelled(job->g.id, job->cancel_reason, 0);
        o11y_trace_set_current(prev);
        pthread_mutex_lock(&j->lock);
        job_unref(job);
        pthread_mutex_unlock(&j->lock);
        return true;
    }
    pthread_mutex_lock(&j->lock);
    while (!job->finished && !j->stopping)
        pthread_cond_wait(&j->finished, &j->lock);
    job_unref(job);
    pthread_mutex_unlock(&j->lock);
    return true;
}

/*=== MARK: Server-Sent Events ===*/

static long sse_read(void *ctx, char *buf, size_t max)
{
    sub *s = ctx;
    gs_jobs *j = s->jobs;
    o11y_trace_ctx *prev = o11y_trace_set_current(&s->ctx);
    size_t n = 0;
    const char *sent_type = NULL;
    pthread_mutex_lock(&j->lock);
    gs_job *job = s->job;
    if (!s->sent_retry) {
        n += (size_t)snprintf(buf, max, "retry: %u\n\n", j->cfg.retry_ms);
        s->sent_retry = true;
    }
    while (s->next_event < job->n_events) {
        sse_event *e = &job->events[s->next_event];
        if (e->id <= s->after_id) {
            s->next_event++;
            continue;
        }
        if (n + e->len > max)
            break; /* the rest on the next call */
        memcpy(buf + n, e->frame, e->len);
        n += e->len;
        s->next_event++;
        sent_type = e->type;
        count(j->m_messages, e->type);
        gs_event_sse_message_sent(s->client_id, e->type, (int64_t)e->len);
    }
    bool over = job->finished && s->next_event >= job->n_events;
    int64_t now = now_ns();
    if (n == 0 && !over && now - s->last_send_ns >= (int64_t)j->cfg.heartbeat_ms * 1000000) {
        n = (size_t)snprintf(buf, max, ": heartbeat\n\n");
        count(j->m_messages, "heartbeat");
    }
    if (n)
        s->last_send_ns = now;
    pthread_mutex_unlock(&j->lock);
    (void)sent_type;
    o11y_trace_set_current(prev);
    if (n)
        return (long)n;
    return over ? -1 : 0;
}

static void sse_done(void *ctx, o11y_stream_end end)
{
    sub *s = ctx;
    gs_jobs *j = s->jobs;
    pthread_mutex_lock(&j->lock);
    for (sub **p = &s->job->subs; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    job_unref(s->job);
    pthread_mutex_unlock(&j->lock);
    o11y_trace_ctx *prev = o11y_trace_set_current(&s->ctx);
    double ms = (double)(now_ns() - s->opened_ns) / 1e6;
    const char *reason = "client_disconnected";
    switch (end) {
    case O11Y_STREAM_COMPLETED:
        reason = "stream_completed";
        break;
    case O11Y_STREAM_SERVER_STOPPING:
        reason = "server_stopping";
        break;
    case O11Y_STREAM_CLIENT_CLOSED:
        break;
    case O11Y_STREAM_CLIENT_TOO_SLOW:
        reason = "client_too_slow";
        gs_event_sse_connection_error(s->client_id, "CLIENT_TOO_SLOW",
                                      "unsent data past the per-connection bound");
        break;
    case O11Y_STREAM_CLIENT_STALLED:
        reason = "client_stalled";
        gs_event_sse_connection_error(s->client_id, "CLIENT_STALLED",
                                      "the client took nothing for the connection timeout");
        break;
    }
    gs_event_sse_connection_closed(s->client_id, ms, reason);
    if (j->s_sse_active)
        o11y_gauge_add(j->s_sse_active, -1);
    if (j->s_sse_duration)
        o11y_histogram_observe(j->s_sse_duration, ms / 1e3);
    o11y_trace_set_current(prev);
    o11y_stream_release(s->stream);
    free(s);
}

bool gs_jobs_subscribe(gs_jobs *j, const char *id, long last_event_id, o11y_response *res,
                       const char *user_agent, const o11y_trace_ctx *ctx)
{
    sub *s = calloc(1, sizeof *s);
    if (!s)
        return false;
    pthread_mutex_lock(&j->lock);
    gs_job *job = find(j, id);
    if (!job) {
        pthread_mutex_unlock(&j->lock);
        free(s);
        return false;
    }
    s->jobs = j;
    s->job = job;
    s->after_id = last_event_id;
    s->opened_ns = s->last_send_ns = now_ns();
    char uuid[37];
    o11y_trace_new_id(uuid);
    snprintf(s->client_id, sizeof s->client_id, "sse_%s", uuid);
    s->ctx = *ctx;
    s->stream = o11y_res_stream(res, 200, "text/event-stream", sse_read, sse_done, s);
    if (!s->stream) {
        pthread_mutex_unlock(&j->lock);
        free(s);
        return true; /* the response is a 500 already */
    }
    /* On shutdown the client is told to come back (CONTRACT section 7). */
    char farewell[64];
    int fl =
        snprintf(farewell, sizeof farewell, "retry: %u\n: server stopping\n\n", j->cfg.retry_ms);
    if (o11y_stream_set_farewell(s->stream, farewell, (size_t)fl) != O11Y_OK)
        o11y_log_debug("no farewell for the stream");
    s->next = job->subs;
    job->subs = s;
    job_ref(job);
    pthread_mutex_unlock(&j->lock);
    if (j->s_sse_active)
        o11y_gauge_add(j->s_sse_active, 1);
    char endpoint[80];
    snprintf(endpoint, sizeof endpoint, "/generations/%s/events", id);
    gs_event_sse_connection_opened(s->client_id, endpoint, user_agent);
    return true;
}
