/* authfail — failed logins per client address, shared by POP3 and
 * submission (loop thread only): a fixed table of addresses, each with the
 * failures counted since its first one; entries older than the window
 * expire, and when the table is full the oldest entry gives way. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"

#define AUTHFAIL_SLOTS 1024

struct authfail {
    char ip[INET6_ADDRSTRLEN];
    unsigned count;
    time_t first;
};
static struct authfail authfail_table[AUTHFAIL_SLOTS];

static struct authfail *authfail_slot(const char *ip, bool create)
{
    time_t now = time(NULL);
    struct authfail *slot = NULL;
    for (size_t i = 0; i < AUTHFAIL_SLOTS; i++) {
        struct authfail *f = &authfail_table[i];
        if (f->ip[0] && now - f->first >= AUTHFAIL_WINDOW)
            f->ip[0] = '\0'; /* expired */
        if (f->ip[0] && strcmp(f->ip, ip) == 0)
            return f;
        /* Where a new entry would go: a free slot, else the oldest. */
        if (!slot || (slot->ip[0] && (!f->ip[0] || f->first < slot->first)))
            slot = f;
    }
    if (!create)
        return NULL;
    snprintf(slot->ip, sizeof(slot->ip), "%s", ip);
    slot->count = 0;
    slot->first = now;
    return slot;
}

unsigned authfail_count(const char *ip)
{
    const struct authfail *f = authfail_slot(ip, false);
    return f ? f->count : 0;
}

unsigned authfail_add(const char *ip)
{
    struct authfail *f = authfail_slot(ip, true);
    return f ? ++f->count : 1;
}
