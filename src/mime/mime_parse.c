/* mime_parse — the message parser: header blocks, Content-* fields, the
 * part tree with multipart boundaries and encapsulated messages.
 *
 * One parser for both faces: mime_parse() feeds it the whole message at
 * once (header space = the message), mime_stream_*() in chunks (header
 * lines are copied to a buffer that becomes m->data). It is push-driven,
 * one pass, line by line, with only the current line buffered (a header
 * line, or the first octets of a body line, enough to tell a delimiter);
 * a line split over chunks is assembled, so the result does not depend on
 * the chunking. A message/global body is fed, as it is scanned, to a
 * parser of its own (see start_global()). A stack of the active multipart
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
    bool body8;              /* octets >= 0x80 or NUL seen in the body (for leaves) */
    struct pctx *sub;        /* message/global: the parser of its body, while it runs */
};

struct bnd {
    struct bnd *next;
    const uint8_t *s;
    size_t len;
    struct part_int *part;
};

enum pstate {
    ST_HEADER, /* reading header lines (whole lines) */
    ST_EOH,    /* after the empty line: the next line's start decides */
    ST_BODY,   /* body lines: each line's start is checked for a delimiter */
    ST_SKIP,   /* the rest of a delimiter line, then c->next */
    ST_DONE,
};

/* One parser: the message, or a message/global body (parsed as its own
 * message, fed by its enclosing parser). Push-driven, line by line: only
 * the current line (a header line, or the first bounds_k() octets of a
 * body line) is buffered; header lines are copied to hbuf when streaming. */
