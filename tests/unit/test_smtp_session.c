/* Unit tests of the pure SMTP server session (src/proto/smtp/smtp_server.c).
 *
 * A conversation is fed as bytes; every request is answered by a fixed
 * policy (see conv_answer_rcpt), and the replies plus a log of the requests
 * are compared with what RFC 5321 and its extensions want. The same input
 * fed one byte (or a few bytes) at a time must give the same transcript.
 */
#include "testutil.h"

#include <stdbool.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proto/smtp/smtp_server.h"

#define HOST "mx.example.org"
#define GREETING "220 " HOST " ESMTP correio\r\n"
#define EHLO_TLS                                                                                   \
    "250-" HOST "\r\n"                                                                             \
    "250-PIPELINING\r\n"                                                                           \
    "250-SIZE 10000\r\n"                                                                           \
    "250-STARTTLS\r\n"                                                                             \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                             \
    "250-SMTPUTF8\r\n"                                                                             \
    "250-HELP\r\n"                                                                                 \
    "250 CHUNKING\r\n"
#define EHLO_NOTLS                                                                                 \
    "250-" HOST "\r\n"                                                                             \
    "250-PIPELINING\r\n"                                                                           \
    "250-SIZE 10000\r\n"                                                                           \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                             \
    "250-SMTPUTF8\r\n"                                                                             \
    "250-HELP\r\n"                                                                                 \
    "250 CHUNKING\r\n"
#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define GO_DATA "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED(n) "250 2.0.0 Ok: queued as s1." #n "\r\n"
#define BYE "221 2.0.0 Bye\r\n"

static struct smtp_session_config test_cfg(void)
{
    struct smtp_session_config cfg = {
        .hostname = HOST,
        .limits =
            {
                .max_command_line = 512,
                .max_text_line = 1000,
                .max_message_size = 10000,
                .max_recipients = 5,
                .max_errors = 10,
            },
        .starttls_available = true,
        .expn_enabled = false,
    };
    return cfg;
}

struct conv {
    struct smtp_session_config cfg;
    struct smtp_session *s;
    struct buf out;
    struct buf log; /* requests, answers, delivered messages */
    enum smtp_session_status st;
    enum smtp_deliver_result deliver; /* the answer to deliveries */
    bool tls_ok;
    bool hold;            /* leave requests pending (for tests of pending input) */
    bool remote_in_mx;    /* answer REMOTE for other domains also in MX mode */
    bool auth_no_account; /* auth_done(OK) with a NULL account */
    unsigned nreqs;
};

static struct conv *conv_new_cfg(const struct smtp_session_config *cfg)
{
    struct conv *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->cfg = *cfg;
    c->tls_ok = true;
    c->s = smtp_session_new(&c->cfg, "192.0.2.7", "s1");
    assert_non_null(c->s);
    smtp_session_start(c->s, &c->out);
    return c;
}

static struct conv *conv_new(void)
{
    struct smtp_session_config cfg = test_cfg();
    return conv_new_cfg(&cfg);
}

static void conv_free(struct conv *c)
{
    smtp_session_free(&c->s);
    assert_null(c->s);
    buf_free(&c->out);
    buf_free(&c->log);
    free(c);
}

/* The policy: <anything>@example.org is local, except nouser@ (unknown)
 * and temp@ (lookup fails); postmaster is local; other domains are not. */
static enum smtp_rcpt_result conv_rcpt_policy(const char *rcpt)
{
    if (strcmp(rcpt, "postmaster") == 0)
        return SMTP_RCPT_OK;
    const char *at = strrchr(rcpt, '@');
    if (!at || strcmp(at, "@example.org") != 0)
        return SMTP_RCPT_RELAY_DENIED;
    if (strncmp(rcpt, "nouser@", 7) == 0)
        return SMTP_RCPT_NO_USER;
    if (strncmp(rcpt, "temp@", 5) == 0)
        return SMTP_RCPT_TEMPFAIL;
    return SMTP_RCPT_OK;
}

static void conv_log_deliver(struct conv *c, const struct smtp_request *r)
{
    const struct smtp_envelope *e = r->env;
    buf_printf(&c->log, "DELIVER id=%s helo=%s ip=%s from=<%s> proto=%s tls=%s/%s utf8=%d 8bit=%d",
               e->txn_id, e->helo, e->client_ip, e->mail_from, e->protocol,
               e->tls_version ? e->tls_version : "-", e->tls_cipher ? e->tls_cipher : "-",
               e->smtputf8, e->body_8bit);
    if (e->auth_account)
        buf_printf(&c->log, " auth=%s", e->auth_account);
    assert_null(e->envid);
    if (c->cfg.submission) {
        buf_puts(&c->log, " froms=[");
        for (size_t i = 0; i < e->nfrom_addrs; i++)
            buf_printf(&c->log, "%s%s", i ? "," : "", e->from_addrs[i]);
        buf_puts(&c->log, "]");
    } else {
        assert_null(e->auth_account);
        assert_int_equal(e->nfrom_addrs, 0);
    }
    for (size_t i = 0; i < e->nrcpts; i++) {
        assert_true(e->rcpts[i].remote == (e->rcpts[i].account == NULL));
        buf_printf(&c->log, " to=%s(%s)", e->rcpts[i].address,
                   e->rcpts[i].remote ? "remote" : e->rcpts[i].account);
    }
    buf_puts(&c->log, "\n[");
    buf_append(&c->log, r->data, r->data_len);
    buf_puts(&c->log, "]\n");
}

/* The AUTH policy: PLAIN/LOGIN alice@example.org with "secret" is good,
 * user "temp" fails temporarily, the rest is refused. Any other mechanism
 * plays SCRAM: client-first → server-first, client-final → server-final,
 * then an empty response → OK; bad-proof → FAILED; else MALFORMED. */
static void conv_answer_auth(struct conv *c, const struct smtp_request *r)
{
    buf_printf(&c->log, "AUTH %s first=%d user=%s data=", r->auth_mech, (int)r->auth_first,
               r->auth_user ? r->auth_user : "-");
    for (size_t i = 0; i < r->auth_len; i++)
        buf_printf(&c->log, "%c", r->auth_data[i] ? r->auth_data[i] : '|');
    buf_puts(&c->log, "\n");
    assert_int_equal(r->auth_data[r->auth_len], '\0');
    const char *account = c->auth_no_account ? NULL : "alice@example.org";
    if (r->auth_user) {
        enum smtp_auth_result res = SMTP_AUTH_FAILED;
        if (strcmp(r->auth_user, "temp") == 0)
            res = SMTP_AUTH_TEMPFAIL;
        else if (strcmp(r->auth_user, "alice@example.org") == 0 && r->auth_len == 6 &&
                 memcmp(r->auth_data, "secret", 6) == 0)
            res = SMTP_AUTH_OK;
        c->st = smtp_session_auth_done(c->s, res, account, &c->out);
        return;
    }
    const char *d = (const char *)r->auth_data;
    if (r->auth_first && strcmp(d, "client-first") == 0)
        c->st = smtp_session_auth_challenge(c->s, (const uint8_t *)"server-first", 12, &c->out);
    else if (!r->auth_first && strcmp(d, "client-final") == 0)
        c->st = smtp_session_auth_challenge(c->s, (const uint8_t *)"server-final", 12, &c->out);
    else if (!r->auth_first && r->auth_len == 0)
        c->st = smtp_session_auth_done(c->s, SMTP_AUTH_OK, account, &c->out);
    else if (strcmp(d, "bad-proof") == 0)
        c->st = smtp_session_auth_done(c->s, SMTP_AUTH_FAILED, NULL, &c->out);
    else
        c->st = smtp_session_auth_done(c->s, SMTP_AUTH_MALFORMED, NULL, &c->out);
}

/* Answer requests until none is pending. */
static void conv_answer(struct conv *c)
{
    const struct smtp_request *r;
    while (!c->hold && c->st == SMTP_SESSION_CONTINUE && (r = smtp_session_request(c->s))) {
        c->nreqs++;
        switch (r->type) {
        case SMTP_REQ_RCPT: {
            enum smtp_rcpt_result res = conv_rcpt_policy(r->rcpt);
            if (res == SMTP_RCPT_RELAY_DENIED && (c->cfg.submission || c->remote_in_mx))
                res = SMTP_RCPT_REMOTE;
            buf_printf(&c->log, "RCPT %s -> %d\n", r->rcpt, (int)res);
            char account[300];
            snprintf(account, sizeof(account), "acct:%s", r->rcpt);
            c->st =
                smtp_session_rcpt_done(c->s, res, res == SMTP_RCPT_OK ? account : NULL, &c->out);
            break;
        }
        case SMTP_REQ_DELIVER:
            conv_log_deliver(c, r);
            c->st = smtp_session_deliver_done(c->s, c->deliver, &c->out);
            break;
        case SMTP_REQ_STARTTLS:
            buf_puts(&c->log, "STARTTLS\n");
            c->st = smtp_session_tls_done(c->s, c->tls_ok, "TLSv1.3", "TLS_AES_128_GCM_SHA256",
                                          &c->out);
            break;
        case SMTP_REQ_AUTH:
            conv_answer_auth(c, r);
            break;
        case SMTP_REQ_MAIL: {
            /* The account may send as itself and as alias@example.org. */
            assert_non_null(r->auth_account);
            bool ok = strcmp(r->mail_from, r->auth_account) == 0 ||
                      strcmp(r->mail_from, "alias@example.org") == 0;
            buf_printf(&c->log, "MAIL <%s> as %s -> %d\n", r->mail_from, r->auth_account, ok);
            c->st = smtp_session_mail_done(c->s, ok, &c->out);
            break;
        }
        default:
            fail_msg("request type %d", (int)r->type);
        }
    }
}

/* Feed len octets in pieces of `step` (0: all at once), answering requests. */
static void conv_feed_n(struct conv *c, const char *data, size_t len, size_t step)
{
    if (step == 0)
        step = len ? len : 1;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        c->st = smtp_session_feed(c->s, data + i, n, &c->out);
        conv_answer(c);
    }
}

static void conv_feed(struct conv *c, const char *data)
{
    conv_feed_n(c, data, strlen(data), 0);
}

static const char *conv_out(struct conv *c)
{
    const char *s = buf_cstr(&c->out);
    assert_non_null(s);
    return s;
}

static const char *conv_log(struct conv *c)
{
    const char *s = buf_cstr(&c->log);
    assert_non_null(s);
    return s;
}

/* Run a whole conversation; return "<output>\n====\n<log>" (caller frees). */
static char *conv_transcript(const struct smtp_session_config *cfg, const char *in, size_t len,
                             size_t step)
{
    struct conv *c = conv_new_cfg(cfg);
    conv_feed_n(c, in, len, step);
    struct buf t = BUF_INIT;
    buf_printf(&t, "%s\n====\n%s\nstatus=%d", conv_out(c), conv_log(c), (int)c->st);
    char *r = strdup(buf_cstr(&t));
    buf_free(&t);
    conv_free(c);
    assert_non_null(r);
    return r;
}

static char *str_repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* ------------------------------------------------------------------------ */

