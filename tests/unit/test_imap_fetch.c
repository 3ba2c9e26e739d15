/* Unit tests for FETCH / UID FETCH (imap_cmd_fetch.c): a real IMAP session
 * against a real store in a temporary folder, driven through the request
 * cycle the daemon uses (feed, execute, execute_done). */
#include "testutil.h"

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "mime/mime_imap.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

#define ACCOUNT "bob@example.org"
#define PASSWORD "correct horse battery"

#include "imap_harness.h"
#define CORPUS "../shared/corpus/mime"
#define EXPECTED "tests/unit/mime_expected"

/* --- harness ---------------------------------------------------------------------- */

static uint32_t deliver(struct fx *f, const char *text)
{
    return deliver_len(f, "INBOX", text, strlen(text), 1700000000);
}

/* The same, input fed one byte at a time. */
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

/* --- messages ---------------------------------------------------------------------- */

static const char msg_simple[] = "From: Alice <alice@example.org>\r\n"
                                 "To: Bob <bob@example.org>\r\n"
                                 "Subject: Hello\r\n"
                                 "Date: Mon, 13 Nov 2023 22:13:20 +0000\r\n"
                                 "Message-ID: <m1@example.org>\r\n"
                                 "\r\n"
                                 "Hello Bob\r\n";

#define NESTED_HDR                                                                                 \
    "From: Carol <carol@example.org>\r\n"                                                          \
    "To: bob@example.org\r\n"                                                                      \
    "Subject: Nested\r\n"                                                                          \
    "MIME-Version: 1.0\r\n"                                                                        \
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"                                        \
    "\r\n"
#define INNER_HDR                                                                                  \
    "From: Dave <dave@example.org>\r\n"                                                            \
    "Subject: Inner\r\n"                                                                           \
    "Content-Type: multipart/alternative; boundary=\"inner\"\r\n"                                  \
    "\r\n"
#define INNER_TEXT                                                                                 \
    "--inner\r\n"                                                                                  \
    "Content-Type: text/plain\r\n"                                                                 \
    "\r\n"                                                                                         \
    "Inner text\r\n"                                                                               \
    "--inner\r\n"                                                                                  \
    "Content-Type: text/html\r\n"                                                                  \
    "\r\n"                                                                                         \
    "<p>Inner html</p>\r\n"                                                                        \
    "--inner--\r\n"
#define NESTED_TEXT                                                                                \
    "preamble\r\n"                                                                                 \
    "--outer\r\n"                                                                                  \
    "Content-Type: text/plain; charset=utf-8\r\n"                                                  \
    "\r\n"                                                                                         \
    "Part one\r\n"                                                                                 \
    "--outer\r\n"                                                                                  \
    "Content-Type: message/rfc822\r\n"                                                             \
    "\r\n" INNER_HDR INNER_TEXT "\r\n"                                                             \
    "--outer\r\n"                                                                                  \
    "Content-Type: application/octet-stream\r\n"                                                   \
    "Content-Transfer-Encoding: base64\r\n"                                                        \
    "\r\n"                                                                                         \
    "AAECAw==\r\n"                                                                                 \
    "--outer\r\n"                                                                                  \
    "Content-Type: text/plain\r\n"                                                                 \
    "Content-Transfer-Encoding: x-unknown\r\n"                                                     \
    "\r\n"                                                                                         \
    "??\r\n"                                                                                       \
    "--outer--\r\n"

static const char msg_nested[] = NESTED_HDR NESTED_TEXT;

/* What src/mime says for a message: the expected ENVELOPE/BODY/BODYSTRUCTURE. */
static char *mime_item(const char *msg, size_t len, int what)
{
    struct mime_message *m = mime_parse((const uint8_t *)msg, len, NULL);
    assert_non_null(m);
    struct buf b = BUF_INIT;
    int rc = what == 0   ? mime_imap_envelope(m, NULL, &b)
             : what == 1 ? mime_imap_bodystructure(m, NULL, false, &b)
                         : mime_imap_bodystructure(m, NULL, true, &b);
    assert_int_equal(rc, 0);
    char *r = strndup((const char *)buf_ptr(&b), buf_size(&b));
    buf_free(&b);
    mime_message_free(&m);
    return r;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    va_start(ap, f);
    buf_vprintf(&b, f, ap);
    va_end(ap);
    char *r = strndup((const char *)buf_ptr(&b), buf_size(&b));
    buf_free(&b);
    return r;
}

