"""POP3 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL, 3206 response codes) end
to end, with Python's poplib and a raw client (helpers.RawPOP3) on the STLS
port (110+N) and the implicit-TLS port (995+N). Every test works in an
account of its own; tests that make logins fail use a server of their own
(failed logins are answered late, the later the more failed from the
address, so they would slow every later test on a shared server)."""
import base64
import hashlib
import poplib
import re
import socket
import ssl
import time

import pytest

from helpers import (DEFAULT_PASSWORD, RawPOP3, ServerError, imap_raw, imap_ssl, make_message, new_account, pop3_raw, pop3_ssl,
                     pop3_stls, pop3_unstuff, smtp_deliver, token, unverified_tls_context)

ALICE = "alice@example.test"
BASE_CAPS = {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION"}


# --- helpers --------------------------------------------------------------------------------------
def deliver(server, acct, n=1, bodies=None):
    """Deliver n messages (or one per body) by SMTP; returns all the stored messages of
    the INBOX (bytes, UID order)."""
    bodies = bodies or [None] * n
    before = len(server.messages(acct))
    for b in bodies:
        smtp_deliver(server, acct, make_message(token("pop"), body=b))
    msgs = server.wait_messages(acct, before + len(bodies))
    assert len(msgs) == before + len(bodies), msgs
    return msgs


def verified_context(server):
    """Trusts only the server's self-signed certificate (made by `correio init`); the
    certificate names mx.example.test and the clients connect to 127.0.0.1."""
    ctx = ssl.create_default_context(cafile=server.cert_path)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def capa(c):
    """CAPA on a RawPOP3: {NAME: [args]}."""
    r, data = c.multi("CAPA")
    assert r.startswith(b"+OK"), r
    out = {}
    for line in data.split(b"\r\n")[:-1]:
        words = line.decode().split()
        out[words[0].upper()] = words[1:]
    return out


def err_of(excinfo):
    """The -ERR line of a poplib.error_proto."""
    arg = excinfo.value.args[0]
    return arg if isinstance(arg, bytes) else str(arg).encode()


def list_sizes(data):
    """{n: size} of LIST's multi-line data."""
    out = {}
    for line in data.split(b"\r\n")[:-1]:
        n, size = line.split()
        out[int(n)] = int(size)
    return out


def uidl_map(data):
    out = {}
    for line in data.split(b"\r\n")[:-1]:
        n, uid = line.split(b" ", 1)
        out[int(n)] = uid.decode()
    return out


def login_retrying(server, acct, within=3.0):
    """A raw POP3S login; -ERR [IN-USE] is retried for a while (the server frees the
    maildrop when it sees the previous connection end)."""
    deadline = time.monotonic() + within
    while True:
        c = pop3_raw(server)
        c.ok("USER " + acct)
        r = c.cmd("PASS " + DEFAULT_PASSWORD)
        if r.startswith(b"+OK"):
            return c
        c.close()
        assert r.startswith(b"-ERR [IN-USE]"), r
        assert time.monotonic() < deadline, "the maildrop stays locked after the session ended: %r" % r
        time.sleep(0.1)


def imap_count(server, acct):
    m = imap_ssl(server, acct)
    try:
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        return int(data[0])
    finally:
        m.logout()


# --- greeting, CAPA, TLS --------------------------------------------------------------------------
def test_greeting_and_capa_before_and_after_stls(server):
    acct = new_account(server)
    with RawPOP3(server.pop3_port) as c:
        m = re.match(rb"^\+OK .*(<[!-~]+@[!-~]+>)$", c.greeting)
        assert m, "greeting without an RFC 1939 timestamp: %r" % c.greeting
        first = m.group(1)
        caps = capa(c)
        assert BASE_CAPS | {"STLS"} <= set(caps), caps
        assert "USER" not in caps and "SASL" not in caps, \
            "USER/SASL offered in clear though plaintext logins are refused (RFC 2595 4): %r" % caps
        c.stls()
        caps = capa(c)
        assert BASE_CAPS | {"USER", "SASL"} <= set(caps), caps
        assert "PLAIN" in [a.upper() for a in caps["SASL"]], caps
        assert "STLS" not in caps, caps
        c.login(acct)
        caps_tx = capa(c)
        assert "STLS" not in caps_tx and BASE_CAPS <= set(caps_tx), caps_tx
        assert c.ok("QUIT")
    with RawPOP3(server.pop3_port) as c2:
        m2 = re.search(rb"(<[!-~]+@[!-~]+>)$", c2.greeting)
        assert m2 and m2.group(1) != first, "two greetings with the same timestamp: %r" % first
    with RawPOP3(server.pop3s_port, tls=True) as c:
        assert c.greeting.startswith(b"+OK")
        caps = capa(c)
        assert BASE_CAPS | {"USER", "SASL"} <= set(caps) and "STLS" not in caps, caps
        c.err("STLS")  # TLS already
        c.login(acct)
        c.ok("QUIT")


def test_poplib_capa_stls_and_ssl_with_verified_certificate(server):
    acct = new_account(server)
    stored = deliver(server, acct)
    p = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    try:
        caps = p.capa()
        assert "STLS" in caps and "USER" not in caps, caps
        p.stls(verified_context(server))
        caps = p.capa()
        for k in BASE_CAPS | {"USER", "SASL"}:
            assert k in caps, (k, caps)
        assert caps["SASL"] == ["PLAIN"] and "STLS" not in caps, caps
        assert p.user(acct).startswith(b"+OK")
        assert p.pass_(DEFAULT_PASSWORD).startswith(b"+OK")
        assert p.stat() == (1, len(stored[0]))
        assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == stored[0]
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()
    p = pop3_ssl(server, acct, context=verified_context(server))
    try:
        assert p.stat() == (1, len(stored[0]))
        p.quit()
    finally:
        p.close()


def test_stls_discards_pipelined_cleartext(server):
    """Commands sent after STLS in the same packet, before the handshake, are not
    executed after it (RFC 2595 4; CVE-2011-0411)."""
    with RawPOP3(server.pop3_port) as c:
        c.send(b"STLS\r\nCAPA\r\n")
        r = c.readline()
        assert r.startswith(b"+OK"), r
        extra = c.pending(0.3)
        assert extra == b"", "the server answered in clear after STLS's +OK: %r" % extra
        c.wrap_tls()
        c.err("STLS")  # TLS is active now
        r = c.cmd("QUIT")
        assert r.startswith(b"+OK") and b"apabilit" not in r, \
            "first reply in TLS is not QUIT's (the injected CAPA was run): %r" % r
        assert c.wait_closed() == b""


# --- logins ---------------------------------------------------------------------------------------
def test_plaintext_login_refused_before_tls(server):
    acct = new_account(server)
    with RawPOP3(server.pop3_port) as c:
        r1 = c.cmd("USER " + acct)
        r2 = c.cmd("PASS " + DEFAULT_PASSWORD)
        assert r1.startswith(b"-ERR [AUTH]") or r2.startswith(b"-ERR [AUTH]"), \
            "USER/PASS in clear: %r %r" % (r1, r2)
        assert r2.startswith(b"-ERR"), "PASS in clear logged in: %r" % r2
        r = c.err("AUTH PLAIN " + base64.b64encode(b"\0" + acct.encode() + b"\0" +
                                                    DEFAULT_PASSWORD.encode()).decode())
        assert r.startswith(b"-ERR [AUTH]"), r
        r, data = c.multi("AUTH")
        assert r.startswith(b"+OK") and b"PLAIN" not in data, "AUTH lists PLAIN in clear: %r" % data
        c.err("STAT")  # not logged in
        # the same connection, after STLS: fine
        c.stls()
        c.login(acct)
        assert c.ok("STAT").startswith(b"+OK 0 0"), "new account"
        c.ok("QUIT")
    p = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    try:
        with pytest.raises(poplib.error_proto) as e:
            p.user(acct)
            p.pass_(DEFAULT_PASSWORD)
        assert err_of(e).startswith(b"-ERR [AUTH]"), err_of(e)
    finally:
        p.close()


def test_plaintext_login_allowed_when_configured(make_server):
    srv = make_server(settings={"pop3.allow_plaintext_auth": "yes"}, accounts=(ALICE,))
    smtp_deliver(srv, ALICE, make_message(token("plain")))
    stored = srv.wait_messages(ALICE, 1)
    p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=10)
    try:
        caps = p.capa()
        assert {"USER", "SASL", "STLS"} <= set(caps), caps
        p.user(ALICE)
        p.pass_(DEFAULT_PASSWORD)
        assert p.stat() == (1, len(stored[0]))
        p.quit()
    finally:
        p.close()
    with RawPOP3(srv.pop3_port) as c:
        ir = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + DEFAULT_PASSWORD.encode()).decode()
        c.ok("AUTH PLAIN " + ir)
        c.ok("QUIT")
    # a USER given before STLS is forgotten by it (RFC 2595 4)
    with RawPOP3(srv.pop3_port) as c:
        c.ok("USER " + ALICE)
        c.stls()
        c.err("PASS " + DEFAULT_PASSWORD)
        c.login(ALICE)
        c.ok("QUIT")


