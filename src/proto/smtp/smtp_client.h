/* smtp_client — the client side of SMTP (RFC 5321) for outbound delivery,
 * as a pure state machine.
 *
 * No sockets, no clock, no DNS. The caller connects, feeds the bytes the
 * server sent (smtp_client_feed) and sends what the client wrote into
 * `out`. The client asks for what it cannot do itself with a request
 * (smtp_client_request):
 *   - SMTP_CLIENT_REQ_STARTTLS: "220" to STARTTLS came; handshake, then
 *     smtp_client_tls_done (the client then sends EHLO again, RFC 3207 4.2);
 *   - SMTP_CLIENT_REQ_READY: the session is open (greeting, EHLO/HELO,
 *     STARTTLS, AUTH done) and idle: give it a message (smtp_client_send)
 *     or end it (smtp_client_quit). Also after each message, so one
 *     connection carries several messages to the same host;
 *   - SMTP_CLIENT_REQ_RESULT: a message's transaction is over: read
 *     smtp_client_result, then smtp_client_result_done (after which READY
 *     comes, or CLOSED when the session cannot go on);
 *   - SMTP_CLIENT_REQ_CLOSED: the session is over (after QUIT, a 421, a
 *     protocol error): the caller closes the connection. The reason is in
 *     smtp_client_error().
 *
 * What it does on the wire:
 *   - waits for the 220 greeting (a 554 greeting or any other: CLOSED with
 *     the reply as the error, classified temporary/permanent by its code);
 *   - EHLO, HELO when EHLO gets any 5xx (500/502/504/550...; then no
 *     extensions); parses the EHLO keywords case-insensitively: STARTTLS,
 *     PIPELINING, SIZE [n] (0 or none: no limit), 8BITMIME, SMTPUTF8,
 *     ENHANCEDSTATUSCODES, AUTH mechanisms (also the old "AUTH=" form),
 *     CHUNKING, DSN (for smtp_client_has_ext; others are ignored);
 *   - STARTTLS when offered and cfg->starttls is not NEVER; after the
 *     handshake EHLO again; a server without STARTTLS when cfg->starttls
 *     is REQUIRE, or a STARTTLS refused then, ends with a temporary error
 *     (a refused STARTTLS when OPPORTUNISTIC: on in clear); a failed
 *     handshake (tls_done false): CLOSED, TEMPFAIL "TLS handshake failed";
 *   - AUTH PLAIN with an initial response (only after TLS) when
 *     cfg->auth_user is set (relayhost): 235 READY, 4xx/5xx CLOSED with
 *     that reply; no TLS (never sent in clear): CLOSED TEMPFAIL; no PLAIN
 *     offered: CLOSED PERMFAIL; a 334 challenge: protocol error;
 *   - a message: MAIL FROM:<s> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8], one
 *     RCPT TO per recipient, DATA, the dot-stuffed data and ".";
 *     with PIPELINING, MAIL, every RCPT and DATA go out in one write
 *     (RFC 2920 3.1: DATA last), otherwise one command per reply;
 *     no accepted recipient: no data. Without PIPELINING, RSET instead of
 *     DATA; with PIPELINING, the DATA's 503/554 is followed by RSET, and a
 *     354 (a server bug) is answered with a lone "." (RFC 2920 3.1). After a
 *     refused MAIL no transaction is open: no RSET. After a refused DATA
 *     (the MAIL transaction stays open on the server): RSET;
 *   - the data: bare CR or LF become CRLF, a line starting with "." gets
 *     another one (RFC 5321 4.5.2), a missing final CRLF is added;
 *   - never sends an 8-bit message raw to a server without 8BITMIME, nor
 *     a message needing SMTPUTF8 to a server without it, nor one larger
 *     than the server's SIZE: those fail permanently without a command
 *     (5.6.3, 5.6.7, 5.3.4), and the session stays READY;
 *   - multiline replies ("250-..." lines then "250 ..."), with enhanced
 *     status codes (RFC 3463) read from the first line when present;
 *   - a reply line longer than 4096 octets or a malformed reply is a
 *     protocol error: temporary failure of what is in progress, CLOSED;
 *   - a 421 to any command, or unsolicited: the server is closing; what is
 *     in progress fails temporarily with that reply, then CLOSED;
 *   - input while nothing was asked (READY, RESULT) must be a 421, else it
 *     is a protocol error; input after the 220 to STARTTLS and before the
 *     handshake is dropped (RFC 3207 5: no response injection).
 * When it gives up on a server that still talks (refused greeting, EHLO,
 * HELO, AUTH, TLS required) it writes QUIT before CLOSED; not after a 421,
 * a protocol error, a lost connection or a timeout.
 *
 * Every feed/done/send call returns SMTP_CLIENT_CONTINUE, or
 * SMTP_CLIENT_CLOSE when the caller must send `out` and close.
 */
#ifndef CORREIO_PROTO_SMTP_CLIENT_H
#define CORREIO_PROTO_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum smtp_client_tls {
    SMTP_CLIENT_TLS_OPPORTUNISTIC = 0, /* STARTTLS when offered */
    SMTP_CLIENT_TLS_NEVER,             /* never STARTTLS (a retry after a failed handshake) */
    SMTP_CLIENT_TLS_REQUIRE,           /* no STARTTLS offered or it fails: temporary error */
};

