/* pop3_conn — the POP3 protocol on a conn: feeds the pure pop3_session
 * and answers its requests on the mailbox worker pool (the IMAP workers):
 * password/APOP checks, the maildrop lock and listing, RETR/TOP reads and
 * the UPDATE state's expunge. Failed logins are answered late and counted
 * per client address (authfail.c).
 *
 * The maildrop lock (RFC 1939 8: one session per maildrop) is a set of
 * account names in this process, under a mutex because workers take it
 * right after the password check, so the listing a session gets is the
 * one it keeps. The connection releases it when it ends, however it ends.
 */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "lib/log.h"
#include "net/workers.h"
#include "proto/pop3/pop3_session.h"
#include "store/store.h"

#define POP3_MAX_SECRET 1024
/* RETR read-ahead: messages one worker job reads for a session (the
 * pending RETR and those pipelined after it), and the octets it may hold
 * for the session beyond the first message. */
#define POP3_READAHEAD_MAX 16
#define POP3_READAHEAD_OCTETS (1024 * 1024)

/* --- maildrop locks ------------------------------------------------------------ */

struct pop3_lock {
    struct pop3_lock *next;
    char account[];
};
static pthread_mutex_t pop3_locks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pop3_lock *pop3_locks;

/* true when account was free and is now held. */
static bool pop3_lock_take(const char *account)
{
    size_t len = strlen(account);
    struct pop3_lock *l = malloc(sizeof(*l) + len + 1);
    if (!l)
        return false;
    memcpy(l->account, account, len + 1);
    pthread_mutex_lock(&pop3_locks_mu);
    for (struct pop3_lock *p = pop3_locks; p; p = p->next) {
        if (strcmp(p->account, account) == 0) {
            pthread_mutex_unlock(&pop3_locks_mu);
            free(l);
            return false;
        }
    }
    l->next = pop3_locks;
    pop3_locks = l;
    pthread_mutex_unlock(&pop3_locks_mu);
    return true;
}

static void pop3_lock_release(const char *account)
{
    struct pop3_lock *found = NULL;
    pthread_mutex_lock(&pop3_locks_mu);
    for (struct pop3_lock **pp = &pop3_locks; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->account, account) == 0) {
            found = *pp;
            *pp = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&pop3_locks_mu);
    free(found);
}

/* --- settings ------------------------------------------------------------------------ */

struct pop3_settings *pop3_settings_new(const struct config *cfg, bool tls)
{
    struct pop3_settings *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->hostname, sizeof(s->hostname), "%s", cfg->hostname);
    s->session.hostname = s->hostname;
    s->session.starttls_available = tls;
    s->session.allow_plaintext_auth = cfg->pop3_allow_plaintext_auth;
    s->session.max_errors = cfg->pop3_max_errors;
    s->session.max_auth_failures = cfg->pop3_max_auth_failures;
    s->session.max_line = 512; /* RFC 2449 4: 255 octets; some clients send longer AUTH lines */
    s->max_auth_failures_per_ip = cfg->pop3_max_auth_failures_per_ip;
    s->refs = 1;
    return s;
}

void pop3_settings_put(struct pop3_settings *s)
{
    if (s && --s->refs == 0)
        free(s);
}

/* --- the connection ------------------------------------------------------------------ */

struct pop3_ctx {
    struct pop3_session *sess;
    struct pop3_settings *settings;
    struct conn *conn;
    struct work_item item;     /* the job on a worker */
    bool running;              /* item is queued or running */
    bool stop_after_job;       /* SIGTERM came while a job ran */
    bool locked;               /* holds the maildrop lock of account */
    char account[320];
    int64_t mailbox_id;        /* INBOX */
    struct pop3_file {         /* the maildrop, by message number - 1 */
        char name[128];
        uint32_t uid;
        uint64_t size;
    } *files;
    size_t nfiles;
    /* Messages read ahead, waiting for their RETR (pop3_session_pipelined_retrs). */
    struct pop3_ahead {
        unsigned msgno;
        long top;              /* -1 for RETR, else TOP's line count */
        int result;            /* enum pop3_retr_result */
        struct buf reply;      /* POP3_RETR_OK: the whole reply (pop3_format_reply) */
    } ahead[POP3_READAHEAD_MAX];
    size_t nahead;
    struct event *delay_ev;    /* holds the answer of a failed login */

