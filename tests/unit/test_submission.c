/* Unit tests of the submission fix-ups (src/proto/smtp/submission.c). */
#include "testutil.h"

#include <time.h>

#include "lib/buf.h"
#include "proto/smtp/submission.h"

#define T_2026_11_22_10_00_00 ((time_t)1795341600)
#define DATE_F "Date: Sun, 22 Nov 2026 10:00:00 +0000"
#define MID_F "Message-ID: <id1@mx.example.org>"
/* A header that needs nothing added. */
#define HAVE_BOTH "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m@x>\r\n"

static struct smtp_fixup_result fixup_r(const char *msg, size_t len, const char *want)
{
    struct buf b = BUF_INIT;
    struct smtp_fixup_result r;
    memset(&r, 0xff, sizeof(r));
    assert_int_equal(smtp_submission_fixup((const uint8_t *)msg, len, "mx.example.org",
                                           T_2026_11_22_10_00_00, "id1", &b, &r),
                     0);
    const char *got = buf_cstr(&b);
    assert_non_null(got);
    assert_int_equal(buf_size(&b), strlen(want));
    assert_string_equal(got, want);
    buf_free(&b);
    return r;
}

static struct smtp_fixup_result fixup(const char *msg, const char *want)
{
    return fixup_r(msg, strlen(msg), want);
}

static void expect_flags(struct smtp_fixup_result r, bool date, bool mid, unsigned bcc)
{
    assert_int_equal(r.added_date, date);
    assert_int_equal(r.added_message_id, mid);
    assert_int_equal(r.removed_bcc, bcc);
}

/* --- Bcc ------------------------------------------------------------------------------- */

static void test_bcc_single(void **state)
{
    struct smtp_fixup_result r =
        fixup("From: a@example.org\r\nBcc: secret@example.net\r\nSubject: hi\r\n" HAVE_BOTH
              "\r\nbody\r\n",
              "From: a@example.org\r\nSubject: hi\r\n" HAVE_BOTH "\r\nbody\r\n");
    expect_flags(r, false, false, 1);
    /* first and last field of the header */
    r = fixup("Bcc: s@x\r\n" HAVE_BOTH "Bcc: t@x\r\n\r\nbody\r\n", HAVE_BOTH "\r\nbody\r\n");
    expect_flags(r, false, false, 2);
    /* empty value */
    r = fixup("Bcc:\r\n" HAVE_BOTH "\r\n", HAVE_BOTH "\r\n");
    expect_flags(r, false, false, 1);
}

static void test_bcc_folded(void **state)
{
    struct smtp_fixup_result r =
        fixup("To: a@x\r\n"
              "Bcc: one@example.net,\r\n"
              "\ttwo@example.net,\r\n"
              "    three@example.net\r\n"
              "Subject: folded\r\n"
              "  subject\r\n" HAVE_BOTH "\r\nbody\r\n",
              "To: a@x\r\nSubject: folded\r\n  subject\r\n" HAVE_BOTH "\r\nbody\r\n");
    expect_flags(r, false, false, 1);
    /* a folded Bcc right before the empty line, and one holding a white
     * space only continuation line */
    r = fixup(HAVE_BOTH "Bcc: x@y,\r\n \r\n\tz@w\r\n\r\nb\r\n", HAVE_BOTH "\r\nb\r\n");
    expect_flags(r, false, false, 1);
}

static void test_bcc_several(void **state)
{
    struct smtp_fixup_result r = fixup("Resent-Bcc: r@x\r\n"
                                       "From: a@x\r\n"
                                       "bcc: lower@x\r\n"
                                       "BCC : upper@x\r\n"
                                       "Resent-bcc:\r\n \tfolded@x\r\n"
                                       "To: b@x\r\n" HAVE_BOTH "bCc: last@x\r\n"
                                       "\r\n"
                                       "body\r\n",
                                       "From: a@x\r\nTo: b@x\r\n" HAVE_BOTH "\r\nbody\r\n");
    expect_flags(r, false, false, 5);
}

