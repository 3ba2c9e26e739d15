/* Unit tests for proto/imap/imap_parser: commands, literals, errors and
 * recovery, limits, FETCH section specs. Every transcript test also feeds
 * its input one byte at a time and in odd-sized pieces: same transcript. */
#include "testutil.h"

#include "lib/buf.h"
#include "proto/imap/imap_parser.h"

#include <stdbool.h>
#include <strings.h>

/* --- transcript helpers -------------------------------------------------------- */

static void dump_bytes(struct buf *t, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            buf_puts(t, "\\r");
        else if (c == '\n')
            buf_puts(t, "\\n");
        else if (c < 0x20 || c >= 0x7f)
            buf_printf(t, "\\x%02x", c);
        else
            buf_append(t, &c, 1);
    }
}

static void dump_args(struct buf *t, const struct imap_arg *args, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct imap_arg *a = &args[i];
        if (i > 0)
            buf_puts(t, " ");
        switch (a->type) {
        case IMAP_ARG_ATOM:
            assert_int_equal(strlen(a->str), a->len);
            buf_puts(t, a->str);
            break;
        case IMAP_ARG_NIL:
            assert_int_equal(strcasecmp(a->str, "NIL"), 0);
            buf_puts(t, "NIL");
            break;
        case IMAP_ARG_QUOTED:
            buf_puts(t, "\"");
            dump_bytes(t, a->str, a->len);
            buf_puts(t, "\"");
            break;
        case IMAP_ARG_LITERAL:
            assert_int_equal(a->str[a->len], '\0');
            buf_printf(t, "%s{%zu}", a->literal8 ? "~" : "", a->len);
            dump_bytes(t, a->str, a->len);
            break;
        case IMAP_ARG_LIST:
            assert_null(a->str);
            buf_puts(t, "(");
            dump_args(t, a->list, a->nlist);
            buf_puts(t, ")");
            break;
        }
    }
}

/* Drain the parser into the transcript. reject: refuse every sync literal. */
static void drain(struct imap_parser *p, struct buf *t, bool reject)
{
    for (;;) {
        struct imap_command *cmd;
        const char *tag, *err;
        enum imap_parse_status st = imap_parser_next(p, &cmd, &tag, &err);
        switch (st) {
        case IMAP_PARSE_NEED_MORE:
            return;
        case IMAP_PARSE_COMMAND:
            buf_printf(t, "CMD %s %s", cmd->tag, cmd->name);
            if (cmd->nargs) {
                buf_puts(t, " ");
                dump_args(t, cmd->args, cmd->nargs);
            }
            buf_puts(t, "\n");
            break;
        case IMAP_PARSE_LITERAL_WAIT:
            buf_printf(t, "WAIT %s %s\n", tag, err ? err : "ok");
            if (reject)
                imap_parser_reject_literal(p);
            break;
        case IMAP_PARSE_ERROR:
            buf_printf(t, "ERR %s %s\n", tag ? tag : "*", err);
            break;
        case IMAP_PARSE_LINE:
            fail_msg("next() returned LINE");
        }
    }
}

/* Parse len bytes fed in pieces of chunk bytes (0: all at once). Returns
 * the transcript (caller frees). */
static char *run_chunked(const struct imap_parser_limits *lim, const char *in, size_t len,
                         size_t chunk, bool reject)
{
    struct imap_parser *p = imap_parser_new(lim);
    assert_non_null(p);
    struct buf t = BUF_INIT;
    if (chunk == 0)
        chunk = len ? len : 1;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        assert_int_equal(imap_parser_feed(p, in + off, n), 0);
        drain(p, &t, reject);
    }
    drain(p, &t, reject);
    imap_parser_free(&p);
    assert_null(p);
    char *s = strdup(buf_cstr(&t));
    buf_free(&t);
    return s;
}

/* Parse in (length len) at once, byte by byte and in several piece sizes;
 * all transcripts must equal expect. */
static void check_len(const struct imap_parser_limits *lim, const char *in, size_t len, bool reject,
                      const char *expect)
{
    static const size_t chunks[] = {0, 1, 2, 3, 5, 7, 13, 64};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        char *got = run_chunked(lim, in, len, chunks[i], reject);
        if (strcmp(got, expect) != 0) {
            print_error("chunk %zu:\n--- got\n%s--- expected\n%s", chunks[i], got, expect);
            free(got);
            fail();
        }
        free(got);
    }
}

