/* smtp_client — the client side of SMTP (RFC 5321), see smtp_client.h.
 *
 * How replies are read:
 *  - Input is buffered and cut into lines at LF; a CR just before it is
 *    dropped (RFC 5321 asks for CRLF, a bare LF is taken too). A line of
 *    more than SMTP_CLIENT_LINE_MAX octets (without its line ending) is a
 *    protocol error as soon as that many are buffered without an LF.
 *  - A line is "DDD" alone, "DDD text" (the last line of the reply) or
 *    "DDD-text" (more lines follow), the first digit 2 to 5 (RFC 5321
 *    4.2); every line of a reply has the same code. Anything else is a
 *    protocol error.
 *  - The enhanced status code (RFC 3463: class.subject.detail, class as
 *    the reply's first digit, RFC 2034) is taken from the start of the
 *    first line whenever it is there, advertised or not, and removed from
 *    the text of every line that repeats it.
 *  - Feed boundaries do not matter: one octet per feed reads the same
 *    replies as everything at once; several replies in one feed (pipelining)
 *    are taken in order.
 *
 * Which reply answers which command is kept by the state: with PIPELINING
 * the states MAIL, RCPT (one per recipient sent) and DATA follow each other
 * on the replies without writing; without it each reply writes the next
 * command.
 *
 * Per recipient the client keeps: refused locally (never sent), waiting for
 * its RCPT reply, accepted (waiting for the end-of-data reply) or done.
 * Whatever ends a transaction early (421, protocol error, lost connection,
 * timeout) gives its reply to every recipient not done yet.
 *
 * Out of memory: what this call wrote into `out` is taken back, and the
 * session ends as with a protocol error (TEMPFAIL, no QUIT).
 */
#include "proto/smtp/smtp_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base64.h"
#include "lib/log.h"

/* Octets of a reply line without its line ending. RFC 5321 4.5.3.1.5 says
 * 512 with CRLF; real servers send longer ones, so be generous. */
#define SMTP_CLIENT_LINE_MAX 4096

enum client_state {
    CS_GREETING, /* waiting for the 220 */
    CS_EHLO,
    CS_HELO,
    CS_STARTTLS,
    CS_WAIT_TLS, /* SMTP_CLIENT_REQ_STARTTLS */
    CS_AUTH,
    CS_READY, /* SMTP_CLIENT_REQ_READY */
    CS_MAIL,  /* waiting for the MAIL reply */
    CS_RCPT,  /* waiting for the reply to RCPT of recipient `cur` */
    CS_DATA,  /* waiting for the 354 */
    CS_DOT,   /* data and "." written, waiting for the final reply */
    CS_RSET,
    CS_RESULT, /* SMTP_CLIENT_REQ_RESULT */
    CS_QUIT,
    CS_CLOSED, /* SMTP_CLIENT_REQ_CLOSED */
};

/* clang-format off */
static const char *const client_state_names[] = {
    [CS_GREETING] = "greeting", [CS_EHLO] = "ehlo", [CS_HELO] = "helo",
    [CS_STARTTLS] = "starttls", [CS_WAIT_TLS] = "wait-tls", [CS_AUTH] = "auth",
    [CS_READY] = "ready", [CS_MAIL] = "mail", [CS_RCPT] = "rcpt", [CS_DATA] = "data",
    [CS_DOT] = "dot", [CS_RSET] = "rset", [CS_RESULT] = "result", [CS_QUIT] = "quit",
    [CS_CLOSED] = "closed",
};
/* clang-format on */

/* The EHLO keywords the client knows (others are ignored). */
enum {
    EXT_STARTTLS = 1u << 0,
    EXT_PIPELINING = 1u << 1,
    EXT_SIZE = 1u << 2,
    EXT_8BITMIME = 1u << 3,
    EXT_SMTPUTF8 = 1u << 4,
    EXT_ENHANCEDSTATUSCODES = 1u << 5,
    EXT_AUTH = 1u << 6,
    EXT_CHUNKING = 1u << 7,
    EXT_DSN = 1u << 8,
};

static const struct {
    const char *name;
    unsigned bit;
} client_exts[] = {
    {"STARTTLS", EXT_STARTTLS}, {"PIPELINING", EXT_PIPELINING},
    {"SIZE", EXT_SIZE},         {"8BITMIME", EXT_8BITMIME},
    {"SMTPUTF8", EXT_SMTPUTF8}, {"ENHANCEDSTATUSCODES", EXT_ENHANCEDSTATUSCODES},
    {"AUTH", EXT_AUTH},         {"CHUNKING", EXT_CHUNKING},
    {"DSN", EXT_DSN},
};

enum rcpt_state {
    RS_LOCAL,    /* refused before sending: never on the wire */
    RS_PENDING,  /* RCPT sent (or to be sent), no reply yet */
    RS_ACCEPTED, /* RCPT got 2xx: waits for the end-of-data reply */
    RS_DONE,     /* final reply known */
};

