/* imap_cmd_fetch — FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8, 7.4.2),
 * with CONDSTORE's MODSEQ item and CHANGEDSINCE modifier (RFC 7162
 * 3.1.4-3.1.5), QRESYNC's VANISHED modifier (RFC 7162 3.2.6), BINARY
 * (RFC 3516) and EXPUNGEISSUED (RFC 5530).
 *
 * The rows of the requested UID range are loaded with one query. A
 * message file is read (and MIME-parsed) only for items that need its
 * bytes, or once to fill the envelope/bodystructure cache of a message
 * that has none; BODY is derived from the cached BODYSTRUCTURE. Each
 * message's response is built in s->ex; when its file turns out to be
 * gone (expunged by another session) the partial response is taken back.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/log.h"
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "mime/mime_imap.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_seqset.h"

/* --- the request ----------------------------------------------------------- */

enum fetch_kind {
    FA_UID,
    FA_FLAGS,
    FA_INTERNALDATE,
    FA_RFC822_SIZE,
    FA_ENVELOPE,
    FA_BODY,
    FA_BODYSTRUCTURE,
    FA_MODSEQ,
    FA_RFC822,
    FA_RFC822_HEADER,
    FA_RFC822_TEXT,
    FA_SECTION, /* BODY[...], BODY.PEEK[...], BINARY[...], BINARY.SIZE[...] */
    FA_COUNT,
};

static const char *const fetch_names[FA_SECTION] = {
    "UID",           "FLAGS",  "INTERNALDATE", "RFC822.SIZE",   "ENVELOPE",    "BODY",
    "BODYSTRUCTURE", "MODSEQ", "RFC822",       "RFC822.HEADER", "RFC822.TEXT",
};

struct fetch_att {
    enum fetch_kind kind;
    struct imap_section sec; /* FA_SECTION */
};

struct fetch_req {
    struct fetch_att *atts;
    size_t n, cap;
    bool want[FA_COUNT];
    bool cache; /* ENVELOPE, BODY or BODYSTRUCTURE: load the cache columns */
    bool seen;  /* an item that sets \Seen (RFC 3501 6.4.5) */
    bool changedsince_given;
    uint64_t changedsince;
    bool vanished;
};

static void fetch_req_free(struct fetch_req *q)
{
    for (size_t i = 0; i < q->n; i++)
        if (q->atts[i].kind == FA_SECTION)
            imap_section_free(&q->atts[i].sec);
    free(q->atts);
    memset(q, 0, sizeof(*q));
}

static int fetch_req_push(struct fetch_req *q, enum fetch_kind k, const struct imap_section *sec)
{
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 8;
        struct fetch_att *v = realloc(q->atts, nc * sizeof(*v));
        if (!v)
            return -1;
        q->atts = v;
        q->cap = nc;
    }
    struct fetch_att *a = &q->atts[q->n++];
    memset(a, 0, sizeof(*a));
    a->kind = k;
    if (sec)
        a->sec = *sec;
    q->want[k] = true;
    if (k == FA_ENVELOPE || k == FA_BODY || k == FA_BODYSTRUCTURE)
        q->cache = true;
    if (k == FA_RFC822 || k == FA_RFC822_TEXT)
        q->seen = true;
    if (k == FA_SECTION && !sec->peek && sec->kind != IMAP_SECTION_BINARY_SIZE)
        q->seen = true;
    return 0;
}

/* One fetch-att (RFC 3501 9). -1 when unknown. */
static int fetch_att_parse(struct fetch_req *q, const struct imap_arg *a)
{
    if (a->type != IMAP_ARG_ATOM)
        return -1;
    for (size_t k = 0; k < FA_SECTION; k++)
        if (strcasecmp(a->str, fetch_names[k]) == 0)
            return fetch_req_push(q, (enum fetch_kind)k, NULL);
    struct imap_section sec;
    if (imap_section_parse(a->str, &sec) < 0)
        return -1;
    if (fetch_req_push(q, FA_SECTION, &sec) < 0) {
        imap_section_free(&sec);
        return -1;
    }
    return 0;
}

/* The macros ALL, FAST and FULL (RFC 3501 6.4.5), a single fetch-att, or a
 * parenthesised list of them. */
