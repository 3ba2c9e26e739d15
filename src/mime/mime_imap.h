/* mime_imap — IMAP FETCH items computed from a parsed message
 * (RFC 3501 7.4.2): ENVELOPE, BODY and BODYSTRUCTURE.
 *
 * The output follows what Dovecot writes, byte for byte where the RFC
 * leaves a choice (tests/unit/mime_expected/ holds Dovecot's answers for
 * the shared corpus): strings are quoted when they can be, literals
 * ({n}CRLF...) when they contain CR, LF, NUL or 8-bit octets; NIL for
 * absent fields; header values are unfolded but not RFC 2047-decoded.
 *
 * All functions append to out and return 0, or -1 when memory runs out
 * (out may then hold a partial item; the caller discards it).
 */
#ifndef CORREIO_MIME_MIME_IMAP_H
#define CORREIO_MIME_MIME_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "mime/mime.h"

/* ENVELOPE fields are taken from the last Date, Subject, In-Reply-To and
 * Message-ID fields; repeated address fields are joined (Dovecot's way). */

/* The ENVELOPE of the message whose header is part p's header: p is
 * m->root, or the child of a message/rfc822 part; NULL means m->root.
 * Writes the parenthesised list (without the "ENVELOPE " prefix). */
int mime_imap_envelope(const struct mime_message *m, const struct mime_part *p, struct buf *out);

/* BODYSTRUCTURE (extended == true) or BODY (extended == false) of part p
 * (NULL: the whole message), with its parentheses, without the item name.
 * message/global is shown as a basic part, as IMAP4rev1 defines it. */
int mime_imap_bodystructure(const struct mime_message *m, const struct mime_part *p, bool extended,
                            struct buf *out);

/* What the index caches of a message, computed with one parse when it is
 * stored (delivery, APPEND) so that FETCH ENVELOPE/BODYSTRUCTURE and
 * SEARCH on address and subject fields read no file. */
struct mime_index_cache {
    char *envelope;        /* mime_imap_envelope, NUL-terminated, or NULL */
    char *bodystructure;   /* mime_imap_bodystructure (extended), or NULL */
    struct buf fields;     /* mime_search_fields, empty when not computed */
};
/* Parse data (limits NULL: defaults) and fill c (zeroed first). Parts
 * that fail (memory) are left empty: the cache is optional. */
void mime_index_cache_compute(const uint8_t *data, size_t len, const struct mime_limits *limits,
                              struct mime_index_cache *c);
void mime_index_cache_free(struct mime_index_cache *c);

/* Append s[0..n) as an IMAP string: NIL when s is NULL, a quoted string
 * ("..." with \\ and \" escaped) when possible, else a literal {n}CRLF... */
int mime_imap_string(struct buf *out, const uint8_t *s, size_t n);
/* The same for a NUL-terminated string (NULL gives NIL). */
int mime_imap_cstring(struct buf *out, const char *s);

/* Append s[0..n) as a literal {n}CRLF..., NUL octets sent as 0x80 (as
 * Dovecot does for BODY[...] data: RFC 3501 forbids NUL in literals). */
int mime_imap_literal(struct buf *out, const uint8_t *s, size_t n);

#endif
