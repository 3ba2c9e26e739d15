/* queue — the durable outbound queue (queue.h) on SQLite and blob files:
 * opening, the SQLite helpers the queue shares (queue_int.h), queue_add,
 * queue_msg_read and the removal of finished messages.
 *
 * Durability follows src/store: the message file is written to tmp/,
 * fsynced, renamed into msg/ and msg/ is fsynced (blob.h) before the
 * transaction that names it commits; queue.sqlite runs in WAL mode with
 * synchronous=FULL, so a COMMIT that returned is on disk. A file is
 * unlinked only after the COMMIT that dropped the last row naming it,
 * so a crash leaves at worst a file no row names (queue_recover).
 *
 * Concurrency: each process or thread opens its own struct queue; every
 * writer takes BEGIN IMMEDIATE (never upgrading a read lock, which the
 * busy handler cannot wait for) with a busy timeout and retries. queue_add
 * holds DATA/queue/queue.lock shared from the file's creation to the
 * COMMIT, queue_recover holds it exclusive, so recovery never takes a
 * file being queued for an orphan.
 */
#include "queue/queue_int.h"

#include "lib/log.h"
#include "store/blob.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- errors and SQLite helpers ------------------------------------------------ */

int queue_db_fail(struct queue *q, char *err, size_t errlen, const char *what)
{
    return err_set(err, errlen, "%s: %s", what,
                      q && q->db ? sqlite3_errmsg(q->db) : "out of memory");
}

