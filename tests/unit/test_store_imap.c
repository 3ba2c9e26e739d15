/* Unit tests for the IMAP side of store.h: mailboxes (create, delete,
 * rename, subscriptions, status, \Recent) and messages (flags and
 * keywords, CONDSTORE MODSEQs, expunge, copy, move, APPEND through
 * store_deliver, the envelope/bodystructure cache), and the migration of
 * a version 1 index. */
#include "testutil.h"

#include "store/store.h"

#include <limits.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACCT "joe@example.com"

struct fixture {
    char *dir;
    struct store *st;
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256] = "";
    f->dir = test_tmpdir();
    if (store_open(&f->st, f->dir, err, sizeof(err)) < 0 ||
        store_domain_add(f->st, "example.com", err, sizeof(err)) < 0 ||
        store_account_add(f->st, ACCT, "$y$hash", err, sizeof(err)) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    store_close(&f->st);
    test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* --- helpers ---------------------------------------------------------------------- */

/* Deliver (or APPEND) one message with the optional fields; its UID. */
static uint32_t put(struct store *st, const char *mailbox, const char *text, uint32_t flags,
                    const char *keywords, const char *envelope, const char *bodystructure)
{
    struct store_delivery d;
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    memset(&d, 0, sizeof(d));
    d.account = ACCT;
    d.mailbox = mailbox;
    d.iov = &iov;
    d.iovcnt = 1;
    d.internal_date = 1700000000;
    d.flags = flags;
    d.keywords = keywords;
    d.envelope = envelope;
    d.bodystructure = bodystructure;
    if (store_deliver(st, &d, 1) < 0)
        fail_msg("deliver to %s: %s", mailbox, d.err_r);
    return d.uid_r;
}

static uint32_t put_plain(struct store *st, const char *mailbox, const char *text)
{
    return put(st, mailbox, text, 0, NULL, NULL, NULL);
}

static struct store_mailbox mbox(struct store *st, const char *name)
{
    struct store_mailbox mb;
    char err[256] = "";
    int rc = store_mailbox_get(st, ACCT, name, &mb, err, sizeof(err));
    if (rc != 1)
        fail_msg("store_mailbox_get %s: rc=%d %s", name, rc, err);
    return mb;
}

static int mbox_exists(struct store *st, const char *name)
{
    struct store_mailbox mb;
    char err[256] = "";
    int rc = store_mailbox_get(st, ACCT, name, &mb, err, sizeof(err));
    assert_true(rc >= 0);
    return rc;
}

static void load(struct store *st, int64_t id, unsigned what, struct store_msg_list *l)
{
    char err[256] = "";
    if (store_msgs_load(st, ACCT, id, 1, UINT32_MAX, what, l, err, sizeof(err)) < 0)
        fail_msg("store_msgs_load: %s", err);
}

/* The message with uid in l, or NULL. */
static const struct store_msg *find(const struct store_msg_list *l, uint32_t uid)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].uid == uid)
            return &l->v[i];
    return NULL;
}

static void set_flags(struct store *st, int64_t id, const uint32_t *uids, size_t n,
                      enum store_flag_op op, uint32_t flags, const char *kw)
{
    char err[256] = "";
    if (store_msgs_set_flags(st, ACCT, id, uids, n, op, flags, kw, 0, NULL, NULL, err,
                             sizeof(err)) < 0)
        fail_msg("store_msgs_set_flags: %s", err);
}

static void msg_path(struct store *st, const char *file, char *out, size_t n)
{
    char dir[PATH_MAX];
    assert_int_equal(store_account_dir(st, ACCT, dir, sizeof(dir)), 0);
    snprintf(out, n, "%s/msg/%s", dir, file);
}

static int file_exists(struct store *st, const char *file)
{
    char p[PATH_MAX + 200];
    struct stat sb;
    msg_path(st, file, p, sizeof(p));
    return stat(p, &sb) == 0;
}

static ino_t file_inode(struct store *st, const char *file)
{
    char p[PATH_MAX + 200];
    struct stat sb;
    msg_path(st, file, p, sizeof(p));
    assert_int_equal(stat(p, &sb), 0);
    return sb.st_ino;
}

struct names {
    size_t n;
    char s[32][64];
};

static void names_cb(void *ctx, const char *s)
{
    struct names *l = ctx;
    if (l->n < 32)
        snprintf(l->s[l->n++], 64, "%s", s);
}

static int names_has(const struct names *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->s[i], s) == 0)
            return 1;
    return 0;
}

static struct names subscriptions(struct store *st)
{
    struct names l = {0};
    char err[256] = "";
    if (store_subscription_list(st, ACCT, names_cb, &l, err, sizeof(err)) < 0)
        fail_msg("store_subscription_list: %s", err);
    return l;
}

static void each_cb(void *ctx, const struct store_mailbox *mb)
{
    names_cb(ctx, mb->name);
}

static struct names mailboxes(struct store *st)
{
    struct names l = {0};
    char err[256] = "";
    if (store_mailbox_each(st, ACCT, each_cb, &l, err, sizeof(err)) < 0)
        fail_msg("store_mailbox_each: %s", err);
    return l;
}

static void create(struct store *st, const char *name)
{
    char err[256] = "";
    if (store_mailbox_create(st, ACCT, name, NULL, err, sizeof(err)) < 0)
        fail_msg("store_mailbox_create %s: %s", name, err);
}

