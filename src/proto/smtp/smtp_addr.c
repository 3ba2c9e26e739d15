/* smtp_addr — RFC 5321 4.1.2 paths with RFC 6531 UTF-8, see smtp_addr.h. */
#include "proto/smtp/smtp_addr.h"

#include <string.h>
#include <strings.h>

static bool addr_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool addr_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 5322 3.2.3 atext, as RFC 5321 4.1.2 uses it in Atom. */
static bool addr_is_atext(unsigned char c)
{
    return addr_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

size_t smtp_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second octet (RFC 3629 4) */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlongs */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f; /* <= U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* One UTF-8 sequence beyond ASCII at s, within the NUL-terminated string. */
static size_t addr_utf8_at(const char *s)
{
    return smtp_utf8_len((const unsigned char *)s, strnlen(s, 4));
}

size_t smtp_domain_span(const char *s, bool utf8)
{
    size_t i = 0;
    for (;;) {
        /* RFC 5321 4.1.2: sub-domain = Let-dig [Ldh-str]; RFC 6531 3.3 adds U-label. */
        size_t start = i;
        bool ascii = true;
        unsigned char last = 0;
        for (;;) {
            unsigned char c = (unsigned char)s[i];
            if (addr_is_alnum(c) || (c == '-' && i > start)) {
                last = c;
                i++;
            } else if (c >= 0x80 && utf8) {
                size_t k = addr_utf8_at(s + i);
                if (k == 0)
                    return 0;
                ascii = false;
                last = c;
                i += k;
            } else {
                break;
            }
        }
        if (i == start || last == '-')
            return 0;
        if (ascii && i - start > SMTP_LABEL_MAX)
            return 0;
        if (s[i] != '.')
            return i;
        i++;
    }
}

bool smtp_ipv4_valid(const char *s, size_t n)
{
    /* RFC 5321 4.1.3: Snum 3("." Snum), Snum = 1*3DIGIT of value 0-255. */
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        unsigned v = 0;
        size_t digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255)
            return false;
    }
    return i == n;
}

bool smtp_ipv6_valid(const char *s, size_t n)
{
    /* RFC 5321 4.1.3: IPv6-full has 8 groups; with "::" at most 6 groups
     * besides it; a trailing IPv4 part counts as 2 groups. */
    size_t i = 0;
    int groups = 0;
    bool dcolon = false;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        dcolon = true;
        i = 2;
    } else if (n >= 1 && s[0] == ':') {
        return false;
    }
    while (i < n) {
        const char *rest = s + i;
        size_t rlen = n - i;
        if (!memchr(rest, ':', rlen) && memchr(rest, '.', rlen)) {
            if (!smtp_ipv4_valid(rest, rlen))
                return false;
            groups += 2;
            break;
        }
        size_t j = i;
        while (j < n && addr_is_hex((unsigned char)s[j]) && j - i < 5)
            j++;
        if (j == i || j - i > 4)
            return false;
        groups++;
        i = j;
        if (i == n)
            break;
        if (s[i] != ':')
            return false;
        i++;
        if (i < n && s[i] == ':') {
            if (dcolon)
                return false;
            dcolon = true;
            i++;
        } else if (i == n) {
            return false;
        }
    }
    return dcolon ? groups <= 6 : groups == 8;
}

size_t smtp_addr_literal_span(const char *s)
{
    if (s[0] != '[')
        return 0;
    const char *close = strchr(s, ']');
    if (!close)
        return 0;
    const char *in = s + 1;
    size_t n = (size_t)(close - in);
    bool ok;
    if (n >= 5 && strncasecmp(in, "IPv6:", 5) == 0)
        ok = smtp_ipv6_valid(in + 5, n - 5);
    else
        ok = smtp_ipv4_valid(in, n); /* General-address-literal: no tag is registered */
    return ok ? n + 2 : 0;
}

static void addr_note_relay(struct smtp_path *p, unsigned char c)
{
    if (c == '%' || c == '!' || c == '@')
        p->relay_chars = true;
}

