/* pop3_session — the POP3 server session (RFC 1939, 2449, 2595, 3206,
 * 5034), see pop3_session.h.
 *
 * How input is read:
 *  - A command line ends at LF; a CR just before it is dropped (RFC 1939 3
 *    asks for CRLF, bare LF is taken too). Keywords are case-insensitive,
 *    arguments are separated by spaces. PASS takes the rest of the line
 *    after "PASS " as it is: a password may hold spaces (RFC 1939 7).
 *  - A line longer than max_line octets including CRLF (RFC 2449 4: 255)
 *    gets "-ERR Line too long" as soon as that many octets are buffered
 *    without an LF; the rest of that line, up to its LF, is dropped. The
 *    client's SASL response line (RFC 5034 4) may be up to
 *    POP3_SASL_LINE octets.
 *  - A line with a control octet other than HT (NUL included) gets -ERR.
 *  - Pipelining (RFC 2449 6.6): commands are taken from the buffered input
 *    one at a time, in order, whatever the feed boundaries. While an AUTH,
 *    RETR or UPDATE request is pending, feed() only buffers; more than
 *    POP3_PENDING_MAX octets buffered that way is abuse: -ERR and close.
 *    While STARTTLS is pending, input is dropped, and so is what was
 *    buffered after the STLS line: it came in the clear before the
 *    handshake (RFC 2595 4, CVE-2011-0411).
 *
 * Errors: every -ERR for a bad command (unknown, wrong state, syntax, bad
 * character, line too long, plaintext login refused) counts; when the
 * count reaches max_errors "-ERR Too many errors" follows at once and the
 * session closes. Not counted: "no such message" for a well-formed number,
 * a cancelled AUTH, and the caller's failures (IN-USE, SYS/TEMP, a message
 * gone). Failed logins (FAILED, NO_APOP, a PLAIN authzid that is not the
 * user) count separately against max_auth_failures.
 *
 * Choices:
 *  - QUIT in TRANSACTION with no message marked deleted ends at once with
 *    "+OK ... (0 messages deleted)": no POP3_REQ_UPDATE is raised, there is
 *    nothing to remove.
 *  - "AUTH" without a mechanism lists the mechanisms that can be used now
 *    (none, before TLS when plaintext logins are refused).
 *  - APOP sends no clear password, so it is allowed without TLS.
 *  - CAPA lists the same capabilities in AUTHORIZATION and TRANSACTION
 *    (RFC 2449 5), except STLS, only offered in AUTHORIZATION before TLS.
 *    USER and SASL are listed only when they can be used (RFC 2595 4).
 *  - RETR's "+OK <n> octets" repeats LIST's size: the message's octets as
 *    stored, which are CRLF-terminated lines (SMTP delivery and IMAP APPEND
 *    store them so). A message whose last line has no line break gets one
 *    before the ".": it belongs to the terminating line (RFC 1939 3).
 *
 * Out of memory: "-ERR [SYS/TEMP]" (as far as it can still be written) and
 * close.
 *
 * Limits left 0 in the configuration get defaults: line 255 (RFC 2449 4),
 * 10 errors, 3 failed logins.
 */
#include "proto/pop3/pop3_session.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base64.h"
#include "lib/log.h"

#define POP3_DEFAULT_LINE 255
#define POP3_DEFAULT_ERRORS 10
#define POP3_DEFAULT_AUTH_FAILURES 3
#define POP3_SASL_LINE 4096
#define POP3_PENDING_MAX ((size_t)1024 * 1024)
#define POP3_REPLY_MAX 512
#define POP3_SERVER_NAME "correio"

enum pop3_state {
    POP3_STATE_INIT,          /* created, greeting not written yet */
    POP3_STATE_AUTHORIZATION, /* RFC 1939 4 */
    POP3_STATE_SASL,          /* AUTH PLAIN: waiting for the client's response line */
    POP3_STATE_TRANSACTION,   /* RFC 1939 5 */
    POP3_STATE_WAIT_AUTH,     /* POP3_REQ_AUTH pending */
    POP3_STATE_WAIT_RETR,     /* POP3_REQ_RETR pending */
    POP3_STATE_UPDATE,        /* POP3_REQ_UPDATE pending (RFC 1939 6) */
    POP3_STATE_WAIT_TLS,      /* POP3_REQ_STARTTLS pending */
    POP3_STATE_CLOSED,        /* nothing more is read */
};

/* clang-format off */
static const char *const pop3_state_names[] = {
    [POP3_STATE_INIT] = "init",
    [POP3_STATE_AUTHORIZATION] = "authorization",
    [POP3_STATE_SASL] = "sasl",
    [POP3_STATE_TRANSACTION] = "transaction",
    [POP3_STATE_WAIT_AUTH] = "wait-auth",
    [POP3_STATE_WAIT_RETR] = "wait-retr",
    [POP3_STATE_UPDATE] = "update",
    [POP3_STATE_WAIT_TLS] = "wait-tls",
    [POP3_STATE_CLOSED] = "closed",
};
/* clang-format on */

struct pop3_session {
    const struct pop3_session_config *cfg;
    size_t max_line;  /* cfg->max_line or the default */
    size_t sasl_line; /* the longest SASL response line */
    unsigned max_errors;
    unsigned max_auth_failures;
    char *client_ip;
    char *banner; /* "<...>" or "" */
    enum pop3_state state;
    struct buf *out; /* the caller's reply buffer, during one call */
    bool oom;
    unsigned errors;
    unsigned auth_failures;

    struct buf in;  /* input not yet processed */
    char *line;     /* the current command line, sasl_line + 1 */
    bool line_skip; /* dropping the rest of an over-long line */

