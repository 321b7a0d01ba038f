/* Writes a log file for o11y-trace's benchmark: MiB of generation-service-like lines (access
 * lines and events, each with its own trace, span and job ids), of which one trace's handful of
 * lines hold the id searched for, spread through the file.
 *
 *   bench_trace_logs PATH MIB ID */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long state = 0x9e3779b97f4a7c15ull;

static unsigned long long next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return fprintf(stderr, "usage: bench_trace_logs PATH MIB ID\n"), 2;
    FILE *f = fopen(argv[1], "wb");
    if (!f)
        return perror(argv[1]), 1;
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    unsigned long long want = strtoull(argv[2], NULL, 10) << 20, written = 0, lines = 0;
    const char *id = argv[3];
    while (written < want) {
        char trace[40];
        bool target = ++lines % 200000 == 0;
        if (target)
            snprintf(trace, sizeof trace, "%s", id);
        else
            snprintf(trace, sizeof trace, "%016llx%016llx", next(), next());
        unsigned long long span = next(), job = next();
        int n;
        if (lines % 3)
            n = fprintf(f,
                        "{\"timestamp\":\"2026-11-29T13:%02llu:%02llu.%03lluZ\",\"level\":\"INFO\","
                        "\"service\":\"generation-service\",\"trace_id\":\"%s\",\"span_id\":"
                        "\"%016llx\",\"message\":\"request completed\",\"event\":\"http_request\","
                        "\"metadata\":{\"method\":\"GET\",\"route\":\"/generations/{id}\",\"path\":"
                        "\"/generations/gen_%016llx\",\"status\":200,\"bytes\":412},"
                        "\"duration_ms\":0.412}\n",
                        lines / 60000 % 60, lines / 1000 % 60, lines % 1000, trace, span, job);
        else
            n = fprintf(
                f,
                "{\"timestamp\":\"2026-11-29T13:%02llu:%02llu.%03lluZ\",\"level\":\"INFO\","
                "\"service\":\"generation-service\",\"trace_id\":\"%s\",\"job_id\":"
                "\"job_%016llx\",\"span_id\":\"%016llx\",\"message\":\"generation_progress\","
                "\"event\":\"generation_progress\",\"metadata\":{\"generation_id\":"
                "\"gen_%016llx\",\"progress_percentage\":40,\"current_step\":\"scenes\"}}\n",
                lines / 60000 % 60, lines / 1000 % 60, lines % 1000, trace, job, span, job);
        if (n < 0)
            return perror(argv[1]), 1;
        written += (unsigned long long)n;
    }
    return fclose(f) == 0 ? 0 : 1;
}
