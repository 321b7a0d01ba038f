/* client/sse_parser.h — the event stream format (WHATWG HTML, "server-sent events": parsing an
 * event stream), on bytes as they arrive. Its own unit so a fuzz target can drive it. */
#ifndef O11Y_SSE_PARSER_H
#define O11Y_SSE_PARSER_H

#include <stdbool.h>
#include <stddef.h>

enum { SSE_ID_MAX = 1024, SSE_TYPE_MAX = 127 };

/* One complete event: its id field's value when it had one (own_id), else the last id; its
 * type ("message" when unnamed); its data lines joined by '\n'. Returns non-zero to stop. */
typedef int (*sse_dispatch_fn)(void *ctx, const char *id, bool own_id, const char *type,
                               const char *data, size_t data_len);

typedef struct sse_parser {
    size_t max_line; /* a longer line, or event data, ends the stream */
    sse_dispatch_fn dispatch;
    void *ctx;
    char *line;
    size_t line_len, line_cap;
    bool after_cr; /* a CR ended the last line: a following LF belongs to it */
    char *data;
    size_t data_len, data_cap;
    char type[SSE_TYPE_MAX + 1];
    char pending_id[SSE_ID_MAX + 1]; /* the id field of the event being read */
    bool pending_id_set;
    char last_id[SSE_ID_MAX + 1]; /* what Last-Event-ID says on a reconnect */
    bool any_id;                  /* some event named an id: the stream can be resumed */
    bool too_long, stopped, out_of_memory;
    long retry_ms; /* the last retry: field, -1 until one came */
} sse_parser;

void sse_parser_init(sse_parser *p, size_t max_line, sse_dispatch_fn dispatch, void *ctx);
/* Feeds bytes. False when the stream must end: a line too long, out of memory, or dispatch
 * said stop (the flags say which). */
bool sse_parser_feed(sse_parser *p, const char *bytes, size_t len);
/* Forgets the partial line and event (a new connection starts clean); keeps last_id, any_id and
 * retry_ms. */
void sse_parser_restart(sse_parser *p);
void sse_parser_free(sse_parser *p);

#endif
