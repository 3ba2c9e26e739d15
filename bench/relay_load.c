/* bench/relay_load.c — the SMTP load generator of bench/relay.sh (`make bench-relay`).
 *
 * One thread, one epoll loop, non-blocking sockets to 127.0.0.1 only.
 * -c connections each greet (EHLO), optionally log in once with AUTH PLAIN
 * (-a; the password comes from the environment, RELAY_LOAD_PASSWORD), then
 * send messages back to back until -n have been handed out in all: MAIL,
 * RCPT and DATA pipelined (when the server offers PIPELINING; one at a time
 * otherwise), the message after the 354, the next message after the 250 to
 * the final dot; QUIT at the end.
 *
 * Every message is -l bytes of body (72-column text lines) under the same
 * headers: From: the -f address (also the MAIL FROM), To: r<i>@<-d domain>
 * (also the RCPT TO), Subject, Date, Message-ID, MIME-Version, Content-Type.
 *
 * After the last 250, when -k names smtp-sink's counter output (smtp-sink
 * -c, redirected to a file: "sess=N quit=N mesg=N\r" after every change),
 * the generator waits until the sink has counted -K messages (default -n),
 * reading the file every 5 ms; then, when -q gives a command, it runs it
 * every 50 ms until its output contains -Q (default "queue is empty"). The
 * time of each is reported: the run's end is when both hold.
 *
 * -P SINK_PORT: every 50 ms the generator counts the established connections
 * to that local port in /proc/net/tcp (the server's connections to the
 * sink) and reports the most seen at once ("sink_conns max=").
 *
 * -C names the server's cgroup CPU counter (cgroup v1 cpuacct.usage or v2
 * cpu.stat), read at the start, when the last message is accepted and at the
 * end. -T: seconds a connection may wait for a reply (the run stops, exit 3);
 * -W: seconds to wait for the sink and the queue after the last 250 (exit 3).
 *
 * Output: `key=value` lines that bench/relay.sh parses (see the end of main).
 * Exit status 0 when every message was accepted (and reached the sink and
 * left the queue, when asked to wait for those), 1 when some were refused,
 * 2 on usage errors, 3 when the run had to stop (server gone, no answer in
 * time, sink or queue not done in time).
 *
 * Built by bench/relay.sh with `cc -O2`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- options ------------------------------------------------------------------ */
static int o_port;
static int o_nmsg = 5000;
static int o_conns = 20;
static size_t o_size = 4096;
static const char *o_from = "u@bench.test";
static const char *o_domain = "sink.test";
static const char *o_helo = "client.bench.test";
static int o_auth;
static const char *o_pass;
static double o_timeout = 120;
static double o_wait = 600;
static const char *o_sink_file;
static long o_sink_target = -1;
static const char *o_queue_cmd;
static const char *o_queue_marker = "queue is empty";
static const char *o_cpu_file;
static int o_sink_port; /* count the sink's established connections (/proc/net/tcp) */

/* ---- small helpers --------------------------------------------------------------- */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "relay_load: ");
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

struct buf {
    char *p;
    size_t len, cap, off; /* off: bytes already consumed from the front */
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
static void buf_compact(struct buf *b)
{
    if (b->off == 0)
        return;
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->p)
        b->p[b->len] = '\0';
}

static char *base64(const unsigned char *d, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1), *p = o;
    if (!o)
        fatal("out of memory");
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        *p++ = t[v >> 18 & 63];
        *p++ = t[v >> 12 & 63];
        *p++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? t[v & 63] : '=';
    }
    *p = '\0';
    return o;
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

