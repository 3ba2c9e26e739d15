/* imap_seqset — IMAP sequence sets (RFC 3501 9 "sequence-set", RFC 5182 "$").
 *
 * "1", "1:5", "5:1" (= 1:5), "*", "3:*", "1,3:5,7", "$". Numbers are
 * nz-number (1..4294967295); 0, empty items, signs, spaces are errors.
 *
 * A parsed set keeps its numeric ranges sorted and merged, and the items
 * that involve "*" apart, because "*" means the largest number in use
 * (the highest message sequence number or UID), known only later:
 * imap_seqset_resolve() turns a parsed set into plain ranges for a given
 * "*" value. RFC 3501 6.4.8: "3:*" with "*" = 2 is 2:3.
 */
#ifndef CORREIO_PROTO_IMAP_SEQSET_H
#define CORREIO_PROTO_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct imap_seq_range {
    uint32_t lo, hi; /* lo <= hi, both >= 1 */
};

struct imap_seqset {
    struct imap_seq_range *ranges; /* sorted, disjoint, not adjacent (owned) */
    size_t nranges;
    uint32_t *star_lo; /* items with "*": n for "n:*" (or "*:n"), 0 for "*" (owned) */
    size_t nstar;
    bool saved; /* "$": the saved search result (RFC 5182); nothing else set */
};

#define IMAP_SEQSET_INIT                                                                           \
    {                                                                                              \
        NULL, 0, NULL, 0, false                                                                    \
    }

/* Parse s. 0 and *set_r filled (free with imap_seqset_free()), -1 on a
 * syntax error or OOM (*set_r then empty). */
int imap_seqset_parse(const char *s, struct imap_seqset *set_r);
void imap_seqset_free(struct imap_seqset *set);

/* true when set has items with "*". */
static inline bool imap_seqset_has_star(const struct imap_seqset *set)
{
    return set->nstar > 0;
}

/* Resolve "*" as star_value into *out_r: only sorted merged ranges, no
 * star items. star_value 0 means "no messages": the "*" items then add
 * nothing. Numbers above star_value stay (callers that need them in range
 * check imap_seqset_max()). "$" cannot be resolved here (-1). 0, or -1 on
 * OOM. *out_r is freed with imap_seqset_free(). */
int imap_seqset_resolve(const struct imap_seqset *set, uint32_t star_value,
                        struct imap_seqset *out_r);

/* Is n in the set, "*" taken as star_value? (false for "$") */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t star_value);

/* The largest number in the set with "*" as star_value; 0 when empty. */
uint32_t imap_seqset_max(const struct imap_seqset *set, uint32_t star_value);

/* How many numbers a resolved set holds (the sum of its range sizes). */
uint64_t imap_seqset_count(const struct imap_seqset *set);

/* Iterate ranges: for (size_t i = 0; i < set->nranges; i++) set->ranges[i]
 * after resolving. */

/* Append the set as text: "1:3,5,7:*" (star items after the ranges, as
 * "n:*" or "*"; "$" as "$"). 0, or -1 on OOM. */
int imap_seqset_format(struct buf *out, const struct imap_seqset *set);

/* Append uids[0..n) as a compact sequence set for COPYUID / VANISHED:
 * runs of consecutive ascending numbers become "a:b"; the order is kept
 * (COPYUID's source and destination sets correspond item by item), so
 * pass them sorted for the most compact text. n = 0 appends nothing.
 * 0, or -1 on OOM. */
int imap_seqset_format_uids(struct buf *out, const uint32_t *uids, size_t n);

#endif
