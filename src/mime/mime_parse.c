/* mime_parse — the message parser: header blocks, Content-* fields, the
 * part tree with multipart boundaries and encapsulated messages.
 *
 * One pass over the message, line by line. A stack of the active multipart
 * boundaries is checked at the start of each line that begins with "--"
 * (RFC 2046 5.1.1); when a line matches several, the longest boundary wins,
 * and a match of an outer boundary ends every part nested inside it (so a
 * missing close delimiter costs nothing). The line break before a
 * delimiter line belongs to the delimiter. A header is also ended by a
 * boundary line. The choices on broken MIME follow Dovecot's
 * lib-mail/message-parser.c, so that BODYSTRUCTURE sizes match.
 */
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "mime/mime_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The public part plus parser state. */
struct part_int {
    struct mime_part pub; /* first: a struct mime_part * is a struct part_int * */
    struct mime_part *last_child;
    size_t lf_body;          /* line feeds before body_off */
    bool is_mime;            /* MIME-Version or Content-Type seen, or inside a multipart */
    bool seen_ct;            /* a Content-Type field was seen */
    bool digest;             /* multipart/digest: children default to message/rfc822 */
    bool want_child_message; /* message/rfc822 (before limits) */
    bool global;             /* message/global: parsed afterwards, see parse_globals() */
    const char *boundary;    /* multipart boundary parameter, or NULL */
    size_t boundary_len;
};

struct bnd {
    struct bnd *next;
    const uint8_t *s;
    size_t len;
    struct part_int *part;
};

struct pctx {
    const uint8_t *d;
    size_t n;
    size_t pos; /* current position, always at a line start or at n */
    size_t lf;  /* line feeds before pos */
    struct mime_message *m;
    struct mime_arena *a;
    struct mime_limits lim;
    struct bnd *bounds;
    size_t cut_nl;        /* line break size before the delimiter that cut a header */
    struct part_int *top; /* the parts above this one end elsewhere (message/global) */
    size_t eoh_nl;        /* size of the empty line that ended the last header */
    bool oom;
    struct buf tmp;
};

void mime_limits_default(struct mime_limits *lim)
{
    lim->max_depth = MIME_DEFAULT_MAX_DEPTH;
    lim->max_parts = MIME_DEFAULT_MAX_PARTS;
    lim->max_header_size = MIME_DEFAULT_MAX_HEADER_SIZE;
}

static char *pstrndup(struct pctx *c, const void *s, size_t n)
{
    char *r = mime_arena_strndup(c->a, s, n);
    if (!r) {
        c->oom = true;
        return (char *)"";
    }
    return r;
}

/* --- header fields --------------------------------------------------------------------- */

void mime_field_iter_init(struct mime_field_iter *it, const uint8_t *hdr, size_t len)
{
    it->p = hdr;
    it->len = len;
    it->pos = 0;
}

bool mime_field_iter_next_all(struct mime_field_iter *it, struct mime_field *f)
{
    const uint8_t *p = it->p;
    size_t n = it->len, pos = it->pos;
    if (pos >= n)
        return false;
    const uint8_t *nl = memchr(p + pos, '\n', n - pos);
    size_t eol = nl ? (size_t)(nl - p) : n; /* the LF, or n */
    size_t content = eol;
    if (nl && content > pos && p[content - 1] == '\r')
        content--;
    if (nl && content == pos) {
        it->pos = n; /* the empty line ends the header */
        return false;
    }
    /* the name: up to ':' on the first line */
    const uint8_t *colon = memchr(p + pos, ':', content - pos);
    /* the extent: continuation lines start with white space */
    size_t end = nl ? eol + 1 : n;
    size_t vend = content;
    while (end < n && MIME_IS_LWSP(p[end])) {
        const uint8_t *nl2 = memchr(p + end, '\n', n - end);
        size_t e2 = nl2 ? (size_t)(nl2 - p) : n;
        size_t c2 = e2;
        if (nl2 && c2 > end && p[c2 - 1] == '\r')
            c2--;
        vend = c2;
        end = nl2 ? e2 + 1 : n;
    }
    f->line = p + pos;
    f->line_len = end - pos;
    if (colon) {
        size_t nl_ = (size_t)(colon - (p + pos));
        while (nl_ > 0 && MIME_IS_LWSP(p[pos + nl_ - 1]))
            nl_--;
        const uint8_t *nul = memchr(p + pos, '\0', nl_);
        if (nul)
            nl_ = (size_t)(nul - (p + pos)); /* the name ends at a NUL (as in Dovecot) */
        f->name = p + pos;
        f->name_len = nl_;
        f->value = colon + 1;
        f->value_len = (size_t)(p + vend - (colon + 1));
    } else {
        f->name = p + pos;
        f->name_len = content - pos;
        f->value = NULL;
        f->value_len = 0;
    }
    it->pos = end;
    return true;
}

