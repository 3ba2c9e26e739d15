/* Unit tests for store/blob: message files written tmp/ -> fsync -> msg/. */
#include "testutil.h"

#include "store/blob.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

/* An account-like folder with msg/ and tmp/ under a fresh temp dir. */
static char *blob_dir_new(void)
{
    char *d = test_tmpdir();
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/msg", d);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/tmp", d);
    assert_int_equal(mkdir(p, 0700), 0);
    return d;
}

/* Entries in dir/sub other than . and .., or -1 when it cannot be opened. */
static int count_files(const char *dir, const char *sub)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    DIR *dp = opendir(p);
    if (!dp)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(dp);
    return n;
}

/* "<digits>.<digits>_<digits>.<16 hex>" */
static int name_well_formed(const char *name)
{
    const char *p = name;
    const char seps[] = {'.', '_', '.'};
    for (int i = 0; i < 3; i++) {
        const char *start = p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == start || *p != seps[i])
            return 0;
        p++;
    }
    size_t hex = strspn(p, "0123456789abcdef");
    return hex == 16 && p[hex] == '\0';
}

static void test_blob_roundtrip(void **state)
{
    (void)state;
    char *d = blob_dir_new();
    char name[64], err[256] = "";
    uint64_t size = 0;
    struct iovec iov[4] = {
        {.iov_base = "Subject: hi\r\n", .iov_len = 13},
        {.iov_base = "", .iov_len = 0},
        {.iov_base = "\r\n", .iov_len = 2},
        {.iov_base = "body line\r\n", .iov_len = 11},
    };
    assert_int_equal(blob_write(d, iov, 4, name, sizeof(name), &size, err, sizeof(err)), 0);
    assert_int_equal(size, 26);
    assert_true(name_well_formed(name));
    assert_int_equal(count_files(d, "tmp"), 0);
    assert_int_equal(count_files(d, "msg"), 1);

    char p[PATH_MAX];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/msg/%s", d, name);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(blob_read(d, name, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 26);
    assert_memory_equal(data, "Subject: hi\r\n\r\nbody line\r\n", 26);
    assert_int_equal(data[len], 0);
    free(data);

    assert_int_equal(blob_sync_dir(d, err, sizeof(err)), 0);
    assert_int_equal(blob_unlink(d, name), 0);
    assert_int_equal(count_files(d, "msg"), 0);
    assert_int_equal(blob_read(d, name, &data, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    test_rmrf(d);
    free(d);
}

/* More vectors than one writev() takes, of varying sizes, and an empty message. */
static void test_blob_many_iovecs(void **state)
{
    (void)state;
    char *d = blob_dir_new();
    enum { N = 300 };
    struct iovec iov[N];
    static uint8_t pool[N * 37];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(i % 37);
        for (size_t k = 0; k < n; k++)
            pool[total + k] = (uint8_t)(i + k);
        iov[i].iov_base = pool + total;
        iov[i].iov_len = n;
        total += n;
    }
    char name[64], err[256];
    uint64_t size = 0;
    assert_int_equal(blob_write(d, iov, N, name, sizeof(name), &size, err, sizeof(err)), 0);
    assert_int_equal(size, total);
    uint8_t *data;
    size_t len;
    assert_int_equal(blob_read(d, name, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, total);
    assert_memory_equal(data, pool, total);
    free(data);

    assert_int_equal(blob_write(d, NULL, 0, name, sizeof(name), &size, err, sizeof(err)), 0);
    assert_int_equal(size, 0);
    assert_int_equal(blob_read(d, name, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 0);
    free(data);
    assert_int_equal(count_files(d, "tmp"), 0);
    test_rmrf(d);
    free(d);
}

static void test_blob_unique_names(void **state)
{
    (void)state;
    char *d = blob_dir_new();
    enum { N = 200 };
    char names[N][64], err[256];
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    for (int i = 0; i < N; i++)
        assert_int_equal(blob_write(d, &iov, 1, names[i], 64, NULL, err, sizeof(err)), 0);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_string_not_equal(names[i], names[j]);
    assert_int_equal(count_files(d, "msg"), N);
    assert_int_equal(count_files(d, "tmp"), 0);
    test_rmrf(d);
    free(d);
}

struct blob_thread {
    const char *dir;
    char names[50][64];
    int failures;
};

static void *blob_thread_run(void *arg)
{
    struct blob_thread *t = arg;
    struct iovec iov = {.iov_base = "y", .iov_len = 1};
    char err[256];
    for (int i = 0; i < 50; i++)
        if (blob_write(t->dir, &iov, 1, t->names[i], 64, NULL, err, sizeof(err)) < 0)
            t->failures++;
    return NULL;
}

/* The name counter is shared by threads: no two threads make one name. */
static void test_blob_threads_unique(void **state)
{
    (void)state;
    char *d = blob_dir_new();
    struct blob_thread t[4];
    pthread_t tid[4];
    for (int i = 0; i < 4; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].dir = d;
        assert_int_equal(pthread_create(&tid[i], NULL, blob_thread_run, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(t[i].failures, 0);
    }
    assert_int_equal(count_files(d, "msg"), 200);
    test_rmrf(d);
    free(d);
}

static void test_blob_write_failures(void **state)
{
    (void)state;
    char *d = test_tmpdir();
    char name[64] = "", err[256] = "", p[PATH_MAX];
    struct iovec iov = {.iov_base = "data", .iov_len = 4};

    /* No tmp/ at all. */
    assert_int_equal(blob_write(d, &iov, 1, name, sizeof(name), NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(count_files(d, "."), 0);

    /* tmp/ but no msg/: the rename fails and the tmp file is removed. */
    snprintf(p, sizeof(p), "%s/tmp", d);
    assert_int_equal(mkdir(p, 0700), 0);
    err[0] = '\0';
    assert_int_equal(blob_write(d, &iov, 1, name, sizeof(name), NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "rename"));
    assert_int_equal(count_files(d, "tmp"), 0);

    /* Name buffer too small, bad arguments. */
    snprintf(p, sizeof(p), "%s/msg", d);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(blob_write(d, &iov, 1, name, 10, NULL, err, sizeof(err)), -1);
    assert_int_equal(blob_write(d, &iov, -1, name, sizeof(name), NULL, err, sizeof(err)), -1);
    assert_int_equal(count_files(d, "tmp"), 0);
    assert_int_equal(count_files(d, "msg"), 0);

    /* Names that would leave msg/ are refused. */
    uint8_t *data;
    size_t len;
    assert_int_equal(blob_read(d, "../tmp", &data, &len, err, sizeof(err)), -1);
    assert_int_equal(blob_read(d, "..", &data, &len, err, sizeof(err)), -1);
    assert_int_equal(blob_unlink(d, "a/b"), -1);
    assert_int_equal(blob_unlink(d, ""), -1);

    snprintf(p, sizeof(p), "%s/nope", d);
    assert_int_equal(blob_sync_dir(p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nope"));
    test_rmrf(d);
    free(d);
}

/* Write text as a message and read back its header block. */
static void check_head(const char *d, const char *text, size_t len, size_t want)
{
    char name[64], err[256] = "";
    struct iovec iov = {.iov_base = (void *)text, .iov_len = len};
    assert_int_equal(blob_write(d, &iov, 1, name, sizeof(name), NULL, err, sizeof(err)), 0);
    uint8_t *data = NULL;
    size_t got = 0;
    assert_int_equal(blob_read_head(d, name, &data, &got, err, sizeof(err)), 0);
    assert_int_equal(got, want);
    assert_memory_equal(data, text, want);
    assert_int_equal(data[got], 0);
    free(data);
}

static void test_blob_read_head(void **state)
{
    (void)state;
    char *d = blob_dir_new();
    const char crlf[] = "From: a@b\r\nSubject: x\r\n\r\nbody\r\n\r\nmore\r\n";
    check_head(d, crlf, strlen(crlf), strlen("From: a@b\r\nSubject: x\r\n\r\n"));
    const char lf[] = "From: a@b\nSubject: x\n\nbody\n";
    check_head(d, lf, strlen(lf), strlen("From: a@b\nSubject: x\n\n"));
    const char nobody[] = "From: a@b\r\nSubject: x\r\n";
    check_head(d, nobody, strlen(nobody), strlen(nobody));
    check_head(d, "", 0, 0);
    /* The empty line straddles the first 16 KiB read, at every split. */
    for (size_t at = 16380; at <= 16386; at++) {
        size_t n = at + 4 + 20000;
        char *big = malloc(n);
        memset(big, 'x', n);
        for (size_t i = 70; i + 2 < at; i += 72) {
            big[i] = '\r';
            big[i + 1] = '\n';
        }
        memcpy(big + at, "\r\n\r\n", 4);
        check_head(d, big, n, at + 4);
        free(big);
    }
    test_rmrf(d);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blob_roundtrip),
        cmocka_unit_test(test_blob_many_iovecs),
        cmocka_unit_test(test_blob_unique_names),
        cmocka_unit_test(test_blob_threads_unique),
        cmocka_unit_test(test_blob_write_failures),
        cmocka_unit_test(test_blob_read_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