    bool tls;
    char *user; /* USER given, waiting for PASS */
    bool authenticated;
    char *account;

    /* The maildrop as it was at login, and the deletion marks. */
    struct pop3_msg *msgs;
    bool *deleted;
    size_t nmsgs;
    size_t ndeleted;

    /* The pending request and what it points to. */
    struct pop3_request req;
    char *req_user;
    char *req_secret; /* password or digest */
    uint32_t *req_deleted;
};

/* ------------------------------------------------------------------------
 * Replies and state
 */

const char *pop3_session_state_name(const struct pop3_session *s)
{
    return s ? pop3_state_names[s->state] : "none";
}

static void session_set_state(struct pop3_session *s, enum pop3_state st)
{
    if (s->state == POP3_STATE_CLOSED || s->state == st)
        return;
    log_debug("pop3", "event=state ip=%s from=%s to=%s", s->client_ip,
              pop3_state_names[s->state], pop3_state_names[st]);
    s->state = st;
}

static void session_vreply(struct pop3_session *s, const char *fmt, va_list ap)
{
    if (!s->out || buf_vline(s->out, POP3_REPLY_MAX, fmt, ap) < 0)
        s->oom = true;
}

/* Write one reply line; fmt has no CRLF. */
__attribute__((format(printf, 2, 3))) static void session_reply(struct pop3_session *s,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    session_vreply(s, fmt, ap);
    va_end(ap);
}

/* Write a reply and close. */
__attribute__((format(printf, 2, 3))) static void session_fatal(struct pop3_session *s,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    session_vreply(s, fmt, ap);
    va_end(ap);
    session_set_state(s, POP3_STATE_CLOSED);
}

/* Write an -ERR reply the client caused by a bad command, and count it. */
__attribute__((format(printf, 2, 3))) static void session_error(struct pop3_session *s,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    session_vreply(s, fmt, ap);
    va_end(ap);
    s->errors++;
    if (s->errors >= s->max_errors && s->state != POP3_STATE_CLOSED) {
        log_info("pop3", "event=too_many_errors ip=%s errors=%u", s->client_ip, s->errors);
        session_fatal(s, "-ERR Too many errors, closing connection");
    }
}

/* A failed login: write the reply and count it. */
__attribute__((format(printf, 2, 3))) static void session_auth_failed(struct pop3_session *s,
                                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    session_vreply(s, fmt, ap);
    va_end(ap);
    s->auth_failures++;
    if (s->auth_failures >= s->max_auth_failures && s->state != POP3_STATE_CLOSED) {
        log_info("pop3", "event=too_many_auth_failures ip=%s failures=%u", s->client_ip,
                 s->auth_failures);
        session_fatal(s, "-ERR [AUTH] Too many authentication failures, closing connection");
    }
}

/* End of every public call: handle out-of-memory, tell the caller. */
static enum pop3_session_status session_finish(struct pop3_session *s)
{
    if (s->oom && s->state != POP3_STATE_CLOSED) {
        log_error("pop3", "event=out_of_memory ip=%s state=%s", s->client_ip,
                  pop3_state_names[s->state]);
        if (s->out)
            buf_puts(s->out, "-ERR [SYS/TEMP] Out of memory\r\n");
        session_set_state(s, POP3_STATE_CLOSED);
    }
    s->out = NULL;
    return s->state == POP3_STATE_CLOSED ? POP3_SESSION_CLOSE : POP3_SESSION_CONTINUE;
}

static enum pop3_session_status session_status(const struct pop3_session *s)
{
    return s->state == POP3_STATE_CLOSED ? POP3_SESSION_CLOSE : POP3_SESSION_CONTINUE;
}

static void secret_free(char **p)
{
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

/* Forget the pending request and what it pointed to. */
static void request_clear(struct pop3_session *s)
{
    secret_free(&s->req_secret);
    free(s->req_user);
    s->req_user = NULL;
    free(s->req_deleted);
    s->req_deleted = NULL;
    s->req = (struct pop3_request){.type = POP3_REQ_NONE};
}

/* Whether USER/PASS and AUTH PLAIN may be used now (RFC 2595 2.1). */
static bool plaintext_ok(const struct pop3_session *s)
{
    return s->tls || s->cfg->allow_plaintext_auth;
}

static void plaintext_refuse(struct pop3_session *s)
{
    bool stls = s->cfg->starttls_available && !s->tls;
    session_error(s, "-ERR [AUTH] Plaintext authentication is disallowed without TLS%s",
                  stls ? "; use STLS first" : "");
}

/* Split arg into at most max space-separated words (arg is modified).
 * Returns how many, or -1 when there are more. */
static int args_split(char *arg, char **av, int max)
{
    int n = 0;
    char *p = arg;
    for (;;) {
        while (*p == ' ')
            p++;
        if (!*p)
            return n;
        if (n == max)
            return -1;
        av[n++] = p;
        while (*p && *p != ' ')
            p++;
        if (*p)
            *p++ = '\0';
    }
}

/* Decimal digits only (no sign, no space), saturating at UINT64_MAX. */
static bool parse_number(const char *p, uint64_t *v)
{
    uint64_t x = 0;
    if (!*p)
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    }
    *v = x;
    return true;
}

/* ------------------------------------------------------------------------
 * The maildrop
 */

