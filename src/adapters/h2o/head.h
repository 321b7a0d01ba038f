/* adapters/h2o/head.h — reading back a request head h2o has parsed but not handed over (its
 * framing lines when h2o refused the request itself; the whole head when the connection guard
 * cut its body). Written by hand because h2o 2.2 keeps its parser (picohttpparser) private and
 * the head is one that parser accepted: splitting its lines is all that is needed. */
#ifndef O11Y_H2O_HEAD_H
#define O11Y_H2O_HEAD_H

#include "o11y/common.h"

#include <stdbool.h>
#include <stddef.h>

typedef void (*o11y__head_field_fn)(void *ctx, o11y_str name, o11y_str value);

/* Splits head (its first len bytes; the blank line that ends it may be missing) into the
 * request line's method and target and calls on_field for each "name: value" line, the value
 * trimmed of blanks. Continuation lines (starting with a blank) and lines without a colon are
 * skipped. Every o11y_str points into head. False, with nothing called, when the request line
 * is not "METHOD SP TARGET SP VERSION" with a method of at most 16 bytes. */
bool o11y__head_parse(const char *head, size_t len, o11y_str *method, o11y_str *target,
                      o11y__head_field_fn on_field, void *ctx);

#endif
