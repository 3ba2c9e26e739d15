/* received — the trace header fields of RFC 5321 4.4. Pure functions. */
#ifndef CORREIO_PROTO_SMTP_RECEIVED_H
#define CORREIO_PROTO_SMTP_RECEIVED_H

#include <time.h>

#include "lib/buf.h"

struct smtp_received_info {
    const char *helo;        /* client's HELO/EHLO name */
    const char *client_ip;   /* "192.0.2.1" or "2001:db8::1" (written as [IPv6:...]) */
    const char *by_host;     /* our hostname */
    const char *protocol;    /* "ESMTP", "ESMTPS", ... */
    const char *tls_version; /* NULL when no TLS; else e.g. "TLSv1.3" */
    const char *tls_cipher;
    const char *id;          /* transaction id */
    const char *for_rcpt;    /* NULL to leave out "for" */
    time_t when;
};

/* Append "Return-Path: <from>\r\n" ("<>" for the null path). -1 on OOM. */
int smtp_return_path_format(struct buf *out, const char *mail_from);
/* Append a folded "Received: ...\r\n" field. -1 on OOM. */
int smtp_received_format(struct buf *out, const struct smtp_received_info *info);
/* Write an RFC 5322 date-time (UTC, "+0000") for t into out (>= 32 bytes). */
void smtp_date_format(char *out, size_t n, time_t t);

#endif
