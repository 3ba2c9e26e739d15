/* smtp_conn — the SMTP protocol on a conn, as the MX (port 25) and for
 * submission (587, 465): feeds the pure smtp_session and answers its
 * requests: recipient look-ups from the store, deliveries (and the queue
 * for other domains) through the worker pool, STARTTLS through
 * conn_start_tls, and for submission AUTH (PLAIN and LOGIN checked with
 * yescrypt on the mailbox worker pool, SCRAM-SHA-256 on the loop thread:
 * its keys need no slow hashing) and the sender checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <time.h>

#include "auth/scram.h"
#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "lib/base64.h"
#include "lib/log.h"
#include "net/workers.h"
#include "store/store.h"

struct smtp_ctx {
    struct smtp_session *sess;
    struct smtp_settings *settings;
    struct deliver_job *job;  /* the delivery in progress, or NULL */
    bool stop_after_delivery; /* SIGTERM came during a delivery */
    bool submission;
    struct conn *conn;
    /* AUTH */
    struct work_item auth_item; /* PLAIN/LOGIN password check on a worker */
    bool auth_running;
    char auth_user[320];
    char auth_pass[1024];
    char auth_account[320];
    int auth_result;            /* 1 ok, 0 wrong, -1 error */
    struct scram_server *scram;
    bool scram_final_sent;      /* server-final went out: the client's empty answer is next */
    struct event *delay_ev;     /* holds the answer to a failed AUTH */
};

static void smtp_conn_process(struct conn *c, enum smtp_session_status st);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct smtp_settings *smtp_settings_new(const struct config *cfg, bool tls, bool submission)
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
    s->session.expn_enabled = cfg->smtp_expn && !submission;
    s->session.submission = submission;
    s->session.allow_plaintext_auth = cfg->submission_allow_plaintext_auth;
    s->session.auth_mechanisms = "PLAIN LOGIN SCRAM-SHA-256";
    s->timeout = submission ? cfg->submission_timeout : cfg->smtp_timeout;
    s->max_auth_failures_per_ip = cfg->submission_max_auth_failures_per_ip;
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
    if (job->nremote > 0 && job->result == 0)
        log_info("deliver", "event=queued id=%s queue_id=%s rcpts=%zu", req->env->txn_id,
                 job->queue_id, job->nremote);
    log_info(c->proto->name, "event=message id=%s from=<%s> rcpts=%zu size=%zu result=%s ms=%u",
             req->env->txn_id, req->env->mail_from, req->env->nrcpts, req->data_len,
             job->result == 0 ? "stored" : "tempfail", ms);
    if (job->nremote > 0 && job->result == 0)
        outbound_kick(c->d);
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
    if (x->submission && r == STORE_LOOKUP_NO_DOMAIN) /* authenticated: relay via the queue */
        return smtp_session_rcpt_done(x->sess, SMTP_RCPT_REMOTE, NULL, &c->out);
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

/* A From: that is the account's own (RFC 6409 6.1, 8.1: the MSA may
 * refuse what it cannot vouch for). No From: at all is refused too. */
static bool smtp_conn_from_ok(const struct smtp_envelope *env)
{
    if (!env->auth_account || env->nfrom_addrs == 0)
        return false;
    for (size_t i = 0; i < env->nfrom_addrs; i++)
        if (strcasecmp(env->from_addrs[i], env->auth_account) != 0)
            return false;
    return true;
}

/* A process-wide random secret for the SCRAM answers about unknown users. */
static uint8_t smtp_scram_secret[32];
static bool smtp_scram_secret_set;

static void smtp_conn_auth_finish(struct conn *c)
{
    struct smtp_ctx *x = c->ctx;
    enum smtp_auth_result r = x->auth_result > 0    ? SMTP_AUTH_OK
                              : x->auth_result == 0 ? SMTP_AUTH_FAILED
                                                    : SMTP_AUTH_TEMPFAIL;
    x->auth_running = false;
    OPENSSL_cleanse(x->auth_pass, sizeof(x->auth_pass));
    scram_server_free(&x->scram);
    x->scram_final_sent = false;
    if (r == SMTP_AUTH_OK)
        log_info("submission", "event=auth id=%s account=%s", c->id, x->auth_account);
    enum smtp_session_status st =
        smtp_session_auth_done(x->sess, r, r == SMTP_AUTH_OK ? x->auth_account : NULL, &c->out);
    if (x->stop_after_delivery) {
        conn_flush(c);
        smtp_session_shutdown(x->sess, &c->out);
        conn_close(c);
        return;
    }
    smtp_conn_process(c, st);
    if (!c->closing && !x->job && !x->auth_running)
        conn_resume(c);
}

