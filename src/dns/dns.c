/* dns — MX look-ups with libunbound on the libevent loop (see dns.h).
 *
 * One look-up is a small state machine: the MX query, then an AAAA and an
 * A query per kept host, all in flight at once; a libevent timer bounds
 * the whole. Results are never handed over from inside ub_process (nor
 * from inside dns_resolve_mx): finishing a look-up only makes its event
 * active, and the event's callback calls the user's. A callback may then
 * start, cancel or free anything, dns_free included.
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unbound.h>

#include "lib/log.h"

#define RR_A 1
#define RR_MX 15
#define RR_AAAA 28
#define RR_CLASS_IN 1

enum dns_outcome {
    Q_PENDING = 0, /* not answered (yet): at the end, a time-out */
    Q_DATA,        /* records of the asked type */
    Q_NODATA,      /* NOERROR, no record of the type */
    Q_NXDOMAIN,
    Q_FAIL, /* SERVFAIL, REFUSED..., or the resolver's own error: why[] */
};

struct dns_lookup;

struct dns_query {
    struct dns_lookup *l;
    int id;     /* libunbound's async id, while pending */
    int host;   /* index in l->hosts; -1 for the MX query */
    int rrtype; /* RR_MX, RR_AAAA or RR_A */
    bool pending;
    enum dns_outcome outcome;
    char why[64];
};

struct dns_lookup {
    struct dns *d;
    struct dns_lookup *prev, *next;
    unsigned long handle;
    dns_mx_cb cb;
    void *arg;
    struct event *ev; /* the whole look-up's timer, then the result's delivery */
    bool done;        /* r is final; ev hands it over */
    char domain[256];
    bool host_only;   /* dns_resolve_host: no MX step */
    unsigned npending;
    struct dns_query mxq;
    struct dns_query aq[DNS_MAX_HOSTS][2]; /* [0] AAAA, [1] A */
    /* hosts[i].addrs holds the AAAA answers until the end, v4 the A ones */
    struct dns_host hosts[DNS_MAX_HOSTS];
    size_t nhosts;
    char v4[DNS_MAX_HOSTS][DNS_MAX_ADDRS][INET_ADDRSTRLEN];
    size_t nv4[DNS_MAX_HOSTS];
    struct dns_mx_result r;
};

struct dns {
    struct event_base *base;
    struct ub_ctx *ctx;
    struct event *ub_ev; /* ub_fd readable: answers are waiting */
    unsigned timeout_secs;
    unsigned long next_handle;
    struct dns_lookup *lookups;
};

/* --- pure helpers -------------------------------------------------------- */

static void mx_swap(unsigned *prefs, char (*names)[256], size_t a, size_t b)
{
    if (a == b)
        return;
    unsigned p = prefs[a];
    prefs[a] = prefs[b];
    prefs[b] = p;
    char tmp[256];
    memcpy(tmp, names[a], sizeof(tmp));
    memcpy(names[a], names[b], sizeof(tmp));
    memcpy(names[b], tmp, sizeof(tmp));
}

static void mx_sift_down(unsigned *prefs, char (*names)[256], size_t root, size_t n)
{
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n)
            return;
        if (c + 1 < n && prefs[c + 1] > prefs[c])
            c++;
        if (prefs[root] >= prefs[c])
            return;
        mx_swap(prefs, names, root, c);
        root = c;
    }
}

/* A uniform shuffle, then a heapsort that only compares preferences: the
 * order among equal preferences is then uniform too (relabelling equal
 * records maps inputs to outputs one to one), with no allocation and
 * O(n log n) even for a hostile answer of thousands of records. */
void dns_mx_sort(unsigned *prefs, char (*names)[256], size_t n, unsigned (*rnd)(unsigned n))
{
    if (n < 2)
        return;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rnd((unsigned)(i + 1));
        mx_swap(prefs, names, i, j <= i ? j : i);
    }
    for (size_t i = n / 2; i-- > 0;)
        mx_sift_down(prefs, names, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        mx_swap(prefs, names, 0, end);
        mx_sift_down(prefs, names, 0, end);
    }
}

static unsigned dns_rnd(unsigned n)
{
    return arc4random_uniform(n);
}

/* Letters, digits, '-' and '_' (seen in the wild): host names in A-label
 * form, nothing that libunbound's text parser would read specially. */
