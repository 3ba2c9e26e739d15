/* Unit tests of the pure POP3 server session (src/proto/pop3/pop3_session.c).
 *
 * A conversation is fed as bytes; every request is answered by a fixed
 * policy (see conv_answer) over a maildrop of three messages, and the
 * replies plus a log of the requests are compared with what RFC 1939, 2449,
 * 2595 and 5034 want. The same input fed one byte (or a few bytes) at a
 * time must give the same transcript.
 */
#include "testutil.h"

#include <stdbool.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proto/pop3/pop3_session.h"

#define HOST "pop.example.org"
#define BANNER "<1234.5678@pop.example.org>"
#define GREETING "+OK " HOST " POP3 ready " BANNER "\r\n"
#define SEND_PASS "+OK Send your password\r\n"
#define LOGGED_IN "+OK Logged in.\r\n"
#define AUTH_FAILED "-ERR [AUTH] Authentication failed.\r\n"
#define NOT_LOGGED_IN "-ERR Not logged in\r\n"
#define AFTER_LOGIN "-ERR Not allowed after login\r\n"
#define UNKNOWN "-ERR Unknown command\r\n"
#define BYE_AUTH "+OK correio POP3 server signing off\r\n"
#define REFUSED "-ERR [AUTH] Plaintext authentication is disallowed without TLS; use STLS first\r\n"
#define DIGEST "0123456789abcdef0123456789abcdef"
#define CAPA_HEAD                                                                                  \
    "+OK Capability list follows\r\n"                                                              \
    "TOP\r\n"                                                                                      \
    "UIDL\r\n"                                                                                     \
    "RESP-CODES\r\n"                                                                               \
    "AUTH-RESP-CODE\r\n"                                                                           \
    "PIPELINING\r\n"
#define CAPA_LOGIN "USER\r\nSASL PLAIN\r\n"
#define CAPA_TAIL "IMPLEMENTATION correio\r\n.\r\n"

/* The maildrop: dot lines, a bare-LF message without final newline, a
 * message without a blank line. UIDs are not in number order on purpose. */
static const char msg1[] = "Subject: one\r\n\r\nHello\r\n.dot line\r\n..two\r\n";
static const char msg2[] = "Subject: two\nX-Bare: lf\n\nbody 1\n.\nbody 3\nno final newline";
static const char msg3[] = "Header-Only: yes\r\nX: .\r\n.Starts: dot";
#define RETR1 "+OK 41 octets\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n...two\r\n.\r\n"
#define RETR2                                                                                      \
    "+OK 65 octets\r\nSubject: two\r\nX-Bare: lf\r\n\r\nbody 1\r\n..\r\nbody 3\r\n"                \
    "no final newline\r\n.\r\n"
#define RETR3 "+OK 38 octets\r\nHeader-Only: yes\r\nX: .\r\n..Starts: dot\r\n.\r\n"

static const struct pop3_msg maildrop[] = {
    {.uid = 30, .size = 41, .uidl = "uid-one"},
    {.uid = 10, .size = 65, .uidl = "uid-two"},
    {.uid = 20, .size = 38, .uidl = "uid-three"},
};

static struct pop3_session_config test_cfg(void)
{
    struct pop3_session_config cfg = {
        .hostname = HOST,
        .starttls_available = true,
        .allow_plaintext_auth = true,
        .max_errors = 10,
        .max_auth_failures = 3,
        .max_line = 255,
    };
    return cfg;
}

struct conv {
    struct pop3_session_config cfg;
    struct pop3_session *s;
    struct buf out;
    struct buf log; /* requests and answers */
    enum pop3_session_status st;
    enum pop3_retr_result retr; /* the answer to RETR/TOP */
    bool update_ok;
    bool tls_ok;
    bool hold; /* leave requests pending */
    size_t nmsgs;
    unsigned nreqs;
};

static struct conv *conv_new_full(const struct pop3_session_config *cfg, const char *banner,
                                  bool tls)
{
    struct conv *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->cfg = *cfg;
    c->tls_ok = true;
    c->update_ok = true;
    c->nmsgs = 3;
    c->s = pop3_session_new(&c->cfg, "192.0.2.7", banner, tls);
    assert_non_null(c->s);
    assert_string_equal(pop3_session_state_name(c->s), "init");
    pop3_session_start(c->s, &c->out);
    return c;
}

static struct conv *conv_new_cfg(const struct pop3_session_config *cfg)
{
    return conv_new_full(cfg, BANNER, false);
}

static struct conv *conv_new(void)
{
    struct pop3_session_config cfg = test_cfg();
    return conv_new_cfg(&cfg);
}

static void conv_free(struct conv *c)
{
    pop3_session_free(&c->s);
    assert_null(c->s);
    buf_free(&c->out);
    buf_free(&c->log);
    free(c);
}

static enum pop3_auth_result conv_auth_policy(const struct pop3_request *r)
{
    if (strcmp(r->user, "locked") == 0)
        return POP3_AUTH_IN_USE;
    if (strcmp(r->user, "temp") == 0)
        return POP3_AUTH_TEMPFAIL;
    if (r->auth_kind == POP3_AUTH_APOP) {
        if (strcmp(r->user, "noapop") == 0)
            return POP3_AUTH_NO_APOP;
        return strcmp(r->user, "alice") == 0 && strcmp(r->digest, DIGEST) == 0 ? POP3_AUTH_OK
                                                                               : POP3_AUTH_FAILED;
    }
    return strcmp(r->user, "alice") == 0 && strcmp(r->password, "secret") == 0 ? POP3_AUTH_OK
                                                                               : POP3_AUTH_FAILED;
}

static const char *conv_message(uint32_t uid)
{
    return uid == 30 ? msg1 : uid == 10 ? msg2 : msg3;
}

