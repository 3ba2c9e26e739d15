/* mime_decode — header unfolding, RFC 2047 encoded words, RFC 2231 values,
 * transfer encodings, charsets (iconv) and case-insensitive search. */
#include "mime/mime_decode.h"

#include "lib/utf8.h"
#include "mime/mime_int.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

int mime_unfold(const uint8_t *v, size_t n, struct buf *out)
{
    while (n > 0 && (MIME_IS_LWSP(v[0]) || v[0] == '\r' || v[0] == '\n')) {
        v++;
        n--;
    }
    while (n > 0 && (MIME_IS_LWSP(v[n - 1]) || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    return mime_append_nolf(out, v, n);
}

/* --- charsets ---------------------------------------------------------------------------- */

static const char *const cp1252_high[32] = {
    "\xe2\x82\xac", REPLACEMENT,    "\xe2\x80\x9a", "\xc6\x92",     "\xe2\x80\x9e", "\xe2\x80\xa6",
    "\xe2\x80\xa0", "\xe2\x80\xa1", "\xcb\x86",     "\xe2\x80\xb0", "\xc5\xa0",     "\xe2\x80\xb9",
    "\xc5\x92",     REPLACEMENT,    "\xc5\xbd",     REPLACEMENT,    REPLACEMENT,    "\xe2\x80\x98",
    "\xe2\x80\x99", "\xe2\x80\x9c", "\xe2\x80\x9d", "\xe2\x80\xa2", "\xe2\x80\x93", "\xe2\x80\x94",
    "\xcb\x9c",     "\xe2\x84\xa2", "\xc5\xa1",     "\xe2\x80\xba", "\xc5\x93",     REPLACEMENT,
    "\xc5\xbe",     "\xc5\xb8",
};

/* Windows-1252 (what "iso-8859-1" and undeclared 8-bit text mostly are). */
static int cp1252_to_utf8(const uint8_t *s, size_t n, struct buf *out)
{
    if (buf_reserve(out, n * 3) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x80) {
            out->data[out->len++] = c;
        } else if (c < 0xa0) {
            const char *u = cp1252_high[c - 0x80];
            size_t l = strlen(u);
            memcpy(out->data + out->len, u, l);
            out->len += l;
        } else {
            out->data[out->len++] = (uint8_t)(0xc0 | (c >> 6));
            out->data[out->len++] = (uint8_t)(0x80 | (c & 0x3f));
        }
    }
    return 0;
}

/* Valid UTF-8 is copied, other octets are replaced by U+FFFD. */
static int utf8_sanitize(const uint8_t *s, size_t n, struct buf *out)
{
    size_t i = 0, start = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = s[i] >= 0xf0 ? 4 : s[i] >= 0xe0 ? 3 : 2;
        if (len <= n - i && mime_utf8_valid(s + i, len)) {
            i += len;
            continue;
        }
        if (buf_append(out, s + start, i - start) < 0 || buf_puts(out, REPLACEMENT) < 0)
            return -1;
        i++;
        start = i;
    }
    return buf_append(out, s + start, n - start);
}

/* The iconv name for a MIME charset name, or NULL for "ASCII-like". */
static const char *charset_alias(const char *cs, char *tmp, size_t tmplen)
{
    static const struct {
        const char *mime, *iconv;
    } aliases[] = {
        {"utf8", "UTF-8"},          {"utf-8", "UTF-8"},
        {"iso-8859-1", NULL}, /* windows-1252, see cp1252_to_utf8 */
        {"latin1", NULL},           {"windows-1252", NULL},
        {"cp1252", NULL},           {"ks_c_5601-1987", "CP949"},
        {"ks_c_5601", "CP949"},     {"euc-kr", "CP949"},
        {"gb2312", "GB18030"},      {"gbk", "GB18030"},
        {"x-gbk", "GB18030"},       {"shift_jis", "CP932"},
        {"shift-jis", "CP932"},     {"x-sjis", "CP932"},
        {"sjis", "CP932"},          {"iso-2022-jp", "ISO-2022-JP-3"},
        {"big5", "BIG5-HKSCS"},     {"x-mac-roman", "MACINTOSH"},
        {"macintosh", "MACINTOSH"},
    };
    size_t n = 0;
    while (*cs == ' ' || *cs == '\t' || *cs == '"')
        cs++;
    for (; cs[n] && n + 1 < tmplen; n++)
        tmp[n] = (char)(cs[n] >= 'A' && cs[n] <= 'Z' ? cs[n] + 32 : cs[n]);
    while (n > 0 && (tmp[n - 1] == ' ' || tmp[n - 1] == '\t' || tmp[n - 1] == '"'))
        n--;
    tmp[n] = '\0';
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (strcmp(tmp, aliases[i].mime) == 0)
            return aliases[i].iconv ? aliases[i].iconv : "";
    }
    if (n == 0 || strcmp(tmp, "us-ascii") == 0 || strcmp(tmp, "ascii") == 0 ||
        strcmp(tmp, "unknown-8bit") == 0 || strcmp(tmp, "x-unknown") == 0 || strcmp(tmp, "us") == 0)
        return NULL;
    return tmp;
}

