/* llm.c — the OpenAI-compatible backend through the client kit (o11y/client.h): POST
 * {base}/chat/completions with "stream": true, read the server-sent "data:" lines as they come,
 * report progress, stop on cancel. The kit makes the call a span of its own under the job's
 * (X-Trace-Id, a traceparent naming the call's span, X-Job-Id, X-Project-Id, tracestate and
 * baggage), writes its http_client_request line and the client histogram, and retries what is
 * safe: the job id goes as the Idempotency-Key, so a 429/502/503/504 or a refused connection
 * before the first token is tried again, while a stream cut after tokens came is not (it has no
 * ids to resume from: a second call would start the text over). */
#include "llm.h"

#include <jansson.h>
#include <o11y/client.h>
#include <o11y/log.h>
#include <o11y/trace.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXPECTED_CHARS = 2000 };

typedef struct stream_state {
    const gs_llm_hooks *hooks;
    char *out;
    size_t out_len;
    int64_t tokens;
    int reported;
    bool done, bad;
} stream_state;

static void append_content(stream_state *s, const char *text)
{
    size_t n = strlen(text);
    char *p = realloc(s->out, s->out_len + n + 1);
    if (!p) {
        s->bad = true;
        return;
    }
    memcpy(p + s->out_len, text, n + 1);
    s->out = p;
    s->out_len += n;
    int pct = (int)(s->out_len * 100 / EXPECTED_CHARS);
    if (pct > 95)
        pct = 95; /* 100 belongs to the end of the stream */
    if (pct >= s->reported + 10 && s->hooks->progress) {
        s->reported = pct;
        s->hooks->progress(s->hooks->ctx, pct, "streaming");
    }
}

/* One event of the stream: a chat-completion chunk, or [DONE]. Non-zero stops the stream. */
static int on_chunk(const o11y_sse_event *ev, void *ctx)
{
    stream_state *s = ctx;
    if (strcmp(ev->data, "[DONE]") == 0) {
        s->done = true;
        return 1;
    }
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!j) {
        s->bad = true;
        return 1;
    }
    json_t *delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
    const char *content = json_string_value(json_object_get(delta, "content"));
    if (content)
        append_content(s, content);
    json_t *total = json_object_get(json_object_get(j, "usage"), "total_tokens");
    if (json_is_integer(total))
        s->tokens = json_integer_value(total);
    json_decref(j);
    return s->bad ? 1 : 0;
}

static int cancelled(void *ctx)
{
    const gs_llm_hooks *h = ((stream_state *)ctx)->hooks;
    return h->cancelled && h->cancelled(h->ctx) ? 1 : 0;
}

gs_llm_result gs_llm_generate(const gs_llm *llm, const char *model, const char *prompt,
                              const char *tracestate, const char *baggage,
                              const gs_llm_hooks *hooks, char **output, int64_t *tokens, char *code,
                              size_t code_len, char *message, size_t message_len)
{
    json_t *req = json_pack("{s:s,s:b,s:[{s:s,s:s},{s:s,s:s}]}", "model",
                            model ? model : llm->model, "stream", 1, "messages", "role", "system",
                            "content", "You write episode scripts for a podcast series.", "role",
                            "user", "content", prompt);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    stream_state s = {.hooks = hooks};
    char auth[600] = "";
    const char *headers[2] = {NULL, NULL};
    if (llm->api_key && *llm->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", llm->api_key);
        headers[0] = auth; /* the kit never logs request headers */
    }
    o11y_trace_ctx *job = o11y_trace_current();
    static const char *const no_final_event[] = {NULL}; /* the end is the [DONE] chunk */
    o11y_client_request rq = {.method = "POST",
                              .path = "/chat/completions",
                              .body = body,
                              .headers = headers,
                              .idempotency_key = job && job->job_id_len ? job->job_id : NULL,
                              .tracestate = tracestate,
                              .baggage = baggage,
                              .deadline_ms = llm->timeout_ms};
    o11y_sse_opts so = {.on_event = on_chunk,
                        .ctx = &s,
                        .final_events = no_final_event,
                        .heartbeat_ms = llm->timeout_ms / 2,
                        .max_reconnects = 2,
                        .should_stop = cancelled};
    o11y_client_response resp = {0};
    o11y_status st = body ? o11y_client_sse(llm->client, &rq, &so, &resp) : O11Y_ENOMEM;
    memset(auth, 0, sizeof auth);
    free(body);
    if (hooks->cancelled && hooks->cancelled(hooks->ctx)) {
        o11y_client_response_clear(&resp);
        free(s.out);
        return GS_LLM_CANCELLED;
    }
    snprintf(code, code_len, "LLM_UNAVAILABLE");
    /* The message names what went wrong in the contract's words, never the backend's text. */
    if (st == O11Y_OK && s.done && !s.bad) {
        *output = s.out ? s.out : strdup("");
        *tokens = s.tokens ? s.tokens : (int64_t)(s.out_len + 3) / 4;
        o11y_client_response_clear(&resp);
        return GS_LLM_DONE;
    }
    if (st == O11Y_OK || s.bad)
        snprintf(message, message_len, "The generator backend's stream ended unexpectedly");
    else if (resp.error.status)
        snprintf(message, message_len, "The generator backend answered HTTP %d", resp.error.status);
    else if (strcmp(resp.error.code, "TIMEOUT") == 0)
        snprintf(message, message_len, "The generator backend could not be reached (timeout)");
    else if (resp.attempts && resp.status == 200)
        snprintf(message, message_len, "The generator backend's stream ended unexpectedly");
    else
        snprintf(message, message_len,
                 "The generator backend could not be reached (connection failed)");
    o11y_client_response_clear(&resp);
    free(s.out);
    return GS_LLM_FAILED;
}
