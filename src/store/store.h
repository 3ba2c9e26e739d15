/* store — the index: domains, accounts and mailboxes, on SQLite.
 *
 * Layout under the data directory DATA:
 *   DATA/accounts.sqlite                      domains, accounts (crypt hashes)
 *   DATA/mail/<domain>/<local>/index.sqlite   mailboxes and messages of one account
 *   DATA/mail/<domain>/<local>/msg/           message files (blob.h)
 *   DATA/mail/<domain>/<local>/tmp/           files being written
 *
 * A struct store holds SQLite connections and must be used by one thread
 * at a time; each worker thread opens its own. All SQLite databases run in
 * WAL mode with a busy timeout, and writers use BEGIN IMMEDIATE, so
 * concurrent deliveries to one account wait instead of failing with
 * "database is locked".
 *
 * Functions return 0 on success and -1 on error with a message in err
 * (errlen bytes, owned by the caller), unless said otherwise.
 */
#ifndef CORREIO_STORE_STORE_H
#define CORREIO_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

struct store;

/* Open the store at data_dir, creating accounts.sqlite and the folders
 * when missing. *st_r is set on success. */
int store_open(struct store **st_r, const char *data_dir, char *err, size_t errlen);
/* Close and set *st to NULL. NULL is fine. */
void store_close(struct store **st);
/* Keep at most n per-account index connections open in st (1..64, the
 * default is 64). Each holds about three file descriptors (database, WAL,
 * shared memory), so a process with many worker threads may want fewer,
 * or a higher RLIMIT_NOFILE. */
void store_set_index_cache(struct store *st, int n);

/* --- domains --------------------------------------------------------------- */
int store_domain_add(struct store *st, const char *domain, char *err, size_t errlen);
/* Fails when accounts of the domain exist. */
int store_domain_del(struct store *st, const char *domain, char *err, size_t errlen);
/* 1 when domain (any case) is local, 0 when not, -1 on error. */
int store_domain_is_local(struct store *st, const char *domain);
/* Calls cb for each domain, sorted. */
int store_domain_list(struct store *st, void (*cb)(void *ctx, const char *domain), void *ctx,
                      char *err, size_t errlen);

/* --- accounts -------------------------------------------------------------- */
/* Address syntax accepted for accounts: local part of [A-Za-z0-9._+-]
 * (no leading/trailing/double dot), '@', a local domain. Stored lower-case.
 * Creates the account's folder and index with the mailboxes INBOX, Sent,
 * Drafts, Trash, Junk, Archive (special-use recorded). */
int store_account_add(struct store *st, const char *address, const char *crypt_hash, char *err,
                      size_t errlen);
/* Removes the account row; its folder is moved to DATA/deleted/<address>.<unix time>. */
int store_account_del(struct store *st, const char *address, char *err, size_t errlen);
int store_account_set_password(struct store *st, const char *address, const char *crypt_hash,
                               char *err, size_t errlen);
int store_account_list(struct store *st, void (*cb)(void *ctx, const char *address), void *ctx,
                       char *err, size_t errlen);

enum store_lookup {
    STORE_LOOKUP_ERROR = -1,
    STORE_LOOKUP_FOUND = 0,
    STORE_LOOKUP_NO_DOMAIN = 1, /* the domain is not local */
    STORE_LOOKUP_NO_USER = 2,   /* local domain, no such account */
};
/* Find the account for address (case-insensitive). On FOUND the canonical
 * address is written to account_r (n bytes) and, if hash_r is not NULL,
 * the crypt hash to hash_r (hash_n bytes). */
enum store_lookup store_account_lookup(struct store *st, const char *address, char *account_r,
                                       size_t n, char *hash_r, size_t hash_n);

/* APOP (POP3, RFC 1939 7) needs a secret shared in the clear, so it is
 * kept apart from the password and unset by default. secret NULL or ""
 * removes it. */
int store_account_set_apop_secret(struct store *st, const char *address, const char *secret,
                                  char *err, size_t errlen);
