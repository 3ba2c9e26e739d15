/* mime — parse a whole message (RFC 5322, RFC 2045-2049) into a part tree.
 *
 * The parser reads a message held in memory (CRLF or bare LF line endings;
 * an mbox "From " line or other garbage before the first header field is
 * tolerated as part of the header) and builds a tree of parts with byte
 * offsets into the message. It never fails on bad input: malformed MIME
 * yields a best-effort structure. Past a limit (struct mime_limits), the
 * rest of a part is kept as one opaque leaf. Parsing is one pass, linear
 * in the message size (each line start is checked against the active
 * boundaries, at most max_depth of them).
 *
 * Where RFC 2045/2046 leave broken input open (a missing close delimiter,
 * a delimiter inside a header, a Content-Type without subtype, repeated
 * Content-* fields), the choices are Dovecot's, so that sizes, lines and
 * BODYSTRUCTURE agree with a mature server (tests/unit/mime_expected/).
 * Sizes are octets as stored: the store keeps CRLF, so they are what IMAP
 * wants; for a bare-LF message they are the LF sizes (see
 * mime_crlf_normalize()).
 *
 * The tree follows IMAP (RFC 3501 6.4.5):
 *  - the root part is the whole message: its header is the message header;
 *  - a multipart part has one child per body part (preamble and epilogue
 *    are inside its body but belong to no child);
 *  - a message/rfc822 (or message/global) part has exactly one child: the
 *    encapsulated message, whose header/body are the encapsulated
 *    message's header and body (the child's range is within the parent's
 *    body; it is the whole of it unless a broken header moved a line
 *    break). A message/global body is scanned as an opaque body (as
 *    IMAP4rev1 servers do) and, at the same time, parsed on its own as a
 *    message. A message/rfc822 part whose child is missing was stopped by
 *    a limit.
 *
 * The same parser also streams (mime_stream_new() below): fed the message
 * in chunks, it keeps only the header blocks, in O(headers + one line)
 * memory, and gives the same tree.
 *
 * Ownership: a struct mime_message owns every part and string in it, and
 * (from mime_parse()) keeps a pointer to the message bytes, which the
 * caller must keep alive and unchanged until mime_message_free(). Nothing
 * here is thread-shared; a parsed message may be read from several threads
 * if nobody writes it.
 */
#ifndef CORREIO_MIME_MIME_H
#define CORREIO_MIME_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Limits (the settings struct). A zero field means "use the default".
 * A multipart or message/rfc822 part that would pass max_depth, or parts
 * past max_parts, are not parsed further: the rest is one opaque body
 * (flag MIME_PART_TRUNCATED; BODYSTRUCTURE shows it as
 * application/octet-stream, as Dovecot does past its own limits: with
 * max_depth 99 the output equals Dovecot's, whose limit is 100 nested
 * parts). */
struct mime_limits {
    unsigned max_depth;     /* nesting of multipart and message/rfc822; default 30 */
    unsigned max_parts;     /* parts in the whole tree; default 5000 */
    size_t max_header_size; /* bytes of one header block; default 1 MiB. Past it, the
                             * rest of the header is still skipped to its end, but its
                             * fields are ignored (no Content-* from there). */
};

#define MIME_DEFAULT_MAX_DEPTH 30
#define MIME_DEFAULT_MAX_PARTS 5000
#define MIME_DEFAULT_MAX_HEADER_SIZE (1024 * 1024)

/* Content-Transfer-Encoding, as understood (the raw text is in part->encoding). */
enum mime_cte {
    MIME_CTE_7BIT = 0, /* also when absent */
    MIME_CTE_8BIT,
    MIME_CTE_BINARY,
    MIME_CTE_QP,
    MIME_CTE_BASE64,
    MIME_CTE_UNKNOWN, /* anything else (x-uuencode, garbage): treat as 8bit/opaque */
};

