/* Unit tests for the outbound queue (queue/queue.h): SQLite rows and
 * message files under a temporary DATA directory. */
#include "testutil.h"

#include "lib/log.h"
#include "queue/dsn.h"
#include "queue/queue.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 ((time_t)1700000000)
#define DAY ((time_t)86400)

struct fixture {
    char *dir;
    struct queue *q;
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256] = "";
    log_set_level(LOG_WARN);
    f->dir = test_tmpdir();
    if (queue_open(&f->q, f->dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "queue_open: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    queue_close(&f->q);
    assert_null(f->q);
    test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* --- helpers ---------------------------------------------------------------- */

/* Entries in DATA/queue/<sub> (not . or ..), -1 when it cannot be opened. */
static int count_files(const char *data, const char *sub)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/queue/%s", data, sub);
    DIR *dp = opendir(path);
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

static int msg_file_exists(const char *data, const char *file)
{
    char path[PATH_MAX];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/queue/msg/%s", data, file);
    return stat(path, &sb) == 0;
}

struct add_opts {
    const char *sender;
    bool is_dsn;
    const char *envid;
    time_t now;
    const char *text;
};

/* Queue one message for the NULL-terminated recipients; id into id (32). */
static void add_msg_opts(struct queue *q, const struct add_opts *o, char *id, const char *r1, ...)
{
    const char *rcpts[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, r1);
    for (const char *r = r1; r && n < 16; r = va_arg(ap, const char *))
        rcpts[n++] = r;
    va_end(ap);
    const char *text = o->text ? o->text : "Subject: hi\r\n\r\nbody\r\n";
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct queue_new m = {
        .sender = o->sender,
        .rcpts = rcpts,
        .nrcpts = n,
        .iov = &iov,
        .iovcnt = 1,
        .envid = o->envid,
        .is_dsn = o->is_dsn,
        .now = o->now ? o->now : T0,
    };
    char err[256] = "";
    if (queue_add(q, &m, id, 32, err, sizeof(err)) < 0)
        fail_msg("queue_add: %s", err);
}

#define add_msg(q, from, when, id, ...)                                                            \
    add_msg_opts(q, &(struct add_opts){.sender = (from), .now = (when)}, id, __VA_ARGS__, NULL)

static void list_all(struct queue *q, struct queue_list *l)
{
    char err[256] = "";
    if (queue_all(q, l, err, sizeof(err)) < 0)
        fail_msg("queue_all: %s", err);
}

static void list_due(struct queue *q, time_t now, size_t max, struct queue_list *l)
{
    char err[256] = "";
    if (queue_due(q, now, max, l, err, sizeof(err)) < 0)
        fail_msg("queue_due: %s", err);
}

static void list_dsn(struct queue *q, time_t now, time_t warn_after, struct queue_list *l)
{
    char err[256] = "";
    if (queue_dsn_due(q, now, warn_after, l, err, sizeof(err)) < 0)
        fail_msg("queue_dsn_due: %s", err);
}

/* The recipient row of rcpt in l, or NULL. */
static const struct queue_rcpt *find_rcpt(const struct queue_list *l, const char *rcpt)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].rcpt, rcpt) == 0)
            return &l->v[i];
    return NULL;
}

/* rcpt_id of rcpt (looked up in queue_all). */
static int64_t rcpt_id_of(struct queue *q, const char *rcpt)
{
    struct queue_list l;
    list_all(q, &l);
    const struct queue_rcpt *r = find_rcpt(&l, rcpt);
    assert_non_null(r);
    int64_t id = r->rcpt_id;
    queue_list_free(&l);
    return id;
}

static void done(struct queue *q, const char *rcpt, enum queue_result res, const char *reply,
                 time_t now, time_t next)
{
    char err[256] = "";
    if (queue_rcpt_done(q, rcpt_id_of(q, rcpt), res, reply, now, next, err, sizeof(err)) < 0)
        fail_msg("queue_rcpt_done %s: %s", rcpt, err);
}

static size_t count_all(struct queue *q)
{
    struct queue_list l;
    list_all(q, &l);
    size_t n = l.n;
    queue_list_free(&l);
    return n;
}

/* --- add and list ------------------------------------------------------------ */

