/* blob_file — message files on a local file system (see blob.h).
 *
 * Maildir discipline: write DIR/tmp/NAME (O_EXCL, mode 0600), fsync it,
 * rename it to DIR/msg/NAME. The caller fsyncs DIR/msg once per batch
 * (blob_sync_dir) before it commits the index rows that name the files.
 */
#include "store/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/err.h"

/* iovecs handed to one writev() call at most (IOV_MAX is 1024 on Linux). */
#define BLOB_IOV_CHUNK 64

/* Per-process counter for unique names; atomic because worker threads
 * write blobs concurrently. */
static _Atomic uint64_t blob_counter;

/* A name is one path component we created: no '/', not "." or "..". */
static int blob_name_ok(const char *name)
{
    return name && name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* Fill buf with n random bytes from getrandom(); falls back to time and
 * counter mixing only if the kernel call fails (it does not block for
 * small requests once the pool is initialised). */
static void blob_random(uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        for (size_t i = got; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
    }
}

/* "<unix seconds>.<pid>_<counter>.<16 hex digits>" into name (n bytes). */
static int blob_name_make(char *name, size_t n)
{
    uint8_t rnd[8];
    blob_random(rnd, sizeof(rnd));
    uint64_t c = atomic_fetch_add(&blob_counter, 1);
    int len = snprintf(name, n, "%lld.%ld_%llu.%02x%02x%02x%02x%02x%02x%02x%02x",
                       (long long)time(NULL), (long)getpid(), (unsigned long long)c, rnd[0], rnd[1],
                       rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    return len > 0 && (size_t)len < n ? 0 : -1;
}

/* Write all of iov[0..iovcnt) to fd: loops over short writes and EINTR
 * and hands at most BLOB_IOV_CHUNK vectors to each writev(). Adds the
 * octets written to *size_r. 0, or -1 with errno set. */
static int blob_writev_all(int fd, const struct iovec *iov, int iovcnt, uint64_t *size_r)
{
    int i = 0;
    size_t off = 0; /* bytes of iov[i] already written */
    while (i < iovcnt) {
        struct iovec chunk[BLOB_IOV_CHUNK];
        int k = 0;
        for (int j = i; j < iovcnt && k < BLOB_IOV_CHUNK; j++) {
            size_t skip = j == i ? off : 0;
            if (iov[j].iov_len == skip)
                continue;
            chunk[k].iov_base = (char *)iov[j].iov_base + skip;
            chunk[k].iov_len = iov[j].iov_len - skip;
            k++;
        }
        if (k == 0)
            break; /* only empty vectors remain */
        ssize_t w = writev(fd, chunk, k);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        *size_r += (uint64_t)w;
        size_t left = (size_t)w;
        while (i < iovcnt && left >= iov[i].iov_len - off) {
            left -= iov[i].iov_len - off;
            off = 0;
            i++;
        }
        off += left;
    }
    return 0;
}

/* Write, fsync and close the new file at tmp. 0 or -1 with err; the
 * caller unlinks tmp on failure. */
static int blob_write_tmp(const char *tmp, const struct iovec *iov, int iovcnt, uint64_t *size_r,
                          char *err, size_t errlen)
{
    int fd;
    do
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return err_set(err, errlen, "create %s: %s", tmp, strerror(errno));
    if (blob_writev_all(fd, iov, iovcnt, size_r) < 0) {
        int e = errno;
        close(fd);
        return err_set(err, errlen, "write %s: %s", tmp, strerror(e));
    }
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return err_set(err, errlen, "fsync %s: %s", tmp, strerror(e));
    }
    /* close() after fsync() cannot lose data, but report what it says. */
    if (close(fd) < 0 && errno != EINTR)
        return err_set(err, errlen, "close %s: %s", tmp, strerror(errno));
    return 0;
}

int blob_write(const char *account_dir, const struct iovec *iov, int iovcnt, char *name_r, size_t n,
               uint64_t *size_r, char *err, size_t errlen)
{
    char name[64], tmp[PATH_MAX], dst[PATH_MAX];
    uint64_t size = 0;
    if (!account_dir || iovcnt < 0 || (iovcnt > 0 && !iov) || !name_r || n < sizeof(name))
        return err_set(err, errlen, "blob_write: bad arguments");
    if (blob_name_make(name, sizeof(name)) < 0)
        return err_set(err, errlen, "blob_write: cannot make a file name");
    int a = snprintf(tmp, sizeof(tmp), "%s/tmp/%s", account_dir, name);
    int b = snprintf(dst, sizeof(dst), "%s/msg/%s", account_dir, name);
    if (a < 0 || b < 0 || (size_t)a >= sizeof(tmp) || (size_t)b >= sizeof(dst))
        return err_set(err, errlen, "blob_write: path too long under %s", account_dir);
    if (blob_write_tmp(tmp, iov, iovcnt, &size, err, errlen) < 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, dst) < 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, errlen, "rename %s to msg/: %s", tmp, strerror(e));
    }
    snprintf(name_r, n, "%s", name);
    if (size_r)
        *size_r = size;
    return 0;
}

