/* lib/buf: growth, consumption, line finding, printf. */
#include "testutil.h"

#include "lib/buf.h"

static void test_buf_append_consume(void **state)
{
    struct buf b = BUF_INIT;
    assert_int_equal(buf_size(&b), 0);
    assert_string_equal((const char *)buf_ptr(&b), "");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_append(&b, "abcdefghij", 10), 0);
    assert_int_equal(buf_size(&b), 10000);
    buf_consume(&b, 9995);
    assert_int_equal(buf_size(&b), 5);
    assert_memory_equal(buf_ptr(&b), "fghij", 5);
    /* Reserving reuses the consumed front instead of growing. */
    size_t cap = b.cap;
    assert_int_equal(buf_reserve(&b, cap - 10), 0);
    assert_int_equal(b.cap, cap);
    assert_memory_equal(buf_ptr(&b), "fghij", 5);
    buf_consume(&b, 100); /* more than there is: empties */
    assert_int_equal(buf_size(&b), 0);
    buf_free(&b);
    assert_null(b.data);
}

static void test_buf_lines(void **state)
{
    struct buf b = BUF_INIT;
    assert_int_equal(buf_line_len(&b), 0);
    buf_puts(&b, "EHLO x\r\nMAIL");
    assert_int_equal(buf_line_len(&b), 8);
    buf_consume(&b, 8);
    assert_int_equal(buf_line_len(&b), 0); /* "MAIL" has no end yet */
    buf_puts(&b, " FROM:<>\n");
    assert_int_equal(buf_line_len(&b), 13);
    buf_free(&b);
}

static void test_buf_printf_cstr(void **state)
{
    struct buf b = BUF_INIT;
    assert_int_equal(buf_printf(&b, "%d %s", 250, "ok"), 0);
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "[%s]", big), 0);
    const char *s = buf_cstr(&b);
    assert_non_null(s);
    assert_int_equal(strlen(s), 6 + 3001);
    assert_int_equal(buf_size(&b), 6 + 3001);
    assert_memory_equal(s, "250 ok[x", 8);
    buf_reset(&b);
    assert_int_equal(buf_size(&b), 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_consume),
        cmocka_unit_test(test_buf_lines),
        cmocka_unit_test(test_buf_printf_cstr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
