/* conn — see conn.h. */
#include "daemon/conn.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "lib/log.h"

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void conn_free(struct conn *c)
{
    struct daemon *d = c->d;
    if (c->busy) { /* a worker still holds it: free when the job calls back */
        c->gone = true;
        if (c->bev) {
            bufferevent_free(c->bev);
            c->bev = NULL;
        }
        return;
    }
    log_info(c->proto->name, "event=disconnect id=%s ip=%s", c->id, c->ip);
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
    if (c->proto->destroy)
        c->proto->destroy(c);
    buf_free(&c->out);
    free(c);
    daemon_conn_gone(d);
}

void conn_flush(struct conn *c)
{
    if (buf_size(&c->out) == 0 || !c->bev)
        return;
    bufferevent_write(c->bev, buf_ptr(&c->out), buf_size(&c->out));
    buf_reset(&c->out);
}

/* Octets not yet handed to the kernel, including those below a TLS filter. */
static size_t conn_pending_output(struct conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    struct bufferevent *under = bufferevent_get_underlying(c->bev);
    if (under)
        n += evbuffer_get_length(bufferevent_get_output(under));
    return n;
}

static void conn_close_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (!c->bev || conn_pending_output(c) == 0) {
        conn_free(c);
        return;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = 10000};
    evtimer_add(c->close_ev, &tv);
}

void conn_close(struct conn *c)
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

