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
 *
 * Submission (RFC 6409, cfg->submission): the same session on ports 587
 * and 465 with these differences:
 *  - AUTH (RFC 4954) is advertised ("250-AUTH <cfg->auth_mechanisms>") when
 *    TLS is active (STARTTLS done, or smtp_session_set_tls for port 465) or
 *    with cfg->allow_plaintext_auth; otherwise AUTH gets 538 5.7.11 and is
 *    not advertised. AUTH needs EHLO first (503 5.5.1); AUTH after a
 *    successful AUTH, or during a transaction: 503 5.5.1; a mechanism not
 *    in cfg->auth_mechanisms (compared in any case): 504 5.5.4. In MX mode
 *    AUTH is never advertised and gets 502 5.5.1.
 *  - The session does the SASL framing: "AUTH mech [initial-response]",
 *    "334 <base64>" prompts, base64 decoding ("=" as initial response is an
 *    empty one; bad base64: 501 5.5.2; a "*" line cancels: 501 5.0.0). The
 *    AUTH line and each response line may be 12288 octets long (RFC 4954 4).
 *    Each exchange ends with one smtp_session_auth_done, or by itself
 *    (cancel, bad base64, malformed PLAIN/LOGIN, line too long) without
 *    the caller being told: a request with auth_first set starts a new one.
 *     - PLAIN (RFC 4616) is parsed by the session: one request with
 *       auth_user = authcid and auth_data = passwd. An authzid that is
 *       neither empty nor the authcid (in any case) gets 535 5.7.8 without a
 *       request; a message that is not authzid NUL authcid NUL passwd with a
 *       non-empty authcid and passwd gets 501 5.5.2.
 *     - LOGIN: the session asks "334 VXNlcm5hbWU6" (Username:) unless the
 *       initial response is the user name, then "334 UGFzc3dvcmQ6"
 *       (Password:); one request with auth_user and auth_data = password
 *       (an empty user name or password, or one with a NUL: 501 5.5.2).
 *     - Any other mechanism (SCRAM-SHA-256): each client message is a
 *       request (auth_user NULL, auth_first set for the first; without an
 *       initial response the session first sends an empty "334 " and the
 *       client's answer is the first message). The caller answers
 *       smtp_session_auth_challenge (the session sends "334 " + base64) or
 *       smtp_session_auth_done. SCRAM: client-first → challenge(server-
 *       first); client-final → if the proof is right challenge(server-final)
 *       and then, on the client's empty response, auth_done(OK); if wrong
 *       auth_done(FAILED) at once (RFC 5802 5 and RFC 4954 4 allow the
 *       server-final to be sent as the 235's additional data, but the
 *       session always takes the 334 route, which every client handles).
 *    Passwords are never logged and are wiped from the session's buffers
 *    once answered. RSET and EHLO keep the authentication; STARTTLS forgets
 *    it (the session starts over).
 *  - MAIL before AUTH: 530 5.7.0 Authentication required. After AUTH, MAIL
 *    is parsed as in MX mode (and also takes RFC 4954 5's AUTH=xtext
 *    parameter, which is checked and ignored; other unknown parameters
 *    still get 555, ENVID= among them: DSN is not offered, so envid is
 *    always NULL), then raises SMTP_REQ_MAIL: may this account send as this
 *    reverse-path? smtp_session_mail_done: yes → 250 2.1.0, no →
 *    "553 5.7.1 <path>: Sender address rejected: not owned by <account>".
 *  - RCPT: the caller may answer SMTP_RCPT_REMOTE (another domain: the copy
 *    goes to the outbound queue): 250 2.1.5, rcpt.remote set, account NULL.
 *    In MX mode a REMOTE answer is taken as RELAY_DENIED (port 25 never
 *    relays, with or without AUTH).
 *  - The DELIVER request carries the authenticated account and the
 *    addr-specs of the message's From: field(s) (smtp_from_addrs, see
 *    submission.h), so the caller can refuse a forged From: with
 *    SMTP_DELIVER_SENDER_REFUSED ("553 5.7.1 From: header address not
 *    owned by <account>"); the Received "with" is ESMTPSA / ESMTPA, or
 *    UTF8SMTPSA / UTF8SMTPA with SMTPUTF8 (RFC 3848, RFC 6531 3.7.3).
 *  - Errors counted toward max_errors as in MX mode, and also 530, 535,
 *    538, 504, 501 of AUTH and both 553; not 454.
 */
#ifndef CORREIO_PROTO_SMTP_SERVER_H
#define CORREIO_PROTO_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct smtp_limits {
    size_t max_command_line; /* octets incl. CRLF; RFC 5321 4.5.3.1.4: 512 */
    size_t max_text_line;    /* octets incl. CRLF; RFC 5321 4.5.3.1.6: 1000 */
    size_t max_message_size; /* octets, advertised with SIZE (RFC 1870) */
    unsigned max_recipients; /* per transaction; more get 452 4.5.3 */
    unsigned max_errors;     /* error replies per session before 421 and close */
};