static void test_greeting_ehlo_helo(void **state)
{
    struct conv *c = conv_new();
    assert_string_equal(conv_out(c), GREETING);
    assert_string_equal(smtp_session_state_name(c->s), "greeted");
    conv_feed(c, "EHLO client.example.net\r\nHELO client.example.net\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS "250 " HOST "\r\n");
    assert_string_equal(smtp_session_state_name(c->s), "ready");
    assert_int_equal(c->st, SMTP_SESSION_CONTINUE);
    conv_free(c);

    struct smtp_session_config cfg = test_cfg();
    cfg.starttls_available = false;
    c = conv_new_cfg(&cfg);
    conv_feed(c, "ehlo x\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_NOTLS);
    conv_free(c);
}

static void test_basic_transaction(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO client.example.net\r\n");
    conv_feed(c, "MAIL FROM:<alice@example.net>\r\n");
    conv_feed(c, "RCPT TO:<bob@example.org>\r\n");
    conv_feed(c, "DATA\r\n");
    assert_string_equal(smtp_session_state_name(c->s), "data");
    conv_feed(c, "Subject: hi\r\n\r\nHello\r\n.\r\n");
    conv_feed(c, "QUIT\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA QUEUED(1) BYE);
    assert_string_equal(conv_log(c), "RCPT bob@example.org -> 0\n"
                                     "DELIVER id=s1.1 helo=client.example.net ip=192.0.2.7 "
                                     "from=<alice@example.net> proto=ESMTP tls=-/- utf8=0 8bit=0 "
                                     "to=bob@example.org(acct:bob@example.org)\n"
                                     "[Subject: hi\r\n\r\nHello\r\n]\n");
    assert_int_equal(c->st, SMTP_SESSION_CLOSE);
    assert_string_equal(smtp_session_state_name(c->s), "closed");
    /* Nothing more is read after QUIT. */
    assert_int_equal(smtp_session_feed(c->s, "NOOP\r\n", 6, &c->out), SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA QUEUED(1) BYE);
    conv_free(c);
}

/* A conversation touching most paths, without STARTTLS (whose input
 * discarding depends on feed boundaries by design). */
static const char long_conv[] = "ehlo client.example.net\r\n"
                                "NOOP\r\n"
                                "MAIL FROM:<a@example.net> SIZE=100 BODY=8BITMIME\r\n"
                                "RCPT TO:<b@example.org>\r\n"
                                "RCPT TO:<nouser@example.org>\r\n"
                                "RCPT TO:<x@elsewhere.net>\r\n"
                                "RCPT TO:<temp@example.org>\r\n"
                                "RCPT TO:<a%b@example.org>\r\n"
                                "RCPT TO:<Postmaster>\r\n"
                                "DATA\r\n"
                                "line one\r\n"
                                "..dotted\r\n"
                                "bare\nlf and bare\rcr\r\n"
                                "\n.\n\r.\rx\r\n.\ny\r\n"
                                ".\r\n"
                                "MAIL FROM:<>\r\n"
                                "RCPT TO:<@relay.example.net,@r2.example.net:c@example.org>\r\n"
                                "BDAT 7\r\n"
                                "chunk\r\r"
                                "BDAT 6 LAST\r\n"
                                "\nend\r\n"
                                "BDAT 5\r\n"
                                "QUIT\r"
                                "VRFY bob\r\n"
                                "FOO\r\n"
                                "RSET\r\n"
                                "HELO again.example.net\r\n"
                                "MAIL FROM:<z@example.net>\r\n"
                                "RCPT TO:<z@example.org>\r\n"
                                "DATA\r\n"
                                ".\r\n"
                                "QUIT\r\n";

static void test_pipelining_and_bytewise(void **state)
{
    struct smtp_session_config cfg = test_cfg();
    size_t len = sizeof(long_conv) - 1;
    char *whole = conv_transcript(&cfg, long_conv, len, 0);
    const char *expect_out = GREETING EHLO_TLS
        "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT
        "550 5.1.1 <nouser@example.org>: Recipient address rejected: User unknown\r\n"
        "550 5.7.1 <x@elsewhere.net>: Relay access denied\r\n"
        "451 4.3.0 <temp@example.org>: Temporary lookup failure\r\n"
        "550 5.7.1 <a%b@example.org>: Relay access denied\r\n" OK_RCPT GO_DATA QUEUED(1)
            OK_MAIL OK_RCPT "250 2.0.0 7 octets received\r\n" QUEUED(
                2) "503 5.5.1 Error: need MAIL command\r\n"
                   "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
                   "500 5.5.1 Error: command not recognized\r\n"
                   "250 2.0.0 Ok\r\n"
                   "250 " HOST "\r\n" OK_MAIL OK_RCPT GO_DATA QUEUED(3) BYE;
    const char *expect_log =
        "RCPT b@example.org -> 0\n"
        "RCPT nouser@example.org -> 1\n"
        "RCPT x@elsewhere.net -> 2\n"
        "RCPT temp@example.org -> 3\n"
        "RCPT postmaster -> 0\n"
        "DELIVER id=s1.1 helo=client.example.net ip=192.0.2.7 from=<a@example.net> proto=ESMTP "
        "tls=-/- utf8=0 8bit=1 to=b@example.org(acct:b@example.org) "
        "to=postmaster(acct:postmaster)\n"
        "[line one\r\n.dotted\r\nbare\r\nlf and bare\r\ncr\r\n"
        "\r\n.\r\n\r\n.\r\nx\r\n\r\ny\r\n]\n"
        "RCPT c@example.org -> 0\n"
        "DELIVER id=s1.2 helo=client.example.net ip=192.0.2.7 from=<> proto=ESMTP "
        "tls=-/- utf8=0 8bit=0 to=c@example.org(acct:c@example.org)\n"
        "[chunk\r\n\r\nend\r\n]\n"
        "RCPT z@example.org -> 0\n"
        "DELIVER id=s1.3 helo=again.example.net ip=192.0.2.7 from=<z@example.net> proto=SMTP "
        "tls=-/- utf8=0 8bit=0 to=z@example.org(acct:z@example.org)\n"
        "[]\n";
    struct buf expect = BUF_INIT;
    buf_printf(&expect, "%s\n====\n%s\nstatus=1", expect_out, expect_log);
    assert_string_equal(whole, buf_cstr(&expect));
    buf_free(&expect);

    static const size_t steps[] = {1, 2, 3, 5, 7, 13, 64};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char *t = conv_transcript(&cfg, long_conv, len, steps[i]);
        assert_string_equal(t, whole);
        free(t);
    }
    free(whole);
}

static void test_case_insensitive_and_spaces(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "eHlO c.example.net\r\nmail from: <a@example.net>\r\nRcPt tO: <b@example.org>\r\n"
                 "MAIL  FROM:<a@example.net>\r\nnoop   \r\nNOOP ignored args\r\n");
    assert_string_equal(conv_out(c),
                        GREETING EHLO_TLS OK_MAIL OK_RCPT "503 5.5.1 Error: nested MAIL command\r\n"
                                                          "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
    conv_free(c);
}

static void test_unknown_and_garbage(void **state)
{
    struct conv *c = conv_new();
    static const char in[] = "XYZZY\r\n\r\nNO\0OP\r\n\x01\x02\xff\xfe\r\n\xc3\xa9HLO x\r\n"
                             "EHLO\x7f\r\n   \r\nNOOP\n";
    conv_feed_n(c, in, sizeof(in) - 1, 0);
    assert_string_equal(conv_out(c), GREETING "500 5.5.1 Error: command not recognized\r\n"
                                              "500 5.5.2 Error: bad syntax\r\n"
                                              "500 5.5.2 Error: bad character in command\r\n"
                                              "500 5.5.2 Error: bad character in command\r\n"
                                              "500 5.5.1 Error: command not recognized\r\n"
                                              "500 5.5.2 Error: bad character in command\r\n"
                                              "500 5.5.2 Error: bad syntax\r\n"
                                              "250 2.0.0 Ok\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CONTINUE);
    conv_free(c);
}

static void test_out_of_order(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                 "EHLO x\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                 "MAIL FROM:<a@example.net>\r\nDATA\r\nMAIL FROM:<a@example.net>\r\n"
                 "RCPT TO:<nouser@example.org>\r\nDATA\r\n");
    assert_string_equal(conv_out(c), GREETING "503 5.5.1 Error: send HELO/EHLO first\r\n"
                                              "503 5.5.1 Error: send HELO/EHLO first\r\n"
                                              "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_TLS
                                              "503 5.5.1 Error: need MAIL command\r\n"
                                              "503 5.5.1 Error: need MAIL command\r\n" OK_MAIL
                                              "503 5.5.1 Error: need RCPT command\r\n"
                                              "503 5.5.1 Error: nested MAIL command\r\n"
                                              "550 5.1.1 <nouser@example.org>: Recipient address "
                                              "rejected: User unknown\r\n"
                                              "503 5.5.1 Error: need RCPT command\r\n");
    conv_free(c);
}

static void test_syntax_errors(void **state)
{
    struct smtp_session_config cfg = test_cfg();
    cfg.limits.max_errors = 100;
    struct conv *c = conv_new_cfg(&cfg);
    conv_feed(c,
              "EHLO\r\nHELO \r\nEHLO x\r\n"
              "MAIL\r\nMAIL TO:<a@b.c>\r\nMAIL FROM:a@example.net\r\nMAIL FROM:<a@>\r\n"
              "MAIL FROM:<a@example.net>x\r\nMAIL FROM:<a@example.net> SIZE=1x\r\n"
              "MAIL FROM:<a@example.net>\r\n"
              "RCPT TO:<>\r\nRCPT TO:<b>\r\nRCPT TO:b@example.org\r\nRCPT FROM:<b@example.org>\r\n"
              "RCPT TO:<b@example.org> NOTIFY=NEVER\r\nRCPT TO:<b..c@example.org>\r\n"
              "RCPT TO:<b@example..org>\r\nRCPT TO:<b@-example.org>\r\n"
              "RSET now\r\nDATA now\r\nVRFY\r\n");
    assert_string_equal(conv_out(c), GREETING "501 5.5.4 Syntax: EHLO hostname\r\n"
                                              "501 5.5.4 Syntax: HELO hostname\r\n" EHLO_TLS
                                              "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                                              "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                                              "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                                              "501 5.1.7 Bad sender address syntax\r\n"
                                              "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                                              "501 5.5.4 Syntax: SIZE=<number>\r\n" OK_MAIL
                                              "501 5.1.3 Bad recipient address syntax\r\n"
                                              "501 5.1.3 Bad recipient address syntax\r\n"
                                              "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
                                              "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
                                              "555 5.5.4 Error: unsupported RCPT parameter\r\n"
                                              "501 5.1.3 Bad recipient address syntax\r\n"
                                              "501 5.1.3 Bad recipient address syntax\r\n"
                                              "501 5.1.3 Bad recipient address syntax\r\n"
                                              "501 5.5.4 Syntax: RSET\r\n"
                                              "503 5.5.1 Error: need RCPT command\r\n"
                                              "501 5.5.4 Syntax: VRFY address\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CONTINUE);
    conv_free(c);

    /* The rest, with a fresh error budget. */
    c = conv_new();
    conv_feed(c, "EHLO x\r\nRSET now\r\nDATA now\r\nVRFY\r\nMAIL FROM:<a@example.net>\r\n"
                 "RCPT TO:<b@example.org>\r\nDATA now\r\nRSET\r\n");
    assert_string_equal(conv_out(c),
                        GREETING EHLO_TLS "501 5.5.4 Syntax: RSET\r\n"
                                          "503 5.5.1 Error: need MAIL command\r\n"
                                          "501 5.5.4 Syntax: VRFY address\r\n" OK_MAIL OK_RCPT
                                          "501 5.5.4 Syntax: DATA\r\n"
                                          "250 2.0.0 Ok\r\n");
    conv_free(c);
}

static void test_mail_params(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\n"
                 "MAIL FROM:<a@example.net> SIZE=10001\r\n"
                 "MAIL FROM:<a@example.net> SIZE=99999999999999999999999\r\n"
                 "MAIL FROM:<a@example.net> SIZE=\r\n"
                 "MAIL FROM:<a@example.net> BODY=BINARYMIME\r\n"
                 "MAIL FROM:<a@example.net> BODY\r\n"
                 "MAIL FROM:<a@example.net> SMTPUTF8=yes\r\n"
                 "MAIL FROM:<a@example.net> AUTH=<>\r\n"
                 "MAIL FROM:<a@example.net> SIZE=1 SIZE=2\r\n"
                 "MAIL FROM:<a@example.net> size=10000 body=7bit smtputf8\r\n"
                 "RSET\r\n"
                 "MAIL FROM:<a@example.net>   BODY=8bitmime  \r\n");
    assert_string_equal(conv_out(c),
                        GREETING EHLO_TLS "552 5.3.4 Message size exceeds fixed limit\r\n"
                                          "552 5.3.4 Message size exceeds fixed limit\r\n"
                                          "501 5.5.4 Syntax: SIZE=<number>\r\n"
                                          "501 5.5.4 Syntax: BODY=7BIT|8BITMIME\r\n"
                                          "501 5.5.4 Syntax: BODY=7BIT|8BITMIME\r\n"
                                          "501 5.5.4 Syntax: SMTPUTF8\r\n"
                                          "555 5.5.4 Error: unsupported MAIL parameter\r\n"
                                          "501 5.5.4 Error: duplicate SIZE parameter\r\n" OK_MAIL
                                          "250 2.0.0 Ok\r\n" OK_MAIL);
    conv_feed(c, "RCPT TO:<b@example.org>\r\nDATA\r\n.\r\n");
    assert_non_null(strstr(conv_log(c), "utf8=0 8bit=1"));
    conv_free(c);
}

static void test_null_path_and_postmaster(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<POSTMASTER>\r\n"
                 "RCPT TO:<postmaster@example.org>\r\nDATA\r\nhi\r\n.\r\n"
                 "MAIL FROM:<postmaster>\r\n");
    assert_string_equal(conv_out(c),
                        GREETING EHLO_TLS OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_DATA QUEUED(
                            1) "501 5.1.7 Bad sender address syntax\r\n");
    assert_string_equal(conv_log(c),
                        "RCPT postmaster -> 0\nRCPT postmaster -> 0\n"
                        "RCPT postmaster@example.org -> 0\n"
                        "DELIVER id=s1.1 helo=x ip=192.0.2.7 from=<> proto=ESMTP tls=-/- utf8=0 "
                        "8bit=0 to=postmaster(acct:postmaster) to=postmaster(acct:postmaster) "
                        "to=postmaster@example.org(acct:postmaster@example.org)\n"
                        "[hi\r\n]\n");
    conv_free(c);
}

static void test_smtputf8(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\n"
                 "MAIL FROM:<j\xc3\xb6rg@example.net>\r\n"
                 "MAIL FROM:<a@example.net>\r\n"
                 "RCPT TO:<m\xc3\xbcller@example.org>\r\n"
                 "RSET\r\n"
                 "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc\x63her.example> SMTPUTF8\r\n"
                 "RCPT TO:<m\xc3\xbcller@example.org>\r\n"
                 "RCPT TO:<bad\xc3@example.org>\r\n"
                 "DATA\r\n.\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS
                        "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8\r\n" OK_MAIL
                        "553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8\r\n"
                        "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT
                        "501 5.1.3 Bad recipient address syntax\r\n" GO_DATA QUEUED(2));
    assert_non_null(strstr(conv_log(c), "from=<j\xc3\xb6rg@b\xc3\xbc\x63her.example> "
                                        "proto=UTF8SMTP tls=-/- utf8=1 8bit=0 "
                                        "to=m\xc3\xbcller@example.org"));
    conv_free(c);
}

