#include "lib/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
    memset(b, 0, sizeof(*b));
}

void buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void buf_reset(struct buf *b)
{
    b->off = b->len = 0;
}

void buf_compact(struct buf *b)
{
    if (b->off == 0)
        return;
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    /* Reuse the consumed front before growing. */
    if (b->off > 0 && b->cap - (b->len - b->off) >= extra) {
        buf_compact(b);
        return 0;
    }
    size_t need = b->len - b->off + extra;
    if (need < extra)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    buf_compact(b);
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_vline(struct buf *b, size_t max, const char *fmt, va_list ap)
{
    char line[1024];
    if (max > sizeof(line))
        max = sizeof(line);
    if (max < 3)
        return -1;
    int n = vsnprintf(line, max - 2, fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > max - 3)
        n = (int)(max - 3);
    memcpy(line + n, "\r\n", 2);
    return buf_append(b, line, (size_t)n + 2);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len - b->off) {
        b->off = b->len = 0;
        return;
    }
    b->off += n;
}

const char *buf_cstr(struct buf *b)
{
    if (buf_reserve(b, 1) < 0)
        return NULL;
    b->data[b->len] = '\0';
    return (const char *)b->data + b->off;
}

size_t buf_line_len(const struct buf *b)
{
    const uint8_t *p = buf_ptr(b);
    const uint8_t *nl = memchr(p, '\n', buf_size(b));
    return nl ? (size_t)(nl - p) + 1 : 0;
}
