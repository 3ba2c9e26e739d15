/* imap_view — the selected mailbox as one session sees it, and the report
 * of what other sessions and deliveries changed (RFC 3501 5.2, 7.4.1;
 * RFC 7162 3.2.10 VANISHED under QRESYNC). */
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_int.h"
#include "proto/imap/imap_seqset.h"

uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->n && v->uids[lo] == uid ? (uint32_t)lo + 1 : 0;
}

void imap_view_clear(struct imap_view *v)
{
    free(v->uids);
    free(v->pending_expunges);
    memset(v, 0, sizeof(*v));
}

static int imap_view_push(uint32_t **v, size_t *n, size_t *cap, uint32_t x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint32_t *p = realloc(*v, nc * sizeof(*p));
        if (!p)
            return -1;
        *v = p;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

int imap_view_resolve(struct imap_session *s, const char *set, bool uid, uint32_t **uids_r,
                      size_t *n_r)
{
    struct imap_view *v = &s->sel;
    struct imap_seqset ss = IMAP_SEQSET_INIT, rs = IMAP_SEQSET_INIT;
    *uids_r = NULL;
    *n_r = 0;
    if (!set || imap_seqset_parse(set, &ss) < 0 || ss.saved)
        return -1;
    /* "*" is the highest UID / the number of messages (RFC 3501 9 seq-number);
     * for UIDs in an empty mailbox "*" still names nothing. */
    uint32_t star = uid ? (v->n ? v->uids[v->n - 1] : 0) : (uint32_t)v->n;
    if (imap_seqset_resolve(&ss, star ? star : 1, &rs) < 0) {
        imap_seqset_free(&ss);
        return -1;
    }
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; i < rs.nranges && rc == 0; i++) {
        const struct imap_seq_range *r = &rs.ranges[i];
        if (uid) {
            /* Walk the view from the first UID >= lo. */
            size_t lo = 0, hi = v->n;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (v->uids[mid] < r->lo)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (size_t k = lo; k < v->n && v->uids[k] <= r->hi && rc == 0; k++)
                rc = imap_view_push(uids_r, n_r, &cap, v->uids[k]);
        } else {
            for (uint64_t q = r->lo; q <= r->hi && q <= v->n && rc == 0; q++)
                rc = imap_view_push(uids_r, n_r, &cap, v->uids[q - 1]);
        }
    }
    imap_seqset_free(&ss);
    imap_seqset_free(&rs);
    if (rc < 0) {
        free(*uids_r);
        *uids_r = NULL;
        *n_r = 0;
    }
    return rc;
}

static bool imap_view_pending(const struct imap_view *v, uint32_t uid)
{
    for (size_t i = 0; i < v->npending; i++)
        if (v->pending_expunges[i] == uid)
            return true;
    return false;
}