    /* The job: inputs copied on the loop thread, results read back there. */
    enum pop3_request_type job;
    enum pop3_auth_kind auth_kind;
    char user[320];
    char secret[POP3_MAX_SECRET]; /* password, or APOP digest */
    char banner[320];
    bool refused;              /* too many failures from this address: no check */
    struct pop3_ahead job_retr[POP3_READAHEAD_MAX]; /* RETR: what to read, and what was */
    size_t njob_retr;
    uint32_t *uids;            /* UPDATE */
    size_t nuids;
    int result;                /* enum pop3_auth_result / pop3_retr_result / 0 or -1 */
    struct pop3_msg *msgs;     /* AUTH result */
    size_t nmsgs;
    char err[256];
};

static void pop3_conn_process(struct conn *c, enum pop3_session_status st);

static void pop3_ahead_clear(struct pop3_ctx *x)
{
    for (size_t i = 0; i < x->nahead; i++)
        buf_free(&x->ahead[i].reply);
    x->nahead = 0;
}

/* The read-ahead entry of message msgno for RETR (top < 0) or TOP, or -1. */
static int pop3_ahead_find(const struct pop3_ctx *x, unsigned msgno, long top)
{
    for (size_t i = 0; i < x->nahead; i++)
        if (x->ahead[i].msgno == msgno && x->ahead[i].top == top)
            return (int)i;
    return -1;
}

/* Answer the pending RETR/TOP with read-ahead entry i (which goes). */
static enum pop3_session_status pop3_ahead_answer(struct conn *c, size_t i)
{
    struct pop3_ctx *x = c->ctx;
    struct pop3_ahead a = x->ahead[i];
    x->ahead[i] = x->ahead[--x->nahead];
    if (a.result == POP3_RETR_TEMPFAIL)
        log_error("pop3", "event=retr_failed id=%s account=%s msg=%u", c->id, x->account,
                  a.msgno);
    enum pop3_session_status st =
        a.result == POP3_RETR_OK
            ? pop3_session_retr_done_reply(x->sess, &a.reply, &c->out)
            : pop3_session_retr_done(x->sess, (enum pop3_retr_result)a.result, NULL, 0, &c->out);
    buf_free(&a.reply);
    return st;
}

/* APOP: digest == MD5(banner secret) in lower-case hex (RFC 1939 7). */
static bool pop3_apop_matches(const char *banner, const char *secret, const char *digest)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    bool ok = m && EVP_DigestInit_ex(m, EVP_md5(), NULL) == 1 &&
              EVP_DigestUpdate(m, banner, strlen(banner)) == 1 &&
              EVP_DigestUpdate(m, secret, strlen(secret)) == 1 &&
              EVP_DigestFinal_ex(m, md, &mdlen) == 1 && mdlen == 16;
    EVP_MD_CTX_free(m);
    if (!ok || strlen(digest) != 32)
        return false;
    char hex[33];
    for (unsigned i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    ok = CRYPTO_memcmp(hex, digest, 32) == 0;
    OPENSSL_cleanse(md, sizeof(md));
    OPENSSL_cleanse(hex, sizeof(hex));
    return ok;
}

