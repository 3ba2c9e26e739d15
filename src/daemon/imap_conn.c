/* imap_conn — the IMAP protocol on a conn: feeds the imap_session, runs
 * its commands on the IMAP worker pool, tells sessions of an account
 * about each other's changes and about deliveries. */
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "lib/log.h"
#include "net/workers.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

struct imap_ctx {
    struct imap_session *sess;
    struct imap_settings *settings;
    struct work_item item;    /* the command running on a worker */
    struct conn *conn;
    bool running;             /* item is queued or running */
    bool stop_after_command;  /* SIGTERM came while a command ran */
    struct event *delay_ev;   /* holds the replies of a failed login */
};

struct imap_settings *imap_settings_new(const struct config *cfg, bool tls)
{
    struct imap_settings *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->hostname, sizeof(s->hostname), "%s", cfg->hostname);
    s->session.hostname = s->hostname;
    s->session.starttls_available = tls;
    s->session.allow_plaintext_auth = cfg->imap_allow_plaintext_auth;
    s->session.max_bad_commands = cfg->imap_max_bad_commands;
    s->session.max_line = cfg->imap_max_line;
    s->session.append_limit = cfg->imap_append_limit;
    s->refs = 1;
    return s;
}

void imap_settings_put(struct imap_settings *s)
{
    if (s && --s->refs == 0)
        free(s);
}

/* Worker pool: each worker has its own store; commands run one by one. */
static void *imap_worker_ctx_new(void *arg)
{
    struct store *st = NULL;
    char err[512];
    if (store_open(&st, arg, err, sizeof(err)) < 0) {
        log_error("imap", "event=store_open_failed error=\"%s\"", err);
        return NULL;
    }
    return st;
}

static void imap_worker_ctx_free(void *ctx)
{
    struct store *st = ctx;
    store_close(&st);
}

static void imap_worker_run(void *ctx, struct work_item **items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (items[i]->run) { /* a POP3 job (pop3_conn.c) */
            items[i]->run(ctx, items[i]);
            continue;
        }
        struct imap_ctx *x = (struct imap_ctx *)((char *)items[i] - offsetof(struct imap_ctx, item));
        imap_session_execute(x->sess, ctx);
    }
}

const struct workers_ops imap_workers_ops = {
    .ctx_new = imap_worker_ctx_new,
    .ctx_free = imap_worker_ctx_free,
    .run_batch = imap_worker_run,
};

static void imap_conn_process(struct conn *c, enum imap_session_status st);

static void imap_conn_finish(struct conn *c)
{
    struct imap_ctx *x = c->ctx;
    bool changed = imap_session_take_changed(x->sess);
    x->running = false; /* in flight from submit until here, delay included */
    enum imap_session_status st = imap_session_execute_done(x->sess, &c->out);
    if (x->stop_after_command) {
        conn_flush(c);
        imap_session_shutdown(x->sess, &c->out);
        conn_close(c);
        return;
    }
    /* The other sessions hear of it once this one's request cycle is over. */
    const char *account = imap_session_account(x->sess);
    if (changed && account) {
        char acct[320];
        snprintf(acct, sizeof(acct), "%s", account);
        daemon_mailbox_changed(c->d, acct);
    }
    imap_conn_process(c, st);
    if (!c->closing && !x->running)
        conn_resume(c);
}

static void imap_conn_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    imap_conn_finish(arg);
}

static void imap_conn_done(struct work_item *item)
{
    struct imap_ctx *x = (struct imap_ctx *)((char *)item - offsetof(struct imap_ctx, item));
    struct conn *c = x->conn;
    if (!conn_job_end(c))
        return;
    unsigned ms = imap_session_delay_ms(x->sess);
    if (ms > 0) {
        if (!x->delay_ev)
            x->delay_ev = evtimer_new(c->d->base, imap_conn_delay_cb, c);
        if (x->delay_ev) {
            struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
            evtimer_add(x->delay_ev, &tv);
            return;
        }
    }
    imap_conn_finish(c);
}

static void imap_conn_process(struct conn *c, enum imap_session_status st)
{
    struct imap_ctx *x = c->ctx;
    if (st == IMAP_SESSION_CLOSE) {
        conn_close(c);
        return;
    }
    switch (imap_session_request(x->sess)) {
    case IMAP_REQ_EXECUTE:
        if (x->running)
            return;
        conn_flush(c);
        x->running = true;
        x->item.done = imap_conn_done;
        conn_pause(c);
        conn_job_begin(c);
        workers_submit(c->d->imap_workers, &x->item);
        return;
    case IMAP_REQ_STARTTLS:
        conn_start_tls(c);
        return;
    default:
        conn_flush(c);
        return;
    }
}

static int imap_conn_open(struct conn *c)
{
    struct imap_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return -1;
    x->conn = c;
    x->settings = c->d->imap;
    x->settings->refs++;
    x->sess = imap_session_new(&x->settings->session, c->ip, c->id, c->tls_active);
    c->ctx = x;
    if (!x->sess)
        return -1;
    imap_session_start(x->sess, &c->out);
    return 0;
}

static void imap_conn_input(struct conn *c, const uint8_t *data, size_t len)
{
    struct imap_ctx *x = c->ctx;
    imap_conn_process(c, imap_session_feed(x->sess, data, len, &c->out));
}

static void imap_conn_tls_ready(struct conn *c, bool ok, const char *version, const char *cipher)
{
    struct imap_ctx *x = c->ctx;
    imap_conn_process(c, imap_session_tls_done(x->sess, ok, &c->out));
}

static void imap_conn_timeout(struct conn *c)
{
    struct imap_ctx *x = c->ctx;
    imap_session_timeout(x->sess, &c->out);
}

static void imap_conn_shutdown(struct conn *c)
{
    struct imap_ctx *x = c->ctx;
    if (x->running) {
        x->stop_after_command = true;
        return;
    }
    conn_flush(c);
    imap_session_shutdown(x->sess, &c->out);
    conn_close(c);
}

static void imap_conn_notify(struct conn *c, const char *account)
{
    struct imap_ctx *x = c->ctx;
    const char *mine = imap_session_account(x->sess);
    if (!mine || strcmp(mine, account) != 0)
        return;
    if (x->running) { /* its request is in flight: the session notes it */
        imap_session_notify(x->sess, &c->out);
        return;
    }
    imap_conn_process(c, imap_session_notify(x->sess, &c->out));
    conn_flush(c);
}

static void imap_conn_destroy(struct conn *c)
{
    struct imap_ctx *x = c->ctx;
    if (!x)
        return;
    if (x->delay_ev)
        event_free(x->delay_ev);
    imap_session_free(&x->sess);
    imap_settings_put(x->settings);
    free(x);
    c->ctx = NULL;
}

const struct conn_proto imap_conn_proto = {
    .name = "imap",
    .refusal = "* BYE %.0s%s\r\n",
    .open = imap_conn_open,
    .input = imap_conn_input,
    .tls_ready = imap_conn_tls_ready,
    .timeout = imap_conn_timeout,
    .shutdown = imap_conn_shutdown,
    .destroy = imap_conn_destroy,
    .notify = imap_conn_notify,
};