static void test_add_and_list(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    const char *text = "From: a@here.example\r\nSubject: x\r\n\r\nhello\r\n";
    add_msg_opts(f->q,
                 &(struct add_opts){.sender = "a@here.example", .envid = "ENV1", .text = text}, id,
                 "bob@There.Example", "carol@other.example", NULL);
    assert_int_equal(strlen(id), 17);
    assert_int_equal(id[0], 'Q');
    for (int i = 1; i < 17; i++)
        assert_true(isxdigit((unsigned char)id[i]));
    assert_int_equal(count_files(f->dir, "msg"), 1);
    assert_int_equal(count_files(f->dir, "tmp"), 0);

    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 2);
    const struct queue_rcpt *r = find_rcpt(&l, "bob@There.Example");
    assert_non_null(r);
    assert_string_equal(r->msg_id, id);
    assert_string_equal(r->sender, "a@here.example");
    assert_string_equal(r->domain, "there.example");
    assert_int_equal(r->state, QUEUE_PENDING);
    assert_int_equal(r->attempts, 0);
    assert_int_equal(r->arrival, T0);
    assert_int_equal(r->next_attempt, T0);
    assert_int_equal(r->last_attempt, 0);
    assert_string_equal(r->last_reply, "");
    assert_int_equal(r->size, strlen(text));
    assert_false(r->body_8bit);
    assert_false(r->is_dsn);
    assert_false(r->warned);
    assert_non_null(r->envid);
    assert_string_equal(r->envid, "ENV1");
    assert_true(msg_file_exists(f->dir, r->file));

    uint8_t *data;
    size_t len;
    assert_int_equal(queue_msg_read(f->q, r->file, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(data, text, len);
    assert_int_equal(data[len], 0);
    free(data);
    queue_list_free(&l);
    assert_null(l.v);

    /* A second message: a different id, envid NULL stays NULL. */
    char id2[32];
    add_msg(f->q, "", T0 + 1, id2, "x@y.example");
    assert_string_not_equal(id, id2);
    list_all(f->q, &l);
    r = find_rcpt(&l, "x@y.example");
    assert_non_null(r);
    assert_null(r->envid);
    assert_string_equal(r->sender, "");
    queue_list_free(&l);
}

static void test_add_flags_and_iov(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    const char *rcpts[] = {"r@d.example"};
    struct iovec iov[3] = {{"abc", 3}, {"", 0}, {"defg", 4}};
    struct queue_new m = {.sender = "s@e.example",
                          .rcpts = rcpts,
                          .nrcpts = 1,
                          .iov = iov,
                          .iovcnt = 3,
                          .body_8bit = true,
                          .smtputf8 = true,
                          .now = T0};
    assert_int_equal(queue_add(f->q, &m, id, sizeof(id), err, sizeof(err)), 0);
    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 1);
    assert_true(l.v[0].body_8bit);
    assert_true(l.v[0].smtputf8);
    assert_int_equal(l.v[0].size, 7);
    uint8_t *data;
    size_t len;
    assert_int_equal(queue_msg_read(f->q, l.v[0].file, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 7);
    assert_memory_equal(data, "abcdefg", 7);
    free(data);
    queue_list_free(&l);
}

static void test_add_rejects(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    struct iovec iov = {"x", 1};
    const char *bad[] = {"ok@d.example", "nodomain"};
    struct queue_new m = {
        .sender = "s@e.example", .rcpts = bad, .nrcpts = 2, .iov = &iov, .iovcnt = 1, .now = T0};
    assert_int_equal(queue_add(f->q, &m, id, sizeof(id), err, sizeof(err)), -1);
    assert_true(err[0] != '\0');
    m.nrcpts = 0;
    assert_int_equal(queue_add(f->q, &m, id, sizeof(id), err, sizeof(err)), -1);
    const char *trailing[] = {"user@"};
    m.rcpts = trailing;
    m.nrcpts = 1;
    assert_int_equal(queue_add(f->q, &m, id, sizeof(id), err, sizeof(err)), -1);
    /* id buffer too small */
    const char *good[] = {"u@d.example"};
    m.rcpts = good;
    char small[8];
    assert_int_equal(queue_add(f->q, &m, small, sizeof(small), err, sizeof(err)), -1);
    assert_int_equal(count_all(f->q), 0);
    assert_int_equal(count_files(f->dir, "msg"), 0);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
}

/* --- due ------------------------------------------------------------------------ */

static void test_due_order(void **state)
{
    struct fixture *f = *state;
    char a[32], b[32], c[32];
    add_msg(f->q, "s@me.example", T0, a, "1@c.example", "2@a.example");
    add_msg(f->q, "s@me.example", T0, b, "3@b.example", "4@a.example", "5@A.EXAMPLE");
    add_msg(f->q, "s@me.example", T0 + 100, c, "6@a.example");

    struct queue_list l;
    list_due(f->q, T0, 0, &l);
    assert_int_equal(l.n, 5); /* c is not due yet */
    for (size_t i = 1; i < l.n; i++) {
        int cmp = strcmp(l.v[i - 1].domain, l.v[i].domain);
        assert_true(cmp < 0 || (cmp == 0 && strcmp(l.v[i - 1].msg_id, l.v[i].msg_id) <= 0));
    }
    assert_string_equal(l.v[0].domain, "a.example");
    assert_string_equal(l.v[1].domain, "a.example");
    assert_string_equal(l.v[2].domain, "a.example");
    assert_string_equal(l.v[3].domain, "b.example");
    assert_string_equal(l.v[4].domain, "c.example");
    /* Within a domain, one message's recipients are together. */
    size_t first_b = strcmp(a, b) < 0 ? 1 : 0;
    assert_string_equal(l.v[first_b].msg_id, b);
    assert_string_equal(l.v[first_b + 1].msg_id, b);
    queue_list_free(&l);

    list_due(f->q, T0 + 100, 0, &l);
    assert_int_equal(l.n, 6);
    queue_list_free(&l);

    list_due(f->q, T0 + 100, 2, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].domain, "a.example");
    queue_list_free(&l);

    list_due(f->q, T0 - 1, 0, &l);
    assert_int_equal(l.n, 0);
    assert_null(l.v);
    queue_list_free(&l);

    time_t t;
    char err[256];
    assert_int_equal(queue_next_due(f->q, &t, err, sizeof(err)), 1);
    assert_int_equal(t, T0);
}