static void test_address_lengths(void **state)
{
    char *local64 = str_repeat('l', 64);
    char *local65 = str_repeat('l', 65);
    char *label = str_repeat('d', 63);
    char *label64 = str_repeat('d', 64);
    struct buf in = BUF_INIT;
    buf_printf(&in, "EHLO x\r\nMAIL FROM:<a@example.net>\r\n");
    buf_printf(&in, "RCPT TO:<%s@example.org>\r\n", local64);
    buf_printf(&in, "RCPT TO:<%s@example.org>\r\n", local65);
    buf_printf(&in, "RCPT TO:<a@%s.example.org>\r\n", label64);
    /* 4 labels of 63 + 3 dots + ".org" = 259 > 255 */
    buf_printf(&in, "RCPT TO:<a@%s.%s.%s.%s.org>\r\n", label, label, label, label);
    /* path: "<" 64 "@" 63.63.57.org ">" = 1 + 64 + 1 + 189 + 1 = 256: the limit */
    buf_printf(&in, "RCPT TO:<%s@%s.%s.%.57s.org>\r\n", local64, label, label, label);
    /* one more octet: 257 */
    buf_printf(&in, "RCPT TO:<%s@%s.%s.%.58s.org>\r\n", local64, label, label, label);
    struct conv *c = conv_new();
    conv_feed(c, buf_cstr(&in));
    struct buf expect = BUF_INIT;
    buf_printf(&expect,
               GREETING EHLO_TLS OK_MAIL OK_RCPT
               "501 5.1.3 Path too long\r\n"
               "501 5.1.3 Bad recipient address syntax\r\n"
               "501 5.1.3 Path too long\r\n"
               "550 5.7.1 <%s@%s.%s.%.57s.org>: Relay access denied\r\n"
               "501 5.1.3 Path too long\r\n",
               local64, label, label, label);
    assert_string_equal(conv_out(c), buf_cstr(&expect));
    conv_free(c);
    buf_free(&expect);
    buf_free(&in);
    free(local64);
    free(local65);
    free(label);
    free(label64);
}

static void test_relay_tricks(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\n"
                 "RCPT TO:<user%elsewhere.net@example.org>\r\n"
                 "RCPT TO:<elsewhere.net!user@example.org>\r\n"
                 "RCPT TO:<\"user@elsewhere.net\"@example.org>\r\n"
                 "RCPT TO:<\"user\\@elsewhere.net\"@example.org>\r\n"
                 "RCPT TO:<@example.org:user@elsewhere.net>\r\n"
                 "RCPT TO:<@a.example,@b.example:user@example.org>\r\n"
                 "RCPT TO:<\"john doe\"@example.org>\r\n"
                 "RCPT TO:<user@[192.0.2.1]>\r\n"
                 "RCPT TO:<user@[IPv6:2001:db8::1]>\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL
                        "550 5.7.1 <user%elsewhere.net@example.org>: Relay access denied\r\n"
                        "550 5.7.1 <elsewhere.net!user@example.org>: Relay access denied\r\n"
                        "550 5.7.1 <\"user@elsewhere.net\"@example.org>: Relay access denied\r\n"
                        "550 5.7.1 <\"user\\@elsewhere.net\"@example.org>: Relay access denied\r\n"
                        "550 5.7.1 <user@elsewhere.net>: Relay access denied\r\n" OK_RCPT OK_RCPT
                        "550 5.7.1 <user@[192.0.2.1]>: Relay access denied\r\n"
                        "550 5.7.1 <user@[IPv6:2001:db8::1]>: Relay access denied\r\n");
    /* The first four never reached the caller; the source route was stripped. */
    assert_string_equal(conv_log(c), "RCPT user@elsewhere.net -> 2\n"
                                     "RCPT user@example.org -> 0\n"
                                     "RCPT \"john doe\"@example.org -> 0\n"
                                     "RCPT user@[192.0.2.1] -> 2\n"
                                     "RCPT user@[IPv6:2001:db8::1] -> 2\n");
    conv_free(c);
}

static void test_too_many_recipients(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\n"
                 "RCPT TO:<r1@example.org>\r\nRCPT TO:<nouser@example.org>\r\n"
                 "RCPT TO:<r2@example.org>\r\nRCPT TO:<r3@example.org>\r\n"
                 "RCPT TO:<r4@example.org>\r\nRCPT TO:<r5@example.org>\r\n"
                 "RCPT TO:<r6@example.org>\r\nRCPT TO:<r7@example.org>\r\n"
                 "DATA\r\nx\r\n.\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT
                        "550 5.1.1 <nouser@example.org>: Recipient address rejected: User "
                        "unknown\r\n" OK_RCPT OK_RCPT OK_RCPT OK_RCPT
                        "452 4.5.3 Too many recipients\r\n"
                        "452 4.5.3 Too many recipients\r\n" GO_DATA QUEUED(1));
    assert_non_null(strstr(conv_log(c), "to=r5@example.org(acct:r5@example.org)\n"));
    assert_null(strstr(conv_log(c), "r6@"));
    conv_free(c);
}

static void test_rcpt_results(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<temp@example.org>\r\n"
                 "RCPT TO:<x@other.example>\r\nRCPT TO:<nouser@example.org>\r\nDATA\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL
                        "451 4.3.0 <temp@example.org>: Temporary lookup failure\r\n"
                        "550 5.7.1 <x@other.example>: Relay access denied\r\n"
                        "550 5.1.1 <nouser@example.org>: Recipient address rejected: User "
                        "unknown\r\n"
                        "503 5.5.1 Error: need RCPT command\r\n");
    assert_string_equal(smtp_session_state_name(c->s), "mail");
    conv_free(c);
}

static void test_dot_stuffing(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                 "..\r\n...\r\n.x\r\n..x\r\nx.\r\n. \r\n.\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA QUEUED(1));
    assert_non_null(strstr(conv_log(c), "\n[.\r\n..\r\nx\r\n.x\r\nx.\r\n \r\n]\n"));
    conv_free(c);
}

/* SMTP smuggling: only CRLF "." CRLF ends DATA. */
static void test_smuggling(void **state)
{
    static const char *const fake_ends[] = {"\n.\n",   "\r.\r",   "\n.\r\n",     "\r\n.\n",
                                            "\r.\r\n", "\r\n.\r", "\r\n.\r\r\n", "\n.\r\r\n"};
    static const char *const stored[] = {"\r\n.\r\n", "\r\n.\r\n", "\r\n.\r\n",    "\r\n\r\n",
                                         "\r\n.\r\n", "\r\n\r\n",  "\r\n\r\n\r\n", "\r\n.\r\n\r\n"};
    for (size_t i = 0; i < sizeof(fake_ends) / sizeof(fake_ends[0]); i++) {
        for (size_t step = 0; step <= 1; step++) {
            struct buf in = BUF_INIT;
            buf_printf(&in,
                       "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                       "text%sMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\n"
                       "DATA\r\nevil\r\n.\r\n",
                       fake_ends[i]);
            struct conv *c = conv_new();
            conv_feed_n(c, buf_cstr(&in), buf_size(&in), step);
            assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA QUEUED(1));
            struct buf expect = BUF_INIT;
            buf_printf(&expect,
                       "[text%sMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\n"
                       "DATA\r\nevil\r\n]\n",
                       stored[i]);
            assert_non_null(strstr(conv_log(c), buf_cstr(&expect)));
            assert_null(strstr(conv_log(c), "RCPT victim"));
            buf_free(&expect);
            buf_free(&in);
            conv_free(c);
        }
    }
}

static void test_bare_lf_cr_normalised(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                 "a\nb\rc\r\r\nd\n\ne\r\n.\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA QUEUED(1));
    assert_non_null(strstr(conv_log(c), "\n[a\r\nb\r\nc\r\n\r\nd\r\n\r\ne\r\n]\n"));
    conv_free(c);
}

static void test_empty_body_and_commands_bare_lf(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\nMAIL FROM:<a@example.net>\nRCPT TO:<b@example.org>\nDATA\n.\r\n"
                 "QUIT\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA QUEUED(1) BYE);
    assert_non_null(strstr(conv_log(c), "\n[]\n"));
    conv_free(c);
}

static void test_text_line_limit(void **state)
{
    char *ok = str_repeat('a', 998);  /* + CRLF = 1000 */
    char *bad = str_repeat('b', 999); /* + CRLF = 1001 */
    struct buf in = BUF_INIT;
    buf_printf(&in,
               "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
               "%s\r\n.%s\r\n.\r\n",
               ok, ok);
    buf_printf(&in,
               "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
               "x\r\n%s\r\ny\r\n.\r\n",
               bad);
    buf_printf(&in,
               "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
               "%s\n%s\r\n.\r\n",
               ok, ok); /* a bare LF does not split the line: 1998 + 2 */
    buf_printf(&in, "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nok\r\n.\r\n");
    for (size_t step = 0; step <= 1; step++) {
        struct conv *c = conv_new();
        conv_feed_n(c, buf_cstr(&in), buf_size(&in), step);
        assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA QUEUED(1)
                                             OK_MAIL OK_RCPT GO_DATA
                            "500 5.5.2 Line too long\r\n" OK_MAIL OK_RCPT GO_DATA
                            "500 5.5.2 Line too long\r\n" OK_MAIL OK_RCPT GO_DATA QUEUED(4));
        conv_free(c);
    }
    buf_free(&in);
    free(ok);
    free(bad);
}