static void check(const char *in, const char *expect)
{
    check_len(NULL, in, strlen(in), false, expect);
}

static void check_lim(const struct imap_parser_limits *lim, const char *in, const char *expect)
{
    check_len(lim, in, strlen(in), false, expect);
}

/* --- argument types ------------------------------------------------------------- */

static void test_simple(void **state)
{
    (void)state;
    check("a1 NOOP\r\n", "CMD a1 NOOP\n");
    check("a1 noop\r\n", "CMD a1 NOOP\n");
    check("A001 LOGIN smith sesame\r\n", "CMD A001 LOGIN smith sesame\n");
    /* bare LF, trailing SP, several SP */
    check("x capability\n", "CMD x CAPABILITY\n");
    check("x NOOP \r\n", "CMD x NOOP\n");
    check("x LOGIN  a   b\r\n", "CMD x LOGIN a b\n");
    /* a tag may hold "]" and other ASTRING-CHARs */
    check("a]1.2_x NOOP\r\n", "CMD a]1.2_x NOOP\n");
}

static void test_arg_types(void **state)
{
    (void)state;
    check("a SELECT \"INBOX\"\r\n", "CMD a SELECT \"INBOX\"\n");
    check("a SELECT \"a \\\"b\\\" \\\\c\"\r\n", "CMD a SELECT \"a \"b\" \\c\"\n");
    check("a SELECT \"\"\r\n", "CMD a SELECT \"\"\n");
    /* 8-bit (UTF-8) in quoted strings */
    check("a SELECT \"caf\xc3\xa9\"\r\n", "CMD a SELECT \"caf\\xc3\\xa9\"\n");
    check("a X NIL nil \"NIL\"\r\n", "CMD a X NIL NIL \"NIL\"\n");
    check("a X (a (b (c)) ()) d\r\n", "CMD a X (a (b (c)) ()) d\n");
    check("a STORE 1:*,5 +FLAGS.SILENT (\\Seen \\Deleted $Forwarded)\r\n",
          "CMD a STORE 1:*,5 +FLAGS.SILENT (\\Seen \\Deleted $Forwarded)\n");
    check("a LIST \"\" *\r\n", "CMD a LIST \"\" *\n");
    check("a LIST \"\" %/INBOX.*\r\n", "CMD a LIST \"\" %/INBOX.*\n");
    check("a SELECT [Gmail]/Sent\r\n", "CMD a SELECT [Gmail]/Sent\n");
    check("a SELECT foo[bar\r\n", "CMD a SELECT foo[bar\n");
    check("a SELECT ~peter/mail/&U,BTFw-\r\n", "CMD a SELECT ~peter/mail/&U,BTFw-\n");
    check("a PERMANENTFLAGS (\\*)\r\n", "CMD a PERMANENTFLAGS (\\*)\n");
    check("a FETCH 1 (BODY[] BODY.PEEK[1.2.MIME] BINARY[1]<0.10>)\r\n",
          "CMD a FETCH 1 (BODY[] BODY.PEEK[1.2.MIME] BINARY[1]<0.10>)\n");
    check("a FETCH 1 BODY[HEADER.FIELDS (From \"To\")]<0.100>\r\n",
          "CMD a FETCH 1 BODY[HEADER.FIELDS (From \"To\")]<0.100>\n");
}

static void test_arg_helpers(void **state)
{
    (void)state;
    struct imap_parser *p = imap_parser_new(NULL);
    const char in[] = "t UID fetch NIL \"q\" (x) {3+}\r\na\0b\r\n";
    assert_int_equal(imap_parser_feed(p, in, sizeof(in) - 1), 0);
    struct imap_command *cmd;
    const char *tag, *err;
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->name, "UID");
    assert_int_equal(cmd->nargs, 5);
    assert_true(imap_arg_atom_is(&cmd->args[0], "FETCH"));
    assert_false(imap_arg_atom_is(&cmd->args[0], "STORE"));
    assert_false(imap_arg_atom_is(&cmd->args[2], "q"));
    assert_string_equal(imap_arg_str(&cmd->args[0]), "fetch");
    assert_int_equal(cmd->args[1].type, IMAP_ARG_NIL);
    assert_string_equal(imap_arg_str(&cmd->args[1]), "NIL");
    assert_string_equal(imap_arg_str(&cmd->args[2]), "q");
    assert_null(imap_arg_str(&cmd->args[3]));
    assert_int_equal(cmd->args[4].type, IMAP_ARG_LITERAL);
    assert_int_equal(cmd->args[4].len, 3);
    assert_memory_equal(cmd->args[4].str, "a\0b", 3);
    assert_null(imap_arg_str(&cmd->args[4])); /* holds a NUL */
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_NEED_MORE);
    imap_parser_free(&p);
    imap_parser_free(&p); /* NULL-safe */
}

