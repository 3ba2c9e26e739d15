/* queue_result — changing the queue (queue.h): attempt results, DSNs
 * sent, and the administrator's flush, delete, bounce and expire.
 *
 * Each call is one BEGIN IMMEDIATE transaction. Message files whose rows
 * it dropped are unlinked only after its COMMIT (queue_names).
 */
#include "queue/queue_int.h"

#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Local failures: the reply text stored in last_reply (status first). */
#define QUEUE_REPLY_BOUNCED "5.0.0 bounced by the administrator"
#define QUEUE_REPLY_EXPIRED "4.4.7 delivery time expired"

/* COMMIT then unlink the files; on failure roll back. Frees files. */
static int queue_finish(struct queue *q, int rc, struct queue_names *files, char *err,
                        size_t errlen)
{
    if (rc < 0)
        queue_rollback(q);
    else if (queue_commit(q, err, errlen) < 0)
        rc = -1;
    else
        queue_names_unlink(q, files);
    queue_names_free(files);
    return rc;
}

/* Record the result inside the transaction; 0 or -1. */
static int queue_rcpt_done_tx(struct queue *q, int64_t rcpt_id, enum queue_result r,
                              const char *reply, time_t now, time_t next, struct queue_names *files,
                              char *err, size_t errlen)
{
    char msg_id[32];
    sqlite3_stmt *s = queue_stmt(q, QST_RCPT_GET, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, rcpt_id);
    int rc = sqlite3_step(s);
    int pending = 0;
    if (rc == SQLITE_ROW) {
        pending = strcmp((const char *)sqlite3_column_text(s, 0), QS_PENDING) == 0;
        snprintf(msg_id, sizeof(msg_id), "%s", (const char *)sqlite3_column_text(s, 1));
    }
    queue_stmt_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return queue_db_fail(q, err, errlen, "read recipient");
    if (rc == SQLITE_DONE)
        return err_set(err, errlen, "no queued recipient %lld", (long long)rcpt_id);
    if (!pending)
        return err_set(err, errlen, "recipient %lld is no longer pending", (long long)rcpt_id);
    if (!(s = queue_stmt(q, QST_RCPT_DONE, err, errlen)))
        return -1;
    sqlite3_bind_int64(s, 1, rcpt_id);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)now);
    sqlite3_bind_text(s, 3, reply ? reply : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 4, r == QUEUE_RESULT_DELIVERED ? 0 : r == QUEUE_RESULT_DEFERRED ? 1 : 2);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)next);
    if (queue_stmt_run(q, s, "record result", err, errlen) < 0)
        return -1;
    return r == QUEUE_RESULT_DEFERRED                        ? 0
           : queue_msg_gc(q, msg_id, files, err, errlen) < 0 ? -1
                                                             : 0;
}

int queue_rcpt_done(struct queue *q, int64_t rcpt_id, enum queue_result r, const char *reply,
                    time_t now, time_t next, char *err, size_t errlen)
{
    struct queue_names files = {0};
    if (r != QUEUE_RESULT_DELIVERED && r != QUEUE_RESULT_DEFERRED && r != QUEUE_RESULT_FAILED)
        return err_set(err, errlen, "queue_rcpt_done: bad result %d", (int)r);
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    int rc = queue_rcpt_done_tx(q, rcpt_id, r, reply, now, next, &files, err, errlen);
    return queue_finish(q, rc, &files, err, errlen);
}

/* Mark one recipient's DSN sent; its message id into msg_id when it was
 * failed (the message may go now), "" otherwise. 0 or -1. */
static int queue_dsn_mark(struct queue *q, int64_t rcpt_id, char *msg_id, size_t n, char *err,
                          size_t errlen)
{
    sqlite3_stmt *s = queue_stmt(q, QST_DSN_MARK, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, rcpt_id);
    int rc = sqlite3_step(s);
    msg_id[0] = '\0';
    if (rc == SQLITE_ROW && sqlite3_column_int(s, 1))
        snprintf(msg_id, n, "%s", (const char *)sqlite3_column_text(s, 0));
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    queue_stmt_done(s);
    return rc == SQLITE_DONE ? 0 : queue_db_fail(q, err, errlen, "mark DSN sent");
}

int queue_dsn_sent_tx(struct queue *q, const int64_t *rcpt_ids, size_t n, struct queue_names *files,
                      char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char msg_id[32];
        if (queue_dsn_mark(q, rcpt_ids[i], msg_id, sizeof(msg_id), err, errlen) < 0 ||
            (msg_id[0] && queue_msg_gc(q, msg_id, files, err, errlen) < 0))
            return -1;
    }
    return 0;
}

int queue_dsn_sent(struct queue *q, const int64_t *rcpt_ids, size_t n, char *err, size_t errlen)
{
    struct queue_names files = {0};
    if (n == 0)
        return 0;
    if (!rcpt_ids)
        return err_set(err, errlen, "queue_dsn_sent: no recipients");
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    int rc = queue_dsn_sent_tx(q, rcpt_ids, n, &files, err, errlen);
    return queue_finish(q, rc, &files, err, errlen);
}

int queue_flush(struct queue *q, time_t now, char *err, size_t errlen)
{
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(q->db,
                           "UPDATE recipients SET next_attempt = min(next_attempt, ?) "
                           "WHERE state = '" QS_PENDING "'",
                           -1, &s, NULL) != SQLITE_OK) {
        queue_db_fail(q, err, errlen, "prepare");
        queue_rollback(q);
        return -1;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)now);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        queue_db_fail(q, err, errlen, "flush");
        queue_rollback(q);
        return -1;
    }
    int64_t n = sqlite3_changes64(q->db);
    if (queue_commit(q, err, errlen) < 0)
        return -1;
    log_info("queue", "event=flush rcpts=%lld", (long long)n);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* The file of message msg_id into file: 1, 0 no such message, -1. */
