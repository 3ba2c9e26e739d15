/* Unit tests for proto/imap/imap_seqset: parsing, "*", resolving, formatting. */
#include "testutil.h"

#include "lib/buf.h"
#include "proto/imap/imap_seqset.h"

#include <stdbool.h>

/* Parse in, format it back: must give expect. */
static void check_fmt(const char *in, const char *expect)
{
    struct imap_seqset set;
    if (imap_seqset_parse(in, &set) != 0)
        fail_msg("%s did not parse", in);
    struct buf b = BUF_INIT;
    assert_int_equal(imap_seqset_format(&b, &set), 0);
    assert_string_equal(buf_cstr(&b), expect);
    buf_free(&b);
    imap_seqset_free(&set);
}

/* Parse in, resolve "*" as star, format: must give expect. */
static void check_resolved(const char *in, uint32_t star, const char *expect)
{
    struct imap_seqset set, r;
    assert_int_equal(imap_seqset_parse(in, &set), 0);
    assert_int_equal(imap_seqset_resolve(&set, star, &r), 0);
    assert_int_equal(r.nstar, 0);
    struct buf b = BUF_INIT;
    assert_int_equal(imap_seqset_format(&b, &r), 0);
    assert_string_equal(buf_cstr(&b), expect);
    buf_free(&b);
    imap_seqset_free(&r);
    imap_seqset_free(&set);
}

static void check_bad(const char *in)
{
    struct imap_seqset set;
    if (imap_seqset_parse(in, &set) != -1)
        fail_msg("%s parsed", in);
    assert_null(set.ranges);
    assert_null(set.star_lo);
}

static void test_parse(void **state)
{
    (void)state;
    check_fmt("1", "1");
    check_fmt("1:5", "1:5");
    check_fmt("5:1", "1:5");
    check_fmt("*", "*");
    check_fmt("*:*", "*");
    check_fmt("3:*", "3:*");
    check_fmt("*:3", "3:*");
    check_fmt("1,3:5,7", "1,3:5,7");
    check_fmt("7,5:3,1", "1,3:5,7");
    check_fmt("1,2,3,5,6", "1:3,5:6");
    check_fmt("1:10,5:20,2", "1:20");
    check_fmt("4294967295", "4294967295");
    check_fmt("1:4294967295,7", "1:4294967295");
    check_fmt("4294967294,4294967295,1", "1,4294967294:4294967295");
    check_fmt("2:*,*,1:*,2:*", "*,1:*,2:*");
    check_fmt("41,43:211,214:541", "41,43:211,214:541");
    check_fmt("$", "$");

    struct imap_seqset set;
    assert_int_equal(imap_seqset_parse("$", &set), 0);
    assert_true(set.saved);
    assert_int_equal(set.nranges, 0);
    assert_false(imap_seqset_has_star(&set));
    struct imap_seqset r;
    assert_int_equal(imap_seqset_resolve(&set, 10, &r), -1);
    assert_false(imap_seqset_contains(&set, 1, 10));
    imap_seqset_free(&set);

    check_bad("");
    check_bad("0");
    check_bad("1:0");
    check_bad("01");
    check_bad("4294967296");
    check_bad("99999999999999999999");
    check_bad("1,");
    check_bad(",1");
    check_bad("1,,2");
    check_bad("1:");
    check_bad(":1");
    check_bad("1:2:3");
    check_bad("-1");
    check_bad("+1");
    check_bad("1 ");
    check_bad(" 1");
    check_bad("1 2");
    check_bad("**");
    check_bad("$,1");
    check_bad("1,$");
    check_bad("a");
}

