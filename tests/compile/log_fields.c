/* Compiled twice by tests/compile/check.sh: as it is, it must compile; with -DUNTYPED it must
 * not, because a log field is not one of the O11Y_* field macros. */
#include <o11y/log.h>

void log_a_count(void);

void log_a_count(void)
{
#ifdef UNTYPED
    o11y_log_info("x", "count", 3);
#else
    o11y_log_info("x", O11Y_INT("count", 3));
    o11y_log_info("no fields");
    o11y_log_event("episode_created", O11Y_STR("project_id", "p"), O11Y_INT("number", 1));
#endif
}
