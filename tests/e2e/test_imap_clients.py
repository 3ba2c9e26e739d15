"""IMAP with clients nobody here wrote: curl, mbsync (isync) and mutt. Each
run is bounded by a timeout; a client that is not installed skips its test
(the Makefile's `deps` installs curl, isync and mutt)."""
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time

import pytest

from helpers import (DEFAULT_PASSWORD, flags_of, imap_raw, make_message, new_account, smtp_deliver, status,
                     token)

HOST = "127.0.0.1"
CLIENT_TIMEOUT = 60


def need(prog):
    if not shutil.which(prog):
        pytest.skip("%s is not installed (Debian package: %s)"
                    % (prog, {"mbsync": "isync"}.get(prog, prog)))


def bodies(server, acct, box="INBOX"):
    """{uid: (flags, body)} of a mailbox, by IMAP."""
    out = {}
    with imap_raw(server, acct) as c:
        if status(c, box)["MESSAGES"] == 0:
            return out
        c.ok("EXAMINE %s" % box)
        r = c.ok("FETCH 1:* (UID FLAGS BODY.PEEK[])")
        for _, d in r.fetches():
            out[int(d["UID"])] = (flags_of(d) - {"\\RECENT"}, d["BODY[]"])
    return out


# --- curl -------------------------------------------------------------------------------------------
def curl(server, acct, url, *args, password=DEFAULT_PASSWORD, check=True):
    argv = ["curl", "-sS", "--max-time", "20", "-k", "-u", "%s:%s" % (acct, password)] + list(args) + [url]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CLIENT_TIMEOUT)
    if check:
        assert p.returncode == 0, "%s: exit %d: %s" % (" ".join(argv[6:]), p.returncode, p.stderr.decode())
    return p


def test_curl_list_fetch_search_append(server):
    need("curl")
    acct = new_account(server)
    toks = [token("curl") for _ in range(2)]
    for t in toks:
        smtp_deliver(server, acct, make_message(t))
    stored = server.messages(acct)
    base = "imaps://%s:%d" % (HOST, server.imaps_port)

    out = curl(server, acct, base + "/").stdout
    names = re.findall(rb'^\* LIST \([^)]*\) "/" "?([^"\r\n]+)"?\r?$', out, re.M)
    assert set(names) >= {b"INBOX", b"Sent", b"Drafts", b"Trash", b"Junk", b"Archive"}, out

    out = curl(server, acct, base + "/INBOX;UID=1").stdout
    assert out == stored[0], "curl ;UID=1: want the stored message, got %r" % out[:300]
    out = curl(server, acct, base + "/INBOX;UID=2;SECTION=TEXT").stdout
    assert out == stored[1].split(b"\r\n\r\n", 1)[1], out
    out = curl(server, acct, base + "/INBOX;MAILINDEX=2").stdout
    assert out == stored[1], out[:300]

    out = curl(server, acct, base + "/INBOX?SUBJECT%%20%s" % toks[1]).stdout
    assert re.search(rb"^\* SEARCH 2\r?$", out, re.M), out
    # curl fetches with BODY[] (not BODY.PEEK[]): both messages are \Seen now
    out = curl(server, acct, base + "/", "-X", "STATUS INBOX (MESSAGES UNSEEN)").stdout
    assert re.search(rb"^\* STATUS \"?INBOX\"? \(MESSAGES 2 UNSEEN 0\)\r?$", out, re.M), out
    out = curl(server, acct, base + "/INBOX", "-X", "FETCH 1:* (FLAGS)").stdout
    assert len(re.findall(rb"^\* \d FETCH \(FLAGS", out, re.M)) == 2, out

    # STARTTLS on 143+N
    out = curl(server, acct, "imap://%s:%d/INBOX;UID=1" % (HOST, server.imap_port), "--ssl-reqd").stdout
    assert out == stored[0]
    # in clear, without TLS: refused (LOGINDISABLED)
    p = curl(server, acct, "imap://%s:%d/INBOX;UID=1" % (HOST, server.imap_port), check=False)
    assert p.returncode != 0 and p.stdout == b"", "login without TLS worked: %r" % p.stdout[:200]

    # upload = APPEND
    msg = make_message(token("up"))
    with tempfile.NamedTemporaryFile(suffix=".eml") as f:
        f.write(msg)
        f.flush()
        curl(server, acct, base + "/Drafts", "-T", f.name)
    got = [b for _, b in bodies(server, acct, "Drafts").values()]
    assert got == [msg], "curl -T to Drafts: %r" % got

    p = curl(server, acct, base + "/INBOX;UID=1", password="wrong", check=False)
    assert p.returncode == 67, "wrong password: curl exit %d (want 67, login denied)" % p.returncode

    # curl imaps://host/INBOX sends LIST "INBOX" *: how reference and pattern
    # combine is implementation-defined (RFC 3501 6.3.8: "INBOX*" or "INBOX/*"),
    # a child of INBOX is listed either way
    with imap_raw(server, acct) as c:
        c.ok("CREATE INBOX/curl-child")
    out = curl(server, acct, base + "/INBOX").stdout
    assert re.search(rb'^\* LIST \([^)]*\) "/" "?INBOX/curl-child"?\r?$', out, re.M), \
        "curl imaps://.../INBOX (LIST \"INBOX\" *): %r" % out


