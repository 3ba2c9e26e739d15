/* deliver — local delivery of accepted messages, on the worker threads. */
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "daemon/daemon.h"
#include "lib/log.h"
#include "mime/mime.h"
#include "mime/mime_imap.h"
#include "proto/smtp/received.h"
#include "store/store.h"

static void *deliver_ctx_new(void *arg)
{
    const char *data_dir = arg;
    struct store *st = NULL;
    char err[512];
    if (store_open(&st, data_dir, err, sizeof(err)) < 0) {
        log_error("deliver", "event=store_open_failed error=\"%s\"", err);
        return NULL;
    }
    return st;
}

static void deliver_ctx_free(void *ctx)
{
    struct store *st = ctx;
    store_close(&st);
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
    const struct iovec *msg = &job->deliveries[0].iov[1];
    mime_index_cache_compute(msg->iov_base, msg->iov_len, NULL, &job->cache);
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
    struct store *st = ctx;
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
    mime_index_cache_free(&job->cache);
    free(job);
}

struct deliver_job *deliver_job_new(const struct smtp_request *req, const char *by_host)
{
    const struct smtp_envelope *env = req->env;
    struct deliver_job *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    job->deliveries = calloc(env->nrcpts ? env->nrcpts : 1, sizeof(*job->deliveries));
    job->prefixes = calloc(env->nrcpts ? env->nrcpts : 1, sizeof(*job->prefixes));
    job->iov = calloc(2 * (env->nrcpts ? env->nrcpts : 1), sizeof(*job->iov));
    if (!job->deliveries || !job->prefixes || !job->iov) {
        deliver_job_free(job);
        return NULL;
    }
    time_t now = time(NULL);
    for (size_t i = 0; i < env->nrcpts; i++) {
        const struct smtp_rcpt *r = &env->rcpts[i];
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
        job->iov[2 * k + 1].iov_base = (void *)req->data;
        job->iov[2 * k + 1].iov_len = req->data_len;
        job->deliveries[k].account = r->account;
        job->deliveries[k].mailbox = "INBOX";
        job->deliveries[k].iov = &job->iov[2 * k];
        job->deliveries[k].iovcnt = 2;
        job->deliveries[k].internal_date = now;
    }
    return job;
}
