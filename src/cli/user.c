/* `correio user ...` and `correio domain ...`: accounts and local domains. */
#include <crypt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "auth/scram.h"
#include "cli/cli.h"
#include "conf/config.h"
#include "daemon/daemon.h"
#include "lib/log.h"
#include "store/store.h"

#define PASSWORD_MIN 8
#define PASSWORD_MAX 1024

int cli_load_config(const char *config_path, struct config *cfg)
{
    char err[1024];
    config_defaults(cfg);
    if (config_load(cfg, config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_CONFIG;
    }
    log_set_level(LOG_WARN); /* the CLI says what it did on stdout */
    /* Files the CLI creates must belong to the server's user. */
    if (daemon_drop_privileges(cfg->user, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_NOPERM;
    }
    return 0;
}

int cli_open_store(const char *config_path, struct config *cfg, struct store **st_r)
{
    char err[1024];
    int rc = cli_load_config(config_path, cfg);
    if (rc != 0)
        return rc;
    if (store_open(st_r, cfg->data_dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: store: %s\n", err);
        return EX_UNAVAILABLE;
    }
    return 0;
}

int cli_password_hash(const char *password, char *out, size_t n)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)))
        return -1;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!cd)
        return -1;
    const char *h = crypt_r(password, salt, cd);
    int ok = h && h[0] == '$' && strlen(h) < n;
    if (ok)
        snprintf(out, n, "%s", h);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok ? 0 : -1;
}

/* One line from stdin: the password. */
static int read_password(char *out, size_t n)
{
    if (!fgets(out, (int)n, stdin)) {
        fprintf(stderr, "correio: no password on standard input\n");
        return -1;
    }
    out[strcspn(out, "\r\n")] = '\0';
    if (strlen(out) < PASSWORD_MIN) {
        fprintf(stderr, "correio: the password must have at least %d characters\n", PASSWORD_MIN);
        return -1;
    }
    return 0;
}

static void print_line(void *ctx, const char *s)
{
    printf("%s\n", s);
}

static int user_set_password(struct store *st, const struct config *cfg, const char *addr,
                             bool add, int argc, char **argv)
{
    char pw[PASSWORD_MAX], hash[256], scram[256], err[512];
    if (argc < 1 || strcmp(argv[0], "--password-stdin") != 0) {
        fprintf(stderr, "correio: give the password on standard input with --password-stdin\n");
        return EX_USAGE;
    }
    if (read_password(pw, sizeof(pw)) < 0)
        return EX_DATAERR;
    int r = cli_password_hash(pw, hash, sizeof(hash));
    /* SCRAM-SHA-256 (RFC 7677) needs keys derived from the password; the
     * password itself is never stored. */
    struct scram_keys keys;
    int rs = scram_keys_derive(pw, cfg->submission_scram_iterations, &keys);
    if (rs == 0)
        rs = scram_keys_format(&keys, scram, sizeof(scram));
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(&keys, sizeof(keys));
    if (r < 0 || rs < 0) {
        fprintf(stderr, "correio: %s failed\n", r < 0 ? "crypt(3) yescrypt" : "SCRAM key derivation");
        return EX_SOFTWARE;
    }
    r = add ? store_account_add(st, addr, hash, err, sizeof(err))
            : store_account_set_password(st, addr, hash, err, sizeof(err));
    if (r == 0)
        r = store_account_set_scram(st, addr, scram, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_DATAERR;
    }
    printf("%s %s\n", add ? "added" : "password changed for", addr);
    return 0;
}

/* `user apop-secret ADDRESS --secret-stdin | --remove`: the shared secret
 * of POP3 APOP (RFC 1939 7), which the server must know in the clear. */
static int user_apop_secret(struct store *st, const char *addr, int argc, char **argv)
{
    char secret[PASSWORD_MAX], err[512];
    secret[0] = '\0';
    if (argc == 1 && strcmp(argv[0], "--remove") == 0) {
        /* secret stays "": remove */
    } else if (argc == 1 && strcmp(argv[0], "--secret-stdin") == 0) {
        if (read_password(secret, sizeof(secret)) < 0)
            return EX_DATAERR;
    } else {
        fprintf(stderr, "usage: correio user apop-secret ADDRESS --secret-stdin | --remove\n");
        return EX_USAGE;
    }
    int r = store_account_set_apop_secret(st, addr, secret, err, sizeof(err));
    bool set = secret[0] != '\0';
    explicit_bzero(secret, sizeof(secret));
    if (r < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_DATAERR;
    }
    printf("APOP secret %s for %s\n", set ? "set" : "removed", addr);
    return 0;
}

int cli_user(const char *config_path, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: correio user add|del|passwd ADDRESS [--password-stdin] | list\n"
                        "       correio user apop-secret ADDRESS --secret-stdin | --remove\n");
        return EX_USAGE;
    }
    struct config cfg;
    struct store *st = NULL;
    char err[512];
    int rc = cli_open_store(config_path, &cfg, &st);
    if (rc != 0)
        return rc;
    const char *verb = argv[0];
    if (!strcmp(verb, "list") && argc == 1) {
        rc = store_account_list(st, print_line, NULL, err, sizeof(err)) < 0 ? EX_SOFTWARE : 0;
    } else if ((!strcmp(verb, "add") || !strcmp(verb, "passwd")) && argc >= 2) {
        rc = user_set_password(st, &cfg, argv[1], !strcmp(verb, "add"), argc - 2, argv + 2);
    } else if (!strcmp(verb, "apop-secret") && argc >= 2) {
        rc = user_apop_secret(st, argv[1], argc - 2, argv + 2);
    } else if (!strcmp(verb, "del") && argc == 2) {
        rc = store_account_del(st, argv[1], err, sizeof(err)) < 0 ? EX_DATAERR : 0;
        if (rc == 0)
            printf("deleted %s (its mail was moved under %s/deleted)\n", argv[1], cfg.data_dir);
    } else {
        fprintf(stderr, "correio: user: unknown or incomplete command '%s'\n", verb);
        rc = EX_USAGE;
        err[0] = '\0';
    }
    if (rc != 0 && rc != EX_USAGE && err[0])
        fprintf(stderr, "correio: %s\n", err);
    store_close(&st);
    return rc;
}

int cli_domain(const char *config_path, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: correio domain add|del DOMAIN | list\n");
        return EX_USAGE;
    }
    struct config cfg;
    struct store *st = NULL;
    char err[512] = "";
    int rc = cli_open_store(config_path, &cfg, &st);
    if (rc != 0)
        return rc;
    if (!strcmp(argv[0], "list") && argc == 1)
        rc = store_domain_list(st, print_line, NULL, err, sizeof(err)) < 0 ? EX_SOFTWARE : 0;
    else if (!strcmp(argv[0], "add") && argc == 2)
        rc = store_domain_add(st, argv[1], err, sizeof(err)) < 0 ? EX_DATAERR : 0;
    else if (!strcmp(argv[0], "del") && argc == 2)
        rc = store_domain_del(st, argv[1], err, sizeof(err)) < 0 ? EX_DATAERR : 0;
    else {
        fprintf(stderr, "correio: domain: unknown or incomplete command '%s'\n", argv[0]);
        rc = EX_USAGE;
    }
    if (rc != 0 && err[0])
        fprintf(stderr, "correio: %s\n", err);
    store_close(&st);
    return rc;
}