bool mime_field_iter_next(struct mime_field_iter *it, struct mime_field *f)
{
    while (mime_field_iter_next_all(it, f)) {
        if (f->value)
            return true;
    }
    return false;
}

void mime_field_full_value(const struct mime_field *f, const uint8_t **v_r, size_t *n_r)
{
    const uint8_t *v = f->value;
    size_t n = f->value_len;
    if (!v) {
        *v_r = (const uint8_t *)"";
        *n_r = 0;
        return;
    }
    /* the first line of the value */
    size_t first = 0;
    while (first < n && v[first] != '\n')
        first++;
    if (first < n && first > 0 && v[first - 1] == '\r')
        first--;
    size_t skip = 0;
    while (skip < first && MIME_IS_LWSP(v[skip]))
        skip++;
    if (skip == first && first > 0)
        skip = 1; /* only white space: skip just one */
    *v_r = v + skip;
    *n_r = n - skip;
}

bool mime_part_field(const struct mime_message *m, const struct mime_part *p, const char *name,
                     struct mime_field *f)
{
    struct mime_field_iter it;
    mime_field_iter_init(&it, m->data + p->hdr_off, p->hdr_len);
    while (mime_field_iter_next(&it, f)) {
        if (mime_mem_ieq(f->name, f->name_len, name))
            return true;
    }
    return false;
}

/* --- Content-* fields ------------------------------------------------------------------- */

/* Copy params into the arena, with their decoded views. */
static struct mime_param *params_copy(struct pctx *c, struct mime_lex_param *lp, size_t n)
{
    if (n == 0)
        return NULL;
    struct mime_param *v = mime_arena_alloc(c->a, n * sizeof(*v));
    if (!v) {
        c->oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        v[i].name = pstrndup(c, lp[i].key, strlen(lp[i].key));
        v[i].value = pstrndup(c, lp[i].value, strlen(lp[i].value));
        v[i].decoded = v[i].value;
    }
    return v;
}

/* The decoded view of each parameter (RFC 2231, RFC 2047, 8-bit). */
static void params_decode(struct pctx *c, struct mime_param *v, size_t n)
{
    struct buf cs = BUF_INIT, lang = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(v[i].name);
        const uint8_t *val = (const uint8_t *)v[i].value;
        size_t vl = strlen(v[i].value);
        buf_reset(&c->tmp);
        int r;
        if (nl > 0 && v[i].name[nl - 1] == '*') {
            buf_reset(&cs);
            buf_reset(&lang);
            r = mime_rfc2231_decode(v[i].value, &c->tmp, &cs, &lang);
            if (r == 0 && buf_size(&cs))
                v[i].charset = pstrndup(c, buf_ptr(&cs), buf_size(&cs));
            if (r == 0 && buf_size(&lang))
                v[i].language = pstrndup(c, buf_ptr(&lang), buf_size(&lang));
        } else if (memmem(val, vl, "=?", 2) || !mime_utf8_valid(val, vl)) {
            r = mime_header_decode(val, vl, &c->tmp);
        } else {
            continue;
        }
        if (r < 0) {
            c->oom = true;
            break;
        }
        v[i].decoded = pstrndup(c, buf_ptr(&c->tmp), buf_size(&c->tmp));
    }
    buf_free(&cs);
    buf_free(&lang);
}

