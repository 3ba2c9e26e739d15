/* Shared helpers for the cmocka unit tests. */
#ifndef CORREIO_TESTUTIL_H
#define CORREIO_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* A fresh temporary directory (mkdtemp under /tmp); caller frees the string. */
static inline char *test_tmpdir(void)
{
    char tmpl[] = "/tmp/correio-unit-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

/* rm -rf path (test scratch only). */
static inline void test_rmrf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", path);
}

#endif
