/* imap_session — the session core: input, the command table, the request
 * cycle with the caller (see imap_session.h), tagged replies, IDLE and
 * AUTHENTICATE continuations, limits. Commands live in imap_cmd_*.c. */
#include "proto/imap/imap_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "proto/imap/imap_int.h"

/* Pre-authentication literals are small: a user name, a password. */
#define IMAP_PREAUTH_LITERAL_MAX 8192

static const struct imap_cmd_def *const imap_tables[] = {
    imap_cmds_core, imap_cmds_select, imap_cmds_mailbox,
    imap_cmds_fetch, imap_cmds_search, imap_cmds_store,
};

/* RFC 3501 9: these are bare command names; anything after them is a
 * syntax error. */
static bool imap_cmd_takes_no_args(const char *name)
{
    static const char *const bare[] = {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK",
                                       "CLOSE", "UNSELECT", "IDLE", "NAMESPACE", "EXPUNGE"};
    for (size_t i = 0; i < sizeof(bare) / sizeof(bare[0]); i++)
        if (strcmp(name, bare[i]) == 0)
            return true;
    return false;
}

static const char *const imap_state_names[] = {"not-authenticated", "authenticated",
                                               "selected", "logout"};

const char *imap_session_state_name(const struct imap_session *s)
{
    return imap_state_names[s->state];
}

static const struct imap_cmd_def *imap_cmd_find(const char *name)
{
    for (size_t t = 0; t < sizeof(imap_tables) / sizeof(imap_tables[0]); t++)
        for (const struct imap_cmd_def *d = imap_tables[t]; d->name; d++)
            if (strcasecmp(d->name, name) == 0)
                return d;
    return NULL;
}

struct imap_session *imap_session_new(const struct imap_session_config *cfg,
                                      const char *client_ip, const char *session_id, bool tls)
{
    struct imap_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = cfg;
    s->tls = tls;
    snprintf(s->ip, sizeof(s->ip), "%s", client_ip);
    snprintf(s->id, sizeof(s->id), "%s", session_id);
    struct imap_parser_limits lim = {
        .max_line = cfg->max_line,
        .max_literal = cfg->append_limit > 65536 ? cfg->append_limit : 65536,
    };
    s->parser = imap_parser_new(&lim);
    if (!s->parser) {
        free(s);
        return NULL;
    }
    return s;
}

void imap_session_free(struct imap_session **sp)
{
    struct imap_session *s = *sp;
    if (!s)
        return;
    imap_parser_free(&s->parser);
    buf_free(&s->held);
    buf_free(&s->ex);
    if (s->auth_line) {
        explicit_bzero(s->auth_line, strlen(s->auth_line));
        free(s->auth_line);
    }
    imap_view_clear(&s->sel);
    free(s);
    *sp = NULL;
}

void imap_session_start(struct imap_session *s, struct buf *out)
{
    buf_puts(out, "* OK [CAPABILITY ");
    imap_write_capabilities(s, out);
    buf_printf(out, "] %s correio IMAP4rev1 ready\r\n", s->cfg->hostname);
}

enum imap_request imap_session_request(const struct imap_session *s)
{
    return s->req;
}

static void imap_tagged(struct buf *out, const char *tag, const struct imap_reply *r)
{
    static const char *const names[] = {"OK", "NO", "BAD"};
    buf_printf(out, "%s %s ", tag, names[r->status]);
    if (r->code[0])
        buf_printf(out, "[%s] ", r->code);
    buf_printf(out, "%s\r\n", r->text);
}

/* A BAD reply caused by the client; too many end the session. */
static enum imap_session_status imap_bad(struct imap_session *s, struct buf *out, const char *tag,
                                         const char *text)
{
    buf_printf(out, "%s BAD %s\r\n", tag ? tag : "*", text);
    if (++s->bad >= s->cfg->max_bad_commands) {
        buf_puts(out, "* BYE Too many invalid commands\r\n");
        s->state = IMAP_STATE_LOGOUT;
        return IMAP_SESSION_CLOSE;
    }
    return IMAP_SESSION_CONTINUE;
}

