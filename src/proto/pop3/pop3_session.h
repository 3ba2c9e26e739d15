/* pop3_session — the POP3 server session (RFC 1939, 2449, 2595, 5034, 3206)
 * as a pure state machine.
 *
 * No sockets, no clock, no disk. The caller feeds the bytes a client sent
 * (pop3_session_feed) and sends what the session wrote into `out`, a
 * buffer the caller owns. Work the session cannot do itself — checking a
 * password or an APOP digest and opening (locking) the maildrop, reading a
 * message, removing the deleted messages at QUIT, the TLS handshake — is
 * handed back as a request (pop3_session_request) and answered later with
 * the matching pop3_session_*_done call. While a request is pending, input
 * fed is only buffered; the *_done call goes on processing it, so
 * pipelined commands (RFC 2449 PIPELINING) are answered in order.
 *
 * States (RFC 1939 3): AUTHORIZATION until a login succeeds, then
 * TRANSACTION; QUIT in TRANSACTION enters UPDATE (POP3_REQ_UPDATE), and
 * only then are messages removed. QUIT with no message marked deleted
 * writes its "+OK" and closes at once, without POP3_REQ_UPDATE. Every other
 * end — a dropped connection, pop3_session_timeout, pop3_session_shutdown,
 * too many errors — removes nothing.
 *
 * Every feed/done call returns POP3_SESSION_CONTINUE, or POP3_SESSION_CLOSE
 * when the caller must send what is in `out` and then close the connection.
 */
#ifndef CORREIO_PROTO_POP3_SESSION_H
#define CORREIO_PROTO_POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct pop3_session_config {
    const char *hostname;        /* in the greeting (CAPA says "IMPLEMENTATION correio") */
    bool starttls_available;     /* a certificate is loaded: offer STLS */
    bool allow_plaintext_auth;   /* USER/PASS/AUTH without TLS (tests only) */
    unsigned max_errors;         /* -ERR replies to bad commands before close */
    unsigned max_auth_failures;  /* failed logins in one session before close */
    size_t max_line;             /* command line incl. CRLF (RFC 2449: 255) */
};

enum pop3_session_status {
    POP3_SESSION_CONTINUE = 0,
    POP3_SESSION_CLOSE = 1,
};

enum pop3_request_type {
    POP3_REQ_NONE = 0,
    POP3_REQ_AUTH,     /* check credentials, lock and list the maildrop: auth_done */
    POP3_REQ_RETR,     /* read a message: retr_done */
    POP3_REQ_UPDATE,   /* QUIT in TRANSACTION: remove the deleted messages: update_done */
    POP3_REQ_STARTTLS, /* "+OK" was written: flush it, handshake, then tls_done */
};

enum pop3_auth_kind {
    POP3_AUTH_PASSWORD, /* USER+PASS or AUTH PLAIN: user, password */
    POP3_AUTH_APOP,     /* APOP: user, digest (32 lower-case hex digits) of banner+secret */
};

/* One message of the maildrop as it was at login. */
struct pop3_msg {
    uint32_t uid;       /* the store's UID, handed back in POP3_REQ_RETR/UPDATE */
    uint64_t size;      /* exact octets of the message (CRLF line endings, not stuffed) */
    char uidl[71];      /* unique-id: 1..70 characters 0x21..0x7E (RFC 1939 7) */
};

struct pop3_request {
    enum pop3_request_type type;
    /* POP3_REQ_AUTH */
    enum pop3_auth_kind auth_kind;
    const char *user;     /* as the client gave it */
    const char *password; /* POP3_AUTH_PASSWORD */
    const char *digest;   /* POP3_AUTH_APOP, lower-cased */
    const char *banner;   /* POP3_AUTH_APOP: the greeting's timestamp, "<...>" */
    /* POP3_REQ_RETR: the message (1-based number and its entry) and how
     * much of it: top_lines < 0 for RETR, else TOP's line count. */
    unsigned msgno;
    const struct pop3_msg *msg;
    long top_lines;
    /* POP3_REQ_UPDATE: UIDs of the messages marked deleted, ascending. */
    const uint32_t *deleted;
    size_t ndeleted;
};

enum pop3_auth_result {
    POP3_AUTH_OK = 0,      /* +OK, TRANSACTION with the messages given */
    POP3_AUTH_FAILED,      /* -ERR [AUTH] (the caller delays this answer) */
    POP3_AUTH_NO_APOP,     /* -ERR [AUTH]: the account has no APOP secret */
    POP3_AUTH_IN_USE,      /* -ERR [IN-USE]: another session holds the maildrop */
    POP3_AUTH_TEMPFAIL,    /* -ERR [SYS/TEMP] */
};

