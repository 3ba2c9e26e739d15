/* scram — SCRAM-SHA-256 keys (RFC 5802, RFC 7677), their RFC 5803 text
 * form, and the server side of the exchange. See scram.h. */
#include "auth/scram.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lib/base64.h"

#define SCRAM_KEY_LEN 32 /* SHA-256 output */

static const char scram_prefix[] = "SCRAM-SHA-256$";

/* ---- hashing ------------------------------------------------------------ */

/* HMAC-SHA-256(key, data). 0 or -1. */
static int scram_hmac(const uint8_t *key, size_t key_len, const void *data, size_t len,
                      uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int n = 0;
    static const uint8_t empty[1] = {0};
    if (key_len > INT_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), key_len ? key : empty, (int)key_len, len ? data : empty, len, out,
              &n) ||
        n != SCRAM_KEY_LEN)
        return -1;
    return 0;
}

static int scram_sha256(const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) || n != SCRAM_KEY_LEN)
        return -1;
    return 0;
}

/* Wipe and free a buffer that held secrets. */
static void scram_buf_wipe(struct buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap);
    buf_free(b);
}

static bool scram_keys_valid(const struct scram_keys *k)
{
    return k->iterations >= 1 && k->iterations <= SCRAM_MAX_ITERATIONS && k->salt_len >= 1 &&
           k->salt_len <= sizeof(k->salt);
}

/* ---- keys ---------------------------------------------------------------- */

/* RFC 5802 3: SaltedPassword := Hi(password, salt, i); ClientKey :=
 * HMAC(SaltedPassword, "Client Key"); StoredKey := H(ClientKey);
 * ServerKey := HMAC(SaltedPassword, "Server Key"). The password is used
 * as given (no SASLprep: the same octets must be typed by the client). */
int scram_keys_derive_salt(const char *password, unsigned iterations, const uint8_t *salt,
                           size_t salt_len, struct scram_keys *k)
{
    struct scram_keys nk;
    uint8_t salted[SCRAM_KEY_LEN];
    uint8_t client_key[SCRAM_KEY_LEN];
    int rc = -1;

    if (!password || !salt || !k || iterations < 1 || iterations > SCRAM_MAX_ITERATIONS ||
        salt_len < 1 || salt_len > sizeof(nk.salt))
        return -1;
    size_t pw_len = strlen(password);
    if (pw_len > INT_MAX)
        return -1;
    memset(&nk, 0, sizeof(nk));
    if (PKCS5_PBKDF2_HMAC(password, (int)pw_len, salt, (int)salt_len, (int)iterations, EVP_sha256(),
                          SCRAM_KEY_LEN, salted) != 1)
        goto out;
    if (scram_hmac(salted, sizeof(salted), "Client Key", 10, client_key) < 0 ||
        scram_sha256(client_key, sizeof(client_key), nk.stored_key) < 0 ||
        scram_hmac(salted, sizeof(salted), "Server Key", 10, nk.server_key) < 0)
        goto out;
    nk.iterations = iterations;
    memcpy(nk.salt, salt, salt_len);
    nk.salt_len = salt_len;
    *k = nk;
    rc = 0;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(&nk, sizeof(nk));
    return rc;
}

