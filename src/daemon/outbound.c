/* outbound — delivery of the outbound queue (queue/queue.h): local
 * recipients into their mailboxes, others by MX (dns/dns.h) with the SMTP
 * client (proto/smtp/smtp_client.h), results back into the queue with the
 * retry schedule, DSNs for failures and delays (queue/dsn.h).
 *
 * Threads: everything that touches queue.sqlite, message files or a
 * mailbox runs as a job on the outbound worker (one thread, its own struct
 * queue and struct store), in submission order; the SMTP conversations,
 * DNS look-ups and timers run on the loop thread.
 *
 * A scan (every few seconds, or at once after outbound_kick) expires old
 * recipients, turns failures and long delays into DSNs, and returns the
 * due recipients not already being delivered. They are grouped by domain:
 * a local domain is one local-delivery job; another domain is one
 * destination: an MX look-up, then the hosts in order, each address in
 * turn, until one greets us; over that connection the domain's messages go
 * one after another, one transaction per message with all its recipients
 * of the domain. Every recipient's result is recorded as soon as it is
 * known.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "daemon/daemon.h"
#include "dns/dns.h"
#include "lib/log.h"
#include "net/tls.h"
#include "net/workers.h"
#include "proto/smtp/received.h"
#include "proto/smtp/smtp_client.h"
#include "queue/dsn.h"
#include "queue/queue.h"
#include "store/store.h"

#define OB_SCAN_INTERVAL 5     /* seconds between scans when nothing happens */
#define OB_SCAN_MAX 500        /* recipients taken per scan */
#define OB_MAX_LOOP_HOPS 50    /* RFC 5321 6.3: more Received: fields is a loop */

struct outbound;
struct ob_dest;

/* --- jobs on the outbound worker ---------------------------------------------------- */

enum ob_job_type { OB_SCAN, OB_LOCAL, OB_READ, OB_RESULT };

struct ob_result {
    int64_t rcpt_id;
    enum queue_result result;
    unsigned attempts;     /* before this one */
    char reply[600];
};

struct ob_job {
    struct work_item item;
    struct outbound *ob;
    enum ob_job_type type;
    time_t now;
    /* OB_SCAN: out */
    struct queue_list due;
    unsigned dsns;
    time_t next_due;          /* 0: nothing pending */
    /* OB_LOCAL: in (the recipients of one local domain) */
    struct queue_list local;
    /* OB_READ: in file, out data */
    char file[128];
    uint8_t *data;
    size_t len;
    struct ob_dest *dest;
    /* OB_RESULT: in */
    struct ob_result *results;
    size_t nresults;
    int rc;
    char err[256];
};

struct ob_worker {
    struct queue *q;
    struct store *st;
    const struct outbound *ob;
};

/* --- the engine ---------------------------------------------------------------------- */

struct ob_msg {            /* one message of a destination, with its recipients there */
    char msg_id[32];
    char file[128];
    char *sender;
    bool body_8bit, smtputf8;
    size_t first, n;       /* its recipients: dest->rcpts.v[first .. first+n) */
};

enum ob_dest_state { OB_RESOLVING, OB_CONNECTING, OB_TALKING, OB_READING };

struct ob_dest {
    struct ob_dest *next;
    struct outbound *ob;
    char domain[256];
    struct queue_list rcpts;  /* owned */
    struct ob_msg *msgs;
    size_t nmsgs, cur;        /* the message being sent */
    enum ob_dest_state state;
    unsigned long dns_handle;
    struct dns_host *hosts;   /* copy of the MX answer */
    size_t nhosts, host, addr;
    bool tls_failed;          /* this is the retry of a host without STARTTLS */
    bool handshake_failed;    /* the current connection's STARTTLS handshake failed */
    struct bufferevent *bev;
    struct smtp_client *client;
    struct smtp_client_config ccfg;
    struct buf out;
    uint8_t *data;            /* the current message's bytes */
    size_t len;
    const char **rcpt_ptrs;   /* the current message's recipients */
    char last_error[512];     /* why the last host did not work */
    bool reading;             /* an OB_READ job holds this destination */
    bool zombie;              /* freed while reading: ob_read_done finishes the job */
};

struct outbound {
    struct daemon *d;
    struct workers *workers;
    struct workers_ops ops;
    struct dns *dns;
    SSL_CTX *tls;
    struct event *scan_ev;
    struct timeval scan_at;   /* when scan_ev fires, while it is pending */
    bool scanning;
    bool scan_again;
    bool stopping;
    unsigned delays[QUEUE_SCHEDULE_MAX];
    size_t ndelays;
    struct ob_dest *dests;
    unsigned nconns;
    int64_t *busy;            /* recipients being delivered */
    size_t nbusy, capbusy;
    /* delivery.relayhost: everything for other domains goes there */
    bool relay;
    char relay_host[256];
    unsigned relay_port;
    char relay_user[256];
    char relay_pass[256];
};

static void ob_dest_next_host(struct ob_dest *x);
static void ob_dest_finish(struct ob_dest *x);
static void ob_client_process(struct ob_dest *x, enum smtp_client_status st);
static void ob_scan_soon(struct outbound *ob, unsigned secs);
static void ob_bev_setup(struct ob_dest *x);

/* --- busy set ------------------------------------------------------------------------- */

static bool ob_busy_has(const struct outbound *ob, int64_t id)
{
    for (size_t i = 0; i < ob->nbusy; i++)
        if (ob->busy[i] == id)
            return true;
    return false;
}

static void ob_busy_add(struct outbound *ob, int64_t id)
{
    if (ob->nbusy == ob->capbusy) {
        size_t cap = ob->capbusy ? ob->capbusy * 2 : 64;
        int64_t *v = realloc(ob->busy, cap * sizeof(*v));
        if (!v)
            return; /* then it may be tried twice; the queue's state stays right */
        ob->busy = v;
        ob->capbusy = cap;
    }
    ob->busy[ob->nbusy++] = id;
}

