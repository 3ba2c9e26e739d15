/* fuzz_pop3_session — libFuzzer target for the POP3 server session.
 *
 * Input layout: the first octet picks the configuration (bit 0-1: line
 * limit, bit 2: STLS offered, bit 3: plaintext logins allowed, bit 4: TLS
 * from the start, bit 5: timeout at the end, bit 6: shutdown at the end,
 * bit 7: an APOP banner); the second seeds the answers to requests and the
 * size of the maildrop (0 to 3 messages, with dot lines, bare LFs, no final
 * newline); the rest is what the client sends. It is fed in four pieces cut
 * at positions derived from the data, and, when STLS is not offered (what
 * is dropped after STLS depends on the feed boundaries by design), once
 * more one octet per feed: both transcripts must be the same.
 *
 * Every request is answered at once, the answer picked from the seed and
 * a counter. Checked on the way (a failure traps):
 *  - the output has CRLF line ends only and no NUL;
 *  - nothing is written once the session said CLOSE;
 *  - a password login is only asked with TLS or when plaintext is allowed;
 *    RETR and UPDATE only after a login; request fields are complete;
 *  - UPDATE's UIDs are ascending, distinct and from the maildrop;
 *  - RETR's lines, unstuffed, are the message with CRLF line ends; TOP's
 *    are a prefix of it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proto/pop3/pop3_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_msgs[] = {
    "From: a@example.org\r\nSubject: x\r\n\r\n.\r\n..\r\nbody\r\n.end\r\n",
    "no blank line\n.leading dot\nlast",
    "A: b\n\n.\n\nafter\n..\n",
};

static void fuzz_check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

struct fuzz_run {
    const struct pop3_session_config *cfg;
    struct pop3_session *s;
    struct buf out;
    struct buf *transcript;
    struct pop3_msg msgs[3];
    size_t nmsgs;
    uint8_t seed;
    unsigned nreq;
    bool closed;
};

/* Check the replies written so far, then move them to the transcript. */
static void fuzz_check_out(struct fuzz_run *r)
{
    const uint8_t *p = buf_ptr(&r->out);
    size_t n = buf_size(&r->out);
    if (r->closed)
        fuzz_check(n == 0);
    for (size_t i = 0; i < n; i++) {
        fuzz_check(p[i] != '\0');
        if (p[i] == '\n')
            fuzz_check(i > 0 && p[i - 1] == '\r');
        if (p[i] == '\r')
            fuzz_check(i + 1 < n && p[i + 1] == '\n');
    }
    if (n)
        fuzz_check(p[n - 1] == '\n');
    fuzz_check(buf_append(r->transcript, p, n) == 0);
    buf_reset(&r->out);
}

/* The message with CRLF line ends and a final CRLF. */
static void fuzz_normalise(struct buf *b, const char *m)
{
    size_t len = strlen(m);
    for (size_t i = 0; i < len; i++) {
        if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
            buf_append(b, "\r", 1);
        buf_append(b, m + i, 1);
    }
    if (len && m[len - 1] != '\n')
        buf_append(b, "\r\n", 2);
}

/* out from mark holds a RETR/TOP answer: check its lines against m. */
static void fuzz_check_retr(const struct buf *out, size_t mark, const char *m, bool top)
{
    const uint8_t *p = buf_ptr(out) + mark;
    size_t n = buf_size(out) - mark;
    fuzz_check(n >= 4 && memcmp(p, "+OK ", 4) == 0);
    const uint8_t *nl = memchr(p, '\n', n);
    fuzz_check(nl != NULL);
    size_t i = (size_t)(nl - p) + 1;
    struct buf got = BUF_INIT, want = BUF_INIT;
    for (;;) {
        nl = memchr(p + i, '\n', n - i);
        fuzz_check(nl != NULL);
        size_t end = (size_t)(nl - p) + 1, llen = end - i;
        if (llen == 3 && p[i] == '.')
            break;
        size_t skip = p[i] == '.' ? 1 : 0;
        if (skip)
            fuzz_check(llen > 3 && p[i + 1] == '.');
        buf_append(&got, p + i + skip, llen - skip);
        i = end;
    }
    fuzz_normalise(&want, m);
    if (top)
        fuzz_check(buf_size(&got) <= buf_size(&want));
    else
        fuzz_check(buf_size(&got) == buf_size(&want));
    fuzz_check(memcmp(buf_ptr(&got), buf_ptr(&want), buf_size(&got)) == 0);
    buf_free(&got);
    buf_free(&want);
}

