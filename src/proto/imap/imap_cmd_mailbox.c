/* imap_cmd_mailbox — the mailbox commands of RFC 3501 6.3: CREATE, DELETE,
 * RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS and APPEND, with
 * LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC
 * 6154), CHILDREN (RFC 3348), STATUS HIGHESTMODSEQ (RFC 7162) and SIZE
 * (RFC 8438), APPENDLIMIT (RFC 7889) and APPENDUID (RFC 4315).
 *
 * Names are UTF-8 here and in the store, modified UTF-7 on the wire
 * (imap_arg_mailbox / imap_write_mailbox), "/" the hierarchy separator.
 *
 * The store keeps mailboxes, not hierarchy levels: "a/b" may exist while
 * "a" does not. Such a name is a \Noselect level to IMAP (RFC 3501 6.3.8;
 * \NonExistent in LIST-EXTENDED, RFC 5258 3). DELETE of a mailbox that has
 * children removes the mailbox and its messages and keeps the children,
 * so its name becomes such a level: the RFC 3501 6.3.4 behaviour ("all
 * messages in that mailbox are removed, and the name will acquire the
 * \Noselect mailbox name attribute").
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/log.h"
#include "mime/mime_decode.h"
#include "mime/mime_imap.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_utf7.h"

#define MBOX_NAME_MAX 255 /* the store's limit (struct store_mailbox.name) */
#define MBOX_ARG_MAX 1024 /* decoded argument buffer; longer names are refused */
#define LIST_PATTERNS_MAX 64
#define STATUS_ITEMS_MAX 16

/* RFC 3501 6.3.8 wildcard match of a LIST/LSUB pattern against a UTF-8
 * mailbox name: "*" matches any run of characters, "%" any run without
 * "/". "INBOX" (and the INBOX of "INBOX/...") matches in any case.
 * Not static so that the unit tests can reach it. */

/* --- names ----------------------------------------------------------------- */

/* Whether name may be created: 1..255 octets, no empty level ("/a", "a/",
 * "a//b"), no control characters, no wildcards (a name with "*" or "%"
 * could not be listed on its own). */
static bool mbox_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > MBOX_NAME_MAX || name[0] == '/' || name[len - 1] == '/' ||
        strstr(name, "//"))
        return false;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '*' || c == '%')
            return false;
    }
    return true;
}

/* Is name old or a name below old ("old/...")? */
static bool mbox_is_under(const char *name, const char *old)
{
    size_t len = strlen(old);
    return strncmp(name, old, len) == 0 && (name[len] == '\0' || name[len] == '/');
}

static void mbox_log_error(const struct imap_session *s, const char *op, const char *err)
{
    char q[300];
    log_error("imap", "event=store_error id=%s op=%s error=%s", s->id, op,
              log_quote(q, sizeof(q), err));
}

/* The mailbox argument arg, decoded into out (MBOX_ARG_MAX bytes). On a
 * bad argument r is set to BAD and -1 returned. */
static int mbox_arg(const struct imap_command *cmd, size_t i, char *out, struct imap_reply *r)
{
    if (i >= cmd->nargs || imap_arg_mailbox(&cmd->args[i], out, MBOX_ARG_MAX) < 0) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid mailbox name");
        return -1;
    }
    return 0;
}

/* 1 exists, 0 not, -1 error (r set). */
static int mbox_exists(struct imap_session *s, struct store *st, const char *name,
                       struct store_mailbox *mb, struct imap_reply *r)
{
    char err[256];
    int found = store_mailbox_get(st, s->account, name, mb, err, sizeof(err));
    if (found < 0) {
        mbox_log_error(s, "mailbox_get", err);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the mailbox list");
    }
    return found;
}

/* Create every missing superior of name ("a" and "a/b" for "a/b/c"),
 * RFC 3501 6.3.3. A superior created meanwhile by another session is
 * fine; other failures are logged and left: name itself still works. */
static void mbox_create_superiors(struct imap_session *s, struct store *st, const char *name)
{
    char prefix[MBOX_NAME_MAX + 1], err[256];
    struct store_mailbox mb;
    for (const char *p = strchr(name, '/'); p; p = strchr(p + 1, '/')) {
        snprintf(prefix, sizeof(prefix), "%.*s", (int)(p - name), name);
        if (store_mailbox_get(st, s->account, prefix, &mb, err, sizeof(err)) != 0)
            continue;
        if (store_mailbox_create(st, s->account, prefix, NULL, err, sizeof(err)) < 0 &&
            store_mailbox_get(st, s->account, prefix, &mb, err, sizeof(err)) != 1)
            mbox_log_error(s, "create_superior", err);
    }
}

/* --- CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE -------------------------- */

