/* routes.h — generation-service's HTTP routes (CONTRACT section 7). */
#ifndef GS_ROUTES_H
#define GS_ROUTES_H

#include "store.h"

#include <o11y/http.h>

/* Registers every route on svc; the handlers keep a pointer to store. */
o11y_status gs_routes_register(o11y_service *svc, gs_store *store);

#endif
