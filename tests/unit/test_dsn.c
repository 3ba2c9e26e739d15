/* Unit tests of src/queue/dsn.c: delivery status notifications (RFC 3464,
 * RFC 6522, RFC 6533), dsn_wanted, dsn_count_received and the retry
 * schedule.
 *
 * Every DSN built here is parsed back with the MIME parser and checked
 * field by field, and line by line (CRLF, at most 998 octets).
 */
#include "testutil.h"

#include <stdbool.h>
#include <strings.h>
#include <time.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "queue/dsn.h"

#define T_NOW 1795326530     /* Sun, 22 Nov 2026 05:48:50 +0000 */
#define T_ARRIVAL 1795136523 /* Fri, 20 Nov 2026 01:02:03 +0000 */
#define T_UNTIL 1795758530   /* Fri, 27 Nov 2026 05:48:50 +0000 */
#define BOUNDARY "dsn.s1.1795326530/mx.example.org"

static const char original_lf[] = "Received: from client.example.com (client [192.0.2.7])\n"
                                  "\tby mx.example.org with ESMTP id s1.42\n"
                                  "From: Alice <alice@example.com>\n"
                                  "To: bob@example.net, carol@example.net\n"
                                  "Subject: Lunch\n"
                                  "Message-ID: <m1@example.com>\n"
                                  "\n"
                                  "Secret body text that must not come back.\n"
                                  "Received: not a header\n";

static const char original_header_crlf[] =
    "Received: from client.example.com (client [192.0.2.7])\r\n"
    "\tby mx.example.org with ESMTP id s1.42\r\n"
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.net, carol@example.net\r\n"
    "Subject: Lunch\r\n"
    "Message-ID: <m1@example.com>\r\n";

static struct dsn_rcpt failed_rcpts[] = {
    {
        .final_recipient = "bob@example.net",
        .original_recipient = "<Bob@Example.NET>",
        .action = DSN_FAILED,
        .status = "5.1.1",
        .remote_mta = "mx.example.net",
        .diagnostic = "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown",
        .last_attempt = T_NOW - 10,
    },
    {
        .final_recipient = "carol@example.net",
        .action = DSN_FAILED,
        .status = "4.4.7",
        .will_retry_until = T_UNTIL, /* not shown for failed */
    },
};

static struct dsn_params params_failed(void)
{
    struct dsn_params p = {
        .reporting_mta = "mx.example.org",
        .queue_id = "s1.42",
        .envid = "QQ314159",
        .sender = "alice@example.com",
        .arrival = T_ARRIVAL,
        .now = T_NOW,
        .boundary = BOUNDARY,
        .message_id = "dsn.s1.42@mx.example.org",
        .original = (const uint8_t *)original_lf,
        .original_len = sizeof(original_lf) - 1,
        .rcpts = failed_rcpts,
        .nrcpts = 2,
    };
    return p;
}

/* --- helpers -------------------------------------------------------------------------- */

/* Every line ends in CRLF, has no other CR or LF, and is at most 998 octets. */
static void check_lines(const struct buf *b)
{
    const uint8_t *s = buf_ptr(b);
    size_t n = buf_size(b), start = 0;
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            assert_true(i + 1 < n && s[i + 1] == '\n');
            assert_true(i - start <= 998);
            start = i + 2;
            i++;
        } else {
            assert_int_not_equal(s[i], '\n');
        }
    }
    assert_int_equal(start, n); /* the last line is terminated */
}

static size_t longest_line(const struct buf *b)
{
    const uint8_t *s = buf_ptr(b);
    size_t n = buf_size(b), start = 0, max = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n') {
            if (i - 1 - start > max) /* without CRLF */
                max = i - 1 - start;
            start = i + 1;
        }
    return max;
}

static struct mime_message *build_parse(const struct dsn_params *p, struct buf *out)
{
    assert_int_equal(dsn_build(p, out), 0);
    check_lines(out);
    struct mime_message *m = mime_parse(buf_ptr(out), buf_size(out), NULL);
    assert_non_null(m);
    return m;
}

/* The value of header field name of part, unfolded, in a static buffer ("" when absent,
 * NULL when absent and want_null). */
static const char *field(const struct mime_message *m, const struct mime_part *part,
                         const char *name)
{
    static char val[8192];
    struct mime_field f;
    if (!mime_part_field(m, part, name, &f))
        return NULL;
    struct buf u = BUF_INIT;
    assert_int_equal(mime_unfold(f.value, f.value_len, &u), 0);
    assert_true(buf_size(&u) < sizeof(val));
    memcpy(val, buf_ptr(&u), buf_size(&u));
    val[buf_size(&u)] = '\0';
    buf_free(&u);
    return val;
}

static const struct mime_part *child(const struct mime_message *m, unsigned i)
{
    const struct mime_part *c = m->root->children;
    while (c && i-- > 0)
        c = c->next;
    assert_non_null(c);
    return c;
}

/* The field name in group g (0: per-message fields, 1..: recipients) of a
 * message/delivery-status body, unfolded; NULL when absent. */