struct smtp_client {
    const struct smtp_client_config *cfg;
    char *remote_host;
    enum client_state state;
    struct buf *out; /* the caller's buffer, during one call */
    size_t out_mark; /* its unread size when the call began */
    bool oom;

    struct buf in;                       /* input not yet read */
    char line[SMTP_CLIENT_LINE_MAX + 1]; /* the current reply line */

    /* The reply being read. */
    bool rep_open;
    struct smtp_client_reply rep;
    size_t rep_textlen;

    /* What the server said in EHLO. */
    unsigned ext;
    uint64_t size_limit; /* SIZE n; 0: no limit */
    bool auth_plain;
    bool tls;
    bool starttls_refused; /* opportunistic STARTTLS got 4xx/5xx: go on in clear */

    /* Why the session ends. */
    bool has_error;
    struct smtp_client_reply error;
    bool close_after; /* CLOSED after the RESULT is taken */

    /* The message in progress. */
    struct smtp_client_msg msg;
    struct smtp_client_reply *rcpt; /* msg.nrcpts replies */
    enum rcpt_state *rst;
    size_t rcpt_cap;
    size_t cur;       /* the recipient whose RCPT reply comes next */
    bool pipelined;   /* MAIL, RCPTs and DATA went out together */
    bool mail_ok;     /* MAIL got 2xx: a transaction is open on the server */
    size_t naccepted; /* recipients with RCPT 2xx */
    bool dot_empty;   /* a lone "." answered a 354 with no recipient */
    struct smtp_client_result result;
};

/* ------------------------------------------------------------------------
 * Small helpers
 */

static void client_set_state(struct smtp_client *c, enum client_state st)
{
    if (c->state == st || c->state == CS_CLOSED)
        return;
    log_debug("smtp-client", "event=state host=%s from=%s to=%s", c->remote_host,
              client_state_names[c->state], client_state_names[st]);
    c->state = st;
}

