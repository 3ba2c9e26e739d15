"""SMTP at the byte level, over raw sockets: pipelining, STARTTLS, BDAT,
dot-stuffing, SMTP smuggling, line limits, garbage, and the limits of
size, recipients, errors, idle time and connections per address."""
import random
import socket
import ssl
import time

import pytest

import helpers
from helpers import DEFAULT_ACCOUNTS, Closed, RawSMTP, has_bare_lf_or_cr, make_message, split_trace, token

ALICE = "alice@example.test"
BOB = "bob@example.test"


def session(srv):
    c = RawSMTP(srv.smtp_port)
    c.greeting()
    c.ehlo()
    return c


def codes_until_close(c, timeout=10):
    """The codes of all replies until the server closes the connection."""
    codes = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            codes.append(c.reply().code)
        except Closed:
            return codes
    raise AssertionError("connection still open after replies %r" % codes)


def one(srv, account, tok):
    found = srv.find(account, tok)
    assert len(found) == 1, "%s: want exactly 1 message with %s, found %d" % (account, tok, len(found))
    return found[0]


def body_of(stored):
    return split_trace(stored)[2]


# --- servers with their own limits -------------------------------------------------------
@pytest.fixture(scope="module")
def _limits(module_make_server):
    return module_make_server(settings={"smtp.max_message_size": "100000", "smtp.max_recipients": "3",
                                        "smtp.expn": "yes"},
                              accounts=DEFAULT_ACCOUNTS + ("dave@example.test",), name="limits")


@pytest.fixture
def limits(_limits):
    yield from helpers.guard(_limits)


@pytest.fixture(scope="module")
def _strict(module_make_server):
    return module_make_server(settings={"smtp.max_errors": "3", "smtp.timeout": "2"}, name="strict")


@pytest.fixture
def strict(_strict):
    yield from helpers.guard(_strict)


@pytest.fixture(scope="module")
def _perip(module_make_server):
    return module_make_server(settings={"smtp.max_connections_per_ip": "3"}, name="perip")


@pytest.fixture
def perip(_perip):
    yield from helpers.guard(_perip)


# --- pipelining (RFC 2920) -----------------------------------------------------------
def test_pipelining_whole_transaction_in_one_send(server):
    tok = token()
    msg = make_message(tok)
    c = RawSMTP(server.smtp_port)
    with c:
        c.greeting()
        c.send(b"EHLO pipe.example.org\r\nMAIL FROM:<p@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
               + msg + b".\r\nQUIT\r\n")
        replies = []
        try:
            while True:
                replies.append(c.reply())
        except Closed:
            pass
    codes = [r.code for r in replies]
    assert codes == [250, 250, 250, 550, 250, 354, 250, 221], replies
    assert len(replies[0].lines) > 1  # the EHLO reply
    for rcpt in (ALICE, BOB):
        assert body_of(one(server, rcpt, tok)) == msg


