/* imap_search — see imap_search.h. */
#include "proto/imap/imap_search.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime/mime_decode.h"
#include "store/store.h"

/* --- dates ------------------------------------------------------------------ */

static const char *const search_months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y_r, unsigned *m_r, unsigned *d_r)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d_r = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m_r = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y_r = yoe + era * 400 + (*m_r <= 2);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

/* Month 1..12 from its English abbreviation (the first three letters of s,
 * any case), 0 when none. */
static unsigned month_parse(const char *s, size_t n)
{
    if (n < 3)
        return 0;
    for (unsigned i = 0; i < 12; i++)
        if (strncasecmp(s, search_months[i], 3) == 0)
            return i + 1;
    return 0;
}

/* The UTC day of a time. */
static int64_t day_of(time_t t)
{
    int64_t v = (int64_t)t;
    return v >= 0 ? v / 86400 : -((-v + 86399) / 86400);
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int imap_search_date_parse(const char *s, int64_t *day_r)
{
    /* RFC 3501 9: date-day "-" date-month "-" date-year; date-day = 1*2DIGIT. */
    unsigned d = 0, nd = 0;
    for (; is_digit(*s) && nd < 3; s++, nd++)
        d = d * 10 + (unsigned)(*s - '0');
    if (nd < 1 || nd > 2 || *s++ != '-')
        return -1;
    if (!is_alpha(s[0]) || !is_alpha(s[1]) || !is_alpha(s[2]) || s[3] != '-')
        return -1;
    unsigned m = month_parse(s, 3);
    s += 4;
    int64_t y = 0;
    for (int i = 0; i < 4; i++, s++) {
        if (!is_digit(*s))
            return -1;
        y = y * 10 + (*s - '0');
    }
    if (*s || m == 0 || d < 1 || d > days_in_month(y, m))
        return -1;
    *day_r = days_from_civil(y, m, d);
    return 0;
}

/* Skip white space, line breaks, commas and (nested) comments. */
static size_t sent_skip(const uint8_t *v, size_t n, size_t i)
{
    unsigned depth = 0;
    for (; i < n; i++) {
        uint8_t c = v[i];
        if (depth) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
        } else if (c == '(') {
            depth = 1;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ',') {
            break;
        }
    }
    return i;
}

int imap_search_sent_day(const uint8_t *v, size_t n, int64_t *day_r)
{
    /* RFC 5322 3.3 / 4.3: [day-of-week ","] day month year time zone. */
    size_t i = sent_skip(v, n, 0);
    if (i < n && is_alpha(v[i])) { /* the day of the week */
        while (i < n && is_alpha(v[i]))
            i++;
        i = sent_skip(v, n, i);
    }
    unsigned d = 0, nd = 0;
    for (; i < n && is_digit(v[i]) && nd < 3; i++, nd++)
        d = d * 10 + (unsigned)(v[i] - '0');
    if (nd < 1 || nd > 2)
        return -1;
    i = sent_skip(v, n, i);
    if (i < n && v[i] == '-')
        i++;
    size_t ms = i;
    while (i < n && is_alpha(v[i]))
        i++;
    unsigned m = month_parse((const char *)v + ms, i - ms);
    if (m == 0 || i - ms > 9)
        return -1;
    i = sent_skip(v, n, i);
    if (i < n && v[i] == '-')
        i++;
    int64_t y = 0;
    unsigned ny = 0;
    for (; i < n && is_digit(v[i]) && ny < 5; i++, ny++)
        y = y * 10 + (v[i] - '0');
    if (ny < 2 || ny > 4)
        return -1;
    if (ny == 2)
        y += y < 50 ? 2000 : 1900; /* RFC 5322 4.3 */
    else if (ny == 3)
        y += 1900;
    if (d < 1 || d > days_in_month(y, m))
        return -1;
    *day_r = days_from_civil(y, m, d);
    return 0;
}

/* --- the tree ------------------------------------------------------------------- */

static void key_clear(struct imap_search_key *k)
{
    for (size_t i = 0; i < k->nkids; i++)
        key_clear(&k->kids[i]);
    free(k->kids);
    free(k->field);
    free(k->str);
    imap_seqset_free(&k->set);
    memset(k, 0, sizeof(*k));
}

void imap_search_free(struct imap_search **pp)
{
    if (!pp || !*pp)
        return;
    key_clear(&(*pp)->root);
    free(*pp);
    *pp = NULL;
}

