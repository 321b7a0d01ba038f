/* Fuzz target: what the client kit reads from an answer and from its key file. Input: a
 * selector byte, then bytes. 0: a status (two bytes) and a body typed as an error; 1: header
 * lines through the header callback, then their Retry-After; 2: a key file. The typed error's
 * code is always UPPER_SNAKE_CASE and bounded, its trace id valid or the one sent, and a key file
 * either opens or is refused, never half read. */
#include "client/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static o11y_client *client(void)
{
    static o11y_client *c;
    if (!c) {
        o11y_client_config cfg;
        o11y_client_config_init(&cfg);
        cfg.base_url = "http://127.0.0.1:9";
        if (o11y_client_create(&cfg, &c) != O11Y_OK)
            abort();
    }
    return c;
}

static void typed(const uint8_t *d, size_t n)
{
    if (n < 2)
        return;
    int status = 100 + (d[0] << 8 | d[1]) % 500;
    o11y_client_error e = {0};
    client_type_error(client(), &e, status, (const char *)d + 2, n - 2, CURLE_OK, NULL, NULL,
                      "sent-trace");
    size_t len = strlen(e.code);
    if (len == 0 || len >= sizeof e.code ||
        strspn(e.code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != len || !e.user_message ||
        !e.message)
        abort();
    if (strcmp(e.trace_id, "sent-trace") != 0 &&
        !o11y_trace_id_valid(e.trace_id, strlen(e.trace_id)))
        abort();
    free(e.message);
    free(e.details);
}

static void headers(const uint8_t *d, size_t n)
{
    client_answer_headers ah = {0};
    const char *p = (const char *)d, *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        client_on_header((char *)p, 1, len, &ah);
        p += len;
    }
    if (ah.trace_id[0] && !o11y_trace_id_valid(ah.trace_id, strlen(ah.trace_id)))
        abort();
    if (client_retry_after_ms(ah.retry_after) < -1)
        abort();
}

static char dir[] = "/tmp/fuzz-keys-XXXXXX";

static void remove_dir(void)
{
    char p[64];
    snprintf(p, sizeof p, "%s/keys", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/keys.lock", dir);
    unlink(p);
    rmdir(dir);
}

static void key_file(const uint8_t *d, size_t n)
{
    static bool made;
    if (!made && !mkdtemp(dir))
        return;
    if (!made)
        atexit(remove_dir);
    made = true;
    char path[64];
    snprintf(path, sizeof path, "%s/keys", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    size_t w = fwrite(d, 1, n, f);
    fclose(f);
    if (w != n)
        return;
    o11y_client_keys *k = NULL;
    o11y_status st = o11y_client_keys_open(path, &k);
    if ((st == O11Y_OK) != (k != NULL))
        abort();
    char key[O11Y_CLIENT_KEY_MAX + 1] = "";
    if (k && o11y_client_keys_get_or_create(k, "fuzz", key) == O11Y_OK && strlen(key) == 0)
        abort();
    o11y_client_keys_close(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    switch (data[0] % 3) {
    case 0:
        typed(data + 1, size - 1);
        break;
    case 1:
        headers(data + 1, size - 1);
        break;
    default:
        key_file(data + 1, size - 1);
        break;
    }
    return 0;
}
