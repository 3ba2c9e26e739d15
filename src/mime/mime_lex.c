/* mime_lex — RFC 5322 / RFC 2045 / RFC 2231 lexer (see mime_int.h).
 *
 * The handling of broken input (what is skipped, where a token ends, which
 * parameter is kept) follows Dovecot's lib-mail so that the IMAP items
 * built from it match what Dovecot answers.
 */
#include "mime/mime_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 5322 3.2.3 atext: 1 = other atext, 2 = alphanumeric (and 8-bit),
 * 4 = atext that is a MIME tspecial ("/", "=", "?"). */
const uint8_t mime_atext_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0-15 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 16-31 */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 4, /* 32-47 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 4, 0, 4, /* 48-63 */
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 64-79 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 1, 1, /* 80-95 */
    1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 96-111 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 0, /* 112-127 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

/* NUL inside quoted strings, comments and domain literals becomes U+FFFD. */
#define NUL_REPLACEMENT "\xef\xbf\xbd"

static void put(struct mime_lex *l, struct buf *out, const uint8_t *s, size_t n)
{
    if (out && n > 0 && buf_append(out, s, n) < 0)
        l->oom = true;
}

static void putc_(struct mime_lex *l, struct buf *out, uint8_t c)
{
    put(l, out, &c, 1);
}

static int at_end(const struct mime_lex *l)
{
    return l->p < l->end ? 1 : 0;
}

void mime_lex_init(struct mime_lex *l, const uint8_t *s, size_t n, struct buf *last_comment)
{
    l->p = s;
    l->end = s + n;
    l->last_comment = last_comment;
    l->oom = false;
}

/* What comments and quoted strings treat alike (RFC 5322 3.2.1-3.2.4): a
 * NUL (replaced), the line break of a fold (dropped), a quoted-pair (its
 * backslash dropped; a backslash before CR, LF or NUL is kept as text).
 * *start is the first octet at or after which nothing was copied yet.
 * 1: *l->p was one of those and is handled; 0: it was not; -1: a
 * backslash ends the input. */
static int lex_common(struct mime_lex *l, struct buf *out, const uint8_t **start)
{
    switch (*l->p) {
    case '\0':
        put(l, out, *start, (size_t)(l->p - *start));
        put(l, out, (const uint8_t *)NUL_REPLACEMENT, 3);
        *start = l->p + 1;
        return 1;
    case '\n': {
        size_t len = (size_t)(l->p - *start);
        if (len > 0 && (*start)[len - 1] == '\r')
            len--;
        put(l, out, *start, len);
        *start = l->p + 1;
        return 1;
    }
    case '\\':
        l->p++;
        if (l->p >= l->end)
            return -1;
        if (*l->p == '\r' || *l->p == '\n' || *l->p == '\0') {
            l->p--;
            return 1;
        }
        put(l, out, *start, (size_t)(l->p - *start - 1));
        *start = l->p;
        return 1;
    default:
        return 0;
    }
}

int mime_lex_skip_comment(struct mime_lex *l)
{
    struct buf *c = l->last_comment;
    int level = 1;
    if (c)
        buf_reset(c);
    const uint8_t *start = ++l->p;
    for (; l->p < l->end; l->p++) {
        int k = lex_common(l, c, &start);
        if (k < 0)
            return -1;
        if (k)
            continue;
        if (*l->p == '(') {
            level++;
        } else if (*l->p == ')' && --level == 0) {
            put(l, c, start, (size_t)(l->p - start));
            l->p++;
            return at_end(l);
        }
    }
    return -1; /* missing ")" */
}

int mime_lex_skip_lwsp(struct mime_lex *l)
{
    while (l->p < l->end) {
        uint8_t ch = *l->p;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            l->p++;
            continue;
        }
        if (ch != '(')
            break;
        if (mime_lex_skip_comment(l) < 0)
            return -1;
    }
    return at_end(l);
}

int mime_lex_atom(struct mime_lex *l, struct buf *out)
{
    if (l->p >= l->end || !MIME_IS_ATEXT(*l->p))
        return -1;
    const uint8_t *start = l->p++;
    for (; l->p < l->end; l->p++) {
        if (MIME_IS_ATEXT(*l->p))
            continue;
        put(l, out, start, (size_t)(l->p - start));
        return mime_lex_skip_lwsp(l);
    }
    put(l, out, start, (size_t)(l->p - start));
    return 0;
}