def test_auth_plain(server):
    acct = new_account(server)
    ir = base64.b64encode(b"\0" + acct.encode() + b"\0" + DEFAULT_PASSWORD.encode()).decode()
    # initial response
    with pop3_raw(server) as c:
        r, data = c.multi("AUTH")
        assert r.startswith(b"+OK") and b"PLAIN" in data.split(b"\r\n"), data
        c.err("AUTH CRAM-MD5")
        c.ok("AUTH PLAIN " + ir)
        c.ok("STAT")
        c.err("AUTH PLAIN " + ir)  # not in TRANSACTION
        c.ok("QUIT")
    # continuation, with a cancelled attempt, bad base64 and authzid = user first
    with pop3_raw(server) as c:
        r = c.cmd("AUTH PLAIN")
        assert re.match(rb"^\+ ?$", r), "want an empty '+ ' challenge: %r" % r
        c.err("*")
        assert "SASL" in capa(c)  # the session goes on
        r = c.cmd("AUTH PLAIN")
        assert r.startswith(b"+"), r
        c.err("!!!not base64!!!")
        r = c.cmd("AUTH PLAIN")
        assert r.startswith(b"+"), r
        authz = base64.b64encode(acct.encode() + b"\0" + acct.encode() + b"\0" + DEFAULT_PASSWORD.encode())
        r = c.cmd(authz)
        assert r.startswith(b"+OK"), "AUTH PLAIN with authzid = authcid: %r" % r
        assert c.ok("STAT").startswith(b"+OK 0 0")
        c.ok("QUIT")
    # a password with spaces works in PASS (rest of the line) -- DEFAULT_PASSWORD has spaces
    with pop3_raw(server) as c:
        c.login(acct)
        c.ok("QUIT")


