/* smtp_server — the SMTP server session (RFC 5321) as a pure state machine.
 *
 * No sockets, no clock, no disk. The caller feeds the bytes a client sent
 * (smtp_session_feed) and sends the replies the session wrote into `out`,
 * a buffer the caller owns. Work the session cannot do itself — checking a
 * recipient, storing a message, the TLS handshake — is handed back as a
 * request (smtp_session_request) and answered later with the matching
 * smtp_session_*_done call. While a request is pending, input fed is only
 * buffered; the *_done call goes on processing it, so pipelined commands
 * are answered in order (RFC 2920) and never rejected.
 *
 * Every feed/done call returns SMTP_SESSION_CONTINUE, or SMTP_SESSION_CLOSE
 * when the caller must send what is in `out` and then close the connection.
 */
#ifndef CORREIO_PROTO_SMTP_SERVER_H
#define CORREIO_PROTO_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct smtp_limits {
    size_t max_command_line;  /* octets incl. CRLF; RFC 5321 4.5.3.1.4: 512 */
    size_t max_text_line;     /* octets incl. CRLF; RFC 5321 4.5.3.1.6: 1000 */
    size_t max_message_size;  /* octets, advertised with SIZE (RFC 1870) */
    unsigned max_recipients;  /* per transaction; more get 452 4.5.3 */
    unsigned max_errors;      /* error replies per session before 421 and close */
};

struct smtp_session_config {
    const char *hostname;     /* our name: greeting, EHLO, Received "by" */
    struct smtp_limits limits;
    bool starttls_available;  /* a certificate is loaded: offer STARTTLS */
    bool expn_enabled;        /* EXPN answers instead of 502 */
};

enum smtp_session_status {
    SMTP_SESSION_CONTINUE = 0,
    SMTP_SESSION_CLOSE = 1,
};

enum smtp_request_type {
    SMTP_REQ_NONE = 0,
    SMTP_REQ_RCPT,     /* is request->rcpt a local recipient? answer smtp_session_rcpt_done */
    SMTP_REQ_DELIVER,  /* store the message durably; answer smtp_session_deliver_done */
    SMTP_REQ_STARTTLS, /* 220 was written: flush it, then handshake; answer smtp_session_tls_done */
};

enum smtp_rcpt_result {
    SMTP_RCPT_OK = 0,       /* 250 2.1.5 */
    SMTP_RCPT_NO_USER,      /* 550 5.1.1 */
    SMTP_RCPT_RELAY_DENIED, /* 550 5.7.1 */
    SMTP_RCPT_TEMPFAIL,     /* 451 4.3.0 */
};

struct smtp_rcpt {
    char *address; /* forward-path as the client gave it, without <> and source route */
    char *account; /* the account it resolved to (from smtp_session_rcpt_done) */
};

/* The transaction as accepted so far; valid until the matching done call. */
struct smtp_envelope {
    const char *txn_id;      /* "<session id>.<n>", unique per transaction */
    const char *helo;        /* name from HELO/EHLO */
    const char *client_ip;
    const char *mail_from;   /* reverse-path without <>; "" for the null path */
    struct smtp_rcpt *rcpts;
    size_t nrcpts;
    const char *protocol;    /* Received "with": SMTP, ESMTP, ESMTPS, UTF8SMTP, UTF8SMTPS */
    const char *tls_version; /* NULL without TLS */
    const char *tls_cipher;
    bool smtputf8;           /* MAIL FROM had SMTPUTF8 */
    bool body_8bit;          /* BODY=8BITMIME */
};

struct smtp_request {
    enum smtp_request_type type;
    /* SMTP_REQ_RCPT: the address to check: "local@domain", syntax already
     * checked, source route removed, local parts with '%', '!' or '@'
     * already refused as relay attempts. */
    const char *rcpt;
    /* SMTP_REQ_DELIVER: envelope and message. The message has CRLF line
     * endings, is dot-unstuffed, without the final ".", and without the
     * trace headers (the caller prepends Return-Path and Received per
     * recipient, see smtp_received_format). */
    const struct smtp_envelope *env;
    const uint8_t *data;
    size_t data_len;
};

enum smtp_deliver_result {
    SMTP_DELIVER_OK = 0,   /* 250 2.0.0 — only once on stable storage */
    SMTP_DELIVER_TEMPFAIL, /* 451 4.3.0 */
    SMTP_DELIVER_PERMFAIL, /* 554 5.3.0 */
};

struct smtp_session;

/* A new session. cfg and its strings must outlive the session. client_ip
 * and session_id are copied. NULL when memory runs out. */
struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg,
                                      const char *client_ip, const char *session_id);
/* Free the session and set *s to NULL. NULL is fine. */
void smtp_session_free(struct smtp_session **s);

/* Write the 220 greeting. */
void smtp_session_start(struct smtp_session *s, struct buf *out);
/* Take bytes from the client and process all complete commands/data. */
enum smtp_session_status smtp_session_feed(struct smtp_session *s, const void *data, size_t len,
                                           struct buf *out);
/* The pending request, or NULL. Valid until the matching done call. */
const struct smtp_request *smtp_session_request(const struct smtp_session *s);

/* account: the canonical account for SMTP_RCPT_OK (copied), else NULL. */
enum smtp_session_status smtp_session_rcpt_done(struct smtp_session *s, enum smtp_rcpt_result r,
                                                const char *account, struct buf *out);
enum smtp_session_status smtp_session_deliver_done(struct smtp_session *s,
                                                   enum smtp_deliver_result r, struct buf *out);
/* ok: the handshake succeeded (else the caller just closes). The session
 * starts over as RFC 3207 4.2 says: it forgets HELO and the transaction,
 * and no longer offers STARTTLS. version/cipher are copied. */
enum smtp_session_status smtp_session_tls_done(struct smtp_session *s, bool ok,
                                               const char *version, const char *cipher,
                                               struct buf *out);
/* The client was idle too long: 421 4.4.2, then close. */
enum smtp_session_status smtp_session_timeout(struct smtp_session *s, struct buf *out);
/* The server is stopping: 421 4.3.2, then close. */
enum smtp_session_status smtp_session_shutdown(struct smtp_session *s, struct buf *out);

/* Whether TLS is active (the session was told through tls_done). */
bool smtp_session_tls_active(const struct smtp_session *s);
/* The name of the current state, for logs. */
const char *smtp_session_state_name(const struct smtp_session *s);

#endif
