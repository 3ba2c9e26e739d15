/* imap_cmd_search — SEARCH and UID SEARCH (RFC 3501 6.4.4, 6.4.8), with
 * the MODSEQ criterion of CONDSTORE (RFC 7162 3.1.5) and the result
 * options of ESEARCH (RFC 4731). The program is parsed and evaluated by
 * imap_search.c; this file walks the selected mailbox's view and answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_search.h"
#include "proto/imap/imap_seqset.h"

/* What the read callback needs to find a message file. */
struct search_store_ctx {
    struct imap_session *s;
    struct store *st;
    bool header_only; /* no key looks past the header: read just that */
};

static int search_read(void *ctx, const struct imap_search_msg *m, uint8_t **data_r, size_t *len_r)
{
    struct search_store_ctx *c = ctx;
    const struct store_msg *sm = m->handle;
    char err[256], q[300];
    int rc = c->header_only ? store_msg_read_header(c->st, c->s->account, sm->file, data_r, len_r,
                                                    err, sizeof(err))
                            : store_msg_read(c->st, c->s->account, sm->file, data_r, len_r, err,
                                             sizeof(err));
    if (rc < 0) {
        /* Expunged by another session meanwhile, or worse: not a match. */
        log_warn("imap", "event=search_read_failed id=%s uid=%u error=%s", c->s->id, sm->uid,
                 log_quote(q, sizeof(q), err));
        return -1;
    }
    return 0;
}

/* The matches: sequence numbers or UIDs, ascending, with their MODSEQs. */
struct search_result {
    uint32_t *ids;
    uint64_t *modseqs;
    size_t n;
};

static void search_result_free(struct search_result *res)
{
    free(res->ids);
    free(res->modseqs);
    memset(res, 0, sizeof(*res));
}

/* Evaluate p on every message of the view. 0, or -1 (r set). */
static int search_run(struct imap_session *s, struct store *st, const struct imap_search *p,
                      struct search_result *res, struct imap_reply *r)
{
    struct imap_view *v = &s->sel;
    memset(res, 0, sizeof(*res));
    if (v->n == 0)
        return 0;
    res->ids = malloc(v->n * sizeof(*res->ids));
    res->modseqs = malloc(v->n * sizeof(*res->modseqs));
    if (!res->ids || !res->modseqs) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
        return -1;
    }
    /* SENT* keys can use the Date: of cached envelopes, FROM/SUBJECT/...
     * the cached search fields, instead of the file. */
    unsigned what = imap_search_cost(p) >= IMAP_SEARCH_COST_DATE ? STORE_MSG_FIELDS : 0;
    struct store_msg_list l = {0};
    char err[256], q[300];
    if (store_msgs_load(st, s->account, v->mailbox_id, v->uids[0], v->uids[v->n - 1], what, &l, err,
                        sizeof(err)) < 0) {
        log_warn("imap", "event=search_failed id=%s error=%s", s->id, log_quote(q, sizeof(q), err));
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read mailbox");
        return -1;
    }
    struct search_store_ctx ctx = {s, st, imap_search_cost(p) <= IMAP_SEARCH_COST_HEADER};
    struct imap_search_env env = {
        .max_seq = (uint32_t)v->n,
        .max_uid = v->uids[v->n - 1],
        .read = search_read,
        .ctx = &ctx,
    };
    int rc = 0;
    size_t j = 0;
    for (size_t i = 0; i < v->n && rc == 0; i++) {
        /* Both are in UID order; a UID of the view missing from the index
         * was expunged by another session and matches nothing. */
        while (j < l.n && l.v[j].uid < v->uids[i])
            j++;
        if (j == l.n || l.v[j].uid != v->uids[i])
            continue;
        const struct store_msg *sm = &l.v[j];
        struct imap_search_msg m = {
            .seq = (uint32_t)i + 1,
            .uid = sm->uid,
            .flags = sm->flags,
            .keywords = sm->keywords,
            .recent = sm->uid >= v->first_recent,
            .size = sm->size,
            .modseq = sm->modseq,
            .internal_date = sm->internal_date,
            .envelope = sm->envelope,
            .fields = sm->fields,
            .fields_len = sm->fields_len,
            .handle = sm,
        };
        switch (imap_search_match(p, &m, &env)) {
        case IMAP_SEARCH_MATCH:
            res->ids[res->n] = s->uid ? sm->uid : m.seq;
            res->modseqs[res->n++] = sm->modseq;
            break;
        case IMAP_SEARCH_NOMEM:
            imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
            rc = -1;
            break;
        default: /* no match, or a file that cannot be read: not a match */
            break;
        }
    }
    store_msg_list_free(&l);
    return rc;
}

