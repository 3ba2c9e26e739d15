"""SMTP receiving (MX) with clients nobody here wrote: smtplib, swaks, curl,
openssl s_client. Stored bytes are checked in the store itself."""
import email.utils
import re
import smtplib
import subprocess
import threading
import time

import pytest

from helpers import (RawSMTP, has_bare_lf_or_cr, make_message, split_trace, token,
                     unverified_tls_context)

HOST = "127.0.0.1"
CLIENT_NAME = "client.example.org"
RECEIVED_RE = re.compile(
    r"^Received: from (?P<helo>\S+) \(\[(?P<ip>[0-9.]+)\]\) by (?P<by>\S+) \(correio\)"
    r"(?: \((?P<tls>[^)]*)\))? with (?P<proto>[A-Z0-9]+)"
    r"(?: \((?P<tls2>[^)]*)\))? id (?P<id>\S+)(?P<rest>.*?)"
    r" for <(?P<rcpt>[^>]*)>; (?P<date>.+)$")


def smtp(server, name=CLIENT_NAME):
    return smtplib.SMTP(HOST, server.smtp_port, local_hostname=name, timeout=10)


def parse_received(received):
    m = RECEIVED_RE.match(received)
    assert m, "Received field does not have the expected form: %r" % received
    # The date must be an RFC 5322 date-time close to now.
    when = email.utils.parsedate_to_datetime(m.group("date"))
    assert abs(when.timestamp() - time.time()) < 300, "Received date %r is not now" % m.group("date")
    return m


def check_stored(stored, original, mail_from, rcpt, proto="ESMTP", helo=CLIENT_NAME,
                 by="mx.example.test"):
    """stored == Return-Path + Received + original, byte for byte."""
    rp, received, rest = split_trace(stored)
    assert rp == b"Return-Path: <" + mail_from.encode() + b">"
    m = parse_received(received)
    assert m.group("helo") == helo
    assert m.group("ip") == "127.0.0.1"
    assert m.group("by") == by
    assert m.group("proto") == proto, received
    assert m.group("rcpt") == rcpt, received
    assert rest == original, "stored message differs from what was sent"
    assert not has_bare_lf_or_cr(stored), "stored message has a bare LF or CR"
    return m


def one(server, account, tok):
    found = server.find(account, tok)
    assert len(found) == 1, "%s: want exactly 1 message with %s, found %d" % (account, tok, len(found))
    return found[0]


# --- sending ------------------------------------------------------------------------
def test_send_one_recipient(server):
    tok = token()
    msg = make_message(tok)
    with smtp(server) as s:
        refused = s.sendmail("sender@example.org", ["alice@example.test"], msg)
        assert refused == {}
    stored = one(server, "alice@example.test", tok)
    check_stored(stored, msg, "sender@example.org", "alice@example.test")
    assert server.find("bob@example.test", tok) == []


def test_send_several_recipients(server):
    tok = token()
    msg = make_message(tok)
    rcpts = ["alice@example.test", "bob@example.test", "carol@example2.test"]
    with smtp(server) as s:
        assert s.sendmail("sender@example.org", rcpts, msg) == {}
    ids = set()
    for r in rcpts:
        m = check_stored(one(server, r, tok), msg, "sender@example.org", r)
        ids.add(m.group("id"))
    assert len(ids) == 1, "one transaction should have one id in all copies: %r" % ids


def test_several_messages_one_session(server):
    toks = [token() for _ in range(3)]
    with smtp(server) as s:
        for t in toks:
            assert s.sendmail("sender@example.org", ["bob@example.test"], make_message(t)) == {}
    ids = set()
    for t in toks:
        _, received, _ = split_trace(one(server, "bob@example.test", t))
        ids.add(parse_received(received).group("id"))
    assert len(ids) == 3, "each transaction needs its own id: %r" % ids


def test_some_recipients_refused(server):
    tok = token()
    msg = make_message(tok)
    with smtp(server) as s:
        refused = s.sendmail("sender@example.org",
                             ["nobody@example.test", "alice@example.test", "x@elsewhere.org"], msg)
    assert set(refused) == {"nobody@example.test", "x@elsewhere.org"}
    assert refused["nobody@example.test"][0] == 550
    assert refused["nobody@example.test"][1].startswith(b"5.1.1")
    assert refused["x@elsewhere.org"][0] == 550
    assert refused["x@elsewhere.org"][1].startswith(b"5.7.1")
    check_stored(one(server, "alice@example.test", tok), msg, "sender@example.org",
                 "alice@example.test")


