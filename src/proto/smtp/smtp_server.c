/* smtp_server — the SMTP server session (RFC 5321), see smtp_server.h.
 *
 * How input is read:
 *  - Command lines end at LF; a CR just before it is dropped. RFC 5321
 *    2.3.8 asks for CRLF; like Postfix we also take a bare LF after a
 *    command (only the end of DATA is sensitive to smuggling, and that is
 *    CRLF "." CRLF only). A command line with a NUL or another control
 *    octet gets 500 5.5.2 and the session goes on.
 *  - A command line longer than max_command_line octets including CRLF
 *    (RFC 5321 4.5.3.1.4) gets "500 5.5.2 Line too long" as soon as that
 *    many octets are buffered without an LF; the rest of that line, up to
 *    its LF, is dropped, and the session goes on.
 *  - DATA and BDAT message bytes go through smtp_body (smtp_body.h):
 *    bare LF and bare CR are stored as CRLF, never end a line and never
 *    end the data; the end of DATA is CRLF "." CRLF only. Line and size
 *    errors are recorded and reported at the end of the data, which is
 *    always read to its end (as OpenSMTPD does).
 *  - Pipelining (RFC 2920): commands are taken from the buffered input one
 *    at a time, in order, whatever the feed boundaries; one byte per feed
 *    gives the same replies as everything in one feed.
 *  - While a RCPT or DELIVER request is pending, feed() only buffers. More
 *    than SMTP_PENDING_SLACK + max_message_size octets buffered that way is
 *    abuse (the edge should stop reading while it waits): 421 4.7.0 and
 *    close. While STARTTLS is pending, input is dropped: it was sent in the
 *    clear before the handshake (RFC 3207 5, CVE-2011-0411).
 *
 * BDAT (RFC 3030):
 *  - When the chunk size is known the chunk is always consumed, also when
 *    the command is refused: 503 5.5.1 outside a transaction with
 *    recipients, 501 5.5.4 for a bad token after the size (which also ends
 *    the transaction: RFC 3030 2 has the client give up after an error).
 *  - A size that is not a number, or does not fit in 64 bits, leaves no way
 *    to find the next command in the stream: "501 5.5.4" is sent, then
 *    "421 4.5.0", and the session closes.
 *  - Line and size limits hold across chunks; errors are reported at
 *    BDAT LAST (552 5.3.4 / 500 5.5.2), earlier chunks get their 250.
 *
 * Errors: each 4xx/5xx reply the client caused counts; when the count
 * reaches max_errors, "421 4.7.0" follows at once and the session closes.
 * Not counted: 452 for too many recipients (the client is told to come
 * back, RFC 5321 4.5.3.1.10) and the caller's temporary or permanent
 * failures (lookup, delivery).
 *
 * Out of memory: "421 4.3.0" (as far as it can still be written) and close.
 *
 * Limits left 0 in the configuration get defaults: command line 512, text
 * line 1000 (RFC 5321 4.5.3.1), message 25 MiB, 100 recipients (RFC 5321
 * 4.5.3.1.8), 20 errors.
 *
 * Submission (cfg->submission; RFC 6409, AUTH from RFC 4954):
 *  - An AUTH command line and a SASL response line may be up to
 *    SMTP_SASL_LINE octets including CRLF (or max_command_line when that is
 *    more; RFC 4954 4). A line is known to be an AUTH command by its first
 *    five octets ("AUTH " in any case), so the limit does not depend on how
 *    the input was cut. A SASL line that is too long ends the exchange
 *    with 500 5.5.2.
 *  - Command lines are wiped from the input buffer and the line buffer once
 *    processed, and the decoded SASL messages once answered (explicit_bzero):
 *    a password is in memory only while it is needed. Nothing the client
 *    sends during AUTH is logged.
 *  - 530, 535, 538, 504, 501 and 553 replies count as errors; 454 (the
 *    caller's temporary failure) does not.
 */
#include "proto/smtp/smtp_server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base64.h"
#include "lib/log.h"
#include "proto/smtp/smtp_addr.h"
#include "proto/smtp/smtp_body.h"
#include "proto/smtp/submission.h"

#define SMTP_DEFAULT_COMMAND_LINE 512
#define SMTP_DEFAULT_TEXT_LINE 1000
#define SMTP_DEFAULT_MESSAGE_SIZE ((size_t)25 * 1024 * 1024)
#define SMTP_DEFAULT_RECIPIENTS 100
#define SMTP_DEFAULT_ERRORS 20
#define SMTP_PENDING_SLACK ((size_t)1024 * 1024)
#define SMTP_REPLY_MAX 1024
#define SMTP_SASL_LINE 12288 /* RFC 4954 4: AUTH and SASL response lines */

enum smtp_state {
    SMTP_STATE_INIT,         /* created, greeting not written yet */
    SMTP_STATE_GREETED,      /* waiting for HELO/EHLO */
    SMTP_STATE_READY,        /* HELO/EHLO done, no transaction */
    SMTP_STATE_MAIL,         /* MAIL accepted, no recipient yet */
    SMTP_STATE_RCPT,         /* at least one recipient accepted */
    SMTP_STATE_DATA,         /* reading the DATA message */
    SMTP_STATE_BDAT,         /* reading (or skipping) a BDAT chunk */
    SMTP_STATE_CHUNKING,     /* between BDAT chunks */
    SMTP_STATE_WAIT_RCPT,    /* SMTP_REQ_RCPT pending */
    SMTP_STATE_WAIT_DELIVER, /* SMTP_REQ_DELIVER pending */
    SMTP_STATE_WAIT_TLS,     /* SMTP_REQ_STARTTLS pending */
    SMTP_STATE_AUTH,         /* a 334 was sent: the next line is a SASL response */
    SMTP_STATE_WAIT_AUTH,    /* SMTP_REQ_AUTH pending */
    SMTP_STATE_WAIT_MAIL,    /* SMTP_REQ_MAIL pending */
    SMTP_STATE_CLOSED,       /* QUIT or 421 written; nothing more is read */
};

/* clang-format off */
static const char *const smtp_state_names[] = {
    [SMTP_STATE_INIT] = "init",
    [SMTP_STATE_GREETED] = "greeted",
    [SMTP_STATE_READY] = "ready",
    [SMTP_STATE_MAIL] = "mail",
    [SMTP_STATE_RCPT] = "rcpt",
    [SMTP_STATE_DATA] = "data",
    [SMTP_STATE_BDAT] = "bdat",
    [SMTP_STATE_CHUNKING] = "chunking",
    [SMTP_STATE_WAIT_RCPT] = "wait-rcpt",
    [SMTP_STATE_WAIT_DELIVER] = "wait-deliver",
    [SMTP_STATE_WAIT_TLS] = "wait-tls",
    [SMTP_STATE_AUTH] = "auth",
    [SMTP_STATE_WAIT_AUTH] = "wait-auth",
    [SMTP_STATE_WAIT_MAIL] = "wait-mail",
    [SMTP_STATE_CLOSED] = "closed",
};
/* clang-format on */

enum smtp_helo_kind {
    SMTP_HELO_NONE,
    SMTP_HELO_HELO,
    SMTP_HELO_EHLO,
};

/* How the session frames a SASL mechanism (RFC 4954). */
enum smtp_sasl_kind {
    SMTP_SASL_PLAIN, /* RFC 4616: parsed here, one request with user and password */
    SMTP_SASL_LOGIN, /* "Username:", "Password:" prompts, then one request */
    SMTP_SASL_OTHER, /* each client message is a request (SCRAM-SHA-256, ...) */
};

struct smtp_session {
    const struct smtp_session_config *cfg;
    struct smtp_limits lim; /* cfg->limits, zeros replaced by defaults */
    char *client_ip;
    char *id;
    enum smtp_state state;
    struct buf *out; /* the caller's reply buffer, during one call */
    bool oom;
    unsigned errors;