int scram_keys_derive(const char *password, unsigned iterations, struct scram_keys *k)
{
    uint8_t salt[SCRAM_SALT_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return -1;
    return scram_keys_derive_salt(password, iterations, salt, sizeof(salt), k);
}

int scram_keys_format(const struct scram_keys *k, char *out, size_t n)
{
    struct buf b = BUF_INIT;
    int rc = -1;

    if (out && n > 0)
        out[0] = '\0';
    if (!k || !out || !scram_keys_valid(k))
        return -1;
    if (buf_printf(&b, "%s%u:", scram_prefix, k->iterations) < 0 ||
        base64_encode(&b, k->salt, k->salt_len) < 0 || buf_puts(&b, "$") < 0 ||
        base64_encode(&b, k->stored_key, sizeof(k->stored_key)) < 0 || buf_puts(&b, ":") < 0 ||
        base64_encode(&b, k->server_key, sizeof(k->server_key)) < 0)
        goto out;
    if (buf_size(&b) < n) {
        memcpy(out, buf_ptr(&b), buf_size(&b));
        out[buf_size(&b)] = '\0';
        rc = 0;
    }
out:
    scram_buf_wipe(&b);
    return rc;
}

/* Decode len octets of base64 text into dst, which must then hold
 * min..max octets. Returns the octet count, or -1. */
static long scram_b64_field(const char *text, size_t len, uint8_t *dst, size_t min, size_t max)
{
    struct buf b = BUF_INIT;
    long rc = -1;
    if (len > (max + 2) / 3 * 4)
        return -1;
    if (base64_decode(&b, text, len) == 0 && buf_size(&b) >= min && buf_size(&b) <= max) {
        memcpy(dst, buf_ptr(&b), buf_size(&b));
        rc = (long)buf_size(&b);
    }
    scram_buf_wipe(&b);
    return rc;
}

/* RFC 5803 3: SCRAM-SHA-256$<iteration count>:<base64 salt>$<base64
 * StoredKey>:<base64 ServerKey>. Strict: decimal iterations without
 * leading zeros in 1..SCRAM_MAX_ITERATIONS, a 1..64-octet salt, 32-octet
 * keys, canonical base64, nothing after. k is untouched on error. */
int scram_keys_parse(const char *s, struct scram_keys *k)
{
    struct scram_keys nk;
    int rc = -1;

    if (!s || !k || strncmp(s, scram_prefix, sizeof(scram_prefix) - 1) != 0)
        return -1;
    memset(&nk, 0, sizeof(nk));
    const char *p = s + sizeof(scram_prefix) - 1;
    const char *q = p;
    unsigned long it = 0;
    while (*q >= '0' && *q <= '9') {
        if (q - p >= 8) /* 10,000,000 has 8 digits */
            return -1;
        it = it * 10 + (unsigned long)(*q - '0');
        q++;
    }
    if (q == p || *p == '0' || *q != ':' || it > SCRAM_MAX_ITERATIONS)
        return -1;
    nk.iterations = (unsigned)it;

    const char *salt = q + 1;
    const char *dollar = strchr(salt, '$');
    const char *colon = dollar ? strchr(dollar + 1, ':') : NULL;
    if (!dollar || !colon)
        return -1;
    const char *server = colon + 1;
    long salt_len = scram_b64_field(salt, (size_t)(dollar - salt), nk.salt, 1, sizeof(nk.salt));
    if (salt_len < 0 ||
        scram_b64_field(dollar + 1, (size_t)(colon - dollar - 1), nk.stored_key, SCRAM_KEY_LEN,
                        SCRAM_KEY_LEN) < 0 ||
        scram_b64_field(server, strlen(server), nk.server_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN) < 0)
        goto out;
    nk.salt_len = (size_t)salt_len;
    *k = nk;
    rc = 0;
out:
    OPENSSL_cleanse(&nk, sizeof(nk));
    return rc;
}

/* ---- the server side of the exchange ---------------------------------------- */

enum scram_state {
    SCRAM_STATE_FIRST, /* waiting for the client-first-message */
    SCRAM_STATE_KEYS,  /* waiting for scram_server_set_keys */
    SCRAM_STATE_FINAL, /* server-first sent, waiting for the client-final-message */
    SCRAM_STATE_DONE,  /* succeeded or failed: nothing more */
};

struct scram_server {
    enum scram_state state;
    char *server_nonce;
    uint8_t *secret;
    size_t secret_len;
    char *user;              /* decoded username; NULL until the client-first is accepted */
    struct buf gs2;          /* the gs2 header as the client sent it, e.g. "n,," */
    struct buf first_bare;   /* client-first-message-bare */
    struct buf nonce;        /* c-nonce + s-nonce */
    struct buf server_first; /* server-first-message */
    struct scram_keys keys;  /* the user's, or derived from secret */
    bool unknown_user;       /* keys derived from secret: the proof must fail */
};

/* A comma-separated attribute list, read one field at a time. */
struct scram_cursor {
    const char *p;
    const char *end;
    bool done;
};

/* The next field (without its comma) in *f, *n; false when none is left. */
static bool scram_cursor_next(struct scram_cursor *c, const char **f, size_t *n)
{
    if (c->done)
        return false;
    const char *comma = memchr(c->p, ',', (size_t)(c->end - c->p));
    *f = c->p;
    if (comma) {
        *n = (size_t)(comma - c->p);
        c->p = comma + 1;
    } else {
        *n = (size_t)(c->end - c->p);
        c->p = c->end;
        c->done = true;
    }
    return true;
}

/* RFC 5802 7: printable = %x21-2B / %x2D-7E (no ','); at least one. */
static bool scram_printable(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == ',')
            return false;
    }
    return true;
}

/* Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF)
 * without control characters (C0, DEL). */
static bool scram_utf8_printable(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t cp;
        size_t more;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            cp = c & 0x1f;
            more = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            cp = c & 0x0f;
            more = 2;
        } else if (c >= 0xf0 && c <= 0xf4) {
            cp = c & 0x07;
            more = 3;
        } else {
            return false;
        }
        if (n - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((more == 2 && cp < 0x800) || (more == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}

/* RFC 5802 5.1: saslname = 1*(value-safe-char / "=2C" / "=3D"); decode
 * into a new string ("=2C" -> ',', "=3D" -> '='; any other '=' is an
 * error). The result must be printable UTF-8. NULL on error or OOM. */
static char *scram_saslname_decode(const char *s, size_t n)
{
    if (n == 0)
        return NULL;
    char *r = malloc(n + 1);
    if (!r)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (n - i >= 3 && s[i + 1] == '2' && s[i + 2] == 'C')
                r[j++] = ',';
            else if (n - i >= 3 && s[i + 1] == '3' && s[i + 2] == 'D')
                r[j++] = '=';
            else
                goto bad;
            i += 2;
        } else {
            r[j++] = s[i];
        }
    }
    r[j] = '\0';
    if (scram_utf8_printable((const uint8_t *)r, j))
        return r;
bad:
    free(r);
    return NULL;
}

/* RFC 5802 7: attr-val = ALPHA "=" value; value = 1*value-char. */
static bool scram_extension_valid(const char *f, size_t n)
{
    if (n < 3 || f[1] != '=')
        return false;
    if (!((f[0] >= 'a' && f[0] <= 'z') || (f[0] >= 'A' && f[0] <= 'Z')))
        return false;
    return scram_utf8_printable((const uint8_t *)f + 2, n - 2);
}

static bool scram_attr(const char *f, size_t n, char name)
{
    return n >= 2 && f[0] == name && f[1] == '=';
}

/* Fail the exchange for good; out gets "e=<err>" (RFC 5802 7
 * server-error-value) when err is not NULL. */
static enum scram_result scram_fail(struct scram_server *s, struct buf *out, const char *err)
{
    s->state = SCRAM_STATE_DONE;
    if (err && out)
        (void)buf_printf(out, "e=%s", err);
    return SCRAM_FAIL;
}

struct scram_server *scram_server_new(const char *server_nonce, const uint8_t *secret,
                                      size_t secret_len)
{
    if (!server_nonce || !scram_printable(server_nonce, strlen(server_nonce)) ||
        (!secret && secret_len))
        return NULL;
    struct scram_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->state = SCRAM_STATE_FIRST;
    buf_init(&s->gs2);
    buf_init(&s->first_bare);
    buf_init(&s->nonce);
    buf_init(&s->server_first);
    s->server_nonce = strdup(server_nonce);
    s->secret = malloc(secret_len ? secret_len : 1);
    if (!s->server_nonce || !s->secret) {
        scram_server_free(&s);
        return NULL;
    }
    if (secret_len)
        memcpy(s->secret, secret, secret_len);
    s->secret_len = secret_len;
    return s;
}

