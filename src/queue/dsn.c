/* dsn — delivery status notifications and the retry schedule (see dsn.h). */
#include "queue/dsn.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/err.h"
#include "lib/base64.h"

#define DSN_LINE_SOFT 78            /* RFC 5322 2.1.1: lines SHOULD be at most 78 octets */
#define DSN_LINE_HARD 998           /* RFC 5322 2.1.1: and MUST be at most 998 */
#define DSN_TEXT_WIDTH 76           /* the human-readable part */
#define DSN_TEXT_INDENT 4           /* continuation lines of a recipient's paragraph */
#define DSN_EW_OCTETS 45            /* per RFC 2047 word: 60 base64 characters, 72 in all (<= 75) */
#define DSN_HEADERS_MAX (64 * 1024) /* of the original's header block returned */
#define DSN_BOUNDARY_MAX 70         /* RFC 2046 5.1.1 */

static const char utf8_replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* --- small text helpers ------------------------------------------------------------ */

static bool is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ascii(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return false;
    return true;
}

/* Length (1..4) of the well-formed UTF-8 sequence at s, its code point in
 * *cp_r; 0 when s does not start one (overlong, surrogate, truncated...). */
static size_t utf8_seq(const uint8_t *s, size_t n, uint32_t *cp_r)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) {
        *cp_r = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *cp_r = cp;
    return len;
}

/* Printable ASCII, no space, at least one octet (host names, ids). */
static bool is_token(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7F)
            return false;
    return true;
}

/* An address as given: "<a@b>" loses its brackets. */
static void addr_strip(const char *s, const uint8_t **p_r, size_t *n_r)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s++;
        n -= 2;
    }
    *p_r = (const uint8_t *)s;
    *n_r = n;
}

/* An address we can write: not empty, valid UTF-8, no control character. */
static bool addr_ok(const uint8_t *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(s + i, n - i, &cp);
        if (k == 0 || cp < 0x20 || cp == 0x7F)
            return false;
        i += k;
    }
    return true;
}

