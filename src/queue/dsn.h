/* dsn — delivery status notifications (RFC 3464, RFC 3461 4.3, RFC 6522)
 * and the retry schedule of the outbound queue. Pure: no clock (times are
 * passed in), no I/O.
 *
 * A DSN is the message correio sends from <> to a message's sender when a
 * recipient failed permanently (Action: failed), when a message waited
 * too long (Action: delayed, a warning; the queue goes on trying), or when
 * it expired (Action: failed, 4.4.7). Its shape:
 *
 *   From: Mail Delivery System <MAILER-DAEMON@reporting-mta>
 *   To: <sender>
 *   Subject: Undelivered Mail Returned to Sender | Delayed Mail (still being retried)
 *   Date, Message-ID, MIME-Version, Auto-Submitted: auto-replied (RFC 3834)
 *   Content-Type: multipart/report; report-type=delivery-status; boundary=...
 *
 *   1. text/plain: a human explanation, one paragraph per recipient with
 *      the remote server's reply;
 *   2. message/delivery-status, fields in RFC 3464's order: per message
 *      Original-Envelope-Id (when ENVID was given), Reporting-MTA: dns;
 *      host, Arrival-Date, X-Queue-ID; then per recipient, after an empty
 *      line: Original-Recipient when known, Final-Recipient: rfc822; addr,
 *      Action, Status, Remote-MTA: dns; host (when a server answered),
 *      Diagnostic-Code: smtp; <the reply> (when one came),
 *      Last-Attempt-Date, Will-Retry-Until (delayed only);
 *   3. text/rfc822-headers: the original message's header block (RFC 6522
 *      3; the body is not returned, so no private content travels back and
 *      the DSN stays small).
 *
 * Lines are CRLF and at most 998 octets (long values are folded, at white
 * space, to 78 where possible); header values that are not ASCII are RFC
 * 2047-encoded (UTF-8): the Diagnostic-Code text. Addresses cannot be
 * encoded (RFC 2047 5): a UTF-8 sender goes raw in To: (RFC 6532; such a
 * DSN needs SMTPUTF8 anyway), a UTF-8 recipient is written "utf-8;
 * j\x{F6}rg@..." in the delivery-status (RFC 6533 3, utf-8-addr-xtext).
 * The text part is us-ascii, or utf-8 in 8bit when an address or reply
 * in it is not ASCII (invalid UTF-8 in replies becomes U+FFFD; CR, LF and
 * other control characters become spaces).
 *
 * The original's header block is everything before its first empty line
 * (CRLF or LF line ends), or the whole message when it has none, cut at a
 * line boundary to at most 64 KiB; its lines are returned with CRLF ends
 * (NUL and lone CR become spaces; lines over 998 octets are folded). A
 * block that is not 7-bit goes as message/global-headers (RFC 6533, in
 * 8bit) instead of text/rfc822-headers. An empty block (no original, or
 * one starting with an empty line) leaves the optional third part out
 * (RFC 6522 3). Any 8bit part makes the top level Content-Transfer-
 * Encoding 8bit.
 */
#ifndef CORREIO_QUEUE_DSN_H
#define CORREIO_QUEUE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"

enum dsn_action {
    DSN_FAILED,
    DSN_DELAYED,
};

struct dsn_rcpt {
    const char *final_recipient;    /* the address tried, without <> */
    const char *original_recipient; /* as the client gave it (RCPT TO), or NULL */
    enum dsn_action action;
    const char *status;             /* RFC 3463 "5.1.1", "4.4.1", ...; NULL or malformed:
                                     * 5.0.0 (failed) or 4.0.0 (delayed) */
    const char *remote_mta;         /* host name that answered, or NULL (left out when
                                     * not printable ASCII) */
    const char *diagnostic;         /* the remote reply "550 5.1.1 No such user", or NULL;
                                     * Diagnostic-Code: smtp; <reply on one line> */
    time_t last_attempt;            /* 0: not shown */
    time_t will_retry_until;        /* DSN_DELAYED: when the queue gives up; 0: not shown */
};

struct dsn_params {
    const char *reporting_mta;   /* our host name */
    const char *queue_id;        /* the queue's id of the message (X-Queue-ID) */
    const char *envid;           /* ENVID from MAIL FROM (RFC 3461), or NULL */
    const char *sender;          /* the original MAIL FROM: the DSN's To; never "" */
    time_t arrival;              /* when the message was queued */
    time_t now;                  /* Date: of the DSN */
    const char *boundary;        /* MIME boundary to use (the caller makes it unique) */
    const char *message_id;      /* Message-ID value without <> (caller makes it unique) */
    const uint8_t *original;     /* the original message (its header block is returned) */
    size_t original_len;
    const struct dsn_rcpt *rcpts;
    size_t nrcpts;               /* >= 1; all of one action */
};

/* Append the whole DSN message to out (the caller owns out; nothing else
 * is kept). 0, or -1 on bad parameters or out of memory, out then left
 * as it was. Bad parameters: nrcpts 0, mixed actions, an empty sender
 * (or "<>"), a required string NULL, a sender or final recipient that is
 * not UTF-8 or holds control characters, reporting_mta or message_id not
 * printable ASCII without spaces (message_id also without <>), a boundary
 * that RFC 2046 5.1.1 refuses, original NULL with original_len > 0, a time
 * outside years 0..9999. Addresses may come with or without <>.
 * queue_id and envid are written when printable ASCII, else left out. */
int dsn_build(const struct dsn_params *p, struct buf *out);

/* Whether a message from this sender may get a DSN at all: not for the
 * null reverse-path "" (or "<>", or NULL): never bounce a bounce (RFC 5321
 * 6.1/4.5.5). */
bool dsn_wanted(const char *mail_from);

/* Received: header fields in the message's header block (for loop
 * detection: more than 50 fails with 5.4.6, RFC 5321 6.3): lines that
 * start with "Received" (any case), optional white space and ':', before
 * the first empty line. Continuation lines and the body do not count. */
unsigned dsn_count_received(const uint8_t *msg, size_t len);

/* --- the retry schedule -------------------------------------------------------- */

#define QUEUE_SCHEDULE_MAX 32

/* Parse "1m,5m,15m,30m,1h,2h,4h" (units s, m, h, d, either case; white
 * space around entries allowed; at least one and at most
 * QUEUE_SCHEDULE_MAX entries, each 1s..30d, non-decreasing): the delays in
 * seconds after attempt 1, 2, ...; the last repeats. 0 with the list in
 * delays_r (room for QUEUE_SCHEDULE_MAX) and its length in n_r, or -1 with
 * a reason in err (errlen octets; err may be NULL), delays_r and n_r then
 * untouched. */
int queue_schedule_parse(const char *s, unsigned *delays_r, size_t *n_r, char *err, size_t errlen);

/* When to try again after `attempts` failed attempts (>= 1; 0 counts as
 * 1), the last at `last`: last + delays[min(attempts, n) - 1]; n == 0
 * gives last. */
time_t queue_next_attempt(const unsigned *delays, size_t n, unsigned attempts, time_t last);

#endif
