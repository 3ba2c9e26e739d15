/* Unit tests for proto/imap/imap_utf7: modified UTF-7 <-> UTF-8 (RFC 3501 5.1.3). */
#include "testutil.h"

#include "lib/buf.h"
#include "proto/imap/imap_utf7.h"

/* utf7 <-> utf8 both ways. */
static void check_pair(const char *utf7, const char *utf8)
{
    struct buf b = BUF_INIT;
    assert_int_equal(imap_utf7_to_utf8(utf7, &b), 0);
    assert_string_equal(buf_cstr(&b), utf8);
    buf_reset(&b);
    assert_int_equal(imap_utf8_to_utf7(utf8, &b), 0);
    assert_string_equal(buf_cstr(&b), utf7);
    buf_free(&b);
}

static void check_bad7(const char *utf7)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "keep");
    if (imap_utf7_to_utf8(utf7, &b) != -1)
        fail_msg("\"%s\" decoded", utf7);
    assert_string_equal(buf_cstr(&b), "keep");
    buf_free(&b);
}

static void check_bad8(const char *utf8)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "keep");
    if (imap_utf8_to_utf7(utf8, &b) != -1)
        fail_msg("\"%s\" encoded", utf8);
    assert_string_equal(buf_cstr(&b), "keep");
    buf_free(&b);
}

