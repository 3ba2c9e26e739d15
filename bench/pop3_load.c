/* bench/pop3_load.c — the POP3 load generator of bench/pop3.sh (`make bench-pop3`).
 *
 * One thread, one epoll loop, non-blocking sockets to 127.0.0.1 only. The
 * corpus: N generated messages (fixed seed; 2-20 KiB, 30% multipart with a
 * base64 attachment; CRLF lines; some lines start with "." — a lone ".", "..",
 * ".signature" — so that the servers must byte-stuff them). Every account gets
 * the same N messages, in the same order. Modes:
 *
 *   retr     the measured run: one connection per account (-a of them, users
 *            from -u), each: CAPA, USER/PASS, LIST (checks N entries with the
 *            corpus's sizes), RETR 1..N pipelined up to -W in flight (1 when the
 *            server does not list PIPELINING in CAPA), each multi-line reply read
 *            to its terminating "." line, un-stuffed and compared byte for byte
 *            with the corpus message (its octet count must equal LIST's size),
 *            then QUIT, no DELE. Timed from the first connect to the last QUIT
 *            reply; messages/s and MB/s of message octets (un-stuffed).
 *   stat     not timed, before retr: every account: CAPA, USER/PASS, STAT, LIST
 *            (checked against the corpus), QUIT. Prints each account's STAT and
 *            whether the server offers PIPELINING.
 *   append   loads the corpus into every account with IMAP APPEND (one connection
 *            per account, all at once; flags (\Seen); LITERAL+ pipelined -W deep
 *            when the server offers it, synchronizing literals one at a time
 *            otherwise). For correio, not timed.
 *   maildir  writes the corpus into each Maildir given (DIR/cur, flag S, names
 *            with S=size,W=size and increasing times so that Dovecot gives the
 *            messages UIDs in corpus order). For Dovecot, not timed.
 *   dump     `pop3_load dump SEED INDEX` prints one corpus message (1-based).
 *
 * -C names the server's cgroup CPU counter (cpuacct.usage or cpu.stat), -R the
 * pid of its root process (then /proc: utime+stime+cutime+cstime summed over the
 * process and its descendants); read when the timed span starts and -S seconds
 * after it ends (the "server cpu_s" line).
 *
 * Output: `word key=value ...` lines the script parses. Exit status 0 when every
 * reply was +OK with the expected content, 1 when some were not (the first ones
 * are printed on stderr), 2 on usage errors, 3 when the run had to stop (server
 * gone, no answer in time).
 *
 * Built by bench/pop3.sh with `cc -O2`. The password (the same for every
 * account) comes from the environment (POP3_LOAD_PASSWORD). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
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
static const char *o_user_fmt = "p%d@bench.test"; /* %d: 1..accounts */
static const char *o_pass;
static int o_accounts = 20;
static uint64_t o_seed = 1;
static int o_nmsg = 2000;
static int o_window = 16;
static double o_cmd_timeout = 120; /* seconds without an answer: the run stops */
static const char *o_cpu_file;     /* the server's cgroup CPU counter */
static int o_root_pid;             /* or its process tree in /proc */
static double o_settle = 0.5;      /* seconds after the end before the CPU is read */

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
    fprintf(stderr, "pop3_load: ");
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
static uint64_t stream_seed(uint64_t s, uint64_t k)
{
    uint64_t a = s ^ 0x5851F42D4C957F2DULL, b = k * 0xD1342543DE82EF95ULL + 0x2545F4914F6CDD1DULL;
    uint64_t z = rnd_next(&a) ^ b;
    return rnd_next(&z);
}
static unsigned rnd(uint64_t *s, unsigned n) { return n ? (unsigned)(rnd_next(s) % n) : 0; }

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
static const char *const subj_words[] = {
    "invoice", "meeting", "budget",   "project", "release", "schedule", "contract", "holiday",
    "security", "update", "report",   "review",  "launch",  "training", "outage",   "quarterly",
};
#define N_SUBJ_WORDS (sizeof(subj_words) / sizeof(subj_words[0]))
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
/* Lines that start with "." (RFC 1939 3: the server must stuff them). */
static const char *const dot_lines[] = {".", "..", "...", ".signature", ". and so on", ".hidden file",
                                        ".\t", ". "};
#define N_DOT_LINES (sizeof(dot_lines) / sizeof(dot_lines[0]))
static const char *const mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const zones[] = {"+0000", "-0300", "+0100", "+0200", "-0500", "+0530"};

