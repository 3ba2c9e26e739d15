/* fuzz_smtp_client — libFuzzer target for the SMTP client state machine.
 *
 * Input layout: two octets of settings, then what the server sends.
 *   mode  bit 0-1: STARTTLS policy (0, 3: opportunistic, 1: never,
 *                  2: require), bit 2: TLS already active, bit 3: AUTH
 *                  PLAIN credentials set, bit 4: 8-bit body, bit 5:
 *                  SMTPUTF8 message, bit 6: timeout at the end, bit 7:
 *                  connection lost at the end;
 *   mode2 bit 0: three recipients (else two), bit 1-2: which handshakes
 *                  fail (tls_done(false) when (k & 3) == bits), bit 3-7:
 *                  the body is "." and the first 8*n octets of the server's
 *                  side (so the dot-stuffing sees arbitrary octets).
 * The server's side is fed twice to fresh clients: in pieces cut at
 * positions derived from the data, and one octet per feed.
 *
 * Every request is answered at once: READY sends a message (two of them,
 * then QUIT), STARTTLS is answered from mode2, RESULT is checked and taken.
 * Checked on the way (a failure traps):
 *  - the output has only CRLF line endings and ends with one after every
 *    call; a command line is one the client may send;
 *  - after DATA, the output is the command stream again, a lone "." or
 *    exactly the message dot-stuffed by an independent reference (bare CR
 *    and LF as CRLF, "." doubled at line starts, final CRLF added) and ".";
 *  - nothing is written once CLOSE was returned, and CLOSE goes with the
 *    CLOSED request; a RESULT has one reply per recipient of the message,
 *    with sane fields.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proto/smtp/smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static const char *const fuzz_rcpts[] = {"b@fuzz.example", "c@fuzz.example", "d@fuzz.example"};

struct fz {
    struct smtp_client *c;
    struct buf out;
    bool closed;
    uint8_t mode, mode2;
    unsigned nsent;      /* messages given */
    unsigned ntls;       /* handshakes asked */
    bool in_msg;         /* a message was given and its RESULT not taken */
    bool after_data;     /* the last command written was DATA */
    struct smtp_client_msg msg;
    struct buf want;     /* the message as it must go out after 354 */
};

/* The reference: the body as it must be written, with the final ".". */
static void fuzz_stuff(struct buf *w, const uint8_t *d, size_t n)
{
    struct buf norm = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '\r' && i + 1 < n && d[i + 1] == '\n')
            continue; /* the LF writes the line end */
        if (d[i] == '\r' || d[i] == '\n')
            fuzz_check(buf_puts(&norm, "\r\n") == 0);
        else
            fuzz_check(buf_append(&norm, d + i, 1) == 0);
    }
    const uint8_t *p = buf_ptr(&norm);
    size_t m = buf_size(&norm);
    buf_reset(w);
    size_t i = 0;
    while (i < m) {
        const uint8_t *nl = memchr(p + i, '\n', m - i);
        size_t end = nl ? (size_t)(nl - p) + 1 : m;
        if (p[i] == '.')
            fuzz_check(buf_puts(w, ".") == 0);
        fuzz_check(buf_append(w, p + i, end - i) == 0);
        i = end;
    }
    if (m > 0 && p[m - 1] != '\n')
        fuzz_check(buf_puts(w, "\r\n") == 0);
    fuzz_check(buf_puts(w, ".\r\n") == 0);
    buf_free(&norm);
}

