/* Unit tests for STORE, COPY, MOVE and EXPUNGE and their UID forms
 * (imap_cmd_store.c): a real IMAP session against a real store in a
 * temporary folder, driven through the request cycle the daemon uses
 * (feed, execute, execute_done). */
#include "testutil.h"

#include <sys/uio.h>

#include "cli/cli.h"
#include "lib/buf.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

#define ACCOUNT "bob@example.org"
#define PASSWORD "correct horse battery"

#include "imap_harness.h"

/* --- harness ---------------------------------------------------------------------- */

static const char msg[] = "From: Alice <alice@example.org>\r\n"
                          "To: Bob <bob@example.org>\r\n"
                          "Subject: Hello\r\n"
                          "\r\n"
                          "Hello Bob\r\n";

static void deliver_n(struct fx *f, const char *mailbox, int n)
{
    for (int i = 0; i < n; i++)
        deliver_len(f, mailbox, msg, strlen(msg), 1700000000);
}


static void expect_fmt(struct fx *f, struct imap_session *s, const char *in, const char *fmt_, ...)
    __attribute__((format(printf, 4, 5)));
static void expect_fmt(struct fx *f, struct imap_session *s, const char *in, const char *fmt_, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt_);
    buf_vprintf(&b, fmt_, ap);
    va_end(ap);
    char *got = run(f, s, in);
    assert_string_equal(got, buf_cstr(&b));
    free(got);
    buf_free(&b);
}

static struct store_mailbox mailbox(struct fx *f, const char *name)
{
    struct store_mailbox mb;
    char err[256];
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, name, &mb, err, sizeof(err)), 1);
    return mb;
}

/* The messages of a mailbox: "uid:flags uid:flags ..." (flags as bits). */
static char *contents(struct fx *f, const char *name)
{
    struct store_mailbox mb = mailbox(f, name);
    struct store_msg_list l = {0};
    char err[256];
    assert_int_equal(store_msgs_load(f->st, ACCOUNT, mb.id, 1, UINT32_MAX, 0, &l, err, sizeof(err)),
                     0);
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < l.n; i++)
        buf_printf(&b, "%s%u:%u", i ? " " : "", l.v[i].uid, l.v[i].flags);
    char *r = strdup(buf_size(&b) ? buf_cstr(&b) : "");
    buf_free(&b);
    store_msg_list_free(&l);
    return r;
}

#define CONTENTS(f, name, want)                                                                    \
    do {                                                                                           \
        char *c_ = contents(f, name);                                                              \
        assert_string_equal(c_, want);                                                             \
        free(c_);                                                                                  \
    } while (0)

/* Feed a command one byte at a time. */
static char *run_bytes(struct fx *f, struct imap_session *s, const char *in)
{
    struct buf out = BUF_INIT;
    for (size_t i = 0; in[i]; i++) {
        imap_session_feed(s, &in[i], 1, &out);
        while (imap_session_request(s) == IMAP_REQ_EXECUTE) {
            imap_session_execute(s, f->st);
            imap_session_execute_done(s, &out);
        }
    }
    char *r = strdup(buf_cstr(&out) ? buf_cstr(&out) : "");
    buf_free(&out);
    return r;
}

/* --- STORE ------------------------------------------------------------------------------- */