int mime_lex_dot_atom(struct mime_lex *l, struct buf *out)
{
    if (l->p >= l->end || !MIME_IS_ATEXT(*l->p))
        return -1;
    const uint8_t *start = l->p++;
    while (l->p < l->end) {
        if (MIME_IS_ATEXT(*l->p)) {
            l->p++;
            continue;
        }
        if (start == l->p)
            return -1;
        put(l, out, start, (size_t)(l->p - start));
        int ret = mime_lex_skip_lwsp(l);
        if (ret <= 0)
            return ret;
        if (*l->p != '.')
            return 1;
        l->p++;
        putc_(l, out, '.');
        /* RFC 822 allowed white space around "." */
        if (mime_lex_skip_lwsp(l) <= 0)
            return -1;
        start = l->p;
    }
    put(l, out, start, (size_t)(l->p - start));
    return 0;
}

int mime_lex_mime_token(struct mime_lex *l, struct buf *out)
{
    const uint8_t *start = l->p;
    for (; l->p < l->end; l->p++) {
        if (MIME_IS_TOKEN(*l->p) || *l->p == '.')
            continue;
        put(l, out, start, (size_t)(l->p - start));
        return mime_lex_skip_lwsp(l);
    }
    put(l, out, start, (size_t)(l->p - start));
    return 0;
}

int mime_lex_quoted_string(struct mime_lex *l, struct buf *out)
{
    l->p++; /* the opening quote */
    const uint8_t *start = l->p;
    for (; l->p < l->end; l->p++) {
        int k = lex_common(l, out, &start);
        if (k < 0)
            return -1;
        if (!k && *l->p == '"') {
            put(l, out, start, (size_t)(l->p - start));
            l->p++;
            return mime_lex_skip_lwsp(l);
        }
    }
    return -1; /* missing closing quote */
}

/* An atom that may contain dots, without skipping white space inside. */
static int lex_atom_or_dot(struct mime_lex *l, struct buf *out)
{
    const uint8_t *start = l->p;
    for (; l->p < l->end; l->p++) {
        if (MIME_IS_ATEXT(*l->p) || *l->p == '.')
            continue;
        put(l, out, start, (size_t)(l->p - start));
        return mime_lex_skip_lwsp(l);
    }
    put(l, out, start, (size_t)(l->p - start));
    return 0;
}

/* RFC 5322 3.2.5 phrase, with obs-phrase ("." and CFWS between words). */
int mime_lex_phrase(struct mime_lex *l, struct buf *out)
{
    if (l->p >= l->end)
        return 0;
    if (*l->p == '.')
        return -1;
    for (;;) {
        int ret;
        if (*l->p == '"')
            ret = mime_lex_quoted_string(l, out);
        else
            ret = lex_atom_or_dot(l, out);
        if (ret <= 0)
            return ret;
        if (!MIME_IS_ATEXT(*l->p) && *l->p != '"' && *l->p != '.')
            break;
        putc_(l, out, ' ');
    }
    return mime_lex_skip_lwsp(l);
}

static int lex_domain_literal(struct mime_lex *l, struct buf *out)
{
    const uint8_t *start = l->p++;
    for (; l->p < l->end; l->p++) {
        switch (*l->p) {
        case '\0':
            put(l, out, start, (size_t)(l->p - start));
            put(l, out, (const uint8_t *)NUL_REPLACEMENT, 3);
            start = l->p + 1;
            break;
        case '[':
            return -1;
        case ']':
            put(l, out, start, (size_t)(l->p - start) + 1);
            l->p++;
            return mime_lex_skip_lwsp(l);
        case '\n': {
            size_t len = (size_t)(l->p - start);
            if (len > 0 && start[len - 1] == '\r')
                len--;
            put(l, out, start, len);
            start = l->p + 1;
            break;
        }
        case '\\':
            l->p++;
            if (l->p >= l->end)
                return -1;
            if (*l->p == '\r' || *l->p == '\n' || *l->p == '\0') {
                put(l, out, start, (size_t)(l->p - start));
                start = l->p;
                l->p--;
            }
            break;
        }
    }
    return -1; /* missing "]" */
}

/* "@" domain: dot-atom, domain literal or obs-domain. */
int mime_lex_domain(struct mime_lex *l, struct buf *out)
{
    l->p++; /* "@" */
    if (mime_lex_skip_lwsp(l) <= 0)
        return -1;
    if (*l->p == '[')
        return lex_domain_literal(l, out);
    return mime_lex_dot_atom(l, out);
}