static void test_next_due_empty(void **state)
{
    struct fixture *f = *state;
    time_t t = 42;
    char err[256];
    assert_int_equal(queue_next_due(f->q, &t, err, sizeof(err)), 0);
    assert_int_equal(t, 42);
    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);
}

/* --- results ---------------------------------------------------------------------- */

static void test_rcpt_done_results(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, id, "ok@d.example", "later@d.example", "bad@d.example");
    done(f->q, "ok@d.example", QUEUE_RESULT_DELIVERED, "250 2.0.0 queued as X", T0 + 5, 0);
    done(f->q, "later@d.example", QUEUE_RESULT_DEFERRED, "451 4.3.0 try later", T0 + 5, T0 + 65);
    done(f->q, "bad@d.example", QUEUE_RESULT_FAILED, "550 5.1.1 no such user", T0 + 5, 0);

    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 3);
    const struct queue_rcpt *r = find_rcpt(&l, "ok@d.example");
    assert_int_equal(r->state, QUEUE_DELIVERED);
    assert_int_equal(r->attempts, 1);
    assert_int_equal(r->last_attempt, T0 + 5);
    assert_string_equal(r->last_reply, "250 2.0.0 queued as X");
    r = find_rcpt(&l, "later@d.example");
    assert_int_equal(r->state, QUEUE_PENDING);
    assert_int_equal(r->attempts, 1);
    assert_int_equal(r->next_attempt, T0 + 65);
    assert_string_equal(r->last_reply, "451 4.3.0 try later");
    r = find_rcpt(&l, "bad@d.example");
    assert_int_equal(r->state, QUEUE_FAILED);
    assert_int_equal(r->attempts, 1);
    assert_string_equal(r->last_reply, "550 5.1.1 no such user");
    /* pending first */
    assert_int_equal(l.v[0].state, QUEUE_PENDING);
    int64_t ok_id = find_rcpt(&l, "ok@d.example")->rcpt_id;
    int64_t bad_id = find_rcpt(&l, "bad@d.example")->rcpt_id;
    queue_list_free(&l);

    /* A final recipient takes no second result (no second DSN). */
    assert_int_equal(
        queue_rcpt_done(f->q, ok_id, QUEUE_RESULT_FAILED, "x", T0 + 6, 0, err, sizeof(err)), -1);
    assert_int_equal(
        queue_rcpt_done(f->q, bad_id, QUEUE_RESULT_FAILED, "x", T0 + 6, 0, err, sizeof(err)), -1);
    assert_int_equal(
        queue_rcpt_done(f->q, 999999, QUEUE_RESULT_DELIVERED, "x", T0 + 6, 0, err, sizeof(err)),
        -1);
    list_dsn(f->q, T0 + 6, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].rcpt_id, bad_id);
    queue_list_free(&l);

    /* Not due before its next attempt; NULL reply is "". */
    list_due(f->q, T0 + 64, 0, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);
    done(f->q, "later@d.example", QUEUE_RESULT_DEFERRED, NULL, T0 + 70, T0 + 300);
    list_all(f->q, &l);
    r = find_rcpt(&l, "later@d.example");
    assert_int_equal(r->attempts, 2);
    assert_string_equal(r->last_reply, "");
    queue_list_free(&l);
}

static void test_deferral_schedule(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    unsigned delays[QUEUE_SCHEDULE_MAX];
    size_t nd;
    assert_int_equal(queue_schedule_parse("1m,5m,1h", delays, &nd, err, sizeof(err)), 0);
    add_msg(f->q, "s@me.example", T0, id, "r@slow.example");

    time_t now = T0;
    time_t expect[] = {T0 + 60, 0, 0, 0};
    for (unsigned attempt = 1; attempt <= 4; attempt++) {
        struct queue_list l;
        list_due(f->q, now, 0, &l);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.v[0].attempts, attempt - 1);
        time_t next = queue_next_attempt(delays, nd, attempt, now);
        assert_int_equal(queue_rcpt_done(f->q, l.v[0].rcpt_id, QUEUE_RESULT_DEFERRED, "421 busy",
                                         now, next, err, sizeof(err)),
                         0);
        queue_list_free(&l);
        if (attempt == 1)
            assert_int_equal(next, expect[0]);
        if (attempt == 2)
            assert_int_equal(next, now + 300);
        if (attempt >= 3)
            assert_int_equal(next, now + 3600); /* the last delay repeats */
        list_due(f->q, next - 1, 0, &l);
        assert_int_equal(l.n, 0);
        queue_list_free(&l);
        time_t t;
        assert_int_equal(queue_next_due(f->q, &t, err, sizeof(err)), 1);
        assert_int_equal(t, next);
        now = next;
    }
}

