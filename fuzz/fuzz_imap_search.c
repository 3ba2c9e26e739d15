/* fuzz_imap_search — libFuzzer target for the SEARCH program parser and
 * evaluator (proto/imap/imap_search).
 *
 * The input is a search key list: it is sent as "t SEARCH <input>\r\n"
 * through the IMAP parser (literals accepted), and every command that
 * comes out is parsed as a search program and evaluated on a few fixed
 * messages (plain, multipart with quoted-printable and base64 parts,
 * ISO-8859-1, encoded words, a cached envelope, one that cannot be read).
 *
 * Checked on the way (a failure traps):
 *  - the evaluation with its short cuts (index row first, three-valued
 *    logic) gives the same answer as the evaluation that reads every
 *    message, and reads a message at most once; and so does the
 *    evaluation with the index's cached search fields (FROM, SUBJECT...);
 *  - a program formats to a key list that parses back to a program that
 *    formats the same (the format is a fixed point);
 *  - a rejected program leaves *prog_r NULL and an error text.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_search.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static const char *const fuzz_msgs[] = {
    "From: Alice Example <alice@example.com>\r\n"
    "To: Bob <bob@example.org>\r\n"
    "Cc: carol@example.net\r\n"
    "Subject: Lunch plans for\r\n"
    " the weekend\r\n"
    "Date: Tue, 1 Feb 1994 21:52:25 -0800\r\n"
    "X-Mailer: Pine\r\n"
    "\r\n"
    "The quick brown fox jumps over the lazy dog.\r\n",

    "From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>\r\n"
    "Subject: =?UTF-8?B?w4ZybGlnIHRhbHQ=?=\r\n"
    "Date: 3 Mar 21 10:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Un caf=C3=A9 tr=C3=A8s cha=\r\n"
    "ud.\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "VGhlIHNlY3JldCB3b3JkIGlzIHh5bG9waG9uZS4NCg==\r\n"
    "--b--\r\n",

    "From: eve@example.com\r\n"
    "Subject: latin-1\r\n"
    "Content-Type: text/plain; charset=ISO-8859-1\r\n"
    "\r\n"
    "Na\xefve caf\xe9.\r\n",

    "Subject: unreadable\r\n\r\nbody\r\n",
};
#define FUZZ_NMSGS (sizeof(fuzz_msgs) / sizeof(fuzz_msgs[0]))

static int fuzz_read(void *ctx, const struct imap_search_msg *m, uint8_t **data_r, size_t *len_r)
{
    size_t i = (size_t)(uintptr_t)m->handle;
    if (i == FUZZ_NMSGS - 1)
        return -1;
    size_t n = strlen(fuzz_msgs[i]);
    *data_r = malloc(n + 1);
    if (!*data_r)
        return -1;
    memcpy(*data_r, fuzz_msgs[i], n + 1);
    *len_r = n;
    return 0;
}

static void fuzz_msg(size_t i, struct imap_search_msg *m)
{
    static const char *const keywords[] = {"", "$Forwarded Work", NULL, "Junk"};
    memset(m, 0, sizeof(*m));
    m->seq = (uint32_t)i + 1;
    m->uid = (uint32_t)i * 7 + 3;
    m->flags = (uint32_t)(i * 11 % 32);
    m->keywords = keywords[i % 4];
    m->recent = i % 2;
    m->size = strlen(fuzz_msgs[i]);
    m->modseq = 100 + i * 3;
    m->internal_date = (time_t)760000000 + (time_t)i * 86400 * 400;
    if (i == 2)
        m->envelope =
            "(\"Wed, 2 Feb 1994 00:00:00 +0000\" \"latin-1\" NIL NIL NIL NIL NIL NIL NIL NIL)";
    m->handle = (const void *)(uintptr_t)i;
}

/* The search fields the index would hold for message i (computed once). */
static const struct buf *fuzz_fields(size_t i)
{
    static struct buf fields[FUZZ_NMSGS];
    static bool done[FUZZ_NMSGS];
    if (!done[i]) {
        struct mime_message *m =
            mime_parse((const uint8_t *)fuzz_msgs[i], strlen(fuzz_msgs[i]), NULL);
        fuzz_check(m && mime_search_fields(m, &fields[i]) == 0);
        mime_message_free(&m);
        done[i] = true;
    }
    return &fields[i];
}