static int imap_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int imap_cmp_msg_uid(const void *a, const void *b)
{
    const struct store_msg *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Report and drop the expunges that were held back. */
static void imap_sync_expunges(struct imap_session *s)
{
    struct imap_view *v = &s->sel;
    if (v->npending == 0)
        return;
    if (v->npending)
        qsort(v->pending_expunges, v->npending, sizeof(uint32_t), imap_cmp_u32);
    if (s->qresync) {
        buf_puts(&s->ex, "* VANISHED ");
        imap_seqset_format_uids(&s->ex, v->pending_expunges, v->npending);
        buf_puts(&s->ex, "\r\n");
    }
    /* From the highest down, so that each number is right when it is sent. */
    for (size_t i = v->npending; i-- > 0;) {
        uint32_t seq = imap_view_seq(v, v->pending_expunges[i]);
        if (seq == 0)
            continue;
        if (!s->qresync)
            buf_printf(&s->ex, "* %u EXPUNGE\r\n", seq);
        memmove(&v->uids[seq - 1], &v->uids[seq], (v->n - seq) * sizeof(uint32_t));
        v->n--;
    }
    v->npending = 0;
}

static void imap_sync_fetch(struct imap_session *s, uint32_t seq, const struct store_msg *m)
{
    buf_printf(&s->ex, "* %u FETCH (", seq);
    if (s->uid || s->qresync)
        buf_printf(&s->ex, "UID %u ", m->uid);
    buf_puts(&s->ex, "FLAGS ");
    imap_write_flags(&s->ex, m->flags, m->keywords, m->uid >= s->sel.first_recent);
    if (s->condstore)
        buf_printf(&s->ex, " MODSEQ (%llu)", (unsigned long long)m->modseq);
    buf_puts(&s->ex, ")\r\n");
}

int imap_sync(struct imap_session *s, struct store *st, enum imap_sync_mode mode)
{
    struct imap_view *v = &s->sel;
    if (s->state != IMAP_STATE_SELECTED || mode == IMAP_SYNC_NONE)
        return 0;
    char err[256];
    struct store_mailbox mb;
    if (store_mailbox_get(st, s->account, v->name, &mb, err, sizeof(err)) != 1 ||
        mb.id != v->mailbox_id) {
        /* Deleted or renamed away under us: nothing sensible to report. */
        return -1;
    }
    if (mb.highestmodseq <= v->modseq && (mode != IMAP_SYNC_FULL || v->npending == 0))
        return 0;
    struct store_msg_list changed = {0};
    uint32_t *gone = NULL;
    size_t ngone = 0;
    if (store_msgs_changed_since(st, s->account, v->mailbox_id, v->modseq, &changed, &gone, &ngone,
                                 err, sizeof(err)) < 0)
        return -1;
    /* New messages are appended in UID order. */
    if (changed.n)
        qsort(changed.v, changed.n, sizeof(changed.v[0]), imap_cmp_msg_uid);
    for (size_t i = 0; i < ngone; i++)
        if (imap_view_seq(v, gone[i]) && !imap_view_pending(v, gone[i]))
            imap_view_push(&v->pending_expunges, &v->npending, &v->cappending, gone[i]);
    if (mode == IMAP_SYNC_FULL)
        imap_sync_expunges(s);
    uint64_t top = mb.highestmodseq;
    size_t before = v->n;
    for (size_t i = 0; i < changed.n; i++) {
        const struct store_msg *m = &changed.v[i];
        if (m->modseq > top)
            top = m->modseq;
        uint32_t seq = imap_view_seq(v, m->uid);
        if (seq) {
            if (!imap_view_pending(v, m->uid))
                imap_sync_fetch(s, seq, m);
        } else if (v->n == 0 || m->uid > v->uids[v->n - 1]) {
            bool expunged = false;
            for (size_t k = 0; k < ngone; k++)
                expunged |= gone[k] == m->uid;
            if (!expunged)
                imap_view_push(&v->uids, &v->n, &v->cap, m->uid);
        }
    }
    if (v->n != before) {
        size_t recent = 0;
        for (size_t k = v->n; k-- > 0 && v->uids[k] >= v->first_recent;)
            recent++;
        buf_printf(&s->ex, "* %zu EXISTS\r\n* %zu RECENT\r\n", v->n, recent);
    }
    v->modseq = top;
    store_msg_list_free(&changed);
    free(gone);
    return 0;
}

/* --- shared by the selected-state commands ---------------------------------- */

/* Resolve the sequence set argument into the view's UIDs. For sequence
 * numbers, one beyond the mailbox (or "*" in an empty one) is BAD (RFC
 * 3501 9, seq-number). -1 with r set on error. */
int imap_view_resolve_arg(struct imap_session *s, const struct imap_arg *a, uint32_t **uids_r,
                         size_t *n_r, struct imap_reply *r)
{
    *uids_r = NULL;
    *n_r = 0;
    if (a->type != IMAP_ARG_ATOM) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid sequence set");
        return -1;
    }
    if (!s->uid) {
        struct imap_seqset ss = IMAP_SEQSET_INIT;
        if (imap_seqset_parse(a->str, &ss) < 0 || ss.saved) {
            imap_seqset_free(&ss);
            imap_reply_set(r, IMAP_BAD, NULL, "Invalid sequence set");
            return -1;
        }
        uint32_t n = (uint32_t)s->sel.n;
        bool bad = imap_seqset_max(&ss, n) > n || (imap_seqset_has_star(&ss) && n == 0);
        imap_seqset_free(&ss);
        if (bad) {
            imap_reply_set(r, IMAP_BAD, NULL, "Invalid message sequence number");
            return -1;
        }
    }
    if (imap_view_resolve(s, a->str, s->uid, uids_r, n_r) < 0) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid sequence set");
        return -1;
    }
    return 0;
}

/* The sync the core runs after this command (imap_session_execute). */
enum imap_sync_mode imap_cmd_sync_mode(const struct imap_session *s)
{
    return s->uid && s->def->sync == IMAP_SYNC_NO_EXPUNGE ? IMAP_SYNC_FULL : s->def->sync;
}

const struct store_msg *imap_msg_row(const struct store_msg_list *l, uint32_t uid)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->v[lo].uid == uid ? &l->v[lo] : NULL;
}

bool imap_uid_in(const uint32_t *v, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo] == uid;
}

/* This session changed the flags of own[0..n) (sorted), whose state after
 * the change is in rows (NULL when none) and is known to the client, and
 * expunged messages it removed from the view. When nothing else changed
 * the mailbox since the view's MODSEQ, move the view past the change so
 * that imap_sync does not report it again. */
void imap_view_own(struct imap_session *s, struct store *st,
                           const struct store_msg_list *rows, const uint32_t *own, size_t n)
{
    struct imap_view *v = &s->sel;
    struct store_msg_list ch = {0};
    uint32_t *gone = NULL;
    size_t ngone = 0;
    char err[256];
    /* Read first: whatever it counts is in the changes read next. */
    struct store_mailbox mb;
    if (store_mailbox_get(st, s->account, v->name, &mb, err, sizeof(err)) != 1 ||
        mb.id != v->mailbox_id)
        return;
    if (store_msgs_changed_since(st, s->account, v->mailbox_id, v->modseq, &ch, &gone, &ngone, err,
                                 sizeof(err)) < 0)
        return;
    bool own_only = true;
    uint64_t top = v->modseq;
    for (size_t i = 0; own_only && i < ngone; i++)
        own_only = imap_view_seq(v, gone[i]) == 0;
    for (size_t i = 0; own_only && i < ch.n; i++) {
        const struct store_msg *m = rows ? imap_msg_row(rows, ch.v[i].uid) : NULL;
        own_only = m && m->modseq == ch.v[i].modseq && imap_uid_in(own, n, m->uid);
        if (ch.v[i].modseq > top)
            top = ch.v[i].modseq;
    }
    if (own_only)
        v->modseq = mb.highestmodseq > top ? mb.highestmodseq : top; /* expunges bump it too */
    store_msg_list_free(&ch);
    free(gone);
}
