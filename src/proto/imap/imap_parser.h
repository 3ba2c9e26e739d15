/* imap_parser — IMAP4rev1 command parser (RFC 3501 section 9 grammar,
 * RFC 7888 LITERAL+ / LITERAL-, RFC 3516 literal8 "~{n}").
 *
 * A pull parser without I/O: the caller feeds the bytes it read with
 * imap_parser_feed(), then loops on imap_parser_next() until it returns
 * IMAP_PARSE_NEED_MORE. Input split anywhere (byte by byte, inside a
 * literal, inside "{123}\r\n") parses the same as input fed at once.
 * Pipelined commands stay buffered and come out one per call, in order.
 *
 * Token rules (what the session sees):
 *  - tag: 1*<ASTRING-CHAR except "+">; the command name is an atom,
 *    upper-cased. "UID FETCH ..." is name "UID" with args[0] the atom
 *    "FETCH" (as sent; compare with imap_arg_atom_is()).
 *  - ATOM: printable US-ASCII except SP ( ) { " and controls. This is
 *    wider than RFC 3501 ATOM-CHAR on purpose, so that one atom carries:
 *    flags "\Seen" "\*", list patterns "*" "%" "INBOX.*", sequence sets
 *    "1:*,5" "$", "[Gmail]/Sent", and FETCH attributes with sections.
 *    An atom may contain "[" ... "]" with spaces, parenthesised lists and
 *    quoted strings inside the brackets; the whole thing is ONE atom kept
 *    as sent, e.g. `BODY.PEEK[HEADER.FIELDS (From To)]<0.100>`. Re-parse
 *    it with imap_section_parse(). (If a "[" is not closed before the end
 *    of the line, the atom ends at the next SP/paren instead, so that a
 *    mailbox atom like foo[bar still works.) Atoms keep their case.
 *  - NIL (any case) is IMAP_ARG_NIL; its str is still the text as sent
 *    ("NIL"), so code reading an astring (a mailbox named NIL) can use it.
 *  - QUOTED: "..." with \" and \\ escapes (other escapes are errors);
 *    8-bit bytes are allowed (UTF-8), CR, LF and NUL are not. str is the
 *    unescaped value.
 *  - LITERAL: {n}, {n+} (non-synchronizing), ~{n} / ~{n+} (literal8,
 *    literal8 = true). The literal must end its line. str holds exactly n
 *    bytes plus a terminating NUL; the bytes may contain NUL and CRLF, so
 *    use len.
 *  - LIST: "(" ... ")" nested up to max_depth.
 *  - Arguments are separated by one or more SP; a trailing SP before CRLF
 *    is tolerated. A bare LF ends a line like CRLF.
 *
 * Ownership: a command returned by imap_parser_next() (and a line returned
 * by imap_parser_next_line(), and the tag/error strings) belong to the
 * parser and stay valid until the next call of imap_parser_next(),
 * imap_parser_next_line(), imap_parser_reject_literal(),
 * imap_parser_reset() or imap_parser_free(). imap_parser_feed() does not
 * invalidate them. Everything is freed by imap_parser_free().
 */
#ifndef CORREIO_PROTO_IMAP_PARSER_H
#define CORREIO_PROTO_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum imap_arg_type {
    IMAP_ARG_ATOM,
    IMAP_ARG_QUOTED,
    IMAP_ARG_LITERAL,
    IMAP_ARG_NIL,
    IMAP_ARG_LIST,
};

struct imap_arg {
    enum imap_arg_type type;
    char *str;             /* ATOM/QUOTED/LITERAL/NIL: NUL-terminated; NULL for LIST */
    size_t len;            /* bytes in str (a literal may contain NULs) */
    struct imap_arg *list; /* IMAP_ARG_LIST: the elements of "(...)" */
    size_t nlist;
    bool literal8; /* IMAP_ARG_LITERAL sent as ~{n} */
};

struct imap_command {
    char *tag;
    char *name; /* upper-cased */
    struct imap_arg *args;
    size_t nargs;
};

/* Limits; a field left 0 takes the default in brackets. */
struct imap_parser_limits {
    size_t max_line;    /* bytes of one command, literals excluded, CRLFs included [65536] */
    size_t max_literal; /* bytes of one literal [64 MiB] */
    size_t max_depth;   /* nesting of "(" lists [16] */
    size_t max_args;    /* arguments in one command, nested ones counted [10000] */
};

enum imap_parse_status {
    IMAP_PARSE_NEED_MORE,    /* no complete command yet: feed more bytes */
    IMAP_PARSE_COMMAND,      /* *cmd_r is set */
    IMAP_PARSE_LITERAL_WAIT, /* a synchronizing literal {n} / ~{n} was announced.
                              * *tag_r is the command's tag. *err_r is NULL when
                              * the literal fits max_literal, else "literal too
                              * large". The caller either accepts it (sends
                              * "+ ..." and calls imap_parser_next() again) or
                              * refuses it (imap_parser_reject_literal(), then
                              * answers "tag BAD/NO ..."). Calling next() again
                              * on a too-large literal rejects it implicitly and
                              * returns IMAP_PARSE_ERROR. */
    IMAP_PARSE_ERROR,        /* syntax error: *tag_r is the tag (NULL when the tag
                              * itself is missing or invalid: answer with "*"),
                              * *err_r a short message for "tag BAD <msg>".
                              * The bad command is skipped (the rest of its line,
                              * and the bytes of a non-synchronizing literal that
                              * ended it, even if they have not arrived yet); the
                              * next command parses normally. */
    IMAP_PARSE_LINE,         /* imap_parser_next_line() only: *line_r is set */
};

