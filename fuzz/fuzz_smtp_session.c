/* fuzz_smtp_session — libFuzzer target for the SMTP server session.
 *
 * Input layout: the first octet picks the configuration (bit 0-1: line
 * limits, bit 2: STARTTLS offered, bit 3: EXPN, bit 4: submission, bit 5:
 * timeout at the end, bit 6: shutdown at the end, bit 7: IPv6 client). In
 * submission the next octet picks more (bit 0: AUTH only after TLS, bit 1:
 * implicit TLS, bit 2-3: the mechanism list). The rest is what the client
 * sends. It is fed in four pieces cut at positions derived from the data,
 * and, when STARTTLS is not offered (with STARTTLS, what is dropped after
 * the command depends on the feed boundaries by design), once more one
 * octet per feed: both transcripts must be the same.
 *
 * Every request is answered at once, cycling through the possible answers
 * (for AUTH, also steered by the client's message). Checked on the way (a
 * failure traps):
 *  - every reply line is "DDD" followed by " " or "-", and ends with CRLF;
 *  - a delivered message has only CRLF line endings (bare CR/LF are
 *    normalised) and respects the size limit; the envelope is complete;
 *  - the trace headers can be formatted for each recipient;
 *  - MX mode never authenticates, relays (REMOTE) or asks SMTP_REQ_MAIL;
 *    submission delivers only for an authenticated account, with the
 *    Received "with" ending in "A";
 *  - an AUTH request has an upper-case mechanism from the list, NUL-ended
 *    data, and a user name for PLAIN and LOGIN.
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

static void fuzz_check_delivery(const struct smtp_session_config *cfg, const struct smtp_request *r)
{
    const struct smtp_envelope *e = r->env;
    fuzz_check(e && e->txn_id && e->helo && e->client_ip && e->mail_from && e->protocol);
    fuzz_check(e->nrcpts > 0 && e->rcpts);
    fuzz_check(e->envid == NULL);
    size_t plen = strlen(e->protocol);
    if (cfg->submission) {
        fuzz_check(e->auth_account && *e->auth_account);
        fuzz_check(plen > 0 && e->protocol[plen - 1] == 'A');
        fuzz_check(e->nfrom_addrs == 0 || e->from_addrs);
        for (size_t i = 0; i < e->nfrom_addrs; i++)
            fuzz_check(e->from_addrs[i] != NULL);
    } else {
        fuzz_check(!e->auth_account && e->nfrom_addrs == 0);
        fuzz_check(plen > 0 && e->protocol[plen - 1] != 'A');
    }
    fuzz_check(r->data_len <= FUZZ_MAX_MESSAGE);
    for (size_t i = 0; i < r->data_len; i++) {
        if (r->data[i] == '\r')
            fuzz_check(i + 1 < r->data_len && r->data[i + 1] == '\n');
        if (r->data[i] == '\n')
            fuzz_check(i > 0 && r->data[i - 1] == '\r');
    }
    struct buf hdr = BUF_INIT;
    for (size_t i = 0; i < e->nrcpts; i++) {
        fuzz_check(e->rcpts[i].address);
        fuzz_check(e->rcpts[i].remote ? !e->rcpts[i].account : e->rcpts[i].account != NULL);
        fuzz_check(!e->rcpts[i].remote || cfg->submission);
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

/* An AUTH request: check it, answer a challenge or a result picked by the
 * request count and the first octet of the message. */
static enum smtp_session_status fuzz_answer_auth(const struct smtp_session_config *cfg,
                                                 struct smtp_session *s,
                                                 const struct smtp_request *r, unsigned k,
                                                 struct buf *out, struct buf *transcript)
{
    static const uint8_t chal[] =
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    fuzz_check(cfg->submission && r->auth_mech && r->auth_data);
    size_t mlen = strlen(r->auth_mech);
    fuzz_check(mlen > 0 && mlen < 32);
    for (size_t i = 0; i < mlen; i++)
        fuzz_check(!(r->auth_mech[i] >= 'a' && r->auth_mech[i] <= 'z'));
    fuzz_check(r->auth_data[r->auth_len] == '\0');
    if (r->auth_first && (strcmp(r->auth_mech, "PLAIN") == 0 || strcmp(r->auth_mech, "LOGIN") == 0))
        fuzz_check(r->auth_user && *r->auth_user && r->auth_len > 0);
    buf_printf(transcript, "[auth %s %d %zu]", r->auth_mech, (int)r->auth_first, r->auth_len);
    unsigned pick = (k + (r->auth_len ? r->auth_data[0] : 0u)) % 6;
    switch (pick) {
    case 0:
        return smtp_session_auth_challenge(s, chal, (k * 7) % sizeof(chal), out);
    case 1:
        return smtp_session_auth_done(s, SMTP_AUTH_OK, "fuzz@example", out);
    case 2:
        return smtp_session_auth_done(s, SMTP_AUTH_OK, NULL, out);
    case 3:
        return smtp_session_auth_done(s, SMTP_AUTH_FAILED, NULL, out);
    case 4:
        return smtp_session_auth_done(s, SMTP_AUTH_TEMPFAIL, NULL, out);
    default:
        return smtp_session_auth_done(s, SMTP_AUTH_MALFORMED, NULL, out);
    }
}

