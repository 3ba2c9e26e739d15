/* conn — one client connection at the edge, whatever its protocol.
 *
 * Owns the bufferevent (plain, implicit TLS, or STARTTLS-upgraded), the
 * output buffer the protocol session writes into, the idle timeout, the
 * connection limits, and a close that waits until every reply has left
 * (also through a TLS filter). The protocol part (smtp_conn.c,
 * imap_conn.c) is a table of callbacks and its own state in c->ctx.
 */
#ifndef CORREIO_DAEMON_CONN_H
#define CORREIO_DAEMON_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct daemon;
struct conn;
struct bufferevent;
struct event;
struct sockaddr;

struct conn_proto {
    const char *name; /* "smtp", "imap": logs and per-protocol limits */
    /* printf format of the line a connection over a limit gets before it
     * is closed: arguments our host name, then the reason (CRLF included). */
    const char *refusal;
    /* The connection is ready (after the handshake with implicit TLS):
     * make the session in c->ctx and write the greeting into c->out.
     * -1: close at once. */
    int (*open)(struct conn *c);
    /* Bytes from the client. */
    void (*input)(struct conn *c, const uint8_t *data, size_t len);
    /* A STARTTLS handshake ended (ok false: the caller closes). */
    void (*tls_ready)(struct conn *c, bool ok, const char *version, const char *cipher);
    /* The client was idle too long: write the goodbye; conn_close follows. */
    void (*timeout)(struct conn *c);
    /* The server is stopping: write the goodbye and conn_close, or, while
     * a worker job runs, remember to do it when it ends. */
    void (*shutdown)(struct conn *c);
    /* Free c->ctx. */
    void (*destroy)(struct conn *c);
    /* Optional: a mailbox of account changed (delivery, another session). */
    void (*notify)(struct conn *c, const char *account);
};

struct conn_limits {
    unsigned max_connections;        /* of this protocol, in total */
    unsigned max_connections_per_ip; /* of this protocol, from one address */
    unsigned timeout;                /* idle seconds */
};

struct conn {
    struct conn *next, *prev;
    struct daemon *d;
    const struct conn_proto *proto;
    void *ctx;                 /* the protocol's state */
    struct bufferevent *bev;
    struct buf out;            /* replies not yet handed to the bufferevent */
    char id[24];
    char ip[INET6_ADDRSTRLEN];
    unsigned timeout;
    unsigned busy;             /* worker jobs that will call back */
    bool closing;              /* draining the last replies */
    bool gone;                 /* the client left while busy */
    bool paused;               /* not reading (a job runs) */
    bool tls_handshaking;
    bool tls_active;
    bool in_input;             /* inside proto->input (the read loop holds c) */
    bool dead;                 /* failed while in_input: free when it returns */
    struct event *close_ev;
};

/* A new connection on a listener of proto. */
void conn_accept(struct daemon *d, int fd, const struct sockaddr *sa,
                 const struct conn_proto *proto, const struct conn_limits *lim,
                 bool implicit_tls);
/* Hand c->out to the connection. */
void conn_flush(struct conn *c);
/* Flush, then close once everything has left. Never frees c at once. */
void conn_close(struct conn *c);
/* STARTTLS: flush (the "ready" reply goes in clear), then handshake;
 * proto->tls_ready is called with the result. */
void conn_start_tls(struct conn *c);
/* TLS version and cipher of the connection, or NULLs. */
void conn_tls_info(struct conn *c, const char **version_r, const char **cipher_r);
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
/* A worker job for c was submitted / has called back. job_end returns
 * false when c was freed (the client had left): do not touch it then. */
void conn_job_begin(struct conn *c);
bool conn_job_end(struct conn *c);
/* Every connection: shutdown (SIGTERM) / free (exit). */
void conn_shutdown_all(struct daemon *d);
void conn_free_all(struct daemon *d);

#endif