static enum pop3_session_status fuzz_answer_auth(struct fuzz_run *r, const struct pop3_request *q,
                                                 unsigned k)
{
    static const enum pop3_auth_result results[] = {
        POP3_AUTH_FAILED, POP3_AUTH_OK,       POP3_AUTH_IN_USE,
        POP3_AUTH_OK,     POP3_AUTH_NO_APOP, POP3_AUTH_TEMPFAIL,
    };
    fuzz_check(q->user != NULL);
    if (q->auth_kind == POP3_AUTH_PASSWORD) {
        fuzz_check(q->password && !q->digest && !q->banner);
        fuzz_check(pop3_session_tls_active(r->s) || r->cfg->allow_plaintext_auth);
    } else {
        fuzz_check(q->auth_kind == POP3_AUTH_APOP && q->digest && q->banner && !q->password);
        fuzz_check(strlen(q->digest) == 32 && strspn(q->digest, "0123456789abcdef") == 32);
    }
    enum pop3_auth_result res = results[(r->seed + k) % 6];
    buf_printf(r->transcript, "[auth %d %s %d]", (int)q->auth_kind, q->user, (int)res);
    return pop3_session_auth_done(r->s, res, (k & 1) ? "acct@example.org" : NULL, r->msgs,
                                  r->nmsgs, &r->out);
}

static enum pop3_session_status fuzz_answer_retr(struct fuzz_run *r, const struct pop3_request *q,
                                                 unsigned k)
{
    fuzz_check(pop3_session_authenticated(r->s));
    fuzz_check(q->msgno >= 1 && q->msgno <= r->nmsgs && q->msg);
    fuzz_check(q->msg->uid == r->msgs[q->msgno - 1].uid);
    fuzz_check(q->top_lines >= -1);
    const char *m = fuzz_msgs[q->msgno - 1];
    bool top = q->top_lines >= 0;
    unsigned pick = (r->seed >> 2) + k;
    buf_printf(r->transcript, "[retr %u %ld]", q->msgno, q->top_lines);
    if (pick % 5 == 3)
        return pop3_session_retr_done(r->s, POP3_RETR_GONE, NULL, 0, &r->out);
    if (pick % 5 == 4)
        return pop3_session_retr_done(r->s, POP3_RETR_TEMPFAIL, NULL, 0, &r->out);
    size_t mark = buf_size(&r->out);
    enum pop3_session_status st =
        pop3_session_retr_done(r->s, POP3_RETR_OK, (const uint8_t *)m, strlen(m), &r->out);
    fuzz_check_retr(&r->out, mark, m, top);
    return st;
}

static enum pop3_session_status fuzz_answer_update(struct fuzz_run *r,
                                                   const struct pop3_request *q, unsigned k)
{
    fuzz_check(pop3_session_authenticated(r->s));
    fuzz_check(q->ndeleted >= 1 && q->ndeleted <= r->nmsgs && q->deleted);
    for (size_t i = 0; i < q->ndeleted; i++) {
        fuzz_check(i == 0 || q->deleted[i - 1] < q->deleted[i]);
        bool found = false;
        for (size_t j = 0; j < r->nmsgs; j++)
            found |= r->msgs[j].uid == q->deleted[i];
        fuzz_check(found);
    }
    buf_printf(r->transcript, "[update %zu]", q->ndeleted);
    return pop3_session_update_done(r->s, (r->seed + k) % 4 != 3, &r->out);
}

/* Answer every request at once. */
static enum pop3_session_status fuzz_answer(struct fuzz_run *r, enum pop3_session_status st)
{
    const struct pop3_request *q;
    while (st == POP3_SESSION_CONTINUE && (q = pop3_session_request(r->s)) != NULL) {
        unsigned k = r->nreq++;
        fuzz_check_out(r); /* the replies before the request first */
        switch (q->type) {
        case POP3_REQ_AUTH:
            st = fuzz_answer_auth(r, q, k);
            break;
        case POP3_REQ_RETR:
            st = fuzz_answer_retr(r, q, k);
            break;
        case POP3_REQ_UPDATE:
            st = fuzz_answer_update(r, q, k);
            break;
        case POP3_REQ_STARTTLS:
            fuzz_check(!pop3_session_tls_active(r->s));
            st = pop3_session_tls_done(r->s, (r->seed + k) % 7 != 6, &r->out);
            break;
        default:
            fuzz_check(false);
        }
        fuzz_check_out(r);
    }
    fuzz_check_out(r);
    if (st == POP3_SESSION_CLOSE)
        r->closed = true;
    return st;
}