static void ob_busy_del(struct outbound *ob, int64_t id)
{
    for (size_t i = 0; i < ob->nbusy; i++) {
        if (ob->busy[i] == id) {
            ob->busy[i] = ob->busy[--ob->nbusy];
            return;
        }
    }
}

/* --- the worker ---------------------------------------------------------------------- */

static void *ob_worker_new(void *arg)
{
    const struct outbound *ob = arg;
    struct ob_worker *w = calloc(1, sizeof(*w));
    char err[512];
    if (!w)
        return NULL;
    w->ob = ob;
    if (queue_open(&w->q, ob->d->cfg.data_dir, err, sizeof(err)) < 0 ||
        store_open(&w->st, ob->d->cfg.data_dir, err, sizeof(err)) < 0) {
        log_error("outbound", "event=open_failed error=\"%s\"", err);
        queue_close(&w->q);
        free(w);
        return NULL;
    }
    return w;
}

static void ob_worker_free(void *ctx)
{
    struct ob_worker *w = ctx;
    if (!w)
        return;
    queue_close(&w->q);
    store_close(&w->st);
    free(w);
}

/* DSNs for what failed or waits too long: one per message and kind. */
static unsigned ob_make_dsns(struct ob_worker *w, struct ob_job *j)
{
    const struct config *cfg = &w->ob->d->cfg;
    struct queue_list l = {0};
    char err[256];
    time_t warn = cfg->delivery_delay_warning ? (time_t)cfg->delivery_delay_warning : 0;
    if (queue_dsn_due(w->q, j->now, warn ? warn : (time_t)1 << 40, &l, err, sizeof(err)) < 0) {
        log_error("outbound", "event=dsn_due_failed error=\"%s\"", err);
        return 0;
    }
    unsigned made = 0;
    for (size_t i = 0; i < l.n;) {
        /* A run of one message and one kind. */
        bool failed = l.v[i].state == QUEUE_FAILED;
        size_t k = i;
        while (k < l.n && !strcmp(l.v[k].msg_id, l.v[i].msg_id) &&
               (l.v[k].state == QUEUE_FAILED) == failed)
            k++;
        size_t n = k - i;
        struct dsn_rcpt *r = calloc(n, sizeof(*r));
        int64_t *ids = calloc(n, sizeof(*ids));
        uint8_t *orig = NULL;
        size_t olen = 0;
        struct buf msg = BUF_INIT;
        if (r && ids)
            queue_msg_read(w->q, l.v[i].file, &orig, &olen, err, sizeof(err));
        for (size_t m = 0; r && ids && m < n; m++) {
            const struct queue_rcpt *q = &l.v[i + m];
            ids[m] = q->rcpt_id;
            r[m].final_recipient = q->rcpt;
            r[m].action = failed ? DSN_FAILED : DSN_DELAYED;
            /* "550 5.1.1 text (host)" from a server, "4.4.7 text" from
             * the queue itself: the status is the first x.y.z word. */
            char status[16] = "";
            const char *rp = q->last_reply ? q->last_reply : "";
            const char *sp = rp;
            if (strlen(rp) > 4 && rp[3] == ' ' && rp[0] >= '2' && rp[0] <= '5' && rp[1] != '.')
                sp = rp + 4;
            sscanf(sp, "%15[0-9.]", status);
            if (!strchr(status, '.'))
                status[0] = '\0';
            r[m].status = status[0] ? strdup(status) : strdup(failed ? "5.0.0" : "4.0.0");
            r[m].diagnostic = rp[0] ? rp : NULL;
            /* ob_record writes a server's reply as "... (host)". */
            size_t rl = strlen(rp);
            const char *open = rl > 2 && rp[rl - 1] == ')' ? strrchr(rp, '(') : NULL;
            if (open && open > rp && open[-1] == ' ' && rp[0] >= '2' && rp[0] <= '5' &&
                rp[3] == ' ')
                r[m].remote_mta = strndup(open + 1, (size_t)(rp + rl - 1 - (open + 1)));
            r[m].last_attempt = q->last_attempt;
            r[m].will_retry_until = failed ? 0 : q->arrival + (time_t)cfg->delivery_max_age;
        }
        char boundary[64], msgid[128], qid[40];
        snprintf(boundary, sizeof(boundary), "=_correio_%s_%lld", l.v[i].msg_id,
                 (long long)j->now);
        snprintf(msgid, sizeof(msgid), "dsn.%.40s.%lld.%s@%.60s", l.v[i].msg_id,
                 (long long)j->now, failed ? "f" : "d", cfg->hostname);
        struct dsn_params p = {
            .reporting_mta = cfg->hostname,
            .queue_id = l.v[i].msg_id,
            .envid = l.v[i].envid,
            .sender = l.v[i].sender,
            .arrival = l.v[i].arrival,
            .now = j->now,
            .boundary = boundary,
            .message_id = msgid,
            .original = orig,
            .original_len = olen,
            .rcpts = r,
            .nrcpts = n,
        };
        int ok = r && ids && dsn_build(&p, &msg) == 0;
        if (ok) {
            struct iovec iov = {.iov_base = (void *)buf_ptr(&msg), .iov_len = buf_size(&msg)};
            const char *to[1] = {l.v[i].sender};
            struct queue_new qn = {
                .sender = "", .rcpts = to, .nrcpts = 1, .iov = &iov, .iovcnt = 1,
                .is_dsn = true, .now = j->now,
                /* marked sent in the same transaction: a crash cannot double it */
                .dsn_for = ids, .ndsn_for = n,
            };
            ok = queue_add(w->q, &qn, qid, sizeof(qid), err, sizeof(err)) == 0;
            if (ok) {
                made++;
                log_info("outbound", "event=dsn id=%s for=%s to=<%s> action=%s rcpts=%zu",
                         qid, l.v[i].msg_id, l.v[i].sender, failed ? "failed" : "delayed", n);
            }
        }
        if (!ok)
            log_error("outbound", "event=dsn_failed for=%s error=\"%s\"", l.v[i].msg_id, err);
        for (size_t m = 0; r && m < n; m++) {
            free((char *)r[m].status);
            free((char *)r[m].remote_mta);
        }
        free(r);
        free(ids);
        free(orig);
        buf_free(&msg);
        i = k;
    }
    queue_list_free(&l);
    return made;
}