/* One parameter of Content-Type or Content-Disposition.
 *
 * RFC 2231 continuations (name*0, name*1, name*0*, ...) are joined. Two
 * views are kept:
 *  - name/value: what IMAP BODYSTRUCTURE shows, the way Dovecot shows it:
 *    plain continuations joined into "name"; when any piece was extended
 *    ("name*" / "name*0*"), the key is "name*" and the value is the joined
 *    still-encoded text "charset'lang'%XX...".
 *  - decoded: the value as UTF-8 text (RFC 2231 percent-decoding and
 *    charset conversion applied, RFC 2047 words in quoted values decoded as
 *    many clients write them), for display, search and file names.
 * name keeps the case it had in the message; compare case-insensitively
 * (mime_param_get does). */
struct mime_param {
    char *name;     /* never NULL; without the "*N" suffixes (see above for "*") */
    char *value;    /* never NULL (may be "") */
    char *decoded;  /* never NULL; UTF-8 */
    char *charset;  /* RFC 2231 charset of an extended value, or NULL */
    char *language; /* RFC 2231 language of an extended value, or NULL */
};

enum mime_part_flags {
    MIME_PART_MULTIPART = 1u << 0,     /* children are body parts */
    MIME_PART_MESSAGE = 1u << 1,       /* message/rfc822|global: one child, the message */
    MIME_PART_TRUNCATED = 1u << 2,     /* a limit stopped the parsing of this part's
                                        * structure: (the rest of) its body is opaque */
    MIME_PART_NO_BOUNDARY = 1u << 3,   /* multipart without a usable boundary parameter */
    MIME_PART_NO_END = 1u << 4,        /* multipart whose close delimiter never came */
    MIME_PART_HAS_8BIT = 1u << 5,      /* the body has octets >= 0x80 or NUL */
    MIME_PART_HDR_TRUNCATED = 1u << 6, /* header longer than max_header_size */
    MIME_PART_HDR_NO_EOH = 1u << 7,    /* no empty line ended the header (end of the message,
                                        * or a delimiter line came first) */
};

struct mime_part {
    struct mime_part *parent;   /* NULL for the root */
    struct mime_part *children; /* first child, or NULL */
    struct mime_part *next;     /* next sibling, or NULL */
    unsigned nchildren;
    unsigned flags; /* enum mime_part_flags */
    unsigned depth; /* 0 for the root */

    /* Byte ranges in the message. hdr_len includes the empty line that ends
     * the header (when there is one); body_off = hdr_off + hdr_len. The body
     * excludes the line break before a multipart delimiter (RFC 2046 5.1.1). */
    size_t hdr_off, hdr_len;
    size_t body_off, body_len;
    size_t hdr_lines;  /* line feeds in the header */
    size_t body_lines; /* line feeds in the body (IMAP's "lines" of text/... parts) */

    /* Content-Type (RFC 2045 5.2 defaults: text/plain, or message/rfc822
     * inside multipart/digest, when absent or when the part is not MIME).
     * Case as in the message; compare with mime_part_is(). A broken
     * Content-Type is kept as broken, as IMAP servers show it: "text"
     * without "/subtype" gives "text" ""; an unusable one gives "" "". */
    char *type;                /* never NULL */
    char *subtype;             /* never NULL (may be "") */
    struct mime_param *params; /* nparams entries */
    size_t nparams;
    bool has_content_type; /* a Content-Type field was present (and counted) */

    /* The text fields below are unfolded (CR and LF removed, NUL replaced
     * by U+FFFD), white space after the colon skipped, otherwise as
     * written (not RFC 2047-decoded). */
    enum mime_cte cte;
    char *encoding;    /* Content-Transfer-Encoding token as written, or NULL */
    char *id;          /* Content-ID, or NULL */
    char *description; /* Content-Description, or NULL */
    char *md5;         /* Content-MD5, or NULL */
    char *disposition; /* Content-Disposition value ("inline", "attachment", ...), or NULL */
    struct mime_param *disp_params;
    size_t ndisp_params;
    char **languages; /* Content-Language tags (RFC 3282), nlanguages entries */
    size_t nlanguages;
    char *location; /* Content-Location, or NULL */
};