def test_recipient_case_insensitive(server):
    tok = token()
    msg = make_message(tok)
    with smtp(server) as s:
        assert s.sendmail("sender@example.org", ["ALICE@Example.TEST"], msg) == {}
    stored = one(server, "alice@example.test", tok)
    _, _, rest = split_trace(stored)
    assert rest == msg


def test_null_sender(server):
    tok = token()
    msg = make_message(tok, subject="Delivery Status Notification")
    with smtp(server) as s:
        assert s.sendmail("<>", ["alice@example.test"], msg) == {}
    stored = one(server, "alice@example.test", tok)
    assert stored.startswith(b"Return-Path: <>\r\n")
    _, _, rest = split_trace(stored)
    assert rest == msg


def test_8bit_body_and_utf8_headers_byte_exact(server):
    tok = token()
    # UTF-8 in headers (RFC 6532), raw Latin-1 and other high bytes in the body.
    msg = ("From: Jos\u00e9 <jos\u00e9@ex\u00e4mple.org>\r\n"
           "To: \u00c1lice <alice@example.test>\r\n"
           "Subject: \u00e7a marche \u2014 \U0001F4EC %s\r\n"
           "Message-ID: <%s@example.org>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n"
           "Ol\u00e1, a\u00e7\u00e3o, \u65e5\u672c\u8a9e\r\n" % (tok, tok)).encode("utf-8")
    msg += b"latin1: \xe9\xe0\xfc \xff\xfe\x80\r\n"
    with smtp(server) as s:
        s.ehlo()
        assert s.has_extn("smtputf8") and s.has_extn("8bitmime")
        assert s.sendmail("sender@example.org", ["alice@example.test"], msg,
                          mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    stored = one(server, "alice@example.test", tok)
    check_stored(stored, msg, "sender@example.org", "alice@example.test", proto="UTF8SMTP")


def test_smtputf8_utf8_envelope_sender(server):
    tok = token()
    sender = "jos\u00e9@ex\u00e4mple.org"
    msg = make_message(tok)
    with smtp(server) as s:
        assert s.sendmail(sender, ["alice@example.test"], msg, mail_options=["SMTPUTF8"]) == {}
    stored = one(server, "alice@example.test", tok)
    check_stored(stored, msg, sender, "alice@example.test", proto="UTF8SMTP")


def test_utf8_address_without_smtputf8_refused(server):
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<jos\u00e9@ex\u00e4mple.org>".encode("utf-8"))
        assert 500 <= r.code < 600, "UTF-8 reverse-path without SMTPUTF8 accepted: %r" % r
        c.expect(250, "NOOP")


def test_utf8_unknown_local_part(server):
    # Accounts are ASCII; a UTF-8 local part is well-formed with SMTPUTF8
    # but is nobody here.
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.expect(250, "MAIL FROM:<sender@example.org> SMTPUTF8")
        c.expect(550, "RCPT TO:<\u00e4lice@example.test>".encode("utf-8"), enh="5.1.1")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(250, "RSET")


# --- EHLO / HELO and the small commands -------------------------------------------------
def test_ehlo_capabilities(server):
    with smtp(server) as s:
        code, text = s.ehlo()
        assert code == 250
        first = text.decode().splitlines()[0]
        assert first.split()[0] == "mx.example.test", "EHLO reply should start with our name: %r" % first
        feats = s.esmtp_features
        for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking",
                    "starttls"):
            assert ext in feats, "EHLO lacks %s: %r" % (ext, text)
        assert feats["size"].strip() == "52428800"


def test_greeting(server):
    with RawSMTP(server.smtp_port) as c:
        r = c.greeting()
        assert r.lines[0].split()[0] == "mx.example.test", r


def test_helo_gives_received_with_smtp(server):
    tok = token()
    msg = make_message(tok)
    with smtp(server, name="old.example.org") as s:
        code, _ = s.helo()
        assert code == 250
        assert s.sendmail("sender@example.org", ["bob@example.test"], msg) == {}
    check_stored(one(server, "bob@example.test", tok), msg, "sender@example.org",
                 "bob@example.test", proto="SMTP", helo="old.example.org")


def test_helo_single_line_reply(server):
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        r = c.cmd("HELO old.example.org")
        assert r.code == 250 and len(r.lines) == 1, r
        # HELO again is fine (RFC 5321 4.1.4) and resets nothing harmful.
        c.expect(250, "EHLO new.example.org")
        c.expect(250, "MAIL FROM:<a@example.org>")