/* As store_account_lookup; on FOUND secret_r gets the APOP secret, "" when
 * the account has none. */
enum store_lookup store_account_apop_secret(struct store *st, const char *address,
                                            char *account_r, size_t n, char *secret_r,
                                            size_t secret_n);

/* SCRAM-SHA-256 keys (RFC 5803 text, auth/scram.h), derived from the
 * password at user add/passwd; NULL or "" removes them. */
int store_account_set_scram(struct store *st, const char *address, const char *scram, char *err,
                            size_t errlen);
/* As store_account_lookup; on FOUND scram_r gets the keys' text, "" when none. */
enum store_lookup store_account_scram(struct store *st, const char *address, char *account_r,
                                      size_t n, char *scram_r, size_t scram_n);

/* Check a password against the account's yescrypt hash. 1 and the
 * canonical address in account_r when it matches; 0 when the account does
 * not exist or the password is wrong (the two take the same time); -1 on
 * error. Slow on purpose (crypt): call it off the event loop. */
int store_account_authenticate(struct store *st, const char *address, const char *password,
                               char *account_r, size_t n);

/* --- delivery ---------------------------------------------------------------- */
struct store_delivery {
    const char *account;      /* canonical address (from store_account_lookup) */
    const char *mailbox;      /* e.g. "INBOX" */
    const struct iovec *iov;  /* the message: concatenation of iov[0..iovcnt) */
    int iovcnt;
    time_t internal_date;
    /* Optional (zero/NULL for plain delivery): APPEND sets these. */
    uint32_t flags;           /* STORE_FLAG_* */
    const char *keywords;     /* space-separated IMAP keywords, or NULL */
    const char *envelope;     /* cached IMAP ENVELOPE text, or NULL */
    const char *bodystructure;/* cached IMAP BODYSTRUCTURE (extended) text, or NULL */
    const uint8_t *search_fields; /* cached mime_search_fields records, or NULL */
    size_t search_fields_len;
    uint32_t uid_r;           /* out: the UID given in the mailbox */
    int result_r;             /* out: 0 stored, -1 failed (see err_r) */
    char err_r[256];
};

/* Store n messages durably (group commit): every message file is written
 * to tmp/, fsynced and renamed into msg/, each touched msg/ folder is
 * fsynced once, then each account's index gets one transaction for all
 * its messages. When this returns, every delivery with result_r == 0 is
 * on stable storage. Returns 0 when all succeeded, -1 when any failed. */
int store_deliver(struct store *st, struct store_delivery *d, size_t n);

/* Repair what a crash left: remove files in every account's tmp/, and
 * message files in msg/ that no index row names (their 250 was never
 * sent). Logs each action. Run at start-up before serving. It takes an
 * exclusive lock on DATA/store.lock that store_deliver holds shared, so a
 * delivery running in another process (import, a second server) waits
 * for it, or it for the delivery, instead of losing files. */
int store_recover(struct store *st, char *err, size_t errlen);

/* --- reading (for tests and later protocols) ------------------------------------ */
struct store_msg_info {
    uint32_t uid;
    uint64_t size;
    uint64_t modseq;
    time_t internal_date;
    char file[128];           /* file name in msg/ */
    uint32_t flags;           /* STORE_FLAG_* bits */
};

/* Calls cb for each message of the mailbox in UID order. */
int store_mailbox_messages(struct store *st, const char *account, const char *mailbox,
                           void (*cb)(void *ctx, const struct store_msg_info *m), void *ctx,
                           char *err, size_t errlen);

/* System flags as stored in messages.flags (a bitmask); keywords are kept
 * apart as text. */
enum store_flag {
    STORE_FLAG_SEEN = 1u << 0,
    STORE_FLAG_ANSWERED = 1u << 1,
    STORE_FLAG_FLAGGED = 1u << 2,
    STORE_FLAG_DELETED = 1u << 3,
    STORE_FLAG_DRAFT = 1u << 4,
};