struct smtp_session_config {
    const char *hostname; /* our name: greeting, EHLO, Received "by" */
    struct smtp_limits limits;
    bool starttls_available;     /* a certificate is loaded: offer STARTTLS */
    bool expn_enabled;           /* EXPN answers instead of 502 */
    bool submission;             /* RFC 6409 rules (see above) */
    bool allow_plaintext_auth;   /* submission: AUTH without TLS (tests only) */
    const char *auth_mechanisms; /* submission: "PLAIN LOGIN SCRAM-SHA-256" as advertised;
                                  * NULL or "": AUTH is not offered */
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
    SMTP_REQ_AUTH,     /* a SASL message: answer smtp_session_auth_challenge or _auth_done */
    SMTP_REQ_MAIL,     /* submission: may request->auth_account send as request->mail_from?
                        * answer smtp_session_mail_done */
};

enum smtp_rcpt_result {
    SMTP_RCPT_OK = 0,       /* 250 2.1.5 */
    SMTP_RCPT_NO_USER,      /* 550 5.1.1 */
    SMTP_RCPT_RELAY_DENIED, /* 550 5.7.1 */
    SMTP_RCPT_TEMPFAIL,     /* 451 4.3.0 */
    SMTP_RCPT_REMOTE,       /* 250 2.1.5: another domain, for the queue (submission only) */
};

struct smtp_rcpt {
    char *address; /* forward-path as the client gave it, without <> and source route */
    char *account; /* the account it resolved to (from smtp_session_rcpt_done); NULL if remote */
    bool remote;   /* SMTP_RCPT_REMOTE: deliver through the outbound queue */
};

/* The transaction as accepted so far; valid until the matching done call. */
struct smtp_envelope {
    const char *txn_id; /* "<session id>.<n>", unique per transaction */
    const char *helo;   /* name from HELO/EHLO */
    const char *client_ip;
    const char *mail_from; /* reverse-path without <>; "" for the null path */
    struct smtp_rcpt *rcpts;
    size_t nrcpts;
    const char *protocol;    /* Received "with": SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA,
                              * UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA */
    const char *tls_version; /* NULL without TLS */
    const char *tls_cipher;
    bool smtputf8;            /* MAIL FROM had SMTPUTF8 */
    bool body_8bit;           /* BODY=8BITMIME */
    const char *auth_account; /* submission: the authenticated account, else NULL */
    const char *envid;        /* MAIL FROM ENVID= (RFC 3461): always NULL (no DSN yet) */
    char *const *from_addrs;  /* DELIVER in submission: addr-specs of the From: field(s),
                               * owned by the session; NULL/0 in MX mode or without From: */
    size_t nfrom_addrs;
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
    /* SMTP_REQ_AUTH: the mechanism (upper-case, as listed), the decoded
     * client message (followed by a NUL not counted in auth_len), and
     * whether it is the exchange's first message. PLAIN and LOGIN: auth_user
     * is the user name (authcid) and auth_data the password; other
     * mechanisms: auth_user NULL, auth_data the whole message. Valid until
     * the matching done call, then wiped. */
    const char *auth_mech;
    const char *auth_user;
    const uint8_t *auth_data;
    size_t auth_len;
    bool auth_first;
    /* SMTP_REQ_MAIL: the reverse-path ("" for <>) and the account. */
    const char *mail_from;
    const char *auth_account;
};

