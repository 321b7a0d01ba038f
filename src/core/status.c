/* core/status.c — names and messages of o11y_status, generated from O11Y_STATUS_MAP. */
#include "o11y/common.h"

const char *o11y_strerror(o11y_status st)
{
    switch (st) {
#define O11Y_X(name, num, msg)                                                                     \
    case O11Y_##name:                                                                              \
        return msg;
        O11Y_STATUS_MAP(O11Y_X)
#undef O11Y_X
    }
    return "unknown status";
}

const char *o11y_status_name(o11y_status st)
{
    switch (st) {
#define O11Y_X(name, num, msg)                                                                     \
    case O11Y_##name:                                                                              \
        return "O11Y_" #name;
        O11Y_STATUS_MAP(O11Y_X)
#undef O11Y_X
    }
    return "O11Y_UNKNOWN";
}

const char *o11y_version(void)
{
    return O11Y_VERSION_STRING;
}

unsigned o11y_version_hex(void)
{
    return O11Y_VERSION_HEX;
}