struct pctx {
    const uint8_t *whole; /* mime_parse: the message (header space = message offsets) */
    struct buf *hbuf;     /* streaming: the header blocks (shared with the sub-parsers) */
    size_t pos;           /* message offset of the current line start (in a header: of
                           * the pending field) */
    size_t lf;            /* line feeds before pos */
    size_t total;         /* message offset after the octets fed so far */
    struct mime_message *m;
    struct mime_arena *a;
    struct mime_limits lim;
    struct bnd *bounds;
    size_t cut_nl;        /* line break size before the delimiter that cut a header */
    struct part_int *top; /* the parts above this one end elsewhere (message/global) */
    size_t eoh_nl;        /* size of the empty line that ended the last header */
    bool oom;
    struct buf tmp;
    /* the line machine */
    enum pstate st, next;
    struct part_int *cur;
    struct part_int *skip_part; /* whose body the skipped delimiter line is in */
    struct buf line;            /* a header line, or a body line's start, in pieces */
    size_t k;                   /* octets of a line start that decide a delimiter */
    bool mid;                   /* ST_BODY: past the start of the line */
    size_t llen;                /* octets of the current body/delimiter line so far */
    bool lcr;                   /* the last of them was CR */
    size_t body_prev_nl;        /* line break of the previous line of this body scan */
    size_t nhold;               /* line break held back from cur->sub */
    bool hold_cr;               /* CR held back from cur->sub */
    /* the header being read */
    size_t hm0, hlf0;          /* its message offset, line feeds before it */
    bool fpend;                /* a field is pending (continuation lines may follow) */
    size_t fhs, flen, flf;     /* its header space offset, length, line feeds */
    size_t prev_nl;            /* line break at the end of the last field */
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

/* Header space: where hdr_off points. Fed the whole message (mime_parse),
 * it is the message itself; streaming, the header lines are copied to
 * c->hbuf, which becomes m->data. */
static const uint8_t *hs_data(const struct pctx *c)
{
    return c->whole ? c->whole : buf_ptr(c->hbuf);
}

static size_t hs_here(const struct pctx *c, size_t mpos)
{
    return c->whole ? mpos : buf_size(c->hbuf);
}

static size_t hs_store(struct pctx *c, const uint8_t *s, size_t n, size_t mpos)
{
    if (c->whole)
        return mpos;
    size_t at = buf_size(c->hbuf);
    if (n && buf_append(c->hbuf, s, n) < 0)
        c->oom = true;
    return at;
}

static struct part_int *part_new(struct pctx *c, struct part_int *parent)
{
    struct part_int *pi = mime_arena_alloc(c->a, sizeof(*pi));
    if (!pi) {
        c->oom = true;
        return NULL;
    }
    struct mime_part *p = &pi->pub;
    p->hdr_off = hs_here(c, c->pos);
    p->body_off = c->pos;
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

/* The longest active boundary that "--" + boundary starts the line l with
 * (n: the line, or at least its first bounds_k() octets), or NULL;
 * *close_r tells whether "--" follows (a close delimiter). */
static struct bnd *bmatch(const struct pctx *c, const uint8_t *l, size_t n, bool *close_r)
{
    if (!c->bounds || n < 2 || l[0] != '-' || l[1] != '-')
        return NULL;
    const uint8_t *s = l + 2;
    size_t len = n - 2;
    struct bnd *best = NULL;
    for (struct bnd *b = c->bounds; b; b = b->next) {
        if (b->len <= len && memcmp(b->s, s, b->len) == 0 && (!best || best->len < b->len))
            best = b;
    }
    if (best)
        *close_r = len >= best->len + 2 && s[best->len] == '-' && s[best->len + 1] == '-';
    return best;
}

/* How much of a line start bmatch() needs. */
static size_t bounds_k(const struct pctx *c, size_t extra)
{
    size_t k = extra;
    for (const struct bnd *b = c->bounds; b; b = b->next)
        k = b->len > k ? b->len : k;
    return k + 4;
}

static void mark8(struct part_int *pi, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n && !pi->body8; i++)
        pi->body8 = s[i] >= 0x80 || s[i] == 0;
}

static void ctx_eof(struct pctx *c);
static void ctx_feed(struct pctx *c, const uint8_t *d, size_t n);

static void ctx_destroy(struct pctx *c)
{
    buf_free(&c->line);
    buf_free(&c->tmp);
    free(c);
}

static void part_end(struct pctx *c, struct part_int *pi, size_t end, size_t lf_end)
{
    struct mime_part *p = &pi->pub;
    if (end < p->body_off)
        end = p->body_off;
    p->body_len = end - p->body_off;
    p->body_lines = lf_end >= pi->lf_body ? lf_end - pi->lf_body : 0;
    if (pi->sub) {
        /* a message/global body ended: so does the message parsed in it */
        struct pctx *s = pi->sub;
        pi->sub = NULL;
        ctx_eof(s);
        if (s->oom)
            c->oom = true;
        ctx_destroy(s);
    }
}

/* End every part from pi up to (not including) stop. When a delimiter
 * line cut the header of part cut, the line break before it is in the
 * bodies of cut's ancestors, though in no part of cut (as in Dovecot). */
static void parts_end(struct pctx *c, struct part_int *pi, struct part_int *stop, size_t end,
                      size_t lf_end, const struct part_int *cut, size_t cut_nl)
{
    bool above_cut = false;
    for (; pi && pi != stop; pi = (struct part_int *)pi->pub.parent) {
        if (above_cut)
            part_end(c, pi, end + cut_nl, lf_end + (cut_nl > 0));
        else
            part_end(c, pi, end, lf_end);
        if (pi == cut)
            above_cut = true;
    }
}

enum hdr_end { HDR_EOH, HDR_BOUNDARY, HDR_EOF };

static void header_begin(struct pctx *c)
{
    c->cur->pub.hdr_off = hs_here(c, c->pos);
    c->hm0 = c->pos;
    c->hlf0 = c->lf;
    c->fpend = false;
    c->prev_nl = 0;
}

static void enter(struct pctx *c, enum pstate st)
{
    c->st = st;
    c->mid = false;
    c->llen = 0;
    c->lcr = false;
    if (st == ST_HEADER) {
        header_begin(c);
    } else if (st == ST_BODY) {
        c->body_prev_nl = 0;
        c->k = c->bounds ? bounds_k(c, 0) : 1;
        c->nhold = 0;
        c->hold_cr = false;
    } else if (st == ST_EOH) {
        c->k = bounds_k(c, c->cur->boundary ? c->cur->boundary_len : 0);
    }
}

/* The pending header field is complete. */
static void field_done(struct pctx *c)
{
    c->fpend = false;
    if (c->oom)
        return;
    struct part_int *pi = c->cur;
    struct mime_field_iter it;
    struct mime_field f;
    const uint8_t *fs = hs_data(c) + c->fhs;
    mime_field_iter_init(&it, fs, c->flen);
    if (mime_field_iter_next_all(&it, &f)) {
        if (c->pos - c->hm0 + f.line_len <= c->lim.max_header_size) {
            if (f.value)
                part_field(c, pi, &f);
        } else {
            pi->pub.flags |= MIME_PART_HDR_TRUNCATED;
            c->m->limit_hit = true;
        }
    }
    c->lf += c->flf;
    c->pos += c->flen;
    const uint8_t *e = fs + c->flen;
    c->prev_nl = e[-1] != '\n' ? 0 : (c->flen >= 2 && e[-2] == '\r' ? 2 : 1);
}

/* The header of c->cur ended at c->pos: its ranges. */
static void header_finish(struct pctx *c, enum hdr_end how)
{
    struct part_int *pi = c->cur;
    struct mime_part *p = &pi->pub;
    size_t end = c->pos, lf_end = c->lf;
    c->cut_nl = 0;
    if (how != HDR_EOH)
        p->flags |= MIME_PART_HDR_NO_EOH;
    if (how == HDR_BOUNDARY && c->prev_nl) {
        /* the line break before the delimiter belongs to the delimiter */
        end -= c->prev_nl;
        lf_end--;
        c->cut_nl = c->prev_nl;
    }
    p->hdr_len = end - c->hm0;
    p->hdr_lines = lf_end - c->hlf0;
    p->body_off = end;
    pi->lf_body = lf_end;
    part_header_done(c, pi);
}

/* A delimiter line for b starts at c->pos; the parts inside b's multipart
 * end at end. The delimiter line is skipped, then c->next. */
static void on_boundary(struct pctx *c, struct bnd *b, bool close, size_t end, size_t lf_end,
                        const struct part_int *cut)
{
    parts_end(c, c->cur, b->part, end, lf_end, cut, cut ? c->cut_nl : 0);
    if (close)
        b->part->pub.flags &= ~(unsigned)MIME_PART_NO_END;
    c->bounds = close ? b->next : b;
    c->cur = b->part;
    c->skip_part = b->part;
    enum pstate next = ST_BODY; /* the epilogue */
    if (c->bounds && c->bounds->part == c->cur) {
        if (!may_add_part(c, c->cur)) {
            /* too many parts: the rest of this multipart is one opaque body */
            c->cur->pub.flags |= MIME_PART_TRUNCATED;
            c->m->limit_hit = true;
            c->bounds = c->bounds->next;
        } else {
            struct part_int *child = part_new(c, c->cur);
            if (!child) {
                c->st = ST_DONE;
                return;
            }
            c->cur = child;
            next = ST_HEADER;
        }
    }
    enter(c, ST_SKIP);
    c->next = next;
}

/* Is the line after the header a delimiter of an enclosing multipart (its
 * own boundary, about to be active, would win a tie)? la: that line's start. */
static bool eoh_then_delimiter(struct pctx *c, struct part_int *pi, bool limited,
                               const uint8_t *la, size_t lan, struct bnd **b_r, bool *close_r)
{
    struct bnd own = {.next = c->bounds, .part = pi};
    struct bnd *save = c->bounds;
    if (pi->boundary && !limited) {
        own.s = (const uint8_t *)pi->boundary;
        own.len = pi->boundary_len;
        c->bounds = &own;
    }
    *b_r = bmatch(c, la, lan, close_r);
    c->bounds = save;
    return *b_r && (*b_r)->part != pi;
}

/* message/global (RFC 6532 3.7) bodies are scanned as opaque data, the way
 * IMAP4rev1 servers see them (so sizes and boundaries agree with theirs);
 * the body is also fed, as it goes, to a parser of its own, which parses it
 * as an encapsulated message, so that its parts can be addressed and
 * searched. The line break before a delimiter is held back until the next
 * line is known not to be one. */
static void start_global(struct pctx *c, struct part_int *pi)
{
    if (!may_add_part(c, pi)) {
        pi->pub.flags |= MIME_PART_TRUNCATED;
        c->m->limit_hit = true;
        return;
    }
    struct pctx *s = calloc(1, sizeof(*s));
    if (!s) {
        c->oom = true;
        return;
    }
    s->whole = c->whole;
    s->hbuf = c->hbuf;
    s->m = c->m;
    s->a = c->a;
    s->lim = c->lim;
    s->pos = s->total = pi->pub.body_off;
    s->lf = pi->lf_body;
    s->top = pi;
    pi->pub.flags |= MIME_PART_MESSAGE;
    struct part_int *child = part_new(s, pi);
    if (!child) {
        c->oom = true;
        ctx_destroy(s);
        return;
    }
    s->cur = child;
    enter(s, ST_HEADER);
    pi->sub = s;
}

/* The header of c->cur ended (header_finish() done); la: the start of the
 * line after the empty line (HDR_EOH). */
static void header_end(struct pctx *c, enum hdr_end how, struct bnd *b, bool close,
                       const uint8_t *la, size_t lan)
{
    struct part_int *pi = c->cur;
    if (c->oom) {
        c->st = ST_DONE;
        return;
    }
    struct mime_part *p = &pi->pub;
    bool limited = !may_add_part(c, pi);
    if (how == HDR_EOH && eoh_then_delimiter(c, pi, limited, la, lan, &b, &close)) {
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
                c->st = ST_DONE;
                return;
            }
            nb->s = (const uint8_t *)pi->boundary;
            nb->len = pi->boundary_len;
            nb->part = pi;
            nb->next = c->bounds;
            c->bounds = nb;
            p->flags |= MIME_PART_NO_END;
            enter(c, ST_BODY);
            return;
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
            if (!child) {
                c->st = ST_DONE;
                return;
            }
            if (how == HDR_EOH) {
                child->lf_body = c->lf;
                c->cur = child;
                enter(c, ST_HEADER);
                return;
            }
            /* header cut short: the encapsulated message is empty */
            child->pub.hdr_off = hs_here(c, p->body_off);
            child->pub.body_off = p->body_off;
            child->pub.flags |= MIME_PART_HDR_NO_EOH;
            child->lf_body = pi->lf_body;
            part_header_done(c, child);
            pi = child;
            c->cur = child;
        }
    } else if (pi->global) {
        start_global(c, pi);
        if (c->oom) {
            c->st = ST_DONE;
            return;
        }
    }
    if (how == HDR_BOUNDARY) {
        on_boundary(c, b, close, p->body_off, pi->lf_body, (struct part_int *)p);
        return;
    }
    if (how == HDR_EOF) {
        parts_end(c, pi, c->top, c->total, c->lf, NULL, 0);
        c->st = ST_DONE;
        return;
    }
    enter(c, ST_BODY);
}

