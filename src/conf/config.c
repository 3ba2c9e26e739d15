#include "conf/config.h"
#include "queue/dsn.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/log.h"

enum cfg_type { CFG_STR, CFG_UINT, CFG_SIZE, CFG_BOOL };

struct cfg_key {
    const char *section;
    const char *name;
    enum cfg_type type;
    size_t offset;
    size_t size; /* for CFG_STR: capacity */
    const char *def;
    const char *doc;
};

#define STR(sec, key, field, def, doc)                                                            \
    {sec, key, CFG_STR, offsetof(struct config, field), sizeof(((struct config *)0)->field), def, \
     doc}
#define NUM(sec, key, type, field, def, doc) {sec, key, type, offsetof(struct config, field), 0, def, doc}

static const struct cfg_key cfg_keys[] = {
    STR("server", "hostname", hostname, "localhost",
        "name in greetings and Received: headers"),
    STR("server", "data_dir", data_dir, "/var/lib/correio", "where accounts, mail and queue live"),
    STR("server", "user", user, "correio",
        "when started as root, drop to this user after binding the ports"),
    STR("server", "log_level", log_level, "info", "debug, info, warn or error"),
    NUM("server", "workers", CFG_UINT, workers, "4", "threads doing durable writes (fsync)"),
    NUM("server", "shutdown_timeout", CFG_UINT, shutdown_timeout, "30",
        "seconds SIGTERM waits for deliveries in progress"),
    STR("listen", "smtp", listen_smtp, "0.0.0.0:25",
        "SMTP (MX) listeners, comma-separated ADDR:PORT ([::1]:25 for IPv6); empty for none"),
    STR("listen", "imap", listen_imap, "0.0.0.0:143",
        "IMAP listeners (STARTTLS), comma-separated ADDR:PORT; empty for none"),
    STR("listen", "imaps", listen_imaps, "0.0.0.0:993",
        "IMAP listeners with implicit TLS (RFC 8314); empty for none"),
    STR("listen", "pop3", listen_pop3, "0.0.0.0:110",
        "POP3 listeners (STLS), comma-separated ADDR:PORT; empty for none"),
    STR("listen", "pop3s", listen_pop3s, "0.0.0.0:995",
        "POP3 listeners with implicit TLS (RFC 8314); empty for none"),
    STR("listen", "submission", listen_submission, "0.0.0.0:587",
        "message submission listeners (RFC 6409, STARTTLS then AUTH); empty for none"),
    STR("listen", "submissions", listen_submissions, "0.0.0.0:465",
        "message submission with implicit TLS (RFC 8314); empty for none"),
    STR("tls", "cert", tls_cert, "", "PEM certificate chain; empty: no TLS"),
    STR("tls", "key", tls_key, "", "PEM private key"),
    NUM("smtp", "max_message_size", CFG_SIZE, smtp_max_message_size, "52428800",
        "largest message accepted, octets (SIZE, RFC 1870)"),
    NUM("smtp", "max_recipients", CFG_UINT, smtp_max_recipients, "100",
        "recipients per message; more get 452 4.5.3"),
    NUM("smtp", "max_errors", CFG_UINT, smtp_max_errors, "20",
        "error replies per session before 421 and close"),
    NUM("smtp", "max_command_line", CFG_UINT, smtp_max_command_line, "512",
        "command line length incl. CRLF (RFC 5321 4.5.3.1.4)"),
    NUM("smtp", "max_text_line", CFG_UINT, smtp_max_text_line, "1000",
        "message line length incl. CRLF (RFC 5321 4.5.3.1.6)"),
    NUM("smtp", "timeout", CFG_UINT, smtp_timeout, "300",
        "seconds a client may stay silent (RFC 5321 4.5.3.2.7)"),
    NUM("smtp", "max_connections", CFG_UINT, smtp_max_connections, "1000",
        "SMTP connections at once, in total"),
    NUM("smtp", "max_connections_per_ip", CFG_UINT, smtp_max_connections_per_ip, "50",
        "SMTP connections at once from one client address"),
    NUM("smtp", "expn", CFG_BOOL, smtp_expn, "no", "answer EXPN instead of 502"),
    STR("smtp", "postmaster", smtp_postmaster, "",
        "account that gets postmaster@ mail of every local domain without its own (RFC 5321 4.5.1)"),
    NUM("imap", "timeout", CFG_UINT, imap_timeout, "1800",
        "seconds a client may stay silent; at least 30 minutes (RFC 3501 5.4)"),
    NUM("imap", "max_connections", CFG_UINT, imap_max_connections, "1000",
        "IMAP connections at once, in total"),
    NUM("imap", "max_connections_per_ip", CFG_UINT, imap_max_connections_per_ip, "50",
        "IMAP connections at once from one client address"),
    NUM("imap", "allow_plaintext_auth", CFG_BOOL, imap_allow_plaintext_auth, "no",
        "allow LOGIN/AUTHENTICATE without TLS (tests only)"),
    NUM("imap", "max_bad_commands", CFG_UINT, imap_max_bad_commands, "20",
        "BAD replies in one session before * BYE"),
    NUM("imap", "max_line", CFG_UINT, imap_max_line, "65536",
        "command line length, literals not counted"),
    NUM("imap", "append_limit", CFG_SIZE, imap_append_limit, "52428800",
        "largest message APPEND accepts (APPENDLIMIT, RFC 7889)"),
    NUM("imap", "workers", CFG_UINT, imap_workers, "4",
        "threads running IMAP and POP3 commands"),
    NUM("pop3", "timeout", CFG_UINT, pop3_timeout, "600",
        "seconds a client may stay silent; at least 10 minutes (RFC 1939 3)"),
    NUM("pop3", "max_connections", CFG_UINT, pop3_max_connections, "1000",
        "POP3 connections at once, in total"),
    NUM("pop3", "max_connections_per_ip", CFG_UINT, pop3_max_connections_per_ip, "50",
        "POP3 connections at once from one client address"),
    NUM("pop3", "allow_plaintext_auth", CFG_BOOL, pop3_allow_plaintext_auth, "no",
        "allow USER/PASS and AUTH without TLS (tests only)"),
    NUM("pop3", "max_errors", CFG_UINT, pop3_max_errors, "20",
        "-ERR replies to bad commands in one session before it is closed"),
    NUM("pop3", "max_auth_failures", CFG_UINT, pop3_max_auth_failures, "3",
        "failed logins in one session before it is closed"),
    NUM("pop3", "max_auth_failures_per_ip", CFG_UINT, pop3_max_auth_failures_per_ip, "20",
        "failed logins from one client address within 15 minutes before its logins are refused"),
    NUM("submission", "timeout", CFG_UINT, submission_timeout, "300",
        "seconds a client may stay silent (RFC 5321 4.5.3.2.7)"),
    NUM("submission", "max_connections", CFG_UINT, submission_max_connections, "1000",
        "submission connections at once, in total"),
    NUM("submission", "max_connections_per_ip", CFG_UINT, submission_max_connections_per_ip, "50",
        "submission connections at once from one client address"),
    NUM("submission", "allow_plaintext_auth", CFG_BOOL, submission_allow_plaintext_auth, "no",
        "allow AUTH without TLS (tests only)"),
    NUM("submission", "max_auth_failures_per_ip", CFG_UINT, submission_max_auth_failures_per_ip,
        "20", "failed AUTHs from one client address within 15 minutes before its AUTHs are refused"),
    NUM("submission", "scram_iterations", CFG_UINT, submission_scram_iterations, "10000",
        "PBKDF2 rounds of the SCRAM-SHA-256 keys made by user add/passwd (RFC 7677: at least 4096)"),
    STR("delivery", "dns_resolver", delivery_dns_resolver, "",
        "HOST:PORT of the DNS resolver for MX look-ups; empty: the system's (/etc/resolv.conf)"),
    NUM("delivery", "remote_smtp_port", CFG_UINT, delivery_remote_smtp_port, "25",
        "port of the remote MX servers (tests point it elsewhere)"),
    STR("delivery", "relayhost", delivery_relayhost, "",
        "send all outbound mail through this smart host: HOST:PORT or USER:PASSWORD@HOST:PORT; "
        "empty: deliver by MX"),
    STR("delivery", "retry_schedule", delivery_retry_schedule, "1m,5m,15m,30m,1h,2h,4h",
        "delays between attempts after a temporary failure; the last repeats"),
    NUM("delivery", "max_age", CFG_UINT, delivery_max_age, "432000",
        "seconds a message may wait in the queue before it bounces (5 days)"),
    NUM("delivery", "delay_warning", CFG_UINT, delivery_delay_warning, "14400",
        "seconds after which the sender is told a message is delayed; 0: never"),
    NUM("delivery", "max_connections", CFG_UINT, delivery_max_connections, "50",
        "outbound SMTP connections at once"),
    NUM("delivery", "max_connections_per_domain", CFG_UINT, delivery_max_connections_per_domain,
        "5", "outbound SMTP connections at once to one destination domain"),
    NUM("delivery", "require_tls", CFG_BOOL, delivery_require_tls, "no",
        "defer instead of sending in clear when a server offers no STARTTLS"),
};
#define CFG_NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

