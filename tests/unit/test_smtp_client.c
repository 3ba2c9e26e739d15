/* Unit tests of the pure SMTP client (src/proto/smtp/smtp_client.c).
 *
 * A scripted server: the test feeds the server's replies, and checks what
 * the client wrote (taken with take_out), its requests, and the results.
 * Whole conversations are also run with the replies cut at every byte and
 * must give the same transcript.
 */
#include "testutil.h"

#include <stdbool.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proto/smtp/smtp_client.h"

#define ME "client.example.net"
#define EHLO_CMD "EHLO " ME "\r\n"
#define GREETING "220 mx.example.org ESMTP ready\r\n"
/* A server with everything but STARTTLS and AUTH. */
#define EHLO_FULL                                                                                  \
    "250-mx.example.org hello\r\n"                                                                 \
    "250-PIPELINING\r\n"                                                                           \
    "250-SIZE 10000\r\n"                                                                           \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                             \
    "250-SMTPUTF8\r\n"                                                                             \
    "250 CHUNKING\r\n"
/* The same without PIPELINING. */
#define EHLO_NOPIPE                                                                                \
    "250-mx.example.org hello\r\n"                                                                 \
    "250-SIZE 10000\r\n"                                                                           \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                             \
    "250 SMTPUTF8\r\n"
#define EHLO_TLS                                                                                   \
    "250-mx.example.org hello\r\n"                                                                 \
    "250-PIPELINING\r\n"                                                                           \
    "250-STARTTLS\r\n"                                                                             \
    "250 8BITMIME\r\n"
#define EHLO_AFTER_TLS                                                                             \
    "250-mx.example.org hello again\r\n"                                                           \
    "250-PIPELINING\r\n"                                                                           \
    "250-AUTH LOGIN PLAIN\r\n"                                                                     \
    "250-SIZE\r\n"                                                                                 \
    "250 8BITMIME\r\n"

struct t {
    struct smtp_client_config cfg;
    struct smtp_client *c;
    struct buf out;
    enum smtp_client_status st;
};

static struct smtp_client_config cfg_default(void)
{
    return (struct smtp_client_config){
        .helo_name = ME,
        .starttls = SMTP_CLIENT_TLS_OPPORTUNISTIC,
    };
}

static struct t *t_new_cfg(const struct smtp_client_config *cfg)
{
    struct t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->cfg = *cfg;
    t->c = smtp_client_new(&t->cfg, "mx.example.org");
    assert_non_null(t->c);
    assert_int_equal(smtp_client_request(t->c), SMTP_CLIENT_REQ_NONE);
    return t;
}

static struct t *t_new(void)
{
    struct smtp_client_config cfg = cfg_default();
    return t_new_cfg(&cfg);
}

static void t_free(struct t *t)
{
    smtp_client_free(&t->c);
    assert_null(t->c);
    buf_free(&t->out);
    free(t);
}

static void t_feed(struct t *t, const char *s)
{
    t->st = smtp_client_feed(t->c, s, strlen(s), &t->out);
}

/* What the client wrote since the last call must be `want`. */
static void t_expect(struct t *t, const char *want)
{
    const char *got = buf_cstr(&t->out);
    assert_non_null(got);
    assert_string_equal(got, want);
    buf_reset(&t->out);
}

static void t_expect_req(struct t *t, enum smtp_client_request_type want)
{
    assert_int_equal(smtp_client_request(t->c), want);
}

/* Greeting and EHLO with the given reply: the client is READY. */
static struct t *t_ready_cfg(const struct smtp_client_config *cfg, const char *ehlo_reply)
{
    struct t *t = t_new_cfg(cfg);
    t_feed(t, GREETING);
    t_expect(t, EHLO_CMD);
    t_feed(t, ehlo_reply);
    t_expect(t, "");
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    assert_int_equal(t->st, SMTP_CLIENT_CONTINUE);
    return t;
}

static struct t *t_ready(const char *ehlo_reply)
{
    struct smtp_client_config cfg = cfg_default();
    cfg.starttls = SMTP_CLIENT_TLS_NEVER;
    return t_ready_cfg(&cfg, ehlo_reply);
}

static const char *const rcpts3[] = {"bob@example.org", "carol@example.org", "dave@example.org"};

static struct smtp_client_msg msg_simple(size_t nrcpts)
{
    static const char body[] = "Subject: hi\r\n\r\nHello\r\n";
    return (struct smtp_client_msg){
        .mail_from = "alice@example.net",
        .rcpts = rcpts3,
        .nrcpts = nrcpts,
        .data = (const uint8_t *)body,
        .len = sizeof(body) - 1,
    };
}

static void t_send(struct t *t, const struct smtp_client_msg *m)
{
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    t->st = smtp_client_send(t->c, m, &t->out);
}

/* The RESULT: check the number of recipients, return it. */
static const struct smtp_client_result *t_result(struct t *t, size_t nrcpts)
{
    t_expect_req(t, SMTP_CLIENT_REQ_RESULT);
    const struct smtp_client_result *r = smtp_client_result(t->c);
    assert_non_null(r);
    assert_int_equal(r->nrcpts, nrcpts);
    assert_string_equal(r->remote_host, "mx.example.org");
    return r;
}

static void assert_reply(const struct smtp_client_reply *r, enum smtp_client_outcome outcome,
                         int code, const char *status, const char *text)
{
    assert_int_equal(r->outcome, outcome);
    assert_int_equal(r->code, code);
    assert_string_equal(r->status, status);
    if (text)
        assert_string_equal(r->text, text);
}

static void t_result_done(struct t *t, enum smtp_client_request_type next)
{
    t->st = smtp_client_result_done(t->c, &t->out);
    t_expect_req(t, next);
    assert_int_equal(t->st,
                     next == SMTP_CLIENT_REQ_CLOSED ? SMTP_CLIENT_CLOSE : SMTP_CLIENT_CONTINUE);
}

#define DATA_OUT "Subject: hi\r\n\r\nHello\r\n.\r\n"

/* ------------------------------------------------------------------------ */