static void test_command_line_limit(void **state)
{
    char *arg510 = str_repeat('n', 510 - 5); /* "NOOP " + 505 + CRLF = 512 */
    char *arg511 = str_repeat('n', 511 - 5);
    char *huge = str_repeat('h', 5000);
    struct buf in = BUF_INIT;
    buf_printf(&in, "NOOP %s\r\nNOOP %s\r\nNOOP\r\n%s\r\nNOOP\r\n", arg510, arg511, huge);
    for (size_t step = 0; step <= 3; step++) {
        struct conv *c = conv_new();
        conv_feed_n(c, buf_cstr(&in), buf_size(&in), step);
        assert_string_equal(conv_out(c), GREETING "250 2.0.0 Ok\r\n"
                                                  "500 5.5.2 Line too long\r\n"
                                                  "250 2.0.0 Ok\r\n"
                                                  "500 5.5.2 Line too long\r\n"
                                                  "250 2.0.0 Ok\r\n");
        assert_int_equal(c->st, SMTP_SESSION_CONTINUE);
        conv_free(c);
    }
    buf_free(&in);
    free(arg510);
    free(arg511);
    free(huge);
}

static void test_message_size_limit(void **state)
{
    char *big = str_repeat('s', 998);
    struct buf in = BUF_INIT;
    buf_printf(&in, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
    for (int i = 0; i < 11; i++) /* 11 * 1000 > 10000 */
        buf_printf(&in, "%s\r\n", big);
    buf_printf(&in, ".\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
    for (int i = 0; i < 10; i++) /* exactly 10000 */
        buf_printf(&in, "%s\r\n", big);
    buf_printf(&in, ".\r\n");
    for (size_t step = 0; step <= 1; step++) {
        struct conv *c = conv_new();
        conv_feed_n(c, buf_cstr(&in), buf_size(&in), step);
        assert_string_equal(
            conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA
            "552 5.3.4 Message size exceeds fixed limit\r\n" OK_MAIL OK_RCPT GO_DATA QUEUED(2));
        conv_free(c);
    }
    buf_free(&in);
    free(big);
}

static void test_error_limit(void **state)
{
    struct conv *c = conv_new();
    for (int i = 0; i < 9; i++)
        conv_feed(c, "BOGUS\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CONTINUE);
    conv_feed(c, "RCPT TO:<a@example.org>\r\nNOOP\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CLOSE);
    const char *out = conv_out(c);
    const char *tail = "503 5.5.1 Error: send HELO/EHLO first\r\n"
                       "421 4.7.0 " HOST " Error: too many errors\r\n";
    assert_true(strlen(out) > strlen(tail));
    assert_string_equal(out + strlen(out) - strlen(tail), tail);
    conv_free(c);
}

static void test_bdat(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n"
                 "BDAT 5\r\nab\r\nc"
                 "BDAT 4\r\n\nd\r\r"
                 "BDAT 0\r\n"
                 "BDAT 1 last\r\n"
                 "\n"
                 "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 0 LAST\r\n"
                 "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nBDAT 3\r\nab\r"
                 "DATA\r\nRCPT TO:<b@example.org>\r\nBDAT 2 LAST\r\n\nz");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT
                        "250 2.0.0 5 octets received\r\n"
                        "250 2.0.0 4 octets received\r\n"
                        "250 2.0.0 0 octets received\r\n" QUEUED(1) OK_MAIL OK_RCPT QUEUED(2)
                            OK_MAIL OK_RCPT "250 2.0.0 3 octets received\r\n"
                                            "503 5.5.1 Error: DATA after BDAT\r\n"
                                            "503 5.5.1 Error: RCPT after BDAT\r\n" QUEUED(3));
    const char *log = conv_log(c);
    assert_non_null(strstr(log, "DELIVER id=s1.1 "));
    assert_non_null(strstr(log, "\n[ab\r\nc\r\nd\r\n\r\n]\n"));
    assert_non_null(strstr(log, "DELIVER id=s1.2 "));
    assert_non_null(strstr(log, "to=b@example.org(acct:b@example.org)\n[]\n"));
    assert_non_null(strstr(log, "\n[ab\r\nz]\n"));
    conv_free(c);
}

static void test_bdat_refused_is_skipped(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "BDAT 6\r\nQUIT\r\n"
                 "EHLO x\r\nBDAT 6 LAST\r\nQUIT\r\n"
                 "MAIL FROM:<a@example.net>\r\nBDAT 6\r\nQUIT\r\n"
                 "RCPT TO:<b@example.org>\r\nBDAT 6 NOW\r\nQUIT\r\n"
                 "RCPT TO:<b@example.org>\r\n"
                 "NOOP\r\n");
    assert_string_equal(conv_out(c), GREETING "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_TLS
                                              "503 5.5.1 Error: need MAIL command\r\n" OK_MAIL
                                              "503 5.5.1 Error: need RCPT command\r\n" OK_RCPT
                                              "501 5.5.4 Syntax: BDAT <size> [LAST]\r\n"
                                              "503 5.5.1 Error: need MAIL command\r\n"
                                              "250 2.0.0 Ok\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CONTINUE);
    conv_free(c);
}

static void test_bdat_bad_size_closes(void **state)
{
    static const char *const bad[] = {"BDAT\r\n", "BDAT x\r\n", "BDAT 12x LAST\r\n", "BDAT -1\r\n",
                                      "BDAT 99999999999999999999999\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct conv *c = conv_new();
        conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n");
        conv_feed(c, bad[i]);
        conv_feed(c, "NOOP\r\n");
        assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT
                            "501 5.5.4 Syntax: BDAT <size> [LAST]\r\n"
                            "421 4.5.0 " HOST " Error: bad BDAT size, cannot go on\r\n");
        assert_int_equal(c->st, SMTP_SESSION_CLOSE);
        conv_free(c);
    }
}

static void test_bdat_limits(void **state)
{
    char *big = str_repeat('q', 6000);
    char *longline = str_repeat('l', 1200);
    struct buf in = BUF_INIT;
    buf_printf(&in,
               "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n"
               "BDAT 6000\r\n%sBDAT 6000 LAST\r\n%s",
               big, big);
    buf_printf(&in,
               "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n"
               "BDAT 1200\r\n%sBDAT 2 LAST\r\n\r\n",
               longline);
    buf_printf(&in, "NOOP\r\n");
    for (size_t step = 0; step <= 1; step++) {
        struct conv *c = conv_new();
        conv_feed_n(c, buf_cstr(&in), buf_size(&in), step ? 1 : 0);
        assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT
                            "250 2.0.0 6000 octets received\r\n"
                            "552 5.3.4 Message size exceeds fixed limit\r\n" OK_MAIL OK_RCPT
                            "250 2.0.0 1200 octets received\r\n"
                            "500 5.5.2 Line too long\r\n"
                            "250 2.0.0 Ok\r\n");
        assert_int_equal(c->nreqs, 2);
        conv_free(c);
    }
    buf_free(&in);
    free(big);
    free(longline);
}

static void test_starttls(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c,
              "EHLO x\r\nMAIL FROM:<a@example.net>\r\nSTARTTLS\r\nRSET\r\nSTARTTLS now\r\n"
              "STARTTLS\r\nMAIL FROM:<injected@example.net>\r\nRCPT TO:<injected@example.org>\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL
                        "503 5.5.1 Error: MAIL transaction in progress\r\n"
                        "250 2.0.0 Ok\r\n"
                        "501 5.5.4 Syntax: STARTTLS\r\n"
                        "220 2.0.0 Ready to start TLS\r\n");
    /* The injected commands were dropped; TLS is on; the session starts over. */
    assert_string_equal(conv_log(c), "STARTTLS\n");
    assert_true(smtp_session_tls_active(c->s));
    assert_string_equal(smtp_session_state_name(c->s), "greeted");
    buf_reset(&c->out);
    conv_feed(c, "MAIL FROM:<a@example.net>\r\nEHLO y\r\nSTARTTLS\r\n"
                 "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhi\r\n.\r\n");
    assert_string_equal(
        conv_out(c), "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_NOTLS
                     "503 5.5.1 Error: TLS already active\r\n" OK_MAIL OK_RCPT GO_DATA QUEUED(2));
    assert_non_null(strstr(conv_log(c), "helo=y ip=192.0.2.7 from=<a@example.net> proto=ESMTPS "
                                        "tls=TLSv1.3/TLS_AES_128_GCM_SHA256"));
    conv_free(c);
}

static void test_starttls_pending_input_dropped(void **state)
{
    struct conv *c = conv_new();
    c->hold = true;
    conv_feed(c, "EHLO x\r\nSTARTTLS\r\n");
    const struct smtp_request *r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_STARTTLS);
    assert_string_equal(smtp_session_state_name(c->s), "wait-tls");
    /* Bytes fed in the clear while the handshake runs are dropped. */
    assert_int_equal(smtp_session_feed(c->s, "QUIT\r\n", 6, &c->out), SMTP_SESSION_CONTINUE);
    assert_int_equal(smtp_session_tls_done(c->s, true, "TLSv1.3", "X", &c->out),
                     SMTP_SESSION_CONTINUE);
    assert_null(smtp_session_request(c->s));
    conv_feed(c, "EHLO x\r\n");
    assert_string_equal(conv_out(c),
                        GREETING EHLO_TLS "220 2.0.0 Ready to start TLS\r\n" EHLO_NOTLS);
    conv_free(c);

    /* A failed handshake closes. */
    c = conv_new();
    c->tls_ok = false;
    conv_feed(c, "STARTTLS\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c), GREETING "220 2.0.0 Ready to start TLS\r\n");
    conv_free(c);

    /* Not offered: 502. */
    struct smtp_session_config cfg = test_cfg();
    cfg.starttls_available = false;
    c = conv_new_cfg(&cfg);
    conv_feed(c, "STARTTLS\r\n");
    assert_string_equal(conv_out(c), GREETING "502 5.5.1 Error: command not implemented\r\n");
    conv_free(c);
}

static void test_pending_input_buffered(void **state)
{
    struct conv *c = conv_new();
    c->hold = true;
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c");
    const struct smtp_request *r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_RCPT);
    assert_string_equal(r->rcpt, "b@example.org");
    conv_feed(c, "@example.org>\r\nDATA\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL);
    /* Answering goes on with the buffered input, and makes the next request. */
    c->st = smtp_session_rcpt_done(c->s, SMTP_RCPT_OK, NULL, &c->out);
    r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_RCPT);
    assert_string_equal(r->rcpt, "c@example.org");
    /* A done call for a request that is not pending changes nothing. */
    assert_int_equal(smtp_session_deliver_done(c->s, SMTP_DELIVER_OK, &c->out),
                     SMTP_SESSION_CONTINUE);
    c->st = smtp_session_rcpt_done(c->s, SMTP_RCPT_NO_USER, NULL, &c->out);
    assert_null(smtp_session_request(c->s));
    conv_feed(c, "hello\r\n.\r\n");
    r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_DELIVER);
    assert_int_equal(r->env->nrcpts, 1);
    assert_string_equal(r->env->rcpts[0].account, "b@example.org"); /* NULL account: the address */
    assert_int_equal(r->data_len, 7);
    assert_memory_equal(r->data, "hello\r\n", 7);
    c->st = smtp_session_deliver_done(c->s, SMTP_DELIVER_OK, &c->out);
    assert_string_equal(
        conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT
        "550 5.1.1 <c@example.org>: Recipient address rejected: User unknown\r\n" GO_DATA QUEUED(
            1));
    conv_free(c);
}

static void test_pending_overflow(void **state)
{
    struct conv *c = conv_new();
    c->hold = true;
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n");
    assert_non_null(smtp_session_request(c->s));
    char *chunk = str_repeat('n', 64 * 1024);
    enum smtp_session_status st = SMTP_SESSION_CONTINUE;
    for (int i = 0; i < 40 && st == SMTP_SESSION_CONTINUE; i++)
        st = smtp_session_feed(c->s, chunk, 64 * 1024, &c->out);
    assert_int_equal(st, SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL
                        "421 4.7.0 " HOST " Error: too much pipelined input\r\n");
    /* The request may still be answered; nothing more is written. */
    assert_int_equal(smtp_session_rcpt_done(c->s, SMTP_RCPT_OK, NULL, &c->out), SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL
                        "421 4.7.0 " HOST " Error: too much pipelined input\r\n");
    free(chunk);
    conv_free(c);
}