def test_ehlo_address_literal(server):
    tok = token()
    msg = make_message(tok)
    with smtp(server, name="[127.0.0.1]") as s:
        assert s.sendmail("sender@example.org", ["bob@example.test"], msg) == {}
    check_stored(one(server, "bob@example.test", tok), msg, "sender@example.org",
                 "bob@example.test", helo="[127.0.0.1]")


def test_vrfy_expn_turn_help_noop_rset(server):
    with smtp(server) as s:
        s.ehlo()
        assert s.verify("alice@example.test")[0] == 252
        assert s.verify("nobody@example.test")[0] == 252  # no user enumeration
        assert s.expn("staff")[0] == 502
        assert s.docmd("TURN")[0] == 502
        assert s.docmd("HELP")[0] in (211, 214)
        assert s.noop()[0] == 250
        assert s.docmd("NOOP", "some argument")[0] == 250
        assert s.rset()[0] == 250
        # RSET ends a transaction: DATA after it has no transaction.
        assert s.mail("sender@example.org")[0] == 250
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.rset()[0] == 250
        assert s.docmd("DATA")[0] == 503
        assert s.noop()[0] == 250


def test_unknown_command(server):
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.expect(500, "XYZZY foo", enh="5.5")
        c.expect(500, "MAILFROM:<a@b.c>", enh="5.5")
        c.expect(250, "NOOP")


def test_unknown_user(server):
    with smtp(server) as s:
        s.ehlo()
        assert s.mail("sender@example.org")[0] == 250
        code, text = s.rcpt("nobody@example.test")
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)
        code, text = s.rcpt("nobody@example2.test")
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)


RELAY_ATTEMPTS = [
    "someone@other.org",
    "alice@other.org",
    "alice@example.test.other.org",
    "user%other.org@example.test",
    "alice%other.org@example.test",
    "other.org!user@example.test",
    "@a.org:user@other.org",
    "@example.test:user@other.org",
    "@a.org,@b.org:user@other.org",
    '"user@other.org"@example.test',
    '"alice@other.org"@example.test',
]


@pytest.mark.parametrize("rcpt", RELAY_ATTEMPTS)
def test_relay_denied(server, rcpt):
    before_a = len(server.messages("alice@example.test"))
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.expect(250, "MAIL FROM:<sender@example.org>")
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        assert r.code == 550 and r.lines[-1].startswith("5.7.1"), "RCPT TO:<%s>: %r" % (rcpt, r)
        # With no recipient there is nothing to send.
        r = c.cmd("DATA")
        assert r.code in (503, 554), r
        c.expect(250, "RSET")
        c.expect(221, "QUIT")
    assert len(server.messages("alice@example.test")) == before_a


def test_relay_denied_smtplib(server):
    with smtp(server) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as ei:
            s.sendmail("sender@example.org", ["victim@gmail.invalid"], make_message(token()))
        code, text = ei.value.recipients["victim@gmail.invalid"]
        assert code == 550 and text.startswith(b"5.7.1")


def test_source_route_to_local_user(server):
    # RFC 5321 4.1.1.3: the server may ignore the source route; delivery
    # goes to the final mailbox, which is local here.
    tok = token()
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.ehlo()
        c.expect(250, "MAIL FROM:<@relay.example.org:sender@example.org>")
        c.expect(250, "RCPT TO:<@a.org:alice@example.test>")
        c.expect(354, "DATA")
        c.send(make_message(tok) + b".\r\n")
        c.expect(250)
    stored = one(server, "alice@example.test", tok)
    assert stored.startswith(b"Return-Path: <sender@example.org>\r\n")


@pytest.mark.parametrize("seq", [
    # (commands, expected codes)
    (["MAIL FROM:<a@example.org>"], [503]),                              # before EHLO
    (["EHLO x.example.org", "RCPT TO:<alice@example.test>"], [250, 503]),  # RCPT before MAIL
    (["EHLO x.example.org", "DATA"], [250, 503]),                        # DATA before MAIL
    (["EHLO x.example.org", "MAIL FROM:<a@example.org>", "MAIL FROM:<b@example.org>"],
     [250, 250, 503]),                                                   # nested MAIL
    (["EHLO x.example.org", "MAIL FROM:<a@example.org>", "DATA"], [250, 250, (503, 554)]),
], ids=["mail-before-helo", "rcpt-before-mail", "data-before-mail", "nested-mail",
        "data-without-rcpt"])
