"""Helpers for correio's end-to-end tests: a real `correio serve` in a fresh
directory, and a small raw SMTP client for byte-level protocol tests.

Only the standard library is used (and pytest in the fixtures).
"""
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("CORREIO_BIN") or os.path.join(HERE, "..", "..", "build", "asan", "correio")
BIN = os.path.abspath(BIN)

DEFAULT_PASSWORD = "correct horse battery"
DEFAULT_DOMAINS = ("example.test", "example2.test")
DEFAULT_ACCOUNTS = ("alice@example.test", "bob@example.test", "carol@example2.test")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
IO_TIMEOUT = 10.0
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def server_env():
    env = dict(os.environ)
    # When pytest is run directly (not through `make e2e`), keep the same
    # sanitizer behaviour as the Makefile.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def run_cli(*args, conf=None, input=None, timeout=60):
    """Run `correio [-c conf] args...`; returns CompletedProcess with text output."""
    argv = [BIN]
    if conf:
        argv += ["-c", conf]
    argv += [str(a) for a in args]
    p = subprocess.run(argv, input=input.encode() if isinstance(input, str) else input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       env=server_env())
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


def sanitizer_report(text):
    """The first sanitizer report in text (a few lines of it), or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            start = text.rfind("\n", 0, max(0, i - 200)) + 1
            return text[start:i + 3000]
    return None


# --- ports -----------------------------------------------------------------------
_port_lock = threading.Lock()
_next_offset = [None]


def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# The listeners `correio init --port-offset N` sets up: SMTP 25+N, IMAP 143+N,
# IMAPS 993+N, POP3 110+N, POP3S 995+N, submission 587+N, submissions 465+N.
BASE_PORTS = (25, 143, 993, 110, 995, 587, 465)
_used_ports = set()  # ports of the offsets handed out in this process


def alloc_port_offset():
    """A --port-offset whose ports (BASE_PORTS + offset) are free on
    127.0.0.1 and not those of an offset handed out before in this process.
    Starts from a base derived from the pid so parallel runs do not collide."""
    with _port_lock:
        if _next_offset[0] is None:
            _next_offset[0] = 20000 + (os.getpid() * 53) % 30000
        for _ in range(2000):
            off = _next_offset[0]
            _next_offset[0] += 1
            if _next_offset[0] > 60000:
                _next_offset[0] = 20000
            ports = [b + off for b in BASE_PORTS]
            if any(p in _used_ports for p in ports):
                continue
            if all(port_is_free(p) for p in ports):
                _used_ports.update(ports)
                return off
    raise RuntimeError("no free port found")


def make_test_dir():
    d = tempfile.mkdtemp(prefix="correio-e2e-", dir="/tmp")
    os.chmod(d, 0o755)  # the unprivileged server user must be able to traverse it
    return d


# --- the server --------------------------------------------------------------------
class ServerError(AssertionError):
    pass


class Server:
    """One correio instance: its directory, configuration and process."""

    def __init__(self, domains=("example.test",), accounts=(), settings=None,
                 hostname="mx.example.test", name="server"):
        self.name = name
        self.hostname = hostname
        self.dir = make_test_dir()
        self.conf = os.path.join(self.dir, "correio.conf")
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc = None
        self.logf = None
        self.keep = False
        self.checked_upto = None  # log offset checked by guard()
        self.term_sent = False
        self.offset = alloc_port_offset()
        self.smtp_port = 25 + self.offset
        self.imap_port = 143 + self.offset   # STARTTLS
        self.imaps_port = 993 + self.offset  # implicit TLS
        self.pop3_port = 110 + self.offset   # STLS
        self.pop3s_port = 995 + self.offset  # implicit TLS
        self.submission_port = 587 + self.offset   # STARTTLS, AUTH
        self.submissions_port = 465 + self.offset  # implicit TLS, AUTH
        self.cert_path = os.path.join(self.dir, "tls", "cert.pem")
        argv = ["init", self.dir, "--hostname", hostname, "--port-offset", str(self.offset)]
        for d in domains:
            argv += ["--domain", d]
        for k, v in (settings or {}).items():
            argv += ["--set", "%s=%s" % (k, v)]
        p = run_cli(*argv)
        if p.returncode != 0:
            raise ServerError("correio init failed (%d): %s%s" % (p.returncode, p.stdout, p.stderr))
        self.data_dir = os.path.join(self.dir, "data")
        for a in accounts:
            self.add_user(a)

    def set_conf(self, section, key, value):
        """Set section.key in correio.conf (the file init wrote)."""
        lines = open(self.conf).read().split("\n")
        cur, done = None, False
        for i, line in enumerate(lines):
            st = line.strip()
            if st.startswith("[") and st.endswith("]"):
                cur = st[1:-1]
            elif cur == section and st.split("=")[0].strip() == key:
                lines[i] = "%s = %s" % (key, value)
                done = True
        assert done, "no %s.%s in %s" % (section, key, self.conf)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines))

    # -- CLI --
    def cli(self, *args, input=None, timeout=60):
        return run_cli(*args, conf=self.conf, input=input, timeout=timeout)

    def add_user(self, address, password=DEFAULT_PASSWORD):
        p = self.cli("user", "add", address, "--password-stdin", input=password + "\n")
        if p.returncode != 0:
            raise ServerError("user add %s failed (%d): %s" % (address, p.returncode, p.stderr))

    # -- process --
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=READY_TIMEOUT):
        assert not self.alive(), "already running"
        self.logf = open(self.log_path, "ab")
        self.logf.write(b"=== e2e: starting serve ===\n")
        self.logf.flush()
        start_off = self.log_size()
        self.term_sent = False
        self.proc = subprocess.Popen([BIN, "-c", self.conf, "serve"], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, env=server_env(),
                                     close_fds=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_since(start_off)
            if "event=ready" in text:
                return
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                self._close_log()
                raise ServerError("%s: serve exited with %s before event=ready:\n%s"
                                  % (self.name, rc, text[-4000:]))
            time.sleep(0.05)
        text = self.log_since(start_off)
        self.kill9()
        raise ServerError("%s: no event=ready within %.0f s:\n%s" % (self.name, timeout, text[-4000:]))

    def _close_log(self):
        if self.logf:
            self.logf.close()
            self.logf = None

    def stop(self, timeout=STOP_TIMEOUT, check=True):
        """SIGTERM and wait; SIGKILL after timeout. Returns the exit status.
        With check, raises when the stop was not clean or a sanitizer spoke."""
        if self.proc is None:
            return None
        proc = self.proc
        hung = False
        if proc.poll() is None:
            if not self.term_sent:  # a second SIGTERM could cut a clean stop short
                self.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                hung = True
                proc.kill()
                proc.wait(10)
        rc = proc.returncode
        self.proc = None
        self._close_log()
        if check:
            self.check_log()
            if hung:
                self.keep = True
                raise ServerError("%s: did not stop within %.0f s of SIGTERM (killed)"
                                  % (self.name, timeout))
            if rc != 0:
                self.keep = True
                raise ServerError("%s: exit status %s after SIGTERM (want 0); log tail:\n%s"
                                  % (self.name, rc, self.log_text()[-3000:]))
        return rc

    def terminate(self):
        """Send SIGTERM once (the server stops cleanly); stop() waits for it."""
        if self.proc is not None and not self.term_sent:
            self.term_sent = True
            self.proc.send_signal(signal.SIGTERM)

    def kill9(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc = None
        self._close_log()

    def restart(self):
        self.stop()
        self.start()

    def check_log(self):
        # What guard() has checked (and reported) already is not reported again.
        rep = sanitizer_report(self.log_since(self.checked_upto or 0))
        if rep:
            self.keep = True
            raise ServerError("%s: sanitizer report in %s:\n%s" % (self.name, self.log_path, rep))

    def check_alive(self):
        if not self.alive():
            rc = self.proc.returncode if self.proc else None
            self.keep = True
            tail = self.log_text()[-4000:]
            self.proc = None
            self._close_log()
            raise ServerError("%s: the server died (status %s); log tail:\n%s" % (self.name, rc, tail))

    def cleanup(self):
        """Stop (checked) and remove the directory (kept with CORREIO_E2E_KEEP=1)."""
        try:
            self.stop()
        finally:
            if os.environ.get("CORREIO_E2E_KEEP"):
                print("correio e2e: kept %s" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- store inspection --
    def account_dir(self, account):
        local, domain = account.lower().split("@", 1)
        return os.path.join(self.data_dir, "mail", domain, local)

    def _index(self, account):
        path = os.path.join(self.account_dir(account), "index.sqlite")
        if not os.path.exists(path):
            raise ServerError("no index for %s at %s" % (account, path))
        try:
            db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
            db.execute("SELECT count(*) FROM mailboxes").fetchone()
            return db
        except sqlite3.OperationalError:
            # e.g. a WAL database whose -shm cannot be made: the server is
            # stopped, so nothing changes under us.
            return sqlite3.connect("file:%s?immutable=1" % path, uri=True, timeout=10)

    def message_rows(self, account, mailbox="INBOX"):
        """[(uid, file, size)] of a mailbox in UID order."""
        db = self._index(account)
        try:
            return db.execute(
                "SELECT m.uid, m.file, m.size FROM messages m JOIN mailboxes b"
                " ON m.mailbox_id = b.id WHERE b.name = ? ORDER BY m.uid", (mailbox,)).fetchall()
        finally:
            db.close()

    def mailbox_info(self, account, mailbox="INBOX"):
        db = self._index(account)
        try:
            return db.execute("SELECT uidvalidity, uidnext FROM mailboxes WHERE name = ?",
                              (mailbox,)).fetchone()
        finally:
            db.close()

    def all_index_files(self, account):
        db = self._index(account)
        try:
            return [r[0] for r in db.execute("SELECT file FROM messages")]
        finally:
            db.close()

    def uids(self, account, mailbox="INBOX"):
        return [r[0] for r in self.message_rows(account, mailbox)]

    def messages(self, account, mailbox="INBOX"):
        """The stored messages (bytes) of a mailbox, in UID order."""
        out = []
        msgdir = os.path.join(self.account_dir(account), "msg")
        for uid, name, size in self.message_rows(account, mailbox):
            with open(os.path.join(msgdir, name), "rb") as f:
                out.append(f.read())
        return out

    def find(self, account, token, mailbox="INBOX"):
        if isinstance(token, str):
            token = token.encode()
        return [m for m in self.messages(account, mailbox) if token in m]

    def wait_messages(self, account, n, timeout=10.0, mailbox="INBOX"):
        """Wait until the mailbox holds at least n messages; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(account, mailbox)
            if len(msgs) >= n or time.monotonic() > deadline:
                return msgs
            time.sleep(0.05)

    def server_uid(self):
        """The real uid the running server process has."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
        return None


def correio_uid():
    try:
        return pwd.getpwnam("correio").pw_uid
    except KeyError:
        return None


# --- a raw SMTP client ---------------------------------------------------------------
class Closed(Exception):
    pass


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*)$", re.S)


class RawSMTP:
    """Bytes in, replies out. Every read has a timeout."""

    def __init__(self, port, host="127.0.0.1", timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.transcript = []

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append((">", data[:300]))
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed("connection closed by server; unread: %r" % self.buf)
        self.buf += chunk

    def readline(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("reply line without CRLF: %r" % self.buf[:200])
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.transcript.append(("<", line))
        return line

    def reply(self):
        lines = []
        prev = None
        while True:
            line = self.readline()
            m = REPLY_LINE.match(line)
            if not m:
                raise AssertionError("malformed reply line %r" % line)
            code = int(m.group(1))
            lines.append(m.group(3).decode("utf-8", "replace"))
            if prev is not None and code != prev:
                raise AssertionError("reply code changed within a multi-line reply: %r" % lines)
            prev = code
            if m.group(2) == b" ":
                return Reply(code, lines)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def expect(self, code, line=None, enh=None):
        r = self.cmd(line) if line is not None else self.reply()
        assert r.code == code, "%s: want %d, got %r" % (line, code, r)
        if enh:
            assert r.lines[-1].startswith(enh), "%s: want %s, got %r" % (line, enh, r)
        return r

    def greeting(self):
        return self.expect(220)

    def ehlo(self, name="client.example.org"):
        return self.expect(250, "EHLO " + name)

    def pending(self, wait=0.5):
        """Bytes the server sends within `wait` seconds (b"" if none; None if closed)."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
            if not data:
                return None
            return data
        except socket.timeout:
            return b""
        except ConnectionResetError:
            return None
        finally:
            self.sock.settimeout(self.timeout)

    def wait_closed(self, timeout=IO_TIMEOUT):
        """Read until EOF; returns what came before it. Raises on timeout."""
        deadline = time.monotonic() + timeout
        data = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close the connection; got %r" % data[-500:])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.sock.settimeout(self.timeout)
                return data
            data += chunk

    def starttls(self, **ctx_kw):
        r = self.cmd("STARTTLS")
        assert r.code == 220, "STARTTLS: %r" % r
        assert self.buf == b"", "data after the STARTTLS reply, before TLS: %r" % self.buf
        self.wrap_tls(**ctx_kw)
        return r

    def wrap_tls(self, minimum=None, maximum=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if minimum:
            ctx.minimum_version = minimum
        if maximum:
            ctx.maximum_version = maximum
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.example.test")
        self.sock.settimeout(self.timeout)


def unverified_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- stored message parsing ----------------------------------------------------------
def split_trace(data):
    """(return_path_line, received_field_unfolded, rest) of a stored message."""
    assert data.startswith(b"Return-Path: "), "stored message does not start with Return-Path: %r" % data[:200]
    i = data.index(b"\r\n")
    rp = data[:i]
    pos = i + 2
    assert data.startswith(b"Received: ", pos), "no Received: after Return-Path: %r" % data[:400]
    j = pos
    while True:
        k = data.index(b"\r\n", j)
        j = k + 2
        if data[j:j + 1] not in (b" ", b"\t"):
            break
    received = data[pos:j - 2]
    unfolded = re.sub(rb"\s+", b" ", re.sub(rb"\r\n(?=[ \t])", b"", received))
    return rp, unfolded.decode("utf-8", "replace"), data[j:]


def has_bare_lf_or_cr(data):
    return re.search(rb"(?<!\r)\n|\r(?!\n)", data) is not None


def make_message(token, subject=None, body=None, extra_headers=()):
    """A small RFC 5322 message with CRLF line endings, as bytes."""
    hdrs = [
        "From: Sender <sender@example.org>",
        "To: Alice <alice@example.test>",
        "Subject: %s" % (subject or "test " + token),
        "Message-ID: <%s@example.org>" % token,
        "Date: Mon, 01 Jan 2024 12:00:00 +0000",
    ] + list(extra_headers)
    body = body if body is not None else "Hello,\r\nthis is %s.\r\n" % token
    return ("\r\n".join(hdrs) + "\r\n\r\n" + body).encode("utf-8")


_tok_counter = [0]
_tok_lock = threading.Lock()


def token(prefix="tok"):
    with _tok_lock:
        _tok_counter[0] += 1
        n = _tok_counter[0]
    return "%s-%d-%d-%s" % (prefix, os.getpid(), n, os.urandom(4).hex())


def guard(srv):
    """Generator for function-scoped fixtures wrapping a shared server:
    restart it if an earlier test killed it; after the test, fail when it
    died or a sanitizer spoke during the test."""
    import pytest
    gap = srv.log_since(srv.checked_upto) if srv.checked_upto is not None else ""
    rep = sanitizer_report(gap)
    if rep or not srv.alive():
        if srv.alive():
            try:
                srv.proc.wait(10)  # a sanitizer report ends in exit
            except subprocess.TimeoutExpired:
                pass
        srv.kill9()
        srv.start()
        srv.checked_upto = srv.log_size()
        if rep:
            srv.keep = True
            pytest.fail("%s: sanitizer report after the previous test ended (blame that one):\n%s"
                        % (srv.name, rep), pytrace=False)
    off = srv.log_size()
    yield srv
    time.sleep(0.02)
    with open(srv.log_path, "rb") as f:
        f.seek(off)
        raw = f.read()
    srv.checked_upto = off + len(raw)
    text = raw.decode("utf-8", "replace")
    rep = sanitizer_report(text)
    died = not srv.alive()
    if rep or died:
        # Reap it (a sanitizer report ends in exit) so that the next test
        # gets a fresh server and the module's teardown does not report it again.
        srv.keep = True
        if srv.alive():
            try:
                srv.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        rc = srv.proc.returncode if srv.proc else None
        srv.kill9()
        srv.checked_upto = srv.log_size()
    if rep:
        pytest.fail("%s: sanitizer report in %s during this test:\n%s" % (srv.name, srv.log_path, rep),
                    pytrace=False)
    if died:
        pytest.fail("%s: the server died during this test (status %s); log:\n%s"
                    % (srv.name, rc, text[-4000:]), pytrace=False)


# --- IMAP ------------------------------------------------------------------------------
# Clients: Python's imaplib (imap_ssl / imap_starttls) and RawIMAP, a byte-level
# client that keeps every response line as the server sent it.
import imaplib  # noqa: E402  (kept with the IMAP helpers)
import smtplib  # noqa: E402

IMAP_HOST = "127.0.0.1"
IMAP_CAPS = ("IMAP4REV1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT",
             "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "UIDPLUS", "MOVE",
             "CONDSTORE", "QRESYNC")
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
               "Archive": "\\Archive"}