static void test_resolve(void **state)
{
    (void)state;
    check_resolved("1:*", 5, "1:5");
    check_resolved("*", 5, "5");
    check_resolved("3:*", 2, "2:3"); /* RFC 3501 6.4.8 / 9 seq-range */
    check_resolved("*:3", 10, "3:10");
    check_resolved("1,*", 2, "1:2");
    check_resolved("10:12,*", 11, "10:12");
    check_resolved("7:9", 3, "7:9"); /* numbers above "*" stay */
    check_resolved("1:*", 0, "");    /* empty mailbox */
    check_resolved("2,*", 0, "2");
    check_resolved("*", 4294967295u, "4294967295");

    struct imap_seqset set, r;
    assert_int_equal(imap_seqset_parse("1:3,8,5:*", &set), 0);
    assert_true(imap_seqset_has_star(&set));
    assert_true(imap_seqset_contains(&set, 1, 6));
    assert_true(imap_seqset_contains(&set, 3, 6));
    assert_false(imap_seqset_contains(&set, 4, 6));
    assert_true(imap_seqset_contains(&set, 5, 6));
    assert_true(imap_seqset_contains(&set, 6, 6));
    assert_false(imap_seqset_contains(&set, 7, 6));
    assert_true(imap_seqset_contains(&set, 8, 6));
    assert_true(imap_seqset_contains(&set, 4, 4)); /* 5:* with * = 4 is 4:5 */
    assert_false(imap_seqset_contains(&set, 0, 6));
    assert_int_equal(imap_seqset_max(&set, 6), 8);
    assert_int_equal(imap_seqset_max(&set, 20), 20);
    assert_int_equal(imap_seqset_max(&set, 0), 8);

    assert_int_equal(imap_seqset_resolve(&set, 20, &r), 0);
    assert_int_equal(r.nranges, 2);
    assert_int_equal(r.ranges[0].lo, 1);
    assert_int_equal(r.ranges[0].hi, 3);
    assert_int_equal(r.ranges[1].lo, 5);
    assert_int_equal(r.ranges[1].hi, 20);
    assert_int_equal(imap_seqset_count(&r), 19);
    assert_true(imap_seqset_contains(&r, 20, 0));
    assert_false(imap_seqset_contains(&r, 21, 0));
    imap_seqset_free(&r);
    imap_seqset_free(&set);

    assert_int_equal(imap_seqset_parse("1:4294967295", &set), 0);
    assert_int_equal(imap_seqset_count(&set), 4294967295ull);
    assert_true(imap_seqset_contains(&set, 4294967295u, 1));
    imap_seqset_free(&set);
    imap_seqset_free(&set); /* twice is fine */

    /* many items: sorted and merged, binary search agrees with a scan */
    struct buf b = BUF_INIT;
    for (int i = 1000; i >= 1; i -= 3)
        buf_printf(&b, "%s%d", i == 1000 ? "" : ",", i);
    assert_int_equal(imap_seqset_parse(buf_cstr(&b), &set), 0);
    assert_int_equal(set.nranges, 334);
    for (uint32_t i = 1; i <= 1002; i++)
        assert_int_equal(imap_seqset_contains(&set, i, 0), i <= 1000 && i % 3 == 1);
    imap_seqset_free(&set);
    buf_free(&b);
}

static void check_uids(const uint32_t *uids, size_t n, const char *expect)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "X ");
    buf_consume(&b, 1); /* formatting must respect the read offset */
    assert_int_equal(imap_seqset_format_uids(&b, uids, n), 0);
    assert_string_equal(buf_cstr(&b), expect);
    buf_free(&b);
}

static void test_format_uids(void **state)
{
    (void)state;
    check_uids(NULL, 0, " ");
    check_uids((const uint32_t[]){7}, 1, " 7");
    check_uids((const uint32_t[]){1, 2, 3, 5, 7, 8}, 6, " 1:3,5,7:8");
    check_uids((const uint32_t[]){304, 319, 320, 321}, 4, " 304,319:321");
    /* order kept (COPYUID pairs) */
    check_uids((const uint32_t[]){5, 6, 1, 2}, 4, " 5:6,1:2");
    check_uids((const uint32_t[]){3, 3}, 2, " 3,3");
    check_uids((const uint32_t[]){4294967294u, 4294967295u}, 2, " 4294967294:4294967295");
    check_uids((const uint32_t[]){4294967295u, 1}, 2, " 4294967295,1");

    /* what format_uids writes parses back to the same numbers */
    uint32_t uids[200];
    size_t n = 0;
    for (uint32_t i = 1; n < 200; i += (i % 7 == 0) ? 5 : 1)
        uids[n++] = i;
    struct buf b = BUF_INIT;
    assert_int_equal(imap_seqset_format_uids(&b, uids, n), 0);
    struct imap_seqset set;
    assert_int_equal(imap_seqset_parse(buf_cstr(&b), &set), 0);
    assert_int_equal(imap_seqset_count(&set), 200);
    for (size_t i = 0; i < n; i++)
        assert_true(imap_seqset_contains(&set, uids[i], 0));
    imap_seqset_free(&set);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_format_uids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