/* --- literals ------------------------------------------------------------------------- */

static void test_literals(void **state)
{
    (void)state;
    /* synchronizing: one WAIT per literal */
    check("a LOGIN {4}\r\nuser {6}\r\nsesame\r\n",
          "WAIT a ok\nWAIT a ok\nCMD a LOGIN {4}user {6}sesame\n");
    /* LITERAL+ / LITERAL- */
    check("a LOGIN {4+}\r\nuser {6+}\r\nsesame\r\n", "CMD a LOGIN {4}user {6}sesame\n");
    /* literal8 */
    check("a APPEND box ~{3}\r\n\x01\x02\x03\r\n",
          "WAIT a ok\nCMD a APPEND box ~{3}\\x01\\x02\\x03\n");
    /* zero-length literals, in a list too */
    check("a LOGIN {0}\r\n {0+}\r\n\r\n", "WAIT a ok\nCMD a LOGIN {0} {0}\n");
    check("a X ({0+}\r\n)\r\n", "CMD a X ({0})\n");
    /* a literal holding CRLF and a command-like line */
    check("a APPEND box {16+}\r\nb NOOP\r\nc NOOP\r\n\r\nd NOOP\r\n",
          "CMD a APPEND box {16}b NOOP\\r\\nc NOOP\\r\\n\nCMD d NOOP\n");
    /* in a list, followed by ")" */
    check("a X (x {1+}\r\ny) z\r\n", "CMD a X (x {1}y) z\n");
}

static void test_literal_binary(void **state)
{
    (void)state;
    static const char in[] = "a APPEND box ~{5+}\r\n\0\r\n\0\xff {2}\r\n\0\0\r\n";
    check_len(NULL, in, sizeof(in) - 1, false,
              "WAIT a ok\nCMD a APPEND box ~{5}\\x00\\r\\n\\x00\\xff {2}\\x00\\x00\n");
}

static void test_multiappend(void **state)
{
    (void)state;
    check("A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5}\r\n"
          "Hello (\\Draft) {3+}\r\nBye\r\n",
          "WAIT A003 ok\n"
          "CMD A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5}Hello "
          "(\\Draft) {3}Bye\n");
}

/* --- pipelining ------------------------------------------------------------------------ */

static void test_pipelined(void **state)
{
    (void)state;
    check("a NOOP\r\nb CAPABILITY\r\nc LOGIN {1+}\r\nx y\r\nd LOGOUT\r\n",
          "CMD a NOOP\nCMD b CAPABILITY\nCMD c LOGIN {1}x y\nCMD d LOGOUT\n");
}