def test_apop(make_server):
    bob = "bob@example.test"
    srv = make_server(accounts=(ALICE, bob))
    secret = "apop s3cret " + token("s")
    p = srv.cli("user", "apop-secret", ALICE, "--secret-stdin", input=secret + "\n")
    assert p.returncode == 0, p.stderr
    smtp_deliver(srv, ALICE, make_message(token("apop")))
    stored = srv.wait_messages(ALICE, 1)

    # raw, in clear (APOP sends no password): digest of the greeting's timestamp + secret
    with RawPOP3(srv.pop3_port) as c:
        stamp = re.search(rb"(<[^<>]*>)$", c.greeting).group(1)
        digest = hashlib.md5(stamp + secret.encode()).hexdigest()
        r = c.cmd("APOP %s %s" % (ALICE, digest))
        assert r.startswith(b"+OK"), "APOP with a correct digest: %r" % r
        assert c.ok("STAT") == b"+OK 1 %d" % len(stored[0])
        c.ok("QUIT")
    # poplib computes the digest itself; upper-case hex is the same digest
    pp = poplib.POP3_SSL("127.0.0.1", srv.pop3s_port, context=unverified_tls_context(), timeout=10)
    try:
        assert pp.apop(ALICE, secret).startswith(b"+OK")
        assert pp.stat()[0] == 1
        pp.quit()
    finally:
        pp.close()
    with RawPOP3(srv.pop3_port) as c:
        stamp = re.search(rb"(<[^<>]*>)$", c.greeting).group(1)
        c.ok("APOP %s %s" % (ALICE, hashlib.md5(stamp + secret.encode()).hexdigest().upper()))
        c.ok("QUIT")

    # an account without a secret: a clear -ERR [AUTH] (answered late, as a failed login)
    with RawPOP3(srv.pop3_port) as c:
        stamp = re.search(rb"(<[^<>]*>)$", c.greeting).group(1)
        r = c.cmd("APOP %s %s" % (bob, hashlib.md5(stamp + b"whatever").hexdigest()))
        assert r.startswith(b"-ERR [AUTH]") and b"APOP" in r.upper(), \
            "APOP for an account without a secret: %r" % r
        c.err("STAT")
    # a wrong digest (the digest of another greeting: no replay)
    with RawPOP3(srv.pop3_port) as c:
        r = c.cmd("APOP %s %s" % (ALICE, digest))
        assert r.startswith(b"-ERR [AUTH]"), "APOP replaying an old digest: %r" % r
        c.err("APOP %s nothex" % ALICE)
        c.ok("QUIT")
    # a removed secret: APOP refused again; USER/PASS still work
    p = srv.cli("user", "apop-secret", ALICE, "--remove")
    assert p.returncode == 0, p.stderr
    pp = pop3_ssl(srv)
    try:
        with pytest.raises(poplib.error_proto) as e:
            pp.apop(ALICE, secret)
        assert err_of(e).startswith(b"-ERR [AUTH]"), err_of(e)
    finally:
        pp.close()
    pp = pop3_ssl(srv, ALICE)
    pp.quit()