static void test_deliver_results(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "HELO x\r\n");
    c->deliver = SMTP_DELIVER_TEMPFAIL;
    conv_feed(c, "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n.\r\n");
    c->deliver = SMTP_DELIVER_PERMFAIL;
    conv_feed(c, "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n.\r\n");
    c->deliver = SMTP_DELIVER_OK;
    conv_feed(c, "RCPT TO:<b@example.org>\r\n"
                 "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n.\r\n");
    assert_string_equal(
        conv_out(c), GREETING
        "250 " HOST "\r\n" OK_MAIL OK_RCPT GO_DATA
        "451 4.3.0 Error: local delivery failed, try again later\r\n" OK_MAIL OK_RCPT GO_DATA
        "554 5.3.0 Error: message not accepted\r\n"
        "503 5.5.1 Error: need MAIL command\r\n" OK_MAIL OK_RCPT GO_DATA QUEUED(3));
    assert_non_null(strstr(conv_log(c), "DELIVER id=s1.1 helo=x ip=192.0.2.7 "
                                        "from=<a@example.net> proto=SMTP"));
    conv_free(c);
}

static void test_rset_and_ehlo_reset(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nRSET\r\n"
                 "RCPT TO:<b@example.org>\r\nMAIL FROM:<a@example.net>\r\nEHLO y\r\nDATA\r\n"
                 "RSET\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT
                        "250 2.0.0 Ok\r\n"
                        "503 5.5.1 Error: need MAIL command\r\n" OK_MAIL EHLO_TLS
                        "503 5.5.1 Error: need MAIL command\r\n"
                        "250 2.0.0 Ok\r\n");
    assert_string_equal(smtp_session_state_name(c->s), "ready");
    conv_free(c);
}

static void test_misc_commands(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "HELP\r\nHELP MAIL\r\nVRFY root\r\nEXPN staff\r\nTURN\r\nNOOP\r\n");
    assert_string_equal(conv_out(c), GREETING
                        "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP "
                        "VRFY STARTTLS\r\n"
                        "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP "
                        "VRFY STARTTLS\r\n"
                        "252 2.5.0 Cannot VRFY user, but will accept message and attempt "
                        "delivery\r\n"
                        "502 5.5.1 Error: command not implemented\r\n"
                        "502 5.5.1 Error: command not implemented\r\n"
                        "250 2.0.0 Ok\r\n");
    conv_free(c);

    struct smtp_session_config cfg = test_cfg();
    cfg.expn_enabled = true;
    c = conv_new_cfg(&cfg);
    conv_feed(c, "EXPN staff\r\nEXPN\r\nQUIT now\r\n");
    assert_string_equal(conv_out(c), GREETING "550 5.1.1 Error: no such mailing list\r\n"
                                              "501 5.5.4 Syntax: EXPN list\r\n" BYE);
    assert_int_equal(c->st, SMTP_SESSION_CLOSE);
    conv_free(c);
}

static void test_timeout_and_shutdown(void **state)
{
    struct conv *c = conv_new();
    conv_feed(c, "EHLO x\r\n");
    assert_int_equal(smtp_session_timeout(c->s, &c->out), SMTP_SESSION_CLOSE);
    assert_int_equal(smtp_session_timeout(c->s, &c->out), SMTP_SESSION_CLOSE);
    assert_int_equal(smtp_session_shutdown(c->s, &c->out), SMTP_SESSION_CLOSE);
    assert_int_equal(smtp_session_feed(c->s, "NOOP\r\n", 6, &c->out), SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c),
                        GREETING EHLO_TLS "421 4.4.2 " HOST " Error: timeout exceeded\r\n");
    conv_free(c);

    c = conv_new();
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\npart");
    assert_int_equal(smtp_session_shutdown(c->s, &c->out), SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL OK_RCPT GO_DATA
                        "421 4.3.2 " HOST " Service shutting down\r\n");
    conv_free(c);
}

