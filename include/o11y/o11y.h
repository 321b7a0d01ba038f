/* o11y/o11y.h — the core's public API. The optional parts have their own headers: o11y/sqlite.h,
 * o11y/redis.h, o11y/curl.h. */
#ifndef O11Y_O11Y_H
#define O11Y_O11Y_H

#include "o11y/common.h"
#include "o11y/error.h"
#include "o11y/health.h"
#include "o11y/http.h"
#include "o11y/idempotency.h"
#include "o11y/log.h"
#include "o11y/metrics.h"
#include "o11y/mhd.h"
#include "o11y/operation.h"
#include "o11y/ratelimit.h"
#include "o11y/trace.h"

#endif
