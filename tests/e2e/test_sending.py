"""Sending (issue 5): submission on 587 (STARTTLS) and 465 (implicit TLS)
with AUTH PLAIN, LOGIN and SCRAM-SHA-256, the sender checks, the RFC 6409
fix-ups, and the outbound queue delivering by MX to a second correio, with
DSNs (RFC 3464) and the `queue` commands.

DNS is a dnsmasq of the module's own (helpers.Dnsmasq, authoritative for
test.). Every remote host is reached on one port, the remote correio's SMTP
port (delivery.remote_smtp_port), so different MX hosts are different
loopback addresses: the remote listens on 127.0.0.1 and 127.0.0.3; nothing
listens on 127.0.0.2 (a host that does not answer).

Clients: Python's smtplib, swaks, and a SCRAM-SHA-256 client written here
(swaks has none)."""
import base64
import email
import email.policy
import email.utils
import hashlib
import hmac
import os
import re
import smtplib
import socket
import subprocess
import threading
import time

import pytest

import helpers
from helpers import (DEFAULT_PASSWORD, Dnsmasq, RawSMTP, has_bare_lf_or_cr, new_account, token,
                     unverified_tls_context)

HOST = "127.0.0.1"
CLIENT = "client.example.org"
SENDER_HOST = "mx.example.test"
REMOTE_HOST = "mx.remote.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"
RITA = "rita@remote.test"
ROB = "rob@remote.test"
TOM = "tom@twomx.test"
IVAN = "ivan@implicit.test"
VERA = "vera@viamx.test"
RAY = "ray@remote.test"
GUS = "gus@greet554.test"
REMOTE_DOMAINS = ("remote.test", "twomx.test", "implicit.test", "viamx.test", "greet554.test")
REMOTE_ACCOUNTS = (RITA, ROB, RAY, TOM, IVAN, VERA, GUS)
DEAD_IP = "127.0.0.2"  # nothing listens there
FAKE_IP = "127.0.0.4"  # a scripted SMTP server of a test's own (FakeSMTP), when one runs

DNS_RECORDS = [
    # remote.test: one MX on 127.0.0.1
    "--mx-host=remote.test,mx1.remote.test,10",
    "--host-record=mx1.remote.test,127.0.0.1",
    # viamx.test: its MX is on 127.0.0.3; its own A record is a dead address,
    # so only a delivery that follows the MX arrives
    "--mx-host=viamx.test,mx.viamx.test,10",
    "--host-record=mx.viamx.test,127.0.0.3",
    "--host-record=viamx.test," + DEAD_IP,
    # twomx.test: the preferred MX does not answer, the second one does
    "--mx-host=twomx.test,mxa.twomx.test,10",
    "--mx-host=twomx.test,mxb.twomx.test,20",
    "--host-record=mxa.twomx.test," + DEAD_IP,
    "--host-record=mxb.twomx.test,127.0.0.3",
    # implicit.test: no MX, an A record (RFC 5321 5.1)
    "--host-record=implicit.test,127.0.0.3",
    # nullmx.test: MX 0 "." (RFC 7505)
    "--dns-rr=nullmx.test,15,000000",
    # dead.test: its only MX never answers (mail for it stays queued)
    "--mx-host=dead.test,mx.dead.test,10",
    "--host-record=mx.dead.test," + DEAD_IP,
    # greet554.test: the preferred MX greets with 554 (a FakeSMTP), the second is the remote
    "--mx-host=greet554.test,mxa.greet554.test,10",
    "--mx-host=greet554.test,mxb.greet554.test,20",
    "--host-record=mxa.greet554.test," + FAKE_IP,
    "--host-record=mxb.greet554.test,127.0.0.3",
    # fake.test: only a FakeSMTP
    "--mx-host=fake.test,mx.fake.test,10",
    "--host-record=mx.fake.test," + FAKE_IP,
    # every other name under test. is NXDOMAIN (--local=/test/)
]


# --- fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dns():
    d = Dnsmasq(DNS_RECORDS)
    try:
        yield d
    finally:
        d.stop()


def make_remote(make, name="remote", listen_extra=True, start=True, settings=None):
    """The remote correio (mx.remote.test): its SMTP port is the one every
    remote host is reached on."""
    r = make(domains=REMOTE_DOMAINS, accounts=REMOTE_ACCOUNTS, hostname=REMOTE_HOST, name=name,
             start=False, settings=settings)
    if listen_extra:
        r.set_conf("listen", "smtp", "127.0.0.1:%d, 127.0.0.3:%d" % (r.smtp_port, r.smtp_port))
    if start:
        r.start()
    return r


def make_sender(make, dns, remote, name="sender", retry="1s", start=True, **settings):
    s = {"delivery.dns_resolver": dns.resolver,
         "delivery.remote_smtp_port": str(remote.smtp_port),
         "delivery.retry_schedule": retry,
         "server.log_level": "debug"}
    s.update(settings)
    return make(domains=("example.test",), accounts=(ALICE, BOB), hostname=SENDER_HOST,
                settings=s, name=name, start=start)


@pytest.fixture(scope="module")
def _remote(module_make_server):
    # two recipients per transaction: a third gets 452 4.5.3 (a temporary failure)
    return make_remote(module_make_server, settings={"smtp.max_recipients": "2"})


@pytest.fixture(scope="module")
def _sender(module_make_server, dns, _remote):
    return make_sender(module_make_server, dns, _remote)


@pytest.fixture
def remote(_remote):
    yield from helpers.guard(_remote)


@pytest.fixture
def sender(_sender, remote):
    yield from helpers.guard(_sender)


# --- helpers -----------------------------------------------------------------------------
def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def plain_ir(user, password=DEFAULT_PASSWORD):
    return b64(b"\0" + user.encode() + b"\0" + password.encode())


def message(tok, frm=ALICE, to=RITA, subject=None, extra=(), date=True, msgid=True, body=None):
    """A message from frm (bytes, CRLF)."""
    hdrs = ["From: Alice Sender <%s>" % frm, "To: <%s>" % to,
            "Subject: %s" % (subject or "sending " + tok)]
    if date:
        hdrs.append("Date: Mon, 01 Jan 2024 12:00:00 +0000")
    if msgid:
        hdrs.append("Message-ID: <%s@client.example.org>" % tok)
    hdrs += list(extra)
    body = body if body is not None else "Hello,\r\nthis is %s.\r\n" % tok
    return ("\r\n".join(hdrs) + "\r\n\r\n" + body).encode("utf-8")


def smtp_587(srv, user=ALICE, password=DEFAULT_PASSWORD):
    """smtplib on the submission port after STARTTLS, logged in (AUTH PLAIN:
    smtplib's preferred mechanism among those offered) when user is given."""
    s = smtplib.SMTP(HOST, srv.submission_port, local_hostname=CLIENT, timeout=15)
    s.starttls(context=unverified_tls_context())
    s.ehlo(CLIENT)
    if user:
        s.login(user, password)
    return s


