/* smtp_body — the message bytes of DATA and BDAT, read as they arrive.
 *
 * A push parser: smtp_body_feed() takes any number of octets (one at a
 * time is fine) and stores the message into a buffer the caller owns.
 *
 * DATA (dot mode), RFC 5321 4.5.2 and 2.3.8:
 *  - Lines are split only on CRLF. A line starting with "." loses that
 *    first dot. The end of the data is only CRLF "." CRLF, where the first
 *    CRLF may be the one that ended the DATA command line.
 *  - A bare LF or a bare CR never ends a line and never ends the message
 *    ("\n.\n", "\r.\r", "\n.\r\n" and "\r\n.\n" are all message text:
 *    the SMTP smuggling defence). Each bare LF and each bare CR is stored
 *    as CRLF, so the stored message has CRLF line endings only.
 * BDAT (raw mode), RFC 3030: no dot handling and no end marker (the caller
 * counts the chunk octets); bare CR and LF are normalised the same way,
 * and a CRLF split across two chunks is still one CRLF.
 *
 * Limits (the body is always read to its end; errors are reported there):
 *  - a line longer than max_line octets including its CRLF (RFC 5321
 *    4.5.3.1.6; a dot removed for transparency is not counted) sets
 *    line_too_long;
 *  - more than max_size stored octets sets too_big; the buffer is then
 *    freed and nothing more is stored.
 */
#ifndef CORREIO_PROTO_SMTP_BODY_H
#define CORREIO_PROTO_SMTP_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum smtp_body_state {
    SMTP_BODY_BOL,    /* at the start of a line (after CRLF) */
    SMTP_BODY_TEXT,   /* inside a line */
    SMTP_BODY_CR,     /* after a CR that may start a CRLF */
    SMTP_BODY_DOT,    /* dot mode: "." at the start of a line */
    SMTP_BODY_DOT_CR, /* dot mode: "." CR at the start of a line */
};

struct smtp_body {
    enum smtp_body_state state;
    bool dot_mode;   /* DATA: transparency and end detection */
    size_t max_line; /* octets incl. CRLF */
    size_t max_size; /* stored octets */
    size_t line_len; /* octets of the current line so far */
    size_t size;     /* octets stored */
    struct buf *msg; /* where the message goes; owned by the caller */
    bool line_too_long;
    bool too_big;
    bool oom; /* an append failed; nothing more is stored */
};

/* Start a body. msg is reset. */
void smtp_body_init(struct smtp_body *b, bool dot_mode, size_t max_line, size_t max_size,
                    struct buf *msg);
/* Take up to n octets. Returns how many were used: all of them, except in
 * dot mode when the end of data was found, which sets *end_r (the octets
 * after the final CRLF "." CRLF are left for the caller). */
size_t smtp_body_feed(struct smtp_body *b, const uint8_t *p, size_t n, bool *end_r);
/* Raw mode: the last chunk is in. A CR still waiting for its LF is stored
 * as CRLF. */
void smtp_body_finish(struct smtp_body *b);

#endif