static const char *ds_field(const struct mime_message *m, const struct mime_part *ds, unsigned g,
                            const char *name)
{
    static char val[8192];
    const uint8_t *b = m->data + ds->body_off;
    size_t n = ds->body_len, pos = 0;
    for (unsigned i = 0; i < g; i++) {
        const uint8_t *e = memmem(b + pos, n - pos, "\r\n\r\n", 4);
        if (!e)
            return NULL;
        pos = (size_t)(e - b) + 4;
    }
    const uint8_t *e = memmem(b + pos, n - pos, "\r\n\r\n", 4);
    size_t end = e ? (size_t)(e - b) + 2 : n;
    struct mime_field_iter it;
    struct mime_field f;
    mime_field_iter_init(&it, b + pos, end - pos);
    while (mime_field_iter_next(&it, &f)) {
        if (f.name_len != strlen(name) || strncasecmp((const char *)f.name, name, f.name_len))
            continue;
        struct buf u = BUF_INIT;
        assert_int_equal(mime_unfold(f.value, f.value_len, &u), 0);
        assert_true(buf_size(&u) < sizeof(val));
        memcpy(val, buf_ptr(&u), buf_size(&u));
        val[buf_size(&u)] = '\0';
        buf_free(&u);
        return val;
    }
    return NULL;
}

static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static bool part_contains(const struct mime_message *m, const struct mime_part *p,
                          const char *needle)
{
    return contains(m->data + p->body_off, p->body_len, needle);
}

static bool ascii(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return false;
    return true;
}

/* Whether the text part p, unwrapped (each line break and the indent after
 * it read as one space), holds needle. */
static bool text_contains(const struct mime_message *m, const struct mime_part *p,
                          const char *needle)
{
    struct buf flat = BUF_INIT;
    const uint8_t *s = m->data + p->body_off;
    for (size_t i = 0; i < p->body_len; i++) {
        if (s[i] == '\r')
            continue;
        if (s[i] == '\n') {
            while (i + 1 < p->body_len && s[i + 1] == ' ')
                i++;
            assert_int_equal(buf_append(&flat, " ", 1), 0);
        } else {
            assert_int_equal(buf_append(&flat, &s[i], 1), 0);
        }
    }
    bool found = contains(buf_ptr(&flat), buf_size(&flat), needle);
    buf_free(&flat);
    return found;
}

static void assert_field(const char *got, const char *want)
{
    assert_non_null(got);
    assert_string_equal(got, want);
}

/* --- the failed DSN --------------------------------------------------------------------- */

static void test_failed_structure(void **state)
{
    struct dsn_params p = params_failed();
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *root = m->root;

    assert_true(mime_part_is(root, "multipart", "report"));
    const struct mime_param *rt = mime_param_get(root->params, root->nparams, "report-type");
    assert_non_null(rt);
    assert_string_equal(rt->value, "delivery-status");
    const struct mime_param *bd = mime_param_get(root->params, root->nparams, "boundary");
    assert_non_null(bd);
    assert_string_equal(bd->value, BOUNDARY);
    assert_int_equal(root->flags & (MIME_PART_NO_END | MIME_PART_NO_BOUNDARY), 0);
    assert_int_equal(root->nchildren, 3);
    assert_true(mime_part_is(child(m, 0), "text", "plain"));
    assert_true(mime_part_is(child(m, 1), "message", "delivery-status"));
    assert_true(mime_part_is(child(m, 2), "text", "rfc822-headers"));

    assert_field(field(m, root, "From"), "Mail Delivery System <MAILER-DAEMON@mx.example.org>");
    assert_field(field(m, root, "To"), "<alice@example.com>");
    assert_field(field(m, root, "Subject"), "Undelivered Mail Returned to Sender");
    assert_field(field(m, root, "Auto-Submitted"), "auto-replied");
    assert_field(field(m, root, "Date"), "Sun, 22 Nov 2026 05:48:50 +0000");
    assert_field(field(m, root, "Message-ID"), "<dsn.s1.42@mx.example.org>");
    assert_field(field(m, root, "MIME-Version"), "1.0");
    assert_null(field(m, root, "Content-Transfer-Encoding")); /* all 7-bit */

    mime_message_free(&m);
    buf_free(&out);
}

static void test_failed_delivery_status(void **state)
{
    struct dsn_params p = params_failed();
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *ds = child(m, 1);

    /* per-message fields */
    assert_field(ds_field(m, ds, 0, "Reporting-MTA"), "dns; mx.example.org");
    assert_field(ds_field(m, ds, 0, "Original-Envelope-Id"), "QQ314159");
    assert_field(ds_field(m, ds, 0, "X-Queue-ID"), "s1.42");
    assert_field(ds_field(m, ds, 0, "Arrival-Date"), "Fri, 20 Nov 2026 01:02:03 +0000");
    assert_null(ds_field(m, ds, 0, "Final-Recipient"));

    /* first recipient: a remote server answered */
    assert_field(ds_field(m, ds, 1, "Original-Recipient"), "rfc822; Bob@Example.NET");
    assert_field(ds_field(m, ds, 1, "Final-Recipient"), "rfc822; bob@example.net");
    assert_field(ds_field(m, ds, 1, "Action"), "failed");
    assert_field(ds_field(m, ds, 1, "Status"), "5.1.1");
    assert_field(ds_field(m, ds, 1, "Remote-MTA"), "dns; mx.example.net");
    assert_field(ds_field(m, ds, 1, "Diagnostic-Code"),
                 "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown");
    assert_field(ds_field(m, ds, 1, "Last-Attempt-Date"), "Sun, 22 Nov 2026 05:48:40 +0000");
    assert_null(ds_field(m, ds, 1, "Will-Retry-Until"));

    /* second: expired, no server, no reply */
    assert_field(ds_field(m, ds, 2, "Final-Recipient"), "rfc822; carol@example.net");
    assert_null(ds_field(m, ds, 2, "Original-Recipient"));
    assert_field(ds_field(m, ds, 2, "Action"), "failed");
    assert_field(ds_field(m, ds, 2, "Status"), "4.4.7");
    assert_null(ds_field(m, ds, 2, "Remote-MTA"));
    assert_null(ds_field(m, ds, 2, "Diagnostic-Code"));
    assert_null(ds_field(m, ds, 2, "Last-Attempt-Date"));
    assert_null(ds_field(m, ds, 2, "Will-Retry-Until"));
    assert_null(ds_field(m, ds, 3, "Final-Recipient"));

    /* RFC 3464 2.3 order: Original-Recipient before Final-Recipient */
    const uint8_t *b = m->data + ds->body_off;
    const uint8_t *o = memmem(b, ds->body_len, "Original-Recipient:", 19);
    const uint8_t *f = memmem(b, ds->body_len, "Final-Recipient:", 16);
    assert_true(o && f && o < f);

    mime_message_free(&m);
    buf_free(&out);
}

