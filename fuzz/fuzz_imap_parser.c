/* fuzz_imap_parser — libFuzzer target for the IMAP command parser, FETCH
 * section specs, sequence sets and modified UTF-7 names.
 *
 * Input layout: the first octet picks the configuration (bits 0-1: limits,
 * bit 2: refuse every synchronizing literal, bit 3: after AUTHENTICATE or
 * IDLE read one raw line with imap_parser_next_line()); the rest is what
 * the client sends. It is fed in four pieces cut at positions derived from
 * the data, then once more one octet per feed: both transcripts must be
 * the same.
 *
 * Every command is walked. Checked on the way (a failure traps):
 *  - tag and name are valid, the name is upper-case, strings end in NUL,
 *    atoms and quoted strings hold no CR/LF/NUL, the limits hold;
 *  - every atom that parses as a section formats, and the formatted text
 *    (without its "<origin>") parses and formats the same; likewise sequence sets; a set resolves,
 *    and contains() agrees with the resolved ranges;
 *  - every string that decodes as modified UTF-7 re-encodes to something
 *    that decodes the same; every string that encodes decodes back.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/buf.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_seqset.h"
#include "proto/imap/imap_utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static const struct imap_parser_limits fuzz_limits[4] = {
    {0, 0, 0, 0},
    {64, 16, 3, 8},
    {200, 100, 5, 50},
    {32, 4096, 1, 2},
};

static void fuzz_section(const char *s)
{
    struct imap_section sec;
    if (imap_section_parse(s, &sec) != 0)
        return;
    fuzz_check(sec.nparts <= IMAP_SECTION_MAX_PARTS);
    fuzz_check(!sec.partial || sec.partial_length > 0);
    struct buf a = BUF_INIT, b = BUF_INIT;
    fuzz_check(imap_section_format(&sec, &a) == 0);
    if (sec.partial) {
        /* a response names only the origin, "<offset>": not a request's partial */
        const char *f = buf_cstr(&a);
        const char *lt = strrchr(f, '<');
        fuzz_check(lt != NULL && f[buf_size(&a) - 1] == '>');
        a.len = a.off + (size_t)(lt - f);
    }
    struct imap_section again;
    fuzz_check(imap_section_parse(buf_cstr(&a), &again) == 0);
    fuzz_check(imap_section_format(&again, &b) == 0);
    fuzz_check(buf_size(&a) == buf_size(&b) && memcmp(buf_ptr(&a), buf_ptr(&b), buf_size(&a)) == 0);
    fuzz_check(again.kind == sec.kind && again.nparts == sec.nparts && again.text == sec.text &&
               again.nfields == sec.nfields);
    imap_section_free(&again);
    imap_section_free(&sec);
    buf_free(&a);
    buf_free(&b);
}

static void fuzz_seqset(const char *s)
{
    struct imap_seqset set;
    if (imap_seqset_parse(s, &set) != 0)
        return;
    struct buf a = BUF_INIT, b = BUF_INIT;
    fuzz_check(imap_seqset_format(&a, &set) == 0);
    struct imap_seqset again;
    fuzz_check(imap_seqset_parse(buf_cstr(&a), &again) == 0);
    fuzz_check(imap_seqset_format(&b, &again) == 0);
    fuzz_check(strcmp(buf_cstr(&a), buf_cstr(&b)) == 0);
    imap_seqset_free(&again);
    for (size_t i = 1; i < set.nranges; i++)
        fuzz_check(set.ranges[i - 1].hi < set.ranges[i].lo - 1);
    if (!set.saved) {
        uint32_t star = (uint32_t)strlen(s) * 7;
        struct imap_seqset r;
        fuzz_check(imap_seqset_resolve(&set, star, &r) == 0);
        fuzz_check(r.nstar == 0);
        for (size_t i = 0; i < r.nranges; i++) {
            fuzz_check(r.ranges[i].lo >= 1 && r.ranges[i].lo <= r.ranges[i].hi);
            fuzz_check(imap_seqset_contains(&set, r.ranges[i].lo, star));
            fuzz_check(imap_seqset_contains(&set, r.ranges[i].hi, star));
            if (r.ranges[i].lo > 1)
                fuzz_check(imap_seqset_contains(&set, r.ranges[i].lo - 1, star) ==
                           imap_seqset_contains(&r, r.ranges[i].lo - 1, 0));
        }
        for (uint32_t n = 0; n < 64; n++)
            fuzz_check(imap_seqset_contains(&set, n, star) == imap_seqset_contains(&r, n, 0));
        fuzz_check(imap_seqset_max(&set, star) == imap_seqset_max(&r, 0));
        /* format_uids of the resolved numbers (capped) parses back to them */
        uint32_t uids[64];
        size_t n = 0;
        for (size_t i = 0; i < r.nranges && n < 64; i++)
            for (uint64_t u = r.ranges[i].lo; u <= r.ranges[i].hi && n < 64; u++)
                uids[n++] = (uint32_t)u;
        buf_reset(&a);
        fuzz_check(imap_seqset_format_uids(&a, uids, n) == 0);
        if (n > 0) {
            fuzz_check(imap_seqset_parse(buf_cstr(&a), &again) == 0);
            fuzz_check(imap_seqset_count(&again) == n);
            imap_seqset_free(&again);
        }
        imap_seqset_free(&r);
    }
    imap_seqset_free(&set);
    buf_free(&a);
    buf_free(&b);
}