static void test_greeting_ehlo_extensions(void **state)
{
    struct smtp_client_config cfg = cfg_default();
    struct t *t = t_new_cfg(&cfg);
    assert_int_equal(smtp_client_timeout(t->c), 300);
    /* A multiline greeting, split. */
    t_feed(t, "220-mx.example.org ESMTP\r\n220");
    t_expect(t, "");
    t_feed(t, " second line\r\n");
    t_expect(t, EHLO_CMD);
    assert_int_equal(smtp_client_timeout(t->c), 300);
    t_feed(t, "250-mx.example.org\r\n"
              "250-pipelining\r\n"
              "250-Size 52428800\r\n"
              "250-8bitmime\r\n"
              "250-SMTPUTF8\r\n"
              "250-ENHANCEDSTATUSCODES\r\n"
              "250-AUTH=PLAIN LOGIN\r\n"
              "250-X-UNKNOWN foo\r\n"
              "250 DSN\r\n");
    t_expect(t, "");
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    assert_true(smtp_client_has_ext(t->c, "PIPELINING"));
    assert_true(smtp_client_has_ext(t->c, "size"));
    assert_true(smtp_client_has_ext(t->c, "8BITMIME"));
    assert_true(smtp_client_has_ext(t->c, "SMTPUTF8"));
    assert_true(smtp_client_has_ext(t->c, "ENHANCEDSTATUSCODES"));
    assert_true(smtp_client_has_ext(t->c, "AUTH"));
    assert_true(smtp_client_has_ext(t->c, "DSN"));
    assert_false(smtp_client_has_ext(t->c, "STARTTLS"));
    assert_false(smtp_client_has_ext(t->c, "X-UNKNOWN"));
    assert_false(smtp_client_has_ext(t->c, NULL));
    assert_false(smtp_client_tls_active(t->c));
    assert_null(smtp_client_error(t->c));
    assert_null(smtp_client_result(t->c));

    /* SIZE 52428800: a larger message is refused, a smaller one carries SIZE=. */
    struct smtp_client_msg m = msg_simple(1);
    t_send(t, &m);
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=22\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    t_feed(t, "250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n");
    t_expect(t, DATA_OUT);
    assert_reply(&t_result(t, 1)->rcpt[0], SMTP_CLIENT_OK, 250, "2.0.0", "queued");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);

    /* "SIZE" alone and "SIZE 0": no limit, SIZE= still sent. */
    t = t_ready("250-x\r\n250 SIZE 0\r\n");
    m.len = 1000000;
    t_send(t, &m);
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=1000000\r\n");
    t_free(t);
}

static void test_greeting_refused(void **state)
{
    struct t *t = t_new();
    t_feed(t, "554 5.7.1 no mail from you\r\n");
    t_expect(t, "QUIT\r\n"); /* RFC 5321 3.1 */
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    t_expect_req(t, SMTP_CLIENT_REQ_CLOSED);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_PERMFAIL, 554, "5.7.1", "no mail from you");
    /* Nothing more after CLOSE. */
    t_feed(t, "220 hello\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_int_equal(smtp_client_conn_lost(t->c, &t->out), SMTP_CLIENT_CLOSE);
    assert_int_equal(smtp_client_quit(t->c, &t->out), SMTP_CLIENT_CLOSE);
    t_expect(t, "");
    t_free(t);

    t = t_new();
    t_feed(t, "421 busy, try later\r\n");
    t_expect(t, ""); /* the server is closing: no QUIT */
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 421, "", "busy, try later");
    t_free(t);

    t = t_new();
    t_feed(t, "250 not a greeting\r\n");
    t_expect(t, "QUIT\r\n");
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 250, "", NULL);
    t_free(t);
}

static void test_helo_fallback(void **state)
{
    static const int codes[] = {500, 502, 504, 550};
    for (size_t i = 0; i < 4; i++) {
        struct t *t = t_new();
        t_feed(t, GREETING);
        t_expect(t, EHLO_CMD);
        char line[64];
        snprintf(line, sizeof(line), "%d command not recognized\r\n", codes[i]);
        t_feed(t, line);
        t_expect(t, "HELO " ME "\r\n");
        t_expect_req(t, SMTP_CLIENT_REQ_NONE);
        t_feed(t, "250 mx.example.org\r\n");
        t_expect_req(t, SMTP_CLIENT_REQ_READY);
        assert_false(smtp_client_has_ext(t->c, "PIPELINING"));
        /* No extensions: one command at a time, no SIZE=, no 8-bit. */
        struct smtp_client_msg m = msg_simple(1);
        t_send(t, &m);
        t_expect(t, "MAIL FROM:<alice@example.net>\r\n");
        t_free(t);
    }

    /* EHLO 451: temporary error, QUIT. */
    struct t *t = t_new();
    t_feed(t, GREETING "451 4.3.0 try later\r\n");
    t_expect(t, EHLO_CMD "QUIT\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 451, "4.3.0", "try later");
    t_free(t);

    /* HELO refused too: permanent. */
    t = t_new();
    t_feed(t, GREETING "502 no\r\n550 5.7.1 go away\r\n");
    t_expect(t, EHLO_CMD "HELO " ME "\r\nQUIT\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_PERMFAIL, 550, "5.7.1", "go away");
    t_free(t);
}

/* A whole conversation with the server's side cut into pieces of `step`
 * octets (0: each reply as one piece); returns the transcript. */
static char *run_script(size_t step)
{
    static const char *const replies[] = {
        "220-mx.example.org ESMTP\r\n220-more\n220 end\r\n",
        "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n"
        "250 ENHANCEDSTATUSCODES\r\n",
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n450-4.2.1 mailbox\r\n450 4.2.1 busy\r\n"
        "550 5.1.1 no such user\r\n354 go ahead\r\n",
        "250-2.0.0 queued\r\n250 2.0.0 as 12345\n",
        "250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 no valid "
        "recipients\r\n",
        "250 2.0.0 reset\r\n",
        "221 2.0.0 bye\r\n",
    };
    struct smtp_client_config cfg = cfg_default();
    struct smtp_client *c = smtp_client_new(&cfg, "mx");
    assert_non_null(c);
    struct buf out = BUF_INIT, tr = BUF_INIT;
    struct smtp_client_msg m = msg_simple(3);
    m.body_8bit = true;
    unsigned nmsg = 0;
    for (size_t k = 0; k < sizeof(replies) / sizeof(replies[0]); k++) {
        const char *s = replies[k];
        size_t len = strlen(s), st = step ? step : len;
        for (size_t i = 0; i < len; i += st) {
            size_t n = len - i < st ? len - i : st;
            smtp_client_feed(c, s + i, n, &out);
            enum smtp_client_request_type rq;
            while ((rq = smtp_client_request(c)) == SMTP_CLIENT_REQ_READY ||
                   rq == SMTP_CLIENT_REQ_RESULT) {
                if (rq == SMTP_CLIENT_REQ_READY && nmsg++ < 2) {
                    smtp_client_send(c, &m, &out);
                } else if (rq == SMTP_CLIENT_REQ_READY) {
                    smtp_client_quit(c, &out);
                } else {
                    const struct smtp_client_result *r = smtp_client_result(c);
                    for (size_t j = 0; j < r->nrcpts; j++)
                        buf_printf(&tr, "[%d %d %s %s]", (int)r->rcpt[j].outcome, r->rcpt[j].code,
                                   r->rcpt[j].status, r->rcpt[j].text);
                    smtp_client_result_done(c, &out);
                }
            }
        }
    }
    buf_printf(&tr, "\n%s\nreq=%d err=%p", buf_cstr(&out), (int)smtp_client_request(c),
               (const void *)smtp_client_error(c));
    char *r = strdup(buf_cstr(&tr));
    assert_non_null(r);
    buf_free(&out);
    buf_free(&tr);
    smtp_client_free(&c);
    return r;
}

static void test_split_at_every_byte(void **state)
{
    char *whole = run_script(0);
    assert_string_equal(whole, "[0 250 2.0.0 queued as 12345][1 450 4.2.1 mailbox busy]"
                               "[2 550 5.1.1 no such user]"
                               "[2 550 5.1.1 no][2 550 5.1.1 no][2 550 5.1.1 no]\n"
                               "EHLO " ME "\r\n"
                               "MAIL FROM:<alice@example.net> SIZE=22 BODY=8BITMIME\r\n"
                               "RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\n"
                               "RCPT TO:<dave@example.org>\r\nDATA\r\n" DATA_OUT
                               "MAIL FROM:<alice@example.net> SIZE=22 BODY=8BITMIME\r\n"
                               "RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\n"
                               "RCPT TO:<dave@example.org>\r\nDATA\r\n"
                               "RSET\r\nQUIT\r\n\nreq=4 err=(nil)");
    for (size_t step = 1; step <= 7; step++) {
        char *cut = run_script(step);
        assert_string_equal(cut, whole);
        free(cut);
    }
    free(whole);
}

static void test_pipelining(void **state)
{
    struct t *t = t_ready(EHLO_FULL);
    struct smtp_client_msg m = msg_simple(3);
    t_send(t, &m);
    /* RFC 2920: one write, DATA last. */
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=22\r\n"
                "RCPT TO:<bob@example.org>\r\n"
                "RCPT TO:<carol@example.org>\r\n"
                "RCPT TO:<dave@example.org>\r\n"
                "DATA\r\n");
    assert_int_equal(smtp_client_timeout(t->c), 300); /* MAIL */
    t_feed(t, "250 2.1.0 ok\r\n");
    assert_int_equal(smtp_client_timeout(t->c), 300); /* RCPT */
    t_feed(t, "250 2.1.5 ok\r\n250 2.1.5 ok\r\n");
    t_feed(t, "250 2.1.5 ok\r\n");
    t_expect(t, "");
    assert_int_equal(smtp_client_timeout(t->c), 120); /* DATA */
    t_feed(t, "354 go\r\n");
    t_expect(t, DATA_OUT);
    assert_int_equal(smtp_client_timeout(t->c), 600); /* end of data */
    t_expect_req(t, SMTP_CLIENT_REQ_NONE);
    t_feed(t, "250 2.0.0 Ok: queued\r\n");
    const struct smtp_client_result *r = t_result(t, 3);
    for (int i = 0; i < 3; i++)
        assert_reply(&r->rcpt[i], SMTP_CLIENT_OK, 250, "2.0.0", "Ok: queued");
    assert_false(r->tls);
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);
}

