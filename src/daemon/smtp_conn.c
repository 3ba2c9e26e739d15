/* smtp_conn — wires one SMTP connection (a libevent bufferevent, plain or
 * TLS) to its pure smtp_session, and answers the session's requests:
 * recipient look-ups from the store, deliveries through the worker pool,
 * STARTTLS by stacking an OpenSSL filter on the connection. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "lib/log.h"
#include "net/workers.h"
#include "store/store.h"

struct smtp_conn {
    struct smtp_conn *next, *prev;
    struct daemon *d;
    struct smtp_settings *settings;
    struct bufferevent *bev;
    struct smtp_session *sess;
    struct buf out;
    char id[24];
    char ip[INET6_ADDRSTRLEN];
    struct deliver_job *job;  /* the delivery in progress, or NULL */
    bool closing;             /* flushing the last replies, then free */
    bool gone;                /* the client left while a delivery was running */
    bool stop_after_delivery; /* SIGTERM came during a delivery */
    bool tls_handshaking;
    struct event *close_ev;   /* while closing: waits for the output to drain */
};

static void conn_process(struct smtp_conn *c, enum smtp_session_status st);

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

static void conn_free(struct smtp_conn *c)
{
    struct daemon *d = c->d;
    if (c->job) { /* the worker still holds it: free when it answers */
        c->gone = true;
        if (c->bev) {
            bufferevent_free(c->bev);
            c->bev = NULL;
        }
        return;
    }
    log_info("smtp", "event=disconnect id=%s ip=%s", c->id, c->ip);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    d->nconns--;
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->close_ev)
        event_free(c->close_ev);
    smtp_session_free(&c->sess);
    smtp_settings_put(c->settings);
    buf_free(&c->out);
    free(c);
    daemon_conn_gone(d);
}

/* Move the session's replies to the connection. */
static void conn_flush(struct smtp_conn *c)
{
    if (buf_size(&c->out) == 0 || !c->bev)
        return;
    bufferevent_write(c->bev, buf_ptr(&c->out), buf_size(&c->out));
    buf_reset(&c->out);
}

/* Octets not yet handed to the kernel, including those below a TLS filter. */
static size_t conn_pending_output(struct smtp_conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    struct bufferevent *under = bufferevent_get_underlying(c->bev);
    if (under)
        n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

/* While closing: free once every reply has left (a write timeout ends it
 * otherwise, through conn_event_cb). */
static void conn_close_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_conn *c = arg;
    if (!c->bev || conn_pending_output(c) == 0) {
        conn_free(c);
        return;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = 10000};
    evtimer_add(c->close_ev, &tv);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
}

/* Send what is pending, then close. Never frees c at once: callers may
 * still look at it; the free happens from the event loop. */