static void fuzz_utf7(const char *s)
{
    struct buf u8 = BUF_INIT, u7 = BUF_INIT, back = BUF_INIT;
    if (imap_utf7_to_utf8(s, &u8) == 0) {
        fuzz_check(imap_utf8_to_utf7(buf_cstr(&u8), &u7) == 0);
        fuzz_check(imap_utf7_to_utf8(buf_cstr(&u7), &back) == 0);
        fuzz_check(strcmp(buf_cstr(&back), buf_cstr(&u8)) == 0);
    }
    buf_reset(&u7);
    buf_reset(&back);
    if (imap_utf8_to_utf7(s, &u7) == 0) {
        const char *e = buf_cstr(&u7);
        for (const char *c = e; *c; c++)
            fuzz_check(*c >= 0x20 && *c <= 0x7e);
        fuzz_check(imap_utf7_to_utf8(e, &back) == 0);
        fuzz_check(strcmp(buf_cstr(&back), s) == 0);
    }
    buf_free(&u8);
    buf_free(&u7);
    buf_free(&back);
}

static void fuzz_dump(struct buf *t, const char *s, size_t n)
{
    fuzz_check(buf_printf(t, "%zu:", n) == 0);
    fuzz_check(buf_append(t, s, n) == 0);
}

/* Walk the args; returns how many (nested included). */
static size_t fuzz_args(const struct imap_arg *args, size_t n, size_t depth,
                        const struct imap_parser_limits *lim, struct buf *t, bool deep)
{
    size_t count = n;
    fuzz_check(!lim->max_depth || depth <= lim->max_depth);
    for (size_t i = 0; i < n; i++) {
        const struct imap_arg *a = &args[i];
        fuzz_check(buf_printf(t, " %d", (int)a->type) == 0);
        if (a->type == IMAP_ARG_LIST) {
            fuzz_check(a->str == NULL);
            fuzz_check(buf_puts(t, "(") == 0);
            count += fuzz_args(a->list, a->nlist, depth + 1, lim, t, deep);
            fuzz_check(buf_puts(t, ")") == 0);
            continue;
        }
        fuzz_check(a->str != NULL && a->str[a->len] == '\0');
        fuzz_dump(t, a->str, a->len);
        if (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL || a->type == IMAP_ARG_QUOTED) {
            fuzz_check(strlen(a->str) == a->len);
            fuzz_check(!strchr(a->str, '\r') && !strchr(a->str, '\n'));
        }
        if (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL) {
            fuzz_check(a->len > 0);
            for (size_t k = 0; k < a->len; k++) {
                unsigned char c = (unsigned char)a->str[k];
                /* SP only inside a "[...]" section */
                fuzz_check((c > 0x20 && c < 0x7f) || (c == ' ' && memchr(a->str, '[', k)));
            }
        }
        fuzz_check(!a->literal8 || a->type == IMAP_ARG_LITERAL);
        const char *s = imap_arg_str(a);
        if (deep && s) {
            fuzz_section(s);
            fuzz_seqset(s);
            fuzz_utf7(s);
        }
    }
    return count;
}

struct fuzz_run {
    struct imap_parser *p;
    const struct imap_parser_limits *lim;
    bool reject, lines, deep;
    bool want_line;
    struct buf t;
};