static bool has_prefix(const uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

/* Check what the last call wrote, then forget it. */
static void fuzz_check_out(struct fz *f)
{
    const uint8_t *p = buf_ptr(&f->out);
    size_t n = buf_size(&f->out);
    if (f->closed)
        fuzz_check(n == 0);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r')
            fuzz_check(i + 1 < n && p[i + 1] == '\n');
        if (p[i] == '\n')
            fuzz_check(i > 0 && p[i - 1] == '\r');
    }
    size_t i = 0;
    while (i < n) {
        if (f->after_data) {
            f->after_data = false;
            if (has_prefix(p + i, n - i, ".\r\n")) { /* a lone dot */
                i += 3;
                continue;
            }
            if (n - i >= 2 && p[i] == '.') { /* the body always starts with "." */
                size_t wn = buf_size(&f->want);
                fuzz_check(f->in_msg && n - i >= wn &&
                           memcmp(p + i, buf_ptr(&f->want), wn) == 0);
                i += wn;
                continue;
            }
        }
        const uint8_t *nl = memchr(p + i, '\n', n - i);
        fuzz_check(nl != NULL);
        size_t end = (size_t)(nl - p) + 1;
        const uint8_t *l = p + i;
        size_t ln = end - i - 2;
        fuzz_check(has_prefix(l, ln, "EHLO ") || has_prefix(l, ln, "HELO ") ||
                   (ln == 8 && has_prefix(l, ln, "STARTTLS")) ||
                   has_prefix(l, ln, "AUTH PLAIN ") || has_prefix(l, ln, "MAIL FROM:<") ||
                   has_prefix(l, ln, "RCPT TO:<") || (ln == 4 && has_prefix(l, ln, "DATA")) ||
                   (ln == 4 && has_prefix(l, ln, "RSET")) ||
                   (ln == 4 && has_prefix(l, ln, "QUIT")));
        if (ln == 4 && has_prefix(l, ln, "DATA"))
            f->after_data = true;
        i = end;
    }
    buf_reset(&f->out);
}

static void fuzz_after(struct fz *f, enum smtp_client_status st)
{
    fuzz_check_out(f);
    bool closed = smtp_client_request(f->c) == SMTP_CLIENT_REQ_CLOSED;
    fuzz_check((st == SMTP_CLIENT_CLOSE) == closed);
    fuzz_check((smtp_client_result(f->c) != NULL) ==
               (smtp_client_request(f->c) == SMTP_CLIENT_REQ_RESULT));
    if (closed) {
        f->closed = true;
        const struct smtp_client_reply *e = smtp_client_error(f->c);
        if (e) {
            fuzz_check(e->outcome != SMTP_CLIENT_OK);
            fuzz_check(memchr(e->text, '\0', sizeof(e->text)) != NULL);
        }
    }
}

static void fuzz_check_reply(const struct smtp_client_reply *r)
{
    fuzz_check(r->outcome == SMTP_CLIENT_OK || r->outcome == SMTP_CLIENT_TEMPFAIL ||
               r->outcome == SMTP_CLIENT_PERMFAIL);
    fuzz_check(r->code == 0 || (r->code >= 200 && r->code <= 599));
    if (r->code >= 400)
        fuzz_check(r->outcome == (r->code >= 500 ? SMTP_CLIENT_PERMFAIL : SMTP_CLIENT_TEMPFAIL));
    if (r->code == 0)
        fuzz_check(r->outcome == SMTP_CLIENT_TEMPFAIL);
    size_t sl = strnlen(r->status, sizeof(r->status));
    fuzz_check(sl < sizeof(r->status));
    if (sl > 0)
        fuzz_check(r->status[0] == '2' || r->status[0] == '4' || r->status[0] == '5');
    size_t tl = strnlen(r->text, sizeof(r->text));
    fuzz_check(tl < sizeof(r->text));
    for (size_t i = 0; i < tl; i++)
        fuzz_check(r->text[i] >= 0x20 && r->text[i] < 0x7f);
}

/* Answer requests until the client waits for the server or is closed. */
static void fuzz_answer(struct fz *f, const uint8_t *body, size_t body_len)
{
    while (!f->closed) {
        enum smtp_client_status st;
        switch (smtp_client_request(f->c)) {
        case SMTP_CLIENT_REQ_READY:
            fuzz_check(!f->in_msg);
            if (f->nsent >= 2) {
                st = smtp_client_quit(f->c, &f->out);
                fuzz_after(f, st);
                return;
            }
            f->msg = (struct smtp_client_msg){
                .mail_from = f->nsent ? "" : "a@fuzz.example",
                .rcpts = fuzz_rcpts,
                .nrcpts = (f->mode2 & 1) ? 3 : 2,
                .data = body,
                .len = body_len,
                .body_8bit = f->mode & 0x10,
                .smtputf8 = (f->mode & 0x20) && f->nsent == 0,
            };
            fuzz_stuff(&f->want, body, body_len);
            f->nsent++;
            f->in_msg = true;
            st = smtp_client_send(f->c, &f->msg, &f->out);
            break;
        case SMTP_CLIENT_REQ_STARTTLS: {
            bool ok = (f->ntls++ & 3) != ((f->mode2 >> 1) & 3);
            st = smtp_client_tls_done(f->c, ok, &f->out);
            break;
        }
        case SMTP_CLIENT_REQ_RESULT: {
            const struct smtp_client_result *r = smtp_client_result(f->c);
            fuzz_check(f->in_msg && r && r->nrcpts == f->msg.nrcpts && r->rcpt);
            fuzz_check(r->remote_host && strcmp(r->remote_host, "mx.fuzz.example") == 0);
            for (size_t i = 0; i < r->nrcpts; i++)
                fuzz_check_reply(&r->rcpt[i]);
            f->in_msg = false;
            st = smtp_client_result_done(f->c, &f->out);
            break;
        }
        default:
            return;
        }
        fuzz_after(f, st);
    }
}