static void test_bcc_lookalikes_kept(void **state)
{
    const char *msg = "Bcc-Extra: keep1\r\n"
                      "X-Bcc: keep2\r\n"
                      "Resent-Bcc-Note: keep3\r\n"
                      "Bc: keep4\r\n"
                      "Subject: Bcc: keep5\r\n"
                      "To: a@x,\r\n"
                      " Bcc: keep6\r\n" HAVE_BOTH "\r\n"
                      "Bcc: in the body, kept\r\n"
                      "Resent-Bcc: also kept\r\n";
    struct smtp_fixup_result r = fixup(msg, msg);
    expect_flags(r, false, false, 0);
}

static void test_bcc_in_header_without_end(void **state)
{
    /* all header, the Bcc last and without a line break: no empty line may
     * appear in front of the added fields */
    struct smtp_fixup_result r =
        fixup("Subject: s\r\nBcc: x@y", "Subject: s\r\n" DATE_F "\r\n" MID_F "\r\n");
    expect_flags(r, true, true, 1);
    r = fixup("Bcc: x@y\r\n", DATE_F "\r\n" MID_F "\r\n");
    expect_flags(r, true, true, 1);
}

static void test_bcc_garbage_lines(void **state)
{
    /* lines without a colon are copied; obsolete white space before the
     * colon still names a Bcc; a NUL cuts the name as the store reads it */
    static const char msg[] = "Subject: s\r\nnot a field\r\nBcc\t: x@y\r\nBcc\0junk: z@w\r\n"
                              "Date: d\r\nMessage-ID: <m>\r\n\r\nb";
    static const char want[] = "Subject: s\r\nnot a field\r\nDate: d\r\nMessage-ID: <m>\r\n\r\nb";
    struct smtp_fixup_result r = fixup_r(msg, sizeof(msg) - 1, want);
    expect_flags(r, false, false, 2);
}

/* --- Date and Message-ID ------------------------------------------------------------------ */

static void test_add_both(void **state)
{
    struct smtp_fixup_result r =
        fixup("From: a@x\r\nSubject: s\r\n\r\nbody\r\n\r\nmore\r\n",
              "From: a@x\r\nSubject: s\r\n" DATE_F "\r\n" MID_F "\r\n\r\nbody\r\n\r\nmore\r\n");
    expect_flags(r, true, true, 0);
}

static void test_add_date_only(void **state)
{
    struct smtp_fixup_result r =
        fixup("Message-ID: <m@x>\r\nSubject: s\r\n\r\nDate: in the body\r\n",
              "Message-ID: <m@x>\r\nSubject: s\r\n" DATE_F "\r\n\r\nDate: in the body\r\n");
    expect_flags(r, true, false, 0);
    /* case-insensitive; Resent-Message-ID is not a Message-ID */
    r = fixup("message-id: <m@x>\r\n\r\n", "message-id: <m@x>\r\n" DATE_F "\r\n\r\n");
    expect_flags(r, true, false, 0);
    r = fixup("MESSAGE-ID:<m@x>\r\nResent-Date: x\r\n\r\n",
              "MESSAGE-ID:<m@x>\r\nResent-Date: x\r\n" DATE_F "\r\n\r\n");
    expect_flags(r, true, false, 0);
}

static void test_add_message_id_only(void **state)
{
    struct smtp_fixup_result r =
        fixup("DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\nResent-Message-ID: <r@x>\r\n\r\nb\r\n",
              "DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\nResent-Message-ID: <r@x>\r\n" MID_F
              "\r\n\r\nb\r\n");
    expect_flags(r, false, true, 0);
    /* a folded Date counts; Message-Id in any case */
    r = fixup("date:\r\n Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <m@x>\r\n\r\n",
              "date:\r\n Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <m@x>\r\n\r\n");
    expect_flags(r, false, false, 0);
}

static void test_no_empty_line(void **state)
{
    struct smtp_fixup_result r = fixup("From: a@x\r\nSubject: s\r\n",
                                       "From: a@x\r\nSubject: s\r\n" DATE_F "\r\n" MID_F "\r\n");
    expect_flags(r, true, true, 0);
    /* last line without its line break */
    r = fixup("From: a@x\r\nSubject: s", "From: a@x\r\nSubject: s\r\n" DATE_F "\r\n" MID_F "\r\n");
    expect_flags(r, true, true, 0);
    r = fixup("Subject: s\r\n  folded", "Subject: s\r\n  folded\r\n" DATE_F "\r\n" MID_F "\r\n");
    expect_flags(r, true, true, 0);
}

