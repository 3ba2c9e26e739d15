/* serve — start-up, signals and shut-down of the running server. */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "lib/log.h"
#include "net/tls.h"
#include "net/workers.h"
#include "queue/queue.h"
#include "store/store.h"

#define EX_CONFIG_ 78
#define EX_OSERR_ 71
#define EX_UNAVAILABLE_ 69

static struct workers_ops deliver_ops, imap_ops;

static void daemon_limits(const struct daemon *d, const struct conn_proto *proto,
                          struct conn_limits *lim)
{
    if (proto == &submission_conn_proto) {
        lim->max_connections = d->cfg.submission_max_connections;
        lim->max_connections_per_ip = d->cfg.submission_max_connections_per_ip;
        lim->timeout = d->cfg.submission_timeout;
    } else if (proto == &smtp_conn_proto) {
        lim->max_connections = d->cfg.smtp_max_connections;
        lim->max_connections_per_ip = d->cfg.smtp_max_connections_per_ip;
        lim->timeout = d->cfg.smtp_timeout;
    } else if (proto == &pop3_conn_proto) {
        lim->max_connections = d->cfg.pop3_max_connections;
        lim->max_connections_per_ip = d->cfg.pop3_max_connections_per_ip;
        lim->timeout = d->cfg.pop3_timeout;
    } else {
        lim->max_connections = d->cfg.imap_max_connections;
        lim->max_connections_per_ip = d->cfg.imap_max_connections_per_ip;
        lim->timeout = d->cfg.imap_timeout;
    }
}

static void daemon_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int salen, void *arg)
{
    struct daemon_listener *dl = arg;
    struct conn_limits lim;
    daemon_limits(dl->d, dl->proto, &lim);
    conn_accept(dl->d, fd, sa, dl->proto, &lim, dl->implicit_tls);
}

void daemon_mailbox_changed(struct daemon *d, const char *account)
{
    for (struct conn *c = d->conns; c; c = c->next)
        if (c->proto->notify && c->ctx && !c->closing)
            c->proto->notify(c, account);
}

static void daemon_accept_error_cb(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_error("daemon", "event=accept_error error=\"%s\"", evutil_socket_error_to_string(e));
}

/* Bind every ADDR:PORT of a comma-separated list. */
static int daemon_listen_list(struct daemon *d, const char *list, const char *proto,
                              const struct conn_proto *cp, bool implicit_tls, char *err,
                              size_t errlen)
{
    char copy[CONFIG_STR_MAX];
    snprintf(copy, sizeof(copy), "%s", list);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        struct sockaddr_storage ss;
        int sslen = sizeof(ss);
        if (evutil_parse_sockaddr_port(tok, (struct sockaddr *)&ss, &sslen) < 0) {
            snprintf(err, errlen, "listen.%s: '%s' is not ADDR:PORT", proto, tok);
            return -1;
        }
        if (d->nlisteners >= DAEMON_MAX_LISTENERS) {
            snprintf(err, errlen, "too many listeners (max %d)", DAEMON_MAX_LISTENERS);
            return -1;
        }
        unsigned flags = LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
        if (ss.ss_family == AF_INET6)
            flags |= LEV_OPT_BIND_IPV6ONLY;
        struct daemon_listener *dl = calloc(1, sizeof(*dl));
        if (!dl) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        *dl = (struct daemon_listener){.d = d, .proto = cp, .implicit_tls = implicit_tls};
        dl->l = evconnlistener_new_bind(d->base, daemon_accept_cb, dl, flags, 511,
                                        (struct sockaddr *)&ss, sslen);
        if (!dl->l) {
            snprintf(err, errlen, "listen.%s: cannot listen on %s: %s", proto, tok,
                     strerror(errno));
            free(dl);
            return -1;
        }
        evconnlistener_set_error_cb(dl->l, daemon_accept_error_cb);
        d->listeners[d->nlisteners++] = dl;
        log_info("daemon", "event=listen proto=%s addr=%s", proto, tok);
    }
    return 0;
}

