/* conf/config: defaults, --set, loading with file:line errors, write+reload. */
#include "testutil.h"

#include <unistd.h>

#include "conf/config.h"

static char *write_file(const char *dir, const char *text)
{
    char *path = malloc(4200);
    snprintf(path, 4200, "%s/c.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_config_defaults(void **state)
{
    struct config c;
    config_defaults(&c);
    assert_int_equal(c.smtp_max_command_line, 512);
    assert_int_equal(c.smtp_max_text_line, 1000);
    assert_int_equal(c.smtp_max_message_size, 52428800);
    assert_string_equal(c.listen_smtp, "0.0.0.0:25");
    assert_false(c.smtp_expn);
}

static void test_config_set(void **state)
{
    struct config c;
    char err[256];
    config_defaults(&c);
    assert_int_equal(config_set(&c, "smtp.max_message_size", "10M", err, sizeof(err)), 0);
    assert_int_equal(c.smtp_max_message_size, 10 * 1024 * 1024);
    assert_int_equal(config_set(&c, "SMTP.EXPN", "yes", err, sizeof(err)), 0);
    assert_true(c.smtp_expn);
    assert_int_equal(config_set(&c, "smtp.nope", "1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown setting"));
    assert_int_equal(config_set(&c, "smtp.timeout", "-1", err, sizeof(err)), -1);
    assert_int_equal(config_set(&c, "smtp.timeout", "12x", err, sizeof(err)), -1);
    assert_int_equal(config_set(&c, "smtp.expn", "maybe", err, sizeof(err)), -1);
    assert_int_equal(config_set(&c, "nodot", "1", err, sizeof(err)), -1);
    /* RFC 5321 4.5.3.1: the limits may not go below the minimums. */
    assert_int_equal(config_set(&c, "smtp.max_command_line", "100", err, sizeof(err)), -1);
    assert_int_equal(config_set(&c, "server.log_level", "loud", err, sizeof(err)), -1);
}

static void test_config_load_errors(void **state)
{
    char *dir = test_tmpdir();
    struct config c;
    char err[512];
    char *p = write_file(dir, "[server]\nhostname = mx.example\n\n[smtp]\nbogus = 1\n");
    config_defaults(&c);
    assert_int_equal(config_load(&c, p, err, sizeof(err)), -1);
    char want[4300];
    snprintf(want, sizeof(want), "%s:5:", p);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "bogus"));
    free(p);
    p = write_file(dir, "[smtp]\nmax_recipients = lots\n");
    config_defaults(&c);
    assert_int_equal(config_load(&c, p, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2:", p);
    assert_non_null(strstr(err, want));
    free(p);
    p = write_file(dir, "[tls]\ncert = /x.pem\n"); /* a cert without a key */
    config_defaults(&c);
    assert_int_equal(config_load(&c, p, err, sizeof(err)), -1);
    free(p);
    config_defaults(&c);
    assert_int_equal(config_load(&c, "/nonexistent/c.conf", err, sizeof(err)), -1);
    test_rmrf(dir);
    free(dir);
}

static void test_config_write_reload(void **state)
{
    char *dir = test_tmpdir();
    char path[4200], err[512];
    snprintf(path, sizeof(path), "%s/w.conf", dir);
    struct config a, b;
    config_defaults(&a);
    assert_int_equal(config_set(&a, "server.hostname", "mx.example.org", err, sizeof(err)), 0);
    assert_int_equal(config_set(&a, "listen.smtp", "127.0.0.1:2525, [::1]:2525", err,
                                sizeof(err)),
                     0);
    assert_int_equal(config_set(&a, "smtp.max_recipients", "7", err, sizeof(err)), 0);
    assert_int_equal(config_write(&a, path, err, sizeof(err)), 0);
    config_defaults(&b);
    assert_int_equal(config_load(&b, path, err, sizeof(err)), 0);
    assert_string_equal(b.hostname, "mx.example.org");
    assert_string_equal(b.listen_smtp, "127.0.0.1:2525, [::1]:2525");
    assert_int_equal(b.smtp_max_recipients, 7);
    assert_int_equal(b.smtp_max_message_size, a.smtp_max_message_size);
    test_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_set),
        cmocka_unit_test(test_config_load_errors),
        cmocka_unit_test(test_config_write_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