/* Set up the command for execution, or answer at once what can be. */
static enum imap_session_status imap_dispatch(struct imap_session *s, struct imap_command *cmd,
                                              struct buf *out)
{
    const char *name = cmd->name;
    bool uid = false;
    if (strcmp(name, "UID") == 0) {
        if (cmd->nargs < 1 || cmd->args[0].type != IMAP_ARG_ATOM)
            return imap_bad(s, out, cmd->tag, "UID needs a command");
        name = cmd->args[0].str;
        uid = true;
    }
    const struct imap_cmd_def *def = imap_cmd_find(name);
    if (!def || (uid && !def->uid_ok))
        return imap_bad(s, out, cmd->tag, "Unknown command");
    if (!uid && imap_cmd_takes_no_args(def->name) && cmd->nargs > 0)
        return imap_bad(s, out, cmd->tag, "This command takes no arguments");
    if (!(def->states & (1u << s->state)))
        return imap_bad(s, out, cmd->tag,
                        s->state == IMAP_STATE_NOT_AUTH ? "Log in first"
                        : s->state == IMAP_STATE_AUTH   ? "Select a mailbox first"
                                                        : "Not allowed now");
    s->cmd = cmd;
    s->def = def;
    s->uid = uid;
    snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
    if (!def->immediate) {
        s->req = IMAP_REQ_EXECUTE;
        return IMAP_SESSION_CONTINUE;
    }
    struct imap_reply r = {.status = IMAP_OK};
    buf_reset(&s->ex);
    def->run(s, NULL, cmd, &r);
    buf_append(out, buf_ptr(&s->ex), buf_size(&s->ex));
    buf_reset(&s->ex);
    if (r.status != IMAP_NONE)
        imap_tagged(out, s->tag, &r);
    s->cmd = NULL;
    if (r.status == IMAP_BAD && ++s->bad >= s->cfg->max_bad_commands) {
        buf_puts(out, "* BYE Too many invalid commands\r\n");
        s->state = IMAP_STATE_LOGOUT;
    }
    return s->state == IMAP_STATE_LOGOUT ? IMAP_SESSION_CLOSE : IMAP_SESSION_CONTINUE;
}

/* A synchronizing literal was announced: accept ("+") or refuse it. */
static enum imap_session_status imap_literal(struct imap_session *s, const char *tag,
                                             const char *err, struct buf *out)
{
    const char *name = NULL;
    uint64_t size = 0;
    imap_parser_pending_literal(s->parser, &name, &size, NULL);
    bool append = name && strcmp(name, "APPEND") == 0;
    if (err || (append && size > s->cfg->append_limit)) {
        imap_parser_reject_literal(s->parser);
        buf_printf(out, "%s NO [TOOBIG] Literal too large\r\n", tag ? tag : "*");
        return IMAP_SESSION_CONTINUE;
    }
    if (s->state == IMAP_STATE_NOT_AUTH && size > IMAP_PREAUTH_LITERAL_MAX) {
        imap_parser_reject_literal(s->parser);
        return imap_bad(s, out, tag, "Literal too large before login");
    }
    buf_puts(out, "+ Ready for literal data\r\n");
    return IMAP_SESSION_CONTINUE;
}

/* IDLE and AUTHENTICATE read raw lines; everything else commands. */
static enum imap_session_status imap_process_line(struct imap_session *s, struct buf *out,
                                                  bool *more)
{
    char *line;
    size_t len;
    enum imap_parse_status ps = imap_parser_next_line(s->parser, &line, &len);
    *more = false;
    if (ps == IMAP_PARSE_NEED_MORE)
        return IMAP_SESSION_CONTINUE;
    if (s->auth_wait) {
        s->auth_wait = false;
        if (ps != IMAP_PARSE_LINE)
            return imap_bad(s, out, s->tag, "Line too long");
        s->auth_line = strndup(line, len);
        s->req = IMAP_REQ_EXECUTE;
        return IMAP_SESSION_CONTINUE;
    }
    /* idling */
    if (ps == IMAP_PARSE_LINE && strcasecmp(line, "DONE") == 0) {
        s->idle_done = true;
        s->req = IMAP_REQ_EXECUTE;
        return IMAP_SESSION_CONTINUE;
    }
    s->idling = false; /* RFC 2177: only DONE may come */
    *more = true;
    return imap_bad(s, out, s->tag, "Expected DONE");
}

static enum imap_session_status imap_process(struct imap_session *s, struct buf *out)
{
    while (s->req == IMAP_REQ_NONE) {
        if (s->state == IMAP_STATE_LOGOUT)
            return IMAP_SESSION_CLOSE;
        enum imap_session_status st;
        if (s->idling || s->auth_wait) {
            bool more;
            st = imap_process_line(s, out, &more);
            if (st == IMAP_SESSION_CLOSE || !more)
                return st;
            continue;
        }
        struct imap_command *cmd;
        const char *tag, *err;
        switch (imap_parser_next(s->parser, &cmd, &tag, &err)) {
        case IMAP_PARSE_NEED_MORE:
            return IMAP_SESSION_CONTINUE;
        case IMAP_PARSE_LITERAL_WAIT:
            st = imap_literal(s, tag, err, out);
            break;
        case IMAP_PARSE_ERROR:
            st = imap_bad(s, out, tag, err ? err : "Syntax error");
            break;
        case IMAP_PARSE_COMMAND:
            st = imap_dispatch(s, cmd, out);
            break;
        default:
            st = IMAP_SESSION_CONTINUE;
            break;
        }
        if (st == IMAP_SESSION_CLOSE)
            return st;
    }
    return IMAP_SESSION_CONTINUE;
}