static enum imap_search_cost key_cost(const struct imap_search_key *k)
{
    switch (k->op) {
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
        return IMAP_SEARCH_COST_DATE;
    case IMAP_SEARCH_HEADER:
        return mime_search_field_cached(k->field) ? IMAP_SEARCH_COST_FIELDS
                                                  : IMAP_SEARCH_COST_HEADER;
    case IMAP_SEARCH_BODY:
    case IMAP_SEARCH_TEXT:
        return IMAP_SEARCH_COST_BODY;
    default:
        return IMAP_SEARCH_COST_INDEX;
    }
}

static int key_cmp(const void *a, const void *b)
{
    const struct imap_search_key *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost < y->cost ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* A node's cost, and its children sorted cheapest first. */
static void key_finish(struct imap_search_key *k)
{
    k->cost = key_cost(k);
    for (size_t i = 0; i < k->nkids; i++)
        if (k->kids[i].cost > k->cost)
            k->cost = k->kids[i].cost;
    if (k->nkids > 1)
        qsort(k->kids, k->nkids, sizeof(k->kids[0]), key_cmp);
}

enum imap_search_cost imap_search_cost(const struct imap_search *p)
{
    return p->root.cost;
}

/* --- parsing ---------------------------------------------------------------------- */

struct search_parse {
    char *err;
    size_t errlen;
    size_t order;
    bool modseq;
};

static const struct {
    const char *name;
    enum imap_search_op op;
    uint32_t flag;
} search_simple[] = {
    {"ALL", IMAP_SEARCH_ALL, 0},
    {"ANSWERED", IMAP_SEARCH_FLAG, STORE_FLAG_ANSWERED},
    {"DELETED", IMAP_SEARCH_FLAG, STORE_FLAG_DELETED},
    {"DRAFT", IMAP_SEARCH_FLAG, STORE_FLAG_DRAFT},
    {"FLAGGED", IMAP_SEARCH_FLAG, STORE_FLAG_FLAGGED},
    {"SEEN", IMAP_SEARCH_FLAG, STORE_FLAG_SEEN},
    {"UNANSWERED", IMAP_SEARCH_UNFLAG, STORE_FLAG_ANSWERED},
    {"UNDELETED", IMAP_SEARCH_UNFLAG, STORE_FLAG_DELETED},
    {"UNDRAFT", IMAP_SEARCH_UNFLAG, STORE_FLAG_DRAFT},
    {"UNFLAGGED", IMAP_SEARCH_UNFLAG, STORE_FLAG_FLAGGED},
    {"UNSEEN", IMAP_SEARCH_UNFLAG, STORE_FLAG_SEEN},
    {"RECENT", IMAP_SEARCH_RECENT, 0},
    {"NEW", IMAP_SEARCH_NEW, 0},
    {"OLD", IMAP_SEARCH_OLD, 0},
};

static const struct {
    const char *name;
    enum imap_search_op op;
} search_dates[] = {
    {"BEFORE", IMAP_SEARCH_BEFORE}, {"ON", IMAP_SEARCH_ON},
    {"SINCE", IMAP_SEARCH_SINCE},   {"SENTBEFORE", IMAP_SEARCH_SENTBEFORE},
    {"SENTON", IMAP_SEARCH_SENTON}, {"SENTSINCE", IMAP_SEARCH_SENTSINCE},
};

/* FROM, TO, ... search the field of that name (RFC 3501 6.4.4). */
static const struct {
    const char *name;
    const char *field;
} search_headers[] = {
    {"FROM", "From"}, {"TO", "To"}, {"CC", "Cc"}, {"BCC", "Bcc"}, {"SUBJECT", "Subject"},
};

static enum imap_search_parse_result parse_bad(struct search_parse *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum imap_search_parse_result parse_bad(struct search_parse *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return IMAP_SEARCH_PARSE_BAD;
}

static enum imap_search_parse_result parse_nomem(struct search_parse *c)
{
    snprintf(c->err, c->errlen, "Out of memory");
    return IMAP_SEARCH_PARSE_NOMEM;
}

/* The next argument as an astring (atom, quoted, literal), or NULL. */
static const char *arg_string(const struct imap_arg *args, size_t n, size_t *i)
{
    if (*i >= n)
        return NULL;
    const char *s = imap_arg_str(&args[*i]);
    if (s)
        (*i)++;
    return s;
}

/* An atom of digits: 0 and *v_r (at most max), or -1. */
static int number_parse(const struct imap_arg *a, uint64_t max, uint64_t *v_r)
{
    if (a->type != IMAP_ARG_ATOM || !a->str[0])
        return -1;
    uint64_t v = 0;
    for (const char *p = a->str; *p; p++) {
        if (!is_digit(*p))
            return -1;
        unsigned dgt = (unsigned)(*p - '0');
        if (v > (max - dgt) / 10)
            return -1;
        v = v * 10 + dgt;
    }
    *v_r = v;
    return 0;
}

static enum imap_search_parse_result parse_key(struct search_parse *c, const struct imap_arg *args,
                                               size_t n, size_t *i, struct imap_search_key *k,
                                               unsigned depth);

/* args[0..n) as the children of the AND node k. */
static enum imap_search_parse_result parse_list(struct search_parse *c, const struct imap_arg *args,
                                                size_t n, struct imap_search_key *k, unsigned depth)
{
    k->op = IMAP_SEARCH_AND;
    if (n == 0)
        return parse_bad(c, "Empty search key list");
    size_t cap = 0;
    for (size_t i = 0; i < n;) {
        if (k->nkids == cap) {
            size_t nc = cap ? cap * 2 : 4;
            struct imap_search_key *kids = realloc(k->kids, nc * sizeof(*kids));
            if (!kids)
                return parse_nomem(c);
            k->kids = kids;
            cap = nc;
        }
        struct imap_search_key *kid = &k->kids[k->nkids];
        memset(kid, 0, sizeof(*kid));
        k->nkids++;
        enum imap_search_parse_result rc = parse_key(c, args, n, &i, kid, depth);
        if (rc != IMAP_SEARCH_PARSE_OK)
            return rc;
    }
    key_finish(k);
    return IMAP_SEARCH_PARSE_OK;
}

/* n child keys of k (NOT: 1, OR: 2). */
static enum imap_search_parse_result parse_kids(struct search_parse *c, const struct imap_arg *args,
                                                size_t n, size_t *i, struct imap_search_key *k,
                                                size_t nkids, unsigned depth, const char *name)
{
    k->kids = calloc(nkids, sizeof(*k->kids));
    if (!k->kids)
        return parse_nomem(c);
    k->nkids = nkids;
    for (size_t j = 0; j < nkids; j++) {
        if (*i >= n)
            return parse_bad(c, "%s needs %s", name,
                             nkids == 1 ? "a search key" : "two search keys");
        enum imap_search_parse_result rc = parse_key(c, args, n, i, &k->kids[j], depth + 1);
        if (rc != IMAP_SEARCH_PARSE_OK)
            return rc;
    }
    return IMAP_SEARCH_PARSE_OK;
}

static enum imap_search_parse_result parse_set(struct search_parse *c, const char *s,
                                               struct imap_search_key *k)
{
    if (imap_seqset_parse(s, &k->set) < 0)
        return parse_bad(c, "Invalid sequence set");
    if (k->set.saved) /* "$" needs SEARCHRES (RFC 5182), not offered */
        return parse_bad(c, "No saved search result");
    return IMAP_SEARCH_PARSE_OK;
}

static enum imap_search_parse_result parse_strdup(struct search_parse *c, char **dst, const char *s)
{
    *dst = strdup(s);
    return *dst ? IMAP_SEARCH_PARSE_OK : parse_nomem(c);
}

/* HEADER field-name string; FROM/TO/... string. */
static enum imap_search_parse_result parse_header(struct search_parse *c,
                                                  const struct imap_arg *args, size_t n, size_t *i,
                                                  struct imap_search_key *k, const char *keyword,
                                                  const char *field)
{
    k->op = IMAP_SEARCH_HEADER;
    k->keyword = keyword;
    if (!field) {
        field = arg_string(args, n, i);
        /* RFC 5322 3.6.8: field-name = 1*ftext (printable US-ASCII but ":"). */
        bool ok = field && field[0];
        for (const char *p = field; ok && *p; p++)
            ok = *p > 32 && *p < 127 && *p != ':';
        if (!ok)
            return parse_bad(c, "HEADER needs a field name");
    }
    const char *str = arg_string(args, n, i);
    if (!str)
        return parse_bad(c, "%s needs a string", keyword);
    if (parse_strdup(c, &k->field, field) != IMAP_SEARCH_PARSE_OK)
        return IMAP_SEARCH_PARSE_NOMEM;
    return parse_strdup(c, &k->str, str);
}

/* MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162 3.1.5). */
static enum imap_search_parse_result parse_modseq(struct search_parse *c,
                                                  const struct imap_arg *args, size_t n, size_t *i,
                                                  struct imap_search_key *k)
{
    k->op = IMAP_SEARCH_MODSEQ;
    if (*i < n && args[*i].type == IMAP_ARG_QUOTED) {
        /* entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE */
        if (strncasecmp(args[*i].str, "/flags/", 7) != 0 || !args[*i].str[7])
            return parse_bad(c, "Invalid MODSEQ entry name");
        (*i)++;
        if (*i >= n ||
            !(imap_arg_atom_is(&args[*i], "priv") || imap_arg_atom_is(&args[*i], "shared") ||
              imap_arg_atom_is(&args[*i], "all")))
            return parse_bad(c, "Invalid MODSEQ entry type");
        (*i)++;
    }
    if (*i >= n || number_parse(&args[*i], INT64_MAX, &k->num) < 0)
        return parse_bad(c, "MODSEQ needs a mod-sequence value");
    (*i)++;
    c->modseq = true;
    return IMAP_SEARCH_PARSE_OK;
}

/* A key with one argument, or none. */
static enum imap_search_parse_result parse_word(struct search_parse *c, const struct imap_arg *args,
                                                size_t n, size_t *i, struct imap_search_key *k,
                                                const char *w)
{
    for (size_t j = 0; j < sizeof(search_simple) / sizeof(search_simple[0]); j++) {
        if (strcasecmp(w, search_simple[j].name) == 0) {
            k->op = search_simple[j].op;
            k->flag = search_simple[j].flag;
            return IMAP_SEARCH_PARSE_OK;
        }
    }
    for (size_t j = 0; j < sizeof(search_dates) / sizeof(search_dates[0]); j++) {
        if (strcasecmp(w, search_dates[j].name) == 0) {
            k->op = search_dates[j].op;
            const char *d = arg_string(args, n, i);
            if (!d || imap_search_date_parse(d, &k->day) < 0)
                return parse_bad(c, "%s needs a date like 1-Feb-1994", search_dates[j].name);
            return IMAP_SEARCH_PARSE_OK;
        }
    }
    for (size_t j = 0; j < sizeof(search_headers) / sizeof(search_headers[0]); j++)
        if (strcasecmp(w, search_headers[j].name) == 0)
            return parse_header(c, args, n, i, k, search_headers[j].name, search_headers[j].field);
    if (strcasecmp(w, "HEADER") == 0)
        return parse_header(c, args, n, i, k, "HEADER", NULL);
    if (strcasecmp(w, "BODY") == 0 || strcasecmp(w, "TEXT") == 0) {
        k->op = strcasecmp(w, "BODY") == 0 ? IMAP_SEARCH_BODY : IMAP_SEARCH_TEXT;
        const char *str = arg_string(args, n, i);
        if (!str)
            return parse_bad(c, "%s needs a string", k->op == IMAP_SEARCH_BODY ? "BODY" : "TEXT");
        if (!str[0]) { /* "" is in every text: no need to read anything */
            k->op = IMAP_SEARCH_ALL;
            return IMAP_SEARCH_PARSE_OK;
        }
        return parse_strdup(c, &k->str, str);
    }
    if (strcasecmp(w, "KEYWORD") == 0 || strcasecmp(w, "UNKEYWORD") == 0) {
        k->op = w[0] == 'U' || w[0] == 'u' ? IMAP_SEARCH_UNKEYWORD : IMAP_SEARCH_KEYWORD;
        bool ok = *i < n && (args[*i].type == IMAP_ARG_ATOM || args[*i].type == IMAP_ARG_QUOTED);
        const char *kw = ok ? arg_string(args, n, i) : NULL;
        if (!kw || !kw[0] || strchr(kw, ' '))
            return parse_bad(c, "%s needs a keyword",
                             k->op == IMAP_SEARCH_KEYWORD ? "KEYWORD" : "UNKEYWORD");
        return parse_strdup(c, &k->str, kw);
    }
    if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
        k->op = w[0] == 'L' || w[0] == 'l' ? IMAP_SEARCH_LARGER : IMAP_SEARCH_SMALLER;
        if (*i >= n || number_parse(&args[*i], INT64_MAX, &k->num) < 0)
            return parse_bad(c, "%s needs a number",
                             k->op == IMAP_SEARCH_LARGER ? "LARGER" : "SMALLER");
        (*i)++;
        return IMAP_SEARCH_PARSE_OK;
    }
    if (strcasecmp(w, "UID") == 0) {
        k->op = IMAP_SEARCH_UID;
        if (*i >= n || args[*i].type != IMAP_ARG_ATOM)
            return parse_bad(c, "UID needs a sequence set");
        return parse_set(c, args[(*i)++].str, k);
    }
    if (strcasecmp(w, "MODSEQ") == 0)
        return parse_modseq(c, args, n, i, k);
    return parse_bad(c, "Unknown search key");
}

static enum imap_search_parse_result parse_key(struct search_parse *c, const struct imap_arg *args,
                                               size_t n, size_t *i, struct imap_search_key *k,
                                               unsigned depth)
{
    const struct imap_arg *a = &args[(*i)++];
    enum imap_search_parse_result rc;
    k->order = c->order++;
    if (depth >= IMAP_SEARCH_MAX_DEPTH)
        return parse_bad(c, "Search keys nested too deeply");
    if (a->type == IMAP_ARG_LIST) {
        rc = parse_list(c, a->list, a->nlist, k, depth + 1);
        if (rc == IMAP_SEARCH_PARSE_OK && k->nkids == 1) { /* "(key)" is key */
            struct imap_search_key *kids = k->kids;
            size_t order = k->order;
            *k = kids[0];
            k->order = order;
            free(kids);
        }
        return rc;
    }
    if (a->type != IMAP_ARG_ATOM)
        return parse_bad(c, "Invalid search key");
    const char *w = a->str;
    if (is_digit(w[0]) || w[0] == '*' || w[0] == '$') {
        k->op = IMAP_SEARCH_SEQSET;
        return parse_set(c, w, k);
    }
    if (strcasecmp(w, "NOT") == 0) {
        k->op = IMAP_SEARCH_NOT;
        rc = parse_kids(c, args, n, i, k, 1, depth, "NOT");
    } else if (strcasecmp(w, "OR") == 0) {
        k->op = IMAP_SEARCH_OR;
        rc = parse_kids(c, args, n, i, k, 2, depth, "OR");
    } else {
        rc = parse_word(c, args, n, i, k, w);
    }
    if (rc == IMAP_SEARCH_PARSE_OK)
        key_finish(k);
    return rc;
}

/* RETURN (MIN MAX ALL COUNT) (RFC 4731 3.1). */
static enum imap_search_parse_result parse_return(struct search_parse *c, const struct imap_arg *a,
                                                  struct imap_search *p)
{
    static const struct {
        const char *name;
        unsigned bit;
    } opts[] = {{"MIN", IMAP_SEARCH_RET_MIN},
                {"MAX", IMAP_SEARCH_RET_MAX},
                {"ALL", IMAP_SEARCH_RET_ALL},
                {"COUNT", IMAP_SEARCH_RET_COUNT}};
    if (a->type != IMAP_ARG_LIST)
        return parse_bad(c, "RETURN needs a list of options");
    p->esearch = true;
    for (size_t i = 0; i < a->nlist; i++) {
        unsigned bit = 0;
        for (size_t j = 0; j < sizeof(opts) / sizeof(opts[0]); j++)
            if (imap_arg_atom_is(&a->list[i], opts[j].name))
                bit = opts[j].bit;
        if (!bit)
            return parse_bad(c, "Unknown RETURN option");
        p->ret |= bit;
    }
    if (!p->ret) /* RFC 4731 3.1: "RETURN ()" is "RETURN (ALL)" */
        p->ret = IMAP_SEARCH_RET_ALL;
    return IMAP_SEARCH_PARSE_OK;
}

enum imap_search_parse_result imap_search_parse(const struct imap_arg *args, size_t nargs,
                                                struct imap_search **prog_r, char *err,
                                                size_t errlen)
{
    struct search_parse c = {.err = err, .errlen = errlen};
    char dummy[8];
    if (!err || errlen == 0) {
        c.err = dummy;
        c.errlen = sizeof(dummy);
    }
    c.err[0] = '\0';
    *prog_r = NULL;
    struct imap_search *p = calloc(1, sizeof(*p));
    if (!p)
        return parse_nomem(&c);
    enum imap_search_parse_result rc = IMAP_SEARCH_PARSE_OK;
    size_t i = 0;
    if (i < nargs && imap_arg_atom_is(&args[i], "RETURN")) {
        rc = i + 1 < nargs ? parse_return(&c, &args[i + 1], p)
                           : parse_bad(&c, "RETURN needs a list of options");
        i += 2;
    }
    if (rc == IMAP_SEARCH_PARSE_OK && i < nargs && imap_arg_atom_is(&args[i], "CHARSET")) {
        const char *cs = i + 1 < nargs ? imap_arg_str(&args[i + 1]) : NULL;
        if (!cs) {
            rc = parse_bad(&c, "CHARSET needs a name");
        } else if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
            snprintf(c.err, c.errlen, "Unsupported charset");
            rc = IMAP_SEARCH_PARSE_BADCHARSET;
        }
        i += 2;
    }
    if (rc == IMAP_SEARCH_PARSE_OK) {
        if (i >= nargs)
            rc = parse_bad(&c, "Missing search keys");
        else
            rc = parse_list(&c, args + i, nargs - i, &p->root, 0);
    }
    if (rc != IMAP_SEARCH_PARSE_OK) {
        imap_search_free(&p);
        return rc;
    }
    p->modseq = c.modseq;
    *prog_r = p;
    return IMAP_SEARCH_PARSE_OK;
}