static void test_store_flags(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 3);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    EXPECT(f, s, "a STORE 1 FLAGS (\\Flagged $Label1)\r\n",
           "* 1 FETCH (FLAGS (\\Flagged \\Recent $Label1))\r\na OK STORE completed\r\n");
    EXPECT(f, s, "a STORE 1:2 +FLAGS (\\Seen)\r\n",
           "* 1 FETCH (FLAGS (\\Seen \\Flagged \\Recent $Label1))\r\n"
           "* 2 FETCH (FLAGS (\\Seen \\Recent))\r\na OK STORE completed\r\n");
    EXPECT(f, s, "a STORE 1 -FLAGS \\Flagged\r\n",
           "* 1 FETCH (FLAGS (\\Seen \\Recent $Label1))\r\na OK STORE completed\r\n");
    EXPECT(f, s, "a STORE 3 +FLAGS.SILENT (\\Deleted)\r\n", "a OK STORE completed\r\n");
    EXPECT(f, s, "a STORE 2 FLAGS \\Answered \\Draft\r\n",
           "* 2 FETCH (FLAGS (\\Answered \\Draft \\Recent))\r\na OK STORE completed\r\n");
    EXPECT(f, s, "a STORE 2 flags.silent ()\r\n", "a OK STORE completed\r\n");
    EXPECT(f, s, "a STORE 1 -FLAGS ($Label1)\r\n",
           "* 1 FETCH (FLAGS (\\Seen \\Recent))\r\na OK STORE completed\r\n");
    /* UID STORE responses carry the UID (RFC 3501 6.4.8). */
    EXPECT(f, s, "a UID STORE 3 +FLAGS (\\Flagged)\r\n",
           "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Deleted \\Recent))\r\na OK STORE completed\r\n");
    EXPECT(f, s, "a UID STORE 9 +FLAGS (\\Flagged)\r\n", "a OK STORE completed\r\n");
    /* Our own changes are not reported a second time. */
    EXPECT(f, s, "a NOOP\r\n", "a OK NOOP completed\r\n");
    CONTENTS(f, "INBOX", "1:1 2:0 3:12");
    /* Fed byte by byte, the same. */
    char *got = run_bytes(f, s, "a STORE 2 +FLAGS (\\Seen)\r\n");
    assert_string_equal(got, "* 2 FETCH (FLAGS (\\Seen \\Recent))\r\na OK STORE completed\r\n");
    free(got);
    /* Errors. */
    EXPECT(f, s, "a STORE 1 FLAGZ (\\Seen)\r\n", "a BAD Invalid STORE arguments\r\n");
    EXPECT(f, s, "a STORE 1 +FLAGS (\\Bogus)\r\n", "a BAD Invalid STORE arguments\r\n");
    EXPECT(f, s, "a STORE 1 FLAGS\r\n", "a BAD Invalid STORE arguments\r\n");
    EXPECT(f, s, "a STORE 1 (UNCHANGEDSINCE) FLAGS ()\r\n", "a BAD Invalid STORE arguments\r\n");
    EXPECT(f, s, "a STORE 4 FLAGS ()\r\n", "a BAD Invalid message sequence number\r\n");
    EXPECT(f, s, "a STORE 1:* FLAGS (\\Recent)\r\n",
           "* 1 FETCH (FLAGS (\\Recent))\r\n* 2 FETCH (FLAGS (\\Recent))\r\n"
           "* 3 FETCH (FLAGS (\\Recent))\r\na OK STORE completed\r\n");
    imap_session_free(&s);
}

static void test_store_readonly(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 2);
    struct imap_session *s = session(f, "t1", "s EXAMINE INBOX\r\n");
    EXPECT(f, s, "a STORE 1 +FLAGS (\\Seen)\r\n", "a NO Mailbox is read-only\r\n");
    EXPECT(f, s, "a EXPUNGE\r\n", "a NO Mailbox is read-only\r\n");
    EXPECT(f, s, "a UID EXPUNGE 1\r\n", "a NO Mailbox is read-only\r\n");
    EXPECT(f, s, "a MOVE 1 Archive\r\n", "a NO Mailbox is read-only\r\n");
    struct store_mailbox ar = mailbox(f, "Archive");
    expect_fmt(f, s, "a COPY 1:2 Archive\r\n", "a OK [COPYUID %u 1:2 1:2] COPY completed\r\n",
               ar.uidvalidity);
    CONTENTS(f, "INBOX", "1:0 2:0");
    imap_session_free(&s);
}

