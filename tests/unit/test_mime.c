/* mime: the message parser, ENVELOPE/BODY/BODYSTRUCTURE, sections,
 * decoding and search, addresses, limits.
 *
 * The expected ENVELOPE/BODY/BODYSTRUCTURE strings of the hand-written
 * messages below are what Dovecot 2.3.19 answers for them (checked by
 * hand: defaults, literal vs quoted strings, group syntax, sizes and line
 * counts). test_mime_corpus.c compares the shared corpus the same way.
 */
#include "testutil.h"

#include <time.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_addr.h"
#include "mime/mime_decode.h"
#include "mime/mime_imap.h"

/* --- hand-checked messages ---------------------------------------------------------- */

static const char msg_plain[] =
    "From: John Doe <jdoe@machine.example>\r\n"
    "To: Mary Smith <mary@example.net>, \"Doe, Jane\" <jane@example.net>\r\n"
    "Cc: team: a@x.org, b@y.org;, (nobody)\r\n"
    "Subject: Saying\r\n"
    " Hello\r\n"
    "Date: Fri, 21 Nov 1997 09:55:06 -0600\r\n"
    "Message-ID: <1234@local.machine.example>\r\n"
    "In-Reply-To: <0@x>\r\n"
    "\r\n"
    "This is a message just to say hello.\r\n"
    "So, \"Hello\".\r\n";
static const char env_plain[] =
    "(\"Fri, 21 Nov 1997 09:55:06 -0600\" {12}\r\n"
    "Saying Hello ((\"John Doe\" NIL \"jdoe\" \"machine.example\")) ((\"John Doe\" NIL"
    " \"jdoe\" \"machine.example\")) ((\"John Doe\" NIL \"jdoe\" \"machine.example\"))"
    " ((\"Mary Smith\" NIL \"mary\" \"example.net\")(\"Doe, Jane\" NIL \"jane\" \"exam"
    "ple.net\")) ((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"x.org\")(NIL NIL \"b\" \"y.or"
    "g\")(NIL NIL NIL NIL)) NIL \"<0@x>\" \"<1234@local.machine.example>\")";
static const char body_plain[] =
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 52 2)";
static const char bs_plain[] =
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 52 2 NIL NIL NIL "
    "NIL)";

static const char msg_alternative[] =
    "From: a@example.com\r\n"
    "Subject: =?utf-8?q?caf=C3=A9?= menu\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=\"ALT\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--ALT\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Caf=C3=A9 au lait\r\n"
    "--ALT\r\n"
    "Content-Type: multipart/related; boundary=\"REL\"; type=\"text/html\"\r\n"
    "\r\n"
    "--REL\r\n"
    "Content-Type: text/html; charset=\"utf-8\"\r\n"
    "\r\n"
    "<p>Caf\xc3"
    "\xa9"
    " <img src=\"cid:logo@x\"></p>\r\n"
    "--REL\r\n"
    "Content-Type: image/png; name=\"logo.png\"\r\n"
    "Content-ID: <logo@x>\r\n"
    "Content-Disposition: inline; filename=\"logo.png\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "iVBORw0KGgo=\r\n"
    "--REL--\r\n"
    "--ALT--\r\n"
    "epilogue\r\n";
static const char env_alternative[] =
    "(NIL \"=?utf-8?q?caf=C3=A9?= menu\" ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \""
    "a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL)";
static const char body_alternative[] =
    "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 17 0)(("
    "\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 35 0)(\"image\" \"png\""
    " (\"name\" \"logo.png\") \"<logo@x>\" NIL \"base64\" 12) \"related\") \"alternati"
    "ve\")";
static const char bs_alternative[] =
    "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 17 0 NI"
    "L NIL NIL NIL)((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 35 0 N"
    "IL NIL NIL NIL)(\"image\" \"png\" (\"name\" \"logo.png\") \"<logo@x>\" NIL \"base"
    "64\" 12 NIL (\"inline\" (\"filename\" \"logo.png\")) NIL NIL) \"related\" (\"boun"
    "dary\" \"REL\" \"type\" \"text/html\") NIL NIL NIL) \"alternative\" (\"boundary\""
    " \"ALT\") NIL NIL NIL)";

static const char msg_rfc822[] = "From: outer@example.com\r\n"
                                 "To: you@example.com\r\n"
                                 "Subject: Fwd: inner\r\n"
                                 "MIME-Version: 1.0\r\n"
                                 "Content-Type: multipart/mixed; boundary=b1\r\n"
                                 "\r\n"
                                 "--b1\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "\r\n"
                                 "See attached.\r\n"
                                 "--b1\r\n"
                                 "Content-Type: message/rfc822; name=\"inner.eml\"\r\n"
                                 "Content-Disposition: attachment; filename=\"inner.eml\"\r\n"
                                 "Content-Description: the original\r\n"
                                 "\r\n"
                                 "From: Inner Sender <inner@example.org>\r\n"
                                 "Subject: inner\r\n"
                                 "Date: Mon, 1 Jan 2001 00:00:00 +0000\r\n"
                                 "MIME-Version: 1.0\r\n"
                                 "Content-Type: multipart/alternative; boundary=b2\r\n"
                                 "\r\n"
                                 "--b2\r\n"
                                 "Content-Type: text/plain; charset=us-ascii\r\n"
                                 "\r\n"
                                 "plain\r\n"
                                 "--b2\r\n"
                                 "Content-Type: text/html\r\n"
                                 "\r\n"
                                 "<b>html</b>\r\n"
                                 "--b2--\r\n"
                                 "--b1--\r\n";
static const char env_rfc822[] =
    "(NIL \"Fwd: inner\" ((NIL NIL \"outer\" \"example.com\")) ((NIL NIL \"outer\" \"e"
    "xample.com\")) ((NIL NIL \"outer\" \"example.com\")) ((NIL NIL \"you\" \"example."
    "com\")) NIL NIL NIL NIL)";
static const char body_rfc822[] =
    "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0)(\"message\""
    " \"rfc822\" (\"name\" \"inner.eml\") NIL \"the original\" \"7bit\" 278 (\"Mon, 1 "
    "Jan 2001 00:00:00 +0000\" \"inner\" ((\"Inner Sender\" NIL \"inner\" \"example.or"
    "g\")) ((\"Inner Sender\" NIL \"inner\" \"example.org\")) ((\"Inner Sender\" NIL \""
    "inner\" \"example.org\")) NIL NIL NIL NIL NIL) ((\"text\" \"plain\" (\"charset\" "
    "\"us-ascii\") NIL NIL \"7bit\" 5 0)(\"text\" \"html\" (\"charset\" \"us-ascii\") "
    "NIL NIL \"7bit\" 11 0) \"alternative\") 15) \"mixed\")";