/* RFC 7162 3.1.5: "(MODSEQ n)" is the highest MODSEQ of the messages returned. */
static uint64_t search_highest(const struct search_result *res, size_t from, size_t to)
{
    uint64_t top = 0;
    for (size_t i = from; i < to; i++)
        if (res->modseqs[i] > top)
            top = res->modseqs[i];
    return top;
}

/* "* SEARCH 2 5", and with MODSEQ "* SEARCH 2 5 (MODSEQ 917162500)"
 * unless nothing matched (RFC 7162 3.1.5). */
static void search_write(struct imap_session *s, const struct imap_search *p,
                         const struct search_result *res)
{
    buf_puts(&s->ex, "* SEARCH");
    for (size_t i = 0; i < res->n; i++)
        buf_printf(&s->ex, " %u", res->ids[i]);
    if (p->modseq && res->n)
        buf_printf(&s->ex, " (MODSEQ %llu)", (unsigned long long)search_highest(res, 0, res->n));
    buf_puts(&s->ex, "\r\n");
}

/* RFC 4731 3.1: "* ESEARCH (TAG "t") [UID] MIN a MAX b COUNT n ALL set".
 * MIN, MAX and ALL are left out when nothing matched; COUNT never. */
static void esearch_write(struct imap_session *s, const struct imap_search *p,
                          const struct search_result *res)
{
    buf_puts(&s->ex, "* ESEARCH (TAG ");
    imap_write_string(&s->ex, s->tag, strlen(s->tag));
    buf_puts(&s->ex, ")");
    if (s->uid)
        buf_puts(&s->ex, " UID");
    if (res->n && (p->ret & IMAP_SEARCH_RET_MIN))
        buf_printf(&s->ex, " MIN %u", res->ids[0]);
    if (res->n && (p->ret & IMAP_SEARCH_RET_MAX))
        buf_printf(&s->ex, " MAX %u", res->ids[res->n - 1]);
    if (p->ret & IMAP_SEARCH_RET_COUNT)
        buf_printf(&s->ex, " COUNT %zu", res->n);
    if (res->n && (p->ret & IMAP_SEARCH_RET_ALL)) {
        buf_puts(&s->ex, " ALL ");
        imap_seqset_format_uids(&s->ex, res->ids, res->n);
    }
    if (p->modseq && res->n) {
        /* RFC 4731 3.2: over all matches when ALL or COUNT is asked,
         * else over the messages MIN and MAX return. */
        uint64_t top;
        if (p->ret & (IMAP_SEARCH_RET_ALL | IMAP_SEARCH_RET_COUNT)) {
            top = search_highest(res, 0, res->n);
        } else {
            top = 0;
            if (p->ret & IMAP_SEARCH_RET_MIN)
                top = res->modseqs[0];
            if ((p->ret & IMAP_SEARCH_RET_MAX) && res->modseqs[res->n - 1] > top)
                top = res->modseqs[res->n - 1];
        }
        buf_printf(&s->ex, " MODSEQ %llu", (unsigned long long)top);
    }
    buf_puts(&s->ex, "\r\n");
}

static void cmd_search(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    const struct imap_arg *args = cmd->args;
    size_t nargs = cmd->nargs;
    if (s->uid) { /* args[0] is "SEARCH" */
        args++;
        nargs--;
    }
    struct imap_search *p = NULL;
    char err[128];
    switch (imap_search_parse(args, nargs, &p, err, sizeof(err))) {
    case IMAP_SEARCH_PARSE_OK:
        break;
    case IMAP_SEARCH_PARSE_BADCHARSET: /* RFC 3501 6.4.4, 7.1 */
        imap_reply_set(r, IMAP_NO, "BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset");
        return;
    case IMAP_SEARCH_PARSE_NOMEM:
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
        return;
    default:
        imap_reply_set(r, IMAP_BAD, NULL, "%s", err);
        return;
    }
    if (p->modseq && !s->condstore) {
        /* RFC 7162 3.1: SEARCH MODSEQ is a CONDSTORE enabling command; the
         * first one while a mailbox is selected reports its HIGHESTMODSEQ. */
        s->condstore = true;
        buf_printf(&s->ex, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
                   (unsigned long long)s->sel.modseq);
    }
    struct search_result res;
    if (search_run(s, st, p, &res, r) == 0) {
        if (p->esearch)
            esearch_write(s, p, &res);
        else
            search_write(s, p, &res);
        imap_reply_set(r, IMAP_OK, NULL, "%sSEARCH completed", s->uid ? "UID " : "");
    }
    search_result_free(&res);
    imap_search_free(&p);
}

const struct imap_cmd_def imap_cmds_search[] = {
    {"SEARCH", IMAP_IN_SELECTED, false, IMAP_SYNC_NO_EXPUNGE, cmd_search, true},
    {NULL, 0, false, IMAP_SYNC_NONE, NULL, false},
};
