/* client/keys.c — idempotency keys per operation (CONTRACT section 11), in memory and optionally
 * in a file that outlives the process. The file is small text, "operation<TAB>key" per line,
 * read again under the lock before every change, so processes sharing it see each other's keys;
 * each change is a new file renamed over the old one, so a crash leaves the old or the new
 * file, never half of one. */
#include "client/client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

static const char file_magic[] = "# o11y-client idempotency keys v1\n";

typedef struct key_entry {
    char *operation;
    char key[O11Y_CLIENT_KEY_MAX + 1];
} key_entry;

struct o11y_client_keys {
    pthread_mutex_t lock;
    char *path; /* NULL: memory only */
    char *lock_path;
    key_entry *entries;
    size_t n, cap;
};

static bool printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e || n >= max)
            return false;
    return n > 0;
}

static void clear_entries(o11y_client_keys *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->entries[i].operation);
    k->n = 0;
}

static o11y_status put(o11y_client_keys *k, const char *op, const char *key)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->entries[i].operation, op) == 0) {
            snprintf(k->entries[i].key, sizeof k->entries[i].key, "%s", key);
            return O11Y_OK;
        }
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 8;
        key_entry *e = realloc(k->entries, cap * sizeof *e);
        if (!e)
            return O11Y_ENOMEM;
        k->entries = e;
        k->cap = cap;
    }
    char *o = strdup(op);
    if (!o)
        return O11Y_ENOMEM;
    k->entries[k->n].operation = o;
    snprintf(k->entries[k->n].key, sizeof k->entries[k->n].key, "%s", key);
    k->n++;
    return O11Y_OK;
}

/* Replaces the entries with the file's. A missing file is empty. */
static o11y_status load(o11y_client_keys *k)
{
    FILE *f = fopen(k->path, "r");
    if (!f) {
        if (errno != ENOENT)
            return O11Y_EIO;
        clear_entries(k);
        return O11Y_OK;
    }
    clear_entries(k);
    char line[O11Y_CLIENT_OPERATION_MAX + O11Y_CLIENT_KEY_MAX + 8];
    o11y_status st = O11Y_OK;
    bool first = true;
    while (st == O11Y_OK && fgets(line, sizeof line, f)) {
        if (first) {
            first = false;
            if (strcmp(line, file_magic) != 0)
                st = O11Y_EIO; /* not ours: never overwrite it */
            continue;
        }
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') {
            st = O11Y_EIO;
            break;
        }
        line[n - 1] = '\0';
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        if (printable(line, O11Y_CLIENT_OPERATION_MAX + 1) &&
            printable(tab + 1, O11Y_CLIENT_KEY_MAX + 1))
            st = put(k, line, tab + 1);
    }
    if (ferror(f))
        st = O11Y_EIO;
    fclose(f);
    return st;
}

static o11y_status save(o11y_client_keys *k)
{
    size_t n = strlen(k->path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return O11Y_ENOMEM;
    snprintf(tmp, n, "%s.tmp.%ld", k->path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        free(tmp);
        return O11Y_EIO;
    }
    fputs(file_magic, f);
    for (size_t i = 0; i < k->n; i++)
        fprintf(f, "%s\t%s\n", k->entries[i].operation, k->entries[i].key);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, k->path) == 0;
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok ? O11Y_OK : O11Y_EIO;
}

/* Takes the cross-process lock (a lock file beside the key file: the key file itself is
 * replaced by rename, so a lock on it would not be seen by the next opener). */
