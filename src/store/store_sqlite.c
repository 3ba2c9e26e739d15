/* store_sqlite — the index (store.h) on SQLite: accounts.sqlite and the
 * helpers the whole backend shares. The per-account side (index.sqlite,
 * delivery, recovery) is in store_mail.c.
 *
 * Durability: every database runs with journal_mode=WAL and
 * synchronous=FULL, so each COMMIT fsyncs the WAL before it returns. (With
 * NORMAL a power cut could roll back a commit whose 250 was already sent,
 * and store_recover would then delete the message file as an orphan.)
 *
 * Concurrency: a struct store belongs to one thread at a time. Threads and
 * processes each open their own; SQLite's file locks serialise writers.
 * Every writer starts with BEGIN IMMEDIATE (so it never has to upgrade a
 * read lock, which the busy handler cannot wait for), waits up to
 * STORE_BUSY_MS in SQLite's busy handler, and retries BEGIN a few times on
 * top of that, so concurrent deliveries wait instead of failing.
 */
#include "store/store_sqlite_int.h"

#include "lib/log.h"
#include "store/blob.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- errors ------------------------------------------------------------------ */

/* Format a message into the caller's err buffer (may be NULL); returns -1. */
int store_path_fmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return len >= 0 && (size_t)len < n ? 0 : -1;
}

/* "<what>: <sqlite message>" into err; returns -1. */
int store_db_fail(char *err, size_t errlen, sqlite3 *db, const char *what)
{
    return err_set(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

/* --- names ------------------------------------------------------------------- */

/* Lower-case and check a domain name: dot-separated LDH labels of 1..63
 * octets, no hyphen at either end of a label, 253 octets at most. Since
 * labels are never empty, "." and ".." cannot pass, so the result is
 * safe as a path component. 0 or -1. */
static int store_domain_norm(const char *in, char *out, size_t n)
{
    size_t len = in ? strlen(in) : 0;
    if (len == 0 || len > STORE_DOMAIN_MAX || len >= n)
        return -1;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = in[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || in[i - 1] == '-')
                return -1;
            label = 0;
        } else if (isalnum((unsigned char)c) || c == '-') {
            if (label == 0 && c == '-')
                return -1;
            label++;
        } else {
            return -1;
        }
        out[i] = (char)tolower((unsigned char)c);
    }
    return 0;
}

/* Check and lower-case an account address: local part of [A-Za-z0-9._+-]
 * (1..64 octets, no leading, trailing or double dot), '@', a domain as
 * store_domain_norm accepts. out gets the whole address; *domain_r points
 * into out at the domain. 0 or -1. */
int store_addr_norm(const char *in, char *out, size_t n, const char **domain_r)
{
    const char *at = in ? strrchr(in, '@') : NULL;
    if (!at)
        return -1;
    size_t llen = (size_t)(at - in);
    if (llen == 0 || llen > STORE_LOCAL_MAX || llen + 2 > n)
        return -1;
    for (size_t i = 0; i < llen; i++) {
        char c = in[i];
        if (c == '.' && (i == 0 || i == llen - 1 || in[i + 1] == '.'))
            return -1;
        if (!isalnum((unsigned char)c) && !strchr("._+-", c))
            return -1;
        out[i] = (char)tolower((unsigned char)c);
    }
    out[llen] = '@';
    if (store_domain_norm(at + 1, out + llen + 1, n - llen - 1) < 0)
        return -1;
    if (domain_r)
        *domain_r = out + llen + 1;
    return 0;
}

/* DATA/mail/<domain>/<local> of a normalised address into path. 0 or -1. */
int store_path_account(const struct store *st, const char *addr, char *path, size_t n)
{
    const char *at = strrchr(addr, '@');
    if (!at)
        return -1;
    int len = snprintf(path, n, "%s/mail/%s/%.*s", st->dir, at + 1, (int)(at - addr), addr);
    return len > 0 && (size_t)len < n ? 0 : -1;
}

