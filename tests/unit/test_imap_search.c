/* Unit tests for proto/imap/imap_search (the SEARCH program: parser and
 * evaluator, on in-memory messages) and for SEARCH / UID SEARCH in a real
 * imap_session against a real store in a temporary directory. */
#include "testutil.h"

#include "cli/cli.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_search.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

#include <stdbool.h>
#include <unistd.h>

/* --- parsing helpers ------------------------------------------------------------ */

/* Parse "t SEARCH <keys>" with the IMAP parser (literals accepted), then
 * the search program. Returns the parse result; *p_r set on success. */
static enum imap_search_parse_result parse_keys(const char *keys, struct imap_search **p_r,
                                                char *err, size_t errlen)
{
    struct imap_parser *ip = imap_parser_new(NULL);
    assert_non_null(ip);
    struct buf line = BUF_INIT;
    buf_printf(&line, "t SEARCH %s\r\n", keys);
    assert_int_equal(imap_parser_feed(ip, buf_ptr(&line), buf_size(&line)), 0);
    struct imap_command *cmd = NULL;
    const char *tag, *perr;
    enum imap_parse_status ps;
    while ((ps = imap_parser_next(ip, &cmd, &tag, &perr)) == IMAP_PARSE_LITERAL_WAIT)
        ;
    if (ps != IMAP_PARSE_COMMAND)
        fail_msg("IMAP parser: %d %s for %s", ps, perr ? perr : "", keys);
    enum imap_search_parse_result rc = imap_search_parse(cmd->args, cmd->nargs, p_r, err, errlen);
    imap_parser_free(&ip);
    buf_free(&line);
    return rc;
}

/* The program for keys, formatted. Fails the test when it does not parse. */
static char *fmt_keys(const char *keys)
{
    struct imap_search *p;
    char err[128];
    if (parse_keys(keys, &p, err, sizeof(err)) != IMAP_SEARCH_PARSE_OK)
        fail_msg("parse %s: %s", keys, err);
    struct buf b = BUF_INIT;
    assert_int_equal(imap_search_format(p, &b), 0);
    char *s = strndup((const char *)buf_ptr(&b), buf_size(&b));
    /* The formatted program parses back to itself. */
    struct imap_search *p2;
    if (parse_keys(s, &p2, err, sizeof(err)) != IMAP_SEARCH_PARSE_OK)
        fail_msg("reparse %s: %s", s, err);
    struct buf b2 = BUF_INIT;
    assert_int_equal(imap_search_format(p2, &b2), 0);
    assert_int_equal(buf_size(&b), buf_size(&b2));
    assert_memory_equal(buf_ptr(&b), buf_ptr(&b2), buf_size(&b));
    buf_free(&b);
    buf_free(&b2);
    imap_search_free(&p);
    imap_search_free(&p2);
    assert_null(p);
    return s;
}

static void assert_fmt(const char *keys, const char *want)
{
    char *got = fmt_keys(keys);
    if (strcmp(got, want) != 0)
        fail_msg("%s\n  got:  %s\n  want: %s", keys, got, want);
    free(got);
}

static void assert_bad(const char *keys)
{
    struct imap_search *p = (struct imap_search *)1;
    char err[128];
    enum imap_search_parse_result rc = parse_keys(keys, &p, err, sizeof(err));
    if (rc != IMAP_SEARCH_PARSE_BAD)
        fail_msg("%s: expected BAD, got %d", keys, rc);
    assert_null(p);
    assert_true(err[0] != '\0');
}

/* --- parser ---------------------------------------------------------------------- */

static void test_parse_simple_keys(void **state)
{
    static const char *const words[] = {
        "ALL",       "ANSWERED", "DELETED",   "DRAFT",  "FLAGGED", "SEEN", "UNANSWERED",
        "UNDELETED", "UNDRAFT",  "UNFLAGGED", "UNSEEN", "RECENT",  "NEW",  "OLD",
    };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        assert_fmt(words[i], words[i]);
        char lower[32];
        for (size_t k = 0; k <= strlen(words[i]); k++)
            lower[k] = (char)(words[i][k] | (words[i][k] ? 0x20 : 0));
        assert_fmt(lower, words[i]); /* keys are case-insensitive */
    }
}

static void test_parse_arg_keys(void **state)
{
    assert_fmt("BCC x", "BCC \"x\"");
    assert_fmt("CC \"a b\"", "CC \"a b\"");
    assert_fmt("FROM alice", "FROM \"alice\"");
    assert_fmt("TO {3}\r\nbob", "TO \"bob\"");
    assert_fmt("SUBJECT \"say \\\"hi\\\"\"", "SUBJECT \"say \\\"hi\\\"\"");
    assert_fmt("HEADER X-Spam-Flag YES", "HEADER \"X-Spam-Flag\" \"YES\"");
    assert_fmt("HEADER \"List-Id\" \"\"", "HEADER \"List-Id\" \"\"");
    assert_fmt("BODY fox", "BODY \"fox\"");
    assert_fmt("TEXT \"caf\xc3\xa9\"", "TEXT \"caf\xc3\xa9\"");
    assert_fmt("TEXT {4}\r\na\r\nb", "TEXT {4}\r\na\r\nb");
    assert_fmt("BODY \"\"", "ALL"); /* "" is in every body */
    assert_fmt("KEYWORD $Forwarded", "KEYWORD \"$Forwarded\"");
    assert_fmt("UNKEYWORD \"Junk\"", "UNKEYWORD \"Junk\"");
    assert_fmt("KEYWORD \\Seen", "KEYWORD \"\\\\Seen\"");
    assert_fmt("LARGER 1024", "LARGER 1024");
    assert_fmt("SMALLER 0", "SMALLER 0");
    assert_fmt("LARGER 007", "LARGER 7");
    assert_fmt("BEFORE 1-Feb-1994", "BEFORE 1-Feb-1994");
    assert_fmt("ON \"29-feb-2000\"", "ON 29-Feb-2000");
    assert_fmt("SINCE 09-DEC-2024", "SINCE 9-Dec-2024");
    assert_fmt("SENTBEFORE 31-Dec-1969", "SENTBEFORE 31-Dec-1969");
    assert_fmt("SENTON 1-Jan-1970", "SENTON 1-Jan-1970");
    assert_fmt("SENTSINCE 28-Feb-2100", "SENTSINCE 28-Feb-2100");
    assert_fmt("UID 1:5,7", "UID 1:5,7");
    assert_fmt("UID 5:1", "UID 1:5");
    assert_fmt("UID *", "UID *");
    assert_fmt("1:3,2:4,9", "1:4,9");
    assert_fmt("4:*", "4:*");
    assert_fmt("MODSEQ 0", "MODSEQ 0");
    assert_fmt("MODSEQ 9223372036854775807", "MODSEQ 9223372036854775807");
    assert_fmt("MODSEQ \"/flags/\\\\draft\" all 620162338", "MODSEQ 620162338");
    assert_fmt("MODSEQ \"/flags/$Junk\" PRIV 5", "MODSEQ 5");
}

