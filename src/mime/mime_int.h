/* mime_int — internals shared by the files of src/mime (not for other modules).
 *
 * - an arena: every part and string of a parsed message lives in one, freed
 *   at once by mime_message_free();
 * - an RFC 5322 / RFC 2045 lexer over a byte range (comments, atoms,
 *   quoted strings, phrases, domains, MIME tokens, Content-Type and its
 *   parameters with RFC 2231 continuations). Its choices on broken input
 *   follow Dovecot's lib-mail (rfc822-parser, rfc2231-parser), so that
 *   ENVELOPE and BODYSTRUCTURE come out as a mature server writes them.
 *
 * Lexer functions return 1 when input remains after the token (and the
 * white space and comments after it were skipped), 0 when the input ended,
 * -1 on a syntax error. Output goes to a struct buf; running out of memory
 * sets lex->oom, which callers check once at the end.
 */
#ifndef CORREIO_MIME_MIME_INT_H
#define CORREIO_MIME_MIME_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "mime/mime.h"

/* --- arena --------------------------------------------------------------------------- */
struct mime_arena;
struct mime_arena *mime_arena_new(void);
void mime_arena_free(struct mime_arena *a);
/* Zeroed memory, NULL when memory runs out. */
void *mime_arena_alloc(struct mime_arena *a, size_t n);
/* A NUL-terminated copy, NULL when memory runs out. */
char *mime_arena_strndup(struct mime_arena *a, const void *s, size_t n);

/* --- character classes ----------------------------------------------------------------- */
extern const uint8_t mime_atext_class[256];
/* atext of RFC 5322 (octets >= 0x80 count as atext) */
#define MIME_IS_ATEXT(c) (mime_atext_class[(uint8_t)(c)] != 0)
/* MIME token characters (atext without "/", "=", "?"); "." is added by callers */
#define MIME_IS_TOKEN(c) ((mime_atext_class[(uint8_t)(c)] & 3) != 0)
#define MIME_IS_LWSP(c) ((c) == ' ' || (c) == '\t')

/* --- lexer ----------------------------------------------------------------------------- */
struct mime_lex {
    const uint8_t *p, *end;
    struct buf *last_comment; /* when not NULL, receives the text of the last comment */
    bool oom;
};

void mime_lex_init(struct mime_lex *l, const uint8_t *s, size_t n, struct buf *last_comment);
int mime_lex_skip_comment(struct mime_lex *l);
int mime_lex_skip_lwsp(struct mime_lex *l);
int mime_lex_atom(struct mime_lex *l, struct buf *out);
int mime_lex_dot_atom(struct mime_lex *l, struct buf *out);
int mime_lex_mime_token(struct mime_lex *l, struct buf *out);
int mime_lex_quoted_string(struct mime_lex *l, struct buf *out);
int mime_lex_phrase(struct mime_lex *l, struct buf *out);
int mime_lex_domain(struct mime_lex *l, struct buf *out);
/* "type/subtype" into out; on a syntax error out is left as it was. */
int mime_lex_content_type(struct mime_lex *l, struct buf *out);

/* One parsed parameter (before or after RFC 2231 joining). */
struct mime_lex_param {
    char *key;   /* malloc'ed */
    char *value; /* malloc'ed */
};
/* Parse "; key=value" parameters up to the end, joining RFC 2231
 * continuations (see struct mime_param). *params_r is a malloc'ed array
 * of *n_r entries; free with mime_lex_params_free(). Returns 0, or -1 when
 * memory ran out (nothing to free then). */
int mime_lex_params(struct mime_lex *l, struct mime_lex_param **params_r, size_t *n_r);
void mime_lex_params_free(struct mime_lex_param *params, size_t n);

/* --- small helpers ----------------------------------------------------------------------- */
bool mime_mem_ieq(const void *a, size_t alen, const char *b);
/* Valid UTF-8 (no overlongs, no surrogates)? */
bool mime_utf8_valid(const uint8_t *s, size_t n);
/* Append s with CR and LF removed (header unfolding as IMAP servers do it). */
int mime_append_nolf(struct buf *out, const uint8_t *s, size_t n);
/* Append s with each NUL replaced by U+FFFD (and CR, LF removed if nolf). */
int mime_append_nonul(struct buf *out, const uint8_t *s, size_t n, bool nolf);

/* The value of a header field as Dovecot hands it out: white space after
 * the colon skipped (only one octet of it when the first line holds
 * nothing else), continuation lines kept with their line breaks. */
void mime_field_full_value(const struct mime_field *f, const uint8_t **v_r, size_t *n_r);

/* Header fields including lines without a colon (name = the whole line,
 * value NULL). */
bool mime_field_iter_next_all(struct mime_field_iter *it, struct mime_field *f);

/* Decode an RFC 2231 extended value "charset'lang'%XX.." to UTF-8. */
int mime_rfc2231_decode(const char *value, struct buf *out, struct buf *charset,
                        struct buf *language);

#endif