/* --- removal and DSNs ------------------------------------------------------------- */

static void test_removed_when_all_delivered(void **state)
{
    struct fixture *f = *state;
    char id[32];
    add_msg(f->q, "s@me.example", T0, id, "a@d.example", "b@e.example");
    struct queue_list l;
    list_all(f->q, &l);
    char file[128];
    snprintf(file, sizeof(file), "%s", l.v[0].file);
    queue_list_free(&l);

    done(f->q, "a@d.example", QUEUE_RESULT_DELIVERED, "250 ok", T0 + 1, 0);
    assert_int_equal(count_all(f->q), 2); /* delivered row kept while b is pending */
    assert_true(msg_file_exists(f->dir, file));
    done(f->q, "b@e.example", QUEUE_RESULT_DELIVERED, "250 ok", T0 + 1, 0);
    assert_int_equal(count_all(f->q), 0);
    assert_false(msg_file_exists(f->dir, file));
    assert_int_equal(count_files(f->dir, "msg"), 0);
}

static void test_removed_after_dsn_sent(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, id, "a@d.example", "b@e.example");
    done(f->q, "a@d.example", QUEUE_RESULT_FAILED, "550 5.1.1 unknown", T0 + 1, 0);
    done(f->q, "b@e.example", QUEUE_RESULT_DELIVERED, "250 ok", T0 + 1, 0);
    /* No pending recipient, but a's DSN is not sent: the message stays. */
    assert_int_equal(count_all(f->q), 2);
    assert_int_equal(count_files(f->dir, "msg"), 1);

    struct queue_list l;
    list_dsn(f->q, T0 + 2, DAY, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].rcpt, "a@d.example");
    assert_int_equal(l.v[0].state, QUEUE_FAILED);
    assert_string_equal(l.v[0].msg_id, id);
    assert_true(msg_file_exists(f->dir, l.v[0].file)); /* the DSN can read the original */
    int64_t rid = l.v[0].rcpt_id;
    queue_list_free(&l);

    assert_int_equal(queue_dsn_sent(f->q, &rid, 1, err, sizeof(err)), 0);
    assert_int_equal(count_all(f->q), 0);
    assert_int_equal(count_files(f->dir, "msg"), 0);
    list_dsn(f->q, T0 + 2, DAY, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);
    /* Sent twice: nothing to do, not an error. */
    assert_int_equal(queue_dsn_sent(f->q, &rid, 1, err, sizeof(err)), 0);
    assert_int_equal(queue_dsn_sent(f->q, NULL, 0, err, sizeof(err)), 0);
}

static void test_dsn_kept_while_pending(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, id, "a@d.example", "b@e.example");
    done(f->q, "a@d.example", QUEUE_RESULT_FAILED, "550 no", T0 + 1, 0);
    int64_t a = rcpt_id_of(f->q, "a@d.example");
    assert_int_equal(queue_dsn_sent(f->q, &a, 1, err, sizeof(err)), 0);
    /* b still pending: the message stays. */
    assert_int_equal(count_all(f->q), 2);
    assert_int_equal(count_files(f->dir, "msg"), 1);
    done(f->q, "b@e.example", QUEUE_RESULT_DELIVERED, "250 ok", T0 + 2, 0);
    assert_int_equal(count_all(f->q), 0);
    assert_int_equal(count_files(f->dir, "msg"), 0);
}

static void test_no_dsn_for_null_sender_or_dsn(void **state)
{
    struct fixture *f = *state;
    char a[32], b[32], c[32];
    add_msg(f->q, "", T0, a, "x@d.example");
    add_msg_opts(f->q, &(struct add_opts){.sender = "s@me.example", .is_dsn = true}, b,
                 "y@d.example", NULL);
    add_msg(f->q, "<>", T0, c, "z@d.example");
    /* Old enough for delay warnings, yet none. */
    struct queue_list l;
    list_dsn(f->q, T0 + 10 * DAY, 3600, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);

    done(f->q, "x@d.example", QUEUE_RESULT_FAILED, "550 no", T0 + 1, 0);
    done(f->q, "y@d.example", QUEUE_RESULT_FAILED, "550 no", T0 + 1, 0);
    done(f->q, "z@d.example", QUEUE_RESULT_FAILED, "550 no", T0 + 1, 0);
    list_dsn(f->q, T0 + 10 * DAY, 3600, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);
    /* Nothing left to do for them: gone at once. */
    assert_int_equal(count_all(f->q), 0);
    assert_int_equal(count_files(f->dir, "msg"), 0);
}