static void add_text_lines(struct buf *b, uint64_t *r, size_t target)
{
    size_t start = b->len;
    while (b->len - start < target) {
        if (rnd(r, 12) == 0) { /* about one line in 12 starts with "." */
            buf_printf(b, "%s\r\n", dot_lines[rnd(r, N_DOT_LINES)]);
            continue;
        }
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

/* Message i (0-based) of the corpus for seed, into b (cleared). The same for
 * every account: the To: header names none of them. */
static void gen_message(struct buf *b, uint64_t seed, int i)
{
    uint64_t r = stream_seed(seed ^ 0x504F5033ULL /* "POP3" */, (uint64_t)i);
    b->len = 0;
    unsigned sender = rnd(&r, 100);
    unsigned target = 2048 + rnd(&r, 18 * 1024); /* 2-20 KiB in all */
    int multipart = rnd(&r, 10) < 3;             /* 30% with an attachment */
    time_t t = 1767225600 + (time_t)i * 2400 + rnd(&r, 2400);
    struct tm tm;
    gmtime_r(&t, &tm);
    const char *zone = zones[rnd(&r, sizeof(zones) / sizeof(zones[0]))];
    char date[64];
    snprintf(date, sizeof(date), "%s, %d %s %d %02d:%02d:%02d %s", wdays[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
    const char *fn = first_names[sender % 16], *ln = last_names[(sender / 16 + sender) % 12];
    unsigned dom = sender % 7;

    buf_printf(b,
               "Return-Path: <sender%u@mail%u.example>\r\n"
               "Received: from mail%u.example (mail%u.example [192.0.2.%u])\r\n"
               "\tby mx.bench.test with ESMTPS id %08X\r\n"
               "\tfor <pop@bench.test>; %s\r\n",
               sender, dom, dom, dom, 10 + dom, (unsigned)rnd_next(&r), date);
    buf_printf(b, "From: %s %s <sender%u@mail%u.example>\r\n", fn, ln, sender, dom);
    buf_printf(b, "To: Bench Users <pop@bench.test>\r\n");
    unsigned a = rnd(&r, N_SUBJ_WORDS), c = rnd(&r, N_SUBJ_WORDS);
    buf_printf(b, "Subject: %s%s and %s #%u\r\n", rnd(&r, 3) == 0 ? "Re: " : "", subj_words[a],
               subj_words[c], rnd(&r, 10000));
    buf_printf(b, "Date: %s\r\n", date);
    buf_printf(b, "Message-ID: <%u.%08X.%u@mail%u.example>\r\n", i + 1, (unsigned)rnd_next(&r),
               sender, dom);
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
        add_text_lines(b, &r, 400 + rnd(&r, 1600));
        int pdf = rnd(&r, 2);
        buf_printf(b,
                   "\r\n--%s\r\nContent-Type: %s; name=\"%s%u.%s\"\r\n"
                   "Content-Disposition: attachment; filename=\"%s%u.%s\"\r\n"
                   "Content-Transfer-Encoding: base64\r\n\r\n",
                   bnd, pdf ? "application/pdf" : "image/png", pdf ? "report" : "photo", i + 1,
                   pdf ? "pdf" : "png", pdf ? "report" : "photo", i + 1, pdf ? "pdf" : "png");
        size_t have = b->len + 64;
        add_base64(b, &r, target > have ? (target - have) * 3 / 4 : 256);
        buf_printf(b, "\r\n--%s--\r\n", bnd);
        if (rnd(&r, 4) == 0) /* an epilogue that ends on a lone "." line */
            buf_add(b, "epilogue\r\n.\r\n", 13);
    }
}

struct cmsg {
    char *p;
    size_t len;
};
static struct cmsg *corpus;
static long long corpus_octets;

static void build_corpus(void)
{
    struct buf b = {0};
    uint64_t h = 1469598103934665603ULL;
    long multi = 0, dots = 0, lone = 0;
    corpus = calloc((size_t)o_nmsg, sizeof(*corpus));
    if (!corpus)
        fatal("out of memory");
    for (int i = 0; i < o_nmsg; i++) {
        gen_message(&b, o_seed, i);
        corpus[i].p = malloc(b.len);
        if (!corpus[i].p)
            fatal("out of memory");
        memcpy(corpus[i].p, b.p, b.len);
        corpus[i].len = b.len;
        corpus_octets += (long long)b.len;
        for (size_t k = 0; k < b.len; k++)
            h = (h ^ (unsigned char)b.p[k]) * 1099511628211ULL;
        multi += memmem(b.p, b.len, "multipart/mixed", 15) != NULL;
        for (size_t k = 0; k < b.len; k++)
            if (b.p[k] == '.' && (k == 0 || b.p[k - 1] == '\n')) {
                dots++;
                lone += k + 2 < b.len && b.p[k + 1] == '\r' && b.p[k + 2] == '\n';
            }
    }
    free(b.p);
    printf("corpus messages=%d octets=%lld multipart=%ld dot_lines=%ld lone_dot_lines=%ld "
           "fnv1a=%016llx\n",
           o_nmsg, corpus_octets, multi, dots, lone, (unsigned long long)h);
    fflush(stdout);
}

/* ---- maildir ------------------------------------------------------------------------- */
static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void mode_maildir(int ndirs, char **dirs)
{
    for (int d = 0; d < ndirs; d++) {
        char path[4096];
        const char *subs[] = {"", "/cur", "/new", "/tmp"};
        for (int k = 0; k < 4; k++) {
            snprintf(path, sizeof(path), "%s%s", dirs[d], subs[k]);
            if (mkdir(path, 0700) < 0 && errno != EEXIST)
                fatal("mkdir %s: %s", path, strerror(errno));
        }
        for (int i = 0; i < o_nmsg; i++) {
            /* Dovecot sorts new files by the time in their names; W= is the size
             * with CRLF line ends, which the corpus has already. */
            snprintf(path, sizeof(path), "%s/cur/%ld.M%06dP%dQ%d.bench,S=%zu,W=%zu:2,S", dirs[d],
                     1767225600L + i, i % 1000000, 1000 + d, i + 1, corpus[i].len, corpus[i].len);
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0 || write_all(fd, corpus[i].p, corpus[i].len) < 0 || close(fd) < 0)
                fatal("%s: %s", path, strerror(errno));
        }
    }
    printf("maildir dirs=%d messages_each=%d octets_each=%lld\n", ndirs, o_nmsg, corpus_octets);
}

/* ---- server CPU ---------------------------------------------------------------------- */
/* CPU seconds so far of the process tree rooted at pid: utime+stime of the live
 * processes plus cutime+cstime (children they reaped). */
static double proc_tree_cpu(int root)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    struct ent {
        int pid, ppid;
        double cpu;
    } *e = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    long tck = sysconf(_SC_CLK_TCK);
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        char path[300], line[2048];
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t got = fread(line, 1, sizeof(line) - 1, f);
        fclose(f);
        line[got] = '\0';
        char *p = strrchr(line, ')');
        if (!p)
            continue;
        /* after ") ": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) */
        char st;
        int ppid;
        unsigned long long v[13];
        if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                   &st, &ppid, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]) != 11)
            continue;
        /* v[0..3]: minflt cminflt majflt cmajflt; v[4] utime v[5] stime v[6] cutime v[7] cstime */
        if (n == cap) {
            cap = cap ? cap * 2 : 512;
            e = xrealloc(e, cap * sizeof(*e));
        }
        e[n].pid = atoi(de->d_name);
        e[n].ppid = ppid;
        e[n].cpu = (double)(v[4] + v[5] + v[6] + v[7]) / (double)tck;
        n++;
    }
    closedir(d);
    /* the tree: repeated passes (process lists are small) */
    char *in = calloc(n ? n : 1, 1);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (e[i].pid == root)
            in[i] = 1, found = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < n; j++)
                if (in[j] && e[j].pid == e[i].ppid) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i])
            sum += e[i].cpu;
    free(in);
    free(e);
    return found ? sum : -1;
}