/* Answer one pending request. */
static void conv_answer_one(struct conv *c, const struct pop3_request *r)
{
    c->nreqs++;
    switch (r->type) {
    case POP3_REQ_AUTH: {
        enum pop3_auth_result res = conv_auth_policy(r);
        if (r->auth_kind == POP3_AUTH_APOP) {
            assert_null(r->password);
            buf_printf(&c->log, "AUTH apop user=%s digest=%s banner=%s -> %d\n", r->user, r->digest,
                       r->banner, (int)res);
        } else {
            assert_null(r->digest);
            assert_null(r->banner);
            buf_printf(&c->log, "AUTH password user=%s pass=[%s] -> %d\n", r->user, r->password,
                       (int)res);
        }
        c->st = pop3_session_auth_done(c->s, res, res == POP3_AUTH_OK ? "alice@example.org" : NULL,
                                       res == POP3_AUTH_OK ? maildrop : NULL,
                                       res == POP3_AUTH_OK ? c->nmsgs : 0, &c->out);
        break;
    }
    case POP3_REQ_RETR: {
        assert_non_null(r->msg);
        assert_int_equal(r->msg->uid, maildrop[r->msgno - 1].uid);
        buf_printf(&c->log, "RETR %u uid=%u top=%ld\n", r->msgno, r->msg->uid, r->top_lines);
        const char *m = conv_message(r->msg->uid);
        c->st = pop3_session_retr_done(c->s, c->retr, (const uint8_t *)m, strlen(m), &c->out);
        break;
    }
    case POP3_REQ_UPDATE:
        buf_puts(&c->log, "UPDATE");
        for (size_t i = 0; i < r->ndeleted; i++)
            buf_printf(&c->log, " %u", r->deleted[i]);
        buf_puts(&c->log, "\n");
        c->st = pop3_session_update_done(c->s, c->update_ok, &c->out);
        break;
    case POP3_REQ_STARTTLS:
        buf_puts(&c->log, "STARTTLS\n");
        c->st = pop3_session_tls_done(c->s, c->tls_ok, &c->out);
        break;
    default:
        fail_msg("request type %d", (int)r->type);
    }
}

/* Answer requests until none is pending. */
static void conv_answer(struct conv *c)
{
    const struct pop3_request *r;
    while (!c->hold && c->st == POP3_SESSION_CONTINUE && (r = pop3_session_request(c->s)))
        conv_answer_one(c, r);
}

