"""POP3 with clients nobody here wrote: curl, fetchmail and getmail (getmail6).
Each run is bounded by a timeout; a client that is not installed skips its
test. The clients trust the certificate `correio init` made (it names
mx.example.test; they connect to 127.0.0.1)."""
import os
import pwd
import re
import shutil
import subprocess
import tempfile

import pytest

from helpers import DEFAULT_PASSWORD, imap_ssl, make_message, new_account, pop3_raw, smtp_deliver, token

HOST = "127.0.0.1"
CLIENT_TIMEOUT = 60


def need(prog, package=None):
    if not shutil.which(prog):
        pytest.skip("%s is not installed (Debian package: %s)" % (prog, package or prog))


def deliver(server, acct, bodies):
    before = len(server.messages(acct))
    for b in bodies:
        smtp_deliver(server, acct, make_message(token("cl"), body=b))
    msgs = server.wait_messages(acct, before + len(bodies))
    assert len(msgs) == before + len(bodies)
    return msgs


DOT_BODY = "dots:\r\n.\r\n..\r\n.leading\r\nend\r\n"


def imap_count(server, acct):
    m = imap_ssl(server, acct)
    try:
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        return int(data[0])
    finally:
        m.logout()


def run(argv, env=None, ok=(0,)):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CLIENT_TIMEOUT,
                           env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s did not finish within %d s: %r %r" % (argv[0], CLIENT_TIMEOUT, e.stdout, e.stderr))
    assert p.returncode in ok, "%s: exit %d (want %s):\n%s\n%s" % (
        " ".join(argv[:3]), p.returncode, ok, p.stdout.decode("utf-8", "replace")[-3000:],
        p.stderr.decode("utf-8", "replace")[-3000:])
    return p


# --- curl -------------------------------------------------------------------------------------------
def curl(url, user, password=DEFAULT_PASSWORD, *args):
    return run(["curl", "-sS", "--max-time", "20", "-k", "-u", "%s:%s" % (user, password)] + list(args) + [url]).stdout


def test_curl(server):
    need("curl")
    acct = new_account(server)
    stored = deliver(server, acct, [DOT_BODY, None, None])
    s = "pop3s://%s:%d" % (HOST, server.pop3s_port)

    assert curl(s + "/1", acct, DEFAULT_PASSWORD, "--ssl-reqd") == stored[0], "curl pop3s:///1"
    assert curl(s + "/", acct) == b"".join(b"%d %d\r\n" % (i + 1, len(m)) for i, m in enumerate(stored))
    # STLS on 110+N
    out = curl("pop3://%s:%d/2" % (HOST, server.pop3_port), acct, DEFAULT_PASSWORD, "--ssl-reqd")
    assert out == stored[1], "curl pop3:// --ssl-reqd (STLS): %r" % out[:300]
    # custom commands
    with pop3_raw(server, acct) as c:
        uidl = c.multi("UIDL")[1]
        c.ok("QUIT")
    assert curl(s + "/", acct, DEFAULT_PASSWORD, "-X", "UIDL") == uidl
    assert curl(s + "/", acct, DEFAULT_PASSWORD, "-X", "TOP 1 0") == stored[0][:stored[0].index(b"\r\n\r\n") + 4]
    # DELE (no transfer), then curl's QUIT removes it
    curl(s + "/3", acct, DEFAULT_PASSWORD, "-X", "DELE", "-I")
    assert server.messages(acct) == stored[:2], "curl -X DELE: message 3 still stored"
    # APOP with the secret as the password
    secret = "curl-apop-" + token("s")
    p = server.cli("user", "apop-secret", acct, "--secret-stdin", input=secret + "\n")
    assert p.returncode == 0, p.stderr
    assert curl(s + "/2", acct, secret, "--login-options", "AUTH=+APOP") == stored[1], "curl with APOP"
    assert server.messages(acct) == stored[:2]


# --- fetchmail --------------------------------------------------------------------------------------
FETCHMAIL_RECEIVED = re.compile(rb"Received: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n(?:[ \t][^\n]*\n)*")


def fetchmail_messages(path):
    """The messages an MDA appended to path, without the Received: fetchmail adds; LF line ends."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    out = []
    for m in re.split(rb"(?m)^(?=Return-Path: )", data):
        if m:
            m2, n = FETCHMAIL_RECEIVED.subn(b"", m, count=1)
            assert n == 1, "no fetchmail Received: in %r" % m[:400]
            out.append(m2)
    return out


def lf(m):
    return m.replace(b"\r\n", b"\n")


def fetchmail(server, work, acct, mode, out):
    """One fetchmail poll; mode: "ssl-keep" (POP3S, keep: new messages only, by UIDL)
    or "stls-delete" (STLS, fetch all, delete them). Returns the exit status."""
    me = pwd.getpwuid(os.getuid()).pw_name
    if mode == "ssl-keep":
        port, opts = server.pop3s_port, "ssl keep"
    else:
        port, opts = server.pop3_port, 'sslproto "tls1.2+" nokeep fetchall'
    rc = os.path.join(work, "fetchmailrc")
    with open(rc, "w") as f:
        f.write("""set no syslog
poll {host} with proto POP3 port {port} uidl
  user "{user}" there with password "{pw}" is "{me}" here
  options {opts} sslcertck sslcertfile "{cert}" sslcommonname "mx.example.test" no rewrite
  mda "cat >> {out}"
