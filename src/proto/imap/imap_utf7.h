/* imap_utf7 — modified UTF-7 mailbox names (RFC 3501 5.1.3).
 *
 * Printable US-ASCII (0x20-0x7e) stands for itself, except "&" which is
 * written "&-". Everything else is UTF-16BE in modified base64 (","
 * instead of "/", no "=" padding) between "&" and "-".
 */
#ifndef CORREIO_PROTO_IMAP_UTF7_H
#define CORREIO_PROTO_IMAP_UTF7_H

#include "lib/buf.h"

/* Decode a modified UTF-7 name and append it as UTF-8 to out.
 * -1 (out left as it was) on: bytes outside 0x20-0x7e, "&" without a
 * closing "-", bad base64 characters, a base64 run that is not a whole
 * number of UTF-16 units or has non-zero padding bits, a printable ASCII
 * character (or U+0000) base64-encoded, unpaired UTF-16 surrogates, OOM.
 * 0 on success. */
int imap_utf7_to_utf8(const char *in, struct buf *out);

/* Encode a UTF-8 name as modified UTF-7 and append it to out.
 * -1 (out left as it was) on invalid UTF-8 (overlong forms, surrogates,
 * code points above U+10FFFF, truncated sequences) or OOM; 0 on success. */
int imap_utf8_to_utf7(const char *in, struct buf *out);

#endif
