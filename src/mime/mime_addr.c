/* mime_addr — RFC 5322 3.4 address lists with the obsolete syntax of 4.4.
 *
 * A recursive-descent parser over the lexer of mime_lex.c. Where the input
 * is broken, the choices (what becomes a display name, where parsing
 * resumes, which placeholders fill the gaps) follow Dovecot's
 * lib-mail/message-address.c, so that ENVELOPE matches what it answers.
 */
#include "mime/mime_addr.h"
#include "mime/mime_int.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    char *name, *route, *mailbox, *domain; /* malloc'ed or NULL */
    bool invalid;
};

struct actx {
    struct mime_lex l;
    struct buf comment; /* the last comment skipped */
    struct buf str;
    struct entry addr;
    struct mime_addr *head, *tail;
    bool fill;
    bool non_strict_dots;
    bool oom;
};

static char *sdup(struct actx *c, const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (!r) {
        c->oom = true;
        return NULL;
    }
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

static char *str_take(struct actx *c, const struct buf *b)
{
    return sdup(c, (const char *)buf_ptr(b), buf_size(b));
}

static void set(char **field, char *v)
{
    free(*field);
    *field = v;
}

static void entry_clear(struct entry *e)
{
    free(e->name);
    free(e->route);
    free(e->mailbox);
    free(e->domain);
    memset(e, 0, sizeof(*e));
}

/* Move the current entry to the list. */
static void add_address(struct actx *c, bool group_start, bool group_end)
{
    struct entry *e = &c->addr;
    size_t ln[4] = {e->name ? strlen(e->name) + 1 : 0, e->route ? strlen(e->route) + 1 : 0,
                    e->mailbox ? strlen(e->mailbox) + 1 : 0, e->domain ? strlen(e->domain) + 1 : 0};
    struct mime_addr *a = calloc(1, sizeof(*a) + ln[0] + ln[1] + ln[2] + ln[3]);
    if (!a) {
        c->oom = true;
        entry_clear(e);
        return;
    }
    char *p = (char *)(a + 1);
    char *src[4] = {e->name, e->route, e->mailbox, e->domain};
    char **dst[4] = {&a->name, &a->route, &a->mailbox, &a->host};
    for (int i = 0; i < 4; i++) {
        if (!src[i])
            continue;
        memcpy(p, src[i], ln[i]);
        *dst[i] = p;
        p += ln[i];
    }
    a->invalid = e->invalid;
    a->group_start = group_start;
    a->group_end = group_end;
    if (c->tail)
        c->tail->next = a;
    else
        c->head = a;
    c->tail = a;
    entry_clear(e);
}

/* Atoms separated by dots, where dots may lead, trail or repeat. */
static int parse_nonstrict_dot_atom(struct actx *c)
{
    int ret = -1;
    do {
        while (*c->l.p == '.') {
            if (buf_append(&c->str, ".", 1) < 0)
                c->oom = true;
            c->l.p++;
            if (c->l.p >= c->l.end)
                return 0; /* the "@domain" is missing, but the local part is fine */
            ret = 1;
        }
        if (*c->l.p == '@')
            break;
        ret = mime_lex_atom(&c->l, &c->str);
    } while (ret > 0 && *c->l.p == '.');
    return ret;
}

static int parse_local_part(struct actx *c)
{
    /* local-part = dot-atom / quoted-string / obs-local-part */
    buf_reset(&c->str);
    int ret;
    if (*c->l.p == '"')
        ret = mime_lex_quoted_string(&c->l, &c->str);
    else if (c->non_strict_dots)
        ret = parse_nonstrict_dot_atom(c);
    else
        ret = mime_lex_dot_atom(&c->l, &c->str);
    if (ret < 0)
        return -1;
    set(&c->addr.mailbox, str_take(c, &c->str));
    return ret;
}

static int parse_domain(struct actx *c)
{
    buf_reset(&c->str);
    int ret = mime_lex_domain(&c->l, &c->str);
    if (ret < 0)
        return -1;
    set(&c->addr.domain, str_take(c, &c->str));
    return ret;
}

static int parse_domain_list(struct actx *c)
{
    /* obs-domain-list = "@" domain *(*(CFWS / ",") [CFWS] "@" domain) */
    buf_reset(&c->str);
    for (;;) {
        if (c->l.p >= c->l.end)
            return 0;
        if (*c->l.p != '@')
            break;
        if (buf_size(&c->str) > 0 && buf_append(&c->str, ",", 1) < 0)
            c->oom = true;
        if (buf_append(&c->str, "@", 1) < 0)
            c->oom = true;
        int ret = mime_lex_domain(&c->l, &c->str);
        if (ret <= 0)
            return ret;
        while (mime_lex_skip_lwsp(&c->l) > 0 && *c->l.p == ',')
            c->l.p++;
    }
    set(&c->addr.route, str_take(c, &c->str));
    return 1;
}

static int parse_angle_addr(struct actx *c)
{
    /* "<" [ "@" route ":" ] local-part "@" domain ">" */
    c->l.p++;
    if (mime_lex_skip_lwsp(&c->l) <= 0)
        return -1;
    if (*c->l.p == '@') {
        if (parse_domain_list(c) > 0 && *c->l.p == ':') {
            c->l.p++;
        } else {
            if (c->fill)
                set(&c->addr.route, sdup(c, "INVALID_ROUTE", 13));
            if (c->l.p >= c->l.end)
                return -1;
            /* try to continue anyway */
        }
        if (mime_lex_skip_lwsp(&c->l) <= 0)
            return -1;
    }
    if (*c->l.p != '>') { /* "<>" holds no address */
        if (parse_local_part(c) <= 0)
            return -1;
        if (*c->l.p == '@' && parse_domain(c) <= 0)
            return -1;
    }
    if (*c->l.p != '>')
        return -1;
    c->l.p++;
    return mime_lex_skip_lwsp(&c->l);
}

static int parse_name_addr(struct actx *c)
{
    /* name-addr = [display-name] angle-addr */
    buf_reset(&c->str);
    if (mime_lex_phrase(&c->l, &c->str) <= 0 || *c->l.p != '<')
        return -1;
    set(&c->addr.name, buf_size(&c->str) ? str_take(c, &c->str) : NULL);
    if (parse_angle_addr(c) < 0) {
        if (c->fill)
            set(&c->addr.domain, sdup(c, "SYNTAX_ERROR", 12));
        c->addr.invalid = true;
    }
    return c->l.p < c->l.end ? 1 : 0;
}

static int parse_addr_spec(struct actx *c)
{
    /* addr-spec = local-part "@" domain */
    int ret, ret2 = -2;
    buf_reset(&c->comment);
    bool quoted = *c->l.p == '"';
    ret = parse_local_part(c);
    if (ret <= 0)
        c->addr.invalid = true;
    if (ret != 0 && c->l.p < c->l.end && *c->l.p == '@') {
        ret2 = parse_domain(c);
        if (ret2 <= 0)
            ret = ret2;
    }
    if (buf_size(&c->comment) > 0) {
        /* "user@host (Display Name)" */
        set(&c->addr.name, str_take(c, &c->comment));
    } else if (ret2 == -2) {
        /* a lone word is a mailbox, but a word followed by more words is a
         * display name without an address */
        if (buf_append(&c->str, " ", 1) < 0)
            c->oom = true;
        size_t len = buf_size(&c->str);
        (void)mime_lex_phrase(&c->l, &c->str);
        if (buf_size(&c->str) != len) {
            set(&c->addr.mailbox, NULL);
            set(&c->addr.name, str_take(c, &c->str));
        } else if (!quoted) {
            set(&c->addr.domain, sdup(c, "", 0));
        }
        c->addr.invalid = true;
        ret = -1;
    }
    return ret;
}

static void add_fixed_address(struct actx *c)
{
    if (!c->addr.mailbox) {
        if (c->fill)
            c->addr.mailbox = sdup(c, "MISSING_MAILBOX", 15);
        c->addr.invalid = true;
    }
    if (!c->addr.domain || !c->addr.domain[0]) {
        set(&c->addr.domain, c->fill ? sdup(c, "MISSING_DOMAIN", 14) : NULL);
        c->addr.invalid = true;
    }
    add_address(c, false, false);
}

static int parse_mailbox(struct actx *c)
{
    /* mailbox = name-addr / addr-spec */
    const uint8_t *start = c->l.p;
    int ret = parse_name_addr(c);
    if (ret < 0) {
        c->l.p = start;
        ret = parse_addr_spec(c);
        if (c->addr.invalid && !c->addr.name && c->addr.mailbox && !c->addr.domain) {
            c->addr.name = c->addr.mailbox;
            c->addr.mailbox = NULL;
        }
    }
    if (ret < 0)
        c->addr.invalid = true;
    add_fixed_address(c);
    return ret;
}

static int parse_group(struct actx *c)
{
    /* group = display-name ":" [mailbox-list / CFWS] ";" [CFWS] */
    buf_reset(&c->str);
    if (mime_lex_phrase(&c->l, &c->str) <= 0 || *c->l.p != ':')
        return -1;
    /* from here on it is a group, however broken */
    c->l.p++;
    int ret = mime_lex_skip_lwsp(&c->l);
    if (ret <= 0)
        c->addr.invalid = true;
    set(&c->addr.mailbox, str_take(c, &c->str));
    add_address(c, true, false);
    if (ret > 0 && *c->l.p != ';') {
        for (;;) {
            (void)parse_mailbox(c); /* a broken one: go on anyway */
            if (c->l.p >= c->l.end || *c->l.p != ',')
                break;
            c->l.p++;
            if (mime_lex_skip_lwsp(&c->l) <= 0) {
                ret = -1;
                break;
            }
        }
    }
    if (ret >= 0) {
        if (c->l.p >= c->l.end || *c->l.p != ';') {
            ret = -1;
        } else {
            c->l.p++;
            ret = mime_lex_skip_lwsp(&c->l);
        }
    }
    if (ret < 0)
        c->addr.invalid = true;
    add_address(c, false, true);
    return ret == 0 ? 0 : 1;
}

static int parse_address(struct actx *c)
{
    /* address = mailbox / group */
    const uint8_t *start = c->l.p;
    int ret = parse_group(c);
    if (ret < 0) {
        c->l.p = start;
        ret = parse_mailbox(c);
    }
    return ret;
}

static void parse_address_list(struct actx *c)
{
    /* address-list = (address *("," address)) / obs-addr-list */
    for (;;) {
        if (c->oom || parse_address(c) == 0)
            break;
        if (c->l.p >= c->l.end || *c->l.p != ',')
            break;
        c->l.p++;
        int ret = mime_lex_skip_lwsp(&c->l);
        if (ret <= 0) {
            if (ret < 0)
                add_fixed_address(c); /* ends with garbage */
            break;
        }
    }
}

int mime_addr_parse_flags(const uint8_t *value, size_t len, unsigned flags,
                          struct mime_addr **list_r)
{
    struct actx c = {.fill = (flags & MIME_ADDR_FILL_MISSING) != 0,
                     .non_strict_dots = (flags & MIME_ADDR_NON_STRICT_DOTS) != 0};
    *list_r = NULL;
    mime_lex_init(&c.l, value ? value : (const uint8_t *)"", value ? len : 0, &c.comment);
    if (mime_lex_skip_lwsp(&c.l) > 0)
        parse_address_list(&c);
    entry_clear(&c.addr);
    buf_free(&c.comment);
    buf_free(&c.str);
    if (c.oom || c.l.oom) {
        mime_addr_free(&c.head);
        return -1;
    }
    *list_r = c.head;
    return 0;
}

int mime_addr_parse(const uint8_t *value, size_t len, struct mime_addr **list_r)
{
    return mime_addr_parse_flags(value, len, 0, list_r);
}

void mime_addr_free(struct mime_addr **list)
{
    if (!list)
        return;
    struct mime_addr *a = *list;
    while (a) {
        struct mime_addr *next = a->next;
        free(a);
        a = next;
    }
    *list = NULL;
}

size_t mime_addr_count(const struct mime_addr *list)
{
    size_t n = 0;
    for (; list; list = list->next)
        n += !list->group_start && !list->group_end;
    return n;
}