static void test_failed_text_and_headers(void **state)
{
    struct dsn_params p = params_failed();
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *text = child(m, 0), *hdr = child(m, 2);

    const struct mime_param *cs = mime_param_get(text->params, text->nparams, "charset");
    assert_non_null(cs);
    assert_string_equal(cs->value, "us-ascii");
    assert_true(part_contains(m, text, "This is the mail system at host mx.example.org."));
    assert_true(text_contains(m, text,
                              "I'm sorry to have to inform you that your message could "
                              "not be delivered to one or more recipients."));
    /* the Original-Recipient differs only in case: not worth a word */
    assert_true(text_contains(m, text,
                              "<bob@example.net>: "
                              "host mx.example.net said: 550 5.1.1 <bob@example.net>:"
                              " Recipient address rejected: User unknown"));
    assert_true(text_contains(m, text,
                              "<carol@example.net>: delivery failed (status 4.4.7: "
                              "the message stayed in the queue too long)"));
    assert_false(part_contains(m, text, "THIS IS A WARNING"));

    /* the header block, with CRLF, and not the body */
    assert_int_equal(hdr->body_len, strlen(original_header_crlf));
    assert_memory_equal(m->data + hdr->body_off, original_header_crlf, hdr->body_len);
    assert_false(contains(buf_ptr(&out), buf_size(&out), "Secret body"));
    assert_int_equal(dsn_count_received(buf_ptr(&out), buf_size(&out)), 0);

    /* the text is wrapped for people */
    assert_true(longest_line(&out) <= 78);

    mime_message_free(&m);
    buf_free(&out);
}

/* --- the delayed DSN ------------------------------------------------------------------------ */

static void test_delayed(void **state)
{
    struct dsn_rcpt r[] = {
        {
            .final_recipient = "<dave@example.net>",
            .original_recipient = "team@example.net",
            .action = DSN_DELAYED,
            .status = "4.4.1",
            .remote_mta = "mx2.example.net",
            .diagnostic = "421 4.4.1 Too busy, try later\r\n",
            .last_attempt = T_NOW,
            .will_retry_until = T_UNTIL,
        },
        {
            .final_recipient = "erin@example.net",
            .action = DSN_DELAYED,
            .status = NULL, /* -> 4.0.0 */
            .will_retry_until = T_UNTIL - 60,
        },
    };
    struct dsn_params p = params_failed();
    p.rcpts = r;
    p.nrcpts = 2;
    p.envid = NULL;
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *root = m->root, *text = child(m, 0), *ds = child(m, 1);

    assert_true(mime_part_is(root, "multipart", "report"));
    assert_int_equal(root->nchildren, 3);
    assert_true(mime_part_is(child(m, 2), "text", "rfc822-headers"));
    assert_field(field(m, root, "Subject"), "Delayed Mail (still being retried)");
    assert_field(field(m, root, "Auto-Submitted"), "auto-replied");

    assert_null(ds_field(m, ds, 0, "Original-Envelope-Id"));
    assert_field(ds_field(m, ds, 1, "Final-Recipient"), "rfc822; dave@example.net");
    assert_field(ds_field(m, ds, 1, "Action"), "delayed");
    assert_field(ds_field(m, ds, 1, "Status"), "4.4.1");
    assert_field(ds_field(m, ds, 1, "Remote-MTA"), "dns; mx2.example.net");
    assert_field(ds_field(m, ds, 1, "Diagnostic-Code"), "smtp; 421 4.4.1 Too busy, try later");
    assert_field(ds_field(m, ds, 1, "Last-Attempt-Date"), "Sun, 22 Nov 2026 05:48:50 +0000");
    assert_field(ds_field(m, ds, 1, "Will-Retry-Until"), "Fri, 27 Nov 2026 05:48:50 +0000");
    assert_field(ds_field(m, ds, 2, "Action"), "delayed");
    assert_field(ds_field(m, ds, 2, "Status"), "4.0.0");
    assert_field(ds_field(m, ds, 2, "Will-Retry-Until"), "Fri, 27 Nov 2026 05:47:50 +0000");

    assert_true(part_contains(m, text, "THIS IS A WARNING ONLY"));
    assert_true(text_contains(m, text, "Your message has not yet been delivered"));
    assert_true(text_contains(m, text, "will keep trying until Fri, 27 Nov 2026 05:48:50 +0000"));
    assert_true(text_contains(
        m, text,
        "<dave@example.net> (expanded from <team@example.net>): host mx2.example.net said: "
        "421 4.4.1 Too busy, try later"));
    assert_true(text_contains(m, text, "<erin@example.net>: delivery delayed (status 4.0.0)"));
    assert_false(text_contains(m, text, "I'm sorry"));

    mime_message_free(&m);
    buf_free(&out);
}