static const char bs_rfc822[] =
    "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0 NIL NIL NIL"
    " NIL)(\"message\" \"rfc822\" (\"name\" \"inner.eml\") NIL \"the original\" \"7bit"
    "\" 278 (\"Mon, 1 Jan 2001 00:00:00 +0000\" \"inner\" ((\"Inner Sender\" NIL \"inn"
    "er\" \"example.org\")) ((\"Inner Sender\" NIL \"inner\" \"example.org\")) ((\"Inn"
    "er Sender\" NIL \"inner\" \"example.org\")) NIL NIL NIL NIL NIL) ((\"text\" \"pla"
    "in\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)(\"text\" \""
    "html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL) \"altern"
    "ative\" (\"boundary\" \"b2\") NIL NIL NIL) 15 NIL (\"attachment\" (\"filename\" \""
    "inner.eml\")) NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL)";

static const char msg_rfc2231[] = "From: x@example.com\r\n"
                                  "MIME-Version: 1.0\r\n"
                                  "Content-Type: multipart/mixed; boundary=\"=_b\"\r\n"
                                  "\r\n"
                                  "--=_b\r\n"
                                  "Content-Type: application/pdf;\r\n"
                                  " name*0*=utf-8''%E2%82%AC%20rates;\r\n"
                                  " name*1=\" 2024.pdf\"\r\n"
                                  "Content-Disposition: attachment;\r\n"
                                  " filename*=iso-8859-1'fr'r%E9sum%E9.pdf;\r\n"
                                  " size=1234\r\n"
                                  "Content-Language: fr, en\r\n"
                                  "Content-Location: http://example.com/r.pdf\r\n"
                                  "Content-Transfer-Encoding: base64\r\n"
                                  "\r\n"
                                  "JVBERi0=\r\n"
                                  "--=_b--\r\n";
static const char env_rfc2231[] =
    "(NIL NIL ((NIL NIL \"x\" \"example.com\")) ((NIL NIL \"x\" \"example.com\")) ((NI"
    "L NIL \"x\" \"example.com\")) NIL NIL NIL NIL NIL)";
static const char body_rfc2231[] =
    "((\"application\" \"pdf\" (\"name*\" \"utf-8''%E2%82%AC%20rates 2024.pdf\") NIL N"
    "IL \"base64\" 8) \"mixed\")";
static const char bs_rfc2231[] =
    "((\"application\" \"pdf\" (\"name*\" \"utf-8''%E2%82%AC%20rates 2024.pdf\") NIL N"
    "IL \"base64\" 8 NIL (\"attachment\" (\"size\" \"1234\" \"filename*\" \"iso-8859-1"
    "'fr'r%E9sum%E9.pdf\")) (\"fr\" \"en\") \"http://example.com/r.pdf\") \"mixed\" (\""
    "boundary\" \"=_b\") NIL NIL NIL)";

static const char msg_broken[] = "From: =?iso-8859-1?q?J=F8rn?= <j@x>\r\n"
                                 "To: caf\xe9"
                                 " <c@x>, undisclosed-recipients:;\r\n"
                                 "Subject: bad\tmime\r\n"
                                 "Content-Type: multipart/mixed; boundary=outer\r\n"
                                 "\r\n"
                                 "--outer\r\n"
                                 "Content-Type: multipart/alternative; boundary=inner\r\n"
                                 "\r\n"
                                 "--inner\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Content-Transfer-Encoding: base64\r\n"
                                 "\r\n"
                                 "!!not base64 at all!!\r\n"
                                 "--outer\r\n"
                                 "Content-Type: text\r\n"
                                 "\r\n"
                                 "no close delimiter for inner, none for outer either\r\n";
static const char env_broken[] =
    "(NIL {8}\r\n"
    "bad mime ((\"=?iso-8859-1?q?J=F8rn?=\" NIL \"j\" \"x\")) ((\"=?iso-8859-1?q?J=F8r"
    "n?=\" NIL \"j\" \"x\")) ((\"=?iso-8859-1?q?J=F8rn?=\" NIL \"j\" \"x\")) (({4}\r\n"
    "caf\xe9"
    " NIL \"c\" \"x\")(NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NI"
    "L)) NIL NIL NIL NIL)";
static const char body_broken[] =
    "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"base64\" 21 0) \"alter"
    "native\")(\"text\" \"\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 53 1) \"mixed"
    "\")";
static const char bs_broken[] =
    "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"base64\" 21 0 NIL NIL "
    "NIL NIL) \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)(\"text\" \"\" (\"c"
    "harset\" \"us-ascii\") NIL NIL \"7bit\" 53 1 NIL NIL NIL NIL) \"mixed\" (\"bounda"
    "ry\" \"outer\") NIL NIL NIL)";

struct hand_case {
    const char *name;
    const char *msg;
    size_t len;
    const char *env, *body, *bs;
};

#define HAND(n)                                                                                    \
    {                                                                                              \
#n, msg_##n, sizeof(msg_##n) - 1, env_##n, body_##n, bs_##n                                \
    }
static const struct hand_case hand_cases[] = {
    HAND(plain), HAND(alternative), HAND(rfc822), HAND(rfc2231), HAND(broken),
};

static struct mime_message *parse_str(const char *s)
{
    struct mime_message *m = mime_parse((const uint8_t *)s, strlen(s), NULL);
    assert_non_null(m);
    return m;
}

static void assert_buf_eq(struct buf *b, const char *want)
{
    const char *got = buf_cstr(b);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "got:  [%s]\nwant: [%s]\n", got, want);
    assert_string_equal(got, want);
}

static void test_hand_messages(void **state)
{
    for (size_t i = 0; i < sizeof(hand_cases) / sizeof(hand_cases[0]); i++) {
        const struct hand_case *hc = &hand_cases[i];
        struct mime_message *m = mime_parse((const uint8_t *)hc->msg, hc->len, NULL);
        assert_non_null(m);
        struct buf b = BUF_INIT;
        assert_int_equal(mime_imap_envelope(m, NULL, &b), 0);
        assert_buf_eq(&b, hc->env);
        buf_reset(&b);
        assert_int_equal(mime_imap_bodystructure(m, NULL, false, &b), 0);
        assert_buf_eq(&b, hc->body);
        buf_reset(&b);
        assert_int_equal(mime_imap_bodystructure(m, NULL, true, &b), 0);
        assert_buf_eq(&b, hc->bs);
        buf_free(&b);
        mime_message_free(&m);
        assert_null(m);
    }
}