enum smtp_deliver_result {
    SMTP_DELIVER_OK = 0,         /* 250 2.0.0 — only once on stable storage */
    SMTP_DELIVER_TEMPFAIL,       /* 451 4.3.0 */
    SMTP_DELIVER_PERMFAIL,       /* 554 5.3.0 */
    SMTP_DELIVER_SENDER_REFUSED, /* 553 5.7.1: From: is not the account's (submission) */
};

enum smtp_auth_result {
    SMTP_AUTH_OK = 0,    /* 235 2.7.0 */
    SMTP_AUTH_FAILED,    /* 535 5.7.8 (the caller delays this answer) */
    SMTP_AUTH_TEMPFAIL,  /* 454 4.7.0 */
    SMTP_AUTH_MALFORMED, /* 501 5.5.2: the client's message made no sense */
};

struct smtp_session;

/* A new session. cfg and its strings must outlive the session. client_ip
 * and session_id are copied. NULL when memory runs out. */
struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg, const char *client_ip,
                                      const char *session_id);
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
enum smtp_session_status smtp_session_tls_done(struct smtp_session *s, bool ok, const char *version,
                                               const char *cipher, struct buf *out);
/* SMTP_REQ_AUTH: send "334 <base64 of data>" (any length) and wait for
 * the next client message, which becomes the next SMTP_REQ_AUTH as it is
 * (also for PLAIN and LOGIN, though they never need a challenge). */
enum smtp_session_status smtp_session_auth_challenge(struct smtp_session *s, const uint8_t *data,
                                                     size_t len, struct buf *out);
/* SMTP_REQ_AUTH: the exchange is over. account: the canonical account on
 * SMTP_AUTH_OK (copied); NULL there means auth_user for PLAIN and LOGIN
 * (and 454 for other mechanisms). FAILED → 535 5.7.8 and MALFORMED →
 * 501 5.5.2 count toward max_errors; TEMPFAIL → 454 4.7.0 does not. */
enum smtp_session_status smtp_session_auth_done(struct smtp_session *s, enum smtp_auth_result r,
                                                const char *account, struct buf *out);
/* SMTP_REQ_MAIL: ok → 250 2.1.0, else 553 5.7.1 (not your address; the
 * transaction is not started). */
enum smtp_session_status smtp_session_mail_done(struct smtp_session *s, bool ok, struct buf *out);
/* The authenticated account, or NULL. */
const char *smtp_session_auth_account(const struct smtp_session *s);
/* Implicit TLS (RFC 8314, port 465): the connection is in TLS from the
 * start. Call before smtp_session_start; STARTTLS is then neither offered
 * nor accepted, and AUTH is. version/cipher are copied. 0, or -1 when
 * memory runs out or the session has started. */
int smtp_session_set_tls(struct smtp_session *s, const char *version, const char *cipher);

/* The client was idle too long: 421 4.4.2, then close. */
enum smtp_session_status smtp_session_timeout(struct smtp_session *s, struct buf *out);
/* The server is stopping: 421 4.3.2, then close. */
enum smtp_session_status smtp_session_shutdown(struct smtp_session *s, struct buf *out);

/* Whether TLS is active (the session was told through tls_done). */
bool smtp_session_tls_active(const struct smtp_session *s);
/* The name of the current state, for logs. */
const char *smtp_session_state_name(const struct smtp_session *s);

#endif