/* RFC 7162 3.1.3. */
static void test_store_condstore(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 3);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX (CONDSTORE)\r\n");
    unsigned long long m = mailbox(f, "INBOX").highestmodseq;
    /* .SILENT under CONDSTORE still sends the new MODSEQ. */
    expect_fmt(f, s, "a STORE 1 (UNCHANGEDSINCE 1000) +FLAGS.SILENT (\\Seen)\r\n",
               "* 1 FETCH (MODSEQ (%llu))\r\na OK STORE completed\r\n", m + 1);
    expect_fmt(f, s, "a STORE 2 +FLAGS (\\Answered)\r\n",
               "* 2 FETCH (FLAGS (\\Answered \\Recent) MODSEQ (%llu))\r\na OK STORE completed\r\n",
               m + 2);
    /* Message 2 changed after m+1: it fails, 1 is changed. */
    char in[160];
    snprintf(in, sizeof(in), "a STORE 1,2 (UNCHANGEDSINCE %llu) +FLAGS (\\Flagged)\r\n", m + 1);
    expect_fmt(f, s, in,
               "* 1 FETCH (FLAGS (\\Seen \\Flagged \\Recent) MODSEQ (%llu))\r\n"
               "a OK [MODIFIED 2] Conditional STORE failed\r\n",
               m + 3);
    /* 1 (m+3) fails; 2 (m+2) and 3 are changed, with one new MODSEQ. */
    snprintf(in, sizeof(in), "a UID STORE 1:3 (UNCHANGEDSINCE %llu) +FLAGS.SILENT (\\Draft)\r\n",
             m + 2);
    expect_fmt(f, s, in,
               "* 2 FETCH (UID 2 MODSEQ (%llu))\r\n* 3 FETCH (UID 3 MODSEQ (%llu))\r\n"
               "a OK [MODIFIED 1] Conditional STORE failed\r\n",
               m + 4, m + 4);
    /* UNCHANGEDSINCE 0 always fails. */
    EXPECT(f, s, "a UID STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)\r\n",
           "a OK [MODIFIED 1:3] Conditional STORE failed\r\n");
    /* A message whose flags do not change keeps its MODSEQ. */
    expect_fmt(f, s, "a STORE 2 +FLAGS.SILENT (\\Answered)\r\n", "a OK STORE completed\r\n");
    expect_fmt(f, s, "a STORE 2 +FLAGS (\\Answered)\r\n",
               "* 2 FETCH (FLAGS (\\Answered \\Draft \\Recent) MODSEQ (%llu))\r\n"
               "a OK STORE completed\r\n",
               m + 4);
    EXPECT(f, s, "a NOOP\r\n", "a OK NOOP completed\r\n");
    imap_session_free(&s);
    /* UNCHANGEDSINCE enables CONDSTORE in a session that did not ask. */
    s = session(f, "t2", "s SELECT INBOX\r\n");
    snprintf(in, sizeof(in), "a STORE 3 (UNCHANGEDSINCE %llu) +FLAGS (\\Seen)\r\n", m + 4);
    expect_fmt(f, s, in,
               "* 3 FETCH (FLAGS (\\Seen \\Draft) MODSEQ (%llu))\r\na OK STORE completed\r\n",
               m + 5);
    imap_session_free(&s);
}

/* One session's STORE reaches the other with its next command; not as an
 * echo in its own. */
static void test_store_two_sessions(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 2);
    struct imap_session *a = session(f, "a", "s SELECT INBOX\r\n");
    struct imap_session *b = session(f, "b", "s SELECT INBOX\r\n");
    EXPECT(f, a, "a STORE 2 +FLAGS (\\Seen)\r\n",
           "* 2 FETCH (FLAGS (\\Seen \\Recent))\r\na OK STORE completed\r\n");
    EXPECT(f, b, "b NOOP\r\n", "* 2 FETCH (FLAGS (\\Seen))\r\nb OK NOOP completed\r\n");
    /* b changes 1; a's STORE on 2 reports its own, then b's change. */
    EXPECT(f, b, "b STORE 1 +FLAGS.SILENT (\\Flagged)\r\n", "b OK STORE completed\r\n");
    EXPECT(f, a, "a STORE 2 -FLAGS (\\Seen)\r\n",
           "* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n* 2 FETCH (FLAGS (\\Recent))\r\n"
           "a OK STORE completed\r\n");
    EXPECT(f, a, "a NOOP\r\n", "a OK NOOP completed\r\n");
    EXPECT(f, b, "b NOOP\r\n", "* 2 FETCH (FLAGS ())\r\nb OK NOOP completed\r\n");
    imap_session_free(&a);
    imap_session_free(&b);
}

/* --- COPY and MOVE --------------------------------------------------------------------------- */

static void test_copy(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 3);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    unsigned uv = mailbox(f, "Archive").uidvalidity;
    EXPECT(f, s, "a STORE 2 +FLAGS.SILENT (\\Flagged)\r\n", "a OK STORE completed\r\n");
    expect_fmt(f, s, "a COPY 1:2 Archive\r\n", "a OK [COPYUID %u 1:2 1:2] COPY completed\r\n", uv);
    expect_fmt(f, s, "a UID COPY 3,1 Archive\r\n", "a OK [COPYUID %u 1,3 3:4] COPY completed\r\n",
               uv);
    CONTENTS(f, "Archive", "1:0 2:4 3:0 4:0");
    EXPECT(f, s, "a COPY 1 Nope\r\n", "a NO [TRYCREATE] Mailbox doesn't exist\r\n");
    EXPECT(f, s, "a UID COPY 99 Archive\r\n", "a OK COPY completed\r\n");
    EXPECT(f, s, "a COPY 1\r\n", "a BAD Invalid COPY arguments\r\n");
    EXPECT(f, s, "a COPY 4 Archive\r\n", "a BAD Invalid message sequence number\r\n");
    /* Into the selected mailbox: the new message is announced. */
    unsigned uvi = mailbox(f, "INBOX").uidvalidity;
    expect_fmt(f, s, "a COPY 2 INBOX\r\n",
               "* 4 EXISTS\r\n* 4 RECENT\r\na OK [COPYUID %u 2 4] COPY completed\r\n", uvi);
    EXPECT(f, s, "a FETCH 4 (UID FLAGS)\r\n",
           "* 4 FETCH (UID 4 FLAGS (\\Flagged \\Recent))\r\na OK FETCH completed\r\n");
    imap_session_free(&s);
}