struct store_mailbox_info {
    char name[256];
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
    char special_use[16];     /* "\\Sent", ... or "" */
    int subscribed;
};
/* Calls cb for each mailbox of the account, sorted by name. */
int store_mailbox_list(struct store *st, const char *account,
                       void (*cb)(void *ctx, const struct store_mailbox_info *m), void *ctx,
                       char *err, size_t errlen);

/* Path of the account's folder: DATA/mail/<domain>/<local>. */
int store_account_dir(struct store *st, const char *account, char *path_r, size_t n);

/* --- mailboxes and messages for IMAP ------------------------------------------------
 *
 * Mailbox names are UTF-8 (the IMAP layer converts modified UTF-7), with
 * "/" as the hierarchy separator. "INBOX" matches in any case; other names
 * match exactly. A mailbox is addressed by its id (store_mailbox_get);
 * every function that changes messages bumps the mailbox's HIGHESTMODSEQ
 * and gives each changed message that MODSEQ (RFC 7162), in one
 * transaction. Lists returned are owned by the caller: free them with the
 * matching _free function. */

struct store_mailbox {
    int64_t id;
    char name[256];
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq;
    char special_use[16];     /* "\\Sent", ... or "" */
    uint32_t first_recent_uid;/* messages with uid >= this are \Recent (before take_recent) */
};

/* 1 found (*mb_r filled), 0 no such mailbox, -1 error. */
int store_mailbox_get(struct store *st, const char *account, const char *name,
                      struct store_mailbox *mb_r, char *err, size_t errlen);
/* Create one mailbox (not its parents). special_use may be NULL. Fails if
 * it exists. The new mailbox gets a fresh UIDVALIDITY and UIDNEXT 1. */
int store_mailbox_create(struct store *st, const char *account, const char *name,
                         const char *special_use, char *err, size_t errlen);
/* Delete a mailbox and its messages (files removed after the commit).
 * Children are not touched. INBOX cannot be deleted. */
int store_mailbox_delete(struct store *st, const char *account, const char *name, char *err,
                         size_t errlen);
/* Rename old to new and every "old/..." to "new/...", in one transaction.
 * UIDVALIDITY and UIDs are kept. Renaming INBOX (RFC 3501 6.3.5) moves all
 * its messages into a new mailbox `new` and leaves INBOX empty. Fails if
 * new (or a child's new name) exists. */
int store_mailbox_rename(struct store *st, const char *account, const char *oldname,
                         const char *newname, char *err, size_t errlen);
/* Subscriptions are names, kept apart from mailboxes (RFC 3501 6.3.6 allows
 * subscribing to a name that does not exist). */
int store_subscription_set(struct store *st, const char *account, const char *name, int on,
                           char *err, size_t errlen);
int store_subscription_list(struct store *st, const char *account,
                            void (*cb)(void *ctx, const char *name), void *ctx, char *err,
                            size_t errlen);
/* Calls cb for each mailbox, sorted by name. */
int store_mailbox_each(struct store *st, const char *account,
                       void (*cb)(void *ctx, const struct store_mailbox *mb), void *ctx,
                       char *err, size_t errlen);

struct store_mailbox_status {
    uint32_t messages, unseen, recent, uidnext, uidvalidity;
    uint64_t highestmodseq, size, deleted;
};
/* 1 found, 0 no such mailbox, -1 error. */
int store_mailbox_status(struct store *st, const char *account, const char *name,
                         struct store_mailbox_status *r, char *err, size_t errlen);
/* For SELECT (not EXAMINE): *first_r gets the first \Recent UID for this
 * session, and the mailbox's first_recent_uid becomes its UIDNEXT, so no
 * other session sees those as \Recent (RFC 3501 2.3.2). */
int store_mailbox_take_recent(struct store *st, const char *account, int64_t mailbox_id,
                              uint32_t *first_r, char *err, size_t errlen);