/* "{n}\r\n" and the bytes: a literal as FETCH sends it (static buffer). */
static const char *lit(const char *data)
{
    static char b[8][4096];
    static int k;
    char *r = b[k++ % 8];
    snprintf(r, sizeof(b[0]), "{%zu}\r\n%s", strlen(data), data);
    return r;
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

/* --- tests ------------------------------------------------------------------------------ */

static void test_fetch_simple_items(void **state)
{
    struct fx *f = *state;
    deliver(f, msg_simple);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    const size_t size = sizeof(msg_simple) - 1;
    expect_fmt(f, s, "a FETCH 1 (FLAGS UID INTERNALDATE RFC822.SIZE)\r\n",
               "* 1 FETCH (FLAGS (\\Recent) UID 1 INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" "
               "RFC822.SIZE %zu)\r\na OK FETCH completed\r\n",
               size);
    /* UID FETCH always includes UID, first. */
    EXPECT(f, s, "a UID FETCH 1 FLAGS\r\n",
           "* 1 FETCH (UID 1 FLAGS (\\Recent))\r\na OK UID FETCH completed\r\n");
    EXPECT(f, s, "a UID FETCH 1:* (UID FLAGS)\r\n",
           "* 1 FETCH (UID 1 FLAGS (\\Recent))\r\na OK UID FETCH completed\r\n");
    /* A UID that does not exist is no error (RFC 3501 6.4.8). */
    EXPECT(f, s, "a UID FETCH 7 FLAGS\r\n", "a OK UID FETCH completed\r\n");
    /* Macros. */
    expect_fmt(f, s, "a FETCH 1 FAST\r\n",
               "* 1 FETCH (FLAGS (\\Recent) INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" "
               "RFC822.SIZE %zu)\r\na OK FETCH completed\r\n",
               size);
    char *env = mime_item(msg_simple, strlen(msg_simple), 0);
    char *body = mime_item(msg_simple, strlen(msg_simple), 1);
    char *bs = mime_item(msg_simple, strlen(msg_simple), 2);
    char *want = fmt("* 1 FETCH (FLAGS (\\Recent) INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" "
                     "RFC822.SIZE %zu ENVELOPE %s)\r\na OK FETCH completed\r\n",
                     size, env);
    EXPECT(f, s, "a FETCH 1 ALL\r\n", want);
    free(want);
    want = fmt("* 1 FETCH (FLAGS (\\Recent) INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" "
               "RFC822.SIZE %zu ENVELOPE %s BODY %s)\r\na OK FETCH completed\r\n",
               size, env, body);
    EXPECT(f, s, "a FETCH 1 FULL\r\n", want);
    free(want);
    want = fmt("* 1 FETCH (BODYSTRUCTURE %s ENVELOPE %s)\r\na OK FETCH completed\r\n", bs, env);
    EXPECT(f, s, "a fetch 1 (bodystructure envelope)\r\n", want);
    free(want);
    /* The ENVELOPE of a plain message, as RFC 3501 7.4.2 defines it. */
    assert_string_equal(env, "(\"Mon, 13 Nov 2023 22:13:20 +0000\" \"Hello\" "
                             "((\"Alice\" NIL \"alice\" \"example.org\")) "
                             "((\"Alice\" NIL \"alice\" \"example.org\")) "
                             "((\"Alice\" NIL \"alice\" \"example.org\")) "
                             "((\"Bob\" NIL \"bob\" \"example.org\")) NIL NIL NIL "
                             "\"<m1@example.org>\")");
    /* RFC822.HEADER is a peek; RFC822.TEXT and RFC822 set \Seen. */
    expect_fmt(f, s, "a FETCH 1 RFC822.HEADER\r\n",
               "* 1 FETCH (RFC822.HEADER {%zu}\r\n%.*s)\r\na OK FETCH completed\r\n",
               strlen(msg_simple) - 11, (int)strlen(msg_simple) - 11, msg_simple);
    EXPECT(f, s, "a FETCH 1 RFC822.TEXT\r\n",
           "* 1 FETCH (RFC822.TEXT {11}\r\nHello Bob\r\n FLAGS (\\Seen \\Recent))\r\n"
           "a OK FETCH completed\r\n");
    want = fmt("* 1 FETCH (RFC822 {%zu}\r\n%s)\r\na OK FETCH completed\r\n", size, msg_simple);
    EXPECT(f, s, "a FETCH 1 RFC822\r\n", want);
    free(want);
    free(env);
    free(body);
    free(bs);
    imap_session_free(&s);
}

static void test_fetch_sections(void **state)
{
    struct fx *f = *state;
    deliver(f, msg_nested);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    const char *ok = "a OK FETCH completed\r\n";
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME])\r\n",
               "* 1 FETCH (BODY[1] %s BODY[1.MIME] %s)\r\n%s", lit("Part one"),
               lit("Content-Type: text/plain; charset=utf-8\r\n\r\n"), ok);
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[2.HEADER])\r\n", "* 1 FETCH (BODY[2.HEADER] %s)\r\n%s",
               lit(INNER_HDR), ok);
    expect_fmt(f, s, "a FETCH 1 BODY.PEEK[2.TEXT]\r\n", "* 1 FETCH (BODY[2.TEXT] %s)\r\n%s",
               lit(INNER_TEXT), ok);
    expect_fmt(f, s, "a FETCH 1 BODY.PEEK[2]\r\n", "* 1 FETCH (BODY[2] %s)\r\n%s",
               lit(INNER_HDR INNER_TEXT), ok);
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[2.1] BODY.PEEK[2.2] BODY.PEEK[2.2.MIME])\r\n",
               "* 1 FETCH (BODY[2.1] %s BODY[2.2] %s BODY[2.2.MIME] %s)\r\n%s", lit("Inner text"),
               lit("<p>Inner html</p>"), lit("Content-Type: text/html\r\n\r\n"), ok);
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject from)])\r\n",
               "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] %s)\r\n%s",
               lit("From: Carol <carol@example.org>\r\nSubject: Nested\r\n\r\n"), ok);
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Subject From)])\r\n",
               "* 1 FETCH (BODY[HEADER.FIELDS.NOT (SUBJECT FROM)] %s)\r\n%s",
               lit("To: bob@example.org\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"),
               ok);
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[2.HEADER.FIELDS (SUBJECT)])\r\n",
               "* 1 FETCH (BODY[2.HEADER.FIELDS (SUBJECT)] %s)\r\n%s",
               lit("Subject: Inner\r\n\r\n"), ok);
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[3] BODY.PEEK[9] BODY.PEEK[1.2.3])\r\n",
               "* 1 FETCH (BODY[3] %s BODY[9] {0}\r\n BODY[1.2.3] {0}\r\n)\r\n%s", lit("AAECAw=="),
               ok);
    expect_fmt(f, s, "a FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])\r\n",
               "* 1 FETCH (BODY[HEADER] %s BODY[TEXT] %s)\r\n%s", lit(NESTED_HDR), lit(NESTED_TEXT),
               ok);
    /* Pipelined and fed byte by byte: the same answers, in order. */
    char *got = run_bytes(f, s,
                          "b FETCH 1 BODY.PEEK[2.1]\r\n"
                          "c UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (\"Subject\")]<0.7>)\r\n");
    assert_string_equal(got, "* 1 FETCH (BODY[2.1] {10}\r\nInner text)\r\nb OK FETCH completed\r\n"
                             "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)]<0> {7}\r\nSubject)\r\n"
                             "c OK UID FETCH completed\r\n");
    free(got);
    /* Still not \Seen: everything above was a peek. */
    EXPECT(f, s, "a FETCH 1 FLAGS\r\n", "* 1 FETCH (FLAGS (\\Recent))\r\na OK FETCH completed\r\n");
    /* BODY[...] without PEEK sets \Seen and reports FLAGS, once. */
    EXPECT(f, s, "a FETCH 1 BODY[1]\r\n",
           "* 1 FETCH (BODY[1] {8}\r\nPart one FLAGS (\\Seen \\Recent))\r\n"
           "a OK FETCH completed\r\n");
    EXPECT(f, s, "a FETCH 1 BODY[1]\r\n",
           "* 1 FETCH (BODY[1] {8}\r\nPart one)\r\na OK FETCH completed\r\n");
    EXPECT(f, s, "a NOOP\r\n", "a OK NOOP completed\r\n"); /* not reported again */
    imap_session_free(&s);
}