/* RFC 2046 5.1.1: 1..70 of bchars, not ending in a space. */
static bool boundary_ok(const char *b)
{
    static const char bchars[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ";
    size_t n = b ? strlen(b) : 0;
    return n >= 1 && n <= DSN_BOUNDARY_MAX && strspn(b, bchars) == n && b[n - 1] != ' ';
}

/* RFC 3463 2: class "." subject "." detail, class 2, 4 or 5, 1..3 digits each. */
static bool status_ok(const char *s)
{
    if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    s += 2;
    for (int part = 0; part < 2; part++) {
        int k = 0;
        while (k < 4 && is_digit(s[k]))
            k++;
        if (k < 1 || k > 3)
            return false;
        s += k;
        if (part == 0 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static const char *rcpt_status(const struct dsn_rcpt *r)
{
    if (status_ok(r->status))
        return r->status;
    return r->action == DSN_FAILED ? "5.0.0" : "4.0.0";
}

/* RFC 5322 3.3 date-time in UTC, e.g. "Sun, 22 Nov 2026 05:48:50 +0000".
 * false when t is out of range (years 0..9999). */
static bool date_fmt(time_t t, char out[64])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return false;
    snprintf(out, 64, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return true;
}

/* Append s as one line of valid UTF-8: every run of white space and control
 * characters (CR and LF among them) becomes one space, white space at both
 * ends is dropped, an invalid sequence becomes U+FFFD. */
static int put_clean(struct buf *out, const char *str)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t n = strlen(str);
    bool any = false, space = false;
    int rc = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(s + i, n - i, &cp);
        if (k == 1 && (cp <= 0x20 || cp == 0x7F)) {
            space = any;
            i++;
            continue;
        }
        if (space)
            rc |= buf_append(out, " ", 1);
        space = false;
        any = true;
        if (k == 0) {
            rc |= buf_puts(out, utf8_replacement);
            i++;
        } else {
            rc |= buf_append(out, s + i, k);
            i += k;
        }
    }
    return rc;
}

/* --- header lines ------------------------------------------------------------------ */

/* Write one logical line s (no CR or LF in it) followed by CRLF, folded
 * (RFC 5322 2.2.3: CRLF inserted before white space) so that each line is
 * at most soft octets where white space allows, and never more than hard.
 * A run longer than hard without white space is split (not at a UTF-8
 * character boundary's inside), the next line starting with an added
 * space. No line is made of white space only. */
static int put_folded(struct buf *out, const uint8_t *s, size_t n, size_t soft, size_t hard)
{
    int rc = 0;
    size_t lead = 0; /* 1 when a space was added at the start of this line */
    while (n + lead > soft) {
        size_t first = 0, cut = 0;
        while (first < n && is_wsp(s[first]))
            first++;
        for (size_t i = soft - lead; i > first && !cut; i--)
            if (is_wsp(s[i]))
                cut = i;
        for (size_t i = soft - lead + 1; !cut && i <= hard - lead && i < n; i++)
            if (i > first && is_wsp(s[i]))
                cut = i;
        if (!cut) {
            if (n + lead <= hard)
                break;
            cut = hard - lead;
            while (cut > 0 && (s[cut] & 0xC0) == 0x80)
                cut--;
            if (cut == 0)
                cut = hard - lead;
        }
        rc |= buf_append(out, " ", lead);
        rc |= buf_append(out, s, cut);
        rc |= buf_append(out, "\r\n", 2);
        lead = is_wsp(s[cut]) ? 0 : 1;
        s += cut;
        n -= cut;
    }
    rc |= buf_append(out, " ", lead);
    rc |= buf_append(out, s, n);
    rc |= buf_append(out, "\r\n", 2);
    return rc;
}

/* A header field "Name: value" from a format, folded. */
static int put_fieldf(struct buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put_fieldf(struct buf *out, const char *fmt, ...)
{
    struct buf t = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(&t, fmt, ap);
    va_end(ap);
    if (rc == 0)
        rc = put_folded(out, buf_ptr(&t), buf_size(&t), DSN_LINE_SOFT, DSN_LINE_HARD);
    buf_free(&t);
    return rc;
}

/* RFC 2047 B-encoded words for s (valid UTF-8), separated by spaces; no
 * character is split between two words (RFC 2047 5). */
static int put_encoded_words(struct buf *out, const uint8_t *s, size_t n)
{
    int rc = 0;
    for (bool first = true; n > 0; first = false) {
        size_t k = n < DSN_EW_OCTETS ? n : DSN_EW_OCTETS;
        while (k < n && k > 1 && (s[k] & 0xC0) == 0x80)
            k--;
        rc |= buf_puts(out, first ? "=?UTF-8?B?" : " =?UTF-8?B?");
        rc |= base64_encode(out, s, k);
        rc |= buf_puts(out, "?=");
        s += k;
        n -= k;
    }
    return rc;
}

/* prefix (ASCII) then text (one line of valid UTF-8): as it is when ASCII,
 * else as RFC 2047 encoded words; folded. */
static int put_field_text(struct buf *out, const char *prefix, const uint8_t *text, size_t n)
{
    struct buf t = BUF_INIT;
    int rc = buf_puts(&t, prefix);
    if (is_ascii(text, n))
        rc |= buf_append(&t, text, n);
    else
        rc |= put_encoded_words(&t, text, n);
    if (rc == 0)
        rc = put_folded(out, buf_ptr(&t), buf_size(&t), DSN_LINE_SOFT, DSN_LINE_HARD);
    buf_free(&t);
    return rc;
}

/* RFC 6533 3: utf-8-addr-xtext, the ASCII form of a UTF-8 address: QCHAR
 * as is, anything else as "\x{HEX}" of its code point. */
static int put_xtext(struct buf *out, const uint8_t *s, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(s + i, n - i, &cp);
        if (k == 0) {
            cp = 0xFFFD;
            k = 1;
        }
        if (cp > 0x20 && cp < 0x7F && cp != '+' && cp != '=' && cp != '\\')
            rc |= buf_append(out, s + i, 1);
        else
            rc |= buf_printf(out, "\\x{%02X}", (unsigned)cp);
        i += k;
    }
    return rc;
}

/* "Name: rfc822; addr", or "Name: utf-8; xtext" for an address that is not ASCII. */
static int put_addr_field(struct buf *out, const char *name, const uint8_t *a, size_t n)
{
    struct buf t = BUF_INIT;
    int rc = buf_printf(&t, "%s: ", name);
    if (is_ascii(a, n)) {
        rc |= buf_puts(&t, "rfc822; ");
        rc |= buf_append(&t, a, n);
    } else {
        rc |= buf_puts(&t, "utf-8; ");
        rc |= put_xtext(&t, a, n);
    }
    if (rc == 0)
        rc = put_folded(out, buf_ptr(&t), buf_size(&t), DSN_LINE_SOFT, DSN_LINE_HARD);
    buf_free(&t);
    return rc;
}

/* --- the parts ---------------------------------------------------------------------- */

static bool params_ok(const struct dsn_params *p)
{
    if (!p || !p->rcpts || p->nrcpts == 0 || !p->sender || !is_token(p->reporting_mta) ||
        !boundary_ok(p->boundary) || !is_token(p->message_id) || strpbrk(p->message_id, "<>") ||
        (!p->original && p->original_len > 0))
        return false;
    const uint8_t *a;
    size_t n;
    addr_strip(p->sender, &a, &n);
    if (!addr_ok(a, n))
        return false;
    for (size_t i = 0; i < p->nrcpts; i++) {
        const struct dsn_rcpt *r = &p->rcpts[i];
        if ((r->action != DSN_FAILED && r->action != DSN_DELAYED) ||
            r->action != p->rcpts[0].action || !r->final_recipient)
            return false;
        addr_strip(r->final_recipient, &a, &n);
        if (!addr_ok(a, n))
            return false;
    }
    return true;
}

/* The Original-Recipient to show, or false. */
static bool rcpt_original(const struct dsn_rcpt *r, const uint8_t **a_r, size_t *n_r)
{
    if (!r->original_recipient)
        return false;
    addr_strip(r->original_recipient, a_r, n_r);
    return addr_ok(*a_r, *n_r);
}

/* RFC 3463 subject.detail codes worth a few words in the human part. */
static const char *status_text(const char *status)
{
    static const struct {
        const char *code, *text;
    } texts[] = {
        {"1.1", "the mailbox does not exist"},
        {"1.2", "the destination domain does not exist"},
        {"1.3", "bad destination mailbox address syntax"},
        {"2.1", "the mailbox is disabled"},
        {"2.2", "the mailbox is full"},
        {"2.3", "the message is too big for the mailbox"},
        {"3.4", "the message is too big for the destination system"},
        {"4.1", "no answer from the destination host"},
        {"4.2", "the connection was broken"},
        {"4.3", "the destination could not be looked up"},
        {"4.4", "unable to route the message"},
        {"4.6", "mail loop detected"},
        {"4.7", "the message stayed in the queue too long"},
        {"5.3", "too many recipients"},
        {"7.1", "delivery not authorized, message refused"},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (strcmp(status + 2, texts[i].code) == 0)
            return texts[i].text;
    return NULL;
}

/* Append the text of paragraph para (one line) wrapped at DSN_TEXT_WIDTH,
 * continuation lines indented, each line CRLF; a blank line before it
 * unless it is the first. para is emptied. */
static int put_para(struct buf *t, struct buf *para, size_t indent)
{
    const uint8_t *s = buf_ptr(para);
    size_t n = buf_size(para);
    int rc = buf_size(t) ? buf_append(t, "\r\n", 2) : 0;
    for (size_t pre = 0; n > 0; pre = indent) {
        size_t room = DSN_TEXT_WIDTH - pre, hard = DSN_LINE_HARD - pre, cut = 0;
        if (n <= room) {
            cut = n;
        } else {
            for (size_t i = room; i > 0 && !cut; i--)
                if (s[i] == ' ')
                    cut = i;
            for (size_t i = room + 1; !cut && i < n && i <= hard; i++)
                if (s[i] == ' ')
                    cut = i;
            if (!cut && n <= hard)
                cut = n;
            if (!cut) {
                cut = hard;
                while (cut > 1 && (s[cut] & 0xC0) == 0x80)
                    cut--;
            }
        }
        rc |= buf_printf(t, "%*s", (int)pre, "");
        rc |= buf_append(t, s, cut);
        rc |= buf_append(t, "\r\n", 2);
        s += cut;
        n -= cut;
        while (n > 0 && *s == ' ')
            s++, n--;
    }
    buf_reset(para);
    return rc;
}

/* One recipient's paragraph: "<addr>: host mx said: 550 ...". */
static int text_rcpt(struct buf *para, const struct dsn_rcpt *r)
{
    const uint8_t *a, *f;
    size_t n, fn;
    struct buf diag = BUF_INIT;
    const char *remote = is_token(r->remote_mta) ? r->remote_mta : NULL;
    addr_strip(r->final_recipient, &f, &fn);
    int rc = buf_puts(para, "<");
    rc |= buf_append(para, f, fn);
    rc |= buf_puts(para, ">");
    if (rcpt_original(r, &a, &n) &&
        (n != fn || strncasecmp((const char *)a, (const char *)f, n) != 0)) {
        rc |= buf_puts(para, " (expanded from <");
        rc |= buf_append(para, a, n);
        rc |= buf_puts(para, ">)");
    }
    rc |= buf_puts(para, ": ");
    if (r->diagnostic)
        rc |= put_clean(&diag, r->diagnostic);
    if (buf_size(&diag) > 0) {
        if (remote)
            rc |= buf_printf(para, "host %s said: ", remote);
        rc |= buf_append(para, buf_ptr(&diag), buf_size(&diag));
    } else {
        const char *st = rcpt_status(r), *why = status_text(st);
        rc |= buf_puts(para, r->action == DSN_FAILED ? "delivery failed" : "delivery delayed");
        if (remote)
            rc |= buf_printf(para, " at host %s", remote);
        rc |= buf_printf(para, " (status %s%s%s)", st, why ? ": " : "", why ? why : "");
    }
    buf_free(&diag);
    return rc;
}

/* Part 1: text/plain, for people. */
static int build_text(struct buf *t, const struct dsn_params *p)
{
    struct buf para = BUF_INIT;
    char date[64];
    time_t until = 0;
    int rc = buf_printf(&para, "This is the mail system at host %s.", p->reporting_mta);
    rc |= put_para(t, &para, 0);
    if (p->rcpts[0].action == DSN_FAILED) {
        rc |= buf_puts(&para, "I'm sorry to have to inform you that your message could not be "
                              "delivered to one or more recipients. The header of your message "
                              "is attached below.");
        rc |= put_para(t, &para, 0);
        rc |= buf_puts(&para, "For further assistance, please send mail to postmaster. If you "
                              "do so, please include this problem report.");
        rc |= put_para(t, &para, 0);
    } else {
        rc |=
            buf_puts(t, "\r\n"
                        "####################################################################\r\n"
                        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
                        "####################################################################\r\n");
        for (size_t i = 0; i < p->nrcpts; i++)
            if (p->rcpts[i].will_retry_until > until)
                until = p->rcpts[i].will_retry_until;
        rc |= buf_puts(&para, "Your message has not yet been delivered to one or more "
                              "recipients. The mail system ");
        if (until && date_fmt(until, date))
            rc |= buf_printf(&para,
                             "will keep trying until %s, and will tell you if it "
                             "gives up then.",
                             date);
        else
            rc |= buf_puts(&para, "will keep trying, and will tell you if it gives up.");
        rc |= put_para(t, &para, 0);
    }
    for (size_t i = 0; i < p->nrcpts; i++) {
        rc |= text_rcpt(&para, &p->rcpts[i]);
        rc |= put_para(t, &para, DSN_TEXT_INDENT);
    }
    buf_free(&para);
    return rc;
}

/* The per-recipient fields (RFC 3464 2.3), in the RFC's order. */
static int status_rcpt(struct buf *d, const struct dsn_rcpt *r)
{
    const uint8_t *a;
    size_t n;
    char date[64];
    int rc = 0;
    if (rcpt_original(r, &a, &n))
        rc |= put_addr_field(d, "Original-Recipient", a, n);
    addr_strip(r->final_recipient, &a, &n);
    rc |= put_addr_field(d, "Final-Recipient", a, n);
    rc |= put_fieldf(d, "Action: %s", r->action == DSN_FAILED ? "failed" : "delayed");
    rc |= put_fieldf(d, "Status: %s", rcpt_status(r));
    if (is_token(r->remote_mta))
        rc |= put_fieldf(d, "Remote-MTA: dns; %s", r->remote_mta);
    if (r->diagnostic) {
        struct buf diag = BUF_INIT;
        rc |= put_clean(&diag, r->diagnostic);
        if (buf_size(&diag) > 0)
            rc |= put_field_text(d, "Diagnostic-Code: smtp; ", buf_ptr(&diag), buf_size(&diag));
        buf_free(&diag);
    }
    if (r->last_attempt) {
        if (!date_fmt(r->last_attempt, date))
            return -1;
        rc |= put_fieldf(d, "Last-Attempt-Date: %s", date);
    }
    if (r->action == DSN_DELAYED && r->will_retry_until) {
        if (!date_fmt(r->will_retry_until, date))
            return -1;
        rc |= put_fieldf(d, "Will-Retry-Until: %s", date);
    }
    return rc;
}

/* Part 2: message/delivery-status (RFC 3464 2.1: per-message fields, then
 * one group per recipient, each after an empty line). */
static int build_status(struct buf *d, const struct dsn_params *p)
{
    char date[64];
    int rc = 0;
    if (is_token(p->envid))
        rc |= put_fieldf(d, "Original-Envelope-Id: %s", p->envid);
    rc |= put_fieldf(d, "Reporting-MTA: dns; %s", p->reporting_mta);
    if (p->arrival) {
        if (!date_fmt(p->arrival, date))
            return -1;
        rc |= put_fieldf(d, "Arrival-Date: %s", date);
    }
    if (is_token(p->queue_id))
        rc |= put_fieldf(d, "X-Queue-ID: %s", p->queue_id);
    for (size_t i = 0; i < p->nrcpts; i++) {
        rc |= buf_append(d, "\r\n", 2);
        rc |= status_rcpt(d, &p->rcpts[i]);
    }
    return rc;
}

/* Part 3: the original's header block, up to its empty line (or the whole
 * message when none), cut at a line boundary to about DSN_HEADERS_MAX;
 * lines end in CRLF, NUL and lone CR become spaces, lines over 998 octets
 * are folded. *eightbit_r tells whether an octet >= 0x80 is in it. */
static int build_headers(struct buf *h, const uint8_t *m, size_t len, bool *eightbit_r)
{
    struct buf line = BUF_INIT;
    size_t pos = 0, taken = 0;
    int rc = 0;
    *eightbit_r = false;
    while (pos < len) {
        const uint8_t *nl = memchr(m + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - m) : len, n = end - pos;
        if (n > 0 && m[end - 1] == '\r')
            n--;
        if (n == 0)
            break; /* the empty line that ends the header */
        if (taken + n + 2 > DSN_HEADERS_MAX) {
            if (taken > 0)
                break;
            n = DSN_HEADERS_MAX - 2;
        }
        buf_reset(&line);
        if (buf_append(&line, m + pos, n) < 0) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (line.data[i] == '\0' || line.data[i] == '\r')
                line.data[i] = ' ';
            else if (line.data[i] >= 0x80)
                *eightbit_r = true;
        }
        rc |= put_folded(h, line.data, n, DSN_LINE_HARD, DSN_LINE_HARD);
        taken += n + 2;
        pos = end + 1;
    }
    buf_free(&line);
    return rc;
}

/* The top-level header, the three parts and the close delimiter. */
static int assemble(struct buf *out, const struct dsn_params *p, const struct buf *text,
                    const struct buf *status, const struct buf *hdr, bool hdr8)
{
    bool failed = p->rcpts[0].action == DSN_FAILED;
    bool text8 = !is_ascii(buf_ptr(text), buf_size(text));
    const char *subject =
        failed ? "Undelivered Mail Returned to Sender" : "Delayed Mail (still being retried)";
    const uint8_t *a;
    size_t n;
    char date[64];
    if (!date_fmt(p->now, date))
        return -1;
    addr_strip(p->sender, &a, &n);
    int rc = put_fieldf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>", p->reporting_mta);
    rc |= put_fieldf(out, "To: <%.*s>", (int)n, (const char *)a);
    rc |= put_field_text(out, "Subject: ", (const uint8_t *)subject, strlen(subject));
    rc |= put_fieldf(out, "Date: %s", date);
    rc |= put_fieldf(out, "Message-ID: <%s>", p->message_id);
    rc |= buf_puts(out, "MIME-Version: 1.0\r\n"
                        "Auto-Submitted: auto-replied\r\n");
    rc |= put_fieldf(out,
                     "Content-Type: multipart/report; report-type=delivery-status; "
                     "boundary=\"%s\"",
                     p->boundary);
    if (text8 || hdr8)
        rc |= buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
    rc |= buf_puts(out, "\r\nThis is a MIME-encapsulated message.\r\n");

    rc |= buf_printf(out,
                     "\r\n--%s\r\nContent-Description: Notification\r\n"
                     "Content-Type: text/plain; charset=%s\r\n%s\r\n",
                     p->boundary, text8 ? "utf-8" : "us-ascii",
                     text8 ? "Content-Transfer-Encoding: 8bit\r\n" : "");
    rc |= buf_append(out, buf_ptr(text), buf_size(text));

    rc |= buf_printf(out,
                     "\r\n--%s\r\nContent-Description: Delivery report\r\n"
                     "Content-Type: message/delivery-status\r\n\r\n",
                     p->boundary);
    rc |= buf_append(out, buf_ptr(status), buf_size(status));

    if (buf_size(hdr) > 0) {
        rc |= buf_printf(out, "\r\n--%s\r\nContent-Description: %s Message Headers\r\n",
                         p->boundary, failed ? "Undelivered" : "Delayed");
        rc |= buf_puts(out, hdr8 ? "Content-Type: message/global-headers\r\n"
                                   "Content-Transfer-Encoding: 8bit\r\n\r\n"
                                 : "Content-Type: text/rfc822-headers\r\n\r\n");
        rc |= buf_append(out, buf_ptr(hdr), buf_size(hdr));
    }
    rc |= buf_printf(out, "\r\n--%s--\r\n", p->boundary);
    return rc;
}

int dsn_build(const struct dsn_params *p, struct buf *out)
{
    if (!out || !params_ok(p))
        return -1;
    size_t before = buf_size(out);
    struct buf text = BUF_INIT, status = BUF_INIT, hdr = BUF_INIT;
    bool hdr8 = false;
    int rc = build_text(&text, p);
    rc |= build_status(&status, p);
    rc |= build_headers(&hdr, p->original, p->original_len, &hdr8);
    if (rc == 0)
        rc = assemble(out, p, &text, &status, &hdr, hdr8);
    buf_free(&text);
    buf_free(&status);
    buf_free(&hdr);
    if (rc != 0) {
        out->len = out->off + before; /* leave out as it was */
        return -1;
    }
    return 0;
}

bool dsn_wanted(const char *mail_from)
{
    return mail_from && mail_from[0] != '\0' && strcmp(mail_from, "<>") != 0;
}

/* "Received" then optional white space then ':' (RFC 5322 3.6.7, 4.5.3). */
static bool is_received(const uint8_t *l, size_t n)
{
    static const char name[] = "received";
    size_t k = sizeof(name) - 1;
    if (n <= k || strncasecmp((const char *)l, name, k) != 0)
        return false;
    while (k < n && is_wsp(l[k]))
        k++;
    return k < n && l[k] == ':';
}

unsigned dsn_count_received(const uint8_t *msg, size_t len)
{
    unsigned count = 0;
    size_t pos = 0;
    while (msg && pos < len) {
        const uint8_t *nl = memchr(msg + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - msg) : len, n = end - pos;
        if (n > 0 && msg[end - 1] == '\r')
            n--;
        if (n == 0)
            break; /* end of the header block */
        if (is_received(msg + pos, n) && count < UINT_MAX)
            count++;
        pos = end + 1;
    }
    return count;
}

/* --- the retry schedule ------------------------------------------------------------- */

#define SCHEDULE_MAX_DELAY (30u * 86400u)

/* One entry "<digits><unit>" at *sp (white space around it skipped); the
 * delay in seconds, or 0 with a reason in *why. */
static unsigned schedule_entry(const char **sp, const char **why)
{
    const char *s = *sp;
    unsigned long long v = 0;
    unsigned mult;
    while (is_wsp((uint8_t)*s))
        s++;
    if (!is_digit(*s)) {
        *why = (*s == ',' || *s == '\0') ? "empty entry" : "expected a number";
        return 0;
    }
    for (; is_digit(*s); s++)
        if (v <= SCHEDULE_MAX_DELAY)
            v = v * 10 + (unsigned)(*s - '0');
    switch (*s) {
    case 's':
    case 'S':
        mult = 1;
        break;
    case 'm':
    case 'M':
        mult = 60;
        break;
    case 'h':
    case 'H':
        mult = 3600;
        break;
    case 'd':
    case 'D':
        mult = 86400;
        break;
    default:
        *why = "missing or unknown unit (use s, m, h or d)";
        return 0;
    }
    s++;
    while (is_wsp((uint8_t)*s))
        s++;
    if (*s != ',' && *s != '\0') {
        *why = "unexpected text after the unit";
        return 0;
    }
    v *= mult;
    if (v < 1 || v > SCHEDULE_MAX_DELAY) {
        *why = "out of range (1s..30d)";
        return 0;
    }
    *sp = s;
    return (unsigned)v;
}

int queue_schedule_parse(const char *s, unsigned *delays_r, size_t *n_r, char *err, size_t errlen)
{
    unsigned d[QUEUE_SCHEDULE_MAX];
    size_t n = 0;
    if (!s)
        return err_set(err, errlen, "no schedule");
    for (const char *p = s;; p++) {
        const char *start = p, *why = NULL;
        while (is_wsp((uint8_t)*start))
            start++;
        if (n == 0 && *start == '\0')
            return err_set(err, errlen, "empty schedule");
        unsigned v = schedule_entry(&p, &why);
        size_t tlen = strcspn(start, ",");
        while (tlen > 0 && is_wsp((uint8_t)start[tlen - 1]))
            tlen--;
        if (v == 0)
            return err_set(err, errlen, "entry %zu \"%.*s\": %s", n + 1,
                                  (int)(tlen > 20 ? 20 : tlen), start, why);
        if (n == QUEUE_SCHEDULE_MAX)
            return err_set(err, errlen, "more than %d entries", QUEUE_SCHEDULE_MAX);
        if (n > 0 && v < d[n - 1])
            return err_set(err, errlen,
                                  "entry %zu \"%.*s\": shorter than the one before "
                                  "(delays must not decrease)",
                                  n + 1, (int)(tlen > 20 ? 20 : tlen), start);
        d[n++] = v;
        if (*p == '\0')
            break;
    }
    memcpy(delays_r, d, n * sizeof(d[0]));
    *n_r = n;
    return 0;
}

time_t queue_next_attempt(const unsigned *delays, size_t n, unsigned attempts, time_t last)
{
    if (!delays || n == 0)
        return last;
    if (attempts == 0)
        attempts = 1;
    size_t i = attempts < n ? attempts : n;
    return last + (time_t)delays[i - 1];
}
