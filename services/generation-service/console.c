/* console.c — serves the built web console from memory: the files are few and small, read once at
 * start, so a request never touches the disk; each has a strong ETag (a hash of its bytes) for
 * conditional requests. index.html is revalidated on every load (no-cache) so a new build shows
 * at once; the script and style sheet are cached for five minutes. */
#include "console.h"

#include <dirent.h>
#include <o11y/error.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_FILES = 64, MAX_FILE_BYTES = 8 << 20 };

typedef struct console_file {
    char name[128];
    char *bytes;
    size_t len;
    char etag[24];
    const char *type, *cache;
} console_file;

struct gs_console {
    console_file files[MAX_FILES];
    size_t n;
};

static const char csp[] = "default-src 'self'; connect-src 'self' http: https:; img-src 'self' "
                          "data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 128 && s[0] != '.' &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static void kind(console_file *f)
{
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".map", "application/json"},
                 {".json", "application/json"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".txt", "text/plain; charset=utf-8"}};
    f->type = "application/octet-stream";
    size_t n = strlen(f->name);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && strcmp(f->name + n - e, types[i].ext) == 0)
            f->type = types[i].type;
    }
    f->cache = strncmp(f->type, "text/html", 9) == 0 ? "no-cache" : "public, max-age=300";
    uint64_t h = 1469598103934665603ull; /* FNV-1a: a fingerprint, not a security boundary */
    for (size_t i = 0; i < f->len; i++)
        h = (h ^ (unsigned char)f->bytes[i]) * 1099511628211ull;
    snprintf(f->etag, sizeof f->etag, "\"%016llx\"", (unsigned long long)h);
}

static bool etag_matches(o11y_str header, const char *etag)
{
    size_t n = strlen(etag);
    for (size_t i = 0; header.ptr && i + n <= header.len; i++)
        if (memcmp(header.ptr + i, etag, n) == 0)
            return true;
    return header.len == 1 && header.ptr[0] == '*';
}

static int serve(o11y_request *req, o11y_response *res, void *user)
{
    gs_console *c = user;
    o11y_str name = o11y_req_param(req, "file");
    for (size_t i = 0; i < c->n; i++) {
        console_file *f = &c->files[i];
        if (strlen(f->name) != name.len || memcmp(f->name, name.ptr, name.len) != 0)
            continue;
        if (o11y_res_header(res, "ETag", f->etag) != O11Y_OK ||
            o11y_res_header(res, "Cache-Control", f->cache) != O11Y_OK ||
            o11y_res_header(res, "X-Content-Type-Options", "nosniff") != O11Y_OK)
            return 1;
        if (strncmp(f->type, "text/html", 9) == 0 &&
            o11y_res_header(res, "Content-Security-Policy", csp) != O11Y_OK)
            return 1;
        if (etag_matches(o11y_req_header(req, "If-None-Match"), f->etag)) {
            o11y_res_empty(res, 304);
            return 0;
        }
        return o11y_res_body(res, 200, f->type, f->bytes, f->len) == O11Y_OK ? 0 : 1;
    }
    o11y_res_fail(res, &o11y_err_NOT_FOUND, NULL, "The console has no such file");
    return 0;
}

static int redirect(o11y_request *req, o11y_response *res, void *user)
{
    (void)req, (void)user;
    if (o11y_res_header(res, "Location", "/console/index.html") != O11Y_OK)
        return 1;
    o11y_res_empty(res, 301);
    return 0;
}

static o11y_status load(gs_console *c, const char *dir, char *err, size_t err_len)
{
    DIR *d = opendir(dir);
    if (!d)
        return O11Y_OK; /* not built: no console */
    o11y_status st = O11Y_OK;
    struct dirent *e;
    while (st == O11Y_OK && (e = readdir(d)) != NULL) {
        if (!name_ok(e->d_name))
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (c->n == MAX_FILES || sb.st_size > MAX_FILE_BYTES) {
            snprintf(err, err_len, "%s: more than %d files, or one over 8 MiB", dir, MAX_FILES);
            st = O11Y_EIO;
            break;
        }
        console_file *f = &c->files[c->n];
        FILE *in = fopen(path, "rb");
        f->len = (size_t)sb.st_size;
        f->bytes = malloc(f->len ? f->len : 1);
        if (!in || !f->bytes || fread(f->bytes, 1, f->len, in) != f->len) {
            snprintf(err, err_len, "cannot read %s", path);
            free(f->bytes);
            f->bytes = NULL;
            st = O11Y_EIO;
        } else {
            snprintf(f->name, sizeof f->name, "%s", e->d_name);
            kind(f);
            c->n++;
        }
        if (in)
            fclose(in);
    }
    closedir(d);
    return st;
}

o11y_status gs_console_register(o11y_service *svc, const char *dir, gs_console **out, char *err,
                                size_t err_len)
{
    *out = NULL;
    gs_console *c = calloc(1, sizeof *c);
    if (!c)
        return O11Y_ENOMEM;
    o11y_status st = load(c, dir, err, err_len);
    bool has_index = false;
    for (size_t i = 0; i < c->n; i++)
        has_index |= strcmp(c->files[i].name, "index.html") == 0;
    if (st != O11Y_OK || !has_index) {
        gs_console_free(c);
        return st;
    }
    st = o11y_service_route(svc, O11Y_GET | O11Y_HEAD, "/console/{file}", serve, c,
                            O11Y_ROUTE_NONBLOCKING);
    if (st == O11Y_OK)
        st = o11y_service_route(svc, O11Y_GET, "/console", redirect, c, O11Y_ROUTE_NONBLOCKING);
    if (st != O11Y_OK) {
        gs_console_free(c);
        return st;
    }
    *out = c;
    return O11Y_OK;
}

size_t gs_console_files(const gs_console *c)
{
    return c ? c->n : 0;
}

void gs_console_free(gs_console *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->files[i].bytes);
    free(c);
}