static void test_dsn_delay_warnings(void **state)
{
    struct fixture *f = *state;
    char a[32], b[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, a, "slow1@d.example", "slow2@d.example", "dead@d.example");
    add_msg(f->q, "t@me.example", T0 + 3600, b, "slow3@e.example");
    done(f->q, "dead@d.example", QUEUE_RESULT_FAILED, "550 5.1.1 unknown", T0 + 1, 0);
    done(f->q, "slow1@d.example", QUEUE_RESULT_DEFERRED, "451 later", T0 + 1, T0 + 600);

    struct queue_list l;
    /* Before warn_after: only the failure. */
    list_dsn(f->q, T0 + 4 * 3600 - 1, 4 * 3600, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].state, QUEUE_FAILED);
    queue_list_free(&l);
    /* warn_after 0: no warnings at all. */
    list_dsn(f->q, T0 + 10 * DAY, 0, &l);
    assert_int_equal(l.n, 1);
    queue_list_free(&l);

    /* At arrival + 4h: message a's two pending recipients, after its failure. */
    list_dsn(f->q, T0 + 4 * 3600, 4 * 3600, &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].msg_id, a);
    assert_int_equal(l.v[0].state, QUEUE_FAILED);
    assert_string_equal(l.v[0].rcpt, "dead@d.example");
    assert_int_equal(l.v[1].state, QUEUE_PENDING);
    assert_int_equal(l.v[2].state, QUEUE_PENDING);
    assert_string_equal(l.v[1].msg_id, a);
    assert_string_equal(l.v[2].msg_id, a);
    assert_false(l.v[1].warned);
    int64_t warn_ids[2] = {l.v[1].rcpt_id, l.v[2].rcpt_id};
    queue_list_free(&l);

    /* Later: message b is old enough too; grouped by msg_id. */
    list_dsn(f->q, T0 + 5 * 3600, 4 * 3600, &l);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[3].msg_id, b);
    queue_list_free(&l);

    /* The warnings are sent: not listed again; the rows stay pending. */
    assert_int_equal(queue_dsn_sent(f->q, warn_ids, 2, err, sizeof(err)), 0);
    list_dsn(f->q, T0 + 5 * 3600, 4 * 3600, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].rcpt, "dead@d.example");
    assert_string_equal(l.v[1].rcpt, "slow3@e.example");
    queue_list_free(&l);
    list_all(f->q, &l);
    const struct queue_rcpt *r = find_rcpt(&l, "slow1@d.example");
    assert_true(r->warned);
    assert_int_equal(r->state, QUEUE_PENDING);
    assert_int_equal(r->next_attempt, T0 + 600);
    assert_false(find_rcpt(&l, "slow3@e.example")->warned);
    queue_list_free(&l);

    /* A warned recipient that then fails still gets its failure DSN. */
    done(f->q, "slow1@d.example", QUEUE_RESULT_FAILED, "550 gone", T0 + 6 * 3600, 0);
    list_dsn(f->q, T0 + 6 * 3600, 4 * 3600, &l);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[0].state, QUEUE_FAILED);
    assert_int_equal(l.v[1].state, QUEUE_FAILED);
    queue_list_free(&l);
}

/* The DSN queued with dsn_for: the original's DSN is sent in the same
 * transaction; a failed queue_add changes nothing. */
static void test_dsn_queued_atomically(void **state)
{
    struct fixture *f = *state;
    char id[32], dsn_id[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, id, "a@d.example", "b@d.example");
    done(f->q, "a@d.example", QUEUE_RESULT_FAILED, "550 5.1.1 unknown", T0 + 1, 0);
    done(f->q, "b@d.example", QUEUE_RESULT_FAILED, "550 5.1.1 unknown", T0 + 1, 0);
    struct queue_list l;
    list_dsn(f->q, T0 + 2, 0, &l);
    assert_int_equal(l.n, 2);
    int64_t ids[2] = {l.v[0].rcpt_id, l.v[1].rcpt_id};
    queue_list_free(&l);

    const char *bad[] = {"no-domain"};
    const char *to[] = {"s@me.example"};
    struct iovec iov = {"dsn", 3};
    struct queue_new m = {.sender = "",
                          .rcpts = bad,
                          .nrcpts = 1,
                          .iov = &iov,
                          .iovcnt = 1,
                          .is_dsn = true,
                          .now = T0 + 2,
                          .dsn_for = ids,
                          .ndsn_for = 2};
    assert_int_equal(queue_add(f->q, &m, dsn_id, sizeof(dsn_id), err, sizeof(err)), -1);
    list_dsn(f->q, T0 + 2, 0, &l);
    assert_int_equal(l.n, 2);
    queue_list_free(&l);

    m.rcpts = to;
    assert_int_equal(queue_add(f->q, &m, dsn_id, sizeof(dsn_id), err, sizeof(err)), 0);
    list_dsn(f->q, T0 + 2, 0, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);
    /* The original is gone, the DSN waits for delivery. */
    list_all(f->q, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].msg_id, dsn_id);
    assert_true(l.v[0].is_dsn);
    assert_string_equal(l.v[0].sender, "");
    queue_list_free(&l);
    assert_int_equal(count_files(f->dir, "msg"), 1);
}

/* --- administration -------------------------------------------------------------- */

