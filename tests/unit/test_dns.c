/* Unit tests of the DNS module (src/dns/dns.c).
 *
 * dns_mx_sort is tested as a pure function with scripted "random" numbers.
 * The look-ups run against a real dnsmasq (package dnsmasq-base, a
 * declared dependency) started on a free loopback port with the records
 * below, and against a "silent" port that takes queries and never answers
 * (the time-out). The event loop runs until the callbacks fire, with a
 * safety timer.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dns/dns.h"

#ifndef DNSMASQ
#define DNSMASQ "/usr/sbin/dnsmasq"
#endif

/* --- dns_mx_sort ----------------------------------------------------------- */

/* rnd(n) answers from a script (modulo n), then 0. */
static const unsigned *script;
static size_t script_len, script_pos;

static unsigned scripted_rnd(unsigned n)
{
    unsigned v = script_pos < script_len ? script[script_pos] : 0;
    script_pos++;
    assert_true(n > 0);
    return v % n;
}

static void set_script(const unsigned *s, size_t n)
{
    script = s;
    script_len = n;
    script_pos = 0;
}

static void test_mx_sort_orders(void **state)
{
    unsigned prefs[] = {20, 10, 30, 10, 20, 0, 65535, 5};
    char names[8][256] = {"b20", "a10", "c30", "d10", "e20", "f0", "g65535", "h5"};
    const unsigned rs[] = {3, 1, 4, 1, 5, 9, 2, 6};
    set_script(rs, 8);
    dns_mx_sort(prefs, names, 8, scripted_rnd);
    assert_int_equal(script_pos, 7); /* n - 1 draws */
    for (size_t i = 1; i < 8; i++)
        assert_true(prefs[i - 1] <= prefs[i]);
    /* each name still carries its own preference */
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(prefs[i], (unsigned)strtoul(names[i] + 1, NULL, 10));
    assert_string_equal(names[0], "f0");
    assert_string_equal(names[1], "h5");
    assert_string_equal(names[7], "g65535");
}

static void test_mx_sort_small(void **state)
{
    set_script(NULL, 0);
    dns_mx_sort(NULL, NULL, 0, scripted_rnd);
    unsigned pref = 7;
    char name[1][256] = {"only"};
    dns_mx_sort(&pref, name, 1, scripted_rnd);
    assert_int_equal(script_pos, 0);
    assert_int_equal(pref, 7);
    assert_string_equal(name[0], "only");
}

/* Every sequence of draws for 1 record at 5 and 3 at 10: the 5 is always
 * first, and the 6 orders of the equal ones come out 4 times each. */
static void test_mx_sort_equal_uniform(void **state)
{
    int seen[6] = {0};
    const char *orders[6] = {"xyz", "xzy", "yxz", "yzx", "zxy", "zyx"};
    for (unsigned a = 0; a < 4; a++) {
        for (unsigned b = 0; b < 3; b++) {
            for (unsigned c = 0; c < 2; c++) {
                unsigned prefs[] = {10, 10, 5, 10};
                char names[4][256] = {"x", "y", "first", "z"};
                const unsigned rs[] = {a, b, c};
                set_script(rs, 3);
                dns_mx_sort(prefs, names, 4, scripted_rnd);
                assert_string_equal(names[0], "first");
                assert_int_equal(prefs[0], 5);
                char order[4] = {names[1][0], names[2][0], names[3][0], '\0'};
                for (int k = 0; k < 6; k++)
                    if (strcmp(order, orders[k]) == 0)
                        seen[k]++;
            }
        }
    }
    for (int k = 0; k < 6; k++)
        assert_int_equal(seen[k], 4);
}

/* --- dnsmasq ------------------------------------------------------------------- */

struct fixture {
    pid_t dnsmasq;
    int port;
    char dir[64];
    char resolver[32];
    int silent_udp, silent_tcp; /* bound, never answering */
    char silent[32];
    struct event_base *base;
    struct dns *dns;
};

/* A UDP MX query for two.example; true when any answer comes within ms. */
static bool dnsmasq_answers(int port, int ms)
{
    /* id 0x1234, RD, one question: two.example MX IN */
    static const char q[] = "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                            "\x03two\x07"
                            "example\x00\x00\x0f\x00\x01";
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = false;
    if (sendto(fd, q, sizeof(q) - 1, 0, (struct sockaddr *)&sa, sizeof(sa)) ==
        (ssize_t)sizeof(q) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        unsigned char buf[512];
        ok = poll(&p, 1, ms) == 1 && recv(fd, buf, sizeof(buf), 0) >= 12 && buf[0] == 0x12;
    }
    close(fd);
    return ok;
}