/* Local recipients of queued mail (sendmail, DSNs to local senders). */
static void ob_run_local(struct ob_worker *w, struct ob_job *j)
{
    char err[256];
    for (size_t i = 0; i < j->local.n; i++) {
        const struct queue_rcpt *r = &j->local.v[i];
        char account[320], reply[600];
        enum queue_result res;
        enum store_lookup lk = store_account_lookup(w->st, r->rcpt, account, sizeof(account),
                                                    NULL, 0);
        uint8_t *data = NULL;
        size_t len = 0;
        if (lk == STORE_LOOKUP_NO_USER || lk == STORE_LOOKUP_NO_DOMAIN) {
            res = QUEUE_RESULT_FAILED;
            snprintf(reply, sizeof(reply), "550 5.1.1 <%s>: no such user here", r->rcpt);
        } else if (lk != STORE_LOOKUP_FOUND ||
                   queue_msg_read(w->q, r->file, &data, &len, err, sizeof(err)) < 0) {
            res = QUEUE_RESULT_DEFERRED;
            snprintf(reply, sizeof(reply), "451 4.3.0 local delivery failed: %s",
                     lk == STORE_LOOKUP_FOUND ? err : "account look-up failed");
        } else {
            char rp[400];
            snprintf(rp, sizeof(rp), "Return-Path: <%s>\r\n", r->sender);
            struct iovec iov[2] = {{.iov_base = rp, .iov_len = strlen(rp)},
                                   {.iov_base = data, .iov_len = len}};
            struct store_delivery dl = {.account = account, .mailbox = "INBOX", .iov = iov,
                                        .iovcnt = 2, .internal_date = j->now};
            if (store_deliver(w->st, &dl, 1) == 0 && dl.result_r == 0) {
                res = QUEUE_RESULT_DELIVERED;
                snprintf(reply, sizeof(reply), "250 2.0.0 delivered to %s (uid %u)", account,
                         dl.uid_r);
            } else {
                res = QUEUE_RESULT_DEFERRED;
                snprintf(reply, sizeof(reply), "451 4.3.0 local delivery failed: %s", dl.err_r);
            }
        }
        free(data);
        time_t next = queue_next_attempt(w->ob->delays, w->ob->ndelays, r->attempts + 1, j->now);
        if (queue_rcpt_done(w->q, r->rcpt_id, res, reply, j->now, next, err, sizeof(err)) < 0)
            log_error("outbound", "event=result_failed id=%s error=\"%s\"", r->msg_id, err);
        log_info("outbound", "event=%s id=%s to=<%s> relay=local reply=\"%s\"",
                 res == QUEUE_RESULT_DELIVERED ? "delivered"
                 : res == QUEUE_RESULT_FAILED  ? "bounced"
                                               : "deferred",
                 r->msg_id, r->rcpt, reply);
    }
}

static void ob_worker_run(void *ctx, struct work_item **items, size_t n)
{
    struct ob_worker *w = ctx;
    for (size_t i = 0; i < n; i++) {
        struct ob_job *j = (struct ob_job *)items[i];
        char err[256] = "";
        if (!w) {
            j->rc = -1;
            continue;
        }
        switch (j->type) {
        case OB_SCAN: {
            const struct config *cfg = &w->ob->d->cfg;
            if (queue_expire(w->q, j->now, (time_t)cfg->delivery_max_age, err, sizeof(err)) < 0)
                log_error("outbound", "event=expire_failed error=\"%s\"", err);
            j->dsns = ob_make_dsns(w, j);
            j->rc = queue_due(w->q, j->now, OB_SCAN_MAX, &j->due, j->err, sizeof(j->err));
            time_t t;
            if (queue_next_due(w->q, &t, err, sizeof(err)) == 1)
                j->next_due = t;
            break;
        }
        case OB_LOCAL:
            ob_run_local(w, j);
            break;
        case OB_READ:
            j->rc = queue_msg_read(w->q, j->file, &j->data, &j->len, j->err, sizeof(j->err));
            break;
        case OB_RESULT:
            for (size_t k = 0; k < j->nresults; k++) {
                const struct ob_result *r = &j->results[k];
                time_t next =
                    queue_next_attempt(w->ob->delays, w->ob->ndelays, r->attempts + 1, j->now);
                if (queue_rcpt_done(w->q, r->rcpt_id, r->result, r->reply, j->now, next, err,
                                    sizeof(err)) < 0)
                    log_error("outbound", "event=result_failed rcpt=%lld error=\"%s\"",
                              (long long)r->rcpt_id, err);
            }
            break;
        }
    }
}

static struct ob_job *ob_job_new(struct outbound *ob, enum ob_job_type type,
                                 void (*done)(struct work_item *))
{
    struct ob_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->ob = ob;
    j->type = type;
    j->now = time(NULL);
    j->item.done = done;
    return j;
}

static void ob_job_free(struct ob_job *j)
{
    queue_list_free(&j->due);
    queue_list_free(&j->local);
    free(j->data);
    free(j->results);
    free(j);
}

/* --- results ------------------------------------------------------------------------ */

static void ob_results_done(struct work_item *item)
{
    struct ob_job *j = (struct ob_job *)item;
    struct outbound *ob = j->ob;
    for (size_t i = 0; i < j->nresults; i++)
        ob_busy_del(ob, j->results[i].rcpt_id);
    ob_job_free(j);
}

/* Record the result of recipients [first, first+n) of x (they leave the busy set
 * once it is committed). */
