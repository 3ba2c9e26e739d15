/* store_sqlite_int — private to the SQLite backend of store.h.
 *
 * Shared by store_sqlite.c (accounts.sqlite: open/close, domains,
 * accounts, SQLite helpers) and store_mail.c (per-account index.sqlite:
 * connection cache, delivery, recovery, reading). Nothing outside
 * src/store/ includes this.
 */
#ifndef CORREIO_STORE_STORE_SQLITE_INT_H
#define CORREIO_STORE_STORE_SQLITE_INT_H

#include "store/store.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define STORE_DOMAIN_MAX 253 /* RFC 1035 2.3.4, without the trailing dot */
#define STORE_ADDR_MAX (STORE_LOCAL_MAX + 1 + STORE_DOMAIN_MAX)
#define STORE_CACHE_MAX 64  /* cached per-account index connections */
#define STORE_BUSY_MS 10000 /* SQLite busy handler wait per attempt */
#define STORE_BEGIN_TRIES 6 /* BEGIN IMMEDIATE attempts (about a minute in all) */
#define ACCOUNTS_VERSION 1  /* PRAGMA user_version of accounts.sqlite */
#define INDEX_VERSION 1     /* PRAGMA user_version of index.sqlite */
#define INDEX_CACHE_KIB 512 /* SQLite page cache per index connection */

struct store_index; /* one cached account index connection (store_mail.c) */

struct store {
    char *dir;                  /* DATA, without a trailing slash */
    sqlite3 *db;                /* accounts.sqlite */
    sqlite3_stmt *lookup;       /* address, hash of an account */
    sqlite3_stmt *domain_get;   /* is a domain local? */
    sqlite3_stmt *domain_first; /* first local domain by name */
    int lock_fd;                /* DATA/store.lock: deliver shared, recover exclusive */
    struct store_index *cache[STORE_CACHE_MAX];
    int cache_max; /* slots in use: 1..STORE_CACHE_MAX */
    uint64_t tick; /* LRU clock of the cache */
};

/* Format into the caller's err (may be NULL); returns -1. */
int store_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* snprintf for paths: 0, or -1 when out (n bytes) was too small. */
int store_path_fmt(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "<what>: <sqlite message>" into err; returns -1. */
int store_db_fail(char *err, size_t errlen, sqlite3 *db, const char *what);

/* Check and lower-case an account address into out; *domain_r (may be
 * NULL) points at its domain inside out. 0 or -1. */
int store_addr_norm(const char *in, char *out, size_t n, const char **domain_r);
/* DATA/mail/<domain>/<local> of a normalised address. 0 or -1. */
int store_path_account(const struct store *st, const char *addr, char *path, size_t n);
/* mkdir (mode 0700) that accepts an existing directory. */
int store_mkdir(const char *path, char *err, size_t errlen);
/* flock(st->lock_fd, op), retrying on EINTR. */
int store_flock(struct store *st, int op);

/* SQLite helpers: 0 or -1 with err holding SQLite's message. */
int store_db_open(const char *path, int create, sqlite3 **db_r, char *err, size_t errlen);
int store_db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* BEGIN IMMEDIATE, waiting for (and retrying after) other writers. */
int store_db_begin(sqlite3 *db, char *err, size_t errlen);
/* ROLLBACK if a transaction is open. */
void store_db_rollback(sqlite3 *db);
int store_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt_r, char *err, size_t errlen);
/* PRAGMA user_version, or -1 with err. */
int store_db_user_version(sqlite3 *db, char *err, size_t errlen);
/* Create schema version `want` (statements in create, then fill) when
 * the database is still at version 0. */
int store_db_schema(sqlite3 *db, int want, const char *create,
                    int (*fill)(sqlite3 *db, char *err, size_t errlen), char *err, size_t errlen);

/* Create (or finish) an account folder: msg/, tmp/, index.sqlite with
 * the default mailboxes. */
int store_index_create(const char *dir, char *err, size_t errlen);
/* Drop the cached index connection of a normalised account, if any. */
void store_index_forget(struct store *st, const char *account);
/* Close every cached index connection. */
void store_index_cache_clear(struct store *st);

#endif