/* Bare LF line endings parse to the same structure (sizes count LFs). */
static void test_lf_endings(void **state)
{
    struct buf lf = BUF_INIT, b = BUF_INIT;
    for (const char *p = msg_rfc822; *p; p++) {
        if (*p != '\r')
            buf_append(&lf, p, 1);
    }
    struct mime_message *m = mime_parse(buf_ptr(&lf), buf_size(&lf), NULL);
    assert_non_null(m);
    assert_int_equal(mime_imap_envelope(m, NULL, &b), 0);
    assert_buf_eq(&b, env_rfc822);
    buf_reset(&b);
    assert_int_equal(mime_imap_bodystructure(m, NULL, false, &b), 0);
    /* 278 octets with CRLF are 263 with LF; the lines stay */
    assert_buf_eq(&b,
                  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0)"
                  "(\"message\" \"rfc822\" (\"name\" \"inner.eml\") NIL \"the original\" "
                  "\"7bit\" 263 (\"Mon, 1 Jan 2001 00:00:00 +0000\" \"inner\" ((\"Inner "
                  "Sender\" NIL \"inner\" \"example.org\")) ((\"Inner Sender\" NIL \"inner\" "
                  "\"example.org\")) ((\"Inner Sender\" NIL \"inner\" \"example.org\")) NIL NIL "
                  "NIL NIL NIL) ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
                  "5 0)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0) "
                  "\"alternative\") 15) \"mixed\")");
    /* and normalizing gives back the CRLF message */
    struct buf crlf = BUF_INIT;
    assert_int_equal(mime_crlf_normalize(buf_ptr(&lf), buf_size(&lf), &crlf), 0);
    assert_int_equal(buf_size(&crlf), strlen(msg_rfc822));
    assert_memory_equal(buf_ptr(&crlf), msg_rfc822, buf_size(&crlf));
    buf_reset(&crlf);
    assert_int_equal(mime_crlf_normalize((const uint8_t *)"a\rb\n\r\nc", 7, &crlf), 0);
    assert_int_equal(buf_size(&crlf), 9);
    assert_memory_equal(buf_ptr(&crlf), "a\r\nb\r\n\r\nc", 9);
    mime_message_free(&m);
    buf_free(&b);
    buf_free(&lf);
    buf_free(&crlf);
}

static void test_tree(void **state)
{
    struct mime_message *m = parse_str(msg_rfc822);
    const struct mime_part *r = m->root;
    assert_true(r->flags & MIME_PART_MULTIPART);
    assert_int_equal(r->nchildren, 2);
    const struct mime_part *att = r->children->next;
    assert_true(mime_part_is(att, "MESSAGE", "rfc822"));
    assert_true(att->flags & MIME_PART_MESSAGE);
    assert_int_equal(att->nchildren, 1);
    const struct mime_part *inner = att->children;
    assert_true(mime_part_is(inner, "multipart", "alternative"));
    assert_int_equal(inner->nchildren, 2);
    assert_int_equal(inner->hdr_off, att->body_off);
    assert_int_equal(inner->hdr_off + inner->hdr_len + inner->body_len,
                     att->body_off + att->body_len);
    assert_string_equal(att->description, "the original");
    assert_string_equal(att->disposition, "attachment");
    assert_string_equal(mime_param_get(att->params, att->nparams, "NAME")->value, "inner.eml");
    assert_int_equal(m->nparts, 6);
    assert_false(m->limit_hit);
    /* pre-order walk and section names */
    static const char *const names[] = {"", "1", "2", "2", "2.1", "2.2"};
    size_t i = 0;
    struct buf b = BUF_INIT;
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p), i++) {
        assert_true(i < 6);
        buf_reset(&b);
        assert_int_equal(mime_part_section_name(m, p, &b), 0);
        assert_buf_eq(&b, names[i]);
    }
    assert_int_equal(i, 6);
    buf_free(&b);
    mime_message_free(&m);
}

/* Fetch a section; returns its bytes as a NUL-terminated string in b, or
 * NULL for MIME_SECTION_NONE. */
static const char *fetch(const struct mime_message *m, const char *sec, struct buf *b)
{
    struct mime_section s;
    char err[64];
    buf_reset(b);
    assert_int_equal(mime_section_parse(sec, strlen(sec), &s, err, sizeof(err)), 0);
    size_t off, len;
    struct buf built = BUF_INIT;
    enum mime_section_result r = mime_section_fetch(m, &s, &off, &len, &built);
    mime_section_clear(&s);
    if (r == MIME_SECTION_NONE) {
        buf_free(&built);
        return NULL;
    }
    if (r == MIME_SECTION_RANGE)
        buf_append(b, m->data + off, len);
    else
        buf_append(b, buf_ptr(&built), buf_size(&built));
    buf_free(&built);
    return buf_cstr(b);
}

static void test_sections(void **state)
{
    struct mime_message *m = parse_str(msg_rfc822);
    struct buf b = BUF_INIT;
    assert_string_equal(fetch(m, "1", &b), "See attached.");
    assert_string_equal(fetch(m, "1.MIME", &b), "Content-Type: text/plain\r\n\r\n");
    assert_null(fetch(m, "1.HEADER", &b)); /* not a message/rfc822 part */
    assert_string_equal(fetch(m, "2.HEADER.FIELDS (subject \"DATE\")", &b),
                        "Subject: inner\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\n\r\n");
    assert_string_equal(fetch(m, "2.HEADER.FIELDS.NOT (From Subject Date MIME-Version)", &b),
                        "Content-Type: multipart/alternative; boundary=b2\r\n\r\n");
    assert_string_equal(fetch(m, "2.1", &b), "plain");
    assert_string_equal(fetch(m, "2.2", &b), "<b>html</b>");
    assert_string_equal(fetch(m, "2.2.MIME", &b), "Content-Type: text/html\r\n\r\n");
    assert_string_equal(fetch(m, "2.2.1", &b), "<b>html</b>"); /* a leaf is its own "1" */
    assert_null(fetch(m, "2.3", &b));
    assert_null(fetch(m, "3", &b));
    assert_null(fetch(m, "1.2", &b));
    assert_string_equal(fetch(m, "2.TEXT", &b), "--b2\r\nContent-Type: text/plain; "
                                                "charset=us-ascii\r\n\r\nplain\r\n--b2\r\n"
                                                "Content-Type: text/html\r\n\r\n<b>html</b>\r\n"
                                                "--b2--\r\n");
    assert_string_equal(fetch(m, "HEADER.FIELDS (X-None)", &b), "\r\n");
    const char *whole = fetch(m, "", &b);
    assert_int_equal(strlen(whole), strlen(msg_rfc822));
    const char *hdr = fetch(m, "header", &b);
    assert_int_equal(strncmp(hdr, "From: outer@example.com\r\n", 25), 0);
    assert_int_equal(strcmp(hdr + strlen(hdr) - 4, "\r\n\r\n"), 0);
    mime_message_free(&m);

    /* a non-multipart message: "1" is its body, and nothing is below it */
    m = parse_str("Subject: x\r\n\r\nbody\r\n");
    assert_string_equal(fetch(m, "1", &b), "body\r\n");
    assert_null(fetch(m, "1.1", &b));
    assert_string_equal(fetch(m, "TEXT", &b), "body\r\n");
    assert_string_equal(fetch(m, "1.MIME", &b), "Subject: x\r\n\r\n");
    assert_null(fetch(m, "2", &b));
    assert_null(fetch(m, "1.1.1", &b));
    mime_message_free(&m);

    /* a top-level message/rfc822: "1" is the attached message, "1.1" its body */
    m = parse_str("Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nabc\r\n");
    assert_string_equal(fetch(m, "1", &b), "Subject: in\r\n\r\nabc\r\n");
    assert_string_equal(fetch(m, "1.HEADER", &b), "Subject: in\r\n\r\n");
    assert_string_equal(fetch(m, "1.1", &b), "abc\r\n");
    const struct mime_part *in = m->root->children;
    buf_reset(&b);
    assert_int_equal(mime_part_section_name(m, in, &b), 0);
    assert_buf_eq(&b, "1.1");
    mime_message_free(&m);
    buf_free(&b);
}

