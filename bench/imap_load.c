/* bench/imap_load.c — the IMAP load generator of bench/imap.sh (`make bench-imap`).
 *
 * One thread, one epoll loop, non-blocking sockets to 127.0.0.1 only. Every
 * connection logs in with LOGIN (plaintext: the script runs both servers
 * without TLS on loopback), then does what the mode says:
 *
 *   append    loads the corpus: N generated messages (fixed seed, 2-20 KiB,
 *             some multipart with a base64 attachment) with APPEND, pipelined
 *             up to -W commands deep with LITERAL+ when the server offers it
 *             (one command at a time with synchronizing literals otherwise);
 *             then SELECT INBOX and checks that EXISTS is N.
 *   envelope  one connection: SELECT INBOX, then `FETCH 1:* (ENVELOPE)` twice,
 *             timed from the command to its tagged OK; checks N ENVELOPEs.
 *   probe     one connection, SELECTed: 20 commands of each type of the mix, one
 *             at a time, each type in turn; the latency of each alone.
 *   mix       -c connections, each SELECTed, run a fixed-seed mix of commands
 *             for -d seconds, one command in flight per connection (a client
 *             waits for the answer): SELECT, header FETCH of 50 UIDs, whole
 *             body FETCH, SEARCH FROM / UNSEEN / SUBJECT, STORE +/-FLAGS,
 *             APPEND of a small message. Counts tagged OKs per command type,
 *             and checks the answers against the corpus (50 header literals,
 *             body literal of the right size, SEARCH hit counts).
 *   idle      -c connections, each SELECTed, then prints "ready" and holds them
 *             until the file given with -f exists (or -H seconds pass), then
 *             LOGOUT. The script measures the server's memory meanwhile.
 *
 *   dump      `imap_load dump SEED INDEX` prints one corpus message, to look at.
 *
 * -w changes the mix's weights; -P limits the connections logging in at once;
 * -C names the server's cgroup CPU counter, read when the measured span
 * starts and ends (the "server cpu_s" line).
 *
 * Output: `key=value` lines the script parses (see the end of main). Exit
 * status 0 when every command got a tagged OK with the expected content, 1
 * when some did not (the first ones are printed on stderr), 2 on usage
 * errors, 3 when the run had to stop (server gone, no answer in time).
 *
 * Built by bench/imap.sh with `cc -O2`. The password comes from the
 * environment (IMAP_LOAD_PASSWORD), not the command line. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- options ------------------------------------------------------------------ */
static const char *o_mode;
static int o_port;
static const char *o_user = "u@bench.test";
static const char *o_pass;
static int o_conns = 1;
static double o_duration = 20;
static uint64_t o_seed = 1;
static int o_nmsg = 10000;
static int o_window = 32;
static double o_cmd_timeout = 120; /* seconds without a tagged answer: the run stops */
static const char *o_until_file;
static double o_hold = 60;
static int o_pace; /* at most this many connections logging in at once (0: all) */
static const char *o_cpu_file; /* the server's cgroup CPU counter, read at both ends */

/* ---- small helpers --------------------------------------------------------------- */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "imap_load: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(3);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        fatal("out of memory");
    return p;
}

/* splitmix64: small, fast, and the same sequence everywhere. */
static uint64_t rnd_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
/* A seed for stream k of seed s: streams that do not overlap (splitmix64 states
 * that differ by a multiple of its increment would give shifted copies). */
static uint64_t stream_seed(uint64_t s, uint64_t k)
{
    uint64_t a = s ^ 0x5851F42D4C957F2DULL, b = k * 0xD1342543DE82EF95ULL + 0x2545F4914F6CDD1DULL;
    uint64_t z = rnd_next(&a) ^ b;
    return rnd_next(&z);
}
static unsigned rnd(uint64_t *s, unsigned n) { return n ? (unsigned)(rnd_next(s) % n) : 0; }