static void test_no_header(void **state)
{
    /* the first line is no field: it is all body, Bcc lines included */
    struct smtp_fixup_result r =
        fixup("Hello Bob,\r\nBcc: x@y\r\n\r\nbye\r\n",
              DATE_F "\r\n" MID_F "\r\n\r\nHello Bob,\r\nBcc: x@y\r\n\r\nbye\r\n");
    expect_flags(r, true, true, 0);
    r = fixup("Dear Bob: hello\r\n", DATE_F "\r\n" MID_F "\r\n\r\nDear Bob: hello\r\n");
    expect_flags(r, true, true, 0);
    r = fixup(" Subject: starts with a space\r\n",
              DATE_F "\r\n" MID_F "\r\n\r\n Subject: starts with a space\r\n");
    expect_flags(r, true, true, 0);
    r = fixup(":no name\r\n", DATE_F "\r\n" MID_F "\r\n\r\n:no name\r\n");
    expect_flags(r, true, true, 0);
    /* the empty message */
    r = fixup("", DATE_F "\r\n" MID_F "\r\n\r\n");
    expect_flags(r, true, true, 0);
    /* an empty header block: the fields go before its empty line */
    r = fixup("\r\nbody\r\n", DATE_F "\r\n" MID_F "\r\n\r\nbody\r\n");
    expect_flags(r, true, true, 0);
}

static void test_bare_lf(void **state)
{
    struct smtp_fixup_result r = fixup("From: a@x\nBcc: b@x,\n c@x\nSubject: s\n\nbody\n",
                                       "From: a@x\nSubject: s\n" DATE_F "\n" MID_F "\n\nbody\n");
    expect_flags(r, true, true, 1);
    r = fixup("Subject: s", "Subject: s\r\n" DATE_F "\r\n" MID_F "\r\n"); /* no line break: CRLF */
    r = fixup("Subject: s\nFrom: a", "Subject: s\nFrom: a\n" DATE_F "\n" MID_F "\n");
    r = fixup("hello\nworld\n", DATE_F "\n" MID_F "\n\nhello\nworld\n");
    r = fixup("\nbody\n", DATE_F "\n" MID_F "\n\nbody\n");
    (void)r;
}

static void test_appends_to_out(void **state)
{
    /* a Received: the caller wrote first stays on top; consumed bytes too */
    struct buf b = BUF_INIT;
    assert_int_equal(buf_puts(&b, "junkReceived: x\r\n"), 0);
    buf_consume(&b, 4);
    const char *msg = "Subject: s\r\n\r\nb";
    assert_int_equal(smtp_submission_fixup((const uint8_t *)msg, strlen(msg), "h",
                                           T_2026_11_22_10_00_00, "i", &b, NULL),
                     0);
    assert_string_equal(buf_cstr(&b),
                        "Received: x\r\nSubject: s\r\n" DATE_F "\r\nMessage-ID: <i@h>\r\n\r\nb");
    buf_free(&b);
}

static void test_message_id_cleaned(void **state)
{
    struct buf b = BUF_INIT;
    struct smtp_fixup_result r;
    const char *msg = "Date: d\r\n\r\n";
    assert_int_equal(smtp_submission_fixup((const uint8_t *)msg, strlen(msg), "bad host>\r\nBcc: x",
                                           0, "a b<@>\r\n.c", &b, &r),
                     0);
    assert_string_equal(buf_cstr(&b),
                        "Date: d\r\nMessage-ID: <a_b_____.c@bad_host___Bcc:_x>\r\n\r\n");
    expect_flags(r, false, true, 0);
    buf_reset(&b);
    assert_int_equal(
        smtp_submission_fixup((const uint8_t *)msg, strlen(msg), "[192.0.2.1]", 0, "x.y", &b, &r),
        0);
    assert_string_equal(buf_cstr(&b), "Date: d\r\nMessage-ID: <x.y@[192.0.2.1]>\r\n\r\n");
    buf_reset(&b);
    /* no hostname: localhost; no id: never an empty id-left */
    assert_int_equal(
        smtp_submission_fixup((const uint8_t *)msg, strlen(msg), NULL, 255, NULL, &b, &r), 0);
    assert_string_equal(buf_cstr(&b), "Date: d\r\nMessage-ID: <ff@localhost>\r\n\r\n");
    buf_free(&b);
}