static int iconv_convert(iconv_t cd, const uint8_t *s, size_t n, struct buf *out)
{
    char *in = (char *)s;
    size_t inleft = n;
    while (inleft > 0) {
        if (buf_reserve(out, inleft * 4 + 16) < 0)
            return -1;
        char *o = (char *)out->data + out->len;
        size_t oleft = out->cap - out->len;
        size_t r = iconv(cd, &in, &inleft, &o, &oleft);
        out->len = (size_t)((uint8_t *)o - out->data);
        if (r != (size_t)-1)
            break;
        if (errno == E2BIG)
            continue;
        /* EILSEQ: skip one octet; EINVAL: a truncated sequence at the end */
        if (buf_puts(out, REPLACEMENT) < 0)
            return -1;
        if (errno == EINVAL)
            break;
        in++;
        inleft--;
        iconv(cd, NULL, NULL, NULL, NULL);
    }
    /* flush shift states */
    for (;;) {
        if (buf_reserve(out, 16) < 0)
            return -1;
        char *o = (char *)out->data + out->len;
        size_t oleft = out->cap - out->len;
        size_t r = iconv(cd, NULL, NULL, &o, &oleft);
        out->len = (size_t)((uint8_t *)o - out->data);
        if (r != (size_t)-1 || errno != E2BIG)
            break;
    }
    return 0;
}

int mime_charset_to_utf8(const char *charset, const uint8_t *s, size_t n, struct buf *out)
{
    char tmp[64];
    const char *name = charset ? charset_alias(charset, tmp, sizeof(tmp)) : NULL;
    if (!name) {
        /* US-ASCII or unknown: UTF-8 when it is, else Windows-1252 */
        if (mime_utf8_valid(s, n))
            return buf_append(out, s, n);
        return cp1252_to_utf8(s, n, out);
    }
    if (*name == '\0')
        return cp1252_to_utf8(s, n, out);
    if (strcmp(name, "UTF-8") == 0)
        return utf8_sanitize(s, n, out);
    iconv_t cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1) {
        if (mime_utf8_valid(s, n))
            return buf_append(out, s, n);
        return cp1252_to_utf8(s, n, out);
    }
    size_t before = out->len;
    int r = iconv_convert(cd, s, n, out);
    iconv_close(cd);
    if (r == 0 && !mime_utf8_valid(out->data + before, out->len - before)) {
        /* should not happen; keep the output valid whatever iconv did */
        struct buf t = BUF_INIT;
        r = utf8_sanitize(out->data + before, out->len - before, &t);
        out->len = before;
        if (r == 0)
            r = buf_append(out, buf_ptr(&t), buf_size(&t));
        buf_free(&t);
    }
    return r;
}

/* --- transfer encodings ------------------------------------------------------------------- */

static int b64_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Base64, skipping what is not in the alphabet; "=" ends a group (so that
 * concatenated encodings still decode). */