/* Octets of the delimiter line being skipped. */
static void skip_bytes(struct pctx *c, const uint8_t *l, size_t n, bool has_lf)
{
    /* in the body of skip_part (which matters when it stays a leaf) */
    mark8(c->skip_part, l, n);
    c->llen += n;
    if (has_lf) {
        c->pos += c->llen;
        c->lf++;
        enter(c, c->next);
    }
}

static void sub_feed(struct pctx *c, struct pctx *s, const uint8_t *d, size_t n)
{
    if (n == 0)
        return;
    ctx_feed(s, d, n);
    if (s->oom)
        c->oom = true;
}

/* The line break held back from the message/global parser is in the body. */
static void hold_flush(struct pctx *c)
{
    if (c->hold_cr && c->cur->sub) /* at the end: a CR ending the message */
        sub_feed(c, c->cur->sub, (const uint8_t *)"\r", 1);
    if (c->nhold && c->cur->sub)
        sub_feed(c, c->cur->sub, (const uint8_t *)"\r\n" + (2 - c->nhold), c->nhold);
    c->nhold = 0;
    c->hold_cr = false;
}

/* Octets of a body line (of c->cur) that is not a delimiter line. */
static void body_bytes(struct pctx *c, const uint8_t *l, size_t n, bool has_lf)
{
    struct part_int *cur = c->cur;
    if (!cur->body8)
        mark8(cur, l, n);
    c->llen += n;
    size_t m = has_lf ? n - 1 : n;
    if (cur->sub && m > 0) {
        if (c->hold_cr) {
            sub_feed(c, cur->sub, (const uint8_t *)"\r", 1);
            c->hold_cr = false;
        }
        if (l[m - 1] == '\r') {
            sub_feed(c, cur->sub, l, m - 1);
            c->hold_cr = true;
        } else {
            sub_feed(c, cur->sub, l, m);
        }
    }
    if (m > 0)
        c->lcr = l[m - 1] == '\r';
    if (has_lf) {
        c->body_prev_nl = c->lcr ? 2 : 1;
        c->nhold = cur->sub ? c->body_prev_nl : 0;
        c->hold_cr = false;
        c->pos += c->llen;
        c->lf++;
        c->llen = 0;
        c->lcr = false;
        c->mid = false;
    } else {
        c->mid = true;
    }
}

