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

/* --- delivery ---------------------------------------------------------------- */
struct store_delivery {
    const char *account;      /* canonical address (from store_account_lookup) */
    const char *mailbox;      /* e.g. "INBOX" */
    const struct iovec *iov;  /* the message: concatenation of iov[0..iovcnt) */
    int iovcnt;
    time_t internal_date;
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

#endif