static int base64_decode(const uint8_t *s, size_t n, struct buf *out)
{
    if (buf_reserve(out, n / 4 * 3 + 3) < 0)
        return -1;
    uint32_t acc = 0;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val(s[i]);
        if (v < 0) {
            if (s[i] == '=' && k > 0) {
                if (k >= 2)
                    out->data[out->len++] = (uint8_t)(acc >> (6 * k - 8));
                if (k == 3)
                    out->data[out->len++] = (uint8_t)(acc >> (6 * k - 16));
                acc = 0;
                k = 0;
            }
            continue;
        }
        acc = (acc << 6) | (uint32_t)v;
        if (++k == 4) {
            out->data[out->len++] = (uint8_t)(acc >> 16);
            out->data[out->len++] = (uint8_t)(acc >> 8);
            out->data[out->len++] = (uint8_t)acc;
            acc = 0;
            k = 0;
        }
    }
    if (k >= 2)
        out->data[out->len++] = (uint8_t)(acc >> (6 * k - 8));
    if (k == 3)
        out->data[out->len++] = (uint8_t)(acc >> (6 * k - 16));
    return 0;
}

static int hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* RFC 2045 6.7 quoted-printable (or RFC 2047 Q with q2047). */
static int qp_decode(const uint8_t *s, size_t n, bool q2047, struct buf *out)
{
    if (buf_reserve(out, n) < 0)
        return -1;
    size_t line_start = out->len; /* trailing white space is cut back to here */
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '=') {
            int h, l;
            if (i + 2 < n && (h = hex_val(s[i + 1])) >= 0 && (l = hex_val(s[i + 2])) >= 0) {
                out->data[out->len++] = (uint8_t)(h << 4 | l);
                line_start = out->len; /* encoded white space is data */
                i += 2;
                continue;
            }
            /* soft line break: "=" [white space] CRLF */
            size_t j = i + 1;
            while (j < n && MIME_IS_LWSP(s[j]))
                j++;
            if (j < n && (s[j] == '\n' || (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n'))) {
                i = s[j] == '\r' ? j + 1 : j;
                line_start = out->len;
                continue;
            }
            if (j == n && !q2047) {
                i = n;
                continue;
            }
            out->data[out->len++] = c; /* malformed: kept as written */
        } else if (c == '_' && q2047) {
            out->data[out->len++] = ' ';
        } else if (c == '\n' && !q2047) {
            /* RFC 2045 6.7 (3): trailing white space is not data */
            size_t e = out->len;
            if (e > line_start && out->data[e - 1] == '\r')
                e--;
            size_t t = e;
            while (t > line_start && MIME_IS_LWSP(out->data[t - 1]))
                t--;
            if (t != e) {
                bool cr = e != out->len;
                out->len = t;
                if (cr)
                    out->data[out->len++] = '\r';
            }
            out->data[out->len++] = '\n';
            line_start = out->len;
        } else {
            out->data[out->len++] = c;
        }
    }
    return 0;
}

int mime_cte_decode(enum mime_cte cte, const uint8_t *s, size_t n, struct buf *out)
{
    switch (cte) {
    case MIME_CTE_BASE64:
        return base64_decode(s, n, out);
    case MIME_CTE_QP:
        return qp_decode(s, n, false, out);
    default:
        return buf_append(out, s, n);
    }
}

/* --- RFC 2047 / RFC 2231 ------------------------------------------------------------------ */

/* Parse "=?charset[*lang]?B|Q?text?=" at s; on success set the pieces and
 * return its length, else 0. */
