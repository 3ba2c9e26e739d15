/* store_mail — the per-account side of the SQLite store:
 * DATA/mail/<domain>/<local>/index.sqlite (mailboxes, messages), a cache
 * of open index connections, group-commit delivery, crash recovery and
 * reading.
 *
 * Index connections are opened lazily and cached in the struct store
 * (STORE_CACHE_MAX, least recently used goes first) with their hot
 * prepared statements, so repeated deliveries to an account cost no open.
 */
#include "store/store_sqlite_int.h"

#include "lib/log.h"
#include "store/blob.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_STR2(x) #x
#define STORE_STR(x) STORE_STR2(x)

static const char *const store_default_mailboxes[][2] = {
    {"INBOX", NULL},      {"Sent", "\\Sent"}, {"Drafts", "\\Drafts"},
    {"Trash", "\\Trash"}, {"Junk", "\\Junk"}, {"Archive", "\\Archive"},
};

/* --- per-account index ---------------------------------------------------------- */

/* Schema version 2. mailboxes.subscribed is unused since version 2 (the
 * subscriptions table holds names, which need not exist as mailboxes);
 * first_recent_uid: messages with uid >= it are \Recent for the next
 * SELECT (RFC 3501 2.3.2). */
static const char index_schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE IF NOT EXISTS mailboxes("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " uidvalidity INTEGER NOT NULL,"
    " uidnext INTEGER NOT NULL DEFAULT 1,"
    " highestmodseq INTEGER NOT NULL DEFAULT 1,"
    " special_use TEXT,"
    " subscribed INTEGER NOT NULL DEFAULT 1,"
    " first_recent_uid INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS messages("
    " mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),"
    " uid INTEGER NOT NULL,"
    " file TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " internaldate INTEGER NOT NULL,"
    " modseq INTEGER NOT NULL,"
    " flags INTEGER NOT NULL DEFAULT 0,"
    " keywords TEXT NOT NULL DEFAULT '',"
    " envelope TEXT,"
    " bodystructure TEXT,"
    " search_fields BLOB,"
    " PRIMARY KEY(mailbox_id, uid));"
    "CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox_id, modseq);"
    "CREATE INDEX IF NOT EXISTS messages_file ON messages(file);"
    /* Expunged UIDs with the MODSEQ of their expunge, for QRESYNC VANISHED
     * (RFC 7162 3.2.10). */
    "CREATE TABLE IF NOT EXISTS expunged("
    " mailbox_id INTEGER NOT NULL,"
    " uid INTEGER NOT NULL,"
    " modseq INTEGER NOT NULL,"
    " PRIMARY KEY(mailbox_id, uid));"
    "CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq);";

/* Version 1 -> 2: \Recent bookkeeping, subscriptions as names, expunges
 * found by MODSEQ. Existing mailboxes keep their subscription; their
 * messages count as \Recent until an IMAP session has SELECTed them. */
static const char index_migrate_1_2[] =
    "ALTER TABLE mailboxes ADD COLUMN first_recent_uid INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY);"
    "INSERT OR IGNORE INTO subscriptions(name) SELECT name FROM mailboxes WHERE subscribed = 1;"
    "CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq);";

/* Version 2 -> 3: decoded address and subject fields for SEARCH. Older
 * messages have none; SEARCH reads their files. */
static const char index_migrate_2_3[] = "ALTER TABLE messages ADD COLUMN search_fields BLOB;";

/* store_db_schema's migrate hook: from version `from` to INDEX_VERSION. */
static int index_migrate(sqlite3 *db, int from, char *err, size_t errlen)
{
    if (from == 1 && store_db_exec(db, index_migrate_1_2, err, errlen) < 0)
        return -1;
    if (from <= 2)
        return store_db_exec(db, index_migrate_2_3, err, errlen);
    return err_set(err, errlen, "%s: no migration from schema version %d",
                      sqlite3_db_filename(db, "main"), from);
}

/* The literal flag bits in the SQL below. */
_Static_assert(STORE_FLAG_SEEN == 1 && STORE_FLAG_DELETED == 8, "flag bits in SQL");

/* The cached statements of an index connection (enum index_stmt). */
#define IXS_MBOX_COLS "id, name, uidvalidity, uidnext, highestmodseq, special_use, first_recent_uid"
#define IXS_MSG_COLS "uid, flags, modseq, size, internaldate, file, keywords"
static const char *const index_stmt_sql[IXS_COUNT] = {
    [IXS_MBOX_BY_NAME] = "SELECT " IXS_MBOX_COLS " FROM mailboxes WHERE name = ?",
    [IXS_MBOX_BY_ID] = "SELECT " IXS_MBOX_COLS " FROM mailboxes WHERE id = ?",
    [IXS_MBOX_EACH] = "SELECT " IXS_MBOX_COLS " FROM mailboxes ORDER BY name",
    [IXS_MBOX_STATUS] = "SELECT b.uidvalidity, b.uidnext, b.highestmodseq, count(m.uid),"
                        " coalesce(sum((m.flags & 1) = 0), 0),"
                        " coalesce(sum(m.uid >= b.first_recent_uid), 0),"
                        " coalesce(sum((m.flags & 8) != 0), 0),"
                        " coalesce(sum(m.size), 0)"
                        " FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id"
                        " WHERE b.name = ? GROUP BY b.id",
    [IXS_MBOX_SET_MODSEQ] = "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?",
    [IXS_MBOX_SET_NEXT] = "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
    [IXS_MBOX_SET_RECENT] = "UPDATE mailboxes SET first_recent_uid = ? WHERE id = ?",
    [IXS_MSG_LOAD] = "SELECT " IXS_MSG_COLS " FROM messages"
                     " WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid",
    [IXS_MSG_LOAD_CACHE] = "SELECT " IXS_MSG_COLS ", envelope, bodystructure, search_fields"
                           " FROM messages"
                           " WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid",
    [IXS_MSG_LOAD_FIELDS] = "SELECT " IXS_MSG_COLS ", envelope, NULL, search_fields FROM messages"
                            " WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid",
    [IXS_MSG_CHANGED] = "SELECT " IXS_MSG_COLS " FROM messages"
                        " WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
    [IXS_MSG_EXPUNGED] =
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
    [IXS_MSG_FLAGS] =
        "SELECT flags, keywords, modseq FROM messages WHERE mailbox_id = ? AND uid = ?",
    [IXS_MSG_SET_FLAGS] = "UPDATE messages SET flags = ?, keywords = ?, modseq = ?"
                          " WHERE mailbox_id = ? AND uid = ?",
    [IXS_MSG_FILE] = "SELECT file FROM messages WHERE mailbox_id = ? AND uid = ?",
    [IXS_MSG_DELETE] = "DELETE FROM messages WHERE mailbox_id = ? AND uid = ? RETURNING file",
    [IXS_MSG_SET_FLAGS_ONLY] = "UPDATE messages SET flags = ?, modseq = ?"
                               " WHERE mailbox_id = ? AND uid = ?",
    [IXS_MSG_COPY] =
        "INSERT INTO messages(mailbox_id, uid, file, size, internaldate, modseq,"
        " flags, keywords, envelope, bodystructure, search_fields)"
        " SELECT ?1, ?2, ?3, size, internaldate, ?4, flags, keywords, envelope,"
        " bodystructure, search_fields FROM messages"
        " WHERE mailbox_id = ?5 AND uid = ?6 AND file = ?7",
    [IXS_MSG_INSERT_FULL] = "INSERT INTO messages(mailbox_id, uid, file, size, internaldate,"
                            " modseq, flags, keywords, envelope, bodystructure,"
                            " search_fields)"
                            " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [IXS_MSG_MOVE] = "UPDATE messages SET mailbox_id = ?, uid = ?, modseq = ?"
                     " WHERE mailbox_id = ? AND uid = ?",
    [IXS_EXPUNGE_ADD] = "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES(?, ?, ?)",
    [IXS_MSG_SET_CACHE] = "UPDATE messages SET envelope = coalesce(envelope, ?),"
                          " bodystructure = coalesce(bodystructure, ?),"
                          " search_fields = coalesce(search_fields, ?)"
                          " WHERE mailbox_id = ? AND uid = ?",
    [IXS_SUB_ADD] = "INSERT OR IGNORE INTO subscriptions(name) VALUES(?)",
    [IXS_SUB_DEL] = "DELETE FROM subscriptions WHERE name = ?",
    [IXS_SUB_LIST] = "SELECT name FROM subscriptions ORDER BY name",
};

sqlite3_stmt *store_index_stmt(struct store_index *ix, enum index_stmt which, char *err,
                               size_t errlen)
{
    if (!ix->stmt[which] &&
        store_db_prepare(ix->db, index_stmt_sql[which], &ix->stmt[which], err, errlen) < 0)
        return NULL;
    return ix->stmt[which];
}

void store_stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* An integer kept in meta under key (0 when missing), or -1 with err. */
static int64_t index_meta_get(sqlite3 *db, const char *key, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int64_t v = 0;
    if (store_db_prepare(db, "SELECT value FROM meta WHERE key = ?", &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_fail(err, errlen, db, "read meta");
    return v;
}

/* Store v in meta under key. 0 or -1. */
static int index_meta_set(sqlite3 *db, const char *key, int64_t v, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    if (store_db_prepare(db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", &s, err,
                         errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, v);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, db, "store meta");
}

/* A new UIDVALIDITY: the current time, but always above the last one
 * given in this index (kept in meta), so every mailbox creation gets a
 * different value even within one second. Needs an open transaction. */
static int64_t index_uidvalidity_next(sqlite3 *db, char *err, size_t errlen)
{
    int64_t last = index_meta_get(db, "uidvalidity", err, errlen);
    int64_t now = (int64_t)(uint32_t)time(NULL);
    if (last < 0)
        return -1;
    int64_t v = now > last ? now : last + 1;
    if (v > UINT32_MAX || v == 0)
        v = 1; /* 2106: wrap; a repeat then needs the same name at the same second */
    return index_meta_set(db, "uidvalidity", v, err, errlen) < 0 ? -1 : v;
}

/* A new mailbox id, above every id ever given in this index: an IMAP
 * session may still hold the id of a mailbox deleted meanwhile, and must
 * not reach another mailbox with it. (INTEGER PRIMARY KEY alone would
 * hand out the largest id again once that row is gone.) Needs an open
 * transaction. */
static int64_t index_mailbox_id_next(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int64_t last = index_meta_get(db, "mailbox_id", err, errlen), max = 0;
    if (last < 0 || store_db_prepare(db, "SELECT max(id) FROM mailboxes", &s, err, errlen) < 0)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        max = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    int64_t v = (last > max ? last : max) + 1;
    return index_meta_set(db, "mailbox_id", v, err, errlen) < 0 ? -1 : v;
}

int store_index_mailbox_create(sqlite3 *db, const char *name, const char *special_use,
                               int subscribe, int64_t *id_r, char *err, size_t errlen)
{
    int64_t uidvalidity = index_uidvalidity_next(db, err, errlen);
    int64_t id = uidvalidity < 0 ? -1 : index_mailbox_id_next(db, err, errlen);
    sqlite3_stmt *s;
    if (id < 0 || store_db_prepare(db,
                                   "INSERT INTO mailboxes(id, name, uidvalidity, uidnext, "
                                   "highestmodseq, special_use, subscribed) "
                                   "VALUES(?, ?, ?, 1, 1, ?, ?)",
                                   &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, uidvalidity);
    if (special_use && *special_use)
        sqlite3_bind_text(s, 4, special_use, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, subscribe != 0);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT)
        return err_set(err, errlen, "mailbox %.200s already exists", name);
    if (rc != SQLITE_DONE)
        return store_db_fail(err, errlen, db, "create mailbox");
    if (id_r)
        *id_r = id;
    if (!subscribe)
        return 0;
    if (store_db_prepare(db, "INSERT OR IGNORE INTO subscriptions(name) VALUES(?)", &s, err,
                         errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, db, "subscribe");
}

/* The default mailboxes of a new account (store_db_schema fill hook). */
static int index_fill(sqlite3 *db, char *err, size_t errlen)
{
    size_t n = sizeof(store_default_mailboxes) / sizeof(store_default_mailboxes[0]);
    for (size_t i = 0; i < n; i++)
        if (store_index_mailbox_create(db, store_default_mailboxes[i][0],
                                       store_default_mailboxes[i][1], 1, NULL, err, errlen) < 0)
            return -1;
    return 0;
}

/* Create dir/msg, dir/tmp and dir/index.sqlite (schema and default
 * mailboxes), fsyncing the directories so the new entries survive a
 * crash. Existing pieces are kept: this finishes a half-made account. */
int store_index_create(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    const char *subs[] = {"msg", "tmp"};
    if (store_mkdir(dir, err, errlen) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (store_path_fmt(path, sizeof(path), "%s/%s", dir, subs[i]) < 0)
            return err_set(err, errlen, "path too long: %s", dir);
        if (store_mkdir(path, err, errlen) < 0)
            return -1;
    }
    sqlite3 *db;
    if (store_path_fmt(path, sizeof(path), "%s/index.sqlite", dir) < 0)
        return err_set(err, errlen, "path too long: %s", dir);
    if (store_db_open(path, 1, &db, err, errlen) < 0)
        return -1;
    int rc =
        store_db_schema(db, INDEX_VERSION, index_schema, index_fill, index_migrate, err, errlen);
    sqlite3_close(db);
    if (rc < 0)
        return -1;
    return blob_sync_dir(dir, err, errlen);
}

static void index_free(struct store_index *ix)
{
    if (!ix)
        return;
    sqlite3_finalize(ix->mbox_get);
    sqlite3_finalize(ix->mbox_bump);
    sqlite3_finalize(ix->msg_insert);
    sqlite3_finalize(ix->file_find);
    for (int i = 0; i < IXS_COUNT; i++)
        sqlite3_finalize(ix->stmt[i]);
    sqlite3_close(ix->db);
    free(ix);
}

/* Open an existing account index (never creates one: a missing index
 * means no such account) and prepare its hot statements. */
static struct store_index *index_open(const struct store *st, const char *account, char *err,
                                      size_t errlen)
{
    struct store_index *ix = calloc(1, sizeof(*ix));
    char path[PATH_MAX];
    struct stat sb;
    if (!ix) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(ix->account, sizeof(ix->account), "%s", account);
    if (store_path_account(st, account, ix->dir, sizeof(ix->dir)) < 0 ||
        store_path_fmt(path, sizeof(path), "%s/index.sqlite", ix->dir) < 0) {
        err_set(err, errlen, "account %s: path too long", account);
        goto fail;
    }
    if (stat(path, &sb) < 0) {
        err_set(err, errlen, "account %s: no index (%s)", account, strerror(errno));
        goto fail;
    }
    ix->dev = sb.st_dev;
    ix->ino = sb.st_ino;
    if (store_db_open(path, 0, &ix->db, err, errlen) < 0)
        goto fail;
    /* Deliveries touch a few pages; SQLite's default cache (2 MB) times
     * 64 accounts times worker threads would be a lot of memory. */
    sqlite3_exec(ix->db, "PRAGMA cache_size=-" STORE_STR(INDEX_CACHE_KIB), NULL, NULL, NULL);
    /* An index from an older version is migrated here, on first use; one
     * at version 0 was never finished (no account was ever committed). */
    int v = store_db_user_version(ix->db, err, errlen);
    if (v == 0) {
        err_set(err, errlen, "%s: schema version 0, want %d", path, INDEX_VERSION);
        goto fail;
    }
    if (v < 0 || (v != INDEX_VERSION && store_db_schema(ix->db, INDEX_VERSION, index_schema, NULL,
                                                        index_migrate, err, errlen) < 0))
        goto fail;
    if (store_db_prepare(ix->db, "SELECT id, uidnext, highestmodseq FROM mailboxes WHERE name = ?",
                         &ix->mbox_get, err, errlen) < 0 ||
        store_db_prepare(ix->db, "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                         &ix->mbox_bump, err, errlen) < 0 ||
        store_db_prepare(ix->db, index_stmt_sql[IXS_MSG_INSERT_FULL], &ix->msg_insert, err,
                         errlen) < 0 ||
        store_db_prepare(ix->db, "SELECT 1 FROM messages WHERE file = ? LIMIT 1", &ix->file_find,
                         err, errlen) < 0)
        goto fail;
    return ix;
fail:
    index_free(ix);
    return NULL;
}

static void index_evict(struct store *st, int slot)
{
    index_free(st->cache[slot]);
    st->cache[slot] = NULL;
}

/* Forget the cached index of account (after it was deleted). */
void store_index_forget(struct store *st, const char *account)
{
    for (int i = 0; i < STORE_CACHE_MAX; i++)
        if (st->cache[i] && strcmp(st->cache[i]->account, account) == 0)
            index_evict(st, i);
}

void store_index_cache_clear(struct store *st)
{
    for (int i = 0; i < STORE_CACHE_MAX; i++)
        index_evict(st, i);
}

void store_set_index_cache(struct store *st, int n)
{
    st->cache_max = n < 1 ? 1 : n > STORE_CACHE_MAX ? STORE_CACHE_MAX : n;
    for (int i = st->cache_max; i < STORE_CACHE_MAX; i++)
        index_evict(st, i);
}

/* Is DATA/mail/<domain>/<local>/index.sqlite still the file ix opened? */
static int index_same_file(const struct store_index *ix)
{
    char path[PATH_MAX];
    struct stat sb;
    if (store_path_fmt(path, sizeof(path), "%s/index.sqlite", ix->dir) < 0)
        return 0;
    return stat(path, &sb) == 0 && sb.st_dev == ix->dev && sb.st_ino == ix->ino;
}

/* The index of a normalised account address, from the cache or opened
 * now (evicting the least recently used). A cached connection is dropped
 * when index.sqlite is no longer the file it opened (account deleted,
 * perhaps re-added, by another process). The result stays owned by st
 * and is valid until the next index_get. NULL with err on failure. */
static struct store_index *index_get(struct store *st, const char *account, char *err,
                                     size_t errlen)
{
    int slot = -1, lru = 0;
    for (int i = 0; i < st->cache_max; i++) {
        struct store_index *ix = st->cache[i];
        if (!ix) {
            slot = slot < 0 ? i : slot;
            continue;
        }
        if (strcmp(ix->account, account) == 0) {
            if (index_same_file(ix)) {
                ix->used = ++st->tick;
                return ix;
            }
            index_evict(st, i);
            slot = i;
            break;
        }
        if (st->cache[lru] == NULL || ix->used < st->cache[lru]->used)
            lru = i;
    }
    if (slot < 0) {
        slot = lru;
        index_evict(st, slot);
    }
    struct store_index *ix = index_open(st, account, err, errlen);
    if (!ix)
        return NULL;
    ix->used = ++st->tick;
    st->cache[slot] = ix;
    return ix;
}

/* --- delivery --------------------------------------------------------------------- */

enum deliver_state { ITEM_FAILED, ITEM_PENDING, ITEM_WRITTEN, ITEM_STORED };

/* Working state of one delivery inside store_deliver. */
struct deliver_item {
    struct store_delivery *d;
    size_t seq;                       /* position in the caller's array */
    char account[STORE_ADDR_MAX + 1]; /* normalised */
    char file[64];                    /* name in msg/ once written */
    uint64_t size;
    enum deliver_state state;
};

static void deliver_item_fail(struct deliver_item *it, const char *msg)
{
    it->state = ITEM_FAILED;
    it->d->result_r = -1;
    it->d->uid_r = 0;
    snprintf(it->d->err_r, sizeof(it->d->err_r), "%s", msg);
}

/* Order by account, then by the caller's order (UIDs follow it). */
static int deliver_item_cmp(const void *a, const void *b)
{
    const struct deliver_item *x = *(const struct deliver_item *const *)a;
    const struct deliver_item *y = *(const struct deliver_item *const *)b;
    int c = strcmp(x->account, y->account);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Fail every item of [a, b) still in play with msg, unlinking the files
 * already written (the transaction that named them was rolled back). */
static void deliver_run_abort(struct deliver_item **v, size_t a, size_t b, const char *dir,
                              const char *msg)
{
    for (size_t i = a; i < b; i++) {
        if (v[i]->state == ITEM_FAILED)
            continue;
        if (v[i]->state == ITEM_PENDING) {
            deliver_item_fail(v[i], msg);
            continue;
        }
        if (blob_unlink(dir, v[i]->file) < 0 && errno != ENOENT)
            log_warn("store", "event=unlink_failed account=%s file=%s error=%s", v[i]->account,
                     v[i]->file, strerror(errno));
        deliver_item_fail(v[i], msg);
    }
}

/* Insert one written message into its mailbox inside the open
 * transaction: UID = uidnext++, MODSEQ = ++highestmodseq. Returns 0, 1
 * when only this item failed (no such mailbox; nothing was changed), or
 * -1 on a database error (err set; the transaction must be rolled back). */
static int deliver_insert(struct store_index *ix, struct deliver_item *it, char *err, size_t errlen)
{
    const char *mbox = it->d->mailbox ? it->d->mailbox : "INBOX";
    if (strcasecmp(mbox, "INBOX") == 0) /* RFC 3501 5.1: INBOX is case-insensitive */
        mbox = "INBOX";
    sqlite3_stmt *s = ix->mbox_get;
    sqlite3_bind_text(s, 1, mbox, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t id = 0, uid = 0, modseq = 0;
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        uid = sqlite3_column_int64(s, 1);
        modseq = sqlite3_column_int64(s, 2) + 1;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_DONE || (rc == SQLITE_ROW && uid > UINT32_MAX)) {
        err_set(err, errlen,
                   rc == SQLITE_DONE ? "no such mailbox: %.200s" : "mailbox %.200s: UIDs exhausted",
                   mbox);
        return 1;
    }
    if (rc != SQLITE_ROW)
        return store_db_fail(err, errlen, ix->db, "read mailbox");
    s = ix->mbox_bump;
    sqlite3_bind_int64(s, 1, uid + 1);
    sqlite3_bind_int64(s, 2, modseq);
    sqlite3_bind_int64(s, 3, id);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_db_fail(err, errlen, ix->db, "update mailbox");
    time_t date = it->d->internal_date ? it->d->internal_date : time(NULL);
    char *kw = NULL;
    if (store_kw_apply(NULL, STORE_KW_SET, it->d->keywords, &kw) < 0)
        return err_set(err, errlen, "out of memory");
    s = ix->msg_insert;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, uid);
    sqlite3_bind_text(s, 3, it->file, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (int64_t)it->size);
    sqlite3_bind_int64(s, 5, (int64_t)date);
    sqlite3_bind_int64(s, 6, modseq);
    sqlite3_bind_int64(s, 7, (int64_t)(it->d->flags & STORE_FLAG_ALL));
    sqlite3_bind_text(s, 8, kw, -1, SQLITE_STATIC);
    if (it->d->envelope)
        sqlite3_bind_text(s, 9, it->d->envelope, -1, SQLITE_STATIC);
    if (it->d->bodystructure)
        sqlite3_bind_text(s, 10, it->d->bodystructure, -1, SQLITE_STATIC);
    if (it->d->search_fields && it->d->search_fields_len > 0)
        sqlite3_bind_blob(s, 11, it->d->search_fields, (int)it->d->search_fields_len,
                          SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    free(kw);
    if (rc != SQLITE_DONE)
        return store_db_fail(err, errlen, ix->db, "insert message");
    it->d->uid_r = (uint32_t)uid;
    it->state = ITEM_STORED;
    return 0;
}

/* Is file named by a messages row? 1 yes, 0 no, -1 error. */
static int index_file_known(struct store_index *ix, const char *file)
{
    sqlite3_stmt *s = ix->file_find;
    sqlite3_bind_text(s, 1, file, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* COMMIT failed: SQLite may or may not have made it durable (an I/O error
 * during the WAL sync). Roll back, then unlink only the files no row
 * names; if the index cannot even be asked, leave them to store_recover
 * rather than risk a row without its file. */
static void deliver_commit_failed(struct store_index *ix, struct deliver_item **v, size_t a,
                                  size_t b, const char *msg)
{
    store_db_rollback(ix->db);
    for (size_t i = a; i < b; i++) {
        if (v[i]->state != ITEM_STORED)
            continue;
        if (index_file_known(ix, v[i]->file) == 0)
            blob_unlink(ix->dir, v[i]->file);
        deliver_item_fail(v[i], msg);
    }
}

/* One transaction for all written items [a, b) of one account. */
static void deliver_run_commit(struct store *st, struct deliver_item **v, size_t a, size_t b,
                               const char *dir)
{
    char err[256];
    struct store_index *ix = index_get(st, v[a]->account, err, sizeof(err));
    if (!ix || store_db_begin(ix->db, err, sizeof(err)) < 0) {
        deliver_run_abort(v, a, b, dir, err);
        return;
    }
    for (size_t i = a; i < b; i++) {
        if (v[i]->state != ITEM_WRITTEN)
            continue;
        int rc = deliver_insert(ix, v[i], err, sizeof(err));
        if (rc < 0) {
            store_db_rollback(ix->db);
            deliver_run_abort(v, a, b, dir, err);
            return;
        }
        if (rc > 0) {
            blob_unlink(dir, v[i]->file);
            deliver_item_fail(v[i], err);
        }
    }
    if (store_db_exec(ix->db, "COMMIT", err, sizeof(err)) < 0) {
        deliver_commit_failed(ix, v, a, b, err);
        return;
    }
    for (size_t i = a; i < b; i++) {
        if (v[i]->state != ITEM_STORED)
            continue;
        v[i]->d->result_r = 0;
        v[i]->d->err_r[0] = '\0';
    }
}

/* Items [a, b) share an account. Check it has an index (so no file is
 * written for an unknown account), then write each message file. */
static void deliver_run_write(struct store *st, struct deliver_item **v, size_t a, size_t b,
                              const char *dir)
{
    char err[256];
    if (!index_get(st, v[a]->account, err, sizeof(err))) {
        for (size_t i = a; i < b; i++)
            if (v[i]->state == ITEM_PENDING)
                deliver_item_fail(v[i], err);
        return;
    }
    for (size_t i = a; i < b; i++) {
        struct deliver_item *it = v[i];
        if (it->state != ITEM_PENDING)
            continue;
        if (blob_write(dir, it->d->iov, it->d->iovcnt, it->file, sizeof(it->file), &it->size, err,
                       sizeof(err)) < 0)
            deliver_item_fail(it, err);
        else
            it->state = ITEM_WRITTEN;
    }
}

/* Make the run's renames durable: one fsync of its msg/ folder. */
static void deliver_run_sync(struct deliver_item **v, size_t a, size_t b, const char *dir)
{
    char path[PATH_MAX], err[256];
    if (store_path_fmt(path, sizeof(path), "%s/msg", dir) < 0)
        deliver_run_abort(v, a, b, dir, "path too long");
    else if (blob_sync_dir(path, err, sizeof(err)) < 0)
        deliver_run_abort(v, a, b, dir, err);
}

/* Does any item of [a, b) have state s? */
static int deliver_run_has(struct deliver_item **v, size_t a, size_t b, enum deliver_state s)
{
    for (size_t i = a; i < b; i++)
        if (v[i]->state == s)
            return 1;
    return 0;
}

/* Runs the three phases over runs of one account each: write all files,
 * fsync each msg/ folder once, then one index transaction per account. */
static void deliver_phases(struct store *st, struct deliver_item **v, size_t n)
{
    char dir[PATH_MAX];
    for (int phase = 0; phase < 3; phase++) {
        for (size_t a = 0, b; a < n; a = b) {
            for (b = a + 1; b < n && strcmp(v[a]->account, v[b]->account) == 0; b++)
                ;
            if (!deliver_run_has(v, a, b, phase == 0 ? ITEM_PENDING : ITEM_WRITTEN))
                continue;
            if (store_path_account(st, v[a]->account, dir, sizeof(dir)) < 0) {
                deliver_run_abort(v, a, b, "", "account path too long");
                continue;
            }
            if (phase == 0)
                deliver_run_write(st, v, a, b, dir);
            else if (phase == 1)
                deliver_run_sync(v, a, b, dir);
            else
                deliver_run_commit(st, v, a, b, dir);
        }
    }
}

int store_deliver(struct store *st, struct store_delivery *d, size_t n)
{
    if (n == 0)
        return 0;
    struct deliver_item *items = calloc(n, sizeof(*items));
    struct deliver_item **v = calloc(n, sizeof(*v));
    if (!items || !v) {
        free(items);
        free(v);
        for (size_t i = 0; i < n; i++) {
            d[i].result_r = -1;
            snprintf(d[i].err_r, sizeof(d[i].err_r), "out of memory");
        }
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        items[i] = (struct deliver_item){.d = &d[i], .seq = i, .state = ITEM_PENDING};
        v[i] = &items[i];
        d[i].result_r = -1;
        d[i].uid_r = 0;
        d[i].err_r[0] = '\0';
        if (store_addr_norm(d[i].account, items[i].account, sizeof(items[i].account), NULL) < 0)
            deliver_item_fail(&items[i], "invalid account address");
        else if (d[i].iovcnt < 0 || (d[i].iovcnt > 0 && !d[i].iov))
            deliver_item_fail(&items[i], "no message data");
    }
    qsort(v, n, sizeof(*v), deliver_item_cmp);
    /* Shared lock: store_recover (exclusive) must not see our files in
     * msg/ between rename and COMMIT and take them for orphans. */
    if (store_flock(st, LOCK_SH) < 0)
        log_warn("store", "event=lock_failed error=%s", strerror(errno));
    deliver_phases(st, v, n);
    store_flock(st, LOCK_UN);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (d[i].result_r != 0)
            rc = -1;
    free(items);
    free(v);
    return rc;
}

/* --- recovery --------------------------------------------------------------------- */

struct recover_count {
    unsigned accounts, tmp_removed, orphans_removed, errors;
};

/* Remove every file in dir/tmp. */
static void recover_tmp(const char *dir, struct recover_count *c)
{
    char path[PATH_MAX];
    if (store_path_fmt(path, sizeof(path), "%s/tmp", dir) < 0)
        return;
    DIR *dp = opendir(path);
    if (!dp)
        return;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, "..")))
            continue;
        if (store_path_fmt(path, sizeof(path), "%s/tmp/%s", dir, e->d_name) < 0)
            continue;
        if (unlink(path) == 0) {
            c->tmp_removed++;
            log_info("store", "event=recover action=remove_tmp path=%s", path);
        } else {
            c->errors++;
            log_warn("store", "event=recover action=remove_tmp path=%s error=%s", path,
                     strerror(errno));
        }
    }
    closedir(dp);
}

/* Remove files of dir/msg that no row of ix names. A file the index
 * cannot be asked about is kept. */
static void recover_msg(struct store_index *ix, const char *dir, struct recover_count *c)
{
    char path[PATH_MAX];
    unsigned removed = 0;
    if (store_path_fmt(path, sizeof(path), "%s/msg", dir) < 0)
        return;
    DIR *dp = opendir(path);
    if (!dp)
        return;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, "..")))
            continue;
        int known = index_file_known(ix, e->d_name);
        if (store_path_fmt(path, sizeof(path), "%s/msg/%s", dir, e->d_name) < 0)
            continue;
        if (known != 0) {
            if (known < 0) {
                c->errors++;
                log_warn("store", "event=recover action=keep path=%s error=%s", path,
                         sqlite3_errmsg(ix->db));
            }
            continue;
        }
        if (unlink(path) == 0) {
            removed++;
            log_info("store", "event=recover action=remove_orphan path=%s", path);
        } else {
            c->errors++;
            log_warn("store", "event=recover action=remove_orphan path=%s error=%s", path,
                     strerror(errno));
        }
    }
    closedir(dp);
    c->orphans_removed += removed;
    if (removed && store_path_fmt(path, sizeof(path), "%s/msg", dir) == 0)
        blob_sync_dir(path, NULL, 0);
}