struct imap_parser;

/* A new parser; lim may be NULL (all defaults). NULL on OOM. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *lim);
/* Free the parser and everything it returned; sets *p to NULL. NULL-safe. */
void imap_parser_free(struct imap_parser **p);

/* Buffer len bytes of input. 0, or -1 on OOM (nothing buffered). */
int imap_parser_feed(struct imap_parser *p, const void *data, size_t len);

/* Parse the next command from what was fed. See enum imap_parse_status for
 * what each result sets. cmd_r, tag_r and err_r must not be NULL; they are
 * set to NULL when not meaningful. Out of memory while parsing is reported
 * as IMAP_PARSE_ERROR with *err_r = "out of memory". */
enum imap_parse_status imap_parser_next(struct imap_parser *p, struct imap_command **cmd_r,
                                        const char **tag_r, const char **err_r);

/* Take the next raw line, without its CRLF (or LF), for an AUTHENTICATE
 * continuation or IDLE's "DONE". Call it only between commands (after
 * IMAP_PARSE_COMMAND, not while a command is half parsed; then it returns
 * IMAP_PARSE_ERROR). Returns IMAP_PARSE_LINE with *line_r (NUL-terminated,
 * *len_r bytes, owned by the parser), IMAP_PARSE_NEED_MORE, or
 * IMAP_PARSE_ERROR for a line over max_line (which is then discarded, as a
 * raw line: a "{n+}" at its end is not a literal). */
enum imap_parse_status imap_parser_next_line(struct imap_parser *p, char **line_r, size_t *len_r);

/* Refuse the synchronizing literal just announced by IMAP_PARSE_LITERAL_WAIT
 * (too large, or the command is not allowed): the command is dropped and
 * the client will not send the literal (RFC 3501 7.5), so the next bytes
 * start a new command. The caller sends the tagged BAD/NO. No-op in any
 * other state. */
void imap_parser_reject_literal(struct imap_parser *p);

/* While in IMAP_PARSE_LITERAL_WAIT: the command name (upper-cased) and the
 * announced literal. false in any other state. Any out pointer may be NULL. */
bool imap_parser_pending_literal(const struct imap_parser *p, const char **name_r, uint64_t *size_r,
                                 bool *literal8_r);

/* Bytes fed but not yet consumed (e.g. to refuse input pipelined after
 * STARTTLS). */
size_t imap_parser_buffered(const struct imap_parser *p);
/* Drop all buffered input and any half-parsed command (after STARTTLS). */
void imap_parser_reset(struct imap_parser *p);

/* --- argument helpers ------------------------------------------------------ */

/* The string of an ATOM, QUOTED, LITERAL or NIL arg (an astring/nstring as
 * RFC 3501 reads it); NULL for a LIST or a string containing NUL. */
const char *imap_arg_str(const struct imap_arg *a);
/* true when a is an ATOM equal to word, ASCII case-insensitively. */
bool imap_arg_atom_is(const struct imap_arg *a, const char *word);

/* --- FETCH section specs ---------------------------------------------------- */

#define IMAP_SECTION_MAX_PARTS 64

enum imap_section_kind {
    IMAP_SECTION_BODY,        /* BODY[...] or BODY.PEEK[...] */
    IMAP_SECTION_BINARY,      /* RFC 3516 BINARY[...] / BINARY.PEEK[...] */
    IMAP_SECTION_BINARY_SIZE, /* RFC 3516 BINARY.SIZE[...] (no partial) */
};

enum imap_section_text {
    IMAP_SECTION_TEXT_NONE,              /* "[]" or "[1.2]": the whole message/part */
    IMAP_SECTION_TEXT_HEADER,            /* HEADER */
    IMAP_SECTION_TEXT_HEADER_FIELDS,     /* HEADER.FIELDS (list) */
    IMAP_SECTION_TEXT_HEADER_FIELDS_NOT, /* HEADER.FIELDS.NOT (list) */
    IMAP_SECTION_TEXT_TEXT,              /* TEXT */
    IMAP_SECTION_TEXT_MIME,              /* MIME (only after part numbers) */
};

struct imap_section {
    enum imap_section_kind kind;
    bool peek;                             /* .PEEK: do not set \Seen */
    uint32_t part[IMAP_SECTION_MAX_PARTS]; /* part numbers, each >= 1 */
    size_t nparts;
    enum imap_section_text text;
    char **fields; /* HEADER.FIELDS[.NOT]: names as sent (owned) */
    size_t nfields;
    bool partial; /* "<offset.length>" given */
    uint32_t partial_offset;
    uint32_t partial_length; /* >= 1 */
};

/* Parse a FETCH attribute with a section, case-insensitively:
 * BODY[...], BODY.PEEK[...], BINARY[...], BINARY.PEEK[...], BINARY.SIZE[...]
 * each with an optional "<offset.length>" (not for BINARY.SIZE). BINARY
 * sections take part numbers only. Header field names may be atoms or
 * quoted strings. Returns 0 and fills *r (free with imap_section_free()),
 * or -1 on a syntax error or OOM (*r then holds nothing to free). A plain
 * "BODY" without "[" is not a section: -1. */
int imap_section_parse(const char *s, struct imap_section *r);
void imap_section_free(struct imap_section *r);

/* Append the name a FETCH response uses for this section (RFC 3501 7.4.2):
 * ".PEEK" dropped, header names upper-cased and quoted when needed, and
 * "<offset>" when partial, e.g. BODY[1.HEADER.FIELDS (FROM TO)]<0>.
 * 0, or -1 on OOM. */
int imap_section_format(const struct imap_section *s, struct buf *out);

#endif
