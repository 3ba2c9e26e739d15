/* The IMAP mailbox commands (src/proto/imap/imap_cmd_mailbox.c) driven
 * through a real imap_session against a real store: LIST (base and
 * LIST-EXTENDED, LIST-STATUS, SPECIAL-USE, CHILDREN), LSUB, CREATE,
 * DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE, STATUS and APPEND, with their
 * error replies, and the LIST wildcard matcher on its own. */
#include "testutil.h"

#include "proto/imap/imap_int.h"

#include <stdbool.h>

#include "cli/cli.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

/* Not in a header: the matcher is internal to imap_cmd_mailbox.c. */

#define ACCOUNT "alice@example.test"
#define PASSWORD "secret-pass-1"

struct fx {
    char *dir;
    struct store *st;
    struct imap_session_config cfg;
    struct imap_session *s;
    struct buf out;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256] = "", hash[256];
    f->dir = test_tmpdir();
    if (store_open(&f->st, f->dir, err, sizeof(err)) < 0 ||
        store_domain_add(f->st, "example.test", err, sizeof(err)) < 0 ||
        cli_password_hash(PASSWORD, hash, sizeof(hash)) < 0 ||
        store_account_add(f->st, ACCOUNT, hash, err, sizeof(err)) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    f->cfg = (struct imap_session_config){
        .hostname = "mx.example.test",
        .allow_plaintext_auth = true,
        .max_bad_commands = 100,
        .max_line = 8192,
        .append_limit = 1 << 20,
    };
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    imap_session_free(&f->s);
    buf_free(&f->out);
    store_close(&f->st);
    test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Feed in and run every request as the daemon does; the replies are in
 * f->out (reset first) and returned as a string. */
static const char *run_len(struct fx *f, const char *in, size_t len)
{
    buf_reset(&f->out);
    enum imap_session_status st = imap_session_feed(f->s, in, len, &f->out);
    while (st == IMAP_SESSION_CONTINUE && imap_session_request(f->s) == IMAP_REQ_EXECUTE) {
        imap_session_execute(f->s, f->st);
        st = imap_session_execute_done(f->s, &f->out);
    }
    return buf_cstr(&f->out);
}

static const char *run(struct fx *f, const char *in)
{
    return run_len(f, in, strlen(in));
}

/* A logged-in session in f->s. */
static void login(struct fx *f)
{
    f->s = imap_session_new(&f->cfg, "127.0.0.1", "t1", false);
    assert_non_null(f->s);
    const char *r = run(f, "L LOGIN " ACCOUNT " " PASSWORD "\r\n");
    if (!strstr(r, "L OK "))
        fail_msg("login failed: %s", r);
}

static void expect(struct fx *f, const char *in, const char *want)
{
    const char *got = run(f, in);
    if (strcmp(got, want) != 0)
        fail_msg("for %s\nexpected:\n%s\ngot:\n%s", in, want, got);
}

static void expect_has(struct fx *f, const char *in, const char *want)
{
    const char *got = run(f, in);
    if (!strstr(got, want))
        fail_msg("for %s\nexpected to contain:\n%s\ngot:\n%s", in, want, got);
}

static void mkbox(struct fx *f, const char *name)
{
    char err[256];
    if (store_mailbox_create(f->st, ACCOUNT, name, NULL, err, sizeof(err)) < 0)
        fail_msg("create %s: %s", name, err);
}

static uint32_t deliver(struct fx *f, const char *mailbox, const char *body, uint32_t flags)
{
    struct iovec iov = {(void *)body, strlen(body)};
    struct store_delivery d = {.account = ACCOUNT,
                               .mailbox = mailbox,
                               .iov = &iov,
                               .iovcnt = 1,
                               .internal_date = 1700000000,
                               .flags = flags};
    assert_int_equal(store_deliver(f->st, &d, 1), 0);
    return d.uid_r;
}

static bool exists(struct fx *f, const char *name)
{
    char err[256];
    struct store_mailbox mb;
    int rc = store_mailbox_get(f->st, ACCOUNT, name, &mb, err, sizeof(err));
    assert_true(rc >= 0);
    return rc == 1;
}

/* The default mailboxes as LIST "" * shows them. */
#define DEFAULT_LIST                                                                               \
    "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"\r\n"                                     \
    "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"\r\n"                                       \
    "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"                                                 \
    "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"\r\n"                                           \
    "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"                                           \
    "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"

/* --- the matcher ----------------------------------------------------------------- */

static void test_match(void **state)
{
    (void)state;
    assert_true(imap_list_match("*", "a"));
    assert_true(imap_list_match("*", "a/b/c"));
    assert_true(imap_list_match("%", "a"));
    assert_false(imap_list_match("%", "a/b"));
    assert_true(imap_list_match("a/%", "a/b"));
    assert_false(imap_list_match("a/%", "a/b/c"));
    assert_false(imap_list_match("a/%", "a"));
    assert_true(imap_list_match("a/*", "a/b/c"));
    assert_false(imap_list_match("a/*", "a"));
    assert_true(imap_list_match("a*", "a"));
    assert_true(imap_list_match("a*", "ab/c"));
    assert_true(imap_list_match("a%", "abc"));
    assert_false(imap_list_match("a%", "ab/c"));
    assert_true(imap_list_match("%/%", "a/b"));
    assert_false(imap_list_match("%/%", "a/b/c"));
    assert_true(imap_list_match("%/*", "a/b/c"));
    assert_true(imap_list_match("*/c", "a/b/c"));
    assert_true(imap_list_match("f%o", "fxo"));
    assert_false(imap_list_match("f%o", "f/o"));
    assert_true(imap_list_match("f*o", "f/o"));
    assert_true(imap_list_match("a*b*c", "aXbYc"));
    assert_false(imap_list_match("a*b*c", "aXbYd"));
    assert_true(imap_list_match("*%*%*", "abc"));
    assert_true(imap_list_match("Sent", "Sent"));
    assert_false(imap_list_match("sent", "Sent")); /* only INBOX ignores case */
    assert_false(imap_list_match("Sent", "Sent2"));
    assert_false(imap_list_match("Sent2", "Sent"));
    assert_false(imap_list_match("", "a"));
    /* INBOX in any case, also as the top of INBOX/... */
    assert_true(imap_list_match("inbox", "INBOX"));
    assert_true(imap_list_match("InBoX", "INBOX"));
    assert_true(imap_list_match("inb*", "INBOX"));
    assert_true(imap_list_match("inbox/%", "INBOX/sub"));
    assert_false(imap_list_match("inbox/SUB", "INBOX/sub"));
    assert_false(imap_list_match("inbox", "INBOXES"));
    assert_false(imap_list_match("inboxes", "INBOXES"));
    /* A name longer than the on-stack table, and a pattern full of
     * wildcards: still linear, still right. */
    char name[1200], pat[600];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    name[700] = '/';
    for (size_t i = 0; i < sizeof(pat) - 1; i++)
        pat[i] = i % 2 ? '*' : '%';
    pat[sizeof(pat) - 1] = '\0';
    assert_true(imap_list_match(pat, name));
    assert_true(imap_list_match("*/x*", name));
    assert_false(imap_list_match("%", name));
    assert_false(imap_list_match("*y", name));
}

/* --- LIST ------------------------------------------------------------------------ */

static void test_list_basic(void **state)
{
    struct fx *f = *state;
    login(f);
    expect(f, "a LIST \"\" \"\"\r\n", "* LIST (\\Noselect) \"/\" \"\"\r\na OK LIST completed\r\n");
    expect(f, "a LIST Sent \"\"\r\n", "* LIST (\\Noselect) \"/\" \"\"\r\na OK LIST completed\r\n");
    expect(f, "b LIST \"\" *\r\n", DEFAULT_LIST "b OK LIST completed\r\n");
    expect(f, "c LIST \"\" %\r\n", DEFAULT_LIST "c OK LIST completed\r\n");
    expect(f, "d LIST \"\" inbox\r\n",
           "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\nd OK LIST completed\r\n");
    expect(f, "e LIST \"\" nothing*\r\n", "e OK LIST completed\r\n");
    expect(f, "f LIST \"\" S*\r\n",
           "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\nf OK LIST completed\r\n");
    /* Wrong arguments. */
    expect(f, "g LIST \"\"\r\n", "g BAD Invalid LIST arguments\r\n");
    expect(f, "h LIST\r\n", "h BAD Invalid LIST arguments\r\n");
    expect(f, "i LIST \"\" * extra\r\n", "i BAD Invalid LIST arguments\r\n");
    expect(f, "j LIST \"\" \"&Jjo\"\r\n", "j BAD Invalid LIST arguments\r\n");
    /* Not before login. */
    imap_session_free(&f->s);
    f->s = imap_session_new(&f->cfg, "127.0.0.1", "t2", false);
    expect(f, "k LIST \"\" *\r\n", "k BAD Log in first\r\n");
}

/* Hierarchy: \HasChildren, references, levels that exist only as
 * superiors of other mailboxes (RFC 3501 6.3.8 \Noselect; RFC 5258
 * \NonExistent in the extended syntax). */
static void test_list_hierarchy(void **state)
{
    struct fx *f = *state;
    login(f);
    mkbox(f, "Work");
    mkbox(f, "Work/2024");
    mkbox(f, "Work/2024/Q1");
    mkbox(f, "Lone/deep/box"); /* "Lone" and "Lone/deep" do not exist */
    mkbox(f, "INBOX/Sub");
    expect(f, "a LIST \"\" %\r\n",
           "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"\r\n"
           "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"\r\n"
           "* LIST (\\HasChildren) \"/\" \"INBOX\"\r\n"
           "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"\r\n"
           "* LIST (\\Noselect \\HasChildren) \"/\" \"Lone\"\r\n"
           "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
           "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
           "* LIST (\\HasChildren) \"/\" \"Work\"\r\n"
           "a OK LIST completed\r\n");
    expect(f, "b LIST \"\" Work/*\r\n",
           "* LIST (\\HasChildren) \"/\" \"Work/2024\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"Work/2024/Q1\"\r\n"
           "b OK LIST completed\r\n");
    /* Reference and pattern are concatenated as they are (RFC 3501 6.3.8
     * leaves a reference without a trailing "/" to the server): "Work%". */
    expect(f, "c LIST Work %\r\n",
           "* LIST (\\HasChildren) \"/\" \"Work\"\r\nc OK LIST completed\r\n");
    expect(f, "d LIST Work/ %\r\n",
           "* LIST (\\HasChildren) \"/\" \"Work/2024\"\r\nd OK LIST completed\r\n");
    expect(f, "e LIST Lone *\r\n",
           "* LIST (\\Noselect \\HasChildren) \"/\" \"Lone\"\r\n"
           "* LIST (\\Noselect \\HasChildren) \"/\" \"Lone/deep\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"Lone/deep/box\"\r\n"
           "e OK LIST completed\r\n");
    expect(f, "f LIST () \"\" Lone/%\r\n",
           "* LIST (\\NonExistent \\HasChildren) \"/\" \"Lone/deep\"\r\n"
           "f OK LIST completed\r\n");
    expect(f, "g LIST \"\" Lone\r\n",
           "* LIST (\\Noselect \\HasChildren) \"/\" \"Lone\"\r\ng OK LIST completed\r\n");
    /* INBOX's children, the reference in any case. */
    expect(f, "h LIST inbox %\r\n",
           "* LIST (\\HasChildren) \"/\" \"INBOX\"\r\nh OK LIST completed\r\n");
    expect(f, "i LIST \"\" Inbox*\r\n",
           "* LIST (\\HasChildren) \"/\" \"INBOX\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"INBOX/Sub\"\r\n"
           "i OK LIST completed\r\n");
}

/* Names outside US-ASCII are modified UTF-7 on the wire, UTF-8 inside. */
static void test_list_utf7(void **state)
{
    struct fx *f = *state;
    login(f);
    expect(f, "a CREATE \"R&AOk-sum&AOk-s\"\r\n", "a OK CREATE completed\r\n");
    assert_true(exists(f, "R\xc3\xa9sum\xc3\xa9s"));
    expect(f, "b LIST \"\" R*\r\n",
           "* LIST (\\HasNoChildren) \"/\" \"R&AOk-sum&AOk-s\"\r\nb OK LIST completed\r\n");
    expect(f, "c CREATE \"Tom & Jerry\"\r\n", "c BAD Invalid mailbox name\r\n");
    expect(f, "d CREATE \"Tom &- Jerry\"\r\n", "d OK CREATE completed\r\n");
    assert_true(exists(f, "Tom & Jerry"));
    expect(f, "e LIST \"\" \"Tom &-*\"\r\n",
           "* LIST (\\HasNoChildren) \"/\" \"Tom &- Jerry\"\r\ne OK LIST completed\r\n");
    expect(f, "f STATUS \"R&AOk-sum&AOk-s\" (MESSAGES)\r\n",
           "* STATUS \"R&AOk-sum&AOk-s\" (MESSAGES 0)\r\nf OK STATUS completed\r\n");
}

static void test_list_extended(void **state)
{
    struct fx *f = *state;
    char err[256];
    login(f);
    mkbox(f, "Fruit");
    mkbox(f, "Fruit/Apple");
    mkbox(f, "Fruit/Banana");
    mkbox(f, "Tofu");
    mkbox(f, "Veg/Broccoli"); /* "Veg" does not exist */
    /* Start from a known set of subscriptions. */
    store_subscription_set(f->st, ACCOUNT, "Drafts", 0, err, sizeof(err));
    store_subscription_set(f->st, ACCOUNT, "Archive", 0, err, sizeof(err));
    store_subscription_set(f->st, ACCOUNT, "Trash", 0, err, sizeof(err));
    store_subscription_set(f->st, ACCOUNT, "Junk", 0, err, sizeof(err));
    store_subscription_set(f->st, ACCOUNT, "Sent", 0, err, sizeof(err));
    store_subscription_set(f->st, ACCOUNT, "INBOX", 0, err, sizeof(err));
    expect(f, "s1 SUBSCRIBE INBOX\r\n", "s1 OK SUBSCRIBE completed\r\n");
    expect(f, "s2 SUBSCRIBE Fruit/Banana\r\n", "s2 OK SUBSCRIBE completed\r\n");
    expect(f, "s3 SUBSCRIBE Fruit/Peach\r\n", "s3 OK SUBSCRIBE completed\r\n");
    expect(f, "s4 SUBSCRIBE Veg/Broccoli\r\n", "s4 OK SUBSCRIBE completed\r\n");
    expect(f, "s5 SUBSCRIBE Sent\r\n", "s5 OK SUBSCRIBE completed\r\n");

    /* RFC 5258 example 2 style: only subscribed names, \NonExistent ones too. */
    expect(f, "a LIST (SUBSCRIBED) \"\" *\r\n",
           "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"\r\n"
           "* LIST (\\NonExistent \\Subscribed) \"/\" \"Fruit/Peach\"\r\n"
           "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n"
           "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"\r\n"
           "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Veg/Broccoli\"\r\n"
           "a OK LIST completed\r\n");
    /* RECURSIVEMATCH: parents of subscribed names, with CHILDINFO. */
    expect(f, "b LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %\r\n",
           "* LIST (\\HasChildren) \"/\" \"Fruit\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
           "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n"
           "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"\r\n"
           "* LIST (\\NonExistent \\HasChildren) \"/\" \"Veg\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
           "b OK LIST completed\r\n");
    /* Without RECURSIVEMATCH the parents are not selected. */
    expect(f, "c LIST (SUBSCRIBED) \"\" %\r\n",
           "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n"
           "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"\r\n"
           "c OK LIST completed\r\n");
    /* RETURN (SUBSCRIBED) marks, but selects all. */
    expect(f, "d LIST \"\" Fruit* RETURN (SUBSCRIBED CHILDREN)\r\n",
           "* LIST (\\HasChildren) \"/\" \"Fruit\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"Fruit/Apple\"\r\n"
           "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Fruit/Banana\"\r\n"
           "d OK LIST completed\r\n");
    /* Several patterns, each name once. */
    expect(f, "e LIST \"\" (\"inbox\" \"Sent\" \"S*\" \"Tofu\")\r\n",
           "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
           "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"Tofu\"\r\n"
           "e OK LIST completed\r\n");
    /* SPECIAL-USE selection (RFC 6154). */
    expect(f, "f LIST (SPECIAL-USE) \"\" *\r\n",
           "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"\r\n"
           "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"\r\n"
           "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"\r\n"
           "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
           "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
           "f OK LIST completed\r\n");
    expect(f, "g LIST (SPECIAL-USE SUBSCRIBED) \"\" * RETURN (SPECIAL-USE)\r\n",
           "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"\r\n"
           "g OK LIST completed\r\n");
    expect(f, "h LIST (REMOTE) \"\" Tofu RETURN (REMOTE)\r\n",
           "* LIST (\\HasNoChildren) \"/\" \"Tofu\"\r\nh OK LIST completed\r\n");
    expect(f, "i LIST () \"\" Veg RETURN ()\r\n",
           "* LIST (\\NonExistent \\HasChildren) \"/\" \"Veg\"\r\ni OK LIST completed\r\n");
    /* Errors (RFC 5258 3: unknown options and a lone RECURSIVEMATCH are BAD). */
    expect(f, "j LIST (RECURSIVEMATCH) \"\" *\r\n", "j BAD Invalid LIST arguments\r\n");
    expect(f, "k LIST (BOGUS) \"\" *\r\n", "k BAD Invalid LIST arguments\r\n");
    expect(f, "l LIST \"\" * RETURN (BOGUS)\r\n", "l BAD Invalid LIST arguments\r\n");
    expect(f, "m LIST \"\" * RETURN\r\n", "m BAD Invalid LIST arguments\r\n");
    expect(f, "n LIST \"\" * FOO (CHILDREN)\r\n", "n BAD Invalid LIST arguments\r\n");
    expect(f, "o LIST \"\" ()\r\n", "o BAD Invalid LIST arguments\r\n");
    expect(f, "p LIST \"\" * RETURN (STATUS ())\r\n", "p BAD Invalid LIST arguments\r\n");
    expect(f, "q LIST \"\" * RETURN (STATUS (BOGUS))\r\n", "q BAD Invalid LIST arguments\r\n");
}

/* LIST-STATUS (RFC 5819): a STATUS after each selectable name's LIST. */
static void test_list_status(void **state)
{
    struct fx *f = *state;
    login(f);
    mkbox(f, "Lone/box");
    deliver(f, "INBOX", "Subject: 1\r\n\r\nhi\r\n", STORE_FLAG_SEEN);
    deliver(f, "INBOX", "Subject: 2\r\n\r\nhi\r\n", 0);
    deliver(f, "Lone/box", "Subject: 3\r\n\r\nhi\r\n", 0);
    expect(f, "a LIST \"\" (INBOX Lone Lone/%) RETURN (STATUS (MESSAGES UNSEEN))\r\n",
           "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
           "* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 1)\r\n"
           "* LIST (\\NonExistent \\HasChildren) \"/\" \"Lone\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"Lone/box\"\r\n"
           "* STATUS \"Lone/box\" (MESSAGES 1 UNSEEN 1)\r\n"
           "a OK LIST completed\r\n");
}

/* --- LSUB -------------------------------------------------------------------------- */

static void test_lsub(void **state)
{
    struct fx *f = *state;
    char err[256];
    login(f);
    const char *defaults[] = {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"};
    for (size_t i = 0; i < 6; i++)
        store_subscription_set(f->st, ACCOUNT, defaults[i], 0, err, sizeof(err));
    mkbox(f, "news/comp/mail/mime");
    mkbox(f, "news/comp/mail/misc");
    expect(f, "a LSUB \"\" *\r\n", "a OK LSUB completed\r\n");
    expect(f, "b SUBSCRIBE news/comp/mail/mime\r\n", "b OK SUBSCRIBE completed\r\n");
    expect(f, "c SUBSCRIBE news/comp/mail/misc\r\n", "c OK SUBSCRIBE completed\r\n");
    expect(f, "d SUBSCRIBE inbox\r\n", "d OK SUBSCRIBE completed\r\n");
    expect(f, "e SUBSCRIBE gone\r\n", "e OK SUBSCRIBE completed\r\n");
    expect(f, "f LSUB \"\" *\r\n",
           "* LSUB () \"/\" \"INBOX\"\r\n"
           "* LSUB (\\Noselect) \"/\" \"gone\"\r\n"
           "* LSUB () \"/\" \"news/comp/mail/mime\"\r\n"
           "* LSUB () \"/\" \"news/comp/mail/misc\"\r\n"
           "f OK LSUB completed\r\n");
    /* RFC 3501 6.3.9's examples, with "/" as the separator. */
    expect(f, "g LSUB news/ comp/mail/*\r\n",
           "* LSUB () \"/\" \"news/comp/mail/mime\"\r\n"
           "* LSUB () \"/\" \"news/comp/mail/misc\"\r\n"
           "g OK LSUB completed\r\n");
    expect(f, "h LSUB news/ comp/%\r\n",
           "* LSUB (\\Noselect) \"/\" \"news/comp/mail\"\r\nh OK LSUB completed\r\n");
    expect(f, "i LSUB \"\" %\r\n",
           "* LSUB () \"/\" \"INBOX\"\r\n"
           "* LSUB (\\Noselect) \"/\" \"gone\"\r\n"
           "* LSUB (\\Noselect) \"/\" \"news\"\r\n"
           "i OK LSUB completed\r\n");
    expect(f, "j LSUB \"\" InBoX\r\n", "* LSUB () \"/\" \"INBOX\"\r\nj OK LSUB completed\r\n");
    expect(f, "k UNSUBSCRIBE news/comp/mail/mime\r\n", "k OK UNSUBSCRIBE completed\r\n");
    expect(f, "l UNSUBSCRIBE never-subscribed\r\n", "l OK UNSUBSCRIBE completed\r\n");
    expect(f, "m LSUB \"\" news/*\r\n",
           "* LSUB () \"/\" \"news/comp/mail/misc\"\r\nm OK LSUB completed\r\n");
    expect(f, "m2 LSUB \"\" \"\"\r\n",
           "* LSUB (\\Noselect) \"/\" \"\"\r\nm2 OK LSUB completed\r\n");
    expect(f, "n LSUB \"\"\r\n", "n BAD LSUB needs a reference and a pattern\r\n");
    expect(f, "o LSUB \"\" (a b)\r\n", "o BAD LSUB needs a reference and a pattern\r\n");
    expect(f, "p SUBSCRIBE\r\n", "p BAD SUBSCRIBE needs one mailbox name\r\n");
    expect(f, "q UNSUBSCRIBE a b\r\n", "q BAD UNSUBSCRIBE needs one mailbox name\r\n");
}

/* --- CREATE ------------------------------------------------------------------------- */

static void test_create(void **state)
{
    struct fx *f = *state;
    login(f);
    expect(f, "a CREATE Projects\r\n", "a OK CREATE completed\r\n");
    assert_true(exists(f, "Projects"));
    expect(f, "b CREATE Projects\r\n", "b NO [ALREADYEXISTS] Mailbox already exists\r\n");
    expect(f, "c CREATE INBOX\r\n", "c NO [ALREADYEXISTS] INBOX always exists\r\n");
    expect(f, "d CREATE iNbOx\r\n", "d NO [ALREADYEXISTS] INBOX always exists\r\n");
    expect(f, "e CREATE Sent\r\n", "e NO [ALREADYEXISTS] Mailbox already exists\r\n");
    /* Missing superiors are created (RFC 3501 6.3.3). */
    expect(f, "f CREATE a/b/c\r\n", "f OK CREATE completed\r\n");
    assert_true(exists(f, "a"));
    assert_true(exists(f, "a/b"));
    assert_true(exists(f, "a/b/c"));
    expect(f, "g LIST \"\" a*\r\n",
           "* LIST (\\HasChildren) \"/\" \"a\"\r\n"
           "* LIST (\\HasChildren) \"/\" \"a/b\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"a/b/c\"\r\n"
           "g OK LIST completed\r\n");
    /* A trailing separator is a declaration we do not need. */
    expect(f, "h CREATE Later/\r\n", "h OK CREATE completed\r\n");
    assert_true(exists(f, "Later"));
    expect(f, "i CREATE Later/\r\n", "i NO [ALREADYEXISTS] Mailbox already exists\r\n");
    expect(f, "j CREATE inbox/Child\r\n", "j OK CREATE completed\r\n");
    assert_true(exists(f, "INBOX/Child"));
    /* Invalid names. */
    expect(f, "k CREATE /abs\r\n", "k NO [CANNOT] Invalid mailbox name\r\n");
    expect(f, "l CREATE a//b\r\n", "l NO [CANNOT] Invalid mailbox name\r\n");
    expect(f, "m CREATE wild*\r\n", "m NO [CANNOT] Invalid mailbox name\r\n");
    expect(f, "n CREATE wild%\r\n", "n NO [CANNOT] Invalid mailbox name\r\n");
    expect(f, "o CREATE /\r\n", "o NO [CANNOT] Invalid mailbox name\r\n");
    expect(f, "p CREATE \"\"\r\n", "p BAD Invalid mailbox name\r\n");
    expect(f, "q CREATE\r\n", "q BAD CREATE needs one mailbox name\r\n");
    expect(f, "r CREATE a b\r\n", "r BAD CREATE needs one mailbox name\r\n");
    expect(f, "s CREATE (x)\r\n", "s BAD Invalid mailbox name\r\n");
    char line[400] = "t CREATE ";
    memset(line + 9, 'x', 256);
    strcpy(line + 9 + 256, "\r\n");
    expect(f, line, "t NO [CANNOT] Invalid mailbox name\r\n");
    /* A control character (U+0001) smuggled in modified UTF-7. */
    expect(f, "u CREATE \"x&AAE-\"\r\n", "u NO [CANNOT] Invalid mailbox name\r\n");
    /* Quoted names and literals. */
    expect(f, "v CREATE {8+}\r\nwith \"q\"\r\n", "v OK CREATE completed\r\n");
    assert_true(exists(f, "with \"q\""));
    expect(f, "w LIST \"\" with*\r\n",
           "* LIST (\\HasNoChildren) \"/\" \"with \\\"q\\\"\"\r\nw OK LIST completed\r\n");
}

/* --- DELETE ------------------------------------------------------------------------- */

static void test_delete(void **state)
{
    struct fx *f = *state;
    login(f);
    expect(f, "a DELETE INBOX\r\n", "a NO [CANNOT] INBOX cannot be deleted\r\n");
    expect(f, "b DELETE inbox\r\n", "b NO [CANNOT] INBOX cannot be deleted\r\n");
    expect(f, "c DELETE Nowhere\r\n", "c NO [NONEXISTENT] No such mailbox\r\n");
    expect(f, "d DELETE\r\n", "d BAD DELETE needs one mailbox name\r\n");
    expect(f, "e CREATE Old\r\n", "e OK CREATE completed\r\n");
    deliver(f, "Old", "Subject: x\r\n\r\nx\r\n", 0);
    expect(f, "f DELETE Old\r\n", "f OK DELETE completed\r\n");
    assert_false(exists(f, "Old"));
    /* A mailbox with children: it and its messages go, the children stay
     * and the name becomes a \Noselect level (RFC 3501 6.3.4). */
    expect(f, "g CREATE Parent/Child\r\n", "g OK CREATE completed\r\n");
    deliver(f, "Parent", "Subject: p\r\n\r\np\r\n", 0);
    deliver(f, "Parent/Child", "Subject: c\r\n\r\nc\r\n", 0);
    expect(f, "h DELETE Parent\r\n", "h OK DELETE completed\r\n");
    assert_false(exists(f, "Parent"));
    assert_true(exists(f, "Parent/Child"));
    expect(f, "i LIST \"\" Parent*\r\n",
           "* LIST (\\Noselect \\HasChildren) \"/\" \"Parent\"\r\n"
           "* LIST (\\HasNoChildren) \"/\" \"Parent/Child\"\r\n"
           "i OK LIST completed\r\n");
    expect(f, "j STATUS Parent/Child (MESSAGES)\r\n",
           "* STATUS \"Parent/Child\" (MESSAGES 1)\r\nj OK STATUS completed\r\n");
    /* Now it is \Noselect with inferiors: that cannot be deleted. */
    expect(f, "k DELETE Parent\r\n", "k NO [NONEXISTENT] No such mailbox\r\n");
    expect(f, "l SELECT Parent\r\n", "l NO [NONEXISTENT] No such mailbox\r\n");
    /* And it can be created again. */
    expect(f, "m CREATE Parent\r\n", "m OK CREATE completed\r\n");
    expect(f, "n STATUS Parent (MESSAGES)\r\n",
           "* STATUS \"Parent\" (MESSAGES 0)\r\nn OK STATUS completed\r\n");
}

/* Deleting the selected mailbox: the session goes on. */
static void test_delete_selected(void **state)
{
    struct fx *f = *state;
    login(f);
    expect(f, "a CREATE Doomed\r\n", "a OK CREATE completed\r\n");
    deliver(f, "Doomed", "Subject: 1\r\n\r\n1\r\n", 0);
    deliver(f, "Doomed", "Subject: 2\r\n\r\n2\r\n", 0);
    expect_has(f, "b SELECT Doomed\r\n", "* 2 EXISTS\r\n");
    expect(f, "c DELETE Doomed\r\n", "c OK DELETE completed\r\n");
    expect(f, "d NOOP\r\n", "d OK NOOP completed\r\n");
    run(f, "e FETCH 1:* (FLAGS)\r\n");
    run(f, "f SEARCH ALL\r\n");
    run(f, "g STORE 1 +FLAGS (\\Seen)\r\n");
    run(f, "h EXPUNGE\r\n");
    expect(f, "i STATUS Doomed (MESSAGES)\r\n", "i NO [NONEXISTENT] No such mailbox\r\n");
    /* A new mailbox of the same name is not the one selected. */
    expect(f, "j CREATE Doomed\r\n", "j OK CREATE completed\r\n");
    deliver(f, "Doomed", "Subject: 3\r\n\r\n3\r\n", 0);
    expect(f, "k NOOP\r\n", "k OK NOOP completed\r\n");
    expect_has(f, "l SELECT INBOX\r\n", "l OK [READ-WRITE]");
    expect(f, "m LOGOUT\r\n", "* BYE Logging out\r\nm OK LOGOUT completed\r\n");
}

/* --- RENAME ------------------------------------------------------------------------- */

static void test_rename(void **state)
{
    struct fx *f = *state;
    login(f);
    expect(f, "a CREATE Proj/Sub\r\n", "a OK CREATE completed\r\n");
    deliver(f, "Proj", "Subject: p\r\n\r\np\r\n", 0);
    expect(f, "b SUBSCRIBE Proj/Sub\r\n", "b OK SUBSCRIBE completed\r\n");
    expect(f, "c RENAME Proj Done\r\n", "c OK RENAME completed\r\n");
    assert_false(exists(f, "Proj"));
    assert_false(exists(f, "Proj/Sub"));
    assert_true(exists(f, "Done/Sub"));
    expect(f, "d STATUS Done (MESSAGES)\r\n",
           "* STATUS \"Done\" (MESSAGES 1)\r\nd OK STATUS completed\r\n");
    expect(f, "e LSUB \"\" Done*\r\n", "* LSUB () \"/\" \"Done/Sub\"\r\ne OK LSUB completed\r\n");
    /* Errors. */
    expect(f, "f RENAME Nowhere X\r\n", "f NO [NONEXISTENT] No such mailbox\r\n");
    expect(f, "g RENAME Done Sent\r\n", "g NO [ALREADYEXISTS] Mailbox already exists\r\n");
    expect(f, "h RENAME Done inbox\r\n", "h NO [ALREADYEXISTS] INBOX already exists\r\n");
    expect(f, "i RENAME Done Done/Deeper\r\n",
           "i NO [CANNOT] Cannot move a mailbox under itself\r\n");
    expect(f, "j RENAME Done Bad*Name\r\n", "j NO [CANNOT] Invalid mailbox name\r\n");
    expect(f, "k RENAME Done\r\n", "k BAD RENAME needs two mailbox names\r\n");
    /* A child's new name taken: nothing is renamed. */
    mkbox(f, "Other/Sub");
    expect_has(f, "l RENAME Done Other\r\n", "l NO [ALREADYEXISTS]");
    assert_true(exists(f, "Done"));
    assert_true(exists(f, "Done/Sub"));
    /* The target's superiors are created. */
    expect(f, "m RENAME Done Archive2/2024/Done\r\n", "m OK RENAME completed\r\n");
    assert_true(exists(f, "Archive2"));
    assert_true(exists(f, "Archive2/2024"));
    assert_true(exists(f, "Archive2/2024/Done/Sub"));
}

/* RFC 3501 6.3.5: renaming INBOX moves its messages to the new mailbox
 * and leaves INBOX empty. */
static void test_rename_inbox(void **state)
{
    struct fx *f = *state;
    login(f);
    deliver(f, "INBOX", "Subject: 1\r\n\r\n1\r\n", 0);
    deliver(f, "INBOX", "Subject: 2\r\n\r\n2\r\n", 0);
    expect(f, "b RENAME INBOX Old-Mail/2024\r\n", "b OK RENAME completed\r\n");
    assert_true(exists(f, "INBOX"));
    assert_true(exists(f, "Old-Mail"));
    expect(f, "c STATUS Old-Mail/2024 (MESSAGES UIDNEXT)\r\n",
           "* STATUS \"Old-Mail/2024\" (MESSAGES 2 UIDNEXT 3)\r\nc OK STATUS completed\r\n");
    expect(f, "d STATUS INBOX (MESSAGES)\r\n",
           "* STATUS \"INBOX\" (MESSAGES 0)\r\nd OK STATUS completed\r\n");
    expect(f, "e RENAME INBOX INBOX/Older\r\n", "e OK RENAME completed\r\n");
    expect(f, "f RENAME INBOX INBOX\r\n", "f NO [ALREADYEXISTS] INBOX already exists\r\n");
}

/* The same with INBOX selected: the session sees its messages go. */
static void test_rename_inbox_selected(void **state)
{
    struct fx *f = *state;
    login(f);
    deliver(f, "INBOX", "Subject: 1\r\n\r\n1\r\n", 0);
    deliver(f, "INBOX", "Subject: 2\r\n\r\n2\r\n", 0);
    expect_has(f, "a SELECT INBOX\r\n", "* 2 EXISTS\r\n");
    expect(f, "b RENAME INBOX Old-Mail\r\n",
           "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\nb OK RENAME completed\r\n");
    deliver(f, "INBOX", "Subject: 3\r\n\r\n3\r\n", 0);
    expect(f, "c NOOP\r\n", "* 1 EXISTS\r\n* 1 RECENT\r\nc OK NOOP completed\r\n");
}

/* Renaming the selected mailbox: the session follows it. */
static void test_rename_selected(void **state)
{
    struct fx *f = *state;
    login(f);
    mkbox(f, "Top");
    mkbox(f, "Top/Box");
    mkbox(f, "Level/Box"); /* "Level" is only a level */
    expect(f, "z RENAME Level Other\r\n", "z NO [NONEXISTENT] No such mailbox\r\n");
    deliver(f, "Top/Box", "Subject: 1\r\n\r\n1\r\n", 0);
    expect_has(f, "a SELECT Top/Box\r\n", "* 1 EXISTS\r\n");
    expect(f, "b RENAME Top Moved\r\n", "b OK RENAME completed\r\n");
    deliver(f, "Moved/Box", "Subject: 2\r\n\r\n2\r\n", 0);
    expect(f, "c NOOP\r\n", "* 2 EXISTS\r\n* 2 RECENT\r\nc OK NOOP completed\r\n");
}

/* --- STATUS ------------------------------------------------------------------------- */

static void test_status(void **state)
{
    struct fx *f = *state;
    login(f);
    expect(f, "a STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)\r\n",
           "* STATUS \"INBOX\" (MESSAGES 0 RECENT 0 UIDNEXT 1 UNSEEN 0)\r\n"
           "a OK STATUS completed\r\n");
    deliver(f, "INBOX", "Subject: 1\r\n\r\n1\r\n", STORE_FLAG_SEEN);
    deliver(f, "INBOX", "Subject: 2\r\n\r\n22\r\n", STORE_FLAG_DELETED);
    deliver(f, "INBOX", "Subject: 3\r\n\r\n333\r\n", 0);
    struct store_mailbox mb;
    char err[256], want[512];
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, "INBOX", &mb, err, sizeof(err)), 1);
    snprintf(want, sizeof(want),
             "* STATUS \"INBOX\" (MESSAGES 3 RECENT 3 UIDNEXT 4 UIDVALIDITY %u UNSEEN 2 "
             "HIGHESTMODSEQ %llu SIZE %zu APPENDLIMIT 1048576 DELETED 1)\r\n"
             "b OK STATUS completed\r\n",
             mb.uidvalidity, (unsigned long long)mb.highestmodseq,
             strlen("Subject: 1\r\n\r\n1\r\n") + strlen("Subject: 2\r\n\r\n22\r\n") +
                 strlen("Subject: 3\r\n\r\n333\r\n"));
    expect(f,
           "b STATUS inbox (messages RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE "
           "APPENDLIMIT DELETED)\r\n",
           want);
    expect(f, "c STATUS Nowhere (MESSAGES)\r\n", "c NO [NONEXISTENT] No such mailbox\r\n");
    expect(f, "d STATUS INBOX ()\r\n", "d BAD STATUS needs a mailbox and a list of items\r\n");
    expect(f, "e STATUS INBOX (BOGUS)\r\n", "e BAD STATUS needs a mailbox and a list of items\r\n");
    expect(f, "f STATUS INBOX MESSAGES\r\n",
           "f BAD STATUS needs a mailbox and a list of items\r\n");
    expect(f, "g STATUS INBOX\r\n", "g BAD STATUS needs a mailbox and a list of items\r\n");
    expect(f, "h STATUS \"\" (MESSAGES)\r\n", "h BAD Invalid mailbox name\r\n");
    /* After a SELECT the messages are no longer \Recent for others. */
    expect_has(f, "i SELECT INBOX\r\n", "* 3 RECENT\r\n");
    expect(f, "j STATUS INBOX (RECENT MESSAGES)\r\n",
           "* STATUS \"INBOX\" (RECENT 0 MESSAGES 3)\r\nj OK STATUS completed\r\n");
}

