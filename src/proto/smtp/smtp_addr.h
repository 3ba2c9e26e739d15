/* smtp_addr — the address syntax of SMTP commands (RFC 5321 4.1.2, with the
 * UTF-8 extensions of RFC 6531 3.3). Pure functions, no allocation.
 *
 * A Path is "<" [ A-d-l ":" ] Mailbox ">"; Mailbox is Local-part "@"
 * ( Domain / address-literal ). smtp_path_parse() checks a Path, removes the
 * source route (RFC 5321 4.1.1.3 lets a server ignore it) and copies the
 * mailbox into a fixed buffer, since RFC 5321 4.5.3.1.3 bounds a path at
 * 256 octets.
 */
#ifndef CORREIO_PROTO_SMTP_ADDR_H
#define CORREIO_PROTO_SMTP_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1: local part, octets */
#define SMTP_DOMAIN_MAX 255 /* RFC 5321 4.5.3.1.2: domain, octets */
#define SMTP_PATH_MAX 256   /* RFC 5321 4.5.3.1.3: path incl. "<" and ">" */
#define SMTP_LABEL_MAX 63   /* RFC 1035 2.3.4: one label of an ASCII domain */

enum smtp_addr_status {
    SMTP_ADDR_OK = 0,
    SMTP_ADDR_SYNTAX,    /* not a Path */
    SMTP_ADDR_TOO_LONG,  /* local part, domain or path over its limit */
    SMTP_ADDR_NEED_UTF8, /* well-formed, but non-ASCII without SMTPUTF8 (RFC 6531 3.5) */
};

/* Flags for smtp_path_parse. */
enum {
    SMTP_PATH_UTF8 = 1 << 0,          /* the transaction has SMTPUTF8: non-ASCII allowed */
    SMTP_PATH_NULL_OK = 1 << 1,       /* "<>" is fine (MAIL FROM) */
    SMTP_PATH_POSTMASTER_OK = 1 << 2, /* "<Postmaster>" without domain is fine (RCPT TO) */
};

struct smtp_path {
    /* "local@domain" as the client wrote it (a quoted local part keeps
     * its quotes), without "<>" and source route; "" for the null path;
     * "postmaster" for <Postmaster>. */
    char mailbox[SMTP_PATH_MAX + 1];
    size_t local_len;   /* octets of the local part at the start of mailbox */
    bool is_null;       /* "<>" */
    bool is_postmaster; /* "<postmaster>" (any case), no domain */
    bool had_route;     /* a source route was removed */
    bool non_ascii;     /* mailbox holds UTF-8 beyond ASCII */
    bool local_quoted;  /* the local part is a quoted-string */
    /* The local part, unquoted, holds '%', '!' or '@': the old relay
     * syntaxes ("user%host@us", "host!user@us", "\"user@host\"@us"). */
    bool relay_chars;
};

/* Parse the Path at s (which must start with '<'; s is NUL-terminated).
 * flags: SMTP_PATH_*. On SMTP_ADDR_OK and SMTP_ADDR_NEED_UTF8, *p is filled
 * and *end_r points just after the '>'. On other results *p and *end_r
 * are unspecified. */
enum smtp_addr_status smtp_path_parse(const char *s, unsigned flags, struct smtp_path *p,
                                      const char **end_r);

/* Length of the well-formed UTF-8 sequence at s (at most n octets): 1 for
 * ASCII, 2-4 otherwise; 0 when malformed (overlong, surrogate, > U+10FFFF,
 * truncated). */
size_t smtp_utf8_len(const unsigned char *s, size_t n);

/* Octets at the start of s that form an RFC 5321 Domain (sub-domains joined
 * by "."; U-labels too when utf8). 0 when s does not start with one or a
 * label is malformed or too long. */
size_t smtp_domain_span(const char *s, bool utf8);

/* Whether s[0..n) is a dotted-quad IPv4 address (RFC 5321 4.1.3). */
bool smtp_ipv4_valid(const char *s, size_t n);
/* Whether s[0..n) is an IPv6 address as RFC 5321 4.1.3 writes it (full,
 * compressed, with or without a trailing IPv4 part), without "IPv6:". */
bool smtp_ipv6_valid(const char *s, size_t n);
/* Octets of the address literal at s ("[1.2.3.4]" or "[IPv6:...]"),
 * including the brackets; 0 when s does not start with a valid one. */
size_t smtp_addr_literal_span(const char *s);

#endif
