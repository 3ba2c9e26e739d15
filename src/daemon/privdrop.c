#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "lib/log.h"

int daemon_drop_privileges(const char *user, char *err, size_t errlen)
{
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "user '%s' does not exist (server.user; `correio init` creates it)",
                 user);
        return -1;
    }
    if (pw->pw_uid == 0)
        return 0;
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        snprintf(err, errlen, "could regain root after dropping to %s", user);
        return -1;
    }
    log_debug("daemon", "event=privileges_dropped user=%s uid=%u", user, (unsigned)pw->pw_uid);
    return 0;
}
