/* Unit tests of the trace header fields (src/proto/smtp/received.c). */
#include "testutil.h"

#include <time.h>

#include "lib/buf.h"
#include "proto/smtp/received.h"

#define T_2026_11_22_10_00_00 ((time_t)1795341600)

static struct smtp_received_info base_info(void)
{
    struct smtp_received_info info = {
        .helo = "client.example.net",
        .client_ip = "192.0.2.7",
        .by_host = "mx.example.org",
        .protocol = "ESMTP",
        .id = "s1.1",
        .for_rcpt = "bob@example.org",
        .when = T_2026_11_22_10_00_00,
    };
    return info;
}

static void expect_received(const struct smtp_received_info *info, const char *want)
{
    struct buf b = BUF_INIT;
    assert_int_equal(smtp_received_format(&b, info), 0);
    assert_string_equal(buf_cstr(&b), want);
    buf_free(&b);
}

static void test_date(void **state)
{
    char d[64];
    smtp_date_format(d, sizeof(d), T_2026_11_22_10_00_00);
    assert_string_equal(d, "Sun, 22 Nov 2026 10:00:00 +0000");
    smtp_date_format(d, sizeof(d), 0);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 +0000");
    smtp_date_format(d, sizeof(d), (time_t)951868799);
    assert_string_equal(d, "Tue, 29 Feb 2000 23:59:59 +0000");
    smtp_date_format(d, sizeof(d), (time_t)1704423845);
    assert_string_equal(d, "Fri, 05 Jan 2024 03:04:05 +0000");
    /* Truncated to the buffer, always terminated. */
    smtp_date_format(d, 4, T_2026_11_22_10_00_00);
    assert_string_equal(d, "Sun");
}

static void test_received_plain(void **state)
{
    struct smtp_received_info info = base_info();
    expect_received(&info, "Received: from client.example.net ([192.0.2.7])\r\n"
                           "\tby mx.example.org (correio) with ESMTP id s1.1\r\n"
                           "\tfor <bob@example.org>; Sun, 22 Nov 2026 10:00:00 +0000\r\n");
    info.for_rcpt = NULL;
    expect_received(&info, "Received: from client.example.net ([192.0.2.7])\r\n"
                           "\tby mx.example.org (correio) with ESMTP id s1.1; "
                           "Sun, 22 Nov 2026 10:00:00 +0000\r\n");
}

static void test_received_tls_ipv6(void **state)
{
    struct smtp_received_info info = base_info();
    info.client_ip = "2001:db8::7";
    info.protocol = "ESMTPS";
    info.tls_version = "TLSv1.3";
    info.tls_cipher = "TLS_AES_256_GCM_SHA384";
    expect_received(&info, "Received: from client.example.net ([IPv6:2001:db8::7])\r\n"
                           "\tby mx.example.org (correio) with ESMTPS id s1.1\r\n"
                           "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
                           "\tfor <bob@example.org>; Sun, 22 Nov 2026 10:00:00 +0000\r\n");
    info.for_rcpt = NULL;
    expect_received(&info, "Received: from client.example.net ([IPv6:2001:db8::7])\r\n"
                           "\tby mx.example.org (correio) with ESMTPS id s1.1\r\n"
                           "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384); "
                           "Sun, 22 Nov 2026 10:00:00 +0000\r\n");
}

static void test_received_sanitized(void **state)
{
    struct smtp_received_info info = base_info();
    info.helo = "evil\r\nX-Injected: yes (a;b) <c> \"q\"\\\x7f\xc3\xa9";
    info.for_rcpt = "bob\r\n@example.org>";
    expect_received(&info,
                    "Received: from evil??X-Injected:?yes??a?b???c???q????? ([192.0.2.7])\r\n"
                    "\tby mx.example.org (correio) with ESMTP id s1.1\r\n"
                    "\tfor <bob??@example.org?>; Sun, 22 Nov 2026 10:00:00 +0000\r\n");
    info.helo = NULL;
    info.for_rcpt = "\"j doe\"@example.org";
    expect_received(&info, "Received: from unknown ([192.0.2.7])\r\n"
                           "\tby mx.example.org (correio) with ESMTP id s1.1\r\n"
                           "\tfor <\"j doe\"@example.org>; Sun, 22 Nov 2026 10:00:00 +0000\r\n");
    info.helo = "[192.0.2.7]";
    info.for_rcpt = NULL;
    expect_received(&info, "Received: from [192.0.2.7] ([192.0.2.7])\r\n"
                           "\tby mx.example.org (correio) with ESMTP id s1.1; "
                           "Sun, 22 Nov 2026 10:00:00 +0000\r\n");
}

static void test_return_path(void **state)
{
    struct buf b = BUF_INIT;
    assert_int_equal(smtp_return_path_format(&b, "alice@example.net"), 0);
    assert_int_equal(smtp_return_path_format(&b, ""), 0);
    assert_int_equal(smtp_return_path_format(&b, NULL), 0);
    assert_string_equal(buf_cstr(&b), "Return-Path: <alice@example.net>\r\n"
                                      "Return-Path: <>\r\n"
                                      "Return-Path: <>\r\n");
    buf_free(&b);
}

static void test_appends_after_consumed_data(void **state)
{
    /* The functions append; unread data in front stays as it is. */
    struct buf b = BUF_INIT;
    assert_int_equal(buf_puts(&b, "xxHEAD\r\n"), 0);
    buf_consume(&b, 2);
    assert_int_equal(smtp_return_path_format(&b, "a@b.example"), 0);
    struct smtp_received_info info = base_info();
    assert_int_equal(smtp_received_format(&b, &info), 0);
    const char *s = buf_cstr(&b);
    assert_true(strncmp(s, "HEAD\r\nReturn-Path: <a@b.example>\r\nReceived: from ", 49) == 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_received_plain),
        cmocka_unit_test(test_received_tls_ipv6),
        cmocka_unit_test(test_received_sanitized),
        cmocka_unit_test(test_return_path),
        cmocka_unit_test(test_appends_after_consumed_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