def smtp_465(srv):
    s = smtplib.SMTP_SSL(HOST, srv.submissions_port, local_hostname=CLIENT,
                         context=unverified_tls_context(), timeout=15)
    s.ehlo(CLIENT)
    return s


def submit(srv, rcpts, msg, user=ALICE, mail_from=None):
    with smtp_587(srv, user) as s:
        refused = s.sendmail(mail_from or user, rcpts, msg)
    assert refused == {}, refused


def wait_find(srv, account, tok, n=1, timeout=15.0):
    """The stored messages of account holding tok, once there are n of them
    (or the timeout passed: then whatever there is)."""
    deadline = time.monotonic() + timeout
    while True:
        found = srv.find(account, tok)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def one_arrives(srv, account, tok, timeout=15.0, what=""):
    found = wait_find(srv, account, tok, timeout=timeout)
    if len(found) != 1:
        raise AssertionError("%s on %s: want 1 message with %s within %.0f s%s, found %d;\n"
                             "its queue: %r\nits log tail:\n%s"
                             % (account, srv.name, tok, timeout, what, len(found),
                                queue_rows(srv), srv.log_text()[-3000:]))
    return found[0]


def parse(stored):
    return email.message_from_bytes(stored, policy=email.policy.compat32)


def header_block(stored):
    return stored.split(b"\r\n\r\n", 1)[0]


RECEIVED_BY = re.compile(r"^from (?P<helo>\S+) \(\[(?P<ip>[^\]]+)\]\) by (?P<by>\S+) \(correio\)"
                         r" with (?P<proto>[A-Z0-9]+) id (?P<id>\S+)(?P<rest>.*?)"
                         r"(?: for <(?P<rcpt>[^>]*)>)?; (?P<date>.+)$")


def received_fields(stored):
    """The Received: fields of a stored message, unfolded, top first, as matches."""
    out = []
    for v in parse(stored).get_all("Received", []):
        v = re.sub(r"\s+", " ", v).strip()
        m = RECEIVED_BY.match(v)
        assert m, "Received field of an unexpected form: %r" % v
        out.append(m)
    return out


def queue_rows(srv):
    """`correio queue list` as dicts (id, state, attempts, next, sender, rcpt, reply)."""
    p = srv.cli("queue", "list")
    assert p.returncode == 0, "queue list: %d %s" % (p.returncode, p.stderr)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if lines == ["queue is empty"]:
        return []
    assert lines and lines[0].split()[:3] == ["ID", "STATE", "ATTEMPTS"], p.stdout
    rows = []
    for l in lines[1:]:
        f = l.split(None, 6)
        assert len(f) == 7, "queue list line %r" % l
        rows.append({"id": f[0], "state": f[1], "attempts": int(f[2]), "next": f[3],
                     "sender": f[4], "rcpt": f[5], "reply": f[6]})
    return rows


def wait_queue(srv, pred, timeout=15.0, what="queue condition"):
    deadline = time.monotonic() + timeout
    while True:
        rows = queue_rows(srv)
        if pred(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %.0f s; queue list:\n%r\nlog tail:\n%s"
                                 % (what, timeout, rows, srv.log_text()[-3000:]))
        time.sleep(0.2)


def dsn_parts(stored):
    """(message, text part, per-message fields, [per-recipient fields], returned headers)
    of a stored DSN, checked for the RFC 3464 / RFC 6522 shape."""
    m = parse(stored)
    assert m.get_content_type() == "multipart/report", m.get_content_type()
    assert m.get_param("report-type") == "delivery-status"
    parts = m.get_payload()
    assert isinstance(parts, list) and len(parts) in (2, 3), [p.get_content_type() for p in parts]
    assert parts[0].get_content_type() == "text/plain"
    ds = parts[1]
    assert ds.get_content_type() == "message/delivery-status"
    blocks = ds.get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    returned = parts[2] if len(parts) == 3 else None
    if returned is not None:
        assert returned.get_content_type() in ("text/rfc822-headers", "message/global-headers")
    return m, parts[0], blocks[0], blocks[1:], returned


def check_dsn(stored, rcpt, status, reporting=SENDER_HOST, sender=None):
    """A failure DSN for rcpt with this status; returns (message, its per-recipient fields,
    the whole DSN text)."""
    assert stored.startswith(b"Return-Path: <>\r\n"), "a DSN comes from <>: %r" % stored[:100]
    m, text, per_msg, per_rcpt, returned = dsn_parts(stored)
    assert "MAILER-DAEMON@" in m["From"], m["From"]
    if sender:
        assert sender in m["To"], m["To"]
    assert m["Auto-Submitted"] and m["Auto-Submitted"].startswith("auto-replied")
    assert m["Message-ID"] and m["Date"]
    assert per_msg["Reporting-MTA"].replace(" ", "").lower() == "dns;" + reporting
    mine = [b for b in per_rcpt
            if b["Final-Recipient"] and b["Final-Recipient"].split(";", 1)[1].strip().lower()
            == rcpt.lower()]
    assert len(mine) == 1, "no per-recipient block for %s: %r" % (rcpt, [dict(b) for b in per_rcpt])
    b = mine[0]
    assert b["Final-Recipient"].split(";")[0].strip().lower() == "rfc822"
    assert b["Action"].strip().lower() == "failed", b["Action"]
    assert b["Status"].strip() == status, "want Status %s, got %r" % (status, b["Status"])
    return m, b, stored.decode("utf-8", "replace")