def test_out_of_order(server, seq):
    cmds, codes = seq
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        for cmd, want in zip(cmds, codes):
            r = c.cmd(cmd)
            ok = r.code in want if isinstance(want, tuple) else r.code == want
            assert ok, "%s: want %s, got %r" % (cmd, want, r)
            if r.code == 503:
                assert r.lines[-1].startswith("5.5.1"), r
        # The session goes on.
        c.expect(250, "RSET")
        c.expect(250, "NOOP")


def test_syntax_errors(server):
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        r = c.cmd("EHLO")
        assert r.code == 501, r
        c.ehlo()
        for bad in ("MAIL FROM:sender@example.org x", "MAIL FROM:<sender@@example.org>",
                    "MAIL TO:<sender@example.org>", "MAIL FROM:<sender@example.org> FOO=BAR"):
            r = c.cmd(bad)
            assert r.code in (501, 553, 555), "%s: %r" % (bad, r)
        c.expect(250, "MAIL FROM:<sender@example.org>")
        for bad in ("RCPT TO:alice", "RCPT TO:<alice@example.test", "RCPT TO:<>"):
            r = c.cmd(bad)
            assert r.code in (501, 553, 550), "%s: %r" % (bad, r)
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(250, "RSET")


def test_quit(server):
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        c.expect(221, "QUIT")
        assert c.wait_closed(5) == b""


# --- TLS with smtplib ----------------------------------------------------------------
def test_starttls_smtplib(server):
    tok = token()
    msg = make_message(tok)
    with smtp(server) as s:
        s.ehlo()
        code, _ = s.starttls(context=unverified_tls_context())
        assert code == 220
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered again inside TLS"
        assert s.has_extn("pipelining") and s.has_extn("chunking")
        version = s.sock.version()
        cipher = s.sock.cipher()[0]
        assert version in ("TLSv1.2", "TLSv1.3")
        assert s.sendmail("sender@example.org", ["alice@example.test"], msg) == {}
        code, text = s.docmd("STARTTLS")
        assert code in (503, 554), "STARTTLS inside TLS: %d %r" % (code, text)
    stored = one(server, "alice@example.test", tok)
    m = check_stored(stored, msg, "sender@example.org", "alice@example.test", proto="ESMTPS")
    _, received, _ = split_trace(stored)
    assert version in received and cipher in received, received


# --- swaks ---------------------------------------------------------------------------
def swaks(server, tok, *extra, to="alice@example.test"):
    argv = ["swaks", "--server", HOST, "--port", str(server.smtp_port), "--helo", "swaks.example.org",
            "--from", "swaks@example.org", "--to", to, "--timeout", "10",
            "--header", "Subject: swaks %s" % tok, "--body", "body of %s\n.leading dot\n" % tok] + list(extra)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "swaks failed (%d):\n%s" % (p.returncode, out)
    return out


@pytest.mark.parametrize("mode", ["plain", "pipeline", "tls", "tls-pipeline"])
def test_swaks(server, mode):
    tok = token()
    extra = {"plain": [], "pipeline": ["--pipeline"], "tls": ["--tls"],
             "tls-pipeline": ["--tls", "--pipeline"]}[mode]
    out = swaks(server, tok, *extra)
    stored = one(server, "alice@example.test", tok)
    _, received, rest = split_trace(stored)
    m = parse_received(received)
    assert m.group("helo") == "swaks.example.org"
    assert m.group("proto") == ("ESMTPS" if "tls" in mode else "ESMTP"), received
    assert b"Subject: swaks " + tok.encode() + b"\r\n" in rest
    # swaks dot-stuffs the line; the store must hold it unstuffed.
    assert b"\r\nbody of " + tok.encode() + b"\r\n.leading dot\r\n" in rest
    assert not has_bare_lf_or_cr(stored)
    if "tls" in mode:
        assert "TLS started" in out