/* The last "mesg=N" in smtp-sink's counter output (0 before the first; -1 without the file). */
static long sink_count(void)
{
    int fd = open(o_sink_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char b[512];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof(b) - 1 ? end - (off_t)sizeof(b) + 1 : 0;
    ssize_t n = pread(fd, b, sizeof(b) - 1, from);
    close(fd);
    if (n < 0)
        return -1;
    b[n] = '\0';
    for (ssize_t i = 0; i < n; i++) /* a file truncated under the sink has a hole of NULs */
        if (b[i] == '\0')
            b[i] = ' ';
    long v = 0;
    for (char *p = b; (p = strstr(p, "mesg=")) != NULL; p += 5) {
        char *e;
        long x = strtol(p + 5, &e, 10);
        if (e != p + 5 && (*e == '\r' || *e == '\n' || *e == ' '))
            v = x; /* a complete number (not cut by a write in progress) */
    }
    return v;
}

/* Established TCP connections whose local port is the sink's (IPv4): the
 * connections the server under test holds to the sink right now. */
static int sink_conns_now(void)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    if (!fgets(line, sizeof(line), f)) { /* the header */
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        unsigned lport, st;
        /* "  0: 0100007F:1F90 0100007F:D2A4 01 ..." */
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x", &lport, &st) == 2 &&
            lport == (unsigned)o_sink_port && st == 1)
            n++;
    }
    fclose(f);
    return n;
}
static int sink_conns_max = -1;
static double sink_conns_last;
static void sink_conns_sample(double t)
{
    if (!o_sink_port || t - sink_conns_last < 0.05)
        return;
    sink_conns_last = t;
    int n = sink_conns_now();
    if (n > sink_conns_max)
        sink_conns_max = n;
}

/* Whether the queue command's output holds the marker (-1: it could not run). */
static int queue_empty(void)
{
    FILE *p = popen(o_queue_cmd, "r");
    if (!p)
        return -1;
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof(line), p))
        if (strstr(line, o_queue_marker))
            found = 1;
    int st = pclose(p);
    if (st == -1)
        return -1;
    return found;
}

/* ---- the message --------------------------------------------------------------------- */
static struct buf body; /* the same for every message, ends with CRLF, no line starts with "." */

static void make_body(void)
{
    static const char *const words[] = {
        "the",    "relay",  "of",     "mail",   "and",      "queue",   "to",      "remote",
        "domain", "is",     "that",   "for",    "message",  "with",    "server",  "on",
        "please", "review", "the",    "figures", "attached", "thanks", "regards", "next",
        "week",   "draft",  "agenda", "minutes", "deadline", "customer", "support", "team",
    };
    uint64_t r = 88172645463325252ULL;
    while (body.len < o_size) {
        size_t line = 0;
        while (line < 66) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            const char *w = words[r % (sizeof(words) / sizeof(words[0]))];
            buf_printf(&body, line ? " %s" : "%s", w);
            line += strlen(w) + 1;
        }
        buf_add(&body, "\r\n", 2);
    }
    /* Exactly o_size bytes: cut, and end the last line. */
    if (body.len > o_size && o_size >= 2) {
        body.len = o_size - 2;
        buf_add(&body, "\r\n", 2);
    }
}

static void add_message(struct buf *out, int i)
{
    buf_printf(out,
               "From: Bench Sender <%s>\r\n"
               "To: <r%d@%s>\r\n"
               "Subject: relay bench message %d\r\n"
               "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
               "Message-ID: <relay.%d.%ld@bench.test>\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n"
               "\r\n",
               o_from, i, o_domain, i, i, (long)getpid());
    buf_add(out, body.p, body.len);
    buf_add(out, ".\r\n", 3);
}

/* ---- connections --------------------------------------------------------------------- */
enum expect { E_GREETING, E_EHLO, E_AUTH, E_MAIL, E_RCPT, E_DATA, E_DOT, E_RSET, E_QUIT };
static const char *const expect_names[] = {"greeting", "EHLO", "AUTH", "MAIL", "RCPT",
                                           "DATA",     ".",    "RSET", "QUIT"};

