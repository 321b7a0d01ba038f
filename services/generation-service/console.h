/* console.h — the web console's files (the TypeScript kit's console, built by make), served
 * from memory at /console/FILE with their content types, ETags and caching. */
#ifndef GS_CONSOLE_H
#define GS_CONSOLE_H

#include <o11y/http.h>
#include <stddef.h>

typedef struct gs_console gs_console;

/* Reads the regular files of dir (not below it; names of [A-Za-z0-9._-]; at most 64 files of at
 * most 8 MiB) and registers GET /console (a redirect to /console/index.html) and
 * GET /console/{file}. *out NULL without an index.html: nothing registered (the console is not
 * built), O11Y_OK. Returns O11Y_OK, O11Y_EIO (a file could not be read; err says which) or
 * O11Y_ENOMEM. */
o11y_status gs_console_register(o11y_service *svc, const char *dir, gs_console **out, char *err,
                                size_t err_len);
/* How many files are served. */
size_t gs_console_files(const gs_console *c);
void gs_console_free(gs_console *c);

#endif