/* The start of a body line: all of it (has_lf), or its first c->k octets,
 * or what the message had left. */
static void body_prefix(struct pctx *c, const uint8_t *l, size_t n, bool has_lf)
{
    bool close = false;
    struct bnd *b = c->bounds ? bmatch(c, l, n, &close) : NULL;
    if (b) {
        size_t end = c->pos, lf_end = c->lf;
        if (c->body_prev_nl) {
            end -= c->body_prev_nl;
            lf_end--;
        }
        c->nhold = 0;
        on_boundary(c, b, close, end, lf_end, NULL);
        if (c->st == ST_SKIP)
            skip_bytes(c, l, n, has_lf);
        return;
    }
    hold_flush(c);
    body_bytes(c, l, n, has_lf);
}

static void header_line(struct pctx *c, const uint8_t *l, size_t n, bool has_lf);

/* The start of the line after a header's empty line. */
static void eoh_prefix(struct pctx *c, const uint8_t *l, size_t n, bool has_lf)
{
    header_end(c, HDR_EOH, NULL, false, l, n);
    switch (c->st) {
    case ST_HEADER:
        if (has_lf)
            header_line(c, l, n, true);
        else if (buf_append(&c->line, l, n) < 0)
            c->oom = true;
        break;
    case ST_BODY:
        body_prefix(c, l, n, has_lf);
        break;
    case ST_SKIP:
        skip_bytes(c, l, n, has_lf);
        break;
    default:
        break;
    }
}

