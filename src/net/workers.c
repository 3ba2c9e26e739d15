#include "net/workers.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

struct workers {
    const struct workers_ops *ops;
    size_t batch_max;
    unsigned nthreads;
    pthread_t *threads;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct work_item *queue_head, *queue_tail; /* waiting for a worker */
    struct work_item *done_head, *done_tail;   /* waiting for done() on the loop */
    size_t pending;                            /* loop thread only */
    bool stopping;

    struct event *done_ev;
};

static void *workers_main(void *arg)
{
    struct workers *w = arg;
    void *ctx = w->ops->ctx_new ? w->ops->ctx_new(w->ops->arg) : NULL;
    struct work_item **batch = calloc(w->batch_max, sizeof(*batch));
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->queue_head && !w->stopping)
            pthread_cond_wait(&w->cond, &w->lock);
        if (!w->queue_head && w->stopping)
            break;
        size_t n = 0;
        while (w->queue_head && n < w->batch_max && batch) {
            batch[n++] = w->queue_head;
            w->queue_head = w->queue_head->next;
        }
        if (!w->queue_head)
            w->queue_tail = NULL;
        pthread_mutex_unlock(&w->lock);

        w->ops->run_batch(ctx, batch, n);

        pthread_mutex_lock(&w->lock);
        for (size_t i = 0; i < n; i++) {
            batch[i]->next = NULL;
            if (w->done_tail)
                w->done_tail->next = batch[i];
            else
                w->done_head = batch[i];
            w->done_tail = batch[i];
        }
        event_active(w->done_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&w->lock);
    free(batch);
    if (w->ops->ctx_free)
        w->ops->ctx_free(ctx);
    return NULL;
}

/* On the loop thread: call done() of every finished item. */
static void workers_drain_done(struct workers *w)
{
    pthread_mutex_lock(&w->lock);
    struct work_item *it = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (it) {
        struct work_item *next = it->next;
        w->pending--;
        it->done(it);
        it = next;
    }
}

static void workers_done_cb(evutil_socket_t fd, short what, void *arg)
{
    workers_drain_done(arg);
}

struct workers *workers_new(struct event_base *base, unsigned n, size_t batch_max,
                            const struct workers_ops *ops, char *err, size_t errlen)
{
    struct workers *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->ops = ops;
    w->batch_max = batch_max ? batch_max : 1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->done_ev = event_new(base, -1, 0, workers_done_cb, w);
    w->threads = calloc(n, sizeof(*w->threads));
    if (!w->done_ev || !w->threads) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < n; i++) {
        int rc = pthread_create(&w->threads[i], NULL, workers_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(rc));
            goto fail;
        }
        w->nthreads++;
    }
    return w;
fail:
    workers_free(&w);
    return NULL;
}

void workers_submit(struct workers *w, struct work_item *item)
{
    item->next = NULL;
    w->pending++;
    pthread_mutex_lock(&w->lock);
    if (w->queue_tail)
        w->queue_tail->next = item;
    else
        w->queue_head = item;
    w->queue_tail = item;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

size_t workers_pending(const struct workers *w)
{
    return w->pending;
}

void workers_free(struct workers **wp)
{
    struct workers *w = *wp;
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    if (w->done_ev) {
        workers_drain_done(w);
        event_free(w->done_ev);
    }
    free(w->threads);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
    *wp = NULL;
}
