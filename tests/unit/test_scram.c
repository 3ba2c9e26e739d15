/* auth/scram: SCRAM-SHA-256 keys, RFC 5803 strings and the server side
 * of the exchange, against RFC 7677's example and a client written here
 * with OpenSSL. */
#include "testutil.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/scram.h"
#include "lib/base64.h"

/* RFC 7677 3. */
#define RFC_CFIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SFIRST                                                                                 \
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CFINAL                                                                                 \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"                                 \
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="

static const uint8_t test_secret[] = "per-process secret for the tests";
#define SNONCE "3rfcNHYJY1ZVvWVs7j"

/* ---- helpers ---------------------------------------------------------------- */

static void b64_decode_str(const char *text, struct buf *out)
{
    buf_reset(out);
    assert_int_equal(base64_decode(out, text, strlen(text)), 0);
}

static struct scram_server *server_new(const char *snonce)
{
    struct scram_server *s = scram_server_new(snonce, test_secret, sizeof(test_secret) - 1);
    assert_non_null(s);
    return s;
}

/* Step with a NUL-terminated message; out is reset first. */
static enum scram_result step(struct scram_server *s, const char *msg, struct buf *out)
{
    buf_reset(out);
    return scram_server_step(s, (const uint8_t *)msg, strlen(msg), out);
}

static const char *out_str(struct buf *out)
{
    const char *r = buf_cstr(out);
    assert_non_null(r);
    return r;
}

/* The value of attribute name in a server-first-message, as a new string. */
static char *attr_value(const char *msg, char name)
{
    char key[3] = {name, '=', '\0'};
    const char *p = msg;
    for (;;) {
        if (strncmp(p, key, 2) == 0)
            break;
        p = strchr(p, ',');
        assert_non_null(p);
        p++;
    }
    p += 2;
    size_t n = strcspn(p, ",");
    char *v = strndup(p, n);
    assert_non_null(v);
    return v;
}

static void hmac256(const uint8_t *key, size_t key_len, const void *data, size_t len,
                    uint8_t out[32])
{
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n));
    assert_int_equal(n, 32);
}

/* The client side of RFC 5802 3: from the password, the client-first-
 * message-bare, the server-first-message and the c= value, write the
 * client-final-message into final and the expected server-final into v. */
static void client_final(const char *password, const char *bare, const char *sfirst,
                         const char *cbind, struct buf *final, struct buf *v)
{
    char *nonce = attr_value(sfirst, 'r');
    char *salt_b64 = attr_value(sfirst, 's');
    char *iter = attr_value(sfirst, 'i');
    struct buf salt = BUF_INIT, am = BUF_INIT;
    uint8_t salted[32], client_key[32], stored_key[32], server_key[32], sig[32], proof[32];

    b64_decode_str(salt_b64, &salt);
    assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), buf_ptr(&salt),
                                       (int)buf_size(&salt), atoi(iter), EVP_sha256(), 32, salted),
                     1);
    hmac256(salted, 32, "Client Key", 10, client_key);
    hmac256(salted, 32, "Server Key", 10, server_key);
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(client_key, 32, stored_key, &n, EVP_sha256(), NULL), 1);

    buf_reset(final);
    buf_printf(final, "c=%s,r=%s", cbind, nonce);
    buf_printf(&am, "%s,%s,", bare, sfirst);
    buf_append(&am, buf_ptr(final), buf_size(final));
    hmac256(stored_key, 32, buf_ptr(&am), buf_size(&am), sig);
    for (int i = 0; i < 32; i++)
        proof[i] = client_key[i] ^ sig[i];
    buf_puts(final, ",p=");
    base64_encode(final, proof, 32);

    hmac256(server_key, 32, buf_ptr(&am), buf_size(&am), sig);
    buf_reset(v);
    buf_puts(v, "v=");
    base64_encode(v, sig, 32);

    buf_free(&salt);
    buf_free(&am);
    free(nonce);
    free(salt_b64);
    free(iter);
}

/* A whole exchange for user with keys k (NULL: unknown user), the client
 * knowing password. Returns the final result; *sfirst_r gets the
 * server-first-message (caller frees). */