/* Run SQL on the account's index through a second connection. */
static void index_sql(struct store *st, const char *sql)
{
    char dir[PATH_MAX], p[PATH_MAX + 16];
    sqlite3 *db;
    assert_int_equal(store_account_dir(st, ACCT, dir, sizeof(dir)), 0);
    snprintf(p, sizeof(p), "%s/index.sqlite", dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* --- mailboxes ---------------------------------------------------------------------- */

static void test_mailbox_get(void **state)
{
    struct fixture *f = *state;
    struct store_mailbox a = mbox(f->st, "INBOX"), b = mbox(f->st, "inbox");
    assert_string_equal(a.name, "INBOX");
    assert_int_equal(a.id, b.id);
    assert_int_equal(a.uidnext, 1);
    assert_int_equal(a.highestmodseq, 1);
    assert_int_equal(a.first_recent_uid, 1);
    assert_int_equal(mbox_exists(f->st, "Sent"), 1);
    assert_string_equal(mbox(f->st, "Sent").special_use, "\\Sent");
    assert_int_equal(mbox_exists(f->st, "sent"), 0); /* other names are exact */
    assert_int_equal(mbox_exists(f->st, "Nope"), 0);
    char err[256];
    struct store_mailbox mb;
    assert_int_equal(store_mailbox_get(f->st, "nobody@example.com", "INBOX", &mb, err, 256), -1);
}

static void test_mailbox_create_delete(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox inbox = mbox(f->st, "INBOX");
    create(f->st, "Work");
    assert_int_equal(store_mailbox_create(f->st, ACCT, "Lists/x", "\\Flagged", err, 256), 0);
    struct store_mailbox w = mbox(f->st, "Work");
    assert_int_equal(w.uidnext, 1);
    assert_true(w.uidvalidity > inbox.uidvalidity); /* fresh, never repeated */
    assert_string_equal(mbox(f->st, "Lists/x").special_use, "\\Flagged");
    /* Collisions and bad names. */
    assert_int_equal(store_mailbox_create(f->st, ACCT, "Work", NULL, err, 256), -1);
    assert_non_null(strstr(err, "exists"));
    assert_int_equal(store_mailbox_create(f->st, ACCT, "inbox", NULL, err, 256), -1);
    const char *bad[] = {"", "/a", "a/", "a//b", "a\tb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(store_mailbox_create(f->st, ACCT, bad[i], NULL, err, 256), -1);
    /* A new mailbox is not subscribed (RFC 3501 6.3.3 does not say so). */
    assert_false(names_has((struct names[]){subscriptions(f->st)}, "Work"));

    /* Delete removes the messages and their files, not the children. */
    create(f->st, "Work/Old");
    uint32_t u1 = put_plain(f->st, "Work", "one\r\n");
    put_plain(f->st, "Work", "two\r\n");
    put_plain(f->st, "Work/Old", "three\r\n");
    struct store_msg_list l;
    load(f->st, w.id, 0, &l);
    assert_int_equal(l.n, 2);
    char file[128];
    snprintf(file, sizeof(file), "%s", find(&l, u1)->file);
    store_msg_list_free(&l);
    assert_true(file_exists(f->st, file));
    assert_int_equal(store_mailbox_delete(f->st, ACCT, "Work", err, 256), 0);
    assert_false(file_exists(f->st, file));
    assert_int_equal(mbox_exists(f->st, "Work"), 0);
    assert_int_equal(mbox_exists(f->st, "Work/Old"), 1);
    load(f->st, w.id, 0, &l);
    assert_int_equal(l.n, 0);
    store_msg_list_free(&l);
    struct store_mailbox_status s;
    assert_int_equal(store_mailbox_status(f->st, ACCT, "Work/Old", &s, err, 256), 1);
    assert_int_equal(s.messages, 1);
    /* Re-created: a new UIDVALIDITY, UIDs from 1, and a new id, so a
     * session still holding the old id cannot reach it. */
    create(f->st, "Work");
    struct store_mailbox w2 = mbox(f->st, "Work");
    assert_true(w2.uidvalidity != w.uidvalidity);
    assert_true(w2.id != w.id);
    uint32_t one = 1;
    assert_int_equal(store_msgs_set_flags(f->st, ACCT, w.id, &one, 1, STORE_FLAGS_ADD,
                                          STORE_FLAG_SEEN, NULL, 0, NULL, NULL, err, 256),
                     -1);
    assert_int_equal(put_plain(f->st, "Work", "again\r\n"), 1);

    /* The newest mailbox deleted: its id is still not given again. */
    struct store_mailbox last = mbox(f->st, "Work");
    assert_int_equal(store_mailbox_delete(f->st, ACCT, "Work", err, 256), 0);
    create(f->st, "Other");
    assert_true(mbox(f->st, "Other").id > last.id);

    assert_int_equal(store_mailbox_delete(f->st, ACCT, "INBOX", err, 256), -1);
    assert_int_equal(store_mailbox_delete(f->st, ACCT, "inbox", err, 256), -1);
    assert_int_equal(store_mailbox_delete(f->st, ACCT, "Nope", err, 256), -1);
    assert_int_equal(mbox_exists(f->st, "INBOX"), 1);
}

static void test_mailbox_rename(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    create(f->st, "a");
    create(f->st, "a/b");
    create(f->st, "a/b/c");
    create(f->st, "ab");  /* not a child of a */
    create(f->st, "a.b"); /* sorts between "a" and "a/" */
    uint32_t uid = put_plain(f->st, "a/b", "hello\r\n");
    struct store_mailbox before = mbox(f->st, "a/b");
    assert_int_equal(store_subscription_set(f->st, ACCT, "a", 1, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "a/b/c", 1, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "a/gone", 1, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "ab", 1, err, 256), 0);

    assert_int_equal(store_mailbox_rename(f->st, ACCT, "a", "x", err, 256), 0);
    struct names n = mailboxes(f->st);
    assert_true(names_has(&n, "x") && names_has(&n, "x/b") && names_has(&n, "x/b/c"));
    assert_false(names_has(&n, "a") || names_has(&n, "a/b") || names_has(&n, "a/b/c"));
    assert_true(names_has(&n, "ab") && names_has(&n, "a.b"));
    struct store_mailbox after = mbox(f->st, "x/b");
    assert_int_equal(after.id, before.id);
    assert_int_equal(after.uidvalidity, before.uidvalidity);
    assert_int_equal(after.uidnext, before.uidnext);
    struct store_msg_list l;
    load(f->st, after.id, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].uid, uid);
    store_msg_list_free(&l);
    /* Subscriptions followed; others stayed. */
    struct names s = subscriptions(f->st);
    assert_true(names_has(&s, "x") && names_has(&s, "x/b/c") && names_has(&s, "x/gone"));
    assert_true(names_has(&s, "ab"));
    assert_false(names_has(&s, "a") || names_has(&s, "a/b/c") || names_has(&s, "a/gone"));

    /* Collisions: the name itself, or a child's new name. */
    create(f->st, "y");
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x", "y", err, 256), -1);
    assert_non_null(strstr(err, "exists"));
    create(f->st, "z/b");
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x", "z", err, 256), -1);
    assert_int_equal(mbox_exists(f->st, "x/b"), 1); /* rolled back */
    assert_int_equal(mbox_exists(f->st, "z"), 0);
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x", "INBOX", err, 256), -1);
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x", "inbox", err, 256), -1);
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "nope", "q", err, 256), -1);
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x", "x", err, 256), -1);
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x", "bad//name", err, 256), -1);

    /* Into its own child: every new name is free once all have moved. */
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x", "x/b", err, 256), 0);
    n = mailboxes(f->st);
    assert_true(names_has(&n, "x/b") && names_has(&n, "x/b/b") && names_has(&n, "x/b/b/c"));
    assert_false(names_has(&n, "x"));
    assert_int_equal(mbox(f->st, "x/b/b").id, before.id);
    /* And back up a level. */
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "x/b", "x", err, 256), 0);
    assert_int_equal(mbox(f->st, "x/b").id, before.id);
    assert_int_equal(mbox_exists(f->st, "x/b/c"), 1);
}