/* Write one command line; fmt has no CRLF. */
__attribute__((format(printf, 2, 3))) static void client_cmd(struct smtp_client *c, const char *fmt,
                                                             ...)
{
    if (c->oom || !c->out) {
        c->oom = true;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int r = buf_vprintf(c->out, fmt, ap);
    va_end(ap);
    if (r < 0 || buf_append(c->out, "\r\n", 2) < 0)
        c->oom = true;
}

static void client_put(struct smtp_client *c, const void *data, size_t n)
{
    if (!c->oom && (!c->out || buf_append(c->out, data, n) < 0))
        c->oom = true;
}

static enum smtp_client_outcome outcome_of(int code)
{
    if (code >= 500)
        return SMTP_CLIENT_PERMFAIL;
    if (code >= 400)
        return SMTP_CLIENT_TEMPFAIL;
    return SMTP_CLIENT_OK;
}

/* Append n octets to a reply's text, printable ASCII only. */
static void text_append(struct smtp_client_reply *r, size_t *len, const char *s, size_t n)
{
    size_t max = sizeof(r->text) - 1;
    for (size_t i = 0; i < n && *len < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\t')
            ch = ' ';
        else if (ch < 0x20 || ch >= 0x7f)
            ch = '?';
        r->text[(*len)++] = (char)ch;
    }
    r->text[*len] = '\0';
}

/* A reply made here: a lost connection, a local refusal, a protocol error. */
__attribute__((format(printf, 5, 6))) static void reply_local(struct smtp_client_reply *r,
                                                              enum smtp_client_outcome outcome,
                                                              int code, const char *status,
                                                              const char *fmt, ...)
{
    memset(r, 0, sizeof(*r));
    r->outcome = outcome;
    r->code = code;
    snprintf(r->status, sizeof(r->status), "%s", status);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
    size_t len = 0;
    char copy[sizeof(r->text)];
    memcpy(copy, r->text, sizeof(copy));
    text_append(r, &len, copy, strlen(copy));
}

static bool client_in_tx(const struct smtp_client *c)
{
    return c->state >= CS_MAIL && c->state <= CS_RSET;
}

/* ------------------------------------------------------------------------
 * Ends of a transaction and of the session
 */

/* Every recipient without a final reply gets r. */
static void tx_finalize(struct smtp_client *c, const struct smtp_client_reply *r)
{
    for (size_t i = 0; i < c->msg.nrcpts; i++) {
        if (c->rst[i] == RS_PENDING || c->rst[i] == RS_ACCEPTED) {
            c->rcpt[i] = *r;
            c->rst[i] = RS_DONE;
        }
    }
}

/* The transaction is over: hand its RESULT over. */
static void tx_end(struct smtp_client *c)
{
    c->result = (struct smtp_client_result){
        .rcpt = c->rcpt,
        .nrcpts = c->msg.nrcpts,
        .remote_host = c->remote_host,
        .tls = c->tls,
    };
    client_set_state(c, CS_RESULT);
}

/* The session cannot go on: err is why. What is in progress fails with it;
 * quit: the server still listens, say goodbye. */
static void client_abort(struct smtp_client *c, const struct smtp_client_reply *err, bool quit)
{
    if (c->state == CS_CLOSED)
        return;
    if (!c->has_error) {
        c->error = *err;
        c->has_error = true;
    }
    log_info("smtp-client", "event=session_end host=%s state=%s code=%d status=%s", c->remote_host,
             client_state_names[c->state], err->code, err->status[0] ? err->status : "-");
    if (quit)
        client_cmd(c, "QUIT");
    buf_reset(&c->in);
    c->rep_open = false;
    if (client_in_tx(c)) {
        tx_finalize(c, err);
        tx_end(c);
        c->close_after = true;
    } else if (c->state == CS_RESULT) {
        c->close_after = true;
    } else {
        client_set_state(c, CS_CLOSED);
    }
}

__attribute__((format(printf, 2, 3))) static void client_protocol_error(struct smtp_client *c,
                                                                        const char *fmt, ...)
{
    if (c->state == CS_QUIT) { /* whatever comes after QUIT ends it cleanly */
        client_set_state(c, CS_CLOSED);
        return;
    }
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    struct smtp_client_reply err;
    reply_local(&err, SMTP_CLIENT_TEMPFAIL, 0, "", "protocol error: %s", what);
    client_abort(c, &err, false);
}

/* A reply that ends the session: outcome by its code, at least TEMPFAIL. */
static void client_fail_reply(struct smtp_client *c, const struct smtp_client_reply *r, bool quit)
{
    struct smtp_client_reply err = *r;
    if (err.outcome == SMTP_CLIENT_OK)
        err.outcome = SMTP_CLIENT_TEMPFAIL;
    client_abort(c, &err, quit);
}

/* ------------------------------------------------------------------------
 * The session up to READY
 */

static void client_send_ehlo(struct smtp_client *c)
{
    const char *name = c->cfg->helo_name && *c->cfg->helo_name ? c->cfg->helo_name : "localhost";
    c->ext = 0;
    c->size_limit = 0;
    c->auth_plain = false;
    client_cmd(c, "EHLO %s", name);
    client_set_state(c, CS_EHLO);
}

static void client_send_auth(struct smtp_client *c)
{
    /* RFC 4616: [authzid] NUL authcid NUL passwd; RFC 4954 4: initial response. */
    const char *user = c->cfg->auth_user;
    const char *pass = c->cfg->auth_password ? c->cfg->auth_password : "";
    size_t ulen = strlen(user), plen = strlen(pass);
    struct buf cred = BUF_INIT;
    if (buf_reserve(&cred, ulen + plen + 2) < 0) {
        c->oom = true;
        return;
    }
    buf_append(&cred, "", 1);
    buf_append(&cred, user, ulen);
    buf_append(&cred, "", 1);
    buf_append(&cred, pass, plen);
    client_put(c, "AUTH PLAIN ", 11);
    if (!c->oom && base64_encode(c->out, buf_ptr(&cred), buf_size(&cred)) < 0)
        c->oom = true;
    client_put(c, "\r\n", 2);
    explicit_bzero(cred.data, cred.cap);
    buf_free(&cred);
    client_set_state(c, CS_AUTH);
}

/* HELO/EHLO done (or STARTTLS refused): the next step up to READY. */
static void client_after_hello(struct smtp_client *c)
{
    const struct smtp_client_config *cfg = c->cfg;
    struct smtp_client_reply err;
    if (!c->tls && cfg->starttls != SMTP_CLIENT_TLS_NEVER && (c->ext & EXT_STARTTLS) &&
        !c->starttls_refused) {
        client_cmd(c, "STARTTLS");
        client_set_state(c, CS_STARTTLS);
        return;
    }
    if (!c->tls && cfg->starttls == SMTP_CLIENT_TLS_REQUIRE) {
        reply_local(&err, SMTP_CLIENT_TEMPFAIL, 0, "", "TLS required but %s",
                    c->starttls_refused ? "STARTTLS was refused"
                                        : "the server does not offer STARTTLS");
        client_abort(c, &err, true);
        return;
    }
    if (cfg->auth_user) {
        if (!c->tls) {
            reply_local(&err, SMTP_CLIENT_TEMPFAIL, 0, "",
                        "no TLS: authentication is not sent in clear");
            client_abort(c, &err, true);
            return;
        }
        if (!c->auth_plain) {
            reply_local(&err, SMTP_CLIENT_PERMFAIL, 0, "", "the server does not offer AUTH PLAIN");
            client_abort(c, &err, true);
            return;
        }
        client_send_auth(c);
        return;
    }
    client_set_state(c, CS_READY);
}

static bool word_eq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* One EHLO line after the first: "KEYWORD [params]" (RFC 5321 4.1.1.1). */
static void ehlo_keyword(struct smtp_client *c, const char *s, size_t n)
{
    while (n > 0 && *s == ' ')
        s++, n--;
    size_t kw = 0;
    while (kw < n && s[kw] != ' ' && s[kw] != '=')
        kw++;
    bool old_auth = kw < n && s[kw] == '=';
    if (old_auth && !word_eq(s, kw, "AUTH")) /* "AUTH=..." is the only '=' form */
        return;
    for (size_t i = 0; i < sizeof(client_exts) / sizeof(client_exts[0]); i++) {
        if (word_eq(s, kw, client_exts[i].name)) {
            c->ext |= client_exts[i].bit;
            break;
        }
    }
    const char *p = s + kw + (kw < n);
    const char *end = s + n;
    if (word_eq(s, kw, "SIZE")) { /* RFC 1870: SIZE [n], 0 or none: no limit */
        uint64_t v = 0;
        while (p < end && *p == ' ')
            p++;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(*p - '0');
        c->size_limit = v;
    } else if (word_eq(s, kw, "AUTH")) { /* RFC 4954: mechanisms */
        while (p < end) {
            while (p < end && *p == ' ')
                p++;
            const char *w = p;
            while (p < end && *p != ' ')
                p++;
            if (word_eq(w, (size_t)(p - w), "PLAIN"))
                c->auth_plain = true;
        }
    }
}

static void on_greeting(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (r->code == 220)
        client_send_ehlo(c);
    else /* RFC 5321 3.1: after a 554 greeting the client sends QUIT */
        client_fail_reply(c, r, true);
}

static void on_ehlo(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (r->code / 100 == 2) {
        client_after_hello(c);
    } else if (r->code / 100 == 5) { /* RFC 5321 3.2: an old server, try HELO */
        c->ext = 0;
        c->size_limit = 0;
        c->auth_plain = false;
        client_cmd(c, "HELO %s",
                   c->cfg->helo_name && *c->cfg->helo_name ? c->cfg->helo_name : "localhost");
        client_set_state(c, CS_HELO);
    } else if (r->code / 100 == 4) {
        client_fail_reply(c, r, true);
    } else {
        client_protocol_error(c, "%d to EHLO", r->code);
    }
}

static void on_helo(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (r->code / 100 == 2)
        client_after_hello(c);
    else if (r->code / 100 == 3)
        client_protocol_error(c, "%d to HELO", r->code);
    else
        client_fail_reply(c, r, true);
}

static void on_starttls(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (r->code / 100 == 2) {
        /* RFC 3207 5: nothing the server sent before the handshake counts. */
        buf_reset(&c->in);
        client_set_state(c, CS_WAIT_TLS);
    } else if (r->code / 100 == 3) {
        client_protocol_error(c, "%d to STARTTLS", r->code);
    } else if (c->cfg->starttls == SMTP_CLIENT_TLS_REQUIRE) {
        struct smtp_client_reply err = *r;
        err.outcome = SMTP_CLIENT_TEMPFAIL;
        client_abort(c, &err, true);
    } else {
        log_info("smtp-client", "event=starttls_refused host=%s code=%d", c->remote_host, r->code);
        c->starttls_refused = true;
        client_after_hello(c);
    }
}

static void on_auth(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (r->code / 100 == 2)
        client_set_state(c, CS_READY);
    else if (r->code / 100 == 3) /* a challenge after our initial response */
        client_protocol_error(c, "%d to AUTH PLAIN", r->code);
    else
        client_fail_reply(c, r, true);
}

/* ------------------------------------------------------------------------
 * A message
 */

/* The next recipient on the wire after index i (SIZE_MAX: the first);
 * msg.nrcpts when none is left. */
static size_t tx_next_rcpt(const struct smtp_client *c, size_t i)
{
    for (i = i == SIZE_MAX ? 0 : i + 1; i < c->msg.nrcpts; i++)
        if (c->rst[i] != RS_LOCAL)
            break;
    return i;
}

static void tx_send_rcpt(struct smtp_client *c, size_t i)
{
    client_cmd(c, "RCPT TO:<%s>", c->msg.rcpts[i] ? c->msg.rcpts[i] : "");
}

/* The message data: CRLF line endings, dot-stuffed, then ".". */
static void tx_send_data(struct smtp_client *c)
{
    const uint8_t *d = c->msg.data;
    size_t n = d ? c->msg.len : 0;
    if (c->oom || !c->out || buf_reserve(c->out, n + n / 32 + 8) < 0) {
        c->oom = true;
        return;
    }
    size_t start = 0;
    bool bol = true; /* at the beginning of a line */
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = d[i];
        if (bol && ch == '.') { /* RFC 5321 4.5.2 */
            client_put(c, d + start, i - start);
            client_put(c, ".", 1);
            start = i;
        }
        bol = false;
        if (ch == '\r' && i + 1 < n && d[i + 1] == '\n') {
            i++;
            bol = true;
        } else if (ch == '\r' || ch == '\n') { /* bare CR or LF: RFC 5321 2.3.8 */
            client_put(c, d + start, i - start);
            client_put(c, "\r\n", 2);
            start = i + 1;
            bol = true;
        }
    }
    client_put(c, d + start, n - start);
    if (!bol)
        client_put(c, "\r\n", 2);
    client_put(c, ".\r\n", 3);
}