int mime_lex_content_type(struct mime_lex *l, struct buf *out)
{
    size_t start_len = out->len;
    if (mime_lex_skip_lwsp(l) <= 0)
        return -1;
    /* a type without "/subtype" at the end is kept ("text" "") */
    if (mime_lex_mime_token(l, out) <= 0 || out->len == start_len)
        return -1;
    if (*l->p != '/')
        goto fail;
    l->p++;
    if (mime_lex_skip_lwsp(l) <= 0)
        goto fail;
    putc_(l, out, '/');
    size_t sub_start = out->len;
    int ret = mime_lex_mime_token(l, out);
    if (ret < 0 || out->len == sub_start || (l->p < l->end && *l->p != ';'))
        goto fail;
    return ret;
fail:
    out->len = start_len;
    return -1;
}

/* One "; key=value". Returns 1 with key/value filled, 0 at the end, -1 on
 * a syntax error (key/value are then meaningless). */
static int lex_content_param(struct mime_lex *l, struct buf *key, struct buf *value)
{
    buf_reset(key);
    buf_reset(value);
    if (l->p >= l->end)
        return 0;
    if (*l->p != ';')
        return -1;
    l->p++;
    if (mime_lex_skip_lwsp(l) <= 0)
        return -1;
    if (mime_lex_mime_token(l, key) <= 0)
        return -1;
    if (*l->p != '=')
        return -1;
    l->p++;
    int ret = mime_lex_skip_lwsp(l);
    if (ret <= 0) {
        /* no value */
    } else if (*l->p == '"') {
        ret = mime_lex_quoted_string(l, value);
    } else if (*l->p == '=') {
        /* broken senders write name==?utf-8?b?...?= */
        while (l->p < l->end && *l->p != ';' && *l->p != ' ' && *l->p != '\t' && *l->p != '\r' &&
               *l->p != '\n') {
            putc_(l, value, *l->p);
            l->p++;
        }
    } else {
        ret = mime_lex_mime_token(l, value);
    }
    return ret < 0 ? -1 : 1;
}

/* --- RFC 2231 joining ---------------------------------------------------------------- */

struct param_vec {
    struct mime_lex_param *v;
    size_t n, cap;
    bool oom;
};

static void vec_push(struct param_vec *pv, char *key, char *value)
{
    if (!key || !value) {
        free(key);
        free(value);
        pv->oom = true;
        return;
    }
    if (pv->n == pv->cap) {
        size_t cap = pv->cap ? pv->cap * 2 : 8;
        struct mime_lex_param *nv = realloc(pv->v, cap * sizeof(*nv));
        if (!nv) {
            free(key);
            free(value);
            pv->oom = true;
            return;
        }
        pv->v = nv;
        pv->cap = cap;
    }
    pv->v[pv->n].key = key;
    pv->v[pv->n].value = value;
    pv->n++;
}