/* One whole header line (has_lf false: the last line of the message). */
static void header_line(struct pctx *c, const uint8_t *l, size_t n, bool has_lf)
{
    if (c->fpend && n > 0 && MIME_IS_LWSP(l[0])) {
        hs_store(c, l, n, c->pos + c->flen);
        c->flen += n;
        c->flf += has_lf;
        return;
    }
    if (c->fpend)
        field_done(c);
    bool close = false;
    struct bnd *b = bmatch(c, l, n, &close);
    if (b) {
        header_finish(c, HDR_BOUNDARY);
        header_end(c, HDR_BOUNDARY, b, close, NULL, 0);
        if (c->st == ST_SKIP)
            skip_bytes(c, l, n, has_lf);
        return;
    }
    if (has_lf && (n == 1 || (n == 2 && l[0] == '\r'))) {
        /* the empty line */
        hs_store(c, l, n, c->pos);
        c->eoh_nl = n;
        c->pos += n;
        c->lf++;
        header_finish(c, HDR_EOH);
        if (c->oom) {
            c->st = ST_DONE;
            return;
        }
        enter(c, ST_EOH);
        return;
    }
    c->fhs = hs_store(c, l, n, c->pos);
    c->flen = n;
    c->flf = has_lf;
    c->fpend = true;
}

