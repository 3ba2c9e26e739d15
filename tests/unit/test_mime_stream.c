/* mime_stream: the parser fed in chunks (mime_stream_*) against the parser
 * fed the whole message (mime_parse).
 *
 * - every message of the shared corpus (../shared/corpus/mime; raw and
 *   CRLF), fed whole, in 1-octet chunks and in pseudo-random chunkings,
 *   with the default limits and with small ones: ENVELOPE (of the message
 *   and of each encapsulated one), BODY and BODYSTRUCTURE byte-identical,
 *   the same tree (ranges, lines, flags), the same header blocks, and
 *   mime_part_field() finding the same fields; the CRLF result also equals
 *   Dovecot's answer (tests/unit/mime_expected/);
 * - hand-written broken messages (message/global, delimiters in headers,
 *   missing close delimiters, no final line break, ...) fed in every
 *   chunk size from 1 to 40;
 * - a message with a 200 MB base64 attachment, generated on the fly in
 *   64 KiB chunks: right sizes and line counts, and the parser's memory
 *   stays small (its header buffer, and the process's peak RSS).
 */
#include "testutil.h"

#include <dirent.h>
#include <sys/resource.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "mime/mime_imap.h"

#define CORPUS_DIR "../shared/corpus/mime"
#define EXPECTED_DIR "tests/unit/mime_expected"

static bool read_file(const char *path, struct buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(buf_append(out, tmp, n), 0);
    fclose(f);
    return true;
}

/* ENVELOPE of every message, BODY, BODYSTRUCTURE (as the corpus test writes
 * the top level ones). */
static void imap_items(const struct mime_message *m, struct buf *out)
{
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
        if (!p->parent || (p->parent->flags & MIME_PART_MESSAGE)) {
            buf_puts(out, p->parent ? " ENVELOPE " : "ENVELOPE ");
            assert_int_equal(mime_imap_envelope(m, p, out), 0);
        }
    }
    buf_puts(out, " BODY ");
    assert_int_equal(mime_imap_bodystructure(m, NULL, false, out), 0);
    buf_puts(out, " BODYSTRUCTURE ");
    assert_int_equal(mime_imap_bodystructure(m, NULL, true, out), 0);
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
        buf_puts(out, " PART ");
        assert_int_equal(mime_imap_bodystructure(m, p, true, out), 0);
    }
}

static void check_same(const struct mime_message *w, const struct mime_message *s,
                       const char *what)
{
    assert_false(w->headers_only);
    assert_true(s->headers_only);
    assert_int_equal(w->size, s->size);
    assert_int_equal(w->nparts, s->nparts);
    assert_int_equal(w->limit_hit, s->limit_hit);
    const struct mime_part *p = w->root, *q = s->root;
    for (; p && q; p = mime_part_walk_next(p), q = mime_part_walk_next(q)) {
        assert_int_equal(p->flags, q->flags);
        assert_int_equal(p->depth, q->depth);
        assert_int_equal(p->nchildren, q->nchildren);
        assert_int_equal(p->hdr_len, q->hdr_len);
        assert_int_equal(p->hdr_lines, q->hdr_lines);
        assert_int_equal(p->body_off, q->body_off);
        assert_int_equal(p->body_len, q->body_len);
        assert_int_equal(p->body_lines, q->body_lines);
        assert_int_equal(p->cte, q->cte);
        assert_string_equal(p->type, q->type);
        assert_string_equal(p->subtype, q->subtype);
        assert_int_equal(p->nparams, q->nparams);
        /* the header block, and its place in the message */
        assert_int_equal(p->hdr_off, p->body_off - p->hdr_len);
        assert_true(q->hdr_off + q->hdr_len <= s->data_len);
        assert_memory_equal(w->data + p->hdr_off, s->data + q->hdr_off, p->hdr_len);
        static const char *const names[] = {"Subject", "Content-Type", "From", "X-None"};
        for (size_t i = 0; i < 4; i++) {
            struct mime_field f1, f2;
            bool r1 = mime_part_field(w, p, names[i], &f1);
            assert_int_equal(r1, mime_part_field(s, q, names[i], &f2));
            if (r1) {
                assert_int_equal(f1.line_len, f2.line_len);
                assert_memory_equal(f1.line, f2.line, f1.line_len);
            }
        }
    }
    assert_null(p);
    assert_null(q);
    struct buf a = BUF_INIT, b = BUF_INIT;
    imap_items(w, &a);
    imap_items(s, &b);
    if (buf_size(&a) != buf_size(&b) || memcmp(buf_ptr(&a), buf_ptr(&b), buf_size(&a)) != 0) {
        fprintf(stderr, "%s: stream differs:\n  parse:  %.*s\n  stream: %.*s\n", what,
                (int)buf_size(&a), (const char *)buf_ptr(&a), (int)buf_size(&b),
                (const char *)buf_ptr(&b));
        fail();
    }
    buf_free(&a);
    buf_free(&b);
}