static void daemon_close_listeners(struct daemon *d)
{
    for (unsigned i = 0; i < d->nlisteners; i++) {
        evconnlistener_free(d->listeners[i]->l);
        free(d->listeners[i]);
    }
    d->nlisteners = 0;
}

static SSL_CTX *daemon_tls_load(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->tls_cert[0] == '\0')
        return NULL;
    return tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, err, errlen);
}

void daemon_conn_gone(struct daemon *d)
{
    if (d->stopping && d->nconns == 0)
        event_base_loopexit(d->base, NULL);
}

static void daemon_stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    log_warn("daemon", "event=shutdown_deadline open_connections=%u", d->nconns);
    event_base_loopexit(d->base, NULL);
}

static void daemon_stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    if (d->stopping)
        return;
    d->stopping = true;
    log_notice("daemon", "event=stopping signal=%d open_connections=%u", (int)sig, d->nconns);
    daemon_close_listeners(d);
    outbound_stop(d);
    conn_shutdown_all(d);
    if (d->nconns == 0) {
        event_base_loopexit(d->base, NULL);
        return;
    }
    struct timeval tv = {.tv_sec = d->cfg.shutdown_timeout, .tv_usec = 0};
    d->ev_stop_deadline = evtimer_new(d->base, daemon_stop_deadline_cb, d);
    if (d->ev_stop_deadline)
        evtimer_add(d->ev_stop_deadline, &tv);
}

/* SIGHUP: read the configuration and the certificate again. New sessions
 * get the new settings; open ones keep theirs. Listeners stay as bound. */
static void daemon_reload_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    struct config cfg;
    char err[1024];
    config_defaults(&cfg);
    if (config_load(&cfg, d->config_path, err, sizeof(err)) < 0) {
        log_error("daemon", "event=reload_failed error=\"%s\"", err);
        return;
    }
    SSL_CTX *ctx = daemon_tls_load(&cfg, err, sizeof(err));
    if (cfg.tls_cert[0] && !ctx) {
        log_error("daemon", "event=reload_failed error=\"%s\"", err);
        return;
    }
    struct smtp_settings *s = smtp_settings_new(&cfg, ctx != NULL, false);
    struct smtp_settings *sub = smtp_settings_new(&cfg, ctx != NULL, true);
    struct imap_settings *is = imap_settings_new(&cfg, ctx != NULL);
    struct pop3_settings *ps = pop3_settings_new(&cfg, ctx != NULL);
    if (!s || !sub || !is || !ps) {
        smtp_settings_put(s);
        smtp_settings_put(sub);
        imap_settings_put(is);
        pop3_settings_put(ps);
        SSL_CTX_free(ctx);
        log_error("daemon", "event=reload_failed error=\"out of memory\"");
        return;
    }
    if (strcmp(cfg.listen_smtp, d->cfg.listen_smtp) != 0 ||
        strcmp(cfg.listen_imap, d->cfg.listen_imap) != 0 ||
        strcmp(cfg.listen_imaps, d->cfg.listen_imaps) != 0 ||
        strcmp(cfg.listen_pop3, d->cfg.listen_pop3) != 0 ||
        strcmp(cfg.listen_pop3s, d->cfg.listen_pop3s) != 0 ||
        strcmp(cfg.listen_submission, d->cfg.listen_submission) != 0 ||
        strcmp(cfg.listen_submissions, d->cfg.listen_submissions) != 0 ||
        strcmp(cfg.data_dir, d->cfg.data_dir))
        log_warn("daemon", "event=reload_partial note=\"listen and data_dir changes need a restart\"");
    memcpy(cfg.listen_smtp, d->cfg.listen_smtp, sizeof(cfg.listen_smtp));
    memcpy(cfg.listen_imap, d->cfg.listen_imap, sizeof(cfg.listen_imap));
    memcpy(cfg.listen_imaps, d->cfg.listen_imaps, sizeof(cfg.listen_imaps));
    memcpy(cfg.listen_pop3, d->cfg.listen_pop3, sizeof(cfg.listen_pop3));
    memcpy(cfg.listen_pop3s, d->cfg.listen_pop3s, sizeof(cfg.listen_pop3s));
    memcpy(cfg.listen_submission, d->cfg.listen_submission, sizeof(cfg.listen_submission));
    memcpy(cfg.listen_submissions, d->cfg.listen_submissions, sizeof(cfg.listen_submissions));
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", d->cfg.data_dir);
    SSL_CTX_free(d->tls_ctx); /* sessions in TLS hold their own reference */
    d->tls_ctx = ctx;
    smtp_settings_put(d->smtp);
    d->smtp = s;
    smtp_settings_put(d->submission);
    d->submission = sub;
    imap_settings_put(d->imap);
    d->imap = is;
    pop3_settings_put(d->pop3);
    d->pop3 = ps;
    d->cfg = cfg;
    log_set_level((enum log_level)log_level_parse(cfg.log_level));
    log_info("daemon", "event=reloaded tls=%s", ctx ? "yes" : "no");
}