static int queue_db_busy(int rc)
{
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* The busy handler already waits QUEUE_BUSY_MS; BUSY is retried on top of
 * that for the cases it does not cover (e.g. WAL recovery elsewhere). */
int queue_db_exec(struct queue *q, const char *sql, char *err, size_t errlen)
{
    int rc = SQLITE_OK;
    for (int i = 0; i < QUEUE_BEGIN_TRIES; i++) {
        rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
        if (!queue_db_busy(rc))
            break;
        log_warn("queue", "event=busy_retry attempt=%d", i + 1);
        usleep(10000u * (unsigned)(i + 1));
    }
    if (rc != SQLITE_OK) {
        char what[96];
        snprintf(what, sizeof(what), "%.80s", sql);
        return queue_db_fail(q, err, errlen, what);
    }
    return 0;
}

int queue_begin(struct queue *q, char *err, size_t errlen)
{
    return queue_db_exec(q, "BEGIN IMMEDIATE", err, errlen);
}

void queue_rollback(struct queue *q)
{
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
}

int queue_commit(struct queue *q, char *err, size_t errlen)
{
    if (queue_db_exec(q, "COMMIT", err, errlen) < 0) {
        queue_rollback(q);
        return -1;
    }
    return 0;
}

static const char *const queue_sql[QST_COUNT] = {
    [QST_MSG_INSERT] = "INSERT INTO messages(id, file, sender, size, arrival, body_8bit, "
                       "smtputf8, is_dsn, envid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [QST_RCPT_INSERT] = "INSERT INTO recipients(msg_id, rcpt, domain, next_attempt) "
                        "VALUES (?, ?, ?, ?)",
    [QST_RCPT_GET] = "SELECT state, msg_id FROM recipients WHERE id = ?",
    [QST_RCPT_DONE] =
        "UPDATE recipients SET attempts = attempts + 1, last_attempt = ?2, last_reply = ?3, "
        "state = CASE ?4 WHEN 0 THEN '" QS_DELIVERED "' WHEN 1 THEN '" QS_PENDING
        "' ELSE '" QS_FAILED "' END, "
        "next_attempt = CASE ?4 WHEN 1 THEN ?5 ELSE next_attempt END, "
        "dsn_state = CASE ?4 WHEN 2 THEN " QUEUE_SQL_DSN_ON_FAIL " ELSE dsn_state END "
        "WHERE id = ?1 AND state = '" QS_PENDING "'",
    [QST_MSG_GC] = "SELECT file FROM messages m WHERE id = ? AND NOT EXISTS (SELECT 1 FROM "
                   "recipients r WHERE r.msg_id = m.id AND (r.state = '" QS_PENDING
                   "' OR r.dsn_state = '" QD_NEEDED "'))",
    [QST_MSG_DEL_RCPTS] = "DELETE FROM recipients WHERE msg_id = ?",
    [QST_MSG_DEL] = "DELETE FROM messages WHERE id = ?",
    [QST_MSG_FILE] = "SELECT file FROM messages WHERE id = ?",
    [QST_FILE_KNOWN] = "SELECT 1 FROM messages WHERE file = ?",
    /* Failed with a DSN needed: now sent. Pending: warned. Anything else
     * (gone, delivered meanwhile, already sent) is left as it is. */
    [QST_DSN_MARK] =
        "UPDATE recipients SET "
        "dsn_state = CASE WHEN state = '" QS_FAILED "' THEN '" QD_SENT "' ELSE dsn_state END, "
        "warned = CASE WHEN state = '" QS_PENDING "' THEN 1 ELSE warned END "
        "WHERE id = ? AND (state = '" QS_PENDING "' OR dsn_state = '" QD_NEEDED
        "') RETURNING msg_id, state = '" QS_FAILED "'",
};

sqlite3_stmt *queue_stmt(struct queue *q, enum queue_stmt_id which, char *err, size_t errlen)
{
    if (!q->stmt[which] &&
        sqlite3_prepare_v3(q->db, queue_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &q->stmt[which],
                           NULL) != SQLITE_OK) {
        q->stmt[which] = NULL;
        queue_db_fail(q, err, errlen, "prepare");
        return NULL;
    }
    return q->stmt[which];
}

void queue_stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

int queue_stmt_run(struct queue *q, sqlite3_stmt *s, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(s);
    queue_stmt_done(s);
    if (rc != SQLITE_DONE)
        return queue_db_fail(q, err, errlen, what);
    return 0;
}

int queue_flock(struct queue *q, int op)
{
    int rc;
    do
        rc = flock(q->lock_fd, op);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* --- file lists --------------------------------------------------------------- */

int queue_names_add(struct queue_names *l, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *v = realloc(l->v, cap * sizeof(*l->v));
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    snprintf(l->v[l->n++], QUEUE_FILE_MAX, "%s", name);
    return 0;
}

void queue_names_unlink(struct queue *q, const struct queue_names *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (blob_unlink(q->dir, l->v[i]) < 0 && errno != ENOENT)
            log_warn("queue", "event=unlink_failed file=%s error=%s", l->v[i], strerror(errno));
}

void queue_names_free(struct queue_names *l)
{
    free(l->v);
    *l = (struct queue_names){0};
}

/* --- removal of finished messages ----------------------------------------------- */

/* Delete the rows of msg_id (inside the caller's transaction). */
static int queue_msg_drop(struct queue *q, const char *msg_id, char *err, size_t errlen)
{
    sqlite3_stmt *s = queue_stmt(q, QST_MSG_DEL_RCPTS, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_TRANSIENT);
    if (queue_stmt_run(q, s, "delete recipients", err, errlen) < 0)
        return -1;
    if (!(s = queue_stmt(q, QST_MSG_DEL, err, errlen)))
        return -1;
    sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_TRANSIENT);
    return queue_stmt_run(q, s, "delete message", err, errlen);
}

int queue_msg_gc(struct queue *q, const char *msg_id, struct queue_names *files, char *err,
                 size_t errlen)
{
    char file[QUEUE_FILE_MAX];
    sqlite3_stmt *s = queue_stmt(q, QST_MSG_GC, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(file, sizeof(file), "%s", (const char *)sqlite3_column_text(s, 0));
    queue_stmt_done(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return queue_db_fail(q, err, errlen, "find finished message");
    if (queue_msg_drop(q, msg_id, err, errlen) < 0)
        return -1;
    if (queue_names_add(files, file) < 0)
        return err_set(err, errlen, "out of memory");
    log_info("queue", "event=removed id=%s", msg_id);
    return 1;
}

int queue_msg_gc_all(struct queue *q, struct queue_names *files, char *err, size_t errlen)
{
    /* Ids first, then one queue_msg_gc each: no deletes while the
     * SELECT is being stepped. */
    sqlite3_stmt *s;
    struct queue_names ids = {0};
    if (sqlite3_prepare_v2(q->db,
                           "SELECT id FROM messages m WHERE NOT EXISTS (SELECT 1 FROM "
                           "recipients r WHERE r.msg_id = m.id AND (r.state = '" QS_PENDING
                           "' OR r.dsn_state = '" QD_NEEDED "'))",
                           -1, &s, NULL) != SQLITE_OK)
        return queue_db_fail(q, err, errlen, "prepare");
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (queue_names_add(&ids, (const char *)sqlite3_column_text(s, 0)) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    sqlite3_finalize(s);
    int n = 0;
    if (rc != SQLITE_DONE)
        n = queue_db_fail(q, err, errlen, "find finished messages");
    for (size_t i = 0; n >= 0 && i < ids.n; i++) {
        int r = queue_msg_gc(q, ids.v[i], files, err, errlen);
        n = r < 0 ? -1 : n + r;
    }
    queue_names_free(&ids);
    return n;
}

/* --- open and close ------------------------------------------------------------- */

static const char queue_schema[] =
    "CREATE TABLE messages ("
    " id TEXT PRIMARY KEY,"       /* "Q" + 16 hex digits */
    " file TEXT NOT NULL UNIQUE," /* in DATA/queue/msg */
    " sender TEXT NOT NULL,"      /* reverse-path without <>; '' for the null path */
    " size INTEGER NOT NULL,"
    " arrival INTEGER NOT NULL," /* unix seconds */
    " body_8bit INTEGER NOT NULL DEFAULT 0,"
    " smtputf8 INTEGER NOT NULL DEFAULT 0,"
    " is_dsn INTEGER NOT NULL DEFAULT 0,"
    " envid TEXT" /* RFC 3461 ENVID or NULL */
    ") WITHOUT ROWID;"
    "CREATE TABLE recipients ("
    " id INTEGER PRIMARY KEY,"
    " msg_id TEXT NOT NULL REFERENCES messages(id),"
    " rcpt TEXT NOT NULL,"
    " domain TEXT NOT NULL," /* lower-case */
    " state TEXT NOT NULL DEFAULT '" QS_PENDING "' CHECK (state IN ('" QS_PENDING
    "', '" QS_DELIVERED "', '" QS_FAILED "')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt INTEGER NOT NULL,"
    " last_attempt INTEGER NOT NULL DEFAULT 0,"
    " last_reply TEXT NOT NULL DEFAULT '',"
    " dsn_state TEXT NOT NULL DEFAULT '" QD_NONE "' CHECK (dsn_state IN ('" QD_NONE "', '" QD_NEEDED
    "', '" QD_SENT "')),"
    " warned INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX recipients_due ON recipients(state, next_attempt);"
    "CREATE INDEX recipients_msg ON recipients(msg_id);"
    "CREATE INDEX recipients_dsn ON recipients(dsn_state);";

static int queue_user_version(struct queue *q, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(q->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return queue_db_fail(q, err, errlen, "prepare");
    int v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    if (v < 0)
        queue_db_fail(q, err, errlen, "read user_version");
    sqlite3_finalize(s);
    return v;
}

/* Create the schema when the database is new. The version is read again
 * under the write lock: another process may have created it meanwhile. */
static int queue_schema_init(struct queue *q, char *err, size_t errlen)
{
    int v = queue_user_version(q, err, errlen);
    if (v == QUEUE_VERSION)
        return 0;
    if (v < 0 || queue_begin(q, err, errlen) < 0)
        return -1;
    v = queue_user_version(q, err, errlen);
    if (v == 0) {
        char pragma[48];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", QUEUE_VERSION);
        if (queue_db_exec(q, queue_schema, err, errlen) < 0 ||
            queue_db_exec(q, pragma, err, errlen) < 0)
            v = -1;
        else
            v = QUEUE_VERSION;
    } else if (v > QUEUE_VERSION) {
        err_set(err, errlen,
                   "%s/queue.sqlite: schema version %d is newer than this program's (%d)", q->dir,
                   v, QUEUE_VERSION);
        v = -1;
    } else if (v != QUEUE_VERSION) {
        v = -1;
    }
    if (v < 0) {
        queue_rollback(q);
        return -1;
    }
    return queue_commit(q, err, errlen);
}

/* WAL, and check that SQLite agreed (it refuses on some file systems). */
static int queue_db_wal(struct queue *q, char *err, size_t errlen)
{
    for (int i = 0; i < QUEUE_BEGIN_TRIES; i++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(q->db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK)
            return queue_db_fail(q, err, errlen, "prepare");
        int rc = sqlite3_step(s);
        int ok = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
        sqlite3_finalize(s);
        if (ok)
            return 0;
        if (!queue_db_busy(rc))
            return err_set(err, errlen, "journal_mode=WAL refused: %s", sqlite3_errmsg(q->db));
        usleep(10000u * (unsigned)(i + 1));
    }
    return queue_db_fail(q, err, errlen, "journal_mode=WAL");
}

static int queue_mkdir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return err_set(err, errlen, "mkdir %s: %s", path, strerror(errno));
    return 0;
}

/* Folders, lock file and database with our settings and schema. */
static int queue_open_files(struct queue *q, const char *data_dir, char *err, size_t errlen)
{
    char path[PATH_MAX + 32];
    int len = snprintf(q->dir, sizeof(q->dir), "%s/queue", data_dir);
    if (len < 0 || (size_t)len >= sizeof(q->dir) - 32)
        return err_set(err, errlen, "path too long: %s", data_dir);
    if (queue_mkdir(data_dir, err, errlen) < 0 || queue_mkdir(q->dir, err, errlen) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/msg", q->dir);
    if (queue_mkdir(path, err, errlen) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/tmp", q->dir);
    if (queue_mkdir(path, err, errlen) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/queue.lock", q->dir);
    q->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (q->lock_fd < 0)
        return err_set(err, errlen, "open %s: %s", path, strerror(errno));
    /* Create the database ourselves (0600, inherited by -wal and -shm).
     * Only a file that did not exist is closed here: close() would drop
     * the POSIX locks another connection of this process holds on it. */
    snprintf(path, sizeof(path), "%s/queue.sqlite", q->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
        return err_set(err, errlen, "create %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        return err_set(err, errlen, "open %s: %s", path,
                          q->db ? sqlite3_errmsg(q->db) : "out of memory");
    sqlite3_busy_timeout(q->db, QUEUE_BUSY_MS);
    if (queue_db_wal(q, err, errlen) < 0 ||
        queue_db_exec(q, "PRAGMA synchronous=FULL", err, errlen) < 0)
        return -1;
    return queue_schema_init(q, err, errlen);
}

int queue_open(struct queue **q_r, const char *data_dir, char *err, size_t errlen)
{
    *q_r = NULL;
    if (!data_dir || !*data_dir)
        return err_set(err, errlen, "queue_open: no data directory");
    struct queue *q = calloc(1, sizeof(*q));
    if (!q)
        return err_set(err, errlen, "out of memory");
    q->lock_fd = -1;
    if (queue_open_files(q, data_dir, err, errlen) < 0) {
        queue_close(&q);
        return -1;
    }
    *q_r = q;
    return 0;
}

void queue_close(struct queue **qp)
{
    struct queue *q = *qp;
    if (!q)
        return;
    for (int i = 0; i < QST_COUNT; i++)
        sqlite3_finalize(q->stmt[i]);
    sqlite3_close(q->db);
    if (q->lock_fd >= 0)
        close(q->lock_fd);
    free(q);
    *qp = NULL;
}

/* --- queue_add ------------------------------------------------------------------- */

/* "Q" + 8 hex digits of the time + 8 random ones: ids sort roughly by
 * arrival and are unique in practice; the primary key catches the rest. */
static void queue_id_make(char *id, size_t n, time_t now)
{
    static _Atomic uint32_t counter; /* fallback only: threads may share it */
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint32_t)ts.tv_nsec ^ atomic_fetch_add(&counter, 1) << 20) * 2654435761u ^
            (uint32_t)getpid();
    }
    snprintf(id, n, "Q%08X%08X", (uint32_t)now, r);
}

/* The lower-case domain of an address into out: after its last '@'. */
static int queue_rcpt_domain(const char *rcpt, char *out, size_t n)
{
    const char *at = rcpt ? strrchr(rcpt, '@') : NULL;
    if (!at || at == rcpt || !at[1] || strlen(at + 1) >= n)
        return -1;
    size_t i = 0;
    for (const char *p = at + 1; *p; p++)
        out[i++] = (char)tolower((unsigned char)*p);
    out[i] = '\0';
    return 0;
}

/* Insert the message row under a fresh id (retried when taken). */
static int queue_insert_msg(struct queue *q, const struct queue_new *m, const char *file,
                            uint64_t size, char *id, size_t idlen, char *err, size_t errlen)
{
    sqlite3_stmt *s = queue_stmt(q, QST_MSG_INSERT, err, errlen);
    if (!s)
        return -1;
    for (int tries = 0; tries < QUEUE_ID_TRIES; tries++) {
        queue_id_make(id, idlen, m->now);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, file, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, m->sender ? m->sender : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)size);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)m->now);
        sqlite3_bind_int(s, 6, m->body_8bit);
        sqlite3_bind_int(s, 7, m->smtputf8);
        sqlite3_bind_int(s, 8, m->is_dsn);
        if (m->envid)
            sqlite3_bind_text(s, 9, m->envid, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        int ext = sqlite3_extended_errcode(q->db);
        queue_stmt_done(s);
        if (rc == SQLITE_DONE)
            return 0;
        if (ext != SQLITE_CONSTRAINT_PRIMARYKEY)
            return queue_db_fail(q, err, errlen, "insert message");
    }
    return err_set(err, errlen, "no free queue id after %d tries", QUEUE_ID_TRIES);
}

static int queue_insert_rcpts(struct queue *q, const struct queue_new *m, const char *id, char *err,
                              size_t errlen)
{
    sqlite3_stmt *s = queue_stmt(q, QST_RCPT_INSERT, err, errlen);
    if (!s)
        return -1;
    for (size_t i = 0; i < m->nrcpts; i++) {
        char domain[256];
        if (queue_rcpt_domain(m->rcpts[i], domain, sizeof(domain)) < 0)
            return err_set(err, errlen, "bad recipient address");
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, m->rcpts[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, domain, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)m->now);
        if (queue_stmt_run(q, s, "insert recipient", err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* The rows of a message whose file is already durable in msg/, and the
 * DSNs it stands for marked sent; files of messages that could go then
 * are unlinked after the COMMIT. */
static int queue_add_rows(struct queue *q, const struct queue_new *m, const char *file,
                          uint64_t size, char *id, size_t idlen, char *err, size_t errlen)
{
    struct queue_names files = {0};
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    int rc = 0;
    if (queue_insert_msg(q, m, file, size, id, idlen, err, errlen) < 0 ||
        queue_insert_rcpts(q, m, id, err, errlen) < 0 ||
        (m->ndsn_for > 0 && queue_dsn_sent_tx(q, m->dsn_for, m->ndsn_for, &files, err, errlen) < 0))
        rc = -1;
    if (rc < 0)
        queue_rollback(q);
    else if ((rc = queue_commit(q, err, errlen)) == 0)
        queue_names_unlink(q, &files);
    queue_names_free(&files);
    return rc;
}

static int queue_new_check(const struct queue_new *m, char *err, size_t errlen)
{
    char domain[256];
    if (!m || !m->rcpts || m->nrcpts == 0)
        return err_set(err, errlen, "queue_add: no recipients");
    if (m->iovcnt < 0 || (m->iovcnt > 0 && !m->iov))
        return err_set(err, errlen, "queue_add: no message data");
    if (m->ndsn_for > 0 && !m->dsn_for)
        return err_set(err, errlen, "queue_add: dsn_for missing");
    for (size_t i = 0; i < m->nrcpts; i++)
        if (queue_rcpt_domain(m->rcpts[i], domain, sizeof(domain)) < 0)
            return err_set(err, errlen, "queue_add: bad recipient address");
    return 0;
}

int queue_add(struct queue *q, const struct queue_new *m, char *id_r, size_t n, char *err,
              size_t errlen)
{
    char file[QUEUE_FILE_MAX] = "", msgdir[PATH_MAX + 8], id[32];
    uint64_t size = 0;
    if (!id_r || n < sizeof(id))
        return err_set(err, errlen, "queue_add: id buffer too small");
    if (queue_new_check(m, err, errlen) < 0)
        return -1;
    snprintf(msgdir, sizeof(msgdir), "%s/msg", q->dir);
    /* Shared lock from the file's creation to the COMMIT: queue_recover
     * (exclusive) must not take the file for an orphan meanwhile. */
    if (queue_flock(q, LOCK_SH) < 0)
        return err_set(err, errlen, "lock %s/queue.lock: %s", q->dir, strerror(errno));
    int rc = blob_write(q->dir, m->iov, m->iovcnt, file, sizeof(file), &size, err, errlen);
    if (rc == 0 && (rc = blob_sync_dir(msgdir, err, errlen)) == 0)
        rc = queue_add_rows(q, m, file, size, id, sizeof(id), err, errlen);
    /* Failed: no row names the file (a failed COMMIT rolled back). */
    if (rc < 0 && file[0] && blob_unlink(q->dir, file) < 0 && errno != ENOENT)
        log_warn("queue", "event=unlink_failed file=%s error=%s", file, strerror(errno));
    queue_flock(q, LOCK_UN);
    if (rc < 0)
        return -1;
    snprintf(id_r, n, "%s", id);
    char qs[300];
    log_info("queue", "event=queued id=%s from=%s rcpts=%zu size=%llu file=%s", id,
             log_quote(qs, sizeof(qs), m->sender ? m->sender : ""), m->nrcpts,
             (unsigned long long)size, file);
    return 0;
}

/* --- reading ----------------------------------------------------------------------- */

int queue_msg_read(struct queue *q, const char *file, uint8_t **data_r, size_t *len_r, char *err,
                   size_t errlen)
{
    return blob_read(q->dir, file, data_r, len_r, err, errlen);
}
