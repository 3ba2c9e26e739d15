/* deliver — local delivery of accepted messages and queueing of the
 * copies for other domains, on the worker threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "daemon/daemon.h"
#include "lib/log.h"
#include "mime/mime.h"
#include "mime/mime_imap.h"
#include "proto/smtp/received.h"
#include "proto/smtp/submission.h"
#include "queue/queue.h"
#include "store/store.h"

struct deliver_worker {
    struct store *st;
    struct queue *q;
};

static void *deliver_ctx_new(void *arg)
{
    const char *data_dir = arg;
    struct deliver_worker *w = calloc(1, sizeof(*w));
    char err[512];
    if (!w)
        return NULL;
    if (store_open(&w->st, data_dir, err, sizeof(err)) < 0 ||
        queue_open(&w->q, data_dir, err, sizeof(err)) < 0) {
        log_error("deliver", "event=store_open_failed error=\"%s\"", err);
        store_close(&w->st);
        free(w);
        return NULL;
    }
    return w;
}

static void deliver_ctx_free(void *ctx)
{
    struct deliver_worker *w = ctx;
    if (!w)
        return;
    store_close(&w->st);
    queue_close(&w->q);
    free(w);
}

/* The job's copy for the queue: durable when this returns 0. */
static int deliver_job_queue(struct deliver_worker *w, struct deliver_job *job)
{
    struct iovec iov[2] = {
        {.iov_base = (void *)buf_ptr(&job->qprefix), .iov_len = buf_size(&job->qprefix)},
        {.iov_base = (void *)job->msg, .iov_len = job->msg_len},
    };
    struct queue_new qn = {
        .sender = job->sender,
        .rcpts = job->remote,
        .nrcpts = job->nremote,
        .iov = iov,
        .iovcnt = 2,
        .body_8bit = job->body_8bit,
        .smtputf8 = job->smtputf8,
        .now = time(NULL),
    };
    char err[256];
    if (queue_add(w->q, &qn, job->queue_id, sizeof(job->queue_id), err, sizeof(err)) < 0) {
        log_error("deliver", "event=queue_failed error=\"%s\"", err);
        return -1;
    }
    return 0;
}

/* What the index caches of the job's message (ENVELOPE, BODYSTRUCTURE,
 * search fields), so that FETCH and SEARCH need not parse it again. The
 * trace fields we prepend are not part of any of them, so the message as
 * received is parsed, once per job. Whatever fails stays uncached and is
 * computed from the file when needed. */
static void deliver_job_cache(struct deliver_job *job)
{
    if (job->n == 0)
        return;
    mime_index_cache_compute(job->msg, job->msg_len, NULL, &job->cache);
    for (size_t i = 0; i < job->n; i++) {
        struct store_delivery *dl = &job->deliveries[i];
        dl->envelope = job->cache.envelope;
        dl->bodystructure = job->cache.bodystructure;
        dl->search_fields = buf_size(&job->cache.fields) ? buf_ptr(&job->cache.fields) : NULL;
        dl->search_fields_len = buf_size(&job->cache.fields);
    }
}

/* All deliveries of the batch go to store_deliver at once: one fsync per
 * touched folder and one index commit per account for the whole batch. */
static void deliver_run_batch(void *ctx, struct work_item **items, size_t n)
{
    struct deliver_worker *w = ctx;
    struct store *st = w ? w->st : NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ((struct deliver_job *)items[i])->n;
    struct store_delivery *all = calloc(total ? total : 1, sizeof(*all));
    if (!st || !all) {
        for (size_t i = 0; i < n; i++)
            ((struct deliver_job *)items[i])->result = -1;
        free(all);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct deliver_job *job = (struct deliver_job *)items[i];
        deliver_job_cache(job);
        memcpy(all + k, job->deliveries, job->n * sizeof(*all));
        k += job->n;
    }
    if (total > 0)
        store_deliver(st, all, total);
    k = 0;
    for (size_t i = 0; i < n; i++) {
        struct deliver_job *job = (struct deliver_job *)items[i];
        job->result = 0;
        for (size_t j = 0; j < job->n; j++, k++) {
            job->deliveries[j].uid_r = all[k].uid_r;
            job->deliveries[j].result_r = all[k].result_r;
            memcpy(job->deliveries[j].err_r, all[k].err_r, sizeof(all[k].err_r));
            if (all[k].result_r != 0)
                job->result = -1;
        }
        if (job->result == 0 && job->nremote > 0 && deliver_job_queue(w, job) < 0)
            job->result = -1;
    }
    free(all);
}