static void parse_content_type(struct pctx *c, struct part_int *pi, const uint8_t *v, size_t n)
{
    struct mime_part *p = &pi->pub;
    struct mime_lex l;
    mime_lex_init(&l, v, n, NULL);
    buf_reset(&c->tmp);
    mime_lex_skip_lwsp(&l);
    int ret = mime_lex_content_type(&l, &c->tmp);
    const uint8_t *t = buf_ptr(&c->tmp);
    size_t tl = buf_size(&c->tmp);
    const uint8_t *slash = memchr(t, '/', tl);
    if (slash) {
        p->type = pstrndup(c, t, (size_t)(slash - t));
        p->subtype = pstrndup(c, slash + 1, tl - (size_t)(slash - t) - 1);
    } else {
        /* no "/subtype": the type alone ("text" ""), or "" "" when unusable */
        p->type = pstrndup(c, t, tl);
        p->subtype = (char *)"";
    }
    p->has_content_type = true;
    if (ret < 0)
        return;
    struct mime_lex_param *lp;
    size_t np;
    if (mime_lex_params(&l, &lp, &np) < 0) {
        c->oom = true;
        return;
    }
    p->params = params_copy(c, lp, np);
    p->nparams = p->params ? np : 0;
    mime_lex_params_free(lp, np);
}

static void parse_disposition(struct pctx *c, struct mime_part *p, const uint8_t *v, size_t n)
{
    struct mime_lex l;
    mime_lex_init(&l, v, n, NULL);
    mime_lex_skip_lwsp(&l);
    buf_reset(&c->tmp);
    if (mime_lex_mime_token(&l, &c->tmp) < 0)
        return;
    p->disposition = pstrndup(c, buf_ptr(&c->tmp), buf_size(&c->tmp));
    struct mime_lex_param *lp;
    size_t np;
    if (mime_lex_params(&l, &lp, &np) < 0) {
        c->oom = true;
        return;
    }
    p->disp_params = params_copy(c, lp, np);
    p->ndisp_params = p->disp_params ? np : 0;
    mime_lex_params_free(lp, np);
}

static void parse_cte(struct pctx *c, struct mime_part *p, const uint8_t *v, size_t n)
{
    struct mime_lex l;
    mime_lex_init(&l, v, n, NULL);
    mime_lex_skip_lwsp(&l);
    buf_reset(&c->tmp);
    if (mime_lex_mime_token(&l, &c->tmp) >= 0 && mime_lex_skip_lwsp(&l) == 0 &&
        buf_size(&c->tmp) > 0)
        p->encoding = pstrndup(c, buf_ptr(&c->tmp), buf_size(&c->tmp));
}

static void parse_language(struct pctx *c, struct mime_part *p, const uint8_t *v, size_t n)
{
    /* RFC 3282: 1#Language-tag; as atoms separated by commas */
    struct mime_lex l;
    mime_lex_init(&l, v, n, NULL);
    mime_lex_skip_lwsp(&l);
    size_t count = 0, cap = 0;
    char **langs = NULL;
    for (;;) {
        buf_reset(&c->tmp);
        if (mime_lex_atom(&l, &c->tmp) < 0)
            break;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            char **nl = mime_arena_alloc(c->a, ncap * sizeof(*nl));
            if (!nl) {
                c->oom = true;
                return;
            }
            if (count)
                memcpy(nl, langs, count * sizeof(*nl));
            langs = nl;
            cap = ncap;
        }
        langs[count++] = pstrndup(c, buf_ptr(&c->tmp), buf_size(&c->tmp));
        if (l.p >= l.end || *l.p != ',')
            break;
        l.p++;
        mime_lex_skip_lwsp(&l);
    }
    p->languages = langs;
    p->nlanguages = count;
}

/* A header value as text: CR and LF removed, NUL replaced by U+FFFD. */
static char *value_nolf(struct pctx *c, const uint8_t *v, size_t n)
{
    buf_reset(&c->tmp);
    if (mime_append_nonul(&c->tmp, v, n, true) < 0) {
        c->oom = true;
        return (char *)"";
    }
    return pstrndup(c, buf_ptr(&c->tmp), buf_size(&c->tmp));
}

