/* log — one key=value line per event on stderr.
 *
 *   log_info("smtp", "event=connect id=%s ip=%s", id, ip);
 * prints
 *   2026-11-22T10:00:00.123Z info smtp event=connect id=... ip=...
 *
 * Values that may hold spaces or quotes are written with log_quote().
 */
#ifndef CORREIO_LIB_LOG_H
#define CORREIO_LIB_LOG_H

#include <stddef.h>

/* LOG_NOTICE lines (start, ready, stop) are printed whatever the level. */
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_NOTICE };

void log_set_level(enum log_level level);
/* Parse "debug", "info", "warn", "error"; -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(m, ...) log_msg(LOG_DEBUG, m, __VA_ARGS__)
#define log_info(m, ...) log_msg(LOG_INFO, m, __VA_ARGS__)
#define log_warn(m, ...) log_msg(LOG_WARN, m, __VA_ARGS__)
#define log_error(m, ...) log_msg(LOG_ERROR, m, __VA_ARGS__)
#define log_notice(m, ...) log_msg(LOG_NOTICE, m, __VA_ARGS__)

/* Write s as a log value into out (size n): bare when it has no space,
 * quote, backslash or control character, otherwise in double quotes with
 * those escaped. Truncated to fit. Returns out. */
const char *log_quote(char *out, size_t n, const char *s);

#endif
