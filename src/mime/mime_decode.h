/* mime_decode — turning message text into UTF-8, and searching it.
 *
 * Everything here tolerates bad input: unknown charsets, invalid encoded
 * words, bad base64 and quoted-printable are decoded as well as they can
 * be (invalid octets become U+FFFD, or pass through), never rejected.
 * Functions that append to a struct buf return 0, or -1 when memory runs
 * out (the buffer may then hold part of the result).
 */
#ifndef CORREIO_MIME_MIME_DECODE_H
#define CORREIO_MIME_MIME_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "mime/mime.h"

/* Unfold a header value (RFC 5322 2.2.3): CRLF / LF followed by white
 * space is removed (the white space is kept); leading and trailing white
 * space is trimmed. */
int mime_unfold(const uint8_t *v, size_t n, struct buf *out);

/* Unfold and decode RFC 2047 encoded words ("=?charset?B|Q?...?=", also the
 * RFC 2231 "charset*lang" form) to UTF-8. White space between two adjacent
 * encoded words is dropped (RFC 2047 6.2); text that is not an encoded
 * word is taken as UTF-8 when valid, else as ISO-8859-1 (8-bit headers). */
int mime_header_decode(const uint8_t *v, size_t n, struct buf *out);

/* Convert text in charset to UTF-8 (iconv; names are matched as glibc
 * knows them, plus common aliases). Unknown charsets: the text is taken as
 * UTF-8 when valid, else ISO-8859-1. Invalid sequences give U+FFFD. */
int mime_charset_to_utf8(const char *charset, const uint8_t *s, size_t n, struct buf *out);

/* Undo a Content-Transfer-Encoding. Base64 skips characters outside its
 * alphabet and stops at '='; quoted-printable keeps malformed "=" escapes
 * as written and removes soft line breaks. Other encodings are copied. */
int mime_cte_decode(enum mime_cte cte, const uint8_t *s, size_t n, struct buf *out);

/* The body of part p decoded: transfer encoding undone, and for text/...
 * parts converted from its charset to UTF-8. Multipart and message parts
 * give their body bytes as they are. */
int mime_part_decode_text(const struct mime_message *m, const struct mime_part *p, struct buf *out);

/* Is needle a substring of hay, ignoring case? Both are UTF-8: ASCII and
 * the simple lower-case mapping of Latin-1, Latin Extended-A, Greek,
 * Cyrillic and fullwidth letters are honoured (a built-in table, not the
 * locale); invalid octets only match themselves. An empty needle matches. */
bool mime_text_contains(const uint8_t *hay, size_t hay_len, const char *needle_utf8);

enum mime_search_what {
    MIME_SEARCH_HEADER, /* one field (every occurrence), decoded (SEARCH HEADER/FROM/SUBJECT..) */
    MIME_SEARCH_BODY,   /* the decoded content of the text parts (SEARCH BODY) */
    MIME_SEARCH_TEXT,   /* the decoded headers and the BODY text (SEARCH TEXT) */
};

/* RFC 3501 6.4.4 substring search. For MIME_SEARCH_HEADER, field names the
 * header field (e.g. "Subject"); an empty needle then matches when the
 * field is present. Headers of the top-level message only are searched
 * for HEADER; BODY and TEXT search every text/... part (including those of
 * attached messages, with their headers for TEXT). Returns 1 when found,
 * 0 when not, -1 when memory runs out. */
int mime_search_text(const struct mime_message *m, enum mime_search_what what, const char *field,
                     const char *needle_utf8);

/* The searchable header fields kept in the index, so that SEARCH FROM,
 * TO, CC, BCC, SUBJECT (and HEADER on those names) need no message file:
 * every occurrence of those fields in the top-level header, each value
 * unfolded and decoded exactly as mime_search_text does. Written to out
 * as a versioned record list ("1" then, per occurrence, a tag letter, the
 * decimal length, ':' and the value). 0, or -1 when memory runs out. */
int mime_search_fields(const struct mime_message *m, struct buf *out);
/* Whether field (a header name, any case) is one mime_search_fields keeps. */
bool mime_search_field_cached(const char *field);
/* MIME_SEARCH_HEADER on such a record list: 1 found, 0 not, -1 when the
 * list is malformed or the field is not kept (then search the message). */
int mime_search_fields_match(const uint8_t *fields, size_t len, const char *field,
                             const char *needle_utf8);

/* Convert bare LF line endings (and lone CR) to CRLF, as an IMAP APPEND
 * literal or an SMTP DATA transfer would carry them. */
int mime_crlf_normalize(const uint8_t *s, size_t n, struct buf *out);

#endif