/* AUTH on a worker: check, lock, list INBOX. */
static void pop3_job_auth(struct store *st, struct pop3_ctx *x)
{
    x->result = POP3_AUTH_FAILED;
    if (x->refused)
        return;
    if (x->auth_kind == POP3_AUTH_APOP) {
        char secret[POP3_MAX_SECRET];
        enum store_lookup r = store_account_apop_secret(st, x->user, x->account,
                                                        sizeof(x->account), secret,
                                                        sizeof(secret));
        if (r == STORE_LOOKUP_ERROR) {
            x->result = POP3_AUTH_TEMPFAIL;
            return;
        }
        if (r != STORE_LOOKUP_FOUND)
            return;
        if (!secret[0]) {
            x->result = POP3_AUTH_NO_APOP;
            return;
        }
        bool ok = pop3_apop_matches(x->banner, secret, x->secret);
        OPENSSL_cleanse(secret, sizeof(secret));
        if (!ok)
            return;
    } else {
        int r = store_account_authenticate(st, x->user, x->secret, x->account,
                                           sizeof(x->account));
        if (r < 0)
            x->result = POP3_AUTH_TEMPFAIL;
        if (r != 1)
            return;
    }
    if (!pop3_lock_take(x->account)) {
        x->result = POP3_AUTH_IN_USE;
        return;
    }
    struct store_mailbox mb;
    struct store_msg_list list = {0};
    if (store_mailbox_get(st, x->account, "INBOX", &mb, x->err, sizeof(x->err)) != 1 ||
        store_msgs_load(st, x->account, mb.id, 1, UINT32_MAX, 0, &list, x->err,
                        sizeof(x->err)) < 0)
        goto tempfail;
    x->msgs = calloc(list.n ? list.n : 1, sizeof(*x->msgs));
    x->files = calloc(list.n ? list.n : 1, sizeof(*x->files));
    if (!x->msgs || !x->files)
        goto tempfail;
    for (size_t i = 0; i < list.n; i++) {
        const struct store_msg *m = &list.v[i];
        x->msgs[i].uid = m->uid;
        x->msgs[i].size = m->size;
        /* RFC 1939 7: unique within the maildrop and never reused. A UID
         * is never reused under one UIDVALIDITY, and a new UIDVALIDITY
         * makes every id new. */
        snprintf(x->msgs[i].uidl, sizeof(x->msgs[i].uidl), "%08x%08x", mb.uidvalidity, m->uid);
        snprintf(x->files[i].name, sizeof(x->files[i].name), "%s", m->file);
        x->files[i].uid = m->uid;
        x->files[i].size = m->size;
    }
    x->nmsgs = x->nfiles = list.n;
    x->mailbox_id = mb.id;
    x->locked = true;
    x->result = POP3_AUTH_OK;
    store_msg_list_free(&list);
    return;
tempfail:
    store_msg_list_free(&list);
    free(x->msgs);
    free(x->files);
    x->msgs = NULL;
    x->files = NULL;
    pop3_lock_release(x->account);
    x->result = POP3_AUTH_TEMPFAIL;
}

/* RETR/TOP on a worker: each message of the job, unless IMAP expunged it
 * meanwhile, read and formatted as the reply (byte-stuffed), so the loop
 * thread only hands it to the connection. */
static void pop3_job_retr(struct store *st, struct pop3_ctx *x)
{
    /* Which of the job's messages are still in INBOX: one index query over
     * their UID range when it is compact (pipelined RETRs of consecutive
     * messages), else one per message. */
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < x->njob_retr; i++) {
        uint32_t uid = x->files[x->job_retr[i].msgno - 1].uid;
        lo = uid < lo ? uid : lo;
        hi = uid > hi ? uid : hi;
    }
    struct store_msg_list range = {0};
    bool have_range = x->njob_retr > 1 && hi - lo < 4 * (uint32_t)x->njob_retr + 16 &&
                      store_msgs_load(st, x->account, x->mailbox_id, lo, hi, 0, &range, x->err,
                                      sizeof(x->err)) == 0;
    for (size_t i = 0; i < x->njob_retr; i++) {
        struct pop3_ahead *a = &x->job_retr[i];
        const struct pop3_file *f = &x->files[a->msgno - 1];
        bool present = false;
        if (have_range) {
            for (size_t k = 0; k < range.n && !present; k++)
                present = range.v[k].uid == f->uid;
        } else {
            struct store_msg_list one = {0};
            if (store_msgs_load(st, x->account, x->mailbox_id, f->uid, f->uid, 0, &one, x->err,
                                sizeof(x->err)) < 0) {
                a->result = POP3_RETR_TEMPFAIL;
                continue;
            }
            present = one.n > 0;
            store_msg_list_free(&one);
        }
        uint8_t *data = NULL;
        size_t len = 0;
        if (!present)
            a->result = POP3_RETR_GONE;
        else if (store_msg_read(st, x->account, f->name, &data, &len, x->err, sizeof(x->err)) < 0)
            a->result = POP3_RETR_TEMPFAIL;
        else if (pop3_format_reply(data, len, a->top, f->size, &a->reply) < 0)
            a->result = POP3_RETR_TEMPFAIL;
        else
            a->result = POP3_RETR_OK;
        free(data);
    }
    if (have_range)
        store_msg_list_free(&range);
}

