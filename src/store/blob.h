/* blob — immutable message files, written with Maildir's discipline.
 *
 * A message is written to DIR/tmp/NAME, fsynced, then renamed to
 * DIR/msg/NAME; the caller fsyncs DIR/msg once for a batch
 * (blob_sync_dir). NAME is unique across processes and time:
 * "<unix seconds>.<pid>_<counter>.<random hex>". Files are mode 0600.
 */
#ifndef CORREIO_STORE_BLOB_H
#define CORREIO_STORE_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Write the concatenation of iov into account_dir/tmp, fsync, rename into
 * account_dir/msg. name_r (n bytes, >= 64) gets the file name, size_r the
 * octet count. 0 or -1 with err. Nothing is left in tmp/ on failure. */
int blob_write(const char *account_dir, const struct iovec *iov, int iovcnt, char *name_r,
               size_t n, uint64_t *size_r, char *err, size_t errlen);
/* Give the existing file account_dir/msg/src a second name in the same
 * folder (a hard link; the bytes are not copied). name_r (n bytes, >= 64)
 * gets the new name, made like blob_write's. The caller fsyncs msg/ before
 * it relies on the new name. 0 or -1 with err (errno kept: ENOENT when src
 * does not exist). */
int blob_link(const char *account_dir, const char *src, char *name_r, size_t n, char *err,
              size_t errlen);
/* fsync a directory. 0 or -1 with err. */
int blob_sync_dir(const char *dir, char *err, size_t errlen);
/* Remove account_dir/msg/name. */
int blob_unlink(const char *account_dir, const char *name);
/* Read a whole message file into a malloc'd buffer (*data_r, *len_r).
 * The caller frees *data_r; it is NUL-terminated (the NUL not counted). */
int blob_read(const char *account_dir, const char *name, uint8_t **data_r, size_t *len_r,
              char *err, size_t errlen);

/* Like blob_read, but only the header block: up to and including the
 * first empty line (the whole file when it has none). Reads in chunks, so
 * a large message costs little more than its header. */
int blob_read_head(const char *account_dir, const char *name, uint8_t **data_r, size_t *len_r,
                   char *err, size_t errlen);

#endif