/* cgroup v1 cpuacct.usage (ns) or v2 cpu.stat (usage_usec); else the /proc tree. */
static double server_cpu(void)
{
    if (o_cpu_file) {
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
    if (o_root_pid > 0)
        return proc_tree_cpu(o_root_pid);
    return -1;
}

/* ---- connections ---------------------------------------------------------------------- */
enum {
    C_GREET,
    C_CAPA,
    C_USER,
    C_PASS,
    C_STAT,
    C_LIST,
    C_RETR,
    C_QUIT,
    /* IMAP (append mode) */
    I_GREET,
    I_CAPA,
    I_LOGIN,
    I_APPEND,
    I_LOGOUT,
};
static const char *const cmd_names[] = {"greeting", "CAPA",  "USER",       "PASS",
                                        "STAT",     "LIST",  "RETR",       "QUIT",
                                        "greeting", "CAPABILITY", "LOGIN", "APPEND", "LOGOUT"};

#define QMAX 256
struct pending {
    int type;
    int msgno; /* RETR / APPEND: 1-based message */
    unsigned tag;
    double t0;
};

enum { P_CONNECTING, P_OPEN, P_DONE, P_DEAD };

struct conn {
    int fd, idx, phase;
    char user[128];
    struct buf in, out;
    size_t rpos;
    struct pending q[QMAX];
    int qh, qn;
    /* the reply being read */
    int in_multi;
    size_t got;           /* RETR: un-stuffed octets so far */
    long mismatch_at;     /* RETR: first octet that differs from the corpus, -1 none */
    int list_n, list_bad; /* LIST: entries, entries that differ */
    unsigned *list_size;
    int capa_pipelining, capa_user, capa_lines;
    long stat_n;
    long long stat_octets;
    int window;
    int next_msg; /* next RETR / APPEND to send, 1-based */
    int answered; /* RETR / APPEND answered */
    /* IMAP */
    unsigned next_tag;
    int literal_plus, cont_wait;
    struct buf cont;
    double t_open, t_login, t_end;
};

static struct conn *conns;
static int epfd;
static int n_done;
static long n_errors, n_errors_printed;
static long retr_ok, retr_bad, list_ok;
static long long payload_octets, wire_octets;
static int capa_pipelining_all = 1, capa_user_all = 1;
static int running;

static void err_report(struct conn *c, const char *fmt, ...)
{
    n_errors++;
    if (n_errors_printed++ >= 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pop3_load: %s (conn %d): ", c->user, c->idx);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void conn_watch(struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | (c->out.len || c->phase == P_CONNECTING ? EPOLLOUT : 0u),
                             .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_flush(struct conn *c)
{
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + off, c->out.len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            break; /* the read side will see the close */
        }
        off += (size_t)n;
    }
    memmove(c->out.p, c->out.p + off, c->out.len - off);
    c->out.len -= off;
    conn_watch(c);
}

static struct pending *push(struct conn *c, int type, int msgno)
{
    if (c->qn == QMAX)
        fatal("too many commands in flight");
    struct pending *p = &c->q[(c->qh + c->qn++) % QMAX];
    p->type = type;
    p->msgno = msgno;
    p->t0 = now();
    p->tag = 0;
    return p;
}

/* A POP3 command line; flushed by the caller (pop3_send does). */
static void pop3_send(struct conn *c, int type, int msgno, const char *fmt, ...)
{
    push(c, type, msgno);
    va_list ap;
    va_start(ap, fmt);
    char line[600];
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    buf_printf(&c->out, "%s\r\n", line);
    conn_flush(c);
}

static void conn_finish(struct conn *c, int dead)
{
    if (c->phase == P_DONE || c->phase == P_DEAD)
        return;
    c->phase = dead ? P_DEAD : P_DONE;
    c->t_end = now();
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    n_done++;
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
    c->t_open = now();
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
        fatal("connect 127.0.0.1:%d: %s", o_port, strerror(errno));
    c->phase = P_CONNECTING;
    c->mismatch_at = -1;
    c->list_size = calloc((size_t)o_nmsg + 1, sizeof(unsigned));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    push(c, strcmp(o_mode, "append") ? C_GREET : I_GREET, 0);
}

/* ---- POP3 ------------------------------------------------------------------------------ */
static int is_multi(int type) { return type == C_CAPA || type == C_LIST || type == C_RETR; }

static void retr_fill(struct conn *c)
{
    while (c->qn < c->window && c->next_msg <= o_nmsg) {
        push(c, C_RETR, c->next_msg);
        buf_printf(&c->out, "RETR %d\r\n", c->next_msg++);
    }
    if (c->next_msg > o_nmsg && c->qn == 0) {
        push(c, C_QUIT, 0);
        buf_add(&c->out, "QUIT\r\n", 6);
    }
    conn_flush(c);
}

/* A complete reply to the command at the head of the queue. ok: +OK. */
static void pop3_done(struct conn *c, int ok, const char *line)
{
    struct pending p = c->q[c->qh];
    c->qh = (c->qh + 1) % QMAX;
    c->qn--;
    if (!ok) {
        if (p.type == C_RETR)
            err_report(c, "RETR %d -> %s", p.msgno, line);
        else
            err_report(c, "%s -> %s", cmd_names[p.type], line);
        if (p.type != C_RETR) { /* nothing sensible to do on this connection */
            conn_finish(c, 1);
            return;
        }
        retr_bad++;
        c->answered++;
        retr_fill(c);
        return;
    }
    switch (p.type) {
    case C_GREET:
        pop3_send(c, C_CAPA, 0, "CAPA");
        break;
    case C_CAPA:
        if (!c->capa_pipelining)
            capa_pipelining_all = 0;
        if (!c->capa_user)
            capa_user_all = 0;
        c->window = c->capa_pipelining ? o_window : 1;
        pop3_send(c, C_USER, 0, "USER %s", c->user);
        break;
    case C_USER:
        push(c, C_PASS, 0);
        buf_printf(&c->out, "PASS %s\r\n", o_pass);
        conn_flush(c);
        break;
    case C_PASS:
        c->t_login = now();
        if (!strcmp(o_mode, "stat"))
            pop3_send(c, C_STAT, 0, "STAT");
        else
            pop3_send(c, C_LIST, 0, "LIST");
        break;
    case C_STAT:
        if (sscanf(line, "+OK %ld %lld", &c->stat_n, &c->stat_octets) != 2) {
            err_report(c, "STAT -> %s (not \"+OK n octets\")", line);
            c->stat_n = -1;
        }
        pop3_send(c, C_LIST, 0, "LIST");
        break;
    case C_LIST:
        if (c->list_n != o_nmsg || c->list_bad) {
            err_report(c, "LIST: %d entries (%d of them not the corpus's size), expected %d with the "
                          "corpus's sizes",
                       c->list_n, c->list_bad, o_nmsg);
            push(c, C_QUIT, 0);
            buf_add(&c->out, "QUIT\r\n", 6);
            conn_flush(c);
            break;
        }
        list_ok++;
        if (!strcmp(o_mode, "stat")) {
            pop3_send(c, C_QUIT, 0, "QUIT");
        } else {
            c->next_msg = 1;
            retr_fill(c);
        }
        break;
    case C_RETR: {
        int m = p.msgno;
        size_t want = c->list_size[m];
        if (c->got != want || c->got != corpus[m - 1].len || c->mismatch_at >= 0) {
            err_report(c, "RETR %d: %zu octets un-stuffed, LIST said %zu, the corpus has %zu%s%ld",
                       m, c->got, want, corpus[m - 1].len,
                       c->mismatch_at >= 0 ? "; content differs from octet " : "",
                       c->mismatch_at);
            retr_bad++;
        } else {
            retr_ok++;
            payload_octets += (long long)c->got;
        }
        c->answered++;
        retr_fill(c);
        break;
    }
    case C_QUIT:
        conn_finish(c, 0);
        break;
    }
}

/* A line of a multi-line reply (terminator excluded), with its CRLF. */
static void pop3_body_line(struct conn *c, const char *s, size_t n)
{
    struct pending *p = &c->q[c->qh];
    switch (p->type) {
    case C_RETR: {
        if (s[0] == '.') { /* byte-stuffed (RFC 1939 3) */
            s++;
            n--;
        }
        const struct cmsg *m = &corpus[p->msgno - 1];
        if (c->mismatch_at < 0 && (c->got + n > m->len || memcmp(m->p + c->got, s, n)))
            c->mismatch_at = (long)c->got;
        c->got += n;
        break;
    }
    case C_LIST: {
        char tmp[64];
        size_t k = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1;
        memcpy(tmp, s, k);
        tmp[k] = '\0';
        int num;
        unsigned long sz;
        if (sscanf(tmp, "%d %lu", &num, &sz) != 2 || num != c->list_n + 1 || num > o_nmsg) {
            c->list_bad++;
        } else {
            c->list_size[num] = (unsigned)sz;
            if (sz != corpus[num - 1].len)
                c->list_bad++;
        }
        c->list_n++;
        break;
    }
    case C_CAPA: {
        c->capa_lines++;
        size_t k = 0;
        while (k < n && s[k] != ' ' && s[k] != '\r' && s[k] != '\n')
            k++;
        if (k == 10 && !strncasecmp(s, "PIPELINING", 10))
            c->capa_pipelining = 1;
        if (k == 4 && !strncasecmp(s, "USER", 4))
            c->capa_user = 1;
        break;
    }
    }
}

static void pop3_parse(struct conn *c)
{
    struct buf *b = &c->in;
    for (;;) {
        char *s = b->p + c->rpos;
        size_t avail = b->len - c->rpos;
        char *nl = avail ? memchr(s, '\n', avail) : NULL;
        if (!nl)
            break;
        size_t n = (size_t)(nl - s) + 1;
        c->rpos += n;
        if (!c->qn) {
            char t[120];
            snprintf(t, sizeof(t), "%.*s", (int)(n > 100 ? 100 : n - 1), s);
            err_report(c, "a line with no command in flight: %s", t);
            continue;
        }
        if (c->in_multi) {
            if (n == 3 && s[0] == '.' && s[1] == '\r') {
                c->in_multi = 0;
                pop3_done(c, 1, "");
            } else if (n == 2 && s[0] == '.') {
                c->in_multi = 0;
                err_report(c, "a multi-line reply ends with \".\\n\", not \".\\r\\n\"");
                pop3_done(c, 1, "");
            } else {
                pop3_body_line(c, s, n);
            }
        } else {
            char line[300];
            size_t k = n - 1;
            if (k && s[k - 1] == '\r')
                k--;
            if (k > sizeof(line) - 1)
                k = sizeof(line) - 1;
            memcpy(line, s, k);
            line[k] = '\0';
            int ok = !strncmp(line, "+OK", 3);
            if (!ok && strncmp(line, "-ERR", 4)) {
                err_report(c, "a reply that is neither +OK nor -ERR: %s", line);
                conn_finish(c, 1);
                return;
            }
            int type = c->q[c->qh].type;
            if (ok && is_multi(type)) {
                c->in_multi = 1;
                c->got = 0;
                c->mismatch_at = -1;
                c->list_n = c->list_bad = 0;
            } else {
                pop3_done(c, ok, line);
            }
        }
        if (c->phase == P_DONE || c->phase == P_DEAD)
            return;
    }
    if (c->rpos) {
        memmove(b->p, b->p + c->rpos, b->len - c->rpos);
        b->len -= c->rpos;
        c->rpos = 0;
    }
}

/* ---- IMAP (append mode) ------------------------------------------------------------------ */
static int bulk_total;

static void imap_cmd(struct conn *c, int type, int msgno, const char *text, const char *lit,
                     size_t litlen)
{
    struct pending *p = push(c, type, msgno);
    p->tag = ++c->next_tag;
    buf_printf(&c->out, "a%u %s", p->tag, text);
    if (lit && c->literal_plus) {
        buf_printf(&c->out, " {%zu+}\r\n", litlen);
        buf_add(&c->out, lit, litlen);
        buf_add(&c->out, "\r\n", 2);
    } else if (lit) {
        buf_printf(&c->out, " {%zu}\r\n", litlen);
        c->cont.len = 0;
        buf_add(&c->cont, lit, litlen);
        buf_add(&c->cont, "\r\n", 2);
        c->cont_wait = 1;
    } else {
        buf_add(&c->out, "\r\n", 2);
    }
}

static void append_fill(struct conn *c)
{
    int window = c->literal_plus ? o_window : 1;
    while (c->qn < window && c->next_msg <= o_nmsg) {
        int m = c->next_msg++;
        imap_cmd(c, I_APPEND, m, "APPEND INBOX (\\Seen)", corpus[m - 1].p, corpus[m - 1].len);
    }
    if (c->next_msg > o_nmsg && c->qn == 0)
        imap_cmd(c, I_LOGOUT, 0, "LOGOUT", NULL, 0);
    conn_flush(c);
}

static void imap_line(struct conn *c, const char *line)
{
    if (!c->qn)
        return;
    struct pending *p = &c->q[c->qh];
    if (line[0] == '*') {
        if (p->type == I_GREET) {
            c->qh = (c->qh + 1) % QMAX;
            c->qn--;
            if (strncmp(line, "* OK", 4)) {
                err_report(c, "IMAP greeting: %s", line);
                conn_finish(c, 1);
                return;
            }
            imap_cmd(c, I_CAPA, 0, "CAPABILITY", NULL, 0);
            conn_flush(c);
        } else if (strcasestr(line, "CAPABILITY") && strcasestr(line, "LITERAL+")) {
            c->literal_plus = 1;
        }
        return;
    }
    if (line[0] == '+') {
        if (c->cont_wait) {
            buf_add(&c->out, c->cont.p, c->cont.len);
            c->cont_wait = 0;
            conn_flush(c);
        }
        return;
    }
    unsigned tag = 0;
    if (line[0] != 'a' || sscanf(line + 1, "%u", &tag) != 1 || tag != p->tag) {
        err_report(c, "unexpected IMAP line (waiting for a%u): %s", p->tag, line);
        conn_finish(c, 1);
        return;
    }
    const char *st = strchr(line, ' ');
    int ok = st && !strncasecmp(st + 1, "OK", 2);
    struct pending done = *p;
    c->qh = (c->qh + 1) % QMAX;
    c->qn--;
    if (!ok) {
        err_report(c, "%s%s -> %s", cmd_names[done.type], done.type == I_APPEND ? " of a message" : "",
                   line);
        if (done.type != I_APPEND) {
            conn_finish(c, 1);
            return;
        }
    }
    switch (done.type) {
    case I_CAPA: {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "LOGIN \"%s\" \"%s\"", c->user, o_pass);
        imap_cmd(c, I_LOGIN, 0, cmd, NULL, 0);
        conn_flush(c);
        break;
    }
    case I_LOGIN:
        c->next_msg = 1;
        append_fill(c);
        break;
    case I_APPEND:
        c->answered++;
        if (ok)
            bulk_total++;
        append_fill(c);
        break;
    case I_LOGOUT:
        conn_finish(c, 0);
        break;
    }
}