size_t pop3_session_pipelined_retrs(const struct pop3_session *s, unsigned *msgnos, size_t max)
{
    if (!s || s->state != POP3_STATE_WAIT_RETR || s->line_skip)
        return 0;
    const char *p = (const char *)buf_ptr(&s->in);
    const char *end = p + buf_size(&s->in);
    size_t n = 0;
    while (n < max && p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf || lf - p < 6 || lf - p > 32 || strncasecmp(p, "RETR ", 5) != 0)
            break;
        char num[32];
        size_t len = (size_t)(lf - p) - 5;
        if (len > 0 && p[5 + len - 1] == '\r')
            len--;
        memcpy(num, p + 5, len);
        num[len] = '\0';
        uint64_t v;
        if (!parse_number(num, &v) || v == 0 || v > s->nmsgs || s->deleted[v - 1])
            break;
        msgnos[n++] = (unsigned)v;
        p = lf + 1;
    }
    return n;
}

static uint64_t maildrop_octets(const struct pop3_session *s, bool all)
{
    uint64_t total = 0;
    for (size_t i = 0; i < s->nmsgs; i++)
        if (all || !s->deleted[i])
            total += s->msgs[i].size;
    return total;
}

/* A message number argument: *idx_r gets its index. Replies and returns
 * false when it is not a number, out of range or deleted. */
static bool msg_arg(struct pop3_session *s, const char *arg, size_t *idx_r)
{
    uint64_t n;
    if (!parse_number(arg, &n)) {
        session_error(s, "-ERR Invalid message number");
        return false;
    }
    if (n == 0 || n > s->nmsgs) {
        session_reply(s, "-ERR No such message");
        return false;
    }
    if (s->deleted[n - 1]) {
        session_reply(s, "-ERR Message %llu already deleted", (unsigned long long)n);
        return false;
    }
    *idx_r = (size_t)(n - 1);
    return true;
}

/* The next line of data from *pos: its content without the line end. A
 * final line without LF ends at the end of data (a last lone CR is taken
 * as half a CRLF). false at the end. */
static bool data_next_line(const uint8_t *data, size_t len, size_t *pos, const uint8_t **line_r,
                           size_t *llen_r)
{
    if (*pos >= len)
        return false;
    const uint8_t *p = data + *pos;
    size_t left = len - *pos;
    const uint8_t *nl = memchr(p, '\n', left);
    size_t n = nl ? (size_t)(nl - p) : left;
    *pos += nl ? n + 1 : n;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    *line_r = p;
    *llen_r = n;
    return true;
}

/* Write (out != NULL) or measure the lines of a message that RETR (top <
 * 0) or TOP sends, byte-stuffed with CRLF line ends, without the final
 * ".". Returns the octets written. Lines that go out as they are stored
 * (CRLF, no leading ".") are copied in runs, one append per run. */
static size_t message_emit(const uint8_t *data, size_t len, long top, struct buf *out, bool *oom)
{
    size_t pos = 0, wrote = 0, run = 0; /* run: start of the unchanged lines not yet copied */
    bool in_body = false;
    long body_left = top;
    const uint8_t *line;
    size_t llen;
    for (;;) {
        size_t start = pos;
        if (!data_next_line(data, len, &pos, &line, &llen))
            break;
        if (top >= 0 && in_body) {
            if (body_left == 0) {
                pos = start;
                break;
            }
            body_left--;
        }
        if (top >= 0 && !in_body && llen == 0)
            in_body = true; /* the blank line is sent with the header */
        bool stuff = llen > 0 && line[0] == '.'; /* RFC 1939 3 */
        bool as_is = !stuff && pos - start == llen + 2 && data[pos - 1] == '\n' &&
                     data[pos - 2] == '\r';
        wrote += (stuff ? 1 : 0) + llen + 2;
        if (as_is || !out)
            continue;
        if (buf_append(out, data + run, start - run) < 0 ||
            (stuff && buf_append(out, ".", 1) < 0) || buf_append(out, line, llen) < 0 ||
            buf_append(out, "\r\n", 2) < 0)
            *oom = true;
        run = pos;
    }
    if (out && pos > run && buf_append(out, data + run, pos - run) < 0)
        *oom = true;
    return wrote;
}