/* One header field of a part. The first occurrence of each Content-*
 * field counts, except that Content-Disposition is taken again while the
 * one seen had no parameters (as Dovecot does). */
static void part_field(struct pctx *c, struct part_int *pi, const struct mime_field *f)
{
    struct mime_part *p = &pi->pub;
    const uint8_t *v;
    size_t n;
    if (mime_mem_ieq(f->name, f->name_len, "MIME-Version")) {
        pi->is_mime = true;
        return;
    }
    if (f->name_len < 8 || strncasecmp((const char *)f->name, "Content-", 8) != 0)
        return;
    mime_field_full_value(f, &v, &n);
    const char *rest = (const char *)f->name + 8;
    size_t rl = f->name_len - 8;
    if (mime_mem_ieq(rest, rl, "Type")) {
        pi->is_mime = true;
        if (!pi->seen_ct) {
            pi->seen_ct = true;
            parse_content_type(c, pi, v, n);
        }
    } else if (mime_mem_ieq(rest, rl, "Transfer-Encoding")) {
        if (!p->encoding)
            parse_cte(c, p, v, n);
    } else if (mime_mem_ieq(rest, rl, "ID")) {
        if (!p->id)
            p->id = value_nolf(c, v, n);
    } else if (mime_mem_ieq(rest, rl, "MD5")) {
        if (!p->md5)
            p->md5 = value_nolf(c, v, n);
    } else if (mime_mem_ieq(rest, rl, "Description")) {
        if (!p->description)
            p->description = value_nolf(c, v, n);
    } else if (mime_mem_ieq(rest, rl, "Location")) {
        if (!p->location)
            p->location = value_nolf(c, v, n);
    } else if (mime_mem_ieq(rest, rl, "Language")) {
        if (!p->languages)
            parse_language(c, p, v, n);
    } else if (mime_mem_ieq(rest, rl, "Disposition")) {
        if (p->ndisp_params == 0)
            parse_disposition(c, p, v, n);
    }
}

static enum mime_cte cte_of(const char *e)
{
    if (!e || strcasecmp(e, "7bit") == 0)
        return MIME_CTE_7BIT;
    if (strcasecmp(e, "8bit") == 0)
        return MIME_CTE_8BIT;
    if (strcasecmp(e, "binary") == 0)
        return MIME_CTE_BINARY;
    if (strcasecmp(e, "quoted-printable") == 0)
        return MIME_CTE_QP;
    if (strcasecmp(e, "base64") == 0)
        return MIME_CTE_BASE64;
    return MIME_CTE_UNKNOWN;
}

/* After the header: forget Content-* when the part is not MIME, apply the
 * RFC 2045 defaults, and work out what the body holds. */
static void part_header_done(struct pctx *c, struct part_int *pi)
{
    struct mime_part *p = &pi->pub;
    struct part_int *parent = (struct part_int *)p->parent;
    if (!pi->is_mime) {
        /* RFC 2045 4: without MIME-Version the Content-* fields mean nothing */
        p->type = p->subtype = NULL;
        p->params = p->disp_params = NULL;
        p->nparams = p->ndisp_params = 0;
        p->encoding = p->id = p->description = p->md5 = p->disposition = p->location = NULL;
        p->languages = NULL;
        p->nlanguages = 0;
        p->has_content_type = false;
    }
    if (!p->type) {
        /* RFC 2045 5.2 / RFC 2046 5.1.5 defaults */
        if (parent && parent->digest) {
            p->type = (char *)"message";
            p->subtype = (char *)"rfc822";
        } else {
            p->type = (char *)"text";
            p->subtype = (char *)"plain";
        }
    }
    p->cte = cte_of(p->encoding);
    if (pi->is_mime && p->has_content_type && strcasecmp(p->type, "multipart") == 0 &&
        p->subtype[0] != '\0') {
        p->flags |= MIME_PART_MULTIPART;
        pi->digest = strcasecmp(p->subtype, "digest") == 0;
        for (size_t i = 0; i < p->nparams; i++) {
            if (strcasecmp(p->params[i].name, "boundary") == 0) {
                pi->boundary = p->params[i].value;
                pi->boundary_len = strlen(pi->boundary);
                break;
            }
        }
        if (!pi->boundary)
            p->flags |= MIME_PART_NO_BOUNDARY;
    } else if (strcasecmp(p->type, "message") == 0 && strcasecmp(p->subtype, "rfc822") == 0) {
        pi->want_child_message = true;
    } else if (strcasecmp(p->type, "message") == 0 && strcasecmp(p->subtype, "global") == 0) {
        pi->global = true;
    }
    params_decode(c, p->params, p->nparams);
    params_decode(c, p->disp_params, p->ndisp_params);
}

