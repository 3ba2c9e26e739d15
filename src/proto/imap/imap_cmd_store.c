/* imap_cmd_store — the commands that change messages of the selected
 * mailbox: STORE (RFC 3501 6.4.6, RFC 7162 3.1.3 UNCHANGEDSINCE), COPY
 * (6.4.7, RFC 4315 COPYUID), MOVE (RFC 6851), EXPUNGE (6.4.3) and UID
 * EXPUNGE (RFC 4315), each also as a UID command (6.4.8).
 *
 * This session's own changes are reported here; the sync the core runs
 * afterwards reports what others changed. To keep it from reporting our
 * own flag changes a second time, the view's MODSEQ is moved past them
 * when nothing else changed meanwhile (store_view_own).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_seqset.h"

/* --- helpers --------------------------------------------------------------------- */


/* Report the expunge of uids[0..n) (sorted) and remove them from the
 * view: "* n EXPUNGE" in ascending order, each number counted after the
 * ones before it are gone (RFC 3501 7.4.1), or one VANISHED under QRESYNC
 * (RFC 7162 3.2.10). */
static void store_view_expunge(struct imap_session *s, const uint32_t *uids, size_t n)
{
    struct imap_view *v = &s->sel;
    if (n == 0)
        return;
    if (s->qresync) {
        uint32_t *in = malloc(n * sizeof(uint32_t));
        size_t k = 0;
        for (size_t i = 0; in && i < n; i++)
            if (imap_view_seq(v, uids[i]))
                in[k++] = uids[i];
        if (k) {
            buf_puts(&s->ex, "* VANISHED ");
            imap_seqset_format_uids(&s->ex, in, k);
            buf_puts(&s->ex, "\r\n");
        }
        free(in);
    }
    size_t j = 0, w = 0, removed = 0;
    for (size_t i = 0; i < v->n; i++) {
        while (j < n && uids[j] < v->uids[i])
            j++;
        if (j < n && uids[j] == v->uids[i]) {
            if (!s->qresync)
                buf_printf(&s->ex, "* %zu EXPUNGE\r\n", i + 1 - removed);
            removed++;
            continue;
        }
        v->uids[w++] = v->uids[i];
    }
    v->n = w;
    /* Expunges of others held back for these UIDs are reported now. */
    size_t pw = 0;
    for (size_t i = 0; i < v->npending; i++)
        if (!imap_uid_in(uids, n, v->pending_expunges[i]))
            v->pending_expunges[pw++] = v->pending_expunges[i];
    v->npending = pw;
}

/* --- STORE -------------------------------------------------------------------------- */

struct store_req {
    enum store_flag_op op;
    bool silent;
    uint32_t flags;
    char *keywords;
    bool unchangedsince_given;
    uint64_t unchangedsince;
};

/* mod-sequence-valzer (RFC 7162 7): digits, at most 2^63-1. */
static int store_modseq_parse(const struct imap_arg *a, uint64_t *r)
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

/* set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] (flags) | flag *(SP flag) */
static int store_parse(const struct imap_arg *a, size_t na, struct store_req *q)
{
    size_t i = 1;
    memset(q, 0, sizeof(*q));
    if (i < na && a[i].type == IMAP_ARG_LIST) {
        const struct imap_arg *m = a[i].list;
        if (a[i].nlist != 2 || !imap_arg_atom_is(&m[0], "UNCHANGEDSINCE") ||
            store_modseq_parse(&m[1], &q->unchangedsince) < 0)
            return -1;
        q->unchangedsince_given = true;
        i++;
    }
    if (i >= na || a[i].type != IMAP_ARG_ATOM)
        return -1;
    const char *item = a[i++].str;
    q->op = STORE_FLAGS_SET;
    if (*item == '+' || *item == '-') {
        q->op = *item == '+' ? STORE_FLAGS_ADD : STORE_FLAGS_REMOVE;
        item++;
    }
    if (strcasecmp(item, "FLAGS.SILENT") == 0)
        q->silent = true;
    else if (strcasecmp(item, "FLAGS") != 0)
        return -1;
    if (i >= na)
        return -1;
    struct imap_arg list = {
        .type = IMAP_ARG_LIST, .list = (struct imap_arg *)&a[i], .nlist = na - i};
    const struct imap_arg *flags = &list;
    if (na - i == 1 && a[i].type == IMAP_ARG_LIST)
        flags = &a[i];
    return imap_parse_flags(flags, &q->flags, &q->keywords);
}