static void test_flush(void **state)
{
    struct fixture *f = *state;
    char a[32], b[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, a, "x@d.example", "y@d.example");
    add_msg(f->q, "s@me.example", T0, b, "z@e.example");
    done(f->q, "x@d.example", QUEUE_RESULT_DEFERRED, "451", T0, T0 + 3600);
    done(f->q, "y@d.example", QUEUE_RESULT_DELIVERED, "250", T0, 0);
    done(f->q, "z@e.example", QUEUE_RESULT_DEFERRED, "451", T0, T0 + 7200);
    struct queue_list l;
    list_due(f->q, T0 + 10, 0, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);

    assert_int_equal(queue_flush(f->q, T0 + 10, err, sizeof(err)), 2);
    list_due(f->q, T0 + 10, 0, &l);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[0].next_attempt, T0 + 10);
    queue_list_free(&l);
    /* A flush never delays: an earlier next_attempt is kept. */
    assert_int_equal(queue_flush(f->q, T0 + 20, err, sizeof(err)), 2);
    list_due(f->q, T0 + 10, 0, &l);
    assert_int_equal(l.n, 2);
    queue_list_free(&l);
}

static void test_delete(void **state)
{
    struct fixture *f = *state;
    char a[32], b[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, a, "x@d.example", "y@d.example");
    add_msg(f->q, "s@me.example", T0, b, "z@e.example");
    done(f->q, "x@d.example", QUEUE_RESULT_FAILED, "550", T0, 0);
    assert_int_equal(queue_delete(f->q, a, err, sizeof(err)), 1);
    assert_int_equal(queue_delete(f->q, a, err, sizeof(err)), 0);
    assert_int_equal(queue_delete(f->q, "Q0000000000000000", err, sizeof(err)), 0);
    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].msg_id, b);
    queue_list_free(&l);
    assert_int_equal(count_files(f->dir, "msg"), 1);
    /* No DSN for a deleted message. */
    list_dsn(f->q, T0 + DAY, 0, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);
}

static void test_bounce(void **state)
{
    struct fixture *f = *state;
    char a[32], b[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, a, "x@d.example", "y@d.example", "w@d.example");
    add_msg(f->q, "", T0, b, "z@e.example");
    done(f->q, "x@d.example", QUEUE_RESULT_DEFERRED, "451 later", T0 + 5, T0 + 60);
    done(f->q, "w@d.example", QUEUE_RESULT_DELIVERED, "250 ok", T0 + 5, 0);

    assert_int_equal(queue_bounce(f->q, a, T0 + 100, err, sizeof(err)), 1);
    assert_int_equal(queue_bounce(f->q, "Qnope", T0 + 100, err, sizeof(err)), 0);
    struct queue_list l;
    list_all(f->q, &l);
    const struct queue_rcpt *r = find_rcpt(&l, "x@d.example");
    assert_int_equal(r->state, QUEUE_FAILED);
    assert_string_equal(r->last_reply, "5.0.0 bounced by the administrator");
    assert_int_equal(r->last_attempt, T0 + 5);
    assert_int_equal(r->attempts, 1);
    assert_int_equal(find_rcpt(&l, "y@d.example")->state, QUEUE_FAILED);
    assert_int_equal(find_rcpt(&l, "w@d.example")->state, QUEUE_DELIVERED);
    assert_string_equal(find_rcpt(&l, "w@d.example")->last_reply, "250 ok");
    queue_list_free(&l);
    list_dsn(f->q, T0 + 100, 0, &l);
    assert_int_equal(l.n, 2);
    queue_list_free(&l);
    list_due(f->q, T0 + DAY, 0, &l);
    assert_int_equal(l.n, 1); /* only z of b */
    queue_list_free(&l);

    /* A bounce from "": no DSN, so it goes at once. */
    assert_int_equal(queue_bounce(f->q, b, T0 + 100, err, sizeof(err)), 1);
    list_due(f->q, T0 + DAY, 0, &l);
    assert_int_equal(l.n, 0);
    queue_list_free(&l);
    assert_int_equal(count_files(f->dir, "msg"), 1);
}

static void test_expire(void **state)
{
    struct fixture *f = *state;
    char old[32], young[32], oldnull[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, old, "x@d.example", "y@d.example");
    add_msg(f->q, "s@me.example", T0 + 3 * DAY, young, "z@d.example");
    add_msg(f->q, "", T0, oldnull, "n@d.example");
    done(f->q, "y@d.example", QUEUE_RESULT_DELIVERED, "250", T0 + 1, 0);

    assert_int_equal(queue_expire(f->q, T0 + 5 * DAY, 0, err, sizeof(err)), 0);
    assert_int_equal(queue_expire(f->q, T0 + 5 * DAY, 5 * DAY, err, sizeof(err)), 0);
    assert_int_equal(queue_expire(f->q, T0 + 5 * DAY + 1, 5 * DAY, err, sizeof(err)), 2);
    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 3); /* x (failed), y (delivered), z; oldnull is gone */
    const struct queue_rcpt *r = find_rcpt(&l, "x@d.example");
    assert_int_equal(r->state, QUEUE_FAILED);
    assert_string_equal(r->last_reply, "4.4.7 delivery time expired after 5 days");
    assert_int_equal(find_rcpt(&l, "z@d.example")->state, QUEUE_PENDING);
    assert_null(find_rcpt(&l, "n@d.example"));
    queue_list_free(&l);
    list_dsn(f->q, T0 + 5 * DAY + 1, 0, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].rcpt, "x@d.example");
    queue_list_free(&l);
    assert_int_equal(count_files(f->dir, "msg"), 2);
    /* Nothing more to expire. */
    assert_int_equal(queue_expire(f->q, T0 + 5 * DAY + 1, 5 * DAY, err, sizeof(err)), 0);
    /* Hours when days do not divide. */
    assert_int_equal(queue_expire(f->q, T0 + 3 * DAY + 7201, 7200, err, sizeof(err)), 1);
    list_all(f->q, &l);
    assert_string_equal(find_rcpt(&l, "z@d.example")->last_reply,
                        "4.4.7 delivery time expired after 2 hours");
    queue_list_free(&l);
}

