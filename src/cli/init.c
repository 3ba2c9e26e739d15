/* `correio init DIR --domain D ...`: a configuration, a data layout and a
 * self-signed certificate that work at once. */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/config.h"
#include "daemon/daemon.h"
#include "net/tls.h"
#include "store/store.h"

#define INIT_MAX_DOMAINS 64
#define INIT_MAX_SETS 128

static void init_usage(void)
{
    fprintf(stderr, "usage: correio init DIR --domain D [--domain D2 ...] [--hostname H]\n"
                    "                    [--port-offset N] [--set SECTION.KEY=VALUE ...]\n");
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Run argv, wait; 0 when it exited 0. */
static int run_cmd(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* As root: make sure the unprivileged user exists and owns dir. */
static int init_owner(const char *user, const char *dir)
{
    if (geteuid() != 0)
        return 0;
    if (!getpwnam(user)) {
        char *argv[] = {"useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", (char *)user, NULL};
        if (run_cmd(argv) < 0 || !getpwnam(user)) {
            fprintf(stderr, "correio: cannot create system user %s (useradd failed)\n", user);
            return -1;
        }
        printf("created system user %s\n", user);
    }
    char spec[200];
    snprintf(spec, sizeof(spec), "%s:", user);
    char *argv[] = {"chown", "-R", spec, (char *)dir, NULL};
    if (run_cmd(argv) < 0) {
        fprintf(stderr, "correio: chown -R %s %s failed\n", spec, dir);
        return -1;
    }
    return 0;
}

static void init_default_hostname(struct config *cfg, const char *first_domain)
{
    char h[256];
    if (gethostname(h, sizeof(h)) == 0 && strchr(h, '.'))
        snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", h);
    else
        snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", first_domain);
}

struct init_args {
    const char *dir;
    const char *domains[INIT_MAX_DOMAINS];
    int ndomains;
    const char *hostname;
    long port_offset; /* -1: standard ports on all addresses */
    const char *sets[INIT_MAX_SETS];
    int nsets;
};

static int init_parse(int argc, char **argv, struct init_args *a)
{
    a->port_offset = -1;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--domain") && val && a->ndomains < INIT_MAX_DOMAINS) {
            a->domains[a->ndomains++] = val;
            i++;
        } else if (!strcmp(arg, "--hostname") && val) {
            a->hostname = val;
            i++;
        } else if (!strcmp(arg, "--port-offset") && val) {
            char *end;
            a->port_offset = strtol(val, &end, 10);
            if (*end || a->port_offset < 0 || a->port_offset > 65000) {
                fprintf(stderr, "correio: --port-offset: '%s' is not 0..65000\n", val);
                return -1;
            }
            i++;
        } else if (!strcmp(arg, "--set") && val && a->nsets < INIT_MAX_SETS) {
            a->sets[a->nsets++] = val;
            i++;
        } else if (arg[0] != '-' && !a->dir) {
            a->dir = arg;
        } else {
            fprintf(stderr, "correio: init: unexpected argument '%s'\n", arg);
            return -1;
        }
    }
    if (!a->dir || a->ndomains == 0) {
        init_usage();
        return -1;
    }
    return 0;
}

