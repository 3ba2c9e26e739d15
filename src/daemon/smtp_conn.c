/* smtp_conn — the SMTP protocol on a conn: feeds the pure smtp_session and
 * answers its requests: recipient look-ups from the store, deliveries
 * through the worker pool, STARTTLS through conn_start_tls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "lib/log.h"
#include "net/workers.h"
#include "store/store.h"

struct smtp_ctx {
    struct smtp_session *sess;
    struct smtp_settings *settings;
    struct deliver_job *job;  /* the delivery in progress, or NULL */
    bool stop_after_delivery; /* SIGTERM came during a delivery */
};

static void smtp_conn_process(struct conn *c, enum smtp_session_status st);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct smtp_settings *smtp_settings_new(const struct config *cfg, bool tls)
{
    struct smtp_settings *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->hostname, sizeof(s->hostname), "%s", cfg->hostname);
    s->session.hostname = s->hostname;
    s->session.limits.max_command_line = cfg->smtp_max_command_line;
    s->session.limits.max_text_line = cfg->smtp_max_text_line;
    s->session.limits.max_message_size = cfg->smtp_max_message_size;
    s->session.limits.max_recipients = cfg->smtp_max_recipients;
    s->session.limits.max_errors = cfg->smtp_max_errors;
    s->session.starttls_available = tls;
    s->session.expn_enabled = cfg->smtp_expn;
    s->timeout = cfg->smtp_timeout;
    s->refs = 1;
    return s;
}

void smtp_settings_put(struct smtp_settings *s)
{
    if (s && --s->refs == 0)
        free(s);
}

static void smtp_conn_deliver_done(struct work_item *item)
{
    struct deliver_job *job = (struct deliver_job *)item;
    struct conn *c = job->conn;
    struct smtp_ctx *x = c->ctx;
    const struct smtp_request *req = smtp_session_request(x->sess);
    unsigned ms = (unsigned)((now_us() - job->started_us) / 1000);
    for (size_t i = 0; i < job->n; i++) {
        const struct store_delivery *dl = &job->deliveries[i];
        if (dl->result_r == 0)
            log_info("deliver", "event=stored id=%s account=%s mailbox=INBOX uid=%u ms=%u",
                     req->env->txn_id, dl->account, dl->uid_r, ms);
        else
            log_error("deliver", "event=failed id=%s account=%s error=\"%s\"", req->env->txn_id,
                      dl->account, dl->err_r);
    }
    log_info("smtp", "event=message id=%s from=<%s> rcpts=%zu size=%zu result=%s ms=%u",
             req->env->txn_id, req->env->mail_from, req->env->nrcpts, req->data_len,
             job->result == 0 ? "stored" : "tempfail", ms);
    enum smtp_deliver_result res = job->result == 0 ? SMTP_DELIVER_OK : SMTP_DELIVER_TEMPFAIL;
    if (job->result == 0)
        for (size_t i = 0; i < job->n; i++)
            daemon_mailbox_changed(c->d, job->deliveries[i].account);
    x->job = NULL;
    deliver_job_free(job);
    enum smtp_session_status st = smtp_session_deliver_done(x->sess, res, &c->out);
    if (!conn_job_end(c))
        return;
    if (x->stop_after_delivery) {
        conn_flush(c);
        smtp_session_shutdown(x->sess, &c->out);
        conn_close(c);
        return;
    }
    smtp_conn_process(c, st);
    if (!c->closing && !x->job)
        conn_resume(c);
}