static void fuzz_run(const struct smtp_client_config *cfg, uint8_t mode, uint8_t mode2,
                     const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts,
                     const uint8_t *body, size_t body_len)
{
    struct fz f = {.mode = mode, .mode2 = mode2};
    f.c = smtp_client_new(cfg, "mx.fuzz.example");
    if (!f.c)
        return;
    if (!cuts) {
        for (size_t i = 0; i < size && !f.closed; i++) {
            fuzz_after(&f, smtp_client_feed(f.c, data + i, 1, &f.out));
            fuzz_answer(&f, body, body_len);
        }
    } else {
        for (size_t i = 0; i + 1 < ncuts && !f.closed; i++) {
            fuzz_after(&f, smtp_client_feed(f.c, data + cuts[i], cuts[i + 1] - cuts[i], &f.out));
            fuzz_answer(&f, body, body_len);
        }
    }
    (void)smtp_client_timeout(f.c);
    (void)smtp_client_tls_active(f.c);
    (void)smtp_client_has_ext(f.c, "PIPELINING");
    if (mode & 0x40) {
        fuzz_after(&f, smtp_client_timed_out(f.c, &f.out));
        fuzz_answer(&f, body, body_len);
    }
    if (mode & 0x80) {
        fuzz_after(&f, smtp_client_conn_lost(f.c, &f.out));
        fuzz_answer(&f, body, body_len);
    }
    /* Once closed, nothing more is written whatever is called. */
    if (f.closed) {
        fuzz_after(&f, smtp_client_feed(f.c, "250 ok\r\n", 8, &f.out));
        fuzz_after(&f, smtp_client_conn_lost(f.c, &f.out));
        fuzz_after(&f, smtp_client_quit(f.c, &f.out));
    }
    smtp_client_free(&f.c);
    fuzz_check(f.c == NULL);
    buf_free(&f.out);
    buf_free(&f.want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        log_set_level(LOG_ERROR);
        quiet = true;
    }
    if (size < 2)
        return 0;
    uint8_t mode = data[0], mode2 = data[1];
    data += 2;
    size -= 2;
    static const enum smtp_client_tls policies[] = {
        SMTP_CLIENT_TLS_OPPORTUNISTIC, SMTP_CLIENT_TLS_NEVER, SMTP_CLIENT_TLS_REQUIRE,
        SMTP_CLIENT_TLS_OPPORTUNISTIC};
    struct smtp_client_config cfg = {
        .helo_name = "client.fuzz.example",
        .starttls = policies[mode & 3],
        .tls_active = mode & 4,
        .auth_user = (mode & 8) ? "user" : NULL,
        .auth_password = (mode & 8) ? "secret" : NULL,
    };

    /* The body: "." then a slice of the input. */
    size_t slice = (size_t)(mode2 >> 3) * 8;
    if (slice > size)
        slice = size;
    uint8_t body[1 + 31 * 8];
    body[0] = '.';
    memcpy(body + 1, data, slice);

    uint32_t h = 2166136261u; /* FNV-1a picks the cut points */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    size_t cuts[9] = {0};
    cuts[8] = size;
    for (int i = 1; i < 8; i++) {
        cuts[i] = h % (size + 1);
        h = h * 1103515245u + 12345u;
        if (cuts[i] < cuts[i - 1])
            cuts[i] = cuts[i - 1];
    }
    fuzz_run(&cfg, mode, mode2, data, size, cuts, 9, body, slice + 1);
    fuzz_run(&cfg, mode, mode2, data, size, NULL, 0, body, slice + 1);
    return 0;
}