static void ob_record(struct ob_dest *x, size_t first, size_t n, const struct smtp_client_reply *rep,
                      const char *fallback_reply, enum queue_result fallback)
{
    struct outbound *ob = x->ob;
    struct ob_job *j = ob_job_new(ob, OB_RESULT, ob_results_done);
    if (!j)
        return; /* they stay pending and are tried again after a restart */
    j->results = calloc(n ? n : 1, sizeof(*j->results));
    if (!j->results) {
        free(j);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct queue_rcpt *q = &x->rcpts.v[first + i];
        struct ob_result *r = &j->results[j->nresults++];
        r->rcpt_id = q->rcpt_id;
        r->attempts = q->attempts;
        const struct smtp_client_reply *rp = rep ? &rep[i] : NULL;
        if (rp) {
            r->result = rp->outcome == SMTP_CLIENT_OK         ? QUEUE_RESULT_DELIVERED
                        : rp->outcome == SMTP_CLIENT_PERMFAIL ? QUEUE_RESULT_FAILED
                                                              : QUEUE_RESULT_DEFERRED;
            const char *host = x->host < x->nhosts ? x->hosts[x->host].name : x->domain;
            if (rp->code)
                snprintf(r->reply, sizeof(r->reply), "%d %s%s%s (%s)", rp->code, rp->status,
                         rp->status[0] ? " " : "", rp->text, host);
            else
                snprintf(r->reply, sizeof(r->reply), "%s %s (%s)",
                         rp->outcome == SMTP_CLIENT_PERMFAIL ? "554 5.0.0" : "451 4.4.0",
                         rp->text, host);
        } else {
            r->result = fallback;
            snprintf(r->reply, sizeof(r->reply), "%s", fallback_reply);
        }
        log_info("outbound", "event=%s id=%s to=<%s> relay=%s reply=\"%s\"",
                 r->result == QUEUE_RESULT_DELIVERED ? "delivered"
                 : r->result == QUEUE_RESULT_FAILED  ? "bounced"
                                                     : "deferred",
                 q->msg_id, q->rcpt, x->host < x->nhosts ? x->hosts[x->host].name : "-", r->reply);
    }
    workers_submit(ob->workers, &j->item);
}

/* --- one destination ------------------------------------------------------------------ */

static void ob_dest_free(struct ob_dest *x)
{
    struct outbound *ob = x->ob;
    for (struct ob_dest **pp = &ob->dests; *pp; pp = &(*pp)->next) {
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    }
    if (x->reading && !x->zombie) { /* its read job still points here */
        x->zombie = true;
        if (x->bev) {
            bufferevent_free(x->bev);
            x->bev = NULL;
            ob->nconns--;
        }
        return;
    }
    if (x->dns_handle)
        dns_cancel(ob->dns, x->dns_handle);
    if (x->bev) {
        bufferevent_free(x->bev);
        ob->nconns--;
    }
    smtp_client_free(&x->client);
    buf_free(&x->out);
    for (size_t i = 0; i < x->nmsgs; i++)
        free(x->msgs[i].sender);
    free(x->msgs);
    free(x->hosts);
    free(x->data);
    free(x->rcpt_ptrs);
    queue_list_free(&x->rcpts);
    free(x);
}

/* Every message from cur on ends with the same outcome (no host, a lost
 * connection...): record it, then the destination is done. */
static void ob_dest_fail_rest(struct ob_dest *x, enum queue_result res, const char *reply)
{
    for (size_t m = x->cur; m < x->nmsgs; m++)
        ob_record(x, x->msgs[m].first, x->msgs[m].n, NULL, reply, res);
    x->cur = x->nmsgs;
    ob_dest_finish(x);
}

static void ob_dest_finish(struct ob_dest *x)
{
    struct outbound *ob = x->ob;
    log_debug("outbound", "event=dest_done domain=%s", x->domain);
    ob_dest_free(x);
    if (!ob->stopping)
        ob_scan_soon(ob, 0); /* a connection is free: more may go */
}

static void ob_flush(struct ob_dest *x)
{
    if (x->bev && buf_size(&x->out)) {
        bufferevent_write(x->bev, buf_ptr(&x->out), buf_size(&x->out));
        buf_reset(&x->out);
    }
    if (x->bev && x->client) {
        struct timeval tv = {.tv_sec = smtp_client_timeout(x->client), .tv_usec = 0};
        bufferevent_set_timeouts(x->bev, &tv, &tv);
    }
}

static void ob_read_done(struct work_item *item);

/* Start the message x->cur: read it on the worker. */
static void ob_next_message(struct ob_dest *x)
{
    if (x->cur >= x->nmsgs) {
        enum smtp_client_status st = smtp_client_quit(x->client, &x->out);
        ob_flush(x);
        ob_client_process(x, st);
        return;
    }
    struct ob_job *j = ob_job_new(x->ob, OB_READ, ob_read_done);
    if (!j) {
        ob_dest_fail_rest(x, QUEUE_RESULT_DEFERRED, "451 4.3.0 out of memory");
        return;
    }
    j->dest = x;
    snprintf(j->file, sizeof(j->file), "%s", x->msgs[x->cur].file);
    x->state = OB_READING;
    x->reading = true;
    /* Nothing from the server while the file is read: it waits for us. */
    if (x->bev)
        bufferevent_disable(x->bev, EV_READ);
    workers_submit(x->ob->workers, &j->item);
}

static void ob_read_done(struct work_item *item)
{
    struct ob_job *j = (struct ob_job *)item;
    struct ob_dest *x = j->dest;
    x->reading = false;
    if (x->zombie) { /* stopped meanwhile: its recipients stay pending */
        ob_job_free(j);
        ob_dest_free(x);
        return;
    }
    if (x->bev)
        bufferevent_enable(x->bev, EV_READ);
    if (j->rc < 0) {
        log_error("outbound", "event=read_failed file=%s error=\"%s\"", j->file, j->err);
        ob_record(x, x->msgs[x->cur].first, x->msgs[x->cur].n, NULL,
                  "451 4.3.0 cannot read the queued message", QUEUE_RESULT_DEFERRED);
        ob_job_free(j);
        x->cur++;
        ob_next_message(x);
        return;
    }
    free(x->data);
    x->data = j->data;
    x->len = j->len;
    j->data = NULL;
    ob_job_free(j);
    const struct ob_msg *m = &x->msgs[x->cur];
    if (dsn_count_received(x->data, x->len) > OB_MAX_LOOP_HOPS) {
        ob_record(x, m->first, m->n, NULL,
                  "554 5.4.6 mail loop: too many Received: header fields", QUEUE_RESULT_FAILED);
        x->cur++;
        ob_next_message(x);
        return;
    }
    free(x->rcpt_ptrs);
    x->rcpt_ptrs = calloc(m->n, sizeof(*x->rcpt_ptrs));
    if (!x->rcpt_ptrs) {
        ob_dest_fail_rest(x, QUEUE_RESULT_DEFERRED, "451 4.3.0 out of memory");
        return;
    }
    for (size_t i = 0; i < m->n; i++)
        x->rcpt_ptrs[i] = x->rcpts.v[m->first + i].rcpt;
    struct smtp_client_msg cm = {
        .mail_from = m->sender,
        .rcpts = x->rcpt_ptrs,
        .nrcpts = m->n,
        .data = x->data,
        .len = x->len,
        .body_8bit = m->body_8bit,
        .smtputf8 = m->smtputf8,
    };
    x->state = OB_TALKING;
    enum smtp_client_status st = smtp_client_send(x->client, &cm, &x->out);
    ob_flush(x);
    ob_client_process(x, st);
}

