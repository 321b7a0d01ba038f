/* ratelimit/ratelimit_internal.h — the GCRA step shared by the memory store and the tests. */
#ifndef O11Y_RATELIMIT_INTERNAL_H
#define O11Y_RATELIMIT_INTERNAL_H

#include "core/internal.h"
#include "o11y/ratelimit.h"

/* One GCRA step in any time unit (`unit` of them make a second): a request at now against a key
 * whose theoretical arrival time is tat, with `emission` = window / quota. Fills *d and the TAT
 * to store (unchanged when refused). */
void o11y__gcra(int64_t tat, int64_t now, int64_t emission, int64_t window, int64_t unit,
                unsigned quota, int64_t *new_tat, o11y_ratelimit_decision *d);

#endif