#define QMAX 8
struct conn {
    int idx, fd;
    int connecting, done, watching_out;
    struct buf in, out;
    enum expect q[QMAX];
    int qh, qn;
    double t_sent; /* when the oldest awaited command went out */
    int pipelining;
    int msg;       /* the message in progress, -1 none */
    int mail_ok, rcpt_ok;
    double t_msg;  /* MAIL sent */
};

static int ep;
static struct conn *conns;
static int next_msg, n_accepted, n_refused, n_done;
static int n_ready; /* sessions past EHLO (and AUTH) */
static double t_ready = -1, cpu_ready = -1;
static double *lat;
static size_t nlat;
static char *auth_b64;
static int first_errors;

static void conn_watch(struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | (c->out.len > c->out.off || c->connecting ? EPOLLOUT : 0),
                             .data.ptr = c};
    int want_out = (ev.events & EPOLLOUT) != 0;
    if (want_out != c->watching_out) {
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
            fatal("epoll_ctl: %s", strerror(errno));
        c->watching_out = want_out;
    }
}

static void conn_flush(struct conn *c)
{
    while (c->out.len > c->out.off) {
        ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            fatal("connection %d: write: %s", c->idx, strerror(errno));
        }
        c->out.off += (size_t)n;
    }
    if (c->out.off == c->out.len) {
        c->out.off = c->out.len = 0;
    } else if (c->out.off > 65536) {
        buf_compact(&c->out);
    }
    conn_watch(c);
}

static void expect_push(struct conn *c, enum expect e)
{
    if (c->qn == QMAX)
        fatal("connection %d: too many commands in flight", c->idx);
    if (c->qn == 0)
        c->t_sent = now();
    c->q[(c->qh + c->qn++) % QMAX] = e;
}