static bool dns_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Check a domain given as text and copy it without a final dot. */
static int dns_domain_norm(const char *in, char out[256])
{
    size_t len = strlen(in);
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return -1;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.') {
            if (label == 0)
                return -1;
            label = 0;
        } else if (!dns_host_char(c) || ++label > 63) {
            return -1;
        }
    }
    if (label == 0)
        return -1;
    memcpy(out, in, len);
    out[len] = '\0';
    return 0;
}

/* An uncompressed wire-format name (as in ub_result->data) to text
 * without the final dot: "" for the root. -1 when malformed or not a
 * host name. */
static int dns_wire_name(const unsigned char *p, size_t len, char out[256])
{
    size_t i = 0, o = 0;
    for (;;) {
        if (i >= len)
            return -1;
        size_t lab = p[i++];
        if (lab == 0)
            break;
        if (lab > 63 || lab > len - i || o + (o ? 1 : 0) + lab > 253)
            return -1; /* also catches compression pointers (0xc0) */
        if (o)
            out[o++] = '.';
        for (size_t k = 0; k < lab; k++) {
            if (!dns_host_char(p[i + k]))
                return -1;
            out[o++] = (char)p[i + k];
        }
        i += lab;
    }
    out[o] = '\0';
    return i == len ? 0 : -1;
}

static const char *dns_rcode_name(int rcode)
{
    switch (rcode) {
    case 1:
        return "FORMERR";
    case 2:
        return "SERVFAIL";
    case 3:
        return "NXDOMAIN";
    case 4:
        return "NOTIMP";
    case 5:
        return "REFUSED";
    default:
        return NULL;
    }
}