struct mime_message {
    const uint8_t *data; /* mime_parse: the caller's bytes (not owned); headers_only: the
                          * header blocks (owned) */
    size_t size;         /* octets of the whole message */
    size_t data_len;     /* octets at data: size, or the header blocks' size */
    struct mime_part *root; /* never NULL */
    unsigned nparts;
    bool limit_hit;    /* some limit was reached somewhere */
    bool headers_only; /* from mime_stream_finish(): see there */
    void *arena;       /* private */
};

/* Fill lim with the defaults. */
void mime_limits_default(struct mime_limits *lim);

/* Parse msg[0..len). lim may be NULL (defaults). Returns NULL only when
 * memory runs out. The result refers to msg (see Ownership above). */
struct mime_message *mime_parse(const uint8_t *msg, size_t len, const struct mime_limits *lim);

/* --- streaming ------------------------------------------------------------------------------- */

/* The same parser, fed the message in chunks of any size (down to 1 octet)
 * instead of one buffer (mime_parse() is this parser fed everything at
 * once): the tree, sizes, lines, flags, Content-* fields and limits come
 * out the same, whatever the chunking. Memory is O(the header blocks + one
 * line + the boundary stack), not O(the message): bodies are counted, not
 * kept.
 *
 * The message returned has headers_only set: m->data holds only the header
 * blocks (owned by m; data_len octets), each part's hdr_off is an offset in
 * it (its offset in the message is body_off - hdr_len); body_off,
 * body_len, size and the line counts are the real message's. So
 * mime_imap_envelope(), mime_imap_bodystructure(), mime_part_field() and
 * header iteration work on it; anything that reads a body (section fetch
 * of bodies or of whole parts, mime_part_decode_text, text search) does
 * not and must not be called: use mime_parse() on the stored message. */
struct mime_stream;
/* A parser for one message; lim as in mime_parse(). NULL on OOM. */
struct mime_stream *mime_stream_new(const struct mime_limits *lim);
/* Feed the next len octets. 0, or -1 when memory ran out (then only
 * mime_stream_free() or mime_stream_finish(), which returns NULL). */
int mime_stream_feed(struct mime_stream *s, const uint8_t *data, size_t len);
/* The end of the message: the tree (free with mime_message_free()), NULL on
 * OOM. Frees s in both cases. */
struct mime_message *mime_stream_finish(struct mime_stream *s);
/* Abandon a parser (NULL is fine). */
void mime_stream_free(struct mime_stream *s);

/* Release everything and set *m to NULL. NULL and *m == NULL are fine. */
void mime_message_free(struct mime_message **m);

/* True when the part's type (and subtype, unless NULL) equal the given
 * ones, ignoring case. */
bool mime_part_is(const struct mime_part *p, const char *type, const char *subtype);

/* The parameter named name (case-insensitive; "name" also finds an
 * extended "name*"), or NULL. */
const struct mime_param *mime_param_get(const struct mime_param *params, size_t n,
                                        const char *name);

/* Pre-order walk: the part after p (its first child, else its next
 * sibling, else an ancestor's next sibling), or NULL at the end. */
const struct mime_part *mime_part_walk_next(const struct mime_part *p);

/* --- header fields ----------------------------------------------------------------- */

/* One header field, pointing into the message. */
struct mime_field {
    const uint8_t *name; /* field name, without the colon and the white space before it
                          * (and cut at a NUL) */
    size_t name_len;
    const uint8_t *value; /* raw value right after the colon: folded, without the final
                           * line break */
    size_t value_len;
    const uint8_t *line; /* the whole field including its final line break */
    size_t line_len;
};

/* Iterate the fields of a header block (e.g. msg->data + part->hdr_off,
 * part->hdr_len). Lines without a colon (mbox "From " lines, garbage) are
 * skipped. Returns true and fills *f, or false at the end. */