/* The SMTP client's requests. */
static void ob_client_process(struct ob_dest *x, enum smtp_client_status st)
{
    for (;;) {
        switch (smtp_client_request(x->client)) {
        case SMTP_CLIENT_REQ_NONE:
            ob_flush(x);
            if (st == SMTP_CLIENT_CLOSE)
                goto closed;
            return;
        case SMTP_CLIENT_REQ_STARTTLS: {
            ob_flush(x);
            SSL *ssl = x->ob->tls ? SSL_new(x->ob->tls) : NULL;
            struct bufferevent *tb = NULL;
            if (ssl) {
                SSL_set_tlsext_host_name(ssl, x->hosts[x->host].name);
                tb = bufferevent_openssl_filter_new(bufferevent_get_base(x->bev), x->bev, ssl,
                                                    BUFFEREVENT_SSL_CONNECTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
            }
            if (!tb) {
                if (ssl)
                    SSL_free(ssl);
                x->handshake_failed = true;
                st = smtp_client_tls_done(x->client, false, &x->out);
                continue;
            }
            x->bev = tb;
            ob_bev_setup(x);
            return; /* the handshake's outcome comes as an event */
        }
        case SMTP_CLIENT_REQ_READY:
            if (x->state == OB_CONNECTING) {
                x->state = OB_TALKING;
                log_info("outbound", "event=connected domain=%s host=%s tls=%s", x->domain,
                         x->hosts[x->host].name, smtp_client_tls_active(x->client) ? "yes" : "no");
            }
            ob_next_message(x);
            return;
        case SMTP_CLIENT_REQ_RESULT: {
            const struct smtp_client_result *r = smtp_client_result(x->client);
            const struct ob_msg *m = &x->msgs[x->cur];
            ob_record(x, m->first, m->n, r && r->nrcpts == m->n ? r->rcpt : NULL,
                      "451 4.4.0 no result for the recipient", QUEUE_RESULT_DEFERRED);
            x->cur++;
            st = smtp_client_result_done(x->client, &x->out);
            continue;
        }
        case SMTP_CLIENT_REQ_CLOSED:
            goto closed;
        }
    }
closed:;
    /* The session is over: the next host if nothing was sent yet and the
     * failure was about this host, else what is left is deferred. */
    const struct smtp_client_reply *e = smtp_client_error(x->client);
    bool connect_failed = x->state == OB_CONNECTING && e && e->code == 0 && x->last_error[0];
    if (e && !connect_failed) {
        if (e->code)
            snprintf(x->last_error, sizeof(x->last_error), "%d %s%s%.300s (%.150s)", e->code,
                     e->status, e->status[0] ? " " : "", e->text, x->hosts[x->host].name);
        else
            snprintf(x->last_error, sizeof(x->last_error), "451 4.4.2 %.300s (%.150s)", e->text,
                     x->hosts[x->host].name);
    }
    if (x->bev) {
        bufferevent_free(x->bev);
        x->bev = NULL;
        x->ob->nconns--;
    }
    bool tls_retry =
        x->handshake_failed && !x->tls_failed && !x->ob->d->cfg.delivery_require_tls;
    x->handshake_failed = false;
    smtp_client_free(&x->client);
    if (x->cur >= x->nmsgs) {
        ob_dest_finish(x);
        return;
    }
    if (tls_retry) { /* the handshake failed: this host once more, in clear */
        x->tls_failed = true;
        log_warn("outbound", "event=tls_failed domain=%s host=%s retry=plain", x->domain,
                 x->hosts[x->host].name);
        ob_dest_next_host(x);
        return;
    }
    x->tls_failed = false;
    if (x->state != OB_CONNECTING)
        x->addr = DNS_MAX_ADDRS; /* it answered and failed: on to the next host */
    ob_dest_next_host(x);       /* else its next address first */
}

static void ob_read_cb(struct bufferevent *bev, void *arg)
{
    struct ob_dest *x = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    while (x->client && (n = evbuffer_get_length(in)) > 0) {
        uint8_t chunk[4096];
        size_t take = n < sizeof(chunk) ? n : sizeof(chunk);
        evbuffer_remove(in, chunk, take);
        enum smtp_client_status st = smtp_client_feed(x->client, chunk, take, &x->out);
        ob_flush(x);
        if (smtp_client_request(x->client) != SMTP_CLIENT_REQ_NONE || st == SMTP_CLIENT_CLOSE) {
            ob_client_process(x, st);
            return; /* x may be gone */
        }
    }
}

static void ob_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct ob_dest *x = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (x->client && smtp_client_request(x->client) == SMTP_CLIENT_REQ_STARTTLS) {
            ob_client_process(x, smtp_client_tls_done(x->client, true, &x->out));
        }
        return;
    }
    enum smtp_client_status st;
    if (!x->client) {
        return;
    }
    if (smtp_client_request(x->client) == SMTP_CLIENT_REQ_STARTTLS) {
        x->handshake_failed = true;
        st = smtp_client_tls_done(x->client, false, &x->out);
    } else if (what & BEV_EVENT_TIMEOUT) {
        st = smtp_client_timed_out(x->client, &x->out);
    } else {
        if (x->state == OB_CONNECTING && (what & BEV_EVENT_ERROR))
            snprintf(x->last_error, sizeof(x->last_error), "451 4.4.1 cannot connect to %s: %s",
                     x->hosts[x->host].name, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        st = smtp_client_conn_lost(x->client, &x->out);
    }
    ob_client_process(x, st);
}

