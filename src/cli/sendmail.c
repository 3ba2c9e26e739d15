/* `correio sendmail` — the /usr/sbin/sendmail interface that scripts, cron
 * and mail(1) use: a message on standard input, queued for its recipients
 * (local ones are delivered by the server's queue runner, others by MX).
 * It works whether or not the server runs; the server picks the message
 * up within seconds once it does.
 *
 *   correio [-c FILE] sendmail [-t] [-i] [-oi] [-f SENDER] [-F NAME] [RCPT...]
 *   sendmail ...        (the same, through a link named "sendmail")
 *
 * -t takes the recipients from To:, Cc: and Bcc: as well (Bcc: is then
 * removed); -i / -oi: a line with a single "." does not end the message;
 * -f sets the envelope sender (default: the invoking user at server.hostname);
 * -F the display name of a From: field added when the message has none.
 * Other options mail programs pass (-B*, -o*, -od*, -v, -bm, -N*, -R*, -X*) are
 * accepted and ignored. Exit codes per sysexits.h.
 */
#include <ctype.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/config.h"
#include "lib/buf.h"
#include "mime/mime_decode.h"
#include "proto/smtp/received.h"
#include "proto/smtp/submission.h"
#include "queue/queue.h"
#include "store/store.h"

#define SENDMAIL_MAX_RCPTS 1000

struct sendmail_args {
    bool from_headers; /* -t */
    bool dot_ends;     /* without -i/-oi */
    const char *sender;
    const char *name;
    char **rcpts;
    size_t nrcpts;
};

static int sendmail_parse(int argc, char **argv, struct sendmail_args *a)
{
    a->dot_ends = true;
    int i = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--")) {
            i++;
            break;
        }
        if (!strcmp(o, "-t"))
            a->from_headers = true;
        else if (!strcmp(o, "-i") || !strcmp(o, "-oi"))
            a->dot_ends = false;
        else if (!strncmp(o, "-f", 2) || !strncmp(o, "-r", 2) || !strncmp(o, "-F", 2)) {
            const char *v = o[2] ? o + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "sendmail: option %s needs a value\n", o);
                return -1;
            }
            if (o[1] == 'F')
                a->name = v;
            else
                a->sender = v;
        } else if (o[1] == 'B' || o[1] == 'o' || o[1] == 'v' || o[1] == 'N' || o[1] == 'R' ||
                   o[1] == 'X' || !strcmp(o, "-bm") || !strcmp(o, "-em") || !strcmp(o, "-ep") ||
                   !strcmp(o, "-eq")) {
            /* accepted and ignored (mail(1), cron and mutt pass these) */
        } else {
            fprintf(stderr, "sendmail: unsupported option %s\n", o);
            return -1;
        }
    }
    a->rcpts = argv + i;
    a->nrcpts = (size_t)(argc - i);
    return 0;
}

/* Standard input, up to max octets; without -i a "." line ends it. */
static int sendmail_read(const struct sendmail_args *a, size_t max, struct buf *raw)
{
    char line[8192];
    bool at_line_start = true;
    while (fgets(line, sizeof(line), stdin)) {
        size_t n = strlen(line);
        if (a->dot_ends && at_line_start &&
            (!strcmp(line, ".\n") || !strcmp(line, ".\r\n") || !strcmp(line, ".")))
            break;
        at_line_start = n > 0 && line[n - 1] == '\n';
        if (buf_size(raw) + n > max) {
            fprintf(stderr, "sendmail: message larger than %zu octets\n", max);
            return EX_DATAERR;
        }
        if (buf_append(raw, line, n) < 0)
            return EX_OSERR;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "sendmail: cannot read the message\n");
        return EX_IOERR;
    }
    return 0;
}