static void test_section_parse(void **state)
{
    struct mime_section s;
    char err[64];
    assert_int_equal(mime_section_parse("1.22.3.MIME", 11, &s, err, sizeof(err)), 0);
    assert_int_equal(s.npart, 3);
    assert_int_equal(s.part[1], 22);
    assert_int_equal(s.spec, MIME_SECTION_MIME);
    mime_section_clear(&s);
    const char *ok_cases[] = {
        "", "TEXT", "header", "4", "HEADER.FIELDS (a)", "1.HEADER.FIELDS.NOT (\"x y\" b)"};
    for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
        assert_int_equal(mime_section_parse(ok_cases[i], strlen(ok_cases[i]), &s, err, 64), 0);
        mime_section_clear(&s);
    }
    assert_int_equal(mime_section_parse("1.HEADER.FIELDS.NOT (\"x y\" b)", 29, &s, err, 64), 0);
    assert_int_equal(s.nfields, 2);
    assert_string_equal(s.fields[0], "x y");
    mime_section_clear(&s);
    const char *bad[] = {"0",
                         "1.",
                         "1..2",
                         "MIME",
                         "FOO",
                         "1.FOO",
                         "HEADER.FIELDS",
                         "HEADER.FIELDS ()",
                         "HEADER.FIELDS (a",
                         "TEXT ",
                         "1x",
                         "99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(mime_section_parse(bad[i], strlen(bad[i]), &s, err, 64), -1);
}

static void test_rfc2231(void **state)
{
    struct mime_message *m = parse_str(msg_rfc2231);
    const struct mime_part *p = m->root->children;
    const struct mime_param *name = mime_param_get(p->params, p->nparams, "name");
    assert_non_null(name);
    assert_string_equal(name->name, "name*");
    assert_string_equal(name->decoded, "\xe2\x82\xac rates 2024.pdf");
    assert_string_equal(name->charset, "utf-8");
    const struct mime_param *fn = mime_param_get(p->disp_params, p->ndisp_params, "FILENAME");
    assert_non_null(fn);
    assert_string_equal(fn->value, "iso-8859-1'fr'r%E9sum%E9.pdf");
    assert_string_equal(fn->decoded, "r\xc3\xa9sum\xc3\xa9.pdf");
    assert_string_equal(fn->charset, "iso-8859-1");
    assert_string_equal(fn->language, "fr");
    assert_int_equal(p->nlanguages, 2);
    assert_string_equal(p->languages[1], "en");
    assert_string_equal(p->location, "http://example.com/r.pdf");
    assert_int_equal(p->cte, MIME_CTE_BASE64);
    mime_message_free(&m);

    /* RFC 2047 in a quoted parameter (what many clients send) is decoded too */
    m = parse_str("Content-Type: text/plain; name=\"=?utf-8?B?w6l0w6k=?=.txt\"\r\n\r\nx");
    assert_string_equal(m->root->params[0].decoded, "\xc3\xa9t\xc3\xa9.txt");
    mime_message_free(&m);
}

static void test_header_decode(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"=?utf-8?q?caf=C3=A9?= menu", "caf\xc3\xa9 menu"},
        {"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"},         /* RFC 2047 6.2 */
        {"=?ISO-8859-1?Q?a?=\r\n =?ISO-8859-1?Q?b?= c", "ab c"}, /* folded */
        {"x =?utf-8?b?w6k=?=", "x \xc3\xa9"},
        /* a character split across two words */
        {"=?utf-8?b?ww==?= =?utf-8?b?qQ==?=", "\xc3\xa9"},
        {"=?utf-8*fr?Q?=C3=A9t=C3=A9?=", "\xc3\xa9t\xc3\xa9"},
        {"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88"},
        {"=?NONE?B?VEVTVA=?=", "TEST"}, /* unknown charset: ASCII */
        {"=?utf-8?q?broken", "=?utf-8?q?broken"},
        {"=?utf-8?x?abc?=", "=?utf-8?x?abc?="},
        {"caf\xe9", "caf\xc3\xa9"},     /* 8-bit, not UTF-8: Windows-1252 */
        {"caf\xc3\xa9", "caf\xc3\xa9"}, /* raw UTF-8 (RFC 6532) */
        {"=?utf-8?q?a_b?=", "a b"},
        {"  spaced  ", "spaced"},
        {"=?windows-1252?q?=93q=94?=", "\xe2\x80\x9cq\xe2\x80\x9d"},
        {"=?utf-8?b?/w==?=", "\xef\xbf\xbd"}, /* invalid UTF-8 */
    };
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&b);
        assert_int_equal(mime_header_decode((const uint8_t *)cases[i].in, strlen(cases[i].in), &b),
                         0);
        assert_buf_eq(&b, cases[i].out);
    }
    buf_reset(&b);
    assert_int_equal(mime_unfold((const uint8_t *)" a\r\n\tb\r\n c ", 11, &b), 0);
    assert_buf_eq(&b, "a\tb c");
    buf_free(&b);
}