static void test_parse_nesting(void **state)
{
    assert_fmt("SEEN FLAGGED", "SEEN FLAGGED");
    assert_fmt("(SEEN)", "SEEN");
    assert_fmt("((SEEN))", "SEEN");
    assert_fmt("(SEEN FLAGGED) DRAFT", "(SEEN FLAGGED) DRAFT");
    assert_fmt("NOT SEEN", "NOT SEEN");
    assert_fmt("NOT NOT SEEN", "NOT NOT SEEN");
    assert_fmt("NOT (SEEN FLAGGED)", "NOT (SEEN FLAGGED)");
    assert_fmt("OR SEEN FLAGGED", "OR SEEN FLAGGED");
    assert_fmt("OR (SEEN DRAFT) OR FLAGGED NOT 1:2", "OR (SEEN DRAFT) OR FLAGGED NOT 1:2");
    assert_fmt("OR OR SEEN FLAGGED DRAFT", "OR OR SEEN FLAGGED DRAFT");
    /* RFC 3501 6.4.4 example. */
    assert_fmt("FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
               "FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"");
    assert_fmt("(OR (NOT SEEN) (LARGER 5 SMALLER 10))", "OR NOT SEEN (LARGER 5 SMALLER 10)");
}

/* Children are sorted cheapest first: index row, Date:, header fields, bodies. */
static void test_parse_cost_order(void **state)
{
    assert_fmt("BODY a SUBJECT b SENTON 1-Jan-2000 SEEN",
               "SEEN SENTON 1-Jan-2000 SUBJECT \"b\" BODY \"a\"");
    assert_fmt("TEXT a BODY b FROM c TO d", "FROM \"c\" TO \"d\" TEXT \"a\" BODY \"b\"");
    assert_fmt("OR BODY x UNSEEN", "OR UNSEEN BODY \"x\"");
    assert_fmt("(BODY x SEEN) DELETED", "DELETED (SEEN BODY \"x\")");
    assert_fmt("NOT BODY x (FROM y FLAGGED)", "(FLAGGED FROM \"y\") NOT BODY \"x\"");

    struct imap_search *p;
    char err[128];
    assert_int_equal(parse_keys("SEEN UID 3", &p, err, sizeof(err)), IMAP_SEARCH_PARSE_OK);
    assert_int_equal(imap_search_cost(p), IMAP_SEARCH_COST_INDEX);
    imap_search_free(&p);
    assert_int_equal(parse_keys("SEEN SENTON 1-Jan-2000", &p, err, sizeof(err)), 0);
    assert_int_equal(imap_search_cost(p), IMAP_SEARCH_COST_DATE);
    imap_search_free(&p);
    assert_int_equal(parse_keys("SEEN FROM a", &p, err, sizeof(err)), 0);
    assert_int_equal(imap_search_cost(p), IMAP_SEARCH_COST_FIELDS);
    imap_search_free(&p);
    assert_int_equal(parse_keys("OR HEADER subject x TO b", &p, err, sizeof(err)), 0);
    assert_int_equal(imap_search_cost(p), IMAP_SEARCH_COST_FIELDS);
    imap_search_free(&p);
    assert_int_equal(parse_keys("NOT HEADER X-A b", &p, err, sizeof(err)), 0);
    assert_int_equal(imap_search_cost(p), IMAP_SEARCH_COST_HEADER);
    imap_search_free(&p);
    assert_int_equal(parse_keys("OR SEEN TEXT x", &p, err, sizeof(err)), 0);
    assert_int_equal(imap_search_cost(p), IMAP_SEARCH_COST_BODY);
    imap_search_free(&p);
}

static void test_parse_charset_return(void **state)
{
    struct imap_search *p;
    char err[128];
    assert_int_equal(parse_keys("CHARSET UTF-8 ALL", &p, err, sizeof(err)), 0);
    assert_false(p->esearch);
    assert_false(p->modseq);
    imap_search_free(&p);
    assert_int_equal(parse_keys("charset us-ascii SEEN", &p, err, sizeof(err)), 0);
    imap_search_free(&p);
    assert_int_equal(parse_keys("CHARSET \"utf-8\" SEEN", &p, err, sizeof(err)), 0);
    imap_search_free(&p);
    assert_int_equal(parse_keys("CHARSET KOI8-R ALL", &p, err, sizeof(err)),
                     IMAP_SEARCH_PARSE_BADCHARSET);
    assert_null(p);
    assert_int_equal(parse_keys("CHARSET ISO-8859-1 BODY x", &p, err, sizeof(err)),
                     IMAP_SEARCH_PARSE_BADCHARSET);

    assert_int_equal(parse_keys("RETURN (MIN MAX) ALL", &p, err, sizeof(err)), 0);
    assert_true(p->esearch);
    assert_int_equal(p->ret, IMAP_SEARCH_RET_MIN | IMAP_SEARCH_RET_MAX);
    imap_search_free(&p);
    assert_int_equal(parse_keys("RETURN () CHARSET UTF-8 SEEN", &p, err, sizeof(err)), 0);
    assert_true(p->esearch);
    assert_int_equal(p->ret, IMAP_SEARCH_RET_ALL);
    imap_search_free(&p);
    assert_int_equal(parse_keys("RETURN (count all) SEEN", &p, err, sizeof(err)), 0);
    assert_int_equal(p->ret, IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT);
    imap_search_free(&p);

    assert_int_equal(parse_keys("SEEN MODSEQ 4", &p, err, sizeof(err)), 0);
    assert_true(p->modseq);
    imap_search_free(&p);
    assert_int_equal(parse_keys("NOT (MODSEQ 4)", &p, err, sizeof(err)), 0);
    assert_true(p->modseq);
    imap_search_free(&p);
}

static void test_parse_errors(void **state)
{
    static const char *const bad[] = {
        "",    /* no keys */
        "FOO", /* unknown key */
        "SEEN FOO",
        "\"SEEN\"", /* keys are atoms */
        "()",       /* empty group */
        "(SEEN ())",
        "NOT", /* missing operands */
        "OR SEEN",
        "OR",
        "(NOT)",
        "BEFORE",
        "BEFORE 32-Jan-2000",
        "BEFORE 29-Feb-1900", /* not a leap year */
        "BEFORE 1-Feb-94",
        "BEFORE 1-Febr-1994",
        "BEFORE 1-Xyz-1994",
        "BEFORE 001-Feb-1994",
        "BEFORE 1/2/1994",
        "BEFORE 1-Feb-1994x",
        "BEFORE (1-Feb-1994)",
        "SENTON 0-Jan-2000",
        "LARGER",
        "LARGER x",
        "LARGER -1",
        "LARGER 1k",
        "LARGER \"5\"",
        "SMALLER 99999999999999999999",
        "UID",
        "UID x",
        "UID 0",
        "UID 1:0",
        "UID (1)",
        "0",
        "1,,2",
        "$", /* no SEARCHRES */
        "UID $",
        "KEYWORD",
        "KEYWORD (a)",
        "KEYWORD \"\"",
        "KEYWORD \"a b\"",
        "UNKEYWORD",
        "HEADER",
        "HEADER Subject",
        "HEADER \"\" x",
        "HEADER \"Sub:ject\" x",
        "HEADER \"Sub ject\" x",
        "HEADER (Subject) x",
        "FROM",
        "SUBJECT (a)",
        "BODY",
        "TEXT",
        "TO NIL NIL", /* NIL is read as the atom, then NIL is not a key */
        "MODSEQ",
        "MODSEQ x",
        "MODSEQ -1",
        "MODSEQ 9223372036854775808", /* 2^63 */
        "MODSEQ \"/flags/\\\\Seen\" 5",
        "MODSEQ \"/flags/\\\\Seen\" both 5",
        "MODSEQ \"/foo/bar\" all 5",
        "MODSEQ \"/flags/\" all 5",
        "CHARSET",
        "CHARSET UTF-8", /* no keys after the charset */
        "CHARSET (UTF-8) ALL",
        "RETURN",
        "RETURN MIN ALL",
        "RETURN (MIN) ",
        "RETURN (SAVE) ALL", /* RFC 5182 not offered */
        "RETURN (PARTIAL 1:5) ALL",
        "ALL RETURN (MIN)", /* RETURN only first */
        "ALL CHARSET UTF-8",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_bad(bad[i]);
}

static void test_parse_depth(void **state)
{
    struct buf b = BUF_INIT;
    for (int i = 0; i < IMAP_SEARCH_MAX_DEPTH - 1; i++)
        buf_puts(&b, "NOT ");
    buf_puts(&b, "SEEN");
    char *s = fmt_keys(buf_cstr(&b));
    free(s);
    buf_reset(&b);
    for (int i = 0; i < IMAP_SEARCH_MAX_DEPTH; i++)
        buf_puts(&b, "NOT ");
    buf_puts(&b, "SEEN");
    assert_bad(buf_cstr(&b));
    buf_reset(&b);
    for (int i = 0; i < 200; i++)
        buf_puts(&b, "OR SEEN ");
    buf_puts(&b, "SEEN");
    assert_bad(buf_cstr(&b));
    buf_reset(&b);
    /* Many keys side by side are fine. */
    for (int i = 0; i < 2000; i++)
        buf_puts(&b, i % 2 ? "SEEN " : "BODY x ");
    buf_puts(&b, "ALL");
    struct imap_search *p;
    char err[128];
    assert_int_equal(parse_keys(buf_cstr(&b), &p, err, sizeof(err)), IMAP_SEARCH_PARSE_OK);
    assert_int_equal(p->root.nkids, 2001);
    assert_int_equal(p->root.kids[0].op, IMAP_SEARCH_FLAG);
    assert_int_equal(p->root.kids[2000].op, IMAP_SEARCH_BODY);
    imap_search_free(&p);
    buf_free(&b);
}

static void test_dates(void **state)
{
    int64_t d;
    assert_int_equal(imap_search_date_parse("1-Jan-1970", &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(imap_search_date_parse("2-jan-1970", &d), 0);
    assert_int_equal(d, 1);
    assert_int_equal(imap_search_date_parse("31-Dec-1969", &d), 0);
    assert_int_equal(d, -1);
    assert_int_equal(imap_search_date_parse("1-Feb-1994", &d), 0);
    assert_int_equal(d, 8797);
    assert_int_equal(imap_search_date_parse("29-Feb-2024", &d), 0);
    assert_int_equal(d, 19782);
    assert_int_equal(imap_search_date_parse("29-Feb-2023", &d), -1);
    assert_int_equal(imap_search_date_parse("", &d), -1);
    assert_int_equal(imap_search_date_parse("1-Feb-", &d), -1);

    static const struct {
        const char *v;
        int64_t day;
    } sent[] = {
        {"Tue, 1 Feb 1994 21:52:25 -0800", 8797},
        {"1 Feb 1994 21:52:25 -0800", 8797},
        {"Tue,  01 Feb 1994 23:59:59 +1400 (PST)", 8797},
        {"(comment) Tue, 1 (x) Feb\r\n 1994 00:00 GMT", 8797},
        {"Tue, 1 Feb 94 21:52:25 EST", 8797},
        {"Tue, 1 Feb 094 21:52:25 EST", 8797},
        {"Sat, 1 Jan 00 00:00:00 +0000", 10957},
        {"1-Feb-1994", 8797},
        {"Tuesday, 1 February 1994 10:00", 8797},
    };
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        if (imap_search_sent_day((const uint8_t *)sent[i].v, strlen(sent[i].v), &d) != 0)
            fail_msg("sent day of %s", sent[i].v);
        assert_int_equal(d, sent[i].day);
    }
    static const char *const badsent[] = {"",           "yesterday", "Tue, Feb 1994", "32 Jan 2000",
                                          "1 Foo 2000", "1 Feb 1",   "1 Feb 19940",   "Tue,"};
    for (size_t i = 0; i < sizeof(badsent) / sizeof(badsent[0]); i++)
        assert_int_equal(imap_search_sent_day((const uint8_t *)badsent[i], strlen(badsent[i]), &d),
                         -1);
}

/* --- evaluator on in-memory messages --------------------------------------------- */

static const char MSG_PLAIN[] = "Return-Path: <alice@example.com>\r\n"
                                "From: Alice Example <alice@example.com>\r\n"
                                "To: Bob <bob@example.org>, carol@example.net\r\n"
                                "Cc: dave@example.com\r\n"
                                "Subject: Lunch plans for\r\n"
                                " the weekend\r\n"
                                "Date: Tue, 1 Feb 1994 21:52:25 -0800\r\n"
                                "X-Mailer: Pine\r\n"
                                "Message-ID: <1@example.com>\r\n"
                                "\r\n"
                                "The quick brown fox jumps over the lazy dog.\r\n"
                                "Meet at noon?\r\n";

static const char MSG_QP[] = "From: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>\r\n"
                             "To: bob@example.org\r\n"
                             "Subject: =?UTF-8?B?w4ZybGlnIHRhbHQ=?= =?UTF-8?Q?_=C3=A9t=C3=A9?=\r\n"
                             "Date: 3 Mar 2021 10:00 +0100\r\n"
                             "MIME-Version: 1.0\r\n"
                             "Content-Type: text/plain; charset=UTF-8\r\n"
                             "Content-Transfer-Encoding: quoted-printable\r\n"
                             "\r\n"
                             "Un caf=C3=A9 tr=C3=A8s cha=\r\n"
                             "ud, s'il vous pla=C3=AEt.\r\n";

static const char MSG_B64[] = "From: bob@example.org\r\n"
                              "Subject: base64\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Transfer-Encoding: base64\r\n"
                              "\r\n"
                              "VGhlIHNlY3JldCB3b3JkIGlzIHh5bG9waG9uZS4NCg==\r\n";

static const char MSG_LATIN1[] = "From: eve@example.com\r\n"
                                 "Subject: latin-1\r\n"
                                 "Content-Type: text/plain; charset=ISO-8859-1\r\n"
                                 "Content-Transfer-Encoding: 8bit\r\n"
                                 "\r\n"
                                 "Na\xefve caf\xe9 cr\xe8me br\xfbl\xe9\x65.\r\n";

static const char MSG_MULTI[] = "From: frank@example.com\r\n"
                                "To: grace@example.com\r\n"
                                "Bcc: secret@example.com\r\n"
                                "Subject: report\r\n"
                                "X-Priority: 1\r\n"
                                "MIME-Version: 1.0\r\n"
                                "Content-Type: multipart/mixed; boundary=\"XyZ\"\r\n"
                                "\r\n"
                                "This is the preamble with penguin.\r\n"
                                "--XyZ\r\n"
                                "Content-Type: text/plain; charset=us-ascii\r\n"
                                "\r\n"
                                "See the attached file.\r\n"
                                "--XyZ\r\n"
                                "Content-Type: text/plain; charset=utf-8; name=\"notes.txt\"\r\n"
                                "Content-Disposition: attachment; filename=\"notes.txt\"\r\n"
                                "Content-Transfer-Encoding: base64\r\n"
                                "\r\n"
                                "R3LDvMOfZSBhdXMgTcO8bmNoZW4NCg==\r\n"
                                "--XyZ\r\n"
                                "Content-Type: image/png\r\n"
                                "Content-Transfer-Encoding: base64\r\n"
                                "\r\n"
                                "YXR0YWNobWVudCB0ZXh0IHF1b2trYQ0K\r\n"
                                "--XyZ--\r\n";

struct tmsg {
    const char *text;
    struct imap_search_msg m;
    bool unreadable;
};

static int tmsg_read(void *ctx, const struct imap_search_msg *m, uint8_t **data_r, size_t *len_r)
{
    const struct tmsg *t = m->handle;
    if (t->unreadable)
        return -1;
    size_t n = strlen(t->text);
    *data_r = malloc(n + 1);
    assert_non_null(*data_r);
    memcpy(*data_r, t->text, n + 1);
    *len_r = n;
    return 0;
}

static void tmsg_init(struct tmsg *t, const char *text, uint32_t seq)
{
    memset(t, 0, sizeof(*t));
    t->text = text;
    t->m.seq = seq;
    t->m.uid = seq * 10;
    t->m.size = strlen(text);
    t->m.modseq = 100 + seq;
    t->m.internal_date = 1700000000; /* 2023-11-14 22:13:20 UTC */
    t->m.keywords = "";
    t->m.handle = t;
}

/* Evaluate keys on t, both with and without the short cuts (same answer);
 * *reads_r (may be NULL) gets the reads made with the short cuts. */
static int eval_keys(const char *keys, const struct tmsg *t, unsigned long *reads_r)
{
    struct imap_search *p;
    char err[128];
    if (parse_keys(keys, &p, err, sizeof(err)) != IMAP_SEARCH_PARSE_OK)
        fail_msg("parse %s: %s", keys, err);
    struct imap_search_env env = {.max_seq = 5, .max_uid = 50, .read = tmsg_read};
    int r = imap_search_match(p, &t->m, &env);
    struct imap_search_env env2 = env;
    env2.no_shortcut = true;
    env2.reads = 0;
    int r2 = imap_search_match(p, &t->m, &env2);
    if (r != r2 && r2 != IMAP_SEARCH_UNREADABLE)
        fail_msg("%s: %d with short cuts, %d without", keys, r, r2);
    assert_true(env.reads <= 1);
    if (reads_r)
        *reads_r = env.reads;
    /* With the index's search fields (as delivery computes them), the
     * answer must be the same, and FROM/TO/CC/BCC/SUBJECT read no file. */
    if (!t->unreadable && !t->m.fields) {
        struct mime_message *mm = mime_parse((const uint8_t *)t->text, strlen(t->text), NULL);
        struct buf fields = BUF_INIT;
        assert_non_null(mm);
        assert_int_equal(mime_search_fields(mm, &fields), 0);
        struct tmsg t3 = *t;
        t3.m.handle = &t3;
        t3.m.fields = buf_ptr(&fields);
        t3.m.fields_len = buf_size(&fields);
        struct imap_search_env env3 = {.max_seq = 5, .max_uid = 50, .read = tmsg_read};
        int r3 = imap_search_match(p, &t3.m, &env3);
        if (r3 != r)
            fail_msg("%s: %d from the file, %d with cached fields", keys, r, r3);
        if (imap_search_cost(p) <= IMAP_SEARCH_COST_FIELDS && !strstr(keys, "SENT"))
            assert_int_equal(env3.reads, 0); /* SENT* reads without a cached envelope */
        buf_free(&fields);
        mime_message_free(&mm);
    }
    imap_search_free(&p);
    return r;
}

static void assert_match(const char *keys, const struct tmsg *t, int want)
{
    int got = eval_keys(keys, t, NULL);
    if (got != want)
        fail_msg("message %u, %s: got %d, want %d", t->m.seq, keys, got, want);
}

#define YES(k, t) assert_match(k, t, IMAP_SEARCH_MATCH)
#define NO(k, t) assert_match(k, t, IMAP_SEARCH_NO_MATCH)

static void test_eval_index_keys(void **state)
{
    struct tmsg t;
    tmsg_init(&t, MSG_PLAIN, 2);
    t.m.flags = STORE_FLAG_SEEN | STORE_FLAG_FLAGGED;
    t.m.keywords = "$Forwarded Work";
    t.m.recent = true;
    YES("ALL", &t);
    YES("SEEN", &t);
    NO("UNSEEN", &t);
    YES("FLAGGED", &t);
    NO("UNFLAGGED", &t);
    NO("ANSWERED", &t);
    YES("UNANSWERED", &t);
    NO("DELETED", &t);
    YES("UNDELETED", &t);
    NO("DRAFT", &t);
    YES("UNDRAFT", &t);
    YES("RECENT", &t);
    NO("NEW", &t); /* recent but seen */
    NO("OLD", &t);
    YES("KEYWORD $forwarded", &t);
    YES("KEYWORD work", &t);
    NO("KEYWORD Wor", &t);
    NO("KEYWORD $Junk", &t);
    YES("UNKEYWORD $Junk", &t);
    NO("UNKEYWORD Work", &t);
    YES("KEYWORD \\Seen", &t);
    YES("KEYWORD \\Recent", &t);
    NO("KEYWORD \\Deleted", &t);
    NO("KEYWORD \\Whatever", &t);
    char k[64];
    snprintf(k, sizeof(k), "LARGER %zu", strlen(MSG_PLAIN) - 1);
    YES(k, &t);
    snprintf(k, sizeof(k), "LARGER %zu", strlen(MSG_PLAIN));
    NO(k, &t);
    snprintf(k, sizeof(k), "SMALLER %zu", strlen(MSG_PLAIN) + 1);
    YES(k, &t);
    snprintf(k, sizeof(k), "SMALLER %zu", strlen(MSG_PLAIN));
    NO(k, &t);
    YES("2", &t);
    YES("1:3", &t);
    NO("3:4", &t);
    NO("*", &t); /* "*" is 5 */
    YES("2:*", &t);
    YES("UID 20", &t);
    YES("UID 15:25", &t);
    NO("UID 2", &t);
    NO("UID *", &t); /* "*" is 50 */
    YES("MODSEQ 102", &t);
    YES("MODSEQ 0", &t);
    NO("MODSEQ 103", &t);
    /* 2023-11-14 */
    YES("ON 14-Nov-2023", &t);
    NO("ON 15-Nov-2023", &t);
    YES("BEFORE 15-Nov-2023", &t);
    NO("BEFORE 14-Nov-2023", &t);
    YES("SINCE 14-Nov-2023", &t);
    NO("SINCE 15-Nov-2023", &t);
    t.m.internal_date = 1700006399; /* 23:59:59 UTC the same day */
    YES("ON 14-Nov-2023", &t);
    t.m.internal_date = 1700006400;
    YES("ON 15-Nov-2023", &t);
    t.m.internal_date = -1; /* 1969-12-31 23:59:59 */
    YES("ON 31-Dec-1969", &t);
    YES("BEFORE 1-Jan-1970", &t);

    t.m.recent = true;
    t.m.flags = 0;
    YES("NEW", &t);
    t.m.recent = false;
    YES("OLD", &t);
    NO("NEW", &t);
    t.m.keywords = NULL;
    NO("KEYWORD Work", &t);
    YES("UNKEYWORD Work", &t);
}

static void test_eval_logic(void **state)
{
    struct tmsg t;
    tmsg_init(&t, MSG_PLAIN, 1);
    t.m.flags = STORE_FLAG_SEEN;
    YES("SEEN UNFLAGGED", &t);
    NO("SEEN FLAGGED", &t);
    YES("OR FLAGGED SEEN", &t);
    NO("OR FLAGGED DELETED", &t);
    YES("NOT FLAGGED", &t);
    NO("NOT (SEEN UNFLAGGED)", &t);
    YES("NOT NOT SEEN", &t);
    YES("OR (FLAGGED DELETED) (SEEN NOT DRAFT)", &t);
    YES("(OR FLAGGED SEEN) (OR 1 2)", &t);
    NO("(OR FLAGGED SEEN) (OR 3 2)", &t);
    YES("OR NOT SEEN FROM alice", &t);
    NO("OR NOT SEEN FROM zelda", &t);
    YES("NOT (FLAGGED BODY fox)", &t);
    YES("NOT (SEEN BODY cat)", &t);
    NO("NOT (SEEN BODY fox)", &t);
}

static void test_eval_headers(void **state)
{
    struct tmsg t;
    tmsg_init(&t, MSG_PLAIN, 1);
    YES("FROM alice", &t);
    YES("FROM \"ALICE EXAMPLE\"", &t);
    YES("FROM example.com", &t);
    NO("FROM bob", &t);
    YES("TO bob", &t);
    YES("TO CAROL@example.NET", &t);
    NO("TO dave", &t);
    YES("CC dave", &t);
    NO("BCC dave", &t);
    YES("SUBJECT lunch", &t);
    YES("SUBJECT \"for the weekend\"", &t); /* unfolded */
    NO("SUBJECT {9}\r\nfor\r\n the", &t);
    YES("HEADER X-Mailer pine", &t);
    YES("HEADER x-mailer \"\"", &t); /* present */
    NO("HEADER X-Spam \"\"", &t);
    YES("NOT HEADER X-Spam \"\"", &t);
    YES("HEADER Message-ID <1@example.com>", &t);
    YES("HEADER Return-Path alice", &t);
    NO("BCC \"\"", &t);
    YES("FROM \"\"", &t);
    NO("SUBJECT fox", &t);

    tmsg_init(&t, MSG_QP, 1);
    YES("FROM \"andr\xc3\xa9\"", &t); /* ISO-8859-1 encoded word */
    YES("FROM \"ANDR\xc3\x89\"", &t); /* ignoring case: É */
    NO("FROM =?ISO", &t);
    YES("SUBJECT \"\xc3\x86rlig talt \xc3\xa9t\xc3\xa9\"", &t); /* words joined */
    YES("SUBJECT \"\xc3\xa6rlig\"", &t);

    tmsg_init(&t, MSG_MULTI, 1);
    YES("BCC secret", &t);
    YES("HEADER X-Priority 1", &t);
    NO("HEADER Content-Disposition attachment", &t); /* top-level header only */

    /* A damaged search-fields cache is not trusted: the file decides. */
    tmsg_init(&t, MSG_PLAIN, 1);
    t.m.fields = (const uint8_t *)"1f99:x";
    t.m.fields_len = 6;
    YES("FROM alice", &t);
    t.m.fields = (const uint8_t *)"2f5:alice";
    t.m.fields_len = 9;
    NO("FROM zelda", &t);
    /* An intact one is: it says who the message is from. */
    t.m.fields = (const uint8_t *)"1f5:zelda";
    YES("FROM zelda", &t);
    NO("FROM alice", &t);
}

static void test_eval_bodies(void **state)
{
    struct tmsg t;
    tmsg_init(&t, MSG_PLAIN, 1);
    YES("BODY fox", &t);
    YES("BODY \"LAZY DOG\"", &t);
    NO("BODY alice", &t); /* headers are not the body */
    YES("TEXT alice", &t);
    YES("TEXT fox", &t);
    NO("TEXT zebra", &t);

    tmsg_init(&t, MSG_QP, 1);
    YES("BODY \"caf\xc3\xa9\"", &t);
    YES("BODY \"CAF\xc3\x89\"", &t);
    YES("BODY chaud", &t); /* soft line break removed */
    YES("BODY \"pla\xc3\xaet\"", &t);
    NO("BODY =C3", &t);
    YES("TEXT \"\xc3\xa6rlig\"", &t); /* TEXT includes decoded headers */

    tmsg_init(&t, MSG_B64, 1);
    YES("BODY xylophone", &t);
    YES("BODY \"SECRET WORD\"", &t);
    NO("BODY VGhl", &t);

    tmsg_init(&t, MSG_LATIN1, 1);
    YES("BODY \"caf\xc3\xa9\"", &t);
    YES("BODY \"cr\xc3\xa8me br\xc3\xbbl\xc3\xa9\x65\"", &t);
    YES("BODY \"na\xc3\xafve\"", &t);
    NO("BODY \"caf\xe9\"", &t); /* the raw octet is not UTF-8 */

    tmsg_init(&t, MSG_MULTI, 1);
    YES("BODY attached", &t);
    YES("BODY \"m\xc3\xbcnchen\"", &t);         /* base64 UTF-8 attachment, decoded */
    YES("BODY \"GR\xc3\x9c\xc3\x9f\x45\"", &t); /* Ü folds to ü */
    NO("BODY quokka", &t);                      /* image/png is not text */
    NO("BODY R3LDvMOf", &t);
    YES("TEXT grace", &t);
}

static void test_eval_sent(void **state)
{
    struct tmsg t;
    tmsg_init(&t, MSG_PLAIN, 1);  /* Date: Tue, 1 Feb 1994 21:52:25 -0800 */
    YES("SENTON 1-Feb-1994", &t); /* the day as written, zone disregarded */
    NO("SENTON 2-Feb-1994", &t);
    YES("SENTBEFORE 2-Feb-1994", &t);
    NO("SENTBEFORE 1-Feb-1994", &t);
    YES("SENTSINCE 1-Feb-1994", &t);
    NO("SENTSINCE 2-Feb-1994", &t);
    NO("ON 1-Feb-1994", &t); /* the internal date is another day */

    tmsg_init(&t, MSG_B64, 1); /* no Date: */
    NO("SENTON 1-Feb-1994", &t);
    NO("SENTBEFORE 1-Jan-2100", &t);
    NO("SENTSINCE 1-Jan-1900", &t);
    YES("NOT SENTSINCE 1-Jan-1900", &t);

    /* With a cached envelope the file is not read. */
    unsigned long reads;
    tmsg_init(&t, MSG_PLAIN, 1);
    t.m.envelope = "(\"Tue, 1 Feb 1994 21:52:25 -0800\" \"Lunch\" NIL NIL NIL NIL NIL NIL NIL NIL)";
    assert_int_equal(eval_keys("SENTON 1-Feb-1994", &t, &reads), IMAP_SEARCH_MATCH);
    assert_int_equal(reads, 0);
    t.m.envelope = "(NIL \"x\" NIL NIL NIL NIL NIL NIL NIL NIL)";
    assert_int_equal(eval_keys("SENTSINCE 1-Jan-1900", &t, &reads), IMAP_SEARCH_NO_MATCH);
    assert_int_equal(reads, 0);
    t.m.envelope = "({30}\r\nTue, 1 Feb 1994 21:52:25 -0800 \"x\" NIL)";
    assert_int_equal(eval_keys("SENTON 1-Feb-1994", &t, &reads), IMAP_SEARCH_MATCH);
    assert_int_equal(reads, 0);
    t.m.envelope = "garbage"; /* falls back on the file */
    assert_int_equal(eval_keys("SENTON 1-Feb-1994", &t, &reads), IMAP_SEARCH_MATCH);
    assert_int_equal(reads, 1);
}

/* Keys the index row decides never read the file. */
static void test_eval_shortcuts(void **state)
{
    struct tmsg t;
    unsigned long reads;
    tmsg_init(&t, MSG_PLAIN, 1);
    t.m.flags = STORE_FLAG_SEEN;
    static const struct {
        const char *keys;
        int want;
        unsigned long reads;
    } cases[] = {
        {"SEEN FLAGGED", IMAP_SEARCH_NO_MATCH, 0},
        {"UNSEEN BODY fox", IMAP_SEARCH_NO_MATCH, 0},
        {"BODY fox UNSEEN", IMAP_SEARCH_NO_MATCH, 0},
        {"OR SEEN BODY fox", IMAP_SEARCH_MATCH, 0},
        {"OR BODY cat SEEN", IMAP_SEARCH_MATCH, 0},
        {"NOT (UNSEEN TEXT x)", IMAP_SEARCH_MATCH, 0},
        {"2 FROM alice", IMAP_SEARCH_NO_MATCH, 0},
        {"UID 1:5 SUBJECT lunch", IMAP_SEARCH_NO_MATCH, 0},
        /* Needs three-valued logic: the OR is unknown, the AND false decides. */
        {"(OR FLAGGED BODY fox) (DELETED BODY dog)", IMAP_SEARCH_NO_MATCH, 0},
        {"OR (BODY fox DRAFT) (SEEN ALL)", IMAP_SEARCH_MATCH, 0},
        {"NOT OR (BODY fox DRAFT) SEEN", IMAP_SEARCH_NO_MATCH, 0},
        {"SEEN BODY fox", IMAP_SEARCH_MATCH, 1},
        {"SEEN FROM alice BODY cat", IMAP_SEARCH_NO_MATCH, 1},
        {"OR FLAGGED BODY fox", IMAP_SEARCH_MATCH, 1},
        {"SENTON 1-Feb-1994 SUBJECT lunch BODY fox TEXT alice", IMAP_SEARCH_MATCH, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = eval_keys(cases[i].keys, &t, &reads);
        if (r != cases[i].want || reads != cases[i].reads)
            fail_msg("%s: result %d reads %lu, want %d reads %lu", cases[i].keys, r, reads,
                     cases[i].want, cases[i].reads);
    }
}

static void test_eval_unreadable(void **state)
{
    struct tmsg t;
    tmsg_init(&t, MSG_PLAIN, 1);
    t.unreadable = true;
    t.m.flags = STORE_FLAG_SEEN;
    assert_int_equal(eval_keys("BODY fox", &t, NULL), IMAP_SEARCH_UNREADABLE);
    assert_int_equal(eval_keys("NOT BODY fox", &t, NULL), IMAP_SEARCH_UNREADABLE);
    assert_int_equal(eval_keys("SENTON 1-Feb-1994", &t, NULL), IMAP_SEARCH_UNREADABLE);
    assert_int_equal(eval_keys("UNSEEN BODY fox", &t, NULL), IMAP_SEARCH_NO_MATCH);
    assert_int_equal(eval_keys("SEEN", &t, NULL), IMAP_SEARCH_MATCH);
    /* No read callback at all. */
    struct imap_search *p;
    char err[128];
    assert_int_equal(parse_keys("SUBJECT x", &p, err, sizeof(err)), 0);
    struct imap_search_env env = {.max_seq = 1, .max_uid = 10};
    t.unreadable = false;
    assert_int_equal(imap_search_match(p, &t.m, &env), IMAP_SEARCH_UNREADABLE);
    imap_search_free(&p);
}

/* --- session: SEARCH against a real store -------------------------------------------- */

#define ACCOUNT "user@example.com"
#define PASSWORD "correct horse battery"

struct sfix {
    char *dir;
    struct store *st;
    struct imap_session_config cfg;
    struct imap_session *s;
    struct buf out;
    uint64_t modseq_after_flags;
};

static uint32_t deliver(struct store *st, const char *text, time_t when, uint32_t flags,
                        const char *keywords)
{
    struct iovec iov = {(void *)text, strlen(text)};
    struct store_delivery d = {
        .account = ACCOUNT,
        .mailbox = "INBOX",
        .iov = &iov,
        .iovcnt = 1,
        .internal_date = when,
        .flags = flags,
        .keywords = keywords,
    };
    if (store_deliver(st, &d, 1) != 0)
        fail_msg("deliver: %s", d.err_r);
    return d.uid_r;
}

/* Send one line (or several) and run every request it makes; the replies
 * are in f->out (reset before). */
static const char *sess(struct sfix *f, const char *input)
{
    buf_reset(&f->out);
    imap_session_feed(f->s, input, strlen(input), &f->out);
    while (imap_session_request(f->s) == IMAP_REQ_EXECUTE) {
        imap_session_execute(f->s, f->st);
        imap_session_execute_done(f->s, &f->out);
    }
    return buf_cstr(&f->out);
}

static void sess_expect(struct sfix *f, const char *input, const char *want)
{
    const char *got = sess(f, input);
    if (strcmp(got, want) != 0)
        fail_msg("%s  got:\n%s  want:\n%s", input, got, want);
}

static int sess_setup(void **state)
{
    struct sfix *f = calloc(1, sizeof(*f));
    char err[256], hash[256];
    log_set_level(LOG_ERROR);
    f->dir = test_tmpdir();
    if (store_open(&f->st, f->dir, err, sizeof(err)) < 0)
        fail_msg("store_open: %s", err);
    assert_int_equal(store_domain_add(f->st, "example.com", err, sizeof(err)), 0);
    assert_int_equal(cli_password_hash(PASSWORD, hash, sizeof(hash)), 0);
    if (store_account_add(f->st, ACCOUNT, hash, err, sizeof(err)) < 0)
        fail_msg("account: %s", err);
    /* UIDs 1..5; 4 is expunged, so sequence numbers 1..4 are UIDs 1, 2, 3, 5. */
    deliver(f->st, MSG_PLAIN, 1700000000, STORE_FLAG_SEEN, NULL);              /* 14-Nov-2023 */
    deliver(f->st, MSG_QP, 1700100000, STORE_FLAG_FLAGGED, "$Important Work"); /* 16-Nov-2023 */
    deliver(f->st, MSG_MULTI, 1700200000, 0, NULL);                            /* 17-Nov-2023 */
    deliver(f->st, MSG_B64, 1700300000, 0, NULL);
    deliver(f->st, MSG_LATIN1, 1700400000, STORE_FLAG_DELETED | STORE_FLAG_SEEN, NULL);
    struct store_mailbox mb;
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, "INBOX", &mb, err, sizeof(err)), 1);
    uint32_t four = 4;
    assert_int_equal(store_msgs_expunge(f->st, ACCOUNT, mb.id, &four, 1, err, sizeof(err)), 0);

    f->cfg = (struct imap_session_config){
        .hostname = "mail.example.com",
        .allow_plaintext_auth = true,
        .max_bad_commands = 100,
        .max_line = 65536,
        .append_limit = 1 << 20,
    };
    f->s = imap_session_new(&f->cfg, "192.0.2.1", "t1", false);
    assert_non_null(f->s);
    imap_session_start(f->s, &f->out);
    const char *r = sess(f, "a LOGIN " ACCOUNT " \"" PASSWORD "\"\r\n");
    if (!strstr(r, "a OK"))
        fail_msg("login: %s", r);
    r = sess(f, "b SELECT INBOX\r\n");
    if (!strstr(r, "* 4 EXISTS") || !strstr(r, "b OK"))
        fail_msg("select: %s", r);
    *state = f;
    return 0;
}

static int sess_teardown(void **state)
{
    struct sfix *f = *state;
    imap_session_free(&f->s);
    store_close(&f->st);
    buf_free(&f->out);
    test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void test_session_search(void **state)
{
    struct sfix *f = *state;
    sess_expect(f, "c SEARCH ALL\r\n", "* SEARCH 1 2 3 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c UID SEARCH ALL\r\n", "* SEARCH 1 2 3 5\r\nc OK UID SEARCH completed\r\n");
    sess_expect(f, "c SEARCH SEEN\r\n", "* SEARCH 1 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c UID SEARCH UNSEEN\r\n", "* SEARCH 2 3\r\nc OK UID SEARCH completed\r\n");
    sess_expect(f, "c SEARCH DELETED\r\n", "* SEARCH 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH FLAGGED KEYWORD work\r\n", "* SEARCH 2\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH DRAFT\r\n", "* SEARCH\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH 2:*\r\n", "* SEARCH 2 3 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH *\r\n", "* SEARCH 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c UID SEARCH UID 3:*\r\n", "* SEARCH 3 5\r\nc OK UID SEARCH completed\r\n");
    sess_expect(f, "c SEARCH UID 4\r\n", "* SEARCH\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c UID SEARCH 4\r\n", "* SEARCH 5\r\nc OK UID SEARCH completed\r\n");
    sess_expect(f, "c SEARCH SINCE 16-Nov-2023 BEFORE 18-Nov-2023\r\n",
                "* SEARCH 2 3\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH ON 14-Nov-2023\r\n", "* SEARCH 1\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH SENTBEFORE 1-Jan-2000\r\n", "* SEARCH 1\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH SENTSINCE 1-Jan-2000\r\n", "* SEARCH 2\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH LARGER 500\r\n", "* SEARCH 3\r\nc OK SEARCH completed\r\n");
}

static void test_session_search_content(void **state)
{
    struct sfix *f = *state;
    sess_expect(f, "c SEARCH FROM alice\r\n", "* SEARCH 1\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH TO bob\r\n", "* SEARCH 1 2\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH CHARSET UTF-8 FROM {6}\r\nandr\xc3\xa9\r\n",
                "+ Ready for literal data\r\n* SEARCH 2\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH BODY \"caf\xc3\xa9\"\r\n",
                "* SEARCH 2 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH BODY \"m\xc3\xbcnchen\"\r\n",
                "* SEARCH 3\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH TEXT example.org\r\n", "* SEARCH 1 2\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH HEADER X-Priority \"\"\r\n",
                "* SEARCH 3\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c UID SEARCH NOT BODY the\r\n",
                "* SEARCH 2 5\r\nc OK UID SEARCH completed\r\n");
    sess_expect(f, "c SEARCH OR SUBJECT lunch SUBJECT latin\r\n",
                "* SEARCH 1 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH UNSEEN BODY xylophone\r\n", "* SEARCH\r\nc OK SEARCH completed\r\n");
}

static void test_session_search_errors(void **state)
{
    struct sfix *f = *state;
    sess_expect(f, "c SEARCH\r\n", "c BAD Missing search keys\r\n");
    sess_expect(f, "c SEARCH FOO\r\n", "c BAD Unknown search key\r\n");
    sess_expect(f, "c UID SEARCH BEFORE 1-Foo-2000\r\n",
                "c BAD BEFORE needs a date like 1-Feb-1994\r\n");
    sess_expect(f, "c SEARCH CHARSET KOI8-R ALL\r\n",
                "c NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n");
    const char *r = sess(f, "c SEARCH (SEEN\r\n");
    if (strncmp(r, "c BAD ", 6) != 0)
        fail_msg("got %s", r);
    sess_expect(f, "c SEARCH SEEN\r\n", "* SEARCH 1 4\r\nc OK SEARCH completed\r\n");
}

static void test_session_search_modseq(void **state)
{
    struct sfix *f = *state;
    char err[256];
    struct store_mailbox mb;
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, "INBOX", &mb, err, sizeof(err)), 1);
    struct store_msg_list l = {0};
    assert_int_equal(store_msgs_load(f->st, ACCOUNT, mb.id, 1, UINT32_MAX, 0, &l, err, sizeof(err)),
                     0);
    assert_int_equal(l.n, 4);
    uint64_t ms[4], top = 0;
    for (size_t i = 0; i < 4; i++) {
        ms[i] = l.v[i].modseq;
        if (ms[i] > top)
            top = ms[i];
    }
    store_msg_list_free(&l);
    char cmd[128], want[256];
    /* The first MODSEQ search enables CONDSTORE and reports HIGHESTMODSEQ. */
    const char *r = sess(f, "c SEARCH MODSEQ 0\r\n");
    snprintf(want, sizeof(want), "* SEARCH 1 2 3 4 (MODSEQ %llu)\r\nc OK SEARCH completed\r\n",
             (unsigned long long)top);
    if (strncmp(r, "* OK [HIGHESTMODSEQ ", 20) != 0 || !strstr(r, want))
        fail_msg("got %s", r);
    snprintf(cmd, sizeof(cmd), "c UID SEARCH SEEN MODSEQ %llu\r\n", (unsigned long long)ms[0]);
    snprintf(want, sizeof(want), "* SEARCH 1%s (MODSEQ %llu)\r\nc OK UID SEARCH completed\r\n",
             ms[3] >= ms[0] ? " 5" : "", (unsigned long long)(ms[3] >= ms[0] ? ms[3] : ms[0]));
    sess_expect(f, cmd, want);
    snprintf(cmd, sizeof(cmd), "c SEARCH MODSEQ \"/flags/\\\\draft\" all %llu\r\n",
             (unsigned long long)top + 1);
    sess_expect(f, cmd, "* SEARCH\r\nc OK SEARCH completed\r\n");
}

static void test_session_esearch(void **state)
{
    struct sfix *f = *state;
    sess_expect(f, "c SEARCH RETURN (MIN MAX COUNT) UNDELETED\r\n",
                "* ESEARCH (TAG \"c\") MIN 1 MAX 3 COUNT 3\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c UID SEARCH RETURN () ALL\r\n",
                "* ESEARCH (TAG \"c\") UID ALL 1:3,5\r\nc OK UID SEARCH completed\r\n");
    sess_expect(f, "c UID SEARCH RETURN (COUNT ALL MIN) DRAFT\r\n",
                "* ESEARCH (TAG \"c\") UID COUNT 0\r\nc OK UID SEARCH completed\r\n");
    sess_expect(f, "c SEARCH RETURN (MAX) CHARSET UTF-8 BODY the\r\n",
                "* ESEARCH (TAG \"c\") MAX 3\r\nc OK SEARCH completed\r\n");
}

/* A message delivered after SELECT is not in the view until it is reported. */
static void test_session_search_view(void **state)
{
    struct sfix *f = *state;
    deliver(f->st, MSG_PLAIN, 1700500000, 0, NULL); /* UID 6 */
    const char *r = sess(f, "c SEARCH FROM alice\r\n");
    /* SEARCH may report the new message after its answer (RFC 3501 7.4.1),
     * but does not count it. */
    if (strncmp(r, "* SEARCH 1\r\n", 12) != 0 || !strstr(r, "c OK SEARCH completed"))
        fail_msg("got %s", r);
    r = sess(f, "d NOOP\r\n");
    r = sess(f, "e SEARCH FROM alice\r\n");
    if (strncmp(r, "* SEARCH 1 5\r\n", 14) != 0)
        fail_msg("got %s", r);
}

/* A message whose file cannot be read matches no key that needs it; the
 * search goes on. */
static void test_session_search_missing_file(void **state)
{
    struct sfix *f = *state;
    char err[256], dir[1024], path[1200];
    struct store_mailbox mb;
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, "INBOX", &mb, err, sizeof(err)), 1);
    struct store_msg_list l = {0};
    assert_int_equal(store_msgs_load(f->st, ACCOUNT, mb.id, 2, 2, 0, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(store_account_dir(f->st, ACCOUNT, dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/msg/%s", dir, l.v[0].file);
    store_msg_list_free(&l);
    if (unlink(path) != 0)
        fail_msg("unlink %s", path);
    sess_expect(f, "c SEARCH NOT BODY zebra\r\n", "* SEARCH 1 3 4\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH FLAGGED\r\n", "* SEARCH 2\r\nc OK SEARCH completed\r\n");
    sess_expect(f, "c SEARCH OR FLAGGED BODY zebra\r\n", "* SEARCH 2\r\nc OK SEARCH completed\r\n");
}

/* SEARCH needs a selected mailbox. */
static void test_session_search_state(void **state)
{
    struct sfix *f = *state;
    sess_expect(f, "c UNSELECT\r\n", "c OK UNSELECT completed\r\n");
    sess_expect(f, "c SEARCH ALL\r\n", "c BAD Select a mailbox first\r\n");
    const char *r = sess(f, "c EXAMINE INBOX\r\n");
    if (!strstr(r, "c OK [READ-ONLY]"))
        fail_msg("got %s", r);
    sess_expect(f, "c SEARCH SEEN\r\n", "* SEARCH 1 4\r\nc OK SEARCH completed\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_simple_keys),
        cmocka_unit_test(test_parse_arg_keys),
        cmocka_unit_test(test_parse_nesting),
        cmocka_unit_test(test_parse_cost_order),
        cmocka_unit_test(test_parse_charset_return),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_depth),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_eval_index_keys),
        cmocka_unit_test(test_eval_logic),
        cmocka_unit_test(test_eval_headers),
        cmocka_unit_test(test_eval_bodies),
        cmocka_unit_test(test_eval_sent),
        cmocka_unit_test(test_eval_shortcuts),
        cmocka_unit_test(test_eval_unreadable),
        cmocka_unit_test_setup_teardown(test_session_search, sess_setup, sess_teardown),
        cmocka_unit_test_setup_teardown(test_session_search_content, sess_setup, sess_teardown),
        cmocka_unit_test_setup_teardown(test_session_search_errors, sess_setup, sess_teardown),
        cmocka_unit_test_setup_teardown(test_session_search_modseq, sess_setup, sess_teardown),
        cmocka_unit_test_setup_teardown(test_session_esearch, sess_setup, sess_teardown),
        cmocka_unit_test_setup_teardown(test_session_search_view, sess_setup, sess_teardown),
        cmocka_unit_test_setup_teardown(test_session_search_missing_file, sess_setup,
                                        sess_teardown),
        cmocka_unit_test_setup_teardown(test_session_search_state, sess_setup, sess_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