/* A growable byte buffer. */
struct buf {
    char *p;
    size_t len, cap;
};
static void buf_need(struct buf *b, size_t more)
{
    if (b->len + more + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (b->len + more + 1 > c)
            c *= 2;
        b->p = xrealloc(b->p, c);
        b->cap = c;
    }
}
static void buf_add(struct buf *b, const void *d, size_t n)
{
    buf_need(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_need(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- the corpus ------------------------------------------------------------------ */
/* Subject words: SEARCH SUBJECT picks one. None is a substring of another
 * word that appears in a subject, of the encoded subjects, or of "mix". */
static const char *const subj_words[] = {
    "invoice", "meeting", "budget",   "project", "release", "schedule", "contract", "holiday",
    "security", "update", "report",   "review",  "launch",  "training", "outage",   "quarterly",
};
#define N_SUBJ_WORDS (sizeof(subj_words) / sizeof(subj_words[0]))
static const char *const encoded_subjects[] = {
    "=?UTF-8?Q?Relat=C3=B3rio_mensal?=",
    "=?UTF-8?Q?Reuni=C3=A3o_de_equipe?=",
    "=?UTF-8?B?T3I=?= =?UTF-8?Q?=C3=A7amento_2027?=",
};
static const char *const first_names[] = {"Ana",   "Bruno", "Carla", "Diego", "Elena", "Fabio",
                                          "Gina",  "Hugo",  "Ines",  "Joao",  "Karin", "Luis",
                                          "Marta", "Nuno",  "Olga",  "Paulo"};
static const char *const last_names[] = {"Silva",  "Santos", "Ferreira", "Pereira", "Oliveira",
                                         "Costa",  "Rodrigues", "Martins", "Jesus",  "Sousa",
                                         "Fernandes", "Goncalves"};
static const char *const body_words[] = {
    "the",   "of",    "and",    "to",     "in",     "is",      "that",   "for",   "it",
    "as",    "was",   "with",   "be",     "by",     "on",      "not",    "he",    "this",
    "are",   "or",    "his",    "from",   "at",     "which",   "but",    "have",  "an",
    "had",   "they",  "you",    "were",   "their",  "one",     "all",    "we",    "can",
    "her",   "has",   "there",  "been",   "if",     "more",    "when",   "will",  "would",
    "who",   "so",    "no",     "please", "attached", "thanks", "regards", "team", "numbers",
    "next",  "week",  "figures", "draft", "agenda", "minutes", "deadline", "customer", "support",
};
#define N_BODY_WORDS (sizeof(body_words) / sizeof(body_words[0]))
static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const zones[] = {"+0000", "-0300", "+0100", "+0200", "-0500", "+0530"};

#define N_SENDERS 100

struct msgmeta {
    unsigned size;
    unsigned char sender; /* senderNN in From */
    unsigned char seen;
};

static void add_text_lines(struct buf *b, uint64_t *r, size_t target)
{
    size_t start = b->len;
    while (b->len - start < target) {
        size_t line = 0;
        while (line < 66) {
            const char *w = body_words[rnd(r, N_BODY_WORDS)];
            buf_printf(b, line ? " %s" : "%s", w);
            line += strlen(w) + 1;
        }
        if (rnd(r, 9) == 0)
            buf_add(b, ".\r\n\r\n", 5); /* end of a paragraph */
        else
            buf_add(b, "\r\n", 2);
    }
}

static void add_base64(struct buf *b, uint64_t *r, size_t raw)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t chars = (raw + 2) / 3 * 4, col = 0;
    for (size_t i = 0; i < chars; i++) {
        buf_add(b, &tbl[rnd(r, 64)], 1);
        if (++col == 76) {
            buf_add(b, "\r\n", 2);
            col = 0;
        }
    }
    if (col)
        buf_add(b, "\r\n", 2);
}

/* Message i (0-based) of the corpus for seed: into b (cleared), its facts into m. */
static void gen_message(struct buf *b, uint64_t seed, int i, struct msgmeta *m, char *idate,
                        size_t idatelen)
{
    uint64_t r = stream_seed(seed, (uint64_t)i);
    b->len = 0;
    unsigned sender = rnd(&r, N_SENDERS);
    unsigned target = 2048 + rnd(&r, 18 * 1024); /* 2-20 KiB in all */
    int multipart = rnd(&r, 10) < 3;             /* 30% with an attachment */
    /* A date: 2026-01-01 plus about 40 minutes per message. */
    time_t t = 1767225600 + (time_t)i * 2400 + rnd(&r, 2400);
    struct tm tm;
    gmtime_r(&t, &tm);
    const char *zone = zones[rnd(&r, sizeof(zones) / sizeof(zones[0]))];
    char date[64];
    snprintf(date, sizeof(date), "%s, %d %s %d %02d:%02d:%02d %s", wdays[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
    if (idate)
        snprintf(idate, idatelen, "%02d-%s-%d %02d:%02d:%02d %s", tm.tm_mday, mons[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
    const char *fn = first_names[sender % 16], *ln = last_names[(sender / 16 + sender) % 12];
    unsigned dom = sender % 7;

    buf_printf(b,
               "Return-Path: <sender%u@mail%u.example>\r\n"
               "Received: from mail%u.example (mail%u.example [192.0.2.%u])\r\n"
               "\tby mx.bench.test with ESMTPS id %08X\r\n"
               "\tfor <u@bench.test>; %s\r\n"
               "Received: from [198.51.100.%u] by mail%u.example with ESMTPSA; %s\r\n",
               sender, dom, dom, dom, 10 + dom, (unsigned)rnd_next(&r), date, sender % 200, dom,
               date);
    buf_printf(b, "From: %s %s <sender%u@mail%u.example>\r\n", fn, ln, sender, dom);
    buf_printf(b, "To: Bench User <u@bench.test>\r\n");
    if (rnd(&r, 4) == 0)
        buf_printf(b, "Cc: %s <team%u@bench.test>, ops@bench.test\r\n", first_names[rnd(&r, 16)],
                   rnd(&r, 20));
    if (rnd(&r, 20) == 0) {
        buf_printf(b, "Subject: %s\r\n", encoded_subjects[rnd(&r, 3)]);
    } else {
        unsigned a = rnd(&r, N_SUBJ_WORDS), c = rnd(&r, N_SUBJ_WORDS);
        const char *pre = rnd(&r, 3) == 0 ? "Re: " : (rnd(&r, 8) == 0 ? "Fwd: " : "");
        buf_printf(b, "Subject: %s%s %s %s #%u\r\n", pre, subj_words[a], "and", subj_words[c],
                   rnd(&r, 10000));
    }
    buf_printf(b, "Date: %s\r\n", date);
    buf_printf(b, "Message-ID: <%u.%08X.%u@mail%u.example>\r\n", i + 1, (unsigned)rnd_next(&r),
               sender, dom);
    if (rnd(&r, 3) == 0)
        buf_printf(b, "In-Reply-To: <%u.thread@mail%u.example>\r\n", rnd(&r, 5000), dom);
    buf_printf(b, "X-Mailer: BenchMail %u.%u\r\nMIME-Version: 1.0\r\n", 1 + rnd(&r, 5), rnd(&r, 10));
    if (!multipart) {
        buf_printf(b, "Content-Type: text/plain; charset=us-ascii\r\n"
                      "Content-Transfer-Encoding: 7bit\r\n\r\n");
        size_t hdr = b->len;
        add_text_lines(b, &r, target > hdr ? target - hdr : 64);
    } else {
        char bnd[40];
        snprintf(bnd, sizeof(bnd), "=_bench_%08X", (unsigned)rnd_next(&r));
        buf_printf(b,
                   "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
                   "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n"
                   "Content-Type: text/plain; charset=us-ascii\r\n"
                   "Content-Transfer-Encoding: 7bit\r\n\r\n",
                   bnd, bnd);
        size_t text = 400 + rnd(&r, 1600);
        add_text_lines(b, &r, text);
        int pdf = rnd(&r, 2);
        buf_printf(b,
                   "\r\n--%s\r\nContent-Type: %s; name=\"%s%u.%s\"\r\n"
                   "Content-Disposition: attachment; filename=\"%s%u.%s\"\r\n"
                   "Content-Transfer-Encoding: base64\r\n\r\n",
                   bnd, pdf ? "application/pdf" : "image/png", pdf ? "report" : "photo", i + 1,
                   pdf ? "pdf" : "png", pdf ? "report" : "photo", i + 1, pdf ? "pdf" : "png");
        size_t have = b->len + 64;
        size_t raw = target > have ? (target - have) * 3 / 4 : 256;
        add_base64(b, &r, raw);
        buf_printf(b, "\r\n--%s--\r\n", bnd);
    }
    if (m) {
        m->size = (unsigned)b->len;
        m->sender = (unsigned char)sender;
        m->seen = rnd(&r, 10) < 7; /* 70% are appended \Seen */
    }
}

/* A small message for the mix's APPEND: From and Subject match no corpus search. */
static void gen_small(struct buf *b, uint64_t *r, unsigned n)
{
    b->len = 0;
    buf_printf(b,
               "From: Load Mixer <mixer@load.example>\r\nTo: u@bench.test\r\n"
               "Subject: mix %u\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
               "Message-ID: <mix.%u.%08X@load.example>\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
               n, n, (unsigned)rnd_next(r));
    add_text_lines(b, r, 800 + rnd(r, 1200));
}

/* The value of header `name` of message m (headers only, unfolded poorly: first line). */
static void hdr_value(const char *m, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = m; *p && !(p[0] == '\r' && p[1] == '\n');) {
        const char *e = strstr(p, "\r\n");
        if (!e)
            return;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            size_t l = (size_t)(e - p - (ptrdiff_t)nl - 1);
            if (l >= n)
                l = n - 1;
            memcpy(out, p + nl + 1, l);
            out[l] = '\0';
            return;
        }
        p = e + 2;
    }
}

/* ---- connections ---------------------------------------------------------------------- */
enum {
    T_SELECT,
    T_FETCH_HDR,
    T_FETCH_BODY,
    T_SEARCH_FROM,
    T_SEARCH_UNSEEN,
    T_SEARCH_SUBJECT,
    T_STORE_ADD,
    T_STORE_DEL,
    T_APPEND,
    T_NMIX,
    T_LOGIN = T_NMIX,
    T_SETUP_SELECT,
    T_BULK_APPEND,
    T_ENVELOPE,
    T_LOGOUT,
    T_NTYPES
};
static const char *const type_names[T_NTYPES] = {
    "select",       "fetch_headers", "fetch_body", "search_from", "search_unseen",
    "search_subject", "store_add",   "store_del",  "append",      "login",
    "setup_select", "bulk_append",   "envelope",   "logout"};
/* Weights of the mix (percent by default; -w changes them). */
static int mix_weight[T_NMIX] = {3, 25, 30, 5, 5, 5, 10, 10, 7};
static unsigned mix_total_weight = 100;

struct stat_t {
    long ok, no, bad, wrong;
    double *lat;
    size_t nlat, caplat;
};
static struct stat_t stats[T_NTYPES];

enum { P_CONNECTING, P_GREETING, P_LOGIN, P_SELECT, P_READY, P_RUN, P_LOGOUT, P_DONE, P_DEAD };

#define QMAX 256
struct pending {
    unsigned tag;
    int type;
    double t0;
    long expect; /* hits / literal size / FETCH count expected, -1 when not checked */
    char text[200];
};

struct conn {
    int fd, idx, phase;
    uint64_t rng;
    struct buf in, out;
    size_t rpos, scan, lit_left;
    int in_logical;
    /* the logical line being read */
    int cur_kind; /* 0 untagged, 1 tagged, 2 continuation */
    unsigned cur_tag;
    int cur_status; /* 0 OK, 1 NO, 2 BAD */
    char cur_text[200];
    /* per command counters */
    long n_fetch_hdr, n_fetch_env, search_hits, body_lit, exists;
    int bye;
    struct pending q[QMAX];
    int qh, qn;
    unsigned next_tag;
    int literal_plus;
    struct buf cont; /* data to send on "+" (synchronizing literal) */
    int cont_wait;
    int sent_append; /* bulk: messages sent by this connection */
    unsigned mix_n;
};

static struct conn *conns;
static int epfd;
static int n_ready, n_done, n_opened;
static double t_start, t_end;
static int running; /* the measured phase is on */
static int stopping;
static long n_errors_printed;
static struct msgmeta *corpus;
static long expect_from[N_SENDERS];
static long expect_subj[N_SUBJ_WORDS];
static int bulk_next; /* next corpus message to append */
static long bulk_done;
static struct buf scratch;

static void err_report(struct conn *c, const char *what, const char *cmd, const char *reply)
{
    if (n_errors_printed++ < 20)
        fprintf(stderr, "imap_load: conn %d: %s: command `%s` -> `%s`\n", c->idx, what, cmd,
                reply);
}

static void conn_watch(struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | (c->out.len ? EPOLLOUT : 0u) |
                                       (c->phase == P_CONNECTING ? EPOLLOUT : 0u),
                             .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_flush(struct conn *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            return; /* the read side will see the close */
        }
        memmove(c->out.p, c->out.p + n, c->out.len - (size_t)n);
        c->out.len -= (size_t)n;
    }
    conn_watch(c);
}

/* Queue a command: `TAG text` + CRLF, then literal (if any) + CRLF. */
static void send_cmd(struct conn *c, int type, long expect, const char *text, const char *lit,
                     size_t litlen)
{
    if (c->qn == QMAX)
        fatal("too many commands in flight");
    struct pending *p = &c->q[(c->qh + c->qn++) % QMAX];
    p->tag = ++c->next_tag;
    p->type = type;
    p->t0 = now();
    p->expect = expect;
    snprintf(p->text, sizeof(p->text), "%s", text);
    buf_printf(&c->out, "A%u %s", p->tag, text);
    if (lit) {
        if (c->literal_plus) {
            buf_printf(&c->out, " {%zu+}\r\n", litlen);
            buf_add(&c->out, lit, litlen);
            buf_add(&c->out, "\r\n", 2);
        } else {
            buf_printf(&c->out, " {%zu}\r\n", litlen);
            c->cont.len = 0;
            buf_add(&c->cont, lit, litlen);
            buf_add(&c->cont, "\r\n", 2);
            c->cont_wait = 1;
        }
    } else {
        buf_add(&c->out, "\r\n", 2);
    }
    conn_flush(c);
}

static void mix_next(struct conn *c);
static void probe_next(struct conn *c);
static void issue(struct conn *c, unsigned type);
static void bulk_fill(struct conn *c);

static void start_logout(struct conn *c)
{
    c->phase = P_LOGOUT;
    send_cmd(c, T_LOGOUT, -1, "LOGOUT", NULL, 0);
}

static void conn_finish(struct conn *c, int dead)
{
    if (c->phase == P_DONE || c->phase == P_DEAD)
        return;
    c->phase = dead ? P_DEAD : P_DONE;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    n_done++;
}

static void record(int type, double lat)
{
    struct stat_t *s = &stats[type];
    if (s->nlat == s->caplat) {
        s->caplat = s->caplat ? s->caplat * 2 : 1024;
        s->lat = xrealloc(s->lat, s->caplat * sizeof(double));
    }
    s->lat[s->nlat++] = lat;
}

static void mode_all_ready(void);

/* A tagged reply. */
static void on_tagged(struct conn *c)
{
    if (!c->qn) {
        err_report(c, "tagged reply with no command in flight", "", c->cur_text);
        stats[T_LOGIN].bad++;
        return;
    }
    struct pending *p = &c->q[c->qh];
    if (p->tag != c->cur_tag) {
        err_report(c, "reply out of order", p->text, c->cur_text);
        fatal("reply tag A%u, expected A%u", c->cur_tag, p->tag);
    }
    c->qh = (c->qh + 1) % QMAX;
    c->qn--;
    double t = now();
    /* The mix counts commands answered within the measured span only. */
    int counted = p->type >= T_NMIX || (running && (t <= t_end || !strcmp(o_mode, "probe")));
    struct stat_t *s = &stats[p->type];
    if (c->cur_status != 0) {
        if (counted || p->type < T_NMIX) {
            if (c->cur_status == 1)
                s->no++;
            else
                s->bad++;
        }
        err_report(c, c->cur_status == 1 ? "NO" : "BAD", p->text, c->cur_text);
    } else {
        long got = -1;
        switch (p->type) {
        case T_FETCH_HDR: got = c->n_fetch_hdr; break;
        case T_FETCH_BODY: got = c->body_lit; break;
        case T_SEARCH_FROM:
        case T_SEARCH_SUBJECT: got = c->search_hits; break;
        case T_ENVELOPE: got = c->n_fetch_env; break;
        case T_SETUP_SELECT: got = c->exists; break;
        }
        if (p->expect >= 0 && got != p->expect) {
            char why[300];
            snprintf(why, sizeof(why), "%s (got %ld, expected %ld)", c->cur_text, got, p->expect);
            err_report(c, "wrong answer", p->text, why);
            if (counted)
                s->wrong++;
        } else if (counted) {
            s->ok++;
            record(p->type, t - p->t0);
        }
    }
    c->n_fetch_hdr = c->n_fetch_env = 0;
    c->search_hits = c->body_lit = -1;

    switch (c->phase) {
    case P_LOGIN:
        if (c->cur_status != 0)
            fatal("LOGIN failed on connection %d: %s", c->idx, c->cur_text);
        if (!strcmp(o_mode, "append")) {
            c->phase = P_READY;
            n_ready++;
            mode_all_ready();
        } else {
            c->phase = P_SELECT;
            send_cmd(c, T_SETUP_SELECT, -1, "SELECT INBOX", NULL, 0);
        }
        break;
    case P_SELECT:
        if (c->cur_status != 0)
            fatal("SELECT INBOX failed on connection %d: %s", c->idx, c->cur_text);
        c->phase = P_READY;
        n_ready++;
        mode_all_ready();
        break;
    case P_RUN:
        if (!strcmp(o_mode, "mix"))
            mix_next(c);
        else if (!strcmp(o_mode, "probe"))
            probe_next(c);
        else if (!strcmp(o_mode, "append"))
            bulk_fill(c);
        else if (!strcmp(o_mode, "envelope")) {
            if (p->type == T_ENVELOPE && stats[T_ENVELOPE].ok + stats[T_ENVELOPE].wrong +
                                                 stats[T_ENVELOPE].no + stats[T_ENVELOPE].bad <
                                             2)
                send_cmd(c, T_ENVELOPE, o_nmsg, "FETCH 1:* (ENVELOPE)", NULL, 0);
            else if (c->qn == 0)
                start_logout(c);
        }
        break;
    case P_LOGOUT:
        if (p->type == T_LOGOUT)
            conn_finish(c, 0);
        break;
    }
}

/* Parse "{123}" or "{123+}" ending [s, s+n); -1 if none. */
static long trailing_literal(const char *s, size_t n)
{
    if (n < 3 || s[n - 1] != '}')
        return -1;
    size_t i = n - 1;
    if (i > 0 && s[i - 1] == '+')
        i--;
    size_t end = i;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i == end || i == 0 || s[i - 1] != '{')
        return -1;
    return strtol(s + i, NULL, 10);
}

/* First chunk of a logical line: classify it. */
static void on_first_chunk(struct conn *c, const char *s, size_t n)
{
    size_t tl = n < sizeof(c->cur_text) - 1 ? n : sizeof(c->cur_text) - 1;
    memcpy(c->cur_text, s, tl);
    c->cur_text[tl] = '\0';
    if (memmem(s, n, "LITERAL+", 8))
        c->literal_plus = 1;
    if (n >= 1 && s[0] == '+') {
        c->cur_kind = 2;
        return;
    }
    if (n >= 2 && s[0] == '*' && s[1] == ' ') {
        c->cur_kind = 0;
        const char *p = s + 2, *e = s + n;
        if (n >= 5 && !strncasecmp(p, "BYE", 3)) {
            c->bye = 1;
            return;
        }
        if (n >= 8 && !strncasecmp(p, "SEARCH", 6)) {
            long hits = 0;
            for (const char *q = p + 6; q < e; q++)
                if (*q >= '0' && *q <= '9' && (q[-1] == ' '))
                    hits++;
            c->search_hits = hits;
            return;
        }
        if (*p >= '0' && *p <= '9') {
            long num = strtol(p, (char **)&p, 10);
            if (p + 7 <= e && !strncasecmp(p, " EXISTS", 7)) {
                c->exists = num;
            } else if (p + 6 <= e && !strncasecmp(p, " FETCH", 6)) {
                if (memmem(s, n, "BODY[HEADER.FIELDS", 18))
                    c->n_fetch_hdr++;
                if (memmem(s, n, "ENVELOPE", 8))
                    c->n_fetch_env++;
                const char *b = memmem(s, n, "BODY[] {", 8);
                if (b)
                    c->body_lit = strtol(b + 8, NULL, 10);
            }
        }
        return;
    }
    if (n >= 2 && s[0] == 'A') {
        c->cur_kind = 1;
        char *p;
        c->cur_tag = (unsigned)strtoul(s + 1, &p, 10);
        if (*p == ' ')
            p++;
        c->cur_status = !strncasecmp(p, "OK", 2) ? 0 : !strncasecmp(p, "NO", 2) ? 1 : 2;
        return;
    }
    c->cur_kind = 0; /* junk: reported via BAD/unknown tag if it matters */
}

static void on_line_done(struct conn *c)
{
    if (c->cur_kind == 1) {
        on_tagged(c);
    } else if (c->cur_kind == 2) {
        if (c->cont_wait) {
            buf_add(&c->out, c->cont.p, c->cont.len);
            c->cont_wait = 0;
            conn_flush(c);
        }
    } else if (c->phase == P_GREETING) {
        if (strncmp(c->cur_text, "* OK", 4) != 0)
            fatal("connection %d greeted with `%s`", c->idx, c->cur_text);
        c->phase = P_LOGIN;
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "LOGIN \"%s\" \"%s\"", o_user, o_pass);
        send_cmd(c, T_LOGIN, -1, cmd, NULL, 0);
        snprintf(c->q[(c->qh + c->qn - 1) % QMAX].text, sizeof(c->q[0].text), "LOGIN \"%s\" ***",
                 o_user);
    } else if (c->bye && c->phase != P_LOGOUT) {
        err_report(c, "unexpected BYE", c->qn ? c->q[c->qh].text : "", c->cur_text);
        c->bye = 0;
        stats[c->qn ? c->q[c->qh].type : T_LOGIN].bad++;
    }
}

static void conn_parse(struct conn *c)
{
    struct buf *b = &c->in;
    for (;;) {
        if (c->lit_left) {
            size_t avail = b->len - c->rpos;
            size_t take = avail < c->lit_left ? avail : c->lit_left;
            c->rpos += take;
            c->lit_left -= take;
            if (c->lit_left)
                break;
            continue;
        }
        char *s = b->p + c->rpos;
        size_t avail = b->len - c->rpos;
        char *nl = avail > c->scan ? memchr(s + c->scan, '\n', avail - c->scan) : NULL;
        if (!nl) {
            c->scan = avail;
            break;
        }
        size_t chunk = (size_t)(nl - s) + 1, body = chunk - 1;
        if (body && s[body - 1] == '\r')
            body--;
        if (!c->in_logical)
            on_first_chunk(c, s, body);
        long lit = trailing_literal(s, body);
        c->rpos += chunk;
        c->scan = 0;
        if (lit >= 0) {
            c->in_logical = 1;
            c->lit_left = (size_t)lit;
            continue;
        }
        c->in_logical = 0;
        on_line_done(c);
        if (c->phase == P_DONE || c->phase == P_DEAD)
            return;
    }
    if (c->rpos) {
        memmove(b->p, b->p + c->rpos, b->len - c->rpos);
        b->len -= c->rpos;
        c->rpos = 0;
    }
}

static void conn_read(struct conn *c)
{
    for (;;) {
        buf_need(&c->in, 65536);
        ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            conn_parse(c);
            if (c->phase == P_DONE || c->phase == P_DEAD)
                return;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* closed */
        if (c->phase != P_LOGOUT) {
            err_report(c, n == 0 ? "server closed the connection" : strerror(errno),
                       c->qn ? c->q[c->qh].text : "(none in flight)", c->cur_text);
            stats[c->qn ? c->q[c->qh].type : T_LOGIN].bad++;
            if (c->phase < P_READY)
                fatal("connection %d lost during login/SELECT", c->idx);
        }
        conn_finish(c, c->phase != P_LOGOUT);
        return;
    }
}

static void conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        fatal("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1, and nothing else */
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
        fatal("connect 127.0.0.1:%d: %s", o_port, strerror(errno));
    c->phase = P_CONNECTING;
    c->search_hits = c->body_lit = -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* ---- modes ---------------------------------------------------------------------------- */
static void mix_next(struct conn *c)
{
    if (stopping || now() >= t_end) {
        if (c->qn == 0)
            start_logout(c);
        return;
    }
    unsigned w = rnd(&c->rng, mix_total_weight), type = 0, acc = 0;
    for (type = 0; type < T_NMIX; type++) {
        acc += (unsigned)mix_weight[type];
        if (w < acc)
            break;
    }
    issue(c, type);
}

/* probe: PROBE_ROUNDS commands of each type in turn, one at a time. */
#define PROBE_ROUNDS 20
static int probe_k;
static void probe_next(struct conn *c)
{
    if (probe_k >= T_NMIX * PROBE_ROUNDS) {
        if (c->qn == 0)
            start_logout(c);
        return;
    }
    issue(c, (unsigned)(probe_k++ / PROBE_ROUNDS));
}

/* Send one command of the mix, of type `type`, with its arguments drawn from c->rng. */
static void issue(struct conn *c, unsigned type)
{
    char cmd[256];
    unsigned n = (unsigned)o_nmsg;
    switch (type) {
    case T_SELECT:
        send_cmd(c, T_SELECT, -1, "SELECT INBOX", NULL, 0);
        break;
    case T_FETCH_HDR: {
        unsigned a = 1 + rnd(&c->rng, n - 49);
        snprintf(cmd, sizeof(cmd),
                 "UID FETCH %u:%u (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To "
                 "Subject Date Message-ID)])",
                 a, a + 49);
        send_cmd(c, T_FETCH_HDR, 50, cmd, NULL, 0);
        break;
    }
    case T_FETCH_BODY: {
        unsigned u = 1 + rnd(&c->rng, n);
        snprintf(cmd, sizeof(cmd), "UID FETCH %u BODY.PEEK[]", u);
        send_cmd(c, T_FETCH_BODY, corpus[u - 1].size, cmd, NULL, 0);
        break;
    }
    case T_SEARCH_FROM: {
        unsigned s = rnd(&c->rng, N_SENDERS);
        snprintf(cmd, sizeof(cmd), "SEARCH FROM \"sender%u\"", s);
        send_cmd(c, T_SEARCH_FROM, expect_from[s], cmd, NULL, 0);
        break;
    }
    case T_SEARCH_UNSEEN:
        send_cmd(c, T_SEARCH_UNSEEN, -1, "SEARCH UNSEEN", NULL, 0);
        break;
    case T_SEARCH_SUBJECT: {
        unsigned k = rnd(&c->rng, N_SUBJ_WORDS);
        snprintf(cmd, sizeof(cmd), "SEARCH SUBJECT \"%s\"", subj_words[k]);
        send_cmd(c, T_SEARCH_SUBJECT, expect_subj[k], cmd, NULL, 0);
        break;
    }
    case T_STORE_ADD:
    case T_STORE_DEL: {
        unsigned u = 1 + rnd(&c->rng, n);
        snprintf(cmd, sizeof(cmd), "UID STORE %u %cFLAGS (\\Seen)", u,
                 type == T_STORE_ADD ? '+' : '-');
        send_cmd(c, (int)type, -1, cmd, NULL, 0);
        break;
    }
    default: {
        gen_small(&scratch, &c->rng, ++c->mix_n);
        send_cmd(c, T_APPEND, -1, "APPEND INBOX", scratch.p, scratch.len);
        break;
    }
    }
}

static void bulk_fill(struct conn *c)
{
    int window = c->literal_plus ? o_window : 1;
    while (c->qn < window && bulk_next < o_nmsg) {
        char idate[64], cmd[160];
        struct msgmeta m;
        int i = bulk_next++;
        gen_message(&scratch, o_seed, i, &m, idate, sizeof(idate));
        snprintf(cmd, sizeof(cmd), "APPEND INBOX (%s) \"%s\"", m.seen ? "\\Seen" : "", idate);
        send_cmd(c, T_BULK_APPEND, -1, cmd, scratch.p, scratch.len);
        snprintf(c->q[(c->qh + c->qn - 1) % QMAX].text, sizeof(c->q[0].text),
                 "APPEND INBOX (%s) \"%s\" {%zu+} (message %d)", m.seen ? "\\Seen" : "", idate,
                 scratch.len, i + 1);
        bulk_done += (long)scratch.len;
    }
    if (c->qn == 0 && bulk_next >= o_nmsg) {
        /* all of this connection's APPENDs answered */
        if (c->phase == P_RUN) {
            c->phase = P_SELECT + 100; /* verifying */
            send_cmd(c, T_SETUP_SELECT, -1, "SELECT INBOX", NULL, 0);
        }
    }
}

/* CPU seconds so far from a cgroup counter: cgroup v1 cpuacct.usage (ns) or v2
 * cpu.stat (usage_usec); -1 without one. */
static double server_cpu(void)
{
    if (!o_cpu_file)
        return -1;
    FILE *f = fopen(o_cpu_file, "r");
    if (!f)
        return -1;
    char line[256];
    double v = -1;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "usage_usec ", 11)) {
            v = strtod(line + 11, NULL) / 1e6;
            break;
        }
        if (line[0] >= '0' && line[0] <= '9') {
            v = strtod(line, NULL) / 1e9;
            break;
        }
    }
    fclose(f);
    return v;
}
static double cpu_at_start = -1, cpu_at_end = -1;