static void test_free_with_pending_request(void **state)
{
    struct conv *c = conv_new();
    c->hold = true;
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n");
    assert_non_null(smtp_session_request(c->s));
    conv_free(c); /* ASan: nothing leaks */

    c = conv_new();
    c->hold = true;
    conv_feed(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n");
    c->st = smtp_session_rcpt_done(c->s, SMTP_RCPT_OK, "acct", &c->out);
    conv_feed(c, "DATA\r\nbody\r\n.\r\n");
    assert_non_null(smtp_session_request(c->s));
    conv_free(c);

    struct smtp_session *s = NULL;
    smtp_session_free(&s);
    smtp_session_free(NULL);
}

static void test_default_limits(void **state)
{
    struct smtp_session_config cfg = {.hostname = HOST};
    struct conv *c = conv_new_cfg(&cfg);
    conv_feed(c, "EHLO x\r\n");
    assert_non_null(strstr(conv_out(c), "250-SIZE 26214400\r\n"));
    assert_null(strstr(conv_out(c), "STARTTLS"));
    conv_free(c);
}

static void test_ipv6_client_and_state_names(void **state)
{
    struct smtp_session_config cfg = test_cfg();
    struct smtp_session *s = smtp_session_new(&cfg, "2001:db8::7", "abc");
    assert_non_null(s);
    assert_string_equal(smtp_session_state_name(s), "init");
    assert_false(smtp_session_tls_active(s));
    assert_null(smtp_session_request(s));
    struct buf out = BUF_INIT;
    smtp_session_start(s, &out);
    smtp_session_start(s, &out); /* only once */
    const char *in = "EHLO h\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n";
    assert_int_equal(smtp_session_feed(s, in, strlen(in), &out), SMTP_SESSION_CONTINUE);
    assert_string_equal(smtp_session_state_name(s), "wait-rcpt");
    assert_int_equal(smtp_session_rcpt_done(s, SMTP_RCPT_OK, "c", &out), SMTP_SESSION_CONTINUE);
    assert_string_equal(smtp_session_state_name(s), "rcpt");
    assert_int_equal(smtp_session_feed(s, "BDAT 3 LAST\r\nabc", 16, &out), SMTP_SESSION_CONTINUE);
    const struct smtp_request *r = smtp_session_request(s);
    assert_non_null(r);
    assert_string_equal(r->env->client_ip, "2001:db8::7");
    assert_string_equal(r->env->txn_id, "abc.1");
    assert_string_equal(smtp_session_state_name(s), "wait-deliver");
    assert_int_equal(smtp_session_deliver_done(s, SMTP_DELIVER_OK, &out), SMTP_SESSION_CONTINUE);
    assert_string_equal(smtp_session_state_name(s), "ready");
    buf_free(&out);
    smtp_session_free(&s);
}

/* ------------------------------------------------------------------------
 * Submission (RFC 6409) and AUTH (RFC 4954)
 */

#define MECHS "PLAIN LOGIN SCRAM-SHA-256"
#define EHLO_SUB_AUTH                                                                              \
    "250-" HOST "\r\n"                                                                             \
    "250-PIPELINING\r\n"                                                                           \
    "250-SIZE 10000\r\n"                                                                           \
    "250-STARTTLS\r\n"                                                                             \
    "250-AUTH " MECHS "\r\n"                                                                       \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                             \
    "250-SMTPUTF8\r\n"                                                                             \
    "250-HELP\r\n"                                                                                 \
    "250 CHUNKING\r\n"
#define EHLO_SUB_TLS                                                                               \
    "250-" HOST "\r\n"                                                                             \
    "250-PIPELINING\r\n"                                                                           \
    "250-SIZE 10000\r\n"                                                                           \
    "250-AUTH " MECHS "\r\n"                                                                       \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                             \
    "250-SMTPUTF8\r\n"                                                                             \
    "250-HELP\r\n"                                                                                 \
    "250 CHUNKING\r\n"
/* base64 of "\0alice@example.org\0secret" */
#define PLAIN_GOOD "AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA=="
#define AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define AUTH_BAD "535 5.7.8 Authentication credentials invalid\r\n"
#define B64_ALICE "YWxpY2VAZXhhbXBsZS5vcmc=" /* alice@example.org */
#define B64_SECRET "c2VjcmV0"                /* secret */
#define SUB_LOGIN "EHLO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\n"

/* Submission on a test connection: AUTH allowed without TLS. */
static struct smtp_session_config sub_cfg(void)
{
    struct smtp_session_config cfg = test_cfg();
    cfg.submission = true;
    cfg.allow_plaintext_auth = true;
    cfg.auth_mechanisms = MECHS;
    return cfg;
}

static struct conv *conv_sub(void)
{
    struct smtp_session_config cfg = sub_cfg();
    return conv_new_cfg(&cfg);
}

static void test_sub_ehlo_advertises_auth(void **state)
{
    /* Without TLS and allow_plaintext_auth: no AUTH, 538, until STARTTLS. */
    struct smtp_session_config cfg = sub_cfg();
    cfg.allow_plaintext_auth = false;
    struct conv *c = conv_new_cfg(&cfg);
    conv_feed(c,
              "EHLO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\nAUTH LOGIN\r\nMAIL FROM:<a@example.org>\r\n"
              "HELP\r\nSTARTTLS\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS
                        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
                        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
                        "530 5.7.0 Authentication required\r\n"
                        "214 2.0.0 Commands: EHLO HELO AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT "
                        "HELP VRFY STARTTLS\r\n"
                        "220 2.0.0 Ready to start TLS\r\n");
    buf_reset(&c->out);
    conv_feed(c, "EHLO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\n");
    assert_string_equal(conv_out(c), EHLO_SUB_TLS AUTH_OK);
    assert_string_equal(smtp_session_auth_account(c->s), "alice@example.org");
    conv_free(c);

    /* allow_plaintext_auth: offered at once. */
    c = conv_sub();
    assert_null(smtp_session_auth_account(c->s));
    conv_feed(c, "EHLO c\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH);
    conv_free(c);

    /* No mechanisms configured: nothing offered, every one unknown. */
    cfg = sub_cfg();
    cfg.auth_mechanisms = "  ";
    c = conv_new_cfg(&cfg);
    conv_feed(c, "EHLO c\r\nAUTH PLAIN\r\n");
    assert_string_equal(conv_out(c),
                        GREETING EHLO_TLS "504 5.5.4 Unrecognized authentication type\r\n");
    conv_free(c);

    /* MX mode: AUTH is never offered, even with TLS and a mechanism list. */
    cfg = sub_cfg();
    cfg.submission = false;
    c = conv_new_cfg(&cfg);
    conv_feed(c, "EHLO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\nauth\r\nHELP\r\nSTARTTLS\r\n");
    conv_feed(c, "EHLO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\nMAIL FROM:<a@example.net>\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS
                        "502 5.5.1 Error: AUTH not available here\r\n"
                        "502 5.5.1 Error: AUTH not available here\r\n"
                        "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP "
                        "VRFY STARTTLS\r\n"
                        "220 2.0.0 Ready to start TLS\r\n" EHLO_NOTLS
                        "502 5.5.1 Error: AUTH not available here\r\n" OK_MAIL);
    assert_null(smtp_session_auth_account(c->s));
    assert_int_equal(c->nreqs, 1); /* STARTTLS only */
    conv_free(c);
}

static void test_auth_plain(void **state)
{
    struct smtp_session_config cfg = sub_cfg();
    cfg.limits.max_errors = 100;
    struct conv *c = conv_new_cfg(&cfg);
    conv_feed(c, "EHLO c\r\n"
                 /* initial response, wrong password */
                 "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHdyb25n\r\n"
                 /* no initial response: empty challenge, then the message */
                 "auth plain\r\n"
                 "AGFsaWNlQGV4YW1wbGUub3JnAHdyb25n\r\n"
                 /* "=": an empty initial response, malformed for PLAIN */
                 "AUTH PLAIN =\r\n"
                 /* bad base64, as initial response and as response */
                 "AUTH PLAIN AGFsaWNl*\r\n"
                 "AUTH PLAIN\r\n"
                 "AGFsaWNlQGV4YW1wbGUub3JnAHdyb25\r\n"
                 /* cancelled */
                 "AUTH PLAIN\r\n"
                 "*\r\n"
                 /* authzid bob for authcid alice: refused without a request */
                 "AUTH PLAIN Ym9iQGV4YW1wbGUub3JnAGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\r\n"
                 /* malformed: no NUL; empty password; empty authcid; three NULs */
                 "AUTH PLAIN " B64_ALICE "\r\n"
                 "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAA==\r\n"
                 "AUTH PLAIN AABzZWNyZXQ=\r\n"
                 "AUTH PLAIN YQBiAGMAZA==\r\n"
                 /* user "temp": temporary failure */
                 "AUTH PLAIN AHRlbXAAeA==\r\n"
                 /* too many arguments */
                 "AUTH PLAIN a b\r\n"
                 /* authzid equal to the authcid (in another case): fine */
                 "AUTH PLAIN QUxJQ0VAZXhhbXBsZS5vcmcAYWxpY2VAZXhhbXBsZS5vcmcAc2VjcmV0\r\n"
                 "AUTH PLAIN " PLAIN_GOOD "\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH AUTH_BAD
                        "334 \r\n" AUTH_BAD "501 5.5.2 Error: malformed PLAIN message\r\n"
                        "501 5.5.2 Error: invalid base64 data\r\n"
                        "334 \r\n"
                        "501 5.5.2 Error: invalid base64 data\r\n"
                        "334 \r\n"
                        "501 5.0.0 Authentication cancelled\r\n" AUTH_BAD
                        "501 5.5.2 Error: malformed PLAIN message\r\n"
                        "501 5.5.2 Error: malformed PLAIN message\r\n"
                        "501 5.5.2 Error: malformed PLAIN message\r\n"
                        "501 5.5.2 Error: malformed PLAIN message\r\n"
                        "454 4.7.0 Temporary authentication failure\r\n"
                        "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n" AUTH_OK
                        "503 5.5.1 Error: already authenticated\r\n");
    assert_string_equal(conv_log(c), "AUTH PLAIN first=1 user=alice@example.org data=wrong\n"
                                     "AUTH PLAIN first=1 user=alice@example.org data=wrong\n"
                                     "AUTH PLAIN first=1 user=temp data=x\n"
                                     "AUTH PLAIN first=1 user=alice@example.org data=secret\n");
    assert_string_equal(smtp_session_auth_account(c->s), "alice@example.org");
    conv_free(c);

    /* OK with a NULL account: the user name is the account. */
    c = conv_sub();
    c->auth_no_account = true;
    conv_feed(c, SUB_LOGIN);
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH AUTH_OK);
    assert_string_equal(smtp_session_auth_account(c->s), "alice@example.org");
    conv_free(c);
}

static void test_auth_login(void **state)
{
    struct conv *c = conv_sub();
    conv_feed(c, "EHLO c\r\nAUTH LOGIN\r\n" B64_ALICE "\r\nd3Jvbmc=\r\n" /* wrong */
                 "AUTH LOGIN " B64_ALICE "\r\n*\r\n"                     /* cancelled */
                 "AUTH LOGIN =\r\n"                                      /* empty user */
                 "AUTH LOGIN\r\n" B64_ALICE "\r\n\r\n"                   /* empty password */
                 "AUTH LOGIN " B64_ALICE "\r\n" B64_SECRET "\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH "334 VXNlcm5hbWU6\r\n"
                                                            "334 UGFzc3dvcmQ6\r\n" AUTH_BAD
                                                            "334 UGFzc3dvcmQ6\r\n"
                                                            "501 5.0.0 Authentication cancelled\r\n"
                                                            "501 5.5.2 Error: malformed LOGIN "
                                                            "message\r\n"
                                                            "334 VXNlcm5hbWU6\r\n"
                                                            "334 UGFzc3dvcmQ6\r\n"
                                                            "501 5.5.2 Error: malformed LOGIN "
                                                            "message\r\n"
                                                            "334 UGFzc3dvcmQ6\r\n" AUTH_OK);
    assert_string_equal(conv_log(c), "AUTH LOGIN first=1 user=alice@example.org data=wrong\n"
                                     "AUTH LOGIN first=1 user=alice@example.org data=secret\n");
    assert_string_equal(smtp_session_auth_account(c->s), "alice@example.org");
    conv_free(c);
}

static void test_auth_multi_step(void **state)
{
    struct conv *c = conv_sub();
    conv_feed(c, "EHLO c\r\n"
                 /* the whole exchange, with an initial response, mechanism in lower case */
                 "AUTH scram-sha-256 Y2xpZW50LWZpcnN0\r\n"
                 "Y2xpZW50LWZpbmFs\r\n"
                 "\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH "334 c2VydmVyLWZpcnN0\r\n"
                                                            "334 c2VydmVyLWZpbmFs\r\n" AUTH_OK);
    assert_string_equal(conv_log(c), "AUTH SCRAM-SHA-256 first=1 user=- data=client-first\n"
                                     "AUTH SCRAM-SHA-256 first=0 user=- data=client-final\n"
                                     "AUTH SCRAM-SHA-256 first=0 user=- data=\n");
    conv_free(c);

    c = conv_sub();
    conv_feed(c, "EHLO c\r\n"
                 /* without an initial response: an empty challenge first */
                 "AUTH SCRAM-SHA-256\r\nY2xpZW50LWZpcnN0\r\nYmFkLXByb29m\r\n"
                 /* "=": an empty first message */
                 "AUTH SCRAM-SHA-256 =\r\n"
                 /* cancelled after the first challenge; then a new exchange */
                 "AUTH SCRAM-SHA-256 Y2xpZW50LWZpcnN0\r\n*\r\n"
                 "AUTH SCRAM-SHA-256 Y2xpZW50LWZpcnN0\r\nY2xpZW50LWZpbmFs\r\n=\r\n"
                 "AUTH SCRAM-SHA-256 Y2xpZW50LWZpcnN0\r\nY2xpZW50LWZpbmFs\r\n\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH "334 \r\n"
                                                            "334 c2VydmVyLWZpcnN0\r\n" AUTH_BAD
                                                            "501 5.5.2 Error: malformed "
                                                            "authentication message\r\n"
                                                            "334 c2VydmVyLWZpcnN0\r\n"
                                                            "501 5.0.0 Authentication cancelled\r\n"
                                                            "334 c2VydmVyLWZpcnN0\r\n"
                                                            "334 c2VydmVyLWZpbmFs\r\n"
                                                            "501 5.5.2 Error: invalid base64 "
                                                            "data\r\n"
                                                            "334 c2VydmVyLWZpcnN0\r\n"
                                                            "334 c2VydmVyLWZpbmFs\r\n" AUTH_OK);
    assert_string_equal(conv_log(c), "AUTH SCRAM-SHA-256 first=1 user=- data=client-first\n"
                                     "AUTH SCRAM-SHA-256 first=0 user=- data=bad-proof\n"
                                     "AUTH SCRAM-SHA-256 first=1 user=- data=\n"
                                     "AUTH SCRAM-SHA-256 first=1 user=- data=client-first\n"
                                     "AUTH SCRAM-SHA-256 first=1 user=- data=client-first\n"
                                     "AUTH SCRAM-SHA-256 first=0 user=- data=client-final\n"
                                     "AUTH SCRAM-SHA-256 first=1 user=- data=client-first\n"
                                     "AUTH SCRAM-SHA-256 first=0 user=- data=client-final\n"
                                     "AUTH SCRAM-SHA-256 first=0 user=- data=\n");
    assert_string_equal(smtp_session_auth_account(c->s), "alice@example.org");
    conv_free(c);

    /* OK without an account for a mechanism that has no user name: 454. */
    c = conv_sub();
    c->auth_no_account = true;
    conv_feed(c, "EHLO c\r\nAUTH SCRAM-SHA-256 Y2xpZW50LWZpcnN0\r\nY2xpZW50LWZpbmFs\r\n\r\n");
    assert_non_null(strstr(conv_out(c), "334 c2VydmVyLWZpbmFs\r\n"
                                        "454 4.7.0 Temporary authentication failure\r\n"));
    assert_null(smtp_session_auth_account(c->s));
    conv_free(c);
}

/* A challenge to PLAIN: the next message goes to the caller as it is. */
static void test_auth_challenge_by_hand(void **state)
{
    struct conv *c = conv_sub();
    c->hold = true;
    conv_feed(c, "EHLO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\nNOOP\r\n");
    const struct smtp_request *r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_AUTH);
    assert_string_equal(r->auth_mech, "PLAIN");
    assert_string_equal(r->auth_user, "alice@example.org");
    assert_int_equal(r->auth_len, 6);
    assert_memory_equal(r->auth_data, "secret", 7);
    assert_true(r->auth_first);
    assert_string_equal(smtp_session_state_name(c->s), "wait-auth");
    /* Done calls of other requests change nothing. */
    assert_int_equal(smtp_session_mail_done(c->s, true, &c->out), SMTP_SESSION_CONTINUE);
    assert_int_equal(smtp_session_rcpt_done(c->s, SMTP_RCPT_OK, "x", &c->out),
                     SMTP_SESSION_CONTINUE);
    assert_non_null(smtp_session_request(c->s));
    /* A long challenge is not cut. */
    char *big = str_repeat('x', 3000);
    c->st = smtp_session_auth_challenge(c->s, (const uint8_t *)big, 3000, &c->out);
    assert_string_equal(smtp_session_state_name(c->s), "wait-auth"); /* NOOP was buffered */
    const char *out = conv_out(c);
    assert_non_null(strstr(out, "334 eHh4"));
    assert_int_equal(strlen(strstr(out, "334 ")), 4 + 4000 + 2);
    free(big);
    /* "NOOP" is base64 of 3 octets: the next message, handed over raw. */
    r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_false(r->auth_first);
    assert_int_equal(r->auth_len, 3);
    c->st = smtp_session_auth_done(c->s, SMTP_AUTH_OK, "alice@example.org", &c->out);
    assert_null(smtp_session_request(c->s));
    assert_string_equal(smtp_session_state_name(c->s), "ready");
    assert_non_null(strstr(conv_out(c), "\r\n" AUTH_OK));
    /* auth_* without a pending AUTH change nothing. */
    assert_int_equal(smtp_session_auth_done(c->s, SMTP_AUTH_OK, "x", &c->out),
                     SMTP_SESSION_CONTINUE);
    assert_int_equal(smtp_session_auth_challenge(c->s, (const uint8_t *)"x", 1, &c->out),
                     SMTP_SESSION_CONTINUE);
    assert_string_equal(smtp_session_auth_account(c->s), "alice@example.org");
    conv_free(c);
}

static void test_auth_refused(void **state)
{
    struct smtp_session_config cfg = sub_cfg();
    cfg.limits.max_errors = 100;
    struct conv *c = conv_new_cfg(&cfg);
    conv_feed(c, "AUTH PLAIN " PLAIN_GOOD "\r\n"           /* before EHLO */
                 "HELO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\n" /* after HELO */
                 "EHLO c\r\nAUTH\r\nAUTH CRAM-MD5\r\nAUTH PLAINX\r\n"
                 "AUTH SCRAM-SHA-256-PLUS-WITH-A-VERY-LONG-NAME\r\n"
                 "AUTH PLAIN " PLAIN_GOOD "\r\n"
                 "MAIL FROM:<alice@example.org>\r\n"
                 "AUTH PLAIN " PLAIN_GOOD "\r\n" /* during a transaction */
                 "RSET\r\n"
                 "AUTH LOGIN\r\n"); /* again */
    assert_string_equal(conv_out(c),
                        GREETING "503 5.5.1 Error: send EHLO first\r\n"
                                 "250 " HOST "\r\n"
                                 "503 5.5.1 Error: send EHLO first\r\n" EHLO_SUB_AUTH
                                 "501 5.5.4 Syntax: AUTH mechanism "
                                 "[initial-response]\r\n"
                                 "504 5.5.4 Unrecognized authentication type\r\n"
                                 "504 5.5.4 Unrecognized authentication type\r\n"
                                 "504 5.5.4 Unrecognized authentication type\r\n" AUTH_OK OK_MAIL
                                 "503 5.5.1 Error: MAIL transaction in progress\r\n"
                                 "250 2.0.0 Ok\r\n"
                                 "503 5.5.1 Error: already authenticated\r\n");
    assert_string_equal(conv_log(c), "AUTH PLAIN first=1 user=alice@example.org data=secret\n"
                                     "MAIL <alice@example.org> as alice@example.org -> 1\n");
    conv_free(c);
}