static void cmd_create(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    char name[MBOX_ARG_MAX], err[256];
    struct store_mailbox mb;
    if (cmd->nargs != 1 || mbox_arg(cmd, 0, name, r) < 0) {
        if (cmd->nargs != 1)
            imap_reply_set(r, IMAP_BAD, NULL, "CREATE needs one mailbox name");
        return;
    }
    /* RFC 3501 6.3.3: a trailing separator only declares the intent to
     * create names below; we need no such declaration. */
    size_t len = strlen(name);
    if (len > 1 && name[len - 1] == '/')
        name[len - 1] = '\0';
    if (strcmp(name, "INBOX") == 0) {
        imap_reply_set(r, IMAP_NO, "ALREADYEXISTS", "INBOX always exists");
        return;
    }
    if (!mbox_name_valid(name)) {
        imap_reply_set(r, IMAP_NO, "CANNOT", "Invalid mailbox name");
        return;
    }
    int found = mbox_exists(s, st, name, &mb, r);
    if (found != 0) {
        if (found > 0)
            imap_reply_set(r, IMAP_NO, "ALREADYEXISTS", "Mailbox already exists");
        return;
    }
    mbox_create_superiors(s, st, name);
    s->changed = true;
    if (store_mailbox_create(st, s->account, name, NULL, err, sizeof(err)) < 0) {
        if (store_mailbox_get(st, s->account, name, &mb, err, sizeof(err)) == 1) {
            imap_reply_set(r, IMAP_NO, "ALREADYEXISTS", "Mailbox already exists");
            return;
        }
        mbox_log_error(s, "create", err);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot create the mailbox");
        return;
    }
    imap_reply_set(r, IMAP_OK, NULL, "CREATE completed");
}

/* RFC 3501 6.3.4. A mailbox with children is deleted and its children
 * stay (its name becomes a \Noselect level); a name that is only a level
 * (\Noselect with inferiors) cannot be deleted: NO [NONEXISTENT].
 * Deleting the selected mailbox is allowed: the session stays in the
 * selected state on a view whose mailbox is gone (imap_sync then reports
 * nothing), until the client selects another one. */
static void cmd_delete(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    char name[MBOX_ARG_MAX], err[256];
    struct store_mailbox mb;
    if (cmd->nargs != 1) {
        imap_reply_set(r, IMAP_BAD, NULL, "DELETE needs one mailbox name");
        return;
    }
    if (mbox_arg(cmd, 0, name, r) < 0)
        return;
    if (strcmp(name, "INBOX") == 0) {
        imap_reply_set(r, IMAP_NO, "CANNOT", "INBOX cannot be deleted");
        return;
    }
    int found = mbox_exists(s, st, name, &mb, r);
    if (found <= 0) {
        if (found == 0)
            imap_reply_set(r, IMAP_NO, "NONEXISTENT", "No such mailbox");
        return;
    }
    if (store_mailbox_delete(st, s->account, name, err, sizeof(err)) < 0) {
        if (store_mailbox_get(st, s->account, name, &mb, err, sizeof(err)) == 0) {
            imap_reply_set(r, IMAP_NO, "NONEXISTENT", "No such mailbox");
            return;
        }
        mbox_log_error(s, "delete", err);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot delete the mailbox");
        return;
    }
    s->changed = true;
    imap_reply_set(r, IMAP_OK, NULL, "DELETE completed");
}

/* The selected mailbox (or one of its superiors) was renamed: follow it,
 * so that imap_sync still finds it by name. INBOX stays where it is. */
static void rename_follow_view(struct imap_session *s, const char *old, const char *newname)
{
    struct imap_view *v = &s->sel;
    if (s->state != IMAP_STATE_SELECTED || strcmp(old, "INBOX") == 0 ||
        !mbox_is_under(v->name, old))
        return;
    char to[sizeof(v->name)];
    if (snprintf(to, sizeof(to), "%s%s", newname, v->name + strlen(old)) < (int)sizeof(to))
        memcpy(v->name, to, sizeof(to));
}

/* RFC 3501 6.3.5; the store renames the children with it and does the
 * INBOX rule (its messages move to the new mailbox, INBOX stays). */
static void cmd_rename(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    char old[MBOX_ARG_MAX], newname[MBOX_ARG_MAX], err[256];
    struct store_mailbox mb;
    if (cmd->nargs != 2) {
        imap_reply_set(r, IMAP_BAD, NULL, "RENAME needs two mailbox names");
        return;
    }
    if (mbox_arg(cmd, 0, old, r) < 0 || mbox_arg(cmd, 1, newname, r) < 0)
        return;
    int found = mbox_exists(s, st, old, &mb, r);
    if (found <= 0) {
        if (found == 0)
            imap_reply_set(r, IMAP_NO, "NONEXISTENT", "No such mailbox");
        return;
    }
    if (strcmp(newname, "INBOX") == 0) {
        imap_reply_set(r, IMAP_NO, "ALREADYEXISTS", "INBOX already exists");
        return;
    }
    if (!mbox_name_valid(newname)) {
        imap_reply_set(r, IMAP_NO, "CANNOT", "Invalid mailbox name");
        return;
    }
    if (strcmp(old, "INBOX") != 0 && mbox_is_under(newname, old)) {
        imap_reply_set(r, IMAP_NO, "CANNOT", "Cannot move a mailbox under itself");
        return;
    }
    if ((found = mbox_exists(s, st, newname, &mb, r)) != 0) {
        if (found > 0)
            imap_reply_set(r, IMAP_NO, "ALREADYEXISTS", "Mailbox already exists");
        return;
    }
    if (store_mailbox_rename(st, s->account, old, newname, err, sizeof(err)) < 0) {
        if (strstr(err, "already exists")) { /* a child's new name is taken */
            imap_reply_set(r, IMAP_NO, "ALREADYEXISTS", "%s", err);
            return;
        }
        mbox_log_error(s, "rename", err);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot rename the mailbox");
        return;
    }
    s->changed = true;
    mbox_create_superiors(s, st, newname);
    rename_follow_view(s, old, newname);
    imap_reply_set(r, IMAP_OK, NULL, "RENAME completed");
}

