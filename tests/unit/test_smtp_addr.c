/* Unit tests of the SMTP address syntax (src/proto/smtp/smtp_addr.c). */
#include "testutil.h"

#include <stdbool.h>

#include "proto/smtp/smtp_addr.h"

static enum smtp_addr_status parse(const char *s, unsigned flags, struct smtp_path *p,
                                   const char **end)
{
    return smtp_path_parse(s, flags, p, end);
}

static void expect_ok(const char *s, unsigned flags, const char *mailbox, const char *rest)
{
    struct smtp_path p;
    const char *end = NULL;
    enum smtp_addr_status st = parse(s, flags, &p, &end);
    if (st != SMTP_ADDR_OK)
        fail_msg("%s: status %d", s, (int)st);
    assert_string_equal(p.mailbox, mailbox);
    assert_string_equal(end, rest);
}

static void expect_status(const char *s, unsigned flags, enum smtp_addr_status want)
{
    struct smtp_path p;
    const char *end = NULL;
    enum smtp_addr_status st = parse(s, flags, &p, &end);
    if (st != want)
        fail_msg("%s: status %d, want %d", s, (int)st, (int)want);
}

static void test_path_basic(void **state)
{
    expect_ok("<a@example.org>", 0, "a@example.org", "");
    expect_ok("<first.last+tag@sub.example.org> SIZE=1", 0, "first.last+tag@sub.example.org",
              " SIZE=1");
    expect_ok("<!#$&'*+-/=?^_`{|}~@x.y>", 0, "!#$&'*+-/=?^_`{|}~@x.y", "");
    expect_ok("<\"john doe\"@example.org>", 0, "\"john doe\"@example.org", "");
    expect_ok("<\"a\\\"b\"@example.org>", 0, "\"a\\\"b\"@example.org", "");
    expect_ok("<\"\"@example.org>", 0, "\"\"@example.org", "");
    expect_ok("<\"a>b\"@example.org>", 0, "\"a>b\"@example.org", "");
    expect_ok("<a@localhost>", 0, "a@localhost", "");
    expect_ok("<a@1-2.example>", 0, "a@1-2.example", "");
    expect_ok("<a@[192.0.2.1]>", 0, "a@[192.0.2.1]", "");
    expect_ok("<a@[IPv6:2001:db8::1]>", 0, "a@[IPv6:2001:db8::1]", "");
    expect_ok("<a@[ipv6:::ffff:192.0.2.1]>", 0, "a@[ipv6:::ffff:192.0.2.1]", "");
    expect_ok("<a@x.org>>", 0, "a@x.org", ">"); /* what follows is the caller's business */

    static const char *const bad[] = {
        "a@example.org",
        "<a@example.org",
        "<a>",
        "<@example.org>",
        "<a@>",
        "<a@.org>",
        "<a@example.org.>",
        "<a@ex_ample.org>",
        "<a@-x.org>",
        "<a@x-.org>",
        "<.a@x.org>",
        "<a.@x.org>",
        "<a..b@x.org>",
        "<a b@x.org>",
        "<\"a@x.org>",
        "<\"a\x01\"@x.org>",
        "<a@[300.0.0.1]>",
        "<a@[1.2.3]>",
        "<a@[IPv6:1:2]>",
        "<a@[foo:bar]>",
        "<a@[1.2.3.4>",
        "<>",
        "<a(b)@x.org>",
        "<a@x..org>",
        "<a@@x.org>",
        "<a\\b@x.org>",
        "<\"a\\\x01\"@x.org>",
        "<a@x,y>",
        "<@a:>",
        "<@a,b:c@d>",
        "<@:c@d>",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_status(bad[i], 0, SMTP_ADDR_SYNTAX);
}

static void test_path_null_and_postmaster(void **state)
{
    struct smtp_path p;
    const char *end;
    assert_int_equal(parse("<> BODY=8BITMIME", SMTP_PATH_NULL_OK, &p, &end), SMTP_ADDR_OK);
    assert_true(p.is_null);
    assert_string_equal(p.mailbox, "");
    assert_string_equal(end, " BODY=8BITMIME");
    expect_status("<>", 0, SMTP_ADDR_SYNTAX);

    assert_int_equal(parse("<PostMaster>", SMTP_PATH_POSTMASTER_OK, &p, &end), SMTP_ADDR_OK);
    assert_true(p.is_postmaster);
    assert_string_equal(p.mailbox, "postmaster");
    expect_status("<postmaster>", 0, SMTP_ADDR_SYNTAX);
    expect_status("<postmasters>", SMTP_PATH_POSTMASTER_OK, SMTP_ADDR_SYNTAX);
    expect_status("<@a.b:postmaster>", SMTP_PATH_POSTMASTER_OK, SMTP_ADDR_SYNTAX);
    expect_ok("<postmaster@example.org>", SMTP_PATH_POSTMASTER_OK, "postmaster@example.org", "");
}

static void test_path_route(void **state)
{
    struct smtp_path p;
    const char *end;
    assert_int_equal(parse("<@a.example,@b.example:user@c.example>", 0, &p, &end), SMTP_ADDR_OK);
    assert_true(p.had_route);
    assert_string_equal(p.mailbox, "user@c.example");
    assert_int_equal(p.local_len, 4);
    assert_int_equal(parse("<@a.example:user@c.example>", 0, &p, &end), SMTP_ADDR_OK);
    assert_string_equal(p.mailbox, "user@c.example");
}

static void test_path_relay_chars(void **state)
{
    static const char *const relay[] = {"<a%b@x.org>",       "<b!a@x.org>",     "<\"a@b\"@x.org>",
                                        "<\"a\\@b\"@x.org>", "<\"a%b\"@x.org>", "<\"a!\"@x.org>"};
    for (size_t i = 0; i < sizeof(relay) / sizeof(relay[0]); i++) {
        struct smtp_path p;
        const char *end;
        assert_int_equal(parse(relay[i], 0, &p, &end), SMTP_ADDR_OK);
        assert_true(p.relay_chars);
    }
    struct smtp_path p;
    const char *end;
    assert_int_equal(parse("<\"a b\"@x.org>", 0, &p, &end), SMTP_ADDR_OK);
    assert_false(p.relay_chars);
    assert_true(p.local_quoted);
    assert_int_equal(parse("<@x.org:a@y.org>", 0, &p, &end), SMTP_ADDR_OK);
    assert_false(p.relay_chars);
}

static void test_path_utf8(void **state)
{
    expect_status("<j\xc3\xb6rg@example.org>", 0, SMTP_ADDR_NEED_UTF8);
    expect_status("<a@b\xc3\xbc\x63her.example>", 0, SMTP_ADDR_NEED_UTF8);
    expect_status("<\"j\xc3\xb6 rg\"@example.org>", 0, SMTP_ADDR_NEED_UTF8);
    expect_ok("<j\xc3\xb6rg@b\xc3\xbc\x63her.example>", SMTP_PATH_UTF8,
              "j\xc3\xb6rg@b\xc3\xbc\x63her.example", "");
    expect_ok("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
              SMTP_PATH_UTF8,
              "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", "");
    /* Malformed UTF-8 is a syntax error, with or without SMTPUTF8. */
    static const char *const bad[] = {"<a\xc3@x.org>", "<a\xc0\xaf@x.org>", "<a\xed\xa0\x80@x.org>",
                                      "<a@x\xff.org>", "<\"a\xf8\"@x.org>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_status(bad[i], SMTP_PATH_UTF8, SMTP_ADDR_SYNTAX);
        expect_status(bad[i], 0, SMTP_ADDR_SYNTAX);
    }
}

static void test_path_lengths(void **state)
{
    char buf[600];
    char local[100];
    memset(local, 'l', 64);
    local[64] = '\0';
    snprintf(buf, sizeof(buf), "<%s@x.org>", local);
    expect_status(buf, 0, SMTP_ADDR_OK);
    local[64] = 'l';
    local[65] = '\0';
    snprintf(buf, sizeof(buf), "<%s@x.org>", local);
    expect_status(buf, 0, SMTP_ADDR_TOO_LONG);

    char label[64];
    memset(label, 'd', 63);
    label[63] = '\0';
    snprintf(buf, sizeof(buf), "<a@%s.org>", label);
    expect_status(buf, 0, SMTP_ADDR_OK);
    snprintf(buf, sizeof(buf), "<a@%sd.org>", label); /* a 64-octet label */
    expect_status(buf, 0, SMTP_ADDR_SYNTAX);
    snprintf(buf, sizeof(buf), "<a@%s.%s.%s.%s.org>", label, label, label, label);
    expect_status(buf, 0, SMTP_ADDR_TOO_LONG);
    /* A long route makes the path too long even when the mailbox is short. */
    snprintf(buf, sizeof(buf), "<@%s.%s.%s.%s:a@x.org>", label, label, label, label);
    expect_status(buf, 0, SMTP_ADDR_TOO_LONG);
}

static void test_ipv4(void **state)
{
    static const char *const good[] = {"0.0.0.0", "255.255.255.255", "192.0.2.1", "010.1.1.1"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(smtp_ipv4_valid(good[i], strlen(good[i])));
    static const char *const bad[] = {"",         "1.2.3",   "1.2.3.4.5",  "256.1.1.1", "1..2.3",
                                      "1.2.3.4.", "a.b.c.d", "1.2.3.0001", " 1.2.3.4",  "1.2.3.-4"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (smtp_ipv4_valid(bad[i], strlen(bad[i])))
            fail_msg("ipv4 %s accepted", bad[i]);
}

static void test_ipv6(void **state)
{
    static const char *const good[] = {
        "1:2:3:4:5:6:7:8",
        "2001:db8::1",
        "::1",
        "::",
        "1::",
        "fe80::abcd:1",
        "1:2:3:4:5:6::",
        "::2:3:4:5:6:7",
        "::ffff:1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1::1.2.3.4",
        "ABCD:ef01::",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!smtp_ipv6_valid(good[i], strlen(good[i])))
            fail_msg("ipv6 %s refused", good[i]);
    static const char *const bad[] = {
        "",
        "1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        ":1::",
        "1:",
        "12345::",
        "g::1",
        "1:2:3:4:5:6:7::",
        "::1.2.3",
        "1.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "1:::2",
        "::2:3:4:5:6:7:8",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (smtp_ipv6_valid(bad[i], strlen(bad[i])))
            fail_msg("ipv6 %s accepted", bad[i]);
}

static void test_literal_and_domain(void **state)
{
    assert_int_equal(smtp_addr_literal_span("[1.2.3.4]>"), 9);
    assert_int_equal(smtp_addr_literal_span("[IPv6:::1]"), 10);
    assert_int_equal(smtp_addr_literal_span("[x:1]"), 0);
    assert_int_equal(smtp_addr_literal_span("1.2.3.4"), 0);
    assert_int_equal(smtp_addr_literal_span("[1.2.3.4"), 0);
    assert_int_equal(smtp_domain_span("example.org>", false), 11);
    assert_int_equal(smtp_domain_span("a.b-c.d ", false), 7);
    assert_int_equal(smtp_domain_span("-a.org", false), 0);
    assert_int_equal(smtp_domain_span("a.-org", false), 0);
    assert_int_equal(smtp_domain_span("b\xc3\xbc.de", false), 1);
    assert_int_equal(smtp_domain_span("b\xc3\xbc.de", true), 6);
}

static void test_utf8_len(void **state)
{
    assert_int_equal(smtp_utf8_len((const unsigned char *)"a", 1), 1);
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xc3\xa9", 2), 2);
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xc3\xa9", 1), 0);
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xc1\xbf", 2), 0);     /* overlong */
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xe0\x9f\xbf", 3), 0); /* overlong */
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xed\xa0\x80", 3), 0); /* surrogate */
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0); /* > 10FFFF */
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\x80", 1), 0);
    assert_int_equal(smtp_utf8_len((const unsigned char *)"\xe2\x28\xa1", 3), 0);
    assert_int_equal(smtp_utf8_len((const unsigned char *)"", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_basic),
        cmocka_unit_test(test_path_null_and_postmaster),
        cmocka_unit_test(test_path_route),
        cmocka_unit_test(test_path_relay_chars),
        cmocka_unit_test(test_path_utf8),
        cmocka_unit_test(test_path_lengths),
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_literal_and_domain),
        cmocka_unit_test(test_utf8_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