/* --- the tree ----------------------------------------------------------------------------- */

static struct part_int *part_new(struct pctx *c, struct part_int *parent)
{
    struct part_int *pi = mime_arena_alloc(c->a, sizeof(*pi));
    if (!pi) {
        c->oom = true;
        return NULL;
    }
    struct mime_part *p = &pi->pub;
    p->hdr_off = p->body_off = c->pos;
    c->m->nparts++;
    if (parent) {
        struct mime_part *pp = &parent->pub;
        p->parent = pp;
        p->depth = pp->depth + 1;
        if (parent->last_child)
            parent->last_child->next = p;
        else
            pp->children = p;
        parent->last_child = p;
        pp->nchildren++;
        pi->is_mime = (pp->flags & MIME_PART_MULTIPART) != 0;
    }
    return pi;
}

static bool may_add_part(struct pctx *c, const struct part_int *parent)
{
    return c->m->nparts < c->lim.max_parts && parent->pub.depth < c->lim.max_depth;
}

/* The longest active boundary that "--" + boundary starts the line at pos
 * with, or NULL; *close_r tells whether "--" follows (a close delimiter). */
static struct bnd *boundary_at(struct pctx *c, size_t pos, bool *close_r)
{
    if (!c->bounds || c->n - pos < 2 || c->d[pos] != '-' || c->d[pos + 1] != '-')
        return NULL;
    const uint8_t *s = c->d + pos + 2;
    size_t len = c->n - pos - 2;
    struct bnd *best = NULL;
    for (struct bnd *b = c->bounds; b; b = b->next) {
        if (b->len <= len && memcmp(b->s, s, b->len) == 0 && (!best || best->len < b->len))
            best = b;
    }
    if (best)
        *close_r = len >= best->len + 2 && s[best->len] == '-' && s[best->len + 1] == '-';
    return best;
}

static void part_end(struct part_int *pi, size_t end, size_t lf_end)
{
    struct mime_part *p = &pi->pub;
    if (end < p->body_off)
        end = p->body_off;
    p->body_len = end - p->body_off;
    p->body_lines = lf_end >= pi->lf_body ? lf_end - pi->lf_body : 0;
}

/* End every part from pi up to (not including) stop. When a delimiter
 * line cut the header of part cut, the line break before it is in the
 * bodies of cut's ancestors, though in no part of cut (as in Dovecot). */
static void parts_end(struct part_int *pi, struct part_int *stop, size_t end, size_t lf_end,
                      const struct part_int *cut, size_t cut_nl)
{
    bool above_cut = false;
    for (; pi && pi != stop; pi = (struct part_int *)pi->pub.parent) {
        if (above_cut)
            part_end(pi, end + cut_nl, lf_end + (cut_nl > 0));
        else
            part_end(pi, end, lf_end);
        if (pi == cut)
            above_cut = true;
    }
}

static void skip_line(struct pctx *c)
{
    const uint8_t *nl = memchr(c->d + c->pos, '\n', c->n - c->pos);
    if (nl) {
        c->pos = (size_t)(nl - c->d) + 1;
        c->lf++;
    } else {
        c->pos = c->n;
    }
}

enum hdr_end { HDR_EOH, HDR_BOUNDARY, HDR_EOF };

/* Read the header of pi from c->pos. On HDR_BOUNDARY, *b_r and *close_r tell
 * which delimiter line (at c->pos) cut it. */