static enum smtp_session_status smtp_conn_lookup_rcpt(struct conn *c, const char *rcpt)
{
    struct smtp_ctx *x = c->ctx;
    char account[320];
    enum store_lookup r = store_account_lookup(c->d->store, rcpt, account, sizeof(account), NULL, 0);
    /* RFC 5321 4.5.1: postmaster must be accepted for every local domain;
     * without an account of that name it goes to smtp.postmaster. */
    const char *at = strrchr(rcpt, '@');
    size_t local_len = at ? (size_t)(at - rcpt) : strlen(rcpt);
    if (r != STORE_LOOKUP_FOUND && r != STORE_LOOKUP_ERROR && (at ? r == STORE_LOOKUP_NO_USER : 1) &&
        local_len == 10 && strncasecmp(rcpt, "postmaster", 10) == 0 &&
        c->d->cfg.smtp_postmaster[0] != '\0')
        r = store_account_lookup(c->d->store, c->d->cfg.smtp_postmaster, account, sizeof(account),
                                 NULL, 0);
    char q[400];
    log_debug("smtp", "event=rcpt id=%s rcpt=%s lookup=%d", c->id, log_quote(q, sizeof(q), rcpt),
              (int)r);
    switch (r) {
    case STORE_LOOKUP_FOUND:
        return smtp_session_rcpt_done(x->sess, SMTP_RCPT_OK, account, &c->out);
    case STORE_LOOKUP_NO_USER:
        return smtp_session_rcpt_done(x->sess, SMTP_RCPT_NO_USER, NULL, &c->out);
    case STORE_LOOKUP_NO_DOMAIN:
        return smtp_session_rcpt_done(x->sess, SMTP_RCPT_RELAY_DENIED, NULL, &c->out);
    default:
        log_error("smtp", "event=rcpt_lookup_failed id=%s", c->id);
        return smtp_session_rcpt_done(x->sess, SMTP_RCPT_TEMPFAIL, NULL, &c->out);
    }
}

/* Answer the session's requests until it needs input or waits on a worker. */
static void smtp_conn_process(struct conn *c, enum smtp_session_status st)
{
    struct smtp_ctx *x = c->ctx;
    for (;;) {
        if (st == SMTP_SESSION_CLOSE) {
            conn_close(c);
            return;
        }
        const struct smtp_request *req = smtp_session_request(x->sess);
        if (!req || req->type == SMTP_REQ_NONE) {
            conn_flush(c);
            return;
        }
        switch (req->type) {
        case SMTP_REQ_RCPT:
            st = smtp_conn_lookup_rcpt(c, req->rcpt);
            continue;
        case SMTP_REQ_DELIVER:
            conn_flush(c);
            x->job = deliver_job_new(req, x->settings->hostname);
            if (!x->job) {
                st = smtp_session_deliver_done(x->sess, SMTP_DELIVER_TEMPFAIL, &c->out);
                continue;
            }
            x->job->conn = c;
            x->job->item.done = smtp_conn_deliver_done;
            x->job->started_us = now_us();
            conn_pause(c); /* the session would only buffer; stop reading for now */
            conn_job_begin(c);
            workers_submit(c->d->workers, &x->job->item);
            return;
        case SMTP_REQ_STARTTLS:
            conn_start_tls(c);
            return;
        default:
            return;
        }
    }
}

static int smtp_conn_open(struct conn *c)
{
    struct smtp_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return -1;
    x->settings = c->d->smtp;
    x->settings->refs++;
    x->sess = smtp_session_new(&x->settings->session, c->ip, c->id);
    c->ctx = x;
    if (!x->sess)
        return -1;
    smtp_session_start(x->sess, &c->out);
    return 0;
}

static void smtp_conn_input(struct conn *c, const uint8_t *data, size_t len)
{
    struct smtp_ctx *x = c->ctx;
    smtp_conn_process(c, smtp_session_feed(x->sess, data, len, &c->out));
}

static void smtp_conn_tls_ready(struct conn *c, bool ok, const char *version, const char *cipher)
{
    struct smtp_ctx *x = c->ctx;
    smtp_conn_process(c, smtp_session_tls_done(x->sess, ok, version, cipher, &c->out));
}

static void smtp_conn_timeout(struct conn *c)
{
    struct smtp_ctx *x = c->ctx;
    smtp_session_timeout(x->sess, &c->out);
}

static void smtp_conn_shutdown(struct conn *c)
{
    struct smtp_ctx *x = c->ctx;
    if (x->job) {
        x->stop_after_delivery = true;
        return;
    }
    conn_flush(c);
    smtp_session_shutdown(x->sess, &c->out);
    conn_close(c);
}

static void smtp_conn_destroy(struct conn *c)
{
    struct smtp_ctx *x = c->ctx;
    if (!x)
        return;
    smtp_session_free(&x->sess);
    smtp_settings_put(x->settings);
    free(x);
    c->ctx = NULL;
}

const struct conn_proto smtp_conn_proto = {
    .name = "smtp",
    .refusal = "421 4.7.0 %s Error: %s\r\n",
    .open = smtp_conn_open,
    .input = smtp_conn_input,
    .tls_ready = smtp_conn_tls_ready,
    .timeout = smtp_conn_timeout,
    .shutdown = smtp_conn_shutdown,
    .destroy = smtp_conn_destroy,
};
