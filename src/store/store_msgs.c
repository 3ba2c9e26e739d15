/* store_msgs — messages for IMAP on the SQLite index (store.h, "mailboxes
 * and messages for IMAP"): loading, CONDSTORE changes, flags and
 * keywords, expunge, copy and move, the envelope/bodystructure cache,
 * reading a message's bytes.
 *
 * MODSEQ (RFC 7162): a call that changes messages of a mailbox takes one
 * new MODSEQ, ++highestmodseq, and gives it to every message it changes
 * (and to every UID it expunges, in the expunged table). A call that
 * changes nothing in a mailbox leaves its HIGHESTMODSEQ alone.
 */
#include "store/store_sqlite_int.h"

#include "lib/log.h"
#include "store/blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>

/* The keywords of a message that has none: shared, never freed. */
static char kw_empty[1];
/* The array of an empty list: v is never NULL after a successful load, so
 * callers may hand it to qsort, bsearch or memcpy (which must not get
 * NULL, even with a count of 0). Shared, never freed. */
static struct store_msg msg_none[1];

/* --- keywords ----------------------------------------------------------------- */

/* Is the word w (wl octets) in the space-separated list (len octets),
 * ignoring ASCII case? IMAP keywords are atoms (RFC 3501 9, flag-keyword). */
static int kw_has(const char *list, size_t len, const char *w, size_t wl)
{
    const char *p = list, *end = list + len;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *q = p;
        while (q < end && *q != ' ')
            q++;
        if ((size_t)(q - p) == wl && wl > 0 && strncasecmp(p, w, wl) == 0)
            return 1;
        p = q;
    }
    return 0;
}

/* Append to out (*len octets) each word of src that out does not have
 * yet and skip (may be NULL) does not name. */
static void kw_append(char *out, size_t *len, const char *src, const char *skip)
{
    size_t skiplen = skip ? strlen(skip) : 0;
    for (const char *p = src; *p;) {
        while (*p == ' ')
            p++;
        const char *q = p;
        while (*q && *q != ' ')
            q++;
        size_t wl = (size_t)(q - p);
        if (wl > 0 && !(skip && kw_has(skip, skiplen, p, wl)) && !kw_has(out, *len, p, wl)) {
            if (*len)
                out[(*len)++] = ' ';
            memcpy(out + *len, p, wl);
            *len += wl;
        }
        p = q;
    }
}

int store_kw_apply(const char *cur, enum store_kw_op op, const char *arg, char **out_r)
{
    cur = cur ? cur : "";
    arg = arg ? arg : "";
    char *out = malloc(strlen(cur) + strlen(arg) + 2);
    size_t len = 0;
    if (!out)
        return -1;
    if (op == STORE_KW_SET) {
        kw_append(out, &len, arg, NULL);
    } else if (op == STORE_KW_ADD) {
        kw_append(out, &len, cur, NULL);
        kw_append(out, &len, arg, NULL);
    } else {
        kw_append(out, &len, cur, arg);
    }
    out[len] = '\0';
    *out_r = out;
    return 0;
}

/* --- small lists ---------------------------------------------------------------- */

int store_names_add(struct store_names *l, const char *s)
{
    s = s ? s : "";
    size_t k = strlen(s) + 1;
    if (l->len + k > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        while (cap < l->len + k)
            cap *= 2;
        char *buf = realloc(l->buf, cap);
        if (!buf)
            return -1;
        l->buf = buf;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, s, k);
    l->len += k;
    l->n++;
    return 0;
}

const char *store_names_next(const struct store_names *l, const char *prev)
{
    return prev ? prev + strlen(prev) + 1 : l->buf;
}

void store_names_unlink(const struct store_names *l, const struct store_index *ix)
{
    const char *name = NULL;
    for (size_t i = 0; i < l->n; i++) {
        name = store_names_next(l, name);
        if (blob_unlink(ix->dir, name) < 0 && errno != ENOENT)
            log_warn("store", "event=unlink_failed account=%s file=%s error=%s", ix->account, name,
                     strerror(errno));
    }
}

void store_names_free(struct store_names *l)
{
    free(l->buf);
    memset(l, 0, sizeof(*l));
}

static int uid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* A sorted copy of uids[0..n) without duplicates and without 0 (malloc'd;
 * n > 0). NULL when out of memory. */
