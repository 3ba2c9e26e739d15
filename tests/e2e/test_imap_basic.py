"""IMAP4rev1 (RFC 3501) and its extensions, command by command, with Python's
imaplib and a raw client (helpers.RawIMAP) over IMAPS (993+N) and STARTTLS
(143+N). Every test works in an account or mailbox of its own, so the tests
do not see each other's messages."""
import base64
import datetime
import email.policy
import re
import time
from email.charset import QP, Charset
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import imaplib
import pytest

from helpers import (DEFAULT_PASSWORD, IMAP_CAPS, SPECIAL_USE, Literal, apply_expunges, fetch1, flags_of,
                     imap_parse, imap_raw, imap_ssl, imap_starttls, make_message, new_account, parse_uidset,
                     quote, select_info, smtp_deliver, status, token, unverified_tls_context)

ALICE = "alice@example.test"


# --- helpers --------------------------------------------------------------------------------------
def caps_of(line):
    """The capability names in '* CAPABILITY ...' or '* OK [CAPABILITY ...] ...' (upper case)."""
    if isinstance(line, bytes):
        line = line.decode()
    m = re.search(r"\[CAPABILITY ([^\]]*)\]", line)
    words = m.group(1) if m else line.split("CAPABILITY", 1)[1]
    return set(w.upper() for w in words.split())


def capability(c):
    r = c.ok("CAPABILITY")
    lines = r.starting("* CAPABILITY ")
    assert len(lines) == 1, r
    return caps_of(lines[0])


def new_mailbox(c, prefix="box"):
    name = "%s-%s" % (prefix, token("m"))
    c.ok("CREATE %s" % quote(name))
    return name


def append_all(c, mailbox, msgs, flags=None):
    """APPEND each message; returns their UIDs (from APPENDUID)."""
    uids = []
    for m in msgs:
        r = c.append(mailbox, m, flags=flags)
        assert r.ok, "APPEND: %r" % r
        code = r.code_of("APPENDUID")
        assert code, "APPEND without APPENDUID (RFC 4315): %r" % r
        uids.append(int(code.split()[2]))
    return uids






def internaldate(s):
    s = s.decode() if isinstance(s, bytes) else s
    return datetime.datetime.strptime(s.strip(), "%d-%b-%Y %H:%M:%S %z")


def header_entity(entity):
    i = entity.find(b"\r\n\r\n")
    assert i >= 0, entity[:200]
    return entity[:i + 4], entity[i + 4:]


def boundary_of(header):
    unfolded = re.sub(rb"\r\n[ \t]", b" ", header)
    m = re.search(rb'boundary="?([^";\r\n]+)"?', unfolded, re.I)
    return m.group(1) if m else None


def mime_sections(raw):
    """{section: bytes} of what BODY[section] must return, computed from the raw
    message by RFC 2046 (independent of the server): "1", "1.MIME", "3.HEADER", ..."""
    out = {}

    def walk(entity, prefix, is_message):
        header, body = header_entity(entity)
        ctype = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", header)
        ctype = ctype.group(1).strip().lower() if ctype else b"text/plain"
        if is_message:
            out[prefix + "HEADER"] = header
            out[prefix + "TEXT"] = body
        if ctype.startswith(b"multipart/"):
            b = boundary_of(header)
            pieces = (b"\r\n" + body).split(b"\r\n--" + b)
            n = 0
            for piece in pieces[1:]:
                if piece.startswith(b"--"):
                    break
                part = piece[piece.index(b"\r\n") + 2:]
                n += 1
                sec = "%s%d" % (prefix, n)
                ph, pb = header_entity(part) if b"\r\n\r\n" in part else (part, b"")
                out[sec + ".MIME"] = ph
                out[sec] = pb
                pct = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", ph)
                pct = pct.group(1).strip().lower() if pct else b"text/plain"
                if pct.startswith(b"multipart/"):
                    walk(part, sec + ".", False)
                elif pct == b"message/rfc822":
                    walk(pb, sec + ".", True)
        elif not prefix or is_message:
            out[prefix + "1"] = body

    walk(raw, "", True)
    return out


def crlf_lines(b):
    return b.count(b"\r\n") + (0 if b.endswith(b"\r\n") or not b else 1)


# --- connecting, capabilities, logging in ---------------------------------------------------------------
def test_plain_port_refuses_login_until_starttls(server):
    with imap_raw(server, tls=False) as c:
        assert c.greeting.startswith(b"* OK "), c.greeting
        greet_caps = caps_of(c.greeting) if b"[CAPABILITY" in c.greeting else None
        caps = capability(c)
        if greet_caps is not None:
            assert greet_caps == caps, "greeting and CAPABILITY differ"
        assert {"IMAP4REV1", "STARTTLS", "LOGINDISABLED"} <= caps, caps
        assert not any(x.startswith("AUTH=") for x in caps), "AUTH= offered before TLS: %r" % caps
        r = c.cmd("LOGIN %s %s" % (ALICE, quote(DEFAULT_PASSWORD)))
        assert r.status == "NO" and r.code == "PRIVACYREQUIRED", r
        r = c.cmd("AUTHENTICATE PLAIN " + base64.b64encode(
            b"\0" + ALICE.encode() + b"\0" + DEFAULT_PASSWORD.encode()).decode())
        assert r.status == "NO", r
        c.ok("NOOP")
        r = c.cmd("SELECT INBOX")
        assert r.status == "BAD", "SELECT before login: %r" % r
        c.starttls()
        caps = capability(c)
        assert "AUTH=PLAIN" in caps, caps
        assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
        r = c.cmd("STARTTLS")
        assert r.status in ("BAD", "NO"), "second STARTTLS: %r" % r
        c.login(ALICE)
        caps = capability(c)
        for cap in IMAP_CAPS:
            assert cap in caps, "%s missing after login: %r" % (cap, sorted(caps))
        assert "APPENDLIMIT=52428800" in caps, caps
        assert not {"STARTTLS", "LOGINDISABLED"} & caps, caps
        assert not any(x.startswith("AUTH=") for x in caps), caps
        r = c.cmd("LOGOUT")
        assert r.ok and r.starting("* BYE"), r
        assert c.wait_closed(5) == b""


def test_imaps_capability_and_login_codes(server):
    with imap_raw(server) as c:
        assert c.greeting.startswith(b"* OK"), c.greeting
        caps = capability(c)
        assert {"IMAP4REV1", "AUTH=PLAIN", "SASL-IR"} <= caps, caps
        assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps, caps
        r = c.login(ALICE)
        # a CAPABILITY code in the tagged OK (RFC 3501 7.1) must be the whole list
        if r.code and r.code.upper().startswith("CAPABILITY"):
            assert caps_of("[%s]" % r.code) == capability(c), \
                "CAPABILITY code in the LOGIN reply is not the full list: %r" % r.tagged
        r = c.cmd("LOGIN %s %s" % (ALICE, quote(DEFAULT_PASSWORD)))
        assert r.status == "BAD", "LOGIN when logged in: %r" % r