static const struct cfg_key *cfg_find(const char *section, const char *name)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (strcasecmp(cfg_keys[i].section, section) == 0 && strcasecmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

/* Parse a size with an optional K/M/G suffix (powers of 1024). */
static int cfg_parse_size(const char *v, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *v == '-')
        return -1;
    unsigned long long mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024ULL; end++; break;
    case 'm': case 'M': mul = 1024ULL * 1024; end++; break;
    case 'g': case 'G': mul = 1024ULL * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end != '\0' || n > ULLONG_MAX / mul)
        return -1;
    *out = n * mul;
    return 0;
}

static int cfg_assign(struct config *c, const struct cfg_key *k, const char *v, char *err,
                      size_t errlen)
{
    char *field = (char *)c + k->offset;
    unsigned long long n;
    switch (k->type) {
    case CFG_STR:
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "%s.%s: value too long (max %zu)", k->section, k->name,
                     k->size - 1);
            return -1;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case CFG_UINT:
        if (cfg_parse_size(v, &n) < 0 || n > UINT_MAX) {
            snprintf(err, errlen, "%s.%s: '%s' is not a whole number", k->section, k->name, v);
            return -1;
        }
        *(unsigned *)field = (unsigned)n;
        return 0;
    case CFG_SIZE:
        if (cfg_parse_size(v, &n) < 0 || n > SIZE_MAX) {
            snprintf(err, errlen, "%s.%s: '%s' is not a size (e.g. 50M)", k->section, k->name, v);
            return -1;
        }
        *(size_t *)field = (size_t)n;
        return 0;
    case CFG_BOOL:
        if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") ||
            !strcasecmp(v, "on"))
            *(bool *)field = true;
        else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") ||
                 !strcasecmp(v, "off"))
            *(bool *)field = false;
        else {
            snprintf(err, errlen, "%s.%s: '%s' is not yes or no", k->section, k->name, v);
            return -1;
        }
        return 0;
    }
    return -1;
}