static uint32_t rnd(uint32_t *x)
{
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}

/* Stream msg in chunks: chunk 0 = whole, else fixed size chunk (> 0), or
 * random sizes 1..maxr seeded by seed when chunk == (size_t)-1. */
static struct mime_message *stream(const uint8_t *msg, size_t len, const struct mime_limits *lim,
                                   size_t chunk, uint32_t seed, size_t maxr)
{
    struct mime_stream *s = mime_stream_new(lim);
    assert_non_null(s);
    size_t pos = 0;
    while (pos < len) {
        size_t n = chunk == 0 ? len : chunk == (size_t)-1 ? 1 + rnd(&seed) % maxr : chunk;
        if (n > len - pos)
            n = len - pos;
        assert_int_equal(mime_stream_feed(s, msg + pos, n), 0);
        pos += n;
    }
    struct mime_message *m = mime_stream_finish(s);
    assert_non_null(m);
    return m;
}

static unsigned n_compared;

/* Every chunking of one message, against mime_parse. */
static void check_message(const uint8_t *msg, size_t len, const struct mime_limits *lim,
                          const char *what, bool all_sizes)
{
    struct mime_message *w = mime_parse(msg, len, lim);
    assert_non_null(w);
    size_t fixed[] = {0, 1, 2, 3, 7, 64, 4096};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        struct mime_message *s = stream(msg, len, lim, fixed[i], 0, 0);
        check_same(w, s, what);
        mime_message_free(&s);
        n_compared++;
    }
    for (uint32_t seed = 1; seed <= 6; seed++) {
        struct mime_message *s = stream(msg, len, lim, (size_t)-1, seed, seed < 4 ? 16 : 1000);
        check_same(w, s, what);
        mime_message_free(&s);
        n_compared++;
    }
    if (all_sizes) {
        for (size_t c = 4; c <= 40; c++) {
            struct mime_message *s = stream(msg, len, lim, c, 0, 0);
            check_same(w, s, what);
            mime_message_free(&s);
            n_compared++;
        }
    }
    mime_message_free(&w);
}

static void test_corpus(void **state)
{
    (void)state;
    DIR *d = opendir(CORPUS_DIR);
    if (!d) {
        fprintf(stderr, "no corpus at %s: skipped\n", CORPUS_DIR);
        skip();
    }
    static const struct mime_limits limits[] = {
        {0, 0, 0}, {1, 0, 0}, {2, 3, 0}, {0, 4, 0}, {3, 0, 64},
    };
    unsigned files = 0, expected = 0;
    n_compared = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' || strcmp(n, "README.md") == 0 || strncmp(n, "LICENSE", 7) == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, n);
        struct buf raw = BUF_INIT, msg = BUF_INIT, want = BUF_INIT, out = BUF_INIT;
        assert_true(read_file(path, &raw));
        files++;
        assert_int_equal(mime_crlf_normalize(buf_ptr(&raw), buf_size(&raw), &msg), 0);
        for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
            check_message(buf_ptr(&raw), buf_size(&raw), &limits[i], n, false);
            check_message(buf_ptr(&msg), buf_size(&msg), &limits[i], n, false);
        }
        /* the stream's own answer equals Dovecot's */
        snprintf(path, sizeof(path), "%s/%s.fetch", EXPECTED_DIR, n);
        if (read_file(path, &want)) {
            struct mime_message *s = stream(buf_ptr(&msg), buf_size(&msg), NULL, 1, 0, 0);
            buf_puts(&out, "ENVELOPE ");
            assert_int_equal(mime_imap_envelope(s, NULL, &out), 0);
            buf_puts(&out, " BODY ");
            assert_int_equal(mime_imap_bodystructure(s, NULL, false, &out), 0);
            buf_puts(&out, " BODYSTRUCTURE ");
            assert_int_equal(mime_imap_bodystructure(s, NULL, true, &out), 0);
            assert_int_equal(buf_size(&out), buf_size(&want));
            assert_memory_equal(buf_ptr(&out), buf_ptr(&want), buf_size(&want));
            mime_message_free(&s);
            expected++;
        }
        buf_free(&raw);
        buf_free(&msg);
        buf_free(&want);
        buf_free(&out);
    }
    closedir(d);
    fprintf(stderr, "stream corpus: %u messages, %u streamed parses equal, %u equal Dovecot's\n",
            files, n_compared, expected);
    assert_true(files >= 100);
    assert_true(expected >= 100);
}