static void test_cte_charset(void **state)
{
    struct buf b = BUF_INIT;
    const char *b64 = "aGVs\r\nbG8g!!d29y\nbGQ=garbage";
    assert_int_equal(mime_cte_decode(MIME_CTE_BASE64, (const uint8_t *)b64, strlen(b64), &b), 0);
    /* "=" ends a group; what follows is decoded on its own */
    assert_int_equal(strncmp(buf_cstr(&b), "hello world", 11), 0);
    buf_reset(&b);
    const char *qp = "caf=C3=A9 =\r\nau lait  \r\n=3D=xy=\n";
    assert_int_equal(mime_cte_decode(MIME_CTE_QP, (const uint8_t *)qp, strlen(qp), &b), 0);
    assert_buf_eq(&b, "caf\xc3\xa9 au lait\r\n==xy");
    buf_reset(&b);
    assert_int_equal(mime_cte_decode(MIME_CTE_8BIT, (const uint8_t *)"a=3Db", 5, &b), 0);
    assert_buf_eq(&b, "a=3Db");
    buf_reset(&b);
    assert_int_equal(mime_charset_to_utf8("ISO-8859-7", (const uint8_t *)"\xe1\xe2", 2, &b), 0);
    assert_buf_eq(&b, "\xce\xb1\xce\xb2");
    buf_reset(&b);
    assert_int_equal(mime_charset_to_utf8("x-no-such", (const uint8_t *)"\xe9", 1, &b), 0);
    assert_buf_eq(&b, "\xc3\xa9");
    buf_reset(&b);
    assert_int_equal(mime_charset_to_utf8("UTF-8", (const uint8_t *)"a\xffz", 3, &b), 0);
    assert_buf_eq(&b, "a\xef\xbf\xbdz");
    buf_reset(&b);
    assert_int_equal(mime_charset_to_utf8("shift_jis", (const uint8_t *)"\x83\x65\x83", 3, &b), 0);
    assert_buf_eq(&b, "\xe3\x83\x86\xef\xbf\xbd"); /* truncated sequence */
    buf_reset(&b);
    assert_int_equal(mime_charset_to_utf8("utf-7", (const uint8_t *)"+AOk-", 5, &b), 0);
    assert_buf_eq(&b, "\xc3\xa9");
    buf_free(&b);

    /* a text part decoded to UTF-8 */
    struct mime_message *m = parse_str(msg_alternative);
    b = (struct buf)BUF_INIT;
    assert_int_equal(mime_part_decode_text(m, m->root->children, &b), 0);
    assert_buf_eq(&b, "Caf\xc3\xa9 au lait");
    buf_free(&b);
    mime_message_free(&m);
}

static void test_search(void **state)
{
    struct mime_message *m = parse_str(msg_alternative);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_HEADER, "subject", "CAF\xc3\x89"), 1);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_HEADER, "Subject", "menu"), 1);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_HEADER, "Subject", "lait"), 0);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_HEADER, "From", ""), 1);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_HEADER, "Cc", ""), 0);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_BODY, NULL, "CAF\xc3\x89 AU"), 1);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_BODY, NULL, "cid:LOGO"), 1); /* html */
    assert_int_equal(mime_search_text(m, MIME_SEARCH_BODY, NULL, "iVBOR"), 0);    /* image */
    assert_int_equal(mime_search_text(m, MIME_SEARCH_BODY, NULL, "menu"), 0);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_TEXT, NULL, "menu"), 1);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_TEXT, NULL, "a@EXAMPLE"), 1);
    mime_message_free(&m);
    /* an attached message's header is searched by TEXT */
    m = parse_str(msg_rfc822);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_TEXT, NULL, "inner sender"), 1);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_HEADER, "From", "inner"), 0);
    assert_int_equal(mime_search_text(m, MIME_SEARCH_BODY, NULL, "<B>HTML"), 1);
    mime_message_free(&m);
    /* base64 in a legacy charset */
    m = parse_str("Content-Type: text/plain; charset=koi8-r\r\n"
                  "Content-Transfer-Encoding: base64\r\n\r\n8NLJ18XU\r\n");
    assert_int_equal(mime_search_text(m, MIME_SEARCH_BODY, NULL,
                                      "\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2"),
                     1); /* ПРИВЕТ, stored as привет */
    mime_message_free(&m);
    assert_true(mime_text_contains((const uint8_t *)"\xce\x9a\xce\xb1\xce\xbb\xce\xb7", 8,
                                   "\xce\xba\xce\x91\xce\x9b"));
    assert_true(mime_text_contains((const uint8_t *)"x\xffy ABC", 7,
                                   "\xff"
                                   "y a"));
    assert_false(mime_text_contains((const uint8_t *)"abc", 3, "abcd"));
    assert_true(mime_text_contains((const uint8_t *)"", 0, ""));
}

static void test_addresses(void **state)
{
    const char *v = "\"Doe, John\" <john@example.com>, (c) plain@example.org (Plain Name),\r\n"
                    " team: a@x, \"q\\\"uoted\"@y;, <@r1,@r2:routed@z>, broken <, last@[1.2.3.4]";
    struct mime_addr *l;
    assert_int_equal(mime_addr_parse((const uint8_t *)v, strlen(v), &l), 0);
    const struct mime_addr *a = l;
    assert_string_equal(a->name, "Doe, John");
    assert_string_equal(a->mailbox, "john");
    assert_string_equal(a->host, "example.com");
    assert_false(a->invalid);
    a = a->next;
    assert_string_equal(a->name, "Plain Name");
    assert_string_equal(a->mailbox, "plain");
    a = a->next;
    assert_true(a->group_start);
    assert_string_equal(a->mailbox, "team");
    assert_null(a->host);
    a = a->next;
    assert_string_equal(a->mailbox, "a");
    a = a->next;
    assert_string_equal(a->mailbox, "q\"uoted");
    a = a->next;
    assert_true(a->group_end);
    assert_null(a->mailbox);
    a = a->next;
    assert_string_equal(a->route, "@r1,@r2");
    assert_string_equal(a->mailbox, "routed");
    a = a->next;
    assert_true(a->invalid); /* "broken <" */
    assert_string_equal(a->name, "broken");
    assert_null(a->host);
    a = a->next;
    assert_string_equal(a->host, "[1.2.3.4]");
    assert_null(a->next);
    assert_int_equal(mime_addr_count(l), 7);
    mime_addr_free(&l);
    assert_null(l);

    assert_int_equal(mime_addr_parse((const uint8_t *)"  (just a comment) ", 19, &l), 0);
    assert_null(l);
    assert_int_equal(mime_addr_parse((const uint8_t *)"", 0, &l), 0);
    assert_null(l);
    /* the IMAP placeholders */
    assert_int_equal(mime_addr_parse_flags((const uint8_t *)"word", 4, MIME_ADDR_FILL_MISSING, &l),
                     0);
    assert_string_equal(l->mailbox, "word");
    assert_string_equal(l->host, "MISSING_DOMAIN");
    mime_addr_free(&l);
    assert_int_equal(mime_addr_parse_flags((const uint8_t *)"x <a@", 5, MIME_ADDR_FILL_MISSING, &l),
                     0);
    assert_string_equal(l->host, "SYNTAX_ERROR");
    mime_addr_free(&l);
    /* strict and non-strict dots */
    assert_int_equal(mime_addr_parse((const uint8_t *)"a..b.@x", 7, &l), 0);
    assert_true(l->invalid);
    mime_addr_free(&l);
    assert_int_equal(
        mime_addr_parse_flags((const uint8_t *)"a..b.@x", 7, MIME_ADDR_NON_STRICT_DOTS, &l), 0);
    assert_false(l->invalid);
    assert_string_equal(l->mailbox, "a..b.");
    mime_addr_free(&l);
}

