/* imap_parser — see imap_parser.h.
 *
 * How it works: input is buffered in `in`. A command is a first line
 * ("tag SP name ...") and, for each literal that ends a line, the literal's
 * bytes followed by one more line. A line is tokenized only once it is
 * complete (its LF has arrived), so a line's tokens never depend on how the
 * bytes were split; the tokens of a command accumulate in a stack of list
 * builders (stack[0] holds the top-level arguments) across its lines and
 * literals. Literal bytes are copied out of `in` as they arrive.
 *
 * Errors: a bad command is dropped and the rest of its current line
 * skipped. When that line ends with a non-synchronizing literal "{n+}",
 * the client sends the n bytes anyway, so they are skipped too, and the
 * line after them (RFC 7888 4); a synchronizing literal is never sent
 * without our "+" (RFC 3501 7.5).
 */
#include "proto/imap/imap_parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMAP_DEF_MAX_LINE 65536
#define IMAP_DEF_MAX_LITERAL (64u * 1024 * 1024)
#define IMAP_DEF_MAX_DEPTH 16
#define IMAP_DEF_MAX_ARGS 10000
/* Bytes kept from the end of a skipped line, to spot a "{n+}" there. */
#define IMAP_TAIL_MAX 32

enum parser_state {
    PS_LINE,         /* waiting for / tokenizing a line */
    PS_LITERAL_WAIT, /* a synchronizing literal was announced; the caller decides */
    PS_LITERAL,      /* reading literal bytes */
    PS_SKIP_LINE,    /* discarding up to the end of a line */
    PS_SKIP_LITERAL, /* discarding the bytes of a refused non-sync literal */
};

struct builder {
    struct imap_arg *items;
    size_t n, cap;
};

struct imap_parser {
    struct imap_parser_limits lim;
    struct buf in;
    size_t scanned; /* unread bytes already searched for LF */
    enum parser_state st;

    /* the command being parsed */
    bool in_cmd; /* tag and name parsed, stack[0] exists */
    char *tag;
    char *name;
    struct builder *stack;
    size_t nstack, stack_cap;
    size_t nargs;    /* arguments so far, nested ones included */
    size_t text_len; /* bytes of its lines so far (literals excluded) */

    /* the literal announced or being read */
    uint64_t lit_size;
    bool lit_sync, lit8;
    char *lit;
    size_t lit_got, lit_cap;

    /* skipping */
    uint64_t skip_left;
    bool skip_raw; /* the line skipped is a raw line (next_line): no literals */
    char tail[IMAP_TAIL_MAX];
    size_t tail_len;

    /* results, valid until the next call */
    struct imap_command cmd;
    bool have_cmd;
    char *line;
    char *err_tag;
};

enum line_result { LR_COMPLETE, LR_LITERAL, LR_ERROR };

static const char ERR_OOM[] = "out of memory";
static const char ERR_TOO_LONG[] = "line too long";
static const char ERR_LIT_TOO_LARGE[] = "literal too large";

/* --- character classes ------------------------------------------------------ */

/* The liberal atom of imap_parser.h: printable US-ASCII except SP ( ) { ". */
static bool is_atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

/* RFC 3501 9: tag = 1*<any ASTRING-CHAR except "+">. ASTRING-CHAR is
 * ATOM-CHAR or "]"; ATOM-CHAR excludes atom-specials: ( ) { SP CTL % * " \ ]. */
static bool is_tag_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\+", c);
}

/* A command name: RFC 3501 ATOM-CHAR. */
static bool is_name_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c);
}

/* --- argument trees ------------------------------------------------------------ */

static void args_free(struct imap_arg *args, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(args[i].str);
        if (args[i].type == IMAP_ARG_LIST)
            args_free(args[i].list, args[i].nlist);
    }
    free(args);
}

static void command_free(struct imap_command *c)
{
    free(c->tag);
    free(c->name);
    args_free(c->args, c->nargs);
    memset(c, 0, sizeof(*c));
}

/* Forget the previous call's results. */
static void results_free(struct imap_parser *p)
{
    if (p->have_cmd) {
        command_free(&p->cmd);
        p->have_cmd = false;
    }
    free(p->line);
    p->line = NULL;
    free(p->err_tag);
    p->err_tag = NULL;
}

/* Drop the half-parsed command; its tag moves to err_tag for the report. */
static void command_drop(struct imap_parser *p)
{
    free(p->err_tag);
    p->err_tag = p->tag;
    p->tag = NULL;
    free(p->name);
    p->name = NULL;
    for (size_t i = 0; i < p->nstack; i++)
        args_free(p->stack[i].items, p->stack[i].n);
    p->nstack = 0;
    p->in_cmd = false;
    p->nargs = 0;
    p->text_len = 0;
    free(p->lit);
    p->lit = NULL;
    p->lit_got = p->lit_cap = 0;
}