def test_pipelining_two_transactions(server):
    t1, t2 = token(), token()
    m1, m2 = make_message(t1), make_message(t2)
    with session(server) as c:
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [r.code for r in c.replies(3)] == [250, 250, 354]
        c.send(m1 + b".\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [r.code for r in c.replies(4)] == [250, 250, 250, 354]
        c.send(m2 + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        assert codes_until_close(c) == [250, 250, 250, 221]
    assert body_of(one(server, ALICE, t1)) == m1
    assert body_of(one(server, BOB, t2)) == m2
    assert server.find(BOB, t1) == [] and server.find(ALICE, t2) == []


def test_pipelining_replies_in_order(server):
    cmds, want = [], []
    for i in range(12):
        cmds += ["NOOP %d" % i, "VRFY user%d" % i, "MAIL FROM:<p%d@example.org>" % i,
                 "RCPT TO:<alice@example.test>", "RSET"]
        want += [250, 252, 250, 250, 250]
        if i == 5:
            cmds += ["XCMD", "RCPT TO:<alice@example.test>"]
            want += [500, 503]
    with session(server) as c:
        c.send("".join(x + "\r\n" for x in cmds))
        got = [r.code for r in c.replies(len(want))]
        assert got == want
        assert c.pending(0.3) == b""


def test_pipelining_rcpt_lookups_in_order(server):
    # Several recipients in one packet: the answers come back in order
    # even though each is a look-up in the store.
    rcpts = [ALICE, "x@other.org", BOB, "nobody@example.test", "carol@example2.test"] * 3
    want = [250, 550, 250, 550, 250] * 3
    with session(server) as c:
        c.send("MAIL FROM:<a@example.org>\r\n" + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "RSET\r\n")
        got = [r.code for r in c.replies(len(want) + 2)]
        assert got == [250] + want + [250]


# --- STARTTLS (RFC 3207) ---------------------------------------------------------------------
def test_starttls_injection(server):
    """Commands sent in clear after STARTTLS, in the same packet, must not
    be executed (and answered) inside the TLS session (CVE-2011-0411)."""
    with session(server) as c:
        c.send("STARTTLS\r\nRSET\r\n")
        r = c.reply()
        assert r.code == 220, r
        assert c.buf == b"", "more replies in clear after 220: %r" % c.buf
        clear = c.pending(0.5)
        assert clear == b"", "the server sent %r in clear after the STARTTLS 220" % clear
        c.wrap_tls()
        extra = c.pending(1.0)
        assert extra is not None, "the server closed the connection after the handshake"
        assert extra == b"", "injected command answered inside TLS: %r" % extra
        r = c.ehlo()
        assert r.lines[0].split()[0] == "mx.example.test", "not the EHLO reply: %r" % r
        c.expect(250, "NOOP")


def test_starttls_injection_mail_transaction(server):
    tok = token()
    with session(server) as c:
        c.send("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\n")
        c.expect(220)
        assert c.pending(0.3) == b""
        c.wrap_tls()
        assert c.pending(0.5) == b""
        c.ehlo()
        # The injected MAIL must not have opened a transaction.
        r = c.cmd("DATA")
        assert r.code == 503, "DATA after injected MAIL/RCPT: %r" % r
        c.expect(250, "MAIL FROM:<good@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(make_message(tok) + b".\r\n")
        c.expect(250)
    assert server.find(BOB, tok) == []
    assert split_trace(one(server, ALICE, tok))[0] == b"Return-Path: <good@example.org>"


def test_starttls_resets_session(server):
    with session(server) as c:
        c.starttls()
        # RFC 3207 4.2: the client's EHLO is forgotten.
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert r.code == 503, "MAIL before EHLO after STARTTLS: %r" % r
        r = c.ehlo()
        assert not any(l.upper().startswith("STARTTLS") for l in r.lines), r
        r = c.cmd("STARTTLS")
        assert r.code in (503, 554), "STARTTLS inside TLS: %r" % r
        c.expect(250, "NOOP")


def test_starttls_during_transaction(server):
    with session(server) as c:
        c.expect(250, "MAIL FROM:<a@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        r = c.cmd("STARTTLS")
        if r.code == 220:
            c.wrap_tls()
            c.ehlo()
            r = c.cmd("DATA")
            assert r.code == 503, "the transaction survived STARTTLS: %r" % r
        else:
            assert r.code == 503, r  # refused while a transaction is open (as Postfix does)
            c.expect(250, "RSET")
            c.starttls()
            c.ehlo()
        c.expect(250, "NOOP")


def test_quit_inside_tls(server):
    with session(server) as c:
        c.starttls()
        c.ehlo()
        r = c.cmd("QUIT")
        assert r.code == 221, r
        c.wait_closed(5)


def test_starttls_garbage_handshake(server):
    with session(server) as c:
        c.expect(220, "STARTTLS")
        c.send(bytes(random.Random(7).randrange(256) for _ in range(2000)))
        try:
            c.wait_closed(10)
        except (ConnectionResetError, BrokenPipeError):
            pass
    with session(server) as c:
        c.expect(250, "NOOP")


def test_starttls_with_parameter_and_tls12(server):
    with session(server) as c:
        r = c.cmd("STARTTLS now")
        assert r.code == 501, r
        c.expect(220, "STARTTLS")
        c.wrap_tls(maximum=ssl.TLSVersion.TLSv1_2)
        assert c.sock.version() == "TLSv1.2"
        c.ehlo()
        c.expect(250, "NOOP")


# --- BDAT (RFC 3030) -----------------------------------------------------------------------
def test_bdat_chunks(server):
    tok = token()
    part1 = b"Subject: bdat " + tok.encode() + b"\r\n\r\n.leading dot stays\r\n"
    part2 = b"..two dots stay\r\n.\r\nMAIL FROM:<not@a.command>\r\n"
    part3 = b"end\r\n"
    with session(server) as c:
        c.expect(250, "MAIL FROM:<b@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        c.expect(250)
        c.send(b"BDAT %d\r\n" % len(part2) + part2)
        c.expect(250)
        c.send(b"BDAT %d LAST\r\n" % len(part3) + part3)
        c.expect(250)
        c.expect(250, "NOOP")
    assert body_of(one(server, ALICE, tok)) == part1 + part2 + part3


def test_bdat_zero_last(server):
    tok = token()
    msg = make_message(tok)
    with session(server) as c:
        c.expect(250, "MAIL FROM:<b@example.org>")
        c.expect(250, "RCPT TO:<bob@example.test>")
        c.send(b"BDAT %d\r\n" % len(msg) + msg)
        c.expect(250)
        c.expect(250, "BDAT 0 LAST")
    assert body_of(one(server, BOB, tok)) == msg


def test_bdat_pipelined_one_send(server):
    tok = token()
    msg = make_message(tok)
    half = len(msg) // 2
    with session(server) as c:
        c.send(b"MAIL FROM:<b@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
               + b"BDAT %d\r\n" % half + msg[:half]
               + b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:] + b"QUIT\r\n")
        assert codes_until_close(c) == [250, 250, 250, 250, 221]
    assert body_of(one(server, ALICE, tok)) == msg


def test_bdat_without_mail(server):
    with session(server) as c:
        # The chunk is read (and dropped) even though the command fails; its
        # content must not be taken for commands (RFC 3030 2).
        c.send(b"BDAT 6\r\nQUIT\r\n")
        r = c.reply()
        assert r.code == 503, r
        c.expect(250, "NOOP")
        c.send(b"BDAT 0 LAST\r\n")
        assert c.reply().code == 503
        c.expect(250, "NOOP")


def test_bdat_then_data_refused(server):
    tok = token()
    with session(server) as c:
        c.expect(250, "MAIL FROM:<b@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.send(b"BDAT 5\r\nabcde")
        c.expect(250)
        r = c.cmd("DATA")
        assert r.code == 503, "DATA after BDAT in one transaction: %r" % r
        c.expect(250, "RSET")
        c.expect(250, "NOOP")
    assert server.find(ALICE, tok) == []


@pytest.mark.parametrize("bad", ["BDAT", "BDAT abc", "BDAT -5", "BDAT 5x"])
def test_bdat_bad_size(server, bad):
    # The chunk size cannot be known: a syntax error, then the session goes
    # on or ends with 421 (RFC 3030 leaves the state indeterminate).
    with session(server) as c:
        c.expect(250, "MAIL FROM:<b@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        r = c.cmd(bad)
        if r.code != 421:
            assert r.code in (501, 555), "%s: %r" % (bad, r)
            r = c.cmd("RSET")
        if r.code == 421:
            c.wait_closed(5)
        else:
            assert r.code == 250, r
            c.expect(250, "NOOP")
    with session(server) as c:
        c.expect(250, "NOOP")


def test_bdat_rset_discards(server):
    tok = token()
    with session(server) as c:
        c.expect(250, "MAIL FROM:<b@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        first = b"Subject: discarded " + tok.encode() + b"\r\n\r\n"
        c.send(b"BDAT %d\r\n" % len(first) + first)
        c.expect(250)
        c.expect(250, "RSET")
        tok2 = token()
        msg = make_message(tok2)
        c.expect(250, "MAIL FROM:<b@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        c.expect(250)
    assert server.find(ALICE, tok) == []
    assert body_of(one(server, ALICE, tok2)) == msg


# --- DATA: dot-stuffing and line endings (RFC 5321 4.5.2) ------------------------------------
def test_dot_stuffing(server):
    tok = token()
    head = b"Subject: dots " + tok.encode() + b"\r\n\r\n"
    sent = head + b"..one dot\r\n....three dots\r\n..\r\n.unstuffed\r\nmiddle.dot\r\n.. \r\nend\r\n"
    want = head + b".one dot\r\n...three dots\r\n.\r\nunstuffed\r\nmiddle.dot\r\n. \r\nend\r\n"
    with session(server) as c:
        c.expect(250, "MAIL FROM:<d@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(sent + b".\r\n")
        c.expect(250)
    assert body_of(one(server, ALICE, tok)) == want


def test_dot_stuffing_first_line(server):
    tok = token()
    with session(server) as c:
        c.expect(250, "MAIL FROM:<d@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(b"..X-First: " + tok.encode() + b"\r\n\r\nbody\r\n.\r\n")
        c.expect(250)
    assert body_of(one(server, ALICE, tok)) == b".X-First: " + tok.encode() + b"\r\n\r\nbody\r\n"


def test_data_split_in_small_packets(server):
    # The end of data (CRLF.CRLF) arrives split over several packets.
    tok = token()
    msg = make_message(tok, body="x\r\n..y\r\n")
    with session(server) as c:
        c.expect(250, "MAIL FROM:<d@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        for i in range(0, len(msg)):
            c.send(msg[i:i + 1])
        for piece in (b".", b"\r", b"\n"):
            time.sleep(0.05)
            c.send(piece)
        c.expect(250)
    assert body_of(one(server, ALICE, tok)) == msg.replace(b"\r\n..y", b"\r\n.y")


def test_large_message_data_and_bdat(server):
    rnd = random.Random(99)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = [bytes(rnd.choice(alphabet) for _ in range(76)) for _ in range(200)]
    body = b"".join(lines[i % 200] + b"\r\n" for i in range(5 * 1024 * 1024 // 78))
    t1, t2 = token(), token()
    m1 = b"Subject: big " + t1.encode() + b"\r\n\r\n" + body
    m2 = b"Subject: big " + t2.encode() + b"\r\n\r\n" + body
    with session(server) as c:
        c.expect(250, "MAIL FROM:<big@example.org> SIZE=%d" % len(m1))
        c.expect(250, "RCPT TO:<bob@example.test>")
        c.expect(354, "DATA")
        c.send(m1 + b".\r\n")
        c.expect(250)
        c.expect(250, "MAIL FROM:<big@example.org>")
        c.expect(250, "RCPT TO:<bob@example.test>")
        step = 1 << 20
        for i in range(0, len(m2), step):
            part = m2[i:i + step]
            last = b" LAST" if i + step >= len(m2) else b""
            c.send(b"BDAT %d%s\r\n" % (len(part), last) + part)
            c.expect(250)
    assert body_of(one(server, BOB, t1)) == m1
    assert body_of(one(server, BOB, t2)) == m2


def test_empty_message(server):
    with session(server) as c:
        c.expect(250, "MAIL FROM:<empty@example.org>")
        c.expect(250, "RCPT TO:<bob@example.test>")
        c.expect(354, "DATA")
        before = len(server.messages(BOB))
        c.send(b".\r\n")
        c.expect(250)
    msgs = server.messages(BOB)
    assert len(msgs) == before + 1
    rp, received, rest = split_trace(msgs[-1])
    assert rp == b"Return-Path: <empty@example.org>"
    assert rest == b""


def test_bare_lf_and_cr_stored_as_crlf(server):
    tok = token()
    sent = (b"Subject: bare " + tok.encode() + b"\n\nline with bare LF\nline with bare CR\r"
            b"mixed\r\r\nlast\r\n")
    with session(server) as c:
        c.expect(250, "MAIL FROM:<d@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(sent + b".\r\n")
        c.expect(250)
    stored = one(server, ALICE, tok)
    assert not has_bare_lf_or_cr(stored), stored
    body = body_of(stored)
    assert body.startswith(b"Subject: bare " + tok.encode() + b"\r\n\r\nline with bare LF\r\n"
                           b"line with bare CR\r\nmixed\r\n"), body
    assert body.endswith(b"last\r\n")


SMUGGLING_SEPARATORS = {
    "lf.lf": b"\n.\n",
    "crlf.lf": b"\r\n.\n",
    "lf.crlf": b"\n.\r\n",
    "cr.cr": b"\r.\r",
    "crlf.cr": b"\r\n.\r",
    "cr.crlf": b"\r.\r\n",
    "crlf.crcrlf": b"\r\n.\r\r\n",
}


@pytest.mark.parametrize("sep", list(SMUGGLING_SEPARATORS), ids=list(SMUGGLING_SEPARATORS))
def test_smtp_smuggling(server, sep):
    """Only CRLF.CRLF ends DATA: a message with a false end followed by a
    second transaction is stored as ONE message and the second
    transaction never happens (SMTP smuggling, 2023)."""
    tok = token()
    fake = (b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"From: ceo@example.test\r\nSubject: smuggled " + tok.encode() + b"\r\n\r\nsmuggled body")
    msg = b"Subject: outer " + tok.encode() + b"\r\n\r\nline one" + SMUGGLING_SEPARATORS[sep] + fake
    with session(server) as c:
        c.expect(250, "MAIL FROM:<d@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(msg + b"\r\n.\r\nQUIT\r\n")
        codes = codes_until_close(c)
    assert codes == [250, 221], "replies after the data: %r (a smuggled transaction?)" % codes
    assert server.find(BOB, tok) == [], "the smuggled message reached bob"
    stored = one(server, ALICE, tok)
    assert b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n" in stored
    assert b"smuggled body\r\n" in stored
    assert not has_bare_lf_or_cr(stored)


@pytest.mark.parametrize("sep", ["lf.lf", "crlf.lf", "lf.crlf"])
def test_smtp_smuggling_in_bdat(server, sep):
    tok = token()
    chunk = (b"Subject: outer " + tok.encode() + b"\r\n\r\nline" + SMUGGLING_SEPARATORS[sep]
             + b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.\r\n")
    with session(server) as c:
        c.expect(250, "MAIL FROM:<d@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"QUIT\r\n")
        assert codes_until_close(c) == [250, 221]
    assert server.find(BOB, tok) == []
    assert len(server.find(ALICE, tok)) == 1


# --- line lengths (RFC 5321 4.5.3.1) ---------------------------------------------------------
def test_command_line_limit_boundary(server):
    with session(server) as c:
        line = "NOOP " + "x" * (512 - 2 - 5)
        assert len(line) + 2 == 512
        c.expect(250, line)
        r = c.cmd(line + "y")
        assert r.code == 500 and r.lines[-1].startswith("5.5.2"), r
        c.expect(250, "NOOP")


def test_overlong_command_line_session_continues(server):
    with session(server) as c:
        r = c.cmd("MAIL FROM:<" + "a" * 600 + "@example.org>")
        assert r.code == 500 and r.lines[-1].startswith("5.5.2"), r
        # And a line of 200 kB: one error, no crash, no endless buffering.
        c.send(b"HELO " + b"h" * 200000 + b"\r\n")
        r = c.reply()
        assert r.code == 500 and r.lines[-1].startswith("5.5.2"), r
        c.expect(250, "NOOP")
        assert c.pending(0.3) == b""
        tok = token()
        c.expect(250, "MAIL FROM:<a@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(make_message(tok) + b".\r\n")
        c.expect(250)
    assert len(server.find(ALICE, tok)) == 1


def test_path_too_long(server):
    with session(server) as c:
        r = c.cmd("MAIL FROM:<" + "a" * 65 + "@example.org>")  # local part > 64
        assert r.code in (501, 553), r
        r = c.cmd("MAIL FROM:<a@" + ".".join(["d" * 60] * 5) + ".org>")  # domain > 255
        assert r.code in (501, 553), r
        c.expect(250, "MAIL FROM:<a@example.org>")
        r = c.cmd("RCPT TO:<" + "a" * 65 + "@example.test>")
        assert r.code in (501, 553, 550), r
        c.expect(250, "RCPT TO:<alice@example.test>")


def test_text_line_limit(server):
    tok_ok, tok_bad = token(), token()
    ok = make_message(tok_ok, body="a" * 998 + "\r\n")            # 1000 with CRLF: allowed
    bad = make_message(tok_bad, body="b" * 999 + "\r\nmore\r\n")  # 1001: too long
    with session(server) as c:
        c.expect(250, "MAIL FROM:<t@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(ok + b".\r\n")
        c.expect(250)
        c.expect(250, "MAIL FROM:<t@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(bad + b".\r\n")
        r = c.reply()
        assert r.code == 500 and r.lines[-1].startswith("5.5.2"), r
        assert c.pending(0.3) == b"", "more than one reply to the long-line message"
        # The transaction is over; the session goes on.
        c.expect(250, "MAIL FROM:<t@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(250, "RSET")
    assert body_of(one(server, ALICE, tok_ok)) == ok
    assert server.find(ALICE, tok_bad) == []


def test_huge_text_line(server):
    tok = token()
    with session(server) as c:
        c.expect(250, "MAIL FROM:<t@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(b"Subject: " + tok.encode() + b"\r\n\r\n" + b"z" * 3000000 + b"\r\n.\r\n")
        r = c.reply()
        assert r.code == 500 and r.lines[-1].startswith("5.5.2"), r
        c.expect(250, "NOOP")
    assert server.find(ALICE, tok) == []


# --- garbage -------------------------------------------------------------------------------
def test_binary_garbage(server):
    rnd = random.Random(1234)
    junk = bytes(rnd.randrange(256) for _ in range(65536)) + b"\x00" * 1000 + b"\r\n"
    with RawSMTP(server.smtp_port) as c:
        c.greeting()
        try:
            c.send(junk)
            data = c.wait_closed(15)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        except AssertionError:
            # Still open: fine, as long as what came is well formed.
            data = c.buf + (c.pending(0.5) or b"")
        for line in data.split(b"\r\n"):
            if line:
                assert helpers.REPLY_LINE.match(line), "malformed reply line %r" % line[:200]
    # The server keeps serving.
    tok = token()
    with session(server) as c:
        c.expect(250, "MAIL FROM:<g@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(make_message(tok) + b".\r\n")
        c.expect(250)
    assert len(server.find(ALICE, tok)) == 1


def test_nul_in_command(server):
    with session(server) as c:
        r = c.cmd(b"NO\x00OP")
        assert r.code in (500, 501), r
        r = c.cmd(b"MAIL FROM:<a\x00b@example.org>")
        assert 500 <= r.code < 600, r
        c.expect(250, "NOOP")


def test_nul_in_data(server):
    tok = token()
    msg = make_message(tok, body="before\x00after\r\n")
    with session(server) as c:
        c.expect(250, "MAIL FROM:<n@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(msg + b".\r\n")
        r = c.reply()
        assert r.code == 250 or 500 <= r.code < 600, r
        c.expect(250, "NOOP")
    found = server.find(ALICE, tok)
    if r.code == 250:
        assert len(found) == 1 and body_of(found[0]) == msg
    else:
        assert found == []


def test_tls_client_hello_on_plain_port(server):
    # A client that speaks TLS at once (implicit TLS) to the plain port.
    ctx = helpers.unverified_tls_context()
    raw = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=10)
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            s = ctx.wrap_socket(raw, server_hostname="mx.example.test")
            s.close()
    finally:
        raw.close()
    with session(server) as c:
        c.expect(250, "NOOP")


def test_client_disconnects_during_data(server):
    tok = token()
    c = session(server)
    c.expect(250, "MAIL FROM:<gone@example.org>")
    c.expect(250, "RCPT TO:<alice@example.test>")
    c.expect(354, "DATA")
    c.send(make_message(tok) + b"and then the client vanishes")
    c.close()
    time.sleep(0.5)
    assert server.find(ALICE, tok) == []
    with session(server) as c:
        c.expect(250, "NOOP")


def test_many_connections_at_once(server):
    conns = []
    try:
        for _ in range(30):
            c = RawSMTP(server.smtp_port)
            conns.append(c)
        for c in conns:
            c.greeting()
        toks = []
        for i, c in enumerate(conns):
            t = token()
            toks.append(t)
            c.send(b"EHLO m.example.org\r\nMAIL FROM:<m@example.org>\r\nRCPT TO:<bob@example.test>\r\n"
                   b"DATA\r\n" + make_message(t) + b".\r\n")
        for c in conns:
            codes = [c.reply().code for _ in range(5)]
            assert codes == [250, 250, 250, 354, 250], codes
    finally:
        for c in conns:
            c.close()
    for t in toks:
        assert len(server.find(BOB, t)) == 1


# --- size limit (RFC 1870) ---------------------------------------------------------------------
def test_size_advertised(limits):
    with RawSMTP(limits.smtp_port) as c:
        c.greeting()
        r = c.ehlo()
        assert "SIZE 100000" in r.lines, r


def test_size_parameter_too_big(limits):
    with session(limits) as c:
        r = c.cmd("MAIL FROM:<s@example.org> SIZE=200000")
        assert r.code == 552 and r.lines[-1].startswith("5.3.4"), r
        c.expect(250, "MAIL FROM:<s@example.org> SIZE=1000")
        c.expect(250, "RSET")
        r = c.cmd("MAIL FROM:<s@example.org> SIZE=abc")
        assert r.code in (501, 555), r


def test_data_too_big(limits):
    big_tok, small_tok = token(), token()
    big = make_message(big_tok, body=("y" * 70 + "\r\n") * 2100)   # ~151 kB
    small = make_message(small_tok, body=("s" * 70 + "\r\n") * 700)  # ~50 kB
    with session(limits) as c:
        c.expect(250, "MAIL FROM:<s@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(big + b".\r\n")
        r = c.reply()
        assert r.code == 552 and r.lines[-1].startswith("5.3.4"), r
        # The whole body was read: the next reply is the NOOP's.
        c.expect(250, "NOOP")
        assert c.pending(0.3) == b""
        c.expect(250, "MAIL FROM:<s@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(small + b".\r\n")
        c.expect(250)
    assert limits.find(ALICE, big_tok) == []
    assert body_of(one(limits, ALICE, small_tok)) == small


def test_bdat_too_big(limits):
    tok = token()
    big = make_message(tok, body=("y" * 70 + "\r\n") * 2100)
    with session(limits) as c:
        c.expect(250, "MAIL FROM:<s@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.send(b"BDAT %d LAST\r\n" % len(big) + big)
        r = c.reply()
        assert r.code == 552 and r.lines[-1].startswith("5.3.4"), r
        c.expect(250, "RSET")
        c.expect(250, "NOOP")
    assert limits.find(ALICE, tok) == []


def test_bdat_too_big_over_chunks(limits):
    tok = token()
    chunk = b"c" * 60000
    with session(limits) as c:
        c.expect(250, "MAIL FROM:<s@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.send(b"BDAT 60000\r\n" + chunk)
        c.expect(250)
        c.send(b"BDAT 60000 LAST\r\n" + chunk)
        r = c.reply()
        assert r.code == 552 and r.lines[-1].startswith("5.3.4"), r
        c.expect(250, "RSET")
        c.expect(250, "NOOP")


def test_expn_enabled(limits):
    with session(limits) as c:
        r = c.cmd("EXPN staff")
        assert r.code != 502 and r.code in (250, 252, 550, 553), "EXPN with smtp.expn=yes: %r" % r
        c.expect(250, "NOOP")


# --- recipient limit ---------------------------------------------------------------------------
def test_recipient_limit(limits):
    tok = token()
    msg = make_message(tok)
    with session(limits) as c:
        c.expect(250, "MAIL FROM:<r@example.org>")
        for r in (ALICE, BOB, "carol@example2.test"):
            c.expect(250, "RCPT TO:<%s>" % r)
        r = c.cmd("RCPT TO:<dave@example.test>")
        assert r.code == 452 and r.lines[-1].startswith("4.5.3"), r
        c.expect(354, "DATA")
        c.send(msg + b".\r\n")
        c.expect(250)
    for r in (ALICE, BOB, "carol@example2.test"):
        assert body_of(one(limits, r, tok)) == msg
    assert limits.find("dave@example.test", tok) == []


# --- error limit and idle timeout -------------------------------------------------------------
def test_error_limit(strict):
    with session(strict) as c:
        codes = []
        try:
            for i in range(6):
                codes.append(c.cmd("BOGUS%d" % i).code)
                if codes[-1] == 421:
                    break
        except (Closed, OSError):
            pass
        assert 421 in codes, "no 421 after %d errors: %r" % (len(codes), codes)
        assert codes.index(421) <= 3, "421 came after too many errors: %r" % codes
        assert all(x == 500 for x in codes[:codes.index(421)]), codes
        assert c.wait_closed(5) == b""


def test_error_count_resets_per_session(strict):
    for _ in range(2):
        with session(strict) as c:
            assert c.cmd("BOGUS").code == 500
            assert c.cmd("BOGUS").code == 500
            c.expect(250, "NOOP")


def test_idle_timeout(strict):
    with RawSMTP(strict.smtp_port) as c:
        c.greeting()
        t0 = time.monotonic()
        r = c.reply()
        elapsed = time.monotonic() - t0
        assert r.code == 421 and r.lines[-1].startswith("4.4.2"), r
        assert 1.5 <= elapsed <= 6, "timeout after %.1f s (smtp.timeout=2)" % elapsed
        assert c.wait_closed(5) == b""


def test_idle_timeout_in_data(strict):
    tok = token()
    with session(strict) as c:
        c.expect(250, "MAIL FROM:<i@example.org>")
        c.expect(250, "RCPT TO:<alice@example.test>")
        c.expect(354, "DATA")
        c.send(make_message(tok))
        t0 = time.monotonic()
        r = c.reply()
        assert r.code == 421 and r.lines[-1].startswith("4.4.2"), r
        assert time.monotonic() - t0 <= 6
        c.wait_closed(5)
    assert strict.find(ALICE, tok) == []


def test_activity_keeps_session(strict):
    with session(strict) as c:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            time.sleep(1)
            c.expect(250, "NOOP")


# --- connections per address --------------------------------------------------------------------
def test_connections_per_ip(perip):
    conns = []
    try:
        for _ in range(3):
            c = RawSMTP(perip.smtp_port)
            conns.append(c)
            c.greeting()
        fourth = RawSMTP(perip.smtp_port)
        conns.append(fourth)
        r = fourth.reply()
        assert r.code == 421 and r.lines[-1].startswith("4.7.0"), r
        fourth.wait_closed(5)
        # The three keep working.
        for c in conns[:3]:
            c.expect(250, "NOOP")
        # When one leaves, a new one is welcome.
        conns[0].expect(221, "QUIT")
        conns[0].wait_closed(5)
        deadline = time.monotonic() + 5
        while True:
            c = RawSMTP(perip.smtp_port)
            conns.append(c)
            r = c.reply()
            if r.code == 220:
                break
            assert time.monotonic() < deadline, "still refused after a connection closed: %r" % r
            time.sleep(0.2)
        c.expect(250, "NOOP")
    finally:
        for c in conns:
            c.close()
