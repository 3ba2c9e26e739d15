/* store_mbox — mailboxes for IMAP on the SQLite index (store.h, "mailboxes
 * and messages for IMAP"): look-up, create, delete, rename, subscriptions,
 * STATUS counts and \Recent bookkeeping. Messages are in store_msgs.c.
 *
 * Every writer runs in one BEGIN IMMEDIATE transaction; message files are
 * unlinked only after COMMIT, so a crash leaves at worst an orphan file,
 * which store_recover removes, never a row without its file.
 */
#include "store/store_sqlite_int.h"

#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MBOX_NAME_MAX 255 /* struct store_mailbox.name holds 256 bytes */

/* "INBOX" in any case is INBOX (RFC 3501 5.1); other names are exact. */
static const char *mbox_name(const char *name)
{
    return name && strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
}

/* A name the store accepts for a new mailbox: 1..MBOX_NAME_MAX octets, no
 * control characters, no empty hierarchy level ("/a", "a/", "a//b"). The
 * IMAP layer applies its own rules (wildcards, UTF-7) before this. */
static int mbox_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > MBOX_NAME_MAX || name[0] == '/' || name[len - 1] == '/' ||
        strstr(name, "//"))
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return 0;
    return 1;
}

/* Fill mb from a row of IXS_MBOX_COLS. */
static void mbox_row(sqlite3_stmt *s, struct store_mailbox *mb)
{
    memset(mb, 0, sizeof(*mb));
    const char *name = (const char *)sqlite3_column_text(s, 1);
    const char *use = (const char *)sqlite3_column_text(s, 5);
    mb->id = sqlite3_column_int64(s, 0);
    snprintf(mb->name, sizeof(mb->name), "%s", name ? name : "");
    mb->uidvalidity = (uint32_t)sqlite3_column_int64(s, 2);
    mb->uidnext = (uint32_t)sqlite3_column_int64(s, 3);
    mb->highestmodseq = (uint64_t)sqlite3_column_int64(s, 4);
    snprintf(mb->special_use, sizeof(mb->special_use), "%s", use ? use : "");
    mb->first_recent_uid = (uint32_t)sqlite3_column_int64(s, 6);
}

/* Run a prepared IXS_MBOX_BY_* statement (bound by the caller): 1 found,
 * 0 not, -1 error. Resets it. */
static int mbox_step(struct store_index *ix, sqlite3_stmt *s, struct store_mailbox *mb, char *err,
                     size_t errlen)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        mbox_row(s, mb);
    store_stmt_done(s);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, ix->db, "read mailbox");
}

int store_mbox_by_id(struct store_index *ix, int64_t id, struct store_mailbox *mb, char *err,
                     size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MBOX_BY_ID, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    return mbox_step(ix, s, mb, err, errlen);
}

/* The mailbox called name (already through mbox_name): 1, 0 or -1. */
static int mbox_by_name(struct store_index *ix, const char *name, struct store_mailbox *mb,
                        char *err, size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MBOX_BY_NAME, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    return mbox_step(ix, s, mb, err, errlen);
}

/* Step a bound write statement to its end and reset it. 0 or -1. */
int store_stmt_run(struct store_index *ix, sqlite3_stmt *s, const char *what, char *err,
                   size_t errlen)
{
    int rc = sqlite3_step(s);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    store_stmt_done(s);
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, ix->db, what);
}

/* COMMIT, or roll back and fail. 0 or -1. */
int store_ix_commit(struct store_index *ix, char *err, size_t errlen)
{
    if (store_db_exec(ix->db, "COMMIT", err, errlen) == 0)
        return 0;
    store_db_rollback(ix->db);
    return -1;
}

int store_mailbox_get(struct store *st, const char *account, const char *name,
                      struct store_mailbox *mb_r, char *err, size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix)
        return -1;
    if (!name)
        return 0;
    return mbox_by_name(ix, mbox_name(name), mb_r, err, errlen);
}

int store_mailbox_create(struct store *st, const char *account, const char *name,
                         const char *special_use, char *err, size_t errlen)
{
    name = mbox_name(name);
    if (!mbox_name_ok(name))
        return err_set(err, errlen, "invalid mailbox name");
    if (special_use && strlen(special_use) >= sizeof(((struct store_mailbox *)0)->special_use))
        return err_set(err, errlen, "invalid special-use attribute");
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix || store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    int64_t id = 0;
    if (store_index_mailbox_create(ix->db, name, special_use, 0, &id, err, errlen) < 0) {
        store_db_rollback(ix->db);
        return -1;
    }
    if (store_ix_commit(ix, err, errlen) < 0)
        return -1;
    log_info("store", "event=mailbox_create account=%s mailbox_id=%lld", ix->account,
             (long long)id);
    return 0;
}