/* SUBSCRIBE / UNSUBSCRIBE (RFC 3501 6.3.6-7): names need not exist, and
 * unsubscribing a name that is not subscribed is fine. */
static void subscription(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                         struct imap_reply *r, bool on)
{
    char name[MBOX_ARG_MAX], err[256];
    if (cmd->nargs != 1) {
        imap_reply_set(r, IMAP_BAD, NULL, "%s needs one mailbox name", cmd->name);
        return;
    }
    if (mbox_arg(cmd, 0, name, r) < 0)
        return;
    if (strlen(name) > MBOX_NAME_MAX) {
        imap_reply_set(r, IMAP_NO, "CANNOT", "Mailbox name too long");
        return;
    }
    if (store_subscription_set(st, s->account, name, on, err, sizeof(err)) < 0) {
        mbox_log_error(s, "subscribe", err);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot change the subscription");
        return;
    }
    s->changed = true;
    imap_reply_set(r, IMAP_OK, NULL, "%s completed", cmd->name);
}

static void cmd_subscribe(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                          struct imap_reply *r)
{
    subscription(s, st, cmd, r, true);
}

static void cmd_unsubscribe(struct imap_session *s, struct store *st,
                            const struct imap_command *cmd, struct imap_reply *r)
{
    subscription(s, st, cmd, r, false);
}

/* --- STATUS ------------------------------------------------------------------ */

enum status_item {
    STATUS_MESSAGES,
    STATUS_RECENT,
    STATUS_UIDNEXT,
    STATUS_UIDVALIDITY,
    STATUS_UNSEEN,
    STATUS_HIGHESTMODSEQ, /* RFC 7162 3.1.6 */
    STATUS_SIZE,          /* RFC 8438 */
    STATUS_APPENDLIMIT,   /* RFC 7889 */
    STATUS_DELETED,       /* RFC 9051 */
};

static const char *const status_names[] = {
    "MESSAGES",      "RECENT", "UIDNEXT",     "UIDVALIDITY", "UNSEEN",
    "HIGHESTMODSEQ", "SIZE",   "APPENDLIMIT", "DELETED",
};

struct status_items {
    enum status_item v[STATUS_ITEMS_MAX];
    size_t n;
};

/* Parse "(MESSAGES UNSEEN ...)": at least one known item. 0 or -1. */
static int status_items_parse(const struct imap_arg *a, struct status_items *it)
{
    it->n = 0;
    if (a->type != IMAP_ARG_LIST || a->nlist == 0 || a->nlist > STATUS_ITEMS_MAX)
        return -1;
    for (size_t i = 0; i < a->nlist; i++) {
        size_t k = 0;
        while (k < sizeof(status_names) / sizeof(status_names[0]) &&
               !imap_arg_atom_is(&a->list[i], status_names[k]))
            k++;
        if (k == sizeof(status_names) / sizeof(status_names[0]))
            return -1;
        it->v[it->n++] = (enum status_item)k;
    }
    return 0;
}

/* STATUS of name into s->ex: 1 written, 0 no such mailbox, -1 error. */
static int status_write(struct imap_session *s, struct store *st, const char *name,
                        const struct status_items *it)
{
    struct store_mailbox_status ms;
    char err[256];
    int found = store_mailbox_status(st, s->account, name, &ms, err, sizeof(err));
    if (found <= 0) {
        if (found < 0)
            mbox_log_error(s, "status", err);
        return found;
    }
    const uint64_t val[] = {
        [STATUS_MESSAGES] = ms.messages, [STATUS_RECENT] = ms.recent,
        [STATUS_UIDNEXT] = ms.uidnext,   [STATUS_UIDVALIDITY] = ms.uidvalidity,
        [STATUS_UNSEEN] = ms.unseen,     [STATUS_HIGHESTMODSEQ] = ms.highestmodseq,
        [STATUS_SIZE] = ms.size,         [STATUS_APPENDLIMIT] = s->cfg->append_limit,
        [STATUS_DELETED] = ms.deleted,
    };
    buf_puts(&s->ex, "* STATUS ");
    imap_write_mailbox(&s->ex, name);
    buf_puts(&s->ex, " (");
    for (size_t i = 0; i < it->n; i++)
        buf_printf(&s->ex, "%s%s %llu", i ? " " : "", status_names[it->v[i]],
                   (unsigned long long)val[it->v[i]]);
    buf_puts(&s->ex, ")\r\n");
    return 1;
}

/* RFC 7162 3.1: asking for HIGHESTMODSEQ enables CONDSTORE. */
static void status_enable(struct imap_session *s, const struct status_items *it)
{
    for (size_t i = 0; i < it->n; i++)
        if (it->v[i] == STATUS_HIGHESTMODSEQ)
            s->condstore = true;
}

static void cmd_status(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    char name[MBOX_ARG_MAX];
    struct status_items it;
    if (cmd->nargs != 2 || status_items_parse(&cmd->args[1], &it) < 0) {
        imap_reply_set(r, IMAP_BAD, NULL, "STATUS needs a mailbox and a list of items");
        return;
    }
    if (mbox_arg(cmd, 0, name, r) < 0)
        return;
    status_enable(s, &it);
    int rc = status_write(s, st, name, &it);
    if (rc <= 0) {
        imap_reply_set(r, IMAP_NO, rc == 0 ? "NONEXISTENT" : "SERVERBUG", "%s",
                       rc == 0 ? "No such mailbox" : "Cannot read the mailbox");
        return;
    }
    imap_reply_set(r, IMAP_OK, NULL, "STATUS completed");
}

