/* mime_imap — ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 7.4.2).
 *
 * Where RFC 3501 leaves a choice, the output is Dovecot's: quoted strings
 * unless a literal is needed (CR, LF, 8-bit, or more than four characters
 * to escape), the subject and display names cleaned up "for humans" (tabs
 * and runs of white space become one space, folding removed; then always
 * sent as a literal), text/... parts without a charset get ("charset"
 * "us-ascii"), a multipart without parts gets one empty text/plain part.
 */
#include "mime/mime_imap.h"
#include "mime/mime_addr.h"
#include "mime/mime_decode.h"
#include "mime/mime_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QUOTED_MAX_ESCAPES 4

static int imap_literal(struct buf *out, const uint8_t *s, size_t n)
{
    if (buf_printf(out, "{%zu}\r\n", n) < 0)
        return -1;
    return buf_append(out, s, n);
}

int mime_imap_string(struct buf *out, const uint8_t *s, size_t n)
{
    if (!s)
        return buf_puts(out, "NIL");
    unsigned escapes = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            if (escapes++ < QUOTED_MAX_ESCAPES)
                continue;
            return imap_literal(out, s, n);
        }
        if (c == '\r' || c == '\n' || c >= 0x80 || c == '\0')
            return imap_literal(out, s, n);
    }
    int r = buf_append(out, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            r |= buf_append(out, s + start, i - start);
            r |= buf_append(out, "\\", 1);
            start = i;
        }
    }
    r |= buf_append(out, s + start, n - start);
    r |= buf_append(out, "\"", 1);
    return r < 0 ? -1 : 0;
}

int mime_imap_literal(struct buf *out, const uint8_t *s, size_t n)
{
    if (buf_printf(out, "{%zu}\r\n", n) < 0 || buf_reserve(out, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        out->data[out->len++] = s[i] ? s[i] : 0x80;
    return 0;
}

int mime_imap_cstring(struct buf *out, const char *s)
{
    return mime_imap_string(out, (const uint8_t *)s, s ? strlen(s) : 0);
}

/* NIL, or s as a string with CR and LF removed. */
static int imap_string_nolf(struct buf *out, const uint8_t *s, size_t n)
{
    if (!s)
        return buf_puts(out, "NIL");
    if (!memchr(s, '\r', n) && !memchr(s, '\n', n))
        return mime_imap_string(out, s, n);
    struct buf t = BUF_INIT;
    int r = mime_append_nolf(&t, s, n);
    if (r == 0)
        r = mime_imap_string(out, buf_size(&t) ? buf_ptr(&t) : (const uint8_t *)"", buf_size(&t));
    buf_free(&t);
    return r;
}

static bool lwsp_like(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Subject and display names: white space runs become one space, leading
 * and trailing white space goes, NUL becomes 0x80. Untouched text is
 * quoted as is; changed text is sent as a literal. */
static int imap_string_for_humans(struct buf *out, const uint8_t *s, size_t n)
{
    size_t remove = 0;
    bool prefix = true, last_lwsp = true, modify = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == 0) {
            last_lwsp = false;
            modify = true;
        } else if (lwsp_like(c)) {
            if (c != ' ')
                modify = true;
            if (last_lwsp) {
                modify = true;
                remove++;
            }
            last_lwsp = true;
        } else {
            if (c == '"' || c == '\\' || c >= 0x80)
                modify = true;
            last_lwsp = false;
        }
        if (!last_lwsp)
            prefix = false;
    }
    if (last_lwsp && n > 0 && !prefix) {
        modify = true;
        remove++;
    }
    if (!modify) {
        int r = buf_append(out, "\"", 1);
        r |= buf_append(out, s, n);
        r |= buf_append(out, "\"", 1);
        return r < 0 ? -1 : 0;
    }
    if (n == remove)
        return buf_puts(out, "\"\"");
    if (buf_printf(out, "{%zu}\r\n", n - remove) < 0 || buf_reserve(out, n) < 0)
        return -1;
    last_lwsp = true;
    prefix = true;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == 0) {
            out->data[out->len++] = 0x80;
            last_lwsp = false;
        } else if (lwsp_like(c)) {
            if (!last_lwsp)
                out->data[out->len++] = ' ';
            last_lwsp = true;
        } else {
            out->data[out->len++] = c;
            last_lwsp = false;
        }
        if (!last_lwsp)
            prefix = false;
    }
    if (last_lwsp && n > 0 && !prefix)
        out->len--;
    return 0;
}

