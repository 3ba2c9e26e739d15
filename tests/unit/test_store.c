/* Unit tests for store (SQLite index) together with blob (message files). */
#include "testutil.h"

#include "store/blob.h"
#include "store/store.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- helpers ---------------------------------------------------------------- */

struct fixture {
    char *dir;
    struct store *st;
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256] = "";
    f->dir = test_tmpdir();
    if (store_open(&f->st, f->dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    store_close(&f->st);
    assert_null(f->st);
    test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Add domain(s) and an account, failing the test on error. */
static void add_account(struct store *st, const char *addr)
{
    char err[256] = "";
    const char *dom = strrchr(addr, '@') + 1;
    if (store_domain_is_local(st, dom) == 0)
        assert_int_equal(store_domain_add(st, dom, err, sizeof(err)), 0);
    if (store_account_add(st, addr, "$y$hash", err, sizeof(err)) < 0)
        fail_msg("store_account_add %s: %s", addr, err);
}

static int path_exists(const char *fmt, const char *a, const char *b)
{
    char p[PATH_MAX];
    struct stat sb;
    snprintf(p, sizeof(p), fmt, a, b);
    return stat(p, &sb) == 0;
}

/* Entries in the directory (not . or ..), -1 when it cannot be opened. */
static int count_files(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(dp);
    return n;
}

/* Files in the msg/ (or tmp/) folder of account. */
static int count_account_files(struct store *st, const char *account, const char *sub)
{
    char dir[PATH_MAX], p[PATH_MAX + 8];
    assert_int_equal(store_account_dir(st, account, dir, sizeof(dir)), 0);
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    return count_files(p);
}

static void set_delivery(struct store_delivery *d, const char *account, const char *mailbox,
                         struct iovec *iov, const char *text)
{
    memset(d, 0, sizeof(*d));
    iov->iov_base = (void *)text;
    iov->iov_len = strlen(text);
    d->account = account;
    d->mailbox = mailbox;
    d->iov = iov;
    d->iovcnt = 1;
    d->internal_date = 1700000000;
}

/* Deliver one message; returns its UID (0 on failure, err_r in err). */
static uint32_t deliver_one(struct store *st, const char *account, const char *mailbox,
                            const char *text, char *err, size_t errlen)
{
    struct store_delivery d;
    struct iovec iov;
    set_delivery(&d, account, mailbox, &iov, text);
    int rc = store_deliver(st, &d, 1);
    if (err)
        snprintf(err, errlen, "%s", d.err_r);
    assert_int_equal(rc, d.result_r);
    return rc == 0 ? d.uid_r : 0;
}

struct msg_list {
    size_t n;
    struct store_msg_info m[512];
};

static void msg_list_cb(void *ctx, const struct store_msg_info *m)
{
    struct msg_list *l = ctx;
    if (l->n < 512)
        l->m[l->n++] = *m;
}

static void list_messages(struct store *st, const char *account, const char *mailbox,
                          struct msg_list *l)
{
    char err[256] = "";
    l->n = 0;
    if (store_mailbox_messages(st, account, mailbox, msg_list_cb, l, err, sizeof(err)) < 0)
        fail_msg("store_mailbox_messages: %s", err);
}

struct str_list {
    size_t n;
    char s[16][64];
};

static void str_list_cb(void *ctx, const char *s)
{
    struct str_list *l = ctx;
    if (l->n < 16)
        snprintf(l->s[l->n++], 64, "%s", s);
}

/* Run one SQL statement on the account's index through a second connection. */
static void index_sql(struct store *st, const char *account, const char *sql)
{
    char dir[PATH_MAX], p[PATH_MAX + 16];
    sqlite3 *db;
    assert_int_equal(store_account_dir(st, account, dir, sizeof(dir)), 0);
    snprintf(p, sizeof(p), "%s/index.sqlite", dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* --- open, domains ---------------------------------------------------------------- */

static void test_store_open_creates(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    assert_true(path_exists("%s/accounts.sqlite%s", f->dir, ""));
    assert_true(path_exists("%s/mail%s", f->dir, ""));

    /* A second handle on the same directory; schema checks pass. */
    struct store *st2 = NULL;
    assert_int_equal(store_open(&st2, f->dir, err, sizeof(err)), 0);
    store_close(&st2);
    store_close(&st2); /* NULL is fine */

    char p[PATH_MAX];
    sqlite3 *db;
    snprintf(p, sizeof(p), "%s/accounts.sqlite", f->dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 3);
    sqlite3_finalize(s);
    sqlite3_close(db);

    /* A data dir nested in missing parents is created too. */
    snprintf(p, sizeof(p), "%s/a/b/data", f->dir);
    assert_int_equal(store_open(&st2, p, err, sizeof(err)), 0);
    store_close(&st2);
    assert_int_equal(store_open(&st2, "", err, sizeof(err)), -1);
    assert_null(st2);
}

static void test_store_domains(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    assert_int_equal(store_domain_add(f->st, "Example.COM", err, sizeof(err)), 0);
    assert_int_equal(store_domain_add(f->st, "a.example", err, sizeof(err)), 0);
    assert_int_equal(store_domain_is_local(f->st, "example.com"), 1);
    assert_int_equal(store_domain_is_local(f->st, "EXAMPLE.com"), 1);
    assert_int_equal(store_domain_is_local(f->st, "example.org"), 0);

    assert_int_equal(store_domain_add(f->st, "EXAMPLE.COM", err, sizeof(err)), -1);
    assert_string_equal(err, "domain example.com is already local");
    const char *bad[] = {"", "bad..example", "-x.example", "x-.example", ".example",
                         "example.", "a_b.example", "a b.example", "a/b.example"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(store_domain_add(f->st, bad[i], err, sizeof(err)), -1);
        assert_non_null(strstr(err, "invalid domain"));
    }

    struct str_list l = {0};
    assert_int_equal(store_domain_list(f->st, str_list_cb, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.s[0], "a.example");
    assert_string_equal(l.s[1], "example.com");

    add_account(f->st, "u@example.com");
    assert_int_equal(store_domain_del(f->st, "example.com", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "still has 1 account"));
    assert_int_equal(store_account_del(f->st, "u@example.com", err, sizeof(err)), 0);
    assert_int_equal(store_domain_del(f->st, "Example.Com", err, sizeof(err)), 0);
    assert_int_equal(store_domain_is_local(f->st, "example.com"), 0);
    assert_int_equal(store_domain_del(f->st, "example.com", err, sizeof(err)), -1);
    assert_string_equal(err, "domain example.com is not local");
}

/* --- accounts ------------------------------------------------------------------- */

static void test_store_account_add(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", dir[PATH_MAX];
    assert_int_equal(store_domain_add(f->st, "example.com", err, sizeof(err)), 0);
    const char *bad[] = {".a@example.com", "a.@example.com", "a..b@example.com",
                         "a b@example.com", "noat",          "a@",
                         "@example.com",   "a/b@example.com", "\"q\"@example.com",
                         "a@bad..example"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(store_account_add(f->st, bad[i], "h", err, sizeof(err)), -1);
        assert_non_null(strstr(err, "invalid account address"));
    }
    assert_int_equal(store_account_add(f->st, "joe@example.org", "h", err, sizeof(err)), -1);
    assert_string_equal(err, "domain example.org is not local; add it first");
    assert_false(path_exists("%s/mail/example.org%s", f->dir, ""));

    assert_int_equal(store_account_add(f->st, "Joe.Smith+x@Example.com", "h", err, sizeof(err)),
                     0);
    assert_int_equal(store_account_add(f->st, "joe.smith+X@example.COM", "h", err, sizeof(err)),
                     -1);
    assert_string_equal(err, "account joe.smith+x@example.com already exists");
    assert_int_equal(store_account_add(f->st, "abe@example.com", "h", err, sizeof(err)), 0);

    struct str_list l = {0};
    assert_int_equal(store_account_list(f->st, str_list_cb, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.s[0], "abe@example.com");
    assert_string_equal(l.s[1], "joe.smith+x@example.com");

    assert_int_equal(store_account_dir(f->st, "Joe.Smith+x@example.com", dir, sizeof(dir)), 0);
    char want[PATH_MAX];
    snprintf(want, sizeof(want), "%s/mail/example.com/joe.smith+x", f->dir);
    assert_string_equal(dir, want);
    assert_true(path_exists("%s/%s", dir, "msg"));
    assert_true(path_exists("%s/%s", dir, "tmp"));
    assert_true(path_exists("%s/%s", dir, "index.sqlite"));
    assert_int_equal(store_account_dir(f->st, "../x@example.com", dir, sizeof(dir)), -1);
}

static void test_store_lookup(void **state)
{
    struct fixture *f = *state;
    char acct[320], hash[128], err[256];
    add_account(f->st, "joe@example.com");
    assert_int_equal(store_account_set_password(f->st, "JOE@example.com", "$y$new", err,
                                                sizeof(err)),
                     0);
    assert_int_equal(store_account_lookup(f->st, "JOE@Example.COM", acct, sizeof(acct), hash,
                                          sizeof(hash)),
                     STORE_LOOKUP_FOUND);
    assert_string_equal(acct, "joe@example.com");
    assert_string_equal(hash, "$y$new");
    assert_int_equal(store_account_lookup(f->st, "joe@example.com", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_FOUND);
    assert_int_equal(store_account_lookup(f->st, "ann@example.com", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_USER);
    assert_int_equal(store_account_lookup(f->st, "joe@example.org", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_DOMAIN);
    assert_int_equal(store_account_lookup(f->st, "nobody", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_DOMAIN);
    /* Split at the last '@'. */
    assert_int_equal(store_account_lookup(f->st, "a@b@example.com", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_USER);
    /* Result buffer too small. */
    assert_int_equal(store_account_lookup(f->st, "joe@example.com", acct, 5, NULL, 0),
                     STORE_LOOKUP_ERROR);
    assert_int_equal(store_account_set_password(f->st, "ann@example.com", "x", err, sizeof(err)),
                     -1);
    assert_string_equal(err, "no such account: ann@example.com");

    /* RFC 5321 4.5.1: bare "postmaster" is postmaster@<first local domain>. */
    assert_int_equal(store_account_lookup(f->st, "postmaster", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_USER);
    add_account(f->st, "postmaster@b.example");
    add_account(f->st, "postmaster@a.example");
    assert_int_equal(store_account_lookup(f->st, "PostMaster", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_FOUND);
    assert_string_equal(acct, "postmaster@a.example");
}

static void test_store_lookup_no_domains(void **state)
{
    struct fixture *f = *state;
    char acct[320];
    assert_int_equal(store_account_lookup(f->st, "postmaster", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_DOMAIN);
    assert_int_equal(store_account_lookup(f->st, "x@example.com", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_DOMAIN);
}

struct mbox_list {
    size_t n;
    struct store_mailbox_info m[16];
};

static void mbox_list_cb(void *ctx, const struct store_mailbox_info *m)
{
    struct mbox_list *l = ctx;
    if (l->n < 16)
        l->m[l->n++] = *m;
}

static void test_store_default_mailboxes(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    add_account(f->st, "joe@example.com");
    struct mbox_list l = {0};
    assert_int_equal(
        store_mailbox_list(f->st, "joe@example.com", mbox_list_cb, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 6);
    const char *want[][2] = {{"Archive", "\\Archive"}, {"Drafts", "\\Drafts"}, {"INBOX", ""},
                             {"Junk", "\\Junk"},       {"Sent", "\\Sent"},     {"Trash", "\\Trash"}};
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(l.m[i].name, want[i][0]);
        assert_string_equal(l.m[i].special_use, want[i][1]);
        assert_int_equal(l.m[i].subscribed, 1);
        assert_int_equal(l.m[i].uidnext, 1);
        assert_int_equal(l.m[i].highestmodseq, 1);
        assert_true(l.m[i].uidvalidity > 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(l.m[i].uidvalidity, l.m[j].uidvalidity);
    }
    assert_int_equal(
        store_mailbox_list(f->st, "ann@example.com", mbox_list_cb, &l, err, sizeof(err)), -1);
}

/* Delete moves the folder to DATA/deleted; a re-added account starts
 * fresh, also for a second handle that had the old index cached. */
static void test_store_account_del(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", acct[320];
    struct store *st2 = NULL;
    add_account(f->st, "joe@example.com");
    assert_int_equal(store_open(&st2, f->dir, err, sizeof(err)), 0);
    assert_int_equal(deliver_one(st2, "joe@example.com", "INBOX", "one\r\n", err, sizeof(err)),
                     1);

    assert_int_equal(store_account_del(f->st, "Joe@example.com", err, sizeof(err)), 0);
    assert_int_equal(store_account_lookup(f->st, "joe@example.com", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_NO_USER);
    assert_false(path_exists("%s/mail/example.com/joe%s", f->dir, ""));
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/deleted", f->dir);
    assert_int_equal(count_files(p), 1);
    DIR *dp = opendir(p);
    struct dirent *e;
    while ((e = readdir(dp)) && e->d_name[0] == '.')
        ;
    assert_non_null(e);
    assert_memory_equal(e->d_name, "joe@example.com.", 16);
    assert_true(path_exists("%s/deleted/%s/index.sqlite", f->dir, e->d_name));
    closedir(dp);
    assert_int_equal(store_account_del(f->st, "joe@example.com", err, sizeof(err)), -1);
    assert_string_equal(err, "no such account: joe@example.com");

    /* Deliveries to the deleted account fail and leave nothing. */
    assert_int_equal(deliver_one(st2, "joe@example.com", "INBOX", "two\r\n", err, sizeof(err)),
                     0);
    assert_false(path_exists("%s/mail/example.com/joe%s", f->dir, ""));

    /* Re-add: a fresh folder; st2 notices its cached index is stale. */
    add_account(f->st, "joe@example.com");
    assert_int_equal(deliver_one(st2, "joe@example.com", "INBOX", "three\r\n", err, sizeof(err)),
                     1);
    struct msg_list l;
    list_messages(f->st, "joe@example.com", "INBOX", &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.m[0].size, 7);

    /* Same second, second delete: a distinct folder name. */
    assert_int_equal(store_account_del(f->st, "joe@example.com", err, sizeof(err)), 0);
    assert_int_equal(count_files(p), 2);
    store_close(&st2);
}

/* --- delivery ------------------------------------------------------------------- */

static void test_store_deliver_one(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", dir[PATH_MAX];
    add_account(f->st, "joe@example.com");
    struct store_delivery d;
    struct iovec iov[2] = {{.iov_base = "Subject: x\r\n\r\n", .iov_len = 14},
                           {.iov_base = "hello\r\n", .iov_len = 7}};
    memset(&d, 0, sizeof(d));
    d.account = "joe@example.com";
    d.mailbox = "inbox"; /* INBOX is case-insensitive */
    d.iov = iov;
    d.iovcnt = 2;
    d.internal_date = 1700000000;
    assert_int_equal(store_deliver(f->st, &d, 1), 0);
    assert_int_equal(d.result_r, 0);
    assert_int_equal(d.uid_r, 1);
    assert_string_equal(d.err_r, "");

    struct msg_list l;
    list_messages(f->st, "joe@example.com", "INBOX", &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.m[0].uid, 1);
    assert_int_equal(l.m[0].size, 21);
    assert_int_equal(l.m[0].internal_date, 1700000000);
    assert_int_equal(l.m[0].modseq, 2);
    assert_int_equal(l.m[0].flags, 0);
    assert_int_equal(store_account_dir(f->st, "joe@example.com", dir, sizeof(dir)), 0);
    uint8_t *data;
    size_t len;
    assert_int_equal(blob_read(dir, l.m[0].file, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 21);
    assert_memory_equal(data, "Subject: x\r\n\r\nhello\r\n", 21);
    free(data);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "tmp"), 0);

    /* Another mailbox; its own UIDs. */
    assert_int_equal(deliver_one(f->st, "joe@example.com", "Sent", "s\r\n", err, sizeof(err)),
                     1);
    assert_int_equal(deliver_one(f->st, "JOE@example.com", NULL, "i\r\n", err, sizeof(err)), 2);
    struct mbox_list ml = {0};
    assert_int_equal(
        store_mailbox_list(f->st, "joe@example.com", mbox_list_cb, &ml, err, sizeof(err)), 0);
    assert_string_equal(ml.m[2].name, "INBOX");
    assert_int_equal(ml.m[2].uidnext, 3);
    assert_int_equal(ml.m[2].highestmodseq, 3);

    /* Unknown mailbox, unknown account, bad address: failure, no file left. */
    assert_int_equal(deliver_one(f->st, "joe@example.com", "Nope", "n\r\n", err, sizeof(err)),
                     0);
    assert_string_equal(err, "no such mailbox: Nope");
    assert_int_equal(deliver_one(f->st, "ann@example.com", "INBOX", "n\r\n", err, sizeof(err)),
                     0);
    assert_non_null(strstr(err, "ann@example.com"));
    assert_int_equal(deliver_one(f->st, "../../x@example.com", "INBOX", "n", err, sizeof(err)),
                     0);
    assert_string_equal(err, "invalid account address");
    assert_int_equal(count_account_files(f->st, "joe@example.com", "msg"), 3);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "tmp"), 0);
    assert_false(path_exists("%s/mail/example.com/ann%s", f->dir, ""));
}

/* One call, three accounts interleaved: UIDs follow the call order per
 * account, MODSEQs increase. */
static void test_store_deliver_batch(void **state)
{
    struct fixture *f = *state;
    const char *accts[3] = {"c@example.com", "a@example.com", "b@example.net"};
    for (int i = 0; i < 3; i++)
        add_account(f->st, accts[i]);
    enum { N = 12 };
    struct store_delivery d[N];
    struct iovec iov[N];
    char text[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof(text[i]), "message %d\r\n", i);
        set_delivery(&d[i], accts[i % 3], "INBOX", &iov[i], text[i]);
    }
    assert_int_equal(store_deliver(f->st, d, N), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d[i].result_r, 0);
        assert_int_equal(d[i].uid_r, (uint32_t)(i / 3 + 1));
    }
    for (int a = 0; a < 3; a++) {
        struct msg_list l;
        list_messages(f->st, accts[a], "INBOX", &l);
        assert_int_equal(l.n, N / 3);
        for (size_t k = 0; k < l.n; k++) {
            assert_int_equal(l.m[k].uid, k + 1);
            assert_int_equal(l.m[k].size, strlen(text[k * 3 + (size_t)a]));
            if (k > 0)
                assert_true(l.m[k].modseq > l.m[k - 1].modseq);
        }
    }
    /* A second batch continues the UIDs, also when the connection cache
     * is smaller than the number of accounts in the batch. */
    store_set_index_cache(f->st, 1);
    assert_int_equal(store_deliver(f->st, d, N), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(d[i].uid_r, (uint32_t)(N / 3 + i / 3 + 1));
    store_set_index_cache(f->st, 2);
    assert_int_equal(store_deliver(f->st, d, N), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(d[i].uid_r, (uint32_t)(2 * N / 3 + i / 3 + 1));
    for (int a = 0; a < 3; a++)
        assert_int_equal(count_account_files(f->st, accts[a], "msg"), N);
}

/* UIDs are never reused, even after the highest ones were expunged. */
static void test_store_uid_not_reused(void **state)
{
    struct fixture *f = *state;
    char err[256];
    add_account(f->st, "joe@example.com");
    for (uint32_t i = 1; i <= 3; i++)
        assert_int_equal(deliver_one(f->st, "joe@example.com", "INBOX", "m\r\n", err, 256), i);
    index_sql(f->st, "joe@example.com", "DELETE FROM messages");
    assert_int_equal(deliver_one(f->st, "joe@example.com", "INBOX", "m\r\n", err, 256), 4);
    struct msg_list l;
    list_messages(f->st, "joe@example.com", "INBOX", &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.m[0].uid, 4);
    assert_int_equal(l.m[0].modseq, 5);
}

struct conc_thread {
    const char *dir;
    uint32_t uids[50];
    int failures;
    char err[256];
};

static void *conc_thread_run(void *arg)
{
    struct conc_thread *t = arg;
    struct store *st = NULL;
    if (store_open(&st, t->dir, t->err, sizeof(t->err)) < 0) {
        t->failures = 50;
        return NULL;
    }
    for (int i = 0; i < 50; i++) {
        struct store_delivery d;
        struct iovec iov;
        set_delivery(&d, "joe@example.com", "INBOX", &iov, "Subject: c\r\n\r\nbody\r\n");
        if (store_deliver(st, &d, 1) != 0 || d.result_r != 0) {
            t->failures++;
            snprintf(t->err, sizeof(t->err), "%s", d.err_r);
        }
        t->uids[i] = d.uid_r;
    }
    store_close(&st);
    return NULL;
}

/* 8 threads x 50 deliveries to one account, each thread with its own
 * struct store: all succeed, UIDs are exactly 1..400. */
static void test_store_concurrent_deliveries(void **state)
{
    struct fixture *f = *state;
    enum { T = 8 };
    add_account(f->st, "joe@example.com");
    struct conc_thread t[T];
    pthread_t tid[T];
    for (int i = 0; i < T; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].dir = f->dir;
        assert_int_equal(pthread_create(&tid[i], NULL, conc_thread_run, &t[i]), 0);
    }
    static unsigned char seen[T * 50 + 1];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < T; i++) {
        pthread_join(tid[i], NULL);
        if (t[i].failures)
            fail_msg("thread %d: %d failures, last: %s", i, t[i].failures, t[i].err);
        for (int k = 0; k < 50; k++) {
            assert_in_range(t[i].uids[k], 1, T * 50);
            assert_int_equal(seen[t[i].uids[k]], 0);
            seen[t[i].uids[k]] = 1;
            if (k > 0)
                assert_true(t[i].uids[k] > t[i].uids[k - 1]);
        }
    }
    struct msg_list l;
    list_messages(f->st, "joe@example.com", "INBOX", &l);
    assert_int_equal(l.n, T * 50);
    for (size_t k = 0; k < l.n; k++) {
        assert_int_equal(l.m[k].uid, k + 1);
        assert_int_equal(l.m[k].modseq, k + 2);
    }
    assert_int_equal(count_account_files(f->st, "joe@example.com", "msg"), T * 50);
}

/* --- crash recovery and failed commits -------------------------------------------- */

static void test_store_recover(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", dir[PATH_MAX], p[PATH_MAX + 64], name[64];
    add_account(f->st, "joe@example.com");
    add_account(f->st, "ann@example.net");
    assert_int_equal(deliver_one(f->st, "joe@example.com", "INBOX", "keep 1\r\n", err, 256), 1);
    assert_int_equal(deliver_one(f->st, "joe@example.com", "Sent", "keep 2\r\n", err, 256), 1);

    /* A crash while writing: a file in tmp/. */
    assert_int_equal(store_account_dir(f->st, "joe@example.com", dir, sizeof(dir)), 0);
    snprintf(p, sizeof(p), "%s/tmp/1700000000.1_1.00000000deadbeef", dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("partial", fp);
    fclose(fp);
    /* A crash after rename, before COMMIT: a file in msg/ without a row. */
    struct iovec iov = {.iov_base = "orphan\r\n", .iov_len = 8};
    assert_int_equal(blob_write(dir, &iov, 1, name, sizeof(name), NULL, err, sizeof(err)), 0);
    char dir2[PATH_MAX];
    assert_int_equal(store_account_dir(f->st, "ann@example.net", dir2, sizeof(dir2)), 0);
    assert_int_equal(blob_write(dir2, &iov, 1, name, sizeof(name), NULL, err, sizeof(err)), 0);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "msg"), 3);

    assert_int_equal(store_recover(f->st, err, sizeof(err)), 0);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "tmp"), 0);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "msg"), 2);
    assert_int_equal(count_account_files(f->st, "ann@example.net", "msg"), 0);

    const char *mbox[2] = {"INBOX", "Sent"};
    for (int i = 0; i < 2; i++) {
        struct msg_list l;
        uint8_t *data;
        size_t len;
        list_messages(f->st, "joe@example.com", mbox[i], &l);
        assert_int_equal(l.n, 1);
        assert_int_equal(blob_read(dir, l.m[0].file, &data, &len, err, sizeof(err)), 0);
        assert_int_equal(len, 8);
        assert_int_equal(data[5], '1' + i);
        free(data);
    }
    /* Nothing left to do the second time; delivery goes on. */
    assert_int_equal(store_recover(f->st, err, sizeof(err)), 0);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "msg"), 2);
    assert_int_equal(deliver_one(f->st, "joe@example.com", "INBOX", "after\r\n", err, 256), 2);
}

/* The index refuses the insert (a trigger added through a second
 * connection): the whole account transaction rolls back, its files are
 * unlinked, and other accounts in the same batch are stored. */
static void test_store_failed_commit_no_orphan(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    add_account(f->st, "joe@example.com");
    add_account(f->st, "ann@example.com");
    assert_int_equal(deliver_one(f->st, "joe@example.com", "INBOX", "first\r\n", err, 256), 1);
    index_sql(f->st, "joe@example.com",
              "CREATE TRIGGER fail BEFORE INSERT ON messages "
              "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");

    struct store_delivery d[3];
    struct iovec iov[3];
    set_delivery(&d[0], "joe@example.com", "INBOX", &iov[0], "a\r\n");
    set_delivery(&d[1], "ann@example.com", "INBOX", &iov[1], "b\r\n");
    set_delivery(&d[2], "joe@example.com", "Sent", &iov[2], "c\r\n");
    assert_int_equal(store_deliver(f->st, d, 3), -1);
    assert_int_equal(d[0].result_r, -1);
    assert_non_null(strstr(d[0].err_r, "injected failure"));
    assert_int_equal(d[2].result_r, -1);
    assert_int_equal(d[1].result_r, 0);
    assert_int_equal(d[1].uid_r, 1);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "msg"), 1);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "tmp"), 0);
    assert_int_equal(count_account_files(f->st, "ann@example.com", "msg"), 1);

    /* Rolled back: the mailbox counters did not move. */
    index_sql(f->st, "joe@example.com", "DROP TRIGGER fail");
    assert_int_equal(deliver_one(f->st, "joe@example.com", "INBOX", "again\r\n", err, 256), 2);
    assert_int_equal(deliver_one(f->st, "joe@example.com", "Sent", "again\r\n", err, 256), 1);
    struct msg_list l;
    list_messages(f->st, "joe@example.com", "INBOX", &l);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.m[1].modseq, 3);
}

