/* `correio queue list | flush | delete ID | bounce ID`: the outbound queue
 * seen and steered by the administrator. They work while the server runs:
 * the queue is an SQLite database shared between processes (queue.h), and
 * the server looks at it again within a few seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "cli/cli.h"
#include "conf/config.h"
#include "queue/queue.h"

static const char *queue_state_name(enum queue_rcpt_state st)
{
    switch (st) {
    case QUEUE_PENDING:
        return "pending";
    case QUEUE_DELIVERED:
        return "delivered";
    case QUEUE_FAILED:
        return "failed";
    }
    return "?";
}

static void queue_time(time_t t, char *out, size_t n)
{
    struct tm tm;
    if (t <= 0 || !gmtime_r(&t, &tm) || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, n, "-");
}

static int queue_cmd_list(struct queue *q)
{
    struct queue_list l = {0};
    char err[512];
    if (queue_all(q, &l, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: queue: %s\n", err);
        return EX_SOFTWARE;
    }
    if (l.n == 0)
        printf("queue is empty\n");
    else
        printf("%-18s %-9s %-8s %-20s %-30s %-30s %s\n", "ID", "STATE", "ATTEMPTS", "NEXT ATTEMPT",
               "SENDER", "RECIPIENT", "LAST REPLY");
    for (size_t i = 0; i < l.n; i++) {
        const struct queue_rcpt *r = &l.v[i];
        char next[32];
        queue_time(r->state == QUEUE_PENDING ? r->next_attempt : 0, next, sizeof(next));
        printf("%-18s %-9s %-8u %-20s %-30s %-30s %s\n", r->msg_id, queue_state_name(r->state),
               r->attempts, next, r->sender[0] ? r->sender : "<>", r->rcpt,
               r->last_reply && r->last_reply[0] ? r->last_reply : "-");
    }
    queue_list_free(&l);
    return 0;
}

int cli_queue(const char *config_path, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: correio queue list | flush | delete ID | bounce ID\n");
        return EX_USAGE;
    }
    struct config cfg;
    int rc = cli_load_config(config_path, &cfg);
    if (rc != 0)
        return rc;
    struct queue *q = NULL;
    char err[512] = "";
    if (queue_open(&q, cfg.data_dir, err, sizeof(err)) < 0) {
        fprintf(stderr, "correio: queue: %s\n", err);
        return EX_UNAVAILABLE;
    }
    const char *verb = argv[0];
    time_t now = time(NULL);
    if (!strcmp(verb, "list") && argc == 1) {
        rc = queue_cmd_list(q);
    } else if (!strcmp(verb, "flush") && argc == 1) {
        int n = queue_flush(q, now, err, sizeof(err));
        rc = n < 0 ? EX_SOFTWARE : 0;
        if (n >= 0)
            printf("%d recipient%s due now\n", n, n == 1 ? "" : "s");
    } else if ((!strcmp(verb, "delete") || !strcmp(verb, "bounce")) && argc == 2) {
        int r = !strcmp(verb, "delete") ? queue_delete(q, argv[1], err, sizeof(err))
                                        : queue_bounce(q, argv[1], now, err, sizeof(err));
        if (r == 0) {
            fprintf(stderr, "correio: queue: no message %s\n", argv[1]);
            rc = EX_DATAERR;
        } else {
            rc = r < 0 ? EX_SOFTWARE : 0;
            if (r > 0)
                printf("%s %s\n", argv[1], !strcmp(verb, "delete") ? "deleted" : "bounced");
        }
    } else {
        fprintf(stderr, "correio: queue: unknown or incomplete command '%s'\n", verb);
        rc = EX_USAGE;
    }
    if (rc != 0 && rc != EX_USAGE && err[0])
        fprintf(stderr, "correio: queue: %s\n", err);
    queue_close(&q);
    return rc;
}
