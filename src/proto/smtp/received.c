/* received — Return-Path and Received (RFC 5321 4.4, RFC 5322 3.6.7).
 *
 *   Received: from <helo> ([<ip>])
 *   	by <by_host> (correio) with <protocol> id <id>
 *   	(using <tls_version> with cipher <tls_cipher>)
 *   	for <rcpt>; <date>
 *
 * Lines are folded with CRLF + TAB. The TLS comment is left out without
 * TLS, "for" when there is no single recipient; the date then ends the
 * last line. Words taken from the client (HELO, recipient) are cleaned so
 * that they cannot break the field or its structure.
 */
#include "proto/smtp/received.h"

#include <stdio.h>
#include <string.h>

static const char *const received_days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const received_months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void smtp_date_format(char *out, size_t n, time_t t)
{
    /* RFC 5322 3.3 date-time in UTC, names written here (no locale). */
    struct tm tm;
    if (n == 0)
        return;
    if (!gmtime_r(&t, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11 ||
        tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
        time_t zero = 0;
        gmtime_r(&zero, &tm);
    }
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d +0000", received_days[tm.tm_wday], tm.tm_mday,
             received_months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Append s with every octet that is not visible ASCII, or that would end
 * the word or open a comment, quoted string or address ("()<>;\"\\" and
 * space), replaced by '?'. NULL or "" gives `dflt`. */
static int received_put_word(struct buf *out, const char *s, const char *dflt)
{
    if (!s || !*s)
        return buf_puts(out, dflt);
    size_t n = strlen(s);
    if (buf_reserve(out, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>;\"\\", c))
            c = '?';
        buf_append(out, &c, 1);
    }
    return 0;
}

/* Like received_put_word for a mailbox: only CTLs and "<>" go (the
 * address was checked by the session; UTF-8 stays for RFC 6532). */
static int received_put_mailbox(struct buf *out, const char *s)
{
    size_t n = strlen(s);
    if (buf_reserve(out, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
            c = '?';
        buf_append(out, &c, 1);
    }
    return 0;
}

int smtp_return_path_format(struct buf *out, const char *mail_from)
{
    size_t mark = buf_size(out);
    if (buf_puts(out, "Return-Path: <") < 0 ||
        received_put_mailbox(out, mail_from ? mail_from : "") < 0 || buf_puts(out, ">\r\n") < 0) {
        out->len = out->off + mark; /* storage may have been compacted: keep the unread size */
        return -1;
    }
    return 0;
}

static int received_put_from(struct buf *out, const struct smtp_received_info *info)
{
    const char *ip = info->client_ip ? info->client_ip : "";
    if (buf_puts(out, "Received: from ") < 0 || received_put_word(out, info->helo, "unknown") < 0)
        return -1;
    /* RFC 5321 4.1.3: an IPv6 address literal carries the "IPv6:" tag. */
    if (buf_puts(out, strchr(ip, ':') ? " ([IPv6:" : " ([") < 0 ||
        received_put_word(out, ip, "unknown") < 0 || buf_puts(out, "])") < 0)
        return -1;
    return 0;
}

int smtp_received_format(struct buf *out, const struct smtp_received_info *info)
{
    size_t mark = buf_size(out);
    char date[64];
    smtp_date_format(date, sizeof(date), info->when);
    int r = received_put_from(out, info);
    if (r == 0)
        r = buf_printf(out, "\r\n\tby %s (correio) with %s id %s",
                       info->by_host ? info->by_host : "localhost",
                       info->protocol ? info->protocol : "ESMTP", info->id ? info->id : "unknown");
    if (r == 0 && info->tls_version)
        r = buf_printf(out, "\r\n\t(using %s with cipher %s)", info->tls_version,
                       info->tls_cipher ? info->tls_cipher : "unknown");
    if (r == 0 && info->for_rcpt) {
        r = buf_puts(out, "\r\n\tfor <");
        if (r == 0)
            r = received_put_mailbox(out, info->for_rcpt);
        if (r == 0)
            r = buf_puts(out, ">");
    }
    if (r == 0)
        r = buf_printf(out, "; %s\r\n", date);
    if (r < 0) {
        out->len = out->off + mark;
        return -1;
    }
    return 0;
}