static void tx_send_rset(struct smtp_client *c)
{
    client_cmd(c, "RSET");
    client_set_state(c, CS_RSET);
}

/* All RCPT replies are in (without PIPELINING): DATA, RSET or the end. */
static void tx_after_rcpts(struct smtp_client *c)
{
    if (c->pipelined) {
        client_set_state(c, CS_DATA);
    } else if (c->mail_ok && c->naccepted > 0) {
        client_cmd(c, "DATA");
        client_set_state(c, CS_DATA);
    } else if (c->mail_ok) {
        tx_send_rset(c);
    } else {
        tx_end(c);
    }
}

static void on_mail(struct smtp_client *c, const struct smtp_client_reply *r)
{
    int cls = r->code / 100;
    if (cls == 3) {
        client_protocol_error(c, "%d to MAIL", r->code);
        return;
    }
    c->mail_ok = cls == 2;
    if (!c->mail_ok) /* every recipient gets the MAIL reply */
        tx_finalize(c, r);
    c->cur = tx_next_rcpt(c, SIZE_MAX);
    if (c->pipelined) {
        client_set_state(c, CS_RCPT); /* their replies follow anyway */
    } else if (c->mail_ok) {
        tx_send_rcpt(c, c->cur);
        client_set_state(c, CS_RCPT);
    } else {
        tx_end(c); /* no transaction is open: no RSET */
    }
}