static void test_fetch_partial(void **state)
{
    struct fx *f = *state;
    deliver(f, msg_nested);
    struct imap_session *s = session(f, "t1", "s EXAMINE INBOX\r\n");
    EXPECT(f, s, "a FETCH 1 (BODY.PEEK[]<0.10> BODY.PEEK[1]<5.100> BODY.PEEK[1]<100.5>)\r\n",
           "* 1 FETCH (BODY[]<0> {10}\r\nFrom: Caro BODY[1]<5> {3}\r\none BODY[1]<100> {0}\r\n)\r\n"
           "a OK FETCH completed\r\n");
    EXPECT(f, s, "a FETCH 1 BODY.PEEK[HEADER.FIELDS (To)]<4.3>\r\n",
           "* 1 FETCH (BODY[HEADER.FIELDS (TO)]<4> {3}\r\nbob)\r\na OK FETCH completed\r\n");
    /* Read-only (EXAMINE): BODY[] does not set \Seen. */
    char *want = fmt("* 1 FETCH (BODY[] {%zu}\r\n%s)\r\na OK FETCH completed\r\n",
                     strlen(msg_nested), msg_nested);
    EXPECT(f, s, "a FETCH 1 BODY[]\r\n", want);
    free(want);
    EXPECT(f, s, "a FETCH 1 FLAGS\r\n", "* 1 FETCH (FLAGS (\\Recent))\r\na OK FETCH completed\r\n");
    imap_session_free(&s);
}

