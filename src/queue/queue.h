/* queue — the durable outbound queue: messages for other domains wait
 * here until a remote server accepts them, fails them, or they expire.
 *
 * Layout under the data directory DATA:
 *   DATA/queue/queue.sqlite     messages and recipients (WAL, synchronous=FULL)
 *   DATA/queue/msg/NAME         one immutable file per queued message (blob.h rules:
 *                               written to DATA/queue/tmp/, fsynced, renamed, dir fsynced)
 *   DATA/queue/tmp/             files being written
 *   DATA/queue/queue.lock       flock: queue_add shared, queue_recover exclusive
 *
 * One row per message (id, file, sender, size, arrival, flags) and one per
 * (message, recipient) with its state, attempts, next attempt time and
 * last reply. A message row and its file go away when no recipient is
 * left pending (delivered, failed or deleted) and no failed one still
 * waits for its DSN (queue_dsn_sent). The file is unlinked only after
 * the COMMIT that dropped the rows.
 *
 * Durability: queue_add returns 0 only once the file and the rows are on
 * stable storage (the caller may then answer 250). A result
 * (queue_rcpt_done) is committed before the caller acts on it (e.g. sends a
 * DSN), so a crash repeats at most one delivery attempt, never loses a
 * recipient, and never sends a second DSN for one result. queue_recover,
 * at start-up, removes tmp/ leftovers and msg/ files no row names, and
 * fails the pending recipients of a message whose file is missing
 * ("4.3.0 queued file lost", a DSN follows) rather than dropping them;
 * each action is logged.
 *
 * Several processes may use the queue at once (`correio sendmail` and
 * `correio queue ...` while the server runs): every writer uses BEGIN
 * IMMEDIATE with a busy timeout. A struct queue is used by one thread at
 * a time. Functions return 0, or -1 with a message in err (errlen bytes).
 */
#ifndef CORREIO_QUEUE_QUEUE_H
#define CORREIO_QUEUE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

struct queue;

/* Open (creating DATA/queue and its database when missing). */
int queue_open(struct queue **q_r, const char *data_dir, char *err, size_t errlen);
void queue_close(struct queue **q);
/* Crash repair, see above: 0 or -1 (the database could not be repaired;
 * file clean-up errors are only logged). */
int queue_recover(struct queue *q, char *err, size_t errlen);

enum queue_rcpt_state {
    QUEUE_PENDING = 0,  /* waiting for its next attempt */
    QUEUE_DELIVERED,    /* accepted by a remote server (row kept until the message goes) */
    QUEUE_FAILED,       /* permanent failure or expired (a DSN was asked for) */
};

struct queue_new {
    const char *sender;            /* reverse-path without <>; "" for the null path */
    const char *const *rcpts;      /* forward-paths without <> (one queue row each) */
    size_t nrcpts;
    const struct iovec *iov;       /* the message: concatenation of iov[0..iovcnt) */
    int iovcnt;
    bool body_8bit;                /* 8-bit content (needs 8BITMIME) */
    bool smtputf8;                 /* needs SMTPUTF8 */
    const char *envid;             /* DSN ENVID (RFC 3461) or NULL */
    bool is_dsn;                   /* a DSN we made: never bounced itself */
    time_t now;
    /* When this message is the DSN for these recipients (rcpt_ids from
     * queue_dsn_due), their DSN is marked sent in the same transaction
     * (as queue_dsn_sent does), so a crash cannot queue it twice. NULL/0:
     * none. */
    const int64_t *dsn_for;
    size_t ndsn_for;
};

/* Queue one message for its recipients: durable when 0 is returned. The
 * new message id (a short printable string, unique, e.g. "Q" + hex) is
 * written to id_r (n bytes, at least 32). Every recipient is due at once.
 * Fails (nothing queued) without recipients or with a recipient that has
 * no "@domain"; a NULL sender is taken as "". */
int queue_add(struct queue *q, const struct queue_new *m, char *id_r, size_t n, char *err,
              size_t errlen);

struct queue_rcpt {
    int64_t rcpt_id;               /* the recipient row */
    char msg_id[32];
    char *sender;                  /* owned by the list */
    char *rcpt;
    char *domain;                  /* lower-case domain of rcpt */
    enum queue_rcpt_state state;
    unsigned attempts;
    time_t arrival, next_attempt, last_attempt;
    char *last_reply;              /* "" when none; a remote reply ("550 5.1.1 No such
                                    * user") or a local one, status first ("5.0.0 bounced
                                    * by the administrator", "4.4.7 ...", "4.3.0 ...") */
    char file[128];                /* in DATA/queue/msg */
    uint64_t size;
    bool body_8bit, smtputf8, is_dsn;
    char *envid;                   /* NULL when none */
    bool warned;                   /* a delay DSN was sent for it */
};
/* A list owned by the caller: free with queue_list_free (every string). */
struct queue_list {
    struct queue_rcpt *v;
    size_t n;
};
void queue_list_free(struct queue_list *l);