/* --- formatting --------------------------------------------------------------- */

struct search_fmt {
    struct buf *out;
    bool oom;
};

static void fmt_put(struct search_fmt *f, const void *s, size_t n)
{
    if (buf_append(f->out, s, n) < 0)
        f->oom = true;
}

static void fmt_puts(struct search_fmt *f, const char *s)
{
    fmt_put(f, s, strlen(s));
}

static void fmt_printf(struct search_fmt *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fmt_printf(struct search_fmt *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (buf_vprintf(f->out, fmt, ap) < 0)
        f->oom = true;
    va_end(ap);
}

/* A quoted string, or a literal when it cannot be quoted. */
static void fmt_string(struct search_fmt *f, const char *s)
{
    size_t n = strlen(s);
    if (strpbrk(s, "\r\n")) {
        fmt_printf(f, "{%zu}\r\n", n);
        fmt_put(f, s, n);
        return;
    }
    fmt_puts(f, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fmt_puts(f, "\\");
        fmt_put(f, p, 1);
    }
    fmt_puts(f, "\"");
}

static const char *flag_key_name(enum imap_search_op op, uint32_t flag)
{
    for (size_t j = 0; j < sizeof(search_simple) / sizeof(search_simple[0]); j++)
        if (search_simple[j].op == op && search_simple[j].flag == flag)
            return search_simple[j].name;
    return "?";
}

static void fmt_key(struct search_fmt *f, const struct imap_search_key *k, bool top)
{
    int64_t y;
    unsigned m, d;
    switch (k->op) {
    case IMAP_SEARCH_AND:
        if (!top)
            fmt_puts(f, "(");
        for (size_t i = 0; i < k->nkids; i++) {
            if (i)
                fmt_puts(f, " ");
            fmt_key(f, &k->kids[i], false);
        }
        if (!top)
            fmt_puts(f, ")");
        break;
    case IMAP_SEARCH_OR:
    case IMAP_SEARCH_NOT:
        fmt_puts(f, k->op == IMAP_SEARCH_OR ? "OR" : "NOT");
        for (size_t i = 0; i < k->nkids; i++) {
            fmt_puts(f, " ");
            fmt_key(f, &k->kids[i], false);
        }
        break;
    case IMAP_SEARCH_UID:
        fmt_puts(f, "UID ");
        /* fall through */
    case IMAP_SEARCH_SEQSET:
        if (imap_seqset_format(f->out, &k->set) < 0)
            f->oom = true;
        break;
    case IMAP_SEARCH_KEYWORD:
    case IMAP_SEARCH_UNKEYWORD:
        fmt_puts(f, k->op == IMAP_SEARCH_KEYWORD ? "KEYWORD " : "UNKEYWORD ");
        fmt_string(f, k->str);
        break;
    case IMAP_SEARCH_LARGER:
    case IMAP_SEARCH_SMALLER:
    case IMAP_SEARCH_MODSEQ:
        fmt_printf(f, "%s %llu",
                   k->op == IMAP_SEARCH_LARGER    ? "LARGER"
                   : k->op == IMAP_SEARCH_SMALLER ? "SMALLER"
                                                  : "MODSEQ",
                   (unsigned long long)k->num);
        break;
    case IMAP_SEARCH_BEFORE:
    case IMAP_SEARCH_ON:
    case IMAP_SEARCH_SINCE:
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
        civil_from_days(k->day, &y, &m, &d);
        fmt_printf(f, "%s %u-%s-%04lld", search_dates[k->op - IMAP_SEARCH_BEFORE].name, d,
                   search_months[m - 1], (long long)y);
        break;
    case IMAP_SEARCH_HEADER:
        fmt_printf(f, "%s ", k->keyword);
        if (strcmp(k->keyword, "HEADER") == 0) {
            fmt_string(f, k->field);
            fmt_puts(f, " ");
        }
        fmt_string(f, k->str);
        break;
    case IMAP_SEARCH_BODY:
    case IMAP_SEARCH_TEXT:
        fmt_puts(f, k->op == IMAP_SEARCH_BODY ? "BODY " : "TEXT ");
        fmt_string(f, k->str);
        break;
    default:
        fmt_puts(f, flag_key_name(k->op, k->flag));
        break;
    }
}

int imap_search_format(const struct imap_search *p, struct buf *out)
{
    struct search_fmt f = {.out = out};
    fmt_key(&f, &p->root, true);
    return f.oom ? -1 : 0;
}

/* --- evaluation ----------------------------------------------------------------- */

enum { TV_FALSE = 0, TV_TRUE = 1, TV_UNKNOWN = 2 };

struct search_eval {
    const struct imap_search_msg *m;
    struct imap_search_env *env;
    bool full; /* the content may be read */
    bool read_tried;
    bool unreadable;
    uint8_t *data;
    size_t len;
    struct mime_message *mime;
    int sent; /* 0 not known yet, 1 sent_day set, -1 no usable Date: */
    int64_t sent_day;
};

/* Read and parse the message once. 0, or IMAP_SEARCH_UNREADABLE / _NOMEM. */
static int eval_load(struct search_eval *c)
{
    if (!c->read_tried) {
        c->read_tried = true;
        c->env->reads++;
        if (!c->env->read || c->env->read(c->env->ctx, c->m, &c->data, &c->len) < 0) {
            c->data = NULL;
            c->unreadable = true;
        } else {
            c->mime = mime_parse(c->data, c->len, c->env->mime_limits);
            if (!c->mime)
                return IMAP_SEARCH_NOMEM;
        }
    }
    if (c->unreadable)
        return IMAP_SEARCH_UNREADABLE;
    return c->mime ? 0 : IMAP_SEARCH_NOMEM;
}

/* The Date: of a cached ENVELOPE (its first item): 1 and the value in
 * out (n bytes), 0 for NIL, -1 when it cannot be told. */
static int envelope_date(const char *env, char *out, size_t n, size_t *len_r)
{
    if (env[0] != '(')
        return -1;
    const char *p = env + 1;
    if (strncasecmp(p, "NIL", 3) == 0 && (p[3] == ' ' || p[3] == ')'))
        return 0;
    size_t k = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            if (k + 1 >= n)
                return -1;
            out[k++] = *p;
        }
        if (*p != '"')
            return -1;
    } else if (*p == '{') {
        char *end;
        unsigned long len = strtoul(p + 1, &end, 10);
        if (end == p + 1 || strncmp(end, "}\r\n", 3) != 0 || len >= n ||
            strnlen(end + 3, len) < len)
            return -1;
        memcpy(out, end + 3, len);
        k = len;
    } else {
        return -1;
    }
    *len_r = k;
    return 1;
}