/* --- internationalized ------------------------------------------------------------------------ */

static void test_utf8_original_global_headers(void **state)
{
    static const char orig[] = "From: J\xC3\xB6rg M\xC3\xBCller <joerg@example.de>\r\n"
                               "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
                               "\r\n"
                               "body\r\n";
    struct dsn_params p = params_failed();
    p.original = (const uint8_t *)orig;
    p.original_len = sizeof(orig) - 1;
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *hdr = child(m, 2);

    assert_true(mime_part_is(hdr, "message", "global-headers"));
    assert_int_equal(hdr->cte, MIME_CTE_8BIT);
    assert_field(field(m, m->root, "Content-Transfer-Encoding"), "8bit");
    assert_true(part_contains(m, hdr, "From: J\xC3\xB6rg M\xC3\xBCller <joerg@example.de>\r\n"));
    /* the DSN's own header and its report stay ASCII */
    assert_true(ascii(m->data + m->root->hdr_off, m->root->hdr_len));
    assert_true(ascii(m->data + child(m, 1)->body_off, child(m, 1)->body_len));

    mime_message_free(&m);
    buf_free(&out);
}

static void test_utf8_addresses_and_reply(void **state)
{
    struct dsn_rcpt r[] = {{
        .final_recipient = "\xC3\xBCn\xC3\xAF+code@example.de",
        .original_recipient = "<\xC3\xBCn\xC3\xAF+code@example.de>",
        .action = DSN_FAILED,
        .status = "5.1.1",
        .remote_mta = "mx.example.de",
        .diagnostic = "550-5.1.1 Benutzer unbekannt:\r\n550 5.1.1 M\xC3\xBCller \xFF",
    }};
    struct dsn_params p = params_failed();
    p.sender = "j\xC3\xB6rg@b\xC3\xBC"
               "cher.de";
    p.rcpts = r;
    p.nrcpts = 1;
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *text = child(m, 0), *ds = child(m, 1);

    /* an address cannot be RFC 2047-encoded: raw UTF-8 (RFC 6532) */
    assert_field(field(m, m->root, "To"), "<j\xC3\xB6rg@b\xC3\xBC"
                                          "cher.de>");
    assert_field(field(m, m->root, "Content-Transfer-Encoding"), "8bit");
    /* RFC 6533 utf-8-addr-xtext; '+' is not a QCHAR */
    assert_field(ds_field(m, ds, 1, "Final-Recipient"),
                 "utf-8; \\x{FC}n\\x{EF}\\x{2B}code@example.de");
    assert_field(ds_field(m, ds, 1, "Original-Recipient"),
                 "utf-8; \\x{FC}n\\x{EF}\\x{2B}code@example.de");
    assert_true(ascii(m->data + ds->body_off, ds->body_len));

    /* the reply: one line, RFC 2047 words, invalid octets as U+FFFD */
    const char *dc = ds_field(m, ds, 1, "Diagnostic-Code");
    assert_non_null(dc);
    assert_true(strncmp(dc, "smtp; =?UTF-8?B?", 16) == 0);
    struct buf dec = BUF_INIT;
    assert_int_equal(mime_header_decode((const uint8_t *)dc, strlen(dc), &dec), 0);
    assert_int_equal(buf_size(&dec), strlen("smtp; 550-5.1.1 Benutzer unbekannt: 550 5.1.1 "
                                            "M\xC3\xBCller \xEF\xBF\xBD"));
    assert_memory_equal(buf_ptr(&dec),
                        "smtp; 550-5.1.1 Benutzer unbekannt: 550 5.1.1 M\xC3\xBCller \xEF\xBF\xBD",
                        buf_size(&dec));
    buf_free(&dec);

    const struct mime_param *cs = mime_param_get(text->params, text->nparams, "charset");
    assert_non_null(cs);
    assert_string_equal(cs->value, "utf-8");
    assert_int_equal(text->cte, MIME_CTE_8BIT);
    assert_true(part_contains(m, text, "<\xC3\xBCn\xC3\xAF+code@example.de>: host"));
    assert_true(part_contains(m, text, "M\xC3\xBCller \xEF\xBF\xBD"));
    assert_true(mime_part_is(child(m, 2), "text", "rfc822-headers"));

    mime_message_free(&m);
    buf_free(&out);
}

/* --- long values -------------------------------------------------------------------------- */

