/* fuzz_scram — libFuzzer target for the server side of SCRAM-SHA-256
 * (auth/scram.c), which parses what a network client sends.
 *
 * The input is split at its first NUL into the client-first and the
 * client-final message (a missing second part: only the first step); the
 * keys given after NEED_KEYS are real ones (password "pencil") or none,
 * by the input's length. Checked: no crash, no sanitizer report, a result
 * in range, and never SCRAM_OK (the fuzzer cannot know the proof).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/scram.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct scram_keys keys;
    static int have_keys;
    if (!have_keys) {
        static const uint8_t salt[16] = "0123456789abcdef";
        fuzz_check(scram_keys_derive_salt("pencil", 4096, salt, sizeof(salt), &keys) == 0);
        have_keys = 1;
    }
    static const uint8_t secret[32] = {1, 2, 3};
    struct scram_server *s = scram_server_new("snonce", secret, sizeof(secret));
    if (!s)
        return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size;
    struct buf out = BUF_INIT;
    enum scram_result r = scram_server_step(s, data, n1, &out);
    fuzz_check(r >= SCRAM_CONTINUE && r <= SCRAM_FAIL);
    if (r == SCRAM_NEED_KEYS) {
        fuzz_check(scram_server_user(s) != NULL);
        buf_reset(&out);
        r = scram_server_set_keys(s, size % 2 ? &keys : NULL, &out);
        fuzz_check(r == SCRAM_CONTINUE || r == SCRAM_FAIL);
        if (r == SCRAM_CONTINUE && nul) {
            buf_reset(&out);
            r = scram_server_step(s, nul + 1, size - n1 - 1, &out);
            fuzz_check(r == SCRAM_FAIL || r == SCRAM_CONTINUE);
        }
    }
    buf_free(&out);
    scram_server_free(&s);
    return 0;
}