static void test_no_pipelining(void **state)
{
    struct t *t = t_ready(EHLO_NOPIPE);
    struct smtp_client_msg m = msg_simple(2);
    t_send(t, &m);
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=22\r\n");
    t_feed(t, "250 ok\r\n");
    t_expect(t, "RCPT TO:<bob@example.org>\r\n");
    assert_int_equal(smtp_client_timeout(t->c), 300);
    t_feed(t, "250 ok\r\n");
    t_expect(t, "RCPT TO:<carol@example.org>\r\n");
    t_feed(t, "250 ok\r\n");
    t_expect(t, "DATA\r\n");
    assert_int_equal(smtp_client_timeout(t->c), 120);
    t_feed(t, "354 go\r\n");
    t_expect(t, DATA_OUT);
    t_feed(t, "250 queued\r\n");
    const struct smtp_client_result *r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_OK, 250, "", "queued");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_OK, 250, "", "queued");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);
}

static void test_rcpt_mix(void **state)
{
    /* Pipelined: 250/450/550, the final reply goes to bob only. */
    struct t *t = t_ready(EHLO_FULL);
    struct smtp_client_msg m = msg_simple(3);
    t_send(t, &m);
    buf_reset(&t->out);
    t_feed(t, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.2 mailbox full\r\n"
              "550 5.1.1 unknown user\r\n354 go\r\n");
    t_expect(t, DATA_OUT);
    t_feed(t, "554 5.6.0 content rejected\r\n");
    const struct smtp_client_result *r = t_result(t, 3);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 554, "5.6.0", "content rejected");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_TEMPFAIL, 450, "4.2.2", "mailbox full");
    assert_reply(&r->rcpt[2], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "unknown user");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_expect(t, "");
    t_free(t);

    /* One at a time: 550, 250, 451; final 250 to carol only. */
    t = t_ready(EHLO_NOPIPE);
    t_send(t, &m);
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=22\r\n");
    t_feed(t, "250 ok\r\n");
    t_expect(t, "RCPT TO:<bob@example.org>\r\n");
    t_feed(t, "550 5.1.1 no\r\n");
    t_expect(t, "RCPT TO:<carol@example.org>\r\n");
    t_feed(t, "250 ok\r\n");
    t_expect(t, "RCPT TO:<dave@example.org>\r\n");
    t_feed(t, "451 4.3.0 later\r\n");
    t_expect(t, "DATA\r\n");
    t_feed(t, "354 go\r\n");
    t_expect(t, DATA_OUT);
    t_feed(t, "250 2.0.0 done\r\n");
    r = t_result(t, 3);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_OK, 250, "2.0.0", "done");
    assert_reply(&r->rcpt[2], SMTP_CLIENT_TEMPFAIL, 451, "4.3.0", "later");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);
}