static void ob_bev_setup(struct ob_dest *x)
{
    bufferevent_setcb(x->bev, ob_read_cb, NULL, ob_event_cb, x);
    bufferevent_enable(x->bev, EV_READ | EV_WRITE);
    ob_flush(x);
}

/* Connect to the next address: of this host, else of the next host. */
static void ob_dest_next_host(struct ob_dest *x)
{
    struct outbound *ob = x->ob;
    for (;;) {
        if (x->host >= x->nhosts) {
            ob_dest_fail_rest(x, QUEUE_RESULT_DEFERRED,
                              x->last_error[0] ? x->last_error
                                               : "451 4.4.1 no server of the domain answered");
            return;
        }
        if (x->tls_failed) {
            /* the same address again, without STARTTLS */
        } else if (x->addr >= x->hosts[x->host].naddrs) {
            x->host++;
            x->addr = 0;
            continue;
        }
        const char *ip = x->hosts[x->host].addrs[x->tls_failed && x->addr > 0 ? x->addr - 1
                                                                              : x->addr];
        if (!x->tls_failed)
            x->addr++;
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        socklen_t sl;
        unsigned port = ob->relay ? ob->relay_port : ob->d->cfg.delivery_remote_smtp_port;
        if (strchr(ip, ':')) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)port);
            if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
                continue;
            sl = sizeof(*s6);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)port);
            if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
                continue;
            sl = sizeof(*s4);
        }
        bool need_tls = ob->d->cfg.delivery_require_tls || (ob->relay && ob->relay_user[0]);
        x->ccfg = (struct smtp_client_config){
            .helo_name = ob->d->cfg.hostname,
            .starttls = need_tls        ? SMTP_CLIENT_TLS_REQUIRE
                        : x->tls_failed ? SMTP_CLIENT_TLS_NEVER
                                        : SMTP_CLIENT_TLS_OPPORTUNISTIC,
            .auth_user = ob->relay && ob->relay_user[0] ? ob->relay_user : NULL,
            .auth_password = ob->relay && ob->relay_user[0] ? ob->relay_pass : NULL,
        };
        x->client = smtp_client_new(&x->ccfg, x->hosts[x->host].name);
        x->bev = bufferevent_socket_new(ob->d->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!x->client || !x->bev) {
            smtp_client_free(&x->client);
            if (x->bev)
                bufferevent_free(x->bev);
            x->bev = NULL;
            ob_dest_fail_rest(x, QUEUE_RESULT_DEFERRED, "451 4.3.0 out of memory");
            return;
        }
        ob->nconns++;
        x->state = OB_CONNECTING;
        ob_bev_setup(x);
        log_debug("outbound", "event=connect domain=%s host=%s ip=%s port=%u", x->domain,
                  x->hosts[x->host].name, ip, port);
        if (bufferevent_socket_connect(x->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
            snprintf(x->last_error, sizeof(x->last_error), "451 4.4.1 cannot connect to %s [%s]",
                     x->hosts[x->host].name, ip);
            bufferevent_free(x->bev);
            x->bev = NULL;
            ob->nconns--;
            smtp_client_free(&x->client);
            continue;
        }
        return;
    }
}

static void ob_dns_done(void *arg, const struct dns_mx_result *r)
{
    struct ob_dest *x = arg;
    x->dns_handle = 0;
    switch (r->status) {
    case DNS_OK:
        x->hosts = calloc(r->nhosts, sizeof(*x->hosts));
        if (!x->hosts) {
            ob_dest_fail_rest(x, QUEUE_RESULT_DEFERRED, "451 4.3.0 out of memory");
            return;
        }
        memcpy(x->hosts, r->hosts, r->nhosts * sizeof(*x->hosts));
        x->nhosts = r->nhosts;
        x->host = x->addr = 0;
        ob_dest_next_host(x);
        return;
    case DNS_NULL_MX: {
        char reply[400];
        snprintf(reply, sizeof(reply), "556 5.1.10 the domain %s accepts no mail (null MX)",
                 x->domain);
        ob_dest_fail_rest(x, QUEUE_RESULT_FAILED, reply);
        return;
    }
    case DNS_NO_DOMAIN: {
        char reply[600];
        snprintf(reply, sizeof(reply), "550 5.1.2 the domain %s does not exist", x->domain);
        ob_dest_fail_rest(x, QUEUE_RESULT_FAILED, reply);
        return;
    }
    default: {
        char reply[600];
        snprintf(reply, sizeof(reply), "451 4.4.3 DNS look-up of %.255s failed: %.120s",
                 x->domain, r->err);
        ob_dest_fail_rest(x, QUEUE_RESULT_DEFERRED, reply);
        return;
    }
    }
}

