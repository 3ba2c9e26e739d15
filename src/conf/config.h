/* config — correio.conf, an INI file read with inih.
 *
 * Every key is a row of one table (config.c): section, name, type, default
 * and where it lands in struct config. An unknown section or key, or a bad
 * value, is an error reported as "FILE:LINE: message". docs/CONFIG.md
 * documents each key.
 */
#ifndef CORREIO_CONF_CONFIG_H
#define CORREIO_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_STR_MAX 1024

struct config {
    char path[CONFIG_STR_MAX];      /* the file read */
    /* [server] */
    char hostname[256];
    char data_dir[CONFIG_STR_MAX];
    char user[64];
    char log_level[16];
    unsigned workers;
    unsigned shutdown_timeout;
    /* [listen]: comma-separated ADDR:PORT lists; empty = no listener */
    char listen_smtp[CONFIG_STR_MAX];
    char listen_imap[CONFIG_STR_MAX];
    char listen_imaps[CONFIG_STR_MAX];
    char listen_pop3[CONFIG_STR_MAX];
    char listen_pop3s[CONFIG_STR_MAX];
    char listen_submission[CONFIG_STR_MAX];
    char listen_submissions[CONFIG_STR_MAX];
    /* [tls] */
    char tls_cert[CONFIG_STR_MAX];
    char tls_key[CONFIG_STR_MAX];
    /* [smtp] */
    size_t smtp_max_message_size;
    unsigned smtp_max_recipients;
    unsigned smtp_max_errors;
    unsigned smtp_max_command_line;
    unsigned smtp_max_text_line;
    unsigned smtp_timeout;
    unsigned smtp_max_connections;
    unsigned smtp_max_connections_per_ip;
    bool smtp_expn;
    char smtp_postmaster[320];
    /* [imap] */
    unsigned imap_timeout;
    unsigned imap_max_connections;
    unsigned imap_max_connections_per_ip;
    bool imap_allow_plaintext_auth;
    unsigned imap_max_bad_commands;
    unsigned imap_max_line;
    size_t imap_append_limit;
    unsigned imap_workers;
    /* [pop3] */
    unsigned pop3_timeout;
    unsigned pop3_max_connections;
    unsigned pop3_max_connections_per_ip;
    bool pop3_allow_plaintext_auth;
    unsigned pop3_max_errors;
    unsigned pop3_max_auth_failures;
    unsigned pop3_max_auth_failures_per_ip;
    /* [submission] */
    unsigned submission_timeout;
    unsigned submission_max_connections;
    unsigned submission_max_connections_per_ip;
    bool submission_allow_plaintext_auth;
    unsigned submission_max_auth_failures_per_ip;
    unsigned submission_scram_iterations;
    /* [delivery] */
    char delivery_dns_resolver[256];
    unsigned delivery_remote_smtp_port;
    char delivery_relayhost[CONFIG_STR_MAX];
    char delivery_retry_schedule[256];
    unsigned delivery_max_age;
    unsigned delivery_delay_warning;
    unsigned delivery_max_connections;
    unsigned delivery_max_connections_per_domain;
    bool delivery_require_tls;
};

/* Set every key to its default. */
void config_defaults(struct config *c);
/* Read path over the defaults. 0, or -1 with "path:line: message" in err. */
int config_load(struct config *c, const char *path, char *err, size_t errlen);
/* Set "section.key" to value (as --set does). 0 or -1 with err. */
int config_set(struct config *c, const char *dotted, const char *value, char *err, size_t errlen);
/* Write the whole configuration as an INI file, every key with its
 * one-line description as a comment. 0 or -1 with err. */
int config_write(const struct config *c, const char *path, char *err, size_t errlen);

#endif
