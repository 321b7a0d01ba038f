/* o11y/events.h — the domain event catalog (CONTRACT section 6): one function per event, each
 * writing one INFO line with "event":"<name>" and the event's fields under metadata, carrying the
 * thread's trace context. Strings are borrowed for the call; NULL strings render as null. */
#ifndef O11Y_EVENTS_H
#define O11Y_EVENTS_H

#include "o11y/common.h"
#include "o11y/log.h"

#ifdef __cplusplus
extern "C" {
#endif

O11Y_API void o11y_event_episode_created(const char *project_id, const char *episode_id,
                                         int64_t episode_number, const char *title);
/* changes: the changed fields with their new values (at most 16), as "changes":{...}. */
O11Y_API void o11y_event_episode_updated(const char *project_id, const char *episode_id,
                                         const o11y_field *changes, size_t n_changes);
O11Y_API void o11y_event_episode_deleted(const char *project_id, const char *episode_id,
                                         int64_t episode_number);

O11Y_API void o11y_event_generation_started(const char *generation_id, const char *project_id,
                                            const char *episode_id, const char *model,
                                            int64_t prompt_length);
O11Y_API void o11y_event_generation_progress(const char *generation_id, int progress_percentage,
                                             const char *current_step);
O11Y_API void o11y_event_generation_completed(const char *generation_id, int64_t output_length,
                                              int64_t total_tokens, double duration_ms);
O11Y_API void o11y_event_generation_failed(const char *generation_id, const char *error_code,
                                           const char *error_message, double duration_ms);
O11Y_API void o11y_event_generation_cancelled(const char *generation_id, const char *reason,
                                              double duration_ms);

O11Y_API void o11y_event_sse_connection_opened(const char *client_id, const char *endpoint,
                                               const char *user_agent);
O11Y_API void o11y_event_sse_connection_closed(const char *client_id, double duration_ms,
                                               const char *reason);
O11Y_API void o11y_event_sse_connection_error(const char *client_id, const char *error_code,
                                              const char *error_message);
O11Y_API void o11y_event_sse_message_sent(const char *client_id, const char *message_type,
                                          int64_t message_size);

#ifdef __cplusplus
}
#endif
#endif
