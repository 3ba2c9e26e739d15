/* smtp_body — DATA/BDAT message bytes, see smtp_body.h.
 *
 * Normalisation (documented for the whole SMTP server): the stored message
 * has only CRLF line endings. Each bare LF becomes CRLF and each bare CR
 * becomes CRLF; neither ends a line for dot-unstuffing, line length or the
 * end-of-data check (RFC 5321 2.3.8 and 4.5.2).
 */
#include "proto/smtp/smtp_body.h"

void smtp_body_init(struct smtp_body *b, bool dot_mode, size_t max_line, size_t max_size,
                    struct buf *msg)
{
    b->state = SMTP_BODY_BOL;
    b->dot_mode = dot_mode;
    b->max_line = max_line;
    b->max_size = max_size;
    b->line_len = 0;
    b->size = 0;
    b->msg = msg;
    b->line_too_long = false;
    b->too_big = false;
    b->oom = false;
    buf_reset(msg);
}

static void body_put(struct smtp_body *b, const void *p, size_t n)
{
    if (b->too_big || b->oom)
        return;
    if (n > b->max_size - b->size) {
        /* RFC 1870 / RFC 5321 4.5.3.1.10: keep reading, store no more. */
        b->too_big = true;
        buf_free(b->msg);
        return;
    }
    if (buf_append(b->msg, p, n) < 0) {
        b->oom = true;
        buf_free(b->msg);
        return;
    }
    b->size += n;
}

static void body_count(struct smtp_body *b, size_t n)
{
    b->line_len += n;
    if (b->line_len > b->max_line)
        b->line_too_long = true;
}

/* Inside a line: store the run of ordinary octets at p, or handle one CR/LF. */
static size_t body_text(struct smtp_body *b, const uint8_t *p, size_t n)
{
    size_t j = 0;
    while (j < n && p[j] != '\r' && p[j] != '\n')
        j++;
    if (j > 0) {
        body_count(b, j);
        body_put(b, p, j);
        return j;
    }
    body_count(b, 1);
    if (p[0] == '\r')
        b->state = SMTP_BODY_CR;
    else
        body_put(b, "\r\n", 2); /* bare LF: stored as CRLF, the line goes on */
    return 1;
}

size_t smtp_body_feed(struct smtp_body *b, const uint8_t *p, size_t n, bool *end_r)
{
    size_t i = 0;
    *end_r = false;
    while (i < n) {
        uint8_t c = p[i];
        switch (b->state) {
        case SMTP_BODY_TEXT:
            i += body_text(b, p + i, n - i);
            break;
        case SMTP_BODY_BOL:
            if (b->dot_mode && c == '.') {
                /* RFC 5321 4.5.2: not counted, removed unless it ends the data */
                b->state = SMTP_BODY_DOT;
                i++;
            } else {
                b->state = SMTP_BODY_TEXT;
            }
            break;
        case SMTP_BODY_CR:
            if (c == '\n') {
                body_count(b, 1);
                body_put(b, "\r\n", 2);
                b->line_len = 0;
                b->state = SMTP_BODY_BOL;
                i++;
            } else {
                body_put(b, "\r\n", 2); /* bare CR: stored as CRLF; c is read again */
                b->state = SMTP_BODY_TEXT;
            }
            break;
        case SMTP_BODY_DOT:
            if (c == '\r') {
                body_count(b, 1);
                b->state = SMTP_BODY_DOT_CR;
                i++;
            } else {
                b->state = SMTP_BODY_TEXT; /* the first dot is dropped; c is read again */
            }
            break;
        case SMTP_BODY_DOT_CR:
            if (c == '\n') {
                /* CRLF "." CRLF: the end of the mail data. */
                b->line_len = 0;
                b->state = SMTP_BODY_BOL;
                *end_r = true;
                return i + 1;
            }
            /* "." then a bare CR: the dot is dropped, the CR is handled as bare. */
            b->state = SMTP_BODY_CR;
            break;
        }
    }
    return i;
}

void smtp_body_finish(struct smtp_body *b)
{
    if (b->state == SMTP_BODY_CR)
        body_put(b, "\r\n", 2);
    b->state = SMTP_BODY_BOL;
    b->line_len = 0;
}
