/* fuzz_outgoing — libFuzzer target for what handles a submitted message on
 * its way out: the RFC 6409 fix-ups and From: extraction
 * (proto/smtp/submission.c), and the DSN builder with that message as the
 * original (queue/dsn.c), plus dsn_count_received.
 *
 * Checked: no crash or sanitizer report; after the fix-ups no Bcc: field is
 * left in the header block; every From: address has an "@"; the DSN is
 * built, its lines end in CRLF and are at most 998 octets.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "proto/smtp/submission.h"
#include "queue/dsn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

/* No "Bcc:" field in the header block (fields start a line, the block ends
 * at the first empty line). */
static bool no_bcc(const uint8_t *m, size_t n)
{
    for (size_t pos = 0; pos < n;) {
        const uint8_t *eol = memchr(m + pos, '\n', n - pos);
        size_t ll = eol ? (size_t)(eol - (m + pos)) : n - pos;
        if (ll == 0 || (ll == 1 && m[pos] == '\r'))
            return true;
        const uint8_t *colon = memchr(m + pos, ':', ll);
        if (colon && m[pos] != ' ' && m[pos] != '\t') {
            size_t nl = (size_t)(colon - (m + pos));
            while (nl > 0 && (m[pos + nl - 1] == ' ' || m[pos + nl - 1] == '\t'))
                nl--;
            if ((nl == 3 && !strncasecmp((const char *)m + pos, "Bcc", 3)) ||
                (nl == 10 && !strncasecmp((const char *)m + pos, "Resent-Bcc", 10)))
                return memchr(m + pos, '\0', nl) != NULL; /* a NUL cuts the name */
        }
        pos += ll + 1;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out = BUF_INIT;
    struct smtp_fixup_result r;
    if (smtp_submission_fixup(data, size, "mx.example.test", 1795328000, "id", &out, &r) == 0)
        fuzz_check(no_bcc(buf_ptr(&out), buf_size(&out)));
    char **addrs = NULL;
    size_t n = 0;
    if (smtp_from_addrs(data, size, &addrs, &n) == 0)
        for (size_t i = 0; i < n; i++)
            fuzz_check(strchr(addrs[i], '@') != NULL);
    smtp_from_addrs_free(addrs, n);
    (void)dsn_count_received(data, size);

    struct dsn_rcpt rc = {
        .final_recipient = "bob@example.org",
        .action = DSN_FAILED,
        .status = "5.1.1",
        .remote_mta = "mx.example.org",
        .diagnostic = "550 5.1.1 no such user",
    };
    struct dsn_params p = {
        .reporting_mta = "mx.example.test",
        .queue_id = "Q1",
        .sender = "alice@example.test",
        .arrival = 1795328000,
        .now = 1795328100,
        .boundary = "=_b",
        .message_id = "dsn.1@mx.example.test",
        .original = data,
        .original_len = size,
        .rcpts = &rc,
        .nrcpts = 1,
    };
    struct buf dsn = BUF_INIT;
    fuzz_check(dsn_build(&p, &dsn) == 0);
    const uint8_t *d = buf_ptr(&dsn);
    size_t dn = buf_size(&dsn), start = 0;
    for (size_t i = 0; i < dn; i++) {
        if (d[i] != '\n')
            continue;
        fuzz_check(i > 0 && d[i - 1] == '\r');
        fuzz_check(i + 1 - start <= 1000);
        start = i + 1;
    }
    fuzz_check(start == dn);
    buf_free(&dsn);
    buf_free(&out);
    return 0;
}