static int lock_file(const o11y_client_keys *k)
{
    int fd = open(k->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void unlock_file(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

o11y_status o11y_client_keys_open(const char *path, o11y_client_keys **out)
{
    if (!out)
        return O11Y_EINVAL;
    *out = NULL;
    o11y_client_keys *k = calloc(1, sizeof *k);
    if (!k)
        return O11Y_ENOMEM;
    pthread_mutex_init(&k->lock, NULL);
    if (path) {
        size_t n = strlen(path) + 6;
        k->path = strdup(path);
        k->lock_path = malloc(n);
        if (!k->path || !k->lock_path) {
            o11y_client_keys_close(k);
            return O11Y_ENOMEM;
        }
        snprintf(k->lock_path, n, "%s.lock", path);
        int fd = lock_file(k);
        o11y_status st = fd < 0 ? O11Y_EIO : load(k);
        unlock_file(fd);
        if (st != O11Y_OK) {
            o11y_client_keys_close(k);
            return st;
        }
    }
    *out = k;
    return O11Y_OK;
}

void o11y_client_keys_close(o11y_client_keys *k)
{
    if (!k)
        return;
    clear_entries(k);
    free(k->entries);
    free(k->path);
    free(k->lock_path);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static void new_key(char out[O11Y_CLIENT_KEY_MAX + 1])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (uint8_t)client_random_below(256);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* UUID version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, O11Y_CLIENT_KEY_MAX + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

/* Runs one change under both locks: reload, change, save. */
static o11y_status keys_change(o11y_client_keys *k, const char *op, bool reuse,
                               char out[O11Y_CLIENT_KEY_MAX + 1])
{
    if (!k || !op || !out || !printable(op, O11Y_CLIENT_OPERATION_MAX + 1))
        return O11Y_EINVAL;
    pthread_mutex_lock(&k->lock);
    int fd = k->path ? lock_file(k) : -1;
    o11y_status io = k->path && (fd < 0 || load(k) != O11Y_OK) ? O11Y_EIO : O11Y_OK;
    bool found = false;
    for (size_t i = 0; reuse && i < k->n; i++)
        if (strcmp(k->entries[i].operation, op) == 0) {
            memcpy(out, k->entries[i].key, sizeof k->entries[i].key);
            found = true;
        }
    o11y_status st = O11Y_OK;
    if (!found) {
        new_key(out);
        st = put(k, op, out);
        if (st == O11Y_OK && k->path && io == O11Y_OK)
            io = save(k);
    }
    unlock_file(fd);
    pthread_mutex_unlock(&k->lock);
    return st != O11Y_OK ? st : io;
}

o11y_status o11y_client_keys_create(o11y_client_keys *k, const char *operation,
                                    char out[O11Y_CLIENT_KEY_MAX + 1])
{
    return keys_change(k, operation, false, out);
}

o11y_status o11y_client_keys_get_or_create(o11y_client_keys *k, const char *operation,
                                           char out[O11Y_CLIENT_KEY_MAX + 1])
{
    return keys_change(k, operation, true, out);
}

o11y_status o11y_client_keys_invalidate(o11y_client_keys *k, const char *key_or_operation)
{
    if (!k || !key_or_operation)
        return O11Y_EINVAL;
    pthread_mutex_lock(&k->lock);
    int fd = k->path ? lock_file(k) : -1;
    o11y_status st = k->path && (fd < 0 || load(k) != O11Y_OK) ? O11Y_EIO : O11Y_OK;
    bool found = false;
    for (size_t i = 0; i < k->n;) {
        if (strcmp(k->entries[i].operation, key_or_operation) == 0 ||
            strcmp(k->entries[i].key, key_or_operation) == 0) {
            free(k->entries[i].operation);
            k->entries[i] = k->entries[--k->n];
            found = true;
        } else {
            i++;
        }
    }
    if (found && k->path && st == O11Y_OK)
        st = save(k);
    unlock_file(fd);
    pthread_mutex_unlock(&k->lock);
    return st != O11Y_OK ? st : found ? O11Y_OK : O11Y_ENOTFOUND;
}

bool o11y_client_key_spent(const o11y_client_response *r)
{
    if (!r)
        return false;
    int s = r->status;
    if (s >= 200 && s <= 299)
        return true;
    if (s < 400 || s > 499)
        return false; /* no answer or a 5xx: the call may have done nothing, or may be running */
    if (s == 429 || (s == 400 && strcmp(r->error.code, "VALIDATION_FAILED") == 0) ||
        (s == 409 && strcmp(r->error.code, "IDEMPOTENCY_KEY_IN_USE") == 0))
        return false;
    return true;
}

o11y_status o11y_client_call_idempotent(o11y_client *c, o11y_client_keys *k, const char *operation,
                                        const o11y_client_request *req, o11y_client_response *resp)
{
    if (!c || !k || !req || !resp)
        return O11Y_EINVAL;
    char key[O11Y_CLIENT_KEY_MAX + 1];
    o11y_status st = o11y_client_keys_get_or_create(k, operation, key);
    if (st != O11Y_OK)
        return st;
    o11y_client_request r = *req;
    r.idempotency_key = key;
    st = o11y_client_call(c, &r, resp);
    if ((st == O11Y_OK || st == O11Y_EBACKEND) && o11y_client_key_spent(resp))
        (void)o11y_client_keys_invalidate(k, key);
    return st;
}