static void pop3_job_run(void *wctx, struct work_item *item)
{
    struct store *st = wctx;
    struct pop3_ctx *x = (struct pop3_ctx *)((char *)item - offsetof(struct pop3_ctx, item));
    if (!st) {
        x->result = x->job == POP3_REQ_AUTH ? POP3_AUTH_TEMPFAIL : -1;
        for (size_t i = 0; i < x->njob_retr; i++)
            x->job_retr[i].result = POP3_RETR_TEMPFAIL;
        return;
    }
    switch (x->job) {
    case POP3_REQ_AUTH:
        pop3_job_auth(st, x);
        OPENSSL_cleanse(x->secret, sizeof(x->secret));
        break;
    case POP3_REQ_RETR:
        pop3_job_retr(st, x);
        break;
    case POP3_REQ_UPDATE:
        x->result = x->nuids == 0 ? 0
                                  : store_msgs_expunge(st, x->account, x->mailbox_id, x->uids,
                                                       x->nuids, x->err, sizeof(x->err));
        break;
    default:
        break;
    }
}

static void pop3_conn_finish(struct conn *c)
{
    struct pop3_ctx *x = c->ctx;
    enum pop3_session_status st = POP3_SESSION_CONTINUE;
    x->running = false;
    switch (x->job) {
    case POP3_REQ_AUTH: {
        const char *user = x->user;
        if (x->result == POP3_AUTH_OK) {
            log_info("pop3", "event=login id=%s account=%s messages=%zu", c->id, x->account,
                     x->nmsgs);
        } else {
            char q[400];
            log_info("pop3", "event=login_failed id=%s ip=%s user=%s result=%d", c->id, c->ip,
                     log_quote(q, sizeof(q), user), x->result);
        }
        st = pop3_session_auth_done(x->sess, (enum pop3_auth_result)x->result, x->account,
                                    x->msgs, x->nmsgs, &c->out);
        free(x->msgs);
        x->msgs = NULL;
        break;
    }
    case POP3_REQ_RETR: {
        /* Everything read goes to the read-ahead set (room was made before
         * the job); the pending request is among it. */
        if (x->err[0])
            log_error("pop3", "event=retr_read_failed id=%s account=%s error=\"%s\"", c->id,
                      x->account, x->err);
        for (size_t i = 0; i < x->njob_retr; i++) {
            if (x->nahead < POP3_READAHEAD_MAX)
                x->ahead[x->nahead++] = x->job_retr[i];
            else
                buf_free(&x->job_retr[i].reply);
        }
        x->njob_retr = 0;
        const struct pop3_request *req = pop3_session_request(x->sess);
        int i = req && req->type == POP3_REQ_RETR
                    ? pop3_ahead_find(x, req->msgno, req->top_lines < 0 ? -1 : req->top_lines)
                    : -1;
        st = i >= 0 ? pop3_ahead_answer(c, (size_t)i)
                    : pop3_session_retr_done(x->sess, POP3_RETR_TEMPFAIL, NULL, 0, &c->out);
        break;
    }
    case POP3_REQ_UPDATE:
        if (x->result < 0)
            log_error("pop3", "event=update_failed id=%s account=%s error=\"%s\"", c->id,
                      x->account, x->err);
        else
            log_info("pop3", "event=update id=%s account=%s deleted=%zu", c->id, x->account,
                     x->nuids);
        if (x->result == 0 && x->nuids > 0)
            daemon_mailbox_changed(c->d, x->account);
        free(x->uids);
        x->uids = NULL;
        st = pop3_session_update_done(x->sess, x->result == 0, &c->out);
        break;
    default:
        break;
    }
    if (x->stop_after_job) {
        conn_flush(c);
        if (st != POP3_SESSION_CLOSE)
            pop3_session_shutdown(x->sess, &c->out);
        conn_close(c);
        return;
    }
    pop3_conn_process(c, st);
    if (!c->closing && !x->running)
        conn_resume(c);
}