/* The untagged FETCH responses of a STORE (RFC 3501 6.4.6): current flags
 * of every message of the set, unless .SILENT; with CONDSTORE, MODSEQ,
 * and even after .SILENT the MODSEQ of each message changed (RFC 7162
 * 3.1.3). Failed (UNCHANGEDSINCE) messages get none. */
static void store_report(struct imap_session *s, const struct store_req *q, const uint32_t *uids,
                         size_t n, const struct store_msg_list *rows, const uint32_t *failed,
                         size_t nfailed, uint64_t before)
{
    struct imap_view *v = &s->sel;
    for (size_t i = 0; i < n; i++) {
        const struct store_msg *m = imap_msg_row(rows, uids[i]);
        uint32_t seq = imap_view_seq(v, uids[i]);
        if (!m || !seq || imap_uid_in(failed, nfailed, uids[i]))
            continue;
        if (q->silent && !(s->condstore && m->modseq > before))
            continue;
        const char *sep = "";
        buf_printf(&s->ex, "* %u FETCH (", seq);
        if (s->uid || s->qresync) { /* RFC 3501 6.4.8; QRESYNC: always (RFC 7162) */
            buf_printf(&s->ex, "UID %u", m->uid);
            sep = " ";
        }
        if (!q->silent) {
            buf_printf(&s->ex, "%sFLAGS ", sep);
            imap_write_flags(&s->ex, m->flags, m->keywords, m->uid >= v->first_recent);
            sep = " ";
        }
        if (s->condstore)
            buf_printf(&s->ex, "%sMODSEQ (%llu)", sep, (unsigned long long)m->modseq);
        buf_puts(&s->ex, ")\r\n");
    }
}

/* "MODIFIED set" (RFC 7162 3.1.3): sequence numbers, or UIDs for UID STORE. */
static void store_modified_code(struct imap_session *s, const uint32_t *failed, size_t nfailed,
                                struct imap_reply *r)
{
    uint32_t *nums = malloc(nfailed * sizeof(uint32_t));
    size_t k = 0;
    for (size_t i = 0; nums && i < nfailed; i++) {
        uint32_t x = s->uid ? failed[i] : imap_view_seq(&s->sel, failed[i]);
        if (x)
            nums[k++] = x;
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, "MODIFIED ");
    imap_seqset_format_uids(&b, nums, k);
    const char *code = buf_cstr(&b);
    if (code && strlen(code) < sizeof(r->code))
        imap_reply_set(r, IMAP_OK, code, "Conditional STORE failed");
    else
        imap_reply_set(r, IMAP_NO, NULL, "Conditional STORE failed for too many messages");
    buf_free(&b);
    free(nums);
}

static int store_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void cmd_store(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                      struct imap_reply *r)
{
    const struct imap_arg *a = cmd->args + (s->uid ? 1 : 0);
    size_t na = cmd->nargs - (s->uid ? 1 : 0);
    struct store_req q = {0};
    struct store_msg_list rows = {0};
    uint32_t *uids = NULL, *failed = NULL, *own = NULL;
    size_t n = 0, nfailed = 0, nown = 0;
    char err[256];
    if (na < 3 || store_parse(a, na, &q) < 0) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid STORE arguments");
        free(q.keywords);
        return;
    }
    if (imap_view_resolve_arg(s, &a[0], &uids, &n, r) < 0)
        goto out;
    if (s->sel.readonly) {
        imap_reply_set(r, IMAP_NO, NULL, "Mailbox is read-only");
        goto out;
    }
    if (q.unchangedsince_given)
        s->condstore = true; /* RFC 7162 3.1 */
    if (n == 0) {
        imap_reply_set(r, IMAP_OK, NULL, "STORE completed");
        goto out;
    }
    imap_sync(s, st, imap_cmd_sync_mode(s)); /* so that our own change is not reported twice */
    uint64_t before = s->sel.modseq;
    if (q.unchangedsince_given && q.unchangedsince == 0) {
        /* RFC 7162 3.1.3: UNCHANGEDSINCE 0 always fails. */
        failed = malloc(n * sizeof(uint32_t));
        if (failed) {
            memcpy(failed, uids, n * sizeof(uint32_t));
            nfailed = n;
        }
    } else if (store_msgs_set_flags(st, s->account, s->sel.mailbox_id, uids, n, q.op, q.flags,
                                    q.keywords, q.unchangedsince, &failed, &nfailed, err,
                                    sizeof(err)) < 0) {
        log_warn("imap", "event=store_failed id=%s error=\"%s\"", s->id, err);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "STORE failed");
        goto out;
    } else {
        s->changed = true;
    }
    if (nfailed)
        qsort(failed, nfailed, sizeof(uint32_t), store_cmp_u32);
    if (store_msgs_load(st, s->account, s->sel.mailbox_id, uids[0], uids[n - 1], 0, &rows, err,
                        sizeof(err)) < 0) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the mailbox");
        goto out;
    }
    store_report(s, &q, uids, n, &rows, failed, nfailed, before);
    own = malloc(n * sizeof(uint32_t));
    for (size_t i = 0; own && i < n; i++)
        if (!imap_uid_in(failed, nfailed, uids[i]))
            own[nown++] = uids[i];
    if (own)
        imap_view_own(s, st, &rows, own, nown);
    if (nfailed)
        store_modified_code(s, failed, nfailed, r);
    else
        imap_reply_set(r, IMAP_OK, NULL, "STORE completed");