static void test_fetch_binary(void **state)
{
    struct fx *f = *state;
    deliver(f, msg_nested);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    size_t n;
    char *got = run_len(f, s, "a FETCH 1 (BINARY.PEEK[3] BINARY.SIZE[3] BINARY.PEEK[1])\r\n", &n);
    static const char want[] = "* 1 FETCH (BINARY[3] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[3] 4 "
                               "BINARY[1] {8}\r\nPart one)\r\na OK FETCH completed\r\n";
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(got, want, n);
    free(got);
    EXPECT(f, s, "a FETCH 1 BINARY.PEEK[4]\r\n",
           "* 1 FETCH (BINARY[4] NIL)\r\na NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n");
    EXPECT(
        f, s, "a FETCH 1 BINARY[1]<0.4>\r\n",
        "* 1 FETCH (BINARY[1]<0> {4}\r\nPart FLAGS (\\Seen \\Recent))\r\na OK FETCH completed\r\n");
    imap_session_free(&s);
}

static void test_fetch_bad(void **state)
{
    struct fx *f = *state;
    deliver(f, msg_simple);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    EXPECT(f, s, "a FETCH 1 (FLAGS FOO)\r\n", "a BAD Invalid FETCH arguments\r\n");
    EXPECT(f, s, "a FETCH 1\r\n", "a BAD Invalid FETCH arguments\r\n");
    EXPECT(f, s, "a FETCH 1 ()\r\n", "a BAD Invalid FETCH arguments\r\n");
    EXPECT(f, s, "a FETCH 1 (ALL)\r\n", "a BAD Invalid FETCH arguments\r\n");
    EXPECT(f, s, "a FETCH 1 BODY[HEADER.FIELDS]\r\n", "a BAD Invalid FETCH arguments\r\n");
    EXPECT(f, s, "a FETCH 2 FLAGS\r\n", "a BAD Invalid message sequence number\r\n");
    EXPECT(f, s, "a FETCH 0 FLAGS\r\n", "a BAD Invalid sequence set\r\n");
    EXPECT(f, s, "a FETCH 1 FLAGS (CHANGEDSINCE x)\r\n", "a BAD Invalid FETCH arguments\r\n");
    /* VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled. */
    EXPECT(f, s, "a UID FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
           "a BAD Invalid FETCH arguments\r\n");
    EXPECT(f, s, "a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
           "a BAD Invalid FETCH arguments\r\n");
    imap_session_free(&s);
    /* "*" in an empty mailbox. */
    s = session(f, "t2", "s SELECT Trash\r\n");
    EXPECT(f, s, "a FETCH * FLAGS\r\n", "a BAD Invalid message sequence number\r\n");
    EXPECT(f, s, "a UID FETCH 1:* FLAGS\r\n", "a OK UID FETCH completed\r\n");
    imap_session_free(&s);
    /* Not selected. */
    s = session(f, "t3", NULL);
    EXPECT(f, s, "a FETCH 1 FLAGS\r\n", "a BAD Select a mailbox first\r\n");
    imap_session_free(&s);
}