/* --- recovery ------------------------------------------------------------------- */

static void write_file(const char *data, const char *rel, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/queue/%s", data, rel);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_recover_tmp_and_orphans(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, id, "x@d.example");
    /* A crash while writing, and one between rename and COMMIT. */
    write_file(f->dir, "tmp/1700000000.1_1.00", "partial");
    write_file(f->dir, "msg/1700000000.1_2.00", "never committed");
    assert_int_equal(count_files(f->dir, "tmp"), 1);
    assert_int_equal(count_files(f->dir, "msg"), 2);

    assert_int_equal(queue_recover(f->q, err, sizeof(err)), 0);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    assert_int_equal(count_files(f->dir, "msg"), 1);
    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].state, QUEUE_PENDING);
    assert_true(msg_file_exists(f->dir, l.v[0].file));
    queue_list_free(&l);
    /* Idempotent. */
    assert_int_equal(queue_recover(f->q, err, sizeof(err)), 0);
    assert_int_equal(count_all(f->q), 1);
    assert_int_equal(count_files(f->dir, "msg"), 1);
}

static void test_recover_missing_file(void **state)
{
    struct fixture *f = *state;
    char a[32], b[32], c[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, a, "x@d.example", "y@d.example");
    add_msg(f->q, "", T0, b, "z@d.example");
    add_msg(f->q, "s@me.example", T0, c, "keep@d.example");
    done(f->q, "y@d.example", QUEUE_RESULT_DELIVERED, "250 ok", T0 + 1, 0);
    struct queue_list l;
    list_all(f->q, &l);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/queue/msg/%s", f->dir, find_rcpt(&l, "x@d.example")->file);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/queue/msg/%s", f->dir, find_rcpt(&l, "z@d.example")->file);
    assert_int_equal(unlink(path), 0);
    queue_list_free(&l);

    assert_int_equal(queue_recover(f->q, err, sizeof(err)), 0);
    list_all(f->q, &l);
    /* a: x failed (DSN needed), y stays delivered; b (from "") is gone. */
    assert_int_equal(l.n, 3);
    const struct queue_rcpt *r = find_rcpt(&l, "x@d.example");
    assert_int_equal(r->state, QUEUE_FAILED);
    assert_string_equal(r->last_reply, "4.3.0 queued file lost");
    assert_int_equal(find_rcpt(&l, "y@d.example")->state, QUEUE_DELIVERED);
    assert_null(find_rcpt(&l, "z@d.example"));
    assert_int_equal(find_rcpt(&l, "keep@d.example")->state, QUEUE_PENDING);
    char file[128];
    snprintf(file, sizeof(file), "%s", r->file);
    queue_list_free(&l);

    list_dsn(f->q, T0 + 2, 0, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].rcpt, "x@d.example");
    uint8_t *data = NULL;
    size_t len;
    assert_int_equal(queue_msg_read(f->q, l.v[0].file, &data, &len, err, sizeof(err)), -1);
    int64_t rid = l.v[0].rcpt_id;
    queue_list_free(&l);
    assert_int_equal(queue_dsn_sent(f->q, &rid, 1, err, sizeof(err)), 0);
    assert_int_equal(count_all(f->q), 1);
    assert_int_equal(count_files(f->dir, "msg"), 1);
}

/* --- persistence and concurrency ------------------------------------------------------ */