void scram_server_free(struct scram_server **sp)
{
    struct scram_server *s = sp ? *sp : NULL;
    if (!s)
        return;
    if (s->secret)
        OPENSSL_cleanse(s->secret, s->secret_len);
    free(s->secret);
    free(s->server_nonce);
    free(s->user);
    buf_free(&s->gs2);
    buf_free(&s->first_bare);
    buf_free(&s->nonce);
    buf_free(&s->server_first);
    OPENSSL_cleanse(&s->keys, sizeof(s->keys));
    free(s);
    *sp = NULL;
}

const char *scram_server_user(const struct scram_server *s)
{
    return s ? s->user : NULL;
}

/* RFC 5802 7:
 *   client-first-message = gs2-header client-first-message-bare
 *   gs2-header = gs2-cbind-flag "," [ authzid ] ","
 *   gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
 *   authzid = "a=" saslname
 *   client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
 * "y" is accepted: we advertise no -PLUS mechanism. */
static enum scram_result scram_client_first(struct scram_server *s, const char *msg, size_t len,
                                            struct buf *out)
{
    struct scram_cursor c = {msg, msg + len, false};
    const char *f;
    size_t n;
    char *authzid = NULL;
    char *user = NULL;
    const char *err = "invalid-encoding";

    if (!scram_cursor_next(&c, &f, &n))
        goto fail;
    if (scram_attr(f, n, 'p')) {
        err = "channel-binding-not-supported";
        goto fail;
    }
    if (n != 1 || (f[0] != 'n' && f[0] != 'y'))
        goto fail;
    if (!scram_cursor_next(&c, &f, &n) || c.done)
        goto fail;
    if (n > 0) {
        if (!scram_attr(f, n, 'a') || !(authzid = scram_saslname_decode(f + 2, n - 2))) {
            err = "invalid-username-encoding";
            goto fail;
        }
    }
    const char *bare = c.p;
    if (!scram_cursor_next(&c, &f, &n))
        goto fail;
    if (scram_attr(f, n, 'm')) { /* RFC 5802 5.1: reserved, must fail */
        err = "extensions-not-supported";
        goto fail;
    }
    if (!scram_attr(f, n, 'n'))
        goto fail;
    if (!(user = scram_saslname_decode(f + 2, n - 2))) {
        err = "invalid-username-encoding";
        goto fail;
    }
    if (authzid && strcmp(authzid, user) != 0) {
        err = "other-error"; /* acting for another user is not offered */
        goto fail;
    }
    if (!scram_cursor_next(&c, &f, &n) || !scram_attr(f, n, 'r') || !scram_printable(f + 2, n - 2))
        goto fail;
    const char *cnonce = f + 2;
    size_t cnonce_len = n - 2;
    /* RFC 5802 7: unrecognized extensions are ignored, but must parse. */
    while (scram_cursor_next(&c, &f, &n))
        if (!scram_extension_valid(f, n))
            goto fail;

    err = "other-error";
    if (buf_append(&s->gs2, msg, (size_t)(bare - msg)) < 0 ||
        buf_append(&s->first_bare, bare, (size_t)(msg + len - bare)) < 0 ||
        buf_append(&s->nonce, cnonce, cnonce_len) < 0 || buf_puts(&s->nonce, s->server_nonce) < 0)
        goto fail;
    free(authzid);
    s->user = user;
    s->state = SCRAM_STATE_KEYS;
    return SCRAM_NEED_KEYS;
fail:
    free(authzid);
    free(user);
    return scram_fail(s, out, err);
}

