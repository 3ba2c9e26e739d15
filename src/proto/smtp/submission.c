/* submission — RFC 6409 section 8 fix-ups and the From: addresses.
 *
 * Both functions walk the header block the same way:
 *  - the header block is everything before the first empty line ("\r\n"
 *    or "\n" alone), or the whole message when there is none;
 *  - it exists only when the message's first line is a header field in
 *    the strict RFC 5322 2.2 sense (ftext name, obsolete white space, ':');
 *    otherwise the message has no header at all and is all body;
 *  - a line starting with SP or HTAB continues the line before it
 *    (RFC 5322 2.2.3), so a field is one "unit" with its continuations;
 *  - inside the block a unit's name is what comes before the colon on its
 *    first line, without the white space before the colon and cut at a NUL,
 *    as mime_field_iter (the store's parser) reads it: a field the store
 *    would show as Bcc is one we remove. A line without a colon is no
 *    field and is copied as it is.
 */
#include "proto/smtp/submission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime/mime_addr.h"
#include "proto/smtp/received.h"

/* One unit of the header block: a line and its continuation lines. */
struct sub_unit {
    size_t off, end;     /* msg[off..end), line breaks included */
    const uint8_t *name; /* NULL when the first line holds no colon */
    size_t name_len;
    const uint8_t *value; /* after the colon, to the end of the last line's text */
    size_t value_len;
};

static bool sub_is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* The line at pos: returns the offset after its LF (or len), and sets
 * *text_end_r to the end of its text (before CRLF or LF). */
static size_t sub_line(const uint8_t *msg, size_t len, size_t pos, size_t *text_end_r)
{
    const uint8_t *nl = memchr(msg + pos, '\n', len - pos);
    if (!nl) {
        *text_end_r = len;
        return len;
    }
    size_t eol = (size_t)(nl - msg);
    *text_end_r = eol > pos && msg[eol - 1] == '\r' ? eol - 1 : eol;
    return eol + 1;
}

/* RFC 5322 2.2 (with obs-optional of 4.5): field-name = 1*ftext, then
 * optional WSP, then ':'. */
static bool sub_line_is_field(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] >= 33 && s[i] <= 126 && s[i] != ':')
        i++;
    if (i == 0)
        return false;
    while (i < n && sub_is_wsp(s[i]))
        i++;
    return i < n && s[i] == ':';
}

/* Whether the message has a header block (see the top of the file). */
static bool sub_has_header(const uint8_t *msg, size_t len)
{
    size_t text_end;
    if (len == 0)
        return false;
    (void)sub_line(msg, len, 0, &text_end);
    if (text_end == 0)
        return true; /* an empty first line: an empty header block */
    return sub_line_is_field(msg, text_end);
}

/* The next unit at *pos. False at the empty line that ends the block
 * (*pos is then its offset) or at the end of the message (*pos == len). */
static bool sub_unit_next(const uint8_t *msg, size_t len, size_t *pos, struct sub_unit *u)
{
    size_t start = *pos, text_end;
    if (start >= len)
        return false;
    size_t end = sub_line(msg, len, start, &text_end);
    if (text_end == start && end > start && msg[end - 1] == '\n')
        return false; /* the empty line */
    const uint8_t *colon = memchr(msg + start, ':', text_end - start);
    size_t value_end = text_end;
    while (end < len && sub_is_wsp(msg[end])) /* RFC 5322 2.2.3 */
        end = sub_line(msg, len, end, &value_end);
    u->off = start;
    u->end = end;
    if (colon) {
        size_t n = (size_t)(colon - (msg + start));
        while (n > 0 && sub_is_wsp(msg[start + n - 1]))
            n--;
        const uint8_t *nul = memchr(msg + start, '\0', n);
        if (nul)
            n = (size_t)(nul - (msg + start));
        u->name = msg + start;
        u->name_len = n;
        u->value = colon + 1;
        u->value_len = (size_t)(msg + value_end - (colon + 1));
    } else {
        u->name = NULL;
        u->name_len = 0;
        u->value = NULL;
        u->value_len = 0;
    }
    *pos = end;
    return true;
}

/* ASCII case-insensitive name comparison (no locale). */
static bool sub_name_is(const struct sub_unit *u, const char *want)
{
    size_t n = strlen(want);
    if (!u->name || u->name_len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t a = u->name[i], b = (uint8_t)want[i];
        if (a >= 'A' && a <= 'Z')
            a = (uint8_t)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (uint8_t)(b + 32);
        if (a != b)
            return false;
    }
    return true;
}

/* RFC 5322 3.2.3 atext (and UTF-8 octets, RFC 6532 3.2). */
static bool sub_is_atext(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c >= 0x80) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* --- smtp_submission_fixup ------------------------------------------------------------- */

