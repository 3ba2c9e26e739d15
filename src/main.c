/* correio — one binary, subcommands. Dispatch only. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "daemon/daemon.h"

#define CORREIO_VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/correio/correio.conf"

static void usage(void)
{
    fprintf(stderr,
            "usage: correio [-c FILE] COMMAND ...\n"
            "  init DIR --domain D [--domain D2 ...] [--hostname H] [--port-offset N]\n"
            "       [--set SECTION.KEY=VALUE ...]   write a configuration and data layout\n"
            "  serve                              run the server in the foreground\n"
            "  user add|passwd ADDRESS --password-stdin | user del ADDRESS | user list\n"
            "  user apop-secret ADDRESS --secret-stdin | --remove   (POP3 APOP)\n"
            "  domain add|del DOMAIN | domain list\n"
            "  queue list | flush | delete ID | bounce ID   (the outbound queue)\n"
            "  sendmail [-t] [-i] [-f SENDER] [-F NAME] [RCPT...]   queue a message from stdin\n"
            "  version\n"
            "-c FILE: the configuration (default " DEFAULT_CONFIG ")\n");
}

int main(int argc, char **argv)
{
    const char *config = getenv("CORREIO_CONFIG") ? getenv("CORREIO_CONFIG") : DEFAULT_CONFIG;
    /* Called as "sendmail" (a link): every argument is sendmail's. */
    char prog[256];
    snprintf(prog, sizeof(prog), "%s", argv[0] ? argv[0] : "");
    if (!strcmp(basename(prog), "sendmail"))
        return cli_sendmail(config, argc - 1, argv + 1);
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            config = argv[i + 1];
            i += 2;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("correio %s\n", CORREIO_VERSION);
            return 0;
        } else {
            fprintf(stderr, "correio: unknown option '%s'\n", argv[i]);
            usage();
            return EX_USAGE;
        }
    }
    if (i >= argc) {
        usage();
        return EX_USAGE;
    }
    const char *cmd = argv[i++];
    if (!strcmp(cmd, "serve") && i == argc)
        return daemon_serve(config);
    if (!strcmp(cmd, "init"))
        return cli_init(argc - i, argv + i);
    if (!strcmp(cmd, "user"))
        return cli_user(config, argc - i, argv + i);
    if (!strcmp(cmd, "domain"))
        return cli_domain(config, argc - i, argv + i);
    if (!strcmp(cmd, "queue"))
        return cli_queue(config, argc - i, argv + i);
    if (!strcmp(cmd, "sendmail"))
        return cli_sendmail(config, argc - i, argv + i);
    if (!strcmp(cmd, "version")) {
        printf("correio %s\n", CORREIO_VERSION);
        return 0;
    }
    fprintf(stderr, "correio: unknown command '%s'\n", cmd);
    usage();
    return EX_USAGE;
}