/* --- errors and recovery --------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    check("\r\na NOOP\r\n", "ERR * empty command line\nCMD a NOOP\n");
    check("NOOP\r\na NOOP\r\n", "ERR NOOP missing command name\nCMD a NOOP\n");
    check(" NOOP\r\na NOOP\r\n", "ERR * missing or invalid tag\nCMD a NOOP\n");
    check("+ NOOP\r\n* NOOP\r\na+ NOOP\r\n",
          "ERR * missing or invalid tag\nERR * missing or invalid tag\n"
          "ERR * missing or invalid tag\n");
    check("a \"NOOP\"\r\nb NO\\OP\r\n", "ERR a invalid command name\nERR b invalid command name\n");
    check("a LOGIN \"abc\r\nb NOOP\r\n", "ERR a unterminated quoted string\nCMD b NOOP\n");
    check("a LOGIN \"a\\bc\"\r\nb NOOP\r\n", "ERR a invalid escape in quoted string\nCMD b NOOP\n");
    check("a LOGIN \"a\"b\r\nb NOOP\r\n", "ERR a missing space between arguments\nCMD b NOOP\n");
    check("a X (a)(b)\r\n", "ERR a missing space between arguments\n");
    check("a X (a\r\nb X a)\r\n", "ERR a missing \")\"\nERR b unexpected \")\"\n");
    check("a LOGIN {3x}\r\nb NOOP\r\n", "ERR a invalid literal\nCMD b NOOP\n");
    check("a LOGIN {}\r\nb NOOP\r\n", "ERR a invalid literal\nCMD b NOOP\n");
    check("a LOGIN {3} x\r\nb NOOP\r\n", "ERR a literal must end the line\nCMD b NOOP\n");
    check("a LOGIN {99999999999999999999999}\r\nb NOOP\r\n",
          "ERR a invalid literal size\nCMD b NOOP\n");
    check("a LOGIN caf\xc3\xa9\r\nb NOOP\r\n",
          "ERR a 8-bit characters outside a quoted string\nCMD b NOOP\n");
    check("a LOGIN a\x01\r\nb NOOP\r\n", "ERR a invalid character\nCMD b NOOP\n");
    check("a LOGIN \x01\r\nb NOOP\r\n", "ERR a invalid character\nCMD b NOOP\n");
    check("a LOGIN x\rb\r\nb NOOP\r\n", "ERR a invalid character\nCMD b NOOP\n");
    /* an error on the line after a literal: the tag is still known */
    check("a LOGIN {1+}\r\nx \"y\r\nb NOOP\r\n", "ERR a unterminated quoted string\nCMD b NOOP\n");
    /* an error in a line ending with {n+}: the literal bytes are skipped */
    check("a LOGIN \"x {5+}\r\nb NOOP\r\nc NOOP\r\n",
          "ERR a unterminated quoted string\nCMD c NOOP\n");
    /* ... and the line after them, with its own literal */
    check("a X ) {3+}\r\nabc {4+}\r\nb NO\r\nc NOOP\r\n", "ERR a unexpected \")\"\nCMD c NOOP\n");
    /* "{n+}" then CR CR LF is no literal (found by fuzz_imap_parser) */
    check("a X ) {1+}\r\r\nb NOOP\r\n", "ERR a unexpected \")\"\nCMD b NOOP\n");
    /* a sync literal after an error is never sent by the client */
    check("a X ) {3}\r\nb NOOP\r\n", "ERR a unexpected \")\"\nCMD b NOOP\n");
}

static void test_depth_and_args(void **state)
{
    (void)state;
    struct imap_parser_limits lim = {.max_depth = 2, .max_args = 5};
    check_lim(&lim, "a X ((a))\r\n", "CMD a X ((a))\n");
    check_lim(&lim, "a X (((a)))\r\nb NOOP\r\n", "ERR a lists nested too deeply\nCMD b NOOP\n");
    check_lim(&lim, "a X 1 2 3 4 5\r\n", "CMD a X 1 2 3 4 5\n");
    check_lim(&lim, "a X 1 2 3 4 5 6\r\nb NOOP\r\n", "ERR a too many arguments\nCMD b NOOP\n");
    check_lim(&lim, "a X (1 2 3 4)\r\n", "CMD a X (1 2 3 4)\n");
    check_lim(&lim, "a X (1 2 3 4 5)\r\n", "ERR a too many arguments\n");
    check_lim(&lim, "a X 1 2 3 4 5 {1+}\r\nx\r\nb NOOP\r\n",
              "ERR a too many arguments\nCMD b NOOP\n");
    /* default depth is 16 */
    char deep[256] = "a X ";
    for (int i = 0; i < 17; i++)
        strcat(deep, "(");
    strcat(deep, "\r\nb NOOP\r\n");
    check(deep, "ERR a lists nested too deeply\nCMD b NOOP\n");
}

static void test_line_too_long(void **state)
{
    (void)state;
    struct imap_parser_limits lim = {.max_line = 20};
    /* 20 bytes with CRLF is fine, 21 is not */
    check_lim(&lim, "a LOGIN 1234567890\r\n", "CMD a LOGIN 1234567890\n");
    check_lim(&lim, "a LOGIN 12345678901\r\nb NOOP\r\n", "ERR a line too long\nCMD b NOOP\n");
    check_lim(&lim, "a LOGIN 1234567890123456789012345678901234567890\r\nb NOOP\r\n",
              "ERR a line too long\nCMD b NOOP\n");
    check_lim(&lim, "abcdefghijklmnopqrstuvwxyz NOOP\r\nb NOOP\r\n",
              "ERR * line too long\nCMD b NOOP\n");
    /* literals do not count, the lines around them do */
    check_lim(&lim, "a LOGIN {30+}\r\n123456789012345678901234567890\r\n",
              "CMD a LOGIN {30}123456789012345678901234567890\n");
    check_lim(&lim, "a LOGIN {1+}\r\nx 12345\r\nb NOOP\r\n", "ERR a line too long\nCMD b NOOP\n");
    /* a too-long line ending in a non-sync literal: its bytes are skipped */
    check_lim(&lim, "a LOGIN xxxxxxxxxxxxxxxxxxxx {8+}\r\nb NOOP\r\n\r\nc NOOP\r\n",
              "ERR a line too long\nCMD c NOOP\n");
    check_lim(&lim, "a LOGIN xxxxxxxxxxxxxxxxxxxx {8}\r\nb NOOP\r\nc NOOP\r\n",
              "ERR a line too long\nCMD b NOOP\nCMD c NOOP\n");
}