static void test_mailbox_rename_inbox(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox inbox = mbox(f->st, "INBOX");
    uint32_t u1 = put_plain(f->st, "INBOX", "one\r\n");
    uint32_t u2 = put(f->st, "INBOX", "two\r\n", STORE_FLAG_SEEN, "$Work", NULL, NULL);
    uint32_t u3 = put_plain(f->st, "INBOX", "three\r\n");
    uint32_t first;
    assert_int_equal(store_mailbox_take_recent(f->st, ACCT, inbox.id, &first, err, 256), 0);
    uint32_t u4 = put_plain(f->st, "INBOX", "four\r\n"); /* the only \Recent one */
    assert_int_equal(store_msgs_expunge(f->st, ACCT, inbox.id, &u1, 1, err, 256), 0);
    inbox = mbox(f->st, "INBOX");
    struct store_msg_list before;
    load(f->st, inbox.id, 0, &before);
    assert_int_equal(before.n, 3);

    assert_int_equal(store_mailbox_rename(f->st, ACCT, "inbox", "Old", err, 256), 0);
    struct store_mailbox old = mbox(f->st, "Old"), in2 = mbox(f->st, "INBOX");
    assert_int_equal(in2.id, inbox.id);
    assert_int_equal(in2.uidvalidity, inbox.uidvalidity);
    assert_int_equal(in2.uidnext, inbox.uidnext);
    assert_int_equal(in2.highestmodseq, inbox.highestmodseq + 1);
    assert_true(old.uidvalidity != inbox.uidvalidity);
    assert_int_equal(old.uidnext, 4);
    assert_int_equal(old.highestmodseq, 2);
    assert_int_equal(old.first_recent_uid, 3); /* u4 became uid 3 */
    struct store_msg_list l;
    load(f->st, old.id, 0, &l);
    assert_int_equal(l.n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(l.v[i].uid, i + 1);
        assert_int_equal(l.v[i].modseq, 2);
        assert_string_equal(l.v[i].file, before.v[i].file); /* files kept */
        assert_true(file_exists(f->st, l.v[i].file));
    }
    assert_int_equal(l.v[0].flags, STORE_FLAG_SEEN);
    assert_string_equal(l.v[0].keywords, "$Work");
    store_msg_list_free(&l);
    store_msg_list_free(&before);
    /* INBOX is empty; a resync learns the UIDs vanished. */
    load(f->st, inbox.id, 0, &l);
    assert_int_equal(l.n, 0);
    store_msg_list_free(&l);
    uint32_t *exp = NULL;
    size_t nexp = 0;
    assert_int_equal(store_msgs_changed_since(f->st, ACCT, inbox.id, inbox.highestmodseq, &l, &exp,
                                              &nexp, err, 256),
                     0);
    assert_int_equal(l.n, 0);
    assert_int_equal(nexp, 3);
    assert_int_equal(exp[0], u2);
    assert_int_equal(exp[1], u3);
    assert_int_equal(exp[2], u4);
    free(exp);
    store_msg_list_free(&l);
    /* New mail goes on with INBOX's UIDs; the target name must be free. */
    assert_int_equal(put_plain(f->st, "INBOX", "five\r\n"), u4 + 1);
    assert_int_equal(store_mailbox_rename(f->st, ACCT, "INBOX", "Old", err, 256), -1);
    assert_int_equal(mbox(f->st, "INBOX").uidnext, u4 + 2);
}

static void test_subscriptions(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct names s = subscriptions(f->st);
    assert_int_equal(s.n, 6); /* the default mailboxes */
    assert_string_equal(s.s[0], "Archive");
    assert_true(names_has(&s, "INBOX"));
    assert_int_equal(store_subscription_set(f->st, ACCT, "Junk", 0, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "Junk", 0, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "No/Such", 1, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "No/Such", 1, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "inbox", 0, err, 256), 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "", 1, err, 256), -1);
    s = subscriptions(f->st);
    assert_int_equal(s.n, 5);
    assert_false(names_has(&s, "Junk") || names_has(&s, "INBOX"));
    assert_true(names_has(&s, "No/Such"));
    for (size_t i = 1; i < s.n; i++)
        assert_true(strcmp(s.s[i - 1], s.s[i]) < 0);
    assert_int_equal(store_subscription_set(f->st, ACCT, "InBoX", 1, err, 256), 0);
    assert_true(names_has((struct names[]){subscriptions(f->st)}, "INBOX"));
    /* Deleting a mailbox keeps its subscription (RFC 3501 6.3.4). */
    assert_int_equal(store_mailbox_delete(f->st, ACCT, "Archive", err, 256), 0);
    assert_true(names_has((struct names[]){subscriptions(f->st)}, "Archive"));
}

