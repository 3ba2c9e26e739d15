/* imap_utf7 — see imap_utf7.h. */
#include "proto/imap/imap_utf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "lib/utf8.h"

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

static int utf8_put(struct buf *out, uint32_t cp)
{
    uint8_t b[4];
    return buf_append(out, b, utf8_encode(cp, b));
}

/* Decode the base64 run s[0..n) (between "&" and "-") as UTF-16BE. */
static int utf7_run_decode(const char *s, size_t n, struct buf *out)
{
    uint32_t bits = 0, high = 0;
    unsigned nbits = 0;
    size_t units = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        bits = (bits << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits < 16)
            continue;
        nbits -= 16;
        uint32_t u = (bits >> nbits) & 0xffff;
        bits &= (1u << nbits) - 1;
        units++;
        if (high) {
            /* RFC 2781 2.2: a high surrogate must be followed by a low one */
            if (u < 0xdc00 || u > 0xdfff)
                return -1;
            if (utf8_put(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00)) < 0)
                return -1;
            high = 0;
        } else if (u >= 0xd800 && u <= 0xdbff) {
            high = u;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            return -1;
        } else if ((u >= 0x20 && u <= 0x7e) || u == 0) {
            /* RFC 3501 5.1.3: printable US-ASCII must represent itself */
            return -1;
        } else if (utf8_put(out, u) < 0) {
            return -1;
        }
    }
    /* A whole number of UTF-16 units, fewer than 6 padding bits, all zero. */
    if (high || units == 0 || nbits >= 6 || bits != 0)
        return -1;
    return 0;
}

int imap_utf7_to_utf8(const char *in, struct buf *out)
{
    size_t mark = buf_size(out);
    const char *s = in;
    while (*s) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e)
            goto fail;
        if (c != '&') {
            if (buf_append(out, s, 1) < 0)
                goto fail;
            s++;
            continue;
        }
        const char *end = strchr(s + 1, '-');
        if (!end)
            goto fail;
        if (end == s + 1) {
            if (buf_append(out, "&", 1) < 0)
                goto fail;
        } else if (utf7_run_decode(s + 1, (size_t)(end - s - 1), out) < 0) {
            goto fail;
        }
        s = end + 1;
    }
    return 0;
fail:
    out->len = out->off + mark;
    return -1;
}

/* Next code point of valid UTF-8 at *s (advanced); -1 when invalid. */
static int64_t utf8_next(const unsigned char **sp)
{
    const unsigned char *s = *sp;
    uint32_t cp;
    size_t n;
    if (s[0] < 0x80) {
        *sp = s + 1;
        return s[0];
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        cp = s[0] & 0x1f;
        n = 1;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        cp = s[0] & 0x0f;
        n = 2;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        cp = s[0] & 0x07;
        n = 3;
    } else {
        return -1;
    }
    for (size_t i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *sp = s + n + 1;
    return cp;
}

/* Flush the pending base64 bits and close the run. */
static int utf7_run_end(struct buf *out, uint32_t bits, unsigned nbits)
{
    if (nbits > 0) {
        char c = b64_chars[(bits << (6 - nbits)) & 0x3f];
        if (buf_append(out, &c, 1) < 0)
            return -1;
    }
    return buf_append(out, "-", 1);
}

int imap_utf8_to_utf7(const char *in, struct buf *out)
{
    size_t mark = buf_size(out);
    const unsigned char *s = (const unsigned char *)in;
    bool in_run = false;
    uint32_t bits = 0;
    unsigned nbits = 0;
    while (*s) {
        int64_t cp = utf8_next(&s);
        if (cp < 0)
            goto fail;
        if (cp >= 0x20 && cp <= 0x7e) {
            if (in_run && utf7_run_end(out, bits, nbits) < 0)
                goto fail;
            in_run = false;
            bits = nbits = 0;
            if (buf_append(out, cp == '&' ? "&-" : (const char *)&s[-1], cp == '&' ? 2 : 1) < 0)
                goto fail;
            continue;
        }
        if (!in_run && buf_append(out, "&", 1) < 0)
            goto fail;
        in_run = true;
        uint16_t units[2];
        size_t nu = 1;
        if (cp >= 0x10000) {
            units[0] = (uint16_t)(0xd800 + ((cp - 0x10000) >> 10));
            units[1] = (uint16_t)(0xdc00 + ((cp - 0x10000) & 0x3ff));
            nu = 2;
        } else {
            units[0] = (uint16_t)cp;
        }
        for (size_t u = 0; u < nu; u++) {
            bits = (bits << 16) | units[u];
            nbits += 16;
            while (nbits >= 6) {
                nbits -= 6;
                char c = b64_chars[(bits >> nbits) & 0x3f];
                if (buf_append(out, &c, 1) < 0)
                    goto fail;
            }
            bits &= (1u << nbits) - 1;
        }
    }
    if (in_run && utf7_run_end(out, bits, nbits) < 0)
        goto fail;
    return 0;
fail:
    out->len = out->off + mark;
    return -1;
}