static void test_literal_too_large(void **state)
{
    (void)state;
    struct imap_parser_limits lim = {.max_literal = 4};
    check_lim(&lim, "a LOGIN {4}\r\nuser\r\n", "WAIT a ok\nCMD a LOGIN {4}user\n");
    /* sync: WAIT reports it; calling next() again refuses it */
    check_lim(&lim, "a LOGIN {5}\r\nb NOOP\r\n",
              "WAIT a literal too large\nERR a literal too large\nCMD b NOOP\n");
    /* non-sync: the 5 bytes and the rest of the command are skipped */
    check_lim(&lim, "a LOGIN {5+}\r\nb NOO pass\r\nc NOOP\r\n",
              "ERR a literal too large\nCMD c NOOP\n");
    check_lim(&lim, "a LOGIN {5+}\r\nb NOO {2+}\r\nxx\r\nc NOOP\r\n",
              "ERR a literal too large\nCMD c NOOP\n");
}

static void test_reject_literal(void **state)
{
    (void)state;
    check_len(NULL, "a APPEND box {10}\r\nb NOOP\r\n", 27, true, "WAIT a ok\nCMD b NOOP\n");

    struct imap_parser *p = imap_parser_new(NULL);
    struct imap_command *cmd;
    const char *tag, *err, *name;
    uint64_t size;
    bool lit8;
    assert_false(imap_parser_pending_literal(p, &name, &size, &lit8));
    imap_parser_reject_literal(p); /* no-op */
    const char in[] = "a1 append INBOX (\\Seen) ~{310}\r\n";
    assert_int_equal(imap_parser_feed(p, in, sizeof(in) - 1), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_LITERAL_WAIT);
    assert_string_equal(tag, "a1");
    assert_null(err);
    assert_true(imap_parser_pending_literal(p, &name, &size, &lit8));
    assert_string_equal(name, "APPEND");
    assert_int_equal(size, 310);
    assert_true(lit8);
    assert_true(imap_parser_pending_literal(p, NULL, NULL, NULL));
    imap_parser_reject_literal(p);
    assert_false(imap_parser_pending_literal(p, NULL, NULL, NULL));
    assert_int_equal(imap_parser_feed(p, "a2 NOOP\r\n", 9), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->tag, "a2");
    /* a rejected literal in the middle of a half-parsed command */
    assert_int_equal(imap_parser_feed(p, "a3 X {1+}\r\nz {2}\r\na4 NOOP\r\n", 27), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_LITERAL_WAIT);
    assert_string_equal(tag, "a3");
    imap_parser_reject_literal(p);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->tag, "a4");
    imap_parser_free(&p);
}

/* --- AUTHENTICATE / IDLE lines ---------------------------------------------------------- */