/* Append s with every octet that may not stand in a msg-id part (RFC 5322
 * 3.6.4: dot-atom-text, or a no-fold-literal when literal_ok) replaced by
 * '_', so that nothing the caller passes can break the field. */
static int sub_put_id_part(struct buf *out, const char *s, bool literal_ok)
{
    size_t n = strlen(s);
    if (buf_reserve(out, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        bool ok = c < 0x80 && (sub_is_atext(c) || c == '.' ||
                               (literal_ok && (c == '[' || c == ']' || c == ':')));
        if (!ok)
            c = '_';
        buf_append(out, &c, 1);
    }
    return 0;
}

static int sub_add_fields(struct buf *out, const char *nl, bool date, bool mid,
                          const char *hostname, time_t now, const char *id_left)
{
    if (date) {
        char d[64];
        smtp_date_format(d, sizeof(d), now);
        if (buf_printf(out, "Date: %s%s", d, nl) < 0)
            return -1;
    }
    if (mid) {
        char fallback[32];
        if (!id_left || !*id_left) { /* the caller owes a unique one; never write "<@host>" */
            snprintf(fallback, sizeof(fallback), "%llx", (unsigned long long)now);
            id_left = fallback;
        }
        if (!hostname || !*hostname)
            hostname = "localhost";
        if (buf_puts(out, "Message-ID: <") < 0 || sub_put_id_part(out, id_left, false) < 0 ||
            buf_puts(out, "@") < 0 || sub_put_id_part(out, hostname, true) < 0 ||
            buf_puts(out, ">") < 0 || buf_puts(out, nl) < 0)
            return -1;
    }
    return 0;
}

/* The line break added lines get: the message's first one, CRLF when it
 * has none. */
static const char *sub_newline(const uint8_t *msg, size_t len)
{
    const uint8_t *lf = len ? memchr(msg, '\n', len) : NULL;
    if (lf && (lf == msg || lf[-1] != '\r'))
        return "\n";
    return "\r\n";
}

static int sub_fixup(const uint8_t *msg, size_t len, const char *hostname, time_t now,
                     const char *id_left, struct buf *out, size_t mark, struct smtp_fixup_result *r)
{
    const char *nl = sub_newline(msg, len);
    bool has_header = sub_has_header(msg, len);
    bool have_date = false, have_mid = false;
    size_t pos = 0, copied = 0;
    if (buf_reserve(out, len + 160) < 0)
        return -1;
    if (has_header) {
        struct sub_unit u;
        while (sub_unit_next(msg, len, &pos, &u)) {
            if (sub_name_is(&u, "Bcc") || sub_name_is(&u, "Resent-Bcc")) {
                /* RFC 5322 3.6.3: the field with all its continuation lines */
                if (buf_append(out, msg + copied, u.off - copied) < 0)
                    return -1;
                copied = u.end;
                r->removed_bcc++;
            } else if (sub_name_is(&u, "Date")) {
                have_date = true;
            } else if (sub_name_is(&u, "Message-ID")) {
                have_mid = true;
            }
        }
    }
    /* pos: the empty line, or len (a message that is all header), or 0
     * (no header) */
    if (buf_append(out, msg + copied, pos - copied) < 0)
        return -1;
    /* a header without an empty line whose last kept line has no line break */
    size_t outn = buf_size(out);
    if (has_header && pos == len && outn > mark && buf_ptr(out)[outn - 1] != '\n' &&
        buf_puts(out, nl) < 0)
        return -1;
    r->added_date = !have_date;
    r->added_message_id = !have_mid;
    if (sub_add_fields(out, nl, !have_date, !have_mid, hostname, now, id_left) < 0)
        return -1;
    if (!has_header && buf_puts(out, nl) < 0)
        return -1;
    return buf_append(out, msg + pos, len - pos);
}

int smtp_submission_fixup(const uint8_t *msg, size_t len, const char *hostname, time_t now,
                          const char *id_left, struct buf *out, struct smtp_fixup_result *r)
{
    struct smtp_fixup_result dummy;
    if (!r)
        r = &dummy;
    memset(r, 0, sizeof(*r));
    if (!msg)
        len = 0;
    size_t mark = buf_size(out);
    if (sub_fixup(msg ? msg : (const uint8_t *)"", len, hostname, now, id_left, out, mark, r) < 0) {
        out->len = out->off + mark; /* storage may have been compacted: keep the unread size */
        memset(r, 0, sizeof(*r));
        return -1;
    }
    return 0;
}

/* --- smtp_from_addrs ------------------------------------------------------------------- */

struct sub_addrs {
    char **v;
    size_t n, cap;
};

/* Whether s is an RFC 5322 3.2.3 dot-atom-text (UTF-8 allowed). */
static bool sub_is_dot_atom(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '.' ? s[i + 1] == '.' : !sub_is_atext(c))
            return false;
    }
    return true;
}