/* --- SQLite helpers ---------------------------------------------------------- */

static int store_db_busy(int rc)
{
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* Run sql (no rows wanted). The busy handler already waits STORE_BUSY_MS;
 * on top of that, BUSY is retried STORE_BEGIN_TRIES times, which covers
 * the cases the handler does not (e.g. WAL recovery by another process). */
int store_db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    int rc = SQLITE_OK;
    for (int i = 0; i < STORE_BEGIN_TRIES; i++) {
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (!store_db_busy(rc))
            break;
        log_warn("store", "event=busy_retry attempt=%d db=%s", i + 1,
                 sqlite3_db_filename(db, "main"));
        usleep(10000u * (unsigned)(i + 1));
    }
    if (rc != SQLITE_OK) {
        char what[96];
        snprintf(what, sizeof(what), "%.80s", sql);
        return store_db_fail(err, errlen, db, what);
    }
    return 0;
}

/* BEGIN IMMEDIATE: take the write lock now, waiting for other writers. */
int store_db_begin(sqlite3 *db, char *err, size_t errlen)
{
    return store_db_exec(db, "BEGIN IMMEDIATE", err, errlen);
}

/* Roll back the open transaction, if any (SQLite may have done it). */
void store_db_rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int store_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt_r, char *err, size_t errlen)
{
    if (sqlite3_prepare_v2(db, sql, -1, stmt_r, NULL) != SQLITE_OK) {
        *stmt_r = NULL;
        return store_db_fail(err, errlen, db, "prepare");
    }
    return 0;
}

/* PRAGMA user_version, or -1 with err. */
int store_db_user_version(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    if (store_db_prepare(db, "PRAGMA user_version", &s, err, errlen) < 0)
        return -1;
    int rc = sqlite3_step(s);
    int v = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    if (v < 0)
        store_db_fail(err, errlen, db, "read user_version");
    sqlite3_finalize(s);
    return v;
}

/* Switch to WAL and check that SQLite agreed (it refuses on some file
 * systems, and we rely on WAL for readers not blocking writers). */
static int store_db_wal(sqlite3 *db, char *err, size_t errlen)
{
    for (int i = 0; i < STORE_BEGIN_TRIES; i++) {
        sqlite3_stmt *s;
        if (store_db_prepare(db, "PRAGMA journal_mode=WAL", &s, err, errlen) < 0)
            return -1;
        int rc = sqlite3_step(s);
        int ok = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
        sqlite3_finalize(s);
        if (ok)
            return 0;
        if (!store_db_busy(rc))
            return err_set(err, errlen, "journal_mode=WAL refused: %s", sqlite3_errmsg(db));
        usleep(10000u * (unsigned)(i + 1));
    }
    return store_db_fail(err, errlen, db, "journal_mode=WAL");
}

/* Open (create = 1: create when missing, mode 0600) one SQLite database
 * with our settings. The file is created by us first so that SQLite's
 * -wal and -shm files inherit its 0600 mode. *db_r is set on success. */
