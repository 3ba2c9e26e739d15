/* The IMAP session core against a real store: greeting, capabilities,
 * LOGIN/AUTHENTICATE rules, SELECT/EXAMINE, states, BAD limits, STARTTLS,
 * IDLE woken by a delivery, other sessions' changes, split input. */
#include "testutil.h"

#include "cli/cli.h"
#include "lib/base64.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

#define PASSWORD "secret-pass-1"

struct fx {
    char *dir;
    struct store *st;
    struct imap_session_config cfg;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256], hash[256];
    f->dir = test_tmpdir();
    if (store_open(&f->st, f->dir, err, sizeof(err)) < 0 ||
        store_domain_add(f->st, "example.test", err, sizeof(err)) < 0 ||
        cli_password_hash(PASSWORD, hash, sizeof(hash)) < 0 ||
        store_account_add(f->st, "alice@example.test", hash, err, sizeof(err)) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    f->cfg = (struct imap_session_config){
        .hostname = "mx.example.test",
        .starttls_available = true,
        .allow_plaintext_auth = true,
        .max_bad_commands = 5,
        .max_line = 8192,
        .append_limit = 1 << 20,
    };
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    store_close(&f->st);
    test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void deliver(struct fx *f, const char *body)
{
    struct iovec iov = {(void *)body, strlen(body)};
    struct store_delivery d = {.account = "alice@example.test", .mailbox = "INBOX", .iov = &iov,
                               .iovcnt = 1, .internal_date = 1700000000};
    assert_int_equal(store_deliver(f->st, &d, 1), 0);
}

/* Feed input (in pieces of `step` bytes; 0 = all at once) and run every
 * request the way the daemon does, STARTTLS answered as a success. */
static enum imap_session_status drive(struct fx *f, struct imap_session *s, const char *in,
                                      size_t step, struct buf *out)
{
    size_t len = strlen(in), off = 0;
    enum imap_session_status st = IMAP_SESSION_CONTINUE;
    while (off < len && st == IMAP_SESSION_CONTINUE) {
        size_t n = step ? (len - off < step ? len - off : step) : len;
        st = imap_session_feed(s, in + off, n, out);
        off += n;
        for (;;) {
            enum imap_request rq = imap_session_request(s);
            if (st != IMAP_SESSION_CONTINUE || rq == IMAP_REQ_NONE)
                break;
            if (rq == IMAP_REQ_STARTTLS) {
                st = imap_session_tls_done(s, true, out);
                continue;
            }
            imap_session_execute(s, f->st);
            st = imap_session_execute_done(s, out);
        }
    }
    return st;
}

static struct imap_session *session(struct fx *f, bool tls, struct buf *out)
{
    struct imap_session *s = imap_session_new(&f->cfg, "127.0.0.1", "t1", tls);
    assert_non_null(s);
    imap_session_start(s, out);
    return s;
}

static void assert_has(struct buf *out, const char *needle)
{
    const char *txt = buf_cstr(out);
    if (!strstr(txt, needle))
        fail_msg("expected %s in:\n%s", needle, txt);
}

static void assert_lacks(struct buf *out, const char *needle)
{
    const char *txt = buf_cstr(out);
    if (strstr(txt, needle))
        fail_msg("did not expect %s in:\n%s", needle, txt);
}

static void test_greeting_and_plaintext_rules(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT;
    f->cfg.allow_plaintext_auth = false;
    struct imap_session *s = session(f, false, &out);
    assert_has(&out, "* OK [CAPABILITY IMAP4rev1 ");
    assert_has(&out, " STARTTLS LOGINDISABLED] mx.example.test");
    assert_lacks(&out, "AUTH=PLAIN");
    buf_reset(&out);
    drive(f, s, "a LOGIN alice@example.test " PASSWORD "\r\nb AUTHENTICATE PLAIN\r\n", 0, &out);
    assert_has(&out, "a NO [PRIVACYREQUIRED]");
    assert_has(&out, "b NO [PRIVACYREQUIRED]");
    /* After STARTTLS: the input pipelined behind it is dropped (RFC 2595). */
    buf_reset(&out);
    drive(f, s, "c STARTTLS\r\nd LOGIN alice@example.test " PASSWORD "\r\n", 0, &out);
    assert_has(&out, "c OK Begin TLS");
    assert_lacks(&out, "d ");
    buf_reset(&out);
    drive(f, s, "e CAPABILITY\r\n", 0, &out);
    assert_has(&out, "AUTH=PLAIN");
    assert_lacks(&out, "STARTTLS");
    assert_lacks(&out, "LOGINDISABLED");
    drive(f, s, "f LOGIN alice@example.test " PASSWORD "\r\n", 0, &out);
    assert_has(&out, "f OK [CAPABILITY IMAP4rev1");
    assert_string_equal(imap_session_account(s), "alice@example.test");
    imap_session_free(&s);
    buf_free(&out);
}

static void test_login_failures(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT;
    struct imap_session *s = session(f, true, &out);
    buf_reset(&out);
    drive(f, s, "a LOGIN alice@example.test wrong\r\n", 0, &out);
    assert_has(&out, "a NO [AUTHENTICATIONFAILED]");
    assert_int_equal(imap_session_delay_ms(s), 1000);
    drive(f, s, "b LOGIN nobody@example.test wrong\r\n", 0, &out);
    assert_has(&out, "b NO [AUTHENTICATIONFAILED]");
    assert_int_equal(imap_session_delay_ms(s), 2000);
    assert_null(imap_session_account(s));
    drive(f, s, "c SELECT INBOX\r\n", 0, &out);
    assert_has(&out, "c BAD");
    enum imap_session_status st = IMAP_SESSION_CONTINUE;
    for (int i = 0; i < 3 && st == IMAP_SESSION_CONTINUE; i++)
        st = drive(f, s, "d LOGIN alice@example.test wrong\r\n", 0, &out);
    assert_int_equal(st, IMAP_SESSION_CLOSE);
    assert_has(&out, "* BYE Too many authentication failures");
    imap_session_free(&s);
    buf_free(&out);
}

static void test_authenticate_plain(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT, b64 = BUF_INIT;
    const char raw[] = "\0alice@example.test\0" PASSWORD;
    base64_encode(&b64, raw, sizeof(raw) - 1);
    char line[512];
    /* SASL-IR (RFC 4959) */
    struct imap_session *s = session(f, true, &out);
    snprintf(line, sizeof(line), "a AUTHENTICATE PLAIN %s\r\n", buf_cstr(&b64));
    drive(f, s, line, 0, &out);
    assert_has(&out, "a OK [CAPABILITY");
    imap_session_free(&s);
    /* With a continuation, fed one byte at a time. */
    buf_reset(&out);
    s = session(f, true, &out);
    snprintf(line, sizeof(line), "b AUTHENTICATE PLAIN\r\n%s\r\nc NOOP\r\n", buf_cstr(&b64));
    drive(f, s, line, 1, &out);
    assert_has(&out, "+ \r\n");
    assert_has(&out, "b OK [CAPABILITY");
    assert_has(&out, "c OK NOOP");
    imap_session_free(&s);
    /* Cancelled, and bad base64. */
    buf_reset(&out);
    s = session(f, true, &out);
    drive(f, s, "d AUTHENTICATE PLAIN\r\n*\r\ne AUTHENTICATE PLAIN !!!!\r\n", 0, &out);
    assert_has(&out, "d BAD");
    assert_has(&out, "e BAD");
    assert_null(imap_session_account(s));
    imap_session_free(&s);
    buf_free(&b64);
    buf_free(&out);
}

static void test_select_examine_recent(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT;
    deliver(f, "Subject: one\r\n\r\nbody\r\n");
    deliver(f, "Subject: two\r\n\r\nbody\r\n");
    struct imap_session *s = session(f, true, &out);
    drive(f, s, "a LOGIN alice@example.test " PASSWORD "\r\nb EXAMINE INBOX\r\n", 0, &out);
    assert_has(&out, "* 2 EXISTS\r\n* 2 RECENT\r\n");
    assert_has(&out, "* OK [UNSEEN 1]");
    assert_has(&out, "* OK [UIDVALIDITY ");
    assert_has(&out, "* OK [UIDNEXT 3]");
    assert_has(&out, "* OK [HIGHESTMODSEQ ");
    assert_has(&out, "b OK [READ-ONLY]");
    buf_reset(&out);
    /* SELECT takes \Recent; a second SELECT (any session) sees none. */
    drive(f, s, "c SELECT inbox\r\n", 0, &out);
    assert_has(&out, "* 2 RECENT");
    assert_has(&out, "c OK [READ-WRITE]");
    buf_reset(&out);
    drive(f, s, "d SELECT INBOX\r\ne SELECT nosuch\r\nf NOOP\r\n", 0, &out);
    assert_has(&out, "* 0 RECENT");
    assert_has(&out, "e NO [NONEXISTENT]");
    /* A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1). */
    assert_has(&out, "f OK");
    buf_reset(&out);
    drive(f, s, "g CLOSE\r\n", 0, &out);
    assert_has(&out, "g BAD");
    imap_session_free(&s);
    buf_free(&out);
}

static void test_bad_commands_limit(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT;
    struct imap_session *s = session(f, true, &out);
    enum imap_session_status st =
        drive(f, s, "a FROB\r\nb\r\n\"unterminated\r\nc LOGIN\r\nd UID NOOP\r\n", 0, &out);
    assert_has(&out, "a BAD");
    assert_has(&out, "c BAD");
    assert_has(&out, "d BAD");
    assert_int_equal(st, IMAP_SESSION_CLOSE);
    assert_has(&out, "* BYE Too many invalid commands");
    imap_session_free(&s);
    buf_free(&out);
}

/* Another session's flag change, expunge and a new delivery are reported
 * by NOOP, as EXPUNGE only where RFC 3501 7.4.1 allows it. */
static void test_changes_of_others(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT;
    char err[256];
    deliver(f, "Subject: one\r\n\r\nbody\r\n");
    deliver(f, "Subject: two\r\n\r\nbody\r\n");
    struct imap_session *s = session(f, true, &out);
    drive(f, s, "a LOGIN alice@example.test " PASSWORD "\r\nb SELECT INBOX\r\n", 0, &out);
    struct store_mailbox mb;
    assert_int_equal(store_mailbox_get(f->st, "alice@example.test", "INBOX", &mb, err, sizeof(err)),
                     1);
    uint32_t uid2 = 2, uid1 = 1;
    assert_int_equal(store_msgs_set_flags(f->st, "alice@example.test", mb.id, &uid2, 1,
                                          STORE_FLAGS_ADD, STORE_FLAG_FLAGGED, NULL, 0, NULL,
                                          NULL, err, sizeof(err)),
                     0);
    assert_int_equal(store_msgs_expunge(f->st, "alice@example.test", mb.id, &uid1, 1, err,
                                        sizeof(err)),
                     0);
    deliver(f, "Subject: three\r\n\r\nbody\r\n");
    buf_reset(&out);
    drive(f, s, "c NOOP\r\n", 0, &out);
    assert_has(&out, "* 1 EXPUNGE\r\n");
    assert_has(&out, "* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n");
    assert_has(&out, "* 2 EXISTS\r\n");
    assert_has(&out, "c OK NOOP");
    imap_session_free(&s);
    buf_free(&out);
}

static void test_idle_woken_by_delivery(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT;
    deliver(f, "Subject: one\r\n\r\nbody\r\n");
    struct imap_session *s = session(f, true, &out);
    drive(f, s, "a LOGIN alice@example.test " PASSWORD "\r\nb SELECT INBOX\r\nc IDLE\r\n", 0, &out);
    assert_has(&out, "+ idling\r\n");
    assert_int_equal(imap_session_request(s), IMAP_REQ_NONE);
    deliver(f, "Subject: two\r\n\r\nbody\r\n");
    buf_reset(&out);
    assert_int_equal(imap_session_notify(s, &out), IMAP_SESSION_CONTINUE);
    assert_int_equal(imap_session_request(s), IMAP_REQ_EXECUTE);
    imap_session_execute(s, f->st);
    imap_session_execute_done(s, &out);
    assert_has(&out, "* 2 EXISTS\r\n");
    assert_lacks(&out, "c OK");
    drive(f, s, "DONE\r\nd NOOP\r\n", 0, &out);
    assert_has(&out, "c OK IDLE terminated\r\n");
    assert_has(&out, "d OK NOOP");
    imap_session_free(&s);
    buf_free(&out);
}

static void test_split_input_same_replies(void **state)
{
    struct fx *f = *state;
    const char *conv = "a CAPABILITY\r\nb LOGIN {18+}\r\nalice@example.test {13}\r\n" PASSWORD
                       "\r\nc ENABLE QRESYNC\r\nd NAMESPACE\r\ne ID NIL\r\nf SELECT INBOX\r\n"
                       "g UNSELECT\r\nh LOGOUT\r\n";
    struct buf whole = BUF_INIT, bytes = BUF_INIT;
    struct imap_session *s = session(f, true, &whole);
    assert_int_equal(drive(f, s, conv, 0, &whole), IMAP_SESSION_CLOSE);
    imap_session_free(&s);
    s = session(f, true, &bytes);
    assert_int_equal(drive(f, s, conv, 1, &bytes), IMAP_SESSION_CLOSE);
    imap_session_free(&s);
    /* The second SELECT sees no \Recent: blank that line out of both. */
    assert_has(&whole, "+ Ready for literal data");
    assert_has(&whole, "* ENABLED QRESYNC");
    assert_has(&whole, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
    assert_has(&whole, "h OK LOGOUT");
    assert_int_equal(buf_size(&whole), buf_size(&bytes));
    buf_free(&whole);
    buf_free(&bytes);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_greeting_and_plaintext_rules), T(test_login_failures),
        T(test_authenticate_plain),          T(test_select_examine_recent),
        T(test_bad_commands_limit),          T(test_changes_of_others),
        T(test_idle_woken_by_delivery),      T(test_split_input_same_replies),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