/* Feed len octets in pieces of `step` (0: all at once), answering requests. */
static void conv_feed_n(struct conv *c, const char *data, size_t len, size_t step)
{
    if (step == 0)
        step = len ? len : 1;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        c->st = pop3_session_feed(c->s, data + i, n, &c->out);
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

/* Feed in, compare the replies it gave with want. */
static void conv_expect(struct conv *c, const char *in, const char *want)
{
    buf_reset(&c->out);
    conv_feed(c, in);
    assert_string_equal(conv_out(c), want);
}

/* Compare the request log with want, then clear it. */
static void conv_expect_log(struct conv *c, const char *want)
{
    assert_string_equal(conv_log(c), want);
    buf_reset(&c->log);
}

static void conv_login(struct conv *c)
{
    conv_expect(c, "USER alice\r\nPASS secret\r\n", SEND_PASS LOGGED_IN);
    conv_expect_log(c, "AUTH password user=alice pass=[secret] -> 0\n");
    assert_string_equal(pop3_session_state_name(c->s), "transaction");
}

/* Run a whole conversation; return "<output>\n====\n<log>status" (caller frees). */
static char *conv_transcript(const struct pop3_session_config *cfg, const char *in, size_t len,
                             size_t step)
{
    struct conv *c = conv_new_cfg(cfg);
    conv_feed_n(c, in, len, step);
    struct buf t = BUF_INIT;
    buf_printf(&t, "%s\n====\n%s\nstatus=%d state=%s", conv_out(c), conv_log(c), (int)c->st,
               pop3_session_state_name(c->s));
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

static void test_greeting_and_quit(void **state)
{
    struct conv *c = conv_new();
    assert_string_equal(conv_out(c), GREETING);
    assert_string_equal(pop3_session_state_name(c->s), "authorization");
    assert_false(pop3_session_authenticated(c->s));
    assert_null(pop3_session_account(c->s));
    assert_false(pop3_session_tls_active(c->s));
    conv_expect(c, "QUIT\r\n", BYE_AUTH);
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    assert_string_equal(pop3_session_state_name(c->s), "closed");
    assert_int_equal(c->nreqs, 0);
    /* Nothing more is read. */
    assert_int_equal(pop3_session_feed(c->s, "CAPA\r\n", 6, &c->out), POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), BYE_AUTH);
    conv_free(c);

    /* No banner: no APOP timestamp in the greeting, and no APOP. */
    struct pop3_session_config cfg = test_cfg();
    c = conv_new_full(&cfg, NULL, true);
    assert_string_equal(conv_out(c), "+OK " HOST " POP3 ready\r\n");
    assert_true(pop3_session_tls_active(c->s));
    conv_expect(c, "APOP alice " DIGEST "\r\n", "-ERR APOP is not available\r\n");
    assert_int_equal(c->nreqs, 0);
    conv_free(c);
}

static void test_user_pass(void **state)
{
    struct conv *c = conv_new();
    conv_login(c);
    assert_true(pop3_session_authenticated(c->s));
    assert_string_equal(pop3_session_account(c->s), "alice@example.org");
    conv_free(c);

    /* A password keeps its spaces; keywords are case-insensitive; bare LF. */
    c = conv_new();
    conv_expect(c, "user bob\npAsS  two words \n", SEND_PASS AUTH_FAILED);
    conv_expect_log(c, "AUTH password user=bob pass=[ two words ] -> 1\n");
    /* A failed PASS needs a new USER. */
    conv_expect(c, "PASS secret\r\n", "-ERR Send USER first\r\n");
    /* The last USER counts. */
    conv_expect(c, "USER bob\r\nUSER alice\r\nPASS secret\r\n", SEND_PASS SEND_PASS LOGGED_IN);
    conv_expect_log(c, "AUTH password user=alice pass=[secret] -> 0\n");
    conv_free(c);

    c = conv_new();
    conv_expect(c, "PASS secret\r\n", "-ERR Send USER first\r\n");
    conv_expect(c, "USER\r\nUSER a b\r\n", "-ERR Syntax: USER name\r\n-ERR Syntax: USER name\r\n");
    conv_expect(c, "USER alice\r\nPASS\r\nPASS \r\n",
                SEND_PASS "-ERR Syntax: PASS password\r\n-ERR Syntax: PASS password\r\n");
    /* USER was kept after a syntax error. */
    conv_expect(c, "PASS secret\r\n", LOGGED_IN);
    assert_int_equal(c->nreqs, 1);
    conv_free(c);
}

static void test_auth_results(void **state)
{
    struct conv *c = conv_new();
    conv_expect(c, "USER locked\r\nPASS x\r\n",
                SEND_PASS "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n");
    conv_expect(c, "USER temp\r\nPASS x\r\n",
                SEND_PASS "-ERR [SYS/TEMP] Temporary failure, try again later.\r\n");
    conv_expect(c, "APOP noapop " DIGEST "\r\n",
                "-ERR [AUTH] APOP is not enabled for this account (set a secret with: correio "
                "user apop-secret)\r\n");
    conv_expect(c, "USER alice\r\nPASS wrong\r\n", SEND_PASS AUTH_FAILED);
    assert_false(pop3_session_authenticated(c->s));
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    /* IN-USE and TEMPFAIL did not count: NO_APOP and FAILED did. */
    conv_expect(c, "USER alice\r\nPASS wrong\r\n",
                SEND_PASS AUTH_FAILED
                "-ERR [AUTH] Too many authentication failures, closing connection\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    /* The password is never in the replies. */
    assert_null(strstr(conv_out(c), "wrong"));
    conv_free(c);
}

static void test_apop(void **state)
{
    struct conv *c = conv_new();
    conv_expect(c, "APOP alice 0123456789ABCDEF0123456789abcdef\r\n", LOGGED_IN);
    conv_expect_log(c, "AUTH apop user=alice digest=" DIGEST " banner=" BANNER " -> 0\n");
    assert_true(pop3_session_authenticated(c->s));
    conv_free(c);

    c = conv_new();
    conv_expect(c,
                "APOP alice\r\n"
                "APOP alice 0123\r\n"
                "APOP alice " DIGEST "0\r\n"
                "APOP alice 0123456789abcdef0123456789abcdeg\r\n"
                "APOP alice " DIGEST " x\r\n",
                "-ERR Syntax: APOP name digest\r\n-ERR Syntax: APOP name digest\r\n"
                "-ERR Syntax: APOP name digest\r\n-ERR Syntax: APOP name digest\r\n"
                "-ERR Syntax: APOP name digest\r\n");
    assert_int_equal(c->nreqs, 0);
    conv_expect(c, "APOP bob " DIGEST "\r\n", AUTH_FAILED);
    conv_expect_log(c, "AUTH apop user=bob digest=" DIGEST " banner=" BANNER " -> 1\n");
    conv_free(c);
}

static void test_auth_plain(void **state)
{
    struct conv *c = conv_new();
    /* AUTH alone lists the mechanisms. */
    conv_expect(c, "AUTH\r\n", "+OK\r\nPLAIN\r\n.\r\n");
    /* "\0alice\0secret" with the initial response (RFC 5034 4). */
    conv_expect(c, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", LOGGED_IN);
    conv_expect_log(c, "AUTH password user=alice pass=[secret] -> 0\n");
    conv_free(c);

    /* With a continuation; authzid equal to the user is fine. */
    c = conv_new();
    conv_expect(c, "auth plain\r\n", "+ \r\n");
    assert_string_equal(pop3_session_state_name(c->s), "sasl");
    /* "alice\0alice\0secret" */
    conv_expect(c, "YWxpY2UAYWxpY2UAc2VjcmV0\r\n", LOGGED_IN);
    conv_expect_log(c, "AUTH password user=alice pass=[secret] -> 0\n");
    conv_free(c);

    c = conv_new();
    /* Cancelled: not an error, nothing asked. */
    conv_expect(c, "AUTH PLAIN\r\n*\r\n", "+ \r\n-ERR Authentication cancelled\r\n");
    assert_string_equal(pop3_session_state_name(c->s), "authorization");
    /* Bad base64, in the continuation and in the initial response. */
    conv_expect(c, "AUTH PLAIN\r\nnot base64!\r\n", "+ \r\n-ERR Invalid base64 data\r\n");
    conv_expect(c, "AUTH PLAIN AGFsaWNlAHNlY3JldA=\r\n", "-ERR Invalid base64 data\r\n");
    /* "=" is an empty response: not a PLAIN message. */
    conv_expect(c, "AUTH PLAIN =\r\n", "-ERR Malformed PLAIN response\r\n");
    /* "alice\0secret" (one NUL), "\0\0secret" (no user). */
    conv_expect(c, "AUTH PLAIN YWxpY2UAc2VjcmV0\r\nAUTH PLAIN AABzZWNyZXQ=\r\n",
                "-ERR Malformed PLAIN response\r\n-ERR Malformed PLAIN response\r\n");
    assert_int_equal(c->nreqs, 0);
    /* "bob\0alice\0secret": acting as another user is a failed login. */
    conv_expect(c, "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n",
                "-ERR [AUTH] The authorization identity must be empty or the user name\r\n");
    assert_int_equal(c->nreqs, 0);
    conv_expect(c, "AUTH CRAM-MD5\r\nAUTH PLAIN a b\r\n",
                "-ERR Unsupported authentication mechanism\r\n"
                "-ERR Syntax: AUTH mechanism [initial-response]\r\n");
    /* "\0alice\0wrong" */
    conv_expect(c, "AUTH PLAIN AGFsaWNlAHdyb25n\r\n", AUTH_FAILED);
    conv_expect_log(c, "AUTH password user=alice pass=[wrong] -> 1\n");
    conv_expect(c, "AUTH PLAIN AGFsaWNlAHdyb25n\r\n",
                AUTH_FAILED "-ERR [AUTH] Too many authentication failures, closing connection\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    conv_free(c);

    /* The response line may be longer than a command line. */
    struct pop3_session_config cfg = test_cfg();
    cfg.max_line = 40;
    c = conv_new_cfg(&cfg);
    conv_expect(c, "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldHNlY3JldHNlY3JldHNlY3JldHNlY3JldA==\r\n",
                "+ \r\n" AUTH_FAILED);
    conv_expect_log(c, "AUTH password user=alice pass=[secretsecretsecretsecretsecret] -> 1\n");
    conv_free(c);
}

static void test_plaintext_refused(void **state)
{
    struct pop3_session_config cfg = test_cfg();
    cfg.allow_plaintext_auth = false;
    struct conv *c = conv_new_cfg(&cfg);
    conv_expect(c, "CAPA\r\n", CAPA_HEAD "STLS\r\n" CAPA_TAIL);
    conv_expect(c, "USER alice\r\nPASS secret\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN\r\n",
                REFUSED REFUSED REFUSED REFUSED);
    conv_expect(c, "AUTH\r\n", "+OK\r\n.\r\n");
    assert_int_equal(c->nreqs, 0);
    /* APOP sends no clear password. */
    conv_expect(c, "APOP alice " DIGEST "\r\n", LOGGED_IN);
    conv_expect(c, "CAPA\r\n", CAPA_HEAD CAPA_TAIL);
    conv_free(c);

    /* Without a certificate there is nothing to suggest. */
    cfg.starttls_available = false;
    c = conv_new_cfg(&cfg);
    conv_expect(c, "CAPA\r\nUSER alice\r\nSTLS\r\n",
                CAPA_HEAD CAPA_TAIL
                "-ERR [AUTH] Plaintext authentication is disallowed without TLS\r\n"
                "-ERR STLS is not available\r\n");
    conv_free(c);

    /* POP3S: TLS from the start. */
    cfg.starttls_available = true;
    c = conv_new_full(&cfg, BANNER, true);
    conv_expect(c, "CAPA\r\n", CAPA_HEAD CAPA_LOGIN CAPA_TAIL);
    conv_expect(c, "STLS\r\n", "-ERR TLS is already active\r\n");
    conv_login(c);
    conv_free(c);
}

static void test_stls(void **state)
{
    struct pop3_session_config cfg = test_cfg();
    cfg.allow_plaintext_auth = false;
    struct conv *c = conv_new_cfg(&cfg);
    c->hold = true;
    /* What follows STLS in the same packet is dropped (CVE-2011-0411),
     * and so is what comes before the handshake is done. */
    conv_expect(c, "STLS\r\nUSER evil\r\nPASS evil\r\n", "+OK Begin TLS negotiation\r\n");
    assert_string_equal(pop3_session_state_name(c->s), "wait-tls");
    const struct pop3_request *r = pop3_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, POP3_REQ_STARTTLS);
    conv_expect(c, "QUIT\r\n", "");
    c->hold = false;
    conv_answer(c);
    conv_expect_log(c, "STARTTLS\n");
    assert_string_equal(conv_out(c), "");
    assert_true(pop3_session_tls_active(c->s));
    assert_string_equal(pop3_session_state_name(c->s), "authorization");
    /* STLS is no longer offered; USER and SASL are. */
    conv_expect(c, "CAPA\r\n", CAPA_HEAD CAPA_LOGIN CAPA_TAIL);
    conv_expect(c, "STLS\r\n", "-ERR TLS is already active\r\n");
    conv_login(c);
    conv_expect(c, "STLS\r\n", AFTER_LOGIN);
    conv_free(c);

    /* STLS forgets USER. */
    c = conv_new();
    conv_expect(c, "USER alice\r\nSTLS\r\n", SEND_PASS "+OK Begin TLS negotiation\r\n");
    conv_expect(c, "PASS secret\r\n", "-ERR Send USER first\r\n");
    conv_expect(c, "STLS x\r\n", "-ERR Syntax: STLS\r\n");
    conv_free(c);

    /* A failed handshake: the caller closes. */
    c = conv_new();
    c->tls_ok = false;
    conv_expect(c, "STLS\r\n", "+OK Begin TLS negotiation\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    assert_false(pop3_session_tls_active(c->s));
    conv_free(c);
}

static void test_capa(void **state)
{
    struct conv *c = conv_new();
    conv_expect(c, "CAPA\r\n", CAPA_HEAD CAPA_LOGIN "STLS\r\n" CAPA_TAIL);
    conv_expect(c, "CAPA x\r\n", "-ERR Syntax: CAPA\r\n");
    conv_login(c);
    conv_expect(c, "capa\r\n", CAPA_HEAD CAPA_LOGIN CAPA_TAIL);
    conv_free(c);
}

static void test_wrong_state(void **state)
{
    struct pop3_session_config cfg = test_cfg();
    cfg.max_errors = 100;
    struct conv *c = conv_new_cfg(&cfg);
    conv_expect(c,
                "STAT\r\nLIST\r\nLIST 1\r\nUIDL\r\nRETR 1\r\nTOP 1 0\r\nDELE 1\r\nNOOP\r\nRSET\r\n",
                NOT_LOGGED_IN NOT_LOGGED_IN NOT_LOGGED_IN NOT_LOGGED_IN NOT_LOGGED_IN NOT_LOGGED_IN
                    NOT_LOGGED_IN NOT_LOGGED_IN NOT_LOGGED_IN);
    conv_expect(c, "XTND\r\n\r\n STAT\r\nSTATS\r\nST\r\n", UNKNOWN UNKNOWN UNKNOWN UNKNOWN UNKNOWN);
    conv_login(c);
    conv_expect(c,
                "USER alice\r\nPASS secret\r\nAPOP alice " DIGEST "\r\nAUTH PLAIN\r\nAUTH\r\n"
                "STLS\r\n",
                AFTER_LOGIN AFTER_LOGIN AFTER_LOGIN AFTER_LOGIN AFTER_LOGIN AFTER_LOGIN);
    conv_expect(c, "HELO\r\n", UNKNOWN);
    assert_int_equal(c->nreqs, 1);
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    conv_free(c);
}

static void test_transaction(void **state)
{
    struct conv *c = conv_new();
    conv_login(c);
    conv_expect(c, "STAT\r\n", "+OK 3 144\r\n");
    conv_expect(c, "LIST\r\n", "+OK 3 messages (144 octets)\r\n1 41\r\n2 65\r\n3 38\r\n.\r\n");
    conv_expect(c, "LIST 2\r\nLIST 4\r\nLIST 0\r\nLIST 02\r\n",
                "+OK 2 65\r\n-ERR No such message\r\n-ERR No such message\r\n+OK 2 65\r\n");
    conv_expect(c, "LIST x\r\nLIST +1\r\nLIST -1\r\nLIST 1 2\r\nLIST 99999999999999999999999\r\n",
                "-ERR Invalid message number\r\n-ERR Invalid message number\r\n"
                "-ERR Invalid message number\r\n-ERR Syntax: LIST [msg]\r\n"
                "-ERR No such message\r\n");
    conv_expect(c, "UIDL\r\n",
                "+OK Unique-ID listing follows\r\n1 uid-one\r\n2 uid-two\r\n3 uid-three\r\n.\r\n");
    conv_expect(c, "UIDL 3\r\nUIDL 4\r\n", "+OK 3 uid-three\r\n-ERR No such message\r\n");
    conv_expect(c, "NOOP\r\nNOOP x\r\n", "+OK\r\n-ERR Syntax: NOOP\r\n");
    conv_expect(c, "DELE 2\r\nDELE 2\r\nDELE\r\nDELE 9\r\n",
                "+OK Message 2 deleted\r\n-ERR Message 2 already deleted\r\n"
                "-ERR Syntax: DELE msg\r\n-ERR No such message\r\n");
    conv_expect(c, "STAT\r\nLIST\r\nUIDL\r\n",
                "+OK 2 79\r\n"
                "+OK 2 messages (79 octets)\r\n1 41\r\n3 38\r\n.\r\n"
                "+OK Unique-ID listing follows\r\n1 uid-one\r\n3 uid-three\r\n.\r\n");
    conv_expect(c, "LIST 2\r\nUIDL 2\r\nRETR 2\r\nTOP 2 1\r\n",
                "-ERR Message 2 already deleted\r\n-ERR Message 2 already deleted\r\n"
                "-ERR Message 2 already deleted\r\n-ERR Message 2 already deleted\r\n");
    conv_expect(c, "RSET\r\nSTAT\r\nRSET x\r\nSTAT x\r\n",
                "+OK maildrop has 3 messages (144 octets)\r\n+OK 3 144\r\n"
                "-ERR Syntax: RSET\r\n-ERR Syntax: STAT\r\n");
    assert_int_equal(c->nreqs, 1);
    conv_expect(c, "QUIT\r\n", "+OK correio POP3 server signing off (0 messages deleted)\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    assert_string_equal(conv_log(c), "");
    /* Still holds the maildrop: the caller releases its lock. */
    assert_true(pop3_session_authenticated(c->s));
    conv_free(c);
}

static void test_retr(void **state)
{
    struct conv *c = conv_new();
    conv_login(c);
    conv_expect(c, "RETR 1\r\n", RETR1);
    conv_expect(c, "RETR 2\r\n", RETR2);
    conv_expect(c, "retr 3\r\n", RETR3);
    conv_expect_log(c, "RETR 1 uid=30 top=-1\nRETR 2 uid=10 top=-1\nRETR 3 uid=20 top=-1\n");
    conv_expect(c, "RETR\r\nRETR 1 2\r\nRETR 4\r\n",
                "-ERR Syntax: RETR msg\r\n-ERR Syntax: RETR msg\r\n-ERR No such message\r\n");
    assert_string_equal(conv_log(c), "");

    c->retr = POP3_RETR_GONE;
    conv_expect(c, "RETR 2\r\nNOOP\r\n",
                "-ERR Message 2 was removed by another session\r\n+OK\r\n");
    c->retr = POP3_RETR_TEMPFAIL;
    conv_expect(c, "TOP 3 1\r\nNOOP\r\n",
                "-ERR [SYS/TEMP] Cannot read message 3, try again later\r\n+OK\r\n");
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    assert_string_equal(pop3_session_state_name(c->s), "transaction");
    conv_free(c);
}

static void test_top(void **state)
{
    struct conv *c = conv_new();
    conv_login(c);
    conv_expect(c, "TOP 1 0\r\n", "+OK Top of message follows\r\nSubject: one\r\n\r\n.\r\n");
    conv_expect(c, "TOP 1 2\r\n",
                "+OK Top of message follows\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n.\r\n");
    conv_expect(c, "TOP 1 99999999999999999999999\r\n",
                "+OK Top of message follows\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n"
                "...two\r\n.\r\n");
    conv_expect(c, "TOP 2 2\r\n",
                "+OK Top of message follows\r\nSubject: two\r\nX-Bare: lf\r\n\r\nbody 1\r\n"
                "..\r\n.\r\n");
    /* No blank line: all of it is header. */
    conv_expect(c, "TOP 3 0\r\n",
                "+OK Top of message follows\r\nHeader-Only: yes\r\nX: .\r\n..Starts: dot\r\n"
                ".\r\n");
    conv_expect_log(c, "RETR 1 uid=30 top=0\nRETR 1 uid=30 top=2\n"
                       "RETR 1 uid=30 top=9223372036854775807\nRETR 2 uid=10 top=2\n"
                       "RETR 3 uid=20 top=0\n");
    conv_expect(c, "TOP 1\r\nTOP 1 -1\r\nTOP 1 +1\r\nTOP 1 x\r\nTOP 1 1 1\r\nTOP 5 1\r\n",
                "-ERR Syntax: TOP msg lines\r\n-ERR Syntax: TOP msg lines\r\n"
                "-ERR Syntax: TOP msg lines\r\n-ERR Syntax: TOP msg lines\r\n"
                "-ERR Syntax: TOP msg lines\r\n-ERR No such message\r\n");
    assert_string_equal(conv_log(c), "");
    conv_free(c);
}

/* Line ends and stuffing at the edges of the data. */
static void test_retr_edges(void **state)
{
    /* RETR says the size LIST gave (41 for message 1), whatever the data. */
    static const struct {
        const char *data;
        long top;
        const char *want;
    } cases[] = {
        {"", -1, "+OK 41 octets\r\n.\r\n"},
        {".", -1, "+OK 41 octets\r\n..\r\n.\r\n"},
        {"\n", -1, "+OK 41 octets\r\n\r\n.\r\n"},
        {"a\r", -1, "+OK 41 octets\r\na\r\n.\r\n"},
        {"a\rb\r\n", -1, "+OK 41 octets\r\na\rb\r\n.\r\n"},
        {".\r\n.\r\n", -1, "+OK 41 octets\r\n..\r\n..\r\n.\r\n"},
        {"\r\n.x", 0, "+OK Top of message follows\r\n\r\n.\r\n"},
        {"\r\n.x", 1, "+OK Top of message follows\r\n\r\n..x\r\n.\r\n"},
        {"h: 1\n\n\n\nb", 2, "+OK Top of message follows\r\nh: 1\r\n\r\n\r\n\r\n.\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct conv *c = conv_new();
        conv_login(c);
        c->hold = true;
        char cmd[32];
        if (cases[i].top < 0)
            snprintf(cmd, sizeof(cmd), "RETR 1\r\n");
        else
            snprintf(cmd, sizeof(cmd), "TOP 1 %ld\r\n", cases[i].top);
        conv_expect(c, cmd, "");
        const struct pop3_request *r = pop3_session_request(c->s);
        assert_non_null(r);
        assert_int_equal(r->type, POP3_REQ_RETR);
        assert_int_equal(r->top_lines, cases[i].top);
        c->st = pop3_session_retr_done(c->s, POP3_RETR_OK, (const uint8_t *)cases[i].data,
                                       strlen(cases[i].data), &c->out);
        assert_string_equal(conv_out(c), cases[i].want);
        assert_int_equal(c->st, POP3_SESSION_CONTINUE);
        conv_free(c);
    }
}

static void test_quit_update(void **state)
{
    struct conv *c = conv_new();
    conv_login(c);
    conv_expect(c, "DELE 3\r\nDELE 1\r\nQUIT\r\n",
                "+OK Message 3 deleted\r\n+OK Message 1 deleted\r\n"
                "+OK correio POP3 server signing off (2 messages deleted)\r\n");
    /* UIDs ascending, not in message-number order. */
    conv_expect_log(c, "UPDATE 20 30\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    conv_free(c);

    c = conv_new();
    c->update_ok = false;
    conv_login(c);
    conv_expect(
        c, "DELE 2\r\nQUIT\r\n",
        "+OK Message 2 deleted\r\n-ERR [SYS/TEMP] Some deleted messages were not removed\r\n");
    conv_expect_log(c, "UPDATE 10\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    conv_free(c);

    /* While UPDATE is pending the session only waits. */
    c = conv_new();
    conv_login(c);
    c->hold = true;
    conv_expect(c, "DELE 1\r\nQUIT\r\nNOOP\r\n", "+OK Message 1 deleted\r\n");
    assert_string_equal(pop3_session_state_name(c->s), "update");
    const struct pop3_request *r = pop3_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, POP3_REQ_UPDATE);
    assert_int_equal(r->ndeleted, 1);
    assert_int_equal(r->deleted[0], 30);
    buf_reset(&c->out);
    assert_int_equal(pop3_session_update_done(c->s, true, &c->out), POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), "+OK correio POP3 server signing off (1 message deleted)\r\n");
    assert_null(pop3_session_request(c->s));
    conv_free(c);

    /* DELE then RSET then QUIT: nothing to remove. */
    c = conv_new();
    conv_login(c);
    conv_expect(c, "DELE 1\r\nRSET\r\nQUIT\r\n",
                "+OK Message 1 deleted\r\n+OK maildrop has 3 messages (144 octets)\r\n"
                "+OK correio POP3 server signing off (0 messages deleted)\r\n");
    assert_string_equal(conv_log(c), "");
    conv_free(c);
}

/* Only QUIT in TRANSACTION removes anything. */
static void test_no_update_on_other_ends(void **state)
{
    struct conv *c = conv_new();
    conv_login(c);
    conv_expect(c, "DELE 1\r\n", "+OK Message 1 deleted\r\n");
    buf_reset(&c->out);
    assert_int_equal(pop3_session_timeout(c->s, &c->out), POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), "-ERR Autologout; idle for too long\r\n");
    assert_null(pop3_session_request(c->s));
    conv_expect(c, "QUIT\r\n", "");
    assert_string_equal(conv_log(c), "");
    /* A second end writes nothing. */
    assert_int_equal(pop3_session_shutdown(c->s, &c->out), POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), "");
    conv_free(c);

    c = conv_new();
    conv_login(c);
    conv_expect(c, "DELE 1\r\n", "+OK Message 1 deleted\r\n");
    buf_reset(&c->out);
    assert_int_equal(pop3_session_shutdown(c->s, &c->out), POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), "-ERR [SYS/TEMP] Server shutting down\r\n");
    assert_null(pop3_session_request(c->s));
    conv_free(c);

    /* Too many errors after DELE. */
    struct pop3_session_config cfg = test_cfg();
    cfg.max_errors = 2;
    c = conv_new_cfg(&cfg);
    conv_login(c);
    conv_expect(c, "DELE 1\r\nFOO\r\nBAR\r\nQUIT\r\n",
                "+OK Message 1 deleted\r\n" UNKNOWN UNKNOWN
                "-ERR Too many errors, closing connection\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    assert_string_equal(conv_log(c), "");
    conv_free(c);

    /* Dropped: the caller frees the session, nothing asked. */
    c = conv_new();
    conv_login(c);
    conv_expect(c, "DELE 1\r\nDELE 2\r\n", "+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n");
    assert_null(pop3_session_request(c->s));
    conv_free(c);
}

/* Pipelined commands while requests are pending are answered in order. */
/* pop3_format_reply (what a worker thread formats) and retr_done_reply. */
static void test_format_reply(void **state)
{
    struct buf b = BUF_INIT;
    assert_int_equal(pop3_format_reply((const uint8_t *)"a\r\n.b\r\nc\nd", 10, -1, 12, &b), 0);
    assert_int_equal(buf_size(&b), strlen("+OK 12 octets\r\na\r\n..b\r\nc\r\nd\r\n.\r\n"));
    assert_memory_equal(buf_ptr(&b), "+OK 12 octets\r\na\r\n..b\r\nc\r\nd\r\n.\r\n", buf_size(&b));
    buf_reset(&b);
    assert_int_equal(pop3_format_reply((const uint8_t *)"h: 1\r\n\r\n1\r\n2\r\n", 14, 1, 14, &b),
                     0);
    assert_memory_equal(buf_ptr(&b), "+OK Top of message follows\r\nh: 1\r\n\r\n1\r\n.\r\n",
                        buf_size(&b));
    buf_free(&b);

    struct conv *c = conv_new();
    conv_login(c);
    c->hold = true;
    conv_expect(c, "RETR 1\r\nNOOP\r\n", "");
    struct buf reply = BUF_INIT;
    assert_int_equal(pop3_format_reply((const uint8_t *)"x\r\n", 3, -1, 41, &reply), 0);
    buf_reset(&c->out);
    c->st = pop3_session_retr_done_reply(c->s, &reply, &c->out);
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    assert_string_equal(conv_out(c), "+OK 41 octets\r\nx\r\n.\r\n+OK\r\n");
    assert_int_equal(buf_size(&reply), 0);
    buf_free(&reply);
    conv_free(c);
}

/* pop3_session_pipelined_retrs: numbers of RETRs queued after the pending
 * one, in order, stopping at anything else or a message that is no more. */
static void test_pipelined_retrs(void **state)
{
    struct conv *c = conv_new();
    conv_login(c);
    c->hold = true;
    unsigned v[8];
    assert_int_equal(pop3_session_pipelined_retrs(c->s, v, 8), 0); /* nothing pending */
    conv_expect(c, "DELE 2\r\nRETR 1\r\nretr 3\nRETR 3\r\nRETR 2\r\nRETR 1\r\n",
                "+OK Message 2 deleted\r\n");
    assert_int_equal(pop3_session_request(c->s)->msgno, 1);
    assert_int_equal(pop3_session_pipelined_retrs(c->s, v, 8), 2); /* 3, 3; then the deleted 2 */
    assert_int_equal(v[0], 3);
    assert_int_equal(v[1], 3);
    assert_int_equal(pop3_session_pipelined_retrs(c->s, v, 1), 1);
    conv_free(c);
    c = conv_new();
    conv_login(c);
    c->hold = true;
    conv_expect(c, "RETR 1\r\nRETR 2\r\nRETR 9\r\nRETR 3\r\nRETR 3", "");
    assert_int_equal(pop3_session_pipelined_retrs(c->s, v, 8), 1); /* 9 does not exist */
    assert_int_equal(v[0], 2);
    conv_free(c);
}

static void test_pipelining(void **state)
{
    struct conv *c = conv_new();
    c->hold = true;
    conv_expect(c, "USER alice\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nRETR 2\r\nDELE 3\r\nQUIT\r\n",
                SEND_PASS);
    const struct pop3_request *r = pop3_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, POP3_REQ_AUTH);
    assert_string_equal(pop3_session_state_name(c->s), "wait-auth");
    /* More input while waiting is only buffered. */
    conv_expect(c, "NOOP\r\n", "");
    buf_reset(&c->out);
    conv_answer_one(c, r);
    assert_string_equal(conv_out(c), LOGGED_IN "+OK 3 144\r\n");
    r = pop3_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, POP3_REQ_RETR);
    assert_int_equal(r->msgno, 1);
    /* The read-ahead hint: RETR 2 is pipelined, then DELE stops the list. */
    unsigned ahead[4];
    assert_int_equal(pop3_session_pipelined_retrs(c->s, ahead, 4), 1);
    assert_int_equal(ahead[0], 2);
    assert_int_equal(pop3_session_pipelined_retrs(c->s, ahead, 0), 0);
    buf_reset(&c->out);
    conv_answer_one(c, r);
    assert_string_equal(conv_out(c), RETR1);
    r = pop3_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->msgno, 2);
    assert_int_equal(pop3_session_pipelined_retrs(c->s, ahead, 4), 0);
    buf_reset(&c->out);
    conv_answer_one(c, r);
    assert_string_equal(conv_out(c), RETR2 "+OK Message 3 deleted\r\n");
    r = pop3_session_request(c->s);
    assert_non_null(r);
    assert_int_equal(r->type, POP3_REQ_UPDATE);
    buf_reset(&c->out);
    conv_answer_one(c, r);
    assert_string_equal(conv_out(c), "+OK correio POP3 server signing off (1 message deleted)\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    conv_expect_log(c, "AUTH password user=alice pass=[secret] -> 0\n"
                       "RETR 1 uid=30 top=-1\nRETR 2 uid=10 top=-1\nUPDATE 20\n");
    conv_free(c);
}

/* A conversation touching most paths, without STLS (whose input
 * discarding depends on feed boundaries by design). */
static const char long_conv[] = "CAPA\r\n"
                                "NOOP\r\n"
                                "AUTH\r\n"
                                "AUTH PLAIN\r\n"
                                "*\r\n"
                                "AUTH PLAIN\n"
                                "AGFsaWNlAHdyb25n\n"
                                "APOP alice " DIGEST "x\r\n"
                                "USER bob\r\n"
                                "PASS no pass\r\n"
                                "us\0er x\r\n"
                                "USER alice\r\n"
                                "PASS secret\r\n"
                                "STAT\r\n"
                                "LIST\r\n"
                                "UIDL 2\r\n"
                                "RETR 1\r\n"
                                "TOP 2 1\n"
                                "DELE 1\r\n"
                                "RETR 1\r\n"
                                "RSET\r\n"
                                "DELE 3\r\n"
                                "TOP 3 0\r\n"
                                "BOGUS\r\n"
                                "QUIT\r\n"
                                "NOOP\r\n";

static void test_bytewise(void **state)
{
    struct pop3_session_config cfg = test_cfg();
    size_t len = sizeof(long_conv) - 1;
    char *whole = conv_transcript(&cfg, long_conv, len, 0);
    assert_non_null(strstr(whole, "UPDATE 20\n"));
    assert_non_null(strstr(whole, RETR1));
    assert_non_null(strstr(whole, "-ERR Invalid character in command\r\n"));
    assert_non_null(strstr(whole, "status=1 state=closed"));
    static const size_t steps[] = {1, 2, 3, 5, 7, 13, 64};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char *t = conv_transcript(&cfg, long_conv, len, steps[i]);
        assert_string_equal(t, whole);
        free(t);
    }
    free(whole);
}

