/* dns — asynchronous DNS look-ups for outbound delivery, with libunbound
 * on the event loop (ub_fd watched by libevent, ub_process when readable;
 * libunbound's own worker thread, no fork).
 *
 * dns_resolve_mx finds where mail for a domain goes (RFC 5321 5.1):
 *  - the MX records, sorted by preference, in random order among equal
 *    preferences (a target named twice is kept once, at its best place);
 *    then the AAAA and A records of each MX host (IPv6 first within a
 *    host); hosts whose addresses cannot be found are left out (and say so
 *    in `err` if none is left: DNS_TEMPFAIL);
 *  - no MX record (NOERROR/NODATA): the domain itself is the one host
 *    ("implicit MX"), with its AAAA/A;
 *  - a null MX (RFC 7505: one MX "0 ."): DNS_NULL_MX, the caller bounces
 *    at once (5.1.10); a "." target among real MX records is ignored;
 *  - NXDOMAIN: DNS_NO_DOMAIN (permanent, 5.1.2); SERVFAIL, a timeout, no
 *    answer: DNS_TEMPFAIL (the caller retries later, 4.4.3). When the time
 *    runs out while the hosts' addresses are being looked up, the hosts
 *    that already have one are returned (DNS_OK), the others left out;
 *  - a domain literal "[192.0.2.1]" / "[IPv6:2001:db8::1]" is its own
 *    address without a query: one host named as the literal was given,
 *    preference 0, implicit false.
 * DNSSEC is not validated here (no trust anchor is configured).
 *
 * Domains are host names in A-label form (letters, digits, '-', '_';
 * labels of 1..63, at most 253 characters, one final dot allowed); MX
 * targets that are not are skipped.
 *
 * The resolver is the system's (/etc/resolv.conf and /etc/hosts) unless
 * `resolver` names one "HOST:PORT" (delivery.dns_resolver; tests point it
 * at a dnsmasq on a loopback port). Resolvers on loopback addresses are
 * always allowed (a local cache such as 127.0.0.53 in resolv.conf too).
 * Beware: libunbound answers its default local zones itself, whatever the
 * resolver: names under test., invalid., onion., localhost. give
 * DNS_NO_DOMAIN without a query (tests use names under example.).
 * Loop thread only.
 */
#ifndef CORREIO_DNS_DNS_H
#define CORREIO_DNS_DNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct dns;

#define DNS_MAX_HOSTS 16 /* MX hosts kept, best first */
#define DNS_MAX_ADDRS 8  /* addresses kept per host */

enum dns_status {
    DNS_OK = 0,
    DNS_NO_DOMAIN, /* NXDOMAIN: permanent */
    DNS_NULL_MX,   /* RFC 7505: the domain takes no mail */
    DNS_TEMPFAIL,  /* SERVFAIL, timeout, no usable address: try later */
};

struct dns_host {
    char name[256];      /* MX target (or the domain for an implicit MX) */
    unsigned preference; /* 0 for an implicit MX or a literal */
    /* numeric, IPv6 first; when both families have more than fit, half
     * the places are kept for IPv4 */
    char addrs[DNS_MAX_ADDRS][INET6_ADDRSTRLEN];
    size_t naddrs;
};

struct dns_mx_result {
    enum dns_status status;
    const struct dns_host *hosts; /* DNS_OK: best first, every one with >= 1 address */
    size_t nhosts;
    bool implicit; /* no MX record: the domain itself */
    char err[256]; /* why, when not DNS_OK (for the DSN / queue list); "" if OK */
};

/* Called once per dns_resolve_mx, on the loop thread, from the event loop
 * (never from inside a dns_* call); r is valid only during the call. The
 * callback may start or cancel look-ups, and may dns_free. */
typedef void (*dns_mx_cb)(void *arg, const struct dns_mx_result *r);

/* resolver: "" (or NULL) for the system's, or "HOST:PORT" / "HOST" (port
 * 53), HOST an IP address ("[2001:db8::1]:53" or a bare IPv6 address).
 * timeout_secs: for a whole look-up (MX and the addresses), >= 1 (0 is
 * taken as 1). NULL with err on failure. Starts libunbound's thread. */
struct dns *dns_new(struct event_base *base, const char *resolver, unsigned timeout_secs, char *err,
                    size_t errlen);
/* Cancel every look-up in progress (their callbacks are not called), stop
 * libunbound's thread and free; *d becomes NULL. NULL is fine. */
void dns_free(struct dns **d);

/* Start a look-up; cb is called later (never from inside this call),
 * exactly once unless the look-up is cancelled. domain is copied.
 * Returns a handle (never 0) for dns_cancel, or 0 when it could not start
 * (out of memory, a bad domain or literal): then cb is not called. */
unsigned long dns_resolve_mx(struct dns *d, const char *domain, dns_mx_cb cb, void *arg);
/* The same for one host (a smart host): its AAAA and A records, no MX
 * step; the result has that one host (DNS_TEMPFAIL when it has no
 * address, DNS_NO_DOMAIN is not given: a missing name is temporary). A
 * literal "[IP]" works as for dns_resolve_mx. */
unsigned long dns_resolve_host(struct dns *d, const char *name, dns_mx_cb cb, void *arg);

/* Stop a look-up: its callback will not be called. Unknown handles (and
 * handles of look-ups already answered) are fine. */
void dns_cancel(struct dns *d, unsigned long handle);

/* Pure helper (exposed for tests): order MX records by preference,
 * shuffling equal preferences with rnd(n) -> 0..n-1 (called n-1 times;
 * uniform rnd gives a uniform order among equal preferences). prefs/names
 * are permuted together. */
void dns_mx_sort(unsigned *prefs, char (*names)[256], size_t n, unsigned (*rnd)(unsigned n));

#endif