/* A deliver that finds its index gone (table dropped) fails cleanly. */
static void test_store_broken_index(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    add_account(f->st, "joe@example.com");
    index_sql(f->st, "joe@example.com", "DROP TABLE messages");
    assert_int_equal(deliver_one(f->st, "joe@example.com", "INBOX", "x\r\n", err, 256), 0);
    assert_non_null(strstr(err, "messages"));
    assert_int_equal(count_account_files(f->st, "joe@example.com", "msg"), 0);
    assert_int_equal(count_account_files(f->st, "joe@example.com", "tmp"), 0);
    /* Recovery keeps going and reports no crash. */
    assert_int_equal(store_recover(f->st, err, sizeof(err)), 0);
}

/* Add an account row from another program (not a fork: a forked child
 * would share this process's SQLite lock bookkeeping), as `correio user
 * add` does while the server runs. Its last close checkpoints the WAL. */
static void add_account_in_child(const char *dir, const char *addr)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "sqlite3 '%s/accounts.sqlite' \"INSERT INTO accounts(address, domain, hash, created) "
             "VALUES('%s', 'example.com', 'x', 0)\"",
             dir, addr);
    assert_int_equal(system(cmd), 0);
}

/* A second store opened in the same process (a worker thread's) must not
 * take the first one's SQLite locks away: once it did (open+close of the
 * database file in store_open), and the server's look-ups kept seeing the
 * accounts of start-up time. */