static void test_status_and_recent(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox_status s;
    assert_int_equal(store_mailbox_status(f->st, ACCT, "Nope", &s, err, 256), 0);
    assert_int_equal(store_mailbox_status(f->st, ACCT, "INBOX", &s, err, 256), 1);
    assert_int_equal(s.messages, 0);
    assert_int_equal(s.size, 0);
    assert_int_equal(s.uidnext, 1);
    put(f->st, "INBOX", "12345\r\n", STORE_FLAG_SEEN, NULL, NULL, NULL);
    put(f->st, "INBOX", "123\r\n", STORE_FLAG_SEEN | STORE_FLAG_DELETED, NULL, NULL, NULL);
    put(f->st, "INBOX", "1\r\n", STORE_FLAG_DELETED | STORE_FLAG_FLAGGED, NULL, NULL, NULL);
    put_plain(f->st, "INBOX", "\r\n");
    assert_int_equal(store_mailbox_status(f->st, ACCT, "inbox", &s, err, 256), 1);
    struct store_mailbox mb = mbox(f->st, "INBOX");
    assert_int_equal(s.messages, 4);
    assert_int_equal(s.unseen, 2);
    assert_int_equal(s.recent, 4);
    assert_int_equal(s.deleted, 2);
    assert_int_equal(s.size, 7 + 5 + 3 + 2);
    assert_int_equal(s.uidnext, 5);
    assert_int_equal(s.uidvalidity, mb.uidvalidity);
    assert_int_equal(s.highestmodseq, 5);

    /* The first SELECT takes them all; the next gets none. */
    uint32_t first = 0;
    assert_int_equal(store_mailbox_take_recent(f->st, ACCT, mb.id, &first, err, 256), 0);
    assert_int_equal(first, 1);
    assert_int_equal(store_mailbox_status(f->st, ACCT, "INBOX", &s, err, 256), 1);
    assert_int_equal(s.recent, 0);
    assert_int_equal(s.highestmodseq, 5); /* \Recent is not a MODSEQ change */
    assert_int_equal(store_mailbox_take_recent(f->st, ACCT, mb.id, &first, err, 256), 0);
    assert_int_equal(first, 5);
    put_plain(f->st, "INBOX", "new\r\n");
    assert_int_equal(store_mailbox_status(f->st, ACCT, "INBOX", &s, err, 256), 1);
    assert_int_equal(s.recent, 1);
    assert_int_equal(store_mailbox_take_recent(f->st, ACCT, mb.id, &first, err, 256), 0);
    assert_int_equal(first, 5);
    assert_int_equal(store_mailbox_take_recent(f->st, ACCT, 9999, &first, err, 256), -1);
}

/* --- flags, MODSEQ ---------------------------------------------------------------------- */

static void test_flags_and_keywords(void **state)
{
    struct fixture *f = *state;
    struct store_mailbox mb = mbox(f->st, "INBOX");
    uint32_t a = put_plain(f->st, "INBOX", "a\r\n");
    uint32_t b = put_plain(f->st, "INBOX", "b\r\n");
    uint32_t both[] = {b, a, b}; /* any order, duplicates */
    struct store_msg_list l;

    set_flags(f->st, mb.id, both, 3, STORE_FLAGS_ADD, STORE_FLAG_SEEN, "$Label1 $label1 Foo");
    load(f->st, mb.id, 0, &l);
    assert_int_equal(l.n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(l.v[i].flags, STORE_FLAG_SEEN);
        assert_string_equal(l.v[i].keywords, "$Label1 Foo");
        assert_int_equal(l.v[i].modseq, 4); /* one MODSEQ for the whole call */
    }
    store_msg_list_free(&l);
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, 4);

    /* Nothing changes: no MODSEQ is taken. */
    set_flags(f->st, mb.id, &a, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, "foo $LABEL1");
    set_flags(f->st, mb.id, &a, 1, STORE_FLAGS_REMOVE, STORE_FLAG_DRAFT, "Bar");
    set_flags(f->st, mb.id, &a, 1, STORE_FLAGS_SET, STORE_FLAG_SEEN, "$Label1  Foo");
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, 4);

    /* Only the message that changes gets the new MODSEQ. */
    set_flags(f->st, mb.id, &a, 1, STORE_FLAGS_ADD, STORE_FLAG_FLAGGED | STORE_FLAG_ANSWERED, NULL);
    set_flags(f->st, mb.id, both, 2, STORE_FLAGS_REMOVE, 0, "FOO");
    load(f->st, mb.id, 0, &l);
    assert_int_equal(find(&l, a)->flags,
                     STORE_FLAG_SEEN | STORE_FLAG_FLAGGED | STORE_FLAG_ANSWERED);
    assert_string_equal(find(&l, a)->keywords, "$Label1");
    assert_int_equal(find(&l, a)->modseq, 6);
    assert_string_equal(find(&l, b)->keywords, "$Label1");
    assert_int_equal(find(&l, b)->modseq, 6);
    store_msg_list_free(&l);

    /* SET replaces flags and keywords; to none at all. */
    set_flags(f->st, mb.id, &a, 1, STORE_FLAGS_SET, STORE_FLAG_DRAFT, "X");
    set_flags(f->st, mb.id, &b, 1, STORE_FLAGS_SET, 0, NULL);
    load(f->st, mb.id, 0, &l);
    assert_int_equal(find(&l, a)->flags, STORE_FLAG_DRAFT);
    assert_string_equal(find(&l, a)->keywords, "X");
    assert_int_equal(find(&l, b)->flags, 0);
    assert_string_equal(find(&l, b)->keywords, "");
    assert_int_equal(find(&l, b)->modseq, 8);
    store_msg_list_free(&l);

    /* Unknown UIDs are ignored; an unknown mailbox is an error. */
    uint32_t none = 77;
    set_flags(f->st, mb.id, &none, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL);
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, 8);
    char err[256];
    assert_int_equal(store_msgs_set_flags(f->st, ACCT, 9999, &a, 1, STORE_FLAGS_ADD, 1, NULL, 0,
                                          NULL, NULL, err, 256),
                     -1);
}

static void test_flags_unchangedsince(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox mb = mbox(f->st, "INBOX");
    uint32_t a = put_plain(f->st, "INBOX", "a\r\n");                        /* modseq 2 */
    uint32_t b = put_plain(f->st, "INBOX", "b\r\n");                        /* modseq 3 */
    uint32_t c = put_plain(f->st, "INBOX", "c\r\n");                        /* modseq 4 */
    set_flags(f->st, mb.id, &c, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL); /* modseq 5 */
    uint32_t all[] = {c, a, b};
    uint32_t *failed = NULL;
    size_t nfailed = 0;
    assert_int_equal(store_msgs_set_flags(f->st, ACCT, mb.id, all, 3, STORE_FLAGS_ADD,
                                          STORE_FLAG_FLAGGED, NULL, 3, &failed, &nfailed, err, 256),
                     0);
    assert_int_equal(nfailed, 1);
    assert_int_equal(failed[0], c);
    free(failed);
    struct store_msg_list l;
    load(f->st, mb.id, 0, &l);
    assert_int_equal(find(&l, a)->flags, STORE_FLAG_FLAGGED);
    assert_int_equal(find(&l, a)->modseq, 6);
    assert_int_equal(find(&l, b)->modseq, 6);
    assert_int_equal(find(&l, c)->flags, STORE_FLAG_SEEN);
    assert_int_equal(find(&l, c)->modseq, 5);
    store_msg_list_free(&l);
    /* All pass: failed stays NULL. */
    failed = (uint32_t *)&nfailed;
    assert_int_equal(store_msgs_set_flags(f->st, ACCT, mb.id, all, 3, STORE_FLAGS_ADD,
                                          STORE_FLAG_ANSWERED, NULL, 6, &failed, &nfailed, err,
                                          256),
                     0);
    assert_null(failed);
    assert_int_equal(nfailed, 0);
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, 7);
}