static void test_all_refused_no_data(void **state)
{
    struct smtp_client_msg m = msg_simple(2);

    /* Pipelined, DATA refused as it should be: RSET (the MAIL is open). */
    struct t *t = t_ready(EHLO_FULL);
    t_send(t, &m);
    buf_reset(&t->out);
    t_feed(t, "250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n");
    t_expect(t, "RSET\r\n");
    t_expect_req(t, SMTP_CLIENT_REQ_NONE);
    t_feed(t, "250 2.0.0 ok\r\n");
    const struct smtp_client_result *r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);

    /* Pipelined, 354 anyway (RFC 2920 3.1): a lone dot, no data. */
    t = t_ready(EHLO_FULL);
    t_send(t, &m);
    buf_reset(&t->out);
    t_feed(t, "250 ok\r\n450 4.2.1 later\r\n550 5.1.1 no\r\n354 go\r\n");
    t_expect(t, ".\r\n");
    t_feed(t, "554 5.5.1 no recipients\r\n");
    t_expect(t, "");
    r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_TEMPFAIL, 450, "4.2.1", "later");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);

    /* One at a time: RSET instead of DATA. */
    t = t_ready(EHLO_NOPIPE);
    t_send(t, &m);
    t_feed(t, "250 ok\r\n");
    t_feed(t, "550 no\r\n");
    t_feed(t, "551 no\r\n");
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=22\r\nRCPT TO:<bob@example.org>\r\n"
                "RCPT TO:<carol@example.org>\r\nRSET\r\n");
    t_feed(t, "250 ok\r\n");
    r = t_result(t, 2);
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 551, "", "no");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);

    /* RSET refused: the server's state is unknown, give up after the result. */
    t = t_ready(EHLO_NOPIPE);
    t_send(t, &m);
    t_feed(t, "250 ok\r\n550 no\r\n550 no\r\n");
    buf_reset(&t->out);
    t_feed(t, "500 what\r\n");
    t_expect(t, "QUIT\r\n");
    t_result(t, 2);
    t_feed(t, "221 bye\r\n"); /* ignored */
    t_result_done(t, SMTP_CLIENT_REQ_CLOSED);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_PERMFAIL, 500, "", "what");
    t_free(t);
}

static void test_mail_refused(void **state)
{
    struct smtp_client_msg m = msg_simple(2);
    /* One at a time: no RCPT, no RSET. */
    struct t *t = t_ready(EHLO_NOPIPE);
    t_send(t, &m);
    buf_reset(&t->out);
    t_feed(t, "553 5.1.8 bad sender domain\r\n");
    t_expect(t, "");
    const struct smtp_client_result *r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 553, "5.1.8", "bad sender domain");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 553, "5.1.8", "bad sender domain");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);

    /* Pipelined: the RCPT and DATA replies are read and do not count. */
    t = t_ready(EHLO_FULL);
    t_send(t, &m);
    buf_reset(&t->out);
    t_feed(t, "451 4.3.0 try later\r\n503 5.5.1 need MAIL\r\n250 odd\r\n");
    t_expect_req(t, SMTP_CLIENT_REQ_NONE);
    t_feed(t, "503 5.5.1 need MAIL\r\n");
    t_expect(t, "");
    r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_TEMPFAIL, 451, "4.3.0", "try later");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_TEMPFAIL, 451, "4.3.0", "try later");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);
}

static void test_data_refused(void **state)
{
    struct t *t = t_ready(EHLO_FULL);
    struct smtp_client_msg m = msg_simple(2);
    t_send(t, &m);
    buf_reset(&t->out);
    t_feed(t, "250 ok\r\n250 ok\r\n550 5.1.1 no\r\n451 4.3.2 not now\r\n");
    t_expect(t, "RSET\r\n");
    t_feed(t, "250 ok\r\n");
    const struct smtp_client_result *r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_TEMPFAIL, 451, "4.3.2", "not now");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);
}

static void test_local_refusals(void **state)
{
    struct t *t = t_ready("250-mx\r\n250-PIPELINING\r\n250 SIZE 20\r\n");
    struct smtp_client_msg m = msg_simple(2);
    m.body_8bit = true;
    t_send(t, &m);
    t_expect(t, "");
    const struct smtp_client_result *r = t_result(t, 2);
    for (int i = 0; i < 2; i++)
        assert_reply(&r->rcpt[i], SMTP_CLIENT_PERMFAIL, 554, "5.6.3",
                     "remote server does not support 8BITMIME");
    t_result_done(t, SMTP_CLIENT_REQ_READY);

    m.body_8bit = false;
    m.smtputf8 = true;
    t_send(t, &m);
    t_expect(t, "");
    r = t_result(t, 2);
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 554, "5.6.7",
                 "remote server does not support SMTPUTF8");
    t_result_done(t, SMTP_CLIENT_REQ_READY);

    m.smtputf8 = false; /* 22 octets > SIZE 20 */
    t_send(t, &m);
    t_expect(t, "");
    r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 552, "5.3.4",
                 "message size 22 exceeds the remote server's limit of 20");
    t_result_done(t, SMTP_CLIENT_REQ_READY);

    /* No recipient: a RESULT at once. */
    m.nrcpts = 0;
    t_send(t, &m);
    t_expect(t, "");
    t_result(t, 0);
    t_result_done(t, SMTP_CLIENT_REQ_READY);

    /* A recipient with a control character is refused alone. */
    static const char *const bad[] = {"x@example.org\r\nDATA", "ok@example.org"};
    m = msg_simple(2);
    m.rcpts = bad;
    m.len = 5;
    t_send(t, &m);
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=5\r\nRCPT TO:<ok@example.org>\r\nDATA\r\n");
    t_feed(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    t_expect(t, "Subje\r\n.\r\n");
    t_feed(t, "250 ok\r\n");
    r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 553, "5.1.3", NULL);
    assert_reply(&r->rcpt[1], SMTP_CLIENT_OK, 250, "", "ok");
    t_result_done(t, SMTP_CLIENT_REQ_READY);

    /* A bad sender: every recipient. */
    m.rcpts = rcpts3;
    m.mail_from = "a\nb@example.net";
    t_send(t, &m);
    t_expect(t, "");
    r = t_result(t, 2);
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 553, "5.1.7", NULL);
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    t_free(t);

    /* A server with 8BITMIME and SMTPUTF8: the parameters; null sender. */
    t = t_ready(EHLO_FULL);
    m = msg_simple(1);
    m.body_8bit = m.smtputf8 = true;
    m.mail_from = "";
    t_send(t, &m);
    t_expect(t, "MAIL FROM:<> SIZE=22 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<bob@example.org>\r\n"
                "DATA\r\n");
    t_free(t);
}