def test_wrong_password_delayed_and_too_many_failures_close(make_server):
    srv = make_server(accounts=(ALICE,))
    with pop3_raw(srv) as c:
        c.ok("USER " + ALICE)
        t0 = time.monotonic()
        r = c.cmd("PASS wrong password")
        took = time.monotonic() - t0
        assert r.startswith(b"-ERR [AUTH]"), r
        assert took >= 0.9, "a failed login answered after %.2f s (want a delay)" % took
        c.err("STAT")
        c.err("PASS " + DEFAULT_PASSWORD)  # a failed PASS needs a new USER
        c.ok("USER " + ALICE)
        assert c.cmd("PASS wrong again").startswith(b"-ERR [AUTH]")
        c.ok("USER " + ALICE)
        r = c.cmd("PASS wrong thrice")
        assert r.startswith(b"-ERR [AUTH]"), r
        rest = c.wait_closed()
        assert all(l.startswith(b"-ERR") for l in rest.split(b"\r\n") if l), rest
    # other sessions from the address are not locked out by 3 failures
    p = pop3_ssl(srv, ALICE)
    assert p.stat() == (0, 0)
    p.quit()
    assert "event=login_failed" in srv.log_text()


def test_failures_per_address_refuse_logins(make_server):
    srv = make_server(settings={"pop3.max_auth_failures_per_ip": "1"}, accounts=(ALICE,))
    p = pop3_ssl(srv)
    try:
        with pytest.raises(poplib.error_proto) as e:
            p.user(ALICE)
            p.pass_("not the password")
        assert err_of(e).startswith(b"-ERR [AUTH]")
    finally:
        p.close()
    # now even the right password is refused from this address
    with pop3_raw(srv) as c:
        c.ok("USER " + ALICE)
        r = c.cmd("PASS " + DEFAULT_PASSWORD)
        assert r.startswith(b"-ERR [AUTH]"), "login after the per-address limit: %r" % r
    assert "event=login_refused" in srv.log_text()


# --- the commands ---------------------------------------------------------------------------------
def test_stat_list_retr_exact_octets(server):
    acct = new_account(server)
    big = "".join("line %05d of a longer body, to make it span packets\r\n" % i for i in range(4000))
    stored = deliver(server, acct, bodies=["short\r\n", "two\r\nlines\r\n", big])
    sizes = [len(m) for m in stored]
    with pop3_raw(server, acct) as c:
        assert c.ok("STAT") == b"+OK 3 %d" % sum(sizes)
        r, data = c.multi("LIST")
        assert list_sizes(data) == {1: sizes[0], 2: sizes[1], 3: sizes[2]}, data
        for i in (1, 2, 3):
            assert c.ok("LIST %d" % i) == b"+OK %d %d" % (i, sizes[i - 1])
            r, data = c.multi("RETR %d" % i)
            m = re.match(rb"^\+OK (\d+) octets", r)
            assert m and int(m.group(1)) == sizes[i - 1], "RETR %d: %r, stored %d octets" % (i, r, sizes[i - 1])
            assert pop3_unstuff(data) == stored[i - 1], "RETR %d differs from the stored message" % i
            assert data.startswith(b"Return-Path: <sender@example.org>\r\nReceived: "), data[:200]
        c.err("LIST 4")
        c.err("RETR 4")
        c.ok("QUIT")
    p = pop3_stls(server, acct)
    try:
        assert p.stat() == (3, sum(sizes))
        resp, lines, octets = p.list()
        assert lines == [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)]
        for i in (1, 2, 3):
            resp, lines, octets = p.retr(i)
            assert b"\r\n".join(lines) + b"\r\n" == stored[i - 1]
        p.quit()
    finally:
        p.close()
    # RETR does not remove or change anything
    assert server.messages(acct) == stored