static int fetch_atts_parse(struct fetch_req *q, const struct imap_arg *a)
{
    static const struct {
        const char *name;
        enum fetch_kind k[5];
        size_t n;
    } macros[] = {
        {"ALL", {FA_FLAGS, FA_INTERNALDATE, FA_RFC822_SIZE, FA_ENVELOPE}, 4},
        {"FAST", {FA_FLAGS, FA_INTERNALDATE, FA_RFC822_SIZE}, 3},
        {"FULL", {FA_FLAGS, FA_INTERNALDATE, FA_RFC822_SIZE, FA_ENVELOPE, FA_BODY}, 5},
    };
    if (a->type == IMAP_ARG_LIST) {
        if (a->nlist == 0)
            return -1;
        for (size_t i = 0; i < a->nlist; i++)
            if (fetch_att_parse(q, &a->list[i]) < 0)
                return -1;
        return 0;
    }
    for (size_t m = 0; m < sizeof(macros) / sizeof(macros[0]); m++) {
        if (!imap_arg_atom_is(a, macros[m].name))
            continue;
        for (size_t i = 0; i < macros[m].n; i++)
            if (fetch_req_push(q, macros[m].k[i], NULL) < 0)
                return -1;
        return 0;
    }
    return fetch_att_parse(q, a);
}

/* mod-sequence-valzer (RFC 7162 7): digits, at most 2^63-1. */
static int fetch_modseq_parse(const struct imap_arg *a, uint64_t *r)
{
    if (a->type != IMAP_ARG_ATOM || !a->str[0] || strlen(a->str) > 19)
        return -1;
    uint64_t v = 0;
    for (const char *p = a->str; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > INT64_MAX)
        return -1;
    *r = v;
    return 0;
}

/* "(CHANGEDSINCE n [VANISHED])" (RFC 7162 3.1.4.1, 3.2.6). */
static int fetch_mods_parse(struct imap_session *s, struct fetch_req *q, const struct imap_arg *a)
{
    if (a->type != IMAP_ARG_LIST || a->nlist == 0)
        return -1;
    for (size_t i = 0; i < a->nlist; i++) {
        const struct imap_arg *m = &a->list[i];
        if (imap_arg_atom_is(m, "CHANGEDSINCE") && i + 1 < a->nlist && !q->changedsince_given) {
            if (fetch_modseq_parse(&a->list[++i], &q->changedsince) < 0)
                return -1;
            q->changedsince_given = true;
        } else if (imap_arg_atom_is(m, "VANISHED") && !q->vanished) {
            q->vanished = true;
        } else {
            return -1;
        }
    }
    /* VANISHED: only UID FETCH, with CHANGEDSINCE, once QRESYNC is enabled. */
    if (q->vanished && (!s->uid || !q->changedsince_given || !s->qresync))
        return -1;
    return 0;
}

/* --- shared with the other selected-state commands ----------------------------- */

/* --- one message ------------------------------------------------------------------ */

enum fetch_rc { FETCH_OK = 0, FETCH_GONE = -1, FETCH_FAIL = -2 };

struct fetch_msg {
    struct imap_session *s;
    struct store *st;
    const struct fetch_req *q;
    const struct store_msg *m;
    uint8_t *data;
    size_t len;
    struct mime_message *mime;
    const char *envelope;      /* cached, or computed into env */
    const char *bodystructure; /* cached, or computed into bs */
    struct buf env, bs;
    bool cache_done;
    bool unknown_cte; /* a BINARY item met an unknown encoding (RFC 3516 4.3) */
};

static void fetch_msg_free(struct fetch_msg *fm)
{
    mime_message_free(&fm->mime);
    free(fm->data);
    buf_free(&fm->env);
    buf_free(&fm->bs);
}

static enum fetch_rc fetch_msg_data(struct fetch_msg *fm)
{
    if (fm->data)
        return FETCH_OK;
    char err[256];
    if (store_msg_read(fm->st, fm->s->account, fm->m->file, &fm->data, &fm->len, err, sizeof(err)) <
        0) {
        log_warn("imap", "event=fetch_read_failed id=%s uid=%u file=%s error=\"%s\"", fm->s->id,
                 fm->m->uid, fm->m->file, err);
        fm->data = NULL;
        return FETCH_GONE;
    }
    return FETCH_OK;
}