int store_db_open(const char *path, int create, sqlite3 **db_r, char *err, size_t errlen)
{
    *db_r = NULL;
    /* Only a file that does not exist yet may be opened and closed here:
     * close() drops every POSIX lock this process holds on the file, so
     * doing it to a database another connection of ours has open would
     * take that connection's SQLite locks away (it then reads a stale
     * snapshot, or worse). */
    if (create) {
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return err_set(err, errlen, "create %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err_set(err, errlen, "open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, STORE_BUSY_MS);
    if (store_db_wal(db, err, errlen) < 0 ||
        store_db_exec(db, "PRAGMA synchronous=FULL", err, errlen) < 0) {
        sqlite3_close(db);
        return -1;
    }
    *db_r = db;
    return 0;
}

/* Bring a database to schema version `want` inside BEGIN IMMEDIATE: run
 * `create` (a list of statements) when it is still at version 0, or
 * migrate(db, v) when it is at an older version v. The version is read
 * again under the lock because another process may have done it
 * meanwhile. fill (may be NULL) runs after create in the same transaction
 * to add first rows. 0 or -1 (rolled back). */
int store_db_schema(sqlite3 *db, int want, const char *create,
                    int (*fill)(sqlite3 *db, char *err, size_t errlen),
                    int (*migrate)(sqlite3 *db, int from, char *err, size_t errlen), char *err,
                    size_t errlen)
{
    int v = store_db_user_version(db, err, errlen);
    if (v == want)
        return 0; /* the usual case: no write lock needed */
    if (v < 0 || store_db_begin(db, err, errlen) < 0)
        return -1;
    v = store_db_user_version(db, err, errlen);
    int from = v;
    if (v == 0) {
        if (store_db_exec(db, create, err, errlen) < 0 || (fill && fill(db, err, errlen) < 0))
            v = -1;
    } else if (v > want) {
        err_set(err, errlen, "%s: schema version %d is newer than this program's (%d)",
                   sqlite3_db_filename(db, "main"), v, want);
        v = -1;
    } else if (v > 0 && v < want) {
        if (!migrate) {
            err_set(err, errlen, "%s: schema version %d, no migration to %d",
                       sqlite3_db_filename(db, "main"), v, want);
            v = -1;
        } else if (migrate(db, v, err, errlen) < 0) {
            v = -1;
        }
    }
    if (v >= 0 && v != want) {
        char pragma[48];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", want);
        if (store_db_exec(db, pragma, err, errlen) < 0)
            v = -1;
    }
    if (v < 0) {
        store_db_rollback(db);
        return -1;
    }
    if (store_db_exec(db, "COMMIT", err, errlen) < 0) {
        store_db_rollback(db);
        return -1;
    }
    if (from > 0 && from != want)
        log_info("store", "event=schema_migrate db=%s from=%d to=%d",
                 sqlite3_db_filename(db, "main"), from, want);
    return 0;
}

/* mkdir that accepts an existing directory. */
int store_mkdir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return err_set(err, errlen, "mkdir %s: %s", path, strerror(errno));
    return 0;
}

/* mkdir -p for the data directory itself. */
static int store_mkdir_p(const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return err_set(err, errlen, "path too long: %s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (store_mkdir(tmp, err, errlen) < 0)
            return -1;
        *p = '/';
    }
    return store_mkdir(tmp, err, errlen);
}