    struct buf in;    /* input not yet processed */
    char *line;       /* the current command line, line_cap + 1 */
    size_t line_cap;  /* the longest line: max_command_line, or sasl_line */
    size_t sasl_line; /* submission: the longest AUTH or SASL response line */
    bool line_skip;   /* dropping the rest of an over-long command line */

    enum smtp_helo_kind helo_kind;
    char *helo;
    bool tls;
    char *tls_version;
    char *tls_cipher;

    /* AUTH (submission). */
    char *auth_account; /* after 235: the caller's canonical account */
    enum smtp_sasl_kind sasl_kind;
    char sasl_mech[32];   /* upper-case; "" outside an exchange */
    bool sasl_first;      /* the next request is the exchange's first */
    bool sasl_password;   /* LOGIN: the next message is the password */
    char *sasl_user;      /* PLAIN authcid / LOGIN user name */
    struct buf sasl_data; /* the decoded client message; wiped after use */

    /* The mail transaction. */
    unsigned long txn_count;
    char *txn_id;
    char *mail_from;
    bool smtputf8;
    bool body_8bit;
    struct smtp_rcpt *rcpts;
    size_t nrcpts;
    size_t rcpts_cap;
    struct buf msg;
    struct smtp_body body;
    char **from_addrs; /* submission: From: addr-specs, from the end of the data */
    size_t nfrom_addrs;

    /* The BDAT chunk being read. */
    uint64_t bdat_left;
    uint64_t bdat_size;
    bool bdat_last;
    bool bdat_skip;            /* refused: consume without storing */
    enum smtp_state bdat_back; /* state after a skipped chunk */

    /* The pending request. */
    struct smtp_request req;
    char *req_rcpt;
    struct smtp_envelope env;
};

/* ------------------------------------------------------------------------
 * Replies and state
 */

const char *smtp_session_state_name(const struct smtp_session *s)
{
    return s ? smtp_state_names[s->state] : "none";
}

static void session_set_state(struct smtp_session *s, enum smtp_state st)
{
    if (s->state == SMTP_STATE_CLOSED || s->state == st)
        return;
    log_debug("smtp", "event=state id=%s from=%s to=%s", s->id, smtp_state_names[s->state],
              smtp_state_names[st]);
    s->state = st;
}

static void session_vreply(struct smtp_session *s, const char *fmt, va_list ap)
{
    if (!s->out || buf_vline(s->out, SMTP_REPLY_MAX, fmt, ap) < 0)
        s->oom = true;
}

/* Write one reply line; fmt has no CRLF. */
__attribute__((format(printf, 2, 3))) static void session_reply(struct smtp_session *s,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    session_vreply(s, fmt, ap);
    va_end(ap);
}

/* Write a 421 reply and close. */
__attribute__((format(printf, 2, 3))) static void session_fatal(struct smtp_session *s,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    session_vreply(s, fmt, ap);
    va_end(ap);
    session_set_state(s, SMTP_STATE_CLOSED);
}