static void fuzz_drain(struct fuzz_run *r)
{
    for (;;) {
        if (r->want_line) {
            char *line;
            size_t len;
            enum imap_parse_status st = imap_parser_next_line(r->p, &line, &len);
            if (st == IMAP_PARSE_NEED_MORE)
                return;
            r->want_line = false;
            if (st == IMAP_PARSE_LINE) {
                fuzz_check(line[len] == '\0' && !memchr(line, '\n', len));
                fuzz_check(buf_puts(&r->t, "L ") == 0);
                fuzz_dump(&r->t, line, len);
                fuzz_check(buf_puts(&r->t, "\n") == 0);
            } else {
                fuzz_check(st == IMAP_PARSE_ERROR);
                fuzz_check(buf_puts(&r->t, "LE\n") == 0);
            }
            continue;
        }
        struct imap_command *cmd;
        const char *tag, *err;
        enum imap_parse_status st = imap_parser_next(r->p, &cmd, &tag, &err);
        switch (st) {
        case IMAP_PARSE_NEED_MORE:
            return;
        case IMAP_PARSE_COMMAND: {
            fuzz_check(cmd->tag && cmd->tag[0] && cmd->name && cmd->name[0]);
            for (const char *c = cmd->tag; *c; c++)
                fuzz_check(*c > 0x20 && *c < 0x7f && !strchr("(){%*\"\\+", *c));
            for (const char *c = cmd->name; *c; c++)
                fuzz_check(!(*c >= 'a' && *c <= 'z'));
            fuzz_check(buf_printf(&r->t, "C %s %s", cmd->tag, cmd->name) == 0);
            size_t n = fuzz_args(cmd->args, cmd->nargs, 0, r->lim, &r->t, r->deep);
            fuzz_check(!r->lim->max_args || n <= r->lim->max_args);
            fuzz_check(buf_puts(&r->t, "\n") == 0);
            if (r->lines &&
                (strcmp(cmd->name, "AUTHENTICATE") == 0 || strcmp(cmd->name, "IDLE") == 0))
                r->want_line = true;
            break;
        }
        case IMAP_PARSE_LITERAL_WAIT: {
            const char *name;
            uint64_t lsize;
            fuzz_check(tag != NULL);
            fuzz_check(imap_parser_pending_literal(r->p, &name, &lsize, NULL));
            fuzz_check(buf_printf(&r->t, "W %s %s %llu %s\n", tag, name, (unsigned long long)lsize,
                                  err ? err : "-") == 0);
            if (r->reject)
                imap_parser_reject_literal(r->p);
            break;
        }
        case IMAP_PARSE_ERROR:
            fuzz_check(err != NULL);
            fuzz_check(buf_printf(&r->t, "E %s %s\n", tag ? tag : "*", err) == 0);
            break;
        case IMAP_PARSE_LINE:
            fuzz_check(false);
        }
    }
}

static void fuzz_run(const uint8_t *data, size_t size, uint8_t conf, const size_t *cuts,
                     size_t ncuts, bool deep, struct buf *out)
{
    struct fuzz_run r = {.lim = &fuzz_limits[conf & 3],
                         .reject = conf & 4,
                         .lines = conf & 8,
                         .deep = deep,
                         .t = BUF_INIT};
    r.p = imap_parser_new(r.lim);
    fuzz_check(r.p != NULL);
    size_t off = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : size;
        if (end < off)
            end = off;
        fuzz_check(imap_parser_feed(r.p, data + off, end - off) == 0);
        fuzz_drain(&r);
        off = end;
    }
    imap_parser_free(&r.p);
    fuzz_check(r.p == NULL);
    *out = r.t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t conf = data[0];
    data++;
    size--;

    /* four pieces at data-derived points */
    size_t cuts[3];
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    for (int i = 0; i < 3; i++) {
        cuts[i] = size ? (h >> (i * 8)) % (size + 1) : 0;
        for (int k = i; k > 0 && cuts[k] < cuts[k - 1]; k--) {
            size_t tmp = cuts[k];
            cuts[k] = cuts[k - 1];
            cuts[k - 1] = tmp;
        }
    }
    struct buf a, b;
    fuzz_run(data, size, conf, cuts, 3, true, &a);

    /* one octet per feed */
    static size_t one[4096];
    size_t n = size < 4096 ? size : 4096;
    for (size_t i = 0; i < n; i++)
        one[i] = i + 1;
    fuzz_run(data, n, conf, one, n, false, &b);
    if (n == size)
        fuzz_check(buf_size(&a) == buf_size(&b) &&
                   memcmp(buf_ptr(&a), buf_ptr(&b), buf_size(&a)) == 0);
    buf_free(&a);
    buf_free(&b);
    return 0;
}