struct smtp_client_config {
    const char *helo_name;          /* our host name for EHLO/HELO */
    enum smtp_client_tls starttls;
    bool tls_active;                /* the connection is already TLS (port 465 relayhost) */
    const char *auth_user;          /* AUTH PLAIN after TLS when set (relayhost), else NULL */
    const char *auth_password;
};

enum smtp_client_status {
    SMTP_CLIENT_CONTINUE = 0,
    SMTP_CLIENT_CLOSE = 1,
};

enum smtp_client_request_type {
    SMTP_CLIENT_REQ_NONE = 0, /* waiting for the server */
    SMTP_CLIENT_REQ_STARTTLS,
    SMTP_CLIENT_REQ_READY,
    SMTP_CLIENT_REQ_RESULT,
    SMTP_CLIENT_REQ_CLOSED,
};

/* One message to send. Strings and data must stay valid until its
 * RESULT has been taken (smtp_client_result_done). */
struct smtp_client_msg {
    const char *mail_from;      /* reverse-path without <>, "" for the null path */
    const char *const *rcpts;   /* forward-paths without <> */
    size_t nrcpts;
    const uint8_t *data;        /* the message, CRLF line endings, not dot-stuffed */
    size_t len;
    bool body_8bit;             /* has octets >= 0x80: needs 8BITMIME */
    bool smtputf8;              /* UTF-8 addresses or headers: needs SMTPUTF8 */
};

enum smtp_client_outcome {
    SMTP_CLIENT_OK = 0,        /* accepted (2xx) */
    SMTP_CLIENT_TEMPFAIL,      /* 4xx, a lost connection, a timeout, a protocol error: retry later */
    SMTP_CLIENT_PERMFAIL,      /* 5xx, or refused before sending (8BITMIME, SMTPUTF8, SIZE) */
};

/* A reply or the reason there was none. */
struct smtp_client_reply {
    enum smtp_client_outcome outcome;
    int code;                  /* 3-digit code; 0 when no reply (lost, timeout, protocol
                                  error); local refusals of a message use 554 (5.6.3, 5.6.7),
                                  552 (5.3.4) or 553 (5.1.3/5.1.7: address with a control
                                  character) so that a DSN's Diagnostic-Code reads well */
    char status[16];           /* enhanced status "x.y.z", or "" (then derive from code) */
    char text[512];            /* the reply's text (lines joined by a space) without the
                                  enhanced status code, control and 8-bit octets as '?',
                                  truncated; or why there was no reply */
};

struct smtp_client_result {
    const struct smtp_client_reply *rcpt; /* one per recipient, in the message's order */
    size_t nrcpts;
    const char *remote_host;              /* as given to smtp_client_new (for DSN Remote-MTA) */
    bool tls;                             /* the message went over TLS */
};

struct smtp_client;

/* cfg and its strings must outlive the client; remote_host (the MX name,
 * for results and logs) is copied. NULL when memory runs out. */
struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg, const char *remote_host);
void smtp_client_free(struct smtp_client **c);

/* Bytes from the server. */
enum smtp_client_status smtp_client_feed(struct smtp_client *c, const void *data, size_t len,
                                         struct buf *out);
/* The pending request (SMTP_CLIENT_REQ_NONE while waiting for the server). */
enum smtp_client_request_type smtp_client_request(const struct smtp_client *c);

enum smtp_client_status smtp_client_tls_done(struct smtp_client *c, bool ok, struct buf *out);
/* Only in READY (else nothing happens). A RESULT always follows: at once,
 * without a command, when the message is refused locally or has no
 * recipient. */
enum smtp_client_status smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m,
                                         struct buf *out);
/* Only in READY: QUIT; CLOSED follows the 221 (or at once when the caller
 * does not wait). */
enum smtp_client_status smtp_client_quit(struct smtp_client *c, struct buf *out);
/* Only in RESULT. Valid until smtp_client_result_done. */
const struct smtp_client_result *smtp_client_result(const struct smtp_client *c);
enum smtp_client_status smtp_client_result_done(struct smtp_client *c, struct buf *out);

/* The connection was lost / the server was silent for smtp_client_timeout
 * seconds: a message in progress becomes a RESULT with every recipient not
 * yet answered finally as TEMPFAIL (code 0 and a text saying what
 * happened), these calls return CONTINUE and result_done then CLOSE;
 * otherwise CLOSED (after QUIT: with no error). Nothing is written. */
enum smtp_client_status smtp_client_conn_lost(struct smtp_client *c, struct buf *out);
enum smtp_client_status smtp_client_timed_out(struct smtp_client *c, struct buf *out);
/* Seconds the caller waits for the server now (RFC 5321 4.5.3.2: greeting
 * 300, MAIL 300, RCPT 300, DATA 120, end of data 600, others 300). The
 * data is written into `out` at once: while writing it the caller allows
 * SMTP_CLIENT_DATA_BLOCK_TIMEOUT per write, and the end-of-data timeout
 * runs once it is all written. */
#define SMTP_CLIENT_DATA_BLOCK_TIMEOUT 180
unsigned smtp_client_timeout(const struct smtp_client *c);

/* Why CLOSED came, when it was not a QUIT: the reply (outcome TEMPFAIL or
 * PERMFAIL by its code) or a local reason. NULL after a clean QUIT. */
const struct smtp_client_reply *smtp_client_error(const struct smtp_client *c);
/* The server's EHLO said so (for logs and tests). */
bool smtp_client_has_ext(const struct smtp_client *c, const char *keyword);
bool smtp_client_tls_active(const struct smtp_client *c);

#endif