static enum fetch_rc fetch_msg_mime(struct fetch_msg *fm)
{
    if (fm->mime)
        return FETCH_OK;
    enum fetch_rc rc = fetch_msg_data(fm);
    if (rc != FETCH_OK)
        return rc;
    fm->mime = mime_parse(fm->data, fm->len, NULL);
    return fm->mime ? FETCH_OK : FETCH_FAIL;
}

/* Envelope and bodystructure: from the cache, or computed from the file
 * and written to the cache for the next FETCH. */
static enum fetch_rc fetch_msg_cache(struct fetch_msg *fm)
{
    if (fm->cache_done)
        return FETCH_OK;
    fm->envelope = fm->m->envelope;
    fm->bodystructure = fm->m->bodystructure;
    if (!fm->envelope || !fm->bodystructure) {
        enum fetch_rc rc = fetch_msg_mime(fm);
        if (rc != FETCH_OK)
            return rc;
        if (mime_imap_envelope(fm->mime, NULL, &fm->env) < 0 ||
            mime_imap_bodystructure(fm->mime, NULL, true, &fm->bs) < 0 || !buf_cstr(&fm->env) ||
            !buf_cstr(&fm->bs))
            return FETCH_FAIL;
        fm->envelope = (const char *)buf_ptr(&fm->env);
        fm->bodystructure = (const char *)buf_ptr(&fm->bs);
        /* Text columns: a value with a NUL (inside a literal) cannot be
         * kept. The search fields come along when they are missing too. */
        char err[256];
        struct buf fields = BUF_INIT;
        if (!fm->m->fields && mime_search_fields(fm->mime, &fields) < 0)
            buf_free(&fields);
        if (strlen(fm->envelope) == buf_size(&fm->env) &&
            strlen(fm->bodystructure) == buf_size(&fm->bs) &&
            store_msg_set_cache(fm->st, fm->s->account, fm->s->sel.mailbox_id, fm->m->uid,
                                fm->envelope, fm->bodystructure, buf_ptr(&fields),
                                buf_size(&fields), err, sizeof(err)) < 0)
            log_warn("imap", "event=cache_fill_failed id=%s uid=%u error=\"%s\"", fm->s->id,
                     fm->m->uid, err);
        buf_free(&fields);
    }
    fm->cache_done = true;
    return FETCH_OK;
}

/* --- BODY from a cached BODYSTRUCTURE ------------------------------------------------ */

#define FETCH_BS_DEPTH 200

/* Skip one value of an IMAP response (atom, number, NIL, quoted string,
 * literal, list) at p[*pos]. 0, or -1 on malformed text. */
static int bs_skip(const char *p, size_t n, size_t *pos, int depth)
{
    size_t i = *pos;
    if (i >= n || depth > FETCH_BS_DEPTH)
        return -1;
    if (p[i] == '(') {
        for (i++;;) {
            while (i < n && p[i] == ' ')
                i++;
            if (i >= n)
                return -1;
            if (p[i] == ')') {
                i++;
                break;
            }
            if (bs_skip(p, n, &i, depth + 1) < 0)
                return -1;
        }
    } else if (p[i] == '"') {
        for (i++; i < n && p[i] != '"'; i++)
            if (p[i] == '\\')
                i++;
        if (i >= n)
            return -1;
        i++;
    } else if (p[i] == '{') {
        size_t len = 0, j = i + 1;
        while (j < n && isdigit((unsigned char)p[j]) && len < ((size_t)1 << 40))
            len = len * 10 + (size_t)(p[j++] - '0');
        if (j == i + 1 || j + 2 >= n || p[j] != '}' || p[j + 1] != '\r' || p[j + 2] != '\n')
            return -1;
        i = j + 3;
        if (len > n - i)
            return -1;
        i += len;
    } else {
        size_t j = i;
        while (i < n && p[i] != ' ' && p[i] != '(' && p[i] != ')')
            i++;
        if (i == j)
            return -1;
    }
    *pos = i;
    return 0;
}

/* Write the BODY form (RFC 3501 7.4.2: no extension data) of the
 * BODYSTRUCTURE value at p[*pos]. 0, or -1 on malformed text. */
