/* daemon — `correio serve`: the running server. Owns the event loop, the
 * listeners, the TLS context, the worker pool and every connection. */
#ifndef CORREIO_DAEMON_DAEMON_H
#define CORREIO_DAEMON_DAEMON_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf/config.h"
#include "lib/buf.h"
#include "mime/mime_imap.h"
#include "net/workers.h"
#include "proto/imap/imap_session.h"
#include "proto/pop3/pop3_session.h"
#include "proto/smtp/smtp_server.h"

struct event_base;
struct event;
struct evconnlistener;
struct store;
struct workers;
struct conn;
struct conn_proto;
struct sockaddr;
typedef struct ssl_ctx_st SSL_CTX;

#define DAEMON_MAX_LISTENERS 32

/* SMTP settings shared by the sessions started under one configuration;
 * reference-counted so that SIGHUP can swap in a new one while older
 * sessions keep theirs. */
struct smtp_settings {
    struct smtp_session_config session;
    char hostname[256];
    unsigned timeout;
    unsigned max_auth_failures_per_ip; /* submission */
    unsigned refs;
};

struct imap_settings {
    struct imap_session_config session;
    char hostname[256];
    unsigned refs;
};

struct pop3_settings {
    struct pop3_session_config session;
    char hostname[256];
    unsigned max_auth_failures_per_ip;
    unsigned refs;
};

struct daemon {
    struct config cfg;
    char config_path[CONFIG_STR_MAX];
    struct event_base *base;
    struct store *store;          /* loop thread only: recipient look-ups */
    struct workers *workers;      /* durable writes */
    SSL_CTX *tls_ctx;             /* NULL without a certificate */
    struct smtp_settings *smtp;   /* current settings for new sessions */
    struct smtp_settings *submission; /* the same for ports 587/465 */
    struct imap_settings *imap;
    struct pop3_settings *pop3;
    struct workers *imap_workers; /* IMAP commands and POP3 jobs: the mailbox pool */
    struct outbound *outbound;    /* delivery of the outbound queue (outbound.c) */

    struct daemon_listener *listeners[DAEMON_MAX_LISTENERS];
    unsigned nlisteners;

    struct conn *conns;           /* every open connection, all protocols */
    unsigned nconns;
    uint64_t next_conn_id;

    bool stopping;
    struct event *ev_term, *ev_int, *ev_hup, *ev_stop_deadline;
};

/* `correio -c FILE serve`. Returns the process exit code. */
int daemon_serve(const char *config_path);

struct daemon_listener {
    struct daemon *d;
    const struct conn_proto *proto;
    bool implicit_tls;
    struct evconnlistener *l;
};

/* The protocols (smtp_conn.c, imap_conn.c, pop3_conn.c). */
extern const struct conn_proto smtp_conn_proto;
extern const struct conn_proto submission_conn_proto;
extern const struct conn_proto imap_conn_proto;
extern const struct conn_proto pop3_conn_proto;

/* A mailbox of account changed: tell the sessions that watch it. */
void daemon_mailbox_changed(struct daemon *d, const char *account);

void smtp_settings_put(struct smtp_settings *s);
struct smtp_settings *smtp_settings_new(const struct config *cfg, bool tls, bool submission);

void imap_settings_put(struct imap_settings *s);
struct imap_settings *imap_settings_new(const struct config *cfg, bool tls);
extern const struct workers_ops imap_workers_ops;

void pop3_settings_put(struct pop3_settings *s);
struct pop3_settings *pop3_settings_new(const struct config *cfg, bool tls);

/* deliver.c: one accepted message on its way to stable storage, one
 * store_delivery per distinct local account, and one queue entry (queue.h)
 * for the recipients of other domains (submission). Worker threads batch
 * jobs into one store_deliver call (group commit); the job's result is 0
 * only when every local copy and the queue entry are durable. */
struct deliver_job {
    struct work_item item;        /* item.done runs on the loop thread */
    struct conn *conn;
    struct store_delivery *deliveries;
    struct buf *prefixes;         /* Return-Path + Received, per delivery */
    struct iovec *iov;            /* two per delivery: prefix, message */
    size_t n;
    const uint8_t *msg;           /* the message: the session's data, or `fixed` */
    size_t msg_len;
    struct buf fixed;             /* submission: the message after the RFC 6409 fix-ups */
    /* The outbound queue (submission): remote recipients, one entry. */
    const char **remote;
    size_t nremote;
    struct buf qprefix;           /* Received: for the queued copy */
    const char *sender;
    bool body_8bit, smtputf8;
    char queue_id[40];
    int result;                   /* 0 when every delivery is stored */
    struct mime_index_cache cache; /* ENVELOPE, BODYSTRUCTURE, search fields for the index */
    uint64_t started_us;
};
extern const struct workers_ops deliver_workers_ops;
/* Build a job for the DELIVER request of a session; NULL on OOM. With
 * submission, the message gets the RFC 6409 fix-ups and remote recipients
 * go to the queue. */
struct deliver_job *deliver_job_new(const struct smtp_request *req, const char *by_host,
                                    bool submission);
void deliver_job_free(struct deliver_job *job);

/* outbound.c: delivery of the outbound queue. start: 0 or -1 with err;
 * kick: a message was queued, look at the queue now; stop: SIGTERM
 * (conversations are dropped, their recipients stay pending); free. */
struct outbound;
int outbound_start(struct daemon *d, char *err, size_t errlen);
void outbound_kick(struct daemon *d);
void outbound_stop(struct daemon *d);
void outbound_free(struct daemon *d);

/* authfail.c: failed logins per client address within AUTHFAIL_WINDOW
 * seconds (POP3, submission); loop thread only. add returns the count. */
#define AUTHFAIL_WINDOW 900
unsigned authfail_count(const char *ip);
unsigned authfail_add(const char *ip);

/* privdrop.c: when root, switch to user (from the config). 0 or -1 with err. */
int daemon_drop_privileges(const char *user, char *err, size_t errlen);

/* Called by smtp_conn when a connection is gone, to finish a shutdown. */
void daemon_conn_gone(struct daemon *d);

#endif