static double t_bulk_end;
static long bulk_exists = -1;

/* Open connections while fewer than o_pace are logging in. */
static void open_more(void)
{
    while (n_opened < o_conns && (o_pace <= 0 || n_opened - n_ready < o_pace))
        conn_open(&conns[n_opened++]);
}

static void mode_all_ready(void)
{
    open_more();
    if (n_ready < o_conns)
        return;
    t_start = now();
    t_end = t_start + o_duration;
    if (!strcmp(o_mode, "idle")) {
        printf("ready conns=%d\n", o_conns);
        fflush(stdout);
        t_end = t_start + o_hold;
        return;
    }
    running = 1;
    cpu_at_start = server_cpu();
    for (int i = 0; i < o_conns; i++) {
        struct conn *c = &conns[i];
        c->phase = P_RUN;
        if (!strcmp(o_mode, "mix"))
            mix_next(c);
        else if (!strcmp(o_mode, "probe"))
            probe_next(c);
        else if (!strcmp(o_mode, "append"))
            bulk_fill(c);
        else if (!strcmp(o_mode, "envelope"))
            send_cmd(c, T_ENVELOPE, o_nmsg, "FETCH 1:* (ENVELOPE)", NULL, 0);
    }
}


/* ---- results ---------------------------------------------------------------------------- */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(struct stat_t *s, double p)
{
    if (!s->nlat)
        return 0;
    size_t i = (size_t)(p * (double)(s->nlat - 1) + 0.5);
    return s->lat[i] * 1000;
}