static void test_expunge_changed_since(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox mb = mbox(f->st, "INBOX");
    uint32_t u[4];
    for (int i = 0; i < 4; i++)
        u[i] = put_plain(f->st, "INBOX", "m\r\n"); /* modseq 2..5 */
    struct store_msg_list l;
    load(f->st, mb.id, 0, &l);
    char f1[128], f3[128];
    snprintf(f1, sizeof(f1), "%s", find(&l, u[1])->file);
    snprintf(f3, sizeof(f3), "%s", find(&l, u[3])->file);
    store_msg_list_free(&l);

    set_flags(f->st, mb.id, &u[0], 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL); /* 6 */
    uint32_t gone[] = {u[3], u[1], 999};
    assert_int_equal(store_msgs_expunge(f->st, ACCT, mb.id, gone, 3, err, 256), 0); /* 7 */
    assert_false(file_exists(f->st, f1));
    assert_false(file_exists(f->st, f3));
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, 7);
    /* Expunging what is gone changes nothing. */
    assert_int_equal(store_msgs_expunge(f->st, ACCT, mb.id, gone, 3, err, 256), 0);
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, 7);

    uint32_t *exp = NULL;
    size_t nexp = 0;
    assert_int_equal(store_msgs_changed_since(f->st, ACCT, mb.id, 4, &l, &exp, &nexp, err, 256), 0);
    assert_int_equal(l.n, 1); /* u[0], flagged at 6; u[2] (4) is not after 4 */
    assert_int_equal(l.v[0].uid, u[0]);
    assert_int_equal(nexp, 2);
    assert_int_equal(exp[0], u[1]);
    assert_int_equal(exp[1], u[3]);
    free(exp);
    store_msg_list_free(&l);
    assert_int_equal(store_msgs_changed_since(f->st, ACCT, mb.id, 1, &l, &exp, &nexp, err, 256), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[0].uid, u[0]);
    assert_int_equal(l.v[0].modseq, 6);
    assert_int_equal(l.v[1].uid, u[2]);
    store_msg_list_free(&l);
    free(exp);
    assert_int_equal(store_msgs_changed_since(f->st, ACCT, mb.id, 7, &l, &exp, &nexp, err, 256), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(nexp, 0);
    assert_null(exp);
    store_msg_list_free(&l);
    assert_int_equal(store_msgs_expunge(f->st, ACCT, 9999, gone, 1, err, 256), -1);
}

/* --- copy, move --------------------------------------------------------------------------- */

static void test_copy(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    create(f->st, "Work");
    struct store_mailbox in = mbox(f->st, "INBOX"), w = mbox(f->st, "Work");
    uint32_t a = put(f->st, "INBOX", "a\r\n", STORE_FLAG_SEEN, "$Work", "(env a)", "(bs a)");
    uint32_t b = put_plain(f->st, "INBOX", "bb\r\n");
    put_plain(f->st, "Work", "already\r\n"); /* Work: uid 1, modseq 2 */
    uint32_t uids[] = {b, 42, a}, nu[3] = {9, 9, 9};
    assert_int_equal(store_msgs_copy(f->st, ACCT, in.id, uids, 3, w.id, 0, nu, err, 256), 0);
    /* UIDs follow the source UID order, whatever the order asked. */
    assert_int_equal(nu[2], 2);
    assert_int_equal(nu[0], 3);
    assert_int_equal(nu[1], 0);
    struct store_mailbox w2 = mbox(f->st, "Work");
    assert_int_equal(w2.uidnext, 4);
    assert_int_equal(w2.highestmodseq, 3);
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, in.highestmodseq + 2);

    struct store_msg_list src, dst;
    load(f->st, in.id, STORE_MSG_CACHE, &src);
    load(f->st, w.id, STORE_MSG_CACHE, &dst);
    assert_int_equal(src.n, 2);
    assert_int_equal(dst.n, 3);
    const struct store_msg *sa = find(&src, a), *da = find(&dst, 2), *db = find(&dst, 3);
    assert_int_equal(da->flags, STORE_FLAG_SEEN);
    assert_string_equal(da->keywords, "$Work");
    assert_string_equal(da->envelope, "(env a)");
    assert_string_equal(da->bodystructure, "(bs a)");
    assert_int_equal(da->size, 3);
    assert_int_equal(da->internal_date, 1700000000);
    assert_int_equal(da->modseq, 3);
    assert_int_equal(db->modseq, 3);
    assert_int_equal(sa->modseq, 2); /* the source is not changed */
    /* Hard links: a new name, the same inode. */
    assert_string_not_equal(da->file, sa->file);
    assert_int_equal(file_inode(f->st, da->file), file_inode(f->st, sa->file));
    assert_int_equal(file_inode(f->st, db->file), file_inode(f->st, find(&src, b)->file));
    /* Expunging the source leaves the copy readable. */
    assert_int_equal(store_msgs_expunge(f->st, ACCT, in.id, &a, 1, err, 256), 0);
    uint8_t *data;
    size_t len;
    assert_int_equal(store_msg_read(f->st, ACCT, da->file, &data, &len, err, 256), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "a\r\n", 3);
    free(data);
    store_msg_list_free(&src);
    store_msg_list_free(&dst);

    /* Into the same mailbox; to a mailbox that does not exist. */
    assert_int_equal(store_msgs_copy(f->st, ACCT, in.id, &b, 1, in.id, 0, nu, err, 256), 0);
    assert_int_equal(nu[0], 3);
    int files_before = 0;
    load(f->st, in.id, 0, &src);
    files_before = (int)src.n;
    store_msg_list_free(&src);
    assert_int_equal(files_before, 2);
    assert_int_equal(store_msgs_copy(f->st, ACCT, in.id, &b, 1, 9999, 0, nu, err, 256), -1);
    assert_int_equal(nu[0], 0);
}