static void on_rcpt(struct smtp_client *c, const struct smtp_client_reply *r)
{
    int cls = r->code / 100;
    if (c->mail_ok && c->rst[c->cur] == RS_PENDING) {
        if (cls == 3) {
            client_protocol_error(c, "%d to RCPT", r->code);
            return;
        }
        if (cls == 2) {
            c->rst[c->cur] = RS_ACCEPTED;
            c->naccepted++;
        } else {
            c->rcpt[c->cur] = *r;
            c->rst[c->cur] = RS_DONE;
        }
    } /* else pipelined after a refused MAIL: the reply does not matter */
    c->cur = tx_next_rcpt(c, c->cur);
    if (c->cur < c->msg.nrcpts) {
        if (!c->pipelined)
            tx_send_rcpt(c, c->cur);
        return;
    }
    tx_after_rcpts(c);
}

static void on_data(struct smtp_client *c, const struct smtp_client_reply *r)
{
    int cls = r->code / 100;
    if (cls == 3) {
        c->dot_empty = !(c->mail_ok && c->naccepted > 0);
        if (c->dot_empty) /* RFC 2920 3.1: accepted without recipients: a single dot */
            client_put(c, ".\r\n", 3);
        else
            tx_send_data(c);
        client_set_state(c, CS_DOT);
    } else if (cls == 2) {
        client_protocol_error(c, "%d to DATA", r->code);
    } else {
        for (size_t i = 0; i < c->msg.nrcpts; i++) {
            if (c->rst[i] == RS_ACCEPTED) {
                c->rcpt[i] = *r;
                c->rst[i] = RS_DONE;
            }
        }
        if (c->mail_ok) /* the MAIL transaction is still open there */
            tx_send_rset(c);
        else
            tx_end(c);
    }
}

static void on_dot(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (!c->dot_empty) {
        if (r->code / 100 == 3) {
            client_protocol_error(c, "%d to end of data", r->code);
            return;
        }
        tx_finalize(c, r); /* only accepted ones are left */
    }
    tx_end(c);
}

static void on_rset(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (r->code / 100 == 2)
        tx_end(c);
    else /* the state of the server is unknown: give up after this message */
        client_fail_reply(c, r, true);
}

/* ------------------------------------------------------------------------
 * Reading replies
 */

/* A complete reply came. */
static void client_on_reply(struct smtp_client *c)
{
    struct smtp_client_reply r = c->rep;
    c->rep_open = false;
    log_debug("smtp-client", "event=reply host=%s state=%s code=%d", c->remote_host,
              client_state_names[c->state], r.code);
    if (c->state == CS_QUIT) {
        client_set_state(c, CS_CLOSED);
        return;
    }
    if (r.code == 421) { /* RFC 5321 3.8: the server is closing */
        client_abort(c, &r, false);
        return;
    }
    switch (c->state) {
    case CS_GREETING:
        on_greeting(c, &r);
        break;
    case CS_EHLO:
        on_ehlo(c, &r);
        break;
    case CS_HELO:
        on_helo(c, &r);
        break;
    case CS_STARTTLS:
        on_starttls(c, &r);
        break;
    case CS_AUTH:
        on_auth(c, &r);
        break;
    case CS_MAIL:
        on_mail(c, &r);
        break;
    case CS_RCPT:
        on_rcpt(c, &r);
        break;
    case CS_DATA:
        on_data(c, &r);
        break;
    case CS_DOT:
        on_dot(c, &r);
        break;
    case CS_RSET:
        on_rset(c, &r);
        break;
    default: /* READY, RESULT: nothing was asked */
        client_protocol_error(c, "unexpected reply %d", r.code);
        break;
    }
}

