/* workers — a small thread pool for work that blocks (fsync, SQLite
 * commits), so the event loop never waits on the disk.
 *
 * Items are queued from the loop thread. A worker takes every queued item
 * at once (up to a batch limit) and hands the batch to run_batch: that is
 * where group commit happens (one directory fsync and one index commit
 * for many messages). Each item's done() is then called back on the loop
 * thread. Each worker has a context made by ctx_new on its own thread
 * (e.g. its own store connections) and freed by ctx_free.
 */
#ifndef CORREIO_NET_WORKERS_H
#define CORREIO_NET_WORKERS_H

#include <stddef.h>

struct event_base;

struct work_item {
    struct work_item *next; /* owned by the pool while queued */
    void (*done)(struct work_item *item); /* on the loop thread */
    /* Optional, for pools whose run_batch dispatches item by item (the
     * mailbox pool runs IMAP commands and POP3 jobs): the work itself, on
     * the worker thread with its context. */
    void (*run)(void *ctx, struct work_item *item);
};

struct workers_ops {
    void *(*ctx_new)(void *arg);    /* on the worker thread; NULL = failure (logged) */
    void (*ctx_free)(void *ctx);
    void (*run_batch)(void *ctx, struct work_item **items, size_t n); /* on the worker thread */
    void *arg;
};

struct workers;

/* Start n threads. NULL on failure (with err). libevent must have been
 * told to use pthreads (evthread_use_pthreads) before base was made. */
struct workers *workers_new(struct event_base *base, unsigned n, size_t batch_max,
                            const struct workers_ops *ops, char *err, size_t errlen);
/* Queue an item; its done() runs later on the loop thread. */
void workers_submit(struct workers *w, struct work_item *item);
/* Items queued or running whose done() has not run yet. */
size_t workers_pending(const struct workers *w);
/* Stop the threads after the queue is empty, run outstanding done()s, free. */
void workers_free(struct workers **w);

#endif