static int daemon_signals(struct daemon *d)
{
    signal(SIGPIPE, SIG_IGN);
    d->ev_term = evsignal_new(d->base, SIGTERM, daemon_stop_cb, d);
    d->ev_int = evsignal_new(d->base, SIGINT, daemon_stop_cb, d);
    d->ev_hup = evsignal_new(d->base, SIGHUP, daemon_reload_cb, d);
    if (!d->ev_term || !d->ev_int || !d->ev_hup)
        return -1;
    evsignal_add(d->ev_term, NULL);
    evsignal_add(d->ev_int, NULL);
    evsignal_add(d->ev_hup, NULL);
    return 0;
}

/* Each connection takes a descriptor and each worker's index cache up to
 * three per account: raise the soft limit to the hard one. */
static void daemon_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("daemon", "event=setrlimit_failed");
    }
}

/* Everything before the loop. Returns 0, or an exit code with a message logged. */
static int daemon_start(struct daemon *d)
{
    char err[1024];
    /* Messages pass through as heap buffers of a few KiB to a few MiB that
     * are freed right away: keep freed memory for reuse instead of giving
     * it back to the kernel and faulting it in again at the next message
     * (glibc's dynamic thresholds start at 128 KiB). */
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    config_defaults(&d->cfg);
    if (config_load(&d->cfg, d->config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_CONFIG_;
    }
    log_set_level((enum log_level)log_level_parse(d->cfg.log_level));
    daemon_raise_nofile();
    if (evthread_use_pthreads() < 0 || !(d->base = event_base_new())) {
        fprintf(stderr, "correio: cannot set up the event loop\n");
        return EX_OSERR_;
    }
    d->tls_ctx = daemon_tls_load(&d->cfg, err, sizeof(err));
    if (d->cfg.tls_cert[0] && !d->tls_ctx) {
        fprintf(stderr, "correio: tls: %s\n", err);
        return EX_CONFIG_;
    }
    if (daemon_listen_list(d, d->cfg.listen_smtp, "smtp", &smtp_conn_proto, false, err,
                           sizeof(err)) < 0 ||
        daemon_listen_list(d, d->cfg.listen_imap, "imap", &imap_conn_proto, false, err,
                           sizeof(err)) < 0 ||
        daemon_listen_list(d, d->cfg.listen_imaps, "imaps", &imap_conn_proto, true, err,
                           sizeof(err)) < 0 ||
        daemon_listen_list(d, d->cfg.listen_pop3, "pop3", &pop3_conn_proto, false, err,
                           sizeof(err)) < 0 ||
        daemon_listen_list(d, d->cfg.listen_pop3s, "pop3s", &pop3_conn_proto, true, err,
                           sizeof(err)) < 0 ||
        daemon_listen_list(d, d->cfg.listen_submission, "submission", &submission_conn_proto,
                           false, err, sizeof(err)) < 0 ||
        daemon_listen_list(d, d->cfg.listen_submissions, "submissions", &submission_conn_proto,
                           true, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_UNAVAILABLE_;
    }
    if (daemon_drop_privileges(d->cfg.user, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: %s\n", err);
        return EX_CONFIG_;
    }
    if (access(d->cfg.data_dir, R_OK | W_OK | X_OK) < 0) {
        fprintf(stderr, "correio: data_dir %s: %s (as uid %u)\n", d->cfg.data_dir,
                strerror(errno), (unsigned)getuid());
        return EX_CONFIG_;
    }
    if (store_open(&d->store, d->cfg.data_dir, err, sizeof(err)) < 0 ||
        store_recover(d->store, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: store: %s\n", err);
        return EX_UNAVAILABLE_;
    }
    deliver_ops = deliver_workers_ops;
    deliver_ops.arg = d->cfg.data_dir;
    d->workers = workers_new(d->base, d->cfg.workers, 64, &deliver_ops, err, sizeof(err));
    imap_ops = imap_workers_ops;
    imap_ops.arg = d->cfg.data_dir;
    if (d->workers)
        d->imap_workers = workers_new(d->base, d->cfg.imap_workers, 1, &imap_ops, err, sizeof(err));
    d->smtp = smtp_settings_new(&d->cfg, d->tls_ctx != NULL, false);
    d->submission = smtp_settings_new(&d->cfg, d->tls_ctx != NULL, true);
    d->imap = imap_settings_new(&d->cfg, d->tls_ctx != NULL);
    d->pop3 = pop3_settings_new(&d->cfg, d->tls_ctx != NULL);
    if (!d->workers || !d->imap_workers || !d->smtp || !d->submission || !d->imap || !d->pop3 ||
        daemon_signals(d) < 0) {
        fprintf(stderr, "correio: start-up failed: %s\n", d->workers ? "out of memory" : err);
        return EX_OSERR_;
    }
    struct queue *q = NULL;
    if (queue_open(&q, d->cfg.data_dir, err, sizeof(err)) < 0 ||
        queue_recover(q, err, sizeof(err)) < 0) {
        queue_close(&q);
        fprintf(stderr, "correio: queue: %s\n", err);
        return EX_UNAVAILABLE_;
    }
    queue_close(&q);
    if (outbound_start(d, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: outbound delivery: %s\n", err);
        return EX_UNAVAILABLE_;
    }
    return 0;
}

static void daemon_cleanup(struct daemon *d)
{
    /* A second SIGTERM while the last deliveries finish must not kill us. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    outbound_free(d);
    workers_free(&d->workers); /* runs the last done()s: their replies are written */
    workers_free(&d->imap_workers);
    conn_free_all(d);
    daemon_close_listeners(d);
    if (d->ev_term)
        event_free(d->ev_term);
    if (d->ev_int)
        event_free(d->ev_int);
    if (d->ev_hup)
        event_free(d->ev_hup);
    if (d->ev_stop_deadline)
        event_free(d->ev_stop_deadline);
    smtp_settings_put(d->smtp);
    imap_settings_put(d->imap);
    pop3_settings_put(d->pop3);
    smtp_settings_put(d->submission);
    store_close(&d->store);
    SSL_CTX_free(d->tls_ctx);
    if (d->base)
        event_base_free(d->base);
}

int daemon_serve(const char *config_path)
{
    struct daemon *d = calloc(1, sizeof(*d));
    if (!d)
        return EX_OSERR_;
    snprintf(d->config_path, sizeof(d->config_path), "%s", config_path);
    int rc = daemon_start(d);
    if (rc == 0) {
        log_notice("daemon", "event=ready hostname=%s data_dir=%s tls=%s pid=%d", d->cfg.hostname,
                 d->cfg.data_dir, d->tls_ctx ? "yes" : "no", (int)getpid());
        event_base_dispatch(d->base);
        log_notice("daemon", "event=stopped");
    }
    daemon_cleanup(d);
    free(d);
    return rc;
}