/* Count the files in the account's msg/. */
static int msg_files(struct store *st)
{
    char dir[PATH_MAX], cmd[PATH_MAX + 64];
    assert_int_equal(store_account_dir(st, ACCT, dir, sizeof(dir)), 0);
    snprintf(cmd, sizeof(cmd), "ls '%s/msg' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void test_copy_failure_leaves_no_links(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox in = mbox(f->st, "INBOX"), sent = mbox(f->st, "Sent");
    uint32_t a = put_plain(f->st, "INBOX", "a\r\n");
    uint32_t b = put_plain(f->st, "INBOX", "b\r\n");
    assert_int_equal(msg_files(f->st), 2);
    index_sql(f->st, "CREATE TRIGGER fail BEFORE INSERT ON messages WHEN NEW.uid = 2 "
                     "BEGIN SELECT RAISE(ABORT, 'injected'); END");
    uint32_t uids[] = {a, b}, nu[2];
    assert_int_equal(store_msgs_copy(f->st, ACCT, in.id, uids, 2, sent.id, 0, nu, err, 256), -1);
    assert_non_null(strstr(err, "injected"));
    assert_int_equal(nu[0], 0);
    assert_int_equal(nu[1], 0);
    assert_int_equal(msg_files(f->st), 2);
    assert_int_equal(mbox(f->st, "Sent").uidnext, 1);
    index_sql(f->st, "DROP TRIGGER fail");
    assert_int_equal(store_msgs_copy(f->st, ACCT, in.id, uids, 2, sent.id, 0, nu, err, 256), 0);
    assert_int_equal(msg_files(f->st), 4);
    /* store_recover sees every link named by a row. */
    assert_int_equal(store_recover(f->st, err, 256), 0);
    assert_int_equal(msg_files(f->st), 4);
}

static void test_move(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox in = mbox(f->st, "INBOX"), ar = mbox(f->st, "Archive");
    uint32_t a = put(f->st, "INBOX", "a\r\n", STORE_FLAG_FLAGGED, "K", NULL, NULL);
    uint32_t b = put_plain(f->st, "INBOX", "b\r\n");
    uint32_t c = put_plain(f->st, "INBOX", "c\r\n");
    struct store_msg_list l;
    load(f->st, in.id, 0, &l);
    char fa[128], fc[128];
    snprintf(fa, sizeof(fa), "%s", find(&l, a)->file);
    snprintf(fc, sizeof(fc), "%s", find(&l, c)->file);
    ino_t ia = file_inode(f->st, fa);
    store_msg_list_free(&l);
    in = mbox(f->st, "INBOX");

    uint32_t uids[] = {c, a}, nu[2];
    assert_int_equal(store_msgs_copy(f->st, ACCT, in.id, uids, 2, ar.id, 1, nu, err, 256), 0);
    assert_int_equal(nu[1], 1);
    assert_int_equal(nu[0], 2);
    load(f->st, ar.id, 0, &l);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[0].flags, STORE_FLAG_FLAGGED);
    assert_string_equal(l.v[0].keywords, "K");
    assert_int_equal(l.v[0].modseq, 2);
    assert_int_equal(l.v[1].modseq, 2);
    assert_int_equal(file_inode(f->st, l.v[0].file), ia);
    assert_true(file_exists(f->st, fc));
    store_msg_list_free(&l);
    struct store_mailbox ar2 = mbox(f->st, "Archive"), in2 = mbox(f->st, "INBOX");
    assert_int_equal(ar2.uidnext, 3);
    assert_int_equal(ar2.highestmodseq, 2);
    assert_int_equal(in2.highestmodseq, in.highestmodseq + 1);
    /* The source lost them, as an expunge with the source's new MODSEQ. */
    uint32_t *exp = NULL;
    size_t nexp = 0;
    assert_int_equal(
        store_msgs_changed_since(f->st, ACCT, in.id, in.highestmodseq, &l, &exp, &nexp, err, 256),
        0);
    assert_int_equal(l.n, 0);
    assert_int_equal(nexp, 2);
    assert_int_equal(exp[0], a);
    assert_int_equal(exp[1], c);
    free(exp);
    store_msg_list_free(&l);
    load(f->st, in.id, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].uid, b);
    store_msg_list_free(&l);

    /* Moving within one mailbox: new UID, one MODSEQ for both sides. */
    assert_int_equal(store_msgs_copy(f->st, ACCT, in.id, &b, 1, in.id, 1, nu, err, 256), 0);
    assert_int_equal(nu[0], 4);
    in2 = mbox(f->st, "INBOX");
    load(f->st, in.id, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].uid, 4);
    assert_int_equal(l.v[0].modseq, in2.highestmodseq);
    store_msg_list_free(&l);
    assert_int_equal(msg_files(f->st), 3);
}

/* --- APPEND, cache, load, read ------------------------------------------------------------ */

