/* store_sqlite_int — private to the SQLite backend of store.h.
 *
 * Shared by store_sqlite.c (accounts.sqlite: open/close, domains,
 * accounts, SQLite helpers) and store_mail.c (per-account index.sqlite:
 * connection cache, delivery, recovery, reading). Nothing outside
 * src/store/ includes this.
 */
#ifndef CORREIO_STORE_STORE_SQLITE_INT_H
#define CORREIO_STORE_STORE_SQLITE_INT_H

#include "lib/err.h"
#include "store/store.h"

#include <limits.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STORE_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define STORE_DOMAIN_MAX 253 /* RFC 1035 2.3.4, without the trailing dot */
#define STORE_ADDR_MAX (STORE_LOCAL_MAX + 1 + STORE_DOMAIN_MAX)
#define STORE_CACHE_MAX 64  /* cached per-account index connections */
#define STORE_BUSY_MS 10000 /* SQLite busy handler wait per attempt */
#define STORE_BEGIN_TRIES 6 /* BEGIN IMMEDIATE attempts (about a minute in all) */
#define ACCOUNTS_VERSION 3  /* PRAGMA user_version of accounts.sqlite */
#define INDEX_VERSION 3     /* PRAGMA user_version of index.sqlite (1: before IMAP) */
#define INDEX_CACHE_KIB 512 /* SQLite page cache per index connection */

/* Statements of an index connection prepared on first use and kept with
 * it (store_index_stmt); the SQL is in store_mail.c. */
enum index_stmt {
    IXS_MBOX_BY_NAME,       /* mailbox columns by name */
    IXS_MBOX_BY_ID,         /* mailbox columns by id */
    IXS_MBOX_EACH,          /* all mailboxes, by name */
    IXS_MBOX_STATUS,        /* counts of one mailbox by name */
    IXS_MBOX_SET_MODSEQ,    /* highestmodseq of a mailbox */
    IXS_MBOX_SET_NEXT,      /* uidnext, highestmodseq of a mailbox */
    IXS_MBOX_SET_RECENT,    /* first_recent_uid of a mailbox */
    IXS_MSG_LOAD,           /* messages of a UID range, without cache */
    IXS_MSG_LOAD_CACHE,     /* messages of a UID range, with cache */
    IXS_MSG_LOAD_FIELDS,    /* messages of a UID range, with envelope and search fields */
    IXS_MSG_CHANGED,        /* messages with modseq > ? */
    IXS_MSG_EXPUNGED,       /* expunged UIDs with modseq > ? */
    IXS_MSG_FLAGS,          /* flags, keywords, modseq of one message */
    IXS_MSG_SET_FLAGS,      /* new flags, keywords, modseq of one message */
    IXS_MSG_FILE,           /* file of one message */
    IXS_MSG_DELETE,         /* delete one message, returning its file */
    IXS_MSG_SET_FLAGS_ONLY, /* new flags, modseq of one message */
    IXS_MSG_COPY,           /* copy one message row under a new file name */
    IXS_MSG_INSERT_FULL,    /* insert a message with every column (delivery) */
    IXS_MSG_MOVE,           /* give a message another mailbox, uid, modseq */
    IXS_EXPUNGE_ADD,        /* record an expunged UID */
    IXS_MSG_SET_CACHE,      /* fill envelope/bodystructure */
    IXS_SUB_ADD,
    IXS_SUB_DEL,
    IXS_SUB_LIST,
    IXS_COUNT
};

/* One account's index connection and its hot statements; cached in
 * struct store (store_mail.c). */
struct store_index {
    char account[STORE_ADDR_MAX + 1]; /* lower-case address */
    char dir[PATH_MAX];               /* DATA/mail/<domain>/<local> */
    sqlite3 *db;
    sqlite3_stmt *mbox_get;        /* id, uidnext, highestmodseq of a mailbox */
    sqlite3_stmt *mbox_bump;       /* store uidnext, highestmodseq */
    sqlite3_stmt *msg_insert;      /* one messages row */
    sqlite3_stmt *file_find;       /* is a file named by some row? */
    sqlite3_stmt *stmt[IXS_COUNT]; /* store_index_stmt, prepared on first use */
    dev_t dev;                     /* identity of index.sqlite when opened, to */
    ino_t ino;                     /* notice an account deleted and re-added */
    uint64_t used;                 /* LRU tick */
};

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
 * the database is still at version 0; when it is at 0 < v < want, call
 * migrate(db, v) (may be NULL: then that is an error), which brings it to
 * `want`. All inside one BEGIN IMMEDIATE transaction. */