static int init_config(struct config *cfg, const struct init_args *a, const char *absdir)
{
    char err[512];
    config_defaults(cfg);
    if (a->hostname)
        snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", a->hostname);
    else
        init_default_hostname(cfg, a->domains[0]);
    if (strlen(absdir) > CONFIG_STR_MAX - 32) {
        fprintf(stderr, "correio: %s: path too long\n", absdir);
        return -1;
    }
    if (snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s/data", absdir) < 0 ||
        snprintf(cfg->tls_cert, sizeof(cfg->tls_cert), "%s/tls/cert.pem", absdir) < 0 ||
        snprintf(cfg->tls_key, sizeof(cfg->tls_key), "%s/tls/key.pem", absdir) < 0)
        return -1;
    if (a->port_offset >= 0) {
        snprintf(cfg->listen_smtp, sizeof(cfg->listen_smtp), "127.0.0.1:%ld",
                 25 + a->port_offset);
        snprintf(cfg->listen_imap, sizeof(cfg->listen_imap), "127.0.0.1:%ld",
                 143 + a->port_offset);
        snprintf(cfg->listen_imaps, sizeof(cfg->listen_imaps), "127.0.0.1:%ld",
                 993 + a->port_offset);
        snprintf(cfg->listen_pop3, sizeof(cfg->listen_pop3), "127.0.0.1:%ld",
                 110 + a->port_offset);
        snprintf(cfg->listen_pop3s, sizeof(cfg->listen_pop3s), "127.0.0.1:%ld",
                 995 + a->port_offset);
        snprintf(cfg->listen_submission, sizeof(cfg->listen_submission), "127.0.0.1:%ld",
                 587 + a->port_offset);
        snprintf(cfg->listen_submissions, sizeof(cfg->listen_submissions), "127.0.0.1:%ld",
                 465 + a->port_offset);
    }
    for (int i = 0; i < a->nsets; i++) {
        char kv[CONFIG_STR_MAX + 128];
        snprintf(kv, sizeof(kv), "%s", a->sets[i]);
        char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "correio: --set '%s': expected SECTION.KEY=VALUE\n", a->sets[i]);
            return -1;
        }
        *eq = '\0';
        if (config_set(cfg, kv, eq + 1, err, sizeof(err)) < 0) {
            fprintf(stderr, "correio: --set: %s\n", err);
            return -1;
        }
    }
    return 0;
}

int cli_init(int argc, char **argv)
{
    struct init_args a = {0};
    char err[1024], path[PATH_MAX + 32], absdir[PATH_MAX];
    struct config cfg;
    if (init_parse(argc, argv, &a) < 0)
        return EX_USAGE;
    if (mkdir_p(a.dir, 0755) < 0 || !realpath(a.dir, absdir)) {
        fprintf(stderr, "correio: %s: %s\n", a.dir, strerror(errno));
        return EX_CANTCREAT;
    }
    snprintf(path, sizeof(path), "%s/correio.conf", absdir);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "correio: %s exists already; init will not overwrite it\n", path);
        return EX_CANTCREAT;
    }
    if (init_config(&cfg, &a, absdir) < 0)
        return EX_USAGE;
    char tlsdir[PATH_MAX + 8];
    snprintf(tlsdir, sizeof(tlsdir), "%s/tls", absdir);
    if (mkdir_p(cfg.data_dir, 0750) < 0 || mkdir_p(tlsdir, 0750) < 0) {
        fprintf(stderr, "correio: %s: %s\n", absdir, strerror(errno));
        return EX_CANTCREAT;
    }
    if (access(cfg.tls_cert, F_OK) != 0 &&
        tls_selfsigned_write(cfg.tls_cert, cfg.tls_key, cfg.hostname, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: certificate: %s\n", err);
        return EX_CANTCREAT;
    }
    if (config_write(&cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_CANTCREAT;
    }
    if (init_owner(cfg.user, absdir) < 0)
        return EX_NOPERM;
    struct store *st = NULL;
    int rc = cli_open_store(path, &cfg, &st);
    if (rc != 0)
        return rc;
    for (int i = 0; i < a.ndomains; i++) {
        if (store_domain_add(st, a.domains[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "correio: domain %s: %s\n", a.domains[i], err);
            store_close(&st);
            return EX_DATAERR;
        }
    }
    store_close(&st);
    printf("wrote %s\nhostname %s, data in %s\nSMTP on %s, IMAP on %s, IMAPS on %s, "
           "POP3 on %s, POP3S on %s, submission on %s and %s (TLS)\n",
           path, cfg.hostname, cfg.data_dir, cfg.listen_smtp, cfg.listen_imap, cfg.listen_imaps,
           cfg.listen_pop3, cfg.listen_pop3s, cfg.listen_submission, cfg.listen_submissions);
    printf("add an account: correio -c %s user add USER@%s --password-stdin\n", path,
           a.domains[0]);
    return 0;
}