void config_defaults(struct config *c)
{
    char err[256];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (cfg_assign(c, &cfg_keys[i], cfg_keys[i].def, err, sizeof(err)) < 0)
            abort(); /* a bad default is a programming error */
}

static int cfg_check(const struct config *c, char *err, size_t errlen)
{
    if (log_level_parse(c->log_level) < 0) {
        snprintf(err, errlen, "server.log_level: '%s' is not debug, info, warn or error",
                 c->log_level);
        return -1;
    }
    if (c->workers == 0 || c->workers > 256) {
        snprintf(err, errlen, "server.workers: must be 1..256");
        return -1;
    }
    if (c->smtp_max_command_line < 512 || c->smtp_max_text_line < 1000) {
        snprintf(err, errlen, "smtp: max_command_line must be >= 512 and max_text_line >= 1000 "
                              "(RFC 5321 4.5.3.1)");
        return -1;
    }
    if (c->imap_timeout < 1 || c->imap_workers == 0 || c->imap_workers > 256 ||
        c->imap_max_line < 1024) {
        snprintf(err, errlen, "imap: timeout >= 1, workers 1..256, max_line >= 1024");
        return -1;
    }
    if (c->pop3_timeout < 1 || c->pop3_max_auth_failures < 1 ||
        c->pop3_max_auth_failures_per_ip < 1) {
        snprintf(err, errlen, "pop3: timeout, max_auth_failures and max_auth_failures_per_ip >= 1");
        return -1;
    }
    if (c->submission_timeout < 1 || c->submission_max_auth_failures_per_ip < 1 ||
        c->submission_scram_iterations < 4096 || c->submission_scram_iterations > 10000000) {
        snprintf(err, errlen, "submission: timeout and max_auth_failures_per_ip >= 1, "
                              "scram_iterations 4096..10000000");
        return -1;
    }
    if (c->delivery_remote_smtp_port < 1 || c->delivery_remote_smtp_port > 65535 ||
        c->delivery_max_connections < 1 || c->delivery_max_connections_per_domain < 1 ||
        c->delivery_max_age < 60) {
        snprintf(err, errlen, "delivery: remote_smtp_port 1..65535, max_connections and "
                              "max_connections_per_domain >= 1, max_age >= 60");
        return -1;
    }
    unsigned delays[QUEUE_SCHEDULE_MAX];
    size_t ndelays;
    char why[200];
    if (queue_schedule_parse(c->delivery_retry_schedule, delays, &ndelays, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "delivery.retry_schedule: %s", why);
        return -1;
    }
    if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0')) {
        snprintf(err, errlen, "tls: cert and key go together");
        return -1;
    }
    return 0;
}