/* Does the header block have a field called name? */
static bool sendmail_has_field(const uint8_t *m, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (size_t pos = 0; pos < len;) {
        const uint8_t *eol = memchr(m + pos, '\n', len - pos);
        size_t ll = eol ? (size_t)(eol - (m + pos)) : len - pos;
        if (ll == 0 || (ll == 1 && m[pos] == '\r'))
            return false; /* end of the header */
        if (ll > nl && m[pos + nl] == ':' && !strncasecmp((const char *)m + pos, name, nl))
            return true;
        pos += ll + 1;
    }
    return false;
}

/* A bare name is a local user: name@<first local domain>. */
struct first_domain {
    char d[256];
};
static void sendmail_first_domain(void *ctx, const char *domain)
{
    struct first_domain *f = ctx;
    if (!f->d[0])
        snprintf(f->d, sizeof(f->d), "%s", domain);
}

int cli_sendmail(const char *config_path, int argc, char **argv)
{
    struct sendmail_args a = {0};
    if (sendmail_parse(argc, argv, &a) < 0)
        return EX_USAGE;
    /* Who calls, before the configuration drops privileges. */
    const struct passwd *pw = getpwuid(getuid());
    char login[64], gecos[128];
    snprintf(login, sizeof(login), "%s", pw ? pw->pw_name : "nobody");
    snprintf(gecos, sizeof(gecos), "%s", pw && pw->pw_gecos ? pw->pw_gecos : "");
    gecos[strcspn(gecos, ",")] = '\0';
    unsigned uid = (unsigned)getuid();

    struct config cfg;
    int rc = cli_load_config(config_path, &cfg);
    if (rc != 0)
        return rc;
    struct store *st = NULL;
    char err[512];
    if (store_open(&st, cfg.data_dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "sendmail: store: %s\n", err);
        return EX_UNAVAILABLE;
    }
    struct first_domain fd = {""};
    store_domain_list(st, sendmail_first_domain, &fd, err, sizeof(err));
    store_close(&st);
    const char *local_domain = fd.d[0] ? fd.d : cfg.hostname;

    struct buf raw = BUF_INIT, crlf = BUF_INIT, msg = BUF_INIT, head = BUF_INIT;
    char **hdr_rcpts = NULL;
    size_t nhdr = 0;
    char **all = NULL;
    size_t nall = 0;
    struct queue *q = NULL;
    rc = sendmail_read(&a, cfg.smtp_max_message_size, &raw);
    if (rc != 0)
        goto out;
    rc = EX_OSERR;
    if (mime_crlf_normalize(buf_ptr(&raw), buf_size(&raw), &crlf) < 0)
        goto out;
    if (buf_size(&crlf) && (buf_size(&crlf) < 2 ||
                            memcmp(buf_ptr(&crlf) + buf_size(&crlf) - 2, "\r\n", 2) != 0) &&
        buf_append(&crlf, "\r\n", 2) < 0)
        goto out;
    if (a.from_headers) {
        static const char *const to_fields[] = {"To", "Cc", "Bcc"};
        if (smtp_header_addrs(buf_ptr(&crlf), buf_size(&crlf), to_fields, 3, &hdr_rcpts, &nhdr) <
            0)
            goto out;
    }
    /* Every recipient as local@domain. */
    all = calloc(a.nrcpts + nhdr + 1, sizeof(*all));
    if (!all)
        goto out;
    for (size_t i = 0; i < a.nrcpts + nhdr; i++) {
        const char *r = i < a.nrcpts ? a.rcpts[i] : hdr_rcpts[i - a.nrcpts];
        /* "a@b, c@d" in one argument (mail(1) does that) */
        char *copy = strdup(r);
        if (!copy)
            goto out;
        for (char *save = NULL, *t = strtok_r(copy, ", ", &save); t;
             t = strtok_r(NULL, ", ", &save)) {
            if (*t == '<') {
                t++;
                t[strcspn(t, ">")] = '\0';
            }
            if (!*t || nall >= SENDMAIL_MAX_RCPTS)
                continue;
            char addr[512];
            if (strchr(t, '@'))
                snprintf(addr, sizeof(addr), "%s", t);
            else
                snprintf(addr, sizeof(addr), "%s@%s", t, local_domain);
            bool dup = false;
            for (size_t k = 0; k < nall && !dup; k++)
                dup = strcasecmp(all[k], addr) == 0;
            if (dup)
                continue;
            char **grown = realloc(all, (nall + 2) * sizeof(*all));
            if (!grown) {
                free(copy);
                goto out;
            }
            all = grown;
            if (!(all[nall] = strdup(addr))) {
                free(copy);
                goto out;
            }
            nall++;
        }
        free(copy);
    }
    if (nall == 0) {
        fprintf(stderr, "sendmail: no recipients (give them as arguments, or use -t)\n");
        rc = EX_USAGE;
        goto out;
    }
    char sender[512];
    if (a.sender)
        snprintf(sender, sizeof(sender), "%s", a.sender);
    else
        snprintf(sender, sizeof(sender), "%s@%s", login, cfg.hostname);
    if (!strcmp(sender, "<>"))
        sender[0] = '\0';
    /* Trace field, a From: when there is none, then the RFC 6409 fix-ups
     * (Bcc: removed, Date: and Message-ID: added). */
    time_t now = time(NULL);
    char date[64];
    smtp_date_format(date, sizeof(date), now);
    if (buf_printf(&head, "Received: by %s (correio sendmail, uid %u); %s\r\n", cfg.hostname,
                   uid, date) < 0)
        goto out;
    if (!sendmail_has_field(buf_ptr(&crlf), buf_size(&crlf), "From")) {
        const char *name = a.name ? a.name : gecos;
        if ((name[0] ? buf_printf(&head, "From: %s <%s>\r\n", name, sender)
                     : buf_printf(&head, "From: <%s>\r\n", sender)) < 0)
            goto out;
    }
    char id_left[64];
    snprintf(id_left, sizeof(id_left), "%lld.%ld.sendmail", (long long)now, (long)getpid());
    if (buf_append(&msg, buf_ptr(&head), buf_size(&head)) < 0 ||
        smtp_submission_fixup(buf_ptr(&crlf), buf_size(&crlf), cfg.hostname, now, id_left, &msg,
                              NULL) < 0)
        goto out;
    bool body_8bit = false;
    for (size_t i = 0; i < buf_size(&msg) && !body_8bit; i++)
        body_8bit = buf_ptr(&msg)[i] >= 0x80;
    bool utf8 = false;
    for (size_t i = 0; i < nall && !utf8; i++)
        for (const char *p = all[i]; *p && !utf8; p++)
            utf8 = (unsigned char)*p >= 0x80;
    struct iovec iov = {.iov_base = (void *)buf_ptr(&msg), .iov_len = buf_size(&msg)};
    struct queue_new qn = {
        .sender = sender,
        .rcpts = (const char *const *)all,
        .nrcpts = nall,
        .iov = &iov,
        .iovcnt = 1,
        .body_8bit = body_8bit,
        .smtputf8 = utf8,
        .now = now,
    };
    char id[40];
    if (queue_open(&q, cfg.data_dir, err, sizeof(err)) < 0 ||
        queue_add(q, &qn, id, sizeof(id), err, sizeof(err)) < 0) {
        fprintf(stderr, "sendmail: cannot queue the message: %s\n", err);
        rc = EX_TEMPFAIL;
        goto out;
    }
    rc = EX_OK;
out:
    if (rc == EX_OSERR)
        fprintf(stderr, "sendmail: out of memory\n");
    queue_close(&q);
    for (size_t i = 0; i < nall; i++)
        free(all[i]);
    free(all);
    smtp_from_addrs_free(hdr_rcpts, nhdr);
    buf_free(&raw);
    buf_free(&crlf);
    buf_free(&msg);
    buf_free(&head);
    return rc;
}