static void test_fetch_condstore(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        deliver(f, msg_simple);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    struct store_mailbox mb;
    char err[256];
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, "INBOX", &mb, err, sizeof(err)), 1);
    uint64_t m0 = mb.highestmodseq;
    EXPECT(f, s, "a STORE 2 +FLAGS.SILENT (\\Flagged)\r\n", "a OK STORE completed\r\n");
    char in[128], *want;
    snprintf(in, sizeof(in), "a FETCH 1:* (FLAGS) (CHANGEDSINCE %llu)\r\n", (unsigned long long)m0);
    want = fmt("* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%llu))\r\na OK FETCH completed\r\n",
               (unsigned long long)m0 + 1);
    EXPECT(f, s, in, want);
    free(want);
    /* CONDSTORE is now on: MODSEQ in FETCH of a flag change. */
    struct store_msg_list l = {0};
    assert_int_equal(store_msgs_load(f->st, ACCOUNT, mb.id, 3, 3, 0, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 1);
    want = fmt("* 3 FETCH (UID 3 MODSEQ (%llu))\r\na OK UID FETCH completed\r\n",
               (unsigned long long)l.v[0].modseq);
    store_msg_list_free(&l);
    EXPECT(f, s, "a UID FETCH 3 MODSEQ\r\n", want);
    free(want);
    want = fmt("* 3 FETCH (BODY[1] {11}\r\nHello Bob\r\n FLAGS (\\Seen \\Recent) MODSEQ (%llu))\r\n"
               "a OK FETCH completed\r\n",
               (unsigned long long)m0 + 2);
    EXPECT(f, s, "a FETCH 3 BODY[1]\r\n", want);
    free(want);
    imap_session_free(&s);
}

static void test_fetch_vanished(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 4; i++)
        deliver(f, msg_simple);
    struct imap_session *a = session(f, "a", "s SELECT INBOX\r\n");
    struct imap_session *b = session(f, "b", NULL);
    expect_has(f, b, "e ENABLE QRESYNC\r\n", "e OK");
    expect_has(f, b, "s SELECT INBOX\r\n", "s OK");
    struct store_mailbox mb;
    char err[256];
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, "INBOX", &mb, err, sizeof(err)), 1);
    uint64_t m0 = mb.highestmodseq;
    EXPECT(f, a, "a STORE 1,3 +FLAGS.SILENT (\\Deleted)\r\n", "a OK STORE completed\r\n");
    EXPECT(f, a, "a EXPUNGE\r\n", "* 1 EXPUNGE\r\n* 2 EXPUNGE\r\na OK EXPUNGE completed\r\n");
    EXPECT(f, a, "a STORE 1 +FLAGS.SILENT (\\Answered)\r\n", "a OK STORE completed\r\n");
    char in[128];
    snprintf(in, sizeof(in), "a UID FETCH 1:* FLAGS (CHANGEDSINCE %llu VANISHED)\r\n",
             (unsigned long long)m0);
    /* b still has 1 and 3 in its view: they come as a plain VANISHED from
     * the sync after the command, not as VANISHED (EARLIER). */
    char *got = run(f, b, in);
    if (!strstr(got, "* 2 FETCH (UID 2 FLAGS (\\Answered) MODSEQ (") ||
        !strstr(got, "* VANISHED 1,3\r\n") || strstr(got, "EARLIER") ||
        !strstr(got, "a OK UID FETCH completed\r\n"))
        fail_msg("got [%s]", got);
    free(got);
    /* Now that b knows, a new request reports them as VANISHED (EARLIER). */
    got = run(f, b, in);
    if (!strstr(got, "* VANISHED (EARLIER) 1,3\r\n* 1 FETCH (UID 2 FLAGS (\\Answered) MODSEQ ("))
        fail_msg("got [%s]", got);
    free(got);
    imap_session_free(&a);
    imap_session_free(&b);
}

