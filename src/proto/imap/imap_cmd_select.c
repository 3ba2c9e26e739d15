/* imap_cmd_select — SELECT and EXAMINE (RFC 3501 6.3.1-2, with CONDSTORE
 * and QRESYNC parameters, RFC 7162 3.1.8, 3.2.5), UNSELECT (RFC 3691),
 * CLOSE (6.4.2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_int.h"
#include "proto/imap/imap_seqset.h"

struct imap_qresync {
    bool given;
    uint32_t uidvalidity;
    uint64_t modseq;
    const char *known_uids; /* may be NULL */
};

/* "(CONDSTORE)" or "(QRESYNC (uidvalidity modseq [known-uids [seq-match]]))". */
static int imap_select_params(struct imap_session *s, const struct imap_command *cmd,
                              struct imap_qresync *q)
{
    memset(q, 0, sizeof(*q));
    if (cmd->nargs == 1)
        return 0;
    if (cmd->nargs != 2 || cmd->args[1].type != IMAP_ARG_LIST)
        return -1;
    const struct imap_arg *p = cmd->args[1].list;
    for (size_t i = 0; i < cmd->args[1].nlist; i++) {
        if (imap_arg_atom_is(&p[i], "CONDSTORE")) {
            s->condstore = true;
        } else if (imap_arg_atom_is(&p[i], "QRESYNC") && i + 1 < cmd->args[1].nlist &&
                   p[i + 1].type == IMAP_ARG_LIST && p[i + 1].nlist >= 2 && s->qresync) {
            const struct imap_arg *a = p[i + 1].list;
            char *end;
            q->uidvalidity = (uint32_t)strtoul(a[0].str ? a[0].str : "", &end, 10);
            if (a[0].type != IMAP_ARG_ATOM || *end)
                return -1;
            q->modseq = strtoull(a[1].str ? a[1].str : "", &end, 10);
            if (a[1].type != IMAP_ARG_ATOM || *end)
                return -1;
            if (p[i + 1].nlist >= 3 && a[2].type == IMAP_ARG_ATOM)
                q->known_uids = a[2].str;
            q->given = true;
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

static void imap_select_untagged(struct imap_session *s, const struct store_mailbox *mb,
                                 const struct store_msg_list *l)
{
    struct imap_view *v = &s->sel;
    uint32_t first_unseen = 0;
    size_t recent = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (!first_unseen && !(l->v[i].flags & STORE_FLAG_SEEN))
            first_unseen = (uint32_t)i + 1;
        if (l->v[i].uid >= v->first_recent)
            recent++;
    }
    buf_puts(&s->ex, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    buf_printf(&s->ex, "* OK [PERMANENTFLAGS (%s)] Flags permitted\r\n",
               v->readonly ? "" : "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*");
    buf_printf(&s->ex, "* %zu EXISTS\r\n* %zu RECENT\r\n", l->n, recent);
    if (first_unseen)
        buf_printf(&s->ex, "* OK [UNSEEN %u] First unseen\r\n", first_unseen);
    uint32_t uidnext = mb->uidnext;
    if (l->n && l->v[l->n - 1].uid >= uidnext)
        uidnext = l->v[l->n - 1].uid + 1;
    buf_printf(&s->ex, "* OK [UIDVALIDITY %u] UIDs valid\r\n", mb->uidvalidity);
    buf_printf(&s->ex, "* OK [UIDNEXT %u] Predicted next UID\r\n", uidnext);
    buf_printf(&s->ex, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
               (unsigned long long)v->modseq);
}

/* QRESYNC (RFC 7162 3.2.5.1): what vanished and what changed since the
 * client's MODSEQ, as VANISHED (EARLIER) and FETCH responses. */
static void imap_select_qresync(struct imap_session *s, struct store *st,
                                const struct imap_qresync *q)
{
    struct imap_view *v = &s->sel;
    if (!q->given || q->uidvalidity != v->uidvalidity)
        return;
    struct imap_seqset known = IMAP_SEQSET_INIT;
    if (q->known_uids && imap_seqset_parse(q->known_uids, &known) < 0)
        return;
    struct store_msg_list changed = {0};
    uint32_t *gone = NULL;
    size_t ngone = 0;
    char err[256];
    if (store_msgs_changed_since(st, s->account, v->mailbox_id, q->modseq, &changed, &gone, &ngone,
                                 err, sizeof(err)) == 0) {
        size_t k = 0;
        for (size_t i = 0; i < ngone; i++)
            if (!q->known_uids || imap_seqset_contains(&known, gone[i], UINT32_MAX))
                gone[k++] = gone[i];
        if (k) {
            buf_puts(&s->ex, "* VANISHED (EARLIER) ");
            imap_seqset_format_uids(&s->ex, gone, k);
            buf_puts(&s->ex, "\r\n");
        }
        for (size_t i = 0; i < changed.n; i++) {
            const struct store_msg *m = &changed.v[i];
            uint32_t seq = imap_view_seq(v, m->uid);
            if (!seq)
                continue;
            buf_printf(&s->ex, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
            imap_write_flags(&s->ex, m->flags, m->keywords, m->uid >= v->first_recent);
            buf_printf(&s->ex, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
        }
    }
    store_msg_list_free(&changed);
    free(gone);
    imap_seqset_free(&known);
}

static void imap_select(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                        struct imap_reply *r, bool readonly)
{
    char name[256], err[256];
    struct imap_qresync q;
    if (cmd->nargs < 1 || imap_arg_mailbox(&cmd->args[0], name, sizeof(name)) < 0 ||
        imap_select_params(s, cmd, &q) < 0) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid arguments");
        return;
    }
    bool was_selected = s->state == IMAP_STATE_SELECTED;
    imap_view_clear(&s->sel);
    s->state = IMAP_STATE_AUTH;
    if (was_selected && s->qresync)
        buf_puts(&s->ex, "* OK [CLOSED] Previous mailbox closed\r\n"); /* RFC 7162 3.2.11 */
    struct store_mailbox mb;
    int found = store_mailbox_get(st, s->account, name, &mb, err, sizeof(err));
    if (found <= 0) {
        imap_reply_set(r, IMAP_NO, found == 0 ? "NONEXISTENT" : "SERVERBUG", "%s",
                       found == 0 ? "No such mailbox" : "Cannot open mailbox");
        return;
    }
    struct imap_view *v = &s->sel;
    v->first_recent = mb.first_recent_uid;
    if (!readonly && store_mailbox_take_recent(st, s->account, mb.id, &v->first_recent, err,
                                               sizeof(err)) < 0)
        v->first_recent = mb.first_recent_uid;
    struct store_msg_list l = {0};
    if (store_msgs_load(st, s->account, mb.id, 1, UINT32_MAX, 0, &l, err, sizeof(err)) < 0) {
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read mailbox");
        return;
    }
    v->mailbox_id = mb.id;
    snprintf(v->name, sizeof(v->name), "%s", mb.name);
    v->readonly = readonly;
    v->uidvalidity = mb.uidvalidity;
    v->modseq = mb.highestmodseq;
    v->uids = malloc((l.n ? l.n : 1) * sizeof(uint32_t));
    if (!v->uids) {
        store_msg_list_free(&l);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        v->uids[i] = l.v[i].uid;
        if (l.v[i].modseq > v->modseq)
            v->modseq = l.v[i].modseq;
    }
    v->n = v->cap = l.n ? l.n : 1;
    v->n = l.n;
    imap_select_untagged(s, &mb, &l);
    store_msg_list_free(&l);
    s->state = IMAP_STATE_SELECTED;
    imap_select_qresync(s, st, &q);
    imap_reply_set(r, IMAP_OK, readonly ? "READ-ONLY" : "READ-WRITE", "%s completed",
                   readonly ? "EXAMINE" : "SELECT");
}

static void cmd_select(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    imap_select(s, st, cmd, r, false);
}

static void cmd_examine(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                        struct imap_reply *r)
{
    imap_select(s, st, cmd, r, true);
}

static void cmd_unselect(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                         struct imap_reply *r)
{
    imap_view_clear(&s->sel);
    s->state = IMAP_STATE_AUTH;
    imap_reply_set(r, IMAP_OK, NULL, "%s completed", cmd->name);
}

/* CLOSE: expunge \Deleted silently (not when read-only), then deselect. */
static void cmd_close(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                      struct imap_reply *r)
{
    struct imap_view *v = &s->sel;
    if (!v->readonly && v->n) {
        struct store_msg_list l = {0};
        char err[256];
        if (store_msgs_load(st, s->account, v->mailbox_id, 1, UINT32_MAX, 0, &l, err,
                            sizeof(err)) == 0) {
            uint32_t *del = malloc(l.n * sizeof(uint32_t) + 1);
            size_t k = 0;
            for (size_t i = 0; del && i < l.n; i++)
                if ((l.v[i].flags & STORE_FLAG_DELETED) && imap_view_seq(v, l.v[i].uid))
                    del[k++] = l.v[i].uid;
            if (k && store_msgs_expunge(st, s->account, v->mailbox_id, del, k, err,
                                        sizeof(err)) == 0)
                s->changed = true;
            free(del);
        }
        store_msg_list_free(&l);
    }
    cmd_unselect(s, st, cmd, r);
}

const struct imap_cmd_def imap_cmds_select[] = {
    {"SELECT", IMAP_IN_AUTHED, false, IMAP_SYNC_NONE, cmd_select, false},
    {"EXAMINE", IMAP_IN_AUTHED, false, IMAP_SYNC_NONE, cmd_examine, false},
    {"UNSELECT", IMAP_IN_SELECTED, false, IMAP_SYNC_NONE, cmd_unselect, false},
    {"CLOSE", IMAP_IN_SELECTED, false, IMAP_SYNC_NONE, cmd_close, false},
    {NULL, 0, false, IMAP_SYNC_NONE, NULL, false},
};