static size_t encoded_word(const uint8_t *s, size_t n, const uint8_t **cs, size_t *csl,
                           uint8_t *enc, const uint8_t **txt, size_t *txtl)
{
    if (n < 8 || s[0] != '=' || s[1] != '?')
        return 0;
    size_t i = 2;
    while (i < n && s[i] != '?' && s[i] > ' ' && s[i] < 0x7f)
        i++;
    if (i >= n || s[i] != '?' || i == 2)
        return 0;
    *cs = s + 2;
    *csl = i - 2;
    const uint8_t *star = memchr(*cs, '*', *csl);
    if (star)
        *csl = (size_t)(star - *cs);
    if (i + 3 > n || s[i + 2] != '?')
        return 0;
    uint8_t e = s[i + 1];
    if (e != 'B' && e != 'b' && e != 'Q' && e != 'q')
        return 0;
    *enc = (uint8_t)(e | 0x20);
    size_t t = i + 3;
    size_t j = t;
    while (j + 1 < n && !(s[j] == '?' && s[j + 1] == '=')) {
        if (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n')
            return 0;
        j++;
    }
    if (j + 1 >= n)
        return 0;
    *txt = s + t;
    *txtl = j - t;
    return j + 2;
}

struct ew_state {
    struct buf raw;   /* decoded octets of adjacent words in one charset */
    char charset[64]; /* their charset */
};

static int ew_flush(struct ew_state *st, struct buf *out)
{
    if (buf_size(&st->raw) == 0)
        return 0;
    int r = mime_charset_to_utf8(st->charset, buf_ptr(&st->raw), buf_size(&st->raw), out);
    buf_reset(&st->raw);
    return r;
}

/* Plain text in a header: UTF-8 when valid, else Windows-1252. */
static int header_text(const uint8_t *s, size_t n, struct buf *out)
{
    return mime_charset_to_utf8(NULL, s, n, out);
}

int mime_header_decode(const uint8_t *v, size_t n, struct buf *out)
{
    struct buf unf = BUF_INIT;
    struct ew_state st = {BUF_INIT, ""};
    int r = mime_unfold(v, n, &unf);
    const uint8_t *s = buf_size(&unf) ? buf_ptr(&unf) : (const uint8_t *)"";
    size_t len = buf_size(&unf), i = 0, text_start = 0;
    bool prev_word = false;
    while (r == 0 && i < len) {
        const uint8_t *cs, *txt;
        size_t csl, txtl;
        uint8_t enc;
        size_t wl = s[i] == '=' ? encoded_word(s + i, len - i, &cs, &csl, &enc, &txt, &txtl) : 0;
        if (!wl) {
            i++;
            continue;
        }
        /* the text before the word; white space between two words is dropped */
        bool only_ws = true;
        for (size_t k = text_start; k < i; k++)
            only_ws &= MIME_IS_LWSP(s[k]);
        char csname[64];
        size_t cl = csl < sizeof(csname) - 1 ? csl : sizeof(csname) - 1;
        memcpy(csname, cs, cl);
        csname[cl] = '\0';
        if (!(prev_word && only_ws) || strcasecmp(csname, st.charset) != 0) {
            r |= ew_flush(&st, out);
            if (!(prev_word && only_ws))
                r |= header_text(s + text_start, i - text_start, out);
            memcpy(st.charset, csname, cl + 1);
        }
        if (enc == 'b')
            r |= base64_decode(txt, txtl, &st.raw);
        else
            r |= qp_decode(txt, txtl, true, &st.raw);
        i += wl;
        text_start = i;
        prev_word = true;
    }
    r |= ew_flush(&st, out);
    if (r == 0)
        r = header_text(s + text_start, len - text_start, out);
    buf_free(&st.raw);
    buf_free(&unf);
    return r < 0 ? -1 : 0;
}

int mime_rfc2231_decode(const char *value, struct buf *out, struct buf *charset,
                        struct buf *language)
{
    const char *q1 = strchr(value, '\'');
    const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
    const char *text = value;
    int r = 0;
    if (q2) {
        r |= buf_append(charset, value, (size_t)(q1 - value));
        r |= buf_append(language, q1 + 1, (size_t)(q2 - q1 - 1));
        text = q2 + 1;
    }
    struct buf raw = BUF_INIT;
    for (const char *p = text; *p; p++) {
        int h, l;
        if (*p == '%' && (h = hex_val((uint8_t)p[1])) >= 0 && (l = hex_val((uint8_t)p[2])) >= 0) {
            uint8_t c = (uint8_t)(h << 4 | l);
            r |= buf_append(&raw, &c, 1);
            p += 2;
        } else {
            r |= buf_append(&raw, p, 1);
        }
    }
    const char *cs = buf_cstr(charset);
    if (r == 0 && cs)
        r = mime_charset_to_utf8(*cs ? cs : NULL,
                                 buf_size(&raw) ? buf_ptr(&raw) : (const uint8_t *)"",
                                 buf_size(&raw), out);
    else
        r = -1;
    buf_free(&raw);
    return r < 0 ? -1 : 0;
}

/* --- bodies --------------------------------------------------------------------------------- */

int mime_part_decode_text(const struct mime_message *m, const struct mime_part *p, struct buf *out)
{
    const uint8_t *b = m->data + p->body_off;
    if (p->children)
        return buf_append(out, b, p->body_len);
    if (!mime_part_is(p, "text", NULL))
        return mime_cte_decode(p->cte, b, p->body_len, out);
    struct buf raw = BUF_INIT;
    int r = mime_cte_decode(p->cte, b, p->body_len, &raw);
    if (r == 0) {
        const struct mime_param *cs = mime_param_get(p->params, p->nparams, "charset");
        r = mime_charset_to_utf8(cs ? cs->decoded : NULL,
                                 buf_size(&raw) ? buf_ptr(&raw) : (const uint8_t *)"",
                                 buf_size(&raw), out);
    }
    buf_free(&raw);
    return r;
}

int mime_crlf_normalize(const uint8_t *s, size_t n, struct buf *out)
{
    if (buf_reserve(out, n + n / 8 + 2) < 0)
        return -1;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
            i++;
            continue;
        }
        if (s[i] == '\r' || s[i] == '\n') {
            if (buf_append(out, s + start, i - start) < 0 || buf_append(out, "\r\n", 2) < 0)
                return -1;
            start = i + 1;
        }
    }
    return buf_append(out, s + start, n - start);
}

