/* scram — SCRAM-SHA-256 (RFC 7677, RFC 5802) for SMTP submission (and
 * later IMAP/POP3): the keys the store keeps instead of a password, and
 * the server side of the exchange.
 *
 * The store never holds the password for SCRAM: at `user add` / `passwd`
 * the salted keys are derived (PBKDF2-HMAC-SHA-256, a random 16-octet
 * salt, `iterations` rounds) and kept in the RFC 5803 text form
 *   SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
 *
 * The exchange (RFC 5802 3, 5, 7), the server's view:
 *   1. client-first-message "n,,n=user,r=cnonce" (gs2 header "n" or "y";
 *      "p=" channel binding is refused: we do not offer -PLUS; an authzid
 *      "a=" must equal the user or be absent; extensions "m=" refused);
 *      scram_server_step returns SCRAM_NEED_KEYS and scram_server_user()
 *      names the user (saslname "=2C"/"=3D" decoded);
 *   2. the caller looks the keys up (off the event loop) and calls
 *      scram_server_set_keys — with NULL for an unknown user, in which case
 *      keys derived from a server secret are used, so that the answer does
 *      not tell whether the user exists (RFC 5802 9), and the exchange
 *      fails at the proof; the server-first-message "r=cnonce+snonce,
 *      s=salt,i=iterations" is then in out;
 *   3. client-final-message "c=biws(or the gs2 header in base64),r=...,p=proof":
 *      the nonce and channel binding must match; ClientProof is checked
 *      against StoredKey (constant time); SCRAM_OK with the
 *      server-final-message "v=ServerSignature" in out, or SCRAM_FAIL (with
 *      "e=..." in out when it is a protocol error the client should see).
 * Messages are the decoded SASL payloads (the SMTP/IMAP layer does the
 * base64). OpenSSL does the hashing (EVP, PKCS5_PBKDF2_HMAC, HMAC).
 *
 * Choices: no SASLprep (RFC 4013) of the password or the name — the
 * octets are used as given, which is the identity for ASCII; the name
 * must be well-formed UTF-8 without control characters. Unrecognized
 * extensions after r= are ignored (RFC 5802 7) but must be well-formed
 * attr-vals; in the client-final-message they are covered by the proof.
 */
#ifndef CORREIO_AUTH_SCRAM_H
#define CORREIO_AUTH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define SCRAM_DEFAULT_ITERATIONS 10000
#define SCRAM_MAX_ITERATIONS 10000000 /* refused above, in keys and RFC 5803 strings */
#define SCRAM_SALT_LEN 16
#define SCRAM_MAX_MESSAGE 4096 /* longest client message scram_server_step takes */

struct scram_keys {
    unsigned iterations;
    uint8_t salt[64];
    size_t salt_len;
    uint8_t stored_key[32];
    uint8_t server_key[32];
};

/* Derive keys for password (NUL-terminated, used as given) with a fresh
 * random SCRAM_SALT_LEN-octet salt (RAND_bytes). iterations must be
 * 1..SCRAM_MAX_ITERATIONS. 0, or -1 (k untouched). */
int scram_keys_derive(const char *password, unsigned iterations, struct scram_keys *k);
/* The same with a given salt of 1..64 octets (tests, RFC 7677's example). 0 or -1. */
int scram_keys_derive_salt(const char *password, unsigned iterations, const uint8_t *salt,
                           size_t salt_len, struct scram_keys *k);
/* RFC 5803 text form, NUL-terminated (fits in 256 octets). 0, or -1 when
 * n is too small or k is not valid (out is then "" when n > 0). */
int scram_keys_format(const struct scram_keys *k, char *out, size_t n);
/* 0, or -1 when s is not a valid SCRAM-SHA-256 RFC 5803 string (strict:
 * iterations 1..SCRAM_MAX_ITERATIONS without leading zeros, a 1..64-octet
 * salt, 32-octet keys, canonical base64, nothing after). k untouched on -1. */
int scram_keys_parse(const char *s, struct scram_keys *k);

enum scram_result {
    SCRAM_CONTINUE = 0, /* out holds the next server message; feed the client's answer */
    SCRAM_NEED_KEYS,    /* look up scram_server_user()'s keys, then scram_server_set_keys */
    SCRAM_OK,           /* authenticated: out holds the server-final-message */
    SCRAM_FAIL,         /* failed: out may hold "e=..." */
};

struct scram_server;

/* server_nonce: printable ASCII without ',' (the caller makes it random,
 * e.g. 18 random octets in base64); secret: a per-process random value
 * for the keys of unknown users. Both copied. NULL on OOM or when
 * server_nonce is empty or not printable. Free with scram_server_free,
 * which wipes the secret and the keys and sets *s to NULL. */
struct scram_server *scram_server_new(const char *server_nonce, const uint8_t *secret,
                                      size_t secret_len);
void scram_server_free(struct scram_server **s);
/* Feed the client's next message (decoded), len octets: 1..SCRAM_MAX_MESSAGE,
 * no NUL. Server messages are appended to out. Any failure ends the
 * exchange (later calls return SCRAM_FAIL); "e=<server-error-value>" is
 * then appended to out — also for a refused client-first-message, for
 * the caller's log. A wrong proof, for a known or unknown user, is
 * "e=invalid-proof". */
enum scram_result scram_server_step(struct scram_server *s, const uint8_t *msg, size_t len,
                                    struct buf *out);
/* After SCRAM_NEED_KEYS: the user's keys (copied), or NULL when there is
 * no such user (or it has no SCRAM keys): the salt is then the first 16
 * octets of HMAC-SHA-256(secret, "salt" NUL user), the iteration count
 * SCRAM_DEFAULT_ITERATIONS, and the proof always fails. Returns
 * SCRAM_CONTINUE with the server-first-message appended to out, or
 * SCRAM_FAIL (wrong state, keys out of range, OOM). */
enum scram_result scram_server_set_keys(struct scram_server *s, const struct scram_keys *k,
                                        struct buf *out);
/* The user named in the client-first-message (decoded), once that message
 * is accepted, else NULL. Owned by s. */
const char *scram_server_user(const struct scram_server *s);

#endif