static int queue_msg_file(struct queue *q, const char *msg_id, char *file, size_t n, char *err,
                          size_t errlen)
{
    sqlite3_stmt *s = queue_stmt(q, QST_MSG_FILE, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(file, n, "%s", (const char *)sqlite3_column_text(s, 0));
    queue_stmt_done(s);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : queue_db_fail(q, err, errlen, "find message");
}

int queue_delete(struct queue *q, const char *msg_id, char *err, size_t errlen)
{
    struct queue_names files = {0};
    char file[QUEUE_FILE_MAX];
    if (!msg_id)
        return err_set(err, errlen, "queue_delete: no message id");
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    int rc = queue_msg_file(q, msg_id, file, sizeof(file), err, errlen);
    if (rc == 1) {
        sqlite3_stmt *s = queue_stmt(q, QST_MSG_DEL_RCPTS, err, errlen);
        if (!s)
            rc = -1;
        if (rc == 1) {
            sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_TRANSIENT);
            rc = queue_stmt_run(q, s, "delete recipients", err, errlen) < 0 ? -1 : 1;
        }
        if (rc == 1 && !(s = queue_stmt(q, QST_MSG_DEL, err, errlen)))
            rc = -1;
        if (rc == 1) {
            sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_TRANSIENT);
            rc = queue_stmt_run(q, s, "delete message", err, errlen) < 0 ? -1 : 1;
        }
        if (rc == 1 && queue_names_add(&files, file) < 0)
            rc = err_set(err, errlen, "out of memory");
    }
    rc = queue_finish(q, rc, &files, err, errlen);
    if (rc == 1)
        log_info("queue", "event=deleted id=%s", msg_id);
    return rc;
}

/* Inside a transaction: every pending recipient chosen by `where` (SQL
 * on recipients, binding ?1 = a, ?2 = b) fails with reply. Count, or -1. */
static int queue_fail_where(struct queue *q, const char *where, const char *text_a, int64_t a,
                            const char *reply, char *err, size_t errlen)
{
    char sql[1024];
    sqlite3_stmt *s;
    snprintf(sql, sizeof(sql),
             "UPDATE recipients SET state = '" QS_FAILED "', last_reply = ?3, "
             "dsn_state = " QUEUE_SQL_DSN_ON_FAIL " WHERE state = '" QS_PENDING "' AND %s",
             where);
    if (sqlite3_prepare_v2(q->db, sql, -1, &s, NULL) != SQLITE_OK)
        return queue_db_fail(q, err, errlen, "prepare");
    if (text_a)
        sqlite3_bind_text(s, 1, text_a, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_int64(s, 1, a);
    sqlite3_bind_text(s, 3, reply, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return queue_db_fail(q, err, errlen, "fail recipients");
    int64_t n = sqlite3_changes64(q->db);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int queue_bounce(struct queue *q, const char *msg_id, time_t now, char *err, size_t errlen)
{
    struct queue_names files = {0};
    char file[QUEUE_FILE_MAX];
    int n = 0;
    if (!msg_id)
        return err_set(err, errlen, "queue_bounce: no message id");
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    int rc = queue_msg_file(q, msg_id, file, sizeof(file), err, errlen);
    if (rc == 1 &&
        (n = queue_fail_where(q, "msg_id = ?1", msg_id, 0, QUEUE_REPLY_BOUNCED, err, errlen)) < 0)
        rc = -1;
    if (rc == 1 && queue_msg_gc(q, msg_id, &files, err, errlen) < 0)
        rc = -1;
    rc = queue_finish(q, rc, &files, err, errlen);
    if (rc == 1)
        log_info("queue", "event=bounced id=%s rcpts=%d", msg_id, n);
    return rc;
}

/* "4.4.7 delivery time expired after 5 days" (or hours, or seconds). */
static void queue_expired_reply(char *out, size_t n, time_t max_age)
{
    long long a = (long long)max_age;
    if (a % 86400 == 0)
        snprintf(out, n, QUEUE_REPLY_EXPIRED " after %lld day%s", a / 86400, a == 86400 ? "" : "s");
    else if (a % 3600 == 0)
        snprintf(out, n, QUEUE_REPLY_EXPIRED " after %lld hour%s", a / 3600, a == 3600 ? "" : "s");
    else
        snprintf(out, n, QUEUE_REPLY_EXPIRED " after %lld seconds", a);
}

int queue_expire(struct queue *q, time_t now, time_t max_age, char *err, size_t errlen)
{
    struct queue_names files = {0};
    char reply[96];
    if (max_age <= 0)
        return 0;
    queue_expired_reply(reply, sizeof(reply), max_age);
    if (queue_begin(q, err, errlen) < 0)
        return -1;
    int n = queue_fail_where(q, "msg_id IN (SELECT id FROM messages WHERE arrival < ?1)", NULL,
                             (int64_t)now - (int64_t)max_age, reply, err, errlen);
    if (n > 0 && queue_msg_gc_all(q, &files, err, errlen) < 0)
        n = -1;
    n = queue_finish(q, n, &files, err, errlen);
    if (n > 0)
        log_info("queue", "event=expired rcpts=%d max_age=%lld", n, (long long)max_age);
    return n;
}