/* --- ENVELOPE ------------------------------------------------------------------------------- */

enum env_field {
    ENV_DATE,
    ENV_SUBJECT,
    ENV_FROM,
    ENV_SENDER,
    ENV_REPLY_TO,
    ENV_TO,
    ENV_CC,
    ENV_BCC,
    ENV_IN_REPLY_TO,
    ENV_MESSAGE_ID,
    ENV_COUNT
};

static const char *const env_names[ENV_COUNT] = {
    "Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-ID",
};

static int write_addresses(struct buf *out, const struct mime_addr *a)
{
    if (!a)
        return buf_puts(out, "NIL");
    int r = buf_append(out, "(", 1);
    for (; a && r == 0; a = a->next) {
        r |= buf_append(out, "(", 1);
        if (a->name)
            r |= imap_string_for_humans(out, (const uint8_t *)a->name, strlen(a->name));
        else
            r |= buf_puts(out, "NIL");
        const char *f[3] = {a->route, a->mailbox, a->host};
        for (int i = 0; i < 3; i++) {
            r |= buf_append(out, " ", 1);
            r |= imap_string_nolf(out, (const uint8_t *)f[i], f[i] ? strlen(f[i]) : 0);
        }
        r |= buf_append(out, ")", 1);
    }
    r |= buf_append(out, ")", 1);
    return r < 0 ? -1 : 0;
}

/* Append the addresses of one field to the list *tail_r ends. */
static int envelope_addresses(const struct mime_field *f, struct mime_addr ***tail_r)
{
    const uint8_t *v;
    size_t n;
    struct mime_addr *list;
    mime_field_full_value(f, &v, &n);
    if (mime_addr_parse_flags(v, n, MIME_ADDR_FILL_MISSING | MIME_ADDR_NON_STRICT_DOTS, &list) < 0)
        return -1;
    **tail_r = list;
    while (**tail_r)
        *tail_r = &(**tail_r)->next;
    return 0;
}

/* The envelope of the header block hdr[0..len). For the string fields the
 * last occurrence counts; the address lists of repeated fields are joined
 * (both as Dovecot does). */
static int write_envelope(struct buf *out, const uint8_t *hdr, size_t len)
{
    const uint8_t *val[ENV_COUNT] = {0};
    size_t vlen[ENV_COUNT] = {0};
    struct buf clean[ENV_COUNT];
    struct mime_addr *addr[ENV_COUNT] = {0};
    struct mime_addr **tail[ENV_COUNT];
    for (int i = 0; i < ENV_COUNT; i++) {
        tail[i] = &addr[i];
        buf_init(&clean[i]);
    }
    struct mime_field_iter it;
    struct mime_field f;
    int r = 0;
    mime_field_iter_init(&it, hdr, len);
    while (r == 0 && mime_field_iter_next(&it, &f)) {
        for (int i = 0; i < ENV_COUNT; i++) {
            if (!mime_mem_ieq(f.name, f.name_len, env_names[i]))
                continue;
            if (i >= ENV_FROM && i <= ENV_BCC) {
                r = envelope_addresses(&f, &tail[i]);
            } else {
                mime_field_full_value(&f, &val[i], &vlen[i]);
                if (memchr(val[i], '\0', vlen[i])) {
                    /* NUL becomes U+FFFD, as in Dovecot */
                    buf_reset(&clean[i]);
                    r = mime_append_nonul(&clean[i], val[i], vlen[i], false);
                    val[i] = buf_size(&clean[i]) ? buf_ptr(&clean[i]) : (const uint8_t *)"";
                    vlen[i] = buf_size(&clean[i]);
                }
            }
            break;
        }
    }
    if (r == 0) {
        r |= imap_string_nolf(out, val[ENV_DATE], vlen[ENV_DATE]);
        r |= buf_append(out, " ", 1);
        if (val[ENV_SUBJECT])
            r |= imap_string_for_humans(out, val[ENV_SUBJECT], vlen[ENV_SUBJECT]);
        else
            r |= buf_puts(out, "NIL");
        for (int i = ENV_FROM; i <= ENV_BCC; i++) {
            const struct mime_addr *a = addr[i];
            if (!a && (i == ENV_SENDER || i == ENV_REPLY_TO))
                a = addr[ENV_FROM]; /* RFC 3501 7.4.2 defaults */
            r |= buf_append(out, " ", 1);
            r |= write_addresses(out, a);
        }
        r |= buf_append(out, " ", 1);
        r |= imap_string_nolf(out, val[ENV_IN_REPLY_TO], vlen[ENV_IN_REPLY_TO]);
        r |= buf_append(out, " ", 1);
        r |= imap_string_nolf(out, val[ENV_MESSAGE_ID], vlen[ENV_MESSAGE_ID]);
    }
    for (int i = 0; i < ENV_COUNT; i++) {
        mime_addr_free(&addr[i]);
        buf_free(&clean[i]);
    }
    return r < 0 ? -1 : 0;
}