/* --- LIST and LSUB: the pattern ---------------------------------------------- */

bool imap_list_match(const char *pattern, const char *name)
{
    /* Dynamic programming over (pattern prefix, name prefix): row[j] is
     * whether the pattern so far matches name[0..j). Linear in the name
     * per pattern character, whatever the wildcards. */
    size_t n = strlen(name);
    size_t ci = strncmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/') ? 5 : 0;
    bool small[2 * 512];
    bool *prev = n < 512 ? small : malloc(2 * (n + 1) * sizeof(bool));
    if (!prev)
        return false;
    bool *cur = prev + n + 1;
    for (size_t j = 0; j <= n; j++)
        prev[j] = j == 0;
    for (const char *p = pattern; *p; p++) {
        bool run = false;
        for (size_t j = 0; j <= n; j++) {
            if (*p == '*') {
                cur[j] = run = run || prev[j];
            } else if (*p == '%') {
                if (j > 0 && name[j - 1] == '/')
                    run = false; /* "%" does not cross a separator */
                cur[j] = run = run || prev[j];
            } else {
                unsigned char a = (unsigned char)*p, b = j ? (unsigned char)name[j - 1] : 0;
                bool eq = j > 0 && (a == b || (j - 1 < ci && toupper(a) == b));
                cur[j] = eq && prev[j - 1];
            }
        }
        bool *t = prev;
        prev = cur;
        cur = t;
    }
    bool m = prev[n];
    if (n >= 512)
        free(prev < cur ? prev : cur);
    return m;
}

/* --- LIST and LSUB: the names ---------------------------------------------------- */

/* One name of the account's hierarchy: a mailbox, a subscription, or a
 * level that exists only as a superior of those. */
struct list_node {
    char *name;
    char special[16];
    bool exists;
    bool subscribed;
    bool children;  /* some existing mailbox lies below */
    bool sub_below; /* some subscribed name lies below */
    bool sel_below; /* some name below meets the selection criteria */
};

struct list_tree {
    struct list_node *v;
    size_t n, cap;
    bool oom;
};

static void tree_add(struct list_tree *t, const char *name, size_t len, bool exists,
                     bool subscribed, const char *special)
{
    if (t->oom)
        return;
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 32;
        struct list_node *v = realloc(t->v, nc * sizeof(*v));
        if (!v) {
            t->oom = true;
            return;
        }
        t->v = v;
        t->cap = nc;
    }
    struct list_node *nd = &t->v[t->n];
    memset(nd, 0, sizeof(*nd));
    nd->name = strndup(name, len);
    if (!nd->name) {
        t->oom = true;
        return;
    }
    nd->exists = exists;
    nd->subscribed = subscribed;
    snprintf(nd->special, sizeof(nd->special), "%s", special ? special : "");
    t->n++;
}

/* The name and each of its superiors ("a/b/c": "a", "a/b"). */
static void tree_add_path(struct list_tree *t, const char *name, bool exists, bool subscribed,
                          const char *special)
{
    for (const char *p = strchr(name, '/'); p; p = strchr(p + 1, '/'))
        if (p > name)
            tree_add(t, name, (size_t)(p - name), false, false, NULL);
    tree_add(t, name, strlen(name), exists, subscribed, special);
}

static void tree_add_mailbox(void *ctx, const struct store_mailbox *mb)
{
    tree_add_path(ctx, mb->name, true, false, mb->special_use);
}

static void tree_add_subscription(void *ctx, const char *name)
{
    tree_add_path(ctx, name, false, true, NULL);
}

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct list_node *)a)->name, ((const struct list_node *)b)->name);
}

static struct list_node *tree_find(struct list_tree *t, const char *name)
{
    struct list_node key = {.name = (char *)name};
    return bsearch(&key, t->v, t->n, sizeof(key), node_cmp);
}

static void tree_free(struct list_tree *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].name);
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* Sort, merge duplicates, and mark which names have children and
 * subscribed names below them. */
static void tree_finish(struct list_tree *t)
{
    if (t->n == 0)
        return;
    qsort(t->v, t->n, sizeof(t->v[0]), node_cmp);
    size_t k = 0;
    for (size_t i = 1; i < t->n; i++) {
        struct list_node *a = &t->v[k], *b = &t->v[i];
        if (strcmp(a->name, b->name) != 0) {
            t->v[++k] = *b;
            continue;
        }
        a->exists |= b->exists;
        a->subscribed |= b->subscribed;
        if (b->special[0])
            memcpy(a->special, b->special, sizeof(a->special));
        free(b->name);
    }
    t->n = k + 1;
    char up[MBOX_ARG_MAX];
    for (size_t i = 0; i < t->n; i++) {
        if (!t->v[i].exists && !t->v[i].subscribed)
            continue;
        snprintf(up, sizeof(up), "%s", t->v[i].name);
        for (char *p = strrchr(up, '/'); p; p = strrchr(up, '/')) {
            *p = '\0';
            struct list_node *nd = tree_find(t, up);
            if (nd) {
                nd->children |= t->v[i].exists;
                nd->sub_below |= t->v[i].subscribed;
            }
        }
    }
}