static uint32_t *uids_unique(const uint32_t *uids, size_t n, size_t *m_r)
{
    uint32_t *v = malloc(n * sizeof(*v));
    if (!v)
        return NULL;
    memcpy(v, uids, n * sizeof(*v));
    qsort(v, n, sizeof(*v), uid_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0 && (m == 0 || v[m - 1] != v[i]))
            v[m++] = v[i];
    *m_r = m;
    return v;
}

/* --- loading -------------------------------------------------------------------- */

void store_msg_list_free(struct store_msg_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].keywords != kw_empty)
            free(l->v[i].keywords);
        free(l->v[i].envelope);
        free(l->v[i].bodystructure);
        free(l->v[i].fields);
    }
    if (l->v != msg_none)
        free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* A malloc'd copy of text column i, or NULL (SQL NULL, or *oom set). */
static char *msg_col_dup(sqlite3_stmt *s, int i, int *oom)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t)
        return NULL;
    size_t len = (size_t)sqlite3_column_bytes(s, i);
    char *p = malloc(len + 1);
    if (!p) {
        *oom = 1;
        return NULL;
    }
    memcpy(p, t, len + 1);
    return p;
}

/* A malloc'd copy of blob column i and its length, or NULL (SQL NULL, or
 * *oom set). */
static uint8_t *msg_col_blob(sqlite3_stmt *s, int i, size_t *len_r, int *oom)
{
    const void *b = sqlite3_column_blob(s, i);
    size_t len = (size_t)sqlite3_column_bytes(s, i);
    *len_r = 0;
    if (!b || len == 0)
        return NULL;
    uint8_t *p = malloc(len);
    if (!p) {
        *oom = 1;
        return NULL;
    }
    memcpy(p, b, len);
    *len_r = len;
    return p;
}

/* Fill m from a row of IXS_MSG_COLS (then envelope, bodystructure and
 * search fields when cache). 0, or -1 when out of memory (m holds
 * nothing to free). */
static int msg_row(sqlite3_stmt *s, struct store_msg *m, int cache)
{
    int oom = 0;
    m->uid = (uint32_t)sqlite3_column_int64(s, 0);
    m->flags = (uint32_t)sqlite3_column_int64(s, 1);
    m->modseq = (uint64_t)sqlite3_column_int64(s, 2);
    m->size = (uint64_t)sqlite3_column_int64(s, 3);
    m->internal_date = (time_t)sqlite3_column_int64(s, 4);
    const char *f = (const char *)sqlite3_column_text(s, 5);
    snprintf(m->file, sizeof(m->file), "%s", f ? f : "");
    const unsigned char *kw = sqlite3_column_text(s, 6);
    m->keywords = kw && *kw ? msg_col_dup(s, 6, &oom) : kw_empty;
    m->envelope = cache ? msg_col_dup(s, 7, &oom) : NULL;
    m->bodystructure = cache ? msg_col_dup(s, 8, &oom) : NULL;
    m->fields = cache ? msg_col_blob(s, 9, &m->fields_len, &oom) : NULL;
    if (!cache)
        m->fields_len = 0;
    if (!oom)
        return 0;
    if (m->keywords != kw_empty)
        free(m->keywords);
    free(m->envelope);
    free(m->bodystructure);
    free(m->fields);
    return -1;
}

/* Run the bound statement s and append its rows to r (freed on error). */
static int msg_query(struct store_index *ix, sqlite3_stmt *s, int cache, struct store_msg_list *r,
                     char *err, size_t errlen)
{
    size_t cap = r->n;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (r->n == cap) {
            cap = cap ? cap * 2 : 64;
            struct store_msg *v = realloc(r->v, cap * sizeof(*v));
            if (!v)
                break;
            r->v = v;
        }
        if (msg_row(s, &r->v[r->n], cache) < 0)
            break;
        r->n++;
    }
    store_stmt_done(s);
    if (rc == SQLITE_DONE) {
        if (!r->v)
            r->v = msg_none;
        return 0;
    }
    store_msg_list_free(r);
    return rc == SQLITE_ROW ? err_set(err, errlen, "out of memory")
                            : store_db_fail(err, errlen, ix->db, "load messages");
}

/* One query over the (mailbox_id, uid) key for the whole range; the only
 * allocations are the array and non-empty keyword (and cache) strings. */