static void send_cmd(struct conn *c, enum expect e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_need(&c->out, (size_t)n + 2);
    va_start(ap, fmt);
    vsnprintf(c->out.p + c->out.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    c->out.len += (size_t)n;
    buf_add(&c->out, "\r\n", 2);
    expect_push(c, e);
}

static void refused(struct conn *c, enum expect e, const char *reply)
{
    if (first_errors++ < 10)
        fprintf(stderr, "relay_load: connection %d, message %d: %s answered: %s\n", c->idx, c->msg,
                expect_names[e], reply);
}

/* One more session is past EHLO (and AUTH): the time and the server's CPU when all are. */
static void session_ready(void)
{
    if (++n_ready == o_conns) {
        t_ready = now();
        cpu_ready = server_cpu();
    }
}

static void next_message(struct conn *c)
{
    if (next_msg >= o_nmsg) {
        c->msg = -1;
        send_cmd(c, E_QUIT, "QUIT");
        return;
    }
    c->msg = next_msg++;
    c->mail_ok = c->rcpt_ok = 0;
    c->t_msg = now();
    send_cmd(c, E_MAIL, "MAIL FROM:<%s> SIZE=%zu", o_from, body.len + 400);
    if (c->pipelining) {
        send_cmd(c, E_RCPT, "RCPT TO:<r%d@%s>", c->msg, o_domain);
        send_cmd(c, E_DATA, "DATA");
    }
}

/* One whole reply (its last line in `last`, the code in code). */
static void on_reply(struct conn *c, int code, const char *last, const char *all)
{
    if (c->qn == 0)
        fatal("connection %d: a reply nothing asked for: %s", c->idx, last);
    enum expect e = c->q[c->qh];
    c->qh = (c->qh + 1) % QMAX;
    c->qn--;
    if (c->qn)
        c->t_sent = now();
    switch (e) {
    case E_GREETING:
        if (code != 220)
            fatal("connection %d: greeting: %s", c->idx, last);
        send_cmd(c, E_EHLO, "EHLO %s", o_helo);
        break;
    case E_EHLO:
        if (code != 250)
            fatal("connection %d: EHLO: %s", c->idx, last);
        c->pipelining = strcasestr(all, "PIPELINING") != NULL;
        if (o_auth) {
            send_cmd(c, E_AUTH, "AUTH PLAIN %s", auth_b64);
        } else {
            session_ready();
            next_message(c);
        }
        break;
    case E_AUTH:
        if (code != 235)
            fatal("connection %d: AUTH PLAIN: %s", c->idx, last);
        session_ready();
        next_message(c);
        break;
    case E_MAIL:
        c->mail_ok = code == 250;
        if (!c->mail_ok)
            refused(c, e, last);
        if (!c->pipelining) {
            if (c->mail_ok)
                send_cmd(c, E_RCPT, "RCPT TO:<r%d@%s>", c->msg, o_domain);
            else {
                n_refused++;
                send_cmd(c, E_RSET, "RSET");
            }
        }
        break;
    case E_RCPT:
        c->rcpt_ok = code == 250 || code == 251;
        if (!c->rcpt_ok && c->mail_ok)
            refused(c, e, last);
        if (!c->pipelining) {
            if (c->rcpt_ok)
                send_cmd(c, E_DATA, "DATA");
            else {
                n_refused++;
                send_cmd(c, E_RSET, "RSET");
            }
        }
        break;
    case E_DATA:
        if (code == 354) {
            if (!c->mail_ok || !c->rcpt_ok)
                fatal("connection %d: 354 to DATA after a refused MAIL or RCPT", c->idx);
            add_message(&c->out, c->msg);
            expect_push(c, E_DOT);
        } else {
            if (c->mail_ok && c->rcpt_ok)
                refused(c, e, last);
            n_refused++;
            send_cmd(c, E_RSET, "RSET");
        }
        break;
    case E_DOT:
        if (code == 250) {
            n_accepted++;
            lat[nlat++] = now() - c->t_msg;
        } else {
            refused(c, e, last);
            n_refused++;
        }
        next_message(c);
        break;
    case E_RSET:
        if (code != 250)
            fatal("connection %d: RSET: %s", c->idx, last);
        next_message(c);
        break;
    case E_QUIT:
        c->done = 1;
        n_done++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        return;
    }
    conn_flush(c);
}

static void conn_read(struct conn *c)
{
    for (;;) {
        buf_need(&c->in, 16384);
        ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            fatal("connection %d: read: %s", c->idx, strerror(errno));
        }
        if (n == 0) {
            if (c->qn)
                fatal("connection %d: the server closed the connection while %s was awaited", c->idx,
                      expect_names[c->q[c->qh]]);
            fatal("connection %d: the server closed the connection", c->idx);
        }
        c->in.len += (size_t)n;
        c->in.p[c->in.len] = '\0';
        /* Whole replies: lines "ddd-..." then "ddd ..." (or "ddd"). */
        size_t start = c->in.off, pos = c->in.off;
        while (!c->done) {
            char *eol = memchr(c->in.p + pos, '\n', c->in.len - pos);
            if (!eol)
                break;
            char *line = c->in.p + pos;
            size_t ll = (size_t)(eol - line);
            pos += ll + 1;
            if (ll < 3)
                fatal("connection %d: bad reply line", c->idx);
            if (ll > 3 && line[3] == '-')
                continue;
            char last[512];
            size_t lc = ll < sizeof(last) - 1 ? ll : sizeof(last) - 1;
            memcpy(last, line, lc);
            while (lc && (last[lc - 1] == '\r' || last[lc - 1] == '\n'))
                lc--;
            last[lc] = '\0';
            char saved = c->in.p[pos];
            c->in.p[pos] = '\0';
            int code = atoi(line);
            on_reply(c, code, last, c->in.p + start);
            if (c->done)
                return;
            c->in.p[pos] = saved;
            start = pos;
        }
        c->in.off = start;
        buf_compact(&c->in);
        if (c->done)
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
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->connecting = 1;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
        fatal("connect 127.0.0.1:%d: %s", o_port, strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        fatal("epoll_ctl: %s", strerror(errno));
    c->watching_out = 1;
    c->msg = -1;
    expect_push(c, E_GREETING);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: relay_load -p PORT [-n MESSAGES] [-c CONNECTIONS] [-l BODY_BYTES] [-f FROM]\n"
            "                  [-d RCPT_DOMAIN] [-h HELO] [-a (AUTH PLAIN as FROM, password in\n"
            "                  RELAY_LOAD_PASSWORD)] [-T REPLY_TIMEOUT] [-W WAIT_TIMEOUT]\n"
            "                  [-k SINK_COUNTER_FILE [-K COUNT]] [-q QUEUE_COMMAND [-Q MARKER]]\n"
            "                  [-C CGROUP_CPU_FILE] [-P SINK_PORT]\n");
    exit(2);
}

static int posint(const char *s)
{
    char *e;
    long v = strtol(s, &e, 10);
    if (*e || v < 1 || v > 100000000)
        usage();
    return (int)v;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "p:n:c:l:f:d:h:aT:W:k:K:q:Q:C:P:")) != -1) {
        switch (opt) {
        case 'p': o_port = posint(optarg); break;
        case 'n': o_nmsg = posint(optarg); break;
        case 'c': o_conns = posint(optarg); break;
        case 'l': o_size = (size_t)posint(optarg); break;
        case 'f': o_from = optarg; break;
        case 'd': o_domain = optarg; break;
        case 'h': o_helo = optarg; break;
        case 'a': o_auth = 1; break;
        case 'T': o_timeout = posint(optarg); break;
        case 'W': o_wait = posint(optarg); break;
        case 'k': o_sink_file = optarg; break;
        case 'K': o_sink_target = posint(optarg); break;
        case 'q': o_queue_cmd = optarg; break;
        case 'Q': o_queue_marker = optarg; break;
        case 'C': o_cpu_file = optarg; break;
        case 'P': o_sink_port = posint(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || o_port < 1 || o_port > 65535 || o_conns > 10000)
        usage();
    if (o_sink_target < 0)
        o_sink_target = o_nmsg;
    if (o_auth) {
        o_pass = getenv("RELAY_LOAD_PASSWORD");
        if (!o_pass || !*o_pass)
            fatal("-a: RELAY_LOAD_PASSWORD is not set");
        size_t ul = strlen(o_from), pl = strlen(o_pass);
        unsigned char *raw = malloc(ul + pl + 2);
        if (!raw)
            fatal("out of memory");
        raw[0] = '\0';
        memcpy(raw + 1, o_from, ul);
        raw[1 + ul] = '\0';
        memcpy(raw + 2 + ul, o_pass, pl);
        auth_b64 = base64(raw, ul + pl + 2);
        free(raw);
    }
    signal(SIGPIPE, SIG_IGN);
    make_body();
    lat = calloc((size_t)o_nmsg, sizeof(*lat));
    conns = calloc((size_t)o_conns, sizeof(*conns));
    if (!lat || !conns)
        fatal("out of memory");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        fatal("epoll_create1: %s", strerror(errno));

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double cpu0 = server_cpu();
    double w0 = wall(), t0 = now();
    for (int i = 0; i < o_conns; i++) {
        conns[i].idx = i;
        conn_open(&conns[i]);
    }
    struct epoll_event evs[256];
    while (n_done < o_conns) {
        int n = epoll_wait(ep, evs, 256, 200);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fatal("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->done)
                continue;
            if (c->connecting && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int e = 0;
                socklen_t el = sizeof(e);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
                if (e)
                    fatal("connect 127.0.0.1:%d (connection %d): %s", o_port, c->idx, strerror(e));
                c->connecting = 0;
                conn_watch(c);
            }
            if (evs[i].events & EPOLLOUT)
                conn_flush(c);
            if (!c->done && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                conn_read(c);
        }
        double t = now();
        sink_conns_sample(t);
        for (int i = 0; i < o_conns; i++) {
            struct conn *c = &conns[i];
            if (!c->done && c->qn && t - c->t_sent > o_timeout)
                fatal("connection %d: no answer to %s (message %d) after %.0f s", c->idx,
                      expect_names[c->q[c->qh]], c->msg, o_timeout);
        }
    }
    double t_acc = now();
    double cpu_acc = server_cpu();
    long sink_at_acc = o_sink_file ? sink_count() : -1;
    getrusage(RUSAGE_SELF, &ru1);

    /* Wait for the sink, then for the queue (not after refusals: the run failed). */
    double t_sink = -1, t_queue = -1;
    long sink_last = sink_at_acc;
    int queue_polls = 0;
    if (o_sink_file && n_accepted == o_nmsg) {
        for (;;) {
            sink_last = sink_count();
            if (sink_last >= o_sink_target) {
                t_sink = now();
                break;
            }
            sink_conns_sample(now());
            if (now() - t_acc > o_wait)
                fatal("the sink counted %ld of %ld messages %.0f s after the last was accepted",
                      sink_last, o_sink_target, o_wait);
            usleep(5000);
        }
    }
    if (o_queue_cmd && n_accepted == o_nmsg) {
        for (;;) {
            sink_conns_sample(now());
            int r = queue_empty();
            queue_polls++;
            if (r < 0)
                fatal("cannot run the queue command: %s", o_queue_cmd);
            if (r == 1) {
                t_queue = now();
                break;
            }
            if (now() - t_acc > o_wait)
                fatal("the queue is not empty %.0f s after the last message was accepted", o_wait);
            usleep(50000);
        }
    }
    double t_end = t_queue > t_sink ? t_queue : t_sink;
    double cpu_end = server_cpu();

    /* ---- report ---- */
    qsort(lat, nlat, sizeof(*lat), cmp_double);
    double acc = t_acc - t0;
    printf("start epoch=%.6f\n", w0);
    printf("submit messages=%d sessions=%d body_bytes=%zu accepted=%d refused=%d seconds=%.3f "
           "rate=%.1f sink_at_accept=%ld\n",
           o_nmsg, o_conns, body.len, n_accepted, n_refused, acc, acc > 0 ? n_accepted / acc : 0,
           sink_at_acc);
    if (t_ready > 0)
        printf("sessions ready_s=%.3f server_cpu_s=%.2f\n", t_ready - t0,
               cpu0 >= 0 && cpu_ready >= 0 ? cpu_ready - cpu0 : -1.0);
    if (nlat)
        printf("latency p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", 1000 * lat[nlat / 2],
               1000 * lat[(nlat * 99) / 100], 1000 * lat[nlat - 1]);
    if (t_end > 0) {
        double d = t_end - t0;
        printf("delivered seconds=%.3f rate=%.1f sink=%ld sink_s=%.3f queue_empty_s=%.3f "
               "queue_polls=%d\n",
               d, d > 0 ? o_sink_target / d : 0, sink_last, t_sink > 0 ? t_sink - t0 : -1.0,
               t_queue > 0 ? t_queue - t0 : -1.0, queue_polls);
    }
    if (o_sink_port)
        printf("sink_conns max=%d\n", sink_conns_max);
    if (cpu0 >= 0 && cpu_acc >= 0)
        printf("server submit_cpu_s=%.2f cpu_s=%.2f\n", cpu_acc - cpu0, cpu_end - cpu0);
    double gcpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                           ru0.ru_stime.tv_sec) +
                  (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                           ru0.ru_stime.tv_usec) / 1e6;
    printf("generator cpu_s=%.2f busy_pct_of_one_cpu=%.1f\n", gcpu, acc > 0 ? 100 * gcpu / acc : 0);
    printf("errors=%d\n", n_refused + (o_nmsg - n_accepted - n_refused));
    return n_accepted == o_nmsg ? 0 : 1;
}