def test_imaplib_imaps_and_starttls(server):
    m = imap_ssl(server)
    try:
        assert "AUTH=PLAIN" in m.capabilities and "IMAP4REV1" in m.capabilities, m.capabilities
        typ, data = m.login(ALICE, DEFAULT_PASSWORD)
        assert typ == "OK", data
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        typ, data = m.noop()
        assert typ == "OK"
    finally:
        typ, data = m.logout()
    assert typ == "BYE", (typ, data)

    m = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    try:
        assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities, m.capabilities
        m.starttls(ssl_context=unverified_tls_context())
        assert "LOGINDISABLED" not in m.capabilities, m.capabilities
        typ, data = m.login(ALICE, DEFAULT_PASSWORD)
        assert typ == "OK", data
        typ, data = m.list()
        assert typ == "OK" and any(b'"INBOX"' in d or d.endswith(b" INBOX") for d in data), data
    finally:
        m.logout()


def test_bad_password_is_delayed_and_the_session_goes_on(server):
    with imap_raw(server) as c:
        for user, pw in ((ALICE, "wrong password"), ("nobody@example.test", DEFAULT_PASSWORD)):
            t0 = time.monotonic()
            r = c.cmd("LOGIN %s %s" % (quote(user), quote(pw)))
            took = time.monotonic() - t0
            assert r.status == "NO" and r.code == "AUTHENTICATIONFAILED", r
            assert took >= 0.9, "failed LOGIN answered after %.2f s (want a delay of 1 s)" % took
        c.login(ALICE)
        c.select("INBOX")


def test_imaplib_bad_password(server):
    m = imap_ssl(server)
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            m.login(ALICE, "not the password")
        assert "AUTHENTICATIONFAILED" in str(e.value), e.value
    finally:
        m.shutdown()


@pytest.mark.time_limit(60)
def test_five_failed_logins_end_the_session(server):
    with imap_raw(server) as c:
        for i in range(4):
            r = c.cmd("LOGIN %s %s" % (ALICE, quote("wrong %d" % i)))
            assert r.status == "NO" and r.code == "AUTHENTICATIONFAILED", r
        c.send("t99 LOGIN %s %s\r\n" % (ALICE, quote("wrong 5")))
        rest = c.wait_closed(20)
        assert b"* BYE" in rest, "fifth failure: want * BYE and close, got %r" % rest
    with imap_raw(server, ALICE) as c:  # the account is not locked for others
        c.ok("NOOP")


def test_authenticate_plain(server):
    ir = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + DEFAULT_PASSWORD.encode()).decode()
    with imap_raw(server) as c:  # SASL-IR (RFC 4959)
        r = c.cmd("AUTHENTICATE PLAIN " + ir)
        assert r.ok, r
        c.select("INBOX")
    with imap_raw(server) as c:  # with a continuation
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        cont = c.response()
        assert cont.startswith(b"+"), cont
        c.send(ir + "\r\n")
        r = c.read_tagged("a1")
        assert r.ok, r
    with imap_raw(server) as c:  # cancelled by the client (RFC 3501 6.2.2)
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        assert c.response().startswith(b"+")
        c.send("*\r\n")
        r = c.read_tagged("a1")
        assert r.status == "BAD", r
        r = c.cmd("AUTHENTICATE PLAIN !!notbase64!!")
        assert r.status in ("BAD", "NO"), r
        r = c.cmd("AUTHENTICATE CRAM-MD5")
        assert r.status in ("BAD", "NO"), "unknown mechanism: %r" % r
        # authorization as someone else is refused
        other = base64.b64encode(b"bob@example.test\0" + ALICE.encode() + b"\0"
                                 + DEFAULT_PASSWORD.encode()).decode()
        r = c.cmd("AUTHENTICATE PLAIN " + other)
        assert r.status == "NO", r
    m = imap_ssl(server)
    try:
        typ, data = m.authenticate("PLAIN", lambda _: b"\0" + ALICE.encode() + b"\0"
                                   + DEFAULT_PASSWORD.encode())
        assert typ == "OK", data
    finally:
        m.logout()


# --- APPEND and FETCH -------------------------------------------------------------------------------
ODD_MESSAGE = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.org>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: odd bytes\r\n"
    b"Date: Tue, 02 Jan 2024 08:00:00 +0100\r\n"
    b"Message-ID: <odd@example.org>\r\n"
    b"X-Folded: first\r\n\tsecond\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
    b".\r\n"
    b"..leading dots\r\n"
    b"trailing spaces   \r\n"
    b"\ttab\r\n"
    b"\r\n" + b"x" * 990 + b"\r\n"
    b"no newline at the end")