out:
    free(q.keywords);
    free(uids);
    free(failed);
    free(own);
    store_msg_list_free(&rows);
}

/* --- COPY and MOVE ---------------------------------------------------------------------- */

/* The messages to copy or move: uids that still exist (the others were
 * expunged by another session). For sequence numbers a missing one fails
 * the command with EXPUNGEISSUED (RFC 5530), before anything is copied. */
static int store_copy_check(struct imap_session *s, struct store *st, const uint32_t *uids,
                            size_t n, struct imap_reply *r)
{
    struct store_msg_list l = {0};
    char err[256];
    if (store_msgs_load(st, s->account, s->sel.mailbox_id, uids[0], uids[n - 1], 0, &l, err,
                        sizeof(err)) < 0) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the mailbox");
        return -1;
    }
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        found += imap_msg_row(&l, uids[i]) != NULL;
    store_msg_list_free(&l);
    if (found < n && !s->uid) {
        imap_reply_set(r, IMAP_NO, "EXPUNGEISSUED", "Some messages were expunged");
        return -1;
    }
    return 0;
}

/* "COPYUID uidvalidity src dst" (RFC 4315 3) for the pairs that were
 * copied; *nsrc_r of them. The source UIDs stay in src (compacted). */
static void store_copyuid(struct buf *out, uint32_t uidvalidity, uint32_t *src, uint32_t *dst,
                          size_t n, size_t *nsrc_r)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (dst[i]) {
            src[k] = src[i];
            dst[k++] = dst[i];
        }
    *nsrc_r = k;
    if (k == 0)
        return;
    buf_printf(out, "COPYUID %u ", uidvalidity);
    imap_seqset_format_uids(out, src, k);
    buf_puts(out, " ");
    imap_seqset_format_uids(out, dst, k);
}

static void store_copy(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r, bool move)
{
    const struct imap_arg *a = cmd->args + (s->uid ? 1 : 0);
    size_t na = cmd->nargs - (s->uid ? 1 : 0);
    const char *verb = move ? "MOVE" : "COPY";
    uint32_t *uids = NULL, *dst = NULL;
    size_t n = 0, k = 0;
    char name[256], err[256];
    struct buf code = BUF_INIT;
    if (na != 2 || !imap_arg_str(&a[1])) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid %s arguments", verb);
        return;
    }
    if (imap_view_resolve_arg(s, &a[0], &uids, &n, r) < 0)
        goto out;
    if (move && s->sel.readonly) {
        imap_reply_set(r, IMAP_NO, NULL, "Mailbox is read-only");
        goto out;
    }
    if (imap_arg_mailbox(&a[1], name, sizeof(name)) < 0) {
        imap_reply_set(r, IMAP_NO, NULL, "Invalid mailbox name");
        goto out;
    }
    struct store_mailbox to;
    int found = store_mailbox_get(st, s->account, name, &to, err, sizeof(err));
    if (found <= 0) {
        /* RFC 3501 6.4.7: TRYCREATE when the target does not exist. */
        imap_reply_set(r, IMAP_NO, found == 0 ? "TRYCREATE" : "SERVERBUG", "%s",
                       found == 0 ? "Mailbox doesn't exist" : "Cannot open mailbox");
        goto out;
    }
    if (n == 0) {
        imap_reply_set(r, IMAP_OK, NULL, "%s completed", verb);
        goto out;
    }
    if (store_copy_check(s, st, uids, n, r) < 0)
        goto out;
    dst = calloc(n, sizeof(uint32_t));
    if (!dst || store_msgs_copy(st, s->account, s->sel.mailbox_id, uids, n, to.id, move, dst, err,
                                sizeof(err)) < 0) {
        log_warn("imap", "event=%s_failed id=%s error=\"%s\"", move ? "move" : "copy", s->id,
                 dst ? err : "out of memory");
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "%s failed", verb);
        goto out;
    }
    s->changed = true;
    store_copyuid(&code, to.uidvalidity, uids, dst, n, &k);
    const char *c = buf_size(&code) ? buf_cstr(&code) : NULL;
    if (move) {
        /* RFC 6851 4.3: COPYUID in an untagged OK before the expunges. */
        if (c)
            buf_printf(&s->ex, "* OK [%s] Moved UIDs\r\n", c);
        store_view_expunge(s, uids, k);
        imap_view_own(s, st, NULL, NULL, 0);
        imap_reply_set(r, IMAP_OK, NULL, "MOVE completed");
    } else if (c && strlen(c) < sizeof(r->code)) {
        imap_reply_set(r, IMAP_OK, c, "COPY completed");
    } else {
        /* A COPYUID longer than the tagged line's response code can hold
         * goes in an untagged OK, as MOVE sends it (RFC 6851 4.3). */
        if (c)
            buf_printf(&s->ex, "* OK [%s] Copied UIDs\r\n", c);
        imap_reply_set(r, IMAP_OK, NULL, "COPY completed");
    }