/* Write a 4xx/5xx reply the client caused, and count it. */
__attribute__((format(printf, 2, 3))) static void session_error(struct smtp_session *s,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    session_vreply(s, fmt, ap);
    va_end(ap);
    s->errors++;
    if (s->errors >= s->lim.max_errors && s->state != SMTP_STATE_CLOSED) {
        log_info("smtp", "event=too_many_errors id=%s errors=%u", s->id, s->errors);
        session_fatal(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
    }
}

/* End of every public call: handle out-of-memory, tell the caller. */
static enum smtp_session_status session_finish(struct smtp_session *s)
{
    if (s->oom && s->state != SMTP_STATE_CLOSED) {
        log_error("smtp", "event=out_of_memory id=%s state=%s", s->id, smtp_state_names[s->state]);
        if (s->out)
            buf_printf(s->out, "421 4.3.0 %s Error: out of memory\r\n", s->cfg->hostname);
        session_set_state(s, SMTP_STATE_CLOSED);
    }
    s->out = NULL;
    return s->state == SMTP_STATE_CLOSED ? SMTP_SESSION_CLOSE : SMTP_SESSION_CONTINUE;
}

static enum smtp_session_status session_status(const struct smtp_session *s)
{
    return s->state == SMTP_STATE_CLOSED ? SMTP_SESSION_CLOSE : SMTP_SESSION_CONTINUE;
}

static void session_tx_reset(struct smtp_session *s)
{
    free(s->txn_id);
    s->txn_id = NULL;
    free(s->mail_from);
    s->mail_from = NULL;
    for (size_t i = 0; i < s->nrcpts; i++) {
        free(s->rcpts[i].address);
        free(s->rcpts[i].account);
    }
    s->nrcpts = 0;
    if (s->from_addrs)
        smtp_from_addrs_free(s->from_addrs, s->nfrom_addrs);
    s->from_addrs = NULL;
    s->nfrom_addrs = 0;
    s->smtputf8 = false;
    s->body_8bit = false;
    if (s->msg.cap > 64 * 1024)
        buf_free(&s->msg);
    else
        buf_reset(&s->msg);
    s->bdat_left = s->bdat_size = 0;
    s->bdat_last = s->bdat_skip = false;
}

static void secret_free(char **p)
{
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static void buf_wipe(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_reset(b);
}

/* Forget the SASL exchange and wipe what the client sent in it. */
static void sasl_reset(struct smtp_session *s)
{
    secret_free(&s->sasl_user);
    buf_wipe(&s->sasl_data);
    s->sasl_mech[0] = '\0';
    s->sasl_first = false;
    s->sasl_password = false;
}

/* The state with no transaction: after HELO/EHLO or before. */
static enum smtp_state session_idle_state(const struct smtp_session *s)
{
    return s->helo_kind == SMTP_HELO_NONE ? SMTP_STATE_GREETED : SMTP_STATE_READY;
}

static bool session_in_transaction(const struct smtp_session *s)
{
    return s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_RCPT ||
           s->state == SMTP_STATE_CHUNKING;
}

/* ------------------------------------------------------------------------
 * State checks of the command table: true when the command may run now,
 * else the 503 is written.
 */

static bool check_any(struct smtp_session *s)
{
    return true;
}

/* The 503 for a command that came before the commands it needs. */
static void check_sequence_error(struct smtp_session *s)
{
    if (s->state == SMTP_STATE_INIT || s->state == SMTP_STATE_GREETED)
        session_error(s, "503 5.5.1 Error: send HELO/EHLO first");
    else if (s->state == SMTP_STATE_READY)
        session_error(s, "503 5.5.1 Error: need MAIL command");
    else if (s->state == SMTP_STATE_MAIL)
        session_error(s, "503 5.5.1 Error: need RCPT command");
    else
        session_error(s, "503 5.5.1 Error: bad sequence of commands");
}

static bool check_mail(struct smtp_session *s)
{
    if (s->state == SMTP_STATE_READY)
        return true;
    if (session_in_transaction(s))
        session_error(s, "503 5.5.1 Error: nested MAIL command");
    else
        check_sequence_error(s);
    return false;
}

static bool check_rcpt(struct smtp_session *s)
{
    if (s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_RCPT)
        return true;
    if (s->state == SMTP_STATE_CHUNKING)
        session_error(s, "503 5.5.1 Error: RCPT after BDAT");
    else
        check_sequence_error(s);
    return false;
}

static bool check_data(struct smtp_session *s)
{
    if (s->state == SMTP_STATE_RCPT)
        return true;
    if (s->state == SMTP_STATE_CHUNKING) /* RFC 3030 2: no DATA in a BDAT transaction */
        session_error(s, "503 5.5.1 Error: DATA after BDAT");
    else
        check_sequence_error(s);
    return false;
}

static bool check_starttls(struct smtp_session *s)
{
    if (!s->cfg->starttls_available) {
        session_error(s, "502 5.5.1 Error: command not implemented");
        return false;
    }
    if (s->tls) {
        session_error(s, "503 5.5.1 Error: TLS already active");
        return false;
    }
    if (session_in_transaction(s)) {
        session_error(s, "503 5.5.1 Error: MAIL transaction in progress");
        return false;
    }
    return true;
}

/* RFC 4954 4: AUTH once per session, after EHLO, outside a transaction. */
static bool check_auth(struct smtp_session *s)
{
    if (!s->cfg->submission) {
        session_error(s, "502 5.5.1 Error: AUTH not available here");
        return false;
    }
    if (s->helo_kind != SMTP_HELO_EHLO) {
        session_error(s, "503 5.5.1 Error: send EHLO first");
        return false;
    }
    if (session_in_transaction(s)) {
        session_error(s, "503 5.5.1 Error: MAIL transaction in progress");
        return false;
    }
    if (s->auth_account) {
        session_error(s, "503 5.5.1 Error: already authenticated");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Commands without a transaction
 */

/* Whether EHLO lists AUTH and AUTH may be used: after TLS, or with
 * allow_plaintext_auth (RFC 4954 4 wants a security layer for PLAIN). */
static bool auth_offered(const struct smtp_session *s)
{
    const char *m = s->cfg->auth_mechanisms;
    return s->cfg->submission && (s->tls || s->cfg->allow_plaintext_auth) && m &&
           m[strspn(m, " ")] != '\0';
}

static void cmd_hello(struct smtp_session *s, char *arg, enum smtp_helo_kind kind)
{
    const char *verb = kind == SMTP_HELO_EHLO ? "EHLO" : "HELO";
    if (*arg == '\0') {
        session_error(s, "501 5.5.4 Syntax: %s hostname", verb);
        return;
    }
    char *helo = strdup(arg);
    if (!helo) {
        s->oom = true;
        return;
    }
    /* RFC 5321 4.1.4: HELO/EHLO also ends any transaction. */
    session_tx_reset(s);
    free(s->helo);
    s->helo = helo;
    s->helo_kind = kind;
    session_set_state(s, SMTP_STATE_READY);
    /* RFC 2034 3: no enhanced code in the HELO/EHLO replies. */
    if (kind == SMTP_HELO_HELO) {
        session_reply(s, "250 %s", s->cfg->hostname);
        return;
    }
    session_reply(s, "250-%s", s->cfg->hostname);
    session_reply(s, "250-PIPELINING");
    session_reply(s, "250-SIZE %zu", s->lim.max_message_size);
    if (s->cfg->starttls_available && !s->tls)
        session_reply(s, "250-STARTTLS");
    if (auth_offered(s))
        session_reply(s, "250-AUTH %s", s->cfg->auth_mechanisms);
    session_reply(s, "250-ENHANCEDSTATUSCODES");
    session_reply(s, "250-8BITMIME");
    session_reply(s, "250-SMTPUTF8");
    session_reply(s, "250-HELP");
    session_reply(s, "250 CHUNKING");
}

static void cmd_ehlo(struct smtp_session *s, char *arg)
{
    cmd_hello(s, arg, SMTP_HELO_EHLO);
}

static void cmd_helo(struct smtp_session *s, char *arg)
{
    cmd_hello(s, arg, SMTP_HELO_HELO);
}

static void cmd_rset(struct smtp_session *s, char *arg)
{
    if (*arg) {
        session_error(s, "501 5.5.4 Syntax: RSET");
        return;
    }
    session_tx_reset(s);
    session_set_state(s, session_idle_state(s));
    session_reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, char *arg)
{
    session_reply(s, "250 2.0.0 Ok"); /* RFC 5321 4.1.1.9: an argument is ignored */
}

static void cmd_quit(struct smtp_session *s, char *arg)
{
    session_reply(s, "221 2.0.0 Bye");
    session_set_state(s, SMTP_STATE_CLOSED);
}

static void cmd_help(struct smtp_session *s, char *arg)
{
    session_reply(s,
                  "214 2.0.0 Commands: EHLO HELO %sMAIL RCPT DATA BDAT RSET NOOP QUIT HELP "
                  "VRFY%s",
                  s->cfg->submission ? "AUTH " : "", s->cfg->starttls_available ? " STARTTLS" : "");
}

static void cmd_vrfy(struct smtp_session *s, char *arg)
{
    if (*arg == '\0') {
        session_error(s, "501 5.5.4 Syntax: VRFY address");
        return;
    }
    /* RFC 5321 3.5.3: 252 when we will not tell; reveals nothing. */
    session_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, char *arg)
{
    if (!s->cfg->expn_enabled) {
        session_error(s, "502 5.5.1 Error: command not implemented");
        return;
    }
    if (*arg == '\0') {
        session_error(s, "501 5.5.4 Syntax: EXPN list");
        return;
    }
    session_error(s, "550 5.1.1 Error: no such mailing list");
}

static void cmd_turn(struct smtp_session *s, char *arg)
{
    /* RFC 5321 4.1.1 / RFC 2645: TURN is not to be implemented. */
    session_error(s, "502 5.5.1 Error: command not implemented");
}

static void cmd_starttls(struct smtp_session *s, char *arg)
{
    if (*arg) {
        session_error(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    session_reply(s, "220 2.0.0 Ready to start TLS");
    /* RFC 3207 5 / CVE-2011-0411: what came after STARTTLS in the clear
     * must not be read as if it came over TLS. */
    size_t dropped = buf_size(&s->in);
    if (dropped > 0)
        log_warn("smtp", "event=starttls_injection id=%s dropped=%zu", s->id, dropped);
    buf_reset(&s->in);
    s->line_skip = false;
    s->req = (struct smtp_request){.type = SMTP_REQ_STARTTLS};
    session_set_state(s, SMTP_STATE_WAIT_TLS);
}

/* ------------------------------------------------------------------------
 * AUTH (RFC 4954), submission only
 */

/* The exchange ends without the caller: reply, count the error, wipe. */
static void sasl_abort(struct smtp_session *s, const char *reply)
{
    sasl_reset(s);
    session_set_state(s, SMTP_STATE_READY);
    session_error(s, "%s", reply);
}

/* Hand the client message from offset off of sasl_data to the caller.
 * The data is followed by a NUL (not counted in auth_len). */
static void sasl_request(struct smtp_session *s, size_t off)
{
    if (!buf_cstr(&s->sasl_data)) {
        s->oom = true;
        return;
    }
    s->req = (struct smtp_request){
        .type = SMTP_REQ_AUTH,
        .auth_mech = s->sasl_mech,
        .auth_user = s->sasl_user,
        .auth_data = buf_ptr(&s->sasl_data) + off,
        .auth_len = buf_size(&s->sasl_data) - off,
        .auth_first = s->sasl_first,
    };
    s->sasl_first = false;
    session_set_state(s, SMTP_STATE_WAIT_AUTH);
}

/* RFC 4616 2: [authzid] NUL authcid NUL passwd, each 1*SAFE (authzid may be
 * empty). An authzid other than the authcid (case-insensitively) would be
 * acting for another user: refused without asking the caller. */
static void sasl_plain(struct smtp_session *s)
{
    const char *p = (const char *)buf_ptr(&s->sasl_data);
    size_t n = buf_size(&s->sasl_data);
    const char *end = p + n;
    const char *nul1 = memchr(p, '\0', n);
    const char *authc = nul1 ? nul1 + 1 : NULL;
    const char *nul2 = authc ? memchr(authc, '\0', (size_t)(end - authc)) : NULL;
    if (!nul2 || nul2 == authc || nul2 + 1 == end ||
        memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1))) {
        sasl_abort(s, "501 5.5.2 Error: malformed PLAIN message");
        return;
    }
    size_t authz_len = (size_t)(nul1 - p), authc_len = (size_t)(nul2 - authc);
    if (authz_len > 0 && (authz_len != authc_len || strncasecmp(p, authc, authz_len) != 0)) {
        log_info("smtp", "event=auth_failed id=%s ip=%s mech=PLAIN reason=authzid", s->id,
                 s->client_ip);
        sasl_abort(s, "535 5.7.8 Authentication credentials invalid");
        return;
    }
    s->sasl_user = strndup(authc, authc_len);
    if (!s->sasl_user) {
        s->oom = true;
        return;
    }
    sasl_request(s, (size_t)(nul2 + 1 - p));
}

/* LOGIN (draft-murchison-sasl-login): the user name, then the password. */
static void sasl_login(struct smtp_session *s)
{
    const uint8_t *p = buf_ptr(&s->sasl_data);
    size_t n = buf_size(&s->sasl_data);
    if (n == 0 || memchr(p, '\0', n)) {
        sasl_abort(s, "501 5.5.2 Error: malformed LOGIN message");
        return;
    }
    if (s->sasl_password) {
        sasl_request(s, 0);
        return;
    }
    s->sasl_user = strndup((const char *)p, n);
    if (!s->sasl_user) {
        s->oom = true;
        return;
    }
    buf_wipe(&s->sasl_data);
    s->sasl_password = true;
    session_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
    session_set_state(s, SMTP_STATE_AUTH);
}

/* One client message of the exchange, in base64 (len octets, may be 0). */
static void sasl_input(struct smtp_session *s, const char *b64, size_t len)
{
    buf_wipe(&s->sasl_data);
    /* Room for the message and the NUL at once: no copy left behind by realloc. */
    if (buf_reserve(&s->sasl_data, len / 4 * 3 + 1) < 0) {
        s->oom = true;
        return;
    }
    if (base64_decode(&s->sasl_data, b64, len) < 0) {
        sasl_abort(s, "501 5.5.2 Error: invalid base64 data");
        return;
    }
    switch (s->sasl_kind) {
    case SMTP_SASL_PLAIN:
        sasl_plain(s);
        break;
    case SMTP_SASL_LOGIN:
        sasl_login(s);
        break;
    case SMTP_SASL_OTHER:
    default:
        sasl_request(s, 0);
        break;
    }
}

/* A line read in SMTP_STATE_AUTH: the client's answer to a 334. */
static void sasl_response(struct smtp_session *s, const char *line, size_t len)
{
    if (len == 1 && line[0] == '*') { /* RFC 4954 4: the client cancels */
        sasl_abort(s, "501 5.0.0 Authentication cancelled");
        return;
    }
    sasl_input(s, line, len);
}

/* Whether mech (len octets) is one of cfg->auth_mechanisms, in any case. */
static bool auth_mech_listed(const struct smtp_session *s, const char *mech, size_t len)
{
    const char *p = s->cfg->auth_mechanisms;
    while (p && *p) {
        p += strspn(p, " ");
        size_t n = strcspn(p, " ");
        if (n > 0 && n == len && strncasecmp(p, mech, len) == 0)
            return true;
        p += n;
    }
    return false;
}

/* RFC 4954 4: "AUTH" SP mechanism [SP initial-response] */
static void cmd_auth(struct smtp_session *s, char *arg)
{
    size_t mlen = strcspn(arg, " ");
    char *ir = arg[mlen] ? arg + mlen + strspn(arg + mlen, " ") : NULL;
    if (mlen == 0 || (ir && strchr(ir, ' '))) {
        session_error(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
        return;
    }
    if (!s->tls && !s->cfg->allow_plaintext_auth) { /* RFC 4954 6 */
        session_error(s, "538 5.7.11 Encryption required for requested authentication "
                         "mechanism");
        return;
    }
    if (mlen >= sizeof(s->sasl_mech) || !auth_mech_listed(s, arg, mlen)) {
        session_error(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
    sasl_reset(s);
    for (size_t i = 0; i < mlen; i++)
        s->sasl_mech[i] = (arg[i] >= 'a' && arg[i] <= 'z') ? (char)(arg[i] - 'a' + 'A') : arg[i];
    s->sasl_mech[mlen] = '\0';
    if (strcmp(s->sasl_mech, "PLAIN") == 0)
        s->sasl_kind = SMTP_SASL_PLAIN;
    else if (strcmp(s->sasl_mech, "LOGIN") == 0)
        s->sasl_kind = SMTP_SASL_LOGIN;
    else
        s->sasl_kind = SMTP_SASL_OTHER;
    s->sasl_first = true;
    if (ir) { /* "=" is an empty initial response */
        if (strcmp(ir, "=") == 0)
            ir += 1;
        sasl_input(s, ir, strlen(ir));
        return;
    }
    /* No initial response: an empty challenge, or LOGIN's "Username:". */
    session_reply(s, "334 %s", s->sasl_kind == SMTP_SASL_LOGIN ? "VXNlcm5hbWU6" : "");
    session_set_state(s, SMTP_STATE_AUTH);
}

/* ------------------------------------------------------------------------
 * MAIL and RCPT
 */

struct mail_params {
    bool size_seen;
    bool body_seen;
    bool auth_seen;
    bool smtputf8;
    bool body_8bit;
};

/* RFC 3461 4: xtext = *( xchar / hexchar ), xchar any of "!" to "~" but
 * "+" and "=", hexchar "+" and two upper-case hex digits. Not empty. */
static bool xtext_ok(const char *v, size_t vlen)
{
    if (vlen == 0)
        return false;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '!' || v[i] > '~' || v[i] == '=')
            return false;
        if (v[i] == '+') {
            for (int k = 1; k <= 2; k++)
                if (i + k >= vlen || !strchr("0123456789ABCDEF", v[i + k]))
                    return false;
            i += 2;
        }
    }
    return true;
}

/* true when the SIZE value v (vlen octets) is within the limit; else the reply is written. */
static bool mail_param_size(struct smtp_session *s, const char *v, size_t vlen)
{
    uint64_t size = 0;
    bool huge = false;
    if (!v || vlen == 0) {
        session_error(s, "501 5.5.4 Syntax: SIZE=<number>");
        return false;
    }
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9') {
            session_error(s, "501 5.5.4 Syntax: SIZE=<number>");
            return false;
        }
        if (size > (UINT64_MAX - 9) / 10)
            huge = true;
        else
            size = size * 10 + (uint64_t)(v[i] - '0');
    }
    if (huge || size > s->lim.max_message_size) {
        /* RFC 1870 6.1 */
        session_error(s, "552 5.3.4 Message size exceeds fixed limit");
        return false;
    }
    return true;
}

/* One esmtp-param of MAIL (RFC 5321 4.1.2). true when fine. */
static bool mail_param(struct smtp_session *s, struct mail_params *mp, const char *kw, size_t kwlen,
                       const char *v, size_t vlen)
{
    if (kwlen == 4 && strncasecmp(kw, "SIZE", 4) == 0) {
        if (mp->size_seen) {
            session_error(s, "501 5.5.4 Error: duplicate SIZE parameter");
            return false;
        }
        mp->size_seen = true;
        return mail_param_size(s, v, vlen);
    }
    if (kwlen == 4 && strncasecmp(kw, "BODY", 4) == 0) {
        /* RFC 6152: 7BIT or 8BITMIME; BINARYMIME is not offered. */
        if (mp->body_seen || !v) {
            session_error(s, "501 5.5.4 Syntax: BODY=7BIT|8BITMIME");
            return false;
        }
        mp->body_seen = true;
        if (vlen == 8 && strncasecmp(v, "8BITMIME", 8) == 0) {
            mp->body_8bit = true;
            return true;
        }
        if (vlen == 4 && strncasecmp(v, "7BIT", 4) == 0)
            return true;
        session_error(s, "501 5.5.4 Syntax: BODY=7BIT|8BITMIME");
        return false;
    }
    if (kwlen == 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0) {
        /* RFC 6531 3.4: no value. */
        if (v || mp->smtputf8) {
            session_error(s, "501 5.5.4 Syntax: SMTPUTF8");
            return false;
        }
        mp->smtputf8 = true;
        return true;
    }
    if (kwlen == 4 && strncasecmp(kw, "AUTH", 4) == 0 && s->cfg->submission) {
        /* RFC 4954 5: AUTH=<mailbox in xtext> or AUTH=<>; taken, not used. */
        if (mp->auth_seen || !v || !xtext_ok(v, vlen)) {
            session_error(s, "501 5.5.4 Syntax: AUTH=<mailbox>");
            return false;
        }
        mp->auth_seen = true;
        return true;
    }
    session_error(s, "555 5.5.4 Error: unsupported MAIL parameter");
    return false;
}

/* The esmtp-params after the reverse-path. true when all are fine. */
static bool mail_params_parse(struct smtp_session *s, const char *p, struct mail_params *mp)
{
    while (*p == ' ')
        p++;
    while (*p) {
        const char *kw = p;
        while (*p && *p != ' ' && *p != '=')
            p++;
        size_t kwlen = (size_t)(p - kw);
        const char *v = NULL;
        size_t vlen = 0;
        if (*p == '=') {
            v = ++p;
            while (*p && *p != ' ')
                p++;
            vlen = (size_t)(p - v);
        }
        if (!mail_param(s, mp, kw, kwlen, v, vlen))
            return false;
        while (*p == ' ')
            p++;
    }
    return true;
}

/* The reverse-path is accepted: the transaction starts. */
static void mail_accept(struct smtp_session *s)
{
    size_t n = strlen(s->id) + 24;
    char *id = malloc(n);
    if (!id) {
        s->oom = true;
        return;
    }
    s->txn_count++;
    snprintf(id, n, "%s.%lu", s->id, s->txn_count);
    s->txn_id = id;
    session_set_state(s, SMTP_STATE_MAIL);
    session_reply(s, "250 2.1.0 Ok");
}

static void mail_start(struct smtp_session *s, const struct smtp_path *path,
                       const struct mail_params *mp)
{
    char *from = strdup(path->mailbox);
    if (!from) {
        s->oom = true;
        return;
    }
    s->mail_from = from;
    s->smtputf8 = mp->smtputf8;
    s->body_8bit = mp->body_8bit;
    if (!s->cfg->submission) {
        mail_accept(s);
        return;
    }
    /* RFC 6409 6.1: the caller checks the account may use this address. */
    s->req = (struct smtp_request){
        .type = SMTP_REQ_MAIL,
        .mail_from = s->mail_from,
        .auth_account = s->auth_account,
    };
    session_set_state(s, SMTP_STATE_WAIT_MAIL);
}

/* "FROM:" / "TO:" and the spaces some clients put after the colon. NULL when missing. */
static const char *path_arg(const char *arg, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncasecmp(arg, prefix, n) != 0)
        return NULL;
    arg += n;
    while (*arg == ' ')
        arg++;
    return arg;
}

static void cmd_mail(struct smtp_session *s, char *arg)
{
    if (s->cfg->submission && !s->auth_account) { /* RFC 4954 6, RFC 6409 4.3 */
        session_error(s, "530 5.7.0 Authentication required");
        return;
    }
    const char *p = path_arg(arg, "FROM:");
    struct smtp_path path;
    const char *end = NULL;
    enum smtp_addr_status st = SMTP_ADDR_SYNTAX;
    if (p)
        st = smtp_path_parse(p, SMTP_PATH_UTF8 | SMTP_PATH_NULL_OK, &path, &end);
    if (!p || (st == SMTP_ADDR_SYNTAX && *p != '<') ||
        (st == SMTP_ADDR_OK && *end != '\0' && *end != ' ')) {
        session_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    if (st == SMTP_ADDR_SYNTAX) {
        session_error(s, "501 5.1.7 Bad sender address syntax"); /* RFC 3463: X.1.7 */
        return;
    }
    if (st == SMTP_ADDR_TOO_LONG) {
        session_error(s, "501 5.1.7 Path too long"); /* RFC 5321 4.5.3.1.10 */
        return;
    }
    struct mail_params mp = {0};
    if (!mail_params_parse(s, end, &mp))
        return;
    if (path.non_ascii && !mp.smtputf8) {
        /* RFC 6531 3.5 (and RFC 6533 for the code) */
        session_error(s, "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8");
        return;
    }
    mail_start(s, &path, &mp);
}

/* Checks of RCPT that need no caller. true when the caller must be asked. */
static bool rcpt_check(struct smtp_session *s, const char *p, struct smtp_path *path)
{
    const char *end = NULL;
    enum smtp_addr_status st =
        smtp_path_parse(p, SMTP_PATH_UTF8 | SMTP_PATH_POSTMASTER_OK, path, &end);
    if ((st == SMTP_ADDR_SYNTAX && *p != '<') ||
        (st == SMTP_ADDR_OK && *end != '\0' && *end != ' ')) {
        session_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return false;
    }
    if (st == SMTP_ADDR_SYNTAX) {
        session_error(s, "501 5.1.3 Bad recipient address syntax");
        return false;
    }
    if (st == SMTP_ADDR_TOO_LONG) {
        session_error(s, "501 5.1.3 Path too long"); /* RFC 5321 4.5.3.1.10 */
        return false;
    }
    while (*end == ' ')
        end++;
    if (*end) {
        session_error(s, "555 5.5.4 Error: unsupported RCPT parameter");
        return false;
    }
    if (path->non_ascii && !s->smtputf8) {
        session_error(s, "553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8");
        return false;
    }
    if (path->relay_chars) {
        /* "a%b@us", "b!a@us", "\"a@b\"@us": old source routing, never ours to relay. */
        session_error(s, "550 5.7.1 <%s>: Relay access denied", path->mailbox);
        return false;
    }
    if (s->nrcpts >= s->lim.max_recipients) {
        session_reply(s, "452 4.5.3 Too many recipients"); /* RFC 5321 4.5.3.1.10 */
        return false;
    }
    return true;
}

static void cmd_rcpt(struct smtp_session *s, char *arg)
{
    const char *p = path_arg(arg, "TO:");
    if (!p) {
        session_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    struct smtp_path path;
    if (!rcpt_check(s, p, &path))
        return;
    char *rcpt = strdup(path.mailbox);
    if (!rcpt) {
        s->oom = true;
        return;
    }
    if (path.had_route)
        log_debug("smtp", "event=source_route_removed id=%s", s->id);
    s->req_rcpt = rcpt;
    s->req = (struct smtp_request){.type = SMTP_REQ_RCPT, .rcpt = rcpt};
    session_set_state(s, SMTP_STATE_WAIT_RCPT);
}

/* Add an accepted recipient (address is taken over). account NULL: the
 * address; remote: no account. */
static bool rcpt_add(struct smtp_session *s, char *address, const char *account, bool remote)
{
    if (s->nrcpts == s->rcpts_cap) {
        size_t cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;
        struct smtp_rcpt *r = realloc(s->rcpts, cap * sizeof(*r));
        if (!r)
            return false;
        s->rcpts = r;
        s->rcpts_cap = cap;
    }
    char *acc = NULL;
    if (!remote && !(acc = strdup(account ? account : address)))
        return false;
    s->rcpts[s->nrcpts].address = address;
    s->rcpts[s->nrcpts].account = acc;
    s->rcpts[s->nrcpts].remote = remote;
    s->nrcpts++;
    return true;
}

/* ------------------------------------------------------------------------
 * DATA, BDAT and the end of a message
 */

static void cmd_data(struct smtp_session *s, char *arg)
{
    if (*arg) {
        session_error(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    smtp_body_init(&s->body, true, s->lim.max_text_line, s->lim.max_message_size, &s->msg);
    session_set_state(s, SMTP_STATE_DATA);
}

/* Consume the next size octets without storing them, then go to back. */
static void bdat_skip(struct smtp_session *s, uint64_t size, enum smtp_state back)
{
    s->bdat_left = s->bdat_size = size;
    s->bdat_last = false;
    s->bdat_skip = true;
    s->bdat_back = back;
    session_set_state(s, SMTP_STATE_BDAT);
}

static void cmd_bdat(struct smtp_session *s, char *arg)
{
    /* RFC 3030 3: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] */
    const char *p = arg;
    uint64_t size = 0;
    bool bad = *p < '0' || *p > '9';
    for (; *p >= '0' && *p <= '9'; p++) {
        if (size > (UINT64_MAX - 9) / 10)
            bad = true;
        size = size * 10 + (uint64_t)(*p - '0');
    }
    if (bad || (*p && *p != ' ')) {
        session_reply(s, "501 5.5.4 Syntax: BDAT <size> [LAST]");
        session_fatal(s, "421 4.5.0 %s Error: bad BDAT size, cannot go on", s->cfg->hostname);
        return;
    }
    while (*p == ' ')
        p++;
    bool last = strcasecmp(p, "LAST") == 0;
    if (*p && !last) {
        session_tx_reset(s);
        session_set_state(s, session_idle_state(s));
        session_error(s, "501 5.5.4 Syntax: BDAT <size> [LAST]");
        bdat_skip(s, size, session_idle_state(s));
        return;
    }
    if (s->state != SMTP_STATE_RCPT && s->state != SMTP_STATE_CHUNKING) {
        enum smtp_state back = s->state;
        check_sequence_error(s);
        bdat_skip(s, size, back);
        return;
    }
    if (s->state == SMTP_STATE_RCPT)
        smtp_body_init(&s->body, false, s->lim.max_text_line, s->lim.max_message_size, &s->msg);
    s->bdat_left = s->bdat_size = size;
    s->bdat_last = last;
    s->bdat_skip = false;
    session_set_state(s, SMTP_STATE_BDAT);
}

static const char *session_protocol(const struct smtp_session *s)
{
    /* RFC 3848 and RFC 6531 3.7.3: the Received "with" keyword. */
    bool a = s->auth_account != NULL;
    if (s->smtputf8) {
        if (s->tls)
            return a ? "UTF8SMTPSA" : "UTF8SMTPS";
        return a ? "UTF8SMTPA" : "UTF8SMTP";
    }
    if (s->tls)
        return a ? "ESMTPSA" : "ESMTPS";
    if (a)
        return "ESMTPA";
    return s->helo_kind == SMTP_HELO_EHLO ? "ESMTP" : "SMTP";
}

/* The message is complete: report a recorded error or hand it over. */
static void message_end(struct smtp_session *s)
{
    if (s->body.oom) {
        s->oom = true;
        return;
    }
    if (s->body.too_big || s->body.line_too_long) {
        log_info("smtp", "event=message_rejected id=%s txn=%s reason=%s", s->id, s->txn_id,
                 s->body.too_big ? "size" : "line_length");
        if (s->body.too_big) /* RFC 5321 4.5.3.1.10, RFC 1870 */
            session_error(s, "552 5.3.4 Message size exceeds fixed limit");
        else /* RFC 5321 4.5.3.1.6 */
            session_error(s, "500 5.5.2 Line too long");
        session_tx_reset(s);
        session_set_state(s, SMTP_STATE_READY);
        return;
    }
    if (s->cfg->submission &&
        smtp_from_addrs(buf_ptr(&s->msg), buf_size(&s->msg), &s->from_addrs, &s->nfrom_addrs) < 0) {
        s->from_addrs = NULL;
        s->nfrom_addrs = 0;
        s->oom = true;
        return;
    }
    s->env = (struct smtp_envelope){
        .txn_id = s->txn_id,
        .helo = s->helo,
        .client_ip = s->client_ip,
        .mail_from = s->mail_from,
        .rcpts = s->rcpts,
        .nrcpts = s->nrcpts,
        .protocol = session_protocol(s),
        .tls_version = s->tls ? s->tls_version : NULL,
        .tls_cipher = s->tls ? s->tls_cipher : NULL,
        .smtputf8 = s->smtputf8,
        .body_8bit = s->body_8bit,
        .auth_account = s->auth_account,
        .envid = NULL, /* DSN (RFC 3461) is not offered */
        .from_addrs = s->from_addrs,
        .nfrom_addrs = s->nfrom_addrs,
    };
    s->req = (struct smtp_request){
        .type = SMTP_REQ_DELIVER,
        .env = &s->env,
        .data = buf_ptr(&s->msg),
        .data_len = buf_size(&s->msg),
    };
    log_debug("smtp", "event=message_complete id=%s txn=%s size=%zu rcpts=%zu", s->id, s->txn_id,
              buf_size(&s->msg), s->nrcpts);
    session_set_state(s, SMTP_STATE_WAIT_DELIVER);
}

/* A BDAT chunk has been read (or skipped). */
static void bdat_chunk_end(struct smtp_session *s)
{
    if (s->bdat_skip) {
        s->bdat_skip = false;
        session_set_state(s, s->bdat_back);
        return;
    }
    if (!s->bdat_last) {
        session_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->bdat_size);
        session_set_state(s, SMTP_STATE_CHUNKING);
        return;
    }
    smtp_body_finish(&s->body);
    message_end(s);
}

/* ------------------------------------------------------------------------
 * The command table and the input loop
 */

struct smtp_command {
    const char *name;
    bool (*check)(struct smtp_session *s);              /* allowed in this state? else replies */
    void (*proceed)(struct smtp_session *s, char *arg); /* arg: after the verb, trimmed */
};

/* BDAT checks its state itself: a refused chunk must still be consumed. */
static const struct smtp_command smtp_commands[] = {
    {"EHLO", check_any, cmd_ehlo},  {"HELO", check_any, cmd_helo},
    {"MAIL", check_mail, cmd_mail}, {"RCPT", check_rcpt, cmd_rcpt},
    {"DATA", check_data, cmd_data}, {"BDAT", check_any, cmd_bdat},
    {"RSET", check_any, cmd_rset},  {"NOOP", check_any, cmd_noop},
    {"QUIT", check_any, cmd_quit},  {"HELP", check_any, cmd_help},
    {"VRFY", check_any, cmd_vrfy},  {"EXPN", check_any, cmd_expn},
    {"TURN", check_any, cmd_turn},  {"STARTTLS", check_starttls, cmd_starttls},
    {"AUTH", check_auth, cmd_auth},
};

static void session_command(struct smtp_session *s, char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f) {
            session_error(s, "500 5.5.2 Error: bad character in command");
            return;
        }
    }
    while (len > 0 && line[len - 1] == ' ')
        line[--len] = '\0';
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    if (vlen == 0) {
        session_error(s, "500 5.5.2 Error: bad syntax");
        return;
    }
    char *arg = line + vlen;
    while (*arg == ' ')
        arg++;
    for (size_t i = 0; i < sizeof(smtp_commands) / sizeof(smtp_commands[0]); i++) {
        const struct smtp_command *cmd = &smtp_commands[i];
        if (strlen(cmd->name) == vlen && strncasecmp(cmd->name, line, vlen) == 0) {
            if (cmd->check(s))
                cmd->proceed(s, arg);
            return;
        }
    }
    session_error(s, "500 5.5.1 Error: command not recognized");
}

/* Drop n processed octets of input; in submission wipe them first (they
 * may hold a password). */
static void input_consume(struct smtp_session *s, size_t n)
{
    if (s->cfg->submission)
        explicit_bzero((void *)buf_ptr(&s->in), n);
    buf_consume(&s->in, n);
}

/* The longest line allowed now: a SASL response, or a command line, which
 * may be longer when it is an AUTH command (RFC 4954 4). */
static size_t session_line_max(const struct smtp_session *s)
{
    if (!s->cfg->submission)
        return s->lim.max_command_line;
    if (s->state == SMTP_STATE_AUTH)
        return s->sasl_line;
    if (buf_size(&s->in) >= 5 && strncasecmp((const char *)buf_ptr(&s->in), "AUTH ", 5) == 0)
        return s->sasl_line;
    return s->lim.max_command_line;
}

/* Take one command line from the input. false when more input is needed. */
static bool step_command(struct smtp_session *s)
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
    size_t len = buf_line_len(&s->in);
    size_t max = session_line_max(s);
    if (len == 0 || len > max) {
        if (len == 0 && avail < max)
            return false;
        if (s->state == SMTP_STATE_AUTH) {
            sasl_reset(s);
            session_set_state(s, SMTP_STATE_READY);
        }
        /* RFC 5321 4.5.3.1.4 */
        session_error(s, "500 5.5.2 Line too long");
        input_consume(s, len ? len : avail);
        s->line_skip = len == 0;
        return true;
    }
    size_t n = len - 1;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    memcpy(s->line, p, n);
    s->line[n] = '\0';
    input_consume(s, len);
    if (s->state == SMTP_STATE_AUTH)
        sasl_response(s, s->line, n);
    else
        session_command(s, s->line, n);
    if (s->cfg->submission)
        explicit_bzero(s->line, n);
    return true;
}

static bool step_data(struct smtp_session *s)
{
    size_t avail = buf_size(&s->in);
    if (avail == 0)
        return false;
    bool end;
    size_t used = smtp_body_feed(&s->body, buf_ptr(&s->in), avail, &end);
    buf_consume(&s->in, used);
    if (!end)
        return false;
    message_end(s);
    return true;
}

static bool step_bdat(struct smtp_session *s)
{
    if (s->bdat_left > 0) {
        size_t avail = buf_size(&s->in);
        if (avail == 0)
            return false;
        size_t n = (uint64_t)avail < s->bdat_left ? avail : (size_t)s->bdat_left;
        if (!s->bdat_skip) {
            bool end;
            smtp_body_feed(&s->body, buf_ptr(&s->in), n, &end);
        }
        buf_consume(&s->in, n);
        s->bdat_left -= n;
        if (s->bdat_left > 0)
            return false;
    }
    bdat_chunk_end(s);
    return true;
}

/* Process buffered input until it runs out, a request is made or the end. */
static void session_run(struct smtp_session *s)
{
    for (;;) {
        if (s->oom || s->state == SMTP_STATE_CLOSED || s->req.type != SMTP_REQ_NONE)
            return;
        bool more;
        if (s->state == SMTP_STATE_DATA)
            more = step_data(s);
        else if (s->state == SMTP_STATE_BDAT)
            more = step_bdat(s);
        else
            more = step_command(s);
        if (!more)
            return;
    }
}

/* ------------------------------------------------------------------------
 * Public API
 */

static size_t limit_or(size_t v, size_t dflt)
{
    return v ? v : dflt;
}

struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg, const char *client_ip,
                                      const char *session_id)
{
    struct smtp_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = cfg;
    s->lim.max_command_line = limit_or(cfg->limits.max_command_line, SMTP_DEFAULT_COMMAND_LINE);
    s->lim.max_text_line = limit_or(cfg->limits.max_text_line, SMTP_DEFAULT_TEXT_LINE);
    s->lim.max_message_size = limit_or(cfg->limits.max_message_size, SMTP_DEFAULT_MESSAGE_SIZE);
    s->lim.max_recipients = (unsigned)limit_or(cfg->limits.max_recipients, SMTP_DEFAULT_RECIPIENTS);
    s->lim.max_errors = (unsigned)limit_or(cfg->limits.max_errors, SMTP_DEFAULT_ERRORS);
    s->client_ip = strdup(client_ip ? client_ip : "");
    s->id = strdup(session_id ? session_id : "");
    s->line_cap = s->lim.max_command_line;
    if (cfg->submission) {
        s->sasl_line = s->line_cap > SMTP_SASL_LINE ? s->line_cap : SMTP_SASL_LINE;
        s->line_cap = s->sasl_line;
    }
    s->line = malloc(s->line_cap + 1);
    if (!s->client_ip || !s->id || !s->line) {
        smtp_session_free(&s);
        return NULL;
    }
    s->state = SMTP_STATE_INIT;
    return s;
}

void smtp_session_free(struct smtp_session **sp)
{
    struct smtp_session *s = sp ? *sp : NULL;
    if (!s)
        return;
    session_tx_reset(s);
    sasl_reset(s);
    buf_free(&s->sasl_data);
    free(s->auth_account);
    buf_free(&s->msg);
    if (s->cfg->submission) {
        buf_wipe(&s->in);
        if (s->line)
            explicit_bzero(s->line, s->line_cap + 1);
    }
    buf_free(&s->in);
    free(s->rcpts);
    free(s->req_rcpt);
    free(s->helo);
    free(s->tls_version);
    free(s->tls_cipher);
    free(s->line);
    free(s->id);
    free(s->client_ip);
    free(s);
    *sp = NULL;
}

void smtp_session_start(struct smtp_session *s, struct buf *out)
{
    if (s->state != SMTP_STATE_INIT)
        return;
    s->out = out;
    /* RFC 5321 4.2: no enhanced status code in the greeting (RFC 2034 3). */
    session_reply(s, "220 %s ESMTP correio", s->cfg->hostname);
    session_set_state(s, SMTP_STATE_GREETED);
    session_finish(s);
}

enum smtp_session_status smtp_session_feed(struct smtp_session *s, const void *data, size_t len,
                                           struct buf *out)
{
    s->out = out;
    if (s->state == SMTP_STATE_CLOSED || s->state == SMTP_STATE_WAIT_TLS)
        return session_finish(s); /* WAIT_TLS: RFC 3207 5, dropped */
    if (s->req.type != SMTP_REQ_NONE &&
        buf_size(&s->in) + len > SMTP_PENDING_SLACK + s->lim.max_message_size) {
        log_warn("smtp", "event=pipeline_overflow id=%s buffered=%zu", s->id, buf_size(&s->in));
        session_fatal(s, "421 4.7.0 %s Error: too much pipelined input", s->cfg->hostname);
        return session_finish(s);
    }
    if (buf_append(&s->in, data, len) < 0) {
        s->oom = true;
        return session_finish(s);
    }
    session_run(s);
    return session_finish(s);
}

const struct smtp_request *smtp_session_request(const struct smtp_session *s)
{
    return s->req.type == SMTP_REQ_NONE ? NULL : &s->req;
}

enum smtp_session_status smtp_session_rcpt_done(struct smtp_session *s, enum smtp_rcpt_result r,
                                                const char *account, struct buf *out)
{
    if (s->req.type != SMTP_REQ_RCPT)
        return session_status(s);
    s->out = out;
    char *addr = s->req_rcpt;
    s->req_rcpt = NULL;
    s->req = (struct smtp_request){.type = SMTP_REQ_NONE};
    if (s->state == SMTP_STATE_CLOSED) {
        free(addr);
        return session_finish(s);
    }
    if (r == SMTP_RCPT_REMOTE && !s->cfg->submission)
        r = SMTP_RCPT_RELAY_DENIED; /* port 25 never relays, whatever the caller says */
    switch (r) {
    case SMTP_RCPT_OK:
    case SMTP_RCPT_REMOTE:
        if (!rcpt_add(s, addr, r == SMTP_RCPT_OK ? account : NULL, r == SMTP_RCPT_REMOTE)) {
            free(addr);
            s->oom = true;
            return session_finish(s);
        }
        session_reply(s, "250 2.1.5 Ok");
        addr = NULL;
        break;
    case SMTP_RCPT_NO_USER:
        session_error(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown", addr);
        break;
    case SMTP_RCPT_RELAY_DENIED:
        session_error(s, "550 5.7.1 <%s>: Relay access denied", addr);
        break;
    case SMTP_RCPT_TEMPFAIL:
    default:
        session_reply(s, "451 4.3.0 <%s>: Temporary lookup failure", addr);
        break;
    }
    free(addr);
    session_set_state(s, s->nrcpts ? SMTP_STATE_RCPT : SMTP_STATE_MAIL);
    session_run(s);
    return session_finish(s);
}

enum smtp_session_status smtp_session_deliver_done(struct smtp_session *s,
                                                   enum smtp_deliver_result r, struct buf *out)
{
    if (s->req.type != SMTP_REQ_DELIVER)
        return session_status(s);
    s->out = out;
    s->req = (struct smtp_request){.type = SMTP_REQ_NONE};
    if (r == SMTP_DELIVER_SENDER_REFUSED && !s->cfg->submission)
        r = SMTP_DELIVER_PERMFAIL; /* no sender check on port 25 */
    if (s->state != SMTP_STATE_CLOSED) {
        switch (r) {
        case SMTP_DELIVER_OK:
            session_reply(s, "250 2.0.0 Ok: queued as %s", s->txn_id);
            break;
        case SMTP_DELIVER_SENDER_REFUSED: /* RFC 6409 8.1 */
            session_error(s, "553 5.7.1 From: header address not owned by %s",
                          s->auth_account ? s->auth_account : "this account");
            break;
        case SMTP_DELIVER_PERMFAIL:
            session_reply(s, "554 5.3.0 Error: message not accepted");
            break;
        case SMTP_DELIVER_TEMPFAIL:
        default:
            session_reply(s, "451 4.3.0 Error: local delivery failed, try again later");
            break;
        }
    }
    session_tx_reset(s);
    session_set_state(s, SMTP_STATE_READY);
    session_run(s);
    return session_finish(s);
}

enum smtp_session_status smtp_session_tls_done(struct smtp_session *s, bool ok, const char *version,
                                               const char *cipher, struct buf *out)
{
    if (s->req.type != SMTP_REQ_STARTTLS)
        return session_status(s);
    s->out = out;
    s->req = (struct smtp_request){.type = SMTP_REQ_NONE};
    if (!ok) {
        log_info("smtp", "event=tls_failed id=%s", s->id);
        session_set_state(s, SMTP_STATE_CLOSED);
        return session_finish(s);
    }
    free(s->tls_version);
    free(s->tls_cipher);
    s->tls_version = strdup(version ? version : "unknown");
    s->tls_cipher = strdup(cipher ? cipher : "unknown");
    if (!s->tls_version || !s->tls_cipher) {
        s->oom = true;
        return session_finish(s);
    }
    /* RFC 3207 4.2: start over; the client must say EHLO again, and AUTH
     * again (RFC 4954 4: what was learnt before TLS is discarded). */
    s->tls = true;
    session_tx_reset(s);
    sasl_reset(s);
    free(s->auth_account);
    s->auth_account = NULL;
    free(s->helo);
    s->helo = NULL;
    s->helo_kind = SMTP_HELO_NONE;
    buf_reset(&s->in);
    s->line_skip = false;
    session_set_state(s, SMTP_STATE_GREETED);
    return session_finish(s);
}

/* Write raw reply bytes (a 334 may be longer than SMTP_REPLY_MAX). */
static void session_reply_challenge(struct smtp_session *s, const uint8_t *data, size_t len)
{
    if (!s->out || buf_puts(s->out, "334 ") < 0 || base64_encode(s->out, data, len) < 0 ||
        buf_puts(s->out, "\r\n") < 0)
        s->oom = true;
}

enum smtp_session_status smtp_session_auth_challenge(struct smtp_session *s, const uint8_t *data,
                                                     size_t len, struct buf *out)
{
    if (s->req.type != SMTP_REQ_AUTH)
        return session_status(s);
    s->out = out;
    s->req = (struct smtp_request){.type = SMTP_REQ_NONE};
    if (s->state == SMTP_STATE_CLOSED) {
        sasl_reset(s);
        return session_finish(s);
    }
    session_reply_challenge(s, data, len);
    /* The previous message is no longer needed; the next one goes to the
     * caller as it is, also for PLAIN and LOGIN. */
    buf_wipe(&s->sasl_data);
    s->sasl_kind = SMTP_SASL_OTHER;
    session_set_state(s, SMTP_STATE_AUTH);
    session_run(s);
    return session_finish(s);
}

/* SMTP_AUTH_OK: remember the account and say 235. */
static void auth_success(struct smtp_session *s, const char *account)
{
    if (!account || !*account) {
        log_warn("smtp", "event=auth_no_account id=%s mech=%s", s->id, s->sasl_mech);
        session_reply(s, "454 4.7.0 Temporary authentication failure");
        return;
    }
    s->auth_account = strdup(account);
    if (!s->auth_account) {
        s->oom = true;
        return;
    }
    log_info("smtp", "event=auth id=%s ip=%s mech=%s account=%s", s->id, s->client_ip, s->sasl_mech,
             s->auth_account);
    session_reply(s, "235 2.7.0 Authentication successful");
}

enum smtp_session_status smtp_session_auth_done(struct smtp_session *s, enum smtp_auth_result r,
                                                const char *account, struct buf *out)
{
    if (s->req.type != SMTP_REQ_AUTH)
        return session_status(s);
    s->out = out;
    s->req = (struct smtp_request){.type = SMTP_REQ_NONE};
    session_set_state(s, SMTP_STATE_READY);
    if (s->state != SMTP_STATE_CLOSED) {
        switch (r) {
        case SMTP_AUTH_OK:
            auth_success(s, account ? account : s->sasl_user);
            break;
        case SMTP_AUTH_FAILED:
            log_info("smtp", "event=auth_failed id=%s ip=%s mech=%s", s->id, s->client_ip,
                     s->sasl_mech);
            session_error(s, "535 5.7.8 Authentication credentials invalid");
            break;
        case SMTP_AUTH_MALFORMED:
            session_error(s, "501 5.5.2 Error: malformed authentication message");
            break;
        case SMTP_AUTH_TEMPFAIL:
        default:
            session_reply(s, "454 4.7.0 Temporary authentication failure");
            break;
        }
    }
    sasl_reset(s);
    session_run(s);
    return session_finish(s);
}

enum smtp_session_status smtp_session_mail_done(struct smtp_session *s, bool ok, struct buf *out)
{
    if (s->req.type != SMTP_REQ_MAIL)
        return session_status(s);
    s->out = out;
    s->req = (struct smtp_request){.type = SMTP_REQ_NONE};
    if (s->state != SMTP_STATE_CLOSED) {
        if (ok) {
            mail_accept(s);
        } else {
            /* RFC 6409 6.1 */
            session_set_state(s, SMTP_STATE_READY);
            session_error(s, "553 5.7.1 <%s>: Sender address rejected: not owned by %s",
                          s->mail_from, s->auth_account ? s->auth_account : "this account");
            session_tx_reset(s);
        }
    }
    session_run(s);
    return session_finish(s);
}

const char *smtp_session_auth_account(const struct smtp_session *s)
{
    return s->auth_account;
}

int smtp_session_set_tls(struct smtp_session *s, const char *version, const char *cipher)
{
    if (s->state != SMTP_STATE_INIT)
        return -1;
    char *v = strdup(version ? version : "unknown");
    char *c = strdup(cipher ? cipher : "unknown");
    if (!v || !c) {
        free(v);
        free(c);
        return -1;
    }
    free(s->tls_version);
    free(s->tls_cipher);
    s->tls_version = v;
    s->tls_cipher = c;
    s->tls = true;
    return 0;
}

enum smtp_session_status smtp_session_timeout(struct smtp_session *s, struct buf *out)
{
    s->out = out;
    if (s->state != SMTP_STATE_CLOSED)
        session_fatal(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
    return session_finish(s);
}

enum smtp_session_status smtp_session_shutdown(struct smtp_session *s, struct buf *out)
{
    s->out = out;
    if (s->state != SMTP_STATE_CLOSED)
        session_fatal(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
    return session_finish(s);
}

bool smtp_session_tls_active(const struct smtp_session *s)
{
    return s->tls;
}