/* --- case-insensitive search ---------------------------------------------------------------- */

/* Simple lower-case mapping of the Latin, Greek and Cyrillic letters. */
static uint32_t fold_cp(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7)
        return c + 32;
    if (c >= 0x100 && c <= 0x17f) {
        if (c == 0x130)
            return 'i';
        if (c == 0x178)
            return 0xff;
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
            return (c & 1) ? c + 1 : c;
        if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17f)
            return c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 32;
    if (c == 0x3c2)
        return 0x3c3; /* final sigma */
    if (c == 0x386)
        return 0x3ac;
    if (c >= 0x388 && c <= 0x38a)
        return c + 37;
    if (c == 0x38c)
        return 0x3cc;
    if (c == 0x38e || c == 0x38f)
        return c + 63;
    if (c >= 0x410 && c <= 0x42f)
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    if (c >= 0xff21 && c <= 0xff3a)
        return c + 32;
    return c;
}

static void put_cp(struct buf *out, uint32_t c)
{
    /* The caller reserved room for 4 octets. */
    out->len += utf8_encode(c, out->data + out->len);
}

/* Case-fold UTF-8 text; invalid octets are kept as they are. */
static int casefold(const uint8_t *s, size_t n, struct buf *out)
{
    if (buf_reserve(out, n + 4) < 0)
        return -1;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            out->data[out->len++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            i++;
            continue;
        }
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (len > n - i || !mime_utf8_valid(s + i, len)) {
            out->data[out->len++] = c;
            i++;
            continue;
        }
        uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < len; k++)
            cp = (cp << 6) | (s[i + k] & 0x3f);
        uint32_t f = fold_cp(cp);
        /* a folded letter never needs more octets than the original here */
        if (f == cp) {
            memcpy(out->data + out->len, s + i, len);
            out->len += len;
        } else {
            put_cp(out, f);
        }
        i += len;
    }
    return 0;
}

bool mime_text_contains(const uint8_t *hay, size_t hay_len, const char *needle_utf8)
{
    size_t nl = strlen(needle_utf8);
    if (nl == 0)
        return true;
    struct buf h = BUF_INIT, nd = BUF_INIT;
    bool found = false;
    if (casefold(hay, hay_len, &h) == 0 && casefold((const uint8_t *)needle_utf8, nl, &nd) == 0)
        found = memmem(buf_ptr(&h), buf_size(&h), buf_ptr(&nd), buf_size(&nd)) != NULL;
    buf_free(&h);
    buf_free(&nd);
    return found;
}

/* Search the decoded fields of one header block (all of them when field is NULL). */
static int search_header(const struct mime_message *m, const struct mime_part *p, const char *field,
                         const char *needle, struct buf *tmp)
{
    struct mime_field_iter it;
    struct mime_field f;
    mime_field_iter_init(&it, m->data + p->hdr_off, p->hdr_len);
    while (mime_field_iter_next(&it, &f)) {
        if (field && !mime_mem_ieq(f.name, f.name_len, field))
            continue;
        if (field && !*needle)
            return 1;
        buf_reset(tmp);
        const uint8_t *v;
        size_t n;
        mime_field_full_value(&f, &v, &n);
        if (!field && buf_append(tmp, f.name, f.name_len) < 0)
            return -1;
        if (!field && buf_append(tmp, ": ", 2) < 0)
            return -1;
        if (mime_header_decode(v, n, tmp) < 0)
            return -1;
        if (mime_text_contains(buf_ptr(tmp), buf_size(tmp), needle))
            return 1;
    }
    return 0;
}