def test_append_with_flags_and_date_then_fetch_byte_exact(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        box = new_mailbox(c)
        st = status(c, box)
        r = c.append(box, ODD_MESSAGE, flags=["\\Flagged", "\\Draft", "$Work"],
                     date="05-Mar-2023 14:15:16 +0100")
        assert r.ok, r
        code = r.code_of("APPENDUID")
        assert code, "no APPENDUID: %r" % r
        _, v, uid = code.split()
        assert int(v) == st["UIDVALIDITY"], (code, st)
        assert int(uid) == st["UIDNEXT"], (code, st)
        # LITERAL+ (RFC 7888): no continuation awaited
        small = make_message(token("lp"))
        r = c.append(box, small, plus=True)
        assert r.ok, r
        assert not any(u.startswith(b"+") for u in r.untagged), "continuation for {n+}: %r" % r

        r = c.select(box)
        assert select_info(r)["EXISTS"] == 2, r
        it = fetch1(c, "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", uid, uid=True)
        assert int(it["UID"]) == int(uid)
        assert it["BODY[]"] == ODD_MESSAGE, "BODY[] differs from what was appended"
        assert int(it["RFC822.SIZE"]) == len(ODD_MESSAGE), it["RFC822.SIZE"]
        fl = flags_of(it)
        assert {"\\FLAGGED", "\\DRAFT", "$WORK"} <= fl, fl
        assert "\\SEEN" not in fl, fl
        want = datetime.datetime(2023, 3, 5, 14, 15, 16,
                                 tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
        assert internaldate(it["INTERNALDATE"]) == want, it["INTERNALDATE"]
        it = fetch1(c, "(RFC822.SIZE BODY.PEEK[])", "2")
        assert it["BODY[]"] == small and int(it["RFC822.SIZE"]) == len(small)
        # partial fetches
        it = fetch1(c, "(BODY.PEEK[]<0.10> BODY.PEEK[]<20.5> BODY.PEEK[TEXT]<0.7>)", "1")
        assert it["BODY[]<0>"] == ODD_MESSAGE[:10], it
        assert it["BODY[]<20>"] == ODD_MESSAGE[20:25], it
        assert it["BODY[TEXT]<0>"] == b"Gr\xc3\xbc\xc3\x9fe", it
        it = fetch1(c, "(RFC822.HEADER BODY.PEEK[HEADER.FIELDS (X-Folded)])", "1")
        assert it["RFC822.HEADER"] == ODD_MESSAGE[:ODD_MESSAGE.index(b"\r\n\r\n") + 4]
        assert it["BODY[HEADER.FIELDS (X-FOLDED)]"] == b"X-Folded: first\r\n\tsecond\r\n\r\n", it


def test_append_errors(server):
    with imap_raw(server, ALICE) as c:
        r = c.append("No-Such-" + token(), make_message(token()))
        assert r.status == "NO" and r.code == "TRYCREATE", r
        r = c.append("INBOX", make_message(token()), date="31-Foo-2020 00:00:00 +0000")
        assert r.status == "BAD", "APPEND with a bad date: %r" % r
        c.ok("NOOP")


def build_multipart(tok):
    cs = Charset("utf-8")
    cs.body_encoding = QP
    outer = MIMEMultipart("mixed")
    outer["From"] = '"Zoe Q. Sender" <zoe@example.org>'
    outer["To"] = "Alice <alice@example.test>, bob@example.test"
    outer["Cc"] = "carol@example2.test"
    outer["Subject"] = "=?utf-8?q?Gr=C3=BC=C3=9Fe?= %s" % tok
    outer["Date"] = "Wed, 03 Jan 2024 10:20:30 +0200"
    outer["Message-ID"] = "<%s@example.org>" % tok
    outer["In-Reply-To"] = "<parent@example.org>"
    outer.preamble = "This is a multi-part message in MIME format."
    alt = MIMEMultipart("alternative")
    alt.attach(MIMEText("Sch\u00f6ne Gr\u00fc\u00dfe, %s\nline two\n" % tok, "plain", cs))
    alt.attach(MIMEText("<p>Hello <b>%s</b></p>\n" % tok, "html", "us-ascii"))
    outer.attach(alt)
    pdf = MIMEApplication(bytes(range(256)) * 8, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename="report.pdf")
    outer.attach(pdf)
    inner = email.message_from_bytes(
        b"From: Inner <inner@example.org>\r\nTo: x@example.org\r\nSubject: inner\r\n"
        b"Date: Thu, 04 Jan 2024 00:00:00 +0000\r\nMessage-ID: <inner@example.org>\r\n\r\n"
        b"inner body\r\nline 2\r\n")
    outer.attach(MIMEMessage(inner))
    raw = outer.as_bytes(policy=email.policy.SMTP)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    return raw


def addr(a):
    """An ENVELOPE address list entry -> (name, mailbox@host) as text."""
    name, _adl, mbox, host = a
    return (name.decode() if name is not None else None, "%s@%s" % (mbox.decode(), host.decode()))


def test_fetch_multipart_envelope_bodystructure_sections(server):
    acct = new_account(server)
    tok = token("mp")
    raw = build_multipart(tok)
    secs = mime_sections(raw)
    with imap_raw(server, acct) as c:
        assert c.append("INBOX", raw).ok
        c.select("INBOX")
        it = fetch1(c, "(ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE)")
        assert int(it["RFC822.SIZE"]) == len(raw)

        env = it["ENVELOPE"]
        assert len(env) == 10, env
        date, subject, frm, sender, reply_to, to, cc, bcc, in_reply_to, msgid = env
        assert date == b"Wed, 03 Jan 2024 10:20:30 +0200", date
        assert subject == ("=?utf-8?q?Gr=C3=BC=C3=9Fe?= %s" % tok).encode(), subject
        assert [addr(a) for a in frm] == [("Zoe Q. Sender", "zoe@example.org")], frm
        assert [addr(a) for a in sender] == [("Zoe Q. Sender", "zoe@example.org")], \
            "sender defaults to from (RFC 3501 7.4.2): %r" % sender
        assert [addr(a) for a in reply_to] == [("Zoe Q. Sender", "zoe@example.org")], reply_to
        assert [addr(a) for a in to] == [("Alice", "alice@example.test"),
                                         (None, "bob@example.test")], to
        assert [addr(a) for a in cc] == [(None, "carol@example2.test")], cc
        assert bcc is None, bcc
        assert in_reply_to == b"<parent@example.org>", in_reply_to
        assert msgid == ("<%s@example.org>" % tok).encode(), msgid

        bs = it["BODYSTRUCTURE"]
        # multipart/mixed: (part part part "MIXED" ("BOUNDARY" b) disposition language location)
        nparts = next(i for i, p in enumerate(bs) if not isinstance(p, list))
        parts, rest = bs[:nparts], bs[nparts:]
        assert len(parts) == 3, bs
        assert rest[0].upper() == b"MIXED", rest
        params = rest[1]
        assert params[0].upper() == b"BOUNDARY" and params[1] == boundary_of(raw[:raw.index(b"\r\n\r\n")]), params
        alt = parts[0]
        assert len(alt) >= 3 and alt[2].upper() == b"ALTERNATIVE", alt
        plain, html = alt[0], alt[1]
        assert [plain[0].upper(), plain[1].upper()] == [b"TEXT", b"PLAIN"], plain
        assert [x.lower() for x in plain[2]] == [b"charset", b"utf-8"], plain
        assert plain[5].upper() == b"QUOTED-PRINTABLE", plain
        assert int(plain[6]) == len(secs["1.1"]), (plain, len(secs["1.1"]))
        assert int(plain[7]) == crlf_lines(secs["1.1"]), (plain, secs["1.1"])
        assert [html[0].upper(), html[1].upper()] == [b"TEXT", b"HTML"], html
        assert int(html[6]) == len(secs["1.2"]), html
        pdf = parts[1]
        assert [pdf[0].upper(), pdf[1].upper(), pdf[5].upper()] == [b"APPLICATION", b"PDF", b"BASE64"], pdf
        assert int(pdf[6]) == len(secs["2"]), pdf
        # extension data: md5, disposition ("attachment" ("filename" "report.pdf"))
        disp = pdf[8]
        assert disp[0].lower() == b"attachment" and [x.lower() for x in disp[1]] == [b"filename", b"report.pdf"], pdf
        msg = parts[2]
        assert [msg[0].upper(), msg[1].upper()] == [b"MESSAGE", b"RFC822"], msg
        assert int(msg[6]) == len(secs["3"]), msg
        assert msg[7][1] == b"inner" and msg[7][9] == b"<inner@example.org>", msg[7]
        assert [msg[8][0].upper(), msg[8][1].upper()] == [b"TEXT", b"PLAIN"], msg[8]
        assert int(msg[9]) == crlf_lines(secs["3"]), msg

        # BODY (non-extensible): same shape without the extension data
        body = it["BODY"]
        assert body[0][0][:2] == alt[0][:2] and len(body[0][0]) == 8, body

        want = ["1", "1.1", "1.2", "1.1.MIME", "2", "2.MIME", "3", "3.HEADER", "3.TEXT", "3.1",
                "HEADER", "TEXT"]
        it = fetch1(c, "(%s)" % " ".join("BODY.PEEK[%s]" % s for s in want))
        for s in want:
            got = it.get("BODY[%s]" % s)
            assert got == secs[s], "BODY[%s]: want %r..., got %r..." % (s, secs[s][:80], (got or b"")[:80])
        it = fetch1(c, "(BODY.PEEK[HEADER.FIELDS (From Subject)] BODY.PEEK[HEADER.FIELDS.NOT (Subject Cc To "
                       "Date Message-ID In-Reply-To Content-Type)] BODY.PEEK[1.1]<0.6>)")
        got = it["BODY[HEADER.FIELDS (FROM SUBJECT)]"]
        assert got == (b'From: "Zoe Q. Sender" <zoe@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= '
                       + tok.encode() + b"\r\n\r\n"), got
        got = [k for k in it if k.startswith("BODY[HEADER.FIELDS.NOT")]
        assert got and it[got[0]] == b"MIME-Version: 1.0\r\nFrom: \"Zoe Q. Sender\" <zoe@example.org>\r\n\r\n", it
        assert it["BODY[1.1]<0>"] == secs["1.1"][:6], it
        r = c.cmd("FETCH 1 BODY.PEEK[4]")
        assert r.ok or r.status == "NO", r
        if r.ok:  # a missing part is empty (or nothing), never another part
            for _, d in r.fetches():
                assert d.get("BODY[4]") in (b"", None), d
        r = c.cmd("FETCH 1 BODY.PEEK[HEADER.FIELDS]")
        assert r.status == "BAD", r
        r = c.cmd("FETCH 1 (FLAGS")
        assert r.status == "BAD", r
        r = c.cmd("FETCH 5 FLAGS")
        assert r.status in ("BAD", "NO"), "FETCH of a sequence number past the end: %r" % r


def test_seen_set_by_body_not_by_peek(server):
    acct = new_account(server)
    msgs = [make_message(token("seen")) for _ in range(4)]
    with imap_raw(server, acct) as c:
        append_all(c, "INBOX", msgs)
        c.select("INBOX")
        it = fetch1(c, "(BODY.PEEK[] RFC822.HEADER BODY.PEEK[TEXT])", "1")
        assert it["BODY[]"] == msgs[0] and "FLAGS" not in it, it
        assert "\\SEEN" not in flags_of(fetch1(c, "FLAGS", "1"))
        r = c.ok("FETCH 1 BODY[]")
        f = dict(r.fetches())
        assert f[1]["BODY[]"] == msgs[0]
        assert "FLAGS" in f[1] and "\\SEEN" in flags_of(f[1]), \
            "BODY[] set \\Seen: the FETCH response should carry the new FLAGS (RFC 3501 6.4.5): %r" % r
        assert "\\SEEN" in flags_of(fetch1(c, "FLAGS", "1"))
        c.ok("FETCH 2 BODY[HEADER]")
        c.ok("FETCH 3 RFC822")
        assert "\\SEEN" in flags_of(fetch1(c, "FLAGS", "2"))
        assert "\\SEEN" in flags_of(fetch1(c, "FLAGS", "3"))
        assert "\\SEEN" not in flags_of(fetch1(c, "FLAGS", "4"))
        r = c.ok("SEARCH UNSEEN")
        assert r.search() == [4], r
        # EXAMINE is read-only: BODY[] does not set \Seen
        r = c.ok("EXAMINE INBOX")
        assert "READ-ONLY" in (r.code or ""), r
        c.ok("FETCH 4 BODY[]")
        assert "\\SEEN" not in flags_of(fetch1(c, "FLAGS", "4"))
        r = c.cmd("STORE 4 +FLAGS (\\Seen)")
        assert r.status == "NO", "STORE in a read-only mailbox: %r" % r


# --- flags ---------------------------------------------------------------------------------
def test_store_flags(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        uids = append_all(c, "INBOX", [make_message(token("st")) for _ in range(3)])
        r = c.select("INBOX")
        assert any(b"PERMANENTFLAGS" in u and b"\\*" in u for u in r.untagged), r
        r = c.ok("STORE 1 +FLAGS (\\Flagged)")
        f = dict(r.fetches())
        assert {"\\FLAGGED"} <= flags_of(f[1]) and "\\SEEN" not in flags_of(f[1]), r
        r = c.ok("STORE 1 +FLAGS (\\Seen $Label1)")
        assert {"\\FLAGGED", "\\SEEN", "$LABEL1"} <= flags_of(dict(r.fetches())[1]), r
        r = c.ok("STORE 1 -FLAGS (\\Flagged $Label1)")
        fl = flags_of(dict(r.fetches())[1])
        assert "\\SEEN" in fl and not {"\\FLAGGED", "$LABEL1"} & fl, r
        r = c.ok("STORE 2 FLAGS (\\Answered \\Draft)")
        fl = flags_of(dict(r.fetches())[2])
        assert {"\\ANSWERED", "\\DRAFT"} <= fl and fl - {"\\RECENT"} == {"\\ANSWERED", "\\DRAFT"}, r
        r = c.ok("STORE 2 FLAGS ()")
        assert flags_of(dict(r.fetches())[2]) - {"\\RECENT"} == set(), r
        r = c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        assert not r.fetches(), ".SILENT: no FETCH responses expected: %r" % r
        for i in (1, 2, 3):
            assert "\\DELETED" in flags_of(fetch1(c, "FLAGS", str(i)))
        r = c.ok("UID STORE %d -FLAGS (\\Deleted)" % uids[2])
        f = r.fetches()
        assert len(f) == 1 and f[0][0] == 3 and int(f[0][1]["UID"]) == uids[2], \
            "UID STORE: FETCH must carry the UID: %r" % r
        r = c.ok("UID STORE %d:* -FLAGS.SILENT (\\Deleted)" % uids[0])
        assert "\\DELETED" not in flags_of(fetch1(c, "FLAGS", "1"))
        r = c.cmd("STORE 1 +FLAGS (\\Bogus)")
        assert r.status in ("BAD", "NO"), "a made-up system flag: %r" % r
        r = c.cmd("STORE 1 FROB (\\Seen)")
        assert r.status == "BAD", r
        r = c.cmd("STORE 9 +FLAGS (\\Seen)")
        assert r.status in ("BAD", "NO"), r
        r = c.ok("UID STORE 999999 +FLAGS (\\Seen)")  # a UID that is not there: nothing, OK
        assert not r.fetches(), r
        c.ok("LOGOUT")
    with imap_raw(server, acct) as c:  # flags are kept
        c.select("INBOX")
        assert "\\SEEN" in flags_of(fetch1(c, "FLAGS", "1"))
        assert flags_of(fetch1(c, "FLAGS", "2")) - {"\\RECENT"} == set()


# --- COPY, MOVE, EXPUNGE ------------------------------------------------------------------------------


def test_copy_with_copyuid(server):
    acct = new_account(server)
    msgs = [make_message(token("cp")) for _ in range(3)]
    with imap_raw(server, acct) as c:
        src_uids = append_all(c, "INBOX", msgs)
        dest = new_mailbox(c, "dest")
        dst = status(c, dest)
        c.select("INBOX")
        r = c.ok("COPY 1:2 %s" % quote(dest))
        code = r.code_of("COPYUID")
        assert code, "COPY without COPYUID (RFC 4315): %r" % r
        _, v, s_set, d_set = code.split()
        assert int(v) == dst["UIDVALIDITY"], (code, dst)
        assert parse_uidset(s_set) == src_uids[:2], code
        d_uids = parse_uidset(d_set)
        assert len(d_uids) == 2 and d_uids[0] >= dst["UIDNEXT"], code
        r = c.ok("UID COPY %d %s" % (src_uids[2], quote(dest)))
        code = r.code_of("COPYUID")
        assert code and parse_uidset(code.split()[2]) == [src_uids[2]], r
        d_uids += parse_uidset(code.split()[3])
        r = c.cmd("COPY 1 %s" % quote("nope-" + token()))
        assert r.status == "NO" and r.code == "TRYCREATE", r
        assert select_info(c.select("INBOX"))["EXISTS"] == 3, "COPY changed the source"
        c.select(dest)
        for m, u in zip(msgs, d_uids):
            it = fetch1(c, "(BODY.PEEK[])", str(u), uid=True)
            assert it["BODY[]"] == m


def test_move(server):
    acct = new_account(server)
    msgs = [make_message(token("mv")) for _ in range(4)]
    with imap_raw(server, acct) as c:
        src_uids = append_all(c, "INBOX", msgs)
        dest = new_mailbox(c, "dest")
        c.select("INBOX")
        r = c.ok("MOVE 2 %s" % quote(dest))
        code = r.code_of("COPYUID")
        assert code, "MOVE without COPYUID (RFC 6851 4.3): %r" % r
        assert parse_uidset(code.split()[2]) == [src_uids[1]], code
        assert r.expunges() == [2], "MOVE 2: want * 2 EXPUNGE: %r" % r
        # now 1, 3, 4 are left: UID MOVE of the last two
        r = c.ok("UID MOVE %d:%d %s" % (src_uids[2], src_uids[3], quote(dest)))
        left, gone = apply_expunges([src_uids[0], src_uids[2], src_uids[3]], r.expunges())
        assert left == [src_uids[0]] and sorted(gone) == src_uids[2:], \
            "UID MOVE of seq 2,3: want two EXPUNGEs: %r" % r
        assert c.ok("NOOP").exists() in (None, 1)
        it = fetch1(c, "(UID BODY.PEEK[])", "1")
        assert int(it["UID"]) == src_uids[0] and it["BODY[]"] == msgs[0]
        r = c.cmd("MOVE 1 %s" % quote("nope-" + token()))
        assert r.status == "NO" and r.code == "TRYCREATE", r
        st = status(c, dest)
        assert st["MESSAGES"] == 3, st
        c.select(dest)
        r = c.ok("FETCH 1:* (BODY.PEEK[])")
        assert sorted(d["BODY[]"] for _, d in r.fetches()) == sorted(msgs[1:]), r


def test_expunge_numbering_and_uid_expunge(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        uids = append_all(c, "INBOX", [make_message(token("ex%d" % i)) for i in range(6)])
        c.select("INBOX")
        c.ok("STORE 2,4,5 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("EXPUNGE")
        # RFC 3501 7.4.1: each EXPUNGE renumbers what follows: 2, 3, 3 (or 5, 4, 2)
        left = [uids[0], uids[2], uids[5]]
        got_left, gone = apply_expunges(uids, r.expunges())
        assert got_left == left and sorted(gone) == [uids[1], uids[3], uids[4]], \
            "EXPUNGE of 2,4,5: want * 2, * 3, * 3 EXPUNGE: %r" % r
        r = c.ok("FETCH 1:* (UID)")
        assert [int(d["UID"]) for _, d in sorted(r.fetches())] == left, r
        # UID EXPUNGE (RFC 4315) removes only the UIDs given
        c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("UID EXPUNGE %d" % uids[5])
        assert r.expunges() == [3], r
        r = c.ok("UID EXPUNGE %d:%d" % (uids[2], uids[2]))
        assert r.expunges() == [2], r
        r = c.ok("FETCH 1:* (UID FLAGS)")
        f = r.fetches()
        assert len(f) == 1 and int(f[0][1]["UID"]) == uids[0] and "\\DELETED" in flags_of(f[0][1]), r
        r = c.ok("UID EXPUNGE 999999")
        assert r.expunges() == [], r
        # EXPUNGE without deleted messages: nothing
        c.ok("STORE 1 -FLAGS.SILENT (\\Deleted)")
        assert c.ok("EXPUNGE").expunges() == []
        st = status(c, "INBOX")
        assert st["MESSAGES"] == 1 and st["UIDNEXT"] == uids[-1] + 1, st


def test_close_unselect_check(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        append_all(c, "INBOX", [make_message(token("cl")) for _ in range(3)])
        c.select("INBOX")
        c.ok("CHECK")
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("UNSELECT")
        assert not r.expunges(), r
        r = c.cmd("FETCH 1 FLAGS")
        assert r.status == "BAD", "FETCH after UNSELECT: %r" % r
        assert select_info(c.select("INBOX"))["EXISTS"] == 3, "UNSELECT expunged"
        c.ok("EXAMINE INBOX")
        c.ok("CLOSE")  # read-only: no expunge
        assert select_info(c.select("INBOX"))["EXISTS"] == 3, "CLOSE after EXAMINE expunged"
        r = c.ok("CLOSE")
        assert not r.expunges(), "CLOSE expunges silently: %r" % r
        r = c.cmd("CLOSE")
        assert r.status == "BAD", "CLOSE when nothing is selected: %r" % r
        assert select_info(c.select("INBOX"))["EXISTS"] == 2
        r = c.cmd("SELECT %s" % quote("nope-" + token()))
        assert r.status == "NO", r
        r = c.cmd("FETCH 1 FLAGS")
        assert r.status == "BAD", "a failed SELECT leaves nothing selected (RFC 3501 6.3.1): %r" % r


# --- SEARCH ---------------------------------------------------------------------------------------
def search_messages(tok):
    base = ("To: alice@example.test\r\nMessage-ID: <%s-{n}@example.org>\r\nMIME-Version: 1.0\r\n" % tok)
    b64 = base64.encodebytes("Let us meet at the Zanzibar caf\u00e9 %s.\n".encode()).replace(b"\n", b"\r\n")
    return [
        (base.format(n=1) + "From: Alice <alice@example.org>\r\nSubject: Invoice 2024\r\n"
         "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nPlease pay the zebra.\r\n").encode(),
        (base.format(n=2) + "From: Bob <bob@example.org>\r\nSubject: Lunch\r\n"
         "Date: Tue, 02 Jan 2024 10:00:00 +0000\r\n"
         "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode()
        + b64,
        (base.format(n=3) + "From: Carol <carol@example.org>\r\n"
         "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\n"
         "Date: Wed, 03 Jan 2024 10:00:00 +0000\r\n"
         "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         "Sch=C3=B6ne Tage im Fr=C3=BChling.\r\n").encode(),
        (base.format(n=4) + "From: Bob <bob@example.org>\r\nSubject: invoice reminder\r\n"
         "Date: Thu, 04 Jan 2024 10:00:00 +0000\r\n\r\nThe invoice is late.\r\n").encode(),
        (base.format(n=5) + "From: Dave <dave@example.org>\r\nSubject: misc\r\n"
         "Date: Fri, 05 Jan 2024 10:00:00 +0000\r\n\r\n" + "padding line\r\n" * 200).encode(),
    ]


def test_search(server):
    acct = new_account(server)
    tok = token("se")
    msgs = search_messages(tok)
    with imap_raw(server, acct) as c:
        for i, m in enumerate(msgs):
            r = c.append("INBOX", m, date="%02d-Feb-2024 12:00:00 +0000" % (i + 1))
            assert r.ok, r
        c.select("INBOX")
        uids = [int(d["UID"]) for _, d in sorted(c.ok("FETCH 1:* UID").fetches())]
        c.ok("STORE 1:2 +FLAGS.SILENT (\\Seen)")
        c.ok("STORE 4 +FLAGS.SILENT (\\Flagged)")

        def s(crit, want):
            r = c.cmd("SEARCH " + crit)
            assert r.ok, "SEARCH %s: %r" % (crit, r)
            assert sorted(r.search()) == want, "SEARCH %s: want %r, got %r" % (crit, want, r.search())

        s("ALL", [1, 2, 3, 4, 5])
        s('FROM "bob"', [2, 4])
        s("FROM BOB@EXAMPLE.ORG", [2, 4])
        s('SUBJECT "invoice"', [1, 4])
        s('BODY "zanzibar"', [2])  # in a base64 body
        s('TEXT "zebra"', [1])
        s('TEXT "Carol"', [3])  # TEXT covers the header too
        s("UNSEEN", [3, 4, 5])
        s("SEEN", [1, 2])
        s("FLAGGED UNSEEN", [4])
        s('OR FROM "alice" FROM "dave"', [1, 5])
        s('NOT FROM "bob"', [1, 3, 5])
        s('NOT (OR SEEN FLAGGED)', [3, 5])
        s("2:3", [2, 3])
        s("4:*", [4, 5])
        s("UID %d:%d" % (uids[1], uids[3]), [2, 3, 4])
        s("UID %d:*" % uids[4], [5])
        s('HEADER Message-ID "%s-3@"' % tok, [3])
        s("LARGER 1500", [5])
        s("SMALLER 1500", [1, 2, 3, 4])
        s("SENTBEFORE 03-Jan-2024", [1, 2])
        s("SENTSINCE 04-Jan-2024", [4, 5])
        s("SENTON 03-Jan-2024", [3])
        s("SINCE 04-Feb-2024", [4, 5])
        s("BEFORE 02-Feb-2024", [1])
        s("ON 03-Feb-2024", [3])
        s("DELETED", [])
        s("KEYWORD $Nothing", [])
        s('SUBJECT "no such subject"', [])
        r = c.ok("UID SEARCH UID %d:%d" % (uids[1], uids[3]))
        assert sorted(r.search()) == uids[1:4], r
        r = c.ok('UID SEARCH FROM "bob"')
        assert sorted(r.search()) == [uids[1], uids[3]], r
        # CHARSET UTF-8 with a non-ASCII word, as a literal
        for key, word, want in (("SUBJECT", "Gr\u00fc\u00dfe", [3]), ("BODY", "Fr\u00fchling", [3]),
                                ("TEXT", "M\u00fcnchen", [3]), ("BODY", "caf\u00e9", [2])):
            r = c.command("SEARCH CHARSET UTF-8 %s" % key, Literal(word))
            assert r.ok and sorted(r.search()) == want, "SEARCH CHARSET UTF-8 %s %s: %r" % (key, word, r)
        r = c.command("SEARCH CHARSET UTF-8 SUBJECT", Literal("gr\u00fc\u00dfe"))
        assert sorted(r.search()) == [3], "SEARCH is case-insensitive for non-ASCII too: %r" % r
        r = c.cmd('SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT "a"')
        assert r.status == "NO" and r.code and r.code.upper().startswith("BADCHARSET"), r
        r = c.cmd("SEARCH FROBNICATE")
        assert r.status == "BAD", r
        r = c.cmd("SEARCH SINCE 31-Foo-2024")
        assert r.status == "BAD", r
        r = c.cmd("SEARCH (FROM")
        assert r.status == "BAD", r


# --- mailboxes ---------------------------------------------------------------------------------
def list_entries(r):
    """{name: (set of attributes, delimiter)} of * LIST / * LSUB responses."""
    out = {}
    for u in r.untagged:
        m = re.match(rb"\* (LIST|LSUB) ", u)
        if not m:
            continue
        vals = imap_parse(u[m.end():])
        attrs, delim, name = vals[0], vals[1], vals[2]
        name = name if isinstance(name, str) else name.decode()
        out[name] = (set(a.upper() for a in attrs), delim)
    return out


def test_list_special_use_and_separator(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        r = c.ok('LIST "" "*"')
        e = list_entries(r)
        assert set(e) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}, r
        for name, (attrs, delim) in e.items():
            assert delim == b"/", (name, delim)
            if name in SPECIAL_USE:
                assert SPECIAL_USE[name].upper() in attrs, "%s: want %s in %r" % (name, SPECIAL_USE[name], attrs)
        assert not {a for a in e["INBOX"][0] if a in {v.upper() for v in SPECIAL_USE.values()}}
        r = c.ok('LIST "" ""')
        lines = r.starting("* LIST")
        assert len(lines) == 1 and re.match(rb'\* LIST \(\\Noselect\) "/" ""$', lines[0], re.I), r
        e = list_entries(c.ok('LIST (SPECIAL-USE) "" "*"'))
        assert set(e) == set(SPECIAL_USE), e
        e = list_entries(c.ok('LIST "" "*" RETURN (SPECIAL-USE)'))
        assert "\\SENT" in e["Sent"][0], e
        e = list_entries(c.ok('LIST "" "inbox"'))
        assert list(e) == ["INBOX"], "INBOX is case-insensitive: %r" % e
        e = list_entries(c.ok('LIST "" "%"'))
        assert set(e) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}, e


def test_create_hierarchy_rename_delete_subscribe(server):
    acct = new_account(server)
    p = "Proj" + token("h").replace("-", "")[-8:]
    with imap_raw(server, acct) as c:
        c.ok("CREATE %s" % quote(p + "/2024/Q1"))
        e = list_entries(c.ok('LIST "" %s' % quote(p + "*")))
        assert set(e) == {p, p + "/2024", p + "/2024/Q1"}, "CREATE a/b/c creates a and a/b (RFC 3501 6.3.3): %r" % e
        assert "\\HASCHILDREN" in e[p][0] and "\\HASCHILDREN" in e[p + "/2024"][0], e
        assert "\\HASNOCHILDREN" in e[p + "/2024/Q1"][0], e
        e = list_entries(c.ok('LIST "" %s' % quote(p + "/%")))
        assert set(e) == {p + "/2024"}, e
        e = list_entries(c.ok('LIST %s "%%"' % quote(p + "/")))
        assert set(e) == {p + "/2024"}, "reference + pattern: %r" % e
        c.ok("CREATE %s" % quote(p + "/Notes/"))  # a trailing separator is allowed
        assert p + "/Notes" in list_entries(c.ok('LIST "" %s' % quote(p + "/*")))

        r = c.cmd("CREATE %s" % quote(p + "/2024"))
        assert r.status == "NO", "CREATE of an existing mailbox: %r" % r
        r = c.cmd("CREATE INBOX")
        assert r.status == "NO", r
        r = c.cmd("CREATE inbox")
        assert r.status == "NO", r

        # modified UTF-7 names (RFC 3501 5.1.3)
        c.ok('CREATE "Entw&APw-rfe-%s"' % p)
        e = list_entries(c.ok('LIST "" "Entw*"'))
        assert list(e) == ["Entw&APw-rfe-%s" % p], e
        assert status(c, "Entw&APw-rfe-%s" % p)["MESSAGES"] == 0
        r = c.cmd('CREATE "bad&name"')
        assert r.status in ("NO", "BAD"), "an invalid modified UTF-7 name: %r" % r

        # SUBSCRIBE / LSUB / LIST (SUBSCRIBED)
        c.ok("SUBSCRIBE %s" % quote(p + "/2024"))
        e = list_entries(c.ok('LSUB "" "*"'))
        assert p + "/2024" in e, e
        e = list_entries(c.ok('LIST (SUBSCRIBED) "" "*"'))
        assert p + "/2024" in e and "\\SUBSCRIBED" in e[p + "/2024"][0], e
        c.ok("UNSUBSCRIBE %s" % quote(p + "/2024"))
        assert p + "/2024" not in list_entries(c.ok('LSUB "" "*"'))

        # RENAME moves the children along
        c.append(p + "/2024/Q1", make_message(token("rn")))
        q = "Work" + p[4:]
        c.ok("RENAME %s %s" % (quote(p), quote(q)))
        e = list_entries(c.ok('LIST "" "*"'))
        assert {q, q + "/2024", q + "/2024/Q1", q + "/Notes"} <= set(e), e
        assert not [n for n in e if n.startswith(p)], "old names left after RENAME: %r" % e
        assert status(c, q + "/2024/Q1")["MESSAGES"] == 1
        r = c.cmd("RENAME %s %s" % (quote(q + "/Notes"), quote(q + "/2024")))
        assert r.status == "NO", "RENAME onto an existing mailbox: %r" % r
        r = c.cmd("RENAME %s %s" % (quote("nope-" + p), quote("other-" + p)))
        assert r.status == "NO", r

        # DELETE
        c.ok("DELETE %s" % quote(q + "/2024/Q1"))
        assert q + "/2024/Q1" not in list_entries(c.ok('LIST "" "*"'))
        r = c.cmd("DELETE %s" % quote(q + "/2024/Q1"))
        assert r.status == "NO", "DELETE of a missing mailbox: %r" % r
        r = c.cmd("DELETE INBOX")
        assert r.status == "NO", r
        r = c.cmd("SELECT %s" % quote(q + "/2024/Q1"))
        assert r.status == "NO", r
        c.ok("DELETE %s" % quote(q + "/Notes"))
        c.ok("DELETE %s" % quote(q + "/2024"))
        e = list_entries(c.ok('LIST "" %s' % quote(q + "*")))
        assert set(e) == {q} and "\\HASNOCHILDREN" in e[q][0], e
        c.ok("LOGOUT")


def test_status_and_list_status(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        st0 = status(c, "INBOX", "MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ")
        assert st0["MESSAGES"] == 0 and st0["UNSEEN"] == 0 and st0["UIDNEXT"] >= 1, st0
        uids = append_all(c, "INBOX", [make_message(token("st")) for _ in range(3)])
        c.append("INBOX", make_message(token("st")), flags=["\\Seen"])
        st = status(c, "INBOX", "MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ")
        assert st["MESSAGES"] == 4 and st["UNSEEN"] == 3, st
        assert st["UIDNEXT"] > uids[-1] and st["UIDVALIDITY"] == st0["UIDVALIDITY"], (st0, st)
        assert st["HIGHESTMODSEQ"] > st0["HIGHESTMODSEQ"], (st0, st)
        r = c.ok('LIST "" "%" RETURN (STATUS (MESSAGES UNSEEN))')
        sts = {}
        for u in r.starting("* STATUS "):
            name, data = imap_parse(u[9:])
            name = name if isinstance(name, str) else name.decode()
            sts[name] = {k.upper(): int(v) for k, v in zip(data[0::2], data[1::2])}
        assert sts.get("INBOX") == {"MESSAGES": 4, "UNSEEN": 3}, r
        assert set(sts) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}, r
        r = c.cmd("STATUS INBOX (FROB)")
        assert r.status == "BAD", r
        r = c.cmd("STATUS %s (MESSAGES)" % quote("nope-" + token()))
        assert r.status == "NO", r


def test_rename_inbox_moves_messages_and_inbox_stays(server):
    acct = new_account(server)
    msgs = [make_message(token("ri")) for _ in range(2)]
    for m in msgs:
        smtp_deliver(server, acct, m)
    with imap_raw(server, acct) as c:
        assert status(c, "INBOX")["MESSAGES"] == 2
        c.ok('RENAME INBOX "Old Inbox"')
        assert status(c, "INBOX")["MESSAGES"] == 0, "INBOX not empty after RENAME INBOX (RFC 3501 6.3.5)"
        assert status(c, "Old Inbox")["MESSAGES"] == 2
        e = list_entries(c.ok('LIST "" "*"'))
        assert "INBOX" in e and "Old Inbox" in e, e
        c.select("Old Inbox")
        r = c.ok("FETCH 1:* BODY.PEEK[]")
        bodies = [d["BODY[]"] for _, d in sorted(r.fetches())]
        assert [b.endswith(m) for b, m in zip(bodies, msgs)] == [True, True], r
        info = select_info(c.select("INBOX"))
        assert info["EXISTS"] == 0, info
    tok = token("after")
    smtp_deliver(server, acct, make_message(tok))  # delivery still goes to INBOX
    with imap_raw(server, acct) as c:
        assert status(c, "INBOX")["MESSAGES"] == 1
        assert status(c, "Old Inbox")["MESSAGES"] == 2


def test_namespace_id_enable(server):
    with imap_raw(server) as c:
        r = c.cmd('ID ("name" "pytest" "version" "1")')
        assert r.ok and len(r.starting("* ID ")) == 1, "ID works before login too (RFC 2971): %r" % r
        r = c.cmd("ENABLE CONDSTORE")
        assert r.status == "BAD", "ENABLE before login: %r" % r
        c.login(ALICE)
        r = c.ok("NAMESPACE")
        lines = r.starting("* NAMESPACE ")
        assert len(lines) == 1, r
        assert imap_parse(lines[0][12:]) == [[[b"", b"/"]], None, None], lines[0]
        r = c.ok("ID NIL")
        idl = r.starting("* ID ")
        assert len(idl) == 1, r
        val = imap_parse(idl[0][5:])[0]
        assert val is None or (isinstance(val, list) and len(val) % 2 == 0), idl
        r = c.ok("ENABLE CONDSTORE X-UNKNOWN-EXTENSION")
        en = r.starting("* ENABLED")
        assert len(en) == 1 and b"CONDSTORE" in en[0].upper() and b"X-UNKNOWN" not in en[0].upper(), r
        r = c.select("INBOX")
        assert select_info(r).get("HIGHESTMODSEQ"), "SELECT after ENABLE CONDSTORE: %r" % r
        c.ok("UNSELECT")


# --- SMTP delivery, then IMAP ------------------------------------------------------------------------
def test_smtp_delivery_appears_in_inbox(server):
    acct = new_account(server)
    tok = token("dl")
    msg = make_message(tok)
    with imap_raw(server, acct) as c:
        r = c.select("INBOX")
        assert select_info(r)["EXISTS"] == 0
        smtp_deliver(server, acct, msg)
        r = c.ok("NOOP")
        assert r.exists() == 1, "NOOP after a delivery: want * 1 EXISTS: %r" % r
        assert r.matching(rb"\* 1 RECENT$"), "a delivered message is \\Recent: %r" % r
        it = fetch1(c, "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[])")
    stored = server.messages(acct)
    assert len(stored) == 1
    body = it["BODY[]"]
    assert body == stored[0], "BODY[] is not the stored message"
    assert body.startswith(b"Return-Path: <sender@example.org>\r\nReceived: from "), body[:200]
    assert body.endswith(msg)
    assert int(it["RFC822.SIZE"]) == len(body), (it["RFC822.SIZE"], len(body))
    assert "\\SEEN" not in flags_of(it)
    assert abs((internaldate(it["INTERNALDATE"]) - datetime.datetime.now(datetime.timezone.utc))
               .total_seconds()) < 300, "INTERNALDATE of a delivery is its arrival: %r" % it["INTERNALDATE"]
    assert it["ENVELOPE"][1] == ("test " + tok).encode()


def test_imaplib_client_workflow(server):
    """What a script written with imaplib does, on the STARTTLS port."""
    acct = new_account(server)
    toks = [token("wf") for _ in range(3)]
    for t in toks:
        smtp_deliver(server, acct, make_message(t))
    m = imap_starttls(server, acct)
    try:
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"3"], (typ, data)
        typ, data = m.search(None, "UNSEEN")
        assert typ == "OK" and data[0].split() == [b"1", b"2", b"3"], data
        typ, data = m.fetch("2", "(RFC822)")
        assert typ == "OK" and toks[1].encode() in data[0][1], data
        typ, data = m.search(None, "SEEN")
        assert data[0].split() == [b"2"], data
        typ, data = m.uid("SEARCH", None, "ALL")
        uids = data[0].split()
        assert len(uids) == 3
        typ, data = m.uid("FETCH", uids[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and data[0][1] == ("Subject: test %s\r\n\r\n" % toks[0]).encode(), data
        typ, data = m.store("1", "+FLAGS", "\\Deleted")
        assert typ == "OK", data
        typ, data = m.copy("3", "Archive")
        assert typ == "OK", data
        typ, data = m.expunge()
        assert typ == "OK" and data == [b"1"], data
        typ, data = m.status("Archive", "(MESSAGES)")
        assert typ == "OK" and b"MESSAGES 1" in data[0], data
        typ, data = m.create("imaplib/child")
        assert typ == "OK", data
        typ, data = m.list('""', "imaplib*")
        assert typ == "OK" and len(data) == 2, data
        typ, data = m.close()
        assert typ == "OK"
    finally:
        m.logout()
