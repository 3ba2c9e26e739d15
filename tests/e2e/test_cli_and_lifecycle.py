"""The command line (init, user, domain) and the server's life: start-up
errors, privilege drop, SIGTERM, SIGHUP, restarts."""
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import time

import pytest

import helpers
from helpers import (BIN, RawSMTP, make_message, make_test_dir, run_cli,
                     server_env, split_trace, token)

ALICE = "alice@example.test"


@pytest.fixture
def scratch():
    d = make_test_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def session(srv):
    c = RawSMTP(srv.smtp_port)
    c.greeting()
    c.ehlo()
    return c


def deliver(srv, rcpt, tok, sender="x@example.org"):
    msg = make_message(tok)
    with session(srv) as c:
        c.expect(250, "MAIL FROM:<%s>" % sender)
        c.expect(250, "RCPT TO:<%s>" % rcpt)
        c.expect(354, "DATA")
        c.send(msg + b".\r\n")
        c.expect(250)
    return msg


def wait_log(srv, pattern, offset, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = srv.log_since(offset)
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError("no %r in the log within %d s:\n%s" % (pattern, timeout, srv.log_since(offset)[-3000:]))


def ehlo_size(srv):
    with RawSMTP(srv.smtp_port) as c:
        c.greeting()
        r = c.ehlo()
        for l in r.lines:
            if l.upper().startswith("SIZE"):
                return int(l.split()[1])
    return None


# --- version / usage -----------------------------------------------------------------------
def test_version_and_usage():
    p = run_cli("--version")
    assert p.returncode == 0 and re.match(r"correio \d+\.\d+", p.stdout), (p.stdout, p.stderr)
    p = run_cli("frobnicate")
    assert p.returncode != 0 and "frobnicate" in p.stderr
    p = run_cli()
    assert p.returncode != 0 and "usage" in p.stderr.lower()


# --- init ------------------------------------------------------------------------------------
def test_init_requires_domain(scratch):
    p = run_cli("init", scratch + "/x", "--port-offset", "30000")
    assert p.returncode != 0
    assert "--domain" in p.stderr, p.stderr
    assert not os.path.exists(scratch + "/x/correio.conf")


def test_init_unknown_setting(scratch):
    p = run_cli("init", scratch + "/x", "--domain", "example.test", "--set", "smtp.nonsense=1")
    assert p.returncode != 0
    assert "smtp.nonsense" in p.stderr, p.stderr
    assert not os.path.exists(scratch + "/x/correio.conf")


@pytest.mark.parametrize("setting", [
    "smtp.max_command_line=100",
    "smtp.max_text_line=999",
    "server.log_level=verbose",
    "smtp.expn=maybe",
    "smtp.max_message_size=lots",
    "smtp.max_recipients=-1",
    "server.workers=0",
    "smtp.timeout",
    "nosection=1",
])
def test_init_bad_setting_value(scratch, setting):
    p = run_cli("init", scratch + "/x", "--domain", "example.test", "--set", setting)
    assert p.returncode != 0, "init accepted --set %s" % setting
    assert p.stderr.strip(), "no message for a bad --set"
    assert not os.path.exists(scratch + "/x/correio.conf")


def test_init_bad_port_offset(scratch):
    p = run_cli("init", scratch + "/x", "--domain", "example.test", "--port-offset", "99999")
    assert p.returncode != 0 and "port-offset" in p.stderr


def test_init_layout_and_refuses_to_overwrite(make_server):
    srv = make_server(start=False, accounts=())
    conf = open(srv.conf).read()
    assert re.search(r"(?m)^smtp = 127\.0\.0\.1:%d$" % srv.smtp_port, conf), conf
    assert re.search(r"(?m)^hostname = mx\.example\.test$", conf), conf
    for sub in ("data", "tls/cert.pem", "tls/key.pem"):
        assert os.path.exists(os.path.join(srv.dir, sub)), sub
    uid = helpers.correio_uid()
    assert uid is not None, "init did not create the system user correio"
    for sub in ("data", "tls/key.pem", "correio.conf"):
        assert os.stat(os.path.join(srv.dir, sub)).st_uid == uid, "%s not owned by correio" % sub
    mode = stat.S_IMODE(os.stat(os.path.join(srv.dir, "tls/key.pem")).st_mode)
    assert mode & 0o007 == 0, "the private key is readable by others: %o" % mode
    p = subprocess.run(["openssl", "x509", "-in", os.path.join(srv.dir, "tls/cert.pem"), "-noout",
                        "-text"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    assert p.returncode == 0 and b"mx.example.test" in p.stdout, p.stdout
    before = open(srv.conf, "rb").read()
    p = run_cli("init", srv.dir, "--domain", "other.test", "--port-offset", "1")
    assert p.returncode != 0 and "exists" in p.stderr
    assert open(srv.conf, "rb").read() == before
    p = srv.cli("domain", "list")
    assert p.returncode == 0 and p.stdout.split() == ["example.test", "example2.test"], p.stdout


# --- user and domain ----------------------------------------------------------------------------
def account_hash(srv, address):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(srv.data_dir, "accounts.sqlite"), uri=True)
    try:
        row = db.execute("SELECT hash FROM accounts WHERE address = ?", (address,)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


def user_list(srv):
    p = srv.cli("user", "list")
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_user_commands(make_server):
    srv = make_server(start=False, accounts=())
    assert user_list(srv) == []
    p = srv.cli("user", "add", ALICE, "--password-stdin", input="long enough pw\n")
    assert p.returncode == 0, p.stderr
    assert user_list(srv) == [ALICE]
    h1 = account_hash(srv, ALICE)
    assert h1 and h1.startswith("$y$"), "not a yescrypt hash: %r" % h1
    assert "long enough pw" not in open(os.path.join(srv.data_dir, "accounts.sqlite"), "rb").read().decode("latin-1")
    # Mixed case is stored lower-case.
    p = srv.cli("user", "add", "Bob@Example.TEST", "--password-stdin", input="another password\n")
    assert p.returncode == 0, p.stderr
    assert user_list(srv) == [ALICE, "bob@example.test"]
    # Errors.
    for addr, pw in [(ALICE, "long enough pw"),            # exists
                     ("bob@example.test", "long enough pw"),
                     ("x@nowhere.test", "long enough pw"),  # not a local domain
                     ("noatsign", "long enough pw"),
                     ("a..b@example.test", "long enough pw"),
                     (".a@example.test", "long enough pw"),
                     ("a b@example.test", "long enough pw"),
                     ("j\u00f6s\u00e9@example.test", "long enough pw"),  # ASCII local parts only
                     ("short@example.test", "1234567"),    # 7 characters
                     ("empty@example.test", "")]:
        p = srv.cli("user", "add", addr, "--password-stdin", input=pw + "\n")
        assert p.returncode != 0, "user add %r with %r succeeded" % (addr, pw)
        assert p.stderr.strip()
    p = srv.cli("user", "add", "nostdin@example.test")
    assert p.returncode != 0
    p = srv.cli("user", "add", "eof@example.test", "--password-stdin", input="")
    assert p.returncode != 0
    assert user_list(srv) == [ALICE, "bob@example.test"]
    # Exactly 8 characters is enough.
    p = srv.cli("user", "add", "eight@example.test", "--password-stdin", input="12345678\n")
    assert p.returncode == 0, p.stderr
    # passwd
    p = srv.cli("user", "passwd", ALICE, "--password-stdin", input="a new password\n")
    assert p.returncode == 0, p.stderr
    h2 = account_hash(srv, ALICE)
    assert h2 and h2 != h1
    p = srv.cli("user", "passwd", ALICE, "--password-stdin", input="short\n")
    assert p.returncode != 0
    assert account_hash(srv, ALICE) == h2
    p = srv.cli("user", "passwd", "ghost@example.test", "--password-stdin", input="whatever123\n")
    assert p.returncode != 0
    # del
    p = srv.cli("user", "del", "eight@example.test")
    assert p.returncode == 0, p.stderr
    assert user_list(srv) == [ALICE, "bob@example.test"]
    p = srv.cli("user", "del", "eight@example.test")
    assert p.returncode != 0
    p = srv.cli("user", "frob")
    assert p.returncode != 0


def test_domain_commands(make_server):
    srv = make_server(start=False, accounts=(ALICE,))
    p = srv.cli("domain", "add", "new.test")
    assert p.returncode == 0, p.stderr
    assert srv.cli("domain", "list").stdout.split() == ["example.test", "example2.test", "new.test"]
    p = srv.cli("domain", "add", "NEW.test")
    assert p.returncode != 0, "a domain added twice"
    p = srv.cli("domain", "del", "example.test")
    assert p.returncode != 0, "deleted a domain that has accounts"
    p = srv.cli("domain", "del", "new.test")
    assert p.returncode == 0, p.stderr
    assert srv.cli("domain", "list").stdout.split() == ["example.test", "example2.test"]
    p = srv.cli("domain", "del", "new.test")
    assert p.returncode != 0
    for bad in ("", "bad domain", "-x.test"):
        p = srv.cli("domain", "add", bad)
        assert p.returncode != 0, "domain add %r succeeded" % bad


def test_accounts_change_while_running(make_server):
    srv = make_server(accounts=(ALICE,))
    with session(srv) as c:
        c.expect(250, "MAIL FROM:<x@example.org>")
        c.expect(550, "RCPT TO:<new@example.test>", enh="5.1.1")
        c.expect(550, "RCPT TO:<someone@fresh.test>", enh="5.7.1")
    srv.add_user("new@example.test")
    assert srv.cli("domain", "add", "fresh.test").returncode == 0
    srv.add_user("someone@fresh.test")
    tok = token()
    msg = deliver(srv, "new@example.test", tok)
    assert split_trace(srv.find("new@example.test", tok)[0])[2] == msg
    tok2 = token()
    deliver(srv, "someone@fresh.test", tok2)
    assert len(srv.find("someone@fresh.test", tok2)) == 1
    assert srv.cli("user", "del", "new@example.test").returncode == 0
    with session(srv) as c:
        c.expect(250, "MAIL FROM:<x@example.org>")
        c.expect(550, "RCPT TO:<new@example.test>", enh="5.1.1")


# --- start-up errors ------------------------------------------------------------------------------
def run_serve(conf, timeout=20):
    try:
        p = subprocess.run([BIN, "-c", conf, "serve"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=server_env())
    except subprocess.TimeoutExpired:
        raise AssertionError("serve did not exit within %d s" % timeout)
    out = p.stderr.decode("utf-8", "replace") + p.stdout.decode("utf-8", "replace")
    rep = helpers.sanitizer_report(out)
    assert not rep, rep
    return p.returncode, out


def bad_conf_copy(srv, edit):
    """A copy of srv's configuration at DIR/bad/correio.conf with lines edited;
    edit(lines) returns the 1-based number of the line that is wrong."""
    lines = open(srv.conf).read().split("\n")
    n = edit(lines)
    bad_dir = os.path.join(srv.dir, "bad")
    os.makedirs(bad_dir, exist_ok=True)
    path = os.path.join(bad_dir, "correio.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, n


def after_section(lines, section, text):
    i = lines.index("[%s]" % section)
    lines.insert(i + 1, text)
    return i + 2


def append_lines(lines, *new):
    lines.extend(new)
    return len(lines)  # the last one is wrong


def replace_key(lines, key, text):
    for i, l in enumerate(lines):
        if l.startswith(key + " ="):
            lines[i] = text
            return i + 1
    raise AssertionError("no key %s" % key)


@pytest.mark.parametrize("what", ["unknown-key", "bad-number", "syntax", "unknown-section", "bad-bool",
                                  "bad-level"])
def test_config_error_has_file_and_line(make_server, what):
    srv = make_server(start=False, accounts=())
    edits = {
        "unknown-key": lambda L: after_section(L, "smtp", "bogus_key = 1"),
        "bad-number": lambda L: replace_key(L, "max_recipients", "max_recipients = lots"),
        "syntax": lambda L: after_section(L, "server", "this line is not ini"),
        "unknown-section": lambda L: append_lines(L, "[nosuch]", "key = value"),
        "bad-bool": lambda L: replace_key(L, "expn", "expn = perhaps"),
        "bad-level": lambda L: replace_key(L, "log_level", "log_level = chatty"),
    }
    path, n = bad_conf_copy(srv, edits[what])
    rc, out = run_serve(path)
    assert rc != 0, "serve started with a bad configuration"
    if what == "bad-level":
        # Checked after parsing: the file is named, the line may not be.
        assert "correio.conf" in out and "log_level" in out, out
    else:
        assert "correio.conf:%d:" % n in out, "want correio.conf:%d in:\n%s" % (n, out)
    assert "event=ready" not in out


def test_config_missing_file(scratch):
    rc, out = run_serve(os.path.join(scratch, "nope.conf"))
    assert rc != 0 and "nope.conf" in out


def test_port_in_use(make_server):
    srv = make_server(start=False, accounts=())
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", srv.smtp_port))
        blocker.listen(1)
        rc, out = run_serve(srv.conf)
        assert rc != 0, "serve started on a port in use"
        assert str(srv.smtp_port) in out, out
        assert "event=ready" not in out
    finally:
        blocker.close()


def test_second_instance_refused(make_server):
    srv = make_server(accounts=(ALICE,))
    rc, out = run_serve(srv.conf)
    assert rc != 0, "a second server started on the same port"
    tok = token()
    deliver(srv, ALICE, tok)
    assert len(srv.find(ALICE, tok)) == 1


def test_drops_privileges(make_server):
    srv = make_server(accounts=(ALICE,))
    uid = helpers.correio_uid()
    assert srv.server_uid() == uid != 0, "the server runs as uid %s" % srv.server_uid()
    tok = token()
    deliver(srv, ALICE, tok)
    msgdir = os.path.join(srv.account_dir(ALICE), "msg")
    files = os.listdir(msgdir)
    assert files
    for f in files:
        st = os.stat(os.path.join(msgdir, f))
        assert st.st_uid == uid, "%s owned by %d" % (f, st.st_uid)
        assert stat.S_IMODE(st.st_mode) & 0o007 == 0, "%s readable by others" % f


def test_log_lines_are_key_value(make_server):
    srv = make_server(accounts=(ALICE,))
    deliver(srv, ALICE, token())
    srv.stop()
    line_re = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error|notice) [a-z_]+ "
                         r"event=[a-z_]+( [a-z_]+=(\"([^\"\\]|\\.)*\"|\S*))*$")
    events = []
    for line in srv.log_text().splitlines():
        if line.startswith("=== e2e"):
            continue
        assert line_re.match(line), "log line not in key=value form: %r" % line
        events.append(re.search(r"event=(\S+)", line).group(1))
    for e in ("ready", "connect", "stopped"):
        assert e in events, "no event=%s in the log" % e


# --- signals ----------------------------------------------------------------------------------
def test_sigterm_with_open_sessions(make_server):
    srv = make_server(accounts=(ALICE,))
    tok = token()
    idle = RawSMTP(srv.smtp_port)
    idle.greeting()
    in_mail = session(srv)
    in_mail.expect(250, "MAIL FROM:<x@example.org>")
    in_data = session(srv)
    in_data.expect(250, "MAIL FROM:<x@example.org>")
    in_data.expect(250, "RCPT TO:<%s>" % ALICE)
    in_data.expect(354, "DATA")
    in_data.send(make_message(tok))  # no final dot
    in_tls = session(srv)
    in_tls.starttls()
    in_tls.ehlo()
    time.sleep(0.2)
    off = srv.log_size()
    srv.terminate()
    got = {}
    for name, c in (("idle", idle), ("in MAIL", in_mail), ("in DATA", in_data), ("in TLS", in_tls)):
        with c:
            try:
                got[name] = c.reply().code
                c.wait_closed(10)
            except (helpers.Closed, OSError) as e:
                got[name] = "closed without a reply (%s)" % type(e).__name__
    assert all(v == 421 for v in got.values()), "replies to SIGTERM: %r" % got
    try:
        rc = srv.proc.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError("the server did not exit within 15 s of SIGTERM")
    assert rc == 0, "exit status %d after SIGTERM" % rc
    assert "event=stopped" in srv.log_since(off)
    srv.stop()  # reap, check the log
    assert srv.find(ALICE, tok) == [], "a message without its final dot was stored"
    # New connections are refused once stopped.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.smtp_port), timeout=2).close()


def test_sigterm_idle_server_exits_fast(make_server):
    srv = make_server(accounts=())
    t0 = time.monotonic()
    srv.stop()  # checks status 0 and the log
    assert time.monotonic() - t0 < 5


def test_sighup_reloads(make_server):
    srv = make_server(accounts=(ALICE,))
    assert ehlo_size(srv) == 52428800
    old = RawSMTP(srv.smtp_port)
    old.greeting()
    conf = open(srv.conf).read()
    new = re.sub(r"(?m)^max_message_size = \d+$", "max_message_size = 1000000", conf)
    assert new != conf
    open(srv.conf, "w").write(new)
    off = srv.log_size()
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, r"event=reloaded", off)
    assert srv.alive()
    assert ehlo_size(srv) == 1000000
    # A session open across the reload still works.
    with old:
        old.ehlo()
        old.expect(250, "NOOP")
    tok = token()
    deliver(srv, ALICE, tok)
    assert len(srv.find(ALICE, tok)) == 1
    # A broken configuration: the reload fails, the server goes on as it was.
    open(srv.conf, "w").write(new + "\n[smtp]\nno_such_key = 1\n")
    off = srv.log_size()
    srv.proc.send_signal(signal.SIGHUP)
    text = wait_log(srv, r"event=reload", off)
    assert "event=reloaded" not in text, "a broken configuration was taken: %s" % text
    time.sleep(0.2)
    assert srv.alive(), "the server exited on a bad reload"
    assert ehlo_size(srv) == 1000000
    open(srv.conf, "w").write(conf)


def test_sighup_reloads_certificate(make_server):
    srv = make_server(accounts=(ALICE,))

    def peer_cert():
        with session(srv) as c:
            c.starttls()
            der = c.sock.getpeercert(binary_form=True)
            c.ehlo()
            return der

    before = peer_cert()
    tls = os.path.join(srv.dir, "tls")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=reloaded.example.test", "-keyout", tls + "/key.new",
                        "-out", tls + "/cert.new"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    assert p.returncode == 0, p.stdout
    uid = helpers.correio_uid()
    for name in ("key", "cert"):
        os.chown("%s/%s.new" % (tls, name), uid, -1)
        os.chmod("%s/%s.new" % (tls, name), 0o600)
        os.rename("%s/%s.new" % (tls, name), "%s/%s.pem" % (tls, name))
    off = srv.log_size()
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, r"event=reloaded", off)
    after = peer_cert()
    assert after != before, "the old certificate is still served after SIGHUP"
    want = ssl.PEM_cert_to_DER_cert(open(tls + "/cert.pem").read())
    assert after == want


def test_restart_keeps_mail_and_uids(make_server):
    srv = make_server(accounts=(ALICE,))
    toks = [token() for _ in range(3)]
    for t in toks:
        deliver(srv, ALICE, t)
    uids1 = srv.uids(ALICE)
    msgs1 = srv.messages(ALICE)
    validity1, uidnext1 = srv.mailbox_info(ALICE)
    assert len(uids1) == 3 and uids1 == sorted(set(uids1))
    assert uidnext1 > uids1[-1]
    srv.restart()
    assert srv.uids(ALICE) == uids1
    assert srv.messages(ALICE) == msgs1
    more = [token() for _ in range(2)]
    for t in more:
        deliver(srv, ALICE, t)
    uids2 = srv.uids(ALICE)
    assert uids2[:3] == uids1
    assert len(uids2) == 5 and uids2 == sorted(set(uids2)) and uids2[3] > uids1[-1], uids2
    assert uids2[3] >= uidnext1
    validity2, uidnext2 = srv.mailbox_info(ALICE)
    assert validity2 == validity1, "UIDVALIDITY changed across a restart"
    assert uidnext2 > uids2[-1]
    for t, m in zip(toks + more, srv.messages(ALICE)):
        assert t.encode() in m
