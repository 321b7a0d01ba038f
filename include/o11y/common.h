/* o11y/common.h — what every module shares: the export macro, status codes, string views. */
#ifndef O11Y_COMMON_H
#define O11Y_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(O11Y_STATIC_DEFINE)
#define O11Y_API
#else
#define O11Y_API __attribute__((visibility("default")))
#endif

#define O11Y_WARN_UNUSED              __attribute__((warn_unused_result))
#define O11Y_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))

/* The version of these headers (CMakeLists.txt reads it from here). A release changes MINOR
 * (or MAJOR) when it adds to the API and PATCH for fixes; while MAJOR is 0, a MINOR release may
 * also break the ABI, and the soname (libo11y.so.0) says so only from 1.0 on. */
#define O11Y_VERSION_MAJOR 0
#define O11Y_VERSION_MINOR 2
#define O11Y_VERSION_PATCH 0
#define O11Y_VERSION_HEX                                                                           \
    ((O11Y_VERSION_MAJOR << 16) | (O11Y_VERSION_MINOR << 8) | O11Y_VERSION_PATCH)
#define O11Y__STR(x)  #x
#define O11Y__XSTR(x) O11Y__STR(x)
#define O11Y_VERSION_STRING                                                                        \
    O11Y__XSTR(O11Y_VERSION_MAJOR)                                                                 \
    "." O11Y__XSTR(O11Y_VERSION_MINOR) "." O11Y__XSTR(O11Y_VERSION_PATCH)

/* ABI: how the public structs grow. A configuration struct (o11y_*_config, o11y_*_opts) ends
 * with O11Y_RESERVED, eight pointer-sized slots that must be zero (its init function, or a
 * designated initializer, zeroes them). A later release adds members only by taking reserved
 * slots, each member pointer-sized (a pointer, size_t, int64_t, or two 32-bit values), so the
 * struct's size and every offset stay as they were: a binary built against an older header
 * still passes a valid struct, whose new members read as zero, which means "the default". Value
 * types (o11y_str, o11y_field, o11y_error_def, o11y_trace_ctx) never change; a new shape is a
 * new type. Removing or reordering a member is a new soname. make test compares the built
 * libraries with the committed baseline (abi/, abidiff), so an accidental break fails CI. */
#define O11Y_RESERVED void *o11y_reserved[8]

/* Status codes of the library's functions. The numbers never change once released. */
#define O11Y_STATUS_MAP(X)                                                                         \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, 1, "invalid argument")                                                               \
    X(ENOMEM, 2, "out of memory")                                                                  \
    X(ELIMIT, 3, "configured limit exceeded")                                                      \
    X(ENOTFOUND, 4, "not found")                                                                   \
    X(ECONFLICT, 5, "conflict with an existing entry")                                             \
    X(EBACKEND, 6, "storage backend error")                                                        \
    X(EIO, 7, "input/output error")                                                                \
    X(ESTATE, 8, "operation not valid in the current state")

typedef enum o11y_status {
#define O11Y_X(name, num, msg) O11Y_##name = num,
    O11Y_STATUS_MAP(O11Y_X)
#undef O11Y_X
} o11y_status;

/* The version of the library linked at run time, "MAJOR.MINOR.PATCH" (compare with
 * O11Y_VERSION_STRING, the headers' version, to detect a mismatch). Never NULL. */
O11Y_API const char *o11y_version(void);
/* The same as O11Y_VERSION_HEX computes it. */
O11Y_API unsigned o11y_version_hex(void);

/* A static, human-readable string for st; never NULL ("unknown status" for unknown values). */
O11Y_API const char *o11y_strerror(o11y_status st);
/* The enumerator's name, e.g. "O11Y_EINVAL"; never NULL. */
O11Y_API const char *o11y_status_name(o11y_status st);

/* A borrowed byte string: pointer plus length, no NUL required. */
typedef struct o11y_str {
    const char *ptr;
    size_t len;
} o11y_str;

#ifdef __cplusplus
}
#endif
#endif