/* The fields mime_search_fields keeps, with their tags. */
static const struct {
    const char *name;
    char tag;
} search_fields[] = {{"From", 'f'}, {"To", 't'}, {"Cc", 'c'}, {"Bcc", 'b'}, {"Subject", 's'}};
#define SEARCH_FIELDS_VERSION '1'

static char search_field_tag(const uint8_t *name, size_t n)
{
    for (size_t i = 0; i < sizeof(search_fields) / sizeof(search_fields[0]); i++)
        if (mime_mem_ieq(name, n, search_fields[i].name))
            return search_fields[i].tag;
    return 0;
}

bool mime_search_field_cached(const char *field)
{
    return field && search_field_tag((const uint8_t *)field, strlen(field)) != 0;
}

int mime_search_fields(const struct mime_message *m, struct buf *out)
{
    struct mime_field_iter it;
    struct mime_field f;
    struct buf tmp = BUF_INIT;
    const struct mime_part *p = m->root;
    int rc = buf_append(out, "1", 1);
    mime_field_iter_init(&it, m->data + p->hdr_off, p->hdr_len);
    while (rc == 0 && mime_field_iter_next(&it, &f)) {
        char tag = search_field_tag(f.name, f.name_len);
        if (!tag)
            continue;
        const uint8_t *v;
        size_t n;
        buf_reset(&tmp);
        mime_field_full_value(&f, &v, &n);
        if (mime_header_decode(v, n, &tmp) < 0 ||
            buf_printf(out, "%c%zu:", tag, buf_size(&tmp)) < 0 ||
            buf_append(out, buf_ptr(&tmp), buf_size(&tmp)) < 0)
            rc = -1;
    }
    buf_free(&tmp);
    return rc;
}

int mime_search_fields_match(const uint8_t *fields, size_t len, const char *field,
                             const char *needle_utf8)
{
    char want = field ? search_field_tag((const uint8_t *)field, strlen(field)) : 0;
    if (!want || len == 0 || fields[0] != SEARCH_FIELDS_VERSION)
        return -1;
    size_t i = 1;
    while (i < len) {
        char tag = (char)fields[i++];
        size_t n = 0, digits = 0;
        while (i < len && fields[i] >= '0' && fields[i] <= '9' && digits < 12) {
            n = n * 10 + (size_t)(fields[i++] - '0');
            digits++;
        }
        if (digits == 0 || i >= len || fields[i] != ':' || n > len - i - 1)
            return -1;
        i++;
        if (tag == want && (!*needle_utf8 || mime_text_contains(fields + i, n, needle_utf8)))
            return 1;
        i += n;
    }
    return 0;
}

int mime_search_text(const struct mime_message *m, enum mime_search_what what, const char *field,
                     const char *needle_utf8)
{
    struct buf tmp = BUF_INIT;
    int found = 0;
    if (what == MIME_SEARCH_HEADER) {
        found = search_header(m, m->root, field ? field : "", needle_utf8, &tmp);
        buf_free(&tmp);
        return found;
    }
    for (const struct mime_part *p = m->root; p && found == 0; p = mime_part_walk_next(p)) {
        bool message_header = !p->parent || (p->parent->flags & MIME_PART_MESSAGE);
        if (what == MIME_SEARCH_TEXT && message_header)
            found = search_header(m, p, NULL, needle_utf8, &tmp);
        if (found != 0 || p->children || !mime_part_is(p, "text", NULL))
            continue;
        buf_reset(&tmp);
        if (mime_part_decode_text(m, p, &tmp) < 0)
            found = -1;
        else if (mime_text_contains(buf_ptr(&tmp), buf_size(&tmp), needle_utf8))
            found = 1;
    }
    buf_free(&tmp);
    return found;
}
