/* fuzz_mime — libFuzzer target for the MIME parser and everything built on it.
 *
 * Input layout: the first octet picks the limits (bits 0-2: max_depth
 * 1..7 or the default, bit 3: a small max_parts, bit 4: a small header
 * limit) and whether the message is first normalized to CRLF (bit 5); the
 * rest is the message.
 *
 * For each input: parse; write ENVELOPE, BODY and BODYSTRUCTURE; fetch
 * every kind of section of every part; decode and search the text; parse
 * the whole input as an address list and as a section specifier; decode
 * it as a header. Checked on the way (a failure traps):
 *  - every part's ranges lie inside the message, header before body,
 *    a child inside its parent's body;
 *  - ENVELOPE and BODYSTRUCTURE are well-formed IMAP (balanced lists of
 *    NIL, numbers, quoted strings and exact literals);
 *  - decoded text is valid UTF-8;
 *  - part section names lead back to their part;
 *  - the streaming parser (mime_stream_*), fed the message in chunks whose
 *    sizes come from the input (bit 6 of the first octet: tiny chunks),
 *    gives the same tree, header blocks, ENVELOPEs, BODY and BODYSTRUCTURE
 *    as mime_parse.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_addr.h"
#include "mime/mime_decode.h"
#include "mime/mime_imap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static bool utf8_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (len == 0 || c > 0xf4 || n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        }
        i += len;
    }
    return true;
}

/* One IMAP value at *pos: NIL, a number, a quoted string, a literal or a list. */
static bool imap_value(const uint8_t *s, size_t n, size_t *pos, unsigned depth)
{
    size_t i = *pos;
    if (i >= n || depth > 200)
        return false;
    if (s[i] == '(') {
        i++;
        bool first = true;
        while (i < n && s[i] != ')') {
            if (!first) {
                /* lists of lists are written without spaces between them */
                if (s[i] == ' ')
                    i++;
                else if (s[i] != '(')
                    return false;
            }
            if (!imap_value(s, n, &i, depth + 1))
                return false;
            first = false;
        }
        if (i >= n)
            return false;
        *pos = i + 1;
        return true;
    }
    if (s[i] == '"') {
        for (i++; i < n && s[i] != '"'; i++) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '\r' || s[i] == '\n' || s[i] >= 0x80 || s[i] == 0)
                return false;
        }
        if (i >= n)
            return false;
        *pos = i + 1;
        return true;
    }
    if (s[i] == '{') {
        size_t len = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            len = len * 10 + (size_t)(s[i] - '0');
        if (n - i < 3 || memcmp(s + i, "}\r\n", 3) != 0 || n - i - 3 < len)
            return false;
        *pos = i + 3 + len;
        return true;
    }
    if (n - i >= 3 && memcmp(s + i, "NIL", 3) == 0) {
        *pos = i + 3;
        return true;
    }
    size_t start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    *pos = i;
    return i > start;
}

static void check_imap(const struct buf *b)
{
    size_t pos = 0;
    fuzz_check(imap_value(buf_ptr(b), buf_size(b), &pos, 0));
    fuzz_check(pos == buf_size(b));
}

static void check_tree(const struct mime_message *m)
{
    unsigned n = 0;
    struct buf name = BUF_INIT;
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
        n++;
        fuzz_check(p->hdr_off + p->hdr_len <= p->body_off);
        fuzz_check(p->body_off + p->body_len <= m->size);
        fuzz_check(p->type && p->subtype);
        if (p->parent) {
            const struct mime_part *pp = p->parent;
            fuzz_check(p->hdr_off >= pp->body_off);
            fuzz_check(p->body_off + p->body_len <= pp->body_off + pp->body_len);
        }
        /* the section name leads back here, unless it is the encapsulated
         * multipart, which has its message part's name */
        buf_reset(&name);
        fuzz_check(mime_part_section_name(m, p, &name) == 0);
        const uint8_t *s = buf_ptr(&name);
        size_t len = buf_size(&name);
        unsigned nums[MIME_SECTION_MAX_PARTS], k = 0;
        for (size_t i = 0; i < len && k < MIME_SECTION_MAX_PARTS; k++) {
            unsigned v = 0;
            while (i < len && s[i] != '.')
                v = v * 10 + (unsigned)(s[i++] - '0');
            nums[k] = v;
            i++;
        }
        bool encapsulated_multipart =
            p->parent && (p->parent->flags & MIME_PART_MESSAGE) && (p->flags & MIME_PART_MULTIPART);
        if (p->parent && !encapsulated_multipart && p->depth < MIME_SECTION_MAX_PARTS)
            fuzz_check(mime_section_part(m, nums, k) == p);
    }
    fuzz_check(n == m->nparts);
    buf_free(&name);
}