static char *dup_n(const void *s, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        if (n)
            memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

struct ext_param {
    char *key; /* without "*N*" */
    char *value;
    unsigned idx;
    bool extended;
};

/* Stable merge sort by (key byte order, idx), as glibc's qsort orders them. */
static int ext_cmp(const struct ext_param *a, const struct ext_param *b)
{
    int r = strcmp(a->key, b->key);
    if (r)
        return r;
    return a->idx < b->idx ? -1 : (a->idx > b->idx ? 1 : 0);
}

static void ext_sort(struct ext_param *v, struct ext_param *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    ext_sort(v, tmp, h);
    ext_sort(v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = ext_cmp(&v[j], &v[i]) < 0 ? v[j++] : v[i++];
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(*v));
}

static void ext_join(struct param_vec *pv, struct ext_param *ext, size_t count)
{
    struct buf s = BUF_INIT;
    size_t next;
    for (size_t i = 0; i < count; i = next) {
        bool ok = true, have_ext = false;
        unsigned next_idx = 0;
        size_t j;
        for (j = i; j < count; j++) {
            if (strcasecmp(ext[i].key, ext[j].key) != 0)
                break;
            if (ext[j].idx != next_idx)
                ok = false;
            if (ext[j].extended)
                have_ext = true;
            next_idx++;
        }
        next = j;
        if (!ok) {
            /* a gap in the numbering: keep the pieces as they were named */
            for (j = i; j < next; j++) {
                buf_reset(&s);
                if (buf_printf(&s, ext[j].extended ? "%s*%u*" : "%s*%u", ext[j].key, ext[j].idx) <
                    0) {
                    pv->oom = true;
                    continue;
                }
                vec_push(pv, dup_n(buf_ptr(&s), buf_size(&s)),
                         dup_n(ext[j].value, strlen(ext[j].value)));
            }
            continue;
        }
        buf_reset(&s);
        int r = 0;
        if (!ext[i].extended && have_ext)
            r |= buf_puts(&s, "''");
        for (j = i; j < next; j++) {
            if (!ext[j].extended && have_ext) {
                for (const char *c = ext[j].value; *c; c++)
                    r |= *c == '%' ? buf_puts(&s, "%25") : buf_append(&s, c, 1);
            } else {
                r |= buf_puts(&s, ext[j].value);
            }
        }
        if (r < 0) {
            pv->oom = true;
            continue;
        }
        size_t kl = strlen(ext[i].key);
        char *key = malloc(kl + 2);
        if (key) {
            memcpy(key, ext[i].key, kl);
            key[kl] = have_ext ? '*' : '\0';
            key[kl + 1] = '\0';
        }
        vec_push(pv, key, dup_n(buf_ptr(&s), buf_size(&s)));
    }
    buf_free(&s);
}

int mime_lex_params(struct mime_lex *l, struct mime_lex_param **params_r, size_t *n_r)
{
    struct param_vec pv = {0};
    struct ext_param *ext = NULL;
    size_t next = 0, extcap = 0;
    struct buf key = BUF_INIT, value = BUF_INIT;
    unsigned idx = 0; /* carried over between parameters, as Dovecot does */
    int ret;
    *params_r = NULL;
    *n_r = 0;
    while ((ret = lex_content_param(l, &key, &value)) != 0) {
        if (ret < 0) {
            if (l->p >= l->end)
                break;
            l->p++;
            continue;
        }
        const char *k = buf_cstr(&key);
        const char *v = buf_cstr(&value);
        if (!k || !v) {
            pv.oom = true;
            break;
        }
        const char *star = strchr(k, '*');
        bool is_ext = false, extended = false;
        if (star) {
            const char *p = star;
            if (p[1] != '\0') {
                p++;
                idx = 0;
                for (; *p >= '0' && *p <= '9'; p++)
                    idx = idx * 10 + (unsigned)(*p - '0');
            }
            if (*p == '*') {
                extended = true;
                p++;
            }
            is_ext = *p == '\0';
        }
        if (!is_ext) {
            vec_push(&pv, dup_n(k, strlen(k)), dup_n(v, strlen(v)));
            continue;
        }
        if (next == extcap) {
            size_t cap = extcap ? extcap * 2 : 8;
            struct ext_param *ne = realloc(ext, cap * sizeof(*ne));
            if (!ne) {
                pv.oom = true;
                break;
            }
            ext = ne;
            extcap = cap;
        }
        ext[next].key = dup_n(k, (size_t)(star - k));
        ext[next].value = dup_n(v, strlen(v));
        ext[next].idx = idx;
        ext[next].extended = extended;
        if (!ext[next].key || !ext[next].value) {
            free(ext[next].key);
            free(ext[next].value);
            pv.oom = true;
            break;
        }
        next++;
    }
    if (next > 0 && !pv.oom) {
        struct ext_param *tmp = malloc(next * sizeof(*tmp));
        if (tmp) {
            ext_sort(ext, tmp, next);
            free(tmp);
            ext_join(&pv, ext, next);
        } else {
            pv.oom = true;
        }
    }
    for (size_t i = 0; i < next; i++) {
        free(ext[i].key);
        free(ext[i].value);
    }
    free(ext);
    buf_free(&key);
    buf_free(&value);
    if (pv.oom || l->oom) {
        mime_lex_params_free(pv.v, pv.n);
        return -1;
    }
    *params_r = pv.v;
    *n_r = pv.n;
    return 0;
}

void mime_lex_params_free(struct mime_lex_param *params, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(params[i].key);
        free(params[i].value);
    }
    free(params);
}

/* --- helpers ------------------------------------------------------------------------- */

bool mime_mem_ieq(const void *a, size_t alen, const char *b)
{
    size_t bl = strlen(b);
    return alen == bl && strncasecmp(a, b, bl) == 0;
}

bool mime_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

int mime_append_nolf(struct buf *out, const uint8_t *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n') {
            if (buf_append(out, s + start, i - start) < 0)
                return -1;
            start = i + 1;
        }
    }
    return buf_append(out, s + start, n - start);
}

int mime_append_nonul(struct buf *out, const uint8_t *s, size_t n, bool nolf)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0' || (nolf && (s[i] == '\r' || s[i] == '\n'))) {
            if (buf_append(out, s + start, i - start) < 0)
                return -1;
            if (s[i] == '\0' && buf_append(out, NUL_REPLACEMENT, 3) < 0)
                return -1;
            start = i + 1;
        }
    }
    return buf_append(out, s + start, n - start);
}