static void pop3_conn_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    pop3_conn_finish(arg);
}

static void pop3_conn_done(struct work_item *item)
{
    struct pop3_ctx *x = (struct pop3_ctx *)((char *)item - offsetof(struct pop3_ctx, item));
    struct conn *c = x->conn;
    if (!conn_job_end(c))
        return; /* the client left; destroy released the lock */
    if (x->job == POP3_REQ_AUTH &&
        (x->result == POP3_AUTH_FAILED || x->result == POP3_AUTH_NO_APOP)) {
        /* Answer a failed login late, the later the more this address failed. */
        unsigned n = authfail_add(c->ip);
        unsigned secs = n < 5 ? n : 5;
        if (!x->delay_ev)
            x->delay_ev = evtimer_new(c->d->base, pop3_conn_delay_cb, c);
        if (x->delay_ev) {
            x->running = true; /* still busy for shutdown's sake */
            struct timeval tv = {.tv_sec = secs, .tv_usec = 0};
            evtimer_add(x->delay_ev, &tv);
            return;
        }
    }
    pop3_conn_finish(c);
}

static void pop3_conn_submit(struct conn *c)
{
    struct pop3_ctx *x = c->ctx;
    x->running = true;
    x->item.done = pop3_conn_done;
    x->item.run = pop3_job_run;
    conn_flush(c);
    conn_pause(c);
    conn_job_begin(c);
    workers_submit(c->d->imap_workers, &x->item);
}

/* Answer the session's requests until it needs input or waits on a worker. */
static void pop3_conn_process(struct conn *c, enum pop3_session_status st)
{
    struct pop3_ctx *x = c->ctx;
    if (st == POP3_SESSION_CLOSE) {
        conn_close(c);
        return;
    }
    if (x->running)
        return;
    const struct pop3_request *req = pop3_session_request(x->sess);
    if (!req || req->type == POP3_REQ_NONE) {
        conn_flush(c);
        return;
    }
    x->job = req->type;
    x->result = 0;
    x->err[0] = '\0';
    switch (req->type) {
    case POP3_REQ_AUTH: {
        x->auth_kind = req->auth_kind;
        snprintf(x->user, sizeof(x->user), "%s", req->user ? req->user : "");
        const char *sec = req->auth_kind == POP3_AUTH_APOP ? req->digest : req->password;
        snprintf(x->secret, sizeof(x->secret), "%s", sec ? sec : "");
        snprintf(x->banner, sizeof(x->banner), "%s", req->banner ? req->banner : "");
        unsigned fails = authfail_count(c->ip);
        x->refused = fails >= x->settings->max_auth_failures_per_ip;
        if (x->refused)
            log_warn("pop3", "event=login_refused id=%s ip=%s failures=%u", c->id, c->ip, fails);
        pop3_conn_submit(c);
        return;
    }
    case POP3_REQ_RETR:
        if (!req->msg || req->msgno < 1 || req->msgno > x->nfiles) {
            pop3_conn_process(c, pop3_session_retr_done(x->sess, POP3_RETR_TEMPFAIL, NULL, 0,
                                                        &c->out));
            return;
        }
        long top = req->top_lines < 0 ? -1 : req->top_lines;
        int hit = pop3_ahead_find(x, req->msgno, top);
        if (hit >= 0) { /* read along with an earlier RETR */
            pop3_conn_process(c, pop3_ahead_answer(c, (size_t)hit));
            return;
        }
        /* This one, and those the client pipelined after it, in one job. What
         * was read ahead and not asked for in order is dropped. */
        pop3_ahead_clear(x);
        x->njob_retr = 0;
        x->job_retr[x->njob_retr++] = (struct pop3_ahead){.msgno = req->msgno, .top = top};
        unsigned more[POP3_READAHEAD_MAX - 1];
        size_t nmore = pop3_session_pipelined_retrs(x->sess, more, POP3_READAHEAD_MAX - 1);
        uint64_t octets = 0;
        for (size_t k = 0; k < nmore; k++) {
            uint64_t size = x->files[more[k] - 1].size;
            if (octets + size > POP3_READAHEAD_OCTETS)
                break;
            bool dup = false;
            for (size_t j = 0; j < x->njob_retr && !dup; j++)
                dup = x->job_retr[j].msgno == more[k];
            if (dup)
                continue;
            octets += size;
            x->job_retr[x->njob_retr++] = (struct pop3_ahead){.msgno = more[k], .top = -1};
        }
        pop3_conn_submit(c);
        return;
    case POP3_REQ_UPDATE:
        x->nuids = req->ndeleted;
        x->uids = NULL;
        if (req->ndeleted > 0) {
            x->uids = malloc(req->ndeleted * sizeof(*x->uids));
            if (!x->uids) {
                pop3_conn_process(c, pop3_session_update_done(x->sess, false, &c->out));
                return;
            }
            memcpy(x->uids, req->deleted, req->ndeleted * sizeof(*x->uids));
        }
        pop3_conn_submit(c);
        return;
    case POP3_REQ_STARTTLS:
        conn_start_tls(c);
        return;
    default:
        conn_flush(c);
        return;
    }
}