static int bs_to_body(const char *p, size_t n, size_t *pos, struct buf *out, int depth)
{
    size_t i = *pos;
    if (i >= n || p[i] != '(' || depth > FETCH_BS_DEPTH)
        return -1;
    i++;
    buf_puts(out, "(");
    if (i < n && p[i] == '(') {
        /* body-type-mpart: 1*body SP media-subtype [SP extensions] */
        while (i < n && p[i] == '(') {
            if (bs_to_body(p, n, &i, out, depth + 1) < 0)
                return -1;
            while (i < n && p[i] == ' ')
                i++;
        }
        size_t s0 = i;
        if (bs_skip(p, n, &i, depth + 1) < 0)
            return -1;
        buf_puts(out, " ");
        buf_append(out, p + s0, i - s0);
    } else {
        /* body-type-1part: the 7 body fields, then lines (text) or
         * envelope, body, lines (message/rfc822), then extensions. */
        size_t st[10], en[10], k = 0;
        for (;;) {
            while (i < n && p[i] == ' ')
                i++;
            if (i >= n || p[i] == ')')
                break;
            size_t s0 = i;
            if (bs_skip(p, n, &i, depth + 1) < 0)
                return -1;
            if (k < 10) {
                st[k] = s0;
                en[k] = i;
            }
            k++;
        }
        if (k < 7)
            return -1;
        for (size_t f = 0; f < 7; f++) {
            if (f)
                buf_puts(out, " ");
            buf_append(out, p + st[f], en[f] - st[f]);
        }
        if (k >= 8 && isdigit((unsigned char)p[st[7]])) {
            buf_puts(out, " ");
            buf_append(out, p + st[7], en[7] - st[7]);
        } else if (k >= 10 && p[st[7]] == '(' && p[st[8]] == '(') {
            buf_puts(out, " ");
            buf_append(out, p + st[7], en[7] - st[7]);
            buf_puts(out, " ");
            size_t j = st[8];
            if (bs_to_body(p, n, &j, out, depth + 1) < 0)
                return -1;
            buf_puts(out, " ");
            buf_append(out, p + st[9], en[9] - st[9]);
        }
    }
    /* the rest of the list (a multipart's extension data) */
    for (;;) {
        while (i < n && p[i] == ' ')
            i++;
        if (i >= n)
            return -1;
        if (p[i] == ')')
            break;
        if (bs_skip(p, n, &i, depth + 1) < 0)
            return -1;
    }
    buf_puts(out, ")");
    *pos = i + 1;
    return 0;
}

/* --- items ------------------------------------------------------------------------------ */