static void test_auth_failures_count(void **state)
{
    struct smtp_session_config cfg = sub_cfg();
    cfg.limits.max_errors = 3;
    struct conv *c = conv_new_cfg(&cfg);
    conv_feed(c, "EHLO c\r\nAUTH PLAIN AHRlbXAAeA==\r\n" /* 454: not counted */
                 "AUTH PLAIN AGJvYkBleGFtcGxlLm9yZwBzZWNyZXQ=\r\n"
                 "AUTH LOGIN\r\n*\r\n"
                 "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHdyb25n\r\nNOOP\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH
                        "454 4.7.0 Temporary authentication failure\r\n" AUTH_BAD
                        "334 VXNlcm5hbWU6\r\n"
                        "501 5.0.0 Authentication cancelled\r\n" AUTH_BAD "421 4.7.0 " HOST
                        " Error: too many errors\r\n");
    conv_free(c);

    /* 530 counts too. */
    c = conv_new_cfg(&cfg);
    conv_feed(c, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nMAIL FROM:<a@example.org>\r\n"
                 "MAIL FROM:<a@example.org>\r\n");
    assert_int_equal(c->st, SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c),
                        GREETING EHLO_SUB_AUTH "530 5.7.0 Authentication required\r\n"
                                               "530 5.7.0 Authentication required\r\n"
                                               "530 5.7.0 Authentication required\r\n"
                                               "421 4.7.0 " HOST " Error: too many errors\r\n");
    conv_free(c);
}

static void test_auth_line_lengths(void **state)
{
    /* An AUTH line and a response line may be 12288 octets with CRLF. */
    char *u = str_repeat('Q', 12288 - 2 - 14); /* "AUTH PLAIN    " */
    struct buf in = BUF_INIT;
    buf_printf(&in, "EHLO c\r\nAUTH PLAIN    %s\r\n", u);           /* 12288: the limit */
    buf_printf(&in, "AUTH PLAIN    %sQQQQ\r\n", u);                 /* 4 too many */
    buf_printf(&in, "AUTH SCRAM-SHA-256\r\n%sQQQQQQQQQQQQ\r\n", u); /* 12286 */
    buf_printf(&in, "AUTH SCRAM-SHA-256\r\n%sQQQQQQQQQQQQQQQQ\r\nNOOP\r\n", u); /* 12290 */
    static const size_t steps[] = {0, 1, 1000};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct conv *c = conv_sub();
        conv_feed_n(c, buf_cstr(&in), buf_size(&in), steps[i]);
        /* base64 of 'Q' x n: no NUL in it: malformed PLAIN, malformed SCRAM. */
        assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH
                            "501 5.5.2 Error: malformed PLAIN message\r\n"
                            "500 5.5.2 Line too long\r\n"
                            "334 \r\n"
                            "501 5.5.2 Error: malformed authentication message\r\n"
                            "334 \r\n"
                            "500 5.5.2 Line too long\r\n"
                            "250 2.0.0 Ok\r\n");
        assert_string_equal(smtp_session_state_name(c->s), "ready");
        conv_free(c);
    }
    buf_free(&in);
    free(u);

    /* Other commands keep the command line limit. */
    char *x = str_repeat('x', 600);
    struct conv *c = conv_sub();
    buf_printf(&in, "EHLO c\r\nNOOP %s\r\nAUTHX %s\r\n", x, x);
    conv_feed(c, buf_cstr(&in));
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH "500 5.5.2 Line too long\r\n"
                                                            "500 5.5.2 Line too long\r\n");
    conv_free(c);
    buf_free(&in);

    /* MX mode: an AUTH line is a command line like any other. */
    c = conv_new();
    buf_printf(&in, "EHLO c\r\nAUTH PLAIN %s\r\n", x);
    conv_feed(c, buf_cstr(&in));
    assert_string_equal(conv_out(c), GREETING EHLO_TLS "500 5.5.2 Line too long\r\n");
    conv_free(c);
    buf_free(&in);
    free(x);
}

static void test_sub_mail_rcpt_deliver(void **state)
{
    struct conv *c = conv_sub();
    conv_feed(c, SUB_LOGIN "MAIL FROM:<bob@example.org>\r\n"
                           "RCPT TO:<x@example.org>\r\n"
                           "MAIL FROM:<alice@example.org> ENVID=abc\r\n"
                           "MAIL FROM:<alice@example.org> AUTH=foo+bar\r\n"
                           "MAIL FROM:<alice@example.org> AUTH=<> AUTH=<>\r\n"
                           "MAIL FROM:<alice@example.org> AUTH=\r\n"
                           "MAIL FROM:<alias@example.org> AUTH=alice+40example.org SIZE=10\r\n"
                           "RCPT TO:<bob@example.org>\r\n"
                           "RCPT TO:<carol@elsewhere.net>\r\n"
                           "RCPT TO:<nouser@example.org>\r\n"
                           "DATA\r\n"
                           "From: Alice <alice@Example.ORG>, bob@example.org\r\n"
                           "Subject: hi\r\n\r\nHello\r\n.\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH AUTH_OK
                        "553 5.7.1 <bob@example.org>: Sender address rejected: not owned by "
                        "alice@example.org\r\n"
                        "503 5.5.1 Error: need MAIL command\r\n"
                        "555 5.5.4 Error: unsupported MAIL parameter\r\n"
                        "501 5.5.4 Syntax: AUTH=<mailbox>\r\n"
                        "501 5.5.4 Syntax: AUTH=<mailbox>\r\n"
                        "501 5.5.4 Syntax: AUTH=<mailbox>\r\n" OK_MAIL OK_RCPT OK_RCPT
                        "550 5.1.1 <nouser@example.org>: Recipient address rejected: User "
                        "unknown\r\n" GO_DATA QUEUED(1));
    assert_string_equal(conv_log(c), "AUTH PLAIN first=1 user=alice@example.org data=secret\n"
                                     "MAIL <bob@example.org> as alice@example.org -> 0\n"
                                     "MAIL <alias@example.org> as alice@example.org -> 1\n"
                                     "RCPT bob@example.org -> 0\n"
                                     "RCPT carol@elsewhere.net -> 4\n"
                                     "RCPT nouser@example.org -> 1\n"
                                     "DELIVER id=s1.1 helo=c ip=192.0.2.7 from=<alias@example.org> "
                                     "proto=ESMTPA tls=-/- utf8=0 8bit=0 auth=alice@example.org "
                                     "froms=[alice@example.org,bob@example.org] "
                                     "to=bob@example.org(acct:bob@example.org) "
                                     "to=carol@elsewhere.net(remote)\n"
                                     "[From: Alice <alice@Example.ORG>, bob@example.org\r\n"
                                     "Subject: hi\r\n\r\nHello\r\n]\n");
    /* The forged From: is refused; RSET keeps the authentication; BDAT too. */
    buf_reset(&c->out);
    buf_reset(&c->log);
    c->deliver = SMTP_DELIVER_SENDER_REFUSED;
    conv_feed(c, "RSET\r\nMAIL FROM:<alice@example.org> SMTPUTF8\r\nRCPT TO:<b@example.org>\r\n"
                 "BDAT 25 LAST\r\nFrom: bob@example.org\r\n\r\n");
    c->deliver = SMTP_DELIVER_OK;
    conv_feed(c, "MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                 "DATA\r\nSubject: no from\r\n\r\n.\r\n");
    assert_string_equal(
        conv_out(c),
        "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT
        "553 5.7.1 From: header address not owned by alice@example.org\r\n" OK_MAIL OK_RCPT GO_DATA
            QUEUED(3));
    assert_non_null(strstr(conv_log(c), "proto=UTF8SMTPA tls=-/- utf8=1 8bit=0 "
                                        "auth=alice@example.org froms=[bob@example.org] "
                                        "to=b@example.org"));
    assert_non_null(strstr(conv_log(c), "proto=ESMTPA tls=-/- utf8=0 8bit=0 "
                                        "auth=alice@example.org froms=[] to=b@example.org"));
    conv_free(c);
}

static void test_sub_protocol_with_tls(void **state)
{
    struct smtp_session_config cfg = sub_cfg();
    cfg.allow_plaintext_auth = false;
    struct conv *c = conv_new_cfg(&cfg);
    conv_feed(c, "EHLO c\r\nSTARTTLS\r\n");
    conv_feed(c, SUB_LOGIN "MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                           "DATA\r\nFrom: alice@example.org\r\n\r\n.\r\n"
                           "MAIL FROM:<alice@example.org> SMTPUTF8\r\nRCPT TO:<b@example.org>\r\n"
                           "DATA\r\n.\r\n");
    assert_non_null(strstr(conv_log(c), "proto=ESMTPSA tls=TLSv1.3/TLS_AES_128_GCM_SHA256 utf8=0 "
                                        "8bit=0 auth=alice@example.org "
                                        "froms=[alice@example.org]"));
    assert_non_null(strstr(conv_log(c), "proto=UTF8SMTPSA tls=TLSv1.3/TLS_AES_128_GCM_SHA256 "
                                        "utf8=1"));
    conv_free(c);
}

/* STARTTLS forgets AUTH (RFC 4954 4); EHLO and RSET keep it. */
static void test_sub_starttls_forgets_auth(void **state)
{
    struct conv *c = conv_sub();
    conv_feed(c, SUB_LOGIN "EHLO again\r\nRSET\r\nMAIL FROM:<alice@example.org>\r\nRSET\r\n"
                           "STARTTLS\r\n");
    assert_null(smtp_session_auth_account(c->s));
    assert_true(smtp_session_tls_active(c->s));
    conv_feed(c, "EHLO c\r\nMAIL FROM:<alice@example.org>\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_SUB_AUTH AUTH_OK EHLO_SUB_AUTH
                        "250 2.0.0 Ok\r\n" OK_MAIL "250 2.0.0 Ok\r\n"
                        "220 2.0.0 Ready to start TLS\r\n" EHLO_SUB_TLS
                        "530 5.7.0 Authentication required\r\n");
    conv_free(c);
}

/* Implicit TLS (port 465). */
static void test_sub_implicit_tls(void **state)
{
    struct smtp_session_config cfg = sub_cfg();
    cfg.allow_plaintext_auth = false;
    struct smtp_session *s = smtp_session_new(&cfg, "192.0.2.7", "s1");
    assert_non_null(s);
    assert_int_equal(smtp_session_set_tls(s, "TLSv1.3", "TLS_AES_256_GCM_SHA384"), 0);
    assert_true(smtp_session_tls_active(s));
    struct buf out = BUF_INIT;
    smtp_session_start(s, &out);
    assert_int_equal(smtp_session_set_tls(s, "TLSv1.2", "X"), -1); /* too late */
    const char *in = SUB_LOGIN "STARTTLS\r\nMAIL FROM:<alice@example.org>\r\n";
    assert_int_equal(smtp_session_feed(s, in, strlen(in), &out), SMTP_SESSION_CONTINUE);
    const struct smtp_request *r = smtp_session_request(s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_AUTH);
    assert_int_equal(smtp_session_auth_done(s, SMTP_AUTH_OK, "alice@example.org", &out),
                     SMTP_SESSION_CONTINUE);
    r = smtp_session_request(s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_MAIL);
    assert_string_equal(r->mail_from, "alice@example.org");
    assert_string_equal(r->auth_account, "alice@example.org");
    assert_string_equal(smtp_session_state_name(s), "wait-mail");
    assert_int_equal(smtp_session_mail_done(s, true, &out), SMTP_SESSION_CONTINUE);
    in = "RCPT TO:<b@example.org>\r\nBDAT 2 LAST\r\nhi";
    assert_int_equal(smtp_session_feed(s, in, strlen(in), &out), SMTP_SESSION_CONTINUE);
    assert_int_equal(smtp_session_rcpt_done(s, SMTP_RCPT_REMOTE, "ignored", &out),
                     SMTP_SESSION_CONTINUE);
    r = smtp_session_request(s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_DELIVER);
    assert_string_equal(r->env->protocol, "ESMTPSA");
    assert_string_equal(r->env->tls_cipher, "TLS_AES_256_GCM_SHA384");
    assert_string_equal(r->env->auth_account, "alice@example.org");
    assert_int_equal(r->env->nfrom_addrs, 0);
    assert_true(r->env->rcpts[0].remote);
    assert_null(r->env->rcpts[0].account);
    assert_int_equal(smtp_session_deliver_done(s, SMTP_DELIVER_OK, &out), SMTP_SESSION_CONTINUE);
    const char *o = buf_cstr(&out);
    assert_string_equal(o, GREETING EHLO_SUB_TLS AUTH_OK
                        "503 5.5.1 Error: TLS already active\r\n" OK_MAIL OK_RCPT QUEUED(1));
    buf_free(&out);
    smtp_session_free(&s);
}

/* Port 25 never relays and never checks From:, whatever the caller answers. */
static void test_mx_remote_and_sender_refused(void **state)
{
    struct conv *c = conv_new();
    c->remote_in_mx = true;
    c->deliver = SMTP_DELIVER_SENDER_REFUSED;
    conv_feed(c, "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@elsewhere.net>\r\n"
                 "RCPT TO:<b@example.org>\r\nDATA\r\nFrom: a@example.net\r\n\r\n.\r\n");
    assert_string_equal(conv_out(c), GREETING EHLO_TLS OK_MAIL
                        "550 5.7.1 <x@elsewhere.net>: Relay access denied\r\n" OK_RCPT GO_DATA
                        "554 5.3.0 Error: message not accepted\r\n");
    assert_non_null(strstr(conv_log(c), "RCPT x@elsewhere.net -> 4\n"));
    assert_non_null(strstr(conv_log(c), "proto=ESMTP tls=-/- utf8=0 8bit=0 to=b@example.org"));
    conv_free(c);
}

/* A submission conversation with AUTH, pipelined and fed in pieces. */
static const char sub_conv[] = "EHLO client.example.net\r\n"
                               "MAIL FROM:<alice@example.org>\r\n"
                               "AUTH LOGIN\r\n"
                               "YWxpY2VAZXhhbXBsZS5vcmc=\r\n"
                               "d3Jvbmc=\r\n"
                               "AUTH SCRAM-SHA-256\r\n"
                               "Y2xpZW50LWZpcnN0\r\n"
                               "*\r\n"
                               "AUTH SCRAM-SHA-256 Y2xpZW50LWZpcnN0\r\n"
                               "Y2xpZW50LWZpbmFs\r\n"
                               "\r\n"
                               "MAIL FROM:<mallory@example.org>\r\n"
                               "MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n"
                               "RCPT TO:<bob@example.org>\r\n"
                               "RCPT TO:<carol@elsewhere.net>\r\n"
                               "DATA\r\n"
                               "From: alice@example.org\r\n"
                               "\r\n"
                               "..hi\r\n"
                               ".\r\n"
                               "AUTH PLAIN " PLAIN_GOOD "\r\n"
                               "QUIT\r\n";

static void test_sub_pipelining_and_bytewise(void **state)
{
    struct smtp_session_config cfg = sub_cfg();
    size_t len = sizeof(sub_conv) - 1;
    char *whole = conv_transcript(&cfg, sub_conv, len, 0);
    const char *expect_out = GREETING EHLO_SUB_AUTH
        "530 5.7.0 Authentication required\r\n"
        "334 VXNlcm5hbWU6\r\n"
        "334 UGFzc3dvcmQ6\r\n" AUTH_BAD "334 \r\n"
        "334 c2VydmVyLWZpcnN0\r\n"
        "501 5.0.0 Authentication cancelled\r\n"
        "334 c2VydmVyLWZpcnN0\r\n"
        "334 c2VydmVyLWZpbmFs\r\n" AUTH_OK
        "553 5.7.1 <mallory@example.org>: Sender address rejected: not "
        "owned by alice@example.org\r\n" OK_MAIL OK_RCPT OK_RCPT GO_DATA QUEUED(
            1) "503 5.5.1 Error: already authenticated\r\n" BYE;
    const char *expect_log =
        "AUTH LOGIN first=1 user=alice@example.org data=wrong\n"
        "AUTH SCRAM-SHA-256 first=1 user=- data=client-first\n"
        "AUTH SCRAM-SHA-256 first=1 user=- data=client-first\n"
        "AUTH SCRAM-SHA-256 first=0 user=- data=client-final\n"
        "AUTH SCRAM-SHA-256 first=0 user=- data=\n"
        "MAIL <mallory@example.org> as alice@example.org -> 0\n"
        "MAIL <alice@example.org> as alice@example.org -> 1\n"
        "RCPT bob@example.org -> 0\n"
        "RCPT carol@elsewhere.net -> 4\n"
        "DELIVER id=s1.1 helo=client.example.net ip=192.0.2.7 from=<alice@example.org> "
        "proto=ESMTPA tls=-/- utf8=0 8bit=1 auth=alice@example.org froms=[alice@example.org] "
        "to=bob@example.org(acct:bob@example.org) to=carol@elsewhere.net(remote)\n"
        "[From: alice@example.org\r\n\r\n.hi\r\n]\n";
    struct buf expect = BUF_INIT;
    buf_printf(&expect, "%s\n====\n%s\nstatus=1", expect_out, expect_log);
    assert_string_equal(whole, buf_cstr(&expect));
    buf_free(&expect);
    static const size_t steps[] = {1, 2, 3, 5, 7, 13, 64};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char *t = conv_transcript(&cfg, sub_conv, len, steps[i]);
        assert_string_equal(t, whole);
        free(t);
    }
    free(whole);
}