/* ENVELOPE/BODYSTRUCTURE come from the cache once it is filled: no file
 * is opened (proved by removing the message files). */
static void test_fetch_cache(void **state)
{
    struct fx *f = *state;
    enum { N = 50 };
    for (int i = 0; i < N; i++)
        deliver_len(f, "INBOX", msg_nested, strlen(msg_nested), 1700000000);
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    char *first = run(f, s, "a FETCH 1:* (ENVELOPE BODY BODYSTRUCTURE)\r\n");
    char dir[PATH_MAX], p[PATH_MAX + 300];
    assert_int_equal(store_account_dir(f->st, ACCOUNT, dir, sizeof(dir)), 0);
    snprintf(p, sizeof(p), "%s/msg", dir);
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *e;
    int removed = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/msg/%s", dir, e->d_name);
        if (unlink(p) == 0)
            removed++;
    }
    closedir(d);
    assert_int_equal(removed, N);
    char *second = run(f, s, "a FETCH 1:* (ENVELOPE BODY BODYSTRUCTURE)\r\n");
    assert_string_equal(first, second);
    /* BODY from the cached BODYSTRUCTURE equals BODY computed by src/mime. */
    char *env = mime_item(msg_nested, strlen(msg_nested), 0);
    char *body = mime_item(msg_nested, strlen(msg_nested), 1);
    char *bs = mime_item(msg_nested, strlen(msg_nested), 2);
    char *want = fmt("* 7 FETCH (ENVELOPE %s BODY %s BODYSTRUCTURE %s)\r\n", env, body, bs);
    if (!strstr(second, want))
        fail_msg("want [%s] in [%s]", want, second);
    free(want);
    /* The bytes are gone: a FETCH of them skips the message (RFC 5530). */
    EXPECT(f, s, "a FETCH 1 (UID BODY.PEEK[1])\r\n",
           "a NO [EXPUNGEISSUED] Some messages were expunged\r\n");
    free(first);
    free(second);
    free(env);
    free(body);
    free(bs);
    imap_session_free(&s);
}

/* Another session expunges: FETCH by sequence number must not report the
 * EXPUNGE (RFC 3501 7.4.1), but skips the message; NOOP reports it. */
static void test_fetch_expunged_elsewhere(void **state)
{
    struct fx *f = *state;
    deliver(f, msg_simple);
    deliver(f, msg_simple);
    deliver(f, msg_simple);
    struct imap_session *a = session(f, "a", "s SELECT INBOX\r\n");
    struct imap_session *b = session(f, "b", "s SELECT INBOX\r\n");
    EXPECT(f, b, "b STORE 2 +FLAGS.SILENT (\\Deleted)\r\n", "b OK STORE completed\r\n");
    EXPECT(f, b, "b EXPUNGE\r\n", "* 2 EXPUNGE\r\nb OK EXPUNGE completed\r\n");
    EXPECT(f, a, "a FETCH 1:3 UID\r\n",
           "* 1 FETCH (UID 1)\r\n* 3 FETCH (UID 3)\r\n"
           "a NO [EXPUNGEISSUED] Some messages were expunged\r\n");
    EXPECT(f, a, "a FETCH 2 BODY[]\r\n", "a NO [EXPUNGEISSUED] Some messages were expunged\r\n");
    EXPECT(f, a, "a FETCH 3 UID\r\n", "* 3 FETCH (UID 3)\r\na OK FETCH completed\r\n");
    EXPECT(f, a, "a NOOP\r\n", "* 2 EXPUNGE\r\na OK NOOP completed\r\n");
    EXPECT(f, a, "a FETCH 2 UID\r\n", "* 2 FETCH (UID 3)\r\na OK FETCH completed\r\n");
    /* UID FETCH may report expunges (full sync), and says OK. */
    EXPECT(f, b, "b STORE 1 +FLAGS.SILENT (\\Deleted)\r\n", "b OK STORE completed\r\n");
    EXPECT(f, b, "b EXPUNGE\r\n", "* 1 EXPUNGE\r\nb OK EXPUNGE completed\r\n");
    EXPECT(f, a, "a UID FETCH 1:* UID\r\n",
           "* 2 FETCH (UID 3)\r\n* 1 EXPUNGE\r\na OK UID FETCH completed\r\n");
    imap_session_free(&a);
    imap_session_free(&b);
}