static void dispatch_prefix(struct pctx *c, const uint8_t *l, size_t n, bool has_lf)
{
    if (c->st == ST_EOH)
        eoh_prefix(c, l, n, has_lf);
    else
        body_prefix(c, l, n, has_lf);
}

/* Take the line buffer (the handler may start a new one). */
static struct buf line_take(struct pctx *c)
{
    struct buf t = c->line;
    buf_init(&c->line);
    return t;
}

static void ctx_feed(struct pctx *c, const uint8_t *d, size_t n)
{
    c->total += n;
    while (n > 0 && !c->oom && c->st != ST_DONE) {
        if (c->st == ST_HEADER) {
            const uint8_t *nl = memchr(d, '\n', n);
            if (!nl) {
                if (buf_append(&c->line, d, n) < 0)
                    c->oom = true;
                return;
            }
            size_t take = (size_t)(nl - d) + 1;
            if (buf_size(&c->line) == 0) {
                header_line(c, d, take, true);
            } else if (buf_append(&c->line, d, take) < 0) {
                c->oom = true;
            } else {
                struct buf t = line_take(c);
                header_line(c, buf_ptr(&t), buf_size(&t), true);
                buf_free(&t);
            }
            d += take;
            n -= take;
        } else if (c->st == ST_EOH || (c->st == ST_BODY && !c->mid)) {
            size_t have = buf_size(&c->line);
            size_t want = c->k > have ? c->k - have : 1;
            size_t lim = n < want ? n : want;
            const uint8_t *nl = memchr(d, '\n', lim);
            size_t take = nl ? (size_t)(nl - d) + 1 : lim;
            bool ready = nl || have + take >= c->k;
            if (!ready || have > 0) {
                if (buf_append(&c->line, d, take) < 0) {
                    c->oom = true;
                    return;
                }
            }
            if (ready) {
                if (have == 0) {
                    dispatch_prefix(c, d, take, nl != NULL);
                } else {
                    struct buf t = line_take(c);
                    dispatch_prefix(c, buf_ptr(&t), buf_size(&t), nl != NULL);
                    buf_free(&t);
                }
            }
            d += take;
            n -= take;
        } else {
            const uint8_t *nl = memchr(d, '\n', n);
            size_t take = nl ? (size_t)(nl - d) + 1 : n;
            if (c->st == ST_SKIP)
                skip_bytes(c, d, take, nl != NULL);
            else
                body_bytes(c, d, take, nl != NULL);
            d += take;
            n -= take;
        }
    }
}

/* The end of the message (or of a message/global body). */
static void ctx_eof(struct pctx *c)
{
    while (!c->oom && c->st != ST_DONE) {
        struct buf t = line_take(c);
        const uint8_t *l = buf_ptr(&t);
        size_t n = buf_size(&t);
        switch (c->st) {
        case ST_HEADER:
            if (n)
                header_line(c, l, n, false);
            if (c->st == ST_HEADER) {
                if (c->fpend)
                    field_done(c);
                header_finish(c, HDR_EOF);
                header_end(c, HDR_EOF, NULL, false, NULL, 0);
            }
            break;
        case ST_EOH:
            eoh_prefix(c, l, n, false);
            break;
        case ST_BODY:
            if (!c->mid)
                body_prefix(c, l, n, false);
            if (c->st == ST_BODY) {
                hold_flush(c);
                parts_end(c, c->cur, c->top, c->total, c->lf, NULL, 0);
                c->st = ST_DONE;
            }
            break;
        case ST_SKIP:
            c->pos += c->llen;
            c->llen = 0;
            enter(c, c->next);
            break;
        default:
            break;
        }
        buf_free(&t);
    }
}

/* --- the parser's two faces ----------------------------------------------------------------- */

struct mime_stream {
    struct pctx c;
    struct buf hbuf; /* the header blocks */
};

static void limits_apply(struct mime_limits *dst, const struct mime_limits *lim)
{
    mime_limits_default(dst);
    if (lim) {
        if (lim->max_depth)
            dst->max_depth = lim->max_depth;
        if (lim->max_parts)
            dst->max_parts = lim->max_parts;
        if (lim->max_header_size)
            dst->max_header_size = lim->max_header_size;
    }
}