static void test_next_line(void **state)
{
    (void)state;
    struct imap_parser_limits lim = {.max_line = 24};
    struct imap_parser *p = imap_parser_new(&lim);
    struct imap_command *cmd;
    const char *tag, *err;
    char *line;
    size_t len;
    const char in[] = "a AUTHENTICATE PLAIN\r\nAGZvbwBiYXI=\r\n*\r\nb IDLE\r\nDO";
    /* fed one byte at a time */
    size_t i = 0;
    enum imap_parse_status st;
    do {
        assert_int_equal(imap_parser_feed(p, in + i++, 1), 0);
    } while ((st = imap_parser_next(p, &cmd, &tag, &err)) == IMAP_PARSE_NEED_MORE);
    assert_int_equal(st, IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->name, "AUTHENTICATE");
    while ((st = imap_parser_next_line(p, &line, &len)) == IMAP_PARSE_NEED_MORE)
        assert_int_equal(imap_parser_feed(p, in + i++, 1), 0);
    assert_int_equal(st, IMAP_PARSE_LINE);
    assert_string_equal(line, "AGZvbwBiYXI=");
    assert_int_equal(len, 12);
    while ((st = imap_parser_next_line(p, &line, &len)) == IMAP_PARSE_NEED_MORE)
        assert_int_equal(imap_parser_feed(p, in + i++, 1), 0);
    assert_int_equal(st, IMAP_PARSE_LINE);
    assert_string_equal(line, "*");
    while ((st = imap_parser_next(p, &cmd, &tag, &err)) == IMAP_PARSE_NEED_MORE)
        assert_int_equal(imap_parser_feed(p, in + i++, 1), 0);
    assert_int_equal(st, IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->name, "IDLE");
    assert_int_equal(imap_parser_feed(p, in + i, sizeof(in) - 1 - i), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_NEED_MORE);
    assert_int_equal(imap_parser_feed(p, "NE\r\n", 4), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_LINE);
    assert_string_equal(line, "DONE");
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_NEED_MORE);
    /* an empty line */
    assert_int_equal(imap_parser_feed(p, "\r\n", 2), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_LINE);
    assert_string_equal(line, "");
    assert_int_equal(len, 0);
    /* too long, partial and complete; then back to normal */
    assert_int_equal(imap_parser_feed(p, "xxxxxxxxxxxxxxxxxxxxxxxx", 24), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_ERROR);
    const char more[] = "yyyy\r\nzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\r\nok\r\n";
    assert_int_equal(imap_parser_feed(p, more, strlen(more)), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_ERROR);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_LINE);
    assert_string_equal(line, "ok");
    /* a too-long raw line is not a command: a "{2+}" ending it is no literal
     * (found by fuzz_imap_parser: depended on how input was split) */
    const char raw[] = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy {2+}\r\nok\r\n";
    assert_int_equal(imap_parser_feed(p, raw, 10), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_NEED_MORE);
    assert_int_equal(imap_parser_feed(p, raw + 10, 20), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_ERROR);
    assert_int_equal(imap_parser_feed(p, raw + 30, strlen(raw) - 30), 0);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_LINE);
    assert_string_equal(line, "ok");
    /* not while a command is half parsed */
    assert_int_equal(imap_parser_feed(p, "c X {1+}\r\n", 10), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_NEED_MORE);
    assert_int_equal(imap_parser_next_line(p, &line, &len), IMAP_PARSE_ERROR);
    imap_parser_free(&p);
}

static void test_reset(void **state)
{
    (void)state;
    struct imap_parser *p = imap_parser_new(NULL);
    struct imap_command *cmd;
    const char *tag, *err;
    const char in[] = "a STARTTLS\r\nb LOGIN x y\r\nc X {5+}\r\nab";
    assert_int_equal(imap_parser_feed(p, in, sizeof(in) - 1), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->name, "STARTTLS");
    assert_int_equal(imap_parser_buffered(p), sizeof(in) - 1 - 12);
    imap_parser_reset(p);
    assert_int_equal(imap_parser_buffered(p), 0);
    assert_int_equal(imap_parser_feed(p, "d NOOP\r\n", 8), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->tag, "d");
    /* reset in the middle of a literal */
    assert_int_equal(imap_parser_feed(p, "e X {5+}\r\nab", 12), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_NEED_MORE);
    imap_parser_reset(p);
    assert_int_equal(imap_parser_feed(p, "f NOOP\r\n", 8), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_COMMAND);
    assert_string_equal(cmd->tag, "f");
    /* freed with a half-parsed command and a literal in progress */
    assert_int_equal(imap_parser_feed(p, "g X (a {5+}\r\nab", 15), 0);
    assert_int_equal(imap_parser_next(p, &cmd, &tag, &err), IMAP_PARSE_NEED_MORE);
    imap_parser_free(&p);
}

/* --- what real clients send --------------------------------------------------------------- */

