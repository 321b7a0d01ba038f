/* llm.h — an OpenAI-compatible chat-completions backend through the client kit, streamed. */
#ifndef GS_LLM_H
#define GS_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct o11y_client o11y_client;

typedef struct gs_llm {
    o11y_client *client;  /* made on base_url: calls, retries, trace headers, the call's line */
    const char *base_url; /* e.g. http://127.0.0.1:8080/v1 (chat: base_url + /chat/completions) */
    const char *model;    /* used when a request names none */
    const char *api_key;  /* sent as a bearer token; never logged; NULL: none */
    unsigned timeout_ms;
} gs_llm;

typedef struct gs_llm_hooks {
    void (*progress)(void *ctx, int percentage, const char *step);
    bool (*cancelled)(void *ctx);
    void *ctx;
} gs_llm_hooks;

typedef enum gs_llm_result { GS_LLM_DONE, GS_LLM_CANCELLED, GS_LLM_FAILED } gs_llm_result;

/* Streams a completion for prompt. On DONE, *output (malloc'd) and *tokens; on FAILED, a code and
 * a message fit for a client (never the URL, the key or the backend's raw text). */
gs_llm_result gs_llm_generate(const gs_llm *llm, const char *model, const char *prompt,
                              const char *tracestate, const char *baggage,
                              const gs_llm_hooks *hooks, char **output, int64_t *tokens, char *code,
                              size_t code_len, char *message, size_t message_len);

#endif