static void test_rfc_examples(void **state)
{
    (void)state;
    /* RFC 3501 5.1.3 */
    check_pair("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
                                                  "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
    check_pair("", "");
    check_pair("INBOX", "INBOX");
    check_pair("&-", "&");
    check_pair("Tom &- Jerry", "Tom & Jerry");
    check_pair("&-&-", "&&");
    check_pair("Entw&APw-rfe", "Entw\xc3\xbc"
                               "rfe");
    check_pair("&AOQA9gD8-", "\xc3\xa4\xc3\xb6\xc3\xbc");
    check_pair("a&AOk-b&-c", "a\xc3\xa9"
                             "b&c");
    /* controls are encoded too */
    check_pair("&AAk-", "\t");
    check_pair("&AH8-", "\x7f");
    /* outside the BMP: a surrogate pair (U+1F600) */
    check_pair("&2D3eAA-", "\xf0\x9f\x98\x80");
    check_pair("x&2D3eAA-y&2D3eANg93gA-", "x\xf0\x9f\x98\x80y\xf0\x9f\x98\x80\xf0\x9f\x98\x80");
    check_pair("&,,8-", "\xef\xbf\xbf"); /* U+FFFF */
    check_pair("[Gmail]/&BBoEPgRABDcEOAQ9BDA-", "[Gmail]/\xd0\x9a\xd0\xbe\xd1\x80\xd0\xb7\xd0\xb8"
                                                "\xd0\xbd\xd0\xb0");

    /* decoding appends */
    struct buf b = BUF_INIT;
    buf_puts(&b, "x:");
    assert_int_equal(imap_utf7_to_utf8("&AOk-", &b), 0);
    assert_int_equal(imap_utf8_to_utf7("\xc3\xa9", &b), 0);
    assert_string_equal(buf_cstr(&b), "x:\xc3\xa9&AOk-");
    buf_free(&b);
}

static void test_bad_utf7(void **state)
{
    (void)state;
    check_bad7("&");           /* no "-" */
    check_bad7("&AOk");        /* no "-" */
    check_bad7("a&U,BTFw");    /* no "-" */
    check_bad7("&A-");         /* 6 bits: no UTF-16 unit */
    check_bad7("&AO-");        /* 12 bits */
    check_bad7("&AOkA-");      /* 30 bits: a half unit */
    check_bad7("&AOl-");       /* non-zero padding bits */
    check_bad7("&AOkAAA-");    /* 48 bits: a whole extra NUL unit */
    check_bad7("&AO!-");       /* bad base64 */
    check_bad7("&AO/-");       /* "/" is not modified base64 */
    check_bad7("&AO=-");       /* no padding */
    check_bad7("&AGE-");       /* "a" must be plain */
    check_bad7("&ACY-");       /* "&" must be "&-" */
    check_bad7("&ACA-");       /* SP must be plain */
    check_bad7("&AAA-");       /* U+0000 */
    check_bad7("&2D0-");       /* lone high surrogate */
    check_bad7("&2D3YPQ-");    /* high then high */
    check_bad7("&2D0AQQ-");    /* high then non-surrogate */
    check_bad7("&3gA-");       /* lone low surrogate */
    check_bad7("&2D0-&3gA-");  /* a pair split across runs */
    check_bad7("a\tb");        /* control characters must be encoded */
    check_bad7("caf\xc3\xa9"); /* 8-bit */
    check_bad7("\x7f");
}

static void test_bad_utf8(void **state)
{
    (void)state;
    check_bad8("\x80");             /* continuation byte alone */
    check_bad8("\xc3");             /* truncated */
    check_bad8("\xe6\x97");         /* truncated */
    check_bad8("\xc3x");            /* truncated */
    check_bad8("\xc0\xaf");         /* overlong "/" */
    check_bad8("\xc1\xbf");         /* overlong */
    check_bad8("\xe0\x80\xaf");     /* overlong */
    check_bad8("\xf0\x80\x80\xaf"); /* overlong */
    check_bad8("\xed\xa0\x80");     /* UTF-16 surrogate U+D800 */
    check_bad8("\xed\xbf\xbf");     /* U+DFFF */
    check_bad8("\xf4\x90\x80\x80"); /* U+110000 */
    check_bad8("\xf5\x80\x80\x80");
    check_bad8("\xff");
    check_bad8("ok\xfe");
    /* the limits that are valid */
    check_pair("&AIA-", "\xc2\x80");
    check_pair("&B,8-", "\xdf\xbf");
    check_pair("&CAA-", "\xe0\xa0\x80");
    check_pair("&1,8-", "\xed\x9f\xbf");        /* U+D7FF */
    check_pair("&4AA-", "\xee\x80\x80");        /* U+E000 */
    check_pair("&2,,f,w-", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
}

/* Every code point survives utf8 -> utf7 -> utf8, alone and mixed with ASCII. */
static void test_roundtrip_all(void **state)
{
    (void)state;
    struct buf u8 = BUF_INIT, u7 = BUF_INIT, back = BUF_INIT;
    for (uint32_t cp = 1; cp <= 0x10ffff; cp += (cp < 0x3000 ? 1 : 97)) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        buf_reset(&u8);
        buf_reset(&u7);
        buf_reset(&back);
        char enc[5] = {0};
        if (cp < 0x80) {
            enc[0] = (char)cp;
        } else if (cp < 0x800) {
            enc[0] = (char)(0xc0 | (cp >> 6));
            enc[1] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            enc[0] = (char)(0xe0 | (cp >> 12));
            enc[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
            enc[2] = (char)(0x80 | (cp & 0x3f));
        } else {
            enc[0] = (char)(0xf0 | (cp >> 18));
            enc[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
            enc[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
            enc[3] = (char)(0x80 | (cp & 0x3f));
        }
        buf_printf(&u8, "a%sb%s%s&", enc, enc, enc);
        assert_int_equal(imap_utf8_to_utf7(buf_cstr(&u8), &u7), 0);
        const char *s7 = buf_cstr(&u7);
        for (const char *c = s7; *c; c++)
            assert_true(*c >= 0x20 && *c <= 0x7e);
        assert_int_equal(imap_utf7_to_utf8(s7, &back), 0);
        assert_string_equal(buf_cstr(&back), buf_cstr(&u8));
    }
    buf_free(&u8);
    buf_free(&u7);
    buf_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_bad_utf7),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_roundtrip_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