static void test_long_values_folded(void **state)
{
    struct buf spaced = BUF_INIT, token = BUF_INIT, accents = BUF_INIT, addr = BUF_INIT;
    for (int i = 0; i < 300; i++)
        assert_int_equal(buf_printf(&spaced, "word%03d ", i), 0);
    assert_int_equal(buf_puts(&spaced, "end"), 0);
    for (int i = 0; i < 2500; i++)
        assert_int_equal(buf_puts(&token, "x"), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(buf_puts(&accents, "\xC3\xA9"), 0);
    for (int i = 0; i < 1200; i++)
        assert_int_equal(buf_puts(&addr, "a"), 0);
    assert_int_equal(buf_puts(&addr, "@example.net"), 0);

    struct dsn_rcpt r[] = {
        {.final_recipient = "a@example.net",
         .action = DSN_FAILED,
         .status = "5.0.0",
         .diagnostic = buf_cstr(&spaced)},
        {.final_recipient = "b@example.net",
         .action = DSN_FAILED,
         .status = "5.0.0",
         .diagnostic = buf_cstr(&token)},
        {.final_recipient = "c@example.net",
         .action = DSN_FAILED,
         .status = "5.0.0",
         .diagnostic = buf_cstr(&accents)},
        {.final_recipient = buf_cstr(&addr), .action = DSN_FAILED, .status = "5.0.0"},
    };
    struct dsn_params p = params_failed();
    p.rcpts = r;
    p.nrcpts = 1;
    struct buf out = BUF_INIT;

    /* white space: folded to 78 and unfolded back to the same text */
    struct mime_message *m = build_parse(&p, &out);
    assert_true(longest_line(&out) <= 78);
    const char *dc = ds_field(m, child(m, 1), 1, "Diagnostic-Code");
    assert_non_null(dc);
    assert_true(strncmp(dc, "smtp; ", 6) == 0);
    assert_string_equal(dc + 6, buf_cstr(&spaced));
    mime_message_free(&m);

    /* everything: no line over 998 (check_lines), the parts still there */
    buf_reset(&out);
    p.nrcpts = 4;
    m = build_parse(&p, &out);
    assert_int_equal(m->root->nchildren, 3);
    assert_true(longest_line(&out) <= 998);
    assert_true(longest_line(&out) > 900);
    const struct mime_part *ds = child(m, 1);
    assert_field(ds_field(m, ds, 1, "Action"), "failed");
    assert_field(ds_field(m, ds, 4, "Action"), "failed");
    /* the encoded words: each at most 75 octets, decoding to the reply */
    dc = ds_field(m, ds, 3, "Diagnostic-Code");
    assert_non_null(dc);
    for (const char *w = strstr(dc, "=?"); w; w = strstr(w + 2, "=?")) {
        const char *e = strstr(w + 10, "?=");
        assert_non_null(e);
        assert_true(e + 2 - w <= 75);
        w = e;
    }
    struct buf dec = BUF_INIT;
    assert_int_equal(mime_header_decode((const uint8_t *)dc + 6, strlen(dc) - 6, &dec), 0);
    assert_int_equal(buf_size(&dec), buf_size(&accents));
    assert_memory_equal(buf_ptr(&dec), buf_ptr(&accents), buf_size(&accents));
    buf_free(&dec);
    mime_message_free(&m);

    buf_free(&out);
    buf_free(&spaced);
    buf_free(&token);
    buf_free(&accents);
    buf_free(&addr);
}

/* --- the original's header block ----------------------------------------------------------------
 */

static void test_original_without_empty_line(void **state)
{
    static const char orig[] = "Subject: x\nFrom: y@example.com\r\nno colon here";
    struct dsn_params p = params_failed();
    p.original = (const uint8_t *)orig;
    p.original_len = sizeof(orig) - 1;
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    assert_int_equal(m->root->nchildren, 3);
    const struct mime_part *hdr = child(m, 2);
    static const char want[] = "Subject: x\r\nFrom: y@example.com\r\nno colon here\r\n";
    assert_int_equal(hdr->body_len, strlen(want));
    assert_memory_equal(m->data + hdr->body_off, want, hdr->body_len);
    mime_message_free(&m);
    buf_free(&out);
}

static void test_original_odd_bytes(void **state)
{
    /* a lone CR, a NUL, a 3000-octet line: CRLF lines of at most 998 */
    struct buf orig = BUF_INIT;
    assert_int_equal(buf_puts(&orig, "A: one\rtwo\n"), 0);
    assert_int_equal(buf_append(&orig, "B: x\0y\n", 7), 0);
    assert_int_equal(buf_puts(&orig, "X-Long:"), 0);
    for (int i = 0; i < 600; i++)
        assert_int_equal(buf_puts(&orig, " abcd"), 0);
    assert_int_equal(buf_puts(&orig, "\nX-Token: "), 0);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(buf_puts(&orig, "z"), 0);
    assert_int_equal(buf_puts(&orig, "\n\nbody\n"), 0);

    struct dsn_params p = params_failed();
    p.original = buf_ptr(&orig);
    p.original_len = buf_size(&orig);
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *hdr = child(m, 2);
    assert_true(part_contains(m, hdr, "A: one two\r\nB: x y\r\nX-Long: abcd abcd"));
    assert_true(longest_line(&out) <= 998);
    /* X-Long is folded at white space: unfolding gives it back */
    struct mime_message *h = mime_parse(m->data + hdr->body_off, hdr->body_len, NULL);
    assert_non_null(h);
    struct mime_field f;
    assert_true(mime_part_field(h, h->root, "X-Long", &f));
    struct buf u = BUF_INIT;
    assert_int_equal(mime_unfold(f.value, f.value_len, &u), 0);
    assert_int_equal(buf_size(&u), 600 * 5 - 1);
    assert_true(mime_part_field(h, h->root, "X-Token", &f));
    mime_message_free(&h);
    buf_free(&u);
    assert_false(contains(buf_ptr(&out), buf_size(&out), "body"));
    mime_message_free(&m);
    buf_free(&out);
    buf_free(&orig);
}

static void test_original_header_capped(void **state)
{
    /* 1000 lines of 100 octets + CRLF: about 100 KiB of header */
    struct buf orig = BUF_INIT;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(buf_printf(&orig, "X-Filler-%04d: ", i), 0);
        for (int k = 0; k < 100 - 15; k++)
            assert_int_equal(buf_puts(&orig, "f"), 0);
        assert_int_equal(buf_puts(&orig, "\r\n"), 0);
    }
    assert_int_equal(buf_puts(&orig, "\r\nbody\r\n"), 0);
    struct dsn_params p = params_failed();
    p.original = buf_ptr(&orig);
    p.original_len = buf_size(&orig);
    struct buf out = BUF_INIT;
    struct mime_message *m = build_parse(&p, &out);
    const struct mime_part *hdr = child(m, 2);
    assert_true(hdr->body_len <= 64 * 1024);
    assert_true(hdr->body_len > 60 * 1024);
    assert_int_equal(hdr->body_len % 102, 0); /* whole lines only */
    assert_memory_equal(m->data + hdr->body_off, buf_ptr(&orig), hdr->body_len);
    mime_message_free(&m);

    /* one line longer than the cap, no empty line: cut, still folded */
    buf_reset(&orig);
    assert_int_equal(buf_puts(&orig, "X-Huge: "), 0);
    for (int i = 0; i < 70000; i++)
        assert_int_equal(buf_puts(&orig, i % 10 ? "h" : " "), 0);
    p.original = buf_ptr(&orig);
    p.original_len = buf_size(&orig);
    buf_reset(&out);
    m = build_parse(&p, &out);
    hdr = child(m, 2);
    assert_true(hdr->body_len <= 64 * 1024 + 64 * 3);
    assert_true(hdr->body_len > 60 * 1024);
    mime_message_free(&m);
    buf_free(&out);
    buf_free(&orig);
}