int store_msgs_load(struct store *st, const char *account, int64_t mailbox_id, uint32_t uid_from,
                    uint32_t uid_to, unsigned what, struct store_msg_list *r, char *err,
                    size_t errlen)
{
    r->v = NULL;
    r->n = 0;
    struct store_index *ix = store_index_of(st, account, err, errlen);
    int cache = (what & (STORE_MSG_CACHE | STORE_MSG_FIELDS)) != 0;
    enum index_stmt which = (what & STORE_MSG_CACHE)    ? IXS_MSG_LOAD_CACHE
                            : (what & STORE_MSG_FIELDS) ? IXS_MSG_LOAD_FIELDS
                                                        : IXS_MSG_LOAD;
    sqlite3_stmt *s = ix ? store_index_stmt(ix, which, err, errlen) : NULL;
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, uid_from);
    sqlite3_bind_int64(s, 3, uid_to);
    return msg_query(ix, s, cache, r, err, errlen);
}

/* Expunged UIDs of mailbox_id after modseq, in UID order. */
static int msg_expunged_since(struct store_index *ix, int64_t mailbox_id, int64_t modseq,
                              uint32_t **v_r, size_t *n_r, char *err, size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MSG_EXPUNGED, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, modseq);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n_r == cap) {
            cap = cap ? cap * 2 : 64;
            uint32_t *v = realloc(*v_r, cap * sizeof(*v));
            if (!v)
                break;
            *v_r = v;
        }
        (*v_r)[(*n_r)++] = (uint32_t)sqlite3_column_int64(s, 0);
    }
    store_stmt_done(s);
    if (rc == SQLITE_DONE)
        return 0;
    return rc == SQLITE_ROW ? err_set(err, errlen, "out of memory")
                            : store_db_fail(err, errlen, ix->db, "load expunged");
}

/* Both queries in one read transaction, so they see the same state. */
int store_msgs_changed_since(struct store *st, const char *account, int64_t mailbox_id,
                             uint64_t modseq, struct store_msg_list *changed_r,
                             uint32_t **expunged_r, size_t *nexpunged_r, char *err, size_t errlen)
{
    changed_r->v = NULL;
    changed_r->n = 0;
    *expunged_r = NULL;
    *nexpunged_r = 0;
    int64_t since = modseq > INT64_MAX ? INT64_MAX : (int64_t)modseq;
    struct store_index *ix = store_index_of(st, account, err, errlen);
    sqlite3_stmt *s = ix ? store_index_stmt(ix, IXS_MSG_CHANGED, err, errlen) : NULL;
    if (!s || store_db_exec(ix->db, "BEGIN", err, errlen) < 0)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, since);
    if (msg_query(ix, s, 0, changed_r, err, errlen) < 0 ||
        msg_expunged_since(ix, mailbox_id, since, expunged_r, nexpunged_r, err, errlen) < 0 ||
        store_ix_commit(ix, err, errlen) < 0) {
        store_db_rollback(ix->db);
        store_msg_list_free(changed_r);
        free(*expunged_r);
        *expunged_r = NULL;
        *nexpunged_r = 0;
        return -1;
    }
    return 0;
}

/* --- flags ---------------------------------------------------------------------- */

/* One STORE: what every message gets, and what came of it. */
struct flags_job {
    int64_t mailbox_id;
    enum store_flag_op op;
    uint32_t flags;          /* masked with STORE_FLAG_ALL */
    const char *keywords;    /* normalised, never NULL */
    uint64_t unchangedsince; /* 0: none */
    uint64_t modseq;         /* the new MODSEQ */
    uint32_t *failed;        /* UIDs that failed UNCHANGEDSINCE */
    size_t nfailed, changed;
};

static uint32_t flags_new(const struct flags_job *j, uint32_t old)
{
    return j->op == STORE_FLAGS_SET   ? j->flags
           : j->op == STORE_FLAGS_ADD ? (old | j->flags)
                                      : (old & ~j->flags);
}