/* Many scattered UIDs: a COPYUID too long for the tagged line's response
 * code comes untagged, whole. */
static void test_copy_many(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 120);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    struct buf cmd = BUF_INIT, src = BUF_INIT, dst = BUF_INIT;
    buf_puts(&cmd, "a COPY ");
    for (int i = 1; i <= 119; i += 2) {
        buf_printf(&cmd, "%s%d", i > 1 ? "," : "", i);
        buf_printf(&src, "%s%d", i > 1 ? "," : "", i);
    }
    buf_puts(&cmd, " Archive\r\n");
    buf_puts(&dst, "1:60");
    expect_fmt(f, s, buf_cstr(&cmd),
               "a OK [COPYUID %u %s %s] COPY completed\r\n",
               mailbox(f, "Archive").uidvalidity, buf_cstr(&src), buf_cstr(&dst));
    buf_free(&cmd);
    buf_free(&src);
    buf_free(&dst);
    imap_session_free(&s);
}

static void test_copy_expunged_elsewhere(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 3);
    struct imap_session *a = session(f, "a", "s SELECT INBOX\r\n");
    struct imap_session *b = session(f, "b", "s SELECT INBOX\r\n");
    EXPECT(f, b, "b STORE 2 +FLAGS.SILENT (\\Deleted)\r\n", "b OK STORE completed\r\n");
    EXPECT(f, b, "b EXPUNGE\r\n", "* 2 EXPUNGE\r\nb OK EXPUNGE completed\r\n");
    /* By sequence number: nothing copied (RFC 5530), no EXPUNGE reported. */
    EXPECT(f, a, "a COPY 1:3 Archive\r\n", "a NO [EXPUNGEISSUED] Some messages were expunged\r\n");
    CONTENTS(f, "Archive", "");
    /* By UID: the others are copied; the expunge is reported. */
    unsigned uv = mailbox(f, "Archive").uidvalidity;
    expect_fmt(f, a, "a UID COPY 1:3 Archive\r\n",
               "* 2 EXPUNGE\r\na OK [COPYUID %u 1,3 1:2] COPY completed\r\n", uv);
    imap_session_free(&a);
    imap_session_free(&b);
}

static void test_move(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 4);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    struct imap_session *b = session(f, "b", "s SELECT INBOX\r\n");
    unsigned uv = mailbox(f, "Archive").uidvalidity;
    expect_fmt(f, s, "a MOVE 2:3 Archive\r\n",
               "* OK [COPYUID %u 2:3 1:2] Moved UIDs\r\n* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n"
               "a OK MOVE completed\r\n",
               uv);
    EXPECT(f, s, "a FETCH 1:* UID\r\n",
           "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 4)\r\na OK FETCH completed\r\n");
    expect_fmt(f, s, "a UID MOVE 4 Archive\r\n",
               "* OK [COPYUID %u 4 3] Moved UIDs\r\n* 2 EXPUNGE\r\na OK MOVE completed\r\n", uv);
    EXPECT(f, s, "a MOVE 1 Nope\r\n", "a NO [TRYCREATE] Mailbox doesn't exist\r\n");
    EXPECT(f, s, "a NOOP\r\n", "a OK NOOP completed\r\n");
    CONTENTS(f, "INBOX", "1:0");
    CONTENTS(f, "Archive", "1:0 2:0 3:0");
    /* The other session learns with a command that may report expunges. */
    EXPECT(f, b, "b FETCH 1 UID\r\n", "* 1 FETCH (UID 1)\r\nb OK FETCH completed\r\n");
    EXPECT(f, b, "b NOOP\r\n",
           "* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\nb OK NOOP completed\r\n");
    imap_session_free(&s);
    imap_session_free(&b);
}