/* Inside the transaction: remove the rows of mailbox id, collecting the
 * names of its message files into files. 0 or -1. */
static int mbox_delete_rows(struct store_index *ix, int64_t id, struct store_names *files,
                            char *err, size_t errlen)
{
    static const char *const sql[] = {
        "DELETE FROM messages WHERE mailbox_id = ?1 RETURNING file",
        "DELETE FROM expunged WHERE mailbox_id = ?1",
        "DELETE FROM mailboxes WHERE id = ?1",
    };
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        sqlite3_stmt *s;
        if (store_db_prepare(ix->db, sql[i], &s, err, errlen) < 0)
            return -1;
        sqlite3_bind_int64(s, 1, id);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            if (store_names_add(files, (const char *)sqlite3_column_text(s, 0)) < 0) {
                rc = SQLITE_NOMEM;
                break;
            }
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            return rc == SQLITE_NOMEM ? err_set(err, errlen, "out of memory")
                                      : store_db_fail(err, errlen, ix->db, "delete mailbox");
    }
    return 0;
}

/* RFC 3501 6.3.4: the mailbox and its messages go; children and the
 * subscription of the name stay. */
int store_mailbox_delete(struct store *st, const char *account, const char *name, char *err,
                         size_t errlen)
{
    name = mbox_name(name);
    if (name && strcmp(name, "INBOX") == 0)
        return err_set(err, errlen, "INBOX cannot be deleted");
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix || store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    struct store_mailbox mb;
    struct store_names files = {0};
    int found = name ? mbox_by_name(ix, name, &mb, err, errlen) : 0;
    if (found == 0)
        err_set(err, errlen, "no such mailbox");
    if (found <= 0 || mbox_delete_rows(ix, mb.id, &files, err, errlen) < 0 ||
        store_ix_commit(ix, err, errlen) < 0) {
        store_db_rollback(ix->db);
        store_names_free(&files);
        return -1;
    }
    store_names_unlink(&files, ix);
    log_info("store", "event=mailbox_delete account=%s mailbox_id=%lld messages=%zu", ix->account,
             (long long)mb.id, files.n);
    store_names_free(&files);
    return 0;
}

/* Does name equal prefix or start with prefix + "/"? */
static int mbox_is_under(const char *name, const char *prefix)
{
    size_t len = strlen(prefix);
    return strncmp(name, prefix, len) == 0 && (name[len] == '\0' || name[len] == '/');
}

/* The names of the rows of table (mailboxes: with ids) that are old or
 * under "old/" (BINARY order puts exactly those in [old/, old0)), as a
 * list. 0 or -1. */
static int rename_collect(struct store_index *ix, const char *table, const char *old,
                          struct store_names *names, int64_t **ids_r, char *err, size_t errlen)
{
    char sql[160];
    sqlite3_stmt *s;
    snprintf(sql, sizeof(sql),
             "SELECT %s, name FROM %s WHERE name = ?1 OR (name >= ?1 || '/' AND name < ?1 || '0')",
             ids_r ? "id" : "0", table);
    if (store_db_prepare(ix->db, sql, &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, old, -1, SQLITE_STATIC);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (ids_r && names->n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *v = realloc(*ids_r, cap * sizeof(*v));
            if (!v)
                break;
            *ids_r = v;
        }
        if (ids_r)
            (*ids_r)[names->n] = sqlite3_column_int64(s, 0);
        if (store_names_add(names, (const char *)sqlite3_column_text(s, 1)) < 0)
            break;
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return err_set(err, errlen, "out of memory");
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, ix->db, "rename");
}

/* new + what follows old in name, into out (MBOX_NAME_MAX + 1 bytes). */
static int rename_target(char *out, const char *name, const char *old, const char *newname)
{
    return store_path_fmt(out, MBOX_NAME_MAX + 1, "%s%s", newname, name + strlen(old));
}