/* A destination for the recipients [from, to) of the due list (one domain). */
static void ob_dest_start(struct outbound *ob, struct queue_list *due, size_t from, size_t to)
{
    struct ob_dest *x = calloc(1, sizeof(*x));
    size_t n = to - from;
    if (x) {
        x->rcpts.v = calloc(n, sizeof(*x->rcpts.v));
        x->msgs = calloc(n, sizeof(*x->msgs));
    }
    if (!x || !x->rcpts.v || !x->msgs) {
        if (x) {
            free(x->rcpts.v);
            free(x->msgs);
        }
        free(x);
        return; /* they stay due and come again with the next scan */
    }
    x->ob = ob;
    snprintf(x->domain, sizeof(x->domain), "%s", due->v[from].domain);
    /* Take the entries over (the due list keeps empty shells). */
    for (size_t i = 0; i < n; i++) {
        x->rcpts.v[i] = due->v[from + i];
        memset(&due->v[from + i], 0, sizeof(due->v[from + i]));
        ob_busy_add(ob, x->rcpts.v[i].rcpt_id);
    }
    x->rcpts.n = n;
    /* Group by message (the list is ordered by domain, then message). */
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k < n && !strcmp(x->rcpts.v[k].msg_id, x->rcpts.v[i].msg_id))
            k++;
        struct ob_msg *m = &x->msgs[x->nmsgs++];
        snprintf(m->msg_id, sizeof(m->msg_id), "%s", x->rcpts.v[i].msg_id);
        snprintf(m->file, sizeof(m->file), "%s", x->rcpts.v[i].file);
        m->sender = strdup(x->rcpts.v[i].sender ? x->rcpts.v[i].sender : "");
        m->body_8bit = x->rcpts.v[i].body_8bit;
        m->smtputf8 = x->rcpts.v[i].smtputf8;
        m->first = i;
        m->n = k - i;
        i = k;
    }
    x->next = ob->dests;
    ob->dests = x;
    x->state = OB_RESOLVING;
    log_debug("outbound", "event=dest domain=%s messages=%zu rcpts=%zu", x->domain, x->nmsgs, n);
    x->dns_handle = ob->relay ? dns_resolve_host(ob->dns, ob->relay_host, ob_dns_done, x)
                              : dns_resolve_mx(ob->dns, x->domain, ob_dns_done, x);
    if (!x->dns_handle)
        ob_dest_fail_rest(x, QUEUE_RESULT_DEFERRED, "451 4.4.3 DNS look-up could not start");
}

/* --- scans ------------------------------------------------------------------------------ */

static unsigned ob_domain_active(const struct outbound *ob, const char *domain)
{
    unsigned n = 0;
    for (const struct ob_dest *x = ob->dests; x; x = x->next)
        if (!strcasecmp(x->domain, domain))
            n++;
    return n;
}

/* The due recipients [from, to) of one domain, split by message over up
 * to `conns` destinations (connections) of about equal message counts. */
static void ob_domain_start(struct outbound *ob, struct queue_list *due, size_t from, size_t to,
                            unsigned conns)
{
    size_t nmsgs = 0;
    for (size_t i = from; i < to; i++)
        if (i == from || strcmp(due->v[i].msg_id, due->v[i - 1].msg_id) != 0)
            nmsgs++;
    if (conns > nmsgs)
        conns = (unsigned)nmsgs;
    if (conns == 0)
        return;
    size_t per = (nmsgs + conns - 1) / conns, in_chunk = 0, start = from;
    for (size_t i = from + 1; i <= to; i++) {
        if (i < to && strcmp(due->v[i].msg_id, due->v[i - 1].msg_id) == 0)
            continue;
        in_chunk++; /* a message ended at i */
        if (i == to || in_chunk == per) {
            ob_dest_start(ob, due, start, i);
            start = i;
            in_chunk = 0;
        }
    }
}

static void ob_local_done(struct work_item *item)
{
    struct ob_job *j = (struct ob_job *)item;
    for (size_t i = 0; i < j->local.n; i++) {
        ob_busy_del(j->ob, j->local.v[i].rcpt_id);
        if (j->local.v[i].rcpt)
            daemon_mailbox_changed(j->ob->d, j->local.v[i].rcpt);
    }
    ob_job_free(j);
}

static void ob_scan_done(struct work_item *item)
{
    struct ob_job *j = (struct ob_job *)item;
    struct outbound *ob = j->ob;
    ob->scanning = false;
    if (ob->stopping) {
        ob_job_free(j);
        return;
    }
    if (j->rc < 0)
        log_error("outbound", "event=scan_failed error=\"%s\"", j->err);
    struct queue_list *due = &j->due;
    /* What is being delivered already goes to the end (and is freed with
     * the list); the rest keeps its order. */
    size_t total = due->n, keep = 0;
    for (size_t i = 0; i < total; i++) {
        if (ob_busy_has(ob, due->v[i].rcpt_id))
            continue;
        struct queue_rcpt t = due->v[keep];
        due->v[keep++] = due->v[i];
        due->v[i] = t;
    }
    due->n = keep;
    for (size_t i = 0; i < due->n;) {
        size_t k = i;
        while (k < due->n && !strcasecmp(due->v[k].domain, due->v[i].domain))
            k++;
        const char *domain = due->v[i].domain;
        int local = store_domain_is_local(ob->d->store, domain);
        if (local == 1) {
            struct ob_job *lj = ob_job_new(ob, OB_LOCAL, ob_local_done);
            if (lj) {
                lj->local.v = calloc(k - i, sizeof(*lj->local.v));
                if (lj->local.v) {
                    for (size_t m = i; m < k; m++) {
                        lj->local.v[lj->local.n++] = due->v[m];
                        ob_busy_add(ob, due->v[m].rcpt_id);
                        memset(&due->v[m], 0, sizeof(due->v[m]));
                    }
                    workers_submit(ob->workers, &lj->item);
                } else {
                    free(lj);
                }
            }
        } else {
            unsigned active = ob_domain_active(ob, domain);
            unsigned per = ob->d->cfg.delivery_max_connections_per_domain;
            unsigned max = ob->d->cfg.delivery_max_connections;
            unsigned room = ob->nconns < max ? max - ob->nconns : 0;
            unsigned conns = active < per ? per - active : 0;
            if (conns > room)
                conns = room;
            if (conns > 0)
                ob_domain_start(ob, due, i, k, conns);
        }
        i = k;
    }
    unsigned dsns = j->dsns;
    /* The next scan: at once when asked meanwhile, else when the next
     * recipient falls due (a short retry schedule), at most 5 s away. */
    unsigned secs = OB_SCAN_INTERVAL;
    time_t now = time(NULL);
    if (j->next_due > now && j->next_due - now < (time_t)secs)
        secs = (unsigned)(j->next_due - now);
    due->n = total; /* the entries taken over are empty shells now */
    ob_job_free(j);
    bool again = ob->scan_again || dsns;
    ob->scan_again = false;
    ob_scan_soon(ob, again ? 0 : secs);
}