out:
    buf_free(&code);
    free(uids);
    free(dst);
}

static void cmd_copy(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                     struct imap_reply *r)
{
    store_copy(s, st, cmd, r, false);
}

static void cmd_move(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                     struct imap_reply *r)
{
    store_copy(s, st, cmd, r, true);
}

/* --- EXPUNGE -------------------------------------------------------------------------- */

/* EXPUNGE: every \Deleted message of the view (RFC 3501 6.4.3); UID
 * EXPUNGE: only those of the given UIDs (RFC 4315 2.1). Messages that
 * arrived after the view's last sync are not touched. */
static void cmd_expunge(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                        struct imap_reply *r)
{
    struct imap_view *v = &s->sel;
    uint32_t *uids = NULL, *del = NULL;
    size_t n = 0, k = 0;
    struct store_msg_list l = {0};
    char err[256];
    if (cmd->nargs != (s->uid ? 2u : 0u)) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid EXPUNGE arguments");
        return;
    }
    if (s->uid && imap_view_resolve_arg(s, &cmd->args[1], &uids, &n, r) < 0)
        return;
    if (v->readonly) {
        imap_reply_set(r, IMAP_NO, NULL, "Mailbox is read-only");
        goto out;
    }
    if (!s->uid) {
        uids = malloc((v->n ? v->n : 1) * sizeof(uint32_t));
        if (!uids) {
            imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
            goto out;
        }
        memcpy(uids, v->uids, v->n * sizeof(uint32_t));
        n = v->n;
    }
    if (n && store_msgs_load(st, s->account, v->mailbox_id, uids[0], uids[n - 1], 0, &l, err,
                             sizeof(err)) < 0) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the mailbox");
        goto out;
    }
    del = malloc((n ? n : 1) * sizeof(uint32_t));
    for (size_t i = 0; del && i < n; i++) {
        const struct store_msg *m = imap_msg_row(&l, uids[i]);
        if (m && (m->flags & STORE_FLAG_DELETED))
            del[k++] = uids[i];
    }
    if (!del) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
        goto out;
    }
    if (k && store_msgs_expunge(st, s->account, v->mailbox_id, del, k, err, sizeof(err)) < 0) {
        log_warn("imap", "event=expunge_failed id=%s error=\"%s\"", s->id, err);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "EXPUNGE failed");
        goto out;
    }
    if (k) {
        s->changed = true;
        store_view_expunge(s, del, k);
        imap_view_own(s, st, NULL, NULL, 0);
    }
    imap_reply_set(r, IMAP_OK, NULL, "%s completed", s->uid ? "UID EXPUNGE" : "EXPUNGE");
out:
    store_msg_list_free(&l);
    free(uids);
    free(del);
}

const struct imap_cmd_def imap_cmds_store[] = {
    {"STORE", IMAP_IN_SELECTED, false, IMAP_SYNC_NO_EXPUNGE, cmd_store, true},
    {"COPY", IMAP_IN_SELECTED, false, IMAP_SYNC_NO_EXPUNGE, cmd_copy, true},
    {"MOVE", IMAP_IN_SELECTED, false, IMAP_SYNC_FULL, cmd_move, true},
    {"EXPUNGE", IMAP_IN_SELECTED, false, IMAP_SYNC_FULL, cmd_expunge, true},
    {NULL, 0, false, IMAP_SYNC_NONE, NULL, false},
};
