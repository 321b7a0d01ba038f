/* adapters/h2o/head.c — see head.h. */
#include "adapters/h2o/head.h"

#include <string.h>

/* The end of the line starting at p: its CR or LF, or end. */
static const char *line_end(const char *p, const char *end)
{
    while (p < end && *p != '\r' && *p != '\n')
        p++;
    return p;
}

/* The start of the line after the one ending at eol. */
static const char *next_line(const char *eol, const char *end)
{
    if (eol < end && *eol == '\r')
        eol++;
    if (eol < end && *eol == '\n')
        eol++;
    return eol;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

bool o11y__head_parse(const char *head, size_t len, o11y_str *method, o11y_str *target,
                      o11y__head_field_fn on_field, void *ctx)
{
    const char *end = head + len;
    const char *eol = line_end(head, end);
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2 || sp1 == head || sp1 - head > 16 || sp2 == sp1 + 1)
        return false;
    *method = (o11y_str){head, (size_t)(sp1 - head)};
    *target = (o11y_str){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    for (const char *line = next_line(eol, end); line < end; line = next_line(eol, end)) {
        eol = line_end(line, end);
        if (eol == line)
            break; /* the blank line: the head is over */
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || blank(line[0]))
            continue;
        const char *v = colon + 1, *ve = eol;
        while (v < ve && blank(*v))
            v++;
        while (ve > v && blank(ve[-1]))
            ve--;
        on_field(ctx, (o11y_str){line, (size_t)(colon - line)}, (o11y_str){v, (size_t)(ve - v)});
    }
    return true;
}
