/* imap_seqset — see imap_seqset.h. */
#include "proto/imap/imap_seqset.h"

#include <stdlib.h>
#include <string.h>

/* nz-number (RFC 3501 9): digit-nz *DIGIT, at most 4294967295. */
static const char *nz_number_parse(const char *s, uint32_t *v_r)
{
    uint64_t v = 0;
    if (*s < '1' || *s > '9')
        return NULL;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return NULL;
    }
    *v_r = (uint32_t)v;
    return s;
}

/* seq-number = nz-number / "*"; "*" gives 0. */
static const char *seq_number_parse(const char *s, uint32_t *v_r)
{
    if (*s == '*') {
        *v_r = 0;
        return s + 1;
    }
    return nz_number_parse(s, v_r);
}

static int range_cmp(const void *a, const void *b)
{
    const struct imap_seq_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Sort and merge overlapping or adjacent ranges in place. */
static size_t ranges_normalize(struct imap_seq_range *r, size_t n)
{
    if (n == 0)
        return 0;
    qsort(r, n, sizeof(*r), range_cmp);
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        if (r[o].hi == UINT32_MAX || r[i].lo <= r[o].hi + 1) {
            if (r[i].hi > r[o].hi)
                r[o].hi = r[i].hi;
        } else {
            r[++o] = r[i];
        }
    }
    return o + 1;
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 8;
    void *a = realloc(*arr, c * size);
    if (!a)
        return -1;
    *arr = a;
    *cap = c;
    return 0;
}

int imap_seqset_parse(const char *s, struct imap_seqset *set_r)
{
    struct imap_seqset set = IMAP_SEQSET_INIT;
    size_t rcap = 0, scap = 0;

    memset(set_r, 0, sizeof(*set_r));
    if (strcmp(s, "$") == 0) {
        set_r->saved = true;
        return 0;
    }
    for (;;) {
        uint32_t a, b;
        if (!(s = seq_number_parse(s, &a)))
            goto fail;
        b = a;
        if (*s == ':' && !(s = seq_number_parse(s + 1, &b)))
            goto fail;
        if (a == 0 || b == 0) {
            if (grow((void **)&set.star_lo, &scap, set.nstar, sizeof(uint32_t)) < 0)
                goto fail;
            set.star_lo[set.nstar++] = a ? a : b; /* "n:*", "*:n" -> n; "*" -> 0 */
        } else {
            if (grow((void **)&set.ranges, &rcap, set.nranges, sizeof(*set.ranges)) < 0)
                goto fail;
            set.ranges[set.nranges].lo = a < b ? a : b;
            set.ranges[set.nranges].hi = a < b ? b : a;
            set.nranges++;
        }
        if (*s == '\0')
            break;
        if (*s != ',')
            goto fail;
        s++;
    }
    set.nranges = ranges_normalize(set.ranges, set.nranges);
    if (set.nstar > 1) {
        qsort(set.star_lo, set.nstar, sizeof(uint32_t), u32_cmp);
        size_t o = 0;
        for (size_t i = 1; i < set.nstar; i++) {
            if (set.star_lo[i] != set.star_lo[o])
                set.star_lo[++o] = set.star_lo[i];
        }
        set.nstar = o + 1;
    }
    *set_r = set;
    return 0;
fail:
    imap_seqset_free(&set);
    return -1;
}

void imap_seqset_free(struct imap_seqset *set)
{
    free(set->ranges);
    free(set->star_lo);
    memset(set, 0, sizeof(*set));
}

/* The range a star item stands for; false when there is none (star 0). */
static bool star_range(uint32_t lo, uint32_t star_value, struct imap_seq_range *r)
{
    if (star_value == 0)
        return false;
    if (lo == 0)
        lo = star_value;
    r->lo = lo < star_value ? lo : star_value;
    r->hi = lo < star_value ? star_value : lo;
    return true;
}

int imap_seqset_resolve(const struct imap_seqset *set, uint32_t star_value,
                        struct imap_seqset *out_r)
{
    memset(out_r, 0, sizeof(*out_r));
    if (set->saved)
        return -1;
    size_t n = set->nranges + set->nstar;
    if (n == 0)
        return 0;
    struct imap_seq_range *r = malloc(n * sizeof(*r));
    if (!r)
        return -1;
    if (set->nranges)
        memcpy(r, set->ranges, set->nranges * sizeof(*r));
    size_t o = set->nranges;
    for (size_t i = 0; i < set->nstar; i++) {
        if (star_range(set->star_lo[i], star_value, &r[o]))
            o++;
    }
    out_r->nranges = ranges_normalize(r, o);
    if (out_r->nranges == 0) {
        free(r);
        r = NULL;
    }
    out_r->ranges = r;
    return 0;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star_value)
{
    size_t lo = 0, hi = set->nranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (n < set->ranges[mid].lo)
            hi = mid;
        else if (n > set->ranges[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    for (size_t i = 0; i < set->nstar; i++) {
        struct imap_seq_range r;
        if (star_range(set->star_lo[i], star_value, &r) && n >= r.lo && n <= r.hi)
            return true;
    }
    return false;
}

uint32_t imap_seqset_max(const struct imap_seqset *set, uint32_t star_value)
{
    uint32_t m = set->nranges ? set->ranges[set->nranges - 1].hi : 0;
    for (size_t i = 0; i < set->nstar; i++) {
        struct imap_seq_range r;
        if (star_range(set->star_lo[i], star_value, &r) && r.hi > m)
            m = r.hi;
    }
    return m;
}

uint64_t imap_seqset_count(const struct imap_seqset *set)
{
    uint64_t c = 0;
    for (size_t i = 0; i < set->nranges; i++)
        c += (uint64_t)set->ranges[i].hi - set->ranges[i].lo + 1;
    return c;
}

int imap_seqset_format(struct buf *out, const struct imap_seqset *set)
{
    size_t mark = buf_size(out);
    const char *sep = "";
    if (set->saved)
        return buf_puts(out, "$");
    for (size_t i = 0; i < set->nranges; i++) {
        const struct imap_seq_range *r = &set->ranges[i];
        int e = r->lo == r->hi ? buf_printf(out, "%s%u", sep, (unsigned)r->lo)
                               : buf_printf(out, "%s%u:%u", sep, (unsigned)r->lo, (unsigned)r->hi);
        if (e < 0)
            goto oom;
        sep = ",";
    }
    for (size_t i = 0; i < set->nstar; i++) {
        int e = set->star_lo[i] ? buf_printf(out, "%s%u:*", sep, (unsigned)set->star_lo[i])
                                : buf_printf(out, "%s*", sep);
        if (e < 0)
            goto oom;
        sep = ",";
    }
    return 0;
oom:
    out->len = out->off + mark;
    return -1;
}

int imap_seqset_format_uids(struct buf *out, const uint32_t *uids, size_t n)
{
    size_t mark = buf_size(out);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && uids[j] != UINT32_MAX && uids[j + 1] == uids[j] + 1)
            j++;
        const char *sep = i ? "," : "";
        int e = j == i ? buf_printf(out, "%s%u", sep, (unsigned)uids[i])
                       : buf_printf(out, "%s%u:%u", sep, (unsigned)uids[i], (unsigned)uids[j]);
        if (e < 0) {
            out->len = out->off + mark;
            return -1;
        }
        i = j + 1;
    }
    return 0;
}