static void test_append_fields(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    uint32_t uid = put(f->st, "Drafts", "Subject: x\r\n\r\nbody\r\n", STORE_FLAG_DRAFT | 0x100,
                       "$MDNSent  $mdnsent Work", "(\"date\" \"subj\")", "(\"text\" \"plain\")");
    assert_int_equal(uid, 1);
    assert_int_equal(put_plain(f->st, "Drafts", "two\r\n"), 2);
    /* A mailbox of any name; INBOX in any case; not one that is missing. */
    create(f->st, "Lists/dev");
    assert_int_equal(put_plain(f->st, "Lists/dev", "x\r\n"), 1);
    assert_int_equal(put_plain(f->st, "iNbOx", "x\r\n"), 1);
    struct store_delivery d = {.account = ACCT, .mailbox = "Nope"};
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    d.iov = &iov;
    d.iovcnt = 1;
    assert_int_equal(store_deliver(f->st, &d, 1), -1);
    assert_non_null(strstr(d.err_r, "no such mailbox"));

    struct store_mailbox mb = mbox(f->st, "Drafts");
    struct store_msg_list l;
    load(f->st, mb.id, STORE_MSG_CACHE, &l);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[0].flags, STORE_FLAG_DRAFT); /* unknown bits dropped */
    assert_string_equal(l.v[0].keywords, "$MDNSent Work");
    assert_string_equal(l.v[0].envelope, "(\"date\" \"subj\")");
    assert_string_equal(l.v[0].bodystructure, "(\"text\" \"plain\")");
    assert_int_equal(l.v[0].size, 20);
    assert_int_equal(l.v[0].internal_date, 1700000000);
    assert_non_null(l.v[1].keywords);
    assert_string_equal(l.v[1].keywords, "");
    assert_null(l.v[1].envelope);
    assert_null(l.v[1].bodystructure);
    uint8_t *data;
    size_t len;
    assert_int_equal(store_msg_read(f->st, ACCT, l.v[0].file, &data, &len, err, 256), 0);
    assert_int_equal(len, 20);
    assert_memory_equal(data, "Subject: x\r\n\r\nbody\r\n", 20);
    assert_int_equal(data[len], 0);
    free(data);
    store_msg_list_free(&l);
    /* Without the cache flag: keywords yes, cache no. */
    load(f->st, mb.id, 0, &l);
    assert_string_equal(l.v[0].keywords, "$MDNSent Work");
    assert_null(l.v[0].envelope);
    assert_null(l.v[0].bodystructure);
    store_msg_list_free(&l);
    store_msg_list_free(&l); /* a freed list frees again as empty */

    const char *bad[] = {"../index.sqlite", "a/b", "..", "", NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        data = NULL;
        assert_int_equal(store_msg_read(f->st, ACCT, bad[i], &data, &len, err, 256), -1);
        assert_null(data);
    }
}

static void test_cache_fill(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct store_mailbox mb = mbox(f->st, "INBOX");
    uint32_t uid = put_plain(f->st, "INBOX", "x\r\n");
    uint32_t other = put(f->st, "INBOX", "y\r\n", 0, NULL, "(e0)", NULL);
    assert_int_equal(
        store_msg_set_cache(f->st, ACCT, mb.id, uid, "(env)", "(bs)", NULL, 0, err, sizeof(err)),
        0);
    /* Only what is missing is filled. */
    assert_int_equal(
        store_msg_set_cache(f->st, ACCT, mb.id, uid, "(env2)", "(bs2)", NULL, 0, err, 256), 0);
    assert_int_equal(
        store_msg_set_cache(f->st, ACCT, mb.id, other, "(e1)", "(b1)", NULL, 0, err, 256), 0);
    assert_int_equal(store_msg_set_cache(f->st, ACCT, mb.id, 999, "(e)", "(b)", NULL, 0, err, 256),
                     0);
    struct store_msg_list l;
    load(f->st, mb.id, STORE_MSG_CACHE, &l);
    assert_string_equal(find(&l, uid)->envelope, "(env)");
    assert_string_equal(find(&l, uid)->bodystructure, "(bs)");
    assert_int_equal(find(&l, uid)->modseq, 2); /* not a change for CONDSTORE */
    assert_string_equal(find(&l, other)->envelope, "(e0)");
    assert_string_equal(find(&l, other)->bodystructure, "(b1)");
    assert_null(find(&l, uid)->fields);
    store_msg_list_free(&l);
    /* Search fields: filled when missing, loaded with the envelope for
     * SEARCH (without the bodystructure), kept by COPY. */
    assert_int_equal(store_msg_set_cache(f->st, ACCT, mb.id, uid, NULL, NULL,
                                         (const uint8_t *)"1s2:hi", 6, err, 256),
                     0);
    assert_int_equal(store_msg_set_cache(f->st, ACCT, mb.id, uid, NULL, NULL,
                                         (const uint8_t *)"1s2:no", 6, err, 256),
                     0);
    load(f->st, mb.id, STORE_MSG_FIELDS, &l);
    assert_int_equal(find(&l, uid)->fields_len, 6);
    assert_memory_equal(find(&l, uid)->fields, "1s2:hi", 6);
    assert_string_equal(find(&l, uid)->envelope, "(env)");
    assert_null(find(&l, uid)->bodystructure);
    assert_null(find(&l, other)->fields);
    store_msg_list_free(&l);
    uint32_t copied = 0;
    assert_int_equal(
        store_msgs_copy(f->st, ACCT, mb.id, &uid, 1, mb.id, 0, &copied, err, sizeof(err)), 0);
    load(f->st, mb.id, STORE_MSG_CACHE, &l);
    assert_memory_equal(find(&l, copied)->fields, "1s2:hi", 6);
    store_msg_list_free(&l);
    assert_int_equal(mbox(f->st, "INBOX").highestmodseq, 4);
    /* Deliveries after a fill are still committed durably (FULL again). */
    assert_int_equal(put_plain(f->st, "INBOX", "z\r\n"), 4);
}

static void test_load_ranges(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    enum { N = 300 };
    static char text[N][16];
    struct store_delivery *d = calloc(N, sizeof(*d));
    struct iovec *iov = calloc(N, sizeof(*iov));
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof(text[i]), "m%d\r\n", i);
        iov[i] = (struct iovec){.iov_base = text[i], .iov_len = strlen(text[i])};
        d[i] = (struct store_delivery){.account = ACCT,
                                       .mailbox = "INBOX",
                                       .iov = &iov[i],
                                       .iovcnt = 1,
                                       .keywords = i % 2 ? "odd" : NULL};
    }
    assert_int_equal(store_deliver(f->st, d, N), 0);
    free(d);
    free(iov);
    struct store_mailbox mb = mbox(f->st, "INBOX");
    struct store_msg_list l;
    load(f->st, mb.id, 0, &l);
    assert_int_equal(l.n, N);
    for (size_t i = 0; i < l.n; i++) {
        assert_int_equal(l.v[i].uid, i + 1);
        assert_string_equal(l.v[i].keywords, i % 2 ? "odd" : "");
    }
    /* Messages without keywords share one "" (no allocation each). */
    assert_ptr_equal(l.v[0].keywords, l.v[2].keywords);
    store_msg_list_free(&l);
    assert_int_equal(store_msgs_load(f->st, ACCT, mb.id, 10, 19, 0, &l, err, 256), 0);
    assert_int_equal(l.n, 10);
    assert_int_equal(l.v[0].uid, 10);
    assert_int_equal(l.v[9].uid, 19);
    store_msg_list_free(&l);
    assert_int_equal(store_msgs_load(f->st, ACCT, mb.id, 295, UINT32_MAX, 0, &l, err, 256), 0);
    assert_int_equal(l.n, 6);
    store_msg_list_free(&l);
    /* An empty list still has an array (qsort and memcpy must not get
     * NULL); freeing it is fine. */
    assert_int_equal(store_msgs_load(f->st, ACCT, mb.id, 20, 10, 0, &l, err, 256), 0);
    assert_int_equal(l.n, 0);
    assert_non_null(l.v);
    store_msg_list_free(&l);
    assert_null(l.v);
    assert_int_equal(store_msgs_load(f->st, ACCT, 9999, 1, UINT32_MAX, 0, &l, err, 256), 0);
    assert_int_equal(l.n, 0);
    store_msg_list_free(&l);
    assert_int_equal(store_msgs_load(f->st, "nobody@example.com", mb.id, 1, 2, 0, &l, err, 256),
                     -1);
}

