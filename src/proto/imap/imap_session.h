/* imap_session — an IMAP4rev1 server session (RFC 3501 and extensions).
 *
 * The session is fed the client's bytes on the loop thread and writes
 * replies into a buffer the caller owns. Every command that touches the
 * store is not run at once: the session asks for it with
 * IMAP_REQ_EXECUTE, and the caller runs imap_session_execute() on a
 * worker thread with that thread's struct store (SQLite connections and
 * fsyncs block; the loop must not). The caller then calls
 * imap_session_execute_done() back on the loop thread, which hands over
 * the replies and goes on with buffered input. While a request is
 * pending, feed() only buffers, so pipelined commands run in order.
 *
 * Between those calls the session is touched by one thread at a time:
 * the loop thread never calls anything but feed() and notify() while an
 * EXECUTE is pending, and those touch only the input buffer and a flag.
 *
 * Every call returns IMAP_SESSION_CONTINUE, or IMAP_SESSION_CLOSE when the
 * caller must send `out` and close.
 */
#ifndef CORREIO_PROTO_IMAP_SESSION_H
#define CORREIO_PROTO_IMAP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct store;

struct imap_session_config {
    const char *hostname;
    bool starttls_available;     /* a certificate is loaded */
    bool allow_plaintext_auth;   /* LOGIN/AUTHENTICATE without TLS (tests only) */
    unsigned max_bad_commands;   /* BAD replies before "* BYE" and close */
    size_t max_line;             /* command line, literals not counted */
    size_t append_limit;         /* largest APPEND literal (APPENDLIMIT, RFC 7889) */
};

enum imap_session_status {
    IMAP_SESSION_CONTINUE = 0,
    IMAP_SESSION_CLOSE = 1,
};

enum imap_request {
    IMAP_REQ_NONE = 0,
    IMAP_REQ_EXECUTE,  /* run imap_session_execute on a worker, then execute_done */
    IMAP_REQ_STARTTLS, /* the OK was written: flush it, handshake, then tls_done */
};

struct imap_session;

/* tls: the connection is already in TLS (implicit TLS, port 993).
 * cfg and its strings must outlive the session. NULL on OOM. */
struct imap_session *imap_session_new(const struct imap_session_config *cfg,
                                      const char *client_ip, const char *session_id, bool tls);
void imap_session_free(struct imap_session **s);

/* Write the greeting: "* OK [CAPABILITY ...] ...". */
void imap_session_start(struct imap_session *s, struct buf *out);
enum imap_session_status imap_session_feed(struct imap_session *s, const void *data, size_t len,
                                           struct buf *out);
enum imap_request imap_session_request(const struct imap_session *s);

/* On a worker thread: run the pending command against st. */
void imap_session_execute(struct imap_session *s, struct store *st);
/* On the loop thread, after execute: its replies go to out, buffered
 * input goes on. */
enum imap_session_status imap_session_execute_done(struct imap_session *s, struct buf *out);
/* Milliseconds the caller should hold the replies of the last execute
 * before sending them (a failed login is answered slowly). */
unsigned imap_session_delay_ms(const struct imap_session *s);

enum imap_session_status imap_session_tls_done(struct imap_session *s, bool ok,
                                               struct buf *out);
/* A mailbox of the session's account changed (a delivery, another
 * session). When the session is idle in IDLE, this makes an EXECUTE
 * request that reports the changes; otherwise they are reported with the
 * next command, as RFC 3501 5.2 allows. */
enum imap_session_status imap_session_notify(struct imap_session *s, struct buf *out);
/* "* BYE" for an idle timeout / a server shutdown. */
enum imap_session_status imap_session_timeout(struct imap_session *s, struct buf *out);
enum imap_session_status imap_session_shutdown(struct imap_session *s, struct buf *out);

/* Whether the last execute changed a mailbox of the account (flags,
 * messages, mailboxes), so that the caller tells the other sessions.
 * Resets the flag. */
bool imap_session_take_changed(struct imap_session *s);
/* The logged-in account, or NULL. */
const char *imap_session_account(const struct imap_session *s);
const char *imap_session_state_name(const struct imap_session *s);

#endif
