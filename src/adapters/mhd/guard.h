/* adapters/mhd/guard.h — the connection guard: limits and deadlines libmicrohttpd lacks.
 *
 * libmicrohttpd 0.9.75 has an idle timeout but no deadline for a request head or for a body's
 * progress, so a client that sends a byte every few seconds holds a connection forever; and
 * past its connection limit it stops accepting, which leaves new clients hanging in the listen
 * backlog instead of refused. The guard keeps, per connection, the phase (head, body, answer)
 * and its deadline; a reaper thread shuts down the sockets past theirs, and the accept policy
 * refuses a client over its share, or anyone past the global limit, at once. */
#ifndef O11Y_MHD_GUARD_H
#define O11Y_MHD_GUARD_H

#include "core/internal.h"
#include "o11y/log.h"
#include "o11y/metrics.h"

#include <stdatomic.h>
#include <sys/socket.h>

typedef struct o11y__guard o11y__guard;
typedef struct o11y__guarded_conn o11y__guarded_conn;

typedef struct o11y__guard_config {
    unsigned max_connections;      /* refused past this many open connections */
    unsigned max_per_client;       /* refused past this many from one address */
    unsigned head_timeout_s;       /* a new connection's request head must arrive in this */
    unsigned idle_timeout_s;       /* between requests on a kept-alive connection */
    unsigned body_timeout_s;       /* a body's base allowance ... */
    unsigned body_min_bytes_per_s; /* ... plus one second per this many bytes received */
} o11y__guard_config;

/* Starts the reaper thread. metrics and logger may be NULL. NULL on failure. */
o11y__guard *o11y__guard_start(const o11y__guard_config *cfg, o11y_metrics *metrics,
                               o11y_logger *logger);
/* Stops the reaper and frees the guard; every connection must have been closed. */
void o11y__guard_stop(o11y__guard *g);

/* The accept policy: false refuses the peer now (counted; logged at most once in 10 s). */
bool o11y__guard_admit(o11y__guard *g, const struct sockaddr *peer);
/* A connection began (fd, peer) or ended: its accounting. begin returns NULL on ENOMEM (the
 * connection is then left unguarded, never refused for it). */
o11y__guarded_conn *o11y__guard_begin(o11y__guard *g, int fd, const struct sockaddr *peer);
void o11y__guard_end(o11y__guard *g, o11y__guarded_conn *c);

/* Phase changes, from the connection's own thread. NULL c is a no-op. */
void o11y__guard_body(o11y__guarded_conn *c);               /* the head is in */
void o11y__guard_received(o11y__guarded_conn *c, size_t n); /* n more body bytes */
void o11y__guard_answering(o11y__guarded_conn *c);          /* no deadline while answering */
void o11y__guard_idle(o11y__guarded_conn *c);               /* a request ended: next head */
/* True when the reaper ended this connection's request (for the access line's 408). */
bool o11y__guard_timed_out(const o11y__guarded_conn *c);

/* Counts a message of the server library and logs it at most once in 10 s, with the number
 * left out since the last line: one client's aborted connections never flood the log. */
void o11y__guard_server_message(o11y__guard *g, const char *msg, size_t len);

#endif