/* Inside the transaction: give each mailbox in ids/names its new name.
 * First every row takes a temporary name (control characters never pass
 * mbox_name_ok), so a new name that is still some other renamed row's
 * old name does not trip the UNIQUE constraint. 0 or -1. */
static int rename_rows(struct store_index *ix, const int64_t *ids, const struct store_names *names,
                       const char *old, const char *newname, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    char to[MBOX_NAME_MAX + 1];
    if (store_db_prepare(ix->db, "UPDATE mailboxes SET name = ? WHERE id = ?", &s, err, errlen) < 0)
        return -1;
    int rc = SQLITE_DONE;
    for (int pass = 0; pass < 2 && rc == SQLITE_DONE; pass++) {
        const char *name = NULL;
        for (size_t i = 0; i < names->n && rc == SQLITE_DONE; i++) {
            name = store_names_next(names, name);
            if (pass == 0)
                snprintf(to, sizeof(to), "\x01rename\x01%lld", (long long)ids[i]);
            else
                rename_target(to, name, old, newname);
            sqlite3_bind_text(s, 1, to, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, ids[i]);
            rc = sqlite3_step(s);
            sqlite3_reset(s);
        }
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT)
        return err_set(err, errlen, "mailbox %.200s already exists", newname);
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, ix->db, "rename mailbox");
}

/* Is some mailbox that is not being renamed (not old, not under old/)
 * called like one of the new names? 1 yes (err says which), 0 no, -1. */
static int rename_collides(struct store_index *ix, const struct store_names *names, const char *old,
                           const char *newname, char *err, size_t errlen)
{
    char to[MBOX_NAME_MAX + 1];
    struct store_mailbox mb;
    const char *name = NULL;
    for (size_t i = 0; i < names->n; i++) {
        name = store_names_next(names, name);
        if (rename_target(to, name, old, newname) < 0)
            return err_set(err, errlen, "mailbox name too long"), 1;
        int found = mbox_by_name(ix, to, &mb, err, errlen);
        if (found < 0)
            return -1;
        if (found && !mbox_is_under(to, old))
            return err_set(err, errlen, "mailbox %.200s already exists", to), 1;
    }
    return 0;
}

/* Inside the transaction: subscriptions to old and old/... follow. */
static int rename_subscriptions(struct store_index *ix, const char *old, const char *newname,
                                char *err, size_t errlen)
{
    struct store_names subs = {0};
    char to[MBOX_NAME_MAX + 1];
    int rc = rename_collect(ix, "subscriptions", old, &subs, NULL, err, errlen);
    const char *name = NULL;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        sqlite3_stmt *s = store_index_stmt(ix, pass ? IXS_SUB_ADD : IXS_SUB_DEL, err, errlen);
        name = NULL;
        for (size_t i = 0; s && i < subs.n && rc == 0; i++) {
            name = store_names_next(&subs, name);
            if (pass && rename_target(to, name, old, newname) < 0)
                continue; /* a subscribed name too long to follow: dropped */
            sqlite3_bind_text(s, 1, pass ? to : name, -1, SQLITE_STATIC);
            rc = store_stmt_run(ix, s, "rename subscription", err, errlen);
        }
        if (!s)
            rc = -1;
    }
    store_names_free(&subs);
    return rc;
}

/* Rename old (not INBOX) and its children inside the transaction. */
static int rename_tree(struct store_index *ix, const char *old, const char *newname, char *err,
                       size_t errlen)
{
    struct store_names names = {0};
    int64_t *ids = NULL;
    int rc = rename_collect(ix, "mailboxes", old, &names, &ids, err, errlen);
    const char *name = NULL;
    int found = 0;
    for (size_t i = 0; rc == 0 && i < names.n && !found; i++)
        found = strcmp(name = store_names_next(&names, name), old) == 0;
    if (rc == 0 && !found)
        rc = err_set(err, errlen, "no such mailbox");
    if (rc == 0)
        rc = rename_collides(ix, &names, old, newname, err, errlen) != 0 ? -1 : 0;
    if (rc == 0)
        rc = rename_rows(ix, ids, &names, old, newname, err, errlen);
    if (rc == 0)
        rc = rename_subscriptions(ix, old, newname, err, errlen);
    free(ids);
    store_names_free(&names);
    return rc;
}

