/* mime_addr — RFC 5322 address lists (3.4), with the obsolete syntax of 4.4.
 *
 * Parses what appears in From:, Sender:, Reply-To:, To:, Cc:, Bcc: (and
 * Resent-*): display names (atoms, quoted strings, RFC 2047 words kept as
 * written), comments (a comment is used as the name when there is no
 * display name, as "addr (Name)" writers mean), angle addresses with
 * obsolete source routes ("<@a,@b:user@host>"), groups ("team: a@x, b@y;"),
 * quoted local parts, domain literals, and garbage (best effort, flagged).
 *
 * The result is a list shaped like IMAP's ENVELOPE address lists (RFC
 * 3501 7.4.2):
 *  - a mailbox: mailbox and host set (host NULL when the address had no
 *    "@domain"), name and route when present;
 *  - the start of a group: name == NULL, route == NULL, mailbox = group
 *    name, host == NULL, group_start set;
 *  - the end of a group: everything NULL, group_end set.
 * Strings are unfolded; quoted strings are unquoted (backslash escapes
 * removed). Bytes >= 0x80 are kept as they are (UTF-8 headers, RFC 6532).
 *
 * Ownership: the caller owns the list; release with mime_addr_free().
 */
#ifndef CORREIO_MIME_MIME_ADDR_H
#define CORREIO_MIME_MIME_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mime_addr {
    struct mime_addr *next;
    char *name;    /* display name (or comment), or NULL */
    char *route;   /* obsolete route "@a,@b" (without the final colon), or NULL */
    char *mailbox; /* local part, or the group name at a group start, or NULL */
    char *host;    /* domain (a domain literal keeps its brackets), or NULL */
    bool group_start;
    bool group_end;
    bool invalid; /* something in this entry did not follow the syntax */
};

/* Parse an address-list header value (raw, possibly folded). *list_r is
 * set to the list (NULL when the value holds no address at all). Returns 0,
 * or -1 when memory runs out (*list_r is then NULL). Never fails on syntax:
 * what cannot be parsed is flagged invalid, with the missing parts NULL. */
int mime_addr_parse(const uint8_t *value, size_t len, struct mime_addr **list_r);

enum mime_addr_flags {
    /* Fill what is missing or broken with the placeholders IMAP servers put
     * in ENVELOPE: mailbox "MISSING_MAILBOX", host "MISSING_DOMAIN" or
     * "SYNTAX_ERROR", route "INVALID_ROUTE". */
    MIME_ADDR_FILL_MISSING = 1u << 0,
    /* Accept local parts with leading, trailing or doubled dots
     * ("first..last.", as some senders write). */
    MIME_ADDR_NON_STRICT_DOTS = 1u << 1,
};
int mime_addr_parse_flags(const uint8_t *value, size_t len, unsigned flags,
                          struct mime_addr **list_r);

/* Release a list and set *list to NULL. NULL is fine. */
void mime_addr_free(struct mime_addr **list);

/* Number of mailboxes (not group markers) in the list. */
size_t mime_addr_count(const struct mime_addr *list);

#endif