def test_poplib_every_command(server):
    acct = new_account(server)
    stored = deliver(server, acct, bodies=["one\r\n", "two\r\nlines\r\n", "three\r\n"])
    sizes = [len(m) for m in stored]
    p = pop3_ssl(server)
    try:
        assert p.getwelcome().startswith(b"+OK")
        assert p.user(acct).startswith(b"+OK")
        assert p.pass_(DEFAULT_PASSWORD).startswith(b"+OK")
        assert p.noop().startswith(b"+OK")
        assert p.stat() == (3, sum(sizes))
        assert p.list(2) == b"+OK 2 %d" % sizes[1]
        assert p.list()[1] == [b"%d %d" % (i + 1, n) for i, n in enumerate(sizes)]
        ids = [l.split()[1] for l in p.uidl()[1]]
        assert p.uidl(3) == b"+OK 3 " + ids[2]
        assert b"\r\n".join(p.top(2, 1)[1]) + b"\r\n" == stored[1][:stored[1].index(b"\r\n\r\n") + 4] + b"two\r\n"
        assert b"\r\n".join(p.retr(3)[1]) + b"\r\n" == stored[2]
        assert p.dele(1).startswith(b"+OK")
        with pytest.raises(poplib.error_proto):
            p.retr(1)
        assert p.stat() == (2, sizes[1] + sizes[2])
        assert p.rset().startswith(b"+OK")
        assert p.stat() == (3, sum(sizes))
        assert p.dele(3).startswith(b"+OK")
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()
    assert server.messages(acct) == stored[:2]
    p = pop3_ssl(server, acct)
    try:
        assert [l.split()[1] for l in p.uidl()[1]] == ids[:2]
        p.quit()
    finally:
        p.close()


def test_sizes_are_octets_sent_for_messages_not_in_crlf_form(server):
    """RFC 1939 11: the size in STAT/LIST is the message's octet count as sent
    (CRLF line ends). A message APPENDed over IMAP with bare LF line ends is
    stored with CRLFs, so LIST, "+OK n octets" and the octets RETR sends agree.
    A last line without a line break gets one before the ".", as part of the
    terminating line: it is not counted."""
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        assert c.append("INBOX", b"Subject: bare LF\n\nline 1\nline 2\n").ok
        assert c.append("INBOX", b"Subject: no final CRLF\r\n\r\nthe last line").ok
    with pop3_raw(server, acct) as c:
        r, data = c.multi("RETR 1")
        msg = pop3_unstuff(data)
        assert msg == b"Subject: bare LF\r\n\r\nline 1\r\nline 2\r\n", msg
        assert r == b"+OK %d octets" % len(msg), (r, len(msg))
        r, data = c.multi("RETR 2")
        assert pop3_unstuff(data) == b"Subject: no final CRLF\r\n\r\nthe last line\r\n"
        last = len(b"Subject: no final CRLF\r\n\r\nthe last line")
        assert r == b"+OK %d octets" % last, r
        r, data = c.multi("LIST")
        assert list_sizes(data) == {1: len(msg), 2: last}, data
        assert c.ok("STAT") == b"+OK 2 %d" % (len(msg) + last)
        c.ok("QUIT")


def test_byte_stuffing(server):
    acct = new_account(server)
    body = ("first\r\n.\r\n..\r\n.leading dot\r\n...three\r\n. space\r\nlast\r\n")
    stored = deliver(server, acct, bodies=[body])[0]
    assert b"\r\n.\r\n..\r\n.leading dot\r\n" in stored, "SMTP dot-unstuffing: %r" % stored
    with pop3_raw(server, acct) as c:
        r, data = c.multi("RETR 1")
        assert b"\r\n..\r\n...\r\n..leading dot\r\n....three\r\n.. space\r\nlast\r\n" in data, data
        assert pop3_unstuff(data) == stored
        r, data = c.multi("TOP 1 3")
        assert data.endswith(b"\r\nfirst\r\n..\r\n...\r\n"), data
        c.ok("QUIT")
    p = pop3_ssl(server, acct)
    try:
        resp, lines, octets = p.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == stored
        p.quit()
    finally:
        p.close()


def test_top(server):
    acct = new_account(server)
    stored = deliver(server, acct, bodies=["b1\r\nb2\r\n\r\nb4\r\n"])[0]
    header = stored[:stored.index(b"\r\n\r\n") + 4]
    with pop3_raw(server, acct) as c:
        r, data = c.multi("TOP 1 0")
        assert r.startswith(b"+OK") and data == header, data
        r, data = c.multi("TOP 1 2")
        assert data == header + b"b1\r\nb2\r\n", data
        r, data = c.multi("TOP 1 3")
        assert data == header + b"b1\r\nb2\r\n\r\n", data
        r, data = c.multi("TOP 1 100")
        assert data == stored
        for bad in ("TOP 1", "TOP 1 -1", "TOP 1 x", "TOP 2 0", "TOP 0 1", "TOP"):
            c.err(bad)
        c.ok("NOOP")
        c.ok("QUIT")
    p = pop3_ssl(server, acct)
    try:
        resp, lines, octets = p.top(1, 1)
        assert b"\r\n".join(lines) + b"\r\n" == header + b"b1\r\n"
        p.quit()
    finally:
        p.close()