/* flock() that retries on EINTR. */
int store_flock(struct store *st, int op)
{
    int rc;
    do
        rc = flock(st->lock_fd, op);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* --- open / close -------------------------------------------------------------- */

static const char accounts_schema[] =
    "CREATE TABLE IF NOT EXISTS domains("
    " name TEXT PRIMARY KEY COLLATE NOCASE);"
    "CREATE TABLE IF NOT EXISTS accounts("
    " id INTEGER PRIMARY KEY,"
    " address TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    " domain TEXT NOT NULL COLLATE NOCASE,"
    " hash TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " apop_secret TEXT,"
    " scram TEXT);"
    "CREATE INDEX IF NOT EXISTS accounts_domain ON accounts(domain);";

/* accounts.sqlite v1 -> v2: the APOP shared secret (POP3, RFC 1939 7). */
static int accounts_migrate(sqlite3 *db, int from, char *err, size_t errlen)
{
    if (from < 2 &&
        store_db_exec(db, "ALTER TABLE accounts ADD COLUMN apop_secret TEXT", err, errlen) < 0)
        return -1;
    /* v2 -> v3: SCRAM-SHA-256 keys (RFC 5803 text), made at user add/passwd. */
    if (from < 3 && store_db_exec(db, "ALTER TABLE accounts ADD COLUMN scram TEXT", err, errlen) < 0)
        return -1;
    return 0;
}

/* Open accounts.sqlite, bring its schema up and prepare hot statements. */
static int store_accounts_open(struct store *st, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/accounts.sqlite", st->dir) >= (int)sizeof(path))
        return err_set(err, errlen, "path too long: %s", st->dir);
    if (store_db_open(path, 1, &st->db, err, errlen) < 0 ||
        store_db_schema(st->db, ACCOUNTS_VERSION, accounts_schema, NULL, accounts_migrate, err,
                        errlen) < 0)
        return -1;
    if (store_db_prepare(st->db, "SELECT address, hash FROM accounts WHERE address = ?",
                         &st->lookup, err, errlen) < 0 ||
        store_db_prepare(st->db, "SELECT 1 FROM domains WHERE name = ?", &st->domain_get, err,
                         errlen) < 0 ||
        store_db_prepare(st->db, "SELECT name FROM domains ORDER BY name LIMIT 1",
                         &st->domain_first, err, errlen) < 0)
        return -1;
    return 0;
}

int store_open(struct store **st_r, const char *data_dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    *st_r = NULL;
    if (!data_dir || !*data_dir)
        return err_set(err, errlen, "no data directory given");
    struct store *st = calloc(1, sizeof(*st));
    if (!st || !(st->dir = strdup(data_dir))) {
        free(st);
        return err_set(err, errlen, "out of memory");
    }
    st->lock_fd = -1;
    st->cache_max = STORE_CACHE_MAX;
    size_t len = strlen(st->dir);
    while (len > 1 && st->dir[len - 1] == '/')
        st->dir[--len] = '\0';
    /* Room for DATA/mail/<domain>/<local>/msg/<name> in PATH_MAX, so the
     * paths built below never truncate. */
    if (len > PATH_MAX - 512) {
        err_set(err, errlen, "data directory path too long: %.200s...", st->dir);
        goto fail;
    }
    if (store_mkdir_p(st->dir, err, errlen) < 0)
        goto fail;
    store_path_fmt(path, sizeof(path), "%s/mail", st->dir);
    if (store_mkdir(path, err, errlen) < 0)
        goto fail;
    store_path_fmt(path, sizeof(path), "%s/store.lock", st->dir);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) {
        err_set(err, errlen, "open %s: %s", path, strerror(errno));
        goto fail;
    }
    store_path_fmt(path, sizeof(path), "%s/accounts.sqlite", st->dir);
    int fresh = access(path, F_OK) < 0;
    if (store_accounts_open(st, err, errlen) < 0)
        goto fail;
    if (fresh) { /* make the new entries durable (mail/, store.lock, accounts.sqlite) */
        if (blob_sync_dir(st->dir, err, errlen) < 0)
            goto fail;
        log_info("store", "event=create dir=%s", st->dir);
    }
    *st_r = st;
    return 0;
fail:
    store_close(&st);
    return -1;
}

void store_close(struct store **stp)
{
    struct store *st = stp ? *stp : NULL;
    if (!st)
        return;
    store_index_cache_clear(st);
    sqlite3_finalize(st->lookup);
    sqlite3_finalize(st->domain_get);
    sqlite3_finalize(st->domain_first);
    sqlite3_close(st->db);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    free(st->dir);
    free(st);
    *stp = NULL;
}

/* --- domains ---------------------------------------------------------------------- */