static void test_long_line(void **state)
{
    struct conv *c = conv_new();
    /* 255 octets including CRLF is fine. */
    char *arg = str_repeat('a', 255 - 7);
    struct buf in = BUF_INIT;
    buf_printf(&in, "USER %s\r\n", arg);
    assert_int_equal(buf_size(&in), 255);
    conv_expect(c, buf_cstr(&in), SEND_PASS);
    /* One more is not, and the rest of the line is dropped. */
    buf_reset(&in);
    buf_printf(&in, "USER %sa\r\nCAPA x\r\n", arg);
    conv_expect(c, buf_cstr(&in), "-ERR Line too long\r\n-ERR Syntax: CAPA\r\n");
    /* Split anyhow, the same. */
    buf_reset(&c->out);
    conv_feed_n(c, buf_cstr(&in), buf_size(&in), 1);
    assert_string_equal(conv_out(c), "-ERR Line too long\r\n-ERR Syntax: CAPA\r\n");
    /* Far longer, without an LF yet: one error as soon as the limit is passed. */
    char *huge = str_repeat('x', 4000);
    conv_expect(c, huge, "-ERR Line too long\r\n");
    conv_expect(c, huge, "");
    conv_expect(c, "\r\nQUIT\r\n", BYE_AUTH);
    free(huge);
    free(arg);
    buf_free(&in);
    conv_free(c);

    /* The SASL response line has its own, larger limit. */
    c = conv_new();
    huge = str_repeat('A', 5000);
    conv_expect(c, "AUTH PLAIN\r\n", "+ \r\n");
    conv_expect(c, huge, "-ERR Line too long\r\n");
    assert_string_equal(pop3_session_state_name(c->s), "authorization");
    conv_expect(c, "\r\nCAPA x\r\n", "-ERR Syntax: CAPA\r\n");
    free(huge);
    conv_free(c);
}