/* --- hand-written broken messages ------------------------------------------------------- */

static const char *const tricky[] = {
    /* message/global holding a multipart, inside a multipart */
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"a\"\r\n\r\npre\r\n--a\r\n"
    "Content-Type: message/global\r\n\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
    "\r\nh\xc3\xa9\r\n--b\r\nContent-Type: message/global\r\n\r\nSubject: deep\r\n\r\nx\r\n--b--\r\n"
    "\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>\r\n--a--\r\nepilogue\r\n",
    /* message/global at the top, no final line break */
    "MIME-Version: 1.0\r\nContent-Type: message/global\r\n\r\nFrom: a@b\r\nSubject: s\r\n\r\nbody",
    /* a delimiter inside a header, the empty line then a delimiter */
    "Content-Type: multipart/mixed; boundary=zz\r\nMIME-Version: 1.0\r\n\r\n--zz\r\n"
    "Content-Type: text/plain\r\n--zz\r\nContent-Type: message/rfc822\r\n\r\n--zz\r\n"
    "X: y\r\n\r\n--zz--",
    /* nested multiparts with prefix boundaries, missing close delimiters */
    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n--x\n"
    "Content-Type: multipart/mixed; boundary=xy\n\n--xy\nA\n--xyz\n--x\nB\n--xy--\n--x--\n",
    /* digest, rfc822 with cut header, 8-bit in a delimiter line */
    "MIME-Version: 1.0\r\nContent-Type: multipart/digest; boundary=\"d\"\r\n\r\n--d\r\n\r\n"
    "Subject: one\r\n\r\n1\r\n--d \xff\xfe\r\nSubject: two\r\n--d--\r\n",
    /* folded fields, CR alone, NUL, a header without an empty line */
    "Subject: a\r\n b\r\n\tc\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nX: \0\r\rz\r\n",
    /* message/global cut by the outer delimiter right after its header */
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n"
    "Content-Type: message/global\r\n\r\n--q\r\nContent-Type: message/global\r\n--q--\r\n",
    "",
    "\r\n",
    "--",
};

static void test_tricky(void **state)
{
    (void)state;
    static const struct mime_limits limits[] = {
        {0, 0, 0}, {1, 0, 0}, {2, 0, 0}, {0, 2, 0}, {0, 3, 0}, {0, 5, 0}, {0, 0, 20},
    };
    n_compared = 0;
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        size_t len = strlen(tricky[i]);
        if (i == 5)
            len = 60; /* with the NUL */
        for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++)
            check_message((const uint8_t *)tricky[i], len, &limits[l], tricky[i], true);
    }
    fprintf(stderr, "tricky messages: %u streamed parses equal\n", n_compared);
}

/* --- a message larger than memory would allow if kept ----------------------------------- */

#define BIG_BODY (200u * 1024 * 1024)
#define CHUNK (64 * 1024)

static const char big_head[] =
    "From: big@example.org\r\nTo: you@example.org\r\nSubject: a big attachment\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BIG\"\r\n\r\n"
    "--BIG\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"
    "--BIG\r\nContent-Type: application/octet-stream; name=big.bin\r\n"
    "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=big.bin\r\n"
    "\r\n";
static const char big_tail[] = "\r\n--BIG--\r\n";

/* The message with body_size octets of base64 lines (76 + CRLF), fed to s
 * in CHUNK pieces (or appended to whole when not NULL). */