int store_domain_add(struct store *st, const char *domain, char *err, size_t errlen)
{
    char name[STORE_DOMAIN_MAX + 1];
    if (store_domain_norm(domain, name, sizeof(name)) < 0)
        return err_set(err, errlen, "invalid domain name: %.300s", domain ? domain : "");
    sqlite3_stmt *s;
    if (store_db_prepare(st->db, "INSERT INTO domains(name) VALUES(?)", &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT)
        return err_set(err, errlen, "domain %s is already local", name);
    if (rc != SQLITE_DONE)
        return store_db_fail(err, errlen, st->db, "add domain");
    log_info("store", "event=domain_add domain=%s", name);
    return 0;
}

/* Number of accounts in domain, or -1. */
static int64_t store_domain_accounts(struct store *st, const char *domain, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    if (store_db_prepare(st->db, "SELECT count(*) FROM accounts WHERE domain = ?", &s, err,
                         errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, domain, -1, SQLITE_STATIC);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    if (n < 0)
        store_db_fail(err, errlen, st->db, "count accounts");
    sqlite3_finalize(s);
    return n;
}

int store_domain_del(struct store *st, const char *domain, char *err, size_t errlen)
{
    char name[STORE_DOMAIN_MAX + 1];
    if (store_domain_norm(domain, name, sizeof(name)) < 0)
        return err_set(err, errlen, "domain %.300s is not local", domain ? domain : "");
    if (store_db_begin(st->db, err, errlen) < 0)
        return -1;
    int64_t n = store_domain_accounts(st, name, err, errlen);
    if (n != 0) {
        store_db_rollback(st->db);
        if (n > 0)
            err_set(err, errlen, "domain %s still has %lld account(s); delete them first", name,
                       (long long)n);
        return -1;
    }
    sqlite3_stmt *s;
    if (store_db_prepare(st->db, "DELETE FROM domains WHERE name = ?", &s, err, errlen) < 0) {
        store_db_rollback(st->db);
        return -1;
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE || sqlite3_changes(st->db) == 0) {
        if (rc != SQLITE_DONE)
            store_db_fail(err, errlen, st->db, "delete domain");
        else
            err_set(err, errlen, "domain %s is not local", name);
        store_db_rollback(st->db);
        return -1;
    }
    if (store_db_exec(st->db, "COMMIT", err, errlen) < 0) {
        store_db_rollback(st->db);
        return -1;
    }
    log_info("store", "event=domain_del domain=%s", name);
    return 0;
}

int store_domain_is_local(struct store *st, const char *domain)
{
    if (!domain || strlen(domain) > STORE_DOMAIN_MAX)
        return 0;
    sqlite3_stmt *s = st->domain_get;
    sqlite3_bind_text(s, 1, domain, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Run a one-column query and call cb with each text value. */
static int store_list_text(sqlite3 *db, const char *sql, void (*cb)(void *ctx, const char *s),
                           void *ctx, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    if (store_db_prepare(db, sql, &s, err, errlen) < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        cb(ctx, (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, db, "list");
}

int store_domain_list(struct store *st, void (*cb)(void *ctx, const char *domain), void *ctx,
                      char *err, size_t errlen)
{
    return store_list_text(st->db, "SELECT name FROM domains ORDER BY name", cb, ctx, err, errlen);
}

/* --- accounts ------------------------------------------------------------------- */

/* Inside the open transaction: check the domain is local and insert the
 * account row. 0 or -1 with a clear message. */
static int store_account_insert(struct store *st, const char *addr, const char *domain,
                                const char *hash, char *err, size_t errlen)
{
    int local = store_domain_is_local(st, domain);
    if (local < 0)
        return store_db_fail(err, errlen, st->db, "look up domain");
    if (local == 0)
        return err_set(err, errlen, "domain %s is not local; add it first", domain);
    sqlite3_stmt *s;
    if (store_db_prepare(st->db,
                         "INSERT INTO accounts(address, domain, hash, created) VALUES(?, ?, ?, ?)",
                         &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, addr, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT)
        return err_set(err, errlen, "account %s already exists", addr);
    if (rc != SQLITE_DONE)
        return store_db_fail(err, errlen, st->db, "add account");
    return 0;
}

/* The row is inserted and the folder made in one accounts.sqlite
 * transaction, so a failure on either side leaves no account. A folder
 * left by an earlier half-done add (crash before COMMIT) is completed and
 * used: it cannot hold delivered mail, since delivery needs the row. */
int store_account_add(struct store *st, const char *address, const char *crypt_hash, char *err,
                      size_t errlen)
{
    char addr[STORE_ADDR_MAX + 1], dir[PATH_MAX], path[PATH_MAX];
    const char *domain;
    if (store_addr_norm(address, addr, sizeof(addr), &domain) < 0)
        return err_set(err, errlen,
                          "invalid account address: %.320s (want local@domain, local part "
                          "of letters, digits and . _ + -)",
                          address ? address : "");
    if (!crypt_hash)
        return err_set(err, errlen, "account %s: no password hash", addr);
    if (store_path_account(st, addr, dir, sizeof(dir)) < 0)
        return err_set(err, errlen, "account %s: path too long", addr);
    if (store_db_begin(st->db, err, errlen) < 0)
        return -1;
    store_path_fmt(path, sizeof(path), "%s/mail/%s", st->dir, domain);
    if (store_account_insert(st, addr, domain, crypt_hash, err, errlen) < 0 ||
        store_mkdir(path, err, errlen) < 0 || store_index_create(dir, err, errlen) < 0 ||
        blob_sync_dir(path, err, errlen) < 0) {
        store_db_rollback(st->db);
        return -1;
    }
    store_path_fmt(path, sizeof(path), "%s/mail", st->dir);
    if (blob_sync_dir(path, err, errlen) < 0 || store_db_exec(st->db, "COMMIT", err, errlen) < 0) {
        store_db_rollback(st->db);
        return -1;
    }
    store_index_forget(st, addr);
    log_info("store", "event=account_add account=%s", addr);
    return 0;
}

/* Move the account folder src to DATA/deleted/<addr>.<unix time>, adding
 * .1, .2 ... when that name is taken. dst_r gets the new path. 0, or -1
 * with errno set (ENOENT when there was no folder). */
static int store_account_bury(struct store *st, const char *addr, const char *src, char *dst_r,
                              size_t n)
{
    char dir[PATH_MAX];
    store_path_fmt(dir, sizeof(dir), "%s/deleted", st->dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -1;
    long long now = (long long)time(NULL);
    for (int i = 0; i < 1000; i++) {
        int bad = i == 0 ? store_path_fmt(dst_r, n, "%s/%s.%lld", dir, addr, now)
                         : store_path_fmt(dst_r, n, "%s/%s.%lld.%d", dir, addr, now, i);
        if (bad) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (renameat2(AT_FDCWD, src, AT_FDCWD, dst_r, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EINVAL) { /* file system without RENAME_NOREPLACE */
            struct stat sb;
            if (lstat(dst_r, &sb) == 0)
                continue;
            return rename(src, dst_r);
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Delete the row, move the folder away, then COMMIT; if COMMIT fails the
 * folder is moved back, so row and folder never disagree. */
int store_account_del(struct store *st, const char *address, char *err, size_t errlen)
{
    char addr[STORE_ADDR_MAX + 1], dir[PATH_MAX], dst[PATH_MAX];
    if (store_addr_norm(address, addr, sizeof(addr), NULL) < 0 ||
        store_path_account(st, addr, dir, sizeof(dir)) < 0)
        return err_set(err, errlen, "no such account: %.320s", address ? address : "");
    if (store_db_begin(st->db, err, errlen) < 0)
        return -1;
    sqlite3_stmt *s;
    if (store_db_prepare(st->db, "DELETE FROM accounts WHERE address = ?", &s, err, errlen) < 0) {
        store_db_rollback(st->db);
        return -1;
    }
    sqlite3_bind_text(s, 1, addr, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE || sqlite3_changes(st->db) == 0) {
        if (rc != SQLITE_DONE)
            store_db_fail(err, errlen, st->db, "delete account");
        else
            err_set(err, errlen, "no such account: %s", addr);
        store_db_rollback(st->db);
        return -1;
    }
    store_index_forget(st, addr);
    int moved = store_account_bury(st, addr, dir, dst, sizeof(dst)) == 0;
    if (!moved && errno != ENOENT) {
        err_set(err, errlen, "move %s to %s/deleted: %s", dir, st->dir, strerror(errno));
        store_db_rollback(st->db);
        return -1;
    }
    if (store_db_exec(st->db, "COMMIT", err, errlen) < 0) {
        store_db_rollback(st->db);
        if (moved && rename(dst, dir) < 0)
            log_error("store", "event=account_del_undo account=%s path=%s error=%s", addr, dst,
                      strerror(errno));
        return -1;
    }
    log_info("store", "event=account_del account=%s moved_to=%s", addr, moved ? dst : "none");
    return 0;
}

int store_account_set_password(struct store *st, const char *address, const char *crypt_hash,
                               char *err, size_t errlen)
{
    char addr[STORE_ADDR_MAX + 1];
    if (store_addr_norm(address, addr, sizeof(addr), NULL) < 0)
        return err_set(err, errlen, "no such account: %.320s", address ? address : "");
    if (!crypt_hash)
        return err_set(err, errlen, "account %s: no password hash", addr);
    sqlite3_stmt *s;
    if (store_db_prepare(st->db, "UPDATE accounts SET hash = ? WHERE address = ?", &s, err,
                         errlen) < 0)
        return -1;
    sqlite3_bind_text(s, 1, crypt_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, addr, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return store_db_fail(err, errlen, st->db, "set password");
    if (sqlite3_changes(st->db) == 0)
        return err_set(err, errlen, "no such account: %s", addr);
    log_info("store", "event=account_passwd account=%s", addr);
    return 0;
}

/* Set (value non-empty) or clear one text column of an account. */
static int store_account_set_text(struct store *st, const char *address, const char *sql,
                                  const char *value, const char *what, char *err, size_t errlen)
{
    char addr[STORE_ADDR_MAX + 1];
    if (store_addr_norm(address, addr, sizeof(addr), NULL) < 0)
        return err_set(err, errlen, "no such account: %.320s", address ? address : "");
    sqlite3_stmt *s;
    if (store_db_prepare(st->db, sql, &s, err, errlen) < 0)
        return -1;
    if (value && *value)
        sqlite3_bind_text(s, 1, value, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 1);
    sqlite3_bind_text(s, 2, addr, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return store_db_fail(err, errlen, st->db, what);
    if (sqlite3_changes(st->db) == 0)
        return err_set(err, errlen, "no such account: %s", addr);
    return 0;
}

int store_account_set_apop_secret(struct store *st, const char *address, const char *secret,
                                  char *err, size_t errlen)
{
    if (store_account_set_text(st, address, "UPDATE accounts SET apop_secret = ? WHERE address = ?",
                               secret, "set APOP secret", err, errlen) < 0)
        return -1;
    log_info("store", "event=account_apop_secret account=%s set=%s", address,
             secret && *secret ? "yes" : "no");
    return 0;
}

static int store_copy(char *dst, size_t n, const char *src);

int store_account_set_scram(struct store *st, const char *address, const char *scram, char *err,
                            size_t errlen)
{
    return store_account_set_text(st, address, "UPDATE accounts SET scram = ? WHERE address = ?",
                                  scram, "set SCRAM keys", err, errlen);
}

/* One text column of an account found by store_account_lookup. */
static enum store_lookup store_account_text(struct store *st, const char *address,
                                            const char *sql, char *account_r, size_t n,
                                            char *value_r, size_t value_n)
{
    enum store_lookup r = store_account_lookup(st, address, account_r, n, NULL, 0);
    if (r != STORE_LOOKUP_FOUND)
        return r;
    sqlite3_stmt *s;
    if (store_db_prepare(st->db, sql, &s, NULL, 0) < 0)
        return STORE_LOOKUP_ERROR;
    sqlite3_bind_text(s, 1, account_r, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        if (store_copy(value_r, value_n, v ? v : "") < 0)
            r = STORE_LOOKUP_ERROR;
    } else {
        r = rc == SQLITE_DONE ? STORE_LOOKUP_NO_USER : STORE_LOOKUP_ERROR;
    }
    sqlite3_finalize(s);
    return r;
}

enum store_lookup store_account_scram(struct store *st, const char *address, char *account_r,
                                      size_t n, char *scram_r, size_t scram_n)
{
    return store_account_text(st, address, "SELECT scram FROM accounts WHERE address = ?",
                              account_r, n, scram_r, scram_n);
}

enum store_lookup store_account_apop_secret(struct store *st, const char *address,
                                            char *account_r, size_t n, char *secret_r,
                                            size_t secret_n)
{
    return store_account_text(st, address, "SELECT apop_secret FROM accounts WHERE address = ?",
                              account_r, n, secret_r, secret_n);
}

int store_account_list(struct store *st, void (*cb)(void *ctx, const char *address), void *ctx,
                       char *err, size_t errlen)
{
    return store_list_text(st->db, "SELECT address FROM accounts ORDER BY address", cb, ctx, err,
                           errlen);
}

/* Copy src into dst (n bytes); -1 when it does not fit. */
static int store_copy(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n)
        return -1;
    memcpy(dst, src, len + 1);
    return 0;
}

/* The first local domain by name into out (RFC 5321 4.5.1: a bare
 * "postmaster" must be accepted). 1 found, 0 none, -1 error. */
static int store_domain_first(struct store *st, char *out, size_t n)
{
    sqlite3_stmt *s = st->domain_first;
    int rc = sqlite3_step(s);
    int found =
        rc == SQLITE_ROW && store_copy(out, n, (const char *)sqlite3_column_text(s, 0)) == 0;
    sqlite3_reset(s);
    return found ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

enum store_lookup store_account_lookup(struct store *st, const char *address, char *account_r,
                                       size_t n, char *hash_r, size_t hash_n)
{
    char buf[STORE_ADDR_MAX + 16];
    if (!address)
        return STORE_LOOKUP_NO_DOMAIN;
    if (strcasecmp(address, "postmaster") == 0) {
        int found = store_domain_first(st, buf + 11, sizeof(buf) - 11);
        if (found <= 0)
            return found < 0 ? STORE_LOOKUP_ERROR : STORE_LOOKUP_NO_DOMAIN;
        memcpy(buf, "postmaster@", 11);
        address = buf;
    }
    const char *at = strrchr(address, '@');
    if (!at)
        return STORE_LOOKUP_NO_DOMAIN;
    int local = store_domain_is_local(st, at + 1);
    if (local <= 0)
        return local < 0 ? STORE_LOOKUP_ERROR : STORE_LOOKUP_NO_DOMAIN;
    if (strlen(address) > STORE_ADDR_MAX)
        return STORE_LOOKUP_NO_USER;
    sqlite3_stmt *s = st->lookup;
    sqlite3_bind_text(s, 1, address, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    enum store_lookup res = rc == SQLITE_ROW    ? STORE_LOOKUP_FOUND
                            : rc == SQLITE_DONE ? STORE_LOOKUP_NO_USER
                                                : STORE_LOOKUP_ERROR;
    if (res == STORE_LOOKUP_FOUND) {
        const char *addr = (const char *)sqlite3_column_text(s, 0);
        const char *hash = (const char *)sqlite3_column_text(s, 1);
        if (!addr || !account_r || store_copy(account_r, n, addr) < 0 ||
            (hash_r && store_copy(hash_r, hash_n, hash ? hash : "") < 0))
            res = STORE_LOOKUP_ERROR;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return res;
}

int store_account_dir(struct store *st, const char *account, char *path_r, size_t n)
{
    char addr[STORE_ADDR_MAX + 1];
    if (store_addr_norm(account, addr, sizeof(addr), NULL) < 0)
        return -1;
    return store_path_account(st, addr, path_r, n);
}