int mime_imap_envelope(const struct mime_message *m, const struct mime_part *p, struct buf *out)
{
    if (!p)
        p = m->root;
    int r = buf_append(out, "(", 1);
    r |= write_envelope(out, m->data + p->hdr_off, p->hdr_len);
    r |= buf_append(out, ")", 1);
    return r < 0 ? -1 : 0;
}

/* --- BODYSTRUCTURE --------------------------------------------------------------------------- */

#define EMPTY_BODY "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
#define EMPTY_BODYSTRUCTURE                                                                        \
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"

static int write_params(struct buf *out, const struct mime_param *v, size_t n, bool default_charset)
{
    if (!default_charset && n == 0)
        return buf_puts(out, "NIL");
    int r = buf_append(out, "(", 1);
    bool seen_charset = false;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            r |= buf_append(out, " ", 1);
        if (strcasecmp(v[i].name, "charset") == 0)
            seen_charset = true;
        r |= mime_imap_cstring(out, v[i].name);
        r |= buf_append(out, " ", 1);
        r |= mime_imap_cstring(out, v[i].value);
    }
    if (default_charset && !seen_charset) {
        if (n > 0)
            r |= buf_append(out, " ", 1);
        r |= buf_puts(out, "\"charset\" \"us-ascii\"");
    }
    r |= buf_append(out, ")", 1);
    return r < 0 ? -1 : 0;
}

/* disposition, language, location */
static int write_ext_common(struct buf *out, const struct mime_part *p)
{
    int r = buf_append(out, " ", 1);
    if (!p->disposition) {
        r |= buf_puts(out, "NIL");
    } else {
        r |= buf_append(out, "(", 1);
        r |= mime_imap_cstring(out, p->disposition);
        r |= buf_append(out, " ", 1);
        r |= write_params(out, p->disp_params, p->ndisp_params, false);
        r |= buf_append(out, ")", 1);
    }
    r |= buf_append(out, " ", 1);
    if (p->nlanguages == 0) {
        r |= buf_puts(out, "NIL");
    } else {
        r |= buf_append(out, "(", 1);
        for (size_t i = 0; i < p->nlanguages; i++) {
            if (i > 0)
                r |= buf_append(out, " ", 1);
            r |= mime_imap_cstring(out, p->languages[i]);
        }
        r |= buf_append(out, ")", 1);
    }
    r |= buf_append(out, " ", 1);
    r |= mime_imap_cstring(out, p->location);
    return r < 0 ? -1 : 0;
}

static int write_part(struct buf *out, const struct mime_message *m, const struct mime_part *p,
                      bool ext);

static int write_multipart(struct buf *out, const struct mime_message *m, const struct mime_part *p,
                           bool ext)
{
    int r = 0;
    if (!p->children) {
        /* a multipart without parts is not allowed: show one empty part */
        r |= buf_puts(out, ext ? EMPTY_BODYSTRUCTURE : EMPTY_BODY);
    }
    for (const struct mime_part *c = p->children; c; c = c->next) {
        r |= buf_append(out, "(", 1);
        r |= write_part(out, m, c, ext);
        r |= buf_append(out, ")", 1);
    }
    r |= buf_append(out, " ", 1);
    r |= mime_imap_cstring(out, p->subtype);
    if (ext) {
        r |= buf_append(out, " ", 1);
        r |= write_params(out, p->params, p->nparams, false);
        r |= write_ext_common(out, p);
    }
    return r < 0 ? -1 : 0;
}

/* Shown with envelope, structure and lines: message/rfc822 (and, for
 * IMAP4rev2 clients, message/global). */