static enum scram_result exchange(const char *user, const struct scram_keys *k,
                                  const char *password, char **sfirst_r)
{
    struct scram_server *s = server_new(SNONCE);
    struct buf out = BUF_INIT, final = BUF_INIT, v = BUF_INIT, first = BUF_INIT;
    buf_printf(&first, "n,,n=%s,r=clientNONCE", user);

    assert_int_equal(step(s, out_str(&first), &out), SCRAM_NEED_KEYS);
    assert_string_equal(scram_server_user(s), user);
    buf_reset(&out);
    assert_int_equal(scram_server_set_keys(s, k, &out), SCRAM_CONTINUE);
    char *sfirst = strdup(out_str(&out));
    assert_non_null(sfirst);
    client_final(password, out_str(&first) + 3, sfirst, "biws", &final, &v);
    enum scram_result r = step(s, out_str(&final), &out);
    if (r == SCRAM_OK)
        assert_string_equal(out_str(&out), out_str(&v));
    else
        assert_string_equal(out_str(&out), "e=invalid-proof");
    /* The exchange is over. */
    assert_int_equal(step(s, out_str(&final), &out), SCRAM_FAIL);

    if (sfirst_r)
        *sfirst_r = sfirst;
    else
        free(sfirst);
    buf_free(&out);
    buf_free(&final);
    buf_free(&v);
    buf_free(&first);
    scram_server_free(&s);
    assert_null(s);
    return r;
}

static void rfc_keys(struct scram_keys *k)
{
    struct buf salt = BUF_INIT;
    b64_decode_str(RFC_SALT, &salt);
    assert_int_equal(scram_keys_derive_salt("pencil", 4096, buf_ptr(&salt), buf_size(&salt), k), 0);
    buf_free(&salt);
}

/* Server at the point of the client-final-message, for user "user" with
 * the RFC keys and the RFC nonces. */
static struct scram_server *rfc_server_at_final(const char *cfirst)
{
    struct scram_keys k;
    struct buf out = BUF_INIT;
    rfc_keys(&k);
    struct scram_server *s = server_new(RFC_SNONCE);
    assert_int_equal(step(s, cfirst, &out), SCRAM_NEED_KEYS);
    buf_reset(&out);
    assert_int_equal(scram_server_set_keys(s, &k, &out), SCRAM_CONTINUE);
    buf_free(&out);
    return s;
}

/* A client-first-message must be refused with "e=<err>". */
static void first_fails(const char *msg, const char *err)
{
    struct scram_server *s = server_new(SNONCE);
    struct buf out = BUF_INIT;
    assert_int_equal(step(s, msg, &out), SCRAM_FAIL);
    assert_string_equal(out_str(&out), err);
    assert_null(scram_server_user(s));
    /* and the exchange is over */
    assert_int_equal(step(s, "n,,n=user,r=abc", &out), SCRAM_FAIL);
    buf_free(&out);
    scram_server_free(&s);
}

/* A client-final-message to the RFC exchange must be refused with "e=<err>". */
static void final_fails(const char *cfirst, const char *cfinal, const char *err)
{
    struct scram_server *s = rfc_server_at_final(cfirst);
    struct buf out = BUF_INIT;
    assert_int_equal(step(s, cfinal, &out), SCRAM_FAIL);
    assert_string_equal(out_str(&out), err);
    buf_free(&out);
    scram_server_free(&s);
}

/* ---- keys and RFC 5803 ------------------------------------------------------ */