struct cfg_parse_ctx {
    struct config *c;
    char err[512];
};

static int cfg_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    struct cfg_parse_ctx *ctx = user;
    if (!name) /* a section header alone */
        return 1;
    const struct cfg_key *k = cfg_find(section, name);
    if (!k) {
        snprintf(ctx->err, sizeof(ctx->err), "unknown key '%s' in section [%s]", name, section);
        return 0;
    }
    return cfg_assign(ctx->c, k, value, ctx->err, sizeof(ctx->err)) == 0;
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
    struct cfg_parse_ctx ctx = {.c = c, .err = ""};
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int line = ini_parse_file(f, cfg_ini_handler, &ctx);
    fclose(f);
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line, ctx.err[0] ? ctx.err : "syntax error");
        return -1;
    }
    snprintf(c->path, sizeof(c->path), "%s", path);
    char cerr[400];
    if (cfg_check(c, cerr, sizeof(cerr)) < 0) {
        snprintf(err, errlen, "%s: %s", path, cerr);
        return -1;
    }
    return 0;
}

int config_set(struct config *c, const char *dotted, const char *value, char *err, size_t errlen)
{
    const char *dot = strchr(dotted, '.');
    char section[64];
    if (!dot || (size_t)(dot - dotted) >= sizeof(section)) {
        snprintf(err, errlen, "'%s': expected SECTION.KEY", dotted);
        return -1;
    }
    memcpy(section, dotted, (size_t)(dot - dotted));
    section[dot - dotted] = '\0';
    const struct cfg_key *k = cfg_find(section, dot + 1);
    if (!k) {
        snprintf(err, errlen, "unknown setting '%s'", dotted);
        return -1;
    }
    if (cfg_assign(c, k, value, err, errlen) < 0)
        return -1;
    return cfg_check(c, err, errlen);
}

static void cfg_format_value(const struct config *c, const struct cfg_key *k, char *out, size_t n)
{
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case CFG_STR: snprintf(out, n, "%s", field); break;
    case CFG_UINT: snprintf(out, n, "%u", *(const unsigned *)field); break;
    case CFG_SIZE: snprintf(out, n, "%zu", *(const size_t *)field); break;
    case CFG_BOOL: snprintf(out, n, "%s", *(const bool *)field ? "yes" : "no"); break;
    }
}

int config_write(const struct config *c, const char *path, char *err, size_t errlen)
{
    char tmp[CONFIG_STR_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "# correio configuration; every key is described in docs/CONFIG.md.\n");
    const char *section = "";
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (strcmp(section, k->section) != 0) {
            fprintf(f, "\n[%s]\n", k->section);
            section = k->section;
        }
        char v[CONFIG_STR_MAX];
        cfg_format_value(c, k, v, sizeof(v));
        fprintf(f, "# %s\n%s = %s\n", k->doc, k->name, v);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