def test_dele_rset_noop_and_quit_removes(server):
    acct = new_account(server)
    stored = deliver(server, acct, 3)
    sizes = [len(m) for m in stored]
    with pop3_raw(server, acct) as c:
        c.ok("NOOP")
        c.ok("DELE 2")
        c.err("DELE 2")
        c.err("RETR 2")
        c.err("LIST 2")
        c.err("TOP 2 0")
        c.err("UIDL 2")
        assert c.ok("STAT") == b"+OK 2 %d" % (sizes[0] + sizes[2])
        r, data = c.multi("LIST")
        assert list_sizes(data) == {1: sizes[0], 3: sizes[2]}, data
        r, data = c.multi("UIDL")
        assert sorted(uidl_map(data)) == [1, 3], data
        c.ok("RSET")
        assert c.ok("STAT") == b"+OK 3 %d" % sum(sizes)
        r, data = c.multi("RETR 2")
        assert pop3_unstuff(data) == stored[1]
        c.ok("DELE 1")
        c.ok("DELE 3")
        c.ok("QUIT")
        assert c.wait_closed() == b""
    assert server.messages(acct) == [stored[1]]
    assert imap_count(server, acct) == 1
    p = pop3_ssl(server, acct)
    try:
        assert p.stat() == (1, sizes[1])
        assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == stored[1]
        p.quit()
    finally:
        p.close()


def test_dele_without_quit_removes_nothing(server):
    acct = new_account(server)
    stored = deliver(server, acct, 2)
    c = pop3_raw(server, acct)
    c.ok("DELE 1")
    c.ok("DELE 2")
    assert c.ok("STAT").startswith(b"+OK 0 0")
    c.close()  # dropped: no QUIT
    c = login_retrying(server, acct)
    try:
        assert c.ok("STAT") == b"+OK 2 %d" % sum(map(len, stored))
        c.ok("QUIT")
    finally:
        c.close()
    assert server.messages(acct) == stored
    # a session that marks nothing deleted removes nothing at QUIT
    p = pop3_ssl(server, acct)
    p.quit()
    assert server.messages(acct) == stored


def test_uidl_unique_stable_and_never_reused(server):
    acct = new_account(server)
    deliver(server, acct, 3)
    with pop3_raw(server, acct) as c:
        r, data = c.multi("UIDL")
        ids = uidl_map(data)
        assert sorted(ids) == [1, 2, 3], data
        for n, uid in ids.items():
            assert re.match(r"^[\x21-\x7e]{1,70}$", uid), "bad unique-id %r (RFC 1939 7)" % uid
            assert c.ok("UIDL %d" % n) == b"+OK %d %s" % (n, uid.encode())
        assert len(set(ids.values())) == 3, ids
        c.err("UIDL 4")
        c.ok("DELE 3")
        c.ok("QUIT")
    p = pop3_ssl(server, acct)
    try:
        resp, lines, _ = p.uidl()
        again = {int(l.split()[0]): l.split()[1].decode() for l in lines}
        assert again == {1: ids[1], 2: ids[2]}, "UIDL changed between sessions: %r vs %r" % (again, ids)
        p.quit()
    finally:
        p.close()
    # a new message after the deletion of the last one gets a new id
    deliver(server, acct, 3)
    with pop3_raw(server, acct) as c:
        r, data = c.multi("UIDL")
        now = uidl_map(data)
        assert now[1] == ids[1] and now[2] == ids[2], (now, ids)
        assert now[3] not in ids.values(), "unique-id %r reused after deletion" % now[3]
        c.ok("QUIT")


def test_uidl_and_messages_survive_restart(server):
    acct = new_account(server)
    stored = deliver(server, acct, 2)
    with pop3_raw(server, acct) as c:
        ids = uidl_map(c.multi("UIDL")[1])
        c.ok("QUIT")
    server.restart()
    with pop3_raw(server, acct) as c:
        assert uidl_map(c.multi("UIDL")[1]) == ids
        for i in (1, 2):
            assert pop3_unstuff(c.multi("RETR %d" % i)[1]) == stored[i - 1]
        c.ok("DELE 2")
        c.ok("QUIT")
    server.restart()
    deliver(server, acct, 1)
    with pop3_raw(server, acct) as c:
        now = uidl_map(c.multi("UIDL")[1])
        assert now[1] == ids[1] and now[2] != ids[2] and len(now) == 2, (now, ids)
        c.ok("QUIT")