static int stack_push(struct imap_parser *p)
{
    if (p->nstack == p->stack_cap) {
        size_t cap = p->stack_cap ? p->stack_cap * 2 : 8;
        struct builder *s = realloc(p->stack, cap * sizeof(*s));
        if (!s)
            return -1;
        p->stack = s;
        p->stack_cap = cap;
    }
    memset(&p->stack[p->nstack++], 0, sizeof(struct builder));
    return 0;
}

/* Free what *a owns (not a itself). */
static void arg_release(struct imap_arg *a)
{
    free(a->str);
    if (a->type == IMAP_ARG_LIST)
        args_free(a->list, a->nlist);
}

/* Append *a to the innermost open list. On failure what *a owns is freed. */
static const char *arg_add(struct imap_parser *p, struct imap_arg *a)
{
    struct builder *b = &p->stack[p->nstack - 1];
    if (p->nargs >= p->lim.max_args) {
        arg_release(a);
        return "too many arguments";
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        struct imap_arg *items = realloc(b->items, cap * sizeof(*items));
        if (!items) {
            arg_release(a);
            return ERR_OOM;
        }
        b->items = items;
        b->cap = cap;
    }
    b->items[b->n++] = *a;
    p->nargs++;
    return NULL;
}

static const char *arg_add_string(struct imap_parser *p, enum imap_arg_type type, const char *s,
                                  size_t len)
{
    struct imap_arg a = {.type = type, .len = len};
    a.str = malloc(len + 1);
    if (!a.str)
        return ERR_OOM;
    memcpy(a.str, s, len);
    a.str[len] = '\0';
    return arg_add(p, &a);
}

/* --- tokens ----------------------------------------------------------------------- */

/* Length of a bracketed section starting at s[0] == '[', through its "]";
 * 0 when it is not closed on this line (or holds what a section cannot). */
static size_t bracket_len(const char *s, size_t n)
{
    size_t depth = 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ']' && depth == 0)
            return i + 1;
        if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (depth == 0)
                return 0;
            depth--;
        } else if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
                unsigned char q = (unsigned char)s[i];
                if (q < 0x20 || q >= 0x7f) /* header names are US-ASCII */
                    return 0;
                if (q == '\\') {
                    if (i + 1 >= n || (s[i + 1] != '"' && s[i + 1] != '\\'))
                        return 0;
                    i++;
                }
            }
            if (i >= n)
                return 0;
        } else if (c != ' ' && (!is_atom_char(c) || c == '[' || c == ']')) {
            return 0;
        }
    }
    return 0;
}

/* Length of the atom at s (0 when s[0] cannot start one). */
static size_t atom_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == '[') {
            size_t b = bracket_len(s + i, n - i);
            if (b == 0)
                goto plain;
            i += b;
            continue;
        }
        if (!is_atom_char((unsigned char)s[i]))
            break;
        i++;
    }
    return i;
plain:
    /* An unclosed "[": the atom is just its atom characters. */
    for (i = 0; i < n && is_atom_char((unsigned char)s[i]); i++)
        ;
    return i;
}

/* The quoted string starting at s[*i] == '"'; on success *i is past it. */
static const char *quoted_parse(struct imap_parser *p, const char *s, size_t n, size_t *i)
{
    size_t start = *i + 1, len = 0, j;
    for (j = start; j < n && s[j] != '"'; j++) {
        unsigned char c = (unsigned char)s[j];
        if (c == '\\') {
            if (j + 1 >= n)
                break;
            if (s[j + 1] != '"' && s[j + 1] != '\\')
                return "invalid escape in quoted string";
            j++;
        } else if (c == '\0' || c == '\r' || c == '\n') {
            return "invalid character in quoted string";
        }
        len++;
    }
    if (j >= n)
        return "unterminated quoted string";
    struct imap_arg a = {.type = IMAP_ARG_QUOTED, .len = len};
    a.str = malloc(len + 1);
    if (!a.str)
        return ERR_OOM;
    size_t o = 0;
    for (size_t k = start; k < j; k++) {
        if (s[k] == '\\')
            k++;
        a.str[o++] = s[k];
    }
    a.str[o] = '\0';
    *i = j + 1;
    return arg_add(p, &a);
}

/* "{n}", "{n+}", "~{n}" or "~{n+}" exactly filling s[0..n); fills the
 * literal fields. */