/* Write the new flags (and keywords, when kw is not NULL) of uid. */
static int flags_write(struct store_index *ix, struct flags_job *j, uint32_t uid, uint32_t flags,
                       const char *kw, char *err, size_t errlen)
{
    sqlite3_stmt *s =
        store_index_stmt(ix, kw ? IXS_MSG_SET_FLAGS : IXS_MSG_SET_FLAGS_ONLY, err, errlen);
    if (!s)
        return -1;
    int i = 1;
    sqlite3_bind_int64(s, i++, flags);
    if (kw)
        sqlite3_bind_text(s, i++, kw, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, (int64_t)j->modseq);
    sqlite3_bind_int64(s, i++, j->mailbox_id);
    sqlite3_bind_int64(s, i, uid);
    if (store_stmt_run(ix, s, "store flags", err, errlen) < 0)
        return -1;
    j->changed++;
    return 0;
}

/* Apply the job to one UID inside the transaction. 0 or -1. */
static int flags_one(struct store_index *ix, struct flags_job *j, uint32_t uid, char *err,
                     size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MSG_FLAGS, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, j->mailbox_id);
    sqlite3_bind_int64(s, 2, uid);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        store_stmt_done(s);
        return rc == SQLITE_DONE ? 0 : store_db_fail(err, errlen, ix->db, "read flags");
    }
    uint32_t old = (uint32_t)sqlite3_column_int64(s, 0);
    uint64_t modseq = (uint64_t)sqlite3_column_int64(s, 2);
    uint32_t flags = flags_new(j, old);
    char *kw = NULL;
    int kw_changed = 0;
    /* RFC 7162 3.1.3: UNCHANGEDSINCE fails a message changed after it. */
    int failed = j->unchangedsince && modseq > j->unchangedsince;
    if (!failed && (j->op == STORE_FLAGS_SET || *j->keywords)) {
        const char *cur = (const char *)sqlite3_column_text(s, 1);
        if (store_kw_apply(cur, (enum store_kw_op)j->op, j->keywords, &kw) < 0) {
            store_stmt_done(s);
            return err_set(err, errlen, "out of memory");
        }
        kw_changed = strcmp(kw, cur ? cur : "") != 0;
    }
    store_stmt_done(s);
    if (failed) {
        j->failed[j->nfailed++] = uid;
        return 0;
    }
    rc = 0;
    if (kw_changed || flags != old)
        rc = flags_write(ix, j, uid, flags, kw_changed ? kw : NULL, err, errlen);
    free(kw);
    return rc;
}

_Static_assert((int)STORE_FLAGS_SET == (int)STORE_KW_SET &&
                   (int)STORE_FLAGS_ADD == (int)STORE_KW_ADD &&
                   (int)STORE_FLAGS_REMOVE == (int)STORE_KW_REMOVE,
               "flag and keyword operations line up");

/* Run the job over the sorted UIDs inside one transaction. */
static int flags_run(struct store_index *ix, struct flags_job *j, const uint32_t *su, size_t m,
                     char *err, size_t errlen)
{
    struct store_mailbox mb;
    if (store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    int found = store_mbox_by_id(ix, j->mailbox_id, &mb, err, errlen);
    if (found == 0)
        err_set(err, errlen, "no such mailbox");
    if (found <= 0)
        goto fail;
    j->modseq = mb.highestmodseq + 1;
    for (size_t i = 0; i < m; i++)
        if (flags_one(ix, j, su[i], err, errlen) < 0)
            goto fail;
    if (j->changed && store_mbox_set_modseq(ix, j->mailbox_id, j->modseq, err, errlen) < 0)
        goto fail;
    return store_ix_commit(ix, err, errlen);
fail:
    store_db_rollback(ix->db);
    return -1;
}

int store_msgs_set_flags(struct store *st, const char *account, int64_t mailbox_id,
                         const uint32_t *uids, size_t n, enum store_flag_op op, uint32_t flags,
                         const char *keywords, uint64_t unchangedsince, uint32_t **failed_r,
                         size_t *nfailed_r, char *err, size_t errlen)
{
    if (failed_r)
        *failed_r = NULL;
    if (nfailed_r)
        *nfailed_r = 0;
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix)
        return -1;
    if (n == 0)
        return 0;
    struct flags_job j = {.mailbox_id = mailbox_id,
                          .op = op,
                          .flags = flags & STORE_FLAG_ALL,
                          .unchangedsince = unchangedsince};
    size_t m = 0;
    char *kw = NULL;
    uint32_t *su = uids_unique(uids, n, &m);
    if (su && unchangedsince)
        j.failed = malloc(m * sizeof(*j.failed) + 1);
    if (!su || (unchangedsince && !j.failed) ||
        store_kw_apply(NULL, STORE_KW_SET, keywords, &kw) < 0) {
        free(su);
        free(j.failed);
        return err_set(err, errlen, "out of memory");
    }
    j.keywords = kw;
    int rc = flags_run(ix, &j, su, m, err, errlen);
    free(su);
    free(kw);
    if (rc < 0 || j.nfailed == 0 || !failed_r) {
        free(j.failed);
        return rc;
    }
    *failed_r = j.failed;
    if (nfailed_r)
        *nfailed_r = j.nfailed;
    return 0;
}

