/* buf — a growable byte buffer with a read offset.
 *
 * Bytes are appended at the end and consumed from the front. The buffer
 * owns its storage; buf_free() releases it. Functions that may allocate
 * return 0 on success and -1 when memory runs out (the buffer is then left
 * as it was), so that code serving a client can answer 4xx instead of
 * aborting.
 */
#ifndef CORREIO_LIB_BUF_H
#define CORREIO_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data; /* storage; NULL when empty and never grown */
    size_t off;    /* first unread byte */
    size_t len;    /* end of the written bytes (off <= len <= cap) */
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0, 0}

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Forget all contents, keep the storage. */
void buf_reset(struct buf *b);

/* Unread bytes. */
static inline const uint8_t *buf_ptr(const struct buf *b)
{
    return b->data ? b->data + b->off : (const uint8_t *)"";
}
static inline size_t buf_size(const struct buf *b)
{
    return b->len - b->off;
}

int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Append one protocol reply line: the formatted text cut to max - 3
 * octets (max counts the line's CRLF and a NUL), then CRLF. fmt has no CRLF. */
int buf_vline(struct buf *b, size_t max, const char *fmt, va_list ap);
/* Drop n unread bytes from the front (n <= buf_size). */
void buf_consume(struct buf *b, size_t n);
/* Move unread bytes to the start of storage. */
void buf_compact(struct buf *b);
/* NUL-terminate the unread bytes (not counted in the size) and return them. NULL on OOM. */
const char *buf_cstr(struct buf *b);

/* Find the next line ending in LF among the unread bytes. Returns its
 * length including the LF, 0 when no complete line is there yet. */
size_t buf_line_len(const struct buf *b);

#endif