/* The day the message was sent: TV_TRUE (c->sent says which), TV_UNKNOWN
 * when the file is needed and may not be read yet, or an error (< 0). */
static int eval_sent(struct search_eval *c)
{
    if (c->sent)
        return TV_TRUE;
    if (c->m->envelope) {
        char v[512];
        size_t n;
        int rc = envelope_date(c->m->envelope, v, sizeof(v), &n);
        if (rc >= 0) {
            c->sent =
                rc == 1 && imap_search_sent_day((const uint8_t *)v, n, &c->sent_day) == 0 ? 1 : -1;
            return TV_TRUE;
        }
    }
    if (!c->full)
        return TV_UNKNOWN;
    int rc = eval_load(c);
    if (rc < 0)
        return rc;
    struct mime_field f;
    c->sent = mime_part_field(c->mime, c->mime->root, "Date", &f) &&
                      imap_search_sent_day(f.value, f.value_len, &c->sent_day) == 0
                  ? 1
                  : -1;
    return TV_TRUE;
}

static bool has_keyword(const struct imap_search_msg *m, const char *kw)
{
    if (kw[0] == '\\') { /* a system flag written as a keyword */
        static const struct {
            const char *name;
            uint32_t bit;
        } sys[] = {{"\\Seen", STORE_FLAG_SEEN},
                   {"\\Answered", STORE_FLAG_ANSWERED},
                   {"\\Flagged", STORE_FLAG_FLAGGED},
                   {"\\Deleted", STORE_FLAG_DELETED},
                   {"\\Draft", STORE_FLAG_DRAFT}};
        for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
            if (strcasecmp(kw, sys[i].name) == 0)
                return (m->flags & sys[i].bit) != 0;
        return strcasecmp(kw, "\\Recent") == 0 && m->recent;
    }
    size_t n = strlen(kw);
    for (const char *p = m->keywords ? m->keywords : ""; *p;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len == n && strncasecmp(p, kw, n) == 0)
            return true;
        p += len;
    }
    return false;
}