""".format(host=HOST, port=port, user=acct, pw=DEFAULT_PASSWORD, me=me, opts=opts, cert=server.cert_path,
           out=out))
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=work, FETCHMAILHOME=work, LC_ALL="C")
    p = run(["fetchmail", "-f", rc, "--nodetach", "--pidfile", os.path.join(work, "pid"),
             "-i", os.path.join(work, "fetchids"), "-v"], env=env, ok=(0, 1))
    return p.returncode


@pytest.mark.time_limit(120)
def test_fetchmail_keep_uidl_then_delete(server):
    need("fetchmail")
    acct = new_account(server)
    stored = deliver(server, acct, [DOT_BODY, None])
    work = tempfile.mkdtemp(prefix="correio-fetchmail-")
    try:
        out = os.path.join(work, "mbox")
        # keep: downloaded, still on the server
        assert fetchmail(server, work, acct, "ssl-keep", out) == 0
        assert fetchmail_messages(out) == [lf(m) for m in stored]
        assert server.messages(acct) == stored
        # again: nothing new (UIDL)
        assert fetchmail(server, work, acct, "ssl-keep", out) == 1, "fetchmail found new mail twice"
        assert len(fetchmail_messages(out)) == 2
        # a new message: only it is fetched
        stored = deliver(server, acct, ["third\r\n"])
        assert fetchmail(server, work, acct, "ssl-keep", out) == 0
        assert fetchmail_messages(out) == [lf(m) for m in stored]
        # STLS, fetch all and delete: the maildrop is empty afterwards
        os.unlink(out)
        assert fetchmail(server, work, acct, "stls-delete", out) == 0
        assert fetchmail_messages(out) == [lf(m) for m in stored]
        assert server.messages(acct) == [], "fetchmail deleted, the messages are still stored"
        assert imap_count(server, acct) == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- getmail ----------------------------------------------------------------------------------------
def getmail(server, work, acct, dest, delete, read_all):
    rc = os.path.join(work, "getmailrc")
    as_user = ""
    if os.geteuid() == 0:  # getmail refuses to deliver as root
        as_user = "user = nobody\n"
    with open(rc, "w") as f:
        f.write("""[retriever]
type = SimplePOP3SSLRetriever
server = {host}
port = {port}
username = {user}
password = {pw}
ca_certs = {cert}
ssl_cert_hostname = mx.example.test

[destination]
{dest}
{as_user}
[options]
delete = {delete}
read_all = {read_all}
delivered_to = false
received = false
verbose = 1
""".format(host=HOST, port=server.pop3s_port, user=acct, pw=DEFAULT_PASSWORD, cert=server.cert_path, dest=dest,
           as_user=as_user, delete=str(delete).lower(), read_all=str(read_all).lower()))
    p = run(["getmail", "--getmaildir", os.path.join(work, "state"), "--rcfile", rc])
    return p.stdout.decode("utf-8", "replace")


def maildir_messages(d):
    out = []
    for sub in ("new", "cur"):
        for n in sorted(os.listdir(os.path.join(d, sub))):
            with open(os.path.join(d, sub, n), "rb") as f:
                out.append(f.read())
    return out


@pytest.mark.time_limit(120)
def test_getmail_maildir_keep_then_mboxrd_delete(server):
    need("getmail", "getmail6")
    acct = new_account(server)
    stored = deliver(server, acct, [DOT_BODY, None])
    work = tempfile.mkdtemp(prefix="correio-getmail-")
    try:
        os.chmod(work, 0o755)
        md = os.path.join(work, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub))
            os.chmod(os.path.join(md, sub), 0o777)
        os.makedirs(os.path.join(work, "state"))
        mbox = os.path.join(work, "mbox")
        open(mbox, "w").close()
        os.chmod(mbox, 0o666)
        maildir = "type = Maildir\npath = %s/\n" % md

        # delete = false: downloaded, still on the server
        getmail(server, work, acct, maildir, delete=False, read_all=False)
        assert sorted(maildir_messages(md)) == sorted(lf(m) for m in stored)
        assert server.messages(acct) == stored
        # again: nothing new (getmail remembers the UIDLs)
        getmail(server, work, acct, maildir, delete=False, read_all=False)
        assert len(maildir_messages(md)) == 2, "getmail fetched the same messages twice (UIDL changed?)"
        stored = deliver(server, acct, ["From the third\r\n"])
        getmail(server, work, acct, maildir, delete=False, read_all=False)
        assert sorted(maildir_messages(md)) == sorted(lf(m) for m in stored)

        # delete = true, into an mboxrd file: every message, then the maildrop is empty
        getmail(server, work, acct, "type = Mboxrd\npath = %s\n" % mbox, delete=True, read_all=True)
        with open(mbox, "rb") as f:
            data = f.read()
        parts = [p for p in re.split(rb"(?m)^From [^\n]*\n", data) if p]
        assert len(parts) == 3, data[:2000]
        for p, m in zip(parts, stored):
            # mboxrd: a body line "From " is quoted ">From "; each message ends with a blank line
            assert re.sub(rb"(?m)^>(>*From )", rb"\1", p).rstrip(b"\n") == lf(m).rstrip(b"\n")
        assert server.messages(acct) == [], "getmail delete = true: the messages are still stored"
        assert imap_count(server, acct) == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