static void smtp_conn_auth_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    smtp_conn_auth_finish(arg);
}

/* The exchange is decided: answer now, or after a delay when it failed. */
static void smtp_conn_auth_answer(struct conn *c)
{
    struct smtp_ctx *x = c->ctx;
    if (x->auth_result == 0) {
        char q[400];
        unsigned n = authfail_add(c->ip);
        log_info("submission", "event=auth_failed id=%s ip=%s user=%s failures=%u", c->id, c->ip,
                 log_quote(q, sizeof(q), x->auth_user), n);
        unsigned secs = n < 5 ? n : 5;
        if (!x->delay_ev)
            x->delay_ev = evtimer_new(c->d->base, smtp_conn_auth_delay_cb, c);
        if (x->delay_ev) {
            x->auth_running = true;
            conn_pause(c);
            struct timeval tv = {.tv_sec = secs, .tv_usec = 0};
            evtimer_add(x->delay_ev, &tv);
            return;
        }
    }
    smtp_conn_auth_finish(c);
}

static void smtp_conn_auth_run(void *wctx, struct work_item *item)
{
    struct smtp_ctx *x = (struct smtp_ctx *)((char *)item - offsetof(struct smtp_ctx, auth_item));
    struct store *st = wctx;
    x->auth_result = st ? store_account_authenticate(st, x->auth_user, x->auth_pass,
                                                     x->auth_account, sizeof(x->auth_account))
                        : -1;
    OPENSSL_cleanse(x->auth_pass, sizeof(x->auth_pass));
}

static void smtp_conn_auth_done_cb(struct work_item *item)
{
    struct smtp_ctx *x = (struct smtp_ctx *)((char *)item - offsetof(struct smtp_ctx, auth_item));
    struct conn *c = x->conn;
    if (!conn_job_end(c))
        return;
    smtp_conn_auth_answer(c);
}

/* SCRAM-SHA-256 on the loop thread. true when answered at once (st set). */
static bool smtp_conn_scram(struct conn *c, const struct smtp_request *req,
                            enum smtp_session_status *st)
{
    struct smtp_ctx *x = c->ctx;
    struct buf out = BUF_INIT;
    if (req->auth_first) {
        scram_server_free(&x->scram);
        x->scram_final_sent = false;
        if (!smtp_scram_secret_set) {
            RAND_bytes(smtp_scram_secret, sizeof(smtp_scram_secret));
            smtp_scram_secret_set = true;
        }
        uint8_t rnd[18];
        struct buf nonce = BUF_INIT;
        if (RAND_bytes(rnd, sizeof(rnd)) == 1 && base64_encode(&nonce, rnd, sizeof(rnd)) == 0 &&
            buf_cstr(&nonce))
            x->scram = scram_server_new(buf_cstr(&nonce), smtp_scram_secret,
                                        sizeof(smtp_scram_secret));
        buf_free(&nonce);
        if (!x->scram) {
            *st = smtp_session_auth_done(x->sess, SMTP_AUTH_TEMPFAIL, NULL, &c->out);
            return true;
        }
    } else if (x->scram_final_sent) {
        /* The client's (empty) answer to the server-final message. */
        x->auth_result = 1;
        smtp_conn_auth_answer(c);
        return false;
    }
    if (!x->scram) {
        *st = smtp_session_auth_done(x->sess, SMTP_AUTH_MALFORMED, NULL, &c->out);
        return true;
    }
    enum scram_result r = scram_server_step(x->scram, req->auth_data, req->auth_len, &out);
    if (r == SCRAM_NEED_KEYS) {
        const char *user = scram_server_user(x->scram);
        char scram_text[300] = "";
        struct scram_keys keys;
        snprintf(x->auth_user, sizeof(x->auth_user), "%s", user ? user : "");
        enum store_lookup lk = store_account_scram(c->d->store, x->auth_user, x->auth_account,
                                                   sizeof(x->auth_account), scram_text,
                                                   sizeof(scram_text));
        bool have = lk == STORE_LOOKUP_FOUND && scram_keys_parse(scram_text, &keys) == 0;
        if (authfail_count(c->ip) >= x->settings->max_auth_failures_per_ip)
            have = false; /* refused unchecked: the proof cannot match */
        r = scram_server_set_keys(x->scram, have ? &keys : NULL, &out);
        OPENSSL_cleanse(&keys, sizeof(keys));
    }
    switch (r) {
    case SCRAM_CONTINUE:
        *st = smtp_session_auth_challenge(x->sess, buf_ptr(&out), buf_size(&out), &c->out);
        buf_free(&out);
        return true;
    case SCRAM_OK:
        x->scram_final_sent = true;
        *st = smtp_session_auth_challenge(x->sess, buf_ptr(&out), buf_size(&out), &c->out);
        buf_free(&out);
        return true;
    default:
        buf_free(&out);
        scram_server_free(&x->scram);
        x->auth_result = 0;
        smtp_conn_auth_answer(c);
        return false;
    }
}