static int eval_key(const struct imap_search_key *k, struct search_eval *c);

static int eval_and_or(const struct imap_search_key *k, struct search_eval *c)
{
    /* AND: false decides; OR: true decides; otherwise unknown if any is. */
    int decide = k->op == IMAP_SEARCH_AND ? TV_FALSE : TV_TRUE;
    int r = k->op == IMAP_SEARCH_AND ? TV_TRUE : TV_FALSE;
    for (size_t i = 0; i < k->nkids; i++) {
        int v = eval_key(&k->kids[i], c);
        if (v < 0 || v == decide)
            return v;
        if (v == TV_UNKNOWN)
            r = TV_UNKNOWN;
    }
    return r;
}

static int eval_content(const struct imap_search_key *k, struct search_eval *c)
{
    if (k->op == IMAP_SEARCH_HEADER && c->m->fields && mime_search_field_cached(k->field)) {
        int rc = mime_search_fields_match(c->m->fields, c->m->fields_len, k->field, k->str);
        if (rc >= 0) /* else a damaged cache: search the message */
            return rc ? TV_TRUE : TV_FALSE;
    }
    if (!c->full)
        return TV_UNKNOWN;
    int rc = eval_load(c);
    if (rc < 0)
        return rc;
    enum mime_search_what what = k->op == IMAP_SEARCH_HEADER ? MIME_SEARCH_HEADER
                                 : k->op == IMAP_SEARCH_BODY ? MIME_SEARCH_BODY
                                                             : MIME_SEARCH_TEXT;
    rc = mime_search_text(c->mime, what, k->field, k->str);
    return rc < 0 ? IMAP_SEARCH_NOMEM : rc ? TV_TRUE : TV_FALSE;
}