static void test_scram_rfc7677_example(void **state)
{
    struct scram_keys k;
    struct buf out = BUF_INIT, final = BUF_INIT, v = BUF_INIT;
    rfc_keys(&k);
    struct scram_server *s = server_new(RFC_SNONCE);
    assert_null(scram_server_user(s));

    assert_int_equal(step(s, RFC_CFIRST, &out), SCRAM_NEED_KEYS);
    assert_int_equal(buf_size(&out), 0);
    assert_string_equal(scram_server_user(s), "user");
    assert_int_equal(scram_server_set_keys(s, &k, &out), SCRAM_CONTINUE);
    assert_string_equal(out_str(&out), RFC_SFIRST);

    /* The client written here computes the RFC's proof and signature. */
    client_final("pencil", RFC_CFIRST + 3, RFC_SFIRST, "biws", &final, &v);
    assert_string_equal(out_str(&final), RFC_CFINAL);
    assert_string_equal(out_str(&v), RFC_SFINAL);

    assert_int_equal(step(s, RFC_CFINAL, &out), SCRAM_OK);
    assert_string_equal(out_str(&out), RFC_SFINAL);
    assert_int_equal(step(s, RFC_CFINAL, &out), SCRAM_FAIL); /* over */

    buf_free(&out);
    buf_free(&final);
    buf_free(&v);
    scram_server_free(&s);
    scram_server_free(&s); /* NULL: no-op */
}

static void test_scram_keys_format_parse(void **state)
{
    struct scram_keys k, p;
    char text[256];
    rfc_keys(&k);
    assert_int_equal(scram_keys_format(&k, text, sizeof(text)), 0);
    assert_string_equal(text, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
                              "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                              "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
    memset(&p, 0xaa, sizeof(p));
    assert_int_equal(scram_keys_parse(text, &p), 0);
    assert_int_equal(p.iterations, 4096);
    assert_int_equal(p.salt_len, 16);
    assert_memory_equal(p.salt, k.salt, 16);
    assert_memory_equal(p.stored_key, k.stored_key, 32);
    assert_memory_equal(p.server_key, k.server_key, 32);

    /* The largest: 64-octet salt, SCRAM_MAX_ITERATIONS (format only: no PBKDF2). */
    k.iterations = SCRAM_MAX_ITERATIONS;
    k.salt_len = 64;
    memset(k.salt, 0xfe, 64);
    assert_int_equal(scram_keys_format(&k, text, sizeof(text)), 0);
    assert_true(strlen(text) < 256);
    assert_int_equal(scram_keys_parse(text, &p), 0);
    assert_int_equal(p.iterations, SCRAM_MAX_ITERATIONS);
    assert_int_equal(p.salt_len, 64);
    assert_memory_equal(p.salt, k.salt, 64);

    /* Too small a buffer: -1 and "". */
    size_t len = strlen(text);
    assert_int_equal(scram_keys_format(&k, text, len), -1);
    assert_string_equal(text, "");
    assert_int_equal(scram_keys_format(&k, text, len + 1), 0);
    /* Keys out of range are not written. */
    k.iterations = 0;
    assert_int_equal(scram_keys_format(&k, text, sizeof(text)), -1);
    k.iterations = 1;
    k.salt_len = 0;
    assert_int_equal(scram_keys_format(&k, text, sizeof(text)), -1);
}

static void test_scram_keys_parse_bad(void **state)
{
#define K32 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define S16 "W22ZaJ0SNY7soEsUEjb6gQ=="
    static const char *const bad[] = {
        "",
        "SCRAM-SHA-256$",
        "SCRAM-SHA-1$4096:" S16 "$" K32 ":" K32,
        "scram-sha-256$4096:" S16 "$" K32 ":" K32,
        "{SCRAM-SHA-256}4096:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$0:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$04096:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$10000001:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$99999999999999999999:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$-1:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$+4096:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$ 4096:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$:" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$4096" S16 "$" K32 ":" K32,
        "SCRAM-SHA-256$4096:$" K32 ":" K32,                         /* empty salt */
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" K32 ":" K32,  /* bad base64 */
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==$" K32 ":" K32, /* not canonical */
        "SCRAM-SHA-256$4096:" S16 "$" S16 ":" K32,                  /* 16-octet key */
        "SCRAM-SHA-256$4096:" S16 "$" K32 ":" S16,
        "SCRAM-SHA-256$4096:" S16 "$" K32 K32 ":" K32,
        "SCRAM-SHA-256$4096:" S16 "$" K32,
        "SCRAM-SHA-256$4096:" S16 "$" K32 ":",
        "SCRAM-SHA-256$4096:" S16 "$" K32 ":" K32 "\n",
        "SCRAM-SHA-256$4096:" S16 "$" K32 ":" K32 "$",
        "SCRAM-SHA-256$4096:" S16 "$" K32 ":" K32 ":" K32,
        "SCRAM-SHA-256$4096:" S16 ":" K32 "$" K32,
        "SCRAM-SHA-256$4096:" S16 "$ " K32 ":" K32,
        /* 65-octet salt */
        "SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAA=$" K32 ":" K32,
    };
    struct scram_keys k;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&k, 0x5a, sizeof(k));
        if (scram_keys_parse(bad[i], &k) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(k.iterations, 0x5a5a5a5a); /* untouched */
    }
    assert_int_equal(scram_keys_parse(NULL, &k), -1);
    /* The edges that are good. */
    assert_int_equal(scram_keys_parse("SCRAM-SHA-256$1:AA==$" K32 ":" K32, &k), 0);
    assert_int_equal(k.iterations, 1);
    assert_int_equal(k.salt_len, 1);
    assert_int_equal(scram_keys_parse("SCRAM-SHA-256$10000000:" S16 "$" K32 ":" K32, &k), 0);
    assert_int_equal(k.iterations, 10000000);
#undef K32
#undef S16
}