static const char *literal_spec_parse(struct imap_parser *p, const char *s, size_t n)
{
    size_t i = 0;
    bool lit8 = false;
    if (s[i] == '~') {
        lit8 = true;
        i++;
    }
    if (i >= n || s[i] != '{')
        return "invalid literal";
    i++;
    uint64_t v = 0;
    size_t digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return "invalid literal size";
        v = v * 10 + (uint64_t)(s[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0)
        return "invalid literal";
    bool sync = true;
    if (i < n && s[i] == '+') {
        sync = false;
        i++;
    }
    if (i >= n || s[i] != '}')
        return "invalid literal";
    if (i + 1 != n)
        return "literal must end the line";
    if (p->nargs >= p->lim.max_args)
        return "too many arguments";
    p->lit_size = v;
    p->lit_sync = sync;
    p->lit8 = lit8;
    return NULL;
}

/* Does the line s[0..n) (CR allowed at its end) end with a non-sync
 * literal "{n+}"? Then *size_r is n. */
static bool ends_with_nonsync_literal(const char *s, size_t n, uint64_t *size_r)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n < 4 || s[n - 1] != '}' || s[n - 2] != '+')
        return false;
    size_t i = n - 2;
    uint64_t v = 0, mul = 1;
    size_t digits = 0;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') {
        if (digits == 19)
            return false;
        v += (uint64_t)(s[i - 1] - '0') * mul;
        mul *= 10;
        digits++;
        i--;
    }
    if (digits == 0 || i == 0 || s[i - 1] != '{')
        return false;
    *size_r = v;
    return true;
}

/* "tag SP name": starts a command. */
static const char *command_start(struct imap_parser *p, const char *s, size_t n, size_t *i)
{
    size_t t = 0;
    if (n == 0)
        return "empty command line";
    while (t < n && is_tag_char((unsigned char)s[t]))
        t++;
    if (t == 0 || (t < n && s[t] != ' '))
        return "missing or invalid tag";
    p->tag = strndup(s, t);
    if (!p->tag)
        return ERR_OOM;
    while (t < n && s[t] == ' ')
        t++;
    size_t name = t;
    while (t < n && is_name_char((unsigned char)s[t]))
        t++;
    if (t == name)
        return t == n ? "missing command name" : "invalid command name";
    if (t < n && s[t] != ' ')
        return "invalid command name";
    p->name = strndup(s + name, t - name);
    if (!p->name)
        return ERR_OOM;
    for (char *c = p->name; *c; c++) {
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    }
    if (stack_push(p) < 0)
        return ERR_OOM;
    p->in_cmd = true;
    *i = t;
    return NULL;
}

static const char *list_close(struct imap_parser *p)
{
    if (p->nstack <= 1)
        return "unexpected \")\"";
    struct builder b = p->stack[--p->nstack];
    struct imap_arg a = {.type = IMAP_ARG_LIST, .list = b.items, .nlist = b.n};
    return arg_add(p, &a);
}

/* Tokenize one complete line s[0..n) (without CRLF) into the command. */
static enum line_result line_parse(struct imap_parser *p, const char *s, size_t n,
                                   const char **err_r)
{
    size_t i = 0;
    const char *err = NULL;
    bool sep_ok = false; /* may an argument start here? */

    if (!p->in_cmd && (err = command_start(p, s, n, &i)) != NULL)
        goto fail;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ') {
            sep_ok = true;
            i++;
            continue;
        }
        if (c == ')') {
            if ((err = list_close(p)) != NULL)
                goto fail;
            sep_ok = false;
            i++;
            continue;
        }
        if (!sep_ok) {
            err = c >= 0x80               ? "8-bit characters outside a quoted string"
                  : c < 0x20 || c == 0x7f ? "invalid character"
                                          : "missing space between arguments";
            goto fail;
        }
        if (c == '(') {
            if (p->nstack > p->lim.max_depth) {
                err = "lists nested too deeply";
                goto fail;
            }
            if (stack_push(p) < 0) {
                err = ERR_OOM;
                goto fail;
            }
            i++;
            continue;
        }
        if (c == '"') {
            if ((err = quoted_parse(p, s, n, &i)) != NULL)
                goto fail;
        } else if (c == '{' || (c == '~' && i + 1 < n && s[i + 1] == '{')) {
            if ((err = literal_spec_parse(p, s + i, n - i)) != NULL)
                goto fail;
            return LR_LITERAL;
        } else {
            size_t len = atom_len(s + i, n - i);
            if (len == 0) {
                err = c >= 0x80 ? "8-bit characters outside a quoted string" : "invalid character";
                goto fail;
            }
            enum imap_arg_type type = IMAP_ARG_ATOM;
            if (len == 3 && strncasecmp(s + i, "NIL", 3) == 0)
                type = IMAP_ARG_NIL;
            if ((err = arg_add_string(p, type, s + i, len)) != NULL)
                goto fail;
            i += len;
        }
        sep_ok = false;
    }
    if (p->nstack > 1) {
        err = "missing \")\"";
        goto fail;
    }
    return LR_COMPLETE;
