"""IMAP bad input and limits: garbage, unknown commands, commands in the wrong
state, long lines, oversized literals, literals split across packets, input
one byte at a time, pipelining, STARTTLS injection, too many connections.
Every case gets the RFC's answer and the session (and server) goes on."""
import re
import socket
import ssl
import time

import pytest

from helpers import (Closed, Literal, RawIMAP, imap_raw, make_message, new_account, quote, token,
                     unverified_tls_context)

ALICE = "alice@example.test"
APPEND_LIMIT = 100000


@pytest.fixture(scope="module")
def strict(module_make_server):
    return module_make_server(settings={"imap.max_bad_commands": "5", "imap.max_line": "2048",
                                        "imap.append_limit": str(APPEND_LIMIT)}, name="strict")


@pytest.fixture
def strict_server(strict):
    import helpers
    yield from helpers.guard(strict)


def fetch_body(c, seq="1"):
    r = c.ok("FETCH %s BODY.PEEK[]" % seq)
    f = dict(r.fetches())
    return f[int(seq)]["BODY[]"]


# --- garbage, unknown commands, wrong state -------------------------------------------------------
def test_unknown_commands_and_garbage_get_bad(server):
    wrong = []
    for login in (False, True):
        with imap_raw(server, ALICE if login else None, tls=login) as c:
            for cmd in ("FROBNICATE", "NOOP extra arguments", "CAPABILITY x", "LOGIN onlyoneargument",
                        "UID NOOP", "UID", "SELECT", "FETCH"):
                r = c.cmd(cmd)
                if r.status != "BAD":
                    wrong.append("%s%s -> %s" % ("(logged in) " if login else "", cmd, r.tagged))
            # lines without a usable tag: an untagged (or tagged) BAD, the session goes on
            for junk in (b"garbage", b"\x00\xff\xfe\x01 NOOP", b"(((", b"* NOOP", b"+ NOOP",
                         b'"quoted" NOOP', b"a{1} NOOP", b" NOOP"):
                c.send(junk + b"\r\n")
                resp = c.response()
                if not (b" BAD" in resp[:40] or resp.startswith(b"* BAD")):
                    wrong.append("%r -> %r" % (junk, resp))
            c.ok("NOOP")
            r = c.cmd("CAPABILITY")
            assert r.ok
            r = c.cmd("LOGOUT now")
            if r.status != "BAD":
                wrong.append("%sLOGOUT now -> %s" % ("(logged in) " if login else "", r.tagged))
    assert not wrong, "want BAD (RFC 3501 grammar) for:\n" + "\n".join(wrong)


def test_commands_in_the_wrong_state(server):
    with imap_raw(server, tls=True) as c:  # not authenticated
        for cmd in ("SELECT INBOX", "EXAMINE INBOX", "LIST \"\" *", "CREATE x", "STATUS INBOX (MESSAGES)",
                    "APPEND INBOX {1+}\r\nx", "IDLE", "ENABLE CONDSTORE", "NAMESPACE", "FETCH 1 FLAGS",
                    "UNSELECT", "CLOSE", "EXPUNGE"):
            r = c.cmd(cmd)
            assert r.status == "BAD", "%s before login: %r" % (cmd.split("\r")[0], r)
        r = c.cmd("STARTTLS")
        assert r.status == "BAD", "STARTTLS on the implicit-TLS port: %r" % r
        c.ok("NOOP")
    with imap_raw(server, ALICE) as c:  # authenticated, nothing selected
        for cmd in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "EXPUNGE", "CLOSE", "UNSELECT",
                    "COPY 1 Trash", "MOVE 1 Trash", "UID FETCH 1 FLAGS", "UID SEARCH ALL", "UID EXPUNGE 1",
                    "CHECK", "LOGIN a b", "AUTHENTICATE PLAIN"):
            r = c.cmd(cmd)
            assert r.status == "BAD", "%s when nothing is selected: %r" % (cmd, r)
        c.ok("SELECT INBOX")
        r = c.cmd("LOGIN %s x" % ALICE)
        assert r.status == "BAD", r
        c.ok("NOOP")


def test_max_bad_commands_ends_the_session(strict_server):
    with imap_raw(strict_server, ALICE) as c:
        for i in range(4):
            r = c.cmd("BOGUS%d" % i)
            assert r.status == "BAD", r
        c.ok("NOOP")
        c.send("t99 BOGUS\r\n")
        rest = c.wait_closed(10)
        assert b"t99 BAD" in rest and b"* BYE" in rest, \
            "the 5th BAD with imap.max_bad_commands=5: want BAD then * BYE and close, got %r" % rest
    with imap_raw(strict_server, tls=False) as c:  # also before login
        for i in range(4):
            assert c.cmd("NOPE").status == "BAD"
        c.send("t99 NOPE\r\n")
        rest = c.wait_closed(10)
        assert b"* BYE" in rest, rest