const struct workers_ops deliver_workers_ops = {
    .ctx_new = deliver_ctx_new,
    .ctx_free = deliver_ctx_free,
    .run_batch = deliver_run_batch,
    .arg = NULL, /* set to the data dir by serve */
};

void deliver_job_free(struct deliver_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->n; i++)
        buf_free(&job->prefixes[i]);
    free(job->prefixes);
    free(job->iov);
    free(job->deliveries);
    free(job->remote);
    buf_free(&job->fixed);
    buf_free(&job->qprefix);
    mime_index_cache_free(&job->cache);
    free(job);
}

struct deliver_job *deliver_job_new(const struct smtp_request *req, const char *by_host,
                                    bool submission)
{
    const struct smtp_envelope *env = req->env;
    struct deliver_job *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    size_t nr = env->nrcpts ? env->nrcpts : 1;
    job->deliveries = calloc(nr, sizeof(*job->deliveries));
    job->prefixes = calloc(nr, sizeof(*job->prefixes));
    job->iov = calloc(2 * nr, sizeof(*job->iov));
    job->remote = calloc(nr, sizeof(*job->remote));
    if (!job->deliveries || !job->prefixes || !job->iov || !job->remote) {
        deliver_job_free(job);
        return NULL;
    }
    time_t now = time(NULL);
    job->msg = req->data;
    job->msg_len = req->data_len;
    job->sender = env->mail_from;
    job->body_8bit = env->body_8bit;
    job->smtputf8 = env->smtputf8;
    if (submission) {
        /* RFC 6409 8: Bcc: removed, Date: and Message-ID: added when missing. */
        char id_left[96];
        snprintf(id_left, sizeof(id_left), "%s.%lld", env->txn_id, (long long)now);
        if (smtp_submission_fixup(req->data, req->data_len, by_host, now, id_left, &job->fixed,
                                  NULL) < 0) {
            deliver_job_free(job);
            return NULL;
        }
        job->msg = buf_ptr(&job->fixed);
        job->msg_len = buf_size(&job->fixed);
    }
    for (size_t i = 0; i < env->nrcpts; i++) {
        const struct smtp_rcpt *r = &env->rcpts[i];
        if (r->remote || !r->account) {
            job->remote[job->nremote++] = r->address;
            continue;
        }
        /* Two addresses of one account get one copy. */
        int dup = 0;
        for (size_t j = 0; j < job->n; j++)
            if (strcmp(job->deliveries[j].account, r->account) == 0)
                dup = 1;
        if (dup)
            continue;
        size_t k = job->n++;
        struct smtp_received_info ri = {
            .helo = env->helo, .client_ip = env->client_ip, .by_host = by_host,
            .protocol = env->protocol, .tls_version = env->tls_version,
            .tls_cipher = env->tls_cipher, .id = env->txn_id, .for_rcpt = r->address,
            .when = now,
        };
        if (smtp_return_path_format(&job->prefixes[k], env->mail_from) < 0 ||
            smtp_received_format(&job->prefixes[k], &ri) < 0) {
            deliver_job_free(job);
            return NULL;
        }
        job->iov[2 * k].iov_base = (void *)buf_ptr(&job->prefixes[k]);
        job->iov[2 * k].iov_len = buf_size(&job->prefixes[k]);
        job->iov[2 * k + 1].iov_base = (void *)job->msg;
        job->iov[2 * k + 1].iov_len = job->msg_len;
        job->deliveries[k].account = r->account;
        job->deliveries[k].mailbox = "INBOX";
        job->deliveries[k].iov = &job->iov[2 * k];
        job->deliveries[k].iovcnt = 2;
        job->deliveries[k].internal_date = now;
    }
    if (job->nremote > 0) {
        /* The queued copy's trace field: "for" only with one recipient
         * (RFC 5321 4.4: it must not disclose the others). */
        struct smtp_received_info ri = {
            .helo = env->helo, .client_ip = env->client_ip, .by_host = by_host,
            .protocol = env->protocol, .tls_version = env->tls_version,
            .tls_cipher = env->tls_cipher, .id = env->txn_id,
            .for_rcpt = job->nremote == 1 ? job->remote[0] : NULL, .when = now,
        };
        if (smtp_received_format(&job->qprefix, &ri) < 0) {
            deliver_job_free(job);
            return NULL;
        }
    }
    return job;
}
