/* tls — OpenSSL contexts for the listeners, and the self-signed
 * certificate `correio init` makes when none is configured.
 * TLS 1.2 and 1.3 only. */
#ifndef CORREIO_NET_TLS_H
#define CORREIO_NET_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* A server context for cert (PEM chain) and key. NULL with err. The
 * caller owns it (SSL_CTX_free). */
SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path, char *err, size_t errlen);
/* A client context (for outbound SMTP later). */
SSL_CTX *tls_client_ctx_new(char *err, size_t errlen);
/* Write a new EC P-256 key and a self-signed certificate for hostname,
 * valid ten years, mode 0600 for the key. 0 or -1 with err. */
int tls_selfsigned_write(const char *cert_path, const char *key_path, const char *hostname,
                         char *err, size_t errlen);
/* The last OpenSSL error as text into err. */
void tls_error_string(char *err, size_t errlen);

#endif
