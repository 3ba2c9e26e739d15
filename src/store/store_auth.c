/* store_auth — password checks against the accounts' crypt(3) hashes. */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* A real yescrypt hash of nothing anyone knows: hashing against it for an
 * unknown account takes as long as for a real one. */
static const char store_auth_dummy[] =
    "$y$j9T$c/cmjaAACGuWZqqqba97u0$RyOZHOazMtvwL8ktdREZNN1sqLOZZSnAI8kHaMqIn.B";

static int store_auth_equal(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (strlen(a) != n)
        return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

int store_account_authenticate(struct store *st, const char *address, const char *password,
                               char *account_r, size_t n)
{
    char hash[256];
    enum store_lookup r = store_account_lookup(st, address, account_r, n, hash, sizeof(hash));
    if (r == STORE_LOOKUP_ERROR)
        return -1;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!cd)
        return -1;
    const char *setting = r == STORE_LOOKUP_FOUND ? hash : store_auth_dummy;
    const char *h = crypt_r(password, setting, cd);
    int ok = r == STORE_LOOKUP_FOUND && h && h[0] == '$' && store_auth_equal(h, hash);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    if (!ok && account_r && n)
        account_r[0] = '\0';
    return ok;
}