/* RFC 3463: "class.subject.detail" at the start of s, followed by a space
 * or the end; its length, 0 when there is none. */
static size_t status_len(const char *s, size_t n)
{
    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && d < 4)
            i++, d++;
        if (d == 0 || d > 3)
            return 0;
        if (part == 0) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
    }
    return i == n || s[i] == ' ' ? i : 0;
}

/* One reply line (without its line ending). */
static void client_on_line(struct smtp_client *c, const char *line, size_t n)
{
    if (c->state == CS_QUIT) { /* anything ends it */
        client_set_state(c, CS_CLOSED);
        return;
    }
    if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
        line[2] < '0' || line[2] > '9' || (n > 3 && line[3] != ' ' && line[3] != '-')) {
        client_protocol_error(c, "malformed reply line");
        return;
    }
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    bool last = n == 3 || line[3] == ' ';
    const char *text = n > 3 ? line + 4 : line + n;
    size_t tlen = n > 3 ? n - 4 : 0;
    bool first = !c->rep_open;
    if (first) {
        memset(&c->rep, 0, sizeof(c->rep));
        c->rep.code = code;
        c->rep.outcome = outcome_of(code);
        c->rep_textlen = 0;
        c->rep_open = true;
        size_t sl = status_len(text, tlen);
        if (sl > 0 && text[0] == line[0]) /* RFC 3463 2: class as the reply's */
            memcpy(c->rep.status, text, sl);
    } else if (code != c->rep.code) {
        client_protocol_error(c, "mixed codes %d and %d in one reply", c->rep.code, code);
        return;
    } else if (c->state == CS_EHLO && code / 100 == 2) {
        ehlo_keyword(c, text, tlen);
    }
    size_t sl = strlen(c->rep.status);
    if (sl > 0 && status_len(text, tlen) == sl && memcmp(text, c->rep.status, sl) == 0) {
        text += sl;
        tlen -= sl;
        while (tlen > 0 && *text == ' ')
            text++, tlen--;
    }
    if (tlen > 0) {
        if (c->rep_textlen > 0)
            text_append(&c->rep, &c->rep_textlen, " ", 1);
        text_append(&c->rep, &c->rep_textlen, text, tlen);
    }
    if (last)
        client_on_reply(c);
}

/* Whether buffered input is read in this state. */
static bool client_reads(const struct smtp_client *c)
{
    switch (c->state) {
    case CS_WAIT_TLS:
    case CS_CLOSED:
        return false;
    case CS_RESULT:
        return !c->close_after;
    default:
        return true;
    }
}

/* Read buffered replies until input runs out or the state stops reading. */
static void client_run(struct smtp_client *c)
{
    while (!c->oom && client_reads(c)) {
        size_t len = buf_line_len(&c->in);
        if (len == 0) {
            if (buf_size(&c->in) > SMTP_CLIENT_LINE_MAX + 1)
                client_protocol_error(c, "reply line too long");
            return;
        }
        const uint8_t *p = buf_ptr(&c->in);
        size_t n = len - 1;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n > SMTP_CLIENT_LINE_MAX) {
            client_protocol_error(c, "reply line too long");
            return;
        }
        memcpy(c->line, p, n);
        c->line[n] = '\0';
        buf_consume(&c->in, len);
        client_on_line(c, c->line, n);
    }
    if (!client_reads(c) && c->state != CS_RESULT)
        buf_reset(&c->in);
}

/* ------------------------------------------------------------------------
 * Public API
 */

static void client_begin(struct smtp_client *c, struct buf *out)
{
    c->out = out;
    c->out_mark = out ? buf_size(out) : 0;
    c->oom = false;
}

/* End of every public call: handle out-of-memory, tell the caller. */
static enum smtp_client_status client_finish(struct smtp_client *c)
{
    if (c->oom) {
        if (c->out)
            c->out->len = c->out->off + c->out_mark; /* take back this call's output */
        c->oom = false;
        log_error("smtp-client", "event=out_of_memory host=%s state=%s", c->remote_host,
                  client_state_names[c->state]);
        struct smtp_client_reply err;
        reply_local(&err, SMTP_CLIENT_TEMPFAIL, 0, "", "out of memory");
        client_abort(c, &err, false);
    }
    c->out = NULL;
    return c->state == CS_CLOSED ? SMTP_CLIENT_CLOSE : SMTP_CLIENT_CONTINUE;
}

static enum smtp_client_status client_status(const struct smtp_client *c)
{
    return c->state == CS_CLOSED ? SMTP_CLIENT_CLOSE : SMTP_CLIENT_CONTINUE;
}

struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg, const char *remote_host)
{
    struct smtp_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->cfg = cfg;
    c->remote_host = strdup(remote_host ? remote_host : "");
    if (!c->remote_host) {
        free(c);
        return NULL;
    }
    c->tls = cfg->tls_active;
    c->state = CS_GREETING;
    return c;
}

void smtp_client_free(struct smtp_client **cp)
{
    struct smtp_client *c = cp ? *cp : NULL;
    if (!c)
        return;
    buf_free(&c->in);
    free(c->rcpt);
    free(c->rst);
    free(c->remote_host);
    free(c);
    *cp = NULL;
}

enum smtp_client_status smtp_client_feed(struct smtp_client *c, const void *data, size_t len,
                                         struct buf *out)
{
    if (!client_reads(c)) /* WAIT_TLS: RFC 3207 5, dropped */
        return client_status(c);
    client_begin(c, out);
    if (buf_append(&c->in, data, len) < 0)
        c->oom = true;
    else
        client_run(c);
    return client_finish(c);
}

enum smtp_client_request_type smtp_client_request(const struct smtp_client *c)
{
    switch (c->state) {
    case CS_WAIT_TLS:
        return SMTP_CLIENT_REQ_STARTTLS;
    case CS_READY:
        return SMTP_CLIENT_REQ_READY;
    case CS_RESULT:
        return SMTP_CLIENT_REQ_RESULT;
    case CS_CLOSED:
        return SMTP_CLIENT_REQ_CLOSED;
    default:
        return SMTP_CLIENT_REQ_NONE;
    }
}

enum smtp_client_status smtp_client_tls_done(struct smtp_client *c, bool ok, struct buf *out)
{
    if (c->state != CS_WAIT_TLS)
        return client_status(c);
    client_begin(c, out);
    buf_reset(&c->in);
    if (!ok) {
        struct smtp_client_reply err;
        reply_local(&err, SMTP_CLIENT_TEMPFAIL, 0, "", "TLS handshake failed");
        client_abort(c, &err, false);
        return client_finish(c);
    }
    /* RFC 3207 4.2: forget what was learnt in clear, EHLO again. */
    c->tls = true;
    client_send_ehlo(c);
    return client_finish(c);
}

/* Refuse the message before any command when the server cannot take it. */
static bool tx_refuse_locally(struct smtp_client *c, struct smtp_client_reply *r)
{
    const struct smtp_client_msg *m = &c->msg;
    if (m->body_8bit && !(c->ext & EXT_8BITMIME)) { /* RFC 6152 */
        reply_local(r, SMTP_CLIENT_PERMFAIL, 554, "5.6.3",
                    "remote server does not support 8BITMIME");
        return true;
    }
    if (m->smtputf8 && !(c->ext & EXT_SMTPUTF8)) { /* RFC 6531 3.2 */
        reply_local(r, SMTP_CLIENT_PERMFAIL, 554, "5.6.7",
                    "remote server does not support SMTPUTF8");
        return true;
    }
    if ((c->ext & EXT_SIZE) && c->size_limit > 0 && (uint64_t)m->len > c->size_limit) {
        reply_local(r, SMTP_CLIENT_PERMFAIL, 552, "5.3.4",
                    "message size %zu exceeds the remote server's limit of %llu", m->len,
                    (unsigned long long)c->size_limit);
        return true;
    }
    const char *from = m->mail_from ? m->mail_from : "";
    for (const char *p = from; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            reply_local(r, SMTP_CLIENT_PERMFAIL, 553, "5.1.7",
                        "sender address has a control character");
            return true;
        }
    }
    return false;
}

static bool addr_ok(const char *a)
{
    if (!a)
        return false;
    for (; *a; a++)
        if ((unsigned char)*a < 0x20 || *a == 0x7f)
            return false;
    return true;
}

/* Write MAIL (and with PIPELINING every RCPT and DATA). */
static void tx_start(struct smtp_client *c)
{
    const struct smtp_client_msg *m = &c->msg;
    char size[32] = "";
    if (c->ext & EXT_SIZE) /* RFC 1870 6 */
        snprintf(size, sizeof(size), " SIZE=%zu", m->len);
    client_cmd(c, "MAIL FROM:<%s>%s%s%s", m->mail_from ? m->mail_from : "", size,
               m->body_8bit && (c->ext & EXT_8BITMIME) ? " BODY=8BITMIME" : "", /* RFC 6152 2 */
               m->smtputf8 ? " SMTPUTF8" : "");                                 /* RFC 6531 3.4 */
    c->cur = tx_next_rcpt(c, SIZE_MAX);
    if (c->pipelined) { /* RFC 2920 3.1: DATA last in the group */
        for (size_t i = c->cur; i < m->nrcpts; i = tx_next_rcpt(c, i))
            tx_send_rcpt(c, i);
        client_cmd(c, "DATA");
    }
    client_set_state(c, CS_MAIL);
}