static enum hdr_end part_header(struct pctx *c, struct part_int *pi, struct bnd **b_r,
                                bool *close_r)
{
    struct mime_part *p = &pi->pub;
    size_t lf0 = c->lf, prev_nl = 0;
    enum hdr_end how;
    p->hdr_off = c->pos;
    for (;;) {
        if (c->pos >= c->n) {
            how = HDR_EOF;
            break;
        }
        if ((*b_r = boundary_at(c, c->pos, close_r)) != NULL) {
            how = HDR_BOUNDARY;
            break;
        }
        struct mime_field_iter it;
        struct mime_field f;
        mime_field_iter_init(&it, c->d + c->pos, c->n - c->pos);
        if (!mime_field_iter_next_all(&it, &f)) {
            /* the empty line */
            c->eoh_nl = c->d[c->pos] == '\r' ? 2 : 1;
            skip_line(c);
            how = HDR_EOH;
            break;
        }
        if (c->pos - p->hdr_off + f.line_len <= c->lim.max_header_size) {
            if (f.value)
                part_field(c, pi, &f);
        } else {
            p->flags |= MIME_PART_HDR_TRUNCATED;
            c->m->limit_hit = true;
        }
        for (size_t i = 0; i < f.line_len; i++)
            c->lf += f.line[i] == '\n';
        c->pos += f.line_len;
        const uint8_t *e = f.line + f.line_len;
        prev_nl = e[-1] != '\n' ? 0 : (f.line_len >= 2 && e[-2] == '\r' ? 2 : 1);
    }
    size_t end = c->pos, lf_end = c->lf;
    c->cut_nl = 0;
    if (how != HDR_EOH)
        p->flags |= MIME_PART_HDR_NO_EOH;
    if (how == HDR_BOUNDARY && prev_nl) {
        /* the line break before the delimiter belongs to the delimiter */
        end -= prev_nl;
        lf_end--;
        c->cut_nl = prev_nl;
    }
    p->hdr_len = end - p->hdr_off;
    p->hdr_lines = lf_end - lf0;
    p->body_off = end;
    pi->lf_body = lf_end;
    return how;
}

enum step { STEP_HEADER, STEP_BODY, STEP_DONE };

struct state {
    struct part_int *cur;
    bool first_line; /* the body scan starts at a line start that may be a delimiter */
};

/* A delimiter line for b was found at c->pos; the parts inside b's
 * multipart end at end. Returns the next step. */
static enum step on_boundary(struct pctx *c, struct state *s, struct bnd *b, bool close, size_t end,
                             size_t lf_end, const struct part_int *cut)
{
    parts_end(s->cur, b->part, end, lf_end, cut, cut ? c->cut_nl : 0);
    if (close)
        b->part->pub.flags &= ~(unsigned)MIME_PART_NO_END;
    c->bounds = close ? b->next : b;
    skip_line(c);
    s->cur = b->part;
    s->first_line = true;
    if (c->bounds && c->bounds->part == s->cur) {
        if (!may_add_part(c, s->cur)) {
            /* too many parts: the rest of this multipart is one opaque body */
            s->cur->pub.flags |= MIME_PART_TRUNCATED;
            c->m->limit_hit = true;
            c->bounds = c->bounds->next;
            return STEP_BODY;
        }
        struct part_int *child = part_new(c, s->cur);
        if (!child)
            return STEP_DONE;
        s->cur = child;
        return STEP_HEADER;
    }
    return STEP_BODY; /* the epilogue */
}

/* Is the line after the header a delimiter of an enclosing multipart (its
 * own boundary, about to be active, would win a tie)? */
static bool eoh_then_delimiter(struct pctx *c, struct part_int *pi, bool limited, struct bnd **b_r,
                               bool *close_r)
{
    struct bnd own = {.next = c->bounds, .part = pi};
    struct bnd *save = c->bounds;
    if (pi->boundary && !limited) {
        own.s = (const uint8_t *)pi->boundary;
        own.len = pi->boundary_len;
        c->bounds = &own;
    }
    *b_r = boundary_at(c, c->pos, close_r);
    c->bounds = save;
    return *b_r && (*b_r)->part != pi;
}