static void test_move_qresync(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 5);
    struct imap_session *s = session(f, "t1", NULL);
    expect_has(f, s, "e ENABLE QRESYNC\r\n", "e OK");
    expect_has(f, s, "s SELECT INBOX\r\n", "s OK");
    unsigned uv = mailbox(f, "Junk").uidvalidity;
    expect_fmt(
        f, s, "a MOVE 2:3,5 Junk\r\n",
        "* OK [COPYUID %u 2:3,5 1:3] Moved UIDs\r\n* VANISHED 2:3,5\r\na OK MOVE completed\r\n",
        uv);
    /* QRESYNC implies CONDSTORE: .SILENT still sends MODSEQ, with the UID. */
    expect_fmt(f, s, "a STORE 2 +FLAGS.SILENT (\\Deleted)\r\n",
               "* 2 FETCH (UID 4 MODSEQ (%llu))\r\na OK STORE completed\r\n",
               (unsigned long long)mailbox(f, "INBOX").highestmodseq + 1);
    EXPECT(f, s, "a FETCH 2 FLAGS\r\n",
           "* 2 FETCH (UID 4 FLAGS (\\Deleted \\Recent))\r\na OK FETCH completed\r\n");
    EXPECT(f, s, "a EXPUNGE\r\n", "* VANISHED 4\r\na OK EXPUNGE completed\r\n");
    EXPECT(f, s, "a NOOP\r\n", "a OK NOOP completed\r\n");
    imap_session_free(&s);
}

/* --- EXPUNGE ----------------------------------------------------------------------------- */

static void test_expunge(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 5);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    struct imap_session *b = session(f, "b", "s SELECT INBOX\r\n");
    EXPECT(f, s, "a EXPUNGE\r\n", "a OK EXPUNGE completed\r\n");
    EXPECT(f, s, "a STORE 2,3,5 +FLAGS.SILENT (\\Deleted)\r\n", "a OK STORE completed\r\n");
    /* A \Deleted message that arrives now is not in the view: kept. */
    struct store_delivery d;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
    memset(&d, 0, sizeof(d));
    d.account = ACCOUNT;
    d.mailbox = "INBOX";
    d.iov = &iov;
    d.iovcnt = 1;
    d.internal_date = 1700000000;
    d.flags = 8; /* STORE_FLAG_DELETED */
    assert_int_equal(store_deliver(f->st, &d, 1), 0);
    /* RFC 3501 6.4.3: each number counted after the ones before are gone. */
    EXPECT(f, s, "a EXPUNGE\r\n",
           "* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 3 EXPUNGE\r\n* 3 EXISTS\r\n* 3 RECENT\r\n"
           "a OK EXPUNGE completed\r\n");
    CONTENTS(f, "INBOX", "1:0 4:0 6:8");
    EXPECT(
        f, s, "a FETCH 1:* UID\r\n",
        "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 4)\r\n* 3 FETCH (UID 6)\r\na OK FETCH completed\r\n");
    /* The other session: a FETCH does not report expunges, NOOP does. */
    EXPECT(f, b, "b FETCH 1 UID\r\n",
           "* 1 FETCH (UID 1)\r\n* 6 EXISTS\r\n* 1 RECENT\r\n"
           "b OK FETCH completed\r\n");
    EXPECT(f, b, "b NOOP\r\n",
           "* 5 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\nb OK NOOP completed\r\n");
    EXPECT(f, s, "a EXPUNGE extra\r\n", "a BAD This command takes no arguments\r\n");
    imap_session_free(&s);
    imap_session_free(&b);
}

/* RFC 4315 2.1: only the given UIDs, and only when \Deleted. */
static void test_uid_expunge(void **state)
{
    struct fx *f = *state;
    deliver_n(f, "INBOX", 4);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    EXPECT(f, s, "a STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\n", "a OK STORE completed\r\n");
    EXPECT(f, s, "a UID EXPUNGE 2:4\r\n",
           "* 2 EXPUNGE\r\n* 2 EXPUNGE\r\na OK UID EXPUNGE completed\r\n");
    CONTENTS(f, "INBOX", "1:8 4:0");
    EXPECT(f, s, "a UID EXPUNGE 4\r\n", "a OK UID EXPUNGE completed\r\n");
    EXPECT(f, s, "a UID EXPUNGE\r\n", "a BAD Invalid EXPUNGE arguments\r\n");
    EXPECT(f, s, "a UID EXPUNGE x\r\n", "a BAD Invalid sequence set\r\n");
    EXPECT(f, s, "a EXPUNGE\r\n", "* 1 EXPUNGE\r\na OK EXPUNGE completed\r\n");
    CONTENTS(f, "INBOX", "4:0");
    imap_session_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_condstore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_two_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_expunged_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_qresync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uid_expunge, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