enum pop3_retr_result {
    POP3_RETR_OK = 0,      /* data is the whole message */
    POP3_RETR_GONE,        /* expunged meanwhile (IMAP): -ERR, the session goes on */
    POP3_RETR_TEMPFAIL,    /* -ERR [SYS/TEMP], the session goes on */
};

struct pop3_session;

/* A new session. cfg and its strings must outlive the session. banner is
 * the RFC 1939 timestamp "<pid.clock@hostname>" for the greeting and APOP
 * (copied); tls: the connection is already in TLS (POP3S, port 995).
 * NULL when memory runs out. */
struct pop3_session *pop3_session_new(const struct pop3_session_config *cfg,
                                      const char *client_ip, const char *banner, bool tls);
/* Free the session and set *s to NULL. NULL is fine. */
void pop3_session_free(struct pop3_session **s);

/* Write the greeting: "+OK <hostname> POP3 ready <banner>". */
void pop3_session_start(struct pop3_session *s, struct buf *out);
/* Take bytes from the client and process every complete command. */
enum pop3_session_status pop3_session_feed(struct pop3_session *s, const void *data, size_t len,
                                           struct buf *out);
/* The pending request, or NULL. Valid until the matching done call. */
const struct pop3_request *pop3_session_request(const struct pop3_session *s);

/* account: canonical address on POP3_AUTH_OK (copied); msgs/n: the
 * maildrop, in message-number order (copied). */
enum pop3_session_status pop3_session_auth_done(struct pop3_session *s, enum pop3_auth_result r,
                                                const char *account, const struct pop3_msg *msgs,
                                                size_t n, struct buf *out);
/* data/len: the whole stored message for POP3_RETR_OK. The session writes
 * "+OK", the lines (all of them for RETR; for TOP the header, the blank
 * line and top_lines lines of the body), byte-stuffed, CRLF-terminated
 * (a missing final CRLF is added), and ".". */
enum pop3_session_status pop3_session_retr_done(struct pop3_session *s, enum pop3_retr_result r,
                                                const uint8_t *data, size_t len,
                                                struct buf *out);
/* The whole reply retr_done(POP3_RETR_OK) writes for a RETR (top < 0)
 * or a TOP: the "+OK" line (with size for RETR), the byte-stuffed
 * CRLF lines, ".". Pure and thread-safe, so a caller can format on a
 * worker thread. 0, or -1 when memory runs out. */
int pop3_format_reply(const uint8_t *data, size_t len, long top, uint64_t size, struct buf *out);
/* retr_done(POP3_RETR_OK) with a reply made by pop3_format_reply for the
 * pending request (its top_lines, and for RETR the message's LIST size).
 * When out is empty the reply's storage is taken over (no copy), and
 * reply is left with out's old storage, empty. */
enum pop3_session_status pop3_session_retr_done_reply(struct pop3_session *s, struct buf *reply,
                                                      struct buf *out);

/* ok: every deleted message was removed ("+OK"), else "-ERR [SYS/TEMP]".
 * Either way the session ends (POP3_SESSION_CLOSE). */
enum pop3_session_status pop3_session_update_done(struct pop3_session *s, bool ok,
                                                  struct buf *out);
/* ok: the handshake succeeded (else the caller just closes). The session
 * stays in AUTHORIZATION, forgets a USER given before, and stops offering
 * STLS (RFC 2595 4). */
enum pop3_session_status pop3_session_tls_done(struct pop3_session *s, bool ok,
                                               struct buf *out);
/* The client was idle too long: "-ERR" and close, nothing removed. */
enum pop3_session_status pop3_session_timeout(struct pop3_session *s, struct buf *out);
/* The server is stopping: "-ERR [SYS/TEMP]" and close, nothing removed. */
enum pop3_session_status pop3_session_shutdown(struct pop3_session *s, struct buf *out);

/* Read-ahead hint while a POP3_REQ_RETR is pending: the message numbers
 * of the RETR commands the client has already pipelined after it (in the
 * input buffered so far, in order, up to the first command that is not a
 * RETR), at most max, only of messages that exist and are not deleted.
 * The caller may read those messages along with the pending one and
 * answer their requests at once when they come. Returns how many. */
size_t pop3_session_pipelined_retrs(const struct pop3_session *s, unsigned *msgnos, size_t max);

/* Whether the session holds the maildrop (auth_done OK was given): the
 * caller releases its lock when the connection ends. */
bool pop3_session_authenticated(const struct pop3_session *s);
/* The canonical account after login, else NULL. */
const char *pop3_session_account(const struct pop3_session *s);
bool pop3_session_tls_active(const struct pop3_session *s);
/* The name of the current state, for logs. */
const char *pop3_session_state_name(const struct pop3_session *s);

#endif