static void test_starttls(void **state)
{
    struct t *t = t_new();
    t_feed(t, GREETING);
    t_expect(t, EHLO_CMD);
    assert_true(smtp_client_tls_active(t->c) == false);
    /* What follows the 220 in the same read is dropped (RFC 3207 5). */
    t_feed(t, EHLO_TLS);
    t_expect(t, "STARTTLS\r\n");
    assert_true(smtp_client_has_ext(t->c, "STARTTLS"));
    t_feed(t, "220 2.0.0 go ahead\r\n250 injected\r\n");
    t_expect_req(t, SMTP_CLIENT_REQ_STARTTLS);
    t_feed(t, "250 more injected\r\n");
    t_expect(t, "");
    t->st = smtp_client_tls_done(t->c, true, &t->out);
    t_expect(t, EHLO_CMD);
    assert_true(smtp_client_tls_active(t->c));
    assert_false(smtp_client_has_ext(t->c, "STARTTLS")); /* forgotten */
    t_feed(t, EHLO_AFTER_TLS);
    t_expect(t, "");
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    assert_true(smtp_client_has_ext(t->c, "AUTH"));
    assert_true(smtp_client_has_ext(t->c, "SIZE"));
    struct smtp_client_msg m = msg_simple(1);
    m.body_8bit = true;
    t_send(t, &m);
    t_expect(t, "MAIL FROM:<alice@example.net> SIZE=22 BODY=8BITMIME\r\n"
                "RCPT TO:<bob@example.org>\r\nDATA\r\n");
    t_feed(t, "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
    assert_true(t_result(t, 1)->tls);
    t_free(t);

    /* NEVER: STARTTLS offered but not used. */
    struct smtp_client_config cfg = cfg_default();
    cfg.starttls = SMTP_CLIENT_TLS_NEVER;
    t = t_ready_cfg(&cfg, EHLO_TLS);
    assert_false(smtp_client_tls_active(t->c));
    t_free(t);

    /* Already TLS (port 465): no STARTTLS. */
    cfg = cfg_default();
    cfg.tls_active = true;
    cfg.starttls = SMTP_CLIENT_TLS_REQUIRE;
    t = t_ready_cfg(&cfg, EHLO_TLS);
    assert_true(smtp_client_tls_active(t->c));
    t_free(t);
}

static void test_starttls_require_and_refused(void **state)
{
    struct smtp_client_config cfg = cfg_default();
    cfg.starttls = SMTP_CLIENT_TLS_REQUIRE;

    /* REQUIRE, not offered. */
    struct t *t = t_new_cfg(&cfg);
    t_feed(t, GREETING EHLO_FULL);
    t_expect(t, EHLO_CMD "QUIT\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    t_expect_req(t, SMTP_CLIENT_REQ_CLOSED);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 0, "",
                 "TLS required but the server does not offer STARTTLS");
    t_free(t);

    /* REQUIRE, refused with 454: temporary, even a 5xx. */
    t = t_new_cfg(&cfg);
    t_feed(t, GREETING EHLO_TLS);
    t_expect(t, EHLO_CMD "STARTTLS\r\n");
    t_feed(t, "454 4.7.0 TLS not available\r\n");
    t_expect(t, "QUIT\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 454, "4.7.0", "TLS not available");
    t_free(t);
    t = t_new_cfg(&cfg);
    t_feed(t, GREETING EHLO_TLS "554 5.7.0 no\r\n");
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 554, "5.7.0", "no");
    t_free(t);

    /* Opportunistic, refused: go on in clear. */
    t = t_new();
    t_feed(t, GREETING EHLO_TLS);
    t_expect(t, EHLO_CMD "STARTTLS\r\n");
    t_feed(t, "454 4.7.0 TLS not available\r\n");
    t_expect(t, "");
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    assert_false(smtp_client_tls_active(t->c));
    assert_null(smtp_client_error(t->c));
    t_free(t);

    /* The handshake failed: no output, temporary, CLOSED. */
    t = t_new();
    t_feed(t, GREETING EHLO_TLS "220 go\r\n");
    t_expect(t, EHLO_CMD "STARTTLS\r\n");
    t_expect_req(t, SMTP_CLIENT_REQ_STARTTLS);
    assert_int_equal(smtp_client_tls_done(t->c, false, &t->out), SMTP_CLIENT_CLOSE);
    t_expect(t, "");
    t_expect_req(t, SMTP_CLIENT_REQ_CLOSED);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 0, "", "TLS handshake failed");
    /* tls_done out of place does nothing. */
    assert_int_equal(smtp_client_tls_done(t->c, true, &t->out), SMTP_CLIENT_CLOSE);
    t_expect(t, "");
    t_free(t);
}

static struct t *t_auth_start(const struct smtp_client_config *cfg)
{
    struct t *t = t_new_cfg(cfg);
    t_feed(t, GREETING EHLO_TLS "220 go\r\n");
    t_expect(t, EHLO_CMD "STARTTLS\r\n");
    smtp_client_tls_done(t->c, true, &t->out);
    t_expect(t, EHLO_CMD);
    return t;
}

