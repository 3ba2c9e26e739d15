/* fuzz_smtp_session — libFuzzer target for the SMTP server session.
 *
 * Input layout: the first octet picks the configuration (bit 0-1: line
 * limits, bit 2: STARTTLS offered, bit 3: EXPN, bit 5: timeout at the end,
 * bit 6: shutdown at the end, bit 7: IPv6 client); the rest is what the
 * client sends. It is fed in four pieces cut at positions derived from the
 * data, and, when STARTTLS is not offered (with STARTTLS, what is dropped
 * after the command depends on the feed boundaries by design), once more
 * one octet per feed: both transcripts must be the same.
 *
 * Every request is answered at once, cycling through the possible answers.
 * Checked on the way (a failure traps):
 *  - every reply line is "DDD" followed by " " or "-", and ends with CRLF;
 *  - a delivered message has only CRLF line endings (bare CR/LF are
 *    normalised) and respects the size limit; the envelope is complete;
 *  - the trace headers can be formatted for each recipient.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proto/smtp/received.h"
#include "proto/smtp/smtp_server.h"

/* One session over data, fed in pieces cut at cuts[] (NULL: one octet per feed). */
static void fuzz_run(const struct smtp_session_config *cfg, uint8_t mode, const uint8_t *data,
                     size_t size, const size_t *cuts, struct buf *transcript)
{
    struct smtp_session *s = smtp_session_new(cfg, (mode & 0x80) ? "2001:db8::1" : "192.0.2.1",
                                              "fz");
    if (!s)
        return;
    struct buf out = BUF_INIT;
    unsigned nreq = 0;
    smtp_session_start(s, &out);
    fuzz_check_out(&out, transcript);
    enum smtp_session_status st = SMTP_SESSION_CONTINUE;
    if (!cuts) {
        for (size_t i = 0; i < size; i++) {
            st = smtp_session_feed(s, data + i, 1, &out);
            st = fuzz_answer(s, &out, st, &nreq, transcript);
        }
    } else {
        for (int i = 0; i < 4; i++) {
            st = smtp_session_feed(s, data + cuts[i], cuts[i + 1] - cuts[i], &out);
            st = fuzz_answer(s, &out, st, &nreq, transcript);
        }
    }
    buf_printf(transcript, "{%d %s}", (int)st, smtp_session_state_name(s));
    if (mode & 0x20)
        smtp_session_timeout(s, &out);
    if (mode & 0x40)
        smtp_session_shutdown(s, &out);
    fuzz_check_out(&out, transcript);
    (void)smtp_session_tls_active(s);
    smtp_session_free(&s);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        log_set_level(LOG_ERROR);
        quiet = true;
    }
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    struct smtp_session_config cfg = {
        .hostname = "fuzz.example",
        .limits =
            {
                .max_command_line = 40 + (size_t)(mode & 3) * 160,
                .max_text_line = 78 + (size_t)(mode & 3) * 300,
                .max_message_size = FUZZ_MAX_MESSAGE,
                .max_recipients = 3,
                .max_errors = 25,
            },
        .starttls_available = mode & 4,
        .expn_enabled = mode & 8,
    };
    uint32_t h = 2166136261u; /* FNV-1a picks the cut points */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    size_t cuts[5] = {0, 0, 0, 0, size};
    for (int i = 1; i < 4; i++) {
        cuts[i] = h % (size + 1);
        h = h * 1103515245u + 12345u;
        if (cuts[i] < cuts[i - 1])
            cuts[i] = cuts[i - 1];
    }
    struct buf t1 = BUF_INIT, t2 = BUF_INIT;
    fuzz_run(&cfg, mode, data, size, cuts, &t1);
    if (!cfg.starttls_available) {
        fuzz_run(&cfg, mode, data, size, NULL, &t2);
        fuzz_check(buf_size(&t1) == buf_size(&t2) &&
                   memcmp(buf_ptr(&t1), buf_ptr(&t2), buf_size(&t1)) == 0);
    }
    buf_free(&t1);
    buf_free(&t2);
    return 0;
}
