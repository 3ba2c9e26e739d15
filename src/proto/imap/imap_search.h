/* imap_search — the SEARCH program: parse the search keys of SEARCH /
 * UID SEARCH (RFC 3501 6.4.4 and 9, RFC 7162 3.1.5 MODSEQ, RFC 4731
 * ESEARCH result options) into a tree, and evaluate it on one message.
 *
 * Pure: no session, no store. The caller describes a message with its
 * index row (struct imap_search_msg) and hands a callback that reads the
 * message's bytes; the evaluator calls it only when a key needs the
 * content (header, body and text keys; SENT* when no cached envelope
 * gives the Date; FROM/TO/CC/BCC/SUBJECT when the index holds no search
 * fields of the message). Keys answerable from the index row (flags,
 * sizes, dates, the cached envelope and search fields) are tried first:
 *  - a first pass decides what it can without the content, in three-valued
 *    logic (AND is false as soon as one key is false, OR true as soon as
 *    one is true, unknown otherwise), so "UNSEEN BODY x" never reads a
 *    seen message;
 *  - only when that pass leaves the answer unknown is the message read
 *    and parsed (mime_parse), once, and the tree evaluated again; the
 *    children of every AND/OR are sorted by cost at parse time (index row,
 *    then Date, then header fields, then bodies), so that this pass also
 *    stops at the cheapest key that decides.
 *
 * Matching rules:
 *  - BEFORE/ON/SINCE compare the day of INTERNALDATE in UTC, the server's
 *    time zone (RFC 3501 6.4.4 "disregarding time and timezone");
 *    SENTBEFORE/SENTON/SENTSINCE the day written in the Date: header (its
 *    time and zone disregarded); a message without a usable Date: matches
 *    no SENT* key.
 *  - FROM/TO/CC/BCC/SUBJECT/HEADER: substring of the unfolded, RFC
 *    2047-decoded field (every occurrence, top-level header), ignoring
 *    case; HEADER field "" matches every message that has the field.
 *  - BODY/TEXT: substring of the decoded text parts (transfer encoding
 *    and charset undone) and, for TEXT, the headers; ignoring case
 *    (mime_text_contains: ASCII and simple Latin/Greek/Cyrillic folding).
 *  - KEYWORD/UNKEYWORD compare keywords ignoring ASCII case; a system
 *    flag written as a keyword (KEYWORD \Seen) tests that flag.
 *  - MODSEQ n: the message's MODSEQ >= n; the optional entry name and
 *    type are checked for syntax and otherwise ignored (one MODSEQ per
 *    message, as RFC 7162 3.1.5 allows).
 *  - CHARSET: only UTF-8 and US-ASCII (any case); strings are UTF-8.
 */
#ifndef CORREIO_PROTO_IMAP_SEARCH_H
#define CORREIO_PROTO_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_seqset.h"

/* Nesting of NOT / OR / parentheses in one program. */
#define IMAP_SEARCH_MAX_DEPTH 64

enum imap_search_op {
    IMAP_SEARCH_AND, /* kids: all of them (parentheses, the top level) */
    IMAP_SEARCH_OR,  /* kids[0] or kids[1] */
    IMAP_SEARCH_NOT, /* not kids[0] */
    IMAP_SEARCH_ALL,
    IMAP_SEARCH_SEQSET, /* set: sequence numbers */
    IMAP_SEARCH_UID,    /* set: UIDs */
    IMAP_SEARCH_FLAG,   /* flag set (ANSWERED, DELETED, DRAFT, FLAGGED, SEEN) */
    IMAP_SEARCH_UNFLAG, /* flag not set (UNANSWERED, ...) */
    IMAP_SEARCH_RECENT,
    IMAP_SEARCH_NEW,       /* RECENT UNSEEN */
    IMAP_SEARCH_OLD,       /* NOT RECENT */
    IMAP_SEARCH_KEYWORD,   /* str */
    IMAP_SEARCH_UNKEYWORD, /* str */
    IMAP_SEARCH_LARGER,    /* num */
    IMAP_SEARCH_SMALLER,   /* num */
    IMAP_SEARCH_MODSEQ,    /* num */
    IMAP_SEARCH_BEFORE,    /* day */
    IMAP_SEARCH_ON,
    IMAP_SEARCH_SINCE,
    IMAP_SEARCH_SENTBEFORE, /* day */
    IMAP_SEARCH_SENTON,
    IMAP_SEARCH_SENTSINCE,
    IMAP_SEARCH_HEADER, /* field, str (also FROM, TO, CC, BCC, SUBJECT: field set) */
    IMAP_SEARCH_BODY,   /* str */
    IMAP_SEARCH_TEXT,   /* str */
};

/* What a key needs, cheapest first. */
enum imap_search_cost {
    IMAP_SEARCH_COST_INDEX = 0, /* the index row */
    IMAP_SEARCH_COST_DATE,      /* the Date: header (the cached envelope, else the file) */
    IMAP_SEARCH_COST_FIELDS,    /* From/To/Cc/Bcc/Subject (the cached search fields, else the file) */
    IMAP_SEARCH_COST_HEADER,    /* the message file, its header fields */
    IMAP_SEARCH_COST_BODY,      /* the message file, its decoded bodies */
};

