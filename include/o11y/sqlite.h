/* o11y/sqlite.h — the optional SQLite part (libo11y-sqlite; pkg-config o11y-sqlite; CMake
 * component sqlite): a durable idempotency store and a health check. */
#ifndef O11Y_SQLITE_H
#define O11Y_SQLITE_H

#include "o11y/health.h"
#include "o11y/idempotency.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A table in the SQLite database at path (created; WAL): durable across restarts. Expired rows
 * are purged in small batches. Returns O11Y_EINVAL, O11Y_ENOMEM, or O11Y_EBACKEND when the
 * database cannot be opened. Thread-safe store (one connection under a mutex). */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_sqlite(const char *path,
                                                             o11y_idem_store **out /* OUT */);
/* The same, with the database's size cap in bytes (0: none), the service's --db-max-bytes: the
 * table counts toward it. A full database refuses new keys (503); a response that no longer
 * fits is stored as its status alone, so the key stays completed. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_idem_store_sqlite_capped(const char *path,
                                                                    int64_t max_bytes,
                                                                    o11y_idem_store **out
                                                                    /* OUT */);

/* A query on the database at path (opened read-only), interrupted at the check's timeout; a WAL
 * index that cannot be written is unhealthy without opening it. path is copied. Returns as
 * o11y_health_add_custom. */
O11Y_API O11Y_WARN_UNUSED o11y_status o11y_health_add_sqlite(o11y_health *h,
                                                             const o11y_health_check_opts *opts,
                                                             const char *path);

#ifdef __cplusplus
}
#endif
#endif