/* Set up c (zeroed, with whole or hbuf set) for a new message. */
static int ctx_start(struct pctx *c, const struct mime_limits *lim)
{
    limits_apply(&c->lim, lim);
    c->a = mime_arena_new();
    if (!c->a)
        return -1;
    c->m = mime_arena_alloc(c->a, sizeof(*c->m));
    if (!c->m) {
        mime_arena_free(c->a);
        return -1;
    }
    c->m->arena = c->a;
    struct part_int *root = part_new(c, NULL);
    if (!root) {
        mime_arena_free(c->a);
        return -1;
    }
    c->m->root = &root->pub;
    c->cur = root;
    enter(c, ST_HEADER);
    return 0;
}

/* Free the message/global parsers still running (after OOM). */
static void subs_free(struct mime_message *m)
{
    for (const struct mime_part *cp = m->root; cp; cp = mime_part_walk_next(cp)) {
        struct part_int *pi = (struct part_int *)cp;
        if (pi->sub) {
            ctx_destroy(pi->sub);
            pi->sub = NULL;
        }
    }
}

/* Flag bodies with 8-bit octets or NULs (leaves; containers inherit). */
static void mark_8bit(struct mime_message *m)
{
    for (const struct mime_part *cp = m->root; cp; cp = mime_part_walk_next(cp)) {
        struct part_int *pi = (struct part_int *)cp;
        if (cp->children || !pi->body8)
            continue;
        for (struct mime_part *p = &pi->pub; p; p = p->parent)
            p->flags |= MIME_PART_HAS_8BIT;
    }
}

/* End the message; the result or NULL (OOM). Frees c's own buffers. */
static struct mime_message *ctx_finish(struct pctx *c)
{
    ctx_eof(c);
    subs_free(c->m);
    buf_free(&c->line);
    buf_free(&c->tmp);
    if (c->oom) {
        mime_arena_free(c->a);
        return NULL;
    }
    c->m->size = c->total;
    mark_8bit(c->m);
    return c->m;
}

struct mime_message *mime_parse(const uint8_t *msg, size_t len, const struct mime_limits *lim)
{
    struct pctx c = {.whole = msg ? msg : (const uint8_t *)""};
    if (!msg)
        len = 0;
    if (ctx_start(&c, lim) < 0)
        return NULL;
    ctx_feed(&c, c.whole, len);
    struct mime_message *m = ctx_finish(&c);
    if (m) {
        m->data = c.whole;
        m->data_len = len;
    }
    return m;
}

struct mime_stream *mime_stream_new(const struct mime_limits *lim)
{
    struct mime_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->c.hbuf = &s->hbuf;
    if (ctx_start(&s->c, lim) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

int mime_stream_feed(struct mime_stream *s, const uint8_t *data, size_t len)
{
    if (s->c.oom)
        return -1;
    if (len)
        ctx_feed(&s->c, data, len);
    return s->c.oom ? -1 : 0;
}

struct mime_message *mime_stream_finish(struct mime_stream *s)
{
    struct mime_message *m = ctx_finish(&s->c);
    if (m) {
        /* the header blocks, kept in the arena */
        size_t n = buf_size(&s->hbuf);
        uint8_t *d = mime_arena_alloc(s->c.a, n ? n : 1);
        if (!d) {
            mime_arena_free(s->c.a);
            m = NULL;
        } else {
            if (n)
                memcpy(d, buf_ptr(&s->hbuf), n);
            m->data = d;
            m->data_len = n;
            m->headers_only = true;
        }
    }
    buf_free(&s->hbuf);
    free(s);
    return m;
}

void mime_stream_free(struct mime_stream *s)
{
    if (!s)
        return;
    subs_free(s->c.m);
    buf_free(&s->c.line);
    buf_free(&s->c.tmp);
    buf_free(&s->hbuf);
    mime_arena_free(s->c.a);
    free(s);
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