struct store_msg {
    uint32_t uid;
    uint32_t flags;           /* STORE_FLAG_* */
    uint64_t modseq;
    uint64_t size;
    time_t internal_date;
    char file[128];
    char *keywords;           /* "" or space-separated; owned by the list */
    char *envelope;           /* cached, or NULL (only with STORE_MSG_CACHE) */
    char *bodystructure;      /* cached, or NULL (only with STORE_MSG_CACHE) */
    uint8_t *fields;          /* cached search fields, or NULL (STORE_MSG_CACHE/_FIELDS) */
    size_t fields_len;
};
struct store_msg_list {
    struct store_msg *v;
    size_t n;
};
void store_msg_list_free(struct store_msg_list *l);

enum {
    STORE_MSG_CACHE = 1u << 0,  /* also load envelope, bodystructure and search fields */
    STORE_MSG_FIELDS = 1u << 1, /* also load envelope and search fields (for SEARCH) */
};
/* Messages with uid_from <= uid <= uid_to (UINT32_MAX for "to the end"),
 * in UID order. */
int store_msgs_load(struct store *st, const char *account, int64_t mailbox_id,
                    uint32_t uid_from, uint32_t uid_to, unsigned what, struct store_msg_list *r,
                    char *err, size_t errlen);
/* What changed after modseq: messages whose MODSEQ is greater (new or
 * with changed flags), and UIDs expunged with a greater MODSEQ
 * (*expunged_r malloc'd, caller frees). */
int store_msgs_changed_since(struct store *st, const char *account, int64_t mailbox_id,
                             uint64_t modseq, struct store_msg_list *changed_r,
                             uint32_t **expunged_r, size_t *nexpunged_r, char *err,
                             size_t errlen);

enum store_flag_op { STORE_FLAGS_SET, STORE_FLAGS_ADD, STORE_FLAGS_REMOVE };
/* Change flags and keywords of the given UIDs (those that exist). With
 * unchangedsince != 0 (CONDSTORE), a message whose MODSEQ is greater is
 * not changed and its UID is put in *failed_r (malloc'd; may be NULL when
 * none). Messages whose flags do not actually change keep their MODSEQ.
 * keywords: space-separated, may be NULL. */
int store_msgs_set_flags(struct store *st, const char *account, int64_t mailbox_id,
                         const uint32_t *uids, size_t n, enum store_flag_op op, uint32_t flags,
                         const char *keywords, uint64_t unchangedsince, uint32_t **failed_r,
                         size_t *nfailed_r, char *err, size_t errlen);
/* Remove the given UIDs (those that exist), record them as expunged with a
 * new MODSEQ, remove their files after the commit. */
int store_msgs_expunge(struct store *st, const char *account, int64_t mailbox_id,
                       const uint32_t *uids, size_t n, char *err, size_t errlen);
/* Copy (move = 0) or move (move = 1) the given UIDs, in UID order, to
 * another mailbox of the same account; the files are hard-linked, never
 * rewritten. new_uids_r (n entries, caller's) gets the new UIDs, 0 for a
 * UID that did not exist. A move expunges the sources in the same
 * transaction (RFC 6851). */
int store_msgs_copy(struct store *st, const char *account, int64_t from_mailbox_id,
                    const uint32_t *uids, size_t n, int64_t to_mailbox_id, int move,
                    uint32_t *new_uids_r, char *err, size_t errlen);
/* Fill the cached envelope/bodystructure/search fields of a message that
 * has none (stored before they were computed); NULL items are left as
 * they are. Does not change its MODSEQ. */
int store_msg_set_cache(struct store *st, const char *account, int64_t mailbox_id, uint32_t uid,
                        const char *envelope, const char *bodystructure,
                        const uint8_t *fields, size_t fields_len, char *err, size_t errlen);
/* The message's bytes (malloc'd, NUL-terminated, NUL not counted). */
int store_msg_read(struct store *st, const char *account, const char *file, uint8_t **data_r,
                   size_t *len_r, char *err, size_t errlen);
/* Only the message's header block (through the first empty line); same
 * ownership as store_msg_read. For header-only searches. */
int store_msg_read_header(struct store *st, const char *account, const char *file,
                          uint8_t **data_r, size_t *len_r, char *err, size_t errlen);

#endif