/* Is the port free for UDP and TCP on 127.0.0.1 (a cheap first check)? */
static bool port_free(int port)
{
    static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
    bool ok = true;
    for (size_t i = 0; i < 2 && ok; i++) {
        int fd = socket(AF_INET, types[i], 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
            close(fd);
    }
    return ok;
}

static pid_t dnsmasq_start(struct fixture *f, int port)
{
    char portarg[32], pidarg[128], logarg[128], userarg[300];
    struct passwd *pw = getpwuid(geteuid());
    snprintf(userarg, sizeof(userarg), "--user=%s", pw ? pw->pw_name : "root");
    snprintf(portarg, sizeof(portarg), "--port=%d", port);
    snprintf(pidarg, sizeof(pidarg), "--pid-file=%s/dnsmasq.pid", f->dir);
    snprintf(logarg, sizeof(logarg), "--log-facility=%s/dnsmasq.log", f->dir);
    /* clang-format off */
    char *argv[] = {
        DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
        portarg, "--listen-address=127.0.0.1", "--bind-interfaces", "--conf-file=/dev/null",
        pidarg, logarg,
        /* stay who we are (as root, dnsmasq would switch to nobody) */
        userarg,
        /* NXDOMAIN, authoritatively, for every other name under example.
         * (Not .test: libunbound answers NXDOMAIN for it itself, one of
         * its default local zones.) */
        "--local=/example/",
        "--mx-host=two.example,mx1.two.example,10", "--mx-host=two.example,mx2.two.example,20",
        "--host-record=mx1.two.example,127.0.0.11",
        "--host-record=mx2.two.example,127.0.0.12,::1",
        "--mx-host=eq.example,eqa.eq.example,10", "--mx-host=eq.example,eqb.eq.example,10",
        "--host-record=eqa.eq.example,127.0.0.21", "--host-record=eqb.eq.example,127.0.0.22",
        "--host-record=implicit.example,127.0.0.13",
        /* RFC 7505: MX 0 "." */
        "--dns-rr=nullmx.example,15,000000",
        /* gone*.example have no address at all */
        "--mx-host=partial.example,gone.partial.example,10",
        "--mx-host=partial.example,mx1.two.example,20",
        "--mx-host=noaddr.example,gone1.noaddr.example,10",
        "--mx-host=noaddr.example,gone2.noaddr.example,20",
        NULL};
    /* clang-format on */
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(DNSMASQ, argv);
        _exit(127);
    }
    return pid;
}

static void dnsmasq_stop(struct fixture *f)
{
    if (f->dnsmasq > 0) {
        kill(f->dnsmasq, SIGTERM);
        waitpid(f->dnsmasq, NULL, 0);
        f->dnsmasq = 0;
    }
}

/* Start dnsmasq on a free high port: try ports until one works (dnsmasq
 * exits at once when it cannot bind). */
static int dnsmasq_up(struct fixture *f)
{
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    for (int attempt = 0; attempt < 30; attempt++) {
        int port = 20000 + rand() % 40000;
        if (!port_free(port))
            continue;
        pid_t pid = dnsmasq_start(f, port);
        if (pid < 0)
            return -1;
        for (int i = 0; i < 50; i++) { /* 5 s */
            if (dnsmasq_answers(port, 100)) {
                f->dnsmasq = pid;
                f->port = port;
                return 0;
            }
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                pid = 0;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
                    print_error("could not run %s\n", DNSMASQ);
                    return -1;
                }
                break; /* the port was taken after all: next one */
            }
        }
        if (pid > 0) { /* running but silent: something else is wrong */
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
    }
    print_error("dnsmasq did not start or does not answer; its log:\n");
    char path[128], line[512];
    snprintf(path, sizeof(path), "%s/dnsmasq.log", f->dir);
    FILE *log = fopen(path, "r");
    while (log && fgets(line, sizeof(line), log))
        print_error("  %s", line);
    if (log)
        fclose(log);
    return -1;
}

