/* Fuzz target: the trace headers (X-Trace-Id, traceparent, X-Job-Id, X-Project-Id). Whatever
 * the input, the context holds only valid ids, and a traceparent that parses formats back to
 * one that parses. Input: the four header values separated by newlines. */
#include <o11y/trace.h>

#include <stdlib.h>
#include <string.h>

static o11y_str next_part(const char **p, const char *end)
{
    const char *start = *p;
    const char *nl = memchr(start, '\n', (size_t)(end - start));
    const char *stop = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    return (o11y_str){start, (size_t)(stop - start)};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    o11y_str trace = next_part(&p, end), parent = next_part(&p, end), job = next_part(&p, end),
             project = next_part(&p, end);
    o11y_trace_ctx ctx;
    o11y_trace_ctx_from_headers(&ctx, trace, parent, job, project);
    if (!o11y_trace_id_valid(ctx.trace_id, ctx.trace_id_len) ||
        strlen(ctx.trace_id) != ctx.trace_id_len)
        abort();
    if (ctx.job_id_len && !o11y_trace_id_valid(ctx.job_id, ctx.job_id_len))
        abort();
    if (ctx.project_id_len && !o11y_trace_id_valid(ctx.project_id, ctx.project_id_len))
        abort();
    o11y_traceparent tp;
    if (o11y_traceparent_parse((const char *)data, size, &tp) == O11Y_OK) {
        if (strlen(tp.trace_id) != 32 || strspn(tp.trace_id, "0123456789abcdef") != 32 ||
            strcmp(tp.trace_id, "00000000000000000000000000000000") == 0)
            abort();
    }
    char out[56];
    o11y_trace_format_traceparent(&ctx, out);
    if (o11y_traceparent_parse(out, strlen(out), &tp) != O11Y_OK)
        abort();
    return 0;
}