/* Flags set by this session's FETCH are not reported again; those set by
 * another come with the next FETCH (RFC 3501 7.4.1 allows FETCH then). */
static void test_fetch_flags_elsewhere(void **state)
{
    struct fx *f = *state;
    deliver(f, msg_simple);
    deliver(f, msg_simple);
    struct imap_session *a = session(f, "a", "s SELECT INBOX\r\n");
    struct imap_session *b = session(f, "b", "s SELECT INBOX\r\n");
    EXPECT(
        f, b, "b FETCH 1 BODY[TEXT]\r\n",
        "* 1 FETCH (BODY[TEXT] {11}\r\nHello Bob\r\n FLAGS (\\Seen))\r\nb OK FETCH completed\r\n");
    EXPECT(f, a, "a FETCH 2 FLAGS\r\n",
           "* 2 FETCH (FLAGS (\\Recent))\r\n* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n"
           "a OK FETCH completed\r\n");
    EXPECT(f, a, "a NOOP\r\n", "a OK NOOP completed\r\n");
    imap_session_free(&a);
    imap_session_free(&b);
}

/* --- the shared MIME corpus --------------------------------------------------------------- */

/* Split "ENVELOPE x BODY y BODYSTRUCTURE z" (Dovecot's answer) into y and z. */
static int skip_value(const char *p, size_t n, size_t *pos)
{
    size_t i = *pos;
    if (i >= n)
        return -1;
    if (p[i] == '(') {
        for (i++;;) {
            while (i < n && p[i] == ' ')
                i++;
            if (i >= n)
                return -1;
            if (p[i] == ')')
                break;
            if (skip_value(p, n, &i) < 0)
                return -1;
        }
        i++;
    } else if (p[i] == '"') {
        for (i++; i < n && p[i] != '"'; i++)
            if (p[i] == '\\')
                i++;
        i++;
    } else if (p[i] == '{') {
        size_t len = strtoul(p + i + 1, NULL, 10);
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl)
            return -1;
        i = (size_t)(nl - p) + 1 + len;
    } else {
        while (i < n && p[i] != ' ' && p[i] != ')' && p[i] != '(')
            i++;
    }
    *pos = i;
    return i <= n ? 0 : -1;
}