static void test_fields(void **state)
{
    const char *h = "From someone Mon Jan  1 00:00:00 2001\r\n"
                    "Subject : one\r\n"
                    "  two\r\n"
                    "no colon here\r\n"
                    "X:\r\n"
                    "\r\n"
                    "Body: not a field\r\n";
    struct mime_field_iter it;
    struct mime_field f;
    mime_field_iter_init(&it, (const uint8_t *)h, strlen(h));
    /* "From someone Mon Jan  1 00" has a colon: a (garbage) field */
    assert_true(mime_field_iter_next(&it, &f));
    assert_true(mime_field_iter_next(&it, &f));
    assert_int_equal(f.name_len, 7);
    assert_memory_equal(f.name, "Subject", 7);
    assert_int_equal(f.value_len, 11);
    assert_memory_equal(f.value, " one\r\n  two", 11);
    assert_int_equal(f.line_len, 22);
    assert_true(mime_field_iter_next(&it, &f)); /* "no colon here" is skipped */
    assert_int_equal(f.name_len, 1);
    assert_int_equal(f.value_len, 0);
    assert_false(mime_field_iter_next(&it, &f)); /* the empty line ends the header */

    struct mime_message *m = parse_str(h);
    assert_true(mime_part_field(m, m->root, "SUBJECT", &f));
    assert_false(mime_part_field(m, m->root, "Body", &f));
    struct buf b = BUF_INIT;
    assert_int_equal(mime_imap_envelope(m, NULL, &b), 0);
    assert_buf_eq(&b, "(NIL {7}\r\none two NIL NIL NIL NIL NIL NIL NIL NIL)");
    buf_free(&b);
    mime_message_free(&m);
}

static void test_imap_strings(void **state)
{
    struct buf b = BUF_INIT;
    assert_int_equal(mime_imap_cstring(&b, NULL), 0);
    assert_int_equal(mime_imap_cstring(&b, " a\"b\\c"), 0);
    assert_int_equal(mime_imap_cstring(&b, "\"\"\"\"\""), 0); /* too many escapes */
    assert_int_equal(mime_imap_cstring(&b, "caf\xc3\xa9"), 0);
    assert_int_equal(mime_imap_literal(&b, (const uint8_t *)"a\0b", 3), 0);
    assert_int_equal(buf_size(&b), 41);
    assert_memory_equal(buf_ptr(&b),
                        "NIL\" a\\\"b\\\\c\"{5}\r\n\"\"\"\"\"{5}\r\ncaf\xc3\xa9{3}\r\na\x80"
                        "b",
                        41);
    buf_free(&b);
}

/* Broken input: always a structure, never a crash. */
static void test_broken(void **state)
{
    static const char *const msgs[] = {
        "",
        "\r\n",
        "\n\n\n",
        "--",
        "no header at all",
        "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n",
        "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
        "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n",
        "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\n--\r\n----\r\n",
        "Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\n",
        "Content-Type: message/rfc822\r\n\r\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n--d\r\n--d--",
        "Content-Type: text/plain; charset=\"unterminated\r\n\r\nx",
        "Content-Type: ;;;===\"\"\"\r\nContent-Disposition: ;a*0*=''%\r\n\r\n",
        "Subject: =?\r\nFrom: <<<@@@>>>, (((, \"\r\n\r\n",
        "To: a\0b@c\r\nSubject: x\0y\r\n\r\n\0",
        "Content-Type: message/global\r\n\r\nContent-Type: multipart/mixed; boundary=g\r\n\r\n"
        "--g\r\nContent-Type: message/global\r\n\r\nSubject: deep\r\n\r\n--g--\r\n",
    };
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        size_t len = strlen(msgs[i]);
        if (i == 16)
            len = 28; /* with its NULs */
        struct mime_message *m = mime_parse((const uint8_t *)msgs[i], len, NULL);
        assert_non_null(m);
        buf_reset(&b);
        assert_int_equal(mime_imap_envelope(m, NULL, &b), 0);
        assert_int_equal(mime_imap_bodystructure(m, NULL, true, &b), 0);
        assert_int_equal(mime_search_text(m, MIME_SEARCH_TEXT, NULL, "zzz"), 0);
        for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
            assert_true(p->hdr_off + p->hdr_len <= p->body_off);
            assert_true(p->body_off + p->body_len <= len);
        }
        mime_message_free(&m);
    }
    /* NULL input is an empty message */
    struct mime_message *m = mime_parse(NULL, 5, NULL);
    assert_non_null(m);
    assert_int_equal(m->size, 0);
    mime_message_free(&m);
    mime_message_free(&m);
    mime_message_free(NULL);
    buf_free(&b);

    /* missing close delimiters: the outer delimiter ends the inner parts */
    m = parse_str(msg_broken);
    const struct mime_part *alt = m->root->children;
    assert_true(alt->flags & MIME_PART_NO_END);
    assert_int_equal(alt->nchildren, 1);
    assert_true(mime_part_is(alt->next, "text", ""));
    b = (struct buf)BUF_INIT;
    assert_int_equal(mime_part_decode_text(m, alt->children, &b), 0); /* bad base64 */
    buf_free(&b);
    mime_message_free(&m);
}