/* --- expunge, copy, move -------------------------------------------------------------- */

int store_mbox_set_modseq(struct store_index *ix, int64_t id, uint64_t modseq, char *err,
                          size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MBOX_SET_MODSEQ, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, (int64_t)modseq);
    sqlite3_bind_int64(s, 2, id);
    return store_stmt_run(ix, s, "update mailbox", err, errlen);
}

/* Record uid of mailbox_id as expunged at modseq (RFC 7162 3.2.10). */
static int msg_expunge_record(struct store_index *ix, int64_t mailbox_id, uint32_t uid,
                              uint64_t modseq, char *err, size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_EXPUNGE_ADD, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, uid);
    sqlite3_bind_int64(s, 3, (int64_t)modseq);
    return store_stmt_run(ix, s, "record expunge", err, errlen);
}

int store_msg_move_row(struct store_index *ix, int64_t from, uint32_t uid, int64_t to,
                       uint32_t new_uid, uint64_t to_modseq, uint64_t from_modseq, char *err,
                       size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MSG_MOVE, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, to);
    sqlite3_bind_int64(s, 2, new_uid);
    sqlite3_bind_int64(s, 3, (int64_t)to_modseq);
    sqlite3_bind_int64(s, 4, from);
    sqlite3_bind_int64(s, 5, uid);
    if (store_stmt_run(ix, s, "move message", err, errlen) < 0)
        return -1;
    if (sqlite3_changes(ix->db) == 0)
        return 0;
    return msg_expunge_record(ix, from, uid, from_modseq, err, errlen) < 0 ? -1 : 1;
}

/* Delete the sorted UIDs inside the transaction; their file names go to
 * files. */
static int expunge_run(struct store_index *ix, int64_t mailbox_id, const uint32_t *su, size_t m,
                       struct store_names *files, char *err, size_t errlen)
{
    struct store_mailbox mb;
    int found = store_mbox_by_id(ix, mailbox_id, &mb, err, errlen);
    if (found <= 0)
        return found == 0 ? err_set(err, errlen, "no such mailbox") : -1;
    uint64_t modseq = mb.highestmodseq + 1;
    for (size_t i = 0; i < m; i++) {
        sqlite3_stmt *s = store_index_stmt(ix, IXS_MSG_DELETE, err, errlen);
        if (!s)
            return -1;
        sqlite3_bind_int64(s, 1, mailbox_id);
        sqlite3_bind_int64(s, 2, su[i]);
        int rc = sqlite3_step(s), gone = rc == SQLITE_ROW;
        if (gone && store_names_add(files, (const char *)sqlite3_column_text(s, 0)) < 0) {
            store_stmt_done(s);
            return err_set(err, errlen, "out of memory");
        }
        if (gone)
            rc = sqlite3_step(s);
        store_stmt_done(s);
        if (rc != SQLITE_DONE)
            return store_db_fail(err, errlen, ix->db, "expunge");
        if (gone && msg_expunge_record(ix, mailbox_id, su[i], modseq, err, errlen) < 0)
            return -1;
    }
    if (files->n == 0)
        return 0;
    return store_mbox_set_modseq(ix, mailbox_id, modseq, err, errlen);
}

int store_msgs_expunge(struct store *st, const char *account, int64_t mailbox_id,
                       const uint32_t *uids, size_t n, char *err, size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix)
        return -1;
    if (n == 0)
        return 0;
    size_t m;
    uint32_t *su = uids_unique(uids, n, &m);
    struct store_names files = {0};
    if (!su)
        return err_set(err, errlen, "out of memory");
    int rc = store_db_begin(ix->db, err, errlen);
    if (rc == 0 && (expunge_run(ix, mailbox_id, su, m, &files, err, errlen) < 0 ||
                    store_ix_commit(ix, err, errlen) < 0)) {
        store_db_rollback(ix->db);
        rc = -1;
    }
    free(su);
    if (rc == 0)
        store_names_unlink(&files, ix); /* only now that no row names them */
    store_names_free(&files);
    return rc;
}