/* SMTP_REQ_AUTH. true when answered at once (*st set), false when the
 * answer comes later (a worker, a delay). */
static bool smtp_conn_auth(struct conn *c, const struct smtp_request *req,
                           enum smtp_session_status *st)
{
    struct smtp_ctx *x = c->ctx;
    if (strcasecmp(req->auth_mech, "SCRAM-SHA-256") == 0)
        return smtp_conn_scram(c, req, st);
    /* PLAIN and LOGIN: the session parsed user and password. */
    snprintf(x->auth_user, sizeof(x->auth_user), "%s", req->auth_user ? req->auth_user : "");
    if (!req->auth_data || req->auth_len >= sizeof(x->auth_pass)) {
        x->auth_result = 0;
        smtp_conn_auth_answer(c);
        return false;
    }
    memcpy(x->auth_pass, req->auth_data, req->auth_len);
    x->auth_pass[req->auth_len] = '\0';
    if (authfail_count(c->ip) >= x->settings->max_auth_failures_per_ip) {
        log_warn("submission", "event=auth_refused id=%s ip=%s", c->id, c->ip);
        OPENSSL_cleanse(x->auth_pass, sizeof(x->auth_pass));
        x->auth_result = 0;
        smtp_conn_auth_answer(c);
        return false;
    }
    conn_flush(c);
    x->auth_running = true;
    x->auth_item.done = smtp_conn_auth_done_cb;
    x->auth_item.run = smtp_conn_auth_run;
    conn_pause(c);
    conn_job_begin(c);
    workers_submit(c->d->imap_workers, &x->auth_item);
    return false;
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
            if (x->submission && !smtp_conn_from_ok(req->env)) {
                log_info("submission", "event=from_refused id=%s account=%s", c->id,
                         req->env->auth_account ? req->env->auth_account : "-");
                st = smtp_session_deliver_done(x->sess, SMTP_DELIVER_SENDER_REFUSED, &c->out);
                continue;
            }
            x->job = deliver_job_new(req, x->settings->hostname, x->submission);
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
        case SMTP_REQ_MAIL: {
            /* RFC 6409 6.1: the account may send as itself (aliases: later). */
            const char *from = req->mail_from ? req->mail_from : "";
            const char *acct = req->auth_account ? req->auth_account : "";
            bool ok = from[0] == '\0' || strcasecmp(from, acct) == 0;
            if (!ok)
                log_info("submission", "event=sender_refused id=%s account=%s from=<%s>", c->id,
                         acct, from);
            st = smtp_session_mail_done(x->sess, ok, &c->out);
            continue;
        }
        case SMTP_REQ_AUTH:
            if (smtp_conn_auth(c, req, &st))
                continue;
            return; /* answered later */
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
    x->conn = c;
    x->submission = c->proto == &submission_conn_proto;
    x->settings = x->submission ? c->d->submission : c->d->smtp;
    x->settings->refs++;
    x->sess = smtp_session_new(&x->settings->session, c->ip, c->id);
    c->ctx = x;
    if (!x->sess)
        return -1;
    if (c->tls_active) { /* port 465: TLS from the start (RFC 8314) */
        const char *version, *cipher;
        conn_tls_info(c, &version, &cipher);
        if (smtp_session_set_tls(x->sess, version, cipher) < 0)
            return -1;
    }
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
    if (x->job || x->auth_running) {
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
    if (x->delay_ev)
        event_free(x->delay_ev);
    scram_server_free(&x->scram);
    OPENSSL_cleanse(x->auth_pass, sizeof(x->auth_pass));
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

/* Ports 587 and 465 (RFC 6409, RFC 8314): the same code in submission mode. */
const struct conn_proto submission_conn_proto = {
    .name = "submission",
    .refusal = "421 4.7.0 %s Error: %s\r\n",
    .open = smtp_conn_open,
    .input = smtp_conn_input,
    .tls_ready = smtp_conn_tls_ready,
    .timeout = smtp_conn_timeout,
    .shutdown = smtp_conn_shutdown,
    .destroy = smtp_conn_destroy,
};