struct imap_search_key {
    enum imap_search_op op;
    enum imap_search_cost cost;   /* the most expensive key in this subtree */
    struct imap_search_key *kids; /* AND (nkids >= 1), OR (2), NOT (1); owned */
    size_t nkids;
    size_t order;           /* position as written (keeps sorting stable) */
    uint32_t flag;          /* FLAG/UNFLAG: one STORE_FLAG_* bit */
    uint64_t num;           /* LARGER/SMALLER: octets; MODSEQ: the value */
    int64_t day;            /* dates: days since 1970-01-01 */
    const char *keyword;    /* HEADER: how it was asked ("FROM", ..., "HEADER") */
    char *field;            /* HEADER: field name (owned) */
    char *str;              /* needle / keyword, UTF-8 (owned) */
    struct imap_seqset set; /* SEQSET/UID (owned) */
};

/* RFC 4731 result options. */
enum {
    IMAP_SEARCH_RET_MIN = 1u << 0,
    IMAP_SEARCH_RET_MAX = 1u << 1,
    IMAP_SEARCH_RET_ALL = 1u << 2,
    IMAP_SEARCH_RET_COUNT = 1u << 3,
};

struct imap_search {
    struct imap_search_key root; /* an AND of the keys as given */
    bool modseq;                 /* a MODSEQ key is used (RFC 7162 3.1.5) */
    bool esearch;                /* RETURN (...) was given: answer with ESEARCH */
    unsigned ret;                /* IMAP_SEARCH_RET_* (ALL when RETURN () was empty) */
};

enum imap_search_parse_result {
    IMAP_SEARCH_PARSE_OK = 0,
    IMAP_SEARCH_PARSE_BAD = -1,        /* syntax error: tagged BAD with err */
    IMAP_SEARCH_PARSE_BADCHARSET = -2, /* NO [BADCHARSET (UTF-8 US-ASCII)] */
    IMAP_SEARCH_PARSE_NOMEM = -3,
};

/* Parse the arguments after the command name ("SEARCH"; for UID SEARCH,
 * those after "SEARCH"): [RETURN (opts)] [CHARSET cs] key *(key). On
 * IMAP_SEARCH_PARSE_OK *prog_r is the program (free with
 * imap_search_free()); otherwise *prog_r is NULL and err (errlen bytes,
 * the caller's) says why. The arguments are not referenced afterwards. */
enum imap_search_parse_result imap_search_parse(const struct imap_arg *args, size_t nargs,
                                                struct imap_search **prog_r, char *err,
                                                size_t errlen);
/* Free and set *p to NULL. NULL and *p == NULL are fine. */
void imap_search_free(struct imap_search **p);

/* Append the program as a search-key list that parses back to the same
 * tree (children in evaluation order; strings quoted, or literals when
 * they hold CR, LF or NUL), for logs and tests. Without RETURN/CHARSET.
 * 0, or -1 on OOM. */
int imap_search_format(const struct imap_search *p, struct buf *out);

/* The program's most expensive key. */
enum imap_search_cost imap_search_cost(const struct imap_search *p);

/* One message as the index knows it. Pointers are the caller's. */
struct imap_search_msg {
    uint32_t seq; /* sequence number in the session's view */
    uint32_t uid;
    uint32_t flags;       /* STORE_FLAG_* */
    const char *keywords; /* space-separated, or NULL */
    bool recent;
    uint64_t size; /* RFC822.SIZE */
    uint64_t modseq;
    time_t internal_date;
    const char *envelope; /* cached ENVELOPE text, or NULL (then SENT* reads the file) */
    const uint8_t *fields; /* cached mime_search_fields records, or NULL (then FROM.. read it) */
    size_t fields_len;
    const void *handle;   /* for the read callback */
};

struct imap_search_env {
    uint32_t max_seq; /* "*" in a sequence set: messages in the view */
    uint32_t max_uid; /* "*" in UID sets: the highest UID in the view */
    /* Read message m: 0 and the bytes in *data_r (malloc'd, freed by the
     * evaluator) and *len_r, or -1 (the message then matches nothing). */
    int (*read)(void *ctx, const struct imap_search_msg *m, uint8_t **data_r, size_t *len_r);
    void *ctx;
    const struct mime_limits *mime_limits; /* NULL: defaults */
    bool no_shortcut;                      /* read the content whenever the program has a key that
                                            * needs it, skip the first pass (tests, fuzzing) */
    unsigned long reads;                   /* out: messages read so far (read callbacks made) */
};

enum imap_search_match_result {
    IMAP_SEARCH_MATCH = 1,
    IMAP_SEARCH_NO_MATCH = 0,
    IMAP_SEARCH_UNREADABLE = -1, /* the content was needed and could not be read */
    IMAP_SEARCH_NOMEM = -2,
};

/* Evaluate p on m. */
enum imap_search_match_result imap_search_match(const struct imap_search *p,
                                                const struct imap_search_msg *m,
                                                struct imap_search_env *env);

/* --- dates (exposed for tests) --- */
/* RFC 3501 date "1-Feb-1994" (day 1 or 2 digits, month any case, 4-digit
 * year): 0 and days since 1970-01-01 in *day_r, or -1. */
int imap_search_date_parse(const char *s, int64_t *day_r);
/* The day written in an RFC 5322 Date: value (obsolete forms too: no
 * weekday, 2- and 3-digit years, comments): 0 and *day_r, or -1. */
int imap_search_sent_day(const uint8_t *v, size_t n, int64_t *day_r);

#endif