static void big_generate(struct mime_stream *s, struct buf *whole, size_t body_size)
{
    static uint8_t chunk[CHUNK];
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t fill = 0, col = 0;
    uint32_t x = 7;
#define PUT(p, n)                                                                                  \
    do {                                                                                           \
        if (s)                                                                                     \
            assert_int_equal(mime_stream_feed(s, (const uint8_t *)(p), (n)), 0);                   \
        else                                                                                       \
            assert_int_equal(buf_append(whole, (p), (n)), 0);                                      \
    } while (0)
    PUT(big_head, strlen(big_head));
    for (size_t done = 0; done < body_size;) {
        uint8_t c;
        if (col == 76) {
            c = done + 1 < body_size ? '\r' : 'A';
            col++;
        } else if (col == 77) {
            c = '\n';
            col = 0;
        } else {
            c = (uint8_t)b64[rnd(&x) & 63];
            col++;
        }
        if (c == '\n' && chunk[fill - 1] != '\r')
            c = 'A';
        chunk[fill++] = c;
        done++;
        if (fill == CHUNK || done == body_size) {
            PUT(chunk, fill);
            fill = 0;
        }
    }
    PUT(big_tail, strlen(big_tail));
#undef PUT
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_big(void **state)
{
    (void)state;
    /* first a small one, against mime_parse */
    struct buf whole = BUF_INIT;
    big_generate(NULL, &whole, 3u * 1024 * 1024 + 5);
    check_message(buf_ptr(&whole), buf_size(&whole), NULL, "big (3 MB)", false);
    struct mime_stream *s = mime_stream_new(NULL);
    assert_non_null(s);
    big_generate(s, NULL, 3u * 1024 * 1024 + 5);
    struct mime_message *m = mime_stream_finish(s), *w = mime_parse(buf_ptr(&whole), buf_size(&whole), NULL);
    check_same(w, m, "big (3 MB, 64 KiB chunks)");
    mime_message_free(&m);
    mime_message_free(&w);
    buf_free(&whole);

    long rss0 = max_rss_kb();
    s = mime_stream_new(NULL);
    assert_non_null(s);
    big_generate(s, NULL, BIG_BODY);
    m = mime_stream_finish(s);
    assert_non_null(m);
    long rss1 = max_rss_kb();
    size_t total = strlen(big_head) + BIG_BODY + strlen(big_tail);
    assert_int_equal(m->size, total);
    assert_int_equal(m->nparts, 3);
    const struct mime_part *att = m->root->children->next;
    assert_non_null(att);
    assert_true(mime_part_is(att, "application", "octet-stream"));
    assert_int_equal(att->body_len, BIG_BODY);
    assert_int_equal(att->body_lines, (BIG_BODY - 1) / 78);
    assert_int_equal(att->cte, MIME_CTE_BASE64);
    assert_false(att->flags & MIME_PART_HAS_8BIT);
    /* only the header blocks are kept */
    size_t hdrs = 0;
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p))
        hdrs += p->hdr_len;
    assert_true(m->data_len <= hdrs + 16);
    assert_true(m->data_len < 1024);
    struct buf out = BUF_INIT;
    assert_int_equal(mime_imap_bodystructure(m, NULL, true, &out), 0);
    fprintf(stderr,
            "big message: %zu octets in %u KiB chunks, header blocks kept: %zu octets, "
            "peak RSS growth %ld KiB\n  BODYSTRUCTURE %s\n",
            total, CHUNK / 1024, m->data_len, rss1 - rss0, buf_cstr(&out));
    /* 200 MB kept would show; allow for the sanitizers' own needs */
    assert_true(rss1 - rss0 < 32 * 1024);
    buf_free(&out);
    mime_message_free(&m);
}

/* Abandoning a parser at any point frees everything (ASan checks). */
static void test_abandon(void **state)
{
    (void)state;
    const char *msg = tricky[0];
    size_t len = strlen(msg);
    for (size_t cut = 0; cut <= len; cut += 7) {
        struct mime_stream *s = mime_stream_new(NULL);
        assert_non_null(s);
        assert_int_equal(mime_stream_feed(s, (const uint8_t *)msg, cut), 0);
        mime_stream_free(s);
    }
    mime_stream_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tricky),
        cmocka_unit_test(test_abandon),
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