static void fetch_all(const struct mime_message *m)
{
    static const char *const specs[] = {"",
                                        ".MIME",
                                        ".HEADER",
                                        ".TEXT",
                                        ".1",
                                        ".HEADER.FIELDS (Subject From X)",
                                        ".HEADER.FIELDS.NOT (Content-Type)"};
    struct buf name = BUF_INIT, sec = BUF_INIT, out = BUF_INIT;
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
        buf_reset(&name);
        mime_part_section_name(m, p, &name);
        for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
            buf_reset(&sec);
            buf_append(&sec, buf_ptr(&name), buf_size(&name));
            buf_puts(&sec, buf_size(&name) || specs[i][0] != '.' ? specs[i] : specs[i] + 1);
            struct mime_section s;
            char err[64];
            const char *t = buf_cstr(&sec);
            if (mime_section_parse(t, strlen(t), &s, err, sizeof(err)) < 0)
                continue;
            size_t off, len;
            buf_reset(&out);
            enum mime_section_result r = mime_section_fetch(m, &s, &off, &len, &out);
            fuzz_check(r != MIME_SECTION_NOMEM);
            if (r == MIME_SECTION_RANGE)
                fuzz_check(off + len <= m->size);
            mime_section_clear(&s);
        }
        buf_reset(&out);
        fuzz_check(mime_part_decode_text(m, p, &out) == 0);
        if (!p->children && mime_part_is(p, "text", NULL))
            fuzz_check(utf8_ok(buf_ptr(&out), buf_size(&out)));
        for (size_t i = 0; i < p->nparams; i++)
            fuzz_check(
                utf8_ok((const uint8_t *)p->params[i].decoded, strlen(p->params[i].decoded)));
    }
    buf_free(&name);
    buf_free(&sec);
    buf_free(&out);
}

static bool buf_eq(const struct buf *a, const struct buf *b)
{
    return buf_size(a) == buf_size(b) && memcmp(buf_ptr(a), buf_ptr(b), buf_size(a)) == 0;
}

/* ENVELOPE of every message, BODY and BODYSTRUCTURE, into out. */
static void imap_items(const struct mime_message *m, struct buf *out)
{
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
        if (!p->parent || (p->parent->flags & MIME_PART_MESSAGE))
            fuzz_check(mime_imap_envelope(m, p, out) == 0);
    }
    fuzz_check(mime_imap_bodystructure(m, NULL, false, out) == 0);
    fuzz_check(mime_imap_bodystructure(m, NULL, true, out) == 0);
}