/* A message nested 2000 deep, and one with 20000 parts: limits hold. */
static void test_limits(void **state)
{
    struct buf msg = BUF_INIT, b = BUF_INIT;
    for (int i = 0; i < 2000; i++)
        buf_printf(&msg, "Content-Type: multipart/mixed; boundary=\"=_%d_=\"\r\n\r\n--=_%d_=\r\n",
                   i, i);
    buf_puts(&msg, "\r\nleaf\r\n");
    struct mime_message *m = mime_parse(buf_ptr(&msg), buf_size(&msg), NULL);
    assert_non_null(m);
    assert_true(m->limit_hit);
    unsigned max_depth = 0;
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p))
        max_depth = p->depth > max_depth ? p->depth : max_depth;
    assert_int_equal(max_depth, MIME_DEFAULT_MAX_DEPTH);
    assert_int_equal(mime_imap_bodystructure(m, NULL, true, &b), 0);
    assert_non_null(strstr(buf_cstr(&b), "\"application\" \"octet-stream\""));
    mime_message_free(&m);

    struct mime_limits lim = {.max_depth = 3, .max_parts = 0, .max_header_size = 0};
    m = mime_parse(buf_ptr(&msg), buf_size(&msg), &lim);
    assert_int_equal(m->nparts, 4);
    mime_message_free(&m);

    /* message/rfc822 nested deep */
    buf_reset(&msg);
    for (int i = 0; i < 3000; i++)
        buf_puts(&msg, "Content-Type: message/rfc822\r\n\r\n");
    m = mime_parse(buf_ptr(&msg), buf_size(&msg), NULL);
    assert_non_null(m);
    assert_int_equal(m->nparts, MIME_DEFAULT_MAX_DEPTH + 1);
    buf_reset(&b);
    assert_int_equal(mime_imap_bodystructure(m, NULL, true, &b), 0);
    mime_message_free(&m);

    /* many parts */
    buf_reset(&msg);
    buf_puts(&msg, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
    for (int i = 0; i < 20000; i++)
        buf_puts(&msg, "--x\r\n\r\np\r\n");
    buf_puts(&msg, "--x--\r\n");
    m = mime_parse(buf_ptr(&msg), buf_size(&msg), NULL);
    assert_int_equal(m->nparts, MIME_DEFAULT_MAX_PARTS);
    assert_true(m->root->flags & MIME_PART_TRUNCATED);
    assert_int_equal(m->root->body_off + m->root->body_len, buf_size(&msg));
    mime_message_free(&m);

    /* a huge header: fields past the limit are not used */
    buf_reset(&msg);
    for (int i = 0; i < 1000; i++)
        buf_puts(&msg, "X-Filler: 0123456789012345678901234567890123456789\r\n");
    buf_puts(&msg, "Content-Type: text/html\r\n\r\nbody");
    lim = (struct mime_limits){.max_header_size = 4096};
    m = mime_parse(buf_ptr(&msg), buf_size(&msg), &lim);
    assert_true(m->root->flags & MIME_PART_HDR_TRUNCATED);
    assert_true(mime_part_is(m->root, "text", "plain"));
    assert_int_equal(m->root->body_len, 4);
    mime_message_free(&m);
    buf_free(&msg);
    buf_free(&b);
}

/* Broken input handled the way Dovecot 2.3.19 handles it (its answers,
 * found by differential testing against it). */