static enum step step_header(struct pctx *c, struct state *s)
{
    struct part_int *pi = s->cur;
    struct bnd *b = NULL;
    bool close = false;
    enum hdr_end how = part_header(c, pi, &b, &close);
    part_header_done(c, pi);
    if (c->oom)
        return STEP_DONE;
    struct mime_part *p = &pi->pub;
    bool limited = !may_add_part(c, pi);
    if (how == HDR_EOH && eoh_then_delimiter(c, pi, limited, &b, &close)) {
        /* as in Dovecot, the empty line's break then belongs to the delimiter */
        p->hdr_len -= c->eoh_nl;
        p->body_off -= c->eoh_nl;
        p->hdr_lines--;
        pi->lf_body--;
        c->cut_nl = c->eoh_nl;
        how = HDR_BOUNDARY;
    }
    if (how == HDR_EOH && pi->boundary) {
        if (limited) {
            /* not parsed: an opaque body (application/octet-stream) */
            p->flags &= ~(unsigned)MIME_PART_MULTIPART;
            p->flags |= MIME_PART_TRUNCATED;
            c->m->limit_hit = true;
        } else {
            struct bnd *nb = mime_arena_alloc(c->a, sizeof(*nb));
            if (!nb) {
                c->oom = true;
                return STEP_DONE;
            }
            nb->s = (const uint8_t *)pi->boundary;
            nb->len = pi->boundary_len;
            nb->part = pi;
            nb->next = c->bounds;
            c->bounds = nb;
            p->flags |= MIME_PART_NO_END;
            s->first_line = true;
            return STEP_BODY;
        }
    }
    if (pi->want_child_message) {
        if (limited) {
            p->flags |= MIME_PART_TRUNCATED;
            c->m->limit_hit = true;
        } else {
            /* the encapsulated message starts where this body does */
            p->flags |= MIME_PART_MESSAGE;
            size_t save = c->pos;
            c->pos = p->body_off;
            struct part_int *child = part_new(c, pi);
            c->pos = save;
            if (!child)
                return STEP_DONE;
            if (how == HDR_EOH) {
                child->lf_body = c->lf;
                s->cur = child;
                return STEP_HEADER;
            }
            /* header cut short: the encapsulated message is empty */
            child->pub.hdr_off = child->pub.body_off = p->body_off;
            child->pub.flags |= MIME_PART_HDR_NO_EOH;
            child->lf_body = pi->lf_body;
            part_header_done(c, child);
            pi = child;
            s->cur = child;
        }
    }
    if (how == HDR_BOUNDARY)
        return on_boundary(c, s, b, close, p->body_off, pi->lf_body, (struct part_int *)p);
    if (how == HDR_EOF) {
        parts_end(pi, c->top, c->n, c->lf, NULL, 0);
        return STEP_DONE;
    }
    s->first_line = true;
    return STEP_BODY;
}

static enum step step_body(struct pctx *c, struct state *s)
{
    bool close = false;
    struct bnd *b;
    size_t scan_from = c->pos;
    if (s->first_line && (b = boundary_at(c, c->pos, &close)) != NULL)
        return on_boundary(c, s, b, close, c->pos, c->lf, NULL);
    while (c->pos < c->n) {
        const uint8_t *nl = memchr(c->d + c->pos, '\n', c->n - c->pos);
        if (!nl) {
            c->pos = c->n;
            break;
        }
        size_t at = (size_t)(nl - c->d);
        c->pos = at + 1;
        c->lf++;
        if (c->bounds && (b = boundary_at(c, c->pos, &close)) != NULL) {
            size_t end = at > scan_from && c->d[at - 1] == '\r' ? at - 1 : at;
            return on_boundary(c, s, b, close, end, c->lf - 1, NULL);
        }
    }
    parts_end(s->cur, c->top, c->n, c->lf, NULL, 0);
    return STEP_DONE;
}