/* The streaming parser against mime_parse's result m. */
static void check_stream(const uint8_t *msg, size_t len, const struct mime_limits *lim,
                         const struct mime_message *m, const uint8_t *sizes, size_t nsizes,
                         unsigned maxchunk)
{
    struct mime_stream *s = mime_stream_new(lim);
    fuzz_check(s != NULL);
    for (size_t pos = 0, i = 0; pos < len; i++) {
        size_t n = nsizes ? 1 + sizes[i % nsizes] % maxchunk : len;
        if (n > len - pos)
            n = len - pos;
        fuzz_check(mime_stream_feed(s, msg + pos, n) == 0);
        pos += n;
    }
    struct mime_message *sm = mime_stream_finish(s);
    fuzz_check(sm != NULL);
    fuzz_check(sm->headers_only && sm->size == m->size && sm->nparts == m->nparts);
    fuzz_check(sm->limit_hit == m->limit_hit);
    const struct mime_part *p = m->root, *q = sm->root;
    for (; p && q; p = mime_part_walk_next(p), q = mime_part_walk_next(q)) {
        fuzz_check(p->flags == q->flags && p->depth == q->depth && p->nchildren == q->nchildren);
        fuzz_check(p->hdr_len == q->hdr_len && p->hdr_lines == q->hdr_lines);
        fuzz_check(p->body_off == q->body_off && p->body_len == q->body_len);
        fuzz_check(p->body_lines == q->body_lines);
        fuzz_check(q->hdr_off + q->hdr_len <= sm->data_len);
        fuzz_check(memcmp(m->data + p->hdr_off, sm->data + q->hdr_off, p->hdr_len) == 0);
    }
    fuzz_check(!p && !q);
    struct buf a = BUF_INIT, b = BUF_INIT;
    imap_items(m, &a);
    imap_items(sm, &b);
    fuzz_check(buf_eq(&a, &b));
    buf_free(&a);
    buf_free(&b);
    mime_message_free(&sm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    struct mime_limits lim = {
        .max_depth = (mode & 7) ? (unsigned)(mode & 7) : 0,
        .max_parts = (mode & 8) ? 5 : 0,
        .max_header_size = (mode & 16) ? 64 : 0,
    };
    struct buf norm = BUF_INIT, out = BUF_INIT;
    const uint8_t *msg = data;
    size_t len = size;
    if (mode & 32) {
        fuzz_check(mime_crlf_normalize(data, size, &norm) == 0);
        msg = buf_ptr(&norm);
        len = buf_size(&norm);
    }
    struct mime_message *m = mime_parse(msg, len, &lim);
    fuzz_check(m != NULL);
    check_tree(m);
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
        if (!p->parent || (p->parent->flags & MIME_PART_MESSAGE)) {
            buf_reset(&out);
            fuzz_check(mime_imap_envelope(m, p, &out) == 0);
            check_imap(&out);
        }
    }
    for (int ext = 0; ext < 2; ext++) {
        buf_reset(&out);
        fuzz_check(mime_imap_bodystructure(m, NULL, ext, &out) == 0);
        check_imap(&out);
    }
    fetch_all(m);
    check_stream(msg, len, &lim, m, NULL, 0, 1);
    check_stream(msg, len, &lim, m, data, size, (mode & 64) ? 3 : 97);
    char needle[8] = {0};
    memcpy(needle, data, size < 4 ? size : 4);
    for (size_t i = 0; i < 4; i++)
        needle[i] = needle[i] ? (char)(needle[i] & 0x7f) : 'a';
    fuzz_check(mime_search_text(m, MIME_SEARCH_TEXT, NULL, needle) >= 0);
    fuzz_check(mime_search_text(m, MIME_SEARCH_HEADER, "Subject", needle) >= 0);
    mime_message_free(&m);

    /* the raw input as an address list, a header value and a section */
    struct mime_addr *al;
    fuzz_check(mime_addr_parse(data, size, &al) == 0);
    for (const struct mime_addr *a = al; a; a = a->next)
        fuzz_check(!(a->group_start && a->group_end));
    mime_addr_free(&al);
    buf_reset(&out);
    fuzz_check(mime_header_decode(data, size, &out) == 0);
    fuzz_check(utf8_ok(buf_ptr(&out), buf_size(&out)));
    struct mime_section s;
    char err[64];
    if (size < 256 && !memchr(data, 0, size) &&
        mime_section_parse((const char *)data, size, &s, err, sizeof(err)) == 0)
        mime_section_clear(&s);
    buf_free(&out);
    buf_free(&norm);
    return 0;
}
