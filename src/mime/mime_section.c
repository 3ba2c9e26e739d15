/* mime_section — IMAP body sections (RFC 3501 6.4.5): parse the section
 * text, find the part, and give its bytes.
 *
 * Part numbers are resolved as Dovecot does (lib-imap-storage/imap-msgpart.c):
 * in a multipart, N is its Nth body part; a non-multipart part only has
 * part 1 (itself), and numbers after it continue inside a message/rfc822
 * part's encapsulated message. HEADER, HEADER.FIELDS[.NOT] and TEXT apply
 * to the top-level message or to a message/rfc822 part's encapsulated
 * message; MIME is a part's own header.
 */
#include "mime/mime.h"
#include "mime/mime_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

static bool starts_ci(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && strncasecmp(p, word, n) == 0;
}

/* astring: atom characters, or a quoted string. */
static int parse_field_name(const char **pp, const char *end, char **name_r)
{
    const char *p = *pp;
    struct buf b = BUF_INIT;
    int r = 0;
    if (p < end && *p == '"') {
        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end)
                p++;
            r |= buf_append(&b, p, 1);
        }
        if (p >= end) {
            buf_free(&b);
            return -1;
        }
        p++;
    } else {
        const char *s = p;
        while (p < end && *p != ' ' && *p != ')' && *p != '(' && *p != '"' &&
               (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
            p++;
        if (p == s)
            return -1;
        r |= buf_append(&b, s, (size_t)(p - s));
    }
    if (r < 0 || buf_size(&b) == 0) {
        buf_free(&b);
        return -1;
    }
    *name_r = strndup((const char *)buf_ptr(&b), buf_size(&b));
    buf_free(&b);
    if (!*name_r)
        return -1;
    *pp = p;
    return 0;
}

static int parse_field_list(const char *p, const char *end, struct mime_section *s)
{
    if (p >= end || *p != '(')
        return -1;
    p++;
    size_t cap = 0;
    for (;;) {
        while (p < end && *p == ' ')
            p++;
        if (p < end && *p == ')')
            break;
        char *name;
        if (parse_field_name(&p, end, &name) < 0)
            return -1;
        if (s->nfields == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **nv = realloc(s->fields, ncap * sizeof(*nv));
            if (!nv) {
                free(name);
                return -1;
            }
            s->fields = nv;
            cap = ncap;
        }
        s->fields[s->nfields++] = name;
    }
    p++; /* ")" */
    if (p != end || s->nfields == 0)
        return -1;
    return 0;
}

int mime_section_parse(const char *text, size_t len, struct mime_section *s, char *err,
                       size_t errlen)
{
    memset(s, 0, sizeof(*s));
    const char *p = text, *end = text + len;
    /* part numbers */
    while (p < end && isdigit((unsigned char)*p)) {
        unsigned long v = 0;
        while (p < end && isdigit((unsigned char)*p)) {
            v = v * 10 + (unsigned long)(*p - '0');
            if (v > 0xffffffUL) {
                set_err(err, errlen, "part number too large");
                return -1;
            }
            p++;
        }
        if (v == 0) {
            set_err(err, errlen, "part number 0");
            return -1;
        }
        if (s->npart == MIME_SECTION_MAX_PARTS) {
            set_err(err, errlen, "part numbers nested too deep");
            return -1;
        }
        s->part[s->npart++] = (unsigned)v;
        if (p < end && *p == '.') {
            p++;
            if (p == end) {
                set_err(err, errlen, "section ends with '.'");
                return -1;
            }
        } else if (p < end) {
            set_err(err, errlen, "bad section");
            return -1;
        }
    }
    if (p == end)
        return 0; /* [] or [1.2] */
    if (starts_ci(p, end, "HEADER.FIELDS.NOT ")) {
        s->spec = MIME_SECTION_HEADER_FIELDS_NOT;
        p += 18;
    } else if (starts_ci(p, end, "HEADER.FIELDS ")) {
        s->spec = MIME_SECTION_HEADER_FIELDS;
        p += 14;
    } else if ((size_t)(end - p) == 6 && starts_ci(p, end, "HEADER")) {
        s->spec = MIME_SECTION_HEADER;
        return 0;
    } else if ((size_t)(end - p) == 4 && starts_ci(p, end, "TEXT")) {
        s->spec = MIME_SECTION_TEXT;
        return 0;
    } else if ((size_t)(end - p) == 4 && starts_ci(p, end, "MIME") && s->npart > 0) {
        s->spec = MIME_SECTION_MIME;
        return 0;
    } else {
        set_err(err, errlen, "unknown section text");
        return -1;
    }
    if (parse_field_list(p, end, s) < 0) {
        mime_section_clear(s);
        set_err(err, errlen, "bad header field list");
        return -1;
    }
    return 0;
}

void mime_section_clear(struct mime_section *s)
{
    for (size_t i = 0; i < s->nfields; i++)
        free(s->fields[i]);
    free(s->fields);
    s->fields = NULL;
    s->nfields = 0;
}

const struct mime_part *mime_section_part(const struct mime_message *m, const unsigned *part,
                                          unsigned npart)
{
    const struct mime_part *p = m->root;
    for (unsigned i = 0; i < npart && p; i++) {
        unsigned num = part[i];
        bool more = i + 1 < npart;
        if (p->flags & MIME_PART_MULTIPART) {
            p = p->children;
            for (; num > 1 && p; num--)
                p = p->next;
        } else if (num != 1 || (more && !(p->flags & MIME_PART_MESSAGE))) {
            p = NULL;
        }
        if (p && more && (p->flags & MIME_PART_MESSAGE))
            p = p->children; /* continue inside the encapsulated message */
    }
    return p;
}

static bool field_listed(const struct mime_field *f, char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (mime_mem_ieq(f->name, f->name_len, names[i]))
            return true;
    }
    return false;
}