struct mime_field_iter {
    const uint8_t *p;
    size_t len, pos;
};
void mime_field_iter_init(struct mime_field_iter *it, const uint8_t *hdr, size_t len);
bool mime_field_iter_next(struct mime_field_iter *it, struct mime_field *f);

/* The first field named name (case-insensitive) in the header of part p;
 * true and *f filled when found. */
bool mime_part_field(const struct mime_message *m, const struct mime_part *p, const char *name,
                     struct mime_field *f);

/* --- IMAP sections (RFC 3501 6.4.5) ------------------------------------------------------ */

enum mime_section_spec {
    MIME_SECTION_ALL = 0,       /* BODY[] / BODY[1.2]: the whole message / part body */
    MIME_SECTION_HEADER,        /* [HEADER], [1.HEADER] */
    MIME_SECTION_HEADER_FIELDS, /* [HEADER.FIELDS (a b)] */
    MIME_SECTION_HEADER_FIELDS_NOT,
    MIME_SECTION_TEXT, /* [TEXT], [1.TEXT] */
    MIME_SECTION_MIME, /* [1.MIME] (needs a part number) */
};

#define MIME_SECTION_MAX_PARTS 64 /* deeper part numbers are refused */

struct mime_section {
    unsigned part[MIME_SECTION_MAX_PARTS]; /* part numbers, each >= 1 */
    unsigned npart;                        /* 0: the top level message */
    enum mime_section_spec spec;
    char **fields; /* HEADER.FIELDS[.NOT] names (owned, malloc'ed), nfields entries */
    size_t nfields;
};

/* Parse the text between the brackets of BODY[...] (e.g. "1.2.HEADER.FIELDS
 * (From To)", "TEXT", "", "3.MIME"), case-insensitively. Field names may be
 * atoms or quoted strings. Returns 0 or -1 (syntax error; err gets a short
 * reason, errlen bytes). On success release with mime_section_clear(). */
int mime_section_parse(const char *text, size_t len, struct mime_section *s, char *err,
                       size_t errlen);
void mime_section_clear(struct mime_section *s);

/* The part a section's part numbers name, following the RFC 3501 rules: on
 * a non-multipart message "1" is the message body part itself; inside a
 * message/rfc822 part, numbers address the encapsulated message's parts.
 * npart == 0 returns the root. NULL when no such part exists. */
const struct mime_part *mime_section_part(const struct mime_message *m, const unsigned *part,
                                          unsigned npart);

/* The IMAP layer sends the bytes as a literal; NUL octets must become 0x80
 * there (RFC 3501 allows no NUL in literals), see mime_imap_literal(). */
enum mime_section_result {
    MIME_SECTION_NONE = -1, /* no such part, or the specifier does not apply: fetch
                             * returns an empty string (as Dovecot does) */
    MIME_SECTION_RANGE = 0, /* the bytes are msg->data[*off_r .. *off_r + *len_r) */
    MIME_SECTION_BUILT = 1, /* the bytes were appended to built (HEADER.FIELDS[.NOT]) */
    MIME_SECTION_NOMEM = -2,
};

/* Resolve a section to its bytes. HEADER / TEXT / HEADER.FIELDS on a
 * message/rfc822 part apply to the encapsulated message; MIME is the
 * part's own header; HEADER.FIELDS[.NOT] builds the matching fields (whole
 * folded lines as stored) followed by the empty line (see mime_section.c
 * for the cases without one). */
enum mime_section_result mime_section_fetch(const struct mime_message *m,
                                            const struct mime_section *s, size_t *off_r,
                                            size_t *len_r, struct buf *built);

/* Write the section number of part p ("1.2"; "" for the root) to out.
 * Returns 0, -1 on OOM. */
int mime_part_section_name(const struct mime_message *m, const struct mime_part *p,
                           struct buf *out);

#endif