/* The two mailboxes of a copy or move, read inside the transaction. */
static int copy_mailboxes(struct store_index *ix, int64_t from, int64_t to, size_t m,
                          struct store_mailbox *src, struct store_mailbox *dst, char *err,
                          size_t errlen)
{
    int a = store_mbox_by_id(ix, from, src, err, errlen);
    int b = a > 0 ? store_mbox_by_id(ix, to, dst, err, errlen) : a;
    if (a <= 0 || b <= 0)
        return a == 0 || b == 0 ? err_set(err, errlen, "no such mailbox") : -1;
    if ((uint64_t)dst->uidnext + m > UINT32_MAX)
        return err_set(err, errlen, "mailbox %.200s: UIDs exhausted", dst->name);
    return 0;
}

/* Set the target's UIDNEXT and HIGHESTMODSEQ after a copy or move. */
static int copy_bump(struct store_index *ix, int64_t to, uint32_t next, uint64_t modseq, char *err,
                     size_t errlen)
{
    sqlite3_stmt *s = store_index_stmt(ix, IXS_MBOX_SET_NEXT, err, errlen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, next);
    sqlite3_bind_int64(s, 2, (int64_t)modseq);
    sqlite3_bind_int64(s, 3, to);
    return store_stmt_run(ix, s, "update mailbox", err, errlen);
}

/* MOVE (RFC 6851) inside one transaction: each row changes mailbox and
 * UID and keeps its file (same account, nothing to link); the source
 * records the expunge. Within one mailbox both sides share one MODSEQ. */