static void test_scram_keys_derive(void **state)
{
    struct scram_keys a, b;
    assert_int_equal(scram_keys_derive("s3cret pass", 4096, &a), 0);
    assert_int_equal(scram_keys_derive("s3cret pass", 4096, &b), 0);
    assert_int_equal(a.salt_len, SCRAM_SALT_LEN);
    assert_int_equal(a.iterations, 4096);
    assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);
    assert_memory_not_equal(a.stored_key, b.stored_key, 32);

    /* Both verify with the client written here; the wrong password fails. */
    assert_int_equal(exchange("alice@example.org", &a, "s3cret pass", NULL), SCRAM_OK);
    assert_int_equal(exchange("alice@example.org", &b, "s3cret pass", NULL), SCRAM_OK);
    assert_int_equal(exchange("alice@example.org", &a, "s3cret pasS", NULL), SCRAM_FAIL);
    assert_int_equal(exchange("alice@example.org", &b, "", NULL), SCRAM_FAIL);

    /* Through the RFC 5803 text form and back. */
    char text[256];
    struct scram_keys c;
    assert_int_equal(scram_keys_format(&a, text, sizeof(text)), 0);
    assert_int_equal(scram_keys_parse(text, &c), 0);
    assert_int_equal(exchange("alice@example.org", &c, "s3cret pass", NULL), SCRAM_OK);

    /* Iterations out of range, salt out of range. */
    uint8_t salt[65] = {0};
    assert_int_equal(scram_keys_derive("x", 0, &c), -1);
    assert_int_equal(scram_keys_derive("x", SCRAM_MAX_ITERATIONS + 1, &c), -1);
    assert_int_equal(scram_keys_derive_salt("x", 1, salt, 0, &c), -1);
    assert_int_equal(scram_keys_derive_salt("x", 1, salt, 65, &c), -1);
    assert_int_equal(scram_keys_derive_salt("x", 1, salt, 64, &c), 0);
    assert_int_equal(scram_keys_derive(NULL, 4096, &c), -1);
}

/* ---- the exchange ----------------------------------------------------------- */

static void test_scram_wrong_password(void **state)
{
    struct scram_keys k;
    rfc_keys(&k);
    char *sf = NULL;
    assert_int_equal(exchange("user", &k, "pencil", &sf), SCRAM_OK);
    free(sf);
    assert_int_equal(exchange("user", &k, "Pencil", NULL), SCRAM_FAIL);
    assert_int_equal(exchange("user", &k, "pencil ", NULL), SCRAM_FAIL);
    /* A proof of the right length but wrong bits. */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=",
                "e=invalid-proof");
    /* A proof of the wrong length. */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4j",
                "e=invalid-proof");
    final_fails(RFC_CFIRST, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=",
                "e=invalid-proof");
}

