/* Fuzz target: the JSON writer and masking. A field of any key and value, and a message of any
 * bytes, make exactly one line that is one JSON object; a key that the contract's rule calls
 * sensitive has the value "***". Input: key, NUL, value, NUL, message. */
#include <o11y/log.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static o11y_logger *lg;
static char path[64];
static FILE *reader;

/* CONTRACT section 3, written again independently of the library's code. */
static bool should_mask(const char *key)
{
    char norm[512];
    size_t n = 0;
    for (const char *p = key; *p && n + 1 < sizeof norm; p++) {
        if (*p == '_' || *p == '-' || *p == '.')
            continue;
        norm[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
    }
    norm[n] = '\0';
    if ((n >= 6 && strcmp(norm + n - 6, "tokens") == 0) ||
        (n >= 5 && strcmp(norm + n - 5, "count") == 0))
        return false;
    static const char *const words[] = {"password", "passwd",        "secret",
                                        "token",    "authorization", "cookie",
                                        "apikey",   "privatekey",    "credential"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(norm, words[i]))
            return true;
    return false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(path, sizeof path, "/tmp/o11y-fuzz-log-%d", (int)getpid());
    o11y_log_config cfg;
    o11y_log_config_init(&cfg);
    cfg.service_name = "fuzz";
    cfg.file_path = path;
    if (o11y_logger_create(&cfg, &lg) != O11Y_OK || !(reader = fopen(path, "r")))
        abort();
    unlink(path); /* gone when the process ends */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char buf[4100];
    memcpy(buf, data, size);
    buf[size] = '\0';
    buf[size + 1] = '\0'; /* so every part below ends inside buf */
    const char *key = buf;
    size_t key_len = strlen(key);
    size_t value_at = key_len + 1 <= size ? key_len + 1 : size;
    const char *value = buf + value_at;
    size_t value_len = strlen(value);
    size_t message_at = value_at + value_len + 1 <= size ? value_at + value_len + 1 : size;
    const char *message = buf + message_at;
    if (!*key || key_len > 400)
        return 0;
    o11y_log_va(lg, O11Y_LOG_INFO, NULL, message, O11Y_STRN(key, value, value_len), O11Y__END);
    if (o11y_logger_flush(lg, 5000) != O11Y_OK)
        abort();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, reader);
    if (n <= 0 || line[n - 1] != '\n')
        abort(); /* one whole line per call */
    json_error_t err;
    json_t *j = json_loadb(line, (size_t)n, 0, &err);
    if (!json_is_object(j))
        abort();
    json_t *meta = json_object_get(j, "metadata");
    if (meta && should_mask(key)) {
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) if (strcmp(json_string_value(v) ? json_string_value(v) : "",
                                                   "***") != 0) abort();
    }
    json_decref(j);
    free(line);
    return 0;
}