static int eval_key(const struct imap_search_key *k, struct search_eval *c)
{
    const struct imap_search_msg *m = c->m;
    int v;
    switch (k->op) {
    case IMAP_SEARCH_AND:
    case IMAP_SEARCH_OR:
        return eval_and_or(k, c);
    case IMAP_SEARCH_NOT:
        v = eval_key(&k->kids[0], c);
        return v == TV_TRUE ? TV_FALSE : v == TV_FALSE ? TV_TRUE : v;
    case IMAP_SEARCH_ALL:
        return TV_TRUE;
    case IMAP_SEARCH_SEQSET:
        return imap_seqset_contains(&k->set, m->seq, c->env->max_seq);
    case IMAP_SEARCH_UID:
        return imap_seqset_contains(&k->set, m->uid, c->env->max_uid);
    case IMAP_SEARCH_FLAG:
        return (m->flags & k->flag) != 0;
    case IMAP_SEARCH_UNFLAG:
        return (m->flags & k->flag) == 0;
    case IMAP_SEARCH_RECENT:
        return m->recent;
    case IMAP_SEARCH_NEW:
        return m->recent && !(m->flags & STORE_FLAG_SEEN);
    case IMAP_SEARCH_OLD:
        return !m->recent;
    case IMAP_SEARCH_KEYWORD:
        return has_keyword(m, k->str);
    case IMAP_SEARCH_UNKEYWORD:
        return !has_keyword(m, k->str);
    case IMAP_SEARCH_LARGER:
        return m->size > k->num;
    case IMAP_SEARCH_SMALLER:
        return m->size < k->num;
    case IMAP_SEARCH_MODSEQ:
        return m->modseq >= k->num;
    case IMAP_SEARCH_BEFORE:
        return day_of(m->internal_date) < k->day;
    case IMAP_SEARCH_ON:
        return day_of(m->internal_date) == k->day;
    case IMAP_SEARCH_SINCE:
        return day_of(m->internal_date) >= k->day;
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
        v = eval_sent(c);
        if (v != TV_TRUE)
            return v;
        if (c->sent < 0)
            return TV_FALSE;
        return k->op == IMAP_SEARCH_SENTBEFORE ? c->sent_day < k->day
               : k->op == IMAP_SEARCH_SENTON   ? c->sent_day == k->day
                                               : c->sent_day >= k->day;
    case IMAP_SEARCH_HEADER:
    case IMAP_SEARCH_BODY:
    case IMAP_SEARCH_TEXT:
        return eval_content(k, c);
    }
    return TV_FALSE;
}

enum imap_search_match_result imap_search_match(const struct imap_search *p,
                                                const struct imap_search_msg *m,
                                                struct imap_search_env *env)
{
    struct search_eval c = {.m = m, .env = env};
    int v = TV_UNKNOWN;
    if (!env->no_shortcut) {
        v = eval_key(&p->root, &c); /* what the index row alone decides */
    } else if (p->root.cost > IMAP_SEARCH_COST_INDEX) {
        c.full = true;
        v = eval_load(&c);
        if (v == 0)
            v = TV_UNKNOWN;
    }
    if (v == TV_UNKNOWN) {
        c.full = true;
        v = eval_key(&p->root, &c);
    }
    mime_message_free(&c.mime);
    free(c.data);
    if (v < 0)
        return (enum imap_search_match_result)v;
    return v == TV_TRUE ? IMAP_SEARCH_MATCH : IMAP_SEARCH_NO_MATCH;
}