int pop3_format_reply(const uint8_t *data, size_t len, long top, uint64_t size, struct buf *out)
{
    bool oom = false;
    size_t body = message_emit(data, len, top, NULL, &oom);
    if (buf_reserve(out, body + 64) < 0)
        return -1;
    if ((top < 0 ? buf_printf(out, "+OK %llu octets\r\n", (unsigned long long)size)
                 : buf_puts(out, "+OK Top of message follows\r\n")) < 0)
        return -1;
    message_emit(data, len, top, out, &oom);
    if (oom || buf_append(out, ".\r\n", 3) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------------
 * AUTHORIZATION commands
 */

/* Hand the login over to the caller (POP3_REQ_AUTH). */
static void auth_request(struct pop3_session *s, enum pop3_auth_kind kind, const char *user,
                         size_t ulen, const char *secret, size_t slen)
{
    s->req_user = strndup(user, ulen);
    s->req_secret = strndup(secret, slen);
    if (!s->req_user || !s->req_secret) {
        request_clear(s);
        s->oom = true;
        return;
    }
    s->req = (struct pop3_request){
        .type = POP3_REQ_AUTH,
        .auth_kind = kind,
        .user = s->req_user,
        .password = kind == POP3_AUTH_PASSWORD ? s->req_secret : NULL,
        .digest = kind == POP3_AUTH_APOP ? s->req_secret : NULL,
        .banner = kind == POP3_AUTH_APOP ? s->banner : NULL,
        .top_lines = -1,
    };
    session_set_state(s, POP3_STATE_WAIT_AUTH);
}

static void cmd_user(struct pop3_session *s, char *arg)
{
    if (!plaintext_ok(s)) {
        plaintext_refuse(s);
        return;
    }
    char *av[1];
    if (args_split(arg, av, 1) != 1) {
        session_error(s, "-ERR Syntax: USER name");
        return;
    }
    free(s->user);
    s->user = strdup(av[0]);
    if (!s->user) {
        s->oom = true;
        return;
    }
    session_reply(s, "+OK Send your password");
}

/* arg: everything after "PASS ", spaces included. */
static void cmd_pass(struct pop3_session *s, char *arg)
{
    if (!plaintext_ok(s)) {
        plaintext_refuse(s);
        return;
    }
    if (!s->user) {
        session_error(s, "-ERR Send USER first");
        return;
    }
    if (!*arg) {
        session_error(s, "-ERR Syntax: PASS password");
        return;
    }
    char *user = s->user;
    s->user = NULL; /* a failed PASS needs a new USER */
    auth_request(s, POP3_AUTH_PASSWORD, user, strlen(user), arg, strlen(arg));
    free(user);
}

static bool digest_ok(const char *d)
{
    size_t i = 0;
    for (; d[i]; i++) {
        char c = d[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return i == 32;
}

/* RFC 1939 7: APOP name digest. No clear password: allowed without TLS. */
static void cmd_apop(struct pop3_session *s, char *arg)
{
    char *av[2];
    if (args_split(arg, av, 2) != 2 || !digest_ok(av[1])) {
        session_error(s, "-ERR Syntax: APOP name digest");
        return;
    }
    if (!s->banner[0]) {
        session_error(s, "-ERR APOP is not available");
        return;
    }
    for (char *p = av[1]; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    free(s->user);
    s->user = NULL;
    auth_request(s, POP3_AUTH_APOP, av[0], strlen(av[0]), av[1], 32);
}

/* RFC 4616: [authzid] NUL authcid NUL passwd, in base64 (RFC 5034 4). */
static void sasl_plain(struct pop3_session *s, const char *b64, size_t len)
{
    struct buf raw = BUF_INIT;
    if (base64_decode(&raw, b64, len) < 0) {
        if (raw.data)
            explicit_bzero(raw.data, raw.cap);
        buf_free(&raw);
        session_error(s, "-ERR Invalid base64 data");
        return;
    }
    const char *p = (const char *)buf_ptr(&raw), *end = p + buf_size(&raw);
    const char *nul1 = memchr(p, '\0', (size_t)(end - p));
    const char *authc = nul1 ? nul1 + 1 : NULL;
    const char *nul2 = authc ? memchr(authc, '\0', (size_t)(end - authc)) : NULL;
    if (!nul2 || nul2 == authc || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1))) {
        session_error(s, "-ERR Malformed PLAIN response");
    } else {
        size_t authz_len = (size_t)(nul1 - p), authc_len = (size_t)(nul2 - authc);
        if (authz_len > 0 && (authz_len != authc_len || strncasecmp(p, authc, authz_len) != 0)) {
            log_info("pop3", "event=auth_failed ip=%s reason=authzid", s->client_ip);
            session_auth_failed(s, "-ERR [AUTH] The authorization identity must be empty or "
                                   "the user name");
        } else {
            auth_request(s, POP3_AUTH_PASSWORD, authc, authc_len, nul2 + 1,
                         (size_t)(end - nul2 - 1));
        }
    }
    if (raw.data)
        explicit_bzero(raw.data, raw.cap);
    buf_free(&raw);
}

/* RFC 5034: AUTH mechanism [initial-response]; without a mechanism, the
 * list of mechanisms (as many clients expect). */
static void cmd_auth(struct pop3_session *s, char *arg)
{
    char *av[2];
    int n = args_split(arg, av, 2);
    if (n < 0) {
        session_error(s, "-ERR Syntax: AUTH mechanism [initial-response]");
        return;
    }
    if (n == 0) {
        session_reply(s, "+OK");
        if (plaintext_ok(s))
            session_reply(s, "PLAIN");
        session_reply(s, ".");
        return;
    }
    if (strcasecmp(av[0], "PLAIN") != 0) {
        session_error(s, "-ERR Unsupported authentication mechanism");
        return;
    }
    if (!plaintext_ok(s)) {
        plaintext_refuse(s);
        return;
    }
    free(s->user);
    s->user = NULL;
    if (n == 2) { /* "=" is an empty initial response (RFC 5034 4) */
        const char *ir = strcmp(av[1], "=") == 0 ? "" : av[1];
        sasl_plain(s, ir, strlen(ir));
        return;
    }
    session_reply(s, "+ ");
    session_set_state(s, POP3_STATE_SASL);
}

/* The client's answer to "+ ". */
static void sasl_response(struct pop3_session *s, const char *line, size_t len)
{
    session_set_state(s, POP3_STATE_AUTHORIZATION);
    if (len == 1 && line[0] == '*') { /* RFC 5034 4: the client cancels */
        session_reply(s, "-ERR Authentication cancelled");
        return;
    }
    sasl_plain(s, line, len);
}

/* RFC 2595 4 */
static void cmd_stls(struct pop3_session *s, char *arg)
{
    char *av[1];
    if (args_split(arg, av, 0) != 0) {
        session_error(s, "-ERR Syntax: STLS");
        return;
    }
    if (!s->cfg->starttls_available) {
        session_error(s, "-ERR STLS is not available");
        return;
    }
    if (s->tls) {
        session_error(s, "-ERR TLS is already active");
        return;
    }
    session_reply(s, "+OK Begin TLS negotiation");
    size_t dropped = buf_size(&s->in);
    if (dropped) { /* CVE-2011-0411: sent in the clear, not to be read after the handshake */
        log_warn("pop3", "event=starttls_injection ip=%s dropped=%zu", s->client_ip, dropped);
        explicit_bzero((void *)buf_ptr(&s->in), dropped);
        buf_reset(&s->in);
    }
    s->line_skip = false;
    free(s->user);
    s->user = NULL;
    s->req = (struct pop3_request){.type = POP3_REQ_STARTTLS, .top_lines = -1};
    session_set_state(s, POP3_STATE_WAIT_TLS);
}

/* ------------------------------------------------------------------------
 * Commands of both states
 */

/* RFC 2449 5 */
static void cmd_capa(struct pop3_session *s, char *arg)
{
    char *av[1];
    if (args_split(arg, av, 0) != 0) {
        session_error(s, "-ERR Syntax: CAPA");
        return;
    }
    session_reply(s, "+OK Capability list follows");
    session_reply(s, "TOP");
    session_reply(s, "UIDL");
    session_reply(s, "RESP-CODES");
    session_reply(s, "AUTH-RESP-CODE");
    session_reply(s, "PIPELINING");
    if (plaintext_ok(s)) { /* RFC 2595 4: advertise only what can be used */
        session_reply(s, "USER");
        session_reply(s, "SASL PLAIN");
    }
    if (s->state == POP3_STATE_AUTHORIZATION && s->cfg->starttls_available && !s->tls)
        session_reply(s, "STLS");
    session_reply(s, "IMPLEMENTATION " POP3_SERVER_NAME);
    session_reply(s, ".");
}

static int uid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void cmd_quit(struct pop3_session *s, char *arg)
{
    char *av[1];
    if (args_split(arg, av, 0) != 0) {
        session_error(s, "-ERR Syntax: QUIT");
        return;
    }
    if (s->state == POP3_STATE_AUTHORIZATION) { /* RFC 1939 4: no UPDATE */
        session_fatal(s, "+OK " POP3_SERVER_NAME " POP3 server signing off");
        return;
    }
    if (s->ndeleted == 0) { /* nothing to remove: no UPDATE request */
        log_info("pop3", "event=quit ip=%s account=%s deleted=0", s->client_ip, s->account);
        session_fatal(s, "+OK " POP3_SERVER_NAME " POP3 server signing off (0 messages deleted)");
        return;
    }
    s->req_deleted = malloc(s->ndeleted * sizeof(*s->req_deleted));
    if (!s->req_deleted) {
        s->oom = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nmsgs; i++)
        if (s->deleted[i])
            s->req_deleted[n++] = s->msgs[i].uid;
    qsort(s->req_deleted, n, sizeof(*s->req_deleted), uid_cmp);
    s->req = (struct pop3_request){
        .type = POP3_REQ_UPDATE,
        .top_lines = -1,
        .deleted = s->req_deleted,
        .ndeleted = n,
    };
    session_set_state(s, POP3_STATE_UPDATE);
}

/* ------------------------------------------------------------------------
 * TRANSACTION commands (RFC 1939 5, 7)
 */

static void cmd_stat(struct pop3_session *s, char *arg)
{
    char *av[1];
    if (args_split(arg, av, 0) != 0) {
        session_error(s, "-ERR Syntax: STAT");
        return;
    }
    session_reply(s, "+OK %zu %llu", s->nmsgs - s->ndeleted,
                  (unsigned long long)maildrop_octets(s, false));
}

static void cmd_list(struct pop3_session *s, char *arg)
{
    char *av[1];
    int n = args_split(arg, av, 1);
    size_t i;
    if (n < 0) {
        session_error(s, "-ERR Syntax: LIST [msg]");
    } else if (n == 1) {
        if (msg_arg(s, av[0], &i))
            session_reply(s, "+OK %zu %llu", i + 1, (unsigned long long)s->msgs[i].size);
    } else {
        session_reply(s, "+OK %zu messages (%llu octets)", s->nmsgs - s->ndeleted,
                      (unsigned long long)maildrop_octets(s, false));
        for (i = 0; i < s->nmsgs && !s->oom; i++)
            if (!s->deleted[i])
                session_reply(s, "%zu %llu", i + 1, (unsigned long long)s->msgs[i].size);
        session_reply(s, ".");
    }
}

static void cmd_uidl(struct pop3_session *s, char *arg)
{
    char *av[1];
    int n = args_split(arg, av, 1);
    size_t i;
    if (n < 0) {
        session_error(s, "-ERR Syntax: UIDL [msg]");
    } else if (n == 1) {
        if (msg_arg(s, av[0], &i))
            session_reply(s, "+OK %zu %s", i + 1, s->msgs[i].uidl);
    } else {
        session_reply(s, "+OK Unique-ID listing follows");
        for (i = 0; i < s->nmsgs && !s->oom; i++)
            if (!s->deleted[i])
                session_reply(s, "%zu %s", i + 1, s->msgs[i].uidl);
        session_reply(s, ".");
    }
}

static void retr_request(struct pop3_session *s, size_t i, long top)
{
    s->req = (struct pop3_request){
        .type = POP3_REQ_RETR,
        .msgno = (unsigned)(i + 1),
        .msg = &s->msgs[i],
        .top_lines = top,
    };
    session_set_state(s, POP3_STATE_WAIT_RETR);
}

static void cmd_retr(struct pop3_session *s, char *arg)
{
    char *av[1];
    size_t i;
    if (args_split(arg, av, 1) != 1) {
        session_error(s, "-ERR Syntax: RETR msg");
        return;
    }
    if (msg_arg(s, av[0], &i))
        retr_request(s, i, -1);
}

static void cmd_top(struct pop3_session *s, char *arg)
{
    char *av[2];
    size_t i;
    uint64_t lines;
    if (args_split(arg, av, 2) != 2 || !parse_number(av[1], &lines)) {
        session_error(s, "-ERR Syntax: TOP msg lines");
        return;
    }
    if (msg_arg(s, av[0], &i))
        retr_request(s, i, lines > (uint64_t)LONG_MAX ? LONG_MAX : (long)lines);
}

static void cmd_dele(struct pop3_session *s, char *arg)
{
    char *av[1];
    size_t i;
    if (args_split(arg, av, 1) != 1) {
        session_error(s, "-ERR Syntax: DELE msg");
        return;
    }
    if (!msg_arg(s, av[0], &i))
        return;
    s->deleted[i] = true;
    s->ndeleted++;
    session_reply(s, "+OK Message %zu deleted", i + 1);
}

static void cmd_noop(struct pop3_session *s, char *arg)
{
    char *av[1];
    if (args_split(arg, av, 0) != 0) {
        session_error(s, "-ERR Syntax: NOOP");
        return;
    }
    session_reply(s, "+OK");
}

static void cmd_rset(struct pop3_session *s, char *arg)
{
    char *av[1];
    if (args_split(arg, av, 0) != 0) {
        session_error(s, "-ERR Syntax: RSET");
        return;
    }
    for (size_t i = 0; i < s->nmsgs; i++)
        s->deleted[i] = false;
    s->ndeleted = 0;
    session_reply(s, "+OK maildrop has %zu messages (%llu octets)", s->nmsgs,
                  (unsigned long long)maildrop_octets(s, true));
}

/* ------------------------------------------------------------------------
 * The command table and the input loop
 */

#define IN_AUTH (1u << 0)
#define IN_TRANS (1u << 1)

struct pop3_command {
    const char *name;
    unsigned states; /* IN_AUTH, IN_TRANS */
    void (*proceed)(struct pop3_session *s, char *arg); /* arg: after the keyword and a space */
};

static const struct pop3_command pop3_commands[] = {
    {"USER", IN_AUTH, cmd_user},
    {"PASS", IN_AUTH, cmd_pass},
    {"APOP", IN_AUTH, cmd_apop},
    {"AUTH", IN_AUTH, cmd_auth},
    {"STLS", IN_AUTH, cmd_stls},
    {"CAPA", IN_AUTH | IN_TRANS, cmd_capa},
    {"QUIT", IN_AUTH | IN_TRANS, cmd_quit},
    {"STAT", IN_TRANS, cmd_stat},
    {"LIST", IN_TRANS, cmd_list},
    {"UIDL", IN_TRANS, cmd_uidl},
    {"RETR", IN_TRANS, cmd_retr},
    {"TOP", IN_TRANS, cmd_top},
    {"DELE", IN_TRANS, cmd_dele},
    {"NOOP", IN_TRANS, cmd_noop},
    {"RSET", IN_TRANS, cmd_rset},
};

static void session_command(struct pop3_session *s, char *line, size_t len)
{
    if (s->state == POP3_STATE_SASL) {
        sasl_response(s, line, len);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            session_error(s, "-ERR Invalid character in command");
            return;
        }
    }
    size_t klen = 0;
    while (klen < len && line[klen] != ' ')
        klen++;
    char *arg = line + klen;
    if (*arg == ' ')
        arg++;
    for (size_t i = 0; i < sizeof(pop3_commands) / sizeof(pop3_commands[0]); i++) {
        const struct pop3_command *cmd = &pop3_commands[i];
        if (klen == 0 || strlen(cmd->name) != klen || strncasecmp(cmd->name, line, klen) != 0)
            continue;
        unsigned here = s->state == POP3_STATE_AUTHORIZATION ? IN_AUTH : IN_TRANS;
        if (!(cmd->states & here))
            session_error(s, here == IN_AUTH ? "-ERR Not logged in"
                                             : "-ERR Not allowed after login");
        else
            cmd->proceed(s, arg);
        return;
    }
    session_error(s, "-ERR Unknown command");
}

/* Drop n processed octets of input, wiping them (they may hold a password). */
static void input_consume(struct pop3_session *s, size_t n)
{
    explicit_bzero((void *)buf_ptr(&s->in), n);
    buf_consume(&s->in, n);
}

/* Take one command line from the input. false when more input is needed. */
static bool step_command(struct pop3_session *s)
{
    const uint8_t *p = buf_ptr(&s->in);
    size_t avail = buf_size(&s->in);
    if (avail == 0)
        return false;
    if (s->line_skip) {
        const uint8_t *nl = memchr(p, '\n', avail);
        if (!nl) {
            input_consume(s, avail);
            return false;
        }
        input_consume(s, (size_t)(nl - p) + 1);
        s->line_skip = false;
        return true;
    }
    size_t max = s->state == POP3_STATE_SASL ? s->sasl_line : s->max_line;
    size_t len = buf_line_len(&s->in);
    if (len == 0 || len > max) {
        if (len == 0 && avail < max)
            return false;
        input_consume(s, len ? len : avail);
        s->line_skip = len == 0;
        session_set_state(s, s->state == POP3_STATE_SASL ? POP3_STATE_AUTHORIZATION : s->state);
        session_error(s, "-ERR Line too long"); /* RFC 2449 4 */
        return true;
    }
    size_t n = len - 1;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    memcpy(s->line, p, n);
    s->line[n] = '\0';
    input_consume(s, len);
    session_command(s, s->line, n);
    explicit_bzero(s->line, n);
    return true;
}

/* Process buffered input until it runs out, a request is made or the end. */
static void session_run(struct pop3_session *s)
{
    while (!s->oom && s->req.type == POP3_REQ_NONE &&
           (s->state == POP3_STATE_AUTHORIZATION || s->state == POP3_STATE_SASL ||
            s->state == POP3_STATE_TRANSACTION)) {
        if (!step_command(s))
            return;
    }
}

/* ------------------------------------------------------------------------
 * Public API
 */

struct pop3_session *pop3_session_new(const struct pop3_session_config *cfg,
                                      const char *client_ip, const char *banner, bool tls)
{
    struct pop3_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = cfg;
    s->max_line = cfg->max_line ? cfg->max_line : POP3_DEFAULT_LINE;
    s->sasl_line = s->max_line > POP3_SASL_LINE ? s->max_line : POP3_SASL_LINE;
    s->max_errors = cfg->max_errors ? cfg->max_errors : POP3_DEFAULT_ERRORS;
    s->max_auth_failures = cfg->max_auth_failures ? cfg->max_auth_failures
                                                  : POP3_DEFAULT_AUTH_FAILURES;
    s->tls = tls;
    s->client_ip = strdup(client_ip ? client_ip : "");
    s->banner = strdup(banner ? banner : "");
    s->line = malloc(s->sasl_line + 1);
    if (!s->client_ip || !s->banner || !s->line) {
        pop3_session_free(&s);
        return NULL;
    }
    s->req.type = POP3_REQ_NONE;
    s->state = POP3_STATE_INIT;
    return s;
}

void pop3_session_free(struct pop3_session **sp)
{
    struct pop3_session *s = sp ? *sp : NULL;
    if (!s)
        return;
    request_clear(s);
    secret_free(&s->user);
    if (s->in.data)
        explicit_bzero(s->in.data, s->in.cap);
    buf_free(&s->in);
    if (s->line)
        explicit_bzero(s->line, s->sasl_line + 1);
    free(s->line);
    free(s->msgs);
    free(s->deleted);
    free(s->account);
    free(s->banner);
    free(s->client_ip);
    free(s);
    *sp = NULL;
}

void pop3_session_start(struct pop3_session *s, struct buf *out)
{
    if (s->state != POP3_STATE_INIT)
        return;
    s->out = out;
    session_reply(s, "+OK %s POP3 ready%s%s", s->cfg->hostname ? s->cfg->hostname : "localhost", s->banner[0] ? " " : "",
                  s->banner);
    session_set_state(s, POP3_STATE_AUTHORIZATION);
    session_run(s); /* input fed before the greeting */
    session_finish(s);
}

enum pop3_session_status pop3_session_feed(struct pop3_session *s, const void *data, size_t len,
                                           struct buf *out)
{
    s->out = out;
    if (s->state == POP3_STATE_CLOSED || s->state == POP3_STATE_WAIT_TLS)
        return session_finish(s); /* WAIT_TLS: RFC 2595 4, dropped */
    if ((s->req.type != POP3_REQ_NONE || s->state == POP3_STATE_INIT) &&
        buf_size(&s->in) + len > POP3_PENDING_MAX) {
        log_warn("pop3", "event=pipeline_overflow ip=%s buffered=%zu", s->client_ip,
                 buf_size(&s->in));
        session_fatal(s, "-ERR Too much pipelined input, closing connection");
        return session_finish(s);
    }
    if (buf_append(&s->in, data, len) < 0) {
        s->oom = true;
        return session_finish(s);
    }
    session_run(s);
    return session_finish(s);
}

const struct pop3_request *pop3_session_request(const struct pop3_session *s)
{
    return s->req.type == POP3_REQ_NONE ? NULL : &s->req;
}

/* Take the maildrop given with POP3_AUTH_OK. false on OOM. */
static bool maildrop_set(struct pop3_session *s, const struct pop3_msg *msgs, size_t n)
{
    if (!msgs)
        n = 0;
    if (n > SIZE_MAX / sizeof(*s->msgs))
        return false;
    s->msgs = malloc(n ? n * sizeof(*s->msgs) : 1);
    s->deleted = calloc(n ? n : 1, sizeof(*s->deleted));
    if (!s->msgs || !s->deleted)
        return false;
    if (n)
        memcpy(s->msgs, msgs, n * sizeof(*s->msgs));
    for (size_t i = 0; i < n; i++)
        s->msgs[i].uidl[sizeof(s->msgs[i].uidl) - 1] = '\0';
    s->nmsgs = n;
    return true;
}

enum pop3_session_status pop3_session_auth_done(struct pop3_session *s, enum pop3_auth_result r,
                                                const char *account, const struct pop3_msg *msgs,
                                                size_t n, struct buf *out)
{
    if (s->req.type != POP3_REQ_AUTH)
        return session_status(s);
    s->out = out;
    char quser[160];
    log_quote(quser, sizeof(quser), s->req_user);
    const char *kind = s->req.auth_kind == POP3_AUTH_APOP ? "apop" : "password";
    if (r == POP3_AUTH_OK) {
        /* Held from now on, even when the session already ended: the
         * caller releases the lock. */
        s->authenticated = true;
        s->account = strdup(account ? account : s->req_user);
        if (!s->account)
            s->oom = true;
    }
    request_clear(s);
    if (s->state == POP3_STATE_CLOSED || s->oom)
        return session_finish(s);
    session_set_state(s, POP3_STATE_AUTHORIZATION);
    switch (r) {
    case POP3_AUTH_OK:
        if (!maildrop_set(s, msgs, n)) {
            s->oom = true;
            return session_finish(s);
        }
        log_info("pop3", "event=login ip=%s account=%s kind=%s tls=%s messages=%zu",
                 s->client_ip, s->account, kind, s->tls ? "yes" : "no", s->nmsgs);
        session_set_state(s, POP3_STATE_TRANSACTION);
        session_reply(s, "+OK Logged in.");
        break;
    case POP3_AUTH_FAILED:
        log_info("pop3", "event=auth_failed ip=%s user=%s kind=%s", s->client_ip, quser, kind);
        session_auth_failed(s, "-ERR [AUTH] Authentication failed.");
        break;
    case POP3_AUTH_NO_APOP:
        log_info("pop3", "event=auth_failed ip=%s user=%s kind=apop reason=no_secret",
                 s->client_ip, quser);
        session_auth_failed(s, "-ERR [AUTH] APOP is not enabled for this account (set a secret "
                               "with: correio user apop-secret)");
        break;
    case POP3_AUTH_IN_USE:
        log_info("pop3", "event=auth_in_use ip=%s user=%s", s->client_ip, quser);
        session_reply(s, "-ERR [IN-USE] Mailbox is locked by another POP3 session.");
        break;
    case POP3_AUTH_TEMPFAIL:
    default:
        session_reply(s, "-ERR [SYS/TEMP] Temporary failure, try again later.");
        break;
    }
    session_run(s);
    return session_finish(s);
}

static void retr_write(struct pop3_session *s, const uint8_t *data, size_t len, long top,
                       uint64_t size)
{
    /* Room for all of it is reserved first, so that no "+OK" is left
     * without its lines. */
    if (pop3_format_reply(data, len, top, size, s->out) < 0)
        s->oom = true;
}

enum pop3_session_status pop3_session_retr_done_reply(struct pop3_session *s, struct buf *reply,
                                                      struct buf *out)
{
    if (s->req.type != POP3_REQ_RETR)
        return session_status(s);
    s->out = out;
    request_clear(s);
    if (s->state == POP3_STATE_CLOSED)
        return session_finish(s);
    if (buf_size(out) == 0) { /* take the reply's storage over */
        struct buf t = *out;
        *out = *reply;
        *reply = t;
        buf_reset(reply);
    } else if (buf_append(out, buf_ptr(reply), buf_size(reply)) < 0) {
        s->oom = true;
    }
    session_set_state(s, POP3_STATE_TRANSACTION);
    session_run(s);
    return session_finish(s);
}

enum pop3_session_status pop3_session_retr_done(struct pop3_session *s, enum pop3_retr_result r,
                                                const uint8_t *data, size_t len,
                                                struct buf *out)
{
    if (s->req.type != POP3_REQ_RETR)
        return session_status(s);
    s->out = out;
    unsigned msgno = s->req.msgno;
    long top = s->req.top_lines;
    request_clear(s);
    if (s->state == POP3_STATE_CLOSED)
        return session_finish(s);
    if (r == POP3_RETR_OK && !data && len > 0)
        r = POP3_RETR_TEMPFAIL;
    switch (r) {
    case POP3_RETR_OK:
        retr_write(s, data, len, top,
                   msgno >= 1 && msgno <= s->nmsgs ? s->msgs[msgno - 1].size : len);
        break;
    case POP3_RETR_GONE:
        session_reply(s, "-ERR Message %u was removed by another session", msgno);
        break;
    case POP3_RETR_TEMPFAIL:
    default:
        session_reply(s, "-ERR [SYS/TEMP] Cannot read message %u, try again later", msgno);
        break;
    }
    session_set_state(s, POP3_STATE_TRANSACTION);
    session_run(s);
    return session_finish(s);
}

enum pop3_session_status pop3_session_update_done(struct pop3_session *s, bool ok,
                                                  struct buf *out)
{
    if (s->req.type != POP3_REQ_UPDATE)
        return session_status(s);
    s->out = out;
    size_t n = s->req.ndeleted;
    request_clear(s);
    log_info("pop3", "event=quit ip=%s account=%s deleted=%zu ok=%s", s->client_ip,
             s->account ? s->account : "-", n, ok ? "yes" : "no");
    if (s->state != POP3_STATE_CLOSED) {
        if (ok)
            session_fatal(s, "+OK " POP3_SERVER_NAME " POP3 server signing off (%zu message%s "
                             "deleted)", n, n == 1 ? "" : "s");
        else
            session_fatal(s, "-ERR [SYS/TEMP] Some deleted messages were not removed");
    }
    return session_finish(s);
}

enum pop3_session_status pop3_session_tls_done(struct pop3_session *s, bool ok, struct buf *out)
{
    if (s->req.type != POP3_REQ_STARTTLS)
        return session_status(s);
    s->out = out;
    request_clear(s);
    if (s->state == POP3_STATE_CLOSED)
        return session_finish(s);
    if (!ok) {
        log_info("pop3", "event=tls_failed ip=%s", s->client_ip);
        session_set_state(s, POP3_STATE_CLOSED);
        return session_finish(s);
    }
    /* RFC 2595 4: start over in AUTHORIZATION, without what came before. */
    s->tls = true;
    secret_free(&s->user);
    buf_reset(&s->in);
    s->line_skip = false;
    session_set_state(s, POP3_STATE_AUTHORIZATION);
    return session_finish(s);
}

enum pop3_session_status pop3_session_timeout(struct pop3_session *s, struct buf *out)
{
    s->out = out;
    if (s->state != POP3_STATE_CLOSED) {
        log_info("pop3", "event=timeout ip=%s state=%s", s->client_ip, pop3_state_names[s->state]);
        session_fatal(s, "-ERR Autologout; idle for too long");
    }
    return session_finish(s);
}

enum pop3_session_status pop3_session_shutdown(struct pop3_session *s, struct buf *out)
{
    s->out = out;
    if (s->state != POP3_STATE_CLOSED)
        session_fatal(s, "-ERR [SYS/TEMP] Server shutting down");
    return session_finish(s);
}

bool pop3_session_authenticated(const struct pop3_session *s)
{
    return s->authenticated;
}

const char *pop3_session_account(const struct pop3_session *s)
{
    return s->authenticated ? s->account : NULL;
}

bool pop3_session_tls_active(const struct pop3_session *s)
{
    return s->tls;
}