static void fetch_date(struct buf *out, time_t t)
{
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    buf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, mon[tm.tm_mon],
               tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* A body item's bytes as a literal ("~{n}" for BINARY data with NULs),
 * cut to the partial <offset.length> when given. */
static void fetch_literal(struct buf *out, const uint8_t *p, size_t n,
                          const struct imap_section *sec)
{
    if (sec && sec->partial) {
        size_t off = sec->partial_offset < n ? sec->partial_offset : n;
        size_t len = n - off < sec->partial_length ? n - off : sec->partial_length;
        p += off;
        n = len;
    }
    bool l8 = sec && sec->kind != IMAP_SECTION_BODY && n && memchr(p, 0, n);
    buf_printf(out, "%s{%zu}\r\n", l8 ? "~" : "", n);
    buf_append(out, p, n);
}

/* The whole message (BODY[], RFC822), its header or its text. */
static enum fetch_rc fetch_whole(struct fetch_msg *fm, enum mime_section_spec spec,
                                 const uint8_t **p_r, size_t *n_r)
{
    enum fetch_rc rc = spec == MIME_SECTION_ALL ? fetch_msg_data(fm) : fetch_msg_mime(fm);
    if (rc != FETCH_OK)
        return rc;
    const struct mime_part *root = fm->mime ? fm->mime->root : NULL;
    if (spec == MIME_SECTION_HEADER) {
        *p_r = fm->data + root->hdr_off;
        *n_r = root->hdr_len;
    } else if (spec == MIME_SECTION_TEXT) {
        *p_r = fm->data + root->body_off;
        *n_r = root->body_len;
    } else {
        *p_r = fm->data;
        *n_r = fm->len;
    }
    return FETCH_OK;
}

/* BINARY[part] (RFC 3516): the part's content with its transfer
 * encoding undone. *nil_r when the encoding is unknown. */
static enum fetch_rc fetch_binary(struct fetch_msg *fm, const struct imap_section *sec,
                                  struct buf *tmp, const uint8_t **p_r, size_t *n_r, bool *nil_r)
{
    enum fetch_rc rc = fetch_msg_mime(fm);
    if (rc != FETCH_OK)
        return rc;
    if (sec->nparts == 0) {
        *p_r = fm->data;
        *n_r = fm->len;
        return FETCH_OK;
    }
    unsigned part[IMAP_SECTION_MAX_PARTS];
    for (size_t i = 0; i < sec->nparts; i++)
        part[i] = sec->part[i];
    const struct mime_part *p = mime_section_part(fm->mime, part, (unsigned)sec->nparts);
    if (!p) {
        *p_r = NULL;
        *n_r = 0;
        return FETCH_OK;
    }
    const uint8_t *body = fm->data + p->body_off;
    bool leaf = !(p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE));
    if (leaf && p->cte == MIME_CTE_UNKNOWN) {
        *nil_r = true;
        fm->unknown_cte = true;
        return FETCH_OK;
    }
    if (leaf && (p->cte == MIME_CTE_BASE64 || p->cte == MIME_CTE_QP)) {
        if (mime_cte_decode(p->cte, body, p->body_len, tmp) < 0)
            return FETCH_FAIL;
        *p_r = buf_ptr(tmp);
        *n_r = buf_size(tmp);
        return FETCH_OK;
    }
    *p_r = body;
    *n_r = p->body_len;
    return FETCH_OK;
}

/* BODY[section]: the bytes a section names (RFC 3501 6.4.5). */
static enum fetch_rc fetch_body_section(struct fetch_msg *fm, const struct imap_section *sec,
                                        struct buf *tmp, const uint8_t **p_r, size_t *n_r)
{
    if (sec->nparts == 0 && sec->text == IMAP_SECTION_TEXT_NONE)
        return fetch_whole(fm, MIME_SECTION_ALL, p_r, n_r);
    enum fetch_rc rc = fetch_msg_mime(fm);
    if (rc != FETCH_OK)
        return rc;
    static const enum mime_section_spec specs[] = {
        [IMAP_SECTION_TEXT_NONE] = MIME_SECTION_ALL,
        [IMAP_SECTION_TEXT_HEADER] = MIME_SECTION_HEADER,
        [IMAP_SECTION_TEXT_HEADER_FIELDS] = MIME_SECTION_HEADER_FIELDS,
        [IMAP_SECTION_TEXT_HEADER_FIELDS_NOT] = MIME_SECTION_HEADER_FIELDS_NOT,
        [IMAP_SECTION_TEXT_TEXT] = MIME_SECTION_TEXT,
        [IMAP_SECTION_TEXT_MIME] = MIME_SECTION_MIME,
    };
    struct mime_section ms;
    memset(&ms, 0, sizeof(ms));
    for (size_t i = 0; i < sec->nparts; i++)
        ms.part[i] = sec->part[i];
    ms.npart = (unsigned)sec->nparts;
    ms.spec = specs[sec->text];
    ms.fields = sec->fields; /* borrowed: ms is not cleared */
    ms.nfields = sec->nfields;
    size_t off = 0, len = 0;
    switch (mime_section_fetch(fm->mime, &ms, &off, &len, tmp)) {
    case MIME_SECTION_RANGE:
        *p_r = fm->data + off;
        *n_r = len;
        return FETCH_OK;
    case MIME_SECTION_BUILT:
        *p_r = buf_ptr(tmp);
        *n_r = buf_size(tmp);
        return FETCH_OK;
    case MIME_SECTION_NONE:
        *p_r = NULL;
        *n_r = 0; /* an empty string, as Dovecot answers */
        return FETCH_OK;
    default:
        return FETCH_FAIL;
    }
}