fail:
    *err_r = err;
    return LR_ERROR;
}

/* --- buffer handling ---------------------------------------------------------------- */

static void in_consume(struct imap_parser *p, size_t n)
{
    buf_consume(&p->in, n);
    p->scanned = 0;
}

static void tail_add(struct imap_parser *p, const uint8_t *d, size_t n)
{
    if (n >= IMAP_TAIL_MAX) {
        memcpy(p->tail, d + n - IMAP_TAIL_MAX, IMAP_TAIL_MAX);
        p->tail_len = IMAP_TAIL_MAX;
        return;
    }
    if (p->tail_len + n > IMAP_TAIL_MAX) {
        size_t drop = p->tail_len + n - IMAP_TAIL_MAX;
        memmove(p->tail, p->tail + drop, p->tail_len - drop);
        p->tail_len -= drop;
    }
    memcpy(p->tail + p->tail_len, d, n);
    p->tail_len += n;
}

/* After a line (ending s[0..n)) was thrown away: skip a non-sync literal
 * that ended it, else go on with the next command. */
static void after_bad_line(struct imap_parser *p, const char *s, size_t n)
{
    uint64_t size;
    if (ends_with_nonsync_literal(s, n, &size)) {
        p->skip_left = size;
        p->st = PS_SKIP_LITERAL;
    } else {
        p->st = PS_LINE;
    }
}

/* Run the skipping states. true when back at PS_LINE, false when more
 * input is needed. */
static bool skip_run(struct imap_parser *p)
{
    for (;;) {
        const uint8_t *d = buf_ptr(&p->in);
        size_t avail = buf_size(&p->in);
        if (p->st == PS_SKIP_LITERAL) {
            size_t take = p->skip_left < avail ? (size_t)p->skip_left : avail;
            in_consume(p, take);
            p->skip_left -= take;
            if (p->skip_left > 0)
                return false;
            p->st = PS_SKIP_LINE;
            p->tail_len = 0;
        } else if (p->st == PS_SKIP_LINE) {
            const uint8_t *lf = memchr(d, '\n', avail);
            if (!lf) {
                tail_add(p, d, avail);
                in_consume(p, avail);
                return false;
            }
            tail_add(p, d, (size_t)(lf - d));
            in_consume(p, (size_t)(lf - d) + 1);
            if (p->skip_raw)
                p->st = PS_LINE;
            else
                after_bad_line(p, p->tail, p->tail_len);
            p->skip_raw = false;
            p->tail_len = 0;
        } else {
            return true;
        }
    }
}

/* The tag at the start of a partial first line, for "line too long". */
static char *partial_tag(const uint8_t *d, size_t n)
{
    size_t t = 0;
    while (t < n && is_tag_char(d[t]))
        t++;
    if (t == 0 || t >= n || d[t] != ' ')
        return NULL;
    return strndup((const char *)d, t);
}

/* A line over max_line that has no LF yet: report it and skip the rest. */
static void too_long_partial(struct imap_parser *p)
{
    const uint8_t *d = buf_ptr(&p->in);
    size_t avail = buf_size(&p->in);
    /* Look for the tag in the first max_line bytes only, as line_complete()
     * does, so that the report does not depend on how input was split. */
    char *tag =
        p->in_cmd ? NULL : partial_tag(d, avail < p->lim.max_line ? avail : p->lim.max_line);
    command_drop(p);
    if (tag) {
        free(p->err_tag);
        p->err_tag = tag;
    }
    p->st = PS_SKIP_LINE;
    p->tail_len = 0;
    tail_add(p, d, avail);
    in_consume(p, avail);
}

/* Start reading an accepted literal. */
static const char *literal_start(struct imap_parser *p)
{
    p->lit_got = 0;
    p->lit_cap = p->lit_size < 4096 ? (size_t)p->lit_size + 1 : 4096;
    p->lit = malloc(p->lit_cap);
    if (!p->lit)
        return ERR_OOM;
    p->st = PS_LITERAL;
    return NULL;
}

/* Copy what has arrived of the literal. 1 when complete, 0 when more is
 * needed, -1 on OOM. */