static void conn_set_timeouts(struct conn *c)
{
    struct timeval tv = {.tv_sec = c->timeout, .tv_usec = 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

void conn_pause(struct conn *c)
{
    c->paused = true;
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ);
}

void conn_resume(struct conn *c)
{
    c->paused = false;
    if (c->bev && !c->closing) {
        bufferevent_enable(c->bev, EV_READ);
        /* Input that arrived while paused is waiting in the buffer. */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            conn_read_cb(c->bev, c);
    }
}

void conn_job_begin(struct conn *c)
{
    c->busy++;
}

bool conn_job_end(struct conn *c)
{
    c->busy--;
    if (c->gone && c->busy == 0) {
        conn_free(c);
        return false;
    }
    return !c->gone;
}

void conn_tls_info(struct conn *c, const char **version_r, const char **cipher_r)
{
    SSL *ssl = c->tls_active && c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
    *version_r = ssl ? SSL_get_version(ssl) : NULL;
    *cipher_r = ssl ? SSL_get_cipher_name(ssl) : NULL;
}

void conn_start_tls(struct conn *c)
{
    conn_flush(c);
    SSL *ssl = c->d->tls_ctx ? SSL_new(c->d->tls_ctx) : NULL;
    struct bufferevent *tb = NULL;
    if (ssl)
        tb = bufferevent_openssl_filter_new(c->d->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!tb) {
        log_error(c->proto->name, "event=starttls_failed id=%s error=setup", c->id);
        if (ssl)
            SSL_free(ssl);
        c->proto->tls_ready(c, false, NULL, NULL);
        conn_close(c);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    c->bev = tb;
    c->tls_handshaking = true;
    bufferevent_setcb(tb, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_set_timeouts(c);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
}

static void conn_tls_established(struct conn *c)
{
    bool starttls = !c->tls_active && c->ctx != NULL;
    c->tls_handshaking = false;
    c->tls_active = true;
    const char *version, *cipher;
    conn_tls_info(c, &version, &cipher);
    log_info(c->proto->name, "event=tls id=%s version=%s cipher=%s", c->id, version, cipher);
    if (starttls) {
        c->proto->tls_ready(c, true, version, cipher);
    } else if (c->proto->open(c) < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
    /* The client may have sent its first command in the same packet as its
     * last handshake message: it is decrypted and waiting already, and no
     * new read event will come for it. */
    if (!c->closing && c->bev && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        conn_read_cb(c->bev, c);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint8_t chunk[16384];
    while (!c->closing && !c->paused && !c->tls_handshaking && evbuffer_get_length(in) > 0) {
        /* Take the bytes out first: input() may stack a TLS filter on this
         * bufferevent (STARTTLS), after which its buffer is the filter's. */
        int n = evbuffer_remove(in, chunk, sizeof(chunk));
        if (n <= 0)
            break;
        c->in_input = true;
        c->proto->input(c, chunk, (size_t)n);
        c->in_input = false;
        if (c->dead) { /* the connection failed under input(): free it now */
            conn_free(c);
            return;
        }
    }
    if (!c->closing)
        conn_flush(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->tls_handshaking)
            conn_tls_established(c);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->closing &&
        !c->tls_handshaking && c->ctx) {
        log_info(c->proto->name, "event=timeout id=%s", c->id);
        c->proto->timeout(c);
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e;
        while (c->bev && (e = bufferevent_get_openssl_error(c->bev)) != 0) {
            char es[256];
            ERR_error_string_n(e, es, sizeof(es));
            log_info(c->proto->name, "event=tls_error id=%s error=\"%s\"", c->id, es);
        }
    }
    if (c->in_input) { /* the read loop up the stack still holds c */
        c->dead = true;
        return;
    }
    conn_free(c); /* EOF, error, write timeout, handshake timeout */
}

static unsigned conn_count(struct daemon *d, const struct conn_proto *proto, const char *ip)
{
    unsigned n = 0;
    for (struct conn *o = d->conns; o; o = o->next)
        if (o->proto == proto && (!ip || strcmp(o->ip, ip) == 0))
            n++;
    return n;
}

static void conn_refuse(struct daemon *d, int fd, const struct conn_proto *proto, const char *ip,
                        const char *why, bool tls)
{
    log_info(proto->name, "event=refused ip=%s reason=\"%s\"", ip, why);
    /* Best effort on a fresh socket; in clear only where the protocol starts in clear. */
    if (!tls) {
        char line[400];
        int n = snprintf(line, sizeof(line), proto->refusal, d->cfg.hostname, why);
        if (n > 0 && (size_t)n < sizeof(line) && write(fd, line, (size_t)n) < 0) {
        }
    }
    close(fd);
}

void conn_accept(struct daemon *d, int fd, const struct sockaddr *sa,
                 const struct conn_proto *proto, const struct conn_limits *lim, bool implicit_tls)
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
    if (conn_count(d, proto, NULL) >= lim->max_connections) {
        conn_refuse(d, fd, proto, ip, "too many connections", implicit_tls);
        return;
    }
    if (conn_count(d, proto, ip) >= lim->max_connections_per_ip) {
        conn_refuse(d, fd, proto, ip, "too many connections from your address",
                    implicit_tls);
        return;
    }
    if (implicit_tls && !d->tls_ctx) {
        conn_refuse(d, fd, proto, ip, "no TLS certificate", true);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        conn_refuse(d, fd, proto, ip, "out of memory", implicit_tls);
        return;
    }
    c->d = d;
    c->proto = proto;
    c->timeout = lim->timeout;
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    unsigned char rnd[4];
    RAND_bytes(rnd, sizeof(rnd));
    snprintf(c->id, sizeof(c->id), "%08llx%02x%02x%02x%02x",
             (unsigned long long)(d->next_conn_id++ & 0xffffffffu), rnd[0], rnd[1], rnd[2], rnd[3]);
    evutil_make_socket_nonblocking(fd);
    if (implicit_tls) {
        SSL *ssl = SSL_new(d->tls_ctx);
        c->bev = ssl ? bufferevent_openssl_socket_new(d->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (c->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        else if (ssl)
            SSL_free(ssl);
        c->tls_handshaking = true;
    } else {
        c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    d->nconns++;
    if (!c->bev) {
        close(fd);
        conn_free(c);
        return;
    }
    log_info(proto->name, "event=connect id=%s ip=%s tls=%s", c->id, c->ip,
             implicit_tls ? "implicit" : "no");
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_set_timeouts(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (!implicit_tls) {
        if (proto->open(c) < 0) {
            conn_close(c);
            return;
        }
        conn_flush(c);
    }
}

void conn_shutdown_all(struct daemon *d)
{
    struct conn *c = d->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (c->tls_handshaking || !c->ctx) {
            conn_close(c);
            continue;
        }
        c->proto->shutdown(c);
    }
}

void conn_free_all(struct daemon *d)
{
    while (d->conns) {
        struct conn *c = d->conns;
        c->busy = 0; /* workers_free ran every done() before this */
        c->gone = false;
        conn_free(c);
    }
}