static void test_auth_plain(void **state)
{
    struct smtp_client_config cfg = cfg_default();
    cfg.auth_user = "user";
    cfg.auth_password = "pass";

    struct t *t = t_auth_start(&cfg);
    t_feed(t, EHLO_AFTER_TLS);
    t_expect(t, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n"); /* "\0user\0pass" */
    t_expect_req(t, SMTP_CLIENT_REQ_NONE);
    t_feed(t, "235 2.7.0 Authentication successful\r\n");
    t_expect(t, "");
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    t_free(t);

    /* 535: permanent; 454: temporary; QUIT both. */
    t = t_auth_start(&cfg);
    t_feed(t, EHLO_AFTER_TLS "535 5.7.8 bad credentials\r\n");
    t_expect(t, "AUTH PLAIN AHVzZXIAcGFzcw==\r\nQUIT\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_PERMFAIL, 535, "5.7.8", "bad credentials");
    t_free(t);
    t = t_auth_start(&cfg);
    t_feed(t, EHLO_AFTER_TLS "454 4.7.0 temporary failure\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 454, "4.7.0", NULL);
    t_free(t);

    /* A challenge after the initial response: protocol error. */
    t = t_auth_start(&cfg);
    t_feed(t, EHLO_AFTER_TLS "334 \r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 0, "", NULL);
    t_free(t);

    /* No AUTH PLAIN offered: permanent. */
    t = t_auth_start(&cfg);
    t_feed(t, "250-mx\r\n250 AUTH LOGIN CRAM-MD5\r\n");
    t_expect(t, "QUIT\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_PERMFAIL, 0, "",
                 "the server does not offer AUTH PLAIN");
    t_free(t);

    /* No TLS: the password is never sent in clear. */
    t = t_new_cfg(&cfg);
    t_feed(t, GREETING EHLO_AFTER_TLS);
    t_expect(t, EHLO_CMD "QUIT\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 0, "", NULL);
    t_free(t);

    /* Port 465: TLS already, AUTH at once; the old "AUTH=" form. */
    cfg.tls_active = true;
    t = t_new_cfg(&cfg);
    t_feed(t, GREETING "250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 PIPELINING\r\n");
    t_expect(t, EHLO_CMD "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
    t_feed(t, "235 ok\r\n");
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    t_free(t);
}

static void test_421(void **state)
{
    /* Pipelined: 421 after the first RCPT reply. */
    struct t *t = t_ready(EHLO_FULL);
    struct smtp_client_msg m = msg_simple(3);
    t_send(t, &m);
    buf_reset(&t->out);
    t_feed(t, "250 ok\r\n550 5.1.1 no\r\n421 4.3.2 shutting down\r\n250 ignored\r\n");
    t_expect(t, "");
    assert_int_equal(t->st, SMTP_CLIENT_CONTINUE);
    const struct smtp_client_result *r = t_result(t, 3);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_TEMPFAIL, 421, "4.3.2", "shutting down");
    assert_reply(&r->rcpt[2], SMTP_CLIENT_TEMPFAIL, 421, "4.3.2", "shutting down");
    t_result_done(t, SMTP_CLIENT_REQ_CLOSED);
    t_expect(t, "");
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 421, "4.3.2", "shutting down");
    t_free(t);

    /* 421 to the end of data. */
    t = t_ready(EHLO_NOPIPE);
    m = msg_simple(1);
    t_send(t, &m);
    t_feed(t, "250 ok\r\n250 ok\r\n354 go\r\n");
    buf_reset(&t->out);
    t_feed(t, "421 4.4.2 timeout\r\n");
    assert_reply(&t_result(t, 1)->rcpt[0], SMTP_CLIENT_TEMPFAIL, 421, "4.4.2", "timeout");
    t_result_done(t, SMTP_CLIENT_REQ_CLOSED);
    t_free(t);

    /* Unsolicited 421 while READY: CLOSED. */
    t = t_ready(EHLO_FULL);
    t_feed(t, "421 4.4.2 idle too long\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    t_expect_req(t, SMTP_CLIENT_REQ_CLOSED);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 421, "4.4.2", "idle too long");
    t_free(t);

    /* 421 to EHLO. */
    t = t_new();
    t_feed(t, GREETING "421 4.7.0 too many connections\r\n");
    t_expect(t, EHLO_CMD);
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    t_free(t);
}

static void test_conn_lost_and_timeout(void **state)
{
    /* Lost after the data went out: the accepted ones are TEMPFAIL code 0,
     * the refused one keeps its reply. */
    struct t *t = t_ready(EHLO_FULL);
    struct smtp_client_msg m = msg_simple(3);
    t_send(t, &m);
    t_feed(t, "250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n");
    buf_reset(&t->out);
    assert_int_equal(smtp_client_conn_lost(t->c, &t->out), SMTP_CLIENT_CONTINUE);
    t_expect(t, "");
    const struct smtp_client_result *r = t_result(t, 3);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_TEMPFAIL, 0, "", "connection lost in state dot");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 550, "5.1.1", "no");
    assert_reply(&r->rcpt[2], SMTP_CLIENT_TEMPFAIL, 0, "", "connection lost in state dot");
    t_feed(t, "250 late\r\n"); /* nothing more is read */
    t_result_done(t, SMTP_CLIENT_REQ_CLOSED);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 0, "", NULL);
    t_free(t);

    /* Timeout waiting for the MAIL reply. */
    t = t_ready(EHLO_NOPIPE);
    m = msg_simple(2);
    t_send(t, &m);
    assert_int_equal(smtp_client_timed_out(t->c, &t->out), SMTP_CLIENT_CONTINUE);
    r = t_result(t, 2);
    assert_reply(&r->rcpt[1], SMTP_CLIENT_TEMPFAIL, 0, "",
                 "timeout waiting for the server in state mail");
    t_result_done(t, SMTP_CLIENT_REQ_CLOSED);
    t_free(t);

    /* Lost while READY or during the greeting: CLOSED at once. */
    t = t_ready(EHLO_FULL);
    assert_int_equal(smtp_client_conn_lost(t->c, &t->out), SMTP_CLIENT_CLOSE);
    assert_non_null(smtp_client_error(t->c));
    t_free(t);
    t = t_new();
    assert_int_equal(smtp_client_timed_out(t->c, &t->out), SMTP_CLIENT_CLOSE);
    assert_reply(smtp_client_error(t->c), SMTP_CLIENT_TEMPFAIL, 0, "",
                 "timeout waiting for the server in state greeting");
    t_free(t);

    /* Lost after QUIT: a clean end. */
    t = t_ready(EHLO_FULL);
    assert_int_equal(smtp_client_quit(t->c, &t->out), SMTP_CLIENT_CONTINUE);
    t_expect(t, "QUIT\r\n");
    assert_int_equal(smtp_client_conn_lost(t->c, &t->out), SMTP_CLIENT_CLOSE);
    assert_null(smtp_client_error(t->c));
    t_free(t);

    /* Lost while the RESULT is pending: CLOSED after it. */
    t = t_ready("250-x\r\n250 PIPELINING\r\n");
    m.body_8bit = true;
    t_send(t, &m);
    t_result(t, 2);
    assert_int_equal(smtp_client_conn_lost(t->c, &t->out), SMTP_CLIENT_CONTINUE);
    assert_reply(&t_result(t, 2)->rcpt[0], SMTP_CLIENT_PERMFAIL, 554, "5.6.3", NULL);
    t_result_done(t, SMTP_CLIENT_REQ_CLOSED);
    t_free(t);
}

static void test_timeouts(void **state)
{
    struct smtp_client_config cfg = cfg_default();
    cfg.auth_user = "u";
    cfg.auth_password = "p";
    struct t *t = t_new_cfg(&cfg);
    assert_int_equal(smtp_client_timeout(t->c), 300); /* greeting */
    t_feed(t, GREETING);
    assert_int_equal(smtp_client_timeout(t->c), 300); /* EHLO */
    t_feed(t, EHLO_TLS);
    assert_int_equal(smtp_client_timeout(t->c), 300); /* STARTTLS */
    t_feed(t, "220 go\r\n");
    smtp_client_tls_done(t->c, true, &t->out);
    t_feed(t, EHLO_AFTER_TLS);
    assert_int_equal(smtp_client_timeout(t->c), 300); /* AUTH */
    t_feed(t, "235 ok\r\n");
    struct smtp_client_msg m = msg_simple(1);
    t_send(t, &m);
    assert_int_equal(smtp_client_timeout(t->c), 300); /* MAIL */
    t_feed(t, "250 ok\r\n");
    assert_int_equal(smtp_client_timeout(t->c), 300); /* RCPT */
    t_feed(t, "250 ok\r\n");
    assert_int_equal(smtp_client_timeout(t->c), 120); /* DATA */
    t_feed(t, "354 go\r\n");
    assert_int_equal(smtp_client_timeout(t->c), 600); /* end of data */
    assert_int_equal(SMTP_CLIENT_DATA_BLOCK_TIMEOUT, 180);
    t_feed(t, "250 ok\r\n");
    t_result_done(t, SMTP_CLIENT_REQ_READY);
    smtp_client_quit(t->c, &t->out);
    assert_int_equal(smtp_client_timeout(t->c), 300); /* QUIT */
    t_free(t);
}

/* The data as written for a message body. */
static void check_stuffing_n(const char *body, size_t len, const char *want, size_t want_len)
{
    struct t *t = t_ready(EHLO_NOPIPE);
    struct smtp_client_msg m = msg_simple(1);
    m.data = (const uint8_t *)body;
    m.len = len;
    t_send(t, &m);
    t_feed(t, "250 ok\r\n250 ok\r\n");
    buf_reset(&t->out);
    t_feed(t, "354 go\r\n");
    assert_int_equal(buf_size(&t->out), want_len);
    assert_memory_equal(buf_ptr(&t->out), want, want_len);
    t_free(t);
}

static void check_stuffing(const char *body, size_t len, const char *want)
{
    struct t *t = t_ready(EHLO_NOPIPE);
    struct smtp_client_msg m = msg_simple(1);
    m.data = (const uint8_t *)body;
    m.len = len;
    t_send(t, &m);
    t_feed(t, "250 ok\r\n250 ok\r\n");
    buf_reset(&t->out);
    t_feed(t, "354 go\r\n");
    t_expect(t, want);
    t_free(t);
}

static void test_dot_stuffing(void **state)
{
    static const char b1[] = ".hidden\r\nline\r\n..two\r\n.\r\nlast.\r\n";
    check_stuffing(b1, sizeof(b1) - 1, "..hidden\r\nline\r\n...two\r\n..\r\nlast.\r\n.\r\n");
    /* No final CRLF: one is added. */
    static const char b2[] = "a\r\n.";
    check_stuffing(b2, sizeof(b2) - 1, "a\r\n..\r\n.\r\n");
    static const char b3[] = "no newline";
    check_stuffing(b3, sizeof(b3) - 1, "no newline\r\n.\r\n");
    /* Bare LF and bare CR become CRLF, and stuffing follows them (no
     * smuggled end of data). */
    static const char b4[] = "a\n.\r\nb\r.\nc\r";
    check_stuffing(b4, sizeof(b4) - 1, "a\r\n..\r\nb\r\n..\r\nc\r\n.\r\n");
    /* Empty message. */
    check_stuffing("", 0, ".\r\n");
    /* A NUL inside is passed as is. */
    static const char b5[] = "x\0y\r\n";
    static const char w5[] = "x\0y\r\n.\r\n";
    check_stuffing_n(b5, sizeof(b5) - 1, w5, sizeof(w5) - 1);
}

static void test_several_messages(void **state)
{
    struct t *t = t_ready(EHLO_FULL);
    for (int k = 0; k < 3; k++) {
        struct smtp_client_msg m = msg_simple(1 + (size_t)k % 2);
        t_send(t, &m);
        buf_reset(&t->out);
        t_feed(t, "250 ok\r\n");
        for (size_t i = 0; i < m.nrcpts; i++)
            t_feed(t, "250 ok\r\n");
        t_feed(t, "354 go\r\n");
        t_expect(t, DATA_OUT);
        char line[64];
        snprintf(line, sizeof(line), "250 2.0.0 queued as %d\r\n", k);
        t_feed(t, line);
        const struct smtp_client_result *r = t_result(t, m.nrcpts);
        snprintf(line, sizeof(line), "queued as %d", k);
        assert_reply(&r->rcpt[m.nrcpts - 1], SMTP_CLIENT_OK, 250, "2.0.0", line);
        t_result_done(t, SMTP_CLIENT_REQ_READY);
    }
    assert_int_equal(smtp_client_quit(t->c, &t->out), SMTP_CLIENT_CONTINUE);
    t_expect(t, "QUIT\r\n");
    t_expect_req(t, SMTP_CLIENT_REQ_NONE);
    t_feed(t, "221 2.0.0 bye\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    t_expect_req(t, SMTP_CLIENT_REQ_CLOSED);
    assert_null(smtp_client_error(t->c));
    t_expect(t, "");
    t_free(t);

    /* Whatever answers QUIT ends it cleanly. */
    t = t_ready(EHLO_FULL);
    smtp_client_quit(t->c, &t->out);
    t_feed(t, "garbage\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_null(smtp_client_error(t->c));
    t_free(t);
}

/* Feed `bad` after the greeting: protocol error, CLOSED. */
static void check_malformed_pre(const char *bad)
{
    struct t *t = t_new();
    t_feed(t, GREETING);
    t_feed(t, bad);
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    t_expect(t, EHLO_CMD); /* no QUIT after a protocol error */
    const struct smtp_client_reply *e = smtp_client_error(t->c);
    assert_non_null(e);
    assert_int_equal(e->outcome, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(e->code, 0);
    assert_non_null(strstr(e->text, "protocol error"));
    t_free(t);
}

static void test_malformed_replies(void **state)
{
    check_malformed_pre("abc\r\n");
    check_malformed_pre("25\r\n");
    check_malformed_pre("199 x\r\n");
    check_malformed_pre("600 x\r\n");
    check_malformed_pre("2a0 x\r\n");
    check_malformed_pre("250x\r\n");
    check_malformed_pre("\r\n");
    check_malformed_pre("250-a\r\n251 b\r\n"); /* mixed codes */
    check_malformed_pre("354 what\r\n");       /* 3xx to EHLO */

    /* Overlong: 4098 octets without a line end, or 4097 in a line. */
    char *big = malloc(4200);
    assert_non_null(big);
    memcpy(big, "250 ", 4);
    memset(big + 4, 'x', 4094);
    big[4098] = '\0';
    check_malformed_pre(big);
    memcpy(big + 4097, "\r\n", 3);
    check_malformed_pre(big);
    /* 4096 octets and CRLF: fine. */
    memcpy(big + 4096, "\r\n", 3);
    struct t *t = t_new();
    t_feed(t, GREETING);
    t_feed(t, big);
    t_expect_req(t, SMTP_CLIENT_REQ_READY);
    t_free(t);
    free(big);

    /* Mid-transaction: the recipients fail temporarily. */
    t = t_ready(EHLO_FULL);
    struct smtp_client_msg m = msg_simple(2);
    t_send(t, &m);
    t_feed(t, "250 ok\r\n250-ok\r\n451 no\r\n");
    t_expect_req(t, SMTP_CLIENT_REQ_RESULT);
    const struct smtp_client_result *r = t_result(t, 2);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_TEMPFAIL, 0, "", NULL);
    assert_non_null(strstr(r->rcpt[1].text, "mixed codes 250 and 451"));
    t_result_done(t, SMTP_CLIENT_REQ_CLOSED);
    t_free(t);

    /* A 354 to MAIL, a 250 to DATA. */
    t = t_ready(EHLO_FULL);
    t_send(t, &m);
    t_feed(t, "354 ?\r\n");
    t_result(t, 2);
    t_free(t);
    t = t_ready(EHLO_FULL);
    t_send(t, &m);
    t_feed(t, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n");
    assert_reply(&t_result(t, 2)->rcpt[0], SMTP_CLIENT_TEMPFAIL, 0, "", NULL);
    t_free(t);

    /* Unsolicited reply while READY. */
    t = t_ready(EHLO_FULL);
    t_feed(t, "250 hello?\r\n");
    assert_int_equal(t->st, SMTP_CLIENT_CLOSE);
    assert_non_null(strstr(smtp_client_error(t->c)->text, "unexpected reply 250"));
    t_free(t);
}

static void test_reply_text_and_status(void **state)
{
    struct t *t = t_ready("250-mx\r\n250 PIPELINING\r\n");
    struct smtp_client_msg m = msg_simple(3);
    t_send(t, &m);
    t_feed(t, "250 ok\n" /* bare LF */
              "550-5.1.1 The email account that you tried to reach does\r\n"
              "550-5.1.1 not exist.\r\n"
              "550 5.1.1  https://support.example/x\r\n"
              "450 4.2.1\r\n"
              "550\r\n"
              "554 5.5.1 no \x01\tctl \xc3\xa9\r\n");
    t_expect(t, "MAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\n"
                "RCPT TO:<carol@example.org>\r\nRCPT TO:<dave@example.org>\r\nDATA\r\nRSET\r\n");
    t_feed(t, "250 5.0.0 class differs\r\n");
    const struct smtp_client_result *r = t_result(t, 3);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 550, "5.1.1",
                 "The email account that you tried to reach does not exist. "
                 "https://support.example/x");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_TEMPFAIL, 450, "4.2.1", "");
    assert_reply(&r->rcpt[2], SMTP_CLIENT_PERMFAIL, 550, "", "");
    t_free(t);

    /* Not a status: "5.1" or "5.1.1x", or 4 digits. */
    t = t_ready("250-mx\r\n250 PIPELINING\r\n");
    t_send(t, &m);
    t_feed(t, "250 2.1.0x ok\r\n550 5.1 no\r\n550 5.1234.1 no\r\n550 5.123.123 yes\r\n"
              "554 x\r\n250 ok\r\n");
    r = t_result(t, 3);
    assert_reply(&r->rcpt[0], SMTP_CLIENT_PERMFAIL, 550, "", "5.1 no");
    assert_reply(&r->rcpt[1], SMTP_CLIENT_PERMFAIL, 550, "", "5.1234.1 no");
    assert_reply(&r->rcpt[2], SMTP_CLIENT_PERMFAIL, 550, "5.123.123", "yes");
    t_free(t);

    /* Control and 8-bit octets become '?'; long text is cut. */
    t = t_ready("250-mx\r\n250 PIPELINING\r\n");
    m = msg_simple(1);
    t_send(t, &m);
    struct buf in = BUF_INIT;
    buf_puts(&in, "550 5.7.1 a\x01\tb\xc3\xa9\r\n503 x\r\n503 x\r\n");
    t_feed(t, buf_cstr(&in));
    assert_reply(&t_result(t, 1)->rcpt[0], SMTP_CLIENT_PERMFAIL, 550, "5.7.1", "a? b??");
    t_free(t);
    t = t_ready("250-mx\r\n250 PIPELINING\r\n");
    t_send(t, &m);
    buf_reset(&in);
    for (int i = 0; i < 20; i++)
        buf_puts(&in, "550-5.7.1 0123456789012345678901234567890123456789\r\n");
    buf_puts(&in, "550 5.7.1 end\r\n503 x\r\n503 x\r\n");
    t_feed(t, buf_cstr(&in));
    assert_int_equal(strlen(t_result(t, 1)->rcpt[0].text), 511);
    t_free(t);
    buf_free(&in);
}

static void test_free_and_odd_calls(void **state)
{
    smtp_client_free(NULL);
    struct smtp_client *none = NULL;
    smtp_client_free(&none);

    /* Calls out of place do nothing. */
    struct t *t = t_new();
    struct smtp_client_msg m = msg_simple(1);
    assert_int_equal(smtp_client_send(t->c, &m, &t->out), SMTP_CLIENT_CONTINUE);
    assert_int_equal(smtp_client_quit(t->c, &t->out), SMTP_CLIENT_CONTINUE);
    assert_int_equal(smtp_client_result_done(t->c, &t->out), SMTP_CLIENT_CONTINUE);
    assert_int_equal(smtp_client_tls_done(t->c, true, &t->out), SMTP_CLIENT_CONTINUE);
    assert_null(smtp_client_result(t->c));
    t_expect(t, "");
    t_expect_req(t, SMTP_CLIENT_REQ_NONE);
    t_free(t);

    /* Freed in the middle of a transaction and with a RESULT pending. */
    t = t_ready(EHLO_FULL);
    t_send(t, &m);
    t_free(t);
    t = t_ready(EHLO_FULL);
    t_send(t, &m);
    t_feed(t, "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
    t_result(t, 1);
    t_free(t);

    /* No HELO name: "localhost". */
    struct smtp_client_config cfg = cfg_default();
    cfg.helo_name = NULL;
    t = t_new_cfg(&cfg);
    t_feed(t, GREETING);
    t_expect(t, "EHLO localhost\r\n");
    t_free(t);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_ehlo_extensions),
        cmocka_unit_test(test_greeting_refused),
        cmocka_unit_test(test_helo_fallback),
        cmocka_unit_test(test_split_at_every_byte),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_no_pipelining),
        cmocka_unit_test(test_rcpt_mix),
        cmocka_unit_test(test_all_refused_no_data),
        cmocka_unit_test(test_mail_refused),
        cmocka_unit_test(test_data_refused),
        cmocka_unit_test(test_local_refusals),
        cmocka_unit_test(test_starttls),
        cmocka_unit_test(test_starttls_require_and_refused),
        cmocka_unit_test(test_auth_plain),
        cmocka_unit_test(test_421),
        cmocka_unit_test(test_conn_lost_and_timeout),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_dot_stuffing),
        cmocka_unit_test(test_several_messages),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_reply_text_and_status),
        cmocka_unit_test(test_free_and_odd_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