static int literal_read(struct imap_parser *p)
{
    size_t avail = buf_size(&p->in);
    uint64_t need = p->lit_size - p->lit_got;
    size_t take = need < avail ? (size_t)need : avail;
    if (p->lit_got + take + 1 > p->lit_cap) {
        size_t cap = p->lit_cap;
        while (cap < p->lit_got + take + 1)
            cap *= 2;
        if (cap > p->lit_size + 1)
            cap = (size_t)p->lit_size + 1;
        char *l = realloc(p->lit, cap);
        if (!l)
            return -1;
        p->lit = l;
        p->lit_cap = cap;
    }
    memcpy(p->lit + p->lit_got, buf_ptr(&p->in), take);
    p->lit_got += take;
    in_consume(p, take);
    if (p->lit_got < p->lit_size)
        return 0;
    p->lit[p->lit_got] = '\0';
    return 1;
}

/* --- public API ------------------------------------------------------------------------ */

struct imap_parser *imap_parser_new(const struct imap_parser_limits *lim)
{
    struct imap_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (lim)
        p->lim = *lim;
    if (p->lim.max_line == 0)
        p->lim.max_line = IMAP_DEF_MAX_LINE;
    if (p->lim.max_literal == 0)
        p->lim.max_literal = IMAP_DEF_MAX_LITERAL;
    if (p->lim.max_depth == 0)
        p->lim.max_depth = IMAP_DEF_MAX_DEPTH;
    if (p->lim.max_args == 0)
        p->lim.max_args = IMAP_DEF_MAX_ARGS;
    buf_init(&p->in);
    p->st = PS_LINE;
    return p;
}

void imap_parser_free(struct imap_parser **pp)
{
    struct imap_parser *p = pp ? *pp : NULL;
    if (!p)
        return;
    results_free(p);
    command_drop(p);
    free(p->err_tag);
    free(p->stack);
    buf_free(&p->in);
    free(p);
    *pp = NULL;
}

int imap_parser_feed(struct imap_parser *p, const void *data, size_t len)
{
    return buf_append(&p->in, data, len);
}

size_t imap_parser_buffered(const struct imap_parser *p)
{
    return buf_size(&p->in);
}

void imap_parser_reset(struct imap_parser *p)
{
    results_free(p);
    command_drop(p);
    free(p->err_tag);
    p->err_tag = NULL;
    buf_reset(&p->in);
    p->scanned = 0;
    p->st = PS_LINE;
    p->skip_left = 0;
    p->skip_raw = false;
    p->tail_len = 0;
}

void imap_parser_reject_literal(struct imap_parser *p)
{
    if (p->st != PS_LITERAL_WAIT)
        return;
    results_free(p);
    command_drop(p);
    p->st = PS_LINE;
}

bool imap_parser_pending_literal(const struct imap_parser *p, const char **name_r, uint64_t *size_r,
                                 bool *literal8_r)
{
    if (p->st != PS_LITERAL_WAIT)
        return false;
    if (name_r)
        *name_r = p->name;
    if (size_r)
        *size_r = p->lit_size;
    if (literal8_r)
        *literal8_r = p->lit8;
    return true;
}

/* Report an error for the command being parsed; it is dropped. */
static enum imap_parse_status report_error(struct imap_parser *p, const char *err,
                                           const char **tag_r, const char **err_r)
{
    command_drop(p);
    *tag_r = p->err_tag;
    *err_r = err;
    return IMAP_PARSE_ERROR;
}

/* A complete line of length linelen (LF included) is at the front of in. */
static enum imap_parse_status line_complete(struct imap_parser *p, size_t linelen,
                                            struct imap_command **cmd_r, const char **tag_r,
                                            const char **err_r)
{
    const char *s = (const char *)buf_ptr(&p->in);
    size_t n = linelen - 1;
    if (n > 0 && s[n - 1] == '\r')
        n--;
    const char *err = NULL;
    enum line_result r;
    if (p->text_len + linelen > p->lim.max_line) {
        err = ERR_TOO_LONG;
        r = LR_ERROR;
        if (!p->in_cmd) {
            /* the window too_long_partial() would have seen */
            free(p->tag);
            p->tag = partial_tag((const uint8_t *)s, n < p->lim.max_line ? n : p->lim.max_line);
        }
    } else {
        r = line_parse(p, s, n, &err);
    }
    p->text_len += linelen;
    if (r == LR_ERROR) {
        after_bad_line(p, s, linelen - 1); /* with its CR, as skip_run() sees it */
        in_consume(p, linelen);
        return report_error(p, err, tag_r, err_r);
    }
    in_consume(p, linelen);
    if (r == LR_COMPLETE) {
        p->cmd.tag = p->tag;
        p->cmd.name = p->name;
        p->cmd.args = p->stack[0].items;
        p->cmd.nargs = p->stack[0].n;
        p->have_cmd = true;
        p->tag = p->name = NULL;
        p->nstack = 0;
        command_drop(p);
        *cmd_r = &p->cmd;
        return IMAP_PARSE_COMMAND;
    }
    /* LR_LITERAL */
    if (p->lit_sync) {
        p->st = PS_LITERAL_WAIT;
        *tag_r = p->tag;
        *err_r = p->lit_size > p->lim.max_literal ? ERR_LIT_TOO_LARGE : NULL;
        return IMAP_PARSE_LITERAL_WAIT;
    }
    if (p->lit_size > p->lim.max_literal) {
        /* RFC 7888 4: the bytes come anyway; read and discard them. */
        p->skip_left = p->lit_size;
        p->st = PS_SKIP_LITERAL;
        return report_error(p, ERR_LIT_TOO_LARGE, tag_r, err_r);
    }
    if ((err = literal_start(p)) != NULL) {
        p->skip_left = p->lit_size;
        p->st = PS_SKIP_LITERAL;
        return report_error(p, err, tag_r, err_r);
    }
    return IMAP_PARSE_NEED_MORE; /* the caller's loop comes back to PS_LITERAL */
}

