/* generations.h — the generation routes. */
#ifndef GS_GENERATIONS_H
#define GS_GENERATIONS_H

#include "jobs.h"
#include "store.h"

#include <o11y/http.h>

typedef struct gs_app {
    gs_store *store;
    gs_jobs *jobs;
    size_t max_prompt_chars;
    const char *default_model; /* for a request that names none */
} gs_app;

/* Registers the four generation routes; the handlers keep a pointer to app. */
o11y_status gs_generation_routes(o11y_service *svc, gs_app *app);

#endif