/* --- migration ------------------------------------------------------------------------------ */

/* The index schema of version 1, as correio wrote it before IMAP. */
static const char v1_schema[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE mailboxes(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,"
    " highestmodseq INTEGER NOT NULL DEFAULT 1, special_use TEXT,"
    " subscribed INTEGER NOT NULL DEFAULT 1);"
    "CREATE TABLE messages(mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),"
    " uid INTEGER NOT NULL, file TEXT NOT NULL, size INTEGER NOT NULL,"
    " internaldate INTEGER NOT NULL, modseq INTEGER NOT NULL, flags INTEGER NOT NULL DEFAULT 0,"
    " keywords TEXT NOT NULL DEFAULT '', envelope TEXT, bodystructure TEXT,"
    " PRIMARY KEY(mailbox_id, uid));"
    "CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);"
    "CREATE INDEX messages_file ON messages(file);"
    "CREATE TABLE expunged(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
    " modseq INTEGER NOT NULL, PRIMARY KEY(mailbox_id, uid));"
    "INSERT INTO meta VALUES('uidvalidity', 1600000005);"
    "INSERT INTO mailboxes VALUES(1, 'INBOX', 1600000000, 3, 3, NULL, 1);"
    "INSERT INTO mailboxes VALUES(2, 'Sent', 1600000001, 1, 1, '\\Sent', 1);"
    "INSERT INTO mailboxes VALUES(3, 'Junk', 1600000002, 1, 1, '\\Junk', 0);"
    "INSERT INTO messages(mailbox_id, uid, file, size, internaldate, modseq, flags)"
    " VALUES(1, 1, 'old.1', 5, 1600000000, 2, 1);"
    "INSERT INTO messages(mailbox_id, uid, file, size, internaldate, modseq, flags)"
    " VALUES(1, 2, 'old.2', 5, 1600000000, 3, 0);"
    "PRAGMA user_version=1;";

static int user_version(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void test_migrate_v1(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", dir[PATH_MAX], p[PATH_MAX + 32];
    assert_int_equal(store_account_dir(f->st, ACCT, dir, sizeof(dir)), 0);
    store_close(&f->st);
    /* Replace the account's index by a version 1 one with two messages. */
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/index.sqlite%s", dir, sfx[i]);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/index.sqlite", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, v1_schema, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("v1 schema: %s", msg);
    sqlite3_close(db);
    for (int i = 1; i <= 2; i++) {
        char fp[PATH_MAX + 32];
        snprintf(fp, sizeof(fp), "%s/msg/old.%d", dir, i);
        FILE *fh = fopen(fp, "w");
        assert_non_null(fh);
        fputs("old\r\n", fh);
        fclose(fh);
    }
    assert_int_equal(user_version(p), 1);

    assert_int_equal(store_open(&f->st, f->dir, err, sizeof(err)), 0);
    struct store_mailbox in = mbox(f->st, "INBOX");
    assert_int_equal(user_version(p), 3);
    assert_int_equal(in.uidvalidity, 1600000000);
    assert_int_equal(in.uidnext, 3);
    assert_int_equal(in.highestmodseq, 3);
    assert_int_equal(in.first_recent_uid, 1);
    struct names s = subscriptions(f->st);
    assert_int_equal(s.n, 2);
    assert_true(names_has(&s, "INBOX") && names_has(&s, "Sent"));
    struct store_mailbox_status st;
    assert_int_equal(store_mailbox_status(f->st, ACCT, "INBOX", &st, err, 256), 1);
    assert_int_equal(st.messages, 2);
    assert_int_equal(st.unseen, 1);
    assert_int_equal(st.recent, 2);
    assert_int_equal(st.size, 10);
    /* Everything works on the migrated index. */
    assert_int_equal(put_plain(f->st, "INBOX", "new\r\n"), 3);
    uint32_t one = 1;
    assert_int_equal(store_msgs_expunge(f->st, ACCT, in.id, &one, 1, err, 256), 0);
    create(f->st, "New");
    assert_true(mbox(f->st, "New").uidvalidity > 1600000005);
    struct store_msg_list l;
    uint32_t *exp = NULL;
    size_t nexp = 0;
    assert_int_equal(store_msgs_changed_since(f->st, ACCT, in.id, 3, &l, &exp, &nexp, err, 256), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(nexp, 1);
    free(exp);
    store_msg_list_free(&l);
    /* A second open finds version 3 and leaves it alone. */
    store_close(&f->st);
    assert_int_equal(store_open(&f->st, f->dir, err, sizeof(err)), 0);
    assert_int_equal(mbox(f->st, "INBOX").uidnext, 4);
    assert_int_equal(user_version(p), 3);

    /* A newer index than this program knows is refused, not touched. */
    store_close(&f->st);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_open(&f->st, f->dir, err, sizeof(err)), 0);
    struct store_mailbox mb;
    assert_int_equal(store_mailbox_get(f->st, ACCT, "INBOX", &mb, err, 256), -1);
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(user_version(p), 99);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_mailbox_get),
        T(test_mailbox_create_delete),
        T(test_mailbox_rename),
        T(test_mailbox_rename_inbox),
        T(test_subscriptions),
        T(test_status_and_recent),
        T(test_flags_and_keywords),
        T(test_flags_unchangedsince),
        T(test_expunge_changed_since),
        T(test_copy),
        T(test_copy_failure_leaves_no_links),
        T(test_move),
        T(test_append_fields),
        T(test_cache_fill),
        T(test_load_ranges),
        T(test_migrate_v1),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