static const struct {
    const char *what, *msg, *want;
} quirks[] = {
    {"garbage after the subtype: empty type and subtype",
     "Content-Type: text/plain garbage; charset=utf-8\r\n"
     "\r\n"
     "x\r\n",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (\"\" \"\" NIL NIL NI"
     "L \"7bit\" 3) BODYSTRUCTURE (\"\" \"\" NIL NIL NIL \"7bit\" 3 NIL NIL NIL NIL"
     ")"},
    {"a header cut by a delimiter inside message/rfc822",
     "Content-Type: multipart/mixed; boundary=b\r\n"
     "\r\n"
     "--b\r\n"
     "Content-Type: message/rfc822\r\n"
     "\r\n"
     "Subject: in\r\n"
     "--b--\r\n",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY ((\"message\" \"rfc82"
     "2\" NIL NIL NIL \"7bit\" 13 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"t"
     "ext\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) 1) \"mixed\""
     ") BODYSTRUCTURE ((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 13 (NIL \"in\" "
     "NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\""
     ") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL) \"mixed\" (\"bound"
     "ary\" \"b\") NIL NIL NIL)"},
    {"Content-Disposition taken again while it had no parameters",
     "Content-Type: text/plain\r\n"
     "Content-Disposition: inline\r\n"
     "Content-Disposition: attachment; filename=x\r\n"
     "Content-Disposition: inline; a=b\r\n"
     "\r\n"
     "x",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (\"text\" \"plain\" ("
     "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) BODYSTRUCTURE (\"text\" \"pla"
     "in\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL (\"attachment\" (\"f"
     "ilename\" \"x\")) NIL NIL)"},
    {"empty line then a delimiter: its break goes to the delimiter",
     "Content-Type: multipart/mixed; boundary=b\r\n"
     "\r\n"
     "--b\r\n"
     "Content-Type: message/rfc822\r\n"
     "\r\n"
     "Subject: in\r\n"
     "\r\n"
     "--b\r\n"
     "Content-Type: text/plain\r\n"
     "\r\n"
     "--b--\r\n",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY ((\"message\" \"rfc82"
     "2\" NIL NIL NIL \"7bit\" 15 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"t"
     "ext\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) 2)(\"text\" "
     "\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\") BODYSTR"
     "UCTURE ((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 15 (NIL \"in\" NIL NIL N"
     "IL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NI"
     "L \"7bit\" 0 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)(\"text\" \"plain\" (\"char"
     "set\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" (\"bounda"
     "ry\" \"b\") NIL NIL NIL)"},
    {"an unusable multipart: opaque",
     "Content-Type: multipart\r\n"
     "\r\n"
     "x\r\n",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (\"application\" \"oc"
     "tet-stream\" NIL NIL NIL \"7bit\" 3) BODYSTRUCTURE (\"application\" \"octet-s"
     "tream\" NIL NIL NIL \"7bit\" 3 NIL NIL NIL NIL)"},
    {"no MIME-Version nor Content-Type: Content-* ignored",
     "Content-Transfer-Encoding: base64\r\n"
     "Content-ID: <x>\r\n"
     "\r\n"
     "x\r\n",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (\"text\" \"plain\" ("
     "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1) BODYSTRUCTURE (\"text\" \"pla"
     "in\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)"},
    {"a boundary that prefixes another: the longest match wins",
     "Content-Type: multipart/mixed; boundary=b\r\n"
     "\r\n"
     "--b\r\n"
     "Content-Type: multipart/mixed; boundary=bb\r\n"
     "\r\n"
     "--bb\r\n"
     "\r\n"
     "one\r\n"
     "--b\r\n"
     "\r\n"
     "two\r\n"
     "--b--\r\n",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (((\"text\" \"plain\""
     " (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0) \"mixed\")(\"text\" \"plain"
     "\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0) \"mixed\") BODYSTRUCTURE "
     "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL"
     " NIL NIL) \"mixed\" (\"boundary\" \"bb\") NIL NIL NIL)(\"text\" \"plain\" (\""
     "charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL) \"mixed\" (\"bo"
     "undary\" \"b\") NIL NIL NIL)"},
    {"last Subject wins, To lists are joined; lax dots",
     "To: a@a\r\n"
     "Subject: s1\r\n"
     "To: b@b\r\n"
     "Subject: s2\r\n"
     "From: x.@y, ..z@w\r\n"
     "\r\n"
     "x\r\n",
     "ENVELOPE (NIL \"s2\" ((NIL NIL \"x.\" \"y\")(NIL NIL \"..z\" \"w\")) ((NIL NI"
     "L \"x.\" \"y\")(NIL NIL \"..z\" \"w\")) ((NIL NIL \"x.\" \"y\")(NIL NIL \"..z"
     "\" \"w\")) ((NIL NIL \"a\" \"a\")(NIL NIL \"b\" \"b\")) NIL NIL NIL NIL) BODY"
     " (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1) BODYSTR"
     "UCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NI"
     "L NIL NIL NIL)"},
    {"RFC 2231 pieces with gaps stay apart; sorted after plain ones",
     "Content-Type: text/plain; name*0=abc; name*1=def; title*=us-ascii%27en%27This"
     "%20is; NAME*2=ghi\r\n"
     "\r\n"
     "x",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (\"text\" \"plain\" ("
     "\"NAME*2\" \"ghi\" \"name*0\" \"abc\" \"name*1\" \"def\" \"title*1*\" \"us-as"
     "cii%27en%27This%20is\" \"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) BODYST"
     "RUCTURE (\"text\" \"plain\" (\"NAME*2\" \"ghi\" \"name*0\" \"abc\" \"name*1\""
     " \"def\" \"title*1*\" \"us-ascii%27en%27This%20is\" \"charset\" \"us-ascii\")"
     " NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL)"},
    {"no /subtype: kept as text with an empty subtype, still text",
     "Content-Type: text\r\n"
     "\r\n"
     "x\r\n",
     "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) BODY (\"text\" \"\" (\"cha"
     "rset\" \"us-ascii\") NIL NIL \"7bit\" 3 1) BODYSTRUCTURE (\"text\" \"\" (\"ch"
     "arset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)"},
};

static void test_dovecot_quirks(void **state)
{
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < sizeof(quirks) / sizeof(quirks[0]); i++) {
        struct mime_message *m = parse_str(quirks[i].msg);
        buf_reset(&b);
        buf_puts(&b, "ENVELOPE ");
        assert_int_equal(mime_imap_envelope(m, NULL, &b), 0);
        buf_puts(&b, " BODY ");
        assert_int_equal(mime_imap_bodystructure(m, NULL, false, &b), 0);
        buf_puts(&b, " BODYSTRUCTURE ");
        assert_int_equal(mime_imap_bodystructure(m, NULL, true, &b), 0);
        if (strcmp(buf_cstr(&b), quirks[i].want) != 0)
            fprintf(stderr, "%s\n", quirks[i].what);
        assert_buf_eq(&b, quirks[i].want);
        mime_message_free(&m);
    }
    /* HEADER.FIELDS: the top level always ends with an empty line, a part's
     * header only when it had one */
    struct mime_message *m = parse_str("A: 1\r\nB: 2\r\n");
    assert_string_equal(fetch(m, "HEADER.FIELDS (A)", &b), "A: 1\r\n\r\n");
    assert_string_equal(fetch(m, "HEADER.FIELDS.NOT (A)", &b), "B: 2\r\n");
    mime_message_free(&m);
    m = parse_str("Content-Type: message/rfc822\r\n\r\nA: 1\r\nB: 2\r\n");
    assert_string_equal(fetch(m, "1.HEADER.FIELDS (A)", &b), "A: 1\r\n");
    assert_string_equal(fetch(m, "1.HEADER.FIELDS (C)", &b), "");
    mime_message_free(&m);
    m = parse_str("Content-Type: message/rfc822\r\n\r\nA: 1\r\nB: 2\r\n\r\nbody\r\n");
    assert_string_equal(fetch(m, "1.HEADER.FIELDS (C)", &b), "\r\n");
    assert_string_equal(fetch(m, "1.HEADER.FIELDS.NOT (a)", &b), "B: 2\r\n\r\n");
    mime_message_free(&m);
    buf_free(&b);
}

static double parse_seconds(const struct buf *msg)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct mime_message *m = mime_parse(buf_ptr(msg), buf_size(msg), NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(m);
    mime_message_free(&m);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Many delimiter-like lines under 30 nested boundaries: the time grows
 * linearly with the size. */
static void test_linear(void **state)
{
    double t[2];
    for (int k = 0; k < 2; k++) {
        struct buf msg = BUF_INIT;
        for (int i = 0; i < 29; i++)
            buf_printf(&msg,
                       "Content-Type: multipart/mixed; boundary=\"bound%02d\"\r\n\r\n"
                       "--bound%02d\r\n",
                       i, i);
        buf_puts(&msg, "\r\n");
        int lines = 50000 * (k ? 4 : 1);
        for (int i = 0; i < lines; i++)
            buf_puts(&msg, "--bound-not-quite-a-delimiter-line\r\n");
        t[k] = parse_seconds(&msg);
        buf_free(&msg);
    }
    /* 4x the input: well under 16x the time (quadratic would be) */
    assert_true(t[1] < t[0] * 10 + 0.05);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_messages),  cmocka_unit_test(test_lf_endings),
        cmocka_unit_test(test_tree),           cmocka_unit_test(test_sections),
        cmocka_unit_test(test_section_parse),  cmocka_unit_test(test_rfc2231),
        cmocka_unit_test(test_header_decode),  cmocka_unit_test(test_cte_charset),
        cmocka_unit_test(test_search),         cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_fields),         cmocka_unit_test(test_imap_strings),
        cmocka_unit_test(test_broken),         cmocka_unit_test(test_limits),
        cmocka_unit_test(test_dovecot_quirks), cmocka_unit_test(test_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