/* The UIDs of mailbox id in ascending order (malloc'd into *uids_r). */
static int mbox_uids(struct store_index *ix, int64_t id, uint32_t **uids_r, size_t *n_r, char *err,
                     size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MSG_LOAD, err, errlen);
    size_t n = 0, cap = 0;
    uint32_t *v = NULL;
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, 1);
    sqlite3_bind_int64(s, 3, UINT32_MAX);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            uint32_t *nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                break;
            v = nv;
        }
        v[n++] = (uint32_t)sqlite3_column_int64(s, 0);
    }
    store_stmt_done(s);
    if (rc != SQLITE_DONE) {
        free(v);
        return rc == SQLITE_ROW ? err_set(err, errlen, "out of memory")
                                : store_db_fail(err, errlen, ix->db, "list messages");
    }
    *uids_r = v;
    *n_r = n;
    return 0;
}

/* RFC 3501 6.3.5: renaming INBOX moves its messages into a new mailbox
 * (fresh UIDVALIDITY, UIDs from 1) and leaves INBOX, empty, in place;
 * for INBOX that is an expunge of each message. The files stay as they
 * are: only rows change. Inside the transaction. */
static int rename_inbox(struct store_index *ix, const char *newname, char *err, size_t errlen)
{
    struct store_mailbox inbox, dst;
    uint32_t *uids = NULL;
    size_t n = 0;
    int64_t id;
    int found = mbox_by_name(ix, "INBOX", &inbox, err, errlen);
    if (found <= 0)
        return found == 0 ? err_set(err, errlen, "no INBOX") : -1;
    if (store_index_mailbox_create(ix->db, newname, NULL, 0, &id, err, errlen) < 0 ||
        store_mbox_by_id(ix, id, &dst, err, errlen) <= 0 ||
        mbox_uids(ix, inbox.id, &uids, &n, err, errlen) < 0)
        return -1;
    uint64_t in_modseq = inbox.highestmodseq + 1, dst_modseq = dst.highestmodseq + 1;
    uint32_t first_recent = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint32_t uid = (uint32_t)i + 1;
        if (!first_recent && uids[i] >= inbox.first_recent_uid)
            first_recent = uid;
        if (store_msg_move_row(ix, inbox.id, uids[i], id, uid, dst_modseq, in_modseq, err, errlen) <
            0)
            rc = -1;
    }
    free(uids);
    if (rc < 0 || n == 0)
        return rc;
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MBOX_SET_NEXT, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, (int64_t)n + 1);
    sqlite3_bind_int64(s, 2, (int64_t)dst_modseq);
    sqlite3_bind_int64(s, 3, id);
    if (store_stmt_run(ix, s, "rename INBOX", err, errlen) < 0 ||
        !(s = store_index_stmt(ix, IXS_MBOX_SET_RECENT, err, errlen)))
        return -1;
    sqlite3_bind_int64(s, 1, first_recent ? first_recent : (int64_t)n + 1);
    sqlite3_bind_int64(s, 2, id);
    if (store_stmt_run(ix, s, "rename INBOX", err, errlen) < 0)
        return -1;
    return store_mbox_set_modseq(ix, inbox.id, in_modseq, err, errlen);
}

int store_mailbox_rename(struct store *st, const char *account, const char *oldname,
                         const char *newname, char *err, size_t errlen)
{
    oldname = mbox_name(oldname);
    newname = mbox_name(newname);
    if (!oldname || !mbox_name_ok(newname))
        return err_set(err, errlen, "invalid mailbox name");
    if (strcmp(newname, "INBOX") == 0 || strcmp(oldname, newname) == 0)
        return err_set(err, errlen, "mailbox %.200s already exists", newname);
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix || store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    int rc = strcmp(oldname, "INBOX") == 0 ? rename_inbox(ix, newname, err, errlen)
                                           : rename_tree(ix, oldname, newname, err, errlen);
    if (rc < 0) {
        store_db_rollback(ix->db);
        return -1;
    }
    if (store_ix_commit(ix, err, errlen) < 0)
        return -1;
    log_info("store", "event=mailbox_rename account=%s", ix->account);
    return 0;
}

int store_subscription_set(struct store *st, const char *account, const char *name, int on,
                           char *err, size_t errlen)
{
    name = mbox_name(name);
    if (!name || !*name || strlen(name) > MBOX_NAME_MAX)
        return err_set(err, errlen, "invalid mailbox name");
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix)
        return -1;
    sqlite3_stmt *s = store_index_stmt(ix, on ? IXS_SUB_ADD : IXS_SUB_DEL, err, errlen);
    if (!s || store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    if (store_stmt_run(ix, s, "subscribe", err, errlen) < 0) {
        store_db_rollback(ix->db);
        return -1;
    }
    return store_ix_commit(ix, err, errlen);
}