enum imap_parse_status imap_parser_next(struct imap_parser *p, struct imap_command **cmd_r,
                                        const char **tag_r, const char **err_r)
{
    results_free(p);
    *cmd_r = NULL;
    *tag_r = NULL;
    *err_r = NULL;
    for (;;) {
        switch (p->st) {
        case PS_SKIP_LINE:
        case PS_SKIP_LITERAL:
            if (!skip_run(p))
                return IMAP_PARSE_NEED_MORE;
            break;
        case PS_LITERAL_WAIT:
            if (p->lit_size > p->lim.max_literal) {
                p->st = PS_LINE;
                return report_error(p, ERR_LIT_TOO_LARGE, tag_r, err_r);
            }
            if (literal_start(p) != NULL) {
                p->skip_left = p->lit_size;
                p->st = PS_SKIP_LITERAL;
                return report_error(p, ERR_OOM, tag_r, err_r);
            }
            break;
        case PS_LITERAL: {
            int r = literal_read(p);
            if (r == 0)
                return IMAP_PARSE_NEED_MORE;
            if (r < 0) {
                p->skip_left = p->lit_size - p->lit_got;
                p->st = PS_SKIP_LITERAL;
                return report_error(p, ERR_OOM, tag_r, err_r);
            }
            struct imap_arg a = {.type = IMAP_ARG_LITERAL,
                                 .str = p->lit,
                                 .len = (size_t)p->lit_size,
                                 .literal8 = p->lit8};
            p->lit = NULL;
            p->lit_got = p->lit_cap = 0;
            p->st = PS_LINE;
            const char *err = arg_add(p, &a);
            if (err) {
                p->st = PS_SKIP_LINE;
                p->tail_len = 0;
                return report_error(p, err, tag_r, err_r);
            }
            break;
        }
        case PS_LINE: {
            const uint8_t *d = buf_ptr(&p->in);
            size_t avail = buf_size(&p->in);
            const uint8_t *lf = memchr(d + p->scanned, '\n', avail - p->scanned);
            if (!lf) {
                p->scanned = avail;
                if (p->text_len + avail >= p->lim.max_line) {
                    too_long_partial(p);
                    *tag_r = p->err_tag;
                    *err_r = ERR_TOO_LONG;
                    return IMAP_PARSE_ERROR;
                }
                return IMAP_PARSE_NEED_MORE;
            }
            enum imap_parse_status st = line_complete(p, (size_t)(lf - d) + 1, cmd_r, tag_r, err_r);
            if (st != IMAP_PARSE_NEED_MORE)
                return st;
            break;
        }
        }
    }
}

enum imap_parse_status imap_parser_next_line(struct imap_parser *p, char **line_r, size_t *len_r)
{
    results_free(p);
    *line_r = NULL;
    *len_r = 0;
    if ((p->st == PS_SKIP_LINE || p->st == PS_SKIP_LITERAL) && !skip_run(p))
        return IMAP_PARSE_NEED_MORE;
    if (p->st != PS_LINE || p->in_cmd)
        return IMAP_PARSE_ERROR;
    const uint8_t *d = buf_ptr(&p->in);
    size_t avail = buf_size(&p->in);
    const uint8_t *lf = memchr(d + p->scanned, '\n', avail - p->scanned);
    if (!lf) {
        p->scanned = avail;
        if (avail >= p->lim.max_line) {
            p->st = PS_SKIP_LINE;
            p->skip_raw = true;
            p->tail_len = 0;
            in_consume(p, avail);
            return IMAP_PARSE_ERROR;
        }
        return IMAP_PARSE_NEED_MORE;
    }
    size_t linelen = (size_t)(lf - d) + 1;
    if (linelen > p->lim.max_line) {
        in_consume(p, linelen);
        return IMAP_PARSE_ERROR;
    }
    size_t n = linelen - 1;
    if (n > 0 && d[n - 1] == '\r')
        n--;
    p->line = malloc(n + 1);
    if (!p->line)
        return IMAP_PARSE_ERROR;
    memcpy(p->line, d, n);
    p->line[n] = '\0';
    in_consume(p, linelen);
    *line_r = p->line;
    *len_r = n;
    return IMAP_PARSE_LINE;
}

