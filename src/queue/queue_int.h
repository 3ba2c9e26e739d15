/* queue_int — private to the queue (queue.h): the struct, the SQL and
 * the helpers queue.c, queue_list.c, queue_result.c and queue_recover.c
 * share. Nothing outside src/queue/ includes this.
 */
#ifndef CORREIO_QUEUE_QUEUE_INT_H
#define CORREIO_QUEUE_QUEUE_INT_H

#include "lib/err.h"
#include "queue/queue.h"

#include <limits.h>
#include <sqlite3.h>

#define QUEUE_VERSION 1     /* PRAGMA user_version of queue.sqlite */
#define QUEUE_BUSY_MS 10000 /* SQLite busy handler wait per attempt */
#define QUEUE_BEGIN_TRIES 6 /* BEGIN IMMEDIATE attempts on top of it */
#define QUEUE_ID_TRIES 8    /* fresh ids tried when one is taken */
#define QUEUE_FILE_MAX 128  /* file names (struct queue_rcpt.file) */

/* Text of the recipients.state and recipients.dsn_state columns. */
#define QS_PENDING "pending"
#define QS_DELIVERED "delivered"
#define QS_FAILED "failed"
#define QD_NONE "none"
#define QD_NEEDED "needed"
#define QD_SENT "sent"

/* The dsn_state a recipient of message `msg_id` (a column of the row
 * being updated) takes when it fails: "sent" (no DSN ever) for a
 * message from the null reverse-path or a DSN itself (RFC 5321 6.1:
 * never bounce a bounce), else "needed". Mirrors dsn_wanted(). */
#define QUEUE_SQL_DSN_ON_FAIL                                                                      \
    "(SELECT CASE WHEN m.is_dsn <> 0 OR m.sender IN ('', '<>') THEN '" QD_SENT                     \
    "' ELSE '" QD_NEEDED "' END FROM messages m WHERE m.id = recipients.msg_id)"

/* Statements prepared on first use and kept with the connection
 * (queue_stmt); the SQL is in queue.c. */
enum queue_stmt_id {
    QST_MSG_INSERT,    /* id, file, sender, size, arrival, body_8bit, smtputf8, is_dsn, envid */
    QST_RCPT_INSERT,   /* msg_id, rcpt, domain, next_attempt */
    QST_RCPT_GET,      /* state, msg_id of a recipient row */
    QST_RCPT_DONE,     /* record one attempt's result */
    QST_MSG_GC,        /* file of a message with nothing left to do */
    QST_MSG_DEL_RCPTS, /* delete a message's recipient rows */
    QST_MSG_DEL,       /* delete a message row */
    QST_MSG_FILE,      /* file of a message */
    QST_FILE_KNOWN,    /* is a file named by a message row? */
    QST_DSN_MARK,      /* a recipient's DSN sent (failed) or warned (pending) */
    QST_COUNT
};

struct queue {
    char dir[PATH_MAX]; /* DATA/queue */
    sqlite3 *db;        /* queue.sqlite */
    int lock_fd;        /* DATA/queue/queue.lock: queue_add shared, queue_recover exclusive */
    sqlite3_stmt *stmt[QST_COUNT];
};

/* A list of short names: message files to unlink once the transaction
 * that dropped their rows has committed, or message ids. Zero-initialise;
 * queue_names_free. */
struct queue_names {
    char (*v)[QUEUE_FILE_MAX];
    size_t n, cap;
};
int queue_names_add(struct queue_names *l, const char *name);
/* Unlink every file from DATA/queue/msg (after COMMIT); ENOENT is fine
 * (queue_recover or another process may have been first). */
void queue_names_unlink(struct queue *q, const struct queue_names *l);
void queue_names_free(struct queue_names *l);

/* "<what>: <sqlite message>" into err; returns -1. */
int queue_db_fail(struct queue *q, char *err, size_t errlen, const char *what);
/* Run sql (no rows), retrying while another connection holds a lock. */
int queue_db_exec(struct queue *q, const char *sql, char *err, size_t errlen);
/* BEGIN IMMEDIATE, waiting for other writers. */
int queue_begin(struct queue *q, char *err, size_t errlen);
/* COMMIT, or roll back and fail. */
int queue_commit(struct queue *q, char *err, size_t errlen);
/* ROLLBACK if a transaction is open. */
void queue_rollback(struct queue *q);
/* The cached statement `which`, prepared on first use, reset and with
 * bindings cleared. NULL with err. The caller calls queue_stmt_done. */
sqlite3_stmt *queue_stmt(struct queue *q, enum queue_stmt_id which, char *err, size_t errlen);
void queue_stmt_done(sqlite3_stmt *s);
/* Step a bound write statement to its end and reset it. 0 or -1. */
int queue_stmt_run(struct queue *q, sqlite3_stmt *s, const char *what, char *err, size_t errlen);
/* flock(q->lock_fd, op), retrying on EINTR. */
int queue_flock(struct queue *q, int op);

/* Inside a write transaction: when message msg_id has no pending
 * recipient and none whose DSN is still needed, delete its rows and add
 * its file to files. 1 removed, 0 kept, -1 error. */
int queue_msg_gc(struct queue *q, const char *msg_id, struct queue_names *files, char *err,
                 size_t errlen);
/* The same for every message (expire, recover). Count removed, or -1. */
int queue_msg_gc_all(struct queue *q, struct queue_names *files, char *err, size_t errlen);
/* queue_dsn_sent inside the caller's write transaction: messages that
 * may go have their files added to files. 0 or -1. */
int queue_dsn_sent_tx(struct queue *q, const int64_t *rcpt_ids, size_t n, struct queue_names *files,
                      char *err, size_t errlen);

#endif
