/* imap_int — what the IMAP command files share: the session struct, the
 * command table, the selected mailbox's view, and output helpers. Only
 * the files of src/proto/imap include it.
 *
 * A command handler runs on a worker thread (imap_session_execute) with
 * that thread's struct store. It writes untagged responses into s->ex
 * (with the imap_write_* helpers) and sets the completion in *r; the core
 * then reports other sessions' changes (imap_sync, as RFC 3501 5.2 and
 * 7.4.1 allow for that command) and writes the tagged line.
 */
#ifndef CORREIO_PROTO_IMAP_INT_H
#define CORREIO_PROTO_IMAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

enum imap_state {
    IMAP_STATE_NOT_AUTH,
    IMAP_STATE_AUTH,
    IMAP_STATE_SELECTED,
    IMAP_STATE_LOGOUT,
};

/* Where a command may run (RFC 3501 6): a bit per state. */
#define IMAP_IN_NOT_AUTH (1u << IMAP_STATE_NOT_AUTH)
#define IMAP_IN_AUTH (1u << IMAP_STATE_AUTH)
#define IMAP_IN_SELECTED (1u << IMAP_STATE_SELECTED)
#define IMAP_IN_ANY (IMAP_IN_NOT_AUTH | IMAP_IN_AUTH | IMAP_IN_SELECTED)
#define IMAP_IN_AUTHED (IMAP_IN_AUTH | IMAP_IN_SELECTED)

/* What changes of other sessions may be reported after a command. */
enum imap_sync_mode {
    IMAP_SYNC_NONE,        /* no mailbox or not allowed */
    IMAP_SYNC_NO_EXPUNGE,  /* FETCH, STORE, SEARCH by sequence number (RFC 3501 7.4.1) */
    IMAP_SYNC_FULL,        /* EXISTS, FETCH FLAGS, EXPUNGE/VANISHED */
};

/* IMAP_NONE: the command is not complete yet (IDLE waits for DONE,
 * AUTHENTICATE for its continuation): no tagged line now. */
enum imap_status { IMAP_OK, IMAP_NO, IMAP_BAD, IMAP_NONE };

struct imap_reply {
    enum imap_status status;
    char code[1024]; /* response code without brackets, e.g. "READ-ONLY"; "" for none */
    char text[256];
};

struct imap_session;
struct imap_command;

typedef void (*imap_cmd_fn)(struct imap_session *s, struct store *st,
                            const struct imap_command *cmd, struct imap_reply *r);

struct imap_cmd_def {
    const char *name;      /* upper case */
    unsigned states;       /* IMAP_IN_* */
    bool immediate;        /* runs on the loop thread without the store */
    enum imap_sync_mode sync;
    imap_cmd_fn run;
    bool uid_ok;           /* may follow "UID " */
};

/* The selected mailbox as this session knows it: sequence number n is
 * uids[n-1]. It changes only when the session reports the change. */
struct imap_view {
    int64_t mailbox_id;
    char name[256];        /* UTF-8 */
    bool readonly;         /* EXAMINE */
    uint32_t uidvalidity;
    uint32_t *uids;        /* ascending */
    size_t n, cap;
    uint64_t modseq;       /* every change up to this MODSEQ has been reported */
    uint32_t first_recent; /* uids >= this are \Recent for this session */
    /* Expunges seen while they could not be reported (RFC 3501 7.4.1). */
    uint32_t *pending_expunges;
    size_t npending, cappending;
};

struct imap_session {
    const struct imap_session_config *cfg;
    char id[32];
    char ip[64];
    enum imap_state state;
    bool tls;

    struct imap_parser *parser;
    struct buf held;              /* input that came while a request was pending */
    enum imap_request req;

    /* The command being executed. */
    struct imap_command *cmd;
    const struct imap_cmd_def *def;
    bool uid;                     /* "UID FETCH" etc. */
    char tag[128];
    struct buf ex;                /* replies written by execute (worker thread) */
    unsigned delay_ms;
    bool changed;                 /* this command changed the account's mail */
    bool notified;                /* another session or a delivery changed it */

    unsigned bad;                 /* BAD replies so far */
    char account[320];

    /* AUTHENTICATE PLAIN without an initial response: waiting for the line. */
    bool auth_wait;
    char *auth_line;
    /* IDLE (RFC 2177). */
    bool idling;
    bool idle_sync;               /* a notify asked for a sync while idling */
    bool idle_done;               /* DONE arrived: sync and end */

