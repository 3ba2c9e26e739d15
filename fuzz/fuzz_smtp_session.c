/* fuzz_smtp_session — libFuzzer target for the SMTP server session.
 *
 * Input layout: the first octet picks the configuration (bit 0-1: line
 * limits, bit 2: STARTTLS offered, bit 3: EXPN, bit 5: timeout at the end,
 * bit 6: shutdown at the end, bit 7: IPv6 client); the rest is what the
 * client sends. It is fed in four pieces cut at positions derived from the
 * data, and, when STARTTLS is not offered (with STARTTLS, what is dropped
 * after the command depends on the feed boundaries by design), once more
 * one octet per feed: both transcripts must be the same.
 *
 * Every request is answered at once, cycling through the possible answers.
 * Checked on the way (a failure traps):
 *  - every reply line is "DDD" followed by " " or "-", and ends with CRLF;
 *  - a delivered message has only CRLF line endings (bare CR/LF are
 *    normalised) and respects the size limit; the envelope is complete;
 *  - the trace headers can be formatted for each recipient.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proto/smtp/received.h"
#include "proto/smtp/smtp_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_MESSAGE 4096

static void fuzz_check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

/* Check the replies written so far, then move them to the transcript. */
static void fuzz_check_out(struct buf *out, struct buf *transcript)
{
    const uint8_t *p = buf_ptr(out);
    size_t n = buf_size(out);
    size_t i = 0;
    while (i < n) {
        fuzz_check(n - i >= 6);
        for (int k = 0; k < 3; k++)
            fuzz_check(p[i + k] >= '0' && p[i + k] <= '9');
        fuzz_check(p[i] >= '2' && p[i] <= '5');
        fuzz_check(p[i + 3] == ' ' || p[i + 3] == '-');
        const uint8_t *nl = memchr(p + i, '\n', n - i);
        fuzz_check(nl != NULL);
        size_t end = (size_t)(nl - p);
        fuzz_check(end > i && p[end - 1] == '\r');
        for (size_t k = i; k < end - 1; k++)
            fuzz_check(p[k] != '\r' && p[k] != '\0');
        i = end + 1;
    }
    fuzz_check(buf_append(transcript, p, n) == 0);
    buf_reset(out);
}

static void fuzz_check_delivery(const struct smtp_request *r)
{
    const struct smtp_envelope *e = r->env;
    fuzz_check(e && e->txn_id && e->helo && e->client_ip && e->mail_from && e->protocol);
    fuzz_check(e->nrcpts > 0 && e->rcpts);
    fuzz_check(r->data_len <= FUZZ_MAX_MESSAGE);
    for (size_t i = 0; i < r->data_len; i++) {
        if (r->data[i] == '\r')
            fuzz_check(i + 1 < r->data_len && r->data[i + 1] == '\n');
        if (r->data[i] == '\n')
            fuzz_check(i > 0 && r->data[i - 1] == '\r');
    }
    struct buf hdr = BUF_INIT;
    for (size_t i = 0; i < e->nrcpts; i++) {
        fuzz_check(e->rcpts[i].address && e->rcpts[i].account);
        struct smtp_received_info info = {
            .helo = e->helo,
            .client_ip = e->client_ip,
            .by_host = "fuzz.example",
            .protocol = e->protocol,
            .tls_version = e->tls_version,
            .tls_cipher = e->tls_cipher,
            .id = e->txn_id,
            .for_rcpt = e->rcpts[i].address,
            .when = (time_t)(r->data_len * 86400),
        };
        fuzz_check(smtp_return_path_format(&hdr, e->mail_from) == 0);
        fuzz_check(smtp_received_format(&hdr, &info) == 0);
    }
    buf_free(&hdr);
}