static void parse_run(struct pctx *c, struct part_int *first)
{
    struct state s = {.cur = first};
    enum step st = first ? STEP_HEADER : STEP_DONE;
    while (st != STEP_DONE && !c->oom)
        st = st == STEP_HEADER ? step_header(c, &s) : step_body(c, &s);
}

/* message/global (RFC 6532 3.7) bodies are scanned as opaque data, the way
 * IMAP4rev1 servers see them (so sizes and boundaries agree with theirs);
 * then each is parsed on its own as an encapsulated message, so that its
 * parts can be addressed and searched. */
static void parse_globals(struct pctx *c)
{
    for (const struct mime_part *cp = c->m->root; cp && !c->oom; cp = mime_part_walk_next(cp)) {
        struct part_int *pi = (struct part_int *)cp;
        if (!pi->global || cp->children)
            continue;
        if (!may_add_part(c, pi)) {
            pi->pub.flags |= MIME_PART_TRUNCATED;
            c->m->limit_hit = true;
            continue;
        }
        c->bounds = NULL;
        c->pos = cp->body_off;
        c->n = cp->body_off + cp->body_len;
        c->lf = pi->lf_body;
        c->top = pi;
        pi->pub.flags |= MIME_PART_MESSAGE;
        parse_run(c, part_new(c, pi));
    }
}

/* Flag bodies with 8-bit octets or NULs (leaves; containers inherit). */
static void mark_8bit(struct mime_message *m)
{
    for (const struct mime_part *cp = m->root; cp; cp = mime_part_walk_next(cp)) {
        struct mime_part *p = (struct mime_part *)cp;
        if (p->children || (p->flags & MIME_PART_HAS_8BIT))
            continue;
        const uint8_t *b = m->data + p->body_off;
        bool eight = false;
        for (size_t i = 0; i < p->body_len && !eight; i++)
            eight = b[i] >= 0x80 || b[i] == 0;
        if (eight) {
            for (; p; p = p->parent)
                p->flags |= MIME_PART_HAS_8BIT;
        }
    }
}

struct mime_message *mime_parse(const uint8_t *msg, size_t len, const struct mime_limits *lim)
{
    struct pctx c = {.d = msg ? msg : (const uint8_t *)"", .n = msg ? len : 0};
    mime_limits_default(&c.lim);
    if (lim) {
        if (lim->max_depth)
            c.lim.max_depth = lim->max_depth;
        if (lim->max_parts)
            c.lim.max_parts = lim->max_parts;
        if (lim->max_header_size)
            c.lim.max_header_size = lim->max_header_size;
    }
    c.a = mime_arena_new();
    if (!c.a)
        return NULL;
    c.m = mime_arena_alloc(c.a, sizeof(*c.m));
    if (!c.m) {
        mime_arena_free(c.a);
        return NULL;
    }
    c.m->data = c.d;
    c.m->size = c.n;
    c.m->arena = c.a;
    struct part_int *root = part_new(&c, NULL);
    if (root) {
        c.m->root = &root->pub;
        parse_run(&c, root);
        parse_globals(&c);
    }
    buf_free(&c.tmp);
    if (c.oom) {
        mime_arena_free(c.a);
        return NULL;
    }
    mark_8bit(c.m);
    return c.m;
}

void mime_message_free(struct mime_message **m)
{
    if (!m || !*m)
        return;
    mime_arena_free((*m)->arena);
    *m = NULL;
}

bool mime_part_is(const struct mime_part *p, const char *type, const char *subtype)
{
    return strcasecmp(p->type, type) == 0 && (!subtype || strcasecmp(p->subtype, subtype) == 0);
}

const struct mime_param *mime_param_get(const struct mime_param *params, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++) {
        const char *pn = params[i].name;
        if (strcasecmp(pn, name) == 0)
            return &params[i];
        if (strncasecmp(pn, name, nl) == 0 && pn[nl] == '*' && pn[nl + 1] == '\0')
            return &params[i];
    }
    return NULL;
}

const struct mime_part *mime_part_walk_next(const struct mime_part *p)
{
    if (p->children)
        return p->children;
    while (p) {
        if (p->next)
            return p->next;
        p = p->parent;
    }
    return NULL;
}