# --- concurrency ----------------------------------------------------------------------------------
def test_maildrop_lock(server):
    acct = new_account(server)
    other = new_account(server)
    deliver(server, acct)
    first = pop3_raw(server, acct)
    try:
        with pop3_raw(server) as c:
            c.ok("USER " + acct.upper())  # the same account, however it is spelt
            r = c.cmd("PASS " + DEFAULT_PASSWORD)
            assert r.startswith(b"-ERR [IN-USE]"), "second login to a held maildrop: %r" % r
            c.err("STAT")
            # the session goes on: another account works
            c.ok("USER " + other)
            c.ok("PASS " + DEFAULT_PASSWORD)
            c.ok("QUIT")
        p = pop3_stls(server)
        with pytest.raises(poplib.error_proto) as e:
            p.user(acct)
            p.pass_(DEFAULT_PASSWORD)
        assert err_of(e).startswith(b"-ERR [IN-USE]"), err_of(e)
        p.close()
        # IMAP is not locked out
        assert imap_count(server, acct) == 1
        first.ok("QUIT")
        first.wait_closed()
    finally:
        first.close()
    # after QUIT's reply the maildrop is free at once
    second = pop3_raw(server)
    second.ok("USER " + acct)
    r = second.cmd("PASS " + DEFAULT_PASSWORD)
    assert r.startswith(b"+OK"), "login right after the holder's QUIT: %r" % r
    second.close()  # dropped without QUIT: freed once the server sees it
    third = login_retrying(server, acct)
    third.ok("QUIT")
    third.close()


def test_imap_expunge_during_pop3_session(server):
    acct = new_account(server)
    stored = deliver(server, acct, 3)
    with pop3_raw(server, acct) as c:
        m = imap_ssl(server, acct)
        try:
            assert m.select("INBOX")[0] == "OK"
            assert m.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
            assert m.expunge()[0] == "OK"
        finally:
            m.logout()
        assert len(server.messages(acct)) == 2
        r, data = c.multi("RETR 1")
        assert r.startswith(b"-ERR"), "RETR of a message expunged over IMAP: %r" % r
        assert c.multi("TOP 1 0")[0].startswith(b"-ERR")
        r, data = c.multi("RETR 2")
        assert r.startswith(b"+OK") and pop3_unstuff(data) == stored[1]
        c.ok("NOOP")
        c.ok("DELE 3")
        r = c.ok("QUIT")
    assert server.messages(acct) == [stored[1]]
    # the expunged message marked deleted too: QUIT still succeeds
    stored = deliver(server, acct, 1)
    with pop3_raw(server, acct) as c:
        assert c.ok("STAT").startswith(b"+OK 2 ")
        m = imap_ssl(server, acct)
        try:
            m.select("INBOX")
            m.store("1", "+FLAGS", "(\\Deleted)")
            m.expunge()
        finally:
            m.logout()
        c.ok("DELE 1")
        r = c.cmd("QUIT")
        assert r.startswith(b"+OK"), "QUIT after DELE of a message IMAP expunged: %r" % r
    assert server.messages(acct) == [stored[1]]


# --- pipelining and bad input ---------------------------------------------------------------------
def test_pipelining(server):
    acct = new_account(server)
    big = "".join("pipelined body line %06d .......................................\r\n" % i
                  for i in range(6000))
    stored = deliver(server, acct, bodies=[big, ".dot\r\n"])
    with pop3_raw(server) as c:
        c.send("USER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\nTOP 2 0\r\nRETR 2\r\nNOOP\r\n"
               "DELE 1\r\nSTAT\r\nRSET\r\nBOGUS\r\nQUIT\r\n" % (acct, DEFAULT_PASSWORD))
        assert c.readline().startswith(b"+OK")  # USER
        assert c.readline().startswith(b"+OK")  # PASS
        assert c.readline() == b"+OK 2 %d" % sum(map(len, stored))
        assert c.readline().startswith(b"+OK")
        assert list_sizes(c.data()) == {1: len(stored[0]), 2: len(stored[1])}
        assert re.match(rb"^\+OK 1 [!-~]+$", c.readline())
        assert c.readline().startswith(b"+OK")
        assert pop3_unstuff(c.data()) == stored[0]
        assert c.readline().startswith(b"+OK")
        assert c.data() == stored[1][:stored[1].index(b"\r\n\r\n") + 4]
        assert c.readline().startswith(b"+OK")
        assert pop3_unstuff(c.data()) == stored[1]
        assert c.readline().startswith(b"+OK")  # NOOP
        assert c.readline().startswith(b"+OK")  # DELE
        assert c.readline() == b"+OK 1 %d" % len(stored[1])
        assert c.readline().startswith(b"+OK")  # RSET
        assert c.readline().startswith(b"-ERR")  # BOGUS
        assert c.readline().startswith(b"+OK")  # QUIT
        assert c.wait_closed() == b""
    assert server.messages(acct) == stored