static void test_no_original_header(void **state)
{
    static const char orig[] = "\r\nonly a body\r\n";
    struct dsn_params p = params_failed();
    struct buf out = BUF_INIT;
    for (int i = 0; i < 2; i++) {
        p.original = i ? (const uint8_t *)orig : NULL;
        p.original_len = i ? sizeof(orig) - 1 : 0;
        buf_reset(&out);
        struct mime_message *m = build_parse(&p, &out);
        assert_int_equal(m->root->nchildren, 2); /* the optional third part is left out */
        assert_true(mime_part_is(child(m, 1), "message", "delivery-status"));
        mime_message_free(&m);
    }
    buf_free(&out);
}

/* --- parameters ------------------------------------------------------------------------------ */

static void expect_bad(const struct dsn_params *p)
{
    struct buf out = BUF_INIT;
    assert_int_equal(buf_puts(&out, "kept"), 0);
    assert_int_equal(dsn_build(p, &out), -1);
    assert_int_equal(buf_size(&out), 4);
    assert_memory_equal(buf_ptr(&out), "kept", 4);
    buf_free(&out);
}

static void test_bad_params(void **state)
{
    struct dsn_rcpt mixed[] = {
        {.final_recipient = "a@example.net", .action = DSN_FAILED, .status = "5.1.1"},
        {.final_recipient = "b@example.net", .action = DSN_DELAYED, .status = "4.4.1"},
    };
    struct dsn_rcpt bad_rcpt[] = {
        {.final_recipient = "", .action = DSN_FAILED},
        {.final_recipient = NULL, .action = DSN_FAILED},
        {.final_recipient = "a@b\r\nBcc: x@y", .action = DSN_FAILED},
        {.final_recipient = "<>", .action = DSN_FAILED},
        {.final_recipient = "a@b", .action = (enum dsn_action)7},
    };
    struct dsn_params p = params_failed(), q;
    struct buf out = BUF_INIT;
    assert_int_equal(dsn_build(NULL, &out), -1);
    assert_int_equal(dsn_build(&p, NULL), -1);
    buf_free(&out);

    q = p, q.nrcpts = 0, expect_bad(&q);
    q = p, q.rcpts = NULL, expect_bad(&q);
    q = p, q.rcpts = mixed, q.nrcpts = 2, expect_bad(&q);
    for (size_t i = 0; i < sizeof(bad_rcpt) / sizeof(bad_rcpt[0]); i++) {
        q = p, q.rcpts = &bad_rcpt[i], q.nrcpts = 1;
        expect_bad(&q);
    }
    const char *senders[] = {"", "<>", NULL, "a@b\r\n", "\xFF@example.com", "a\tb@c"};
    for (size_t i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
        q = p, q.sender = senders[i];
        expect_bad(&q);
    }
    const char *boundaries[] = {
        NULL,          "",
        "with\"quote", "ends in space ",
        "semi;colon",  "0123456789012345678901234567890123456789012345678901234567890123456789x"};
    for (size_t i = 0; i < sizeof(boundaries) / sizeof(boundaries[0]); i++) {
        q = p, q.boundary = boundaries[i];
        expect_bad(&q);
    }
    q = p, q.message_id = NULL, expect_bad(&q);
    q = p, q.message_id = "a b@c", expect_bad(&q);
    q = p, q.message_id = "<a@c>", expect_bad(&q);
    q = p, q.reporting_mta = NULL, expect_bad(&q);
    q = p, q.reporting_mta = "mx example", expect_bad(&q);
    q = p, q.reporting_mta = "", expect_bad(&q);
    q = p, q.original = NULL, q.original_len = 5, expect_bad(&q);
    q = p, q.now = (time_t)400000000000LL, expect_bad(&q); /* year > 9999 */

    /* the good ones pass; a 70-character boundary is fine; <sender> too */
    q = p, q.boundary = "0123456789012345678901234567890123456789012345678901234567890123456789";
    q.sender = "<alice@example.com>";
    struct buf ok = BUF_INIT;
    assert_int_equal(dsn_build(&q, &ok), 0);
    assert_true(contains(buf_ptr(&ok), buf_size(&ok), "\r\nTo: <alice@example.com>\r\n"));
    buf_free(&ok);
}

