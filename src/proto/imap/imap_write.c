/* imap_write — replies and arguments shared by the IMAP command files. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/imap/imap_int.h"
#include "proto/imap/imap_utf7.h"

void imap_reply_set(struct imap_reply *r, enum imap_status st, const char *code, const char *fmt,
                    ...)
{
    r->status = st;
    snprintf(r->code, sizeof(r->code), "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
}

void imap_write_capabilities(struct imap_session *s, struct buf *out)
{
    bool plain_ok = s->tls || s->cfg->allow_plaintext_auth;
    buf_puts(out, "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT CHILDREN "
                  "LIST-EXTENDED LIST-STATUS SPECIAL-USE UIDPLUS MOVE CONDSTORE QRESYNC");
    buf_printf(out, " APPENDLIMIT=%zu", s->cfg->append_limit);
    if (s->state == IMAP_STATE_NOT_AUTH) {
        if (s->cfg->starttls_available && !s->tls)
            buf_puts(out, " STARTTLS");
        buf_puts(out, plain_ok ? " AUTH=PLAIN" : " LOGINDISABLED");
    }
}

void imap_write_string(struct buf *out, const char *data, size_t len)
{
    bool literal = len > 1000;
    for (size_t i = 0; i < len && !literal; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
            literal = true;
    }
    if (literal) {
        buf_printf(out, "{%zu}\r\n", len);
        buf_append(out, data, len);
        return;
    }
    buf_puts(out, "\"");
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '"' || data[i] == '\\')
            buf_puts(out, "\\");
        buf_append(out, &data[i], 1);
    }
    buf_puts(out, "\"");
}

void imap_write_nstring(struct buf *out, const char *data)
{
    if (!data)
        buf_puts(out, "NIL");
    else
        imap_write_string(out, data, strlen(data));
}

void imap_write_mailbox(struct buf *out, const char *utf8_name)
{
    struct buf b = BUF_INIT;
    if (imap_utf8_to_utf7(utf8_name, &b) < 0)
        imap_write_string(out, utf8_name, strlen(utf8_name));
    else
        imap_write_string(out, (const char *)buf_ptr(&b), buf_size(&b));
    buf_free(&b);
}

static const struct {
    uint32_t bit;
    const char *name;
} imap_sysflags[] = {
    {STORE_FLAG_SEEN, "\\Seen"},       {STORE_FLAG_ANSWERED, "\\Answered"},
    {STORE_FLAG_FLAGGED, "\\Flagged"}, {STORE_FLAG_DELETED, "\\Deleted"},
    {STORE_FLAG_DRAFT, "\\Draft"},
};

void imap_write_flags(struct buf *out, uint32_t flags, const char *keywords, bool recent)
{
    const char *sep = "";
    buf_puts(out, "(");
    for (size_t i = 0; i < sizeof(imap_sysflags) / sizeof(imap_sysflags[0]); i++)
        if (flags & imap_sysflags[i].bit) {
            buf_printf(out, "%s%s", sep, imap_sysflags[i].name);
            sep = " ";
        }
    if (recent) {
        buf_printf(out, "%s\\Recent", sep);
        sep = " ";
    }
    if (keywords && *keywords)
        buf_printf(out, "%s%s", sep, keywords);
    buf_puts(out, ")");
}

/* RFC 3501 9: flag-keyword is an atom; we accept atom characters only. */
static bool imap_keyword_ok(const char *k)
{
    if (!*k)
        return false;
    for (const char *p = k; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
            return false;
    }
    return true;
}

int imap_parse_flags(const struct imap_arg *arg, uint32_t *flags_r, char **keywords_r)
{
    const struct imap_arg *v = arg;
    size_t n = 1;
    if (arg->type == IMAP_ARG_LIST) {
        v = arg->list;
        n = arg->nlist;
    }
    struct buf kw = BUF_INIT;
    *flags_r = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].type != IMAP_ARG_ATOM)
            goto bad;
        const char *f = v[i].str;
        bool sys = false;
        for (size_t j = 0; j < sizeof(imap_sysflags) / sizeof(imap_sysflags[0]); j++)
            if (strcasecmp(f, imap_sysflags[j].name) == 0) {
                *flags_r |= imap_sysflags[j].bit;
                sys = true;
            }
        if (sys || strcasecmp(f, "\\Recent") == 0)
            continue; /* \Recent cannot be set (RFC 3501 2.3.2); ignore it */
        if (f[0] == '\\' || !imap_keyword_ok(f))
            goto bad;
        buf_printf(&kw, "%s%s", buf_size(&kw) ? " " : "", f);
    }
    *keywords_r = strdup(buf_size(&kw) ? buf_cstr(&kw) : "");
    buf_free(&kw);
    return *keywords_r ? 0 : -1;
bad:
    buf_free(&kw);
    return -1;
}

int imap_arg_mailbox(const struct imap_arg *arg, char *out, size_t n)
{
    const char *name = imap_arg_str(arg);
    if (!name || !*name)
        return -1;
    if (strcasecmp(name, "INBOX") == 0) {
        snprintf(out, n, "INBOX");
        return 0;
    }
    struct buf b = BUF_INIT;
    int rc = imap_utf7_to_utf8(name, &b);
    if (rc == 0 && buf_size(&b) < n) {
        memcpy(out, buf_ptr(&b), buf_size(&b));
        out[buf_size(&b)] = '\0';
    } else {
        rc = -1;
    }
    buf_free(&b);
    /* "INBOX/x" keeps INBOX's canonical case (RFC 3501 5.1). */
    if (rc == 0 && strncasecmp(out, "INBOX/", 6) == 0)
        memcpy(out, "INBOX", 5);
    return rc;
}