/* RFC 5321 4.1.2 Quoted-string (RFC 6531: with UTF-8), s at the DQUOTE. */
static size_t addr_quoted_span(const char *s, struct smtp_path *p)
{
    size_t i = 1;
    for (;;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            p->local_quoted = true;
            return i + 1;
        }
        if (c == '\\') {
            unsigned char d = (unsigned char)s[i + 1];
            if (d < 32 || d > 126) /* quoted-pairSMTP = "\" %d32-126 */
                return 0;
            addr_note_relay(p, d);
            i += 2;
        } else if (c >= 0x80) {
            size_t k = addr_utf8_at(s + i);
            if (k == 0)
                return 0;
            p->non_ascii = true;
            i += k;
        } else if (c >= 32 && c <= 126) { /* qtextSMTP */
            addr_note_relay(p, c);
            i++;
        } else {
            return 0;
        }
    }
}

/* RFC 5321 4.1.2 Local-part = Dot-string / Quoted-string. */
static size_t addr_local_span(const char *s, struct smtp_path *p)
{
    if (s[0] == '"')
        return addr_quoted_span(s, p);
    size_t i = 0;
    for (;;) {
        size_t start = i;
        for (;;) {
            unsigned char c = (unsigned char)s[i];
            if (addr_is_atext(c)) {
                addr_note_relay(p, c);
                i++;
            } else if (c >= 0x80) {
                size_t k = addr_utf8_at(s + i);
                if (k == 0)
                    return 0;
                p->non_ascii = true;
                i += k;
            } else {
                break;
            }
        }
        if (i == start)
            return 0;
        if (s[i] != '.')
            return i;
        i++;
    }
}

/* RFC 5321 4.1.2 A-d-l = At-domain *( "," At-domain ), followed by ":". */
static size_t addr_route_span(const char *s, struct smtp_path *p)
{
    size_t i = 0;
    for (;;) {
        if (s[i] != '@')
            return 0;
        i++;
        size_t n = smtp_domain_span(s + i, true);
        if (n == 0)
            return 0;
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)s[i + k] >= 0x80)
                p->non_ascii = true;
        i += n;
        if (s[i] == ':')
            return i + 1;
        if (s[i] != ',')
            return 0;
        i++;
    }
}

static bool addr_has_non_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

enum smtp_addr_status smtp_path_parse(const char *s, unsigned flags, struct smtp_path *p,
                                      const char **end_r)
{
    memset(p, 0, sizeof(*p));
    if (s[0] != '<')
        return SMTP_ADDR_SYNTAX;
    const char *q = s + 1;
    if (*q == '>') {
        if (!(flags & SMTP_PATH_NULL_OK))
            return SMTP_ADDR_SYNTAX;
        p->is_null = true;
        *end_r = q + 1;
        return SMTP_ADDR_OK;
    }
    if (*q == '@') {
        size_t n = addr_route_span(q, p);
        if (n == 0)
            return SMTP_ADDR_SYNTAX;
        p->had_route = true;
        q += n;
    }
    const char *mbox = q;
    size_t llen = addr_local_span(q, p);
    if (llen == 0)
        return SMTP_ADDR_SYNTAX;
    q += llen;
    size_t dlen = 0;
    if (*q == '>' && (flags & SMTP_PATH_POSTMASTER_OK) && !p->had_route && llen == 10 &&
        strncasecmp(mbox, "postmaster", 10) == 0) {
        /* RFC 5321 4.5.1: <Postmaster> without domain must be accepted. */
        p->is_postmaster = true;
    } else {
        if (*q != '@')
            return SMTP_ADDR_SYNTAX;
        q++;
        dlen = *q == '[' ? smtp_addr_literal_span(q) : smtp_domain_span(q, true);
        if (dlen == 0)
            return SMTP_ADDR_SYNTAX;
        if (addr_has_non_ascii(q, dlen))
            p->non_ascii = true;
        q += dlen;
        if (*q != '>')
            return SMTP_ADDR_SYNTAX;
    }
    size_t path_len = (size_t)(q + 1 - s);
    if (path_len > SMTP_PATH_MAX || llen > SMTP_LOCAL_MAX || dlen > SMTP_DOMAIN_MAX)
        return SMTP_ADDR_TOO_LONG;
    if (p->is_postmaster) {
        memcpy(p->mailbox, "postmaster", 11);
    } else {
        size_t mlen = (size_t)(q - mbox);
        memcpy(p->mailbox, mbox, mlen);
        p->mailbox[mlen] = '\0';
    }
    p->local_len = llen;
    *end_r = q + 1;
    if (p->non_ascii && !(flags & SMTP_PATH_UTF8))
        return SMTP_ADDR_NEED_UTF8;
    return SMTP_ADDR_OK;
}