static void test_status_validated(void **state)
{
    static const struct {
        enum dsn_action action;
        const char *given, *want;
    } cases[] = {
        {DSN_FAILED, "5.1.1", "5.1.1"},  {DSN_FAILED, "5.7.26", "5.7.26"},
        {DSN_FAILED, "4.4.7", "4.4.7"},  {DSN_FAILED, "5.123.456", "5.123.456"},
        {DSN_FAILED, NULL, "5.0.0"},     {DSN_FAILED, "", "5.0.0"},
        {DSN_FAILED, "5.1", "5.0.0"},    {DSN_FAILED, "x.1.1", "5.0.0"},
        {DSN_FAILED, "3.1.1", "5.0.0"},  {DSN_FAILED, "5.1234.1", "5.0.0"},
        {DSN_FAILED, "5.1.1 ", "5.0.0"}, {DSN_FAILED, "5.1.1\r\nX: y", "5.0.0"},
        {DSN_FAILED, "55.1.1", "5.0.0"}, {DSN_FAILED, "5..1", "5.0.0"},
        {DSN_DELAYED, "4.4.1", "4.4.1"}, {DSN_DELAYED, "bad", "4.0.0"},
        {DSN_DELAYED, "4.4.", "4.0.0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dsn_rcpt r = {.final_recipient = "a@example.net",
                             .action = cases[i].action,
                             .status = cases[i].given};
        struct dsn_params p = params_failed();
        p.rcpts = &r;
        p.nrcpts = 1;
        struct buf out = BUF_INIT;
        struct mime_message *m = build_parse(&p, &out);
        assert_field(ds_field(m, child(m, 1), 1, "Status"), cases[i].want);
        mime_message_free(&m);
        buf_free(&out);
    }
}

/* --- dsn_wanted, dsn_count_received ----------------------------------------------------------- */

static void test_dsn_wanted(void **state)
{
    assert_false(dsn_wanted(""));
    assert_false(dsn_wanted("<>"));
    assert_false(dsn_wanted(NULL));
    assert_true(dsn_wanted("alice@example.com"));
    assert_true(dsn_wanted("postmaster"));
}

static unsigned count_str(const char *s)
{
    return dsn_count_received((const uint8_t *)s, strlen(s));
}

static void test_count_received(void **state)
{
    assert_int_equal(count_str("Received: from a\r\n"
                               " by b; Received: fake continuation\r\n"
                               "\tReceived: continuation after a tab\r\n"
                               "received : from c\r\n"
                               "RECEIVED:from d\n"
                               "X-Received: no\r\n"
                               "Receivedx: no\r\n"
                               "Received-SPF: pass\r\n"
                               "Received\r\n"
                               "Subject: s\r\n"
                               "\r\n"
                               "Received: body line\r\n"
                               "Received: another\r\n"),
                     3);
    assert_int_equal(count_str("Received: a\nReceived: b"), 2); /* no empty line */
    assert_int_equal(count_str("Received: a\n\nReceived: b\n"), 1);
    assert_int_equal(count_str("\r\nReceived: body\r\n"), 0);
    assert_int_equal(count_str(""), 0);
    assert_int_equal(dsn_count_received(NULL, 0), 0);
    assert_int_equal(count_str("Received: a\r\n\r"), 1);

    struct buf b = BUF_INIT;
    for (int i = 0; i < 51; i++)
        assert_int_equal(buf_printf(&b, "Received: from h%d\r\n\tby h%d\r\n", i, i + 1), 0);
    assert_int_equal(buf_puts(&b, "\r\nbody\r\n"), 0);
    assert_int_equal(dsn_count_received(buf_ptr(&b), buf_size(&b)), 51);
    buf_free(&b);
}

/* --- the retry schedule ----------------------------------------------------------------------- */