enum imap_session_status imap_session_feed(struct imap_session *s, const void *data, size_t len,
                                           struct buf *out)
{
    if (s->req == IMAP_REQ_STARTTLS)
        return IMAP_SESSION_CONTINUE; /* sent in clear before the handshake: dropped */
    if (s->req != IMAP_REQ_NONE) {
        if (buf_append(&s->held, data, len) < 0)
            goto oom;
        return IMAP_SESSION_CONTINUE;
    }
    if (imap_parser_feed(s->parser, data, len) < 0)
        goto oom;
    return imap_process(s, out);
oom:
    buf_puts(out, "* BYE Out of memory\r\n");
    s->state = IMAP_STATE_LOGOUT;
    return IMAP_SESSION_CLOSE;
}

/* IDLE's DONE, or a change to report while idling. */
static void imap_execute_idle(struct imap_session *s, struct store *st)
{
    imap_sync(s, st, IMAP_SYNC_FULL);
    if (s->idle_done) {
        s->idle_done = false;
        s->idling = false;
        struct imap_reply r;
        imap_reply_set(&r, IMAP_OK, NULL, "IDLE terminated");
        imap_tagged(&s->ex, s->tag, &r);
    }
    s->idle_sync = false;
}

void imap_session_execute(struct imap_session *s, struct store *st)
{
    buf_reset(&s->ex);
    s->delay_ms = 0;
    if (s->idling) {
        imap_execute_idle(s, st);
        return;
    }
    struct imap_reply r = {.status = IMAP_OK};
    s->def->run(s, st, s->cmd, &r);
    if (r.status == IMAP_NONE)
        return; /* AUTHENTICATE waiting for its line, IDLE started */
    if (s->state == IMAP_STATE_SELECTED && s->def->sync != IMAP_SYNC_NONE)
        imap_sync(s, st, imap_cmd_sync_mode(s));
    imap_tagged(&s->ex, s->tag, &r);
    if (r.status == IMAP_BAD && ++s->bad >= s->cfg->max_bad_commands) {
        buf_puts(&s->ex, "* BYE Too many invalid commands\r\n");
        s->state = IMAP_STATE_LOGOUT;
    }
}

enum imap_session_status imap_session_execute_done(struct imap_session *s, struct buf *out)
{
    buf_append(out, buf_ptr(&s->ex), buf_size(&s->ex));
    buf_reset(&s->ex);
    s->req = IMAP_REQ_NONE;
    if (!s->idling && !s->auth_wait)
        s->cmd = NULL;
    if (s->state == IMAP_STATE_LOGOUT)
        return IMAP_SESSION_CLOSE;
    if (buf_size(&s->held)) {
        int rc = imap_parser_feed(s->parser, buf_ptr(&s->held), buf_size(&s->held));
        buf_reset(&s->held);
        if (rc < 0) {
            buf_puts(out, "* BYE Out of memory\r\n");
            s->state = IMAP_STATE_LOGOUT;
            return IMAP_SESSION_CLOSE;
        }
    }
    if (s->notified) {
        s->notified = false;
        if (s->idling && s->state == IMAP_STATE_SELECTED) {
            s->idle_sync = true;
            s->req = IMAP_REQ_EXECUTE;
            return IMAP_SESSION_CONTINUE;
        }
    }
    return imap_process(s, out);
}

unsigned imap_session_delay_ms(const struct imap_session *s)
{
    return s->delay_ms;
}

bool imap_session_take_changed(struct imap_session *s)
{
    bool c = s->changed;
    s->changed = false;
    return c;
}

enum imap_session_status imap_session_tls_done(struct imap_session *s, bool ok, struct buf *out)
{
    s->req = IMAP_REQ_NONE;
    if (!ok) {
        s->state = IMAP_STATE_LOGOUT;
        return IMAP_SESSION_CLOSE;
    }
    s->tls = true;
    imap_parser_reset(s->parser);
    return IMAP_SESSION_CONTINUE;
}

enum imap_session_status imap_session_notify(struct imap_session *s, struct buf *out)
{
    if (s->req != IMAP_REQ_NONE) {
        s->notified = true; /* looked at when the running command is done */
        return IMAP_SESSION_CONTINUE;
    }
    if (!s->idling || s->state != IMAP_STATE_SELECTED)
        return IMAP_SESSION_CONTINUE; /* reported with the next command */
    s->idle_sync = true;
    s->req = IMAP_REQ_EXECUTE;
    return IMAP_SESSION_CONTINUE;
}

enum imap_session_status imap_session_timeout(struct imap_session *s, struct buf *out)
{
    buf_puts(out, "* BYE Autologout; idle for too long\r\n");
    s->state = IMAP_STATE_LOGOUT;
    return IMAP_SESSION_CLOSE;
}

enum imap_session_status imap_session_shutdown(struct imap_session *s, struct buf *out)
{
    buf_puts(out, "* BYE Server shutting down\r\n");
    s->state = IMAP_STATE_LOGOUT;
    return IMAP_SESSION_CLOSE;
}

const char *imap_session_account(const struct imap_session *s)
{
    return s->state == IMAP_STATE_AUTH || s->state == IMAP_STATE_SELECTED ? s->account : NULL;
}