/* Every name of the account: mailboxes, subscriptions, their superiors. */
static int tree_load(struct imap_session *s, struct store *st, struct list_tree *t)
{
    char err[256];
    memset(t, 0, sizeof(*t));
    if (store_mailbox_each(st, s->account, tree_add_mailbox, t, err, sizeof(err)) < 0 ||
        store_subscription_list(st, s->account, tree_add_subscription, t, err, sizeof(err)) < 0) {
        mbox_log_error(s, "list", err);
        tree_free(t);
        return -1;
    }
    if (t->oom) {
        tree_free(t);
        return -1;
    }
    tree_finish(t);
    return 0;
}

/* --- LIST ------------------------------------------------------------------------- */

struct list_opts {
    bool extended;       /* LIST-EXTENDED syntax used (RFC 5258) */
    bool sel_subscribed; /* selection options */
    bool sel_special;
    bool recursive;
    bool ret_subscribed; /* return options */
    bool ret_status;
    struct status_items status;
    char *patterns[LIST_PATTERNS_MAX]; /* reference + pattern, UTF-8 (owned) */
    size_t npatterns;
    bool root_query; /* LIST "" "": the separator and root */
};

static void list_opts_free(struct list_opts *o)
{
    for (size_t i = 0; i < o->npatterns; i++)
        free(o->patterns[i]);
    o->npatterns = 0;
}

/* RFC 5258 selection options. -1 for an unknown one, or RECURSIVEMATCH
 * without another option that it could refer to. */
static int list_select_opts(const struct imap_arg *a, struct list_opts *o)
{
    for (size_t i = 0; i < a->nlist; i++) {
        const struct imap_arg *x = &a->list[i];
        if (imap_arg_atom_is(x, "SUBSCRIBED"))
            o->sel_subscribed = o->ret_subscribed = true; /* implies RETURN (SUBSCRIBED) */
        else if (imap_arg_atom_is(x, "SPECIAL-USE"))
            o->sel_special = true; /* RFC 6154 3 */
        else if (imap_arg_atom_is(x, "RECURSIVEMATCH"))
            o->recursive = true;
        else if (!imap_arg_atom_is(x, "REMOTE")) /* no remote mailboxes here */
            return -1;
    }
    if (o->recursive && !o->sel_subscribed && !o->sel_special)
        return -1;
    return 0;
}