int blob_link(const char *account_dir, const char *src, char *name_r, size_t n, char *err,
              size_t errlen)
{
    char name[64], from[PATH_MAX], to[PATH_MAX];
    if (!account_dir || !blob_name_ok(src) || !name_r || n < sizeof(name)) {
        errno = EINVAL;
        return err_set(err, errlen, "blob_link: bad arguments");
    }
    int a = snprintf(from, sizeof(from), "%s/msg/%s", account_dir, src);
    if (a < 0 || (size_t)a >= sizeof(from)) {
        errno = ENAMETOOLONG;
        return err_set(err, errlen, "blob_link: path too long under %s", account_dir);
    }
    /* A name is unique by construction; retry anyway if one is taken. */
    for (int tries = 0; tries < 4; tries++) {
        if (blob_name_make(name, sizeof(name)) < 0) {
            errno = ENAMETOOLONG;
            return err_set(err, errlen, "blob_link: cannot make a file name");
        }
        int b = snprintf(to, sizeof(to), "%s/msg/%s", account_dir, name);
        if (b < 0 || (size_t)b >= sizeof(to)) {
            errno = ENAMETOOLONG;
            return err_set(err, errlen, "blob_link: path too long under %s", account_dir);
        }
        if (link(from, to) == 0) {
            snprintf(name_r, n, "%s", name);
            return 0;
        }
        if (errno != EEXIST)
            break;
    }
    int e = errno;
    err_set(err, errlen, "link %s: %s", from, strerror(e));
    errno = e;
    return -1;
}

int blob_sync_dir(const char *dir, char *err, size_t errlen)
{
    int fd;
    do
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return err_set(err, errlen, "open %s: %s", dir, strerror(errno));
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return err_set(err, errlen, "fsync %s: %s", dir, strerror(e));
    }
    close(fd);
    return 0;
}

int blob_unlink(const char *account_dir, const char *name)
{
    char path[PATH_MAX];
    if (!account_dir || !blob_name_ok(name))
        return -1;
    int len = snprintf(path, sizeof(path), "%s/msg/%s", account_dir, name);
    if (len < 0 || (size_t)len >= sizeof(path))
        return -1;
    return unlink(path) < 0 ? -1 : 0;
}

/* Read exactly len bytes from fd into data. 0, or -1 with errno set
 * (EIO when the file is shorter than expected). */
static int blob_read_all(int fd, uint8_t *data, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, data + got, len - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int blob_read(const char *account_dir, const char *name, uint8_t **data_r, size_t *len_r, char *err,
              size_t errlen)
{
    char path[PATH_MAX];
    if (!account_dir || !blob_name_ok(name) || !data_r || !len_r)
        return err_set(err, errlen, "blob_read: bad arguments");
    int plen = snprintf(path, sizeof(path), "%s/msg/%s", account_dir, name);
    if (plen < 0 || (size_t)plen >= sizeof(path))
        return err_set(err, errlen, "blob_read: path too long under %s", account_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, errlen, "open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        const char *why = S_ISREG(sb.st_mode) ? strerror(errno) : "not a regular file";
        close(fd);
        return err_set(err, errlen, "stat %s: %s", path, why);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *data = malloc(len + 1); /* +1: never malloc(0), and room for a NUL */
    if (!data) {
        close(fd);
        return err_set(err, errlen, "read %s: out of memory", path);
    }
    if (blob_read_all(fd, data, len) < 0) {
        int e = errno;
        free(data);
        close(fd);
        return err_set(err, errlen, "read %s: %s", path, strerror(e));
    }
    close(fd);
    data[len] = 0;
    *data_r = data;
    *len_r = len;
    return 0;
}

/* The end of the header block in data[0..n): the octet after the first
 * empty line (CRLF CRLF, or LF LF for bare-LF files), or 0 when none. */
static size_t blob_header_end(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (data[i] != '\n')
            continue;
        if (data[i + 1] == '\n')
            return i + 2;
        if (data[i + 1] == '\r' && i + 2 < n && data[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

int blob_read_head(const char *account_dir, const char *name, uint8_t **data_r, size_t *len_r,
                   char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (!account_dir || !blob_name_ok(name) || !data_r || !len_r)
        return err_set(err, errlen, "blob_read_head: bad arguments");
    int plen = snprintf(path, sizeof(path), "%s/msg/%s", account_dir, name);
    if (plen < 0 || (size_t)plen >= sizeof(path))
        return err_set(err, errlen, "blob_read_head: path too long under %s", account_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, errlen, "open %s: %s", path, strerror(errno));
    size_t cap = 16384, len = 0, end = 0;
    uint8_t *data = malloc(cap + 1);
    while (data) {
        if (len == cap) {
            uint8_t *p = realloc(data, cap * 2 + 1);
            if (!p) {
                free(data);
                data = NULL;
                break;
            }
            data = p;
            cap *= 2;
        }
        ssize_t r = read(fd, data + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(data);
            close(fd);
            return err_set(err, errlen, "read %s: %s", path, strerror(e));
        }
        /* Look again from a little before the new bytes: the empty line may
         * straddle two reads. */
        size_t from = len > 3 ? len - 3 : 0;
        len += (size_t)r;
        size_t e = blob_header_end(data + from, len - from);
        if (e) {
            end = from + e;
            break;
        }
        if (r == 0)
            break;
    }
    close(fd);
    if (!data)
        return err_set(err, errlen, "read %s: out of memory", path);
    if (end)
        len = end;
    data[len] = 0;
    *data_r = data;
    *len_r = len;
    return 0;
}