static void ob_scan_cb(evutil_socket_t fd, short what, void *arg)
{
    struct outbound *ob = arg;
    if (ob->stopping)
        return;
    if (ob->scanning) { /* once this one is back */
        ob->scan_again = true;
        return;
    }
    struct ob_job *j = ob_job_new(ob, OB_SCAN, ob_scan_done);
    if (!j) {
        ob_scan_soon(ob, OB_SCAN_INTERVAL);
        return;
    }
    ob->scanning = true;
    workers_submit(ob->workers, &j->item);
}

static void ob_scan_soon(struct outbound *ob, unsigned secs)
{
    if (ob->stopping || !ob->scan_ev)
        return;
    /* "Now" is 50 ms away, so a burst of submissions makes one scan. An
     * earlier pending scan stays: re-arming it at every kick would put it
     * off for as long as the burst lasts. */
    struct timeval now, delay = {.tv_sec = secs, .tv_usec = secs ? 0 : 50000}, at;
    evutil_gettimeofday(&now, NULL);
    evutil_timeradd(&now, &delay, &at);
    if (evtimer_pending(ob->scan_ev, NULL) && evutil_timercmp(&ob->scan_at, &at, <=))
        return;
    ob->scan_at = at;
    evtimer_add(ob->scan_ev, &delay);
}

/* --- the daemon's side ----------------------------------------------------------------- */

/* delivery.relayhost: "[USER:PASSWORD@]HOST[:PORT]", HOST a name, an IPv4
 * address or "[IPv6]"; port 25 by default. 0 or -1 with err. */
static int ob_relay_parse(struct outbound *ob, const char *s, char *err, size_t errlen)
{
    if (!s[0])
        return 0;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", s);
    char *hostport = buf;
    char *at = strrchr(buf, '@');
    if (at) {
        *at = '\0';
        hostport = at + 1;
        char *colon = strchr(buf, ':');
        if (!colon || colon == buf) {
            snprintf(err, errlen, "delivery.relayhost: credentials must be USER:PASSWORD@");
            return -1;
        }
        *colon = '\0';
        snprintf(ob->relay_user, sizeof(ob->relay_user), "%.255s", buf);
        snprintf(ob->relay_pass, sizeof(ob->relay_pass), "%.255s", colon + 1);
    }
    ob->relay_port = 25;
    char *port = NULL;
    if (hostport[0] == '[') {
        char *end = strchr(hostport, ']');
        if (!end) {
            snprintf(err, errlen, "delivery.relayhost: missing ']'");
            return -1;
        }
        snprintf(ob->relay_host, sizeof(ob->relay_host), "[IPv6:%.*s]",
                 (int)(end - hostport - 1), hostport + 1);
        if (end[1] == ':')
            port = end + 2;
    } else {
        char *colon = strchr(hostport, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
        unsigned char bin[4];
        if (inet_pton(AF_INET, hostport, bin) == 1)
            snprintf(ob->relay_host, sizeof(ob->relay_host), "[%.250s]", hostport);
        else
            snprintf(ob->relay_host, sizeof(ob->relay_host), "%.255s", hostport);
    }
    if (port) {
        char *end;
        unsigned long p = strtoul(port, &end, 10);
        if (*end || p == 0 || p > 65535) {
            snprintf(err, errlen, "delivery.relayhost: bad port '%s'", port);
            return -1;
        }
        ob->relay_port = (unsigned)p;
    }
    if (!ob->relay_host[0]) {
        snprintf(err, errlen, "delivery.relayhost: no host");
        return -1;
    }
    ob->relay = true;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

int outbound_start(struct daemon *d, char *err, size_t errlen)
{
    struct outbound *ob = calloc(1, sizeof(*ob));
    if (!ob) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ob->d = d;
    d->outbound = ob;
    if (queue_schedule_parse(d->cfg.delivery_retry_schedule, ob->delays, &ob->ndelays, err,
                             errlen) < 0 ||
        ob_relay_parse(ob, d->cfg.delivery_relayhost, err, errlen) < 0)
        return -1;
    ob->ops = (struct workers_ops){
        .ctx_new = ob_worker_new,
        .ctx_free = ob_worker_free,
        .run_batch = ob_worker_run,
        .arg = ob,
    };
    ob->workers = workers_new(d->base, 1, 16, &ob->ops, err, errlen);
    if (!ob->workers)
        return -1;
    ob->dns = dns_new(d->base, d->cfg.delivery_dns_resolver, 30, err, errlen);
    if (!ob->dns)
        return -1;
    ob->tls = tls_client_ctx_new(err, errlen);
    if (!ob->tls)
        return -1;
    SSL_CTX_set_verify(ob->tls, SSL_VERIFY_NONE, NULL); /* opportunistic (RFC 3207 4.1) */
    ob->scan_ev = evtimer_new(d->base, ob_scan_cb, ob);
    if (!ob->scan_ev) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ob_scan_soon(ob, 1);
    return 0;
}

void outbound_kick(struct daemon *d)
{
    if (d->outbound)
        ob_scan_soon(d->outbound, 0);
}

void outbound_stop(struct daemon *d)
{
    struct outbound *ob = d->outbound;
    if (!ob)
        return;
    ob->stopping = true;
    if (ob->scan_ev)
        evtimer_del(ob->scan_ev);
    /* Conversations in progress are dropped: their recipients stay pending
     * in the queue and are tried again after the restart. */
    while (ob->dests)
        ob_dest_free(ob->dests);
}

void outbound_free(struct daemon *d)
{
    struct outbound *ob = d->outbound;
    if (!ob)
        return;
    outbound_stop(d);
    workers_free(&ob->workers); /* runs the last results' done() */
    dns_free(&ob->dns);
    if (ob->tls)
        SSL_CTX_free(ob->tls);
    if (ob->scan_ev)
        event_free(ob->scan_ev);
    free(ob->busy);
    OPENSSL_cleanse(ob->relay_pass, sizeof(ob->relay_pass));
    free(ob);
    d->outbound = NULL;
}