/* HMAC-SHA-256(secret, label NUL user). */
static int scram_hmac_label(const struct scram_server *s, const char *label,
                            uint8_t out[SCRAM_KEY_LEN])
{
    struct buf b = BUF_INIT;
    int rc = -1;
    if (buf_append(&b, label, strlen(label) + 1) == 0 && buf_puts(&b, s->user) == 0)
        rc = scram_hmac(s->secret, s->secret_len, buf_ptr(&b), buf_size(&b), out);
    buf_free(&b);
    return rc;
}

/* RFC 5802 9: an unknown user gets keys derived from the server secret
 * and the name, so that every attempt shows the same salt and iteration
 * count, as a real account would. */
static int scram_keys_unknown(const struct scram_server *s, struct scram_keys *k)
{
    uint8_t mac[SCRAM_KEY_LEN];
    memset(k, 0, sizeof(*k));
    if (scram_hmac_label(s, "salt", mac) < 0 ||
        scram_hmac_label(s, "stored-key", k->stored_key) < 0 ||
        scram_hmac_label(s, "server-key", k->server_key) < 0)
        return -1;
    memcpy(k->salt, mac, SCRAM_SALT_LEN);
    k->salt_len = SCRAM_SALT_LEN;
    k->iterations = SCRAM_DEFAULT_ITERATIONS;
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

enum scram_result scram_server_set_keys(struct scram_server *s, const struct scram_keys *k,
                                        struct buf *out)
{
    if (!s)
        return SCRAM_FAIL;
    if (s->state != SCRAM_STATE_KEYS)
        return scram_fail(s, out, "other-error");
    if (k) {
        if (!scram_keys_valid(k))
            return scram_fail(s, out, "other-error");
        s->keys = *k;
        s->unknown_user = false;
    } else {
        if (scram_keys_unknown(s, &s->keys) < 0)
            return scram_fail(s, out, "other-error");
        s->unknown_user = true;
    }
    /* server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count */
    struct buf *sf = &s->server_first;
    if (buf_puts(sf, "r=") < 0 || buf_append(sf, buf_ptr(&s->nonce), buf_size(&s->nonce)) < 0 ||
        buf_puts(sf, ",s=") < 0 || base64_encode(sf, s->keys.salt, s->keys.salt_len) < 0 ||
        buf_printf(sf, ",i=%u", s->keys.iterations) < 0 ||
        buf_append(out, buf_ptr(sf), buf_size(sf)) < 0)
        return scram_fail(s, out, "other-error");
    s->state = SCRAM_STATE_FINAL;
    return SCRAM_CONTINUE;
}

/* RFC 5802 3: AuthMessage := client-first-message-bare "," server-first-message ","
 * client-final-message-without-proof; ClientKey := ClientProof XOR
 * HMAC(StoredKey, AuthMessage) must hash to StoredKey; the answer is
 * "v=" base64(HMAC(ServerKey, AuthMessage)). */
static enum scram_result scram_verify(struct scram_server *s, const char *without_proof,
                                      size_t wp_len, const uint8_t proof[SCRAM_KEY_LEN],
                                      struct buf *out)
{
    struct buf am = BUF_INIT;
    uint8_t sig[SCRAM_KEY_LEN];
    uint8_t client_key[SCRAM_KEY_LEN];
    uint8_t h[SCRAM_KEY_LEN];
    enum scram_result r;

    if (buf_append(&am, buf_ptr(&s->first_bare), buf_size(&s->first_bare)) < 0 ||
        buf_puts(&am, ",") < 0 ||
        buf_append(&am, buf_ptr(&s->server_first), buf_size(&s->server_first)) < 0 ||
        buf_puts(&am, ",") < 0 || buf_append(&am, without_proof, wp_len) < 0 ||
        scram_hmac(s->keys.stored_key, SCRAM_KEY_LEN, buf_ptr(&am), buf_size(&am), sig) < 0) {
        r = scram_fail(s, out, "other-error");
        goto out;
    }
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ sig[i];
    if (scram_sha256(client_key, SCRAM_KEY_LEN, h) < 0) {
        r = scram_fail(s, out, "other-error");
        goto out;
    }
    bool match = CRYPTO_memcmp(h, s->keys.stored_key, SCRAM_KEY_LEN) == 0;
    if (!match || s->unknown_user) {
        r = scram_fail(s, out, "invalid-proof");
        goto out;
    }
    if (scram_hmac(s->keys.server_key, SCRAM_KEY_LEN, buf_ptr(&am), buf_size(&am), sig) < 0 ||
        buf_puts(out, "v=") < 0 || base64_encode(out, sig, sizeof(sig)) < 0) {
        r = scram_fail(s, out, "other-error");
        goto out;
    }
    s->state = SCRAM_STATE_DONE;
    r = SCRAM_OK;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(h, sizeof(h));
    buf_free(&am);
    return r;
}

/* RFC 5802 7:
 *   client-final-message = client-final-message-without-proof "," proof
 *   client-final-message-without-proof = channel-binding "," nonce ["," extensions]
 *   channel-binding = "c=" base64 (of the gs2 header, as there is no cbind-data)
 *   proof = "p=" base64 */
static enum scram_result scram_client_final(struct scram_server *s, const char *msg, size_t len,
                                            struct buf *out)
{
    struct scram_cursor c = {msg, msg + len, false};
    const char *f;
    size_t n;
    struct buf cb = BUF_INIT;
    uint8_t proof[SCRAM_KEY_LEN];

    if (!scram_cursor_next(&c, &f, &n) || !scram_attr(f, n, 'c') ||
        base64_decode(&cb, f + 2, n - 2) < 0) {
        buf_free(&cb);
        return scram_fail(s, out, "invalid-encoding");
    }
    bool cb_ok = buf_size(&cb) == buf_size(&s->gs2) &&
                 memcmp(buf_ptr(&cb), buf_ptr(&s->gs2), buf_size(&cb)) == 0;
    buf_free(&cb);
    if (!cb_ok)
        return scram_fail(s, out, "channel-bindings-dont-match");
    if (!scram_cursor_next(&c, &f, &n) || !scram_attr(f, n, 'r'))
        return scram_fail(s, out, "invalid-encoding");
    if (n - 2 != buf_size(&s->nonce) || memcmp(f + 2, buf_ptr(&s->nonce), n - 2) != 0)
        return scram_fail(s, out, "other-error"); /* not the nonce of this exchange */
    /* Extensions (ignored, RFC 5802 7), then the proof, last. */
    for (;;) {
        if (!scram_cursor_next(&c, &f, &n))
            return scram_fail(s, out, "invalid-encoding"); /* no proof */
        if (c.done)
            break;
        if (!scram_extension_valid(f, n))
            return scram_fail(s, out, "invalid-encoding");
    }
    if (!scram_attr(f, n, 'p'))
        return scram_fail(s, out, "invalid-encoding");
    if (scram_b64_field(f + 2, n - 2, proof, SCRAM_KEY_LEN, SCRAM_KEY_LEN) < 0)
        return scram_fail(s, out, "invalid-proof");
    /* f - 1 is the comma before "p=". */
    enum scram_result r = scram_verify(s, msg, (size_t)(f - 1 - msg), proof, out);
    OPENSSL_cleanse(proof, sizeof(proof));
    return r;
}

enum scram_result scram_server_step(struct scram_server *s, const uint8_t *msg, size_t len,
                                    struct buf *out)
{
    if (!s)
        return SCRAM_FAIL;
    if (!msg || len == 0 || len > SCRAM_MAX_MESSAGE)
        return scram_fail(s, out, "invalid-encoding");
    if (memchr(msg, '\0', len))
        return scram_fail(s, out, "invalid-encoding");
    switch (s->state) {
    case SCRAM_STATE_FIRST:
        return scram_client_first(s, (const char *)msg, len, out);
    case SCRAM_STATE_FINAL:
        return scram_client_final(s, (const char *)msg, len, out);
    case SCRAM_STATE_KEYS:
    case SCRAM_STATE_DONE:
        break;
    }
    return scram_fail(s, out, "other-error");
}