/* A UDP and a TCP socket on one loopback port that never answer. */
static int silent_up(struct fixture *f)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    f->silent_udp = socket(AF_INET, SOCK_DGRAM, 0);
    f->silent_tcp = socket(AF_INET, SOCK_STREAM, 0);
    if (f->silent_udp < 0 || f->silent_tcp < 0 ||
        bind(f->silent_udp, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(f->silent_udp, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    bind(f->silent_tcp, (struct sockaddr *)&sa, sizeof(sa)); /* best effort */
    listen(f->silent_tcp, 16);
    snprintf(f->silent, sizeof(f->silent), "127.0.0.1:%d", ntohs(sa.sin_port));
    return 0;
}

static int group_setup(void **state)
{
    if (access(DNSMASQ, X_OK) != 0) {
        print_error("%s not found: the DNS tests need dnsmasq (Debian package "
                    "dnsmasq-base, installed by `make deps`)\n",
                    DNSMASQ);
        return -1;
    }
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->silent_udp = f->silent_tcp = -1;
    *state = f;
    char *dir = test_tmpdir();
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    free(dir);
    if (dnsmasq_up(f) != 0 || silent_up(f) != 0)
        return -1;
    snprintf(f->resolver, sizeof(f->resolver), "127.0.0.1:%d", f->port);
    f->base = event_base_new();
    char err[256] = "";
    f->dns = dns_new(f->base, f->resolver, 5, err, sizeof(err));
    if (!f->dns) {
        print_error("dns_new: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    if (!f)
        return 0;
    dns_free(&f->dns);
    if (f->base)
        event_base_free(f->base);
    dnsmasq_stop(f);
    if (f->silent_udp >= 0)
        close(f->silent_udp);
    if (f->silent_tcp >= 0)
        close(f->silent_tcp);
    if (f->dir[0])
        test_rmrf(f->dir);
    free(f);
    return 0;
}

/* --- running look-ups ---------------------------------------------------------- */

struct res {
    int calls;
    enum dns_status status;
    struct dns_host hosts[DNS_MAX_HOSTS];
    size_t nhosts;
    bool implicit;
    char err[256];
    struct dns **free_me; /* dns_free from inside the callback */
};

static void on_mx(void *arg, const struct dns_mx_result *r)
{
    struct res *res = arg;
    res->calls++;
    res->status = r->status;
    res->nhosts = r->nhosts;
    assert_true(r->nhosts <= DNS_MAX_HOSTS);
    if (r->nhosts)
        memcpy(res->hosts, r->hosts, r->nhosts * sizeof(*r->hosts));
    res->implicit = r->implicit;
    snprintf(res->err, sizeof(res->err), "%s", r->err);
    if (res->free_me)
        dns_free(res->free_me);
}

static void on_safety(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* Run the loop until *calls >= want or secs have passed; true if reached. */
static bool run_until(struct event_base *base, const int *calls, int want, double secs)
{
    bool expired = false;
    struct event *safety = evtimer_new(base, on_safety, &expired);
    struct timeval tv = {.tv_sec = (time_t)secs,
                         .tv_usec = (suseconds_t)((secs - (time_t)secs) * 1e6)};
    evtimer_add(safety, &tv);
    while ((!calls || *calls < want) && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(safety);
    return !calls || *calls >= want;
}

static struct res resolve(struct fixture *f, const char *domain)
{
    struct res res = {0};
    unsigned long h = dns_resolve_mx(f->dns, domain, on_mx, &res);
    assert_true(h != 0);
    assert_int_equal(res.calls, 0); /* never from inside dns_resolve_mx */
    assert_true(run_until(f->base, &res.calls, 1, 5));
    assert_int_equal(res.calls, 1);
    return res;
}

/* --- look-ups against dnsmasq ---------------------------------------------------- */

static void test_mx_ordered_ipv6_first(void **state)
{
    struct fixture *f = *state;
    struct res r = resolve(f, "two.example");
    assert_int_equal(r.status, DNS_OK);
    assert_string_equal(r.err, "");
    assert_false(r.implicit);
    assert_int_equal(r.nhosts, 2);
    assert_string_equal(r.hosts[0].name, "mx1.two.example");
    assert_int_equal(r.hosts[0].preference, 10);
    assert_int_equal(r.hosts[0].naddrs, 1);
    assert_string_equal(r.hosts[0].addrs[0], "127.0.0.11");
    assert_string_equal(r.hosts[1].name, "mx2.two.example");
    assert_int_equal(r.hosts[1].preference, 20);
    assert_int_equal(r.hosts[1].naddrs, 2);
    assert_string_equal(r.hosts[1].addrs[0], "::1");
    assert_string_equal(r.hosts[1].addrs[1], "127.0.0.12");

    /* a final dot is the same domain */
    r = resolve(f, "two.example.");
    assert_int_equal(r.status, DNS_OK);
    assert_int_equal(r.nhosts, 2);
}

static void test_mx_equal_preferences_shuffled(void **state)
{
    struct fixture *f = *state;
    bool a_first = false, b_first = false;
    for (int i = 0; i < 60 && !(a_first && b_first); i++) {
        struct res r = resolve(f, "eq.example");
        assert_int_equal(r.status, DNS_OK);
        assert_int_equal(r.nhosts, 2);
        assert_int_equal(r.hosts[0].preference, 10);
        assert_int_equal(r.hosts[1].preference, 10);
        bool a = strcmp(r.hosts[0].name, "eqa.eq.example") == 0;
        assert_string_equal(r.hosts[a ? 1 : 0].name, "eqb.eq.example");
        assert_string_equal(r.hosts[a ? 0 : 1].addrs[0], "127.0.0.21");
        if (a)
            a_first = true;
        else
            b_first = true;
    }
    assert_true(a_first && b_first);
}

static void test_mx_implicit(void **state)
{
    struct fixture *f = *state;
    struct res r = resolve(f, "implicit.example");
    assert_int_equal(r.status, DNS_OK);
    assert_true(r.implicit);
    assert_int_equal(r.nhosts, 1);
    assert_string_equal(r.hosts[0].name, "implicit.example");
    assert_int_equal(r.hosts[0].preference, 0);
    assert_int_equal(r.hosts[0].naddrs, 1);
    assert_string_equal(r.hosts[0].addrs[0], "127.0.0.13");
}

static void test_mx_null(void **state)
{
    struct fixture *f = *state;
    struct res r = resolve(f, "nullmx.example");
    assert_int_equal(r.status, DNS_NULL_MX);
    assert_int_equal(r.nhosts, 0);
    assert_non_null(strstr(r.err, "nullmx.example"));
}

static void test_mx_nxdomain(void **state)
{
    struct fixture *f = *state;
    struct res r = resolve(f, "nosuch.example");
    assert_int_equal(r.status, DNS_NO_DOMAIN);
    assert_int_equal(r.nhosts, 0);
    assert_non_null(strstr(r.err, "NXDOMAIN"));
}

static void test_mx_host_without_address_dropped(void **state)
{
    struct fixture *f = *state;
    struct res r = resolve(f, "partial.example");
    assert_int_equal(r.status, DNS_OK);
    assert_int_equal(r.nhosts, 1);
    assert_string_equal(r.hosts[0].name, "mx1.two.example");
    assert_int_equal(r.hosts[0].preference, 20);
    assert_string_equal(r.hosts[0].addrs[0], "127.0.0.11");
}

static void test_mx_no_host_with_address(void **state)
{
    struct fixture *f = *state;
    struct res r = resolve(f, "noaddr.example");
    assert_int_equal(r.status, DNS_TEMPFAIL);
    assert_int_equal(r.nhosts, 0);
    assert_non_null(strstr(r.err, "gone1.noaddr.example"));
    assert_non_null(strstr(r.err, "gone2.noaddr.example"));
}

static double now_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct dns *d = dns_new(f->base, f->silent, 1, err, sizeof(err));
    assert_non_null(d);
    struct res r = {0};
    double t0 = now_secs();
    assert_true(dns_resolve_mx(d, "two.example", on_mx, &r) != 0);
    assert_true(run_until(f->base, &r.calls, 1, 4));
    double took = now_secs() - t0;
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, DNS_TEMPFAIL);
    assert_non_null(strstr(r.err, "timed out"));
    assert_true(took > 0.9 && took < 2.5);
    /* free it with a look-up still in flight (queries sit in libunbound) */
    struct res r2 = {0};
    assert_true(dns_resolve_mx(d, "implicit.example", on_mx, &r2) != 0);
    run_until(f->base, NULL, 0, 0.05);
    dns_free(&d);
    assert_null(d);
    run_until(f->base, NULL, 0, 0.05);
    assert_int_equal(r2.calls, 0);
}

static void test_literals(void **state)
{
    struct fixture *f = *state;
    struct res r = resolve(f, "[127.0.0.1]");
    assert_int_equal(r.status, DNS_OK);
    assert_false(r.implicit);
    assert_int_equal(r.nhosts, 1);
    assert_string_equal(r.hosts[0].name, "[127.0.0.1]");
    assert_int_equal(r.hosts[0].naddrs, 1);
    assert_string_equal(r.hosts[0].addrs[0], "127.0.0.1");

    r = resolve(f, "[IPv6:::1]");
    assert_int_equal(r.status, DNS_OK);
    assert_int_equal(r.nhosts, 1);
    assert_string_equal(r.hosts[0].addrs[0], "::1");

    r = resolve(f, "[ipv6:2001:DB8:0:0::1]");
    assert_string_equal(r.hosts[0].addrs[0], "2001:db8::1");

    static const char *bad[] = {
        "[127.0.0.256]",
        "[127.0.0.1",
        "[]",
        "[IPv6:127.0.0.1]",
        "[::1]",
        "[IPv6:zz]",
        "",
        ".",
        "a..b",
        ".a",
        "exa mple.example",
        "a\\.b",
        "caf\xc3\xa9.example",
        "[1.2.3.4]x",
    };
    struct res none = {0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(dns_resolve_mx(f->dns, bad[i], on_mx, &none), 0);
    char long_label[80];
    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".example");
    assert_int_equal(dns_resolve_mx(f->dns, long_label, on_mx, &none), 0);
    run_until(f->base, NULL, 0, 0.05);
    assert_int_equal(none.calls, 0);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    struct res cancelled = {0}, lit = {0}, other = {0};
    unsigned long h1 = dns_resolve_mx(f->dns, "two.example", on_mx, &cancelled);
    unsigned long h2 = dns_resolve_mx(f->dns, "[127.0.0.1]", on_mx, &lit);
    assert_true(h1 != 0 && h2 != 0 && h1 != h2);
    dns_cancel(f->dns, h1);
    dns_cancel(f->dns, h2);
    dns_cancel(f->dns, h1); /* twice, unknown, 0: fine */
    dns_cancel(f->dns, 987654321UL);
    dns_cancel(f->dns, 0);
    /* the look-up after them answers; the cancelled ones stay silent */
    unsigned long h3 = dns_resolve_mx(f->dns, "partial.example", on_mx, &other);
    assert_true(h3 != 0);
    assert_true(run_until(f->base, &other.calls, 1, 5));
    run_until(f->base, NULL, 0, 0.1);
    assert_int_equal(cancelled.calls, 0);
    assert_int_equal(lit.calls, 0);
    assert_int_equal(other.calls, 1);
    dns_cancel(f->dns, h3); /* already answered: fine */
}

static void test_free_with_pending(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct dns *d = dns_new(f->base, f->resolver, 5, err, sizeof(err));
    assert_non_null(d);
    struct res r[4] = {{0}};
    assert_true(dns_resolve_mx(d, "two.example", on_mx, &r[0]) != 0);
    assert_true(dns_resolve_mx(d, "eq.example", on_mx, &r[1]) != 0);
    assert_true(dns_resolve_mx(d, "[127.0.0.1]", on_mx, &r[2]) != 0);
    assert_true(dns_resolve_mx(d, "noaddr.example", on_mx, &r[3]) != 0);
    dns_free(&d);
    assert_null(d);
    run_until(f->base, NULL, 0, 0.1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].calls, 0);
    dns_free(&d); /* NULL: fine */
}

/* A callback may free the resolver; the other look-ups are then dropped. */
static void test_free_from_callback(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct dns *d = dns_new(f->base, f->resolver, 5, err, sizeof(err));
    assert_non_null(d);
    struct res first = {0}, later = {0};
    first.free_me = &d;
    assert_true(dns_resolve_mx(d, "[IPv6:::1]", on_mx, &first) != 0);
    assert_true(dns_resolve_mx(d, "two.example", on_mx, &later) != 0);
    assert_true(run_until(f->base, &first.calls, 1, 5));
    assert_null(d);
    run_until(f->base, NULL, 0, 0.1);
    assert_int_equal(first.calls, 1);
    assert_int_equal(later.calls, 0);
}

static void test_new_errors(void **state)
{
    struct fixture *f = *state;
    static const char *bad[] = {
        "dns.example:53", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "[::1",
        "[::1]x",         ":53",         "127.0.0.1:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char err[256] = "";
        struct dns *d = dns_new(f->base, bad[i], 1, err, sizeof(err));
        assert_null(d);
        assert_non_null(strstr(err, "resolver"));
    }
    static const char *good[] = {"", "127.0.0.1", "[::1]:5353", "::1", "127.0.0.1:53"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        char err[256] = "";
        struct dns *d = dns_new(f->base, good[i], 1, err, sizeof(err));
        if (!d)
            fail_msg("dns_new(\"%s\"): %s", good[i], err);
        dns_free(&d);
    }
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_mx_sort_orders),
        cmocka_unit_test(test_mx_sort_small),
        cmocka_unit_test(test_mx_sort_equal_uniform),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_mx_ordered_ipv6_first),
        cmocka_unit_test(test_mx_equal_preferences_shuffled),
        cmocka_unit_test(test_mx_implicit),
        cmocka_unit_test(test_mx_null),
        cmocka_unit_test(test_mx_nxdomain),
        cmocka_unit_test(test_mx_host_without_address_dropped),
        cmocka_unit_test(test_mx_no_host_with_address),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_new_errors),
    };
    int failed = cmocka_run_group_tests_name("dns_mx_sort", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("dns_dnsmasq", live, group_setup, group_teardown);
    return failed ? 1 : 0;
}