static void imap_parse(struct conn *c)
{
    struct buf *b = &c->in;
    for (;;) {
        char *s = b->p + c->rpos;
        size_t avail = b->len - c->rpos;
        char *nl = avail ? memchr(s, '\n', avail) : NULL;
        if (!nl)
            break;
        size_t n = (size_t)(nl - s) + 1;
        c->rpos += n;
        char line[1000];
        size_t k = n - 1;
        if (k && s[k - 1] == '\r')
            k--;
        if (k > sizeof(line) - 1)
            k = sizeof(line) - 1;
        memcpy(line, s, k);
        line[k] = '\0';
        imap_line(c, line);
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
        buf_need(&c->in, 262144);
        ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            wire_octets += n;
            if (!strcmp(o_mode, "append"))
                imap_parse(c);
            else
                pop3_parse(c);
            if (c->phase == P_DONE || c->phase == P_DEAD)
                return;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        err_report(c, "connection %s while waiting for %s", n == 0 ? "closed by the server" : strerror(errno),
                   c->qn ? cmd_names[c->q[c->qh].type] : "nothing");
        conn_finish(c, 1);
        return;
    }
}

/* ---- results ---------------------------------------------------------------------------- */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: pop3_load retr|stat|append -p PORT [-a ACCOUNTS] [-u USER_FORMAT] [-n MSGS]\n"
            "                 [-s SEED] [-W WINDOW] [-T CMD_TIMEOUT] [-C CGROUP_CPU_FILE | -R PID]\n"
            "                 [-S SETTLE_SECONDS]\n"
            "       pop3_load maildir [-n MSGS] [-s SEED] DIR...\n"
            "       pop3_load dump SEED INDEX\n"
            "  the password in POP3_LOAD_PASSWORD; the server is always 127.0.0.1:PORT;\n"
            "  USER_FORMAT has one %%d, 1..ACCOUNTS (default p%%d@bench.test).\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    o_mode = argv[1];
    if (!strcmp(o_mode, "dump")) {
        if (argc != 4)
            usage();
        struct buf b = {0};
        gen_message(&b, strtoull(argv[2], NULL, 10), atoi(argv[3]) - 1);
        fwrite(b.p, 1, b.len, stdout);
        return 0;
    }
    if (strcmp(o_mode, "retr") && strcmp(o_mode, "stat") && strcmp(o_mode, "append") &&
        strcmp(o_mode, "maildir"))
        usage();
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "p:a:u:n:s:W:T:C:R:S:")) != -1) {
        switch (opt) {
        case 'p': o_port = atoi(optarg); break;
        case 'a': o_accounts = atoi(optarg); break;
        case 'u': o_user_fmt = optarg; break;
        case 'n': o_nmsg = atoi(optarg); break;
        case 's': o_seed = strtoull(optarg, NULL, 10); break;
        case 'W': o_window = atoi(optarg); break;
        case 'T': o_cmd_timeout = atof(optarg); break;
        case 'C': o_cpu_file = optarg; break;
        case 'R': o_root_pid = atoi(optarg); break;
        case 'S': o_settle = atof(optarg); break;
        default: usage();
        }
    }
    if (o_nmsg < 1 || o_nmsg > 1000000)
        usage();
    if (!strcmp(o_mode, "maildir")) {
        if (optind >= argc)
            usage();
        build_corpus();
        mode_maildir(argc - optind, argv + optind);
        return 0;
    }
    o_pass = getenv("POP3_LOAD_PASSWORD");
    {
        const char *pc = strchr(o_user_fmt, '%');
        if (!pc || pc[1] != 'd' || strchr(pc + 1, '%'))
            usage();
    }
    if (o_port <= 0 || o_port > 65535 || o_accounts < 1 || o_accounts > 1000 || !o_pass ||
        o_window < 1 || o_window > QMAX - 1 || o_cmd_timeout <= 0 || o_settle < 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    build_corpus();

    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)o_accounts, sizeof(*conns));
    for (int i = 0; i < o_accounts; i++) {
        conns[i].idx = i;
        conns[i].window = 1;
        snprintf(conns[i].user, sizeof(conns[i].user), o_user_fmt, i + 1);
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double cpu0 = server_cpu();
    double t0 = now();
    running = 1;
    for (int i = 0; i < o_accounts; i++)
        conn_open(&conns[i]);
    struct epoll_event evs[256];
    double t_last = t0;
    while (n_done < o_accounts) {
        int n = epoll_wait(epfd, evs, 256, 100);
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
                    fatal("connect 127.0.0.1:%d (%s): %s", o_port, c->user, strerror(e));
                c->phase = P_OPEN;
                conn_watch(c);
            }
            if (evs[i].events & EPOLLOUT)
                conn_flush(c);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_read(c);
        }
        double t = now();
        for (int i = 0; i < o_accounts; i++) {
            struct conn *c = &conns[i];
            if (c->phase == P_DONE || c->phase == P_DEAD || !c->qn)
                continue;
            if (t - c->q[c->qh].t0 > o_cmd_timeout) {
                struct pending *p = &c->q[c->qh];
                fprintf(stderr, "pop3_load: %s: no complete answer to %s%s after %.0f s\n", c->user,
                        cmd_names[p->type], p->type == C_RETR ? " (a RETR)" : "", o_cmd_timeout);
                fatal("server hung");
            }
        }
    }
    for (int i = 0; i < o_accounts; i++)
        if (conns[i].t_end > t_last)
            t_last = conns[i].t_end;
    double span = t_last - t0;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu1 = -1;
    if (cpu0 >= 0) {
        double until = now() + o_settle;
        while (now() < until)
            usleep(10000);
        cpu1 = server_cpu();
    }

    /* ---- report ---- */
    int dead = 0;
    for (int i = 0; i < o_accounts; i++)
        dead += conns[i].phase == P_DEAD;
    if (strcmp(o_mode, "append"))
        printf("capa pipelining=%d user=%d\n", capa_pipelining_all, capa_user_all);
    if (!strcmp(o_mode, "stat")) {
        int same = 1, match = 1;
        for (int i = 0; i < o_accounts; i++) {
            struct conn *c = &conns[i];
            printf("stat account=%s messages=%ld octets=%lld\n", c->user, c->stat_n, c->stat_octets);
            if (c->stat_n != conns[0].stat_n || c->stat_octets != conns[0].stat_octets)
                same = 0;
            if (c->stat_n != o_nmsg || c->stat_octets != corpus_octets)
                match = 0;
        }
        printf("stattotal accounts=%d messages_each=%ld octets_each=%lld all_same=%d "
               "corpus_messages=%d corpus_octets=%lld matches_corpus=%d list_ok=%ld\n",
               o_accounts, conns[0].stat_n, conns[0].stat_octets, same, o_nmsg, corpus_octets, match,
               list_ok);
        if (!same || !match) {
            fprintf(stderr, "pop3_load: STAT differs from the corpus (%d messages, %lld octets) on "
                            "some account\n",
                    o_nmsg, corpus_octets);
            n_errors++;
        }
        if (list_ok != o_accounts)
            n_errors++;
    } else if (!strcmp(o_mode, "append")) {
        printf("append accounts=%d messages=%d seconds=%.3f rate=%.1f literal_plus=%d window=%d\n",
               o_accounts, bulk_total, span, bulk_total / span, conns[0].literal_plus,
               conns[0].literal_plus ? o_window : 1);
        if (bulk_total != o_accounts * o_nmsg)
            n_errors++;
    } else {
        long total = (long)o_accounts * o_nmsg;
        double *lg = calloc((size_t)o_accounts, sizeof(double));
        double *ss = calloc((size_t)o_accounts, sizeof(double));
        for (int i = 0; i < o_accounts; i++) {
            lg[i] = conns[i].t_login > 0 ? conns[i].t_login - conns[i].t_open : 0;
            ss[i] = conns[i].t_end - conns[i].t_open;
        }
        qsort(lg, (size_t)o_accounts, sizeof(double), cmp_d);
        qsort(ss, (size_t)o_accounts, sizeof(double), cmp_d);
        printf("retr accounts=%d messages=%ld verified=%ld bad=%ld octets=%lld wire_octets=%lld "
               "seconds=%.3f rate=%.1f mb_s=%.2f window=%d\n",
               o_accounts, total, retr_ok, retr_bad, payload_octets, wire_octets, span,
               (double)retr_ok / span, (double)payload_octets / span / 1e6,
               capa_pipelining_all ? o_window : 1);
        printf("login p50_ms=%.1f max_ms=%.1f\n", lg[o_accounts / 2] * 1000,
               lg[o_accounts - 1] * 1000);
        printf("session min_s=%.3f max_s=%.3f\n", ss[0], ss[o_accounts - 1]);
        if (retr_ok != total)
            n_errors++;
    }
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("server cpu_s=%.2f settle_s=%.1f\n", cpu1 - cpu0, o_settle);
    double gcpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                           ru0.ru_stime.tv_sec) +
                  (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                           ru0.ru_stime.tv_usec) /
                      1e6;
    printf("generator cpu_s=%.2f busy_pct_of_one_cpu=%.1f\n", gcpu, span > 0 ? 100 * gcpu / span : 0);
    printf("errors=%ld dead_conns=%d\n", n_errors, dead);
    return n_errors || dead ? 1 : 0;
}