static void conn_close(struct smtp_conn *c)
{
    conn_flush(c);
    if (c->closing)
        return;
    c->closing = true;
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ);
    if (!c->close_ev)
        c->close_ev = evtimer_new(c->d->base, conn_close_check_cb, c);
    struct timeval now = {0, 0};
    if (c->close_ev)
        evtimer_add(c->close_ev, &now);
}

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void conn_set_timeouts(struct smtp_conn *c)
{
    struct timeval tv = {.tv_sec = c->settings->timeout, .tv_usec = 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static void conn_start_tls(struct smtp_conn *c)
{
    conn_flush(c); /* the 220 goes out in clear, ahead of the handshake */
    SSL *ssl = c->d->tls_ctx ? SSL_new(c->d->tls_ctx) : NULL;
    struct bufferevent *tb = NULL;
    if (ssl)
        tb = bufferevent_openssl_filter_new(c->d->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!tb) {
        log_error("smtp", "event=starttls_failed id=%s error=setup", c->id);
        if (ssl)
            SSL_free(ssl);
        conn_process(c, smtp_session_tls_done(c->sess, false, NULL, NULL, &c->out));
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    c->bev = tb;
    c->tls_handshaking = true;
    bufferevent_setcb(tb, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_set_timeouts(c);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
}

static void conn_tls_established(struct smtp_conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    const char *version = SSL_get_version(ssl);
    const char *cipher = SSL_get_cipher_name(ssl);
    c->tls_handshaking = false;
    log_info("smtp", "event=tls id=%s version=%s cipher=%s", c->id, version, cipher);
    conn_process(c, smtp_session_tls_done(c->sess, true, version, cipher, &c->out));
}

static void conn_deliver_done(struct work_item *item)
{
    struct deliver_job *job = (struct deliver_job *)item;
    struct smtp_conn *c = job->conn;
    const struct smtp_request *req = smtp_session_request(c->sess);
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
    c->job = NULL;
    deliver_job_free(job);
    enum smtp_session_status st = smtp_session_deliver_done(c->sess, res, &c->out);
    if (c->gone) {
        conn_free(c);
        return;
    }
    if (c->stop_after_delivery) {
        conn_flush(c);
        smtp_session_shutdown(c->sess, &c->out);
        conn_close(c);
        return;
    }
    bufferevent_enable(c->bev, EV_READ);
    conn_process(c, st);
}

static enum smtp_session_status conn_lookup_rcpt(struct smtp_conn *c, const char *rcpt)
{
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
        return smtp_session_rcpt_done(c->sess, SMTP_RCPT_OK, account, &c->out);
    case STORE_LOOKUP_NO_USER:
        return smtp_session_rcpt_done(c->sess, SMTP_RCPT_NO_USER, NULL, &c->out);
    case STORE_LOOKUP_NO_DOMAIN:
        return smtp_session_rcpt_done(c->sess, SMTP_RCPT_RELAY_DENIED, NULL, &c->out);
    default:
        log_error("smtp", "event=rcpt_lookup_failed id=%s", c->id);
        return smtp_session_rcpt_done(c->sess, SMTP_RCPT_TEMPFAIL, NULL, &c->out);
    }
}

/* Answer the session's requests until it needs input or waits on a worker. */
static void conn_process(struct smtp_conn *c, enum smtp_session_status st)
{
    for (;;) {
        if (st == SMTP_SESSION_CLOSE) {
            conn_close(c);
            return;
        }
        const struct smtp_request *req = smtp_session_request(c->sess);
        if (!req || req->type == SMTP_REQ_NONE) {
            conn_flush(c);
            return;
        }
        switch (req->type) {
        case SMTP_REQ_RCPT:
            st = conn_lookup_rcpt(c, req->rcpt);
            continue;
        case SMTP_REQ_DELIVER:
            conn_flush(c);
            c->job = deliver_job_new(req, c->settings->hostname);
            if (!c->job) {
                st = smtp_session_deliver_done(c->sess, SMTP_DELIVER_TEMPFAIL, &c->out);
                continue;
            }
            c->job->conn = c;
            c->job->item.done = conn_deliver_done;
            c->job->started_us = now_us();
            bufferevent_disable(c->bev, EV_READ); /* the session buffers; no more for now */
            workers_submit(c->d->workers, &c->job->item);
            return;
        case SMTP_REQ_STARTTLS:
            conn_start_tls(c);
            return;
        default:
            return;
        }
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (!c->closing && !c->job && !c->tls_handshaking && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        enum smtp_session_status st = smtp_session_feed(c->sess, v.iov_base, v.iov_len, &c->out);
        evbuffer_drain(in, v.iov_len);
        conn_process(c, st);
        if (c->closing)
            return;
    }
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->tls_handshaking)
            conn_tls_established(c);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->closing) {
        log_info("smtp", "event=timeout id=%s state=%s", c->id, smtp_session_state_name(c->sess));
        smtp_session_timeout(c->sess, &c->out);
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e;
        while (c->bev && (e = bufferevent_get_openssl_error(c->bev)) != 0) {
            char es[256];
            ERR_error_string_n(e, es, sizeof(es));
            log_info("smtp", "event=tls_error id=%s error=\"%s\"", c->id, es);
        }
    }
    conn_free(c); /* EOF, error, write timeout */
}

static bool conn_too_many_from(struct daemon *d, const char *ip)
{
    unsigned n = 0;
    for (struct smtp_conn *o = d->conns; o; o = o->next)
        if (strcmp(o->ip, ip) == 0)
            n++;
    return n >= d->cfg.smtp_max_connections_per_ip;
}

static void conn_refuse(struct daemon *d, int fd, const char *ip, const char *why)
{
    char line[300];
    int n = snprintf(line, sizeof(line), "421 4.7.0 %s Error: %s\r\n", d->cfg.hostname, why);
    log_info("smtp", "event=refused ip=%s reason=\"%s\"", ip, why);
    /* Best effort: the socket is new and its buffer empty. */
    if (write(fd, line, (size_t)n) < 0) {
    }
    close(fd);
}

void smtp_conn_accept(struct daemon *d, int fd, const struct sockaddr *sa, int salen)
{
    char ip[INET6_ADDRSTRLEN] = "unknown";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    if (d->stopping) {
        close(fd);
        return;
    }
    if (d->nconns >= d->cfg.smtp_max_connections) {
        conn_refuse(d, fd, ip, "too many connections");
        return;
    }
    if (conn_too_many_from(d, ip)) {
        conn_refuse(d, fd, ip, "too many connections from your address");
        return;
    }
    struct smtp_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        conn_refuse(d, fd, ip, "out of memory");
        return;
    }
    c->d = d;
    c->settings = d->smtp;
    c->settings->refs++;
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    unsigned char rnd[4];
    RAND_bytes(rnd, sizeof(rnd));
    snprintf(c->id, sizeof(c->id), "%08llx%02x%02x%02x%02x",
             (unsigned long long)(d->next_conn_id++ & 0xffffffffu), rnd[0], rnd[1], rnd[2], rnd[3]);
    c->sess = smtp_session_new(&c->settings->session, ip, c->id);
    c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    d->nconns++;
    if (!c->sess || !c->bev) {
        if (!c->bev)
            close(fd);
        conn_free(c);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    log_info("smtp", "event=connect id=%s ip=%s", c->id, c->ip);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_set_timeouts(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    smtp_session_start(c->sess, &c->out);
    conn_flush(c);
}

void smtp_conn_shutdown_all(struct daemon *d)
{
    struct smtp_conn *c = d->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (c->job) {
            c->stop_after_delivery = true;
            continue;
        }
        if (!c->tls_handshaking) {
            conn_flush(c);
            smtp_session_shutdown(c->sess, &c->out);
        }
        conn_close(c);
    }
}

void smtp_conn_free_all(struct daemon *d)
{
    while (d->conns) {
        struct smtp_conn *c = d->conns;
        c->job = NULL; /* workers_free ran every done() before this */
        conn_free(c);
    }
}