/* --- APPEND ------------------------------------------------------------------------- */

struct msgs {
    size_t n;
    struct store_msg_info m[16];
};

static void collect(void *ctx, const struct store_msg_info *m)
{
    struct msgs *l = ctx;
    if (l->n < 16)
        l->m[l->n++] = *m;
}

static void test_append(void **state)
{
    struct fx *f = *state;
    char err[256], want[256];
    struct store_mailbox mb;
    login(f);
    assert_int_equal(store_mailbox_get(f->st, ACCOUNT, "Drafts", &mb, err, sizeof(err)), 1);
    /* Synchronizing literal: "+" first, then the message. */
    snprintf(want, sizeof(want),
             "+ Ready for literal data\r\na OK [APPENDUID %u 1] APPEND completed\r\n",
             mb.uidvalidity);
    expect(f,
           "a APPEND Drafts (\\Draft \\Seen $Label1) \" 7-Feb-1994 21:52:25 -0800\" {12}\r\n"
           "Subject: x\r\n\r\n",
           want);
    snprintf(want, sizeof(want), "b OK [APPENDUID %u 2] APPEND completed\r\n", mb.uidvalidity);
    expect(f, "b APPEND Drafts {5+}\r\nhello\r\n", want);
    snprintf(want, sizeof(want), "c OK [APPENDUID %u 3] APPEND completed\r\n", mb.uidvalidity);
    expect(f, "c APPEND drafts () \"01-Jan-2024 00:00:00 +0000\" {5+}\r\nhello\r\n",
           "c NO [TRYCREATE] Mailbox does not exist\r\n");
    expect(f, "c APPEND Drafts () \"01-Jan-2024 00:00:00 +0000\" {5+}\r\nhello\r\n", want);
    struct msgs l = {0};
    assert_int_equal(
        store_mailbox_messages(f->st, ACCOUNT, "Drafts", collect, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.m[0].uid, 1);
    assert_int_equal(l.m[0].size, 12);
    assert_int_equal(l.m[0].flags, STORE_FLAG_DRAFT | STORE_FLAG_SEEN);
    assert_int_equal(l.m[0].internal_date, 760686745); /* 1994-02-08T05:52:25Z */
    assert_int_equal(l.m[1].flags, 0);
    assert_int_equal(l.m[2].internal_date, 1704067200);
    struct store_msg_list ml = {0};
    assert_int_equal(store_msgs_load(f->st, ACCOUNT, mb.id, 1, 1, 0, &ml, err, sizeof(err)), 0);
    assert_int_equal(ml.n, 1);
    assert_string_equal(ml.v[0].keywords, "$Label1");
    store_msg_list_free(&ml);
    /* The bytes are kept as sent, NULs included, but bare LFs become CRLF
     * (so sizes are what FETCH and POP3 send). */
    static const char nul[] = "d APPEND INBOX {6+}\r\na\0b\nc\n\r\n";
    if (!strstr(run_len(f, nul, sizeof(nul) - 1), "d OK [APPENDUID "))
        fail_msg("got %s", buf_cstr(&f->out));
    l.n = 0;
    store_mailbox_messages(f->st, ACCOUNT, "INBOX", collect, &l, err, sizeof(err));
    assert_int_equal(l.n, 1);
    assert_int_equal(l.m[0].size, 8); /* "a\0b\r\nc\r\n" */
    /* A date one second after another zone's midnight, a space-padded day. */
    expect_has(f, "e APPEND INBOX \" 1-Mar-2000 00:00:01 +0130\" {1+}\r\nx\r\n", "e OK");
    l.n = 0;
    store_mailbox_messages(f->st, ACCOUNT, "INBOX", collect, &l, err, sizeof(err));
    assert_int_equal(l.m[1].internal_date, 951868801 - 5400);
}

static void test_append_errors(void **state)
{
    struct fx *f = *state;
    f->cfg.append_limit = 100;
    login(f);
    expect(f, "a APPEND Nowhere {5+}\r\nhello\r\n", "a NO [TRYCREATE] Mailbox does not exist\r\n");
    expect(f, "b APPEND INBOX\r\n", "b BAD APPEND needs a mailbox and a message literal\r\n");
    expect(f, "c APPEND INBOX \"hello\"\r\n",
           "c BAD APPEND needs a mailbox and a message literal\r\n");
    expect(f, "d APPEND INBOX (\\Bogus) {5+}\r\nhello\r\n", "d BAD Invalid flags\r\n");
    expect(f, "e APPEND INBOX \"31-Feb-2024 00:00:00 +0000\" {5+}\r\nhello\r\n",
           "e BAD Invalid date-time\r\n");
    expect(f, "f APPEND INBOX \"1-Foo-2024 00:00:00 +0000\" {5+}\r\nhello\r\n",
           "f BAD Invalid date-time\r\n");
    expect(f, "g APPEND INBOX \"01-Jan-2024 24:00:00 +0000\" {5+}\r\nhello\r\n",
           "g BAD Invalid date-time\r\n");
    expect(f, "h APPEND INBOX \"01-Jan-2024 00:00:00 0000\" {5+}\r\nhello\r\n",
           "h BAD Invalid date-time\r\n");
    expect(f, "i APPEND INBOX \"01-Jan-2024 00:00:00 +00000\" {5+}\r\nhello\r\n",
           "i BAD Invalid date-time\r\n");
    expect(f, "j APPEND INBOX \"01-Jan-24 00:00:00 +0000\" {5+}\r\nhello\r\n",
           "j BAD Invalid date-time\r\n");
    expect(f, "k APPEND INBOX (\\Seen) (\\Seen) {5+}\r\nhello\r\n", "k BAD Invalid date-time\r\n");
    expect(f, "l APPEND INBOX \"01-Jan-2024 00:00:00 +0000\" (\\Seen) {5+}\r\nhello\r\n",
           "l BAD Invalid APPEND arguments\r\n");
    expect(f, "m APPEND INBOX ~{5+}\r\nhello\r\n", "m BAD Binary literals are not supported\r\n");
    expect(f, "n APPEND INBOX {0+}\r\n\r\n", "n NO Empty message\r\n");
    /* Larger than APPENDLIMIT: a synchronizing literal is refused before
     * it is sent; a non-synchronizing one is read and then refused. */
    expect(f, "o APPEND INBOX {101}\r\n", "o NO [TOOBIG] Literal too large\r\n");
    char line[256];
    int n = snprintf(line, sizeof(line), "p APPEND INBOX {101+}\r\n");
    memset(line + n, 'x', 101);
    strcpy(line + n + 101, "\r\n");
    expect(f, line, "p NO [TOOBIG] Message larger than APPENDLIMIT=100\r\n");
    expect(f, "q STATUS INBOX (MESSAGES)\r\n",
           "* STATUS \"INBOX\" (MESSAGES 0)\r\nq OK STATUS completed\r\n");
    /* Not before login. */
    imap_session_free(&f->s);
    f->s = imap_session_new(&f->cfg, "127.0.0.1", "t2", false);
    expect(f, "r APPEND INBOX {5+}\r\nhello\r\n", "r BAD Log in first\r\n");
}

/* APPEND into the selected mailbox: the new message is reported before
 * the tagged OK (the core's sync). */
static void test_append_selected(void **state)
{
    struct fx *f = *state;
    login(f);
    expect_has(f, "a SELECT INBOX\r\n", "* 0 EXISTS\r\n");
    const char *r = run(f, "b APPEND INBOX (\\Flagged) {5+}\r\nhello\r\n");
    if (!strstr(r, "* 1 EXISTS\r\n* 1 RECENT\r\nb OK [APPENDUID "))
        fail_msg("got %s", r);
    r = run(f, "c APPEND INBOX {5}\r\nworld\r\n");
    if (!strstr(r, "+ Ready for literal data\r\n* 2 EXISTS\r\n* 2 RECENT\r\nc OK [APPENDUID "))
        fail_msg("got %s", r);
}

/* Input split into single bytes gives the same replies. */
static void test_byte_by_byte(void **state)
{
    struct fx *f = *state;
    login(f);
    const char *in = "a CREATE \"Split/Box\"\r\nb APPEND Split/Box {3+}\r\nabc\r\n"
                     "c LIST \"\" Split/%\r\n";
    struct buf all = BUF_INIT;
    for (const char *p = in; *p; p++) {
        char one[2] = {*p, 0};
        run(f, one);
        buf_append(&all, buf_ptr(&f->out), buf_size(&f->out));
    }
    const char *got = buf_cstr(&all);
    if (!strstr(got, "a OK CREATE completed\r\n") || !strstr(got, "b OK [APPENDUID ") ||
        !strstr(got, "* LIST (\\HasNoChildren) \"/\" \"Split/Box\"\r\nc OK LIST completed\r\n"))
        fail_msg("got %s", got);
    buf_free(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test_setup_teardown(test_list_basic, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_hierarchy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_utf7, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_extended, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_status, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_lsub, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_selected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rename, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rename_inbox, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rename_inbox_selected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rename_selected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_status, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_append, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_selected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_byte_by_byte, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