/* "RETURN (SUBSCRIBED CHILDREN SPECIAL-USE STATUS (...))". */
static int list_return_opts(const struct imap_arg *a, struct list_opts *o)
{
    if (a->type != IMAP_ARG_LIST)
        return -1;
    for (size_t i = 0; i < a->nlist; i++) {
        const struct imap_arg *x = &a->list[i];
        if (imap_arg_atom_is(x, "SUBSCRIBED")) {
            o->ret_subscribed = true;
        } else if (imap_arg_atom_is(x, "CHILDREN") || imap_arg_atom_is(x, "SPECIAL-USE") ||
                   imap_arg_atom_is(x, "REMOTE")) {
            /* children and special-use attributes are always returned */
        } else if (imap_arg_atom_is(x, "STATUS") && i + 1 < a->nlist &&
                   status_items_parse(&a->list[i + 1], &o->status) == 0) {
            o->ret_status = true; /* RFC 5819 */
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Decode a pattern or reference (modified UTF-7, wildcards untouched). */
static char *list_decode(const struct imap_arg *a)
{
    const char *str = imap_arg_str(a);
    struct buf b = BUF_INIT;
    if (!str || imap_utf7_to_utf8(str, &b) < 0 || !buf_cstr(&b)) {
        buf_free(&b);
        return NULL;
    }
    char *out = strdup(buf_cstr(&b));
    buf_free(&b);
    return out;
}

/* reference + pattern, concatenated as they are (RFC 3501 6.3.8): a
 * reference meant as a level ends in "/" itself, and LIST "INBOX" "*"
 * means "INBOX*" — INBOX and its children, as curl and Dovecot expect.
 * 0, or -1 on a bad pattern. */
static int list_add_pattern(struct list_opts *o, const char *ref, const struct imap_arg *a)
{
    char *pat = list_decode(a);
    if (!pat || o->npatterns == LIST_PATTERNS_MAX) {
        free(pat);
        return -1;
    }
    size_t rl = strlen(ref);
    const char *sep = "";
    char *full = malloc(rl + strlen(sep) + strlen(pat) + 1);
    if (full)
        sprintf(full, "%s%s%s", ref, sep, pat);
    if (full && !*pat)
        o->root_query = true;
    free(pat);
    if (!full)
        return -1;
    o->patterns[o->npatterns++] = full;
    return 0;
}

/* LIST [(selection)] reference pattern|(patterns) [RETURN (options)]. */
static int list_parse(const struct imap_command *cmd, struct list_opts *o)
{
    size_t i = 0;
    memset(o, 0, sizeof(*o));
    if (cmd->nargs > 0 && cmd->args[0].type == IMAP_ARG_LIST) {
        o->extended = true;
        if (list_select_opts(&cmd->args[0], o) < 0)
            return -1;
        i++;
    }
    if (cmd->nargs < i + 2 || cmd->args[i].type == IMAP_ARG_LIST)
        return -1;
    char *ref = list_decode(&cmd->args[i]);
    if (!ref)
        return -1;
    const struct imap_arg *pat = &cmd->args[i + 1];
    int rc = 0;
    if (pat->type == IMAP_ARG_LIST) {
        o->extended = true;
        for (size_t k = 0; k < pat->nlist && rc == 0; k++)
            rc = list_add_pattern(o, ref, &pat->list[k]);
        if (pat->nlist == 0)
            rc = -1;
        o->root_query = false; /* an empty pattern in a list matches nothing */
    } else {
        rc = list_add_pattern(o, ref, pat);
    }
    free(ref);
    i += 2;
    if (rc == 0 && i < cmd->nargs) {
        o->extended = true;
        if (i + 2 != cmd->nargs || !imap_arg_atom_is(&cmd->args[i], "RETURN") ||
            list_return_opts(&cmd->args[i + 1], o) < 0)
            rc = -1;
    }
    return rc;
}

/* Does the node meet the selection criteria? With none, every mailbox. */
static bool list_selected(const struct list_opts *o, const struct list_node *nd)
{
    if (!o->sel_subscribed && !o->sel_special)
        return nd->exists;
    if (o->sel_subscribed && !nd->subscribed)
        return false;
    return !o->sel_special || (nd->exists && nd->special[0]);
}

static bool list_matches(const struct list_opts *o, const char *name)
{
    for (size_t i = 0; i < o->npatterns; i++)
        if (imap_list_match(o->patterns[i], name))
            return true;
    return false;
}

/* sel_below for RECURSIVEMATCH: the superiors of every selected name. */
static void list_mark_selected(struct list_tree *t, const struct list_opts *o)
{
    char up[MBOX_ARG_MAX];
    for (size_t i = 0; i < t->n; i++) {
        if (!list_selected(o, &t->v[i]))
            continue;
        snprintf(up, sizeof(up), "%s", t->v[i].name);
        for (char *p = strrchr(up, '/'); p; p = strrchr(up, '/')) {
            *p = '\0';
            struct list_node *nd = tree_find(t, up);
            if (nd)
                nd->sel_below = true;
        }
    }
}

/* One "* LIST (attributes) "/" name [extended data]" line. */
static void list_write(struct imap_session *s, const struct list_opts *o,
                       const struct list_node *nd)
{
    const char *sep = "";
    buf_puts(&s->ex, "* LIST (");
    if (!nd->exists) {
        /* RFC 5258 3: \NonExistent (it implies \Noselect) is LIST-EXTENDED's
         * word; a base LIST says \Noselect as RFC 3501 does. */
        buf_puts(&s->ex, o->extended ? "\\NonExistent" : "\\Noselect");
        sep = " ";
    }
    if (nd->children || nd->exists) {
        buf_printf(&s->ex, "%s%s", sep, nd->children ? "\\HasChildren" : "\\HasNoChildren");
        sep = " ";
    }
    if (nd->exists && nd->special[0]) {
        buf_printf(&s->ex, "%s%s", sep, nd->special);
        sep = " ";
    }
    if (o->ret_subscribed && nd->subscribed)
        buf_printf(&s->ex, "%s\\Subscribed", sep);
    buf_puts(&s->ex, ") \"/\" ");
    imap_write_mailbox(&s->ex, nd->name);
    if (o->recursive && nd->sel_below) {
        buf_printf(&s->ex, " (\"CHILDINFO\" (%s%s%s))", o->sel_subscribed ? "\"SUBSCRIBED\"" : "",
                   o->sel_subscribed && o->sel_special ? " " : "",
                   o->sel_special ? "\"SPECIAL-USE\"" : "");
    }
    buf_puts(&s->ex, "\r\n");
}

/* Which names a LIST returns (RFC 5258 3, the table of RFC 9051 6.3.9.1):
 * those meeting the selection criteria, those with a descendant that
 * does under RECURSIVEMATCH, and without selection options the levels
 * that only exist as superiors of mailboxes (RFC 3501 6.3.8). */
static bool list_wanted(const struct list_opts *o, const struct list_node *nd)
{
    if (list_selected(o, nd))
        return true;
    if (o->recursive && nd->sel_below)
        return true;
    return !o->sel_subscribed && !o->sel_special && !nd->exists && nd->children;
}

static void cmd_list(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                     struct imap_reply *r)
{
    struct list_opts o;
    if (list_parse(cmd, &o) < 0) {
        list_opts_free(&o);
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid LIST arguments");
        return;
    }
    if (o.root_query && o.npatterns == 1 && !o.sel_subscribed && !o.sel_special) {
        /* RFC 3501 6.3.8: the separator and the (here always empty) root. */
        buf_puts(&s->ex, "* LIST (\\Noselect) \"/\" \"\"\r\n");
        list_opts_free(&o);
        imap_reply_set(r, IMAP_OK, NULL, "LIST completed");
        return;
    }
    if (o.ret_status)
        status_enable(s, &o.status);
    struct list_tree t;
    if (tree_load(s, st, &t) < 0) {
        list_opts_free(&o);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the mailbox list");
        return;
    }
    if (o.recursive)
        list_mark_selected(&t, &o);
    for (size_t i = 0; i < t.n; i++) {
        const struct list_node *nd = &t.v[i];
        if (!list_wanted(&o, nd) || !list_matches(&o, nd->name))
            continue;
        list_write(s, &o, nd);
        if (o.ret_status && nd->exists)
            status_write(s, st, nd->name, &o.status); /* RFC 5819: after its LIST */
    }
    tree_free(&t);
    list_opts_free(&o);
    imap_reply_set(r, IMAP_OK, NULL, "LIST completed");
}

/* --- LSUB (RFC 3501 6.3.9) ------------------------------------------------------------ */

static void cmd_lsub(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                     struct imap_reply *r)
{
    struct list_opts o;
    memset(&o, 0, sizeof(o));
    char *ref = cmd->nargs == 2 ? list_decode(&cmd->args[0]) : NULL;
    int rc =
        ref && cmd->args[1].type != IMAP_ARG_LIST ? list_add_pattern(&o, ref, &cmd->args[1]) : -1;
    free(ref);
    if (rc < 0) {
        list_opts_free(&o);
        imap_reply_set(r, IMAP_BAD, NULL, "LSUB needs a reference and a pattern");
        return;
    }
    if (o.root_query) {
        buf_puts(&s->ex, "* LSUB (\\Noselect) \"/\" \"\"\r\n");
        list_opts_free(&o);
        imap_reply_set(r, IMAP_OK, NULL, "LSUB completed");
        return;
    }
    struct list_tree t;
    if (tree_load(s, st, &t) < 0) {
        list_opts_free(&o);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot read the subscriptions");
        return;
    }
    /* A "%" at the end also returns the levels above subscribed names,
     * \Noselect when they are not subscribed themselves. */
    const char *pat = o.patterns[0];
    bool levels = pat[0] && pat[strlen(pat) - 1] == '%';
    for (size_t i = 0; i < t.n; i++) {
        const struct list_node *nd = &t.v[i];
        if (!(nd->subscribed || (levels && nd->sub_below)) || !imap_list_match(pat, nd->name))
            continue;
        buf_printf(&s->ex, "* LSUB (%s) \"/\" ", nd->subscribed && nd->exists ? "" : "\\Noselect");
        imap_write_mailbox(&s->ex, nd->name);
        buf_puts(&s->ex, "\r\n");
    }
    tree_free(&t);
    list_opts_free(&o);
    imap_reply_set(r, IMAP_OK, NULL, "LSUB completed");
}

/* --- APPEND (RFC 3501 6.3.11, RFC 4315 APPENDUID, RFC 7889) ------------------------------ */

/* n decimal digits at p, or -1. */
static int date_digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* RFC 3501 date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (date-day-fixed: the
 * day is two digits or a space and one; one digit alone is taken too).
 * 0 and *t_r, or -1. */
static int append_date(const char *str, time_t *t_r)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const char *p = str[0] == ' ' ? str + 1 : str;
    size_t dl = isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) ? 2 : 1;
    int day = date_digits(p, (int)dl);
    p += dl; /* now "-Jan-2024 10:00:00 +0000" */
    if (day < 1 || strlen(p) != 24 || p[0] != '-' || p[4] != '-' || p[9] != ' ' || p[12] != ':' ||
        p[15] != ':' || p[18] != ' ' || (p[19] != '+' && p[19] != '-'))
        return -1;
    int mon = -1;
    for (int i = 0; i < 12 && mon < 0; i++)
        if (strncasecmp(months + 3 * i, p + 1, 3) == 0)
            mon = i;
    int year = date_digits(p + 5, 4), hh = date_digits(p + 10, 2), mm = date_digits(p + 13, 2);
    int ss = date_digits(p + 16, 2), zh = date_digits(p + 20, 2), zm = date_digits(p + 22, 2);
    if (mon < 0 || year < 1900 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60 ||
        zh < 0 || zm < 0 || zm > 59 || day > 31)
        return -1;
    struct tm tm = {.tm_mday = day,
                    .tm_mon = mon,
                    .tm_year = year - 1900,
                    .tm_hour = hh,
                    .tm_min = mm,
                    .tm_sec = ss};
    time_t t = timegm(&tm);
    if (tm.tm_mday != day) /* 31-Feb and the like were normalised */
        return -1;
    long off = zh * 3600L + zm * 60L;
    *t_r = p[19] == '+' ? t - off : t + off;
    return 0;
}

struct append_args {
    char name[MBOX_ARG_MAX];
    uint32_t flags;
    char *keywords; /* malloc'd, may be "" */
    time_t date;
    const struct imap_arg *msg;
};

/* mailbox [flag-list] [date-time] literal. 0, or -1 with r set. */
static int append_parse(const struct imap_command *cmd, struct append_args *a, struct imap_reply *r)
{
    memset(a, 0, sizeof(*a));
    a->date = time(NULL);
    if (cmd->nargs < 2 || cmd->nargs > 4 || cmd->args[cmd->nargs - 1].type != IMAP_ARG_LITERAL) {
        imap_reply_set(r, IMAP_BAD, NULL, "APPEND needs a mailbox and a message literal");
        return -1;
    }
    if (mbox_arg(cmd, 0, a->name, r) < 0)
        return -1;
    size_t i = 1;
    if (i < cmd->nargs - 1 && cmd->args[i].type == IMAP_ARG_LIST) {
        if (imap_parse_flags(&cmd->args[i], &a->flags, &a->keywords) < 0) {
            imap_reply_set(r, IMAP_BAD, NULL, "Invalid flags");
            return -1;
        }
        i++;
    }
    if (i < cmd->nargs - 1) {
        if (cmd->args[i].type != IMAP_ARG_QUOTED || append_date(cmd->args[i].str, &a->date) < 0) {
            imap_reply_set(r, IMAP_BAD, NULL, "Invalid date-time");
            return -1;
        }
        i++;
    }
    if (i != cmd->nargs - 1) {
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid APPEND arguments");
        return -1;
    }
    a->msg = &cmd->args[i];
    if (a->msg->literal8) { /* RFC 3516: only with BINARY, which we do not offer */
        imap_reply_set(r, IMAP_BAD, NULL, "Binary literals are not supported");
        return -1;
    }
    return 0;
}

/* Whether a message has a bare CR or LF (not part of a CRLF). */
static bool append_needs_crlf(const uint8_t *s, size_t n)
{
    for (const uint8_t *p = s; (p = memchr(p, '\n', (size_t)(s + n - p))) != NULL; p++)
        if (p == s || p[-1] != '\r')
            return true;
    for (const uint8_t *p = s; (p = memchr(p, '\r', (size_t)(s + n - p))) != NULL; p++)
        if (p + 1 == s + n || p[1] != '\n')
            return true;
    return false;
}

/* Store the message durably (store_deliver) and answer with APPENDUID.
 * A message for the selected mailbox is reported by the core's sync.
 * Every stored message has CRLF line endings, as SMTP delivers them, so
 * that RFC822.SIZE and POP3's sizes are the octets sent (RFC 5322 2.3,
 * RFC 1939 11): a message APPENDed with bare LFs or CRs is stored with
 * CRLFs. A last line without a line break is kept as it was. */
static void append_store(struct imap_session *s, struct store *st, struct append_args *a,
                         const struct store_mailbox *mb, struct imap_reply *r)
{
    struct iovec iov = {.iov_base = a->msg->str, .iov_len = a->msg->len};
    struct buf crlf = BUF_INIT;
    if (append_needs_crlf((const uint8_t *)a->msg->str, a->msg->len)) {
        if (mime_crlf_normalize((const uint8_t *)a->msg->str, a->msg->len, &crlf) < 0) {
            buf_free(&crlf);
            imap_reply_set(r, IMAP_NO, "SERVERBUG", "Out of memory");
            return;
        }
        iov.iov_base = (void *)buf_ptr(&crlf);
        iov.iov_len = buf_size(&crlf);
    }
    /* Parsed once now, so FETCH ENVELOPE/BODYSTRUCTURE and SEARCH on the
     * address and subject fields never read this file. */
    struct mime_index_cache cache;
    mime_index_cache_compute(iov.iov_base, iov.iov_len, NULL, &cache);
    struct store_delivery d = {
        .account = s->account,
        .mailbox = mb->name,
        .iov = &iov,
        .iovcnt = 1,
        .internal_date = a->date,
        .flags = a->flags,
        .keywords = a->keywords && *a->keywords ? a->keywords : NULL,
        .envelope = cache.envelope,
        .bodystructure = cache.bodystructure,
        .search_fields = buf_size(&cache.fields) ? buf_ptr(&cache.fields) : NULL,
        .search_fields_len = buf_size(&cache.fields),
    };
    char err[256];
    struct store_mailbox now;
    int stored = store_deliver(st, &d, 1) == 0 && d.result_r == 0;
    mime_index_cache_free(&cache);
    buf_free(&crlf);
    if (!stored) {
        if (store_mailbox_get(st, s->account, mb->name, &now, err, sizeof(err)) == 0) {
            imap_reply_set(r, IMAP_NO, "TRYCREATE", "Mailbox does not exist");
            return;
        }
        mbox_log_error(s, "append", d.err_r);
        imap_reply_set(r, IMAP_NO, "SERVERBUG", "Cannot store the message");
        return;
    }
    s->changed = true;
    log_info("imap", "event=append id=%s mailbox_id=%lld uid=%u size=%zu", s->id, (long long)mb->id,
             d.uid_r, iov.iov_len);
    char code[64];
    snprintf(code, sizeof(code), "APPENDUID %u %u", mb->uidvalidity, d.uid_r);
    imap_reply_set(r, IMAP_OK, code, "APPEND completed");
}

static void cmd_append(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    struct append_args a;
    struct store_mailbox mb;
    if (append_parse(cmd, &a, r) < 0) {
        free(a.keywords);
        return;
    }
    if (a.msg->len > s->cfg->append_limit) {
        imap_reply_set(r, IMAP_NO, "TOOBIG", "Message larger than APPENDLIMIT=%zu",
                       s->cfg->append_limit);
    } else if (a.msg->len == 0) {
        imap_reply_set(r, IMAP_NO, NULL, "Empty message");
    } else {
        int found = strlen(a.name) > MBOX_NAME_MAX ? 0 : mbox_exists(s, st, a.name, &mb, r);
        if (found == 0) /* RFC 3501 6.3.11: the client may CREATE and retry */
            imap_reply_set(r, IMAP_NO, "TRYCREATE", "Mailbox does not exist");
        else if (found > 0)
            append_store(s, st, &a, &mb, r);
    }
    free(a.keywords);
}

const struct imap_cmd_def imap_cmds_mailbox[] = {
    {"CREATE", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_create, false},
    {"DELETE", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_delete, false},
    {"RENAME", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_rename, false},
    {"SUBSCRIBE", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_subscribe, false},
    {"UNSUBSCRIBE", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_unsubscribe, false},
    {"LIST", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_list, false},
    {"LSUB", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_lsub, false},
    {"STATUS", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_status, false},
    {"APPEND", IMAP_IN_AUTHED, false, IMAP_SYNC_FULL, cmd_append, false},
    {NULL, 0, false, IMAP_SYNC_NONE, NULL, false},
};