class FakeSMTP:
    """A scripted SMTP server on FAKE_IP:port (a thread): greets with
    `greeting`, offers `ehlo` extensions, answers MAIL/RCPT 250 and the end
    of DATA with `data_reply`. Records every connection's commands and the
    message data as received (dot-stuffed, as on the wire)."""

    def __init__(self, port, greeting="220 fake.test ESMTP", ehlo=("PIPELINING", "8BITMIME"),
                 data_reply="250 2.0.0 queued", tls_break=False):
        self.greeting, self.ehlo, self.data_reply = greeting, list(ehlo), data_reply
        # tls_break: offer STARTTLS, answer 220 and then send no TLS at all
        self.tls_break = tls_break
        if tls_break:
            self.ehlo.append("STARTTLS")
        self.sessions = []  # one list of command lines per connection
        self.messages = []  # the DATA of each transaction, as sent
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((FAKE_IP, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self):
        self.stopping = True
        self.thread.join(10)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _run(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        cmds = []
        with self.lock:
            self.sessions.append(cmds)
        conn.settimeout(10)
        f = conn.makefile("rb")
        try:
            conn.sendall(self.greeting.encode() + b"\r\n")
            if not self.greeting.startswith("220"):
                # RFC 5321 3.1: the client should QUIT (or just go)
                line = f.readline()
                if line:
                    cmds.append(line.rstrip(b"\r\n").decode("utf-8", "replace"))
                    conn.sendall(b"221 2.0.0 bye\r\n")
                return
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                cmds.append(cmd)
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    lines = ["fake.test"] + self.ehlo
                    conn.sendall("".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                                         for i, l in enumerate(lines)).encode())
                elif verb == "HELO":
                    conn.sendall(b"250 fake.test\r\n")
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    conn.sendall(b"250 2.0.0 ok\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    data = b""
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        data += l
                    with self.lock:
                        self.messages.append(data)
                    conn.sendall(self.data_reply.encode() + b"\r\n")
                elif verb == "STARTTLS" and self.tls_break:
                    conn.sendall(b"220 2.0.0 go ahead\r\n")
                    conn.sendall(b"this is not a TLS server hello\r\n" * 4)
                    return
                elif verb == "QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 5.5.1 not here\r\n")
        except OSError:
            pass
        finally:
            f.close()
            conn.close()


def fake_smtp(remote, **kw):
    """A FakeSMTP on the port every remote host is reached on; skips when
    FAKE_IP cannot be bound (no 127.0.0.0/8 loopback)."""
    try:
        return FakeSMTP(remote.smtp_port, **kw)
    except OSError as e:
        pytest.skip("cannot listen on %s:%d: %s" % (FAKE_IP, remote.smtp_port, e))


# --- submission: the clients ---------------------------------------------------------------
def test_587_starttls_plain_remote_and_local(sender, remote):
    """smtplib: STARTTLS, AUTH PLAIN, one message to a remote and a local
    recipient (and a Bcc'ed local one): the fix-ups, the trace fields, the
    copy delivered by MX into the remote correio."""
    tok = token("sub")
    msg = ("From: Alice <%s>\r\n"
           "To: Rita <%s>\r\n"
           "Bcc: Bob <%s>,\r\n"
           " hidden-%s@remote.test\r\n"
           "Resent-Bcc: also-hidden@remote.test\r\n"
           "Subject: fixups %s\r\n"
           "\r\n"
           "Body of %s.\r\nBcc: in the body stays\r\n" % (ALICE, RITA, BOB, tok, tok, tok)).encode()
    with smtp_587(sender, user=None) as s:
        auth = s.esmtp_features.get("auth", "").upper().split()
        assert {"PLAIN", "LOGIN", "SCRAM-SHA-256"} <= set(auth), s.esmtp_features
        code, resp = s.login(ALICE, DEFAULT_PASSWORD)
        assert code == 235 and resp.startswith(b"2.7.0"), (code, resp)
        t0 = time.monotonic()
        assert s.sendmail(ALICE, [RITA, BOB], msg) == {}
    local = one_arrives(sender, BOB, tok, timeout=5)
    far = one_arrives(remote, RITA, tok)
    elapsed = time.monotonic() - t0
    # the engine looks at the queue at once after a submission (not at its next 5 s scan)
    assert elapsed < 4.5, "remote delivery took %.1f s" % elapsed

    for stored, rcpt in ((local, BOB), (far, RITA)):
        hb = header_block(stored)
        assert b"bcc:" not in hb.lower(), "Bcc left in the copy for %s:\n%s" % (rcpt, hb.decode())
        assert b"hidden-" not in stored and b"also-hidden" not in stored
        assert b"\r\nBcc: in the body stays\r\n" in stored, "the body changed"
        assert not has_bare_lf_or_cr(stored)
        assert stored.startswith(b"Return-Path: <%s>\r\n" % ALICE.encode())
    pl, pf = parse(local), parse(far)
    for p in (pl, pf):
        assert len(p.get_all("Date", [])) == 1 and len(p.get_all("Message-ID", [])) == 1
        when = email.utils.parsedate_to_datetime(p["Date"])
        assert abs(when.timestamp() - time.time()) < 300, p["Date"]
        assert re.match(r"^<[^<>@\s]+@[^<>@\s]+>$", p["Message-ID"].strip()), p["Message-ID"]
        assert p["Subject"] == "fixups " + tok
    assert pl["Message-ID"] == pf["Message-ID"] and pl["Date"] == pf["Date"], \
        "the local and the remote copy got different fix-ups"

    rl = received_fields(local)
    assert len(rl) == 1
    assert rl[0].group("by") == SENDER_HOST and rl[0].group("proto") == "ESMTPSA", rl[0].group(0)
    assert rl[0].group("helo") == CLIENT and rl[0].group("rcpt") == BOB

    rf = received_fields(far)
    assert len(rf) == 2, [m.group(0) for m in rf]
    # the remote's own, for the hop from us (opportunistic STARTTLS)
    assert rf[0].group("by") == REMOTE_HOST and rf[0].group("helo") == SENDER_HOST
    assert rf[0].group("proto") == "ESMTPS", "outbound STARTTLS not used: %s" % rf[0].group(0)
    assert rf[0].group("rcpt") == RITA
    # ours, for the submission: the same transaction id as the local copy's
    assert rf[1].group("by") == SENDER_HOST and rf[1].group("proto") == "ESMTPSA", rf[1].group(0)
    assert rf[1].group("id") == rl[0].group("id")
    assert rf[1].group("rcpt") in (RITA, None)
    # nothing stays queued
    wait_queue(sender, lambda rows: not [r for r in rows if r["rcpt"] == RITA], timeout=5,
               what="queue drained")


def test_465_auth_login_smtplib(sender, remote):
    tok = token("login")
    with smtp_465(sender) as s:
        assert "LOGIN" in s.esmtp_features["auth"].upper().split()
        assert not s.has_extn("starttls"), "STARTTLS offered inside TLS"
        s.user, s.password = ALICE, DEFAULT_PASSWORD
        # forced LOGIN (smtplib would pick PLAIN), without an initial response
        code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235, (code, resp)
        assert s.sendmail(ALICE, [RITA], message(tok)) == {}
    far = one_arrives(remote, RITA, tok)
    rf = received_fields(far)
    assert rf[1].group("by") == SENDER_HOST and rf[1].group("proto") == "ESMTPSA"
    assert rf[1].group("rcpt") == RITA


def swaks(*args):
    p = subprocess.run(["swaks", "--timeout", "15"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace")


@pytest.mark.parametrize("mode", ["587-starttls-PLAIN", "465-LOGIN"])
def test_swaks_submission(sender, remote, mode):
    tok = token("swaks")
    if mode.startswith("587"):
        conn = ["--port", str(sender.submission_port), "--tls", "-a", "PLAIN"]
    else:
        conn = ["--port", str(sender.submissions_port), "--tls-on-connect", "-a", "LOGIN"]
    rc, out = swaks("--server", HOST, *conn, "-au", ALICE, "-ap", DEFAULT_PASSWORD,
                    "--helo", "swaks.example.org", "--from", ALICE, "--to", "%s,%s" % (RITA, BOB),
                    "--header", "Subject: swaks %s" % tok, "--body", "body of %s\n" % tok)
    assert rc == 0, "swaks failed (%d):\n%s" % (rc, out)
    assert re.search(r"<~ +235 ", out), out
    far = one_arrives(remote, RITA, tok)
    near = one_arrives(sender, BOB, tok, timeout=5)
    for stored in (far, near):
        p = parse(stored)
        # swaks writes Date: and Message-Id: itself: kept, not doubled
        assert len(p.get_all("Date", [])) == 1 and len(p.get_all("Message-ID", [])) == 1, \
            header_block(stored).decode()
        assert p["From"] == ALICE
    assert parse(far)["Message-ID"] == parse(near)["Message-ID"]
    assert received_fields(far)[1].group("proto") == "ESMTPSA"
    assert received_fields(near)[0].group("helo") == "swaks.example.org"


# --- SCRAM-SHA-256 (RFC 5802, RFC 7677): the client side ---------------------------------
def _saslname(user):
    return user.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    def __init__(self, user, password, nonce=None):
        self.user, self.password = user, password
        self.cnonce = nonce or b64(os.urandom(18))
        self.bare = "n=%s,r=%s" % (_saslname(user), self.cnonce)
        self.server_signature = None

    def first(self):
        return "n,," + self.bare

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        assert nonce.startswith(self.cnonce) and len(nonce) > len(self.cnonce), server_first
        assert iters >= 4096, "RFC 7677: at least 4096 iterations, got %d" % iters
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=%s,r=%s" % (b64("n,,"), nonce)
        auth_msg = ",".join((self.bare, server_first, without_proof)).encode()
        sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_msg, hashlib.sha256).digest()
        return without_proof + ",p=" + b64(proof)

    def verify(self, server_final):
        assert server_final.startswith("v="), "server-final: %r" % server_final
        assert base64.b64decode(server_final[2:]) == self.server_signature, \
            "the server's signature is wrong: it does not know the key"


def scram_auth(s, user, password=DEFAULT_PASSWORD):
    """AUTH SCRAM-SHA-256 over smtplib's docmd (initial response); returns the
    final (code, text). A refusal may come at any step."""
    c = ScramClient(user, password)
    code, resp = s.docmd("AUTH", "SCRAM-SHA-256 " + b64(c.first()))
    if code != 334:
        return code, resp
    code, resp = s.docmd(b64(c.final(base64.b64decode(resp).decode())))
    if code != 334:
        return code, resp
    c.verify(base64.b64decode(resp).decode())
    return s.docmd("")


def test_465_scram_sha256(sender, remote):
    tok = token("scram")
    with smtp_465(sender) as s:
        assert "SCRAM-SHA-256" in s.esmtp_features["auth"].upper().split()
        code, resp = scram_auth(s, ALICE)
        assert code == 235 and resp.startswith(b"2.7.0"), (code, resp)
        assert s.sendmail(ALICE, [RITA], message(tok)) == {}
        # one AUTH per session
        code, _ = s.docmd("AUTH", "PLAIN " + plain_ir(ALICE))
        assert code == 503
    one_arrives(remote, RITA, tok)


def test_587_scram_sha256_without_initial_response(sender):
    tok = token("scram587")
    with smtp_587(sender, user=None) as s:
        c = ScramClient(ALICE, DEFAULT_PASSWORD)
        code, resp = s.docmd("AUTH", "SCRAM-SHA-256")
        assert code == 334 and resp.strip() in (b"", b"="), (code, resp)
        code, resp = s.docmd(b64(c.first()))
        assert code == 334, (code, resp)
        code, resp = s.docmd(b64(c.final(base64.b64decode(resp).decode())))
        assert code == 334, (code, resp)
        c.verify(base64.b64decode(resp).decode())
        code, resp = s.docmd("")
        assert code == 235, (code, resp)
        assert s.sendmail(ALICE, [BOB], message(tok, to=BOB)) == {}
    one_arrives(sender, BOB, tok, timeout=5)


# --- submission: what is refused ----------------------------------------------------------
def test_port25_never_relays(sender, remote):
    tok = token("relay")
    # without AUTH
    with smtplib.SMTP(HOST, sender.smtp_port, local_hostname=CLIENT, timeout=10) as s:
        s.ehlo(CLIENT)
        s.mail(ALICE)
        code, resp = s.rcpt(RITA)
        assert code == 550 and resp.startswith(b"5.7.1"), (code, resp)
        # local recipients are still fine on the MX port
        assert s.rcpt(BOB)[0] == 250
        s.rset()
    # with TLS and an attempt at AUTH with good credentials: still no relay
    with smtplib.SMTP(HOST, sender.smtp_port, local_hostname=CLIENT, timeout=10) as s:
        s.starttls(context=unverified_tls_context())
        s.ehlo(CLIENT)
        code, resp = s.docmd("AUTH", "PLAIN " + plain_ir(ALICE))
        assert code >= 500, "AUTH on the MX port: %r" % ((code, resp),)
        code, resp = s.mail(ALICE)
        assert code == 250, (code, resp)
        code, resp = s.rcpt(RITA)
        assert code == 550 and resp.startswith(b"5.7.1"), (code, resp)
        code, resp = s.rcpt("someone@nullmx.test")
        assert code == 550 and resp.startswith(b"5.7.1"), (code, resp)
        assert s.rcpt(BOB)[0] == 250
        assert s.data(message(tok, to=BOB))[0] == 250
    one_arrives(sender, BOB, tok, timeout=5)
    assert not any(r["rcpt"] == RITA and r["state"] == "pending" for r in queue_rows(sender))
    time.sleep(0.5)
    assert remote.find(RITA, tok) == []


def test_auth_needs_tls_and_mail_needs_auth(sender):
    with RawSMTP(sender.submission_port) as c:
        c.greeting()
        caps = [l.upper() for l in c.ehlo().lines]
        assert "STARTTLS" in caps, caps
        assert not any(l.startswith("AUTH") for l in caps), "AUTH offered before TLS: %r" % caps
        c.expect(538, "AUTH PLAIN " + plain_ir(ALICE), enh="5.7.11")
        c.expect(538, "AUTH LOGIN", enh="5.7.11")
        c.expect(530, "MAIL FROM:<%s>" % ALICE, enh="5.7.0")
        c.starttls()
        caps = [l.upper() for l in c.ehlo().lines]
        auth = [l for l in caps if l.startswith("AUTH ")]
        assert auth and {"PLAIN", "LOGIN", "SCRAM-SHA-256"} <= set(auth[0].split()[1:]), caps
        assert "STARTTLS" not in caps
        c.expect(530, "MAIL FROM:<%s>" % ALICE, enh="5.7.0")
        c.expect(530, "MAIL FROM:<>", enh="5.7.0")
        c.expect(504, "AUTH CRAM-MD5")
        c.expect(235, "AUTH PLAIN " + plain_ir(ALICE), enh="2.7.0")
        c.expect(250, "MAIL FROM:<%s>" % ALICE)
        c.expect(250, "RSET")
        c.expect(221, "QUIT")


def test_mail_from_must_be_the_account(sender, remote):
    tok = token("spoof-env")
    with smtp_587(sender, ALICE) as s:
        code, resp = s.mail(BOB)
        assert code == 553 and resp.startswith(b"5.7.1"), (code, resp)
        code, resp = s.mail("alice@remote.test")
        assert code == 553 and resp.startswith(b"5.7.1"), (code, resp)
        # the account itself, in any case, is fine; the session goes on
        assert s.sendmail("Alice@EXAMPLE.test", [RITA], message(tok)) == {}
    one_arrives(remote, RITA, tok)


def test_from_header_must_be_the_account(sender, remote):
    bad = token("spoof-hdr")
    two = token("spoof-two")
    none = token("spoof-none")
    good = token("spoof-ok")
    with smtp_587(sender, ALICE) as s:
        for tok, msg in ((bad, message(bad, frm=BOB)),
                         (two, message(two, frm="%s>, <%s" % (ALICE, BOB))),
                         (none, b"To: <%s>\r\nSubject: no from %s\r\n\r\nbody\r\n"
                          % (RITA.encode(), none.encode()))):
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail(ALICE, [RITA, BOB], msg)
            assert e.value.smtp_code == 553 and e.value.smtp_error.startswith(b"5.7.1"), \
                (tok, e.value)
        # a display name and another case of the same address are fine
        ok = message(good).replace(b"From: Alice Sender <%s>" % ALICE.encode(),
                                   b'From: "Alice, the sender" <ALICE@Example.Test>')
        assert s.sendmail(ALICE, [RITA, BOB], ok) == {}
    one_arrives(remote, RITA, good)
    one_arrives(sender, BOB, good, timeout=5)
    time.sleep(0.3)
    for tok in (bad, two, none):
        assert sender.find(BOB, tok) == [] and remote.find(RITA, tok) == []
        assert not any(tok in r["reply"] for r in queue_rows(sender))


def test_auth_failures_delayed_and_counted(make_server):
    """Bad credentials: 535 5.7.8 after 1..5 s (growing with the address's
    failures); past max_auth_failures_per_ip even the right password is
    refused. allow_plaintext_auth lets AUTH work before TLS."""
    srv = make_server(domains=("example.test",), accounts=(ALICE,),
                      settings={"submission.allow_plaintext_auth": "yes",
                                "submission.max_auth_failures_per_ip": "2"})
    with RawSMTP(srv.submission_port) as c:
        c.greeting()
        caps = [l.upper() for l in c.ehlo().lines]
        assert any(l.startswith("AUTH ") and "PLAIN" in l.split() for l in caps), caps
        t0 = time.monotonic()
        c.expect(535, "AUTH PLAIN " + plain_ir(ALICE, "wrong password"), enh="5.7.8")
        dt = time.monotonic() - t0
        assert 0.9 <= dt <= 6, "first failure answered after %.2f s (want 1..5 s)" % dt
        # the session goes on; plaintext AUTH allowed by the setting
        c.expect(235, "AUTH PLAIN " + plain_ir(ALICE), enh="2.7.0")
    # a second failure, by SCRAM (wrong password: the proof does not match)
    with smtp_465(srv) as s:
        t0 = time.monotonic()
        code, resp = scram_auth(s, ALICE, "not the password")
        dt = time.monotonic() - t0
        assert code == 535 and resp.startswith(b"5.7.8"), (code, resp)
        assert 1.9 <= dt <= 6, "second failure answered after %.2f s" % dt
    # now 2 failures: the right password is refused too
    with smtp_465(srv) as s:
        t0 = time.monotonic()
        code, resp = s.docmd("AUTH", "PLAIN " + plain_ir(ALICE))
        assert code == 535 and resp.startswith(b"5.7.8"), \
            "past max_auth_failures_per_ip: want 535, got %r" % ((code, resp),)
        assert time.monotonic() - t0 >= 0.9
    assert "event=auth_failed" in srv.log_text()


# --- delivery by MX --------------------------------------------------------------------------
@pytest.mark.parametrize("rcpt,ip,first_tried", [
    (RITA, "127.0.0.1", None),
    (VERA, "127.0.0.3", None),              # the MX, not the domain's own (dead) A record
    (TOM, "127.0.0.3", DEAD_IP),            # MX 10 does not answer: MX 20
    (IVAN, "127.0.0.3", None),              # no MX: the domain's A record
], ids=["mx", "mx-not-a", "second-mx", "implicit-mx"])
def test_delivery_routes(sender, remote, rcpt, ip, first_tried):
    tok = token("route")
    off = sender.log_size()
    submit(sender, [rcpt], message(tok, to=rcpt))
    far = one_arrives(remote, rcpt, tok)
    rf = received_fields(far)
    assert rf[0].group("by") == REMOTE_HOST and rf[0].group("rcpt") == rcpt
    domain = rcpt.split("@")[1]
    log = sender.log_since(off)
    connects = re.findall(r"event=connect domain=%s host=(\S+) ip=(\S+)" % re.escape(domain), log)
    delivered = re.findall(r"event=delivered id=\S+ to=<%s> relay=(\S+)" % re.escape(rcpt), log)
    assert delivered, log[-2000:]
    # the debug log names the addresses tried, in order
    ips = [c[1] for c in connects]
    assert ips and ips[-1] == ip, "want the last connection to %s: %r" % (ip, connects)
    if first_tried:
        assert ips[0] == first_tried and len(ips) == 2, connects
    else:
        assert len(ips) == 1, connects
    wait_queue(sender, lambda rows: not any(r["rcpt"] == rcpt for r in rows), timeout=5,
               what="%s gone from the queue" % rcpt)


def test_null_mx_bounces_at_once(sender, remote):
    acct = new_account(sender)
    tok = token("nullmx")
    rcpt = "someone@nullmx.test"
    submit(sender, [rcpt], message(tok, frm=acct, to=rcpt), user=acct)
    dsn = one_arrives(sender, acct, tok, timeout=10, what=" (the DSN)")
    m, b, text = check_dsn(dsn, rcpt, "5.1.10", sender=acct)
    assert "5.1.10" in (b["Diagnostic-Code"] or "") or "null MX" in text
    assert "nullmx.test" in text
    # the original's header block comes back, not its body
    _, _, _, _, returned = dsn_parts(dsn)
    assert returned is not None
    assert ("sending " + tok) in returned.as_string()
    assert ("this is %s" % tok) not in text
    wait_queue(sender, lambda rows: not any(r["rcpt"] == rcpt for r in rows), timeout=5,
               what="null MX recipient gone")


def test_nxdomain_bounces(sender):
    acct = new_account(sender)
    tok = token("nx")
    rcpt = "x@no-such-domain.test"
    submit(sender, [rcpt], message(tok, frm=acct, to=rcpt), user=acct)
    dsn = one_arrives(sender, acct, tok, timeout=10, what=" (the DSN)")
    check_dsn(dsn, rcpt, "5.1.2", sender=acct)


def test_remote_550_bounces_with_diagnostic(sender, remote):
    """One message to two recipients of remote.test: the remote refuses one
    (550 5.1.1 at RCPT), takes the other; the DSN names only the refused one
    with the remote's reply."""
    acct = new_account(sender)
    tok = token("r550")
    bad = "nobody-%s@remote.test" % tok[-8:]
    submit(sender, [bad, RITA], message(tok, frm=acct, to=RITA), user=acct)
    one_arrives(remote, RITA, tok)
    dsn = one_arrives(sender, acct, tok, timeout=10, what=" (the DSN)")
    m, b, text = check_dsn(dsn, bad, "5.1.1", sender=acct)
    _, _, _, per_rcpt, _ = dsn_parts(dsn)
    assert len(per_rcpt) == 1, "only the refused recipient: %r" % [dict(x) for x in per_rcpt]
    diag = re.sub(r"\s+", " ", b["Diagnostic-Code"] or "")
    assert diag.lower().startswith("smtp;"), diag
    assert "550" in diag and "5.1.1" in diag, diag
    where = diag + " " + (b["Remote-MTA"] or "")
    assert "mx1.remote.test" in where, "the remote host is not named: %r" % dict(b)
    assert RITA not in text.split("text/rfc822-headers")[0].split("message/delivery-status")[1], \
        "the delivered recipient is reported"


def test_dsn_has_remote_mta(sender, remote):
    acct = new_account(sender)
    tok = token("rmta")
    bad = "nobody-%s@remote.test" % tok[-8:]
    submit(sender, [bad], message(tok, frm=acct, to=bad), user=acct)
    dsn = one_arrives(sender, acct, tok, timeout=10, what=" (the DSN)")
    _, b, _ = check_dsn(dsn, bad, "5.1.1", sender=acct)
    assert b["Remote-MTA"] is not None, "no Remote-MTA in %r" % dict(b)
    assert b["Remote-MTA"].replace(" ", "").lower() == "dns;mx1.remote.test", b["Remote-MTA"]


def test_mail_loop_bounces_546(sender, remote):
    acct = new_account(sender)
    tok = token("loop")
    hops = ["Received: from hop%d.example.org by hop%d.example.org; Mon, 01 Jan 2024 12:00:00 +0000"
            % (i, i + 1) for i in range(51)]
    body = message(tok, frm=acct, to=RITA)
    msg = ("\r\n".join(hops) + "\r\n").encode() + body
    submit(sender, [RITA], msg, user=acct)
    dsn = one_arrives(sender, acct, tok, timeout=10, what=" (the DSN)")
    _, b, text = check_dsn(dsn, RITA, "5.4.6", sender=acct)
    assert "loop" in text.lower()
    time.sleep(0.3)
    assert remote.find(RITA, tok) == [], "a looping message was sent on"


def test_no_bounce_for_a_bounce(sender):
    """MAIL FROM:<> (allowed in submission): a failure makes no DSN."""
    acct = new_account(sender)
    tok = token("nobounce")
    rcpt = "x@nullmx.test"
    with smtp_587(sender, acct) as s:
        assert s.sendmail("", [rcpt], message(tok, frm=acct, to=rcpt)) == {}
    wait_queue(sender, lambda rows: not any(r["rcpt"] == rcpt and r["sender"] == "<>"
                                            for r in rows), timeout=10, what="failed and gone")
    time.sleep(1.0)
    assert sender.find(acct, tok) == []


def test_temporary_rcpt_failure_is_retried(sender, remote):
    """The remote takes two recipients per transaction (smtp.max_recipients):
    the third gets 452 4.5.3, stays queued and goes in a later attempt (the
    retry schedule is 1 s); each recipient gets one copy."""
    tok = token("452")
    off = sender.log_size()
    submit(sender, [RITA, ROB, RAY], message(tok))
    one_arrives(remote, RITA, tok)
    one_arrives(remote, ROB, tok)
    one_arrives(remote, RAY, tok, timeout=15, what=" (after a retry)")
    log = sender.log_since(off)
    assert re.search(r"event=deferred id=\S+ to=<%s> relay=mx1.remote.test reply=\"452 4.5.3"
                     % re.escape(RAY), log), log[-3000:]
    wait_queue(sender, lambda rows: not any(r["rcpt"] in (RITA, ROB, RAY) for r in rows),
               timeout=5, what="delivered and gone")
    time.sleep(0.5)
    for a in (RITA, ROB, RAY):
        copies = remote.find(a, tok)
        assert len(copies) == 1, a
        # our trace field of a copy for several recipients names none (RFC 5321 4.4)
        ours = received_fields(copies[0])[1]
        assert ours.group("by") == SENDER_HOST and ours.group("rcpt") is None, ours.group(0)


def test_greeting_554_next_mx(sender, remote):
    """The preferred MX greets with 554: the next MX is used (RFC 5321 3.1, 5.1)."""
    tok = token("g554")
    with fake_smtp(remote, greeting="554 5.3.2 fake.test does not take mail") as fake:
        submit(sender, [GUS], message(tok, to=GUS))
        one_arrives(remote, GUS, tok)
        assert len(fake.sessions) >= 1 and fake.messages == [], (fake.sessions, fake.messages)
        assert all(c.upper().startswith("QUIT") for sess in fake.sessions for c in sess), \
            fake.sessions


def test_outbound_wire_format_to_a_fake(sender, remote):
    """What goes over the wire: dot-stuffing, CRLF, the envelope, BODY=8BITMIME for
    an 8-bit message to a server offering it; and the same 8-bit message to a
    server without 8BITMIME bounces (5.6.3) while a 7-bit one goes."""
    acct = new_account(sender)
    tok = token("wire")
    body = ("caf\u00e9 %s\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n" % tok)
    msg = message(tok, frm=acct, to="x@fake.test", body=body)
    with fake_smtp(remote) as fake:
        with smtp_587(sender, acct) as s:
            assert s.sendmail(acct, ["x@fake.test"], msg, mail_options=["BODY=8BITMIME"]) == {}
        wait_queue(sender, lambda rows: not any(r["rcpt"] == "x@fake.test" for r in rows),
                   timeout=10, what="sent to the fake")
        assert len(fake.messages) == 1, fake.sessions
        cmds = [c for sess in fake.sessions for c in sess]
        mail = [c for c in cmds if c.upper().startswith("MAIL FROM:")]
        assert mail and mail[0].startswith("MAIL FROM:<%s>" % acct), cmds
        assert "BODY=8BITMIME" in mail[0].upper(), mail
        assert "RCPT TO:<x@fake.test>" in cmds, cmds
        wire = fake.messages[0]
        assert not has_bare_lf_or_cr(wire)
        unstuffed = b"".join(l[1:] if l.startswith(b".") else l
                             for l in wire.splitlines(keepends=True))
        assert unstuffed.endswith(msg), "the message changed on the way:\n%r" % wire[-300:]
        assert b"\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n" in wire, wire[-200:]
        assert unstuffed.startswith(b"Received: from "), "our trace field first: %r" % wire[:200]

    tok8, tok7 = token("no8"), token("yes7")
    with fake_smtp(remote, ehlo=("PIPELINING",)) as fake:
        with smtp_587(sender, acct) as s:
            assert s.sendmail(acct, ["y@fake.test"], message(tok8, frm=acct, to="y@fake.test",
                                                             body=body),
                              mail_options=["BODY=8BITMIME"]) == {}
            assert s.sendmail(acct, ["z@fake.test"], message(tok7, frm=acct,
                                                             to="z@fake.test")) == {}
        dsn = one_arrives(sender, acct, tok8, timeout=10, what=" (the DSN)")
        check_dsn(dsn, "y@fake.test", "5.6.3", sender=acct)
        wait_queue(sender, lambda rows: not any(r["rcpt"] == "z@fake.test" for r in rows),
                   timeout=10, what="7-bit message sent")
        assert len(fake.messages) == 1 and tok7.encode() in fake.messages[0], fake.sessions
        assert not any(tok8 in c for sess in fake.sessions for c in sess)


def test_remote_4xx_at_data_stays_queued(sender, remote):
    tok = token("d451")
    rcpt = "t@fake.test"
    with fake_smtp(remote, data_reply="451 4.3.0 try again later") as fake:
        submit(sender, [rcpt], message(tok, to=rcpt))
        rows = wait_queue(sender, lambda rows: any(r["rcpt"] == rcpt and r["attempts"] >= 1
                                                   for r in rows), timeout=10, what="an attempt")
        row = [r for r in rows if r["rcpt"] == rcpt][0]
        assert row["state"] == "pending", row
        assert row["reply"].startswith("451 4.3.0 try again later"), row
        assert "mx.fake.test" in row["reply"], row
        assert len(fake.messages) >= 1
        p = sender.cli("queue", "delete", row["id"])
        assert p.returncode == 0, (p.stdout, p.stderr)
    assert not any(r["rcpt"] == rcpt for r in queue_rows(sender))


# --- the queue: remote down, flush, delete, bounce ------------------------------------------
@pytest.mark.time_limit(60)
def test_remote_down_then_flush_delete_bounce(make_server, dns):
    remote = make_remote(make_server, name="remote-down", listen_extra=False, start=False)
    srv = make_sender(make_server, dns, remote, name="sender-1h", retry="1h")
    tok = token("down")
    submit(srv, [RITA], message(tok))
    rows = wait_queue(srv, lambda rows: any(r["rcpt"] == RITA and r["attempts"] >= 1
                                            for r in rows), what="a failed attempt")
    row = [r for r in rows if r["rcpt"] == RITA][0]
    assert row["state"] == "pending" and row["sender"] == ALICE, row
    assert row["reply"] != "-" and row["reply"][:1] == "4", "last reply: %r" % row["reply"]
    assert "mx1.remote.test" in row["reply"], row
    assert row["next"] != "-", row

    remote.start()
    p = srv.cli("queue", "flush")
    assert p.returncode == 0 and p.stdout.strip() == "1 recipient due now", (p.stdout, p.stderr)
    one_arrives(remote, RITA, tok, timeout=12, what=" after queue flush")
    wait_queue(srv, lambda rows: rows == [], timeout=5, what="empty queue")

    # two messages for a domain whose only MX never answers
    tok_del, tok_bnc = token("del"), token("bnc")
    submit(srv, ["x@dead.test"], message(tok_del, to="x@dead.test"))
    submit(srv, ["y@dead.test"], message(tok_bnc, to="y@dead.test"))
    rows = wait_queue(srv, lambda rows: len([r for r in rows if r["attempts"] >= 1]) == 2,
                      what="two attempts")
    by_rcpt = {r["rcpt"]: r for r in rows}
    id_del, id_bnc = by_rcpt["x@dead.test"]["id"], by_rcpt["y@dead.test"]["id"]
    assert id_del != id_bnc

    p = srv.cli("queue", "delete", id_del)
    assert p.returncode == 0 and id_del in p.stdout and "deleted" in p.stdout, (p.stdout, p.stderr)
    assert [r["id"] for r in queue_rows(srv)] == [id_bnc]
    p = srv.cli("queue", "delete", id_del)
    assert p.returncode != 0 and "no message" in p.stderr, (p.returncode, p.stdout, p.stderr)
    p = srv.cli("queue", "bounce", "Qnosuchmessage")
    assert p.returncode != 0

    p = srv.cli("queue", "bounce", id_bnc)
    assert p.returncode == 0 and "bounced" in p.stdout, (p.stdout, p.stderr)
    dsn = one_arrives(srv, ALICE, tok_bnc, timeout=12, what=" (the DSN of queue bounce)")
    _, b, text = check_dsn(dsn, "y@dead.test", "5.0.0", sender=ALICE)
    assert "administrator" in text, text
    wait_queue(srv, lambda rows: rows == [], timeout=8, what="empty queue after the bounce")
    assert srv.find(ALICE, tok_del) == [], "queue delete must not bounce"


@pytest.mark.time_limit(60)
def test_kill9_with_queued_mail_delivers_each_once(make_server, dns):
    remote = make_remote(make_server, name="remote-k9", listen_extra=False, start=False)
    srv = make_sender(make_server, dns, remote, name="sender-k9", retry="1s")
    toks = [token("k9") for _ in range(5)]
    with smtp_587(srv, ALICE) as s:
        for i, t in enumerate(toks):
            rcpts = [RITA, ROB] if i == 0 else [RITA]
            assert s.sendmail(ALICE, rcpts, message(t, date=False, msgid=False)) == {}
    wait_queue(srv, lambda rows: len(rows) == 6 and all(r["attempts"] >= 1 for r in rows),
               what="every recipient tried once")
    srv.kill9()
    rows = queue_rows(srv)  # the CLI reads the queue without the server
    assert len(rows) == 6 and all(r["state"] == "pending" for r in rows), rows
    remote.start()
    srv.start()
    for t in toks:
        one_arrives(remote, RITA, t, timeout=15, what=" after the restart")
    one_arrives(remote, ROB, toks[0], timeout=5)
    wait_queue(srv, lambda rows: rows == [], timeout=10, what="empty queue")
    time.sleep(2.5)  # longer than a retry: no second copy comes
    msgs = remote.messages(RITA)
    for t in toks:
        assert len([m for m in msgs if t.encode() in m]) == 1, "%s not delivered exactly once" % t
    assert len(remote.messages(ROB)) == 1
    ids = [parse(m)["Message-ID"] for m in msgs]
    assert len(msgs) == 5 and len(set(ids)) == 5 and None not in ids, ids
    assert srv.find(ALICE, "Undelivered") == [], "a bounce was sent"


def test_delay_warning(make_server, dns):
    """After delivery.delay_warning seconds in the queue the sender is told
    (Action: delayed, a 4.x.x status, Will-Retry-Until) and the queue goes on."""
    remote = make_remote(make_server, name="remote-dw", listen_extra=False, start=False)
    srv = make_sender(make_server, dns, remote, name="sender-dw", retry="1h",
                      **{"delivery.delay_warning": "1"})
    tok = token("delay")
    rcpt = "w@dead.test"
    submit(srv, [rcpt], message(tok, to=rcpt))
    dsn = one_arrives(srv, ALICE, tok, timeout=12, what=" (the delay warning)")
    assert dsn.startswith(b"Return-Path: <>\r\n")
    m, text, per_msg, per_rcpt, returned = dsn_parts(dsn)
    assert len(per_rcpt) == 1
    b = per_rcpt[0]
    assert b["Final-Recipient"].split(";", 1)[1].strip() == rcpt
    assert b["Action"].strip().lower() == "delayed", dict(b)
    assert re.match(r"^4\.\d{1,3}\.\d{1,3}$", b["Status"].strip()), dict(b)
    assert b["Will-Retry-Until"], dict(b)
    until = email.utils.parsedate_to_datetime(b["Will-Retry-Until"])
    assert until.timestamp() > time.time() + 3 * 86400, b["Will-Retry-Until"]
    assert "mx.dead.test" in (b["Diagnostic-Code"] or "") + (b["Remote-MTA"] or ""), dict(b)
    assert "Delayed" in m["Subject"] or "delayed" in m["Subject"], m["Subject"]
    rows = queue_rows(srv)
    assert [(r["rcpt"], r["state"]) for r in rows if r["sender"] == ALICE] == [(rcpt, "pending")], rows


# --- correio sendmail --------------------------------------------------------------------------
def run_sendmail(srv, *args, input=b""):
    p = srv.cli("sendmail", *args, input=input)
    if "unknown command" in p.stderr:
        pytest.skip("correio sendmail does not exist yet")
    return p


def test_sendmail_queues_for_local_and_remote(sender, remote):
    tok = token("sm")
    msg = ("To: %s\nSubject: sendmail %s\n\nline one of %s\n" % (RITA, tok, tok)).encode()
    p = run_sendmail(sender, "-f", ALICE, "-F", "Alice Admin", RITA, "bob", input=msg)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    far = one_arrives(remote, RITA, tok, timeout=12)
    near = one_arrives(sender, BOB, tok, timeout=12)
    for stored in (far, near):
        assert not has_bare_lf_or_cr(stored)
        m = parse(stored)
        assert m["From"] and ALICE in m["From"] and "Alice Admin" in m["From"], m["From"]
        assert m["Date"] and m["Message-ID"]
        assert any("correio sendmail" in r for r in m.get_all("Received", []))
    assert parse(far)["Message-ID"] == parse(near)["Message-ID"]
    assert near.startswith(b"Return-Path: <%s>\r\n" % ALICE.encode())


def test_sendmail_t_and_dot(sender, remote):
    tok = token("smt")
    msg = ("From: %s\nTo: %s\nBcc: %s\nSubject: sendmail -t %s\n\nbefore\n.\nafter %s\n"
           % (ALICE, RITA, BOB, tok, tok)).encode()
    p = run_sendmail(sender, "-t", "-f", ALICE, input=msg)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    tok2 = token("smi")
    msg = ("From: %s\nSubject: sendmail -i %s\n\nbefore\n.\nafter %s\n" % (ALICE, tok2, tok2)).encode()
    p = run_sendmail(sender, "-i", "-f", ALICE, BOB, input=msg)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    far = one_arrives(remote, RITA, tok, timeout=12)
    near = one_arrives(sender, BOB, tok, timeout=12)
    for stored in (far, near):
        assert b"bcc:" not in header_block(stored).lower()
        assert b"before" in stored and b"after " + tok.encode() not in stored, \
            "without -i a lone '.' ends the message"
    near = one_arrives(sender, BOB, tok2, timeout=12)
    assert b"\r\n.\r\nafter " + tok2.encode() in near


def test_sendmail_while_the_server_is_down(make_server):
    srv = make_server(domains=("example.test",), accounts=(ALICE, BOB), start=False)
    tok = token("smdown")
    p = run_sendmail(srv, "-f", ALICE, BOB,
                     input=("Subject: queued %s\n\nbody\n" % tok).encode())
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    rows = queue_rows(srv)
    assert [r["rcpt"] for r in rows] == [BOB], rows
    srv.start()
    one_arrives(srv, BOB, tok, timeout=10)
    p = run_sendmail(srv, "-f", ALICE, input=b"Subject: nobody\n\nx\n")
    assert p.returncode == 64, (p.returncode, p.stderr)


def test_failed_starttls_handshake_retried_in_clear(sender, remote):
    """A server offers STARTTLS but the handshake fails: the same server is
    tried again without STARTTLS (delivery.require_tls is off), and the
    message goes."""
    acct = new_account(sender)
    tok = token("tlsfb")
    with fake_smtp(remote, tls_break=True) as fake:
        with smtp_587(sender, acct) as s:
            assert s.sendmail(acct, ["t@fake.test"], message(tok, frm=acct, to="t@fake.test")) == {}
        wait_queue(sender, lambda rows: not any(r["rcpt"] == "t@fake.test" for r in rows),
                   timeout=15, what="sent in clear after the failed handshake")
        assert len(fake.messages) == 1 and tok.encode() in fake.messages[0], fake.sessions
        assert any("STARTTLS" in c.upper() for c in fake.sessions[0]), fake.sessions
        assert not any("STARTTLS" in c.upper() for c in fake.sessions[-1]), fake.sessions


def test_relayhost_gets_everything(make_server, dns, remote):
    """delivery.relayhost: mail for another domain goes to the smart host
    (an IP and port here), without any MX look-up (the configured resolver
    answers nothing for the domain: a look-up would fail)."""
    srv = make_sender(make_server, dns, remote, name="sender-relay",
                      **{"delivery.relayhost": "127.0.0.1:%d" % remote.smtp_port,
                         "delivery.dns_resolver": "127.0.0.1:9"})
    tok = token("relay")
    submit(srv, [RITA], message(tok))
    stored = one_arrives(remote, RITA, tok, timeout=12, what=" through the relay host")
    wait_queue(srv, lambda rows: rows == [], timeout=5, what="empty queue")
    assert "relay=[127.0.0.1]" in srv.log_text(), "not sent through the relay host"
    assert b"with ESMTPS" in stored, "STARTTLS not used with the relay host"
