/* base64 — RFC 4648 base64, strict (for SASL). */
#ifndef CORREIO_LIB_BASE64_H
#define CORREIO_LIB_BASE64_H

#include <stddef.h>

#include "lib/buf.h"

/* Append the base64 of data. -1 on OOM. */
int base64_encode(struct buf *out, const void *data, size_t len);
/* Decode text (len octets, no white space, '=' padding required) and
 * append the bytes. -1 on bad input or OOM. */
int base64_decode(struct buf *out, const char *text, size_t len);

#endif
