/* events.c — generation-service's catalog of domain events (CONTRACT section 6): one function
 * per event, so a call cannot misspell a name or a field. The library has no domain events of its
 * own; a service defines its catalog like this one, on o11y_log_event. */
#include "events.h"

#include <o11y/log.h>

enum { MAX_CHANGES = 16 };

void gs_event_episode_created(const char *project_id, const char *episode_id,
                              int64_t episode_number, const char *title)
{
    o11y_log_event("episode_created", O11Y_STR("project_id", project_id),
                   O11Y_STR("episode_id", episode_id), O11Y_INT("episode_number", episode_number),
                   O11Y_STR("title", title));
}

void gs_event_episode_updated(const char *project_id, const char *episode_id,
                              const o11y_field *changes, size_t n_changes)
{
    o11y_field f[3 + MAX_CHANGES + 1];
    size_t n = 0;
    f[n++] = O11Y_STR("project_id", project_id);
    f[n++] = O11Y_STR("episode_id", episode_id);
    f[n++] = O11Y_OBJ("changes");
    for (size_t i = 0; changes && i < n_changes && i < MAX_CHANGES; i++)
        f[n++] = changes[i];
    f[n++] = O11Y_OBJ_END;
    o11y_log_fields(NULL, O11Y_LOG_INFO, "episode_updated", "episode_updated", f, n);
}

void gs_event_episode_deleted(const char *project_id, const char *episode_id,
                              int64_t episode_number)
{
    o11y_log_event("episode_deleted", O11Y_STR("project_id", project_id),
                   O11Y_STR("episode_id", episode_id), O11Y_INT("episode_number", episode_number));
}

void gs_event_generation_started(const char *generation_id, const char *project_id,
                                 const char *episode_id, const char *model, int64_t prompt_length)
{
    o11y_log_event("generation_started", O11Y_STR("generation_id", generation_id),
                   O11Y_STR("project_id", project_id), O11Y_STR("episode_id", episode_id),
                   O11Y_STR("model", model), O11Y_INT("prompt_length", prompt_length));
}

void gs_event_generation_progress(const char *generation_id, int progress_percentage,
                                  const char *current_step)
{
    o11y_log_event("generation_progress", O11Y_STR("generation_id", generation_id),
                   O11Y_INT("progress_percentage", progress_percentage),
                   O11Y_STR("current_step", current_step));
}

void gs_event_generation_completed(const char *generation_id, int64_t output_length,
                                   int64_t total_tokens, double duration_ms)
{
    o11y_log_event("generation_completed", O11Y_STR("generation_id", generation_id),
                   O11Y_INT("output_length", output_length), O11Y_INT("total_tokens", total_tokens),
                   O11Y_DURATION_MS(duration_ms));
}

void gs_event_generation_failed(const char *generation_id, const char *error_code,
                                const char *error_message, double duration_ms)
{
    o11y_log_va(NULL, O11Y_LOG_ERROR, "generation_failed", "generation_failed",
                O11Y_STR("generation_id", generation_id), O11Y_STR("error_code", error_code),
                O11Y_STR("error_message", error_message), O11Y_DURATION_MS(duration_ms), O11Y__END);
}

void gs_event_generation_cancelled(const char *generation_id, const char *reason,
                                   double duration_ms)
{
    o11y_log_event("generation_cancelled", O11Y_STR("generation_id", generation_id),
                   O11Y_STR("reason", reason), O11Y_DURATION_MS(duration_ms));
}

void gs_event_sse_connection_opened(const char *client_id, const char *endpoint,
                                    const char *user_agent)
{
    o11y_log_event("sse_connection_opened", O11Y_STR("client_id", client_id),
                   O11Y_STR("endpoint", endpoint), O11Y_STR("user_agent", user_agent));
}

void gs_event_sse_connection_closed(const char *client_id, double duration_ms, const char *reason)
{
    o11y_log_event("sse_connection_closed", O11Y_STR("client_id", client_id),
                   O11Y_STR("reason", reason), O11Y_DURATION_MS(duration_ms));
}

void gs_event_sse_connection_error(const char *client_id, const char *error_code,
                                   const char *error_message)
{
    o11y_log_va(NULL, O11Y_LOG_WARN, "sse_connection_error", "sse_connection_error",
                O11Y_STR("client_id", client_id), O11Y_STR("error_code", error_code),
                O11Y_STR("error_message", error_message), O11Y__END);
}

void gs_event_sse_message_sent(const char *client_id, const char *message_type,
                               int64_t message_size)
{
    o11y_log_va(NULL, O11Y_LOG_DEBUG, "sse_message_sent", "sse_message_sent",
                O11Y_STR("client_id", client_id), O11Y_STR("message_type", message_type),
                O11Y_INT("message_size", message_size), O11Y__END);
}
