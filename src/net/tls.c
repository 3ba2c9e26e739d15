#include "net/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void tls_error_string(char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(err, errlen, "unknown TLS error");
    else
        ERR_error_string_n(e, err, errlen);
    ERR_clear_error();
}

SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_error_string(e, sizeof(e));
        snprintf(err, errlen, "SSL_CTX_new: %s", e);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        tls_error_string(e, sizeof(e));
        snprintf(err, errlen, "%s: %s", cert_path, e);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        tls_error_string(e, sizeof(e));
        snprintf(err, errlen, "%s: %s", key_path, e);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s does not match %s", key_path, cert_path);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_client_ctx_new(char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_error_string(err, errlen);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_default_verify_paths(ctx);
    return ctx;
}

static int tls_write_pem(const char *path, int mode, EVP_PKEY *key, X509 *cert, char *err,
                         size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_X509(f, cert);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        snprintf(err, errlen, "%s: could not write", path);
        return -1;
    }
    return 0;
}

int tls_selfsigned_write(const char *cert_path, const char *key_path, const char *hostname,
                         char *err, size_t errlen)
{
    int rc = -1;
    X509 *x = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key)
        goto ossl_fail;
    x = X509_new();
    if (!x)
        goto ossl_fail;
    X509_set_version(x, 2);
    unsigned char serial[16];
    FILE *ur = fopen("/dev/urandom", "r");
    if (!ur || fread(serial, 1, sizeof(serial), ur) != sizeof(serial)) {
        if (ur)
            fclose(ur);
        snprintf(err, errlen, "cannot read /dev/urandom");
        goto done;
    }
    fclose(ur);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname, -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    char san[300];
    snprintf(san, sizeof(san), "DNS:%s", hostname);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    if (!ext)
        goto ossl_fail;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (!X509_sign(x, key, EVP_sha256()))
        goto ossl_fail;
    if (tls_write_pem(key_path, 0600, key, NULL, err, errlen) < 0 ||
        tls_write_pem(cert_path, 0644, NULL, x, err, errlen) < 0)
        goto done;
    rc = 0;
    goto done;
ossl_fail:
    tls_error_string(err, errlen);
done:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}
