/* submission — the message fix-ups of RFC 6409 section 8 for mail a user
 * submits, before it goes anywhere (local mailboxes or the queue). Pure.
 *
 * smtp_submission_fixup copies the message to out with these changes to
 * its header block (the body is copied unchanged):
 *  - every Bcc: and Resent-Bcc: field is removed, with its folded
 *    continuation lines (RFC 6409 8.3 is a "MAY", but a Bcc must never
 *    reach the other recipients; RFC 5322 3.6.3);
 *  - a Date: field is added when there is none (RFC 6409 8.2), in RFC 5322
 *    form for `now` in UTC ("Date: Sun, 22 Nov 2026 06:05:28 +0000");
 *  - a Message-ID: field is added when there is none (RFC 6409 8.3):
 *    "<id_left@hostname>" with id_left given by the caller (unique);
 *  - added fields go at the end of the header block (before the empty line),
 *    so a Received: field the caller prepends stays on top;
 *  - line endings are kept as they are (the SMTP layer already gives CRLF).
 * A message without an empty line is all header: the fields are added at
 * its end (after a CRLF when its last line has none). A message whose
 * first line is not a header field (no header at all) gets the added
 * fields and an empty line in front of it.
 *
 * The header block is the lines before the first empty line (CRLF CRLF or
 * LF LF); it exists when the first line is a field in the RFC 5322 2.2
 * sense ("name:" with an ftext name, white space before the colon allowed).
 * A line starting with SP or HTAB continues the one before (2.2.3). Field
 * names are compared without case; inside the block a name is read as the
 * store's parser reads it (mime_field_iter: text before the colon, cut at a
 * NUL), so "Bcc :" goes and "Bcc-Extra:" stays. Lines without a colon are
 * copied as they are. Added lines end like the message's first line (bare
 * LF when it has one, else CRLF).
 *
 * smtp_from_addrs lists the addr-specs of every From: field (RFC 5322
 * 3.6.2; groups and display names handled by mime_addr), lower-cased
 * domain, for the sender check: malloc'd array of malloc'd strings.
 * Each is "local@domain" without "<>" and route: the local part as RFC 5322
 * writes it (a dot-atom as is, otherwise a quoted-string with '"' and '\'
 * escaped, e.g. "\"john doe\"@example.org"), the domain (or domain literal
 * with its brackets) in ASCII lower case. In message order, each string
 * once. Group markers and entries without a local part or a domain are
 * left out; an entry mime_addr flags as broken but holding both is listed,
 * so that a check of the list sees it. Only the header block counts (none
 * when the message has no header, as above).
 */
#ifndef CORREIO_PROTO_SMTP_SUBMISSION_H
#define CORREIO_PROTO_SMTP_SUBMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"

struct smtp_fixup_result {
    bool added_date;
    bool added_message_id;
    unsigned removed_bcc;    /* Bcc: and Resent-Bcc: fields removed */
};

/* Append the fixed message to out (what out holds already stays in front
 * of it). hostname: the id-right of Message-ID ("localhost" when NULL or
 * ""); id_left: its id-left, unique per message (a hex of now when NULL or
 * ""); octets that cannot stand in a msg-id become '_'. r may be NULL.
 * 0, or -1 when memory runs out (out then holds what it held before). */
int smtp_submission_fixup(const uint8_t *msg, size_t len, const char *hostname, time_t now,
                          const char *id_left, struct buf *out, struct smtp_fixup_result *r);

/* The From: addresses: 0 and *addrs_r (n_r entries; free with
 * smtp_from_addrs_free), or -1 when memory runs out. A message without a
 * From: (or with no parsable address in it) gives 0 entries and NULL; so
 * does -1. The local part keeps its case; only the domain is lower-cased. */
int smtp_from_addrs(const uint8_t *msg, size_t len, char ***addrs_r, size_t *n_r);
void smtp_from_addrs_free(char **addrs, size_t n);
/* The same for the fields named in fields[0..nfields) (any case), e.g. To,
 * Cc and Bcc for `sendmail -t`; free with smtp_from_addrs_free. */
int smtp_header_addrs(const uint8_t *msg, size_t len, const char *const *fields,
                      size_t nfields, char ***addrs_r, size_t *n_r);

#endif