/* Answer every request at once, cycling through the possible answers. */
static enum smtp_session_status fuzz_answer(const struct smtp_session_config *cfg,
                                            struct smtp_session *s, struct buf *out,
                                            enum smtp_session_status st, unsigned *n,
                                            struct buf *transcript)
{
    static const enum smtp_rcpt_result rcpt_results[] = {
        SMTP_RCPT_OK,           SMTP_RCPT_NO_USER, SMTP_RCPT_OK,    SMTP_RCPT_TEMPFAIL,
        SMTP_RCPT_RELAY_DENIED, SMTP_RCPT_REMOTE,  SMTP_RCPT_REMOTE};
    static const enum smtp_deliver_result deliver_results[] = {
        SMTP_DELIVER_OK, SMTP_DELIVER_TEMPFAIL, SMTP_DELIVER_OK, SMTP_DELIVER_PERMFAIL,
        SMTP_DELIVER_SENDER_REFUSED};
    size_t nrcpt_results = sizeof(rcpt_results) / sizeof(rcpt_results[0]);
    size_t ndeliver_results = sizeof(deliver_results) / sizeof(deliver_results[0]);
    const struct smtp_request *r;
    while (st == SMTP_SESSION_CONTINUE && (r = smtp_session_request(s)) != NULL) {
        unsigned k = (*n)++;
        fuzz_check_out(out, transcript); /* the replies before the request first */
        switch (r->type) {
        case SMTP_REQ_RCPT: {
            fuzz_check(r->rcpt && strlen(r->rcpt) <= 256);
            buf_printf(transcript, "[rcpt %s]", r->rcpt);
            enum smtp_rcpt_result res = rcpt_results[k % nrcpt_results];
            st = smtp_session_rcpt_done(s, res, (res != SMTP_RCPT_NO_USER && k % 2) ? "acct" : NULL,
                                        out);
            break;
        }
        case SMTP_REQ_DELIVER:
            fuzz_check_delivery(cfg, r);
            buf_printf(transcript, "[deliver %zu %s %zu]", r->data_len, r->env->txn_id,
                       r->env->nfrom_addrs);
            st = smtp_session_deliver_done(s, deliver_results[k % ndeliver_results], out);
            break;
        case SMTP_REQ_STARTTLS:
            st = smtp_session_tls_done(s, k % 7 != 6, "TLSv1.3", "TLS_AES_128_GCM_SHA256", out);
            break;
        case SMTP_REQ_AUTH:
            st = fuzz_answer_auth(cfg, s, r, k, out, transcript);
            break;
        case SMTP_REQ_MAIL:
            fuzz_check(cfg->submission && r->mail_from && r->auth_account);
            fuzz_check(strcmp(r->auth_account, smtp_session_auth_account(s)) == 0);
            buf_printf(transcript, "[mail %s]", r->mail_from);
            st = smtp_session_mail_done(s, k % 3 != 2, out);
            break;
        default:
            fuzz_check(false);
        }
        fuzz_check(cfg->submission || smtp_session_auth_account(s) == NULL);
        fuzz_check_out(out, transcript);
    }
    fuzz_check_out(out, transcript);
    return st;
}

/* One session over data, fed in pieces cut at cuts[] (NULL: one octet per feed). */
static void fuzz_run(const struct smtp_session_config *cfg, uint8_t mode, bool implicit_tls,
                     const uint8_t *data, size_t size, const size_t *cuts, struct buf *transcript)
{
    struct smtp_session *s =
        smtp_session_new(cfg, (mode & 0x80) ? "2001:db8::1" : "192.0.2.1", "fz");
    if (!s)
        return;
    if (implicit_tls)
        fuzz_check(smtp_session_set_tls(s, "TLSv1.3", "TLS_AES_256_GCM_SHA384") == 0);
    struct buf out = BUF_INIT;
    unsigned nreq = 0;
    smtp_session_start(s, &out);
    fuzz_check_out(&out, transcript);
    enum smtp_session_status st = SMTP_SESSION_CONTINUE;
    if (!cuts) {
        for (size_t i = 0; i < size; i++) {
            st = smtp_session_feed(s, data + i, 1, &out);
            st = fuzz_answer(cfg, s, &out, st, &nreq, transcript);
        }
    } else {
        for (int i = 0; i < 4; i++) {
            st = smtp_session_feed(s, data + cuts[i], cuts[i + 1] - cuts[i], &out);
            st = fuzz_answer(cfg, s, &out, st, &nreq, transcript);
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
    static const char *const mechs[] = {"PLAIN LOGIN SCRAM-SHA-256", "PLAIN", "login x-other",
                                        NULL};
    uint8_t mode = data[0];
    data++;
    size--;
    uint8_t sub = 0;
    if ((mode & 0x10) && size > 0) {
        sub = data[0];
        data++;
        size--;
    }
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
        .submission = mode & 0x10,
        .allow_plaintext_auth = !(sub & 1),
        .auth_mechanisms = mechs[(sub >> 2) & 3],
    };
    bool implicit_tls = (mode & 0x10) && (sub & 2);
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
    fuzz_run(&cfg, mode, implicit_tls, data, size, cuts, &t1);
    if (!cfg.starttls_available || implicit_tls) {
        fuzz_run(&cfg, mode, implicit_tls, data, size, NULL, &t2);
        fuzz_check(buf_size(&t1) == buf_size(&t2) &&
                   memcmp(buf_ptr(&t1), buf_ptr(&t2), buf_size(&t1)) == 0);
    }
    buf_free(&t1);
    buf_free(&t2);
    return 0;
}