/* Repair one account folder DATA/mail/<domain>/<local>. */
static void recover_account(struct store *st, const char *domain, const char *local,
                            struct recover_count *c)
{
    char raw[STORE_ADDR_MAX + 2], addr[STORE_ADDR_MAX + 1], dir[PATH_MAX], err[256];
    if (store_path_fmt(raw, sizeof(raw), "%s@%s", local, domain) < 0 ||
        store_addr_norm(raw, addr, sizeof(addr), NULL) < 0 || strcmp(raw, addr) != 0 ||
        store_path_account(st, addr, dir, sizeof(dir)) < 0) {
        log_warn("store", "event=recover action=skip domain=%s local=%s reason=bad_name", domain,
                 local);
        return;
    }
    c->accounts++;
    recover_tmp(dir, c);
    struct store_index *ix = index_get(st, addr, err, sizeof(err));
    if (!ix) {
        char q[300];
        c->errors++;
        log_warn("store", "event=recover action=skip_msg account=%s error=%s", addr,
                 log_quote(q, sizeof(q), err));
        return;
    }
    recover_msg(ix, dir, c);
}

/* Call recover_account for each DATA/mail/<domain>/<local> folder. */
static int recover_walk(struct store *st, struct recover_count *c, char *err, size_t errlen)
{
    char path[PATH_MAX];
    DIR *top = NULL;
    if (store_path_fmt(path, sizeof(path), "%s/mail", st->dir) == 0)
        top = opendir(path);
    if (!top)
        return err_set(err, errlen, "open %s: %s", path, strerror(errno));
    struct dirent *de;
    while ((de = readdir(top))) {
        if (de->d_name[0] == '.')
            continue;
        DIR *dd = NULL;
        if (store_path_fmt(path, sizeof(path), "%s/mail/%s", st->dir, de->d_name) == 0)
            dd = opendir(path);
        if (!dd)
            continue; /* not a folder */
        struct dirent *ae;
        while ((ae = readdir(dd))) {
            if (ae->d_name[0] == '.' && (!ae->d_name[1] || !strcmp(ae->d_name, "..")))
                continue;
            struct stat sb;
            if (store_path_fmt(path, sizeof(path), "%s/mail/%s/%s", st->dir, de->d_name,
                               ae->d_name) == 0 &&
                stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
                recover_account(st, de->d_name, ae->d_name, c);
        }
        closedir(dd);
    }
    closedir(top);
    return 0;
}

int store_recover(struct store *st, char *err, size_t errlen)
{
    struct recover_count c = {0};
    if (store_flock(st, LOCK_EX) < 0)
        return err_set(err, errlen, "lock %s/store.lock: %s", st->dir, strerror(errno));
    int rc = recover_walk(st, &c, err, errlen);
    store_flock(st, LOCK_UN);
    log_info("store", "event=recover_done accounts=%u tmp_removed=%u orphans_removed=%u errors=%u",
             c.accounts, c.tmp_removed, c.orphans_removed, c.errors);
    return rc;
}

/* --- reading ----------------------------------------------------------------------- */

struct store_index *store_index_of(struct store *st, const char *account, char *err, size_t errlen)
{
    char addr[STORE_ADDR_MAX + 1];
    if (store_addr_norm(account, addr, sizeof(addr), NULL) < 0) {
        err_set(err, errlen, "no such account: %.320s", account ? account : "");
        return NULL;
    }
    return index_get(st, addr, err, errlen);
}

int store_mailbox_messages(struct store *st, const char *account, const char *mailbox,
                           void (*cb)(void *ctx, const struct store_msg_info *m), void *ctx,
                           char *err, size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix)
        return -1;
    if (!mailbox || strcasecmp(mailbox, "INBOX") == 0)
        mailbox = "INBOX";
    sqlite3_stmt *s;
    int64_t id = -1;
    if (store_db_prepare(ix->db, "SELECT id FROM mailboxes WHERE name = ?", &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (id < 0)
        return err_set(err, errlen, "no such mailbox: %.200s", mailbox);
    if (store_db_prepare(ix->db,
                         "SELECT uid, size, modseq, internaldate, file, flags FROM messages "
                         "WHERE mailbox_id = ? ORDER BY uid",
                         &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_msg_info m = {0};
        m.uid = (uint32_t)sqlite3_column_int64(s, 0);
        m.size = (uint64_t)sqlite3_column_int64(s, 1);
        m.modseq = (uint64_t)sqlite3_column_int64(s, 2);
        m.internal_date = (time_t)sqlite3_column_int64(s, 3);
        const char *f = (const char *)sqlite3_column_text(s, 4);
        snprintf(m.file, sizeof(m.file), "%s", f ? f : "");
        m.flags = (uint32_t)sqlite3_column_int64(s, 5);
        cb(ctx, &m);
    }
    if (rc != SQLITE_DONE)
        store_db_fail(err, errlen, ix->db, "list messages");
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_mailbox_list(struct store *st, const char *account,
                       void (*cb)(void *ctx, const struct store_mailbox_info *m), void *ctx,
                       char *err, size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    sqlite3_stmt *s;
    if (!ix ||
        store_db_prepare(ix->db,
                         "SELECT name, uidvalidity, uidnext, highestmodseq, special_use, "
                         "EXISTS(SELECT 1 FROM subscriptions s WHERE s.name = mailboxes.name) "
                         "FROM mailboxes ORDER BY name",
                         &s, err, errlen) < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_mailbox_info m = {0};
        const char *name = (const char *)sqlite3_column_text(s, 0);
        const char *use = (const char *)sqlite3_column_text(s, 4);
        snprintf(m.name, sizeof(m.name), "%s", name ? name : "");
        m.uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
        m.uidnext = (uint32_t)sqlite3_column_int64(s, 2);
        m.highestmodseq = (uint64_t)sqlite3_column_int64(s, 3);
        snprintf(m.special_use, sizeof(m.special_use), "%s", use ? use : "");
        m.subscribed = sqlite3_column_int(s, 5);
        cb(ctx, &m);
    }
    if (rc != SQLITE_DONE)
        store_db_fail(err, errlen, ix->db, "list mailboxes");
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}