/* One session over data, fed in pieces cut at cuts[] (NULL: one octet per feed). */
static void fuzz_session(const struct pop3_session_config *cfg, uint8_t mode, uint8_t seed,
                         const uint8_t *data, size_t size, const size_t *cuts,
                         struct buf *transcript)
{
    struct fuzz_run r = {.cfg = cfg, .transcript = transcript, .seed = seed};
    r.nmsgs = (seed >> 4) & 3;
    for (size_t i = 0; i < 3; i++) {
        struct buf b = BUF_INIT;
        fuzz_normalise(&b, fuzz_msgs[i]);
        r.msgs[i].uid = (uint32_t)(40 - 10 * i); /* not in number order */
        r.msgs[i].size = buf_size(&b);
        snprintf(r.msgs[i].uidl, sizeof(r.msgs[i].uidl), "uidl-%zu", i);
        buf_free(&b);
    }
    r.s = pop3_session_new(cfg, "192.0.2.1", (mode & 0x80) ? "<1.2@fuzz.example>" : NULL,
                           mode & 0x10);
    if (!r.s)
        return;
    pop3_session_start(r.s, &r.out);
    fuzz_check_out(&r);
    enum pop3_session_status st = POP3_SESSION_CONTINUE;
    if (!cuts) {
        for (size_t i = 0; i < size; i++) {
            st = pop3_session_feed(r.s, data + i, 1, &r.out);
            st = fuzz_answer(&r, st);
        }
    } else {
        for (int i = 0; i < 4; i++) {
            st = pop3_session_feed(r.s, data + cuts[i], cuts[i + 1] - cuts[i], &r.out);
            st = fuzz_answer(&r, st);
        }
    }
    buf_printf(transcript, "{%d %s %d}", (int)st, pop3_session_state_name(r.s),
               (int)pop3_session_authenticated(r.s));
    if (mode & 0x20)
        st = pop3_session_timeout(r.s, &r.out);
    if (mode & 0x40)
        st = pop3_session_shutdown(r.s, &r.out);
    fuzz_check_out(&r);
    if (mode & 0x60)
        fuzz_check(st == POP3_SESSION_CLOSE);
    const char *acct = pop3_session_account(r.s);
    fuzz_check(pop3_session_authenticated(r.s) == (acct != NULL));
    pop3_session_free(&r.s);
    fuzz_check(r.s == NULL);
    buf_free(&r.out);
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
    uint8_t mode = data[0], seed = data[1];
    data += 2;
    size -= 2;
    static const size_t lines[] = {24, 100, 255, 512};
    struct pop3_session_config cfg = {
        .hostname = "fuzz.example",
        .starttls_available = mode & 4,
        .allow_plaintext_auth = mode & 8,
        .max_errors = 12,
        .max_auth_failures = 1 + (seed & 3),
        .max_line = lines[mode & 3],
    };
    uint32_t h = 2166136261u; /* FNV-1a picks the cut points */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    size_t cuts[5] = {0, 0, 0, 0, size};
    for (int i = 1; i < 4; i++) {
        cuts[i] = h % (size + 1);
        h = h * 1103515245u + 12345u;
        if (cuts[i] < cuts[i - 1])
            cuts[i] = cuts[i - 1];
    }
    struct buf t1 = BUF_INIT, t2 = BUF_INIT;
    fuzz_session(&cfg, mode, seed, data, size, cuts, &t1);
    if (!cfg.starttls_available) {
        fuzz_session(&cfg, mode, seed, data, size, NULL, &t2);
        fuzz_check(buf_size(&t1) == buf_size(&t2) &&
                   memcmp(buf_ptr(&t1), buf_ptr(&t2), buf_size(&t1)) == 0);
    }
    buf_free(&t1);
    buf_free(&t2);
    return 0;
}