static enum fetch_rc fetch_section(struct fetch_msg *fm, const struct imap_section *sec,
                                   struct buf *out)
{
    struct buf tmp = BUF_INIT;
    const uint8_t *p = NULL;
    size_t n = 0;
    bool nil = false;
    enum fetch_rc rc = sec->kind == IMAP_SECTION_BODY ? fetch_body_section(fm, sec, &tmp, &p, &n)
                                                      : fetch_binary(fm, sec, &tmp, &p, &n, &nil);
    if (rc == FETCH_OK) {
        imap_section_format(sec, out);
        if (nil)
            buf_puts(out, " NIL");
        else if (sec->kind == IMAP_SECTION_BINARY_SIZE)
            buf_printf(out, " %zu", n);
        else {
            buf_puts(out, " ");
            fetch_literal(out, p, n, sec);
        }
    }
    buf_free(&tmp);
    return rc;
}

static enum fetch_rc fetch_item(struct fetch_msg *fm, const struct fetch_att *a, struct buf *out)
{
    const struct store_msg *m = fm->m;
    const uint8_t *p;
    size_t n;
    enum fetch_rc rc;
    switch (a->kind) {
    case FA_UID:
        buf_printf(out, "UID %u", m->uid);
        return FETCH_OK;
    case FA_FLAGS:
        buf_puts(out, "FLAGS ");
        imap_write_flags(out, m->flags, m->keywords, m->uid >= fm->s->sel.first_recent);
        return FETCH_OK;
    case FA_INTERNALDATE:
        buf_puts(out, "INTERNALDATE ");
        fetch_date(out, m->internal_date);
        return FETCH_OK;
    case FA_RFC822_SIZE:
        buf_printf(out, "RFC822.SIZE %llu", (unsigned long long)m->size);
        return FETCH_OK;
    case FA_MODSEQ:
        buf_printf(out, "MODSEQ (%llu)", (unsigned long long)m->modseq);
        return FETCH_OK;
    case FA_ENVELOPE:
        if ((rc = fetch_msg_cache(fm)) != FETCH_OK)
            return rc;
        buf_printf(out, "ENVELOPE %s", fm->envelope);
        return FETCH_OK;
    case FA_BODYSTRUCTURE:
        if ((rc = fetch_msg_cache(fm)) != FETCH_OK)
            return rc;
        buf_printf(out, "BODYSTRUCTURE %s", fm->bodystructure);
        return FETCH_OK;
    case FA_BODY: {
        if ((rc = fetch_msg_cache(fm)) != FETCH_OK)
            return rc;
        size_t mark = buf_size(out), pos = 0;
        buf_puts(out, "BODY ");
        if (bs_to_body(fm->bodystructure, strlen(fm->bodystructure), &pos, out, 0) == 0)
            return FETCH_OK;
        /* A cache we cannot read: compute BODY from the message itself. */
        out->len = out->off + mark;
        if ((rc = fetch_msg_mime(fm)) != FETCH_OK)
            return rc;
        buf_puts(out, "BODY ");
        return mime_imap_bodystructure(fm->mime, NULL, false, out) < 0 ? FETCH_FAIL : FETCH_OK;
    }
    case FA_RFC822:
    case FA_RFC822_HEADER:
    case FA_RFC822_TEXT:
        rc = fetch_whole(fm,
                         a->kind == FA_RFC822          ? MIME_SECTION_ALL
                         : a->kind == FA_RFC822_HEADER ? MIME_SECTION_HEADER
                                                       : MIME_SECTION_TEXT,
                         &p, &n);
        if (rc != FETCH_OK)
            return rc;
        buf_printf(out, "%s ", fetch_names[a->kind]);
        fetch_literal(out, p, n, NULL);
        return FETCH_OK;
    case FA_SECTION:
        return fetch_section(fm, &a->sec, out);
    default:
        return FETCH_FAIL;
    }
}

/* "* seq FETCH (...)" for message m. flags_changed: this FETCH set \Seen,
 * so FLAGS is sent even when not asked (RFC 3501 6.4.5). On FETCH_GONE /
 * FETCH_FAIL nothing is left in s->ex. */