/* The fields named (or, for .NOT, not named) in s, as they are written,
 * then an empty line, as Dovecot writes them: always for the top-level
 * HEADER.FIELDS; otherwise when the header had one, or when a delimiter
 * line cut it short (Dovecot reads on past the delimiter to the next
 * empty line; only the fields of the header itself are given here). */
static int build_fields(const struct mime_message *m, const struct mime_part *p,
                        const struct mime_section *s, struct buf *out)
{
    struct mime_field_iter it;
    struct mime_field f;
    bool want = s->spec == MIME_SECTION_HEADER_FIELDS;
    mime_field_iter_init(&it, m->data + p->hdr_off, p->hdr_len);
    while (mime_field_iter_next_all(&it, &f)) {
        if (field_listed(&f, s->fields, s->nfields) == want &&
            buf_append(out, f.line, f.line_len) < 0)
            return -1;
    }
    bool eoh = !(p->flags & MIME_PART_HDR_NO_EOH) || (want && s->npart == 0) ||
               p->hdr_off + p->hdr_len < m->size;
    if (eoh && buf_append(out, "\r\n", 2) < 0)
        return -1;
    return 0;
}

enum mime_section_result mime_section_fetch(const struct mime_message *m,
                                            const struct mime_section *s, size_t *off_r,
                                            size_t *len_r, struct buf *built)
{
    const struct mime_part *p = mime_section_part(m, s->part, s->npart);
    *off_r = *len_r = 0;
    if (!p)
        return MIME_SECTION_NONE;
    switch (s->spec) {
    case MIME_SECTION_ALL:
        if (s->npart == 0) {
            *len_r = m->size;
        } else {
            *off_r = p->body_off;
            *len_r = p->body_len;
        }
        return MIME_SECTION_RANGE;
    case MIME_SECTION_MIME:
        if (s->npart == 0)
            return MIME_SECTION_NONE;
        *off_r = p->hdr_off;
        *len_r = p->hdr_len;
        return MIME_SECTION_RANGE;
    default:
        break;
    }
    if (s->npart > 0) {
        /* HEADER and TEXT of a part: only inside a message/rfc822 */
        if (!(p->flags & MIME_PART_MESSAGE) || !p->children)
            return MIME_SECTION_NONE;
        p = p->children;
    }
    switch (s->spec) {
    case MIME_SECTION_HEADER:
        *off_r = p->hdr_off;
        *len_r = p->hdr_len;
        return MIME_SECTION_RANGE;
    case MIME_SECTION_TEXT:
        *off_r = p->body_off;
        *len_r = p->body_len;
        return MIME_SECTION_RANGE;
    case MIME_SECTION_HEADER_FIELDS:
    case MIME_SECTION_HEADER_FIELDS_NOT:
        if (build_fields(m, p, s, built) < 0)
            return MIME_SECTION_NOMEM;
        return MIME_SECTION_BUILT;
    default:
        return MIME_SECTION_NONE;
    }
}

static int section_name(const struct mime_part *p, struct buf *out);

/* The numbers that lead into the encapsulated message of message part mp. */
static int message_base(const struct mime_part *mp, struct buf *out)
{
    if (!mp->parent)
        return buf_puts(out, "1"); /* a top-level message/rfc822 is part 1 */
    return section_name(mp, out);
}

static int section_name(const struct mime_part *p, struct buf *out)
{
    const struct mime_part *pp = p->parent;
    if (!pp)
        return 0;
    if (pp->flags & MIME_PART_MESSAGE) {
        /* the encapsulated message: its body is ".1" unless it is multipart */
        if (message_base(pp, out) < 0)
            return -1;
        if (p->flags & MIME_PART_MULTIPART)
            return 0;
        return buf_puts(out, ".1");
    }
    unsigned k = 1;
    for (const struct mime_part *c = pp->children; c && c != p; c = c->next)
        k++;
    int r;
    if (pp->parent && (pp->parent->flags & MIME_PART_MESSAGE))
        r = message_base(pp->parent, out);
    else
        r = section_name(pp, out);
    if (r < 0)
        return -1;
    return buf_printf(out, buf_size(out) ? ".%u" : "%u", k);
}

int mime_part_section_name(const struct mime_message *m, const struct mime_part *p, struct buf *out)
{
    (void)m;
    struct buf tmp = BUF_INIT;
    int r = section_name(p, &tmp);
    if (r == 0)
        r = buf_append(out, buf_ptr(&tmp), buf_size(&tmp));
    buf_free(&tmp);
    return r;
}