static void fuzz_eval(const struct imap_search *p)
{
    for (size_t i = 0; i < FUZZ_NMSGS; i++) {
        struct imap_search_msg m;
        fuzz_msg(i, &m);
        struct imap_search_env env = {
            .max_seq = FUZZ_NMSGS,
            .max_uid = (FUZZ_NMSGS - 1) * 7 + 3,
            .read = fuzz_read,
        };
        enum imap_search_match_result r1 = imap_search_match(p, &m, &env);
        fuzz_check(env.reads <= 1);
        env.no_shortcut = true;
        env.reads = 0;
        enum imap_search_match_result r2 = imap_search_match(p, &m, &env);
        fuzz_check(env.reads <= 1);
        if (r1 == IMAP_SEARCH_NOMEM || r2 == IMAP_SEARCH_NOMEM)
            continue;
        if (i == FUZZ_NMSGS - 1) {
            fuzz_check(r2 != IMAP_SEARCH_MATCH || imap_search_cost(p) == IMAP_SEARCH_COST_INDEX);
            continue;
        }
        fuzz_check(r1 == r2 && r1 >= 0);
        const struct buf *f = fuzz_fields(i);
        m.fields = buf_ptr(f);
        m.fields_len = buf_size(f);
        env.no_shortcut = false;
        env.reads = 0;
        enum imap_search_match_result r3 = imap_search_match(p, &m, &env);
        fuzz_check(env.reads <= 1);
        fuzz_check(r3 == IMAP_SEARCH_NOMEM || r3 == r1);
    }
}

/* Parse each command in line[0..n) and hand its program to fn. */
static void fuzz_programs(const uint8_t *line, size_t n,
                          void (*fn)(void *ctx, const struct imap_search *p), void *ctx)
{
    struct imap_parser *ip = imap_parser_new(NULL);
    if (!ip)
        return;
    if (imap_parser_feed(ip, line, n) < 0) {
        imap_parser_free(&ip);
        return;
    }
    for (int k = 0; k < 64; k++) {
        struct imap_command *cmd;
        const char *tag, *err;
        enum imap_parse_status ps = imap_parser_next(ip, &cmd, &tag, &err);
        if (ps == IMAP_PARSE_NEED_MORE)
            break;
        if (ps != IMAP_PARSE_COMMAND)
            continue;
        struct imap_search *p = (struct imap_search *)&p;
        char errbuf[128];
        enum imap_search_parse_result rc =
            imap_search_parse(cmd->args, cmd->nargs, &p, errbuf, sizeof(errbuf));
        if (rc == IMAP_SEARCH_PARSE_OK) {
            fuzz_check(p != NULL);
            fn(ctx, p);
            imap_search_free(&p);
            fuzz_check(p == NULL);
        } else {
            fuzz_check(p == NULL && errbuf[0] != '\0');
        }
    }
    imap_parser_free(&ip);
}

static void fuzz_format(void *ctx, const struct imap_search *p)
{
    struct buf *out = ctx;
    if (!buf_size(out))
        fuzz_check(imap_search_format(p, out) == 0);
}

static void fuzz_one(void *ctx, const struct imap_search *p)
{
    fuzz_eval(p);
    /* Round trip: format, parse, format again. */
    struct buf f1 = BUF_INIT, line = BUF_INIT, f2 = BUF_INIT;
    fuzz_check(imap_search_format(p, &f1) == 0);
    buf_puts(&line, "t SEARCH ");
    buf_append(&line, buf_ptr(&f1), buf_size(&f1));
    buf_puts(&line, "\r\n");
    fuzz_programs(buf_ptr(&line), buf_size(&line), fuzz_format, &f2);
    fuzz_check(buf_size(&f1) == buf_size(&f2) &&
               memcmp(buf_ptr(&f1), buf_ptr(&f2), buf_size(&f1)) == 0);
    buf_free(&f1);
    buf_free(&f2);
    buf_free(&line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf line = BUF_INIT;
    buf_puts(&line, "t SEARCH ");
    buf_append(&line, data, size);
    buf_puts(&line, "\r\n");
    fuzz_programs(buf_ptr(&line), buf_size(&line), fuzz_one, NULL);
    buf_free(&line);
    return 0;
}
