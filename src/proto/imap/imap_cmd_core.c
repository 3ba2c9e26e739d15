/* imap_cmd_core — commands of any state (RFC 3501 6.1), authentication
 * (6.2, RFC 4959 SASL-IR, RFC 4616 PLAIN), ENABLE (RFC 5161), ID (RFC
 * 2971), NAMESPACE (RFC 2342), IDLE (RFC 2177), CHECK. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base64.h"
#include "lib/log.h"
#include "proto/imap/imap_int.h"

#define IMAP_AUTH_FAILURES_MAX 5

static void cmd_capability(struct imap_session *s, struct store *st,
                           const struct imap_command *cmd, struct imap_reply *r)
{
    buf_puts(&s->ex, "* CAPABILITY ");
    imap_write_capabilities(s, &s->ex);
    buf_puts(&s->ex, "\r\n");
    imap_reply_set(r, IMAP_OK, NULL, "CAPABILITY completed");
}

static void cmd_noop(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                     struct imap_reply *r)
{
    imap_reply_set(r, IMAP_OK, NULL, "%s completed", cmd->name);
}

static void cmd_logout(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    buf_puts(&s->ex, "* BYE Logging out\r\n");
    s->state = IMAP_STATE_LOGOUT;
    imap_reply_set(r, IMAP_OK, NULL, "LOGOUT completed");
}

static void cmd_starttls(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                         struct imap_reply *r)
{
    if (s->tls) {
        imap_reply_set(r, IMAP_BAD, NULL, "TLS is already active");
        return;
    }
    if (!s->cfg->starttls_available) {
        imap_reply_set(r, IMAP_NO, NULL, "TLS is not available");
        return;
    }
    /* Anything the client pipelined after STARTTLS came in clear: drop it
     * (RFC 2595 3.1; the CVE-2011-0411 injection). */
    imap_parser_reset(s->parser);
    buf_reset(&s->held);
    s->req = IMAP_REQ_STARTTLS;
    imap_reply_set(r, IMAP_OK, NULL, "Begin TLS negotiation now");
}

static bool imap_auth_allowed(struct imap_session *s, struct imap_reply *r)
{
    if (s->tls || s->cfg->allow_plaintext_auth)
        return true;
    /* RFC 3501 6.2.3 / RFC 8314: no password over a clear channel. */
    imap_reply_set(r, IMAP_NO, "PRIVACYREQUIRED", "Use STARTTLS or port 993 first");
    return false;
}

/* Check the password and log in, or count the failure. */
static void imap_login(struct imap_session *s, struct store *st, const char *user,
                       const char *pass, struct imap_reply *r)
{
    char account[320];
    int ok = store_account_authenticate(st, user, pass, account, sizeof(account));
    if (ok < 0) {
        imap_reply_set(r, IMAP_NO, "UNAVAILABLE", "Authentication is unavailable, try later");
        return;
    }
    char q[400];
    if (ok == 0) {
        s->auth_failures++;
        /* Slow answers against guessing, growing with each failure. */
        s->delay_ms = 1000u * (s->auth_failures < 5 ? s->auth_failures : 5);
        log_info("imap", "event=auth_failed id=%s ip=%s user=%s", s->id, s->ip,
                 log_quote(q, sizeof(q), user));
        imap_reply_set(r, IMAP_NO, "AUTHENTICATIONFAILED", "Authentication failed");
        if (s->auth_failures >= IMAP_AUTH_FAILURES_MAX) {
            buf_puts(&s->ex, "* BYE Too many authentication failures\r\n");
            s->state = IMAP_STATE_LOGOUT;
        }
        return;
    }
    snprintf(s->account, sizeof(s->account), "%s", account);
    s->state = IMAP_STATE_AUTH;
    log_info("imap", "event=login id=%s ip=%s account=%s tls=%s", s->id, s->ip, account,
             s->tls ? "yes" : "no");
    struct buf caps = BUF_INIT;
    buf_puts(&caps, "CAPABILITY ");
    imap_write_capabilities(s, &caps);
    imap_reply_set(r, IMAP_OK, buf_cstr(&caps), "Logged in");
    buf_free(&caps);
}

static void cmd_login(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                      struct imap_reply *r)
{
    const char *user = cmd->nargs == 2 ? imap_arg_str(&cmd->args[0]) : NULL;
    const char *pass = cmd->nargs == 2 ? imap_arg_str(&cmd->args[1]) : NULL;
    if (!user || !pass) {
        imap_reply_set(r, IMAP_BAD, NULL, "LOGIN needs a user name and a password");
        return;
    }
    if (imap_auth_allowed(s, r))
        imap_login(s, st, user, pass, r);
}

/* RFC 4616: [authzid] NUL authcid NUL passwd, base64. */
static void imap_auth_plain(struct imap_session *s, struct store *st, const char *b64,
                            struct imap_reply *r)
{
    struct buf raw = BUF_INIT;
    if (strcmp(b64, "*") == 0) {
        imap_reply_set(r, IMAP_BAD, NULL, "Authentication cancelled");
        return;
    }
    if (base64_decode(&raw, b64, strlen(b64)) < 0 || buf_size(&raw) > 1024) {
        buf_free(&raw);
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid base64");
        return;
    }
    const char *p = (const char *)buf_ptr(&raw), *end = p + buf_size(&raw);
    const char *authz = p, *nul1 = memchr(p, '\0', (size_t)(end - p));
    const char *authc = nul1 ? nul1 + 1 : NULL;
    const char *nul2 = authc ? memchr(authc, '\0', (size_t)(end - authc)) : NULL;
    if (!nul2 || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1))) {
        buf_free(&raw);
        imap_reply_set(r, IMAP_BAD, NULL, "Invalid PLAIN message");
        return;
    }
    char user[320], pass[1024];
    snprintf(user, sizeof(user), "%.*s", (int)(nul2 - authc), authc);
    snprintf(pass, sizeof(pass), "%.*s", (int)(end - nul2 - 1), nul2 + 1);
    size_t authz_len = (size_t)(nul1 - authz);
    if (authz_len > 0 && (authz_len != strlen(user) || strncasecmp(authz, user, authz_len) != 0)) {
        imap_reply_set(r, IMAP_NO, "AUTHORIZATIONFAILED", "Cannot act as another user");
    } else {
        imap_login(s, st, user, pass, r);
    }
    explicit_bzero(pass, sizeof(pass));
    explicit_bzero(raw.data, raw.cap);
    buf_free(&raw);
}