static enum fetch_rc fetch_one(struct imap_session *s, struct store *st, const struct fetch_req *q,
                               const struct store_msg *m, bool flags_changed, bool *unknown_cte)
{
    struct buf *out = &s->ex;
    size_t mark = buf_size(out);
    struct fetch_msg fm = {.s = s, .st = st, .q = q, .m = m};
    bool done[FA_SECTION] = {false};
    enum fetch_rc rc = FETCH_OK;
    const char *sep = "";
    buf_printf(out, "* %u FETCH (", imap_view_seq(&s->sel, m->uid));
    if (s->uid || s->qresync) {
        /* RFC 3501 6.4.8: UID FETCH responses carry the UID; with QRESYNC
         * every FETCH response does (RFC 7162). */
        buf_printf(out, "UID %u", m->uid);
        done[FA_UID] = true;
        sep = " ";
    }
    for (size_t i = 0; i < q->n && rc == FETCH_OK; i++) {
        const struct fetch_att *a = &q->atts[i];
        if (a->kind != FA_SECTION) {
            if (done[a->kind])
                continue;
            done[a->kind] = true;
        }
        buf_puts(out, sep);
        sep = " ";
        rc = fetch_item(&fm, a, out);
    }
    if (rc == FETCH_OK && flags_changed && !done[FA_FLAGS]) {
        buf_puts(out, sep);
        sep = " ";
        struct fetch_att a = {.kind = FA_FLAGS};
        rc = fetch_item(&fm, &a, out);
    }
    /* RFC 7162 3.1.4.1: CHANGEDSINCE implies MODSEQ; with CONDSTORE on, a
     * flag change is reported with its MODSEQ (3.2). */
    if (rc == FETCH_OK && !done[FA_MODSEQ] &&
        (q->changedsince_given || (flags_changed && s->condstore))) {
        buf_puts(out, sep);
        struct fetch_att a = {.kind = FA_MODSEQ};
        rc = fetch_item(&fm, &a, out);
    }
    buf_puts(out, ")\r\n");
    if (fm.unknown_cte)
        *unknown_cte = true;
    fetch_msg_free(&fm);
    if (rc != FETCH_OK)
        out->len = out->off + mark;
    return rc;
}

/* --- the command ------------------------------------------------------------------------- */

/* VANISHED (EARLIER) for the UIDs of the set expunged after since (RFC
 * 7162 3.2.6), leaving out those still in the view: they are reported as
 * expunged by the sync that follows. */
static void fetch_vanished(struct imap_session *s, struct store *st, const char *set,
                           uint64_t since)
{
    struct imap_seqset ss = IMAP_SEQSET_INIT;
    struct store_msg_list ch = {0};
    uint32_t *gone = NULL;
    size_t ngone = 0, k = 0;
    char err[256];
    if (imap_seqset_parse(set, &ss) == 0 &&
        store_msgs_changed_since(st, s->account, s->sel.mailbox_id, since, &ch, &gone, &ngone, err,
                                 sizeof(err)) == 0) {
        for (size_t i = 0; i < ngone; i++)
            if (imap_seqset_contains(&ss, gone[i], UINT32_MAX) && !imap_view_seq(&s->sel, gone[i]))
                gone[k++] = gone[i];
        if (k) {
            buf_puts(&s->ex, "* VANISHED (EARLIER) ");
            imap_seqset_format_uids(&s->ex, gone, k);
            buf_puts(&s->ex, "\r\n");
        }
    }
    imap_seqset_free(&ss);
    store_msg_list_free(&ch);
    free(gone);
}

/* Set \Seen on the messages to fetch that lack it (RFC 3501 6.4.5), then
 * reload the rows so that FLAGS and MODSEQ show the change. The UIDs
 * changed go to *seen_r (sorted). */
