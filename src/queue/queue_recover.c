/* queue_recover — crash repair of the queue at start-up (queue.h).
 *
 * What a crash can leave, and what is done with it:
 *   - a file in tmp/: a queue_add that never returned 0; removed.
 *   - a file in msg/ that no row names: a queue_add that did not commit,
 *     or a message whose rows went but whose file was not unlinked yet;
 *     removed.
 *   - a message row whose file is missing (the disk lost it, or someone
 *     removed it): it cannot be delivered, but its recipients are not
 *     dropped silently: each pending one fails with "4.3.0 queued file
 *     lost", so the sender gets a DSN.
 * Every action is logged. Runs under the exclusive queue.lock, so no
 * queue_add is between its rename and its COMMIT meanwhile.
 */
#include "queue/queue_int.h"

#include "lib/log.h"
#include "store/blob.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_REPLY_LOST "4.3.0 queued file lost"

struct queue_recover_count {
    unsigned tmp_removed, orphans_removed, lost, errors;
};

static int queue_dot(const char *name)
{
    return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

/* Remove every file in tmp/. */
static void queue_recover_tmp(struct queue *q, struct queue_recover_count *c)
{
    char path[PATH_MAX + 300];
    snprintf(path, sizeof(path), "%s/tmp", q->dir);
    DIR *dp = opendir(path);
    if (!dp) {
        c->errors++;
        log_warn("queue", "event=recover action=scan_tmp path=%s error=%s", path, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (queue_dot(e->d_name))
            continue;
        snprintf(path, sizeof(path), "%s/tmp/%s", q->dir, e->d_name);
        if (unlink(path) == 0) {
            c->tmp_removed++;
            log_info("queue", "event=recover action=remove_tmp path=%s", path);
        } else {
            c->errors++;
            log_warn("queue", "event=recover action=remove_tmp path=%s error=%s", path,
                     strerror(errno));
        }
    }
    closedir(dp);
}

/* Is file named by a message row? 1, 0, -1. */
static int queue_file_known(struct queue *q, const char *file)
{
    sqlite3_stmt *s = queue_stmt(q, QST_FILE_KNOWN, NULL, 0);
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, file, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    queue_stmt_done(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Remove files of msg/ that no row names. No new file can be named
 * meanwhile (exclusive lock), so no transaction is needed; a file the
 * database cannot be asked about is kept. */
static void queue_recover_orphans(struct queue *q, struct queue_recover_count *c)
{
    char path[PATH_MAX + 300];
    unsigned removed = 0;
    snprintf(path, sizeof(path), "%s/msg", q->dir);
    DIR *dp = opendir(path);
    if (!dp) {
        c->errors++;
        log_warn("queue", "event=recover action=scan_msg path=%s error=%s", path, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (queue_dot(e->d_name))
            continue;
        int known = queue_file_known(q, e->d_name);
        snprintf(path, sizeof(path), "%s/msg/%s", q->dir, e->d_name);
        if (known != 0) {
            if (known < 0) {
                c->errors++;
                log_warn("queue", "event=recover action=keep path=%s error=%s", path,
                         sqlite3_errmsg(q->db));
            }
            continue;
        }
        if (unlink(path) == 0) {
            removed++;
            log_info("queue", "event=recover action=remove_orphan path=%s", path);
        } else if (errno != ENOENT) { /* ENOENT: its remover was just late */
            c->errors++;
            log_warn("queue", "event=recover action=remove_orphan path=%s error=%s", path,
                     strerror(errno));
        }
    }
    closedir(dp);
    c->orphans_removed += removed;
    if (removed) {
        snprintf(path, sizeof(path), "%s/msg", q->dir);
        blob_sync_dir(path, NULL, 0);
    }
}

/* Ids of the messages whose file is missing, into ids. Called under the
 * write lock: a row's file is unlinked only after the row is gone, so a
 * row seen here whose file is missing really lost it. 0 or -1. */
static int queue_lost_files(struct queue *q, struct queue_names *ids, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    char path[PATH_MAX + 300];
    if (sqlite3_prepare_v2(q->db, "SELECT id, file FROM messages", -1, &s, NULL) != SQLITE_OK)
        return queue_db_fail(q, err, errlen, "prepare");
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        const char *file = (const char *)sqlite3_column_text(s, 1);
        struct stat sb;
        if (file && *file && !strchr(file, '/')) {
            snprintf(path, sizeof(path), "%s/msg/%s", q->dir, file);
            if (stat(path, &sb) == 0)
                continue;
            if (errno != ENOENT) {
                log_warn("queue", "event=recover action=keep id=%s path=%s error=%s", id, path,
                         strerror(errno));
                continue; /* cannot tell: do not fail its recipients */
            }
        }
        if (queue_names_add(ids, id) < 0) {
            sqlite3_finalize(s);
            return err_set(err, errlen, "out of memory");
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : queue_db_fail(q, err, errlen, "read messages");
}

/* Fail the pending recipients of one message whose file is lost. */
static int queue_fail_lost(struct queue *q, const char *id, struct queue_recover_count *c,
                           char *err, size_t errlen)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(q->db,
                           "UPDATE recipients SET state = '" QS_FAILED "', last_reply = ?2, "
                           "dsn_state = " QUEUE_SQL_DSN_ON_FAIL
                           " WHERE msg_id = ?1 AND state = '" QS_PENDING "'",
                           -1, &s, NULL) != SQLITE_OK)
        return queue_db_fail(q, err, errlen, "prepare");
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, QUEUE_REPLY_LOST, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return queue_db_fail(q, err, errlen, "fail recipients");
    c->lost++;
    log_warn("queue", "event=recover action=file_lost id=%s rcpts_failed=%d", id,
             sqlite3_changes(q->db));
    return 0;
}

/* One transaction: fail the recipients of messages whose file is lost,
 * then drop every message with nothing left to do. */
static int queue_recover_rows(struct queue *q, struct queue_recover_count *c, char *err,
                              size_t errlen)
{
    struct queue_names ids = {0}, files = {0};
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    int rc = queue_lost_files(q, &ids, err, errlen);
    for (size_t i = 0; rc == 0 && i < ids.n; i++)
        rc = queue_fail_lost(q, ids.v[i], c, err, errlen);
    if (rc == 0 && queue_msg_gc_all(q, &files, err, errlen) < 0)
        rc = -1;
    if (rc < 0)
        queue_rollback(q);
    else if ((rc = queue_commit(q, err, errlen)) == 0)
        queue_names_unlink(q, &files);
    queue_names_free(&ids);
    queue_names_free(&files);
    return rc;
}

int queue_recover(struct queue *q, char *err, size_t errlen)
{
    struct queue_recover_count c = {0};
    if (queue_flock(q, LOCK_EX) < 0)
        return err_set(err, errlen, "lock %s/queue.lock: %s", q->dir, strerror(errno));
    queue_recover_tmp(q, &c);
    int rc = queue_recover_rows(q, &c, err, errlen);
    if (rc == 0)
        queue_recover_orphans(q, &c);
    queue_flock(q, LOCK_UN);
    log_info("queue",
             "event=recover_done tmp_removed=%u orphans_removed=%u files_lost=%u errors=%u",
             c.tmp_removed, c.orphans_removed, c.lost, c.errors);
    return rc;
}