static void cmd_authenticate(struct imap_session *s, struct store *st,
                             const struct imap_command *cmd, struct imap_reply *r)
{
    if (s->auth_line) { /* the continuation line arrived */
        char *line = s->auth_line;
        s->auth_line = NULL;
        imap_auth_plain(s, st, line, r);
        explicit_bzero(line, strlen(line));
        free(line);
        return;
    }
    if (cmd->nargs < 1 || cmd->nargs > 2 || cmd->args[0].type != IMAP_ARG_ATOM) {
        imap_reply_set(r, IMAP_BAD, NULL, "AUTHENTICATE needs a mechanism");
        return;
    }
    if (strcasecmp(cmd->args[0].str, "PLAIN") != 0) {
        imap_reply_set(r, IMAP_NO, "CANNOT", "Unsupported mechanism");
        return;
    }
    if (!imap_auth_allowed(s, r))
        return;
    if (cmd->nargs == 2) { /* SASL-IR (RFC 4959); "=" is an empty response */
        const char *ir = imap_arg_str(&cmd->args[1]);
        imap_auth_plain(s, st, ir && strcmp(ir, "=") ? ir : "", r);
        return;
    }
    buf_puts(&s->ex, "+ \r\n");
    s->auth_wait = true;
    r->status = IMAP_NONE;
}

static void cmd_id(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                   struct imap_reply *r)
{
    if (cmd->nargs != 1 || (cmd->args[0].type != IMAP_ARG_LIST && cmd->args[0].type != IMAP_ARG_NIL)) {
        imap_reply_set(r, IMAP_BAD, NULL, "ID needs a list or NIL");
        return;
    }
    buf_puts(&s->ex, "* ID (\"name\" \"correio\" \"vendor\" \"correio\")\r\n");
    imap_reply_set(r, IMAP_OK, NULL, "ID completed");
}

static void cmd_enable(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                       struct imap_reply *r)
{
    if (cmd->nargs == 0) {
        imap_reply_set(r, IMAP_BAD, NULL, "ENABLE needs capabilities");
        return;
    }
    buf_puts(&s->ex, "* ENABLED");
    for (size_t i = 0; i < cmd->nargs; i++) {
        if (imap_arg_atom_is(&cmd->args[i], "CONDSTORE") && !s->condstore) {
            s->condstore = true;
            buf_puts(&s->ex, " CONDSTORE");
        } else if (imap_arg_atom_is(&cmd->args[i], "QRESYNC") && !s->qresync) {
            s->qresync = s->condstore = true; /* RFC 7162 3.2.3 */
            buf_puts(&s->ex, " QRESYNC");
        }
    }
    buf_puts(&s->ex, "\r\n");
    imap_reply_set(r, IMAP_OK, NULL, "ENABLE completed");
}

static void cmd_namespace(struct imap_session *s, struct store *st,
                          const struct imap_command *cmd, struct imap_reply *r)
{
    buf_puts(&s->ex, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    imap_reply_set(r, IMAP_OK, NULL, "NAMESPACE completed");
}

/* IDLE (RFC 2177): report what changed, then "+ idling"; the session waits
 * for DONE, reporting changes as they come (imap_session_notify). */
static void cmd_idle(struct imap_session *s, struct store *st, const struct imap_command *cmd,
                     struct imap_reply *r)
{
    imap_sync(s, st, IMAP_SYNC_FULL);
    buf_puts(&s->ex, "+ idling\r\n");
    s->idling = true;
    r->status = IMAP_NONE;
}

const struct imap_cmd_def imap_cmds_core[] = {
    {"CAPABILITY", IMAP_IN_ANY, true, IMAP_SYNC_NONE, cmd_capability, false},
    {"NOOP", IMAP_IN_ANY, false, IMAP_SYNC_FULL, cmd_noop, false},
    {"CHECK", IMAP_IN_SELECTED, false, IMAP_SYNC_FULL, cmd_noop, false},
    {"LOGOUT", IMAP_IN_ANY, true, IMAP_SYNC_NONE, cmd_logout, false},
    {"STARTTLS", IMAP_IN_NOT_AUTH, true, IMAP_SYNC_NONE, cmd_starttls, false},
    {"LOGIN", IMAP_IN_NOT_AUTH, false, IMAP_SYNC_NONE, cmd_login, false},
    {"AUTHENTICATE", IMAP_IN_NOT_AUTH, false, IMAP_SYNC_NONE, cmd_authenticate, false},
    {"ID", IMAP_IN_ANY, true, IMAP_SYNC_NONE, cmd_id, false},
    {"ENABLE", IMAP_IN_AUTH, true, IMAP_SYNC_NONE, cmd_enable, false},
    {"NAMESPACE", IMAP_IN_AUTHED, true, IMAP_SYNC_NONE, cmd_namespace, false},
    {"IDLE", IMAP_IN_AUTHED, false, IMAP_SYNC_NONE, cmd_idle, false},
    {NULL, 0, false, IMAP_SYNC_NONE, NULL, false},
};
