/* mime against the shared corpus (../shared/corpus/mime, 104 real and
 * broken messages; skipped when the folder is absent).
 *
 * Every message is parsed (as stored: with CRLF, the way an IMAP APPEND
 * carries it; and as the raw file), every section of every part is
 * fetched, searched and decoded: nothing may crash or leak (ASan).
 *
 * ENVELOPE, BODY and BODYSTRUCTURE must equal, byte for byte, what
 * Dovecot 2.3.19 answers for the same message: tests/unit/mime_expected/
 * holds its answers (regenerate with tests/unit/mime_expected/regen.sh).
 * known_differences[] lists the messages where correio differs on purpose,
 * with the reason; it is empty: all 103 non-empty messages match. (The
 * empty file sample_output_multipart has no expected file: Dovecot refuses
 * an empty APPEND.)
 */
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>

#include "lib/buf.h"
#include "mime/mime.h"
#include "mime/mime_decode.h"
#include "mime/mime_imap.h"

#define CORPUS_DIR "../shared/corpus/mime"
#define EXPECTED_DIR "tests/unit/mime_expected"

static const struct {
    const char *file;
    const char *reason;
} known_differences[] = {
    {NULL, NULL}, /* none */
};

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

static bool is_known_difference(const char *name)
{
    for (size_t i = 0; known_differences[i].file; i++) {
        if (strcmp(known_differences[i].file, name) == 0)
            return true;
    }
    return false;
}

/* Fetch every kind of section of every part; search; decode. */
static void exercise(const struct mime_message *m)
{
    static const char *const specs[] = {"",
                                        ".MIME",
                                        ".HEADER",
                                        ".TEXT",
                                        ".HEADER.FIELDS (Subject From Content-Type)",
                                        ".HEADER.FIELDS.NOT (Received)"};
    struct buf name = BUF_INIT, sec = BUF_INIT, built = BUF_INIT;
    for (const struct mime_part *p = m->root; p; p = mime_part_walk_next(p)) {
        buf_reset(&name);
        assert_int_equal(mime_part_section_name(m, p, &name), 0);
        for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
            buf_reset(&sec);
            buf_append(&sec, buf_ptr(&name), buf_size(&name));
            buf_puts(&sec, buf_size(&name) ? specs[i] : specs[i] + (specs[i][0] == '.'));
            if (buf_size(&name) == 0 && i == 1)
                continue; /* MIME needs a part number */
            struct mime_section s;
            char err[64];
            const char *t = buf_cstr(&sec);
            assert_int_equal(mime_section_parse(t, strlen(t), &s, err, sizeof(err)), 0);
            size_t off, len;
            buf_reset(&built);
            enum mime_section_result r = mime_section_fetch(m, &s, &off, &len, &built);
            assert_true(r != MIME_SECTION_NOMEM);
            if (r == MIME_SECTION_RANGE)
                assert_true(off + len <= m->size);
            mime_section_clear(&s);
        }
        if (!p->children && mime_part_is(p, "text", NULL)) {
            buf_reset(&built);
            assert_int_equal(mime_part_decode_text(m, p, &built), 0);
        }
        buf_reset(&built);
        assert_int_equal(mime_imap_bodystructure(m, p, true, &built), 0);
    }
    assert_true(mime_search_text(m, MIME_SEARCH_TEXT, NULL, "xyzzy-not-there") == 0);
    assert_true(mime_search_text(m, MIME_SEARCH_HEADER, "Subject", "") >= 0);
    buf_free(&name);
    buf_free(&sec);
    buf_free(&built);
}

static void test_corpus(void **state)
{
    DIR *d = opendir(CORPUS_DIR);
    if (!d) {
        fprintf(stderr, "no corpus at %s: skipped\n", CORPUS_DIR);
        skip();
    }
    unsigned files = 0, compared = 0, equal = 0, known = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' || strcmp(n, "README.md") == 0 || strncmp(n, "LICENSE", 7) == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, n);
        struct buf raw = BUF_INIT, msg = BUF_INIT, out = BUF_INIT, want = BUF_INIT;
        assert_true(read_file(path, &raw));
        files++;

        /* as the raw file (bare LF, mbox "From " lines) */
        struct mime_message *m = mime_parse(buf_ptr(&raw), buf_size(&raw), NULL);
        assert_non_null(m);
        exercise(m);
        mime_message_free(&m);

        /* as stored after an IMAP APPEND: CRLF */
        assert_int_equal(mime_crlf_normalize(buf_ptr(&raw), buf_size(&raw), &msg), 0);
        m = mime_parse(buf_ptr(&msg), buf_size(&msg), NULL);
        assert_non_null(m);
        exercise(m);
        buf_puts(&out, "ENVELOPE ");
        assert_int_equal(mime_imap_envelope(m, NULL, &out), 0);
        buf_puts(&out, " BODY ");
        assert_int_equal(mime_imap_bodystructure(m, NULL, false, &out), 0);
        buf_puts(&out, " BODYSTRUCTURE ");
        assert_int_equal(mime_imap_bodystructure(m, NULL, true, &out), 0);
        mime_message_free(&m);

        snprintf(path, sizeof(path), "%s/%s.fetch", EXPECTED_DIR, n);
        if (read_file(path, &want)) {
            compared++;
            if (buf_size(&out) == buf_size(&want) &&
                memcmp(buf_ptr(&out), buf_ptr(&want), buf_size(&out)) == 0) {
                equal++;
            } else if (is_known_difference(n)) {
                known++;
            } else {
                fprintf(stderr, "%s differs from Dovecot:\n  correio: %.*s\n  dovecot: %.*s\n", n,
                        (int)buf_size(&out), (const char *)buf_ptr(&out), (int)buf_size(&want),
                        (const char *)buf_ptr(&want));
            }
        }
        buf_free(&raw);
        buf_free(&msg);
        buf_free(&out);
        buf_free(&want);
    }
    closedir(d);
    fprintf(stderr,
            "corpus: %u messages, %u compared with Dovecot: %u equal, %u known differences\n",
            files, compared, equal, known);
    assert_true(files >= 100);
    assert_true(compared >= 100);
    assert_int_equal(equal + known, compared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