static void test_store_lookup_sees_other_process(void **state)
{
    struct fixture *f = *state;
    char acct[320], err[256];
    add_account(f->st, "first@example.com");
    /* As the server starts: the data exists, the loop's store opens, then the workers'. */
    store_close(&f->st);
    assert_int_equal(store_open(&f->st, f->dir, err, sizeof(err)), 0);
    struct store *worker = NULL;
    assert_int_equal(store_open(&worker, f->dir, err, sizeof(err)), 0);
    assert_int_equal(store_account_lookup(f->st, "first@example.com", acct, sizeof(acct), NULL, 0),
                     STORE_LOOKUP_FOUND);
    for (int i = 0; i < 3; i++) {
        char addr[64];
        snprintf(addr, sizeof(addr), "late%d@example.com", i);
        add_account_in_child(f->dir, addr);
        assert_int_equal(store_account_lookup(f->st, addr, acct, sizeof(acct), NULL, 0),
                         STORE_LOOKUP_FOUND);
    }
    store_close(&worker);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_store_open_creates),
        T(test_store_domains),
        T(test_store_account_add),
        T(test_store_lookup),
        T(test_store_lookup_no_domains),
        T(test_store_lookup_sees_other_process),
        T(test_store_default_mailboxes),
        T(test_store_account_del),
        T(test_store_deliver_one),
        T(test_store_deliver_batch),
        T(test_store_uid_not_reused),
        T(test_store_concurrent_deliveries),
        T(test_store_recover),
        T(test_store_failed_commit_no_orphan),
        T(test_store_broken_index),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