/* "local@domain" (malloc'ed): the local part as a dot-atom when it is
 * one, else as a quoted-string (RFC 5322 3.4.1, 3.2.4); the domain
 * lower-cased (ASCII only). NULL when memory runs out. */
static char *sub_addr_spec(const char *local, const char *domain)
{
    size_t ln = strlen(local), dn = strlen(domain);
    bool quote = !sub_is_dot_atom(local);
    size_t extra = 0;
    if (quote) {
        extra = 2;
        for (size_t i = 0; i < ln; i++)
            extra += local[i] == '"' || local[i] == '\\';
    }
    char *s = malloc(ln + extra + 1 + dn + 1);
    if (!s)
        return NULL;
    char *p = s;
    if (quote)
        *p++ = '"';
    for (size_t i = 0; i < ln; i++) {
        if (quote && (local[i] == '"' || local[i] == '\\'))
            *p++ = '\\';
        *p++ = local[i];
    }
    if (quote)
        *p++ = '"';
    *p++ = '@';
    for (size_t i = 0; i < dn; i++) {
        char c = domain[i];
        *p++ = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
    }
    *p = '\0';
    return s;
}

static int sub_addrs_push(struct sub_addrs *a, char *s)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        char **v = realloc(a->v, cap * sizeof(*v));
        if (!v)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = s;
    return 0;
}

/* Add the mailboxes of one From: value. Group markers carry no address;
 * an entry without both local part and domain is left out, one flagged
 * invalid but with both is kept (a sender check must see it). */
static int sub_addrs_add_value(struct sub_addrs *a, const uint8_t *value, size_t len)
{
    struct mime_addr *list;
    if (mime_addr_parse_flags(value, len, MIME_ADDR_NON_STRICT_DOTS, &list) < 0)
        return -1;
    int rc = 0;
    for (const struct mime_addr *e = list; e && rc == 0; e = e->next) {
        if (e->group_start || e->group_end || !e->mailbox || !e->host || !*e->host)
            continue;
        char *s = sub_addr_spec(e->mailbox, e->host);
        if (!s || sub_addrs_push(a, s) < 0) {
            free(s);
            rc = -1;
        }
    }
    mime_addr_free(&list);
    return rc;
}

struct sub_sorted {
    const char *s;
    size_t i; /* position in the list */
};

/* By text, then by position: the first of equal strings sorts first. */
static int sub_sorted_cmp(const void *x, const void *y)
{
    const struct sub_sorted *a = x, *b = y;
    int c = strcmp(a->s, b->s);
    return c ? c : (a->i > b->i) - (a->i < b->i);
}

/* Drop repeated strings, keeping the first of each and the order:
 * O(n log n), as a From: may hold very many addresses. */
static int sub_addrs_dedup(struct sub_addrs *a)
{
    if (a->n < 2)
        return 0;
    struct sub_sorted *v = malloc(a->n * sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = 0; i < a->n; i++)
        v[i] = (struct sub_sorted){a->v[i], i};
    qsort(v, a->n, sizeof(*v), sub_sorted_cmp);
    size_t first = 0; /* the first of the current run of equal strings: never freed */
    for (size_t k = 1; k < a->n; k++) {
        if (strcmp(v[first].s, v[k].s) == 0) {
            free(a->v[v[k].i]);
            a->v[v[k].i] = NULL;
        } else {
            first = k;
        }
    }
    free(v);
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i])
            a->v[n++] = a->v[i];
    a->n = n;
    return 0;
}

int smtp_header_addrs(const uint8_t *msg, size_t len, const char *const *fields,
                      size_t nfields, char ***addrs_r, size_t *n_r)
{
    struct sub_addrs a = {NULL, 0, 0};
    *addrs_r = NULL;
    *n_r = 0;
    if (!msg || !sub_has_header(msg, len))
        return 0;
    size_t pos = 0;
    struct sub_unit u;
    while (sub_unit_next(msg, len, &pos, &u)) {
        bool want = false;
        for (size_t i = 0; i < nfields && !want; i++)
            want = sub_name_is(&u, fields[i]);
        if (want && sub_addrs_add_value(&a, u.value, u.value_len) < 0) {
            smtp_from_addrs_free(a.v, a.n);
            return -1;
        }
    }
    if (sub_addrs_dedup(&a) < 0) {
        smtp_from_addrs_free(a.v, a.n);
        return -1;
    }
    if (a.n == 0) {
        free(a.v);
        return 0;
    }
    *addrs_r = a.v;
    *n_r = a.n;
    return 0;
}

int smtp_from_addrs(const uint8_t *msg, size_t len, char ***addrs_r, size_t *n_r)
{
    static const char *const from[] = {"From"};
    return smtp_header_addrs(msg, len, from, 1, addrs_r, n_r);
}

void smtp_from_addrs_free(char **addrs, size_t n)
{
    if (!addrs)
        return;
    for (size_t i = 0; i < n; i++)
        free(addrs[i]);
    free(addrs);
}
