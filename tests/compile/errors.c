/* Compiled twice by tests/compile/check.sh: as it is, it must compile; with -DMISSPELT it must
 * not, because an error code is a constant and a misspelt one does not exist. */
#include <o11y/http.h>

void answer(o11y_response *res);

void answer(o11y_response *res)
{
#ifdef MISSPELT
    o11y_res_fail(res, &o11y_err_NOT_FUOND, NULL, NULL);
#else
    o11y_res_fail(res, &o11y_err_NOT_FOUND, NULL, NULL);
#endif
}
