/* cli — the subcommands other than `serve`. Each returns an exit code
 * (sysexits.h values) and prints errors as "correio: ..." on stderr. */
#ifndef CORREIO_CLI_CLI_H
#define CORREIO_CLI_CLI_H

#include <stddef.h>

struct config;

int cli_init(int argc, char **argv);
int cli_user(const char *config_path, int argc, char **argv);
int cli_domain(const char *config_path, int argc, char **argv);
int cli_queue(const char *config_path, int argc, char **argv);
int cli_sendmail(const char *config_path, int argc, char **argv);

/* Load the configuration and drop to server.user when root. 0, or an
 * exit code after printing the error. */
int cli_load_config(const char *config_path, struct config *cfg);

/* Load the configuration, drop to server.user when root, open the store.
 * 0, or an exit code after printing the error. */
struct store;
int cli_open_store(const char *config_path, struct config *cfg, struct store **st_r);
/* Hash a password with yescrypt into out (n bytes). 0 or -1. */
int cli_password_hash(const char *password, char *out, size_t n);

#endif