/* The callbacks below run after the statement is reset: a callback may
 * use the store again (even another account) without upsetting it. */
int store_subscription_list(struct store *st, const char *account,
                            void (*cb)(void *ctx, const char *name), void *ctx, char *err,
                            size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    sqlite3_stmt *s = ix ? store_index_stmt(ix, IXS_SUB_LIST, err, errlen) : NULL;
    if (!s)
        return -1;
    struct store_names names = {0};
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (store_names_add(&names, (const char *)sqlite3_column_text(s, 0)) < 0)
            break;
    store_stmt_done(s);
    if (rc != SQLITE_DONE) {
        store_names_free(&names);
        return rc == SQLITE_ROW ? err_set(err, errlen, "out of memory")
                                : store_db_fail(err, errlen, ix->db, "list subscriptions");
    }
    const char *name = NULL;
    for (size_t i = 0; i < names.n; i++)
        cb(ctx, name = store_names_next(&names, name));
    store_names_free(&names);
    return 0;
}

int store_mailbox_each(struct store *st, const char *account,
                       void (*cb)(void *ctx, const struct store_mailbox *mb), void *ctx, char *err,
                       size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    sqlite3_stmt *s = ix ? store_index_stmt(ix, IXS_MBOX_EACH, err, errlen) : NULL;
    if (!s)
        return -1;
    struct store_mailbox *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct store_mailbox *nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                break;
            v = nv;
        }
        mbox_row(s, &v[n++]);
    }
    store_stmt_done(s);
    if (rc == SQLITE_DONE)
        for (size_t i = 0; i < n; i++)
            cb(ctx, &v[i]);
    free(v);
    if (rc == SQLITE_DONE)
        return 0;
    return rc == SQLITE_ROW ? err_set(err, errlen, "out of memory")
                            : store_db_fail(err, errlen, ix->db, "list mailboxes");
}

int store_mailbox_status(struct store *st, const char *account, const char *name,
                         struct store_mailbox_status *r, char *err, size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    sqlite3_stmt *s = ix ? store_index_stmt(ix, IXS_MBOX_STATUS, err, errlen) : NULL;
    if (!s)
        return -1;
    if (!name)
        return 0;
    sqlite3_bind_text(s, 1, mbox_name(name), -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(r, 0, sizeof(*r));
        r->uidvalidity = (uint32_t)sqlite3_column_int64(s, 0);
        r->uidnext = (uint32_t)sqlite3_column_int64(s, 1);
        r->highestmodseq = (uint64_t)sqlite3_column_int64(s, 2);
        r->messages = (uint32_t)sqlite3_column_int64(s, 3);
        r->unseen = (uint32_t)sqlite3_column_int64(s, 4);
        r->recent = (uint32_t)sqlite3_column_int64(s, 5);
        r->deleted = (uint64_t)sqlite3_column_int64(s, 6);
        r->size = (uint64_t)sqlite3_column_int64(s, 7);
    }
    store_stmt_done(s);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, ix->db, "mailbox status");
}

int store_mailbox_take_recent(struct store *st, const char *account, int64_t mailbox_id,
                              uint32_t *first_r, char *err, size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix || store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    struct store_mailbox mb;
    int found = store_mbox_by_id(ix, mailbox_id, &mb, err, errlen);
    if (found == 0)
        err_set(err, errlen, "no such mailbox");
    if (found <= 0)
        goto fail;
    if (mb.first_recent_uid != mb.uidnext) {
        sqlite3_stmt *s = store_index_stmt(ix, IXS_MBOX_SET_RECENT, err, errlen);
        if (!s)
            goto fail;
        sqlite3_bind_int64(s, 1, mb.uidnext);
        sqlite3_bind_int64(s, 2, mailbox_id);
        if (store_stmt_run(ix, s, "take recent", err, errlen) < 0)
            goto fail;
    }
    if (store_ix_commit(ix, err, errlen) < 0)
        return -1;
    *first_r = mb.first_recent_uid;
    return 0;
fail:
    store_db_rollback(ix->db);
    return -1;
}