static int fetch_set_seen(struct imap_session *s, struct store *st, const struct fetch_req *q,
                          const uint32_t *uids, size_t n, struct store_msg_list *l,
                          uint32_t **seen_r, size_t *nseen_r)
{
    uint32_t *seen = malloc(n * sizeof(uint32_t));
    size_t k = 0;
    char err[256];
    *seen_r = seen;
    *nseen_r = 0;
    if (!seen)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const struct store_msg *m = imap_msg_row(l, uids[i]);
        if (m && !(m->flags & STORE_FLAG_SEEN) &&
            (!q->changedsince_given || m->modseq > q->changedsince))
            seen[k++] = uids[i];
    }
    if (k == 0)
        return 0;
    uint32_t *failed = NULL;
    size_t nfailed = 0;
    if (store_msgs_set_flags(st, s->account, s->sel.mailbox_id, seen, k, STORE_FLAGS_ADD,
                             STORE_FLAG_SEEN, NULL, 0, &failed, &nfailed, err, sizeof(err)) < 0) {
        log_warn("imap", "event=set_seen_failed id=%s error=\"%s\"", s->id, err);
        return 0; /* the data can still be sent; \Seen is not promised */
    }
    free(failed);
    s->changed = true;
    *nseen_r = k;
    struct store_msg_list nl = {0};
    if (store_msgs_load(st, s->account, s->sel.mailbox_id, uids[0], uids[n - 1],
                        q->cache ? STORE_MSG_CACHE : 0, &nl, err, sizeof(err)) < 0)
        return -1;
    store_msg_list_free(l);
    *l = nl;
    return 0;
}

static void cmd_fetch(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                      struct imap_reply *r)
{
    const struct imap_arg *a = cmd->args + (s->uid ? 1 : 0);
    size_t na = cmd->nargs - (s->uid ? 1 : 0);
    struct fetch_req q = {0};
    struct store_msg_list l = {0};
    uint32_t *uids = NULL, *seen = NULL;
    size_t n = 0, nseen = 0;
    char err[256];
    if (na < 2 || na > 3 || fetch_atts_parse(&q, &a[1]) < 0 ||
        (na == 3 && fetch_mods_parse(s, &q, &a[2]) < 0)) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid FETCH arguments");
        goto out;
    }
    if (imap_view_resolve_arg(s, &a[0], &uids, &n, r) < 0)
        goto out;
    if (q.want[FA_MODSEQ] || q.changedsince_given)
        s->condstore = true; /* RFC 7162 3.1: the first CONDSTORE command enables it */
    if (q.vanished)
        fetch_vanished(s, st, a[0].str, q.changedsince);
    bool set_seen = q.seen && !s->sel.readonly;
    if (n && set_seen)
        imap_sync(s, st, imap_cmd_sync_mode(s)); /* so that our own change is not reported twice */
    if (n && store_msgs_load(st, s->account, s->sel.mailbox_id, uids[0], uids[n - 1],
                             q.cache ? STORE_MSG_CACHE : 0, &l, err, sizeof(err)) < 0) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the mailbox");
        goto out;
    }
    if (n && set_seen && fetch_set_seen(s, st, &q, uids, n, &l, &seen, &nseen) < 0) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the mailbox");
        goto out;
    }
    bool gone = false, unknown_cte = false;
    for (size_t i = 0; i < n; i++) {
        const struct store_msg *m = imap_msg_row(&l, uids[i]);
        if (!m) {
            gone = true; /* expunged by another session, not reported yet */
            continue;
        }
        if (q.changedsince_given && m->modseq <= q.changedsince)
            continue;
        enum fetch_rc rc = fetch_one(s, st, &q, m, imap_uid_in(seen, nseen, m->uid), &unknown_cte);
        if (rc == FETCH_GONE) {
            gone = true;
        } else if (rc == FETCH_FAIL) {
            imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
            goto out;
        }
    }
    if (nseen)
        imap_view_own(s, st, &l, seen, nseen);
    const char *name = s->uid ? "UID FETCH" : "FETCH";
    if (unknown_cte)
        imap_reply_set(r, IMAP_NO, "UNKNOWN-CTE", "Unknown Content-Transfer-Encoding");
    else if (gone && !s->uid)
        /* RFC 5530; a UID FETCH ignores UIDs that no longer exist (RFC 3501 6.4.8),
         * and the sync after it reports the expunge. */
        imap_reply_set(r, IMAP_NO, "EXPUNGEISSUED", "Some messages were expunged");
    else
        imap_reply_set(r, IMAP_OK, NULL, "%s completed", name);
out:
    fetch_req_free(&q);
    store_msg_list_free(&l);
    free(uids);
    free(seen);
}

const struct imap_cmd_def imap_cmds_fetch[] = {
    {"FETCH", IMAP_IN_SELECTED, false, IMAP_SYNC_NO_EXPUNGE, cmd_fetch, true},
    {NULL, 0, false, IMAP_SYNC_NONE, NULL, false},
};