def test_line_too_long(strict_server):
    with imap_raw(strict_server, ALICE) as c:
        c.send("t1 NOOP " + "x" * 5000 + "\r\n")
        resp = c.response()
        assert resp.startswith(b"t1 BAD") or resp.startswith(b"* BAD"), resp
        r = c.cmd("NOOP")
        assert r.ok, "session after a too long line: %r" % r
        # a line just under the limit is fine
        c.ok("SELECT INBOX")
        r = c.cmd("SEARCH SUBJECT " + quote("y" * 1900))
        assert r.ok, r
        # literals do not count toward the line length
        r = c.command("SEARCH SUBJECT", Literal("z" * 3000))
        assert r.ok, r


def test_append_literal_too_big(strict_server):
    with imap_raw(strict_server, ALICE) as c:
        caps = c.ok("CAPABILITY").starting("* CAPABILITY")[0].split()
        assert b"APPENDLIMIT=%d" % APPEND_LIMIT in caps, caps
        before = c.ok("STATUS INBOX (MESSAGES)").starting("* STATUS")[0]
        c.send("t1 APPEND INBOX {%d}\r\n" % (APPEND_LIMIT + 1))
        resp = c.response()
        assert resp.startswith(b"t1 NO [TOOBIG]"), "synchronizing literal over APPENDLIMIT: want NO [TOOBIG], got %r" % resp
        c.ok("NOOP")
        # right at the limit: accepted
        msg = make_message(token("big"), body="a" * 70 + "\r\n")
        msg += b"b" * (APPEND_LIMIT - len(msg) - 2) + b"\r\n"
        assert len(msg) == APPEND_LIMIT
        r = c.append("INBOX", msg)
        assert r.ok, r
        # a non-synchronizing literal over the limit (RFC 7888 4): TOOBIG, and its
        # bytes never run as commands
        box = "injected-" + token()
        payload = (b"x1 CREATE %s\r\n" % box.encode()) * ((APPEND_LIMIT + 5000) // 40)
        try:
            c.send(b"t2 APPEND INBOX {%d+}\r\n" % len(payload))
            c.send(payload + b"\r\n")
        except OSError:
            pass  # the server may close at once; it must have answered first
        try:
            resp = c.wait_response(rb"t2 |\* BYE", timeout=10)[0]
        except Closed as e:
            raise AssertionError("non-synchronizing literal over APPENDLIMIT: closed without"
                                 " a TOOBIG answer (RFC 7888 4): %s" % e)
        if resp.startswith(b"t2 "):
            assert resp.startswith((b"t2 NO", b"t2 BAD")), resp
            try:
                r = c.cmd("NOOP")
                assert r.ok, r
            except Closed:
                pass  # closing after the answer is allowed
    with imap_raw(strict_server, ALICE) as c:
        r = c.ok('LIST "" "injected-*"')
        assert not r.starting("* LIST"), "literal data ran as commands: %r" % r
        after = c.ok("STATUS INBOX (MESSAGES)").starting("* STATUS")[0]
        assert int(after.split()[-1].rstrip(b")")) == int(before.split()[-1].rstrip(b")")) + 1, (before, after)


def test_literals_before_login(server):
    with imap_raw(server) as c:
        c.send("t1 LOGIN {9000}\r\n")
        resp = c.response()
        assert resp.startswith(b"t1 BAD") or resp.startswith(b"t1 NO"), \
            "a big literal before login: want BAD/NO, got %r" % resp
        c.ok("NOOP")
        # a user name and password as literals (some clients send them so)
        r = c.command("LOGIN", Literal(ALICE), Literal("correct horse battery"))
        assert r.ok, r
        c.ok("SELECT INBOX")


@pytest.mark.parametrize("line", [
    b"t1 LOGIN {abc}", b"t1 LOGIN {-1}", b"t1 LOGIN {1", b"t1 LOGIN {99999999999999999999999}",
    b"t1 FETCH 0 FLAGS", b"t1 FETCH 4294967296 FLAGS", b"t1 FETCH 1:x FLAGS", b"t1 FETCH , FLAGS",
    b"t1 SELECT \"unterminated", b"t1 SELECT \"a\\q\"", b"t1 LIST \"\" \"a\x01\"",
    b"t1 FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30.31.32]",
    b"t1 SEARCH " + b"(" * 200 + b"ALL" + b")" * 200,
    b"t1 SEARCH " + b"NOT " * 500 + b"ALL",
    b"t1 STORE 1 FLAGS (" + b"\\Seen " * 1000 + b")",
])
def test_malformed_arguments(server, line):
    """Each gets a tagged BAD or NO (or a server-side answer), the session goes on."""
    with imap_raw(server, ALICE) as c:
        c.ok("SELECT INBOX")
        c.send(line + b"\r\n")
        resp, _ = c.wait_response(rb"t1 |\+ |\* BAD|\* BYE")
        if resp.startswith(b"+"):  # a literal was accepted: finish it
            c.send(b"x" * 10 + b"\r\n")
            resp, _ = c.wait_response(rb"t1 ")
        assert not resp.startswith(b"* BYE"), "%r ended the session: %r" % (line[:60], resp)
        assert resp.startswith((b"t1 BAD", b"t1 NO", b"t1 OK", b"* BAD")), resp
        r = c.cmd("NOOP")
        assert r.ok, "after %r: %r" % (line[:60], r)


# --- literals and input in pieces ---------------------------------------------------------------
def send_slowly(c, data, step, pause=0.005):
    for i in range(0, len(data), step):
        c.send(data[i:i + step])
        time.sleep(pause)


def test_literal_split_across_packets(server):
    acct = new_account(server)
    msg = make_message(token("split"), body="line one\r\nline two\r\n" * 50)
    with imap_raw(server, acct) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # synchronizing: the command line in two pieces, the literal in many
        c.send(b"t1 APPEND INBOX (\\Seen) {")
        time.sleep(0.05)
        c.send(b"%d}\r\n" % len(msg))
        cont = c.response()
        assert cont.startswith(b"+"), cont
        send_slowly(c, msg, 97)
        time.sleep(0.05)
        c.send(b"\r")
        time.sleep(0.05)
        c.send(b"\n")
        r = c.read_tagged("t1")
        assert r.ok, r
        # non-synchronizing, cut inside the {n+} and inside CRLFs
        whole = b"t2 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n"
        send_slowly(c, whole, 13)
        r = c.read_tagged("t2")
        assert r.ok, r
        c.ok("SELECT INBOX")
        assert fetch_body(c, "1") == msg
        assert fetch_body(c, "2") == msg


def test_one_byte_at_a_time(server):
    acct = new_account(server)
    msg = make_message(token("byte"))
    c = RawIMAP(server.imap_port)
    try:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_slowly(c, b"t1 CAPABILITY\r\n", 1, 0.002)
        r = c.read_tagged("t1")
        assert r.ok and r.starting("* CAPABILITY"), r
        send_slowly(c, b"t2 STARTTLS\r\n", 1, 0.002)
        r = c.read_tagged("t2")
        assert r.ok, r
        c.wrap_tls()
        for line in (b"t3 LOGIN %s %s\r\n" % (quote(acct).encode(), b'"correct horse battery"'),
                     b"t4 SELECT INBOX\r\n",
                     b"t5 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n",
                     b"t6 FETCH 1 (BODY.PEEK[] FLAGS)\r\n",
                     b"t7 IDLE\r\n"):
            tag = line.split()[0].decode()
            send_slowly(c, line, 1, 0.001)
            if tag == "t7":
                assert c.response().startswith(b"+"), "IDLE"
                send_slowly(c, b"DONE\r\n", 1, 0.002)
            r = c.read_tagged(tag)
            assert r.ok, r
            if tag == "t6":
                assert dict(r.fetches())[1]["BODY[]"] == msg
        send_slowly(c, b"t8 LOGOUT\r\n", 1, 0.002)
        r = c.read_tagged("t8")
        assert r.ok and r.starting("* BYE"), r
    finally:
        c.close()


def test_pipelined_commands_are_answered_in_order(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        msg = make_message(token("pipe"))
        c.send(b"p1 NOOP\r\np2 CREATE pipebox\r\np3 APPEND pipebox {%d+}\r\n%s\r\n"
               b"p4 SELECT pipebox\r\np5 FETCH 1 BODY.PEEK[]\r\np6 STORE 1 +FLAGS (\\Flagged)\r\n"
               b"p7 BOGUS\r\np8 FETCH 1 FLAGS\r\np9 UNSELECT\r\n" % (len(msg), msg))
        results = [c.read_tagged("p%d" % i) for i in range(1, 10)]
        assert [r.status for r in results] == ["OK"] * 6 + ["BAD", "OK", "OK"], results
        assert dict(results[4].fetches())[1]["BODY[]"] == msg
        assert b"\\Flagged" in results[7].untagged[0], results[7]


def test_starttls_discards_pipelined_plaintext(server):
    """RFC 2595 3.1 / RFC 3501 6.2.1: commands sent in clear after STARTTLS,
    before the handshake, must not run afterwards (command injection)."""
    c = RawIMAP(server.imap_port)
    try:
        box = "inj-" + token()
        c.send(("t1 STARTTLS\r\nt2 LOGIN %s \"correct horse battery\"\r\nt3 CREATE %s\r\n"
                % (ALICE, box)).encode())
        resp = c.response()
        assert resp.startswith(b"t1 OK"), resp
        assert c.buf == b"", "clear-text data after the STARTTLS reply: %r" % c.buf
        c.wrap_tls()
        r = c.cmd("NOOP")
        assert r.ok and not [u for u in r.untagged if u.startswith((b"t2", b"t3"))], r
        r = c.cmd("CREATE x")
        assert r.status == "BAD", "the injected LOGIN took effect: %r" % r
        c.login(ALICE)
        r = c.ok('LIST "" %s' % quote(box))
        assert not r.starting("* LIST"), "injected CREATE ran: %r" % r
    finally:
        c.close()


@pytest.mark.parametrize("port", ["starttls", "imaps"])
def test_command_in_the_same_packet_as_the_tls_finished(server, port):
    """TLS 1.3: the client may send its first command right behind its Finished
    message, so both arrive in one read. The command must be answered (curl
    after STARTTLS does this; it hung now and then)."""
    sock = socket.create_connection(("127.0.0.1", server.imap_port if port == "starttls"
                                     else server.imaps_port), timeout=10)
    try:
        pending = b""
        if port == "starttls":
            while b"\r\n" not in pending:
                pending += sock.recv(4096)
            sock.sendall(b"t1 STARTTLS\r\n")
            while not re.search(rb"t1 OK[^\r]*\r\n", pending):
                chunk = sock.recv(4096)
                assert chunk, "closed before the STARTTLS answer: %r" % pending
                pending += chunk
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = unverified_tls_context().wrap_bio(incoming, outgoing, server_hostname="mx.example.test")
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                chunk = sock.recv(65536)
                assert chunk, "closed during the handshake"
                incoming.write(chunk)
        tls.write(b"t2 CAPABILITY\r\n")
        sock.sendall(outgoing.read())  # Finished and the command in one packet
        got = b""
        deadline = time.monotonic() + 5
        while b"t2 " not in got:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise AssertionError("no answer to a command sent with the TLS Finished (%s): got %r"
                                     % (port, got))
            assert chunk, "closed: %r" % got
            incoming.write(chunk)
            try:
                while True:
                    got += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
        assert re.search(rb"(?m)^t2 OK", got), got
    finally:
        sock.close()


def test_client_vanishes_mid_command(server):
    """Connections cut mid-literal, mid-line, mid-handshake and mid-IDLE: the
    server stays up (and the guard finds no sanitizer report)."""
    with imap_raw(server, ALICE) as c:
        c.send(b"t1 APPEND INBOX {1000}\r\n")
        c.response()
        c.send(b"x" * 100)
    with imap_raw(server, ALICE) as c:
        c.send(b"t1 APPEND INBOX {1000+}\r\n" + b"x" * 500)
    with imap_raw(server, ALICE) as c:
        c.send(b"t1 FETCH 1:* (BODY[")
    with imap_raw(server, ALICE) as c:
        c.ok("SELECT INBOX")
        c.send(b"t9 IDLE\r\n")
        c.response()
    s = socket.create_connection(("127.0.0.1", server.imaps_port), timeout=5)
    s.send(b"\x16\x03\x01\x00\x05hello")  # a broken ClientHello
    s.close()
    c = RawIMAP(server.imap_port)
    c.send(b"t1 STARTTLS\r\n")
    c.response()
    c.sock.send(b"\x16\x03\x01\x02\x00" + b"\x01" * 50)
    c.close()
    time.sleep(0.3)
    with imap_raw(server, ALICE) as c:
        c.ok("NOOP")


def test_connections_per_ip_limit(make_server):
    srv = make_server(settings={"imap.max_connections_per_ip": "3"})
    conns = [RawIMAP(srv.imap_port) for _ in range(3)]
    try:
        extra = RawIMAP(srv.imap_port, greeting=False)
        got = extra.wait_closed(10)
        assert got.startswith(b"* BYE"), "4th connection with max_connections_per_ip=3: %r" % got
        extra.close()
        conns.pop().close()
        deadline = time.monotonic() + 5
        while True:
            c = RawIMAP(srv.imap_port, greeting=False)
            first = c.response()
            if first.startswith(b"* OK") or time.monotonic() > deadline:
                break
            c.close()
            time.sleep(0.1)
        assert first.startswith(b"* OK"), "a slot freed by a closed connection: %r" % first
        conns.append(c)
        assert conns[0].cmd("NOOP").ok
    finally:
        for c in conns:
            c.close()