/* --- argument helpers ------------------------------------------------------------------- */

const char *imap_arg_str(const struct imap_arg *a)
{
    if (a->type == IMAP_ARG_LIST || !a->str)
        return NULL;
    if (memchr(a->str, '\0', a->len))
        return NULL;
    return a->str;
}

bool imap_arg_atom_is(const struct imap_arg *a, const char *word)
{
    return a->type == IMAP_ARG_ATOM && strcasecmp(a->str, word) == 0;
}

/* --- FETCH section specs (RFC 3501 9 "section", RFC 3516 "section-binary") ---------- */

/* s starts with word, ASCII case-insensitively: length of word, else 0. */
static size_t word_at(const char *s, const char *word)
{
    size_t n = strlen(word);
    return strncasecmp(s, word, n) == 0 ? n : 0;
}

/* number: up to 4294967295; nz: no leading zero, not 0. */
static const char *number_parse(const char *s, bool nz, uint32_t *v_r)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return NULL;
    if (*p == '0' && (nz || (p[1] >= '0' && p[1] <= '9')))
        return NULL;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return NULL;
    }
    *v_r = (uint32_t)v;
    return p;
}

/* " (name name ...)" after HEADER.FIELDS[.NOT]. */
static const char *section_fields_parse(const char *s, struct imap_section *r)
{
    if (s[0] != ' ' || s[1] != '(')
        return NULL;
    s += 2;
    size_t cap = 0;
    for (;;) {
        const char *start = s, *end;
        size_t len;
        bool quoted = *s == '"';
        if (quoted) {
            start = ++s;
            len = 0;
            for (; *s && *s != '"'; s++, len++) {
                if (*s == '\\') {
                    if (s[1] != '"' && s[1] != '\\')
                        return NULL;
                    s++;
                }
            }
            if (*s != '"')
                return NULL;
            end = s++;
        } else {
            while (is_name_char((unsigned char)*s))
                s++;
            end = s;
            len = (size_t)(end - start);
        }
        if (len == 0)
            return NULL;
        if (r->nfields == cap) {
            cap = cap ? cap * 2 : 8;
            char **f = realloc(r->fields, cap * sizeof(*f));
            if (!f)
                return NULL;
            r->fields = f;
        }
        char *name = malloc(len + 1);
        if (!name)
            return NULL;
        size_t o = 0;
        for (const char *c = start; c < end; c++) {
            if (quoted && *c == '\\')
                c++;
            name[o++] = *c;
        }
        name[o] = '\0';
        r->fields[r->nfields++] = name;
        if (*s == ')')
            return s + 1;
        if (*s != ' ')
            return NULL;
        s++;
    }
}

/* The text after part numbers (or alone): HEADER, HEADER.FIELDS[.NOT] (...),
 * TEXT, MIME. */
static const char *section_text_parse(const char *s, struct imap_section *r)
{
    size_t n;
    if ((n = word_at(s, "HEADER.FIELDS.NOT")) != 0) {
        r->text = IMAP_SECTION_TEXT_HEADER_FIELDS_NOT;
        return section_fields_parse(s + n, r);
    }
    if ((n = word_at(s, "HEADER.FIELDS")) != 0) {
        r->text = IMAP_SECTION_TEXT_HEADER_FIELDS;
        return section_fields_parse(s + n, r);
    }
    if ((n = word_at(s, "HEADER")) != 0) {
        r->text = IMAP_SECTION_TEXT_HEADER;
        return s + n;
    }
    if ((n = word_at(s, "TEXT")) != 0) {
        r->text = IMAP_SECTION_TEXT_TEXT;
        return s + n;
    }
    if (r->nparts > 0 && (n = word_at(s, "MIME")) != 0) {
        r->text = IMAP_SECTION_TEXT_MIME;
        return s + n;
    }
    return NULL;
}