/* Answer every request at once, cycling through the possible answers. */
static enum smtp_session_status fuzz_answer(struct smtp_session *s, struct buf *out,
                                            enum smtp_session_status st, unsigned *n,
                                            struct buf *transcript)
{
    static const enum smtp_rcpt_result rcpt_results[] = {
        SMTP_RCPT_OK, SMTP_RCPT_NO_USER, SMTP_RCPT_OK, SMTP_RCPT_TEMPFAIL, SMTP_RCPT_RELAY_DENIED};
    static const enum smtp_deliver_result deliver_results[] = {
        SMTP_DELIVER_OK, SMTP_DELIVER_TEMPFAIL, SMTP_DELIVER_OK, SMTP_DELIVER_PERMFAIL};
    const struct smtp_request *r;
    while (st == SMTP_SESSION_CONTINUE && (r = smtp_session_request(s)) != NULL) {
        unsigned k = (*n)++;
        fuzz_check_out(out, transcript); /* the replies before the request first */
        switch (r->type) {
        case SMTP_REQ_RCPT: {
            fuzz_check(r->rcpt && strlen(r->rcpt) <= 256);
            buf_printf(transcript, "[rcpt %s]", r->rcpt);
            enum smtp_rcpt_result res = rcpt_results[k % 5];
            st =
                smtp_session_rcpt_done(s, res, (res == SMTP_RCPT_OK && k % 2) ? "acct" : NULL, out);
            break;
        }
        case SMTP_REQ_DELIVER:
            fuzz_check_delivery(r);
            buf_printf(transcript, "[deliver %zu %s]", r->data_len, r->env->txn_id);
            st = smtp_session_deliver_done(s, deliver_results[k % 4], out);
            break;
        case SMTP_REQ_STARTTLS:
            st = smtp_session_tls_done(s, k % 7 != 6, "TLSv1.3", "TLS_AES_128_GCM_SHA256", out);
            break;
        default:
            fuzz_check(false);
        }
        fuzz_check_out(out, transcript);
    }
    fuzz_check_out(out, transcript);
    return st;
}

/* One session over data, fed in pieces cut at cuts[] (NULL: one octet per feed). */
static void fuzz_run(const struct smtp_session_config *cfg, uint8_t mode, const uint8_t *data,
                     size_t size, const size_t *cuts, struct buf *transcript)
{
    struct smtp_session *s =
        smtp_session_new(cfg, (mode & 0x80) ? "2001:db8::1" : "192.0.2.1", "fz");
    if (!s)
        return;
    struct buf out = BUF_INIT;
    unsigned nreq = 0;
    smtp_session_start(s, &out);
    fuzz_check_out(&out, transcript);
    enum smtp_session_status st = SMTP_SESSION_CONTINUE;
    if (!cuts) {
        for (size_t i = 0; i < size; i++) {
            st = smtp_session_feed(s, data + i, 1, &out);
            st = fuzz_answer(s, &out, st, &nreq, transcript);
        }
    } else {
        for (int i = 0; i < 4; i++) {
            st = smtp_session_feed(s, data + cuts[i], cuts[i + 1] - cuts[i], &out);
            st = fuzz_answer(s, &out, st, &nreq, transcript);
        }
    }
    buf_printf(transcript, "{%d %s}", (int)st, smtp_session_state_name(s));
    if (mode & 0x20)
        smtp_session_timeout(s, &out);
    if (mode & 0x40)
        smtp_session_shutdown(s, &out);
    fuzz_check_out(&out, transcript);
    (void)smtp_session_tls_active(s);
    smtp_session_free(&s);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        log_set_level(LOG_ERROR);
        quiet = true;
    }
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    struct smtp_session_config cfg = {
        .hostname = "fuzz.example",
        .limits =
            {
                .max_command_line = 40 + (size_t)(mode & 3) * 160,
                .max_text_line = 78 + (size_t)(mode & 3) * 300,
                .max_message_size = FUZZ_MAX_MESSAGE,
                .max_recipients = 3,
                .max_errors = 25,
            },
        .starttls_available = mode & 4,
        .expn_enabled = mode & 8,
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
    fuzz_run(&cfg, mode, data, size, cuts, &t1);
    if (!cfg.starttls_available) {
        fuzz_run(&cfg, mode, data, size, NULL, &t2);
        fuzz_check(buf_size(&t1) == buf_size(&t2) &&
                   memcmp(buf_ptr(&t1), buf_ptr(&t2), buf_size(&t1)) == 0);
    }
    buf_free(&t1);
    buf_free(&t2);
    return 0;
}
