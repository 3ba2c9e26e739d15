/* err — the one way this code reports an error to its caller: a message
 * formatted into the caller's buffer, and -1. */
#ifndef CORREIO_LIB_ERR_H
#define CORREIO_LIB_ERR_H

#include <stddef.h>

/* Format into err (errlen bytes; err may be NULL or errlen 0: nothing is
 * written) and return -1, so that `return err_set(...)` reads naturally. */
int err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