static void test_real_clients(void **state)
{
    (void)state;
    /* Thunderbird */
    check("a1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
          "Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
          "Content-Type Reply-To)])\r\n",
          "CMD a1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
          "Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
          "Content-Type Reply-To)])\n");
    check("3 ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\")\r\n",
          "CMD 3 ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\")\n");
    check("9 uid store 1:3 +FLAGS (\\Seen)\r\n", "CMD 9 UID store 1:3 +FLAGS (\\Seen)\n");
    /* RFC 3501 6.3.11 */
    check("A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {22}\r\n"
          "Subject: hi\r\n\r\nHello\r\n\r\n",
          "WAIT A003 ok\nCMD A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" "
          "{22}Subject: hi\\r\\n\\r\\nHello\\r\\n\n");
    /* imaplib */
    check("MKEN1 LOGIN user \"pass word\"\r\n", "CMD MKEN1 LOGIN user \"pass word\"\n");
    check("a SEARCH CHARSET UTF-8 OR (FROM \"x\") (TO y) NOT SEEN\r\n",
          "CMD a SEARCH CHARSET UTF-8 OR (FROM \"x\") (TO y) NOT SEEN\n");
    check("a UID SEARCH MODSEQ 62\r\n", "CMD a UID SEARCH MODSEQ 62\n");
    check("a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
          "CMD a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\n");
    /* mbsync */
    check("4 UID FETCH 1:100 (UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TUID MESSAGE-ID)])\r\n",
          "CMD 4 UID FETCH 1:100 (UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TUID MESSAGE-ID)])\n");
    check("5 APPEND \"Sent\" (\\Seen) {3+}\r\nabc\r\n", "CMD 5 APPEND \"Sent\" (\\Seen) {3}abc\n");
    check("6 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n",
          "CMD 6 LIST \"\" \"*\" RETURN (SPECIAL-USE)\n");
    check("7 SEARCH UNDELETED SINCE 1-Feb-1994 LARGER 1000 HEADER X-Tag \"a b\"\r\n",
          "CMD 7 SEARCH UNDELETED SINCE 1-Feb-1994 LARGER 1000 HEADER X-Tag \"a b\"\n");
    check("8 UID EXPUNGE 3000:3002\r\n", "CMD 8 UID EXPUNGE 3000:3002\n");
    check("9 ENABLE QRESYNC CONDSTORE\r\n", "CMD 9 ENABLE QRESYNC CONDSTORE\n");
    check("10 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
          "CMD 10 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\n");
}

/* Every piece of one long session at once vs. byte by byte vs. pieces. */
static void test_session_mix(void **state)
{
    (void)state;
    static const char in[] = "a NOOP\r\n"
                             "\r\n"
                             "b LOGIN {4}\r\nuser {4+}\r\npass\r\n"
                             "c X \"unterminated\r\n"
                             "d APPEND x {3+}\r\n\0\r\n\r\n"
                             "e X ) {2+}\r\n{}\r\n"
                             "f FETCH 1 BODY[HEADER.FIELDS (A \"B)\")]\r\n"
                             "g X ~{1}\r\n~ (NIL)\r\n";
    check_len(NULL, in, sizeof(in) - 1, false,
              "CMD a NOOP\n"
              "ERR * empty command line\n"
              "WAIT b ok\nCMD b LOGIN {4}user {4}pass\n"
              "ERR c unterminated quoted string\n"
              "CMD d APPEND x {3}\\x00\\r\\n\n"
              "ERR e unexpected \")\"\n"
              "CMD f FETCH 1 BODY[HEADER.FIELDS (A \"B)\")]\n"
              "WAIT g ok\nCMD g X ~{1}~ (NIL)\n");
    check_len(NULL, in, sizeof(in) - 1, true,
              "CMD a NOOP\n"
              "ERR * empty command line\n"
              "WAIT b ok\n"
              "ERR user invalid command name\n"
              "ERR c unterminated quoted string\n"
              "CMD d APPEND x {3}\\x00\\r\\n\n"
              "ERR e unexpected \")\"\n"
              "CMD f FETCH 1 BODY[HEADER.FIELDS (A \"B)\")]\n"
              "WAIT g ok\n"
              "ERR ~ invalid command name\n");
}

/* --- sections ---------------------------------------------------------------------------- */

static void section_roundtrip(const char *in, const char *formatted)
{
    struct imap_section s;
    if (imap_section_parse(in, &s) != 0)
        fail_msg("section %s did not parse", in);
    struct buf b = BUF_INIT;
    assert_int_equal(imap_section_format(&s, &b), 0);
    assert_string_equal(buf_cstr(&b), formatted);
    buf_free(&b);
    imap_section_free(&s);
}

static void section_bad(const char *in)
{
    struct imap_section s;
    if (imap_section_parse(in, &s) != -1)
        fail_msg("section %s parsed", in);
}