def test_bad_input_gets_err_and_session_goes_on(server):
    acct = new_account(server)
    stored = deliver(server, acct)
    with pop3_raw(server) as c:
        c.err("STAT")  # not logged in
        c.err("PASS " + DEFAULT_PASSWORD)  # no USER
        c.err("XYZZY")
        c.login(acct)
        c.err("USER " + acct)  # not after login
        c.err("STLS")
        c.ok("QUIT")
    # (max_errors is 20: a new session for the rest)
    with pop3_raw(server, acct) as c:
        for line in ("XYZZY", "", "RETR", "RETR 0", "RETR 99999999999999999999999", "RETR abc", "RETR -1",
                     "RETR 1x", "RETR 1 2", "LIST 0", "LIST x", "DELE 0", "DELE", "UIDL 0", "TOP 1 x"):
            r = c.cmd(line)
            assert r.startswith(b"-ERR"), "%r: %r" % (line, r)
        r = c.cmd(b"NO\x00OP")
        assert r.startswith(b"-ERR"), "NUL in a command: %r" % r
        r = c.cmd("NOOP " + "x" * 3000)
        assert r.startswith(b"-ERR"), "overlong line: %r" % r
        assert c.ok("NOOP")
        assert c.pending(0.3) == b"", "extra replies after the overlong line"
        c.err("RETR 2")  # no such message
        assert c.ok("stat") == b"+OK 1 %d" % len(stored[0])  # keywords are case-insensitive
        r, data = c.multi("retr 1")
        assert pop3_unstuff(data) == stored[0]
        c.ok("QUIT")
    assert server.messages(acct) == stored


def test_too_many_errors_close(server):
    with pop3_raw(server) as c:
        c.send(b"BOGUS\r\n" * 30)
        out = c.wait_closed()
    lines = [l for l in out.split(b"\r\n") if l]
    assert lines and all(l.startswith(b"-ERR") for l in lines), lines
    assert 20 <= len(lines) <= 21, "max_errors = 20: %d replies: %r" % (len(lines), lines[-3:])


def test_connection_limit_per_address(make_server):
    srv = make_server(settings={"pop3.max_connections_per_ip": "1"}, accounts=(ALICE,))
    with RawPOP3(srv.pop3_port) as c:
        assert c.greeting.startswith(b"+OK")
        s = socket.create_connection(("127.0.0.1", srv.pop3_port), timeout=10)
        try:
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        assert data == b"" or data.startswith(b"-ERR"), \
            "the refusal of a connection over the limit is not a POP3 reply: %r" % data
        c.ok("QUIT")  # the first connection is untouched


def test_shutdown_with_open_session_removes_nothing(make_server):
    srv = make_server(accounts=(ALICE,))
    smtp_deliver(srv, ALICE, make_message(token("stop")))
    stored = srv.wait_messages(ALICE, 1)
    c = pop3_raw(srv, ALICE)
    try:
        c.ok("DELE 1")
        srv.terminate()
        out = c.wait_closed()
        assert out == b"" or out.startswith(b"-ERR"), out
        assert srv.stop() == 0
    finally:
        c.close()
    srv.start()
    assert srv.messages(ALICE) == stored
    p = pop3_ssl(srv, ALICE)
    assert p.stat()[0] == 1
    p.quit()


def test_idle_timeout_closes_and_removes_nothing(make_server):
    try:
        srv = make_server(settings={"pop3.timeout": "1"}, accounts=(ALICE,))
    except ServerError as e:
        pytest.skip("pop3.timeout = 1 is not accepted: %s" % e)
    smtp_deliver(srv, ALICE, make_message(token("idle")))
    stored = srv.wait_messages(ALICE, 1)
    with pop3_raw(srv, ALICE) as c:
        c.ok("DELE 1")
        t0 = time.monotonic()
        out = c.wait_closed(timeout=10)
        assert out.startswith(b"-ERR"), "idle session closed with %r" % out
        assert time.monotonic() - t0 < 8
    assert srv.messages(ALICE) == stored
    p = pop3_ssl(srv, ALICE)  # the maildrop lock went with the session
    assert p.stat()[0] == 1
    p.quit()