enum smtp_client_status smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m,
                                         struct buf *out)
{
    if (c->state != CS_READY || !m)
        return client_status(c);
    client_begin(c, out);
    size_t n = m->nrcpts;
    if (n > c->rcpt_cap) {
        struct smtp_client_reply *rr = realloc(c->rcpt, n * sizeof(*rr));
        if (rr)
            c->rcpt = rr;
        enum rcpt_state *rs = realloc(c->rst, n * sizeof(*rs));
        if (rs)
            c->rst = rs;
        if (!rr || !rs) {
            c->oom = true;
            return client_finish(c);
        }
        c->rcpt_cap = n;
    }
    c->msg = *m;
    if (!m->rcpts)
        c->msg.nrcpts = n = 0;
    if (n > 0)
        memset(c->rcpt, 0, n * sizeof(*c->rcpt));
    c->mail_ok = false;
    c->naccepted = 0;
    c->dot_empty = false;
    c->pipelined = (c->ext & EXT_PIPELINING) != 0;
    size_t nwire = 0;
    struct smtp_client_reply bad;
    reply_local(&bad, SMTP_CLIENT_PERMFAIL, 553, "5.1.3",
                "recipient address has a control character");
    for (size_t i = 0; i < n; i++) {
        c->rst[i] = addr_ok(m->rcpts[i]) ? RS_PENDING : RS_LOCAL;
        if (c->rst[i] == RS_LOCAL)
            c->rcpt[i] = bad;
        else
            nwire++;
    }
    struct smtp_client_reply r;
    if (tx_refuse_locally(c, &r)) {
        for (size_t i = 0; i < n; i++) {
            c->rcpt[i] = r;
            c->rst[i] = RS_LOCAL;
        }
        nwire = 0;
    }
    log_debug("smtp-client", "event=send host=%s rcpts=%zu size=%zu pipelining=%d", c->remote_host,
              n, m->len, (int)c->pipelined);
    if (nwire == 0)
        tx_end(c);
    else
        tx_start(c);
    return client_finish(c);
}

enum smtp_client_status smtp_client_quit(struct smtp_client *c, struct buf *out)
{
    if (c->state != CS_READY)
        return client_status(c);
    client_begin(c, out);
    client_cmd(c, "QUIT");
    client_set_state(c, CS_QUIT);
    client_run(c);
    return client_finish(c);
}

const struct smtp_client_result *smtp_client_result(const struct smtp_client *c)
{
    return c->state == CS_RESULT ? &c->result : NULL;
}

enum smtp_client_status smtp_client_result_done(struct smtp_client *c, struct buf *out)
{
    if (c->state != CS_RESULT)
        return client_status(c);
    client_begin(c, out);
    if (c->close_after) {
        client_set_state(c, CS_CLOSED);
        buf_reset(&c->in);
    } else {
        client_set_state(c, CS_READY);
        client_run(c);
    }
    return client_finish(c);
}

static enum smtp_client_status client_gone(struct smtp_client *c, struct buf *out, const char *why)
{
    if (c->state == CS_CLOSED)
        return SMTP_CLIENT_CLOSE;
    client_begin(c, out);
    if (c->state == CS_QUIT) {
        client_set_state(c, CS_CLOSED);
    } else {
        struct smtp_client_reply err;
        reply_local(&err, SMTP_CLIENT_TEMPFAIL, 0, "", "%s in state %s", why,
                    client_state_names[c->state]);
        client_abort(c, &err, false);
    }
    buf_reset(&c->in);
    return client_finish(c);
}

enum smtp_client_status smtp_client_conn_lost(struct smtp_client *c, struct buf *out)
{
    return client_gone(c, out, "connection lost");
}

enum smtp_client_status smtp_client_timed_out(struct smtp_client *c, struct buf *out)
{
    return client_gone(c, out, "timeout waiting for the server");
}

unsigned smtp_client_timeout(const struct smtp_client *c)
{
    /* RFC 5321 4.5.3.2 */
    switch (c->state) {
    case CS_GREETING: /* 4.5.3.2.1 */
        return 300;
    case CS_MAIL: /* 4.5.3.2.2 */
        return 300;
    case CS_RCPT: /* 4.5.3.2.3 */
        return 300;
    case CS_DATA: /* 4.5.3.2.4 */
        return 120;
    case CS_DOT: /* 4.5.3.2.6 */
        return 600;
    default:
        return 300;
    }
}

const struct smtp_client_reply *smtp_client_error(const struct smtp_client *c)
{
    return c->has_error ? &c->error : NULL;
}

bool smtp_client_has_ext(const struct smtp_client *c, const char *keyword)
{
    if (!keyword)
        return false;
    for (size_t i = 0; i < sizeof(client_exts) / sizeof(client_exts[0]); i++)
        if (strcasecmp(keyword, client_exts[i].name) == 0)
            return (c->ext & client_exts[i].bit) != 0;
    return false;
}

bool smtp_client_tls_active(const struct smtp_client *c)
{
    return c->tls;
}