static void test_scram_unknown_user(void **state)
{
    char *sf1 = NULL, *sf2 = NULL, *sf3 = NULL;
    assert_int_equal(exchange("nobody@example.org", NULL, "pencil", &sf1), SCRAM_FAIL);
    assert_int_equal(exchange("nobody@example.org", NULL, "", &sf2), SCRAM_FAIL);
    assert_int_equal(exchange("other@example.org", NULL, "pencil", &sf3), SCRAM_FAIL);
    /* Same answer each time (no enumeration), like a real account. */
    assert_string_equal(sf1, sf2);
    char *salt1 = attr_value(sf1, 's'), *salt3 = attr_value(sf3, 's'), *it = attr_value(sf1, 'i');
    assert_string_not_equal(salt1, salt3);
    assert_int_equal(strlen(salt1), 24); /* 16 octets */
    assert_int_equal(atoi(it), SCRAM_DEFAULT_ITERATIONS);

    /* Another process (another secret) gives another salt. */
    struct scram_server *s =
        scram_server_new(SNONCE, (const uint8_t *)"another secret", strlen("another secret"));
    assert_non_null(s);
    struct buf out = BUF_INIT;
    assert_int_equal(step(s, "n,,n=nobody@example.org,r=clientNONCE", &out), SCRAM_NEED_KEYS);
    buf_reset(&out);
    assert_int_equal(scram_server_set_keys(s, NULL, &out), SCRAM_CONTINUE);
    char *salt_other = attr_value(out_str(&out), 's');
    assert_string_not_equal(salt1, salt_other);

    free(salt_other);
    buf_free(&out);
    scram_server_free(&s);
    free(salt1);
    free(salt3);
    free(it);
    free(sf1);
    free(sf2);
    free(sf3);
}

