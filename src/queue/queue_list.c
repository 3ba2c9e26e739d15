/* queue_list — reading the queue (queue.h): due recipients, the whole
 * queue, the next due time and the DSNs to send. Readers take no write
 * lock: in WAL mode they see the last committed state.
 */
#include "queue/queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The columns every list reads, in the order queue_row_read expects. */
#define QUEUE_SQL_COLS                                                                             \
    "SELECT r.id, r.msg_id, m.sender, r.rcpt, r.domain, r.state, r.attempts, m.arrival, "          \
    "r.next_attempt, r.last_attempt, r.last_reply, m.file, m.size, m.body_8bit, m.smtputf8, "      \
    "m.is_dsn, m.envid, r.warned FROM recipients r JOIN messages m ON m.id = r.msg_id "

void queue_list_free(struct queue_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        struct queue_rcpt *r = &l->v[i];
        free(r->sender);
        free(r->rcpt);
        free(r->domain);
        free(r->last_reply);
        free(r->envid);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static char *queue_col_dup(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    return strdup(t ? t : "");
}

static enum queue_rcpt_state queue_state_parse(const char *s)
{
    if (s && strcmp(s, QS_DELIVERED) == 0)
        return QUEUE_DELIVERED;
    if (s && strcmp(s, QS_FAILED) == 0)
        return QUEUE_FAILED;
    return QUEUE_PENDING;
}

/* Fill r from the current row of s (QUEUE_SQL_COLS). 0, or -1 when out
 * of memory (r's strings then freed by the caller's queue_list_free). */
static int queue_row_read(sqlite3_stmt *s, struct queue_rcpt *r)
{
    memset(r, 0, sizeof(*r));
    r->rcpt_id = sqlite3_column_int64(s, 0);
    snprintf(r->msg_id, sizeof(r->msg_id), "%s", (const char *)sqlite3_column_text(s, 1));
    r->sender = queue_col_dup(s, 2);
    r->rcpt = queue_col_dup(s, 3);
    r->domain = queue_col_dup(s, 4);
    r->state = queue_state_parse((const char *)sqlite3_column_text(s, 5));
    r->attempts = (unsigned)sqlite3_column_int64(s, 6);
    r->arrival = (time_t)sqlite3_column_int64(s, 7);
    r->next_attempt = (time_t)sqlite3_column_int64(s, 8);
    r->last_attempt = (time_t)sqlite3_column_int64(s, 9);
    r->last_reply = queue_col_dup(s, 10);
    snprintf(r->file, sizeof(r->file), "%s", (const char *)sqlite3_column_text(s, 11));
    r->size = (uint64_t)sqlite3_column_int64(s, 12);
    r->body_8bit = sqlite3_column_int(s, 13) != 0;
    r->smtputf8 = sqlite3_column_int(s, 14) != 0;
    r->is_dsn = sqlite3_column_int(s, 15) != 0;
    if (sqlite3_column_type(s, 16) != SQLITE_NULL && !(r->envid = queue_col_dup(s, 16)))
        return -1;
    r->warned = sqlite3_column_int(s, 17) != 0;
    return r->sender && r->rcpt && r->domain && r->last_reply ? 0 : -1;
}

/* Step the bound statement s (finalized here) into a new list *l. */
static int queue_list_run(struct queue *q, sqlite3_stmt *s, struct queue_list *l, char *err,
                          size_t errlen)
{
    size_t cap = 0;
    int rc;
    l->v = NULL;
    l->n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (l->n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct queue_rcpt *v = realloc(l->v, ncap * sizeof(*v));
            if (!v)
                break;
            l->v = v;
            cap = ncap;
        }
        if (queue_row_read(s, &l->v[l->n++]) < 0)
            break;
    }
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_ROW)
            err_set(err, errlen, "out of memory");
        else
            queue_db_fail(q, err, errlen, "read queue");
        sqlite3_finalize(s);
        queue_list_free(l);
        return -1;
    }
    sqlite3_finalize(s);
    return 0;
}

static int queue_prepare(struct queue *q, const char *sql, sqlite3_stmt **s, char *err,
                         size_t errlen)
{
    if (sqlite3_prepare_v2(q->db, sql, -1, s, NULL) != SQLITE_OK) {
        *s = NULL;
        return queue_db_fail(q, err, errlen, "prepare");
    }
    return 0;
}

int queue_due(struct queue *q, time_t now, size_t max, struct queue_list *r, char *err,
              size_t errlen)
{
    sqlite3_stmt *s;
    r->v = NULL;
    r->n = 0;
    if (queue_prepare(q,
                      QUEUE_SQL_COLS "WHERE r.state = '" QS_PENDING "' AND r.next_attempt <= ? "
                                     "ORDER BY r.domain, r.msg_id, r.id LIMIT ?",
                      &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)now);
    sqlite3_bind_int64(s, 2, max == 0 || max > INT64_MAX ? -1 : (sqlite3_int64)max);
    return queue_list_run(q, s, r, err, errlen);
}

int queue_all(struct queue *q, struct queue_list *r, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    r->v = NULL;
    r->n = 0;
    if (queue_prepare(q,
                      QUEUE_SQL_COLS "ORDER BY r.state <> '" QS_PENDING "', m.arrival, r.msg_id, "
                                     "r.id",
                      &s, err, errlen) < 0)
        return -1;
    return queue_list_run(q, s, r, err, errlen);
}

int queue_next_due(struct queue *q, time_t *t_r, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    if (queue_prepare(q, "SELECT min(next_attempt) FROM recipients WHERE state = '" QS_PENDING "'",
                      &s, err, errlen) < 0)
        return -1;
    int rc = sqlite3_step(s), found = 0;
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
        *t_r = (time_t)sqlite3_column_int64(s, 0);
        found = 1;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return queue_db_fail(q, err, errlen, "read next due time");
    return found;
}

int queue_dsn_due(struct queue *q, time_t now, time_t warn_after, struct queue_list *r, char *err,
                  size_t errlen)
{
    sqlite3_stmt *s;
    r->v = NULL;
    r->n = 0;
    /* Failed rows by dsn_state; delay warnings by the due index (pending
     * rows), then filtered on the message. */
    if (queue_prepare(q,
                      QUEUE_SQL_COLS "WHERE r.dsn_state = '" QD_NEEDED "' AND r.state = '" QS_FAILED
                                     "' UNION ALL " QUEUE_SQL_COLS
                                     "WHERE ?1 > 0 AND r.state = '" QS_PENDING
                                     "' AND r.warned = 0 AND m.arrival <= ?2 - ?1 "
                                     "AND m.is_dsn = 0 AND m.sender NOT IN ('', '<>') "
                                     "ORDER BY 2, 6, 1",
                      &s, err, errlen) < 0)
        return -1;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)warn_after);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)now);
    return queue_list_run(q, s, r, err, errlen);
}