static void test_section(void **state)
{
    (void)state;
    struct imap_section s;
    assert_int_equal(imap_section_parse("body.peek[1.2.MIME]", &s), 0);
    assert_int_equal(s.kind, IMAP_SECTION_BODY);
    assert_true(s.peek);
    assert_int_equal(s.nparts, 2);
    assert_int_equal(s.part[0], 1);
    assert_int_equal(s.part[1], 2);
    assert_int_equal(s.text, IMAP_SECTION_TEXT_MIME);
    assert_false(s.partial);
    imap_section_free(&s);

    assert_int_equal(imap_section_parse("BODY[HEADER.FIELDS (From \"To\" x-a)]<0.100>", &s), 0);
    assert_false(s.peek);
    assert_int_equal(s.nparts, 0);
    assert_int_equal(s.text, IMAP_SECTION_TEXT_HEADER_FIELDS);
    assert_int_equal(s.nfields, 3);
    assert_string_equal(s.fields[0], "From");
    assert_string_equal(s.fields[1], "To");
    assert_string_equal(s.fields[2], "x-a");
    assert_true(s.partial);
    assert_int_equal(s.partial_offset, 0);
    assert_int_equal(s.partial_length, 100);
    imap_section_free(&s);

    assert_int_equal(imap_section_parse("BINARY.SIZE[3]", &s), 0);
    assert_int_equal(s.kind, IMAP_SECTION_BINARY_SIZE);
    assert_int_equal(s.nparts, 1);
    imap_section_free(&s);
    assert_int_equal(imap_section_parse("BINARY.PEEK[]<4294967295.4294967295>", &s), 0);
    assert_int_equal(s.kind, IMAP_SECTION_BINARY);
    assert_true(s.peek);
    assert_int_equal(s.partial_offset, 4294967295u);
    imap_section_free(&s);

    section_roundtrip("BODY[]", "BODY[]");
    section_roundtrip("body.peek[]<10.20>", "BODY[]<10>");
    section_roundtrip("BODY[TEXT]", "BODY[TEXT]");
    section_roundtrip("BODY[header]", "BODY[HEADER]");
    section_roundtrip("BODY[1]", "BODY[1]");
    section_roundtrip("BODY[1.2.3.TEXT]", "BODY[1.2.3.TEXT]");
    section_roundtrip("BODY[4.2.HEADER]", "BODY[4.2.HEADER]");
    section_roundtrip("BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID)]",
                      "BODY[HEADER.FIELDS (FROM TO CC BCC SUBJECT DATE MESSAGE-ID)]");
    section_roundtrip("BODY[2.HEADER.FIELDS.NOT (\"x y\" \"a\\\"b\" nil)]",
                      "BODY[2.HEADER.FIELDS.NOT (\"X Y\" \"A\\\"B\" \"NIL\")]");
    section_roundtrip("BINARY[1.2]<0.1>", "BINARY[1.2]<0>");
    section_roundtrip("BINARY.SIZE[]", "BINARY.SIZE[]");

    section_bad("BODY");
    section_bad("BODY.PEEK");
    section_bad("RFC822");
    section_bad("BODY[");
    section_bad("BODY[0]");
    section_bad("BODY[01]");
    section_bad("BODY[1.]");
    section_bad("BODY[.1]");
    section_bad("BODY[MIME]");
    section_bad("BODY[1.FOO]");
    section_bad("BODY[HEADER.FIELDS]");
    section_bad("BODY[HEADER.FIELDS ()]");
    section_bad("BODY[HEADER.FIELDS (a]");
    section_bad("BODY[HEADER.FIELDS (a )]");
    section_bad("BODY[HEADER.FIELDS (\"a)]");
    section_bad("BODY[HEADERX]");
    section_bad("BODY[TEXT]x");
    section_bad("BODY[]<0>");
    section_bad("BODY[]<0.0>");
    section_bad("BODY[]<1.2");
    section_bad("BODY[]<4294967296.1>");
    section_bad("BODY[4294967296]");
    section_bad("BINARY[TEXT]");
    section_bad("BINARY[1.MIME]");
    section_bad("BINARY.SIZE[1]<0.1>");
    section_bad("BODY [1]");
    /* too many part numbers */
    char many[512] = "BODY[";
    for (int i = 0; i < IMAP_SECTION_MAX_PARTS + 1; i++)
        strcat(many, i ? ".1" : "1");
    strcat(many, "]");
    section_bad(many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_arg_types),
        cmocka_unit_test(test_arg_helpers),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_literal_binary),
        cmocka_unit_test(test_multiappend),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_depth_and_args),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_literal_too_large),
        cmocka_unit_test(test_reject_literal),
        cmocka_unit_test(test_next_line),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_real_clients),
        cmocka_unit_test(test_session_mix),
        cmocka_unit_test(test_section),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