static char *read_file(const char *path, size_t *len_r)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    struct buf b = BUF_INIT;
    char tmp[8192];
    size_t k;
    while ((k = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        buf_append(&b, tmp, k);
    fclose(fp);
    *len_r = buf_size(&b);
    char *r = malloc(*len_r + 1);
    memcpy(r, buf_ptr(&b), *len_r);
    r[*len_r] = '\0';
    buf_free(&b);
    return r;
}

/* Every corpus message: ENVELOPE, BODY and BODYSTRUCTURE the same from the
 * parse and from the cache, and what src/mime computes; BODY (derived
 * from the cached BODYSTRUCTURE) equals Dovecot's wherever src/mime's
 * BODYSTRUCTURE does. Nested parts are fetched too. */
static void test_fetch_corpus(void **state)
{
    struct fx *f = *state;
    DIR *d = opendir(CORPUS);
    if (!d) {
        skip();
        return;
    }
    struct imap_session *s = session(f, "t1", "s SELECT INBOX\r\n");
    struct dirent *e;
    unsigned seq = 0, compared = 0;
    char *names[256];
    size_t nnames = 0;
    while ((e = readdir(d)) && nnames < 256)
        if (e->d_name[0] != '.' && strcmp(e->d_name, "README.md") != 0 &&
            strncmp(e->d_name, "LICENSE", 7) != 0)
            names[nnames++] = strdup(e->d_name);
    closedir(d);
    for (size_t i = 0; i < nnames; i++) {
        char path[PATH_MAX];
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", CORPUS, names[i]);
        char *raw = read_file(path, &len);
        assert_non_null(raw);
        if (len == 0) {
            free(raw);
            free(names[i]);
            continue;
        }
        struct buf crlf = BUF_INIT; /* as Dovecot got it (imaplib APPEND) */
        assert_int_equal(mime_crlf_normalize((const uint8_t *)raw, len, &crlf), 0);
        deliver_len(f, "INBOX", buf_ptr(&crlf), buf_size(&crlf), 1700000000);
        seq++;
        expect_has(f, s, "n NOOP\r\n", " EXISTS\r\n"); /* the view learns of it */
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "a FETCH %u (ENVELOPE BODY BODYSTRUCTURE)\r\n", seq);
        size_t n1, n2;
        char *first = run_len(f, s, cmd, &n1);
        char *second = run_len(f, s, cmd, &n2);
        if (n1 != n2 || memcmp(first, second, n1) != 0)
            fail_msg("%s: first and second FETCH differ:\n%s\n%s", names[i], first, second);
        /* "* n FETCH (" + items + ")\r\na OK FETCH completed\r\n" */
        char prefix[64];
        int pl = snprintf(prefix, sizeof(prefix), "* %u FETCH (", seq);
        const char *tail = ")\r\na OK FETCH completed\r\n";
        assert_true(n1 > (size_t)pl + strlen(tail));
        assert_memory_equal(first, prefix, (size_t)pl);
        assert_memory_equal(first + n1 - strlen(tail), tail, strlen(tail));
        const char *items = first + pl;
        size_t ilen = n1 - (size_t)pl - strlen(tail);
        /* Against src/mime directly. */
        const char *msg = (const char *)buf_ptr(&crlf);
        char *env = mime_item(msg, buf_size(&crlf), 0);
        char *body = mime_item(msg, buf_size(&crlf), 1);
        char *bs = mime_item(msg, buf_size(&crlf), 2);
        char *want = fmt("ENVELOPE %s BODY %s BODYSTRUCTURE %s", env, body, bs);
        if (strlen(want) != ilen || memcmp(want, items, ilen) != 0)
            fail_msg("%s: FETCH differs from src/mime:\n%.*s\n%s", names[i], (int)ilen, items,
                     want);
        free(want);
        /* Against Dovecot, where src/mime's BODYSTRUCTURE agrees. */
        snprintf(path, sizeof(path), "%s/%s.fetch", EXPECTED, names[i]);
        size_t elen;
        char *exp = read_file(path, &elen);
        if (exp) {
            size_t pos = strlen("ENVELOPE ");
            assert_int_equal(skip_value(exp, elen, &pos), 0);
            size_t b0 = pos + strlen(" BODY "), b1 = b0;
            assert_int_equal(skip_value(exp, elen, &b1), 0);
            size_t s0 = b1 + strlen(" BODYSTRUCTURE ");
            if (strlen(bs) == elen - s0 && memcmp(bs, exp + s0, elen - s0) == 0) {
                if (strlen(body) != b1 - b0 || memcmp(body, exp + b0, b1 - b0) != 0)
                    fail_msg("%s: BODY differs from Dovecot's:\n%s\n%.*s", names[i], body,
                             (int)(b1 - b0), exp + b0);
                compared++;
            }
            free(exp);
        }
        /* Every part's MIME header and body can be fetched; sizes match the literals. */
        snprintf(cmd, sizeof(cmd),
                 "a FETCH %u (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[TEXT])\r\n", seq);
        char *parts = run_len(f, s, cmd, &n1);
        assert_non_null(strstr(parts, "a OK FETCH completed\r\n"));
        free(parts);
        free(env);
        free(body);
        free(bs);
        free(first);
        free(second);
        buf_free(&crlf);
        free(raw);
        free(names[i]);
    }
    printf("corpus: %u messages, BODY compared with Dovecot for %u\n", seq, compared);
    imap_session_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fetch_simple_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_condstore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_vanished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_expunged_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_flags_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_corpus, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