int store_db_schema(sqlite3 *db, int want, const char *create,
                    int (*fill)(sqlite3 *db, char *err, size_t errlen),
                    int (*migrate)(sqlite3 *db, int from, char *err, size_t errlen), char *err,
                    size_t errlen);

/* Create (or finish) an account folder: msg/, tmp/, index.sqlite with
 * the default mailboxes. */
int store_index_create(const char *dir, char *err, size_t errlen);
/* Create one mailbox inside the caller's transaction, with a fresh
 * UIDVALIDITY; subscribe = 1 also subscribes its name. *id_r (may be
 * NULL) gets its id. Fails (message "... already exists") on a name in use. */
int store_index_mailbox_create(sqlite3 *db, const char *name, const char *special_use,
                               int subscribe, int64_t *id_r, char *err, size_t errlen);
/* Drop the cached index connection of a normalised account, if any. */
void store_index_forget(struct store *st, const char *account);
/* Close every cached index connection. */
void store_index_cache_clear(struct store *st);
/* The index of account (any case, normalised here), from the cache or
 * opened now (an index at an older schema version is migrated). Owned by
 * st, valid until the next call that takes an index. NULL with err. */
struct store_index *store_index_of(struct store *st, const char *account, char *err, size_t errlen);
/* The cached statement `which` of ix, prepared on first use; reset and
 * with bindings cleared. NULL with err. The caller resets it after use
 * (store_stmt_done). */
sqlite3_stmt *store_index_stmt(struct store_index *ix, enum index_stmt which, char *err,
                               size_t errlen);
/* sqlite3_reset + sqlite3_clear_bindings. */
void store_stmt_done(sqlite3_stmt *s);

/* Helpers shared by store_mbox.c and store_msgs.c. */
/* Step a bound write statement to its end and reset it. 0 or -1. */
int store_stmt_run(struct store_index *ix, sqlite3_stmt *s, const char *what, char *err,
                   size_t errlen);
/* COMMIT, or roll back and fail. 0 or -1. */
int store_ix_commit(struct store_index *ix, char *err, size_t errlen);
/* The mailbox with id: 1 found (*mb filled), 0 none, -1 error. */
int store_mbox_by_id(struct store_index *ix, int64_t id, struct store_mailbox *mb, char *err,
                     size_t errlen);
/* Set a mailbox's highestmodseq. 0 or -1. */
int store_mbox_set_modseq(struct store_index *ix, int64_t id, uint64_t modseq, char *err,
                          size_t errlen);
/* Inside a transaction: move message (from, uid) to (to, new_uid) with
 * MODSEQ to_modseq, keeping its file, and record uid as expunged from
 * `from` with from_modseq. 1 moved, 0 no such message, -1 error. */
int store_msg_move_row(struct store_index *ix, int64_t from, uint32_t uid, int64_t to,
                       uint32_t new_uid, uint64_t to_modseq, uint64_t from_modseq, char *err,
                       size_t errlen);

/* A list of NUL-terminated names in one buffer (file names to unlink
 * after a commit, mailbox names). Zero-initialise; free with
 * store_names_free. */
struct store_names {
    char *buf;
    size_t len, cap, n;
};
/* Append s (NULL as ""). 0, or -1 when out of memory. */
int store_names_add(struct store_names *l, const char *s);
/* The name after prev, the first with prev NULL (only n of them). */
const char *store_names_next(const struct store_names *l, const char *prev);
/* Unlink each name from ix's msg/ (after COMMIT), logging failures. */
void store_names_unlink(const struct store_names *l, const struct store_index *ix);
void store_names_free(struct store_names *l);

/* Keywords (store_msgs.c): a space-separated list, de-duplicated ignoring
 * ASCII case (the first spelling is kept), one space between words. */
enum store_kw_op { STORE_KW_SET, STORE_KW_ADD, STORE_KW_REMOVE };
/* The result of applying op with arg (may be NULL) to cur (may be NULL),
 * malloc'd into *out_r. 0, or -1 when out of memory. */
int store_kw_apply(const char *cur, enum store_kw_op op, const char *arg, char **out_r);
/* STORE_FLAG_* bits that are stored. */
#define STORE_FLAG_ALL                                                                             \
    (STORE_FLAG_SEEN | STORE_FLAG_ANSWERED | STORE_FLAG_FLAGGED | STORE_FLAG_DELETED |             \
     STORE_FLAG_DRAFT)

#endif