def test_swaks_unknown_user(server):
    # swaks to an unknown user fails with the right code.
    argv = ["swaks", "--server", HOST, "--port", str(server.smtp_port), "--from", "s@example.org",
            "--to", "nobody@example.test", "--timeout", "10"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode != 0
    assert "550 5.1.1" in out, out


# --- curl -------------------------------------------------------------------------------
def test_curl(server, tmp_path):
    tok = token()
    # LF line endings on purpose: curl sends them as they are (bare LF),
    # and the store must hold CRLF.
    text = ("From: curl <curl@example.org>\nTo: alice@example.test\nSubject: curl %s\n"
            "Message-ID: <%s@example.org>\n\nline one\nlast line of %s\n" % (tok, tok, tok))
    f = tmp_path / "msg.txt"
    f.write_text(text)
    p = subprocess.run(["curl", "-sS", "--max-time", "20",
                        "--url", "smtp://%s:%d/curl.example.org" % (HOST, server.smtp_port),
                        "--mail-from", "curl@example.org", "--mail-rcpt", "alice@example.test",
                        "--upload-file", str(f)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode("utf-8", "replace")
    stored = one(server, "alice@example.test", tok)
    _, received, rest = split_trace(stored)
    m = parse_received(received)
    assert m.group("helo") == "curl.example.org"
    assert m.group("rcpt") == "alice@example.test"
    want = text.replace("\n", "\r\n").encode()
    # curl ends data that does not end in CRLF with CRLF.CRLF: one more CRLF.
    assert rest in (want, want + b"\r\n"), rest
    assert not has_bare_lf_or_cr(stored)


def test_curl_crlf(server, tmp_path):
    tok = token()
    msg = make_message(tok, body="..two dots\r\n.\r\nnot the end\r\n")
    f = tmp_path / "msg.eml"
    f.write_bytes(msg)
    p = subprocess.run(["curl", "-sS", "--max-time", "20",
                        "--url", "smtp://%s:%d/curl.example.org" % (HOST, server.smtp_port),
                        "--mail-from", "curl@example.org", "--mail-rcpt", "bob@example.test",
                        "--mail-rcpt", "carol@example2.test", "--upload-file", str(f)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode("utf-8", "replace")
    for r in ("bob@example.test", "carol@example2.test"):
        _, _, rest = split_trace(one(server, r, tok))
        assert rest == msg


# --- openssl s_client -starttls smtp ------------------------------------------------------
class Proc:
    """A child process with its stdout+stderr collected by a thread."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.out = b""
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        while True:
            chunk = self.p.stdout.read1(65536)
            if not chunk:
                return
            with self.lock:
                self.out += chunk

    def wait_for(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if re.search(pattern, self.out):
                    return
            if self.p.poll() is not None and not self.t.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError("no %r in output:\n%s" % (pattern, self.out.decode("utf-8", "replace")))

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def finish(self, timeout=15):
        try:
            self.p.wait(timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        self.t.join(5)
        return self.out.decode("utf-8", "replace")


@pytest.mark.parametrize("version", ["tls1_2", "tls1_3"])
def test_openssl_starttls(server, version):
    tok = token()
    p = Proc(["openssl", "s_client", "-connect", "%s:%d" % (HOST, server.smtp_port),
              "-starttls", "smtp", "-name", "sclient.example.org", "-crlf", "-ign_eof", "-brief",
              "-nocommands", "-" + version])
    try:
        p.wait_for(rb"Protocol version: TLSv1\.[23]")
        p.write(b"EHLO sclient.example.org\nMAIL FROM:<ssl@example.org>\n"
                b"RCPT TO:<alice@example.test>\nDATA\n")
        p.wait_for(rb"\n354[ -]")
        p.write(b"Subject: s_client " + tok.encode() + b"\n\nover TLS\n.\n")
        p.wait_for(rb"\n250[ -][^\n]*\n(?![\s\S]*\n354)")
        p.write(b"QUIT\n")
        out = p.finish()
    except BaseException:
        p.finish(1)
        raise
    m = re.search(r"Protocol version: (TLSv1\.[23])", out)
    want = {"tls1_2": "TLSv1.2", "tls1_3": "TLSv1.3"}[version]
    assert m and m.group(1) == want, out
    cipher = re.search(r"Ciphersuite: (\S+)", out).group(1)
    assert "221" in out, out
    # After the handshake the EHLO reply must not offer STARTTLS again.
    ehlo_part = out[out.index("Protocol version"):]
    assert "STARTTLS" not in ehlo_part, out
    stored = one(server, "alice@example.test", tok)
    _, received, rest = split_trace(stored)
    r = parse_received(received)
    assert r.group("proto") == "ESMTPS", received
    assert want in received and cipher in received, received
    assert rest == b"Subject: s_client " + tok.encode() + b"\r\n\r\nover TLS\r\n"