static void test_bad_characters(void **state)
{
    struct conv *c = conv_new();
    static const char in[] = "NO\0OP\r\nUSER a\x01\r\nUSER \x7f\r\nUSER a\rb\r\n";
    conv_feed_n(c, in, sizeof(in) - 1, 0);
    assert_string_equal(conv_out(c), GREETING "-ERR Invalid character in command\r\n"
                                              "-ERR Invalid character in command\r\n"
                                              "-ERR Invalid character in command\r\n"
                                              "-ERR Invalid character in command\r\n");
    conv_feed_n(c, "PASS a\0b\r\n", 10, 0);
    assert_string_equal(pop3_session_state_name(c->s), "authorization");
    assert_int_equal(c->nreqs, 0);
    conv_free(c);
}

static void test_max_errors(void **state)
{
    struct pop3_session_config cfg = test_cfg();
    cfg.max_errors = 3;
    struct conv *c = conv_new_cfg(&cfg);
    /* Not counted: a cancelled AUTH. */
    conv_expect(c, "AUTH PLAIN\r\n*\r\nFOO\r\nSTAT\r\n",
                "+ \r\n-ERR Authentication cancelled\r\n" UNKNOWN NOT_LOGGED_IN);
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    conv_expect(c, "GET / HTTP/1.0\r\nHost: x\r\n",
                UNKNOWN "-ERR Too many errors, closing connection\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    conv_free(c);

    /* Not counted: "no such message" for a well-formed number. */
    c = conv_new_cfg(&cfg);
    conv_login(c);
    conv_expect(c, "RETR 9\r\nLIST 9\r\nDELE 9\r\nTOP 9 0\r\nUIDL 9\r\n",
                "-ERR No such message\r\n-ERR No such message\r\n-ERR No such message\r\n"
                "-ERR No such message\r\n-ERR No such message\r\n");
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    conv_free(c);

    /* Defaults when the configuration leaves 0: 10 errors, 3 failures, 255 octets. */
    struct pop3_session_config zero = {.hostname = HOST, .allow_plaintext_auth = true};
    c = conv_new_cfg(&zero);
    for (int i = 0; i < 9; i++)
        conv_feed(c, "X\r\n");
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    conv_feed(c, "X\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    conv_free(c);
    c = conv_new_cfg(&zero);
    conv_feed(c, "USER a\r\nPASS b\r\nUSER a\r\nPASS b\r\n");
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    conv_feed(c, "USER a\r\nPASS b\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    conv_free(c);
}

static void test_pending_overflow(void **state)
{
    struct conv *c = conv_new();
    c->hold = true;
    conv_expect(c, "USER alice\r\nPASS secret\r\n", SEND_PASS);
    char *chunk = str_repeat('N', 256 * 1024);
    for (int i = 0; i < 4; i++)
        conv_expect(c, chunk, "");
    assert_int_equal(c->st, POP3_SESSION_CONTINUE);
    conv_expect(c, "NOOP\r\n", "-ERR Too much pipelined input, closing connection\r\n");
    assert_int_equal(c->st, POP3_SESSION_CLOSE);
    /* The request stays valid until its answer, which then writes nothing. */
    const struct pop3_request *r = pop3_session_request(c->s);
    assert_non_null(r);
    assert_string_equal(r->user, "alice");
    buf_reset(&c->out);
    assert_int_equal(
        pop3_session_auth_done(c->s, POP3_AUTH_OK, "alice@example.org", maildrop, 3, &c->out),
        POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), "");
    /* It holds the maildrop all the same: the caller must release it. */
    assert_true(pop3_session_authenticated(c->s));
    assert_string_equal(pop3_session_account(c->s), "alice@example.org");
    free(chunk);
    conv_free(c);
}

static void test_ends_while_pending(void **state)
{
    /* Timeout while RETR is pending: the late answer writes nothing. */
    struct conv *c = conv_new();
    conv_login(c);
    c->hold = true;
    conv_expect(c, "RETR 1\r\n", "");
    assert_int_equal(pop3_session_timeout(c->s, &c->out), POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), "-ERR Autologout; idle for too long\r\n");
    buf_reset(&c->out);
    assert_int_equal(
        pop3_session_retr_done(c->s, POP3_RETR_OK, (const uint8_t *)msg1, strlen(msg1), &c->out),
        POP3_SESSION_CLOSE);
    assert_string_equal(conv_out(c), "");
    conv_free(c);

    /* Free with requests pending. */
    c = conv_new();
    c->hold = true;
    conv_expect(c, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTAT\r\n", "");
    assert_non_null(pop3_session_request(c->s));
    conv_free(c);
    c = conv_new();
    conv_login(c);
    c->hold = true;
    conv_expect(c, "DELE 1\r\nQUIT\r\n", "+OK Message 1 deleted\r\n");
    assert_non_null(pop3_session_request(c->s));
    conv_free(c);

    /* Done calls that do not match the pending request are ignored. */
    c = conv_new();
    assert_int_equal(pop3_session_retr_done(c->s, POP3_RETR_OK, NULL, 0, &c->out),
                     POP3_SESSION_CONTINUE);
    assert_int_equal(pop3_session_update_done(c->s, true, &c->out), POP3_SESSION_CONTINUE);
    assert_int_equal(pop3_session_tls_done(c->s, true, &c->out), POP3_SESSION_CONTINUE);
    assert_int_equal(pop3_session_auth_done(c->s, POP3_AUTH_OK, "x", NULL, 0, &c->out),
                     POP3_SESSION_CONTINUE);
    assert_false(pop3_session_authenticated(c->s));
    assert_string_equal(conv_out(c), GREETING);
    conv_free(c);

    pop3_session_free(NULL);
    struct pop3_session *none = NULL;
    pop3_session_free(&none);
    assert_string_equal(pop3_session_state_name(NULL), "none");
}

static void test_empty_maildrop(void **state)
{
    struct conv *c = conv_new();
    c->nmsgs = 0;
    conv_login(c);
    conv_expect(c, "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nRSET\r\nQUIT\r\n",
                "+OK 0 0\r\n+OK 0 messages (0 octets)\r\n.\r\n"
                "+OK Unique-ID listing follows\r\n.\r\n-ERR No such message\r\n"
                "+OK maildrop has 0 messages (0 octets)\r\n"
                "+OK correio POP3 server signing off (0 messages deleted)\r\n");
    conv_free(c);
}

/* Input fed before the greeting is answered after it. */
static void test_feed_before_start(void **state)
{
    struct pop3_session_config cfg = test_cfg();
    struct pop3_session *s = pop3_session_new(&cfg, NULL, BANNER, false);
    assert_non_null(s);
    struct buf out = BUF_INIT;
    assert_int_equal(pop3_session_feed(s, "CAPA x\r\n", 8, &out), POP3_SESSION_CONTINUE);
    assert_int_equal(buf_size(&out), 0);
    pop3_session_start(s, &out);
    assert_string_equal(buf_cstr(&out), GREETING "-ERR Syntax: CAPA\r\n");
    pop3_session_free(&s);
    buf_free(&out);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_and_quit),
        cmocka_unit_test(test_user_pass),
        cmocka_unit_test(test_auth_results),
        cmocka_unit_test(test_apop),
        cmocka_unit_test(test_auth_plain),
        cmocka_unit_test(test_plaintext_refused),
        cmocka_unit_test(test_stls),
        cmocka_unit_test(test_capa),
        cmocka_unit_test(test_wrong_state),
        cmocka_unit_test(test_transaction),
        cmocka_unit_test(test_retr),
        cmocka_unit_test(test_top),
        cmocka_unit_test(test_retr_edges),
        cmocka_unit_test(test_quit_update),
        cmocka_unit_test(test_no_update_on_other_ends),
        cmocka_unit_test(test_format_reply),
        cmocka_unit_test(test_pipelined_retrs),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_bytewise),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_bad_characters),
        cmocka_unit_test(test_max_errors),
        cmocka_unit_test(test_pending_overflow),
        cmocka_unit_test(test_ends_while_pending),
        cmocka_unit_test(test_empty_maildrop),
        cmocka_unit_test(test_feed_before_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