static void test_persistence(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    add_msg(f->q, "s@me.example", T0, id, "x@d.example", "y@d.example");
    done(f->q, "x@d.example", QUEUE_RESULT_DEFERRED, "451 later", T0 + 1, T0 + 61);
    queue_close(&f->q);
    assert_null(f->q);
    assert_int_equal(queue_open(&f->q, f->dir, err, sizeof(err)), 0);
    assert_int_equal(queue_recover(f->q, err, sizeof(err)), 0);
    struct queue_list l;
    list_all(f->q, &l);
    assert_int_equal(l.n, 2);
    const struct queue_rcpt *r = find_rcpt(&l, "x@d.example");
    assert_string_equal(r->msg_id, id);
    assert_int_equal(r->attempts, 1);
    assert_int_equal(r->next_attempt, T0 + 61);
    assert_string_equal(r->last_reply, "451 later");
    assert_true(msg_file_exists(f->dir, r->file));
    queue_list_free(&l);

    /* The database is in WAL mode at schema version 1. */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/queue/queue.sqlite", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 1);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", path[PATH_MAX];
    queue_close(&f->q);
    snprintf(path, sizeof(path), "%s/queue/queue.sqlite", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(queue_open(&f->q, f->dir, err, sizeof(err)), -1);
    assert_null(f->q);
    assert_non_null(strstr(err, "newer"));
}

static void test_two_handles(void **state)
{
    struct fixture *f = *state;
    char id[32], err[256] = "";
    struct queue *q2;
    assert_int_equal(queue_open(&q2, f->dir, err, sizeof(err)), 0);
    add_msg(f->q, "s@me.example", T0, id, "x@d.example", "y@d.example");
    /* The second handle sees it and records results... */
    struct queue_list l;
    list_due(q2, T0, 0, &l);
    assert_int_equal(l.n, 2);
    int64_t x = l.v[0].rcpt_id, y = l.v[1].rcpt_id;
    queue_list_free(&l);
    assert_int_equal(queue_rcpt_done(q2, x, QUEUE_RESULT_DELIVERED, "250", T0, 0, err, sizeof(err)),
                     0);
    /* ...which the first sees, and the same result is not taken twice. */
    assert_int_equal(
        queue_rcpt_done(f->q, x, QUEUE_RESULT_DELIVERED, "250", T0, 0, err, sizeof(err)), -1);
    list_due(f->q, T0, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].rcpt_id, y);
    queue_list_free(&l);
    /* A read in progress on one does not block the other's writes. */
    assert_int_equal(
        queue_rcpt_done(f->q, y, QUEUE_RESULT_DELIVERED, "250", T0, 0, err, sizeof(err)), 0);
    assert_int_equal(count_all(q2), 0);
    assert_int_equal(count_files(f->dir, "msg"), 0);
    assert_int_equal(queue_recover(q2, err, sizeof(err)), 0);
    queue_close(&q2);
}

#define THREAD_MSGS 40

struct worker_arg {
    const char *dir;
    int n;
    int failures;
};

/* Its own handle: add THREAD_MSGS messages, then deliver every due
 * recipient it sees (racing the other worker for them). */
static void *worker(void *p)
{
    struct worker_arg *a = p;
    struct queue *q;
    char err[256], id[32];
    if (queue_open(&q, a->dir, err, sizeof(err)) < 0) {
        a->failures++;
        return NULL;
    }
    for (int i = 0; i < THREAD_MSGS; i++) {
        char rcpt[64];
        snprintf(rcpt, sizeof(rcpt), "r%d-%d@d%d.example", a->n, i, i % 3);
        const char *rcpts[] = {rcpt};
        struct iovec iov = {.iov_base = rcpt, .iov_len = strlen(rcpt)};
        struct queue_new m = {.sender = "s@me.example",
                              .rcpts = rcpts,
                              .nrcpts = 1,
                              .iov = &iov,
                              .iovcnt = 1,
                              .now = T0};
        if (queue_add(q, &m, id, sizeof(id), err, sizeof(err)) < 0)
            a->failures++;
    }
    struct queue_list l;
    if (queue_due(q, T0, 0, &l, err, sizeof(err)) < 0) {
        a->failures++;
    } else {
        /* Another worker may have taken a recipient first: -1 then. */
        for (size_t i = 0; i < l.n; i++)
            queue_rcpt_done(q, l.v[i].rcpt_id, QUEUE_RESULT_DELIVERED, "250", T0, 0, err,
                            sizeof(err));
        queue_list_free(&l);
    }
    queue_close(&q);
    return NULL;
}

static void test_concurrent_handles(void **state)
{
    struct fixture *f = *state;
    pthread_t t[3];
    struct worker_arg a[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (struct worker_arg){.dir = f->dir, .n = i};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
    /* Every message was queued; those the workers saw are delivered and
     * gone. Deliver the rest here. */
    struct queue_list l;
    list_due(f->q, T0, 0, &l);
    char err[256];
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(queue_rcpt_done(f->q, l.v[i].rcpt_id, QUEUE_RESULT_DELIVERED, "250", T0, 0,
                                         err, sizeof(err)),
                         0);
    queue_list_free(&l);
    assert_int_equal(count_all(f->q), 0);
    assert_int_equal(count_files(f->dir, "msg"), 0);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_add_and_list),
        T(test_add_flags_and_iov),
        T(test_add_rejects),
        T(test_due_order),
        T(test_next_due_empty),
        T(test_rcpt_done_results),
        T(test_deferral_schedule),
        T(test_removed_when_all_delivered),
        T(test_removed_after_dsn_sent),
        T(test_dsn_kept_while_pending),
        T(test_no_dsn_for_null_sender_or_dsn),
        T(test_dsn_delay_warnings),
        T(test_dsn_queued_atomically),
        T(test_flush),
        T(test_delete),
        T(test_bounce),
        T(test_expire),
        T(test_recover_tmp_and_orphans),
        T(test_recover_missing_file),
        T(test_persistence),
        T(test_newer_schema_refused),
        T(test_two_handles),
        T(test_concurrent_handles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