static bool shown_as_message(const struct mime_part *p)
{
    return mime_part_is(p, "message", "rfc822") && (p->flags & MIME_PART_MESSAGE) && p->children;
}

static bool structure_lost(const struct mime_part *p)
{
    return (mime_part_is(p, "multipart", NULL) && !(p->flags & MIME_PART_MULTIPART)) ||
           (mime_part_is(p, "message", "rfc822") && !(p->flags & MIME_PART_MESSAGE));
}

static int write_basic(struct buf *out, const struct mime_message *m, const struct mime_part *p,
                       bool ext)
{
    int r = 0;
    bool text = false, message = shown_as_message(p);
    if (message) {
        r |= buf_puts(out, "\"message\" \"rfc822\"");
    } else if (structure_lost(p)) {
        /* a multipart or message whose structure was not parsed (a limit,
         * or a subtype-less "multipart"): opaque data */
        r |= buf_puts(out, "\"application\" \"octet-stream\"");
    } else {
        text = strcasecmp(p->type, "text") == 0;
        r |= mime_imap_cstring(out, p->type);
        r |= buf_append(out, " ", 1);
        r |= mime_imap_cstring(out, p->subtype);
    }
    r |= buf_append(out, " ", 1);
    r |= write_params(out, p->params, p->nparams, text);
    r |= buf_append(out, " ", 1);
    r |= mime_imap_cstring(out, p->id);
    r |= buf_append(out, " ", 1);
    r |= mime_imap_cstring(out, p->description);
    r |= buf_append(out, " ", 1);
    r |= mime_imap_cstring(out, p->encoding ? p->encoding : "7bit");
    r |= buf_printf(out, " %zu", p->body_len);
    if (text) {
        r |= buf_printf(out, " %zu", p->body_lines);
    } else if (message) {
        const struct mime_part *c = p->children;
        r |= buf_append(out, " ", 1);
        r |= mime_imap_envelope(m, c, out);
        r |= buf_append(out, " (", 2);
        r |= write_part(out, m, c, ext);
        r |= buf_append(out, ")", 1);
        r |= buf_printf(out, " %zu", p->body_lines);
    }
    if (ext) {
        r |= buf_append(out, " ", 1);
        r |= mime_imap_cstring(out, p->md5);
        r |= write_ext_common(out, p);
    }
    return r < 0 ? -1 : 0;
}

static int write_part(struct buf *out, const struct mime_message *m, const struct mime_part *p,
                      bool ext)
{
    if (p->flags & MIME_PART_MULTIPART)
        return write_multipart(out, m, p, ext);
    return write_basic(out, m, p, ext);
}

int mime_imap_bodystructure(const struct mime_message *m, const struct mime_part *p, bool extended,
                            struct buf *out)
{
    int r = buf_append(out, "(", 1);
    r |= write_part(out, m, p ? p : m->root, extended);
    r |= buf_append(out, ")", 1);
    return r < 0 ? -1 : 0;
}

void mime_index_cache_compute(const uint8_t *data, size_t len, const struct mime_limits *limits,
                              struct mime_index_cache *c)
{
    memset(c, 0, sizeof(*c));
    struct mime_message *m = mime_parse(data, len, limits);
    if (!m)
        return;
    struct buf env = BUF_INIT, bs = BUF_INIT;
    /* Text columns: a NUL inside would cut them short, so such an item is
     * not cached (FETCH then computes it from the file). */
    if (mime_imap_envelope(m, NULL, &env) == 0 && buf_cstr(&env) &&
        strlen(buf_cstr(&env)) == buf_size(&env))
        c->envelope = strdup(buf_cstr(&env));
    if (mime_imap_bodystructure(m, NULL, true, &bs) == 0 && buf_cstr(&bs) &&
        strlen(buf_cstr(&bs)) == buf_size(&bs))
        c->bodystructure = strdup(buf_cstr(&bs));
    if (mime_search_fields(m, &c->fields) < 0)
        buf_free(&c->fields);
    buf_free(&env);
    buf_free(&bs);
    mime_message_free(&m);
}

void mime_index_cache_free(struct mime_index_cache *c)
{
    free(c->envelope);
    free(c->bodystructure);
    buf_free(&c->fields);
    memset(c, 0, sizeof(*c));
}
