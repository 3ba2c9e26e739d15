"""Never lose an accepted message: kill -9 the server in the middle of a
burst of deliveries, restart it, and check that every message that got
"250" is in the mailbox exactly once, that nothing is duplicated, and that
start-up left no half-written files behind."""
import os
import re
import signal
import smtplib
import threading
import time

import pytest

from helpers import make_message, split_trace

ALICE = "alice@example.test"
BOB = "bob@example.test"
THREADS = 8
PER_THREAD = 25
TOKEN_RE = re.compile(rb"Message-ID: <(dur-[A-Za-z0-9-]+)@example\.org>")


def message_for(tok):
    body = "".join("line %03d of %s: the quick brown fox jumps over the lazy dog\r\n" % (i, tok)
                   for i in range(40))
    return make_message(tok, body=body)


def rcpts_for(thread):
    return [ALICE] if thread % 2 == 0 else [ALICE, BOB]


class Burst:
    """THREADS senders, PER_THREAD messages each; kill the server with
    `sig` once `kill_after` messages were acknowledged."""

    def __init__(self, srv, round_no, kill_after, sig=signal.SIGKILL):
        self.srv = srv
        self.round_no = round_no
        self.kill_after = kill_after
        self.sig = sig
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.acked = {}       # token -> rcpts (got 250)
        self.attempted = {}   # token -> rcpts (sent, outcome unknown or failed)
        self.errors = []
        self.killed_at = None

    def sender(self, t):
        conn = None
        try:
            for i in range(PER_THREAD):
                tok = "dur-%d-%d-%d-%s" % (self.round_no, t, i, os.urandom(3).hex())
                rcpts = rcpts_for(t)
                with self.lock:
                    self.attempted[tok] = rcpts
                try:
                    if conn is None:
                        conn = smtplib.SMTP("127.0.0.1", self.srv.smtp_port,
                                            local_hostname="burst%d.example.org" % t, timeout=10)
                    refused = conn.sendmail("burst@example.org", rcpts, message_for(tok))
                except (smtplib.SMTPException, OSError) as e:
                    with self.lock:
                        self.errors.append("%s: %r" % (tok, e))
                    return  # the server is gone (or refused): stop this sender
                assert refused == {}, refused
                with self.lock:
                    self.acked[tok] = rcpts
                    if len(self.acked) >= self.kill_after:
                        self.enough.set()
        finally:
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass

    def killer(self):
        self.enough.wait(40)
        with self.lock:
            self.killed_at = len(self.acked)
        if self.sig == signal.SIGTERM:
            self.srv.terminate()
        else:
            try:
                os.kill(self.srv.pid, self.sig)
            except ProcessLookupError:
                pass

    def run(self):
        threads = [threading.Thread(target=self.sender, args=(t,), daemon=True) for t in range(THREADS)]
        k = threading.Thread(target=self.killer, daemon=True)
        for th in threads:
            th.start()
        k.start()
        for th in threads:
            th.join(60)
            assert not th.is_alive(), "a sender hung"
        self.enough.set()  # all senders done before the threshold: kill now
        k.join(10)


def check_store(srv, acked, attempted):
    """Every acked message present exactly once per recipient, complete;
    no duplicates at all; no leftovers in tmp/; msg/ and the index agree."""
    for account in (ALICE, BOB):
        uids = srv.uids(account)
        assert uids == sorted(set(uids)), "%s: UIDs not unique and ascending: %r" % (account, uids)
        counts = {}
        for stored in srv.messages(account):
            m = TOKEN_RE.search(stored)
            assert m, "a stored message without a token: %r" % stored[:300]
            tok = m.group(1).decode()
            counts[tok] = counts.get(tok, 0) + 1
            assert tok in attempted, "a message nobody sent: %s" % tok
            _, _, rest = split_trace(stored)
            assert rest == message_for(tok), "message %s stored incomplete or altered" % tok
        dups = {t: n for t, n in counts.items() if n > 1}
        assert not dups, "%s: messages stored more than once: %r" % (account, dups)
        lost = [t for t, rcpts in acked.items() if account in rcpts and counts.get(t, 0) != 1]
        assert not lost, "%s: %d acknowledged messages lost, e.g. %r" % (account, len(lost), lost[:5])
        stray = [t for t in counts if account not in attempted[t]]
        assert not stray, "%s: got messages addressed to others: %r" % (account, stray[:5])
    mail = os.path.join(srv.data_dir, "mail")
    for domain in os.listdir(mail):
        for local in os.listdir(os.path.join(mail, domain)):
            acct_dir = os.path.join(mail, domain, local)
            tmp = os.path.join(acct_dir, "tmp")
            if os.path.isdir(tmp):
                left = os.listdir(tmp)
                assert not left, "%s: files left in tmp/ after start-up: %r" % (acct_dir, left[:5])
            msgdir = os.path.join(acct_dir, "msg")
            files = set(os.listdir(msgdir)) if os.path.isdir(msgdir) else set()
            indexed = set(srv.all_index_files("%s@%s" % (local, domain)))
            orphans = files - indexed
            assert not orphans, "%s: msg/ files without an index row: %r" % (acct_dir, sorted(orphans)[:5])
            missing = indexed - files
            assert not missing, "%s: index rows without a file: %r" % (acct_dir, sorted(missing)[:5])


@pytest.mark.time_limit(150)
def test_kill9_during_burst(make_server):
    srv = make_server(accounts=(ALICE, BOB), name="durable")
    all_acked, all_attempted = {}, {}
    report = []
    t0 = time.monotonic()
    for round_no, kill_after in enumerate((5, 30, 100, 140, 185)):
        b = Burst(srv, round_no, kill_after)
        b.run()
        srv.kill9()  # reap it (and close its log)
        all_acked.update(b.acked)
        all_attempted.update(b.attempted)
        report.append("round %d: killed after %s acks; %d acked, %d attempted, %d errors"
                      % (round_no, b.killed_at, len(b.acked), len(b.attempted), len(b.errors)))
        assert len(b.acked) >= min(kill_after, 10), \
            "round %d: only %d messages acknowledged before the kill; errors: %r" % (round_no, len(b.acked), b.errors[:3])
        srv.start()  # must come up, repairing what the kill left
        check_store(srv, all_acked, all_attempted)
        if time.monotonic() - t0 > 60:
            break
    print("\n".join(report))
    # And it still takes mail after all that.
    tok = "dur-final-%s" % os.urandom(3).hex()
    all_attempted[tok] = [ALICE]
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=10) as s:
        assert s.sendmail("burst@example.org", [ALICE], message_for(tok)) == {}
    all_acked[tok] = [ALICE]
    check_store(srv, all_acked, all_attempted)


@pytest.mark.time_limit(90)
def test_sigterm_during_burst(make_server):
    """A clean stop in the middle of a burst: every acked message is kept,
    the server exits 0 (make_server's stop checks the log)."""
    srv = make_server(accounts=(ALICE, BOB), name="durable-term")
    b = Burst(srv, 9, 60, sig=signal.SIGTERM)
    b.run()
    try:
        rc = srv.proc.wait(20)
    except Exception:
        raise AssertionError("the server did not exit within 20 s of SIGTERM")
    assert rc == 0, "exit status %d after SIGTERM" % rc
    srv.stop()  # reap and check the log for sanitizer reports
    srv.start()
    check_store(srv, b.acked, b.attempted)
    assert len(b.acked) >= 60
