/* jobs.h — generation jobs: a bounded queue, a fixed pool of workers, the built-in generator,
 * and each job's event history for Server-Sent Events subscribers. */
#ifndef GS_JOBS_H
#define GS_JOBS_H

#include "llm.h"
#include "store.h"

#include <o11y/http.h>
#include <o11y/trace.h>

typedef struct gs_jobs gs_jobs;
typedef struct gs_job gs_job;

typedef struct gs_jobs_config {
    unsigned workers;      /* 0: 2 */
    unsigned queue_cap;    /* 0: 64 */
    unsigned step_ms;      /* the built-in generator's delay per step; 0: 400 */
    unsigned heartbeat_ms; /* SSE comment heartbeat; 0: 15000 */
    unsigned retry_ms;     /* the SSE retry: hint; 0: 3000 */
    unsigned jobs_kept;    /* finished jobs kept in memory for late subscribers; 0: 1000 */
    const gs_llm *llm;     /* an OpenAI-compatible backend (kept); NULL: the built-in one */
} gs_jobs_config;

gs_jobs *gs_jobs_start(gs_store *store, const gs_jobs_config *cfg);
/* Stops the workers (a running job ends within one step, as failed INTERRUPTED) and frees. */
void gs_jobs_stop(gs_jobs *jobs);

/* Reserves a place in the queue before anything is stored: false when the queue is full
 * (backpressure: the caller answers 503 GENERATION_QUEUE_FULL and stores nothing). */
bool gs_jobs_reserve(gs_jobs *jobs);
/* Gives back a reservation that will not be submitted. */
void gs_jobs_unreserve(gs_jobs *jobs);
/* Queues a generation into a reserved place (g is copied; its prompt too). ctx is the POST's
 * trace context; tracestate and baggage (normalized, NULL or "" for none) are copied and passed
 * on by the backend call. Returns 0, or -1 when out of memory or stopping (the reservation is
 * given back either way). */
int gs_jobs_submit(gs_jobs *jobs, const gs_generation *g, const o11y_trace_ctx *ctx,
                   const char *tracestate, const char *baggage);
/* Cancels a queued or running job; false when no such live job (finished or unknown). */
bool gs_jobs_cancel(gs_jobs *jobs, const char *id, const char *reason);

/* Answers GET /generations/{id}/events as a stream (its events and end carry ctx, the
 * subscribing request's trace context); false when the generation is not in memory
 * (the caller then answers from the database). last_event_id: events after it only. */
bool gs_jobs_subscribe(gs_jobs *jobs, const char *id, long last_event_id, o11y_response *res,
                       const char *user_agent, const o11y_trace_ctx *ctx);

#endif