    /* Extensions the client enabled (RFC 5161) or used. */
    bool condstore;
    bool qresync;
    unsigned auth_failures;

    struct imap_view sel;
};

/* --- commands (one file per family) --- */
extern const struct imap_cmd_def imap_cmds_core[];    /* imap_cmd_core.c */
extern const struct imap_cmd_def imap_cmds_select[];  /* imap_cmd_select.c */
extern const struct imap_cmd_def imap_cmds_mailbox[]; /* imap_cmd_mailbox.c */
extern const struct imap_cmd_def imap_cmds_fetch[];   /* imap_cmd_fetch.c */
extern const struct imap_cmd_def imap_cmds_search[];  /* imap_cmd_search.c */
extern const struct imap_cmd_def imap_cmds_store[];   /* imap_cmd_store.c */
/* Each table ends with a row whose name is NULL. */

/* --- replies --- */
void imap_reply_set(struct imap_reply *r, enum imap_status st, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The CAPABILITY list for the session's state (no leading "CAPABILITY"). */
void imap_write_capabilities(struct imap_session *s, struct buf *out);
/* An IMAP string: a quoted string, or a literal for anything with CR, LF,
 * NUL, 8-bit octets or more than 1000 octets. */
void imap_write_string(struct buf *out, const char *data, size_t len);
void imap_write_nstring(struct buf *out, const char *data); /* NULL -> NIL */
/* A mailbox name (UTF-8 inside) as modified UTF-7 astring. */
void imap_write_mailbox(struct buf *out, const char *utf8_name);
/* "(\Seen \Answered kw1 ...)" for a message; \Recent when recent. */
void imap_write_flags(struct buf *out, uint32_t flags, const char *keywords, bool recent);
/* Parse a flag list argument into bits and keywords (space-separated,
 * malloc'd into *keywords_r, caller frees). -1 on syntax error. */
int imap_parse_flags(const struct imap_arg *arg, uint32_t *flags_r, char **keywords_r);

/* --- arguments (see also imap_arg_str, imap_arg_atom_is in imap_parser.h) --- */
/* A mailbox argument: modified UTF-7 decoded to UTF-8 into out (n
 * bytes), "INBOX" in any case folded to "INBOX". -1 when invalid. */
int imap_arg_mailbox(const struct imap_arg *arg, char *out, size_t n);

/* LIST pattern matching (RFC 3501 6.3.8): "*" matches anything, "%"
 * anything but the separator "/"; INBOX in any case (imap_cmd_mailbox.c). */
bool imap_list_match(const char *pattern, const char *name);

/* --- the selected mailbox --- */
/* Resolve a sequence set (by sequence numbers, or by UIDs when uid is
 * true) against the view, into the UIDs it names that exist in the view,
 * ascending (malloc'd *uids_r). -1: syntax error (r set to BAD). */
int imap_view_resolve(struct imap_session *s, const char *set, bool uid, uint32_t **uids_r,
                      size_t *n_r);
/* Sequence number of uid in the view, 0 when not there. */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
void imap_view_clear(struct imap_view *v);
/* Resolve a sequence-set argument into the view's UIDs; by sequence
 * number, one beyond the mailbox (or "*" in an empty one) is BAD (RFC
 * 3501 9). -1 with r set on error. */
int imap_view_resolve_arg(struct imap_session *s, const struct imap_arg *a, uint32_t **uids_r,
                          size_t *n_r, struct imap_reply *r);
/* The sync the core runs after the current command. */
enum imap_sync_mode imap_cmd_sync_mode(const struct imap_session *s);
/* The row of uid in l (sorted by UID), or NULL. */
const struct store_msg *imap_msg_row(const struct store_msg_list *l, uint32_t uid);
/* Whether uid is in the sorted array v[0..n). */
bool imap_uid_in(const uint32_t *v, size_t n, uint32_t uid);
/* This session changed own[0..n) (sorted), now as in rows (may be NULL),
 * and showed it to the client: when nothing else changed the mailbox, move
 * the view's MODSEQ past it so imap_sync does not report it again. */
void imap_view_own(struct imap_session *s, struct store *st, const struct store_msg_list *rows,
                   const uint32_t *own, size_t n);
/* Report other sessions' changes since the view's MODSEQ (see
 * imap_sync_mode) into s->ex, and bring the view up to date. */
int imap_sync(struct imap_session *s, struct store *st, enum imap_sync_mode mode);

#endif