# --- mbsync ------------------------------------------------------------------------------------------
def mbsync_version():
    p = subprocess.run(["mbsync", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    m = re.search(rb"(\d+)\.(\d+)", p.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (1, 4)


def write_mbsyncrc(path, server, acct, local):
    tls_key = "TLSType" if mbsync_version() >= (1, 5) else "SSLType"
    with open(path, "w") as f:
        f.write("""IMAPAccount correio
Host {host}
Port {port}
User {user}
Pass "{pw}"
{tls_key} IMAPS
CertificateFile {cert}
SystemCertificates no

IMAPStore remote
Account correio

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel correio
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
CopyArrivalDate yes
""".format(host=HOST, port=server.imaps_port, user=acct, pw=DEFAULT_PASSWORD, tls_key=tls_key,
           cert=server.cert_path, local=local))


def run_mbsync(rc):
    try:
        p = subprocess.run(["mbsync", "-c", rc, "-a"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("mbsync did not finish within %d s: %r %r" % (CLIENT_TIMEOUT, e.stdout, e.stderr))
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0, "mbsync exit %d:\n%s" % (p.returncode, out)
    return out


def maildir_files(d):
    """{file name: bytes} of a Maildir's new/ and cur/."""
    out = {}
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        if os.path.isdir(p):
            for n in os.listdir(p):
                with open(os.path.join(p, n), "rb") as f:
                    out[os.path.join(sub, n)] = f.read()
    return out


def maildir_flags(name):
    return name.rsplit(":2,", 1)[1] if ":2," in name else ""


def strip_tuid(b):
    """mbsync adds an X-TUID: field to the messages it uploads (and stores)."""
    return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r?\n", b"", b)


def norm(b):
    """A message as mbsync keeps it locally compared with the server's: mbsync
    stores LF line ends in the Maildir and adds an X-TUID: field."""
    return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r?\n", b"", b).replace(b"\r\n", b"\n")


@pytest.mark.time_limit(150)
def test_mbsync_pull_push_and_flags(server):
    need("mbsync")
    acct = new_account(server)
    t_in = [token("mb") for _ in range(2)]
    for t in t_in:
        smtp_deliver(server, acct, make_message(t))
    arch = make_message(token("arch"))
    proj = make_message(token("proj"))
    with imap_raw(server, acct) as c:
        assert c.append("Archive", arch).ok
        c.ok("CREATE Projects/2024")
        assert c.append("Projects/2024", proj, flags=["\\Seen"]).ok
        c.ok("SELECT INBOX")
        c.ok("STORE 2 +FLAGS (\\Flagged)")
    work = tempfile.mkdtemp(prefix="correio-mbsync-")
    try:
        local = os.path.join(work, "mail")
        os.makedirs(local)
        rc = os.path.join(work, "mbsyncrc")
        write_mbsyncrc(rc, server, acct, local)

        # pull everything
        run_mbsync(rc)
        inbox = maildir_files(os.path.join(local, "INBOX"))
        server_inbox = bodies(server, acct)
        assert sorted(map(norm, inbox.values())) == sorted(norm(b) for _, b in server_inbox.values()), \
            "local INBOX differs from the server's: %r" % list(inbox)
        flagged = [n for n in inbox if "F" in maildir_flags(n)]
        assert len(flagged) == 1 and t_in[1].encode() in inbox[flagged[0]], inbox.keys()
        assert list(map(norm, maildir_files(os.path.join(local, "Archive")).values())) == [norm(arch)]
        pj = maildir_files(os.path.join(local, "Projects", "2024"))
        assert list(map(norm, pj.values())) == [norm(proj)] and "S" in maildir_flags(list(pj)[0]), pj.keys()
        for box in ("Sent", "Drafts", "Trash", "Junk"):
            assert os.path.isdir(os.path.join(local, box, "cur")), "%s not created locally" % box

        # local changes: a new message, a new mailbox, \Seen on one, \Deleted on another
        new_tok = token("local")
        new_msg = make_message(new_tok)
        with open(os.path.join(local, "INBOX", "new", "1700000000.%d_1.localhost" % os.getpid()), "wb") as f:
            f.write(new_msg)
        os.makedirs(os.path.join(local, "Made-Here"))
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(local, "Made-Here", sub))
        made = make_message(token("made"))
        with open(os.path.join(local, "Made-Here", "cur", "1700000001.%d_2.localhost:2,S" % os.getpid()), "wb") as f:
            f.write(made)
        seen_name = [n for n in inbox if t_in[0].encode() in inbox[n]][0]
        d = os.path.join(local, "INBOX")
        base = seen_name.split("/", 1)[1].split(":2,")[0]
        os.rename(os.path.join(d, seen_name), os.path.join(d, "cur", base + ":2,S"))
        # server-side change at the same time
        with imap_raw(server, acct) as c:
            c.ok("SELECT INBOX")
            c.ok("STORE 2 +FLAGS (\\Answered)")
            assert c.append("INBOX", make_message(token("srv"))).ok

        run_mbsync(rc)
        srv = bodies(server, acct)
        by_body = {strip_tuid(b): fl for fl, b in srv.values()}
        assert new_msg in by_body, "the message added locally is not on the server (byte-exact): %r" % [
            b[:120] for b in by_body]
        seen_srv = [fl for fl, b in srv.values() if t_in[0].encode() in b]
        assert seen_srv and "\\SEEN" in seen_srv[0], "\\Seen set locally did not reach the server: %r" % seen_srv
        made_srv = bodies(server, acct, "Made-Here")
        assert [strip_tuid(b) for _, b in made_srv.values()] == [made], made_srv
        assert "\\SEEN" in list(made_srv.values())[0][0]
        inbox = maildir_files(os.path.join(local, "INBOX"))
        assert len(inbox) == 4, inbox.keys()
        ans = [n for n in inbox if t_in[1].encode() in inbox[n]]
        assert ans and "R" in maildir_flags(ans[0]) and "F" in maildir_flags(ans[0]), \
            "\\Answered set on the server did not reach the Maildir: %r" % ans

        # a deletion made locally is expunged on the server (Expunge Both)
        victim = [n for n in inbox if new_tok.encode() in inbox[n]][0]
        vbase = victim.split("/", 1)[1].split(":2,")[0]
        os.rename(os.path.join(d, victim), os.path.join(d, "cur", vbase + ":2,ST"))
        run_mbsync(rc)
        srv = bodies(server, acct)
        assert not [b for _, b in srv.values() if new_tok.encode() in b], "deleted locally, still on the server"
        assert len(srv) == 3, srv.keys()
        # and a run with no changes changes nothing
        run_mbsync(rc)
        assert len(bodies(server, acct)) == 3
        assert len(maildir_files(os.path.join(local, "INBOX"))) == 3
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- mutt --------------------------------------------------------------------------------------------
def run_under_pty(argv, env, timeout=CLIENT_TIMEOUT):
    """Run a full-screen program on a pseudo-terminal (80x24); returns (status, screen output)."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    out = b""
    deadline = time.monotonic() + timeout
    status = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("%s did not finish within %d s; screen: %r"
                                     % (argv[0], timeout, screen_text(out)[-2000:]))
            r, _, _ = select.select([fd], [], [], min(left, 0.5))
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            else:
                wpid, st = os.waitpid(pid, os.WNOHANG)
                if wpid:
                    status = st
                    break
    finally:
        os.close(fd)
    if status is None:
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def screen_text(out):
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]", b"", out).decode("utf-8", "replace")


def write_muttrc(path, server, acct, work):
    certs = os.path.join(work, "certificates")
    shutil.copy(server.cert_path, certs)
    with open(path, "w") as f:
        f.write("""set folder="imaps://{host}:{port}/"
set spoolfile="+INBOX"
set imap_user="{user}"
set imap_pass="{pw}"
set certificate_file="{certs}"
set ssl_verify_host=no
set ssl_starttls=yes
set header_cache=""
set message_cachedir=""
set record=""
set postponed="+Drafts"
set move=no
set confirmappend=no
set confirmcreate=no
set delete=yes
set quit=yes
set wait_key=no
set beep=no
set pipe_decode=no
set sort=date-received
set imap_keepalive=30
set timeout=5
set mail_check=1
""".format(host=HOST, port=server.imaps_port, user=acct, pw=DEFAULT_PASSWORD, certs=certs))


@pytest.mark.time_limit(150)
def test_mutt_reads_flags_and_saves(server):
    need("mutt")
    acct = new_account(server)
    tok = token("mutt")
    msg = make_message(tok, body="Dear Alice,\r\nthe mutt test body %s.\r\n" % tok)
    smtp_deliver(server, acct, msg)
    work = tempfile.mkdtemp(prefix="correio-mutt-")
    try:
        rc = os.path.join(work, "muttrc")
        write_muttrc(rc, server, acct, work)
        out_file = os.path.join(work, "piped")
        env = dict(os.environ, TERM="xterm", HOME=work, LANG="C.UTF-8")
        # 1: read the message (piped to a file), flag it, sync, quit
        keys = '<pipe-message>cat > %s<enter><flag-message><sync-mailbox><quit>' % out_file
        st, screen = run_under_pty(["mutt", "-n", "-F", rc, "-e", "push '%s'" % keys], env)
        assert st == 0, "mutt exit %s; screen: %s" % (st, screen_text(screen)[-2000:])
        assert os.path.exists(out_file), "mutt did not pipe the message; screen: %s" % screen_text(screen)[-2000:]
        with open(out_file, "rb") as f:
            piped = f.read()
        assert ("the mutt test body %s." % tok).encode() in piped, piped[:500]
        assert b"Return-Path: <sender@example.org>" in piped, "mutt piped the whole message: %r" % piped[:300]
        srv = bodies(server, acct)
        assert len(srv) == 1
        fl = list(srv.values())[0][0]
        assert "\\FLAGGED" in fl, "flag set in mutt not on the server: %r" % fl

        # 2: save (move) it to Archive and quit: INBOX empty, Archive has it
        keys = '<save-message>=Archive<enter><sync-mailbox><quit>'
        st, screen = run_under_pty(["mutt", "-n", "-F", rc, "-e", "push '%s'" % keys], env)
        assert st == 0, "mutt exit %s; screen: %s" % (st, screen_text(screen)[-2000:])
        assert bodies(server, acct) == {}, "mutt's save did not remove the message from INBOX: %s" \
            % screen_text(screen)[-1500:]
        arch = bodies(server, acct, "Archive")
        assert [b for _, b in arch.values()] == [list(srv.values())[0][1]], arch
        assert "\\FLAGGED" in list(arch.values())[0][0], arch
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_mutt_configuration_is_valid(server):
    """mutt -Q reads the configuration without a terminal; a quick sanity check
    that the muttrc used above is valid for this mutt version."""
    need("mutt")
    acct = new_account(server)
    work = tempfile.mkdtemp(prefix="correio-mutt-")
    try:
        rc = os.path.join(work, "muttrc")
        write_muttrc(rc, server, acct, work)
        p = subprocess.run(["mutt", "-n", "-F", rc, "-Q", "folder", "-Q", "imap_user"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20,
                           env=dict(os.environ, HOME=work))
        assert p.returncode == 0, p.stderr
        assert ("imaps://%s:%d/" % (HOST, server.imaps_port)).encode() in p.stdout, p.stdout
        assert acct.encode() in p.stdout, p.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