static void test_scram_channel_binding(void **state)
{
    /* "p=" asks for channel binding: we offer no -PLUS. */
    first_fails("p=tls-unique,,n=user,r=abc", "e=channel-binding-not-supported");
    first_fails("p=tls-exporter,a=user,n=user,r=abc", "e=channel-binding-not-supported");

    /* c= must be the base64 of the gs2 header the client sent. */
    final_fails(RFC_CFIRST,
                "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=channel-bindings-dont-match");
    final_fails(RFC_CFIRST,
                "c=,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=channel-bindings-dont-match");
    final_fails(RFC_CFIRST,
                "c=biw,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=invalid-encoding");
    /* "y,," sent: c= must say "y,," too. */
    final_fails("y,,n=user,r=rOprNGfwEbeRWgbNEkqO", RFC_CFINAL, "e=channel-bindings-dont-match");

    /* And "y" with the matching c= works (proof computed here). */
    struct scram_server *s = rfc_server_at_final("y,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    struct buf out = BUF_INIT, final = BUF_INIT, v = BUF_INIT;
    client_final("pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO", RFC_SFIRST, "eSws", &final, &v);
    assert_int_equal(step(s, out_str(&final), &out), SCRAM_OK);
    assert_string_equal(out_str(&out), out_str(&v));
    scram_server_free(&s);

    /* With an authzid, c= carries it: "n,a=user,". */
    s = rfc_server_at_final("n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO");
    client_final("pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO", RFC_SFIRST, "bixhPXVzZXIs", &final, &v);
    assert_int_equal(step(s, out_str(&final), &out), SCRAM_OK);
    scram_server_free(&s);
    final_fails("n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO", RFC_CFINAL,
                "e=channel-bindings-dont-match");

    buf_free(&out);
    buf_free(&final);
    buf_free(&v);
}

static void test_scram_tampered_final(void **state)
{
    /* Another nonce. */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=other-error");
    /* Only the client's half. */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=other-error");
    /* A longer one. */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0x,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=other-error");
    /* No proof. */
    final_fails(RFC_CFIRST, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                "e=invalid-encoding");
    final_fails(RFC_CFIRST, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,x=1",
                "e=invalid-encoding");
    final_fails(RFC_CFIRST, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,",
                "e=invalid-encoding");
    /* Order is fixed: c=, r=, [extensions], p=. */
    final_fails(RFC_CFIRST,
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,c=biws,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=invalid-encoding");
    final_fails(RFC_CFIRST,
                "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,"
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                "e=invalid-encoding");
    final_fails(RFC_CFIRST, "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "e=invalid-encoding");
    /* An extension the proof does not cover (added after the fact). */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,x=y,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=invalid-proof");
    /* A malformed one. */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,xy,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "e=invalid-encoding");
    /* Bad base64 in the proof. */
    final_fails(RFC_CFIRST,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
                "e=invalid-proof");
}

static void test_scram_bad_gs2(void **state)
{
    first_fails("x,,n=user,r=abc", "e=invalid-encoding");
    first_fails("N,,n=user,r=abc", "e=invalid-encoding");
    first_fails("nn,,n=user,r=abc", "e=invalid-encoding");
    first_fails(",,n=user,r=abc", "e=invalid-encoding");
    first_fails("n,n=user,r=abc", "e=invalid-username-encoding"); /* missing comma */
    first_fails("n,,", "e=invalid-encoding");
    first_fails("n,", "e=invalid-encoding");
    first_fails("n", "e=invalid-encoding");
    first_fails("n=user,r=abc", "e=invalid-encoding"); /* no gs2 header */
    first_fails("n,x=user,n=user,r=abc", "e=invalid-username-encoding");
    first_fails("n,a=,n=user,r=abc", "e=invalid-username-encoding");
    /* Attribute order: n= then r=. */
    first_fails("n,,r=abc,n=user", "e=invalid-encoding");
    first_fails("n,,n=user", "e=invalid-encoding");
    first_fails("n,,n=user,", "e=invalid-encoding");
    first_fails("n,,n=user,x=abc", "e=invalid-encoding");
    first_fails("n,,user,r=abc", "e=invalid-encoding");
    /* The nonce: printable, not empty. */
    first_fails("n,,n=user,r=", "e=invalid-encoding");
    first_fails("n,,n=user,r=ab c", "e=invalid-encoding");
    first_fails("n,,n=user,r=ab\x7f", "e=invalid-encoding");
    first_fails("n,,n=user,r=ab\xc3\xa9", "e=invalid-encoding");
    /* "m=" is reserved: must fail (RFC 5802 5.1). */
    first_fails("n,,m=ext,n=user,r=abc", "e=extensions-not-supported");
    /* Malformed trailing extensions. */
    first_fails("n,,n=user,r=abc,", "e=invalid-encoding");
    first_fails("n,,n=user,r=abc,xy", "e=invalid-encoding");
    first_fails("n,,n=user,r=abc,x=", "e=invalid-encoding");
    first_fails("n,,n=user,r=abc,1=a", "e=invalid-encoding");

    /* Well-formed unknown extensions are ignored (RFC 5802 7), and kept in
     * the AuthMessage. */
    struct scram_keys k;
    rfc_keys(&k);
    struct scram_server *s = server_new(SNONCE);
    struct buf out = BUF_INIT, final = BUF_INIT, v = BUF_INIT;
    assert_int_equal(step(s, "n,,n=user,r=abc,x=ext,y=more", &out), SCRAM_NEED_KEYS);
    assert_int_equal(scram_server_set_keys(s, &k, &out), SCRAM_CONTINUE);
    char *sf = strdup(out_str(&out));
    assert_string_equal(sf, "r=abc" SNONCE ",s=" RFC_SALT ",i=4096");
    client_final("pencil", "n=user,r=abc,x=ext,y=more", sf, "biws", &final, &v);
    assert_int_equal(step(s, out_str(&final), &out), SCRAM_OK);
    assert_string_equal(out_str(&out), out_str(&v));
    free(sf);
    buf_free(&out);
    buf_free(&final);
    buf_free(&v);
    scram_server_free(&s);
}

static void test_scram_authzid(void **state)
{
    struct buf out = BUF_INIT;
    struct scram_server *s = server_new(SNONCE);
    assert_int_equal(step(s, "n,a=user,n=user,r=abc", &out), SCRAM_NEED_KEYS);
    assert_string_equal(scram_server_user(s), "user");
    scram_server_free(&s);

    /* Compared after decoding. */
    s = server_new(SNONCE);
    assert_int_equal(step(s, "y,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=abc", &out), SCRAM_NEED_KEYS);
    assert_string_equal(scram_server_user(s), "a,b=c");
    scram_server_free(&s);

    first_fails("n,a=admin,n=user,r=abc", "e=other-error");
    first_fails("n,a=User,n=user,r=abc", "e=other-error");
    first_fails("n,a=user,n=user2,r=abc", "e=other-error");
    first_fails("n,a=a=2Cb,n=a=3Db,r=abc", "e=other-error");
    first_fails("n,a=us=er,n=user,r=abc", "e=invalid-username-encoding");
    buf_free(&out);
}

static void test_scram_saslname(void **state)
{
    static const struct {
        const char *msg;
        const char *user;
    } good[] = {
        {"n,,n=us=2Cer,r=abc", "us,er"},
        {"n,,n=us=3Der,r=abc", "us=er"},
        {"n,,n==3D=2C,r=abc", "=,"},
        {"n,,n==3D,r=abc", "="},
        {"n,,n=jos\xc3\xa9@example.org,r=abc", "jos\xc3\xa9@example.org"},
        {"n,,n=a b,r=abc", "a b"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct scram_server *s = server_new(SNONCE);
        struct buf out = BUF_INIT;
        assert_int_equal(step(s, good[i].msg, &out), SCRAM_NEED_KEYS);
        assert_string_equal(scram_server_user(s), good[i].user);
        buf_free(&out);
        scram_server_free(&s);
    }
    static const char *const bad[] = {
        "n,,n=,r=abc",
        "n,,n=us=2cer,r=abc",
        "n,,n=us=3der,r=abc",
        "n,,n=us=41er,r=abc",
        "n,,n=us=,r=abc",
        "n,,n=us=2,r=abc",
        "n,,n==,r=abc",
        "n,,n=us=er,r=abc",
        "n,,n=us\ter,r=abc",
        "n,,n=us\x7f,r=abc",
        "n,,n=us\xc3,r=abc",
        "n,,n=us\xc0\xaf,r=abc",
        "n,,n=\xed\xa0\x80,r=abc",
        "n,,n=\xf5\x80\x80\x80,r=abc",
        "n,,n=\xff,r=abc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        first_fails(bad[i], "e=invalid-username-encoding");
}

static void test_scram_nul_and_length(void **state)
{
    struct buf out = BUF_INIT;
    /* NUL in the client-first-message. */
    static const char first_nul[] = "n,,n=us\0er,r=abc";
    struct scram_server *s = server_new(SNONCE);
    assert_int_equal(scram_server_step(s, (const uint8_t *)first_nul, sizeof(first_nul) - 1, &out),
                     SCRAM_FAIL);
    assert_string_equal(out_str(&out), "e=invalid-encoding");
    assert_null(scram_server_user(s));
    scram_server_free(&s);

    /* NUL in the client-final-message, after the proof. */
    s = rfc_server_at_final(RFC_CFIRST);
    struct buf final = BUF_INIT;
    buf_puts(&final, RFC_CFINAL);
    buf_append(&final, "", 1);
    buf_reset(&out);
    assert_int_equal(scram_server_step(s, buf_ptr(&final), buf_size(&final), &out), SCRAM_FAIL);
    assert_string_equal(out_str(&out), "e=invalid-encoding");
    scram_server_free(&s);

    /* Empty. */
    s = server_new(SNONCE);
    assert_int_equal(step(s, "", &out), SCRAM_FAIL);
    scram_server_free(&s);

    /* Overlong: a valid message of SCRAM_MAX_MESSAGE octets passes, one more fails. */
    struct buf big = BUF_INIT;
    buf_puts(&big, "n,,n=user,r=");
    while (buf_size(&big) < SCRAM_MAX_MESSAGE)
        buf_puts(&big, "x");
    s = server_new(SNONCE);
    assert_int_equal(scram_server_step(s, buf_ptr(&big), buf_size(&big), &out), SCRAM_NEED_KEYS);
    scram_server_free(&s);
    buf_puts(&big, "x");
    s = server_new(SNONCE);
    buf_reset(&out);
    assert_int_equal(scram_server_step(s, buf_ptr(&big), buf_size(&big), &out), SCRAM_FAIL);
    assert_string_equal(out_str(&out), "e=invalid-encoding");
    scram_server_free(&s);

    /* Overlong client-final-message. */
    s = rfc_server_at_final(RFC_CFIRST);
    buf_reset(&big);
    buf_puts(&big, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,x=");
    while (buf_size(&big) <= SCRAM_MAX_MESSAGE)
        buf_puts(&big, "y");
    buf_puts(&big, ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    buf_reset(&out);
    assert_int_equal(scram_server_step(s, buf_ptr(&big), buf_size(&big), &out), SCRAM_FAIL);
    assert_string_equal(out_str(&out), "e=invalid-encoding");
    scram_server_free(&s);

    buf_free(&big);
    buf_free(&final);
    buf_free(&out);
}

static void test_scram_states(void **state)
{
    struct buf out = BUF_INIT;
    struct scram_keys k;
    rfc_keys(&k);

    /* Bad server nonces. */
    assert_null(scram_server_new("", test_secret, 4));
    assert_null(scram_server_new("a,b", test_secret, 4));
    assert_null(scram_server_new("a b", test_secret, 4));
    assert_null(scram_server_new(NULL, test_secret, 4));
    assert_null(scram_server_new("abc", NULL, 4));
    struct scram_server *s = scram_server_new("abc", NULL, 0); /* no secret: allowed */
    assert_non_null(s);
    scram_server_free(&s);

    /* Keys before the client-first-message. */
    s = server_new(SNONCE);
    assert_int_equal(scram_server_set_keys(s, &k, &out), SCRAM_FAIL);
    scram_server_free(&s);

    /* A message while the keys are awaited. */
    s = server_new(SNONCE);
    assert_int_equal(step(s, RFC_CFIRST, &out), SCRAM_NEED_KEYS);
    assert_int_equal(step(s, RFC_CFINAL, &out), SCRAM_FAIL);
    assert_int_equal(scram_server_set_keys(s, &k, &out), SCRAM_FAIL);
    scram_server_free(&s);

    /* Keys twice. */
    s = server_new(SNONCE);
    assert_int_equal(step(s, RFC_CFIRST, &out), SCRAM_NEED_KEYS);
    buf_reset(&out);
    assert_int_equal(scram_server_set_keys(s, &k, &out), SCRAM_CONTINUE);
    buf_reset(&out);
    assert_int_equal(scram_server_set_keys(s, &k, &out), SCRAM_FAIL);
    scram_server_free(&s);

    /* Keys out of range. */
    struct scram_keys bad = k;
    bad.iterations = 0;
    s = server_new(SNONCE);
    assert_int_equal(step(s, RFC_CFIRST, &out), SCRAM_NEED_KEYS);
    assert_int_equal(scram_server_set_keys(s, &bad, &out), SCRAM_FAIL);
    scram_server_free(&s);
    bad = k;
    bad.salt_len = 65;
    s = server_new(SNONCE);
    assert_int_equal(step(s, RFC_CFIRST, &out), SCRAM_NEED_KEYS);
    assert_int_equal(scram_server_set_keys(s, &bad, &out), SCRAM_FAIL);
    scram_server_free(&s);

    /* A failed proof ends it: the right proof afterwards is refused. */
    s = rfc_server_at_final(RFC_CFIRST);
    assert_int_equal(step(s, "c=biws,r=x,p=AAAA", &out), SCRAM_FAIL);
    assert_int_equal(step(s, RFC_CFINAL, &out), SCRAM_FAIL);
    scram_server_free(&s);

    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scram_rfc7677_example),
        cmocka_unit_test(test_scram_keys_format_parse),
        cmocka_unit_test(test_scram_keys_parse_bad),
        cmocka_unit_test(test_scram_keys_derive),
        cmocka_unit_test(test_scram_wrong_password),
        cmocka_unit_test(test_scram_unknown_user),
        cmocka_unit_test(test_scram_channel_binding),
        cmocka_unit_test(test_scram_tampered_final),
        cmocka_unit_test(test_scram_bad_gs2),
        cmocka_unit_test(test_scram_authzid),
        cmocka_unit_test(test_scram_saslname),
        cmocka_unit_test(test_scram_nul_and_length),
        cmocka_unit_test(test_scram_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