def imap_ssl(server, user=None, password=DEFAULT_PASSWORD, timeout=IO_TIMEOUT):
    """imaplib over implicit TLS (port 993 + offset), logged in when user is given."""
    m = imaplib.IMAP4_SSL(IMAP_HOST, server.imaps_port, ssl_context=unverified_tls_context(),
                          timeout=timeout)
    if user:
        typ, data = m.login(user, password)
        assert typ == "OK", "LOGIN %s: %r %r" % (user, typ, data)
    return m


def imap_starttls(server, user=None, password=DEFAULT_PASSWORD, timeout=IO_TIMEOUT):
    """imaplib on port 143 + offset after STARTTLS, logged in when user is given."""
    m = imaplib.IMAP4(IMAP_HOST, server.imap_port, timeout=timeout)
    typ, data = m.starttls(ssl_context=unverified_tls_context())
    assert typ == "OK", "STARTTLS: %r %r" % (typ, data)
    if user:
        typ, data = m.login(user, password)
        assert typ == "OK", "LOGIN %s: %r %r" % (user, typ, data)
    return m


def new_account(server, prefix="u", domain="example.test"):
    """A fresh account on a running server (its own empty mailboxes)."""
    with _tok_lock:
        _tok_counter[0] += 1
        n = _tok_counter[0]
    addr = "%s%d-%s@%s" % (prefix, n, os.urandom(3).hex(), domain)
    server.add_user(addr)
    return addr