/* Requests left pending when the session ends; input while AUTH is pending. */
static void test_sub_pending_and_free(void **state)
{
    struct conv *c = conv_sub();
    c->hold = true;
    conv_feed(c, "EHLO c\r\nAUTH LOGIN " B64_ALICE "\r\n" B64_SECRET "\r\nMAIL FROM:<ali");
    const struct smtp_request *r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_AUTH);
    assert_string_equal(r->auth_mech, "LOGIN");
    assert_string_equal(r->auth_user, "alice@example.org");
    assert_string_equal((const char *)r->auth_data, "secret");
    conv_feed(c, "ce@example.org>\r\n");
    c->st = smtp_session_auth_done(c->s, SMTP_AUTH_OK, "alice@example.org", &c->out);
    r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, SMTP_REQ_MAIL);
    /* Shut down while MAIL is pending: the answer writes nothing more. */
    assert_int_equal(smtp_session_shutdown(c->s, &c->out), SMTP_SESSION_CLOSE);
    assert_int_equal(smtp_session_mail_done(c->s, false, &c->out), SMTP_SESSION_CLOSE);
    assert_string_equal(conv_out(c),
                        GREETING EHLO_SUB_AUTH "334 UGFzc3dvcmQ6\r\n" AUTH_OK "421 4.3.2 " HOST
                                               " Service shutting down\r\n");
    conv_free(c);

    /* Freed with an AUTH, a MAIL or a DELIVER pending: nothing leaks. */
    c = conv_sub();
    c->hold = true;
    conv_feed(c, "EHLO c\r\nAUTH PLAIN " PLAIN_GOOD "\r\n");
    assert_non_null(smtp_session_request(c->s));
    conv_free(c);
    c = conv_sub();
    conv_feed(c, SUB_LOGIN);
    c->hold = true;
    conv_feed(c, "MAIL FROM:<alice@example.org>\r\n");
    assert_non_null(smtp_session_request(c->s));
    conv_free(c);
    c = conv_sub();
    conv_feed(c, SUB_LOGIN "MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@example.org>\r\n");
    c->hold = true;
    conv_feed(c, "DATA\r\nFrom: a@example.org, b@example.org\r\n\r\n.\r\n");
    r = smtp_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->env->nfrom_addrs, 2);
    conv_free(c);

    /* Shut down while AUTH is pending; a challenge then writes nothing. */
    c = conv_sub();
    c->hold = true;
    conv_feed(c, "EHLO c\r\nAUTH SCRAM-SHA-256 Y2xpZW50LWZpcnN0\r\n");
    assert_int_equal(smtp_session_shutdown(c->s, &c->out), SMTP_SESSION_CLOSE);
    assert_int_equal(smtp_session_auth_challenge(c->s, (const uint8_t *)"x", 1, &c->out),
                     SMTP_SESSION_CLOSE);
    assert_null(smtp_session_request(c->s));
    assert_string_equal(conv_out(c),
                        GREETING EHLO_SUB_AUTH "421 4.3.2 " HOST " Service shutting down\r\n");
    conv_free(c);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_ehlo_helo),
        cmocka_unit_test(test_basic_transaction),
        cmocka_unit_test(test_pipelining_and_bytewise),
        cmocka_unit_test(test_case_insensitive_and_spaces),
        cmocka_unit_test(test_unknown_and_garbage),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_mail_params),
        cmocka_unit_test(test_null_path_and_postmaster),
        cmocka_unit_test(test_smtputf8),
        cmocka_unit_test(test_address_lengths),
        cmocka_unit_test(test_relay_tricks),
        cmocka_unit_test(test_too_many_recipients),
        cmocka_unit_test(test_rcpt_results),
        cmocka_unit_test(test_dot_stuffing),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_bare_lf_cr_normalised),
        cmocka_unit_test(test_empty_body_and_commands_bare_lf),
        cmocka_unit_test(test_text_line_limit),
        cmocka_unit_test(test_command_line_limit),
        cmocka_unit_test(test_message_size_limit),
        cmocka_unit_test(test_error_limit),
        cmocka_unit_test(test_bdat),
        cmocka_unit_test(test_bdat_refused_is_skipped),
        cmocka_unit_test(test_bdat_bad_size_closes),
        cmocka_unit_test(test_bdat_limits),
        cmocka_unit_test(test_starttls),
        cmocka_unit_test(test_starttls_pending_input_dropped),
        cmocka_unit_test(test_pending_input_buffered),
        cmocka_unit_test(test_pending_overflow),
        cmocka_unit_test(test_deliver_results),
        cmocka_unit_test(test_rset_and_ehlo_reset),
        cmocka_unit_test(test_misc_commands),
        cmocka_unit_test(test_timeout_and_shutdown),
        cmocka_unit_test(test_free_with_pending_request),
        cmocka_unit_test(test_default_limits),
        cmocka_unit_test(test_ipv6_client_and_state_names),
        cmocka_unit_test(test_sub_ehlo_advertises_auth),
        cmocka_unit_test(test_auth_plain),
        cmocka_unit_test(test_auth_login),
        cmocka_unit_test(test_auth_multi_step),
        cmocka_unit_test(test_auth_challenge_by_hand),
        cmocka_unit_test(test_auth_refused),
        cmocka_unit_test(test_auth_failures_count),
        cmocka_unit_test(test_auth_line_lengths),
        cmocka_unit_test(test_sub_mail_rcpt_deliver),
        cmocka_unit_test(test_sub_protocol_with_tls),
        cmocka_unit_test(test_sub_starttls_forgets_auth),
        cmocka_unit_test(test_sub_implicit_tls),
        cmocka_unit_test(test_mx_remote_and_sender_refused),
        cmocka_unit_test(test_sub_pipelining_and_bytewise),
        cmocka_unit_test(test_sub_pending_and_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