/* Every prefix of a message: no crash, no Bcc field left in the header. */
static void test_prefixes(void **state)
{
    const char *msg = "From: \"A\" <a@x>\r\nBcc: b@x,\r\n\tc@x\r\nTo: d@x\r\n"
                      "Resent-Bcc: e@x\r\n\r\nBcc: body\r\n";
    size_t n = strlen(msg);
    for (size_t i = 0; i <= n; i++) {
        struct buf b = BUF_INIT;
        struct smtp_fixup_result r;
        assert_int_equal(smtp_submission_fixup((const uint8_t *)msg, i, "h", 0, "i", &b, &r), 0);
        const char *out = buf_cstr(&b);
        assert_non_null(out);
        const char *eoh = strstr(out, "\r\n\r\n");
        size_t hlen = eoh ? (size_t)(eoh - out) : strlen(out);
        for (const char *p = strstr(out, "Bcc:"); p; p = strstr(p + 1, "Bcc:"))
            assert_true((size_t)(p - out) >= hlen);
        assert_true(r.added_date && r.added_message_id);
        buf_free(&b);
        char **addrs;
        size_t na;
        assert_int_equal(smtp_from_addrs((const uint8_t *)msg, i, &addrs, &na), 0);
        assert_true(na <= 1);
        smtp_from_addrs_free(addrs, na);
    }
}

/* --- From addresses ------------------------------------------------------------------------- */

static void expect_from(const char *msg, size_t nwant, const char *const *want)
{
    char **addrs = (char **)1;
    size_t n = 99;
    assert_int_equal(smtp_from_addrs((const uint8_t *)msg, strlen(msg), &addrs, &n), 0);
    assert_int_equal(n, nwant);
    if (nwant == 0)
        assert_null(addrs);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(addrs[i], want[i]);
    smtp_from_addrs_free(addrs, n);
}

#define FROM(msg, ...)                                                                             \
    do {                                                                                           \
        static const char *const w_[] = {__VA_ARGS__};                                             \
        expect_from(msg, sizeof(w_) / sizeof(w_[0]), w_);                                          \
    } while (0)
#define NO_FROM(msg) expect_from(msg, 0, NULL)

static void test_from_simple(void **state)
{
    FROM("From: alice@example.org\r\n\r\n", "alice@example.org");
    FROM("From: Alice Example <Alice.Smith@Example.ORG>\r\n\r\n", "Alice.Smith@example.org");
    FROM("from:\"Smith, Alice\" <alice@example.org>\r\nTo: b@x\r\n\r\n", "alice@example.org");
    FROM("Subject: s\r\nFROM : alice@example.org\r\n\r\nFrom: body@x\r\n", "alice@example.org");
    /* bare LF, no empty line, no final line break */
    FROM("Subject: s\nFrom: a@x", "a@x");
}

static void test_from_lists_and_groups(void **state)
{
    FROM("From: a@x, \"B\" <b@y>,\r\n\tc@Z.example\r\n\r\n", "a@x", "b@y", "c@z.example");
    FROM("From: team: a@x, B <b@y>;, c@z\r\n\r\n", "a@x", "b@y", "c@z");
    NO_FROM("From: undisclosed-recipients:;\r\n\r\n");
}

static void test_from_several_fields(void **state)
{
    FROM("From: a@x\r\nTo: t@x\r\nFrom: b@y\r\nfrom: A@X\r\n\r\n", "a@x", "b@y", "A@x");
    /* the same address, domain case aside, is kept once */
    FROM("From: a@x, a@X\r\nFrom: <a@x>\r\nFrom: b@y, a@x\r\n\r\n", "a@x", "b@y");
}