static void dns_errcat(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dns_errcat(char *err, size_t n, const char *fmt, ...)
{
    size_t used = strlen(err);
    if (used + 1 >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, n - used, fmt, ap);
    va_end(ap);
}

/* --- look-ups ------------------------------------------------------------ */

static void dns_cancel_queries(struct dns_lookup *l)
{
    struct ub_ctx *ctx = l->d->ctx;
    if (l->mxq.pending)
        ub_cancel(ctx, l->mxq.id);
    l->mxq.pending = false;
    for (size_t i = 0; i < DNS_MAX_HOSTS; i++) {
        for (int k = 0; k < 2; k++) {
            if (l->aq[i][k].pending)
                ub_cancel(ctx, l->aq[i][k].id);
            l->aq[i][k].pending = false;
        }
    }
    l->npending = 0;
}

/* Make the result final and hand it over from the loop (dns_lookup_ev). */
static void dns_finish(struct dns_lookup *l, enum dns_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dns_finish(struct dns_lookup *l, enum dns_status st, const char *fmt, ...)
{
    if (l->done)
        return;
    l->done = true;
    dns_cancel_queries(l);
    l->r.status = st;
    l->r.err[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->r.err, sizeof(l->r.err), fmt, ap);
        va_end(ap);
    }
    if (st == DNS_OK) {
        l->r.hosts = l->hosts;
        l->r.nhosts = l->nhosts;
    } else {
        l->r.hosts = NULL;
        l->r.nhosts = 0;
    }
    event_del(l->ev);
    event_active(l->ev, EV_TIMEOUT, 1);
}

static void dns_unlink(struct dns_lookup *l)
{
    struct dns *d = l->d;
    if (l->prev)
        l->prev->next = l->next;
    else if (d->lookups == l)
        d->lookups = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

static void dns_lookup_destroy(struct dns_lookup *l)
{
    dns_unlink(l);
    dns_cancel_queries(l);
    event_free(l->ev);
    free(l);
}

static void dns_classify(struct dns_query *q, int err, const struct ub_result *res)
{
    q->why[0] = '\0';
    if (err != 0 || !res) {
        q->outcome = Q_FAIL;
        snprintf(q->why, sizeof(q->why), "resolver error: %s", ub_strerror(err));
    } else if (res->nxdomain || res->rcode == 3) {
        q->outcome = Q_NXDOMAIN;
    } else if (res->rcode != 0) {
        q->outcome = Q_FAIL;
        const char *name = dns_rcode_name(res->rcode);
        if (name)
            snprintf(q->why, sizeof(q->why), "%s", name);
        else
            snprintf(q->why, sizeof(q->why), "rcode %d", res->rcode);
    } else if (!res->havedata) {
        q->outcome = Q_NODATA;
    } else {
        q->outcome = Q_DATA;
    }
}

/* Why a host has no address, from its AAAA and A queries. */
static const char *dns_host_why(const struct dns_lookup *l, size_t i)
{
    const struct dns_query *q6 = &l->aq[i][0], *q4 = &l->aq[i][1];
    if (q6->outcome == Q_FAIL)
        return q6->why;
    if (q4->outcome == Q_FAIL)
        return q4->why;
    if (q6->outcome == Q_PENDING || q4->outcome == Q_PENDING)
        return "timed out";
    if (q6->outcome == Q_NXDOMAIN && q4->outcome == Q_NXDOMAIN)
        return "NXDOMAIN";
    return "no A/AAAA record";
}

/* Every address query answered, or the time is up: keep the hosts with
 * an address (IPv6 first, at most DNS_MAX_ADDRS, half of them kept for
 * IPv4 when both families have more), drop the others. */
static void dns_addrs_done(struct dns_lookup *l, bool timed_out)
{
    char why[256] = "";
    size_t kept = 0;
    for (size_t i = 0; i < l->nhosts; i++) {
        struct dns_host *h = &l->hosts[i];
        size_t nv4 = l->nv4[i];
        size_t n6 = h->naddrs;
        size_t v4_room = nv4 < DNS_MAX_ADDRS / 2 ? nv4 : DNS_MAX_ADDRS / 2;
        if (n6 > DNS_MAX_ADDRS - v4_room)
            n6 = DNS_MAX_ADDRS - v4_room;
        size_t n = n6;
        for (size_t k = 0; k < nv4 && n < DNS_MAX_ADDRS; k++)
            memcpy(h->addrs[n++], l->v4[i][k], INET_ADDRSTRLEN);
        h->naddrs = n;
        if (n == 0) {
            dns_errcat(why, sizeof(why), "%s%s (%s)", why[0] ? ", " : "", h->name,
                       dns_host_why(l, i));
            continue;
        }
        if (kept != i)
            l->hosts[kept] = *h;
        kept++;
    }
    l->nhosts = kept;
    if (kept > 0) {
        dns_finish(l, DNS_OK, NULL);
    } else if (l->host_only) {
        dns_finish(l, DNS_TEMPFAIL, "no address for %s: %s%s", l->domain, why,
                   timed_out ? " (look-up timed out)" : "");
    } else if (l->r.implicit) {
        dns_finish(l, DNS_TEMPFAIL, "no MX record and no address for %s: %s%s", l->domain, why,
                   timed_out ? " (look-up timed out)" : "");
    } else {
        dns_finish(l, DNS_TEMPFAIL, "no address for any MX host of %s: %s%s", l->domain, why,
                   timed_out ? " (look-up timed out)" : "");
    }
}

static void dns_ub_cb(void *arg, int err, struct ub_result *res);

static void dns_addrs_start(struct dns_lookup *l)
{
    for (size_t i = 0; i < l->nhosts; i++) {
        for (int k = 0; k < 2; k++) {
            struct dns_query *q = &l->aq[i][k];
            q->l = l;
            q->host = (int)i;
            q->rrtype = k == 0 ? RR_AAAA : RR_A;
            int rc = ub_resolve_async(l->d->ctx, l->hosts[i].name, q->rrtype, RR_CLASS_IN, q,
                                      dns_ub_cb, &q->id);
            if (rc != 0) {
                q->outcome = Q_FAIL;
                snprintf(q->why, sizeof(q->why), "resolver error: %s", ub_strerror(rc));
                continue;
            }
            q->pending = true;
            l->npending++;
        }
    }
    if (l->npending == 0)
        dns_addrs_done(l, false);
}

/* The MX records of an answer, sorted, the first DNS_MAX_HOSTS distinct
 * targets kept. Finishes the look-up when none is usable. */
static void dns_mx_parse(struct dns_lookup *l, const struct ub_result *res)
{
    size_t count = 0;
    while (res->data[count])
        count++;
    unsigned *prefs = malloc((count ? count : 1) * sizeof(*prefs));
    char(*names)[256] = malloc((count ? count : 1) * sizeof(*names));
    if (!prefs || !names) {
        free(prefs);
        free(names);
        dns_finish(l, DNS_TEMPFAIL, "out of memory");
        return;
    }
    size_t n = 0, nnull = 0;
    for (size_t i = 0; i < count; i++) {
        const unsigned char *p = (const unsigned char *)res->data[i];
        size_t len = res->len[i] > 0 ? (size_t)res->len[i] : 0;
        if (len < 3 || dns_wire_name(p + 2, len - 2, names[n]) != 0)
            continue;
        if (names[n][0] == '\0') { /* RFC 7505: "0 ." */
            nnull++;
            continue;
        }
        prefs[n++] = (unsigned)p[0] << 8 | p[1];
    }
    if (n == 0) {
        if (nnull > 0)
            dns_finish(l, DNS_NULL_MX, "%s accepts no mail (null MX, RFC 7505)", l->domain);
        else
            dns_finish(l, DNS_TEMPFAIL, "no usable MX record for %s", l->domain);
    } else {
        dns_mx_sort(prefs, names, n, dns_rnd);
        for (size_t i = 0; i < n && l->nhosts < DNS_MAX_HOSTS; i++) {
            bool dup = false;
            for (size_t k = 0; k < l->nhosts && !dup; k++)
                dup = strcasecmp(l->hosts[k].name, names[i]) == 0;
            if (dup)
                continue;
            struct dns_host *h = &l->hosts[l->nhosts++];
            memcpy(h->name, names[i], sizeof(h->name));
            h->preference = prefs[i];
        }
    }
    free(prefs);
    free(names);
}

static void dns_mx_answer(struct dns_lookup *l, int err, const struct ub_result *res)
{
    dns_classify(&l->mxq, err, res);
    switch (l->mxq.outcome) {
    case Q_NXDOMAIN: /* RFC 5321 5.1: no such domain, permanent */
        dns_finish(l, DNS_NO_DOMAIN, "%s: no such domain (NXDOMAIN)", l->domain);
        return;
    case Q_NODATA: /* RFC 5321 5.1: the implicit MX */
        snprintf(l->hosts[0].name, sizeof(l->hosts[0].name), "%s", l->domain);
        l->hosts[0].preference = 0;
        l->nhosts = 1;
        l->r.implicit = true;
        break;
    case Q_DATA:
        dns_mx_parse(l, res);
        if (l->done)
            return;
        break;
    default:
        dns_finish(l, DNS_TEMPFAIL, "MX look-up for %s failed: %s", l->domain, l->mxq.why);
        return;
    }
    dns_addrs_start(l);
}

static void dns_addr_answer(struct dns_lookup *l, struct dns_query *q, int err,
                            const struct ub_result *res)
{
    dns_classify(q, err, res);
    if (q->outcome != Q_DATA)
        return;
    size_t i = (size_t)q->host;
    struct dns_host *h = &l->hosts[i];
    size_t got = 0;
    for (size_t k = 0; res->data[k]; k++) {
        if (q->rrtype == RR_AAAA && res->len[k] == 16 && h->naddrs < DNS_MAX_ADDRS) {
            if (inet_ntop(AF_INET6, res->data[k], h->addrs[h->naddrs], INET6_ADDRSTRLEN)) {
                h->naddrs++;
                got++;
            }
        } else if (q->rrtype == RR_A && res->len[k] == 4 && l->nv4[i] < DNS_MAX_ADDRS) {
            if (inet_ntop(AF_INET, res->data[k], l->v4[i][l->nv4[i]], INET_ADDRSTRLEN)) {
                l->nv4[i]++;
                got++;
            }
        }
    }
    if (got == 0)
        q->outcome = Q_NODATA;
}

/* libunbound's callback, from inside ub_process. */
static void dns_ub_cb(void *arg, int err, struct ub_result *res)
{
    struct dns_query *q = arg;
    struct dns_lookup *l = q->l;
    q->pending = false;
    if (l->npending > 0)
        l->npending--;
    if (!l->done) {
        if (q->host < 0)
            dns_mx_answer(l, err, res);
        else {
            dns_addr_answer(l, q, err, res);
            if (l->npending == 0)
                dns_addrs_done(l, false);
        }
    }
    if (res)
        ub_resolve_free(res);
}

/* The look-up's event: either the time is up, or the result is final. */
static void dns_lookup_ev(evutil_socket_t fd, short what, void *arg)
{
    struct dns_lookup *l = arg;
    if (!l->done) {
        if (l->mxq.pending)
            dns_finish(l, DNS_TEMPFAIL, "MX look-up for %s timed out after %u s", l->domain,
                       l->d->timeout_secs);
        else
            dns_addrs_done(l, true);
        return; /* dns_finish made the event active again */
    }
    dns_unlink(l);
    l->cb(l->arg, &l->r);
    event_free(l->ev);
    free(l);
}

static void dns_ub_ready(evutil_socket_t fd, short what, void *arg)
{
    struct dns *d = arg;
    int rc = ub_process(d->ctx);
    if (rc != 0)
        log_warn("dns", "event=ub_process_error err=%s", ub_strerror(rc));
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 4.1.3): the answer at once. */
static int dns_literal(struct dns_lookup *l, const char *domain)
{
    size_t len = strlen(domain);
    char inner[64];
    if (len < 3 || len - 2 >= sizeof(inner) || domain[len - 1] != ']')
        return -1;
    memcpy(inner, domain + 1, len - 2);
    inner[len - 2] = '\0';
    int af = AF_INET;
    const char *a = inner;
    if (strncasecmp(inner, "IPv6:", 5) == 0) {
        af = AF_INET6;
        a += 5;
    }
    unsigned char bin[16];
    struct dns_host *h = &l->hosts[0];
    if (inet_pton(af, a, bin) != 1 || !inet_ntop(af, bin, h->addrs[0], sizeof(h->addrs[0])))
        return -1;
    snprintf(h->name, sizeof(h->name), "%s", domain);
    snprintf(l->domain, sizeof(l->domain), "%s", domain);
    h->naddrs = 1;
    l->nhosts = 1;
    dns_finish(l, DNS_OK, NULL);
    return 0;
}

static int dns_start(struct dns_lookup *l, const char *domain)
{
    if (dns_domain_norm(domain, l->domain) != 0)
        return -1;
    l->mxq.l = l;
    l->mxq.host = -1;
    l->mxq.rrtype = RR_MX;
    int rc =
        ub_resolve_async(l->d->ctx, l->domain, RR_MX, RR_CLASS_IN, &l->mxq, dns_ub_cb, &l->mxq.id);
    if (rc != 0) {
        log_warn("dns", "event=resolve_error domain=%s err=%s", l->domain, ub_strerror(rc));
        return -1;
    }
    l->mxq.pending = true;
    l->npending = 1;
    struct timeval tv = {.tv_sec = l->d->timeout_secs};
    evtimer_add(l->ev, &tv);
    return 0;
}

/* dns_resolve_host: the name's own addresses, no MX step. */
static int dns_start_host(struct dns_lookup *l, const char *name)
{
    if (dns_domain_norm(name, l->domain) != 0)
        return -1;
    l->host_only = true;
    snprintf(l->hosts[0].name, sizeof(l->hosts[0].name), "%s", l->domain);
    l->nhosts = 1;
    struct timeval tv = {.tv_sec = l->d->timeout_secs};
    evtimer_add(l->ev, &tv);
    dns_addrs_start(l);
    return 0;
}

static unsigned long dns_resolve(struct dns *d, const char *domain, bool host_only, dns_mx_cb cb,
                                 void *arg);

unsigned long dns_resolve_mx(struct dns *d, const char *domain, dns_mx_cb cb, void *arg)
{
    return dns_resolve(d, domain, false, cb, arg);
}

unsigned long dns_resolve_host(struct dns *d, const char *name, dns_mx_cb cb, void *arg)
{
    return dns_resolve(d, name, true, cb, arg);
}

static unsigned long dns_resolve(struct dns *d, const char *domain, bool host_only, dns_mx_cb cb,
                                 void *arg)
{
    if (!d || !domain || !cb)
        return 0;
    struct dns_lookup *l = calloc(1, sizeof(*l));
    if (!l)
        return 0;
    l->d = d;
    l->cb = cb;
    l->arg = arg;
    l->ev = evtimer_new(d->base, dns_lookup_ev, l);
    if (!l->ev) {
        free(l);
        return 0;
    }
    int rc = domain[0] == '['  ? dns_literal(l, domain)
             : host_only       ? dns_start_host(l, domain)
                               : dns_start(l, domain);
    if (rc != 0) {
        dns_cancel_queries(l);
        event_free(l->ev);
        free(l);
        return 0;
    }
    l->handle = d->next_handle++;
    if (d->next_handle == 0)
        d->next_handle = 1;
    l->next = d->lookups;
    if (l->next)
        l->next->prev = l;
    d->lookups = l;
    return l->handle;
}

void dns_cancel(struct dns *d, unsigned long handle)
{
    if (!d || handle == 0)
        return;
    for (struct dns_lookup *l = d->lookups; l; l = l->next) {
        if (l->handle == handle) {
            dns_lookup_destroy(l);
            return;
        }
    }
}

/* --- the resolver -------------------------------------------------------- */

/* "HOST", "HOST:PORT", "[IPV6]:PORT" or a bare IPv6 address, HOST numeric. */
static int dns_set_forwarder(struct ub_ctx *ctx, const char *resolver, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN];
    const char *h = resolver, *port = NULL;
    size_t hlen;
    const char *colon = strchr(resolver, ':');
    if (resolver[0] == '[') {
        const char *end = strchr(resolver, ']');
        if (!end || (end[1] != '\0' && end[1] != ':'))
            goto bad;
        h = resolver + 1;
        hlen = (size_t)(end - h);
        if (end[1] == ':')
            port = end + 2;
    } else if (colon && !strchr(colon + 1, ':')) {
        hlen = (size_t)(colon - resolver);
        port = colon + 1;
    } else {
        hlen = strlen(resolver);
    }
    if (hlen == 0 || hlen >= sizeof(host))
        goto bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    unsigned char bin[16];
    if (inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1)
        goto bad;
    unsigned long portnum = 53;
    if (port) {
        char *end;
        if (*port < '0' || *port > '9')
            goto bad;
        portnum = strtoul(port, &end, 10);
        if (*end != '\0' || portnum == 0 || portnum > 65535)
            goto bad;
    }
    char fwd[INET6_ADDRSTRLEN + 8];
    snprintf(fwd, sizeof(fwd), "%s@%lu", host, portnum);
    int rc = ub_ctx_set_fwd(ctx, fwd);
    if (rc != 0) {
        snprintf(err, errlen, "DNS resolver %s: %s", resolver, ub_strerror(rc));
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, "DNS resolver \"%s\": expected IP, IP:PORT or [IPv6]:PORT", resolver);
    return -1;
}

static int dns_configure(struct ub_ctx *ctx, const char *resolver, char *err, size_t errlen)
{
    /* A forwarder on a loopback address (dnsmasq in tests, a local cache
     * such as 127.0.0.53 in resolv.conf) must be usable. */
    int rc = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no");
    if (rc != 0) {
        snprintf(err, errlen, "libunbound do-not-query-localhost: %s", ub_strerror(rc));
        return -1;
    }
    if (resolver && resolver[0]) {
        if (dns_set_forwarder(ctx, resolver, err, errlen) != 0)
            return -1;
        /* With a resolver of its own (a test set-up), the RFC 6761 name
         * "test." goes to it too instead of libunbound's built-in NXDOMAIN. */
        rc = ub_ctx_set_option(ctx, "local-zone:", "test. transparent");
        if (rc != 0) {
            snprintf(err, errlen, "libunbound local-zone: %s", ub_strerror(rc));
            return -1;
        }
    } else {
        rc = ub_ctx_resolvconf(ctx, NULL);
        if (rc != 0) {
            snprintf(err, errlen, "reading /etc/resolv.conf: %s", ub_strerror(rc));
            return -1;
        }
        rc = ub_ctx_hosts(ctx, NULL);
        if (rc != 0) {
            snprintf(err, errlen, "reading /etc/hosts: %s", ub_strerror(rc));
            return -1;
        }
    }
    rc = ub_ctx_async(ctx, 1); /* a thread, not a fork */
    if (rc != 0) {
        snprintf(err, errlen, "libunbound async: %s", ub_strerror(rc));
        return -1;
    }
    return 0;
}

struct dns *dns_new(struct event_base *base, const char *resolver, unsigned timeout_secs, char *err,
                    size_t errlen)
{
    struct dns *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base = base;
    d->timeout_secs = timeout_secs ? timeout_secs : 1;
    d->next_handle = 1;
    d->ctx = ub_ctx_create();
    if (!d->ctx) {
        snprintf(err, errlen, "libunbound: could not create a context");
        goto fail;
    }
    if (dns_configure(d->ctx, resolver, err, errlen) != 0)
        goto fail;
    int fd = ub_fd(d->ctx);
    if (fd < 0) {
        snprintf(err, errlen, "libunbound: no result descriptor");
        goto fail;
    }
    d->ub_ev = event_new(base, fd, EV_READ | EV_PERSIST, dns_ub_ready, d);
    if (!d->ub_ev || event_add(d->ub_ev, NULL) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return d;
fail:
    dns_free(&d);
    return NULL;
}

void dns_free(struct dns **dp)
{
    struct dns *d = dp ? *dp : NULL;
    if (!d)
        return;
    while (d->lookups)
        dns_lookup_destroy(d->lookups);
    if (d->ub_ev)
        event_free(d->ub_ev);
    if (d->ctx)
        ub_ctx_delete(d->ctx);
    free(d);
    *dp = NULL;
}