static void test_schedule_parse_good(void **state)
{
    unsigned d[QUEUE_SCHEDULE_MAX];
    size_t n = 0;
    char err[128] = "";

    assert_int_equal(queue_schedule_parse("1m,5m,15m,30m,1h,2h,4h", d, &n, err, sizeof(err)), 0);
    static const unsigned want[] = {60, 300, 900, 1800, 3600, 7200, 14400};
    assert_int_equal(n, 7);
    assert_memory_equal(d, want, sizeof(want));

    assert_int_equal(queue_schedule_parse(" 30s , 1m ,1M,\t2H, 1d ", d, &n, err, sizeof(err)), 0);
    static const unsigned want2[] = {30, 60, 60, 7200, 86400};
    assert_int_equal(n, 5);
    assert_memory_equal(d, want2, sizeof(want2));

    assert_int_equal(queue_schedule_parse("30d", d, &n, NULL, 0), 0);
    assert_int_equal(n, 1);
    assert_int_equal(d[0], 30 * 86400);
    assert_int_equal(queue_schedule_parse("1s", d, &n, err, sizeof(err)), 0);
    assert_int_equal(d[0], 1);
    assert_int_equal(queue_schedule_parse("720h,2592000s", d, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_int_equal(d[1], 2592000);

    struct buf b = BUF_INIT;
    for (int i = 0; i < QUEUE_SCHEDULE_MAX; i++)
        assert_int_equal(buf_printf(&b, "%s%dm", i ? "," : "", i + 1), 0);
    assert_int_equal(queue_schedule_parse(buf_cstr(&b), d, &n, err, sizeof(err)), 0);
    assert_int_equal(n, QUEUE_SCHEDULE_MAX);
    assert_int_equal(d[QUEUE_SCHEDULE_MAX - 1], QUEUE_SCHEDULE_MAX * 60);
    assert_int_equal(buf_puts(&b, ",1h"), 0);
    assert_int_equal(queue_schedule_parse(buf_cstr(&b), d, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than"));
    buf_free(&b);
}

static void test_schedule_parse_bad(void **state)
{
    static const struct {
        const char *s, *why;
    } cases[] = {
        {"", "empty"},
        {"   ", "empty"},
        {"1m,", "entry 2"},
        {",1m", "entry 1"},
        {"1m,,2m", "entry 2"},
        {"5", "unit"},
        {"5x", "unit"},
        {"m", "number"},
        {"-1m", "number"},
        {"0s", "range"},
        {"0m,1m", "range"},
        {"31d", "range"},
        {"2592001s", "range"},
        {"99999999999999999999999m", "range"},
        {"1h,30m", "decrease"},
        {"1m 2m", "after the unit"},
        {"1m;2m", "after the unit"},
        {"1.5h", "unit"},
        {"1mm", "after the unit"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned d[QUEUE_SCHEDULE_MAX] = {12345};
        size_t n = 99;
        char err[128] = "";
        assert_int_equal(queue_schedule_parse(cases[i].s, d, &n, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].why))
            fail_msg("\"%s\": error \"%s\" lacks \"%s\"", cases[i].s, err, cases[i].why);
        assert_int_equal(n, 99); /* untouched */
        assert_int_equal(d[0], 12345);
        /* err may be NULL, or too small */
        assert_int_equal(queue_schedule_parse(cases[i].s, d, &n, NULL, 0), -1);
        char tiny[4];
        assert_int_equal(queue_schedule_parse(cases[i].s, d, &n, tiny, sizeof(tiny)), -1);
        assert_true(strlen(tiny) < sizeof(tiny));
    }
    unsigned d[QUEUE_SCHEDULE_MAX];
    size_t n;
    char err[128];
    assert_int_equal(queue_schedule_parse(NULL, d, &n, err, sizeof(err)), -1);
    assert_int_equal(queue_schedule_parse("1h,30m", d, &n, err, sizeof(err)), -1);
    assert_string_equal(err, "entry 2 \"30m\": shorter than the one before "
                             "(delays must not decrease)");
}

static void test_next_attempt(void **state)
{
    const unsigned d[] = {60, 300, 900};
    const time_t last = T_NOW;
    assert_int_equal(queue_next_attempt(d, 3, 1, last), last + 60);
    assert_int_equal(queue_next_attempt(d, 3, 2, last), last + 300);
    assert_int_equal(queue_next_attempt(d, 3, 3, last), last + 900);
    assert_int_equal(queue_next_attempt(d, 3, 4, last), last + 900); /* the last repeats */
    assert_int_equal(queue_next_attempt(d, 3, 1000, last), last + 900);
    assert_int_equal(queue_next_attempt(d, 3, UINT32_MAX, last), last + 900);
    assert_int_equal(queue_next_attempt(d, 3, 0, last), last + 60); /* 0 counts as 1 */
    assert_int_equal(queue_next_attempt(d, 1, 5, last), last + 60);
    assert_int_equal(queue_next_attempt(d, 0, 1, last), last);

    unsigned parsed[QUEUE_SCHEDULE_MAX];
    size_t n;
    assert_int_equal(queue_schedule_parse("1m,5m,15m,30m,1h,2h,4h", parsed, &n, NULL, 0), 0);
    time_t t = 0;
    for (unsigned a = 1; a <= 9; a++)
        t = queue_next_attempt(parsed, n, a, t);
    /* 1m+5m+15m+30m+1h+2h+4h, then 4h twice more */
    assert_int_equal(t, 60 + 300 + 900 + 1800 + 3600 + 7200 + 14400 * 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_structure),
        cmocka_unit_test(test_failed_delivery_status),
        cmocka_unit_test(test_failed_text_and_headers),
        cmocka_unit_test(test_delayed),
        cmocka_unit_test(test_utf8_original_global_headers),
        cmocka_unit_test(test_utf8_addresses_and_reply),
        cmocka_unit_test(test_long_values_folded),
        cmocka_unit_test(test_original_without_empty_line),
        cmocka_unit_test(test_original_odd_bytes),
        cmocka_unit_test(test_original_header_capped),
        cmocka_unit_test(test_no_original_header),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_status_validated),
        cmocka_unit_test(test_dsn_wanted),
        cmocka_unit_test(test_count_received),
        cmocka_unit_test(test_schedule_parse_good),
        cmocka_unit_test(test_schedule_parse_bad),
        cmocka_unit_test(test_next_attempt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
