/* mime_arena — one allocation pool per parsed message (see mime_int.h). */
#include "mime/mime_int.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 8192

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
};

struct mime_arena {
    struct arena_block *head;
};

struct mime_arena *mime_arena_new(void)
{
    return calloc(1, sizeof(struct mime_arena));
}

void mime_arena_free(struct mime_arena *a)
{
    if (!a)
        return;
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

void *mime_arena_alloc(struct mime_arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX - align)
        return NULL;
    n = (n + align - 1) / align * align;
    if (n == 0)
        n = align;
    struct arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK / 2 ? n : ARENA_BLOCK;
        struct arena_block *nb = malloc(sizeof(*nb) + cap);
        if (!nb)
            return NULL;
        nb->used = 0;
        nb->cap = cap;
        if (b && n > ARENA_BLOCK / 2) {
            /* a big one: keep filling the current block afterwards */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *mime_arena_strndup(struct mime_arena *a, const void *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *r = mime_arena_alloc(a, n + 1);
    if (r && n)
        memcpy(r, s, n);
    return r;
}