/* Pending recipients with next_attempt <= now, ordered by (domain,
 * msg_id, rcpt_id), at most max of them (0: no limit), so that one
 * transaction per (message, domain) and one connection per domain can be
 * formed. Recipients already being tried are listed again: the caller
 * keeps track of its attempts in flight. */
int queue_due(struct queue *q, time_t now, size_t max, struct queue_list *r, char *err,
              size_t errlen);
/* Every recipient row (pending first, then by arrival, msg_id, rcpt_id),
 * for `queue list`. */
int queue_all(struct queue *q, struct queue_list *r, char *err, size_t errlen);
/* The earliest next_attempt of a pending recipient: 1 and *t_r, or 0 when none. */
int queue_next_due(struct queue *q, time_t *t_r, char *err, size_t errlen);

enum queue_result {
    QUEUE_RESULT_DELIVERED,
    QUEUE_RESULT_DEFERRED,   /* temporary failure: next attempt per the schedule */
    QUEUE_RESULT_FAILED,     /* permanent failure */
};
/* Record one attempt's result for a recipient: attempts+1, last_attempt =
 * now, last_reply = reply; DEFERRED sets next_attempt = next (the caller
 * computes it with queue_next_attempt, dsn.h). When the message has no
 * pending recipient left, its rows and file are removed (after the
 * commit) — except FAILED rows whose DSN was not yet sent (see
 * queue_dsn_*). FAILED of a message from "" or of a DSN marks its DSN
 * sent at once (none is ever made). reply may be NULL (""). 0, or -1
 * (nothing changed) also when the row is gone or no longer pending
 * (deleted, bounced or done by another process meanwhile). */
int queue_rcpt_done(struct queue *q, int64_t rcpt_id, enum queue_result r, const char *reply,
                    time_t now, time_t next, char *err, size_t errlen);

/* DSNs: recipients that failed (or need a delay warning) and whose DSN
 * is not sent yet. A failed recipient of a message from "" or of a DSN
 * never needs one (queue_rcpt_done marks it sent at once).
 *   state QUEUE_FAILED:  Action: failed (its DSN is needed);
 *   state QUEUE_PENDING: Action: delayed — the message arrived at or
 *       before now - warn_after, its sender is not "", it is not a DSN,
 *       and no warning was sent yet (warned false). warn_after <= 0: no
 *       delay warnings at all.
 * Ordered by (msg_id, state: failed first, rcpt_id): one DSN per message
 * and action. The message's file may be missing (recipients failed by
 * queue_recover): queue_msg_read then fails and the DSN goes without the
 * original's header block. */
int queue_dsn_due(struct queue *q, time_t now, time_t warn_after, struct queue_list *r,
                  char *err, size_t errlen);
/* The DSN for these recipients is queued (failed: the rows may go; delayed:
 * `warned` is set), in one transaction. Ids that need nothing (gone,
 * already sent) are skipped. 0 or -1 (nothing changed). Prefer
 * queue_new.dsn_for, which does the same atomically with queueing the
 * DSN: after a separate queue_add, a crash before this call would have
 * the DSN queued twice. */
int queue_dsn_sent(struct queue *q, const int64_t *rcpt_ids, size_t n, char *err, size_t errlen);

/* `queue flush`: every pending recipient due now (next_attempt lowered
 * to now). Returns how many pending recipients there are, or -1. */
int queue_flush(struct queue *q, time_t now, char *err, size_t errlen);
/* `queue delete ID`: remove a message and all its rows (no DSN). 1 done,
 * 0 no such message, -1 error. */
int queue_delete(struct queue *q, const char *msg_id, char *err, size_t errlen);
/* `queue bounce ID`: every pending recipient of the message fails now with
 * status 5.0.0 "bounced by the administrator" (a DSN follows; none for a
 * message from "" or a DSN, which then goes). last_attempt keeps the time
 * of the last real attempt (0: none). 1, 0, -1. */
int queue_bounce(struct queue *q, const char *msg_id, time_t now, char *err, size_t errlen);
/* Expire: pending recipients that arrived before now - max_age fail with
 * 4.4.7, reply "4.4.7 delivery time expired after 5 days" (days, hours or
 * seconds, as max_age divides). A DSN follows, as for queue_bounce.
 * Returns how many (0 when max_age <= 0), or -1. */
int queue_expire(struct queue *q, time_t now, time_t max_age, char *err, size_t errlen);

/* The queued message's bytes (malloc'd, NUL-terminated, NUL not counted;
 * the caller frees *data_r). file is a queue_rcpt's file. 0 or -1. */
int queue_msg_read(struct queue *q, const char *file, uint8_t **data_r, size_t *len_r, char *err,
                   size_t errlen);

#endif
