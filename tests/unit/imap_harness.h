/* The harness of the IMAP command tests: a real store in a temporary
 * folder with one account, and sessions driven through the request cycle
 * the daemon uses (feed, execute, execute_done). Define ACCOUNT (in
 * example.org) and PASSWORD before including. */
#ifndef CORREIO_IMAP_HARNESS_H
#define CORREIO_IMAP_HARNESS_H

#include "testutil.h"

#include <sys/uio.h>
#include <time.h>

#include "cli/cli.h"
#include "lib/buf.h"
#include "proto/imap/imap_session.h"
#include "store/store.h"

struct fx {
    char *dir;
    struct store *st;
};

static const struct imap_session_config cfg = {
    .hostname = "mail.example.org",
    .starttls_available = false,
    .allow_plaintext_auth = true,
    .max_bad_commands = 1000,
    .max_line = 65536,
    .append_limit = 16u << 20,
};

static inline int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256] = "", hash[256];
    f->dir = test_tmpdir();
    if (store_open(&f->st, f->dir, err, sizeof(err)) < 0 ||
        store_domain_add(f->st, "example.org", err, sizeof(err)) < 0 ||
        cli_password_hash(PASSWORD, hash, sizeof(hash)) < 0 ||
        store_account_add(f->st, ACCOUNT, hash, err, sizeof(err)) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    store_close(&f->st);
    test_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static inline uint32_t deliver_len(struct fx *f, const char *mailbox, const void *text, size_t len,
                            time_t when)
{
    struct store_delivery d;
    struct iovec iov = {.iov_base = (void *)text, .iov_len = len};
    memset(&d, 0, sizeof(d));
    d.account = ACCOUNT;
    d.mailbox = mailbox;
    d.iov = &iov;
    d.iovcnt = 1;
    d.internal_date = when;
    if (store_deliver(f->st, &d, 1) < 0)
        fail_msg("deliver: %s", d.err_r);
    return d.uid_r;
}

/* Feed in, run every request it makes; the output (NUL-terminated, the
 * caller frees; *len_r bytes when not NULL). */
static inline char *run_len(struct fx *f, struct imap_session *s, const char *in, size_t *len_r)
{
    struct buf out = BUF_INIT;
    imap_session_feed(s, in, strlen(in), &out);
    while (imap_session_request(s) == IMAP_REQ_EXECUTE) {
        imap_session_execute(s, f->st);
        imap_session_execute_done(s, &out);
    }
    size_t n = buf_size(&out);
    char *r = malloc(n + 1);
    memcpy(r, buf_ptr(&out), n);
    r[n] = '\0';
    buf_free(&out);
    if (len_r)
        *len_r = n;
    return r;
}

static inline char *run(struct fx *f, struct imap_session *s, const char *in)
{
    return run_len(f, s, in, NULL);
}

#define EXPECT(f, s, in, want)                                                                     \
    do {                                                                                           \
        char *got_ = run(f, s, in);                                                                \
        assert_string_equal(got_, want);                                                           \
        free(got_);                                                                                \
    } while (0)

static inline void expect_has(struct fx *f, struct imap_session *s, const char *in, const char *want)
{
    char *got = run(f, s, in);
    if (!strstr(got, want))
        fail_msg("%s: expected to contain [%s], got [%s]", in, want, got);
    free(got);
}

/* A logged-in session; with sel, that command ("s SELECT INBOX\r\n") run too. */
static inline struct imap_session *session(struct fx *f, const char *id, const char *sel)
{
    struct imap_session *s = imap_session_new(&cfg, "127.0.0.1", id, false);
    assert_non_null(s);
    struct buf out = BUF_INIT;
    imap_session_start(s, &out);
    buf_free(&out);
    expect_has(f, s, "l LOGIN " ACCOUNT " \"" PASSWORD "\"\r\n", "l OK");
    if (sel)
        expect_has(f, s, sel, "s OK");
    return s;
}

#endif