static int move_run(struct store_index *ix, int64_t from, int64_t to, const uint32_t *su,
                    uint32_t *nu, size_t m, char *err, size_t errlen)
{
    struct store_mailbox src, dst;
    if (store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    if (copy_mailboxes(ix, from, to, m, &src, &dst, err, errlen) < 0)
        goto fail;
    uint64_t to_modseq = dst.highestmodseq + 1;
    uint64_t from_modseq = from == to ? to_modseq : src.highestmodseq + 1;
    uint32_t next = dst.uidnext;
    for (size_t i = 0; i < m; i++) {
        int rc = store_msg_move_row(ix, from, su[i], to, next, to_modseq, from_modseq, err, errlen);
        if (rc < 0)
            goto fail;
        if (rc > 0)
            nu[i] = next++;
    }
    if (next != dst.uidnext &&
        (copy_bump(ix, to, next, to_modseq, err, errlen) < 0 ||
         (from != to && store_mbox_set_modseq(ix, from, from_modseq, err, errlen) < 0)))
        goto fail;
    return store_ix_commit(ix, err, errlen);
fail:
    store_db_rollback(ix->db);
    return -1;
}

/* One message of a COPY: its source file and the new link. */
struct copy_item {
    uint32_t uid;
    int linked, stored;
    char src[128];
    char dst[64];
};

/* Look up the source files (before any lock) and link each under a new
 * name; then fsync msg/ once. A source already gone is skipped. */
static int copy_link(struct store_index *ix, int64_t from, struct copy_item *v, size_t m, char *err,
                     size_t errlen)
{
    size_t linked = 0;
    for (size_t i = 0; i < m; i++) {
        sqlite3_stmt *s = store_index_stmt(ix, IXS_MSG_FILE, err, errlen);
        if (!s)
            return -1;
        sqlite3_bind_int64(s, 1, from);
        sqlite3_bind_int64(s, 2, v[i].uid);
        int rc = sqlite3_step(s);
        const char *f = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
        snprintf(v[i].src, sizeof(v[i].src), "%s", f ? f : "");
        store_stmt_done(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return store_db_fail(err, errlen, ix->db, "read message");
        if (!f)
            continue;
        if (blob_link(ix->dir, v[i].src, v[i].dst, sizeof(v[i].dst), err, errlen) < 0) {
            if (errno == ENOENT)
                continue; /* expunged meanwhile */
            return -1;
        }
        v[i].linked = 1;
        linked++;
    }
    char path[PATH_MAX];
    if (linked == 0)
        return 0;
    if (store_path_fmt(path, sizeof(path), "%s/msg", ix->dir) < 0)
        return err_set(err, errlen, "path too long");
    return blob_sync_dir(path, err, errlen);
}

/* The index transaction of a COPY: a row per linked message whose source
 * row still names the file we linked. */
static int copy_rows(struct store_index *ix, int64_t from, int64_t to, struct copy_item *v,
                     uint32_t *nu, size_t m, char *err, size_t errlen)
{
    struct store_mailbox src, dst;
    if (store_db_begin(ix->db, err, errlen) < 0)
        return -1;
    if (copy_mailboxes(ix, from, to, m, &src, &dst, err, errlen) < 0)
        goto fail;
    uint64_t modseq = dst.highestmodseq + 1;
    uint32_t next = dst.uidnext;
    for (size_t i = 0; i < m; i++) {
        sqlite3_stmt *s = v[i].linked ? store_index_stmt(ix, IXS_MSG_COPY, err, errlen) : NULL;
        if (!v[i].linked)
            continue;
        if (!s)
            goto fail;
        sqlite3_bind_int64(s, 1, to);
        sqlite3_bind_int64(s, 2, next);
        sqlite3_bind_text(s, 3, v[i].dst, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, (int64_t)modseq);
        sqlite3_bind_int64(s, 5, from);
        sqlite3_bind_int64(s, 6, v[i].uid);
        sqlite3_bind_text(s, 7, v[i].src, -1, SQLITE_STATIC);
        if (store_stmt_run(ix, s, "copy message", err, errlen) < 0)
            goto fail;
        if (sqlite3_changes(ix->db) == 1) {
            v[i].stored = 1;
            nu[i] = next++;
        }
    }
    if (next != dst.uidnext && copy_bump(ix, to, next, modseq, err, errlen) < 0)
        goto fail;
    if (store_db_exec(ix->db, "COMMIT", err, errlen) == 0)
        return 0;
fail:
    store_db_rollback(ix->db);
    return -1;
}

/* After the transaction: remove the links no row names (all of them on
 * failure, unless a failed COMMIT might have stuck: then ask the index,
 * and leave the file to store_recover when it cannot say). */
static void copy_unlink(struct store_index *ix, const struct copy_item *v, size_t m, int ok)
{
    for (size_t i = 0; i < m; i++) {
        if (!v[i].linked || (ok && v[i].stored))
            continue;
        if (v[i].stored) {
            sqlite3_stmt *s = ix->file_find;
            sqlite3_bind_text(s, 1, v[i].dst, -1, SQLITE_STATIC);
            int rc = sqlite3_step(s);
            store_stmt_done(s);
            if (rc != SQLITE_DONE)
                continue;
        }
        if (blob_unlink(ix->dir, v[i].dst) < 0 && errno != ENOENT)
            log_warn("store", "event=unlink_failed account=%s file=%s error=%s", ix->account,
                     v[i].dst, strerror(errno));
    }
}

/* COPY: link every source file under a new name, fsync msg/ once, then
 * one index transaction; on failure the new links go again. The shared
 * store lock keeps store_recover from taking the links for orphans. */
static int copy_run(struct store *st, struct store_index *ix, int64_t from, int64_t to,
                    const uint32_t *su, uint32_t *nu, size_t m, char *err, size_t errlen)
{
    struct copy_item *v = calloc(m, sizeof(*v));
    if (!v)
        return err_set(err, errlen, "out of memory");
    for (size_t i = 0; i < m; i++)
        v[i].uid = su[i];
    if (store_flock(st, LOCK_SH) < 0)
        log_warn("store", "event=lock_failed error=%s", strerror(errno));
    int rc = copy_link(ix, from, v, m, err, errlen);
    if (rc == 0)
        rc = copy_rows(ix, from, to, v, nu, m, err, errlen);
    copy_unlink(ix, v, m, rc == 0);
    store_flock(st, LOCK_UN);
    if (rc < 0)
        memset(nu, 0, m * sizeof(*nu));
    free(v);
    return rc;
}

int store_msgs_copy(struct store *st, const char *account, int64_t from_mailbox_id,
                    const uint32_t *uids, size_t n, int64_t to_mailbox_id, int move,
                    uint32_t *new_uids_r, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        new_uids_r[i] = 0;
    struct store_index *ix = store_index_of(st, account, err, errlen);
    if (!ix)
        return -1;
    if (n == 0)
        return 0;
    size_t m;
    uint32_t *su = uids_unique(uids, n, &m);
    uint32_t *nu = su ? calloc(m + 1, sizeof(*nu)) : NULL;
    if (!nu) {
        free(su);
        return err_set(err, errlen, "out of memory");
    }
    int rc = move ? move_run(ix, from_mailbox_id, to_mailbox_id, su, nu, m, err, errlen)
                  : copy_run(st, ix, from_mailbox_id, to_mailbox_id, su, nu, m, err, errlen);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const uint32_t *p = bsearch(&uids[i], su, m, sizeof(*su), uid_cmp);
        new_uids_r[i] = p ? nu[p - su] : 0;
    }
    size_t done = 0;
    for (size_t i = 0; i < m; i++)
        done += nu[i] != 0;
    if (rc == 0)
        log_info("store", "event=%s account=%s from=%lld to=%lld messages=%zu",
                 move ? "move" : "copy", ix->account, (long long)from_mailbox_id,
                 (long long)to_mailbox_id, done);
    free(su);
    free(nu);
    return rc;
}

/* --- cache, reading --------------------------------------------------------------- */

/* A cache fill is not mail: its commit need not reach the disk at once
 * (synchronous=NORMAL for this one transaction; the next FULL commit
 * syncs the WAL up to it). A power cut can only lose the fill, which the
 * next FETCH redoes. If FULL cannot be restored the connection is closed,
 * so no later delivery commits without the sync. */
int store_msg_set_cache(struct store *st, const char *account, int64_t mailbox_id, uint32_t uid,
                        const char *envelope, const char *bodystructure,
                        const uint8_t *fields, size_t fields_len, char *err, size_t errlen)
{
    struct store_index *ix = store_index_of(st, account, err, errlen);
    sqlite3_stmt *s = ix ? store_index_stmt(ix, IXS_MSG_SET_CACHE, err, errlen) : NULL;
    if (!s)
        return -1;
    if (!envelope && !bodystructure && !(fields && fields_len))
        return 0;
    if (store_db_exec(ix->db, "PRAGMA synchronous=NORMAL", err, errlen) < 0)
        return -1;
    int rc = store_db_begin(ix->db, err, errlen);
    if (rc == 0) {
        if (envelope)
            sqlite3_bind_text(s, 1, envelope, -1, SQLITE_STATIC);
        if (bodystructure)
            sqlite3_bind_text(s, 2, bodystructure, -1, SQLITE_STATIC);
        if (fields && fields_len)
            sqlite3_bind_blob(s, 3, fields, (int)fields_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, mailbox_id);
        sqlite3_bind_int64(s, 5, uid);
        rc = store_stmt_run(ix, s, "set cache", err, errlen);
        if (rc == 0)
            rc = store_ix_commit(ix, err, errlen);
        else
            store_db_rollback(ix->db);
    }
    if (store_db_exec(ix->db, "PRAGMA synchronous=FULL", NULL, 0) < 0) {
        log_error("store", "event=sync_restore_failed account=%s", ix->account);
        store_index_forget(st, ix->account);
    }
    return rc;
}

int store_msg_read(struct store *st, const char *account, const char *file, uint8_t **data_r,
                   size_t *len_r, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (!file || !*file || strchr(file, '/') || strstr(file, ".."))
        return err_set(err, errlen, "invalid message file name");
    if (store_account_dir(st, account, dir, sizeof(dir)) < 0)
        return err_set(err, errlen, "no such account: %.320s", account ? account : "");
    return blob_read(dir, file, data_r, len_r, err, errlen);
}

int store_msg_read_header(struct store *st, const char *account, const char *file,
                          uint8_t **data_r, size_t *len_r, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (!file || !*file || strchr(file, '/') || strstr(file, ".."))
        return err_set(err, errlen, "invalid message file name");
    if (store_account_dir(st, account, dir, sizeof(dir)) < 0)
        return err_set(err, errlen, "no such account: %.320s", account ? account : "");
    return blob_read_head(dir, file, data_r, len_r, err, errlen);
}