/* What is between "[" and "]". */
static const char *section_spec_parse(const char *s, struct imap_section *r)
{
    while (*s >= '0' && *s <= '9') {
        if (r->nparts == IMAP_SECTION_MAX_PARTS)
            return NULL;
        if (!(s = number_parse(s, true, &r->part[r->nparts])))
            return NULL;
        r->nparts++;
        if (*s != '.')
            return s;
        s++;
        if (*s < '0' || *s > '9') {
            if (r->kind != IMAP_SECTION_BODY)
                return NULL;
            return section_text_parse(s, r);
        }
    }
    if (*s == ']' || r->kind != IMAP_SECTION_BODY)
        return s;
    return section_text_parse(s, r);
}

int imap_section_parse(const char *s, struct imap_section *r)
{
    size_t n;
    memset(r, 0, sizeof(*r));
    if ((n = word_at(s, "BODY.PEEK[")) != 0) {
        r->peek = true;
    } else if ((n = word_at(s, "BODY[")) != 0) {
    } else if ((n = word_at(s, "BINARY.PEEK[")) != 0) {
        r->kind = IMAP_SECTION_BINARY;
        r->peek = true;
    } else if ((n = word_at(s, "BINARY.SIZE[")) != 0) {
        r->kind = IMAP_SECTION_BINARY_SIZE;
    } else if ((n = word_at(s, "BINARY[")) != 0) {
        r->kind = IMAP_SECTION_BINARY;
    } else {
        return -1;
    }
    s = section_spec_parse(s + n, r);
    if (!s || *s != ']')
        goto fail;
    s++;
    if (*s == '<' && r->kind != IMAP_SECTION_BINARY_SIZE) {
        if (!(s = number_parse(s + 1, false, &r->partial_offset)) || *s != '.')
            goto fail;
        if (!(s = number_parse(s + 1, true, &r->partial_length)) || *s != '>')
            goto fail;
        r->partial = true;
        s++;
    }
    if (*s != '\0')
        goto fail;
    return 0;
fail:
    imap_section_free(r);
    return -1;
}

void imap_section_free(struct imap_section *r)
{
    for (size_t i = 0; i < r->nfields; i++)
        free(r->fields[i]);
    free(r->fields);
    r->fields = NULL;
    r->nfields = 0;
}

/* A header name as an atom when it is one, else as a quoted string. */
static int section_field_format(struct buf *out, const char *name)
{
    bool atom = *name != '\0' && strcasecmp(name, "NIL") != 0;
    for (const char *c = name; *c && atom; c++)
        atom = is_name_char((unsigned char)*c);
    if (atom) {
        for (const char *c = name; *c; c++) {
            char u = (*c >= 'a' && *c <= 'z') ? (char)(*c - 'a' + 'A') : *c;
            if (buf_append(out, &u, 1) < 0)
                return -1;
        }
        return 0;
    }
    if (buf_append(out, "\"", 1) < 0)
        return -1;
    for (const char *c = name; *c; c++) {
        char u = (*c >= 'a' && *c <= 'z') ? (char)(*c - 'a' + 'A') : *c;
        if ((u == '"' || u == '\\') && buf_append(out, "\\", 1) < 0)
            return -1;
        if (buf_append(out, &u, 1) < 0)
            return -1;
    }
    return buf_append(out, "\"", 1);
}

int imap_section_format(const struct imap_section *s, struct buf *out)
{
    static const char *const kinds[] = {"BODY[", "BINARY[", "BINARY.SIZE["};
    static const char *const texts[] = {"",     "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
                                        "TEXT", "MIME"};
    size_t mark = buf_size(out);
    if (buf_puts(out, kinds[s->kind]) < 0)
        goto oom;
    for (size_t i = 0; i < s->nparts; i++) {
        if (buf_printf(out, i ? ".%u" : "%u", (unsigned)s->part[i]) < 0)
            goto oom;
    }
    if (s->text != IMAP_SECTION_TEXT_NONE) {
        if (s->nparts > 0 && buf_puts(out, ".") < 0)
            goto oom;
        if (buf_puts(out, texts[s->text]) < 0)
            goto oom;
    }
    if (s->text == IMAP_SECTION_TEXT_HEADER_FIELDS ||
        s->text == IMAP_SECTION_TEXT_HEADER_FIELDS_NOT) {
        if (buf_puts(out, " (") < 0)
            goto oom;
        for (size_t i = 0; i < s->nfields; i++) {
            if ((i > 0 && buf_puts(out, " ") < 0) || section_field_format(out, s->fields[i]) < 0)
                goto oom;
        }
        if (buf_puts(out, ")") < 0)
            goto oom;
    }
    if (buf_puts(out, "]") < 0)
        goto oom;
    if (s->partial && buf_printf(out, "<%u>", (unsigned)s->partial_offset) < 0)
        goto oom;
    return 0;
oom:
    out->len = out->off + mark; /* buf_reserve() may have compacted: keep unread size */
    return -1;
}