static void test_from_encoded_and_comments(void **state)
{
    FROM("From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.de>\r\n\r\n", "joerg@example.de");
    FROM("From: =?utf-8?b?Ym9zcw==?= <boss@EXAMPLE.com>, =?iso-8859-1?q?a=40b?= <c@d>\r\n\r\n",
         "boss@example.com", "c@d");
    FROM("From: alice@example.org (Alice Example)\r\n\r\n", "alice@example.org");
    FROM("From: (comment) alice (more) @ (c) example.org (last)\r\n\r\n", "alice@example.org");
    FROM("From: Alice <alice(c)@(d)example.org>\r\n\r\n", "alice@example.org");
    FROM("From: <@route.example:a@x>\r\n\r\n", "a@x");
    /* an address-looking display name is no address */
    FROM("From: \"ceo@example.com\" <me@example.net>\r\n\r\n", "me@example.net");
}

static void test_from_quoted_and_literal(void **state)
{
    FROM("From: \"john doe\"@Example.org\r\n\r\n", "\"john doe\"@example.org");
    FROM("From: \"plain\"@x\r\n\r\n", "plain@x");
    FROM("From: \"a\\\"b\\\\c\"@x\r\n\r\n", "\"a\\\"b\\\\c\"@x");
    FROM("From: first..last.@x\r\n\r\n", "\"first..last.\"@x");
    FROM("From: a@[192.0.2.1]\r\n\r\n", "a@[192.0.2.1]");
    FROM("From: J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc\x63her.example>\r\n\r\n",
         "j\xc3\xb6rg@b\xc3\xbc\x63her.example");
}

static void test_from_none(void **state)
{
    NO_FROM("Subject: no from\r\nSender: s@x\r\nFrom-X: a@x\r\n\r\nFrom: body@x\r\n");
    NO_FROM("From:\r\n\r\n");
    NO_FROM("From:   \r\n\t\r\n\r\n");
    NO_FROM("From: <>\r\n\r\n");
    NO_FROM("From: just words\r\n\r\n");
    NO_FROM("From: nodomain\r\n\r\n");
    NO_FROM("From: Name <incomplete\r\n\r\n");
    NO_FROM("");
    NO_FROM("\r\nFrom: a@x\r\n");
    /* no header at all: what looks like a From: is body */
    NO_FROM("Hello\r\nFrom: a@x\r\n\r\n");
}

#undef FROM
#undef NO_FROM

static void test_from_many(void **state)
{
    /* many addresses, many repeated: linear enough, first seen order kept */
    struct buf b = BUF_INIT;
    assert_int_equal(buf_puts(&b, "From: "), 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(buf_printf(&b, "%su%d@x", i ? ", " : "", i % 1000), 0);
    assert_int_equal(buf_puts(&b, "\r\n\r\n"), 0);
    char **addrs;
    size_t n;
    assert_int_equal(smtp_from_addrs(buf_ptr(&b), buf_size(&b), &addrs, &n), 0);
    assert_int_equal(n, 1000);
    assert_string_equal(addrs[0], "u0@x");
    assert_string_equal(addrs[999], "u999@x");
    smtp_from_addrs_free(addrs, n);
    smtp_from_addrs_free(NULL, 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bcc_single),
        cmocka_unit_test(test_bcc_folded),
        cmocka_unit_test(test_bcc_several),
        cmocka_unit_test(test_bcc_lookalikes_kept),
        cmocka_unit_test(test_bcc_in_header_without_end),
        cmocka_unit_test(test_bcc_garbage_lines),
        cmocka_unit_test(test_add_both),
        cmocka_unit_test(test_add_date_only),
        cmocka_unit_test(test_add_message_id_only),
        cmocka_unit_test(test_no_empty_line),
        cmocka_unit_test(test_no_header),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_appends_to_out),
        cmocka_unit_test(test_message_id_cleaned),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_from_simple),
        cmocka_unit_test(test_from_lists_and_groups),
        cmocka_unit_test(test_from_several_fields),
        cmocka_unit_test(test_from_encoded_and_comments),
        cmocka_unit_test(test_from_quoted_and_literal),
        cmocka_unit_test(test_from_none),
        cmocka_unit_test(test_from_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
