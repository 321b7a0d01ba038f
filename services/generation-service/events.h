/* events.h — generation-service's domain events (CONTRACT section 6): one function per event,
 * each writing one INFO line with "event":"<name>" and the event's fields under metadata,
 * carrying the thread's trace context. Strings are borrowed for the call; NULL renders as null. */
#ifndef GS_EVENTS_H
#define GS_EVENTS_H

#include <o11y/log.h>

void gs_event_episode_created(const char *project_id, const char *episode_id,
                              int64_t episode_number, const char *title);
/* changes: the changed fields with their new values (at most 16), as "changes":{...}. */
void gs_event_episode_updated(const char *project_id, const char *episode_id,
                              const o11y_field *changes, size_t n_changes);
void gs_event_episode_deleted(const char *project_id, const char *episode_id,
                              int64_t episode_number);

void gs_event_generation_started(const char *generation_id, const char *project_id,
                                 const char *episode_id, const char *model, int64_t prompt_length);
void gs_event_generation_progress(const char *generation_id, int progress_percentage,
                                  const char *current_step);
void gs_event_generation_completed(const char *generation_id, int64_t output_length,
                                   int64_t total_tokens, double duration_ms);
void gs_event_generation_failed(const char *generation_id, const char *error_code,
                                const char *error_message, double duration_ms);
void gs_event_generation_cancelled(const char *generation_id, const char *reason,
                                   double duration_ms);

void gs_event_sse_connection_opened(const char *client_id, const char *endpoint,
                                    const char *user_agent);
void gs_event_sse_connection_closed(const char *client_id, double duration_ms, const char *reason);
void gs_event_sse_connection_error(const char *client_id, const char *error_code,
                                   const char *error_message);
void gs_event_sse_message_sent(const char *client_id, const char *message_type,
                               int64_t message_size);

#endif