static void print_type(const char *name, struct stat_t *s, double span)
{
    qsort(s->lat, s->nlat, sizeof(double), cmp_d);
    printf("type name=%s ok=%ld no=%ld bad=%ld wrong=%ld rate=%.1f p50_ms=%.2f p99_ms=%.2f "
           "max_ms=%.2f\n",
           name, s->ok, s->no, s->bad, s->wrong, span > 0 ? (double)s->ok / span : 0, pct(s, 0.5),
           pct(s, 0.99), s->nlat ? s->lat[s->nlat - 1] * 1000 : 0.0);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: imap_load MODE -p PORT [-u USER] [-c CONNS] [-d SECONDS] [-s SEED] [-n MSGS]\n"
            "                 [-W WINDOW] [-f UNTIL_FILE] [-H HOLD_SECONDS] [-T CMD_TIMEOUT]\n"
            "                 [-P MAX_LOGINS_AT_ONCE] [-w W1,...,W9 (mix weights)]\n"
            "                 [-C CGROUP_CPU_FILE (cpuacct.usage or cpu.stat)]\n"
            "  MODE: append | envelope | probe | mix | idle; the password in IMAP_LOAD_PASSWORD;\n"
            "  the server is always 127.0.0.1:PORT.\n"
            "       imap_load dump SEED INDEX    (prints corpus message INDEX, 1-based)\n");
    exit(2);
}
int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    o_mode = argv[1];
    if (!strcmp(o_mode, "dump")) { /* imap_load dump SEED INDEX: one corpus message, to look at */
        if (argc != 4)
            usage();
        gen_message(&scratch, strtoull(argv[2], NULL, 10), atoi(argv[3]) - 1, NULL, NULL, 0);
        fwrite(scratch.p, 1, scratch.len, stdout);
        return 0;
    }
    if (strcmp(o_mode, "append") && strcmp(o_mode, "envelope") && strcmp(o_mode, "mix") &&
        strcmp(o_mode, "idle") && strcmp(o_mode, "probe"))
        usage();
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "p:u:c:d:s:n:W:f:H:T:P:w:C:")) != -1) {
        switch (opt) {
        case 'p': o_port = atoi(optarg); break;
        case 'u': o_user = optarg; break;
        case 'c': o_conns = atoi(optarg); break;
        case 'd': o_duration = atof(optarg); break;
        case 's': o_seed = strtoull(optarg, NULL, 10); break;
        case 'n': o_nmsg = atoi(optarg); break;
        case 'W': o_window = atoi(optarg); break;
        case 'f': o_until_file = optarg; break;
        case 'H': o_hold = atof(optarg); break;
        case 'T': o_cmd_timeout = atof(optarg); break;
        case 'P': o_pace = atoi(optarg); break;
        case 'C': o_cpu_file = optarg; break;
        case 'w': {
            char *p = optarg;
            mix_total_weight = 0;
            for (int k = 0; k < T_NMIX; k++) {
                long v = strtol(p, &p, 10);
                if (v < 0 || v > 1000 || (k < T_NMIX - 1 && *p++ != ','))
                    usage();
                mix_weight[k] = (int)v;
                mix_total_weight += (unsigned)v;
            }
            if (*p || !mix_total_weight)
                usage();
            break;
        }
        default: usage();
        }
    }
    o_pass = getenv("IMAP_LOAD_PASSWORD");
    if (o_port <= 0 || o_port > 65535 || o_conns < 1 || o_conns > 5000 || o_nmsg < 100 || !o_pass ||
        o_window < 1 || o_window > QMAX || o_duration <= 0 || o_hold < 0)
        usage();
    if (!strcmp(o_mode, "envelope") || !strcmp(o_mode, "probe"))
        o_conns = 1;
    if (!strcmp(o_mode, "append"))
        o_conns = 1; /* one connection: the corpus gets UIDs 1..N in order */
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o_conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* The corpus's facts: sizes, senders, subjects, flags, and what the checks expect. */
    if (!strcmp(o_mode, "mix") || !strcmp(o_mode, "probe") || !strcmp(o_mode, "append")) {
        corpus = calloc((size_t)o_nmsg, sizeof(*corpus));
        uint64_t h = 1469598103934665603ULL;
        long bytes = 0, multi = 0, seen = 0;
        for (int i = 0; i < o_nmsg; i++) {
            gen_message(&scratch, o_seed, i, &corpus[i], NULL, 0);
            for (size_t k = 0; k < scratch.len; k++)
                h = (h ^ (unsigned char)scratch.p[k]) * 1099511628211ULL;
            bytes += (long)scratch.len;
            multi += memmem(scratch.p, scratch.len, "multipart/mixed", 15) != NULL;
            seen += corpus[i].seen;
            /* What SEARCH FROM/SUBJECT must find: a case-insensitive substring of
             * the header (RFC 3501 6.4.4); every word is ASCII, encoded subjects hold none. */
            char from[256], subj[256];
            hdr_value(scratch.p, "From", from, sizeof(from));
            hdr_value(scratch.p, "Subject", subj, sizeof(subj));
            for (unsigned k = 0; k < N_SENDERS; k++) {
                char pat[32];
                snprintf(pat, sizeof(pat), "sender%u", k);
                if (strcasestr(from, pat))
                    expect_from[k]++;
            }
            for (unsigned k = 0; k < N_SUBJ_WORDS; k++)
                if (strcasestr(subj, subj_words[k]))
                    expect_subj[k]++;
        }
        printf("corpus messages=%d bytes=%ld multipart=%ld seen=%ld fnv1a=%016llx\n", o_nmsg,
               bytes, multi, seen, (unsigned long long)h);
        fflush(stdout);
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)o_conns, sizeof(*conns));
    for (int i = 0; i < o_conns; i++) {
        conns[i].idx = i;
        conns[i].rng = stream_seed(o_seed, 1000000u + (uint64_t)i);
    }
    open_more();
    double t_setup = now();
    struct rusage ru0, ru1;
    int have_ru0 = 0;
    struct epoll_event evs[256];
    int finished = 0;
    while (!finished) {
        int n = epoll_wait(epfd, evs, 256, 50);
        if (n < 0 && errno != EINTR)
            fatal("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->phase == P_DONE || c->phase == P_DEAD)
                continue;
            if (c->phase == P_CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int e = 0;
                socklen_t el = sizeof(e);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
                if (e)
                    fatal("connect 127.0.0.1:%d (connection %d): %s", o_port, c->idx, strerror(e));
                c->phase = P_GREETING;
                conn_watch(c);
            }
            if (evs[i].events & EPOLLOUT)
                conn_flush(c);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_read(c);
        }
        double t = now();
        if (running && !have_ru0) {
            getrusage(RUSAGE_SELF, &ru0);
            have_ru0 = 1;
        }
        if (n_ready < o_conns && t - t_setup > o_cmd_timeout)
            fatal("only %d of %d connections logged in and selected after %.0f s", n_ready, o_conns,
                  o_cmd_timeout);
        /* idle: hold until told */
        if (!strcmp(o_mode, "idle") && n_ready == o_conns && !stopping) {
            struct stat st;
            if ((o_until_file && stat(o_until_file, &st) == 0) || t >= t_end) {
                stopping = 1;
                for (int i = 0; i < o_conns; i++)
                    if (conns[i].phase == P_READY)
                        start_logout(&conns[i]);
            }
        }
        /* append: all done and verified? */
        if (!strcmp(o_mode, "append") && conns[0].phase == P_SELECT + 100 && conns[0].qn == 0 &&
            bulk_exists < 0) {
            t_bulk_end = t;
            cpu_at_end = server_cpu();
            bulk_exists = conns[0].exists;
            start_logout(&conns[0]);
        }
        /* hung commands */
        for (int i = 0; i < o_conns; i++) {
            struct conn *c = &conns[i];
            if (c->phase == P_DONE || c->phase == P_DEAD || !c->qn)
                continue;
            if (t - c->q[c->qh].t0 > o_cmd_timeout) {
                fprintf(stderr, "imap_load: conn %d: no answer to `%s` after %.0f s\n", c->idx,
                        c->q[c->qh].text, o_cmd_timeout);
                stats[c->q[c->qh].type].bad++;
                fatal("server hung");
            }
        }
        if (running && cpu_at_end < 0 && !strcmp(o_mode, "mix") && t >= t_end)
            cpu_at_end = server_cpu();
        if (n_done == o_conns)
            finished = 1;
        if (!strcmp(o_mode, "mix") && running && t > t_end + o_cmd_timeout)
            fatal("connections still busy %.0f s after the end", o_cmd_timeout);
    }
    getrusage(RUSAGE_SELF, &ru1);
    if (cpu_at_end < 0)
        cpu_at_end = server_cpu();

    /* ---- report ---- */
    long errs = 0;
    for (int k = 0; k < T_NTYPES; k++)
        errs += stats[k].no + stats[k].bad + stats[k].wrong;
    int dead = 0;
    for (int i = 0; i < o_conns; i++)
        dead += conns[i].phase == P_DEAD;
    printf("mode=%s conns=%d literal_plus=%d dead_conns=%d\n", o_mode, o_conns,
           conns[0].literal_plus, dead);
    if (!strcmp(o_mode, "mix")) {
        double span = o_duration;
        long tot = 0, bad = 0;
        for (int k = 0; k < T_NMIX; k++) {
            print_type(type_names[k], &stats[k], span);
            tot += stats[k].ok;
            bad += stats[k].no + stats[k].bad + stats[k].wrong;
        }
        printf("total ok=%ld errors=%ld rate=%.1f duration=%.2f\n", tot, bad, (double)tot / span,
               span);
        printf("weights");
        for (int k = 0; k < T_NMIX; k++)
            printf(" %s=%d", type_names[k], mix_weight[k]);
        printf("\n");
    } else if (!strcmp(o_mode, "probe")) {
        for (int k = 0; k < T_NMIX; k++)
            print_type(type_names[k], &stats[k], 0);
    } else if (!strcmp(o_mode, "append")) {
        double span = t_bulk_end - t_start;
        print_type("bulk_append", &stats[T_BULK_APPEND], span);
        printf("append messages=%d seconds=%.3f rate=%.1f mib_s=%.2f exists=%ld window=%d\n",
               o_nmsg, span, (double)o_nmsg / span, (double)bulk_done / span / 1048576, bulk_exists,
               conns[0].literal_plus ? o_window : 1);
        if (bulk_exists != o_nmsg) {
            fprintf(stderr, "imap_load: SELECT INBOX after the load: %ld EXISTS, expected %d\n",
                    bulk_exists, o_nmsg);
            errs++;
        }
    } else if (!strcmp(o_mode, "envelope")) {
        struct stat_t *s = &stats[T_ENVELOPE];
        printf("envelope runs=%zu first_s=%.3f second_s=%.3f ok=%ld wrong=%ld\n", s->nlat,
               s->nlat > 0 ? s->lat[0] : 0.0, s->nlat > 1 ? s->lat[1] : 0.0, s->ok, s->wrong);
        if (s->ok != 2)
            errs++;
    } else {
        printf("idle held=%d logout_ok=%ld\n", o_conns, stats[T_LOGOUT].ok);
    }
    if (cpu_at_start >= 0 && cpu_at_end >= 0)
        printf("server cpu_s=%.2f\n", cpu_at_end - cpu_at_start);
    if (have_ru0) {
        double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                              ru0.ru_stime.tv_sec) +
                     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                              ru0.ru_stime.tv_usec) /
                         1e6;
        printf("generator cpu_s=%.2f busy_pct_of_one_cpu=%.1f\n", cpu,
               100 * cpu / (now() - t_start));
    }
    printf("errors=%ld\n", errs + dead);
    return errs + dead ? 1 : 0;
}