static int pop3_conn_open(struct conn *c)
{
    struct pop3_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return -1;
    x->conn = c;
    x->settings = c->d->pop3;
    x->settings->refs++;
    c->ctx = x;
    /* RFC 1939 7: a timestamp unique to this greeting. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char banner[320];
    snprintf(banner, sizeof(banner), "<%ld.%lld%06ld.%s@%.200s>", (long)getpid(),
             (long long)ts.tv_sec, ts.tv_nsec / 1000, c->id, x->settings->hostname);
    x->sess = pop3_session_new(&x->settings->session, c->ip, banner, c->tls_active);
    if (!x->sess)
        return -1;
    pop3_session_start(x->sess, &c->out);
    return 0;
}

static void pop3_conn_input(struct conn *c, const uint8_t *data, size_t len)
{
    struct pop3_ctx *x = c->ctx;
    pop3_conn_process(c, pop3_session_feed(x->sess, data, len, &c->out));
}

static void pop3_conn_tls_ready(struct conn *c, bool ok, const char *version, const char *cipher)
{
    struct pop3_ctx *x = c->ctx;
    pop3_conn_process(c, pop3_session_tls_done(x->sess, ok, &c->out));
}

static void pop3_conn_timeout(struct conn *c)
{
    struct pop3_ctx *x = c->ctx;
    pop3_session_timeout(x->sess, &c->out);
}

static void pop3_conn_shutdown(struct conn *c)
{
    struct pop3_ctx *x = c->ctx;
    if (x->running) {
        x->stop_after_job = true;
        return;
    }
    conn_flush(c);
    pop3_session_shutdown(x->sess, &c->out);
    conn_close(c);
}

static void pop3_conn_destroy(struct conn *c)
{
    struct pop3_ctx *x = c->ctx;
    if (!x)
        return;
    if (x->locked)
        pop3_lock_release(x->account);
    if (x->delay_ev)
        event_free(x->delay_ev);
    pop3_session_free(&x->sess);
    pop3_settings_put(x->settings);
    OPENSSL_cleanse(x->secret, sizeof(x->secret));
    free(x->files);
    free(x->msgs);
    pop3_ahead_clear(x);
    for (size_t i = 0; i < x->njob_retr; i++)
        buf_free(&x->job_retr[i].reply);
    free(x->uids);
    free(x);
    c->ctx = NULL;
}

const struct conn_proto pop3_conn_proto = {
    .name = "pop3",
    .refusal = "-ERR [SYS/TEMP] %.0s%s\r\n",
    .open = pop3_conn_open,
    .input = pop3_conn_input,
    .tls_ready = pop3_conn_tls_ready,
    .timeout = pop3_conn_timeout,
    .shutdown = pop3_conn_shutdown,
    .destroy = pop3_conn_destroy,
};