def smtp_deliver(server, rcpt, msg, mail_from="sender@example.org"):
    """Deliver msg (bytes) to rcpt by SMTP on the server's MX port."""
    with smtplib.SMTP(IMAP_HOST, server.smtp_port, local_hostname="client.example.org",
                      timeout=IO_TIMEOUT) as s:
        refused = s.sendmail(mail_from, [rcpt] if isinstance(rcpt, str) else rcpt, msg)
    assert refused == {}, "refused: %r" % refused


# -- parsing IMAP data --
class _Parser:
    """Parses IMAP response data: atoms -> str, quoted strings and literals ->
    bytes, NIL -> None, parenthesized lists -> list."""

    ATOM_END = b" ()\r\n"

    def __init__(self, data, pos=0):
        self.d = data
        self.i = pos

    def ws(self):
        while self.i < len(self.d) and self.d[self.i:self.i + 1] in (b" ", b"\r", b"\n"):
            self.i += 1

    def value(self):
        self.ws()
        d, i = self.d, self.i
        c = d[i:i + 1]
        if c == b"(":
            self.i += 1
            out = []
            while True:
                self.ws()
                if self.i >= len(d):
                    raise ValueError("unterminated list in %r" % d[:300])
                if d[self.i:self.i + 1] == b")":
                    self.i += 1
                    return out
                out.append(self.value())
        if c == b'"':
            j = i + 1
            buf = bytearray()
            while True:
                ch = d[j:j + 1]
                if ch == b"":
                    raise ValueError("unterminated string in %r" % d[:300])
                if ch == b"\\":
                    buf += d[j + 1:j + 2]
                    j += 2
                    continue
                if ch == b'"':
                    self.i = j + 1
                    return bytes(buf)
                buf += ch
                j += 1
        if c == b"{":
            m = re.compile(rb"\{(\d+)\+?\}\r\n").match(d, i)
            if not m:
                raise ValueError("bad literal at %r" % d[i:i + 40])
            n = int(m.group(1))
            start = m.end()
            self.i = start + n
            return d[start:start + n]
        # an atom; BODY[...]<...> keeps what is inside its brackets
        j = i
        depth = 0
        while j < len(d):
            ch = d[j:j + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth == 0 and ch in (b" ", b"(", b")", b"\r", b"\n"):
                break
            j += 1
        if j == i:
            raise ValueError("empty atom at %r" % d[i:i + 40])
        self.i = j
        atom = d[i:j].decode("utf-8", "replace")
        return None if atom.upper() == "NIL" else atom


def imap_parse(data):
    """The values of IMAP response data, e.g. b'(A "b" NIL)' -> [['A', b'b', None]]."""
    if isinstance(data, str):
        data = data.encode()
    p = _Parser(data)
    out = []
    while True:
        p.ws()
        if p.i >= len(data):
            return out
        out.append(p.value())


def parse_fetch(resp):
    """b'* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[] {5}\\r\\nhello)' -> (3, {'UID': '7', ...})."""
    m = re.match(rb"\* (\d+) FETCH ", resp)
    assert m, "not a FETCH response: %r" % resp[:200]
    p = _Parser(resp, m.end())
    items = p.value()
    assert isinstance(items, list) and len(items) % 2 == 0, "bad FETCH data: %r" % resp[:300]
    out = {}
    for k, v in zip(items[0::2], items[1::2]):
        out[k.upper()] = v
    return int(m.group(1)), out


class IMAPResult:
    """A command's responses: untagged (list of bytes, literals included) and the tagged line."""

    def __init__(self, tag, untagged, tagged):
        self.tag = tag
        self.untagged = untagged
        self.tagged = tagged
        m = re.match(rb"\S+ (OK|NO|BAD)(?: \[([^\]]*)\])? ?(.*)$", tagged, re.S)
        assert m, "malformed tagged response %r" % tagged
        self.status = m.group(1).decode()
        self.code = m.group(2).decode("utf-8", "replace") if m.group(2) is not None else None
        self.text = m.group(3).decode("utf-8", "replace")

    def __repr__(self):
        return "IMAPResult(%r, untagged=%r)" % (self.tagged, [u[:300] for u in self.untagged])

    @property
    def ok(self):
        return self.status == "OK"

    def starting(self, prefix):
        """Untagged responses that start with prefix (bytes or str), e.g. '* LIST '."""
        if isinstance(prefix, str):
            prefix = prefix.encode()
        return [u for u in self.untagged if u.upper().startswith(prefix.upper())]

    def matching(self, regex):
        if isinstance(regex, str):
            regex = regex.encode()
        return [u for u in self.untagged if re.match(regex, u, re.I | re.S)]

    def fetches(self):
        return [parse_fetch(u) for u in self.matching(rb"\* \d+ FETCH ")]

    def expunges(self):
        return [int(u.split()[1]) for u in self.matching(rb"\* \d+ EXPUNGE$")]

    def exists(self):
        n = [int(u.split()[1]) for u in self.matching(rb"\* \d+ EXISTS$")]
        return n[-1] if n else None

    def search(self):
        """The numbers of * SEARCH (or * ESEARCH ALL is not used here)."""
        out = []
        for u in self.starting("* SEARCH"):
            out += [int(x) for x in re.findall(rb"\d+", u.split(b"(")[0][8:])]
        return out

    def code_of(self, name):
        """The bracketed response code NAME ... in the tagged or an untagged OK/NO."""
        for line in [self.tagged] + self.untagged:
            m = re.search(rb"\[(" + name.encode() + rb"(?: [^\]]*)?)\]", line, re.I)
            if m:
                return m.group(1).decode()
        return None


class Literal:
    """A literal argument for RawIMAP.command(): synchronizing unless plus."""

    def __init__(self, data, plus=False):
        self.data = data.encode("utf-8") if isinstance(data, str) else data
        self.plus = plus


class RawIMAP:
    """A byte-level IMAP client. Every read has a timeout; every line sent and
    received is kept in transcript."""

    def __init__(self, port, tls=False, timeout=IO_TIMEOUT, greeting=True, host=IMAP_HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.transcript = []
        self.ntag = 0
        if tls:
            self.wrap_tls()
        self.greeting = self.response() if greeting else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def wrap_tls(self):
        self.sock = unverified_tls_context().wrap_socket(self.sock, server_hostname="mx.example.test")
        self.sock.settimeout(self.timeout)

    def next_tag(self):
        self.ntag += 1
        return "t%d" % self.ntag

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append((">", data[:300]))
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed("connection closed by server; unread: %r; transcript tail: %r"
                         % (self.buf[:300], self.transcript[-6:]))
        self.buf += chunk

    def readline(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 24:
                raise AssertionError("response line without CRLF: %r" % self.buf[:200])
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self):
        """One whole response, its literals included (b'* 1 FETCH (BODY[] {3}\\r\\nabc)')."""
        out = b""
        while True:
            line = self.readline()
            out += line
            m = re.search(rb"\{(\d+)\}$", line)
            if m and not line.startswith(b"+"):
                out += b"\r\n" + self._read_exact(int(m.group(1)))
                continue
            self.transcript.append(("<", out[:300]))
            return out

    def read_tagged(self, tag, untagged=None):
        untagged = [] if untagged is None else untagged
        tb = tag.encode() + b" "
        while True:
            r = self.response()
            if r.startswith(tb):
                return IMAPResult(tag, untagged, r)
            untagged.append(r)

    def command(self, *parts, tag=None):
        """Send TAG parts... CRLF; str/bytes parts are sent as they are (joined by
        spaces), Literal parts as {n}/{n+} literals. Returns an IMAPResult; a
        refused synchronizing literal ends the command early."""
        tag = tag or self.next_tag()
        untagged = []
        pending = tag.encode()
        for p in parts:
            if isinstance(p, Literal):
                pending += b" {%d%s}\r\n" % (len(p.data), b"+" if p.plus else b"")
                if not p.plus:
                    self.send(pending)
                    pending = b""
                    while True:
                        r = self.response()
                        if r.startswith(b"+"):
                            break
                        if r.startswith(tag.encode() + b" "):
                            return IMAPResult(tag, untagged, r)
                        untagged.append(r)
                pending += p.data
            else:
                if isinstance(p, str):
                    p = p.encode("utf-8")
                pending += b" " + p
        self.send(pending + b"\r\n")
        return self.read_tagged(tag, untagged)

    def cmd(self, line, tag=None):
        """One command line (no literals)."""
        return self.command(line, tag=tag)

    def ok(self, line, *more):
        r = self.command(line, *more)
        assert r.ok, "%s: %r" % (line, r)
        return r

    def login(self, user, password=DEFAULT_PASSWORD):
        r = self.command("LOGIN", quote(user), quote(password))
        assert r.ok, "LOGIN %s: %r" % (user, r)
        return r

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.ok, "STARTTLS: %r" % r
        assert self.buf == b"", "data after the STARTTLS reply, before TLS: %r" % self.buf
        self.wrap_tls()
        return r

    def select(self, mailbox="INBOX", extra=""):
        return self.ok("SELECT %s%s" % (quote(mailbox), extra))

    def append(self, mailbox, msg, flags=None, date=None, plus=False):
        parts = ["APPEND", quote(mailbox)]
        if flags is not None:
            parts.append("(%s)" % " ".join(flags))
        if date is not None:
            parts.append('"%s"' % date)
        return self.command(*parts, Literal(msg, plus=plus))

    def pending(self, wait=0.5):
        """Bytes the server sends within `wait` seconds (b"" if none; None if closed)."""
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
            return data if data else None
        except socket.timeout:
            return b""
        except (ConnectionResetError, ssl.SSLError):
            return None
        finally:
            self.sock.settimeout(self.timeout)

    def wait_response(self, regex, timeout=IO_TIMEOUT):
        """Read responses until one matches regex; returns (it, the ones before).
        Raises AssertionError on timeout."""
        if isinstance(regex, str):
            regex = regex.encode()
        deadline = time.monotonic() + timeout
        seen = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                self.sock.settimeout(left)
                r = self.response()
                if re.match(regex, r, re.I | re.S):
                    return r, seen
                seen.append(r)
        except socket.timeout:
            raise AssertionError("no response matching %r within %.1f s; got %r"
                                 % (regex, timeout, seen))
        finally:
            self.sock.settimeout(self.timeout)

    def wait_closed(self, timeout=IO_TIMEOUT):
        """Read until EOF; returns what came before it. Raises on timeout."""
        deadline = time.monotonic() + timeout
        data = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close the connection; got %r" % data[-500:])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.sock.settimeout(self.timeout)
                return data
            data += chunk


def quote(s):
    """An IMAP quoted string."""
    if isinstance(s, bytes):
        s = s.decode("utf-8")
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def imap_raw(server, user=None, password=DEFAULT_PASSWORD, tls=True, timeout=IO_TIMEOUT):
    """RawIMAP on the IMAPS port (tls=True) or the STARTTLS port after STARTTLS
    (tls="starttls") or plain (tls=False); logged in when user is given."""
    if tls == "starttls":
        c = RawIMAP(server.imap_port, timeout=timeout)
        c.starttls()
    elif tls:
        c = RawIMAP(server.imaps_port, tls=True, timeout=timeout)
    else:
        c = RawIMAP(server.imap_port, timeout=timeout)
    if user:
        c.login(user, password)
    return c


# -- IMAP response helpers shared by the test_imap_* modules --
def select_info(r):
    """EXISTS, RECENT, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ of a SELECT/EXAMINE result."""
    info = {"EXISTS": r.exists()}
    for u in r.untagged:
        m = re.match(rb"\* (\d+) RECENT$", u)
        if m:
            info["RECENT"] = int(m.group(1))
        m = re.match(rb"\* OK \[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ|UNSEEN) (\d+)\]", u)
        if m:
            info[m.group(1).decode()] = int(m.group(2))
    return info


def status(c, mailbox, items="MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN"):
    r = c.ok("STATUS %s (%s)" % (quote(mailbox), items))
    lines = r.starting("* STATUS ")
    assert len(lines) == 1, r
    vals = imap_parse(lines[0][len(b"* STATUS "):])
    assert len(vals) == 2, lines[0]
    name, data = vals
    got = name if isinstance(name, str) else name.decode()
    assert got == mailbox, "STATUS names %r, asked for %r" % (got, mailbox)
    return {k.upper(): int(v) for k, v in zip(data[0::2], data[1::2])}


def fetch1(c, what, seq="1", uid=False):
    """FETCH of one message; returns its item dictionary."""
    r = c.ok("%sFETCH %s %s" % ("UID " if uid else "", seq, what))
    f = r.fetches()
    assert len(f) >= 1, r
    # unsolicited FETCHes of others may come too; keep the one asked for
    if not uid:
        f = [x for x in f if x[0] == int(seq)] or f
    items = {}
    for _, d in f:
        items.update(d)
    return items


def flags_of(items):
    return set(f.upper() for f in items["FLAGS"])


def parse_uidset(s):
    out = []
    for part in s.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out += list(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def apply_expunges(uids, expunges):
    """Apply * n EXPUNGE responses in order to a list of UIDs: (left, removed)."""
    left, gone = list(uids), []
    for n in expunges:
        assert 1 <= n <= len(left), "* %d EXPUNGE with %d messages" % (n, len(left))
        gone.append(left.pop(n - 1))
    return left, gone


# --- POP3 ------------------------------------------------------------------------------
# Clients: Python's poplib (pop3_ssl / pop3_stls) and RawPOP3, a byte-level client.
import poplib  # noqa: E402  (kept with the POP3 helpers)

POP3_HOST = "127.0.0.1"


def pop3_ssl(server, user=None, password=DEFAULT_PASSWORD, timeout=IO_TIMEOUT, context=None):
    """poplib over implicit TLS (port 995 + offset), logged in with USER/PASS when user is given."""
    p = poplib.POP3_SSL(POP3_HOST, server.pop3s_port, context=context or unverified_tls_context(),
                        timeout=timeout)
    if user:
        p.user(user)
        p.pass_(password)
    return p


def pop3_stls(server, user=None, password=DEFAULT_PASSWORD, timeout=IO_TIMEOUT, context=None):
    """poplib on port 110 + offset after STLS, logged in with USER/PASS when user is given."""
    p = poplib.POP3(POP3_HOST, server.pop3_port, timeout=timeout)
    p.stls(context or unverified_tls_context())
    if user:
        p.user(user)
        p.pass_(password)
    return p


class RawPOP3:
    """A byte-level POP3 client. Every read has a timeout; lines are returned
    without their CRLF, multi-line data as sent (still byte-stuffed)."""

    def __init__(self, port, tls=False, timeout=IO_TIMEOUT, host=POP3_HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.transcript = []
        if tls:
            self.wrap_tls()
        self.greeting = self.readline()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def wrap_tls(self, context=None):
        self.sock = (context or unverified_tls_context()).wrap_socket(self.sock,
                                                                       server_hostname="mx.example.test")
        self.sock.settimeout(self.timeout)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append((">", data[:300]))
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            chunk = b""
        if not chunk:
            raise Closed("connection closed by server; unread: %r; transcript tail: %r"
                         % (self.buf[:300], self.transcript[-6:]))
        self.buf += chunk

    def readline(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 24:
                raise AssertionError("reply line without CRLF: %r" % self.buf[:200])
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.transcript.append(("<", line[:300]))
        return line

    def cmd(self, line):
        """Send one command line; returns the status line (b'+OK ...' / b'-ERR ...')."""
        self.send(line + ("\r\n" if isinstance(line, str) else b"\r\n"))
        return self.readline()

    def ok(self, line):
        r = self.cmd(line)
        assert r.startswith(b"+OK"), "%s: %r" % (line, r)
        return r

    def err(self, line):
        r = self.cmd(line)
        assert r.startswith(b"-ERR"), "%s: want -ERR, got %r" % (line, r)
        return r

    def data(self):
        """The raw multi-line data after a +OK, up to (not including) the '.' line:
        the bytes as sent, CRLFs included, byte-stuffing not undone."""
        while b"\r\n.\r\n" not in b"\r\n" + self.buf:
            self._fill()
        if self.buf.startswith(b".\r\n"):
            self.buf = self.buf[3:]
            return b""
        i = self.buf.index(b"\r\n.\r\n")
        out, self.buf = self.buf[:i + 2], self.buf[i + 5:]
        return out

    def multi(self, line):
        """A multi-line command: (status line, raw data or None after -ERR)."""
        r = self.cmd(line)
        return r, (self.data() if r.startswith(b"+OK") else None)

    def login(self, user, password=DEFAULT_PASSWORD):
        self.ok("USER " + user)
        return self.ok("PASS " + password)

    def stls(self, context=None):
        r = self.ok("STLS")
        assert self.buf == b"", "data after the STLS reply, before TLS: %r" % self.buf
        self.wrap_tls(context)
        return r

    def pending(self, wait=0.5):
        """Bytes the server sends within `wait` seconds (b"" if none; None if closed)."""
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
            return data if data else None
        except socket.timeout:
            return b""
        except (ConnectionResetError, ssl.SSLError):
            return None
        finally:
            self.sock.settimeout(self.timeout)

    def wait_closed(self, timeout=IO_TIMEOUT):
        """Read until EOF; returns what came before it. Raises on timeout."""
        deadline = time.monotonic() + timeout
        data = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close the connection; got %r" % data[-500:])
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.sock.settimeout(self.timeout)
                return data
            data += chunk


def pop3_unstuff(data):
    """Multi-line data as sent -> the message: byte-stuffing undone (RFC 1939 3)."""
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in data.split(b"\r\n"))


def pop3_raw(server, user=None, password=DEFAULT_PASSWORD, tls=True, timeout=IO_TIMEOUT):
    """RawPOP3 on the POP3S port (tls=True), on the STLS port after STLS
    (tls="stls") or plain (tls=False); logged in with USER/PASS when user is given."""
    if tls == "stls":
        c = RawPOP3(server.pop3_port, timeout=timeout)
        c.stls()
    elif tls:
        c = RawPOP3(server.pop3s_port, tls=True, timeout=timeout)
    else:
        c = RawPOP3(server.pop3_port, timeout=timeout)
    if user:
        c.login(user, password)
    return c


# --- DNS: a dnsmasq of the test's own (for the outbound queue) ------------------------
DNSMASQ = os.environ.get("DNSMASQ") or "/usr/sbin/dnsmasq"


def dns_query_packet(name, qtype=15, qid=0x1234):
    """A DNS query (RD set) for name/qtype, class IN, as bytes."""
    q = qid.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode("ascii")
    return q + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"


def dns_answers(port, name="probe.test", timeout=0.2, host="127.0.0.1"):
    """True when something answers a UDP query on host:port within timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(dns_query_packet(name), (host, port))
        data = s.recv(4096)
        return len(data) >= 12 and data[:2] == b"\x12\x34"
    except OSError:
        return False
    finally:
        s.close()


def _udp_tcp_free(port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def _die_with_parent():
    """preexec_fn: SIGKILL the child when the test process dies (Linux)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Dnsmasq:
    """dnsmasq on a free loopback port, authoritative (NXDOMAIN) for test.,
    with the records given as dnsmasq options (e.g.
    "--mx-host=remote.test,mx1.remote.test,10"). `resolver` is the
    delivery.dns_resolver setting that points at it."""

    def __init__(self, records, local_zones=("test",)):
        if not os.access(DNSMASQ, os.X_OK):
            raise ServerError("%s not found (Debian package dnsmasq-base, `make deps`)" % DNSMASQ)
        self.dir = make_test_dir()
        self.log_path = os.path.join(self.dir, "dnsmasq.log")
        self.records = list(records)
        self.local_zones = local_zones
        self.proc = None
        self.port = None
        self._start()

    @property
    def resolver(self):
        return "127.0.0.1:%d" % self.port

    def _argv(self, port):
        user = pwd.getpwuid(os.geteuid()).pw_name
        argv = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                "--port=%d" % port, "--listen-address=127.0.0.1", "--bind-interfaces",
                "--conf-file=/dev/null", "--pid-file=%s" % os.path.join(self.dir, "dnsmasq.pid"),
                "--log-facility=%s" % self.log_path, "--log-queries",
                "--user=%s" % user]  # stay who we are (as root it would become nobody)
        argv += ["--local=/%s/" % z for z in self.local_zones]
        return argv + self.records

    def _start(self):
        rnd = int.from_bytes(os.urandom(4), "big")
        for attempt in range(40):
            port = 20000 + (rnd + attempt * 7919) % 40000
            with _port_lock:
                if port in _used_ports or not _udp_tcp_free(port):
                    continue
                _used_ports.add(port)
            errpath = os.path.join(self.dir, "dnsmasq.stderr")
            with open(errpath, "wb") as errf:
                proc = subprocess.Popen(self._argv(port), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=errf,
                                        close_fds=True, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if dns_answers(port, timeout=0.1):
                    self.proc, self.port = proc, port
                    return
                if proc.poll() is not None:
                    break  # could not bind after all: the next port
            if proc.poll() is None:  # running but silent: something else is wrong
                proc.kill()
                proc.wait(10)
                raise ServerError("dnsmasq on port %d does not answer; log:\n%s"
                                  % (port, self.log_text()))
            with open(errpath, "rb") as errf:
                err = errf.read().decode("utf-8", "replace")
            if "ddress already in use" not in err and "failed to create listening socket" not in err:
                raise ServerError("dnsmasq exited with %s: %s" % (proc.returncode, err))
        raise ServerError("dnsmasq: no free port found")

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
        if os.environ.get("CORREIO_E2E_KEEP"):
            print("correio e2e: kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
