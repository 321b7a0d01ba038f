/* Fuzz target: o11y-trace's reading of log lines — whatever lines a file holds (forged span
 * ids, parent loops, odd timestamps, wrong types), building the tree and printing it as a
 * waterfall and as JSON neither crashes nor loops. Input: log lines, one per line; the ids
 * followed are "t1" and "job_1". */
#include "spans.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink && !(sink = fopen("/dev/null", "w")))
        abort();
    char t1[] = "t1", job[] = "job_1";
    char *ids[] = {t1, job};
    span_set set = {0};
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        spans_add_line(&set, p, (size_t)(stop - p), ids, 2);
        p = stop + 1;
    }
    spans_finish(&set);
    spans_print_tree(&set, sink, true, 80);
    spans_print_json(&set, sink);
    spans_free(&set);
    return 0;
}
