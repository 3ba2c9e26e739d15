"""What keeps IMAP clients in sync: concurrent sessions on one mailbox (RFC
3501 5.2, 7.4.1), IDLE woken by deliveries (RFC 2177), UIDVALIDITY / UIDNEXT
/ HIGHESTMODSEQ across restarts, CONDSTORE and QRESYNC (RFC 7162)."""
import re
import time

import pytest

from helpers import (apply_expunges, fetch1, flags_of, imap_parse, imap_raw, make_message, new_account,
                     parse_uidset, select_info, smtp_deliver, status, token)

ALL_STATUS = "MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ"


def append_n(c, n, box="INBOX", prefix="sy"):
    uids = []
    for _ in range(n):
        r = c.append(box, make_message(token(prefix)))
        assert r.ok, r
        uids.append(int(r.code_of("APPENDUID").split()[2]))
    return uids


def modseq_of(items):
    v = items["MODSEQ"]
    return int(v[0] if isinstance(v, list) else v)


def vanished(r):
    """[(earlier, [uids])] of * VANISHED responses."""
    out = []
    for u in r.untagged:
        m = re.match(rb"\* VANISHED (\(EARLIER\) )?([0-9:,]+)$", u, re.I)
        if m:
            out.append((bool(m.group(1)), parse_uidset(m.group(2).decode())))
    return out


# --- concurrent sessions ----------------------------------------------------------------------
def test_other_session_sees_flags_expunge_and_new_mail(server):
    acct = new_account(server)
    with imap_raw(server, acct) as a, imap_raw(server, acct) as b:
        uids = append_n(a, 4)
        assert select_info(a.select("INBOX"))["EXISTS"] == 4
        assert select_info(b.select("INBOX"))["EXISTS"] == 4

        # flags
        b.ok("STORE 2 +FLAGS (\\Flagged)")
        r = a.ok("NOOP")
        f = dict(r.fetches())
        assert 2 in f and "\\FLAGGED" in flags_of(f[2]), "NOOP after another session's STORE: %r" % r

        # new mail by APPEND in the other session
        r = b.append("INBOX", make_message(token("new")))
        assert r.ok
        uids.append(int(r.code_of("APPENDUID").split()[2]))
        r = a.ok("NOOP")
        assert r.exists() == 5, "NOOP after another session's APPEND: want * 5 EXISTS: %r" % r

        # expunge: not during FETCH/STORE/SEARCH by sequence number (RFC 3501 7.4.1)
        b.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        r = a.cmd("FETCH 1:* (UID FLAGS)")  # NO [EXPUNGEISSUED] (RFC 5530) is allowed
        assert r.ok or (r.status == "NO" and r.code == "EXPUNGEISSUED"), r
        assert not r.expunges(), "EXPUNGE sent during FETCH (RFC 3501 7.4.1 forbids it): %r" % r
        nums = sorted(n for n, _ in r.fetches())
        assert max(nums) <= 5
        r = a.ok("STORE 1 +FLAGS (\\Seen)")
        assert not r.expunges(), "EXPUNGE sent during STORE: %r" % r
        r = a.ok("SEARCH ALL")
        assert not r.expunges(), "EXPUNGE sent during SEARCH: %r" % r
        r = a.ok("NOOP")
        assert r.expunges() == [3], "NOOP: want * 3 EXPUNGE: %r" % r
        left, _ = apply_expunges(uids, r.expunges())
        r = a.ok("FETCH 1:* (UID)")
        assert [int(d["UID"]) for _, d in sorted(r.fetches())] == left, r

        # and the other way round, with a flag change and an expunge in one go
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("STORE 4 +FLAGS.SILENT (\\Answered)")
        a.ok("EXPUNGE")
        r = b.ok("NOOP")
        assert r.expunges() == [1], r
        f = dict(r.fetches())
        # the \Answered message was 4 before the EXPUNGE, 3 after; FETCH and EXPUNGE in some order
        assert any("\\ANSWERED" in flags_of(d) for d in f.values()), r
        assert max(n for n, _ in b.ok("FETCH 1:* (UID)").fetches()) == 3


def test_expunge_held_back_while_fetching_by_sequence(server):
    """A pipelined FETCH 1:* right after another session's EXPUNGE: the numbers
    the client knows stay valid until a command that may report it."""
    acct = new_account(server)
    with imap_raw(server, acct) as a, imap_raw(server, acct) as b:
        uids = append_n(a, 3)
        a.select("INBOX")
        b.select("INBOX")
        b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        for cmd in ("FETCH 1:3 (UID FLAGS)", "FETCH 3 (UID)", "STORE 3 +FLAGS (\\Seen)", "SEARCH ALL",
                    "COPY 2 Trash"):
            r = a.cmd(cmd)
            assert not r.expunges(), "%s reported an EXPUNGE (RFC 3501 7.4.1): %r" % (cmd, r)
            assert r.status in ("OK", "NO"), "%s: %r" % (cmd, r)
        r = a.ok("FETCH 3 (UID)")
        assert dict(r.fetches())[3]["UID"] == str(uids[2]), "sequence 3 must still be UID %d: %r" % (uids[2], r)
        r = a.ok("UID FETCH 1:* (FLAGS)")  # UID commands may report it
        if not r.expunges():
            r = a.ok("NOOP")
        assert r.expunges() == [1], r


# --- IDLE ------------------------------------------------------------------------------------------
def test_idle_woken_by_smtp_delivery_within_a_second(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c, imap_raw(server, acct) as other:
        assert select_info(c.select("INBOX"))["EXISTS"] == 0
        c.send("t1 IDLE\r\n")
        cont = c.response()
        assert cont.startswith(b"+"), cont
        assert c.pending(0.3) == b"", "IDLE: nothing to report yet"

        delays = {}
        smtp_deliver(server, acct, make_message(token("idle")))
        t0 = time.monotonic()
        resp, _ = c.wait_response(rb"\* 1 EXISTS$", timeout=5)
        delays["smtp delivery -> * 1 EXISTS"] = time.monotonic() - t0

        other.select("INBOX")
        other.ok("STORE 1 +FLAGS (\\Flagged)")
        t0 = time.monotonic()
        resp, _ = c.wait_response(rb"\* 1 FETCH ", timeout=5)
        delays["STORE elsewhere -> * 1 FETCH"] = time.monotonic() - t0
        assert b"\\Flagged" in resp, resp

        assert other.append("INBOX", make_message(token("idle"))).ok
        t0 = time.monotonic()
        c.wait_response(rb"\* 2 EXISTS$", timeout=5)
        delays["APPEND elsewhere -> * 2 EXISTS"] = time.monotonic() - t0

        other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
        t0 = time.monotonic()
        c.wait_response(rb"\* 1 EXPUNGE$", timeout=5)
        delays["EXPUNGE elsewhere -> * 1 EXPUNGE"] = time.monotonic() - t0

        c.send("DONE\r\n")
        r = c.read_tagged("t1")
        assert r.ok, r
        slow = {k: round(v, 3) for k, v in delays.items() if v > 1.0}
        assert not slow, "IDLE reported changes later than 1 s: %r (all: %r)" % (slow, delays)
        r = c.ok("FETCH 1 (FLAGS)")
        assert dict(r.fetches())[1], r


def test_idle_protocol_details(server):
    acct = new_account(server)
    with imap_raw(server, acct) as c:
        c.select("INBOX")
        c.send("t1 IDLE\r\n")
        assert c.response().startswith(b"+")
        c.send("NOOP\r\n")  # anything but DONE ends IDLE with BAD (RFC 2177)
        resp, _ = c.wait_response(rb"t1 |\* BAD")
        assert b"BAD" in resp, resp
        c.ok("NOOP")
        c.send("t2 IDLE\r\n")
        assert c.response().startswith(b"+")
        c.send("done\r\n")  # case-insensitive
        assert c.read_tagged("t2").ok
        # IDLE without a selected mailbox is allowed (authenticated state)
        c.ok("UNSELECT")
        c.send("t3 IDLE\r\n")
        assert c.response().startswith(b"+")
        c.send("DONE\r\n")
        assert c.read_tagged("t3").ok


# --- restarts ----------------------------------------------------------------------------------------
@pytest.mark.time_limit(120)
def test_uidvalidity_uidnext_highestmodseq_survive_restart(make_server):
    srv = make_server()
    acct = "alice@example.test"
    with imap_raw(srv, acct) as c:
        c.ok("CREATE Projects/Keep")
        append_n(c, 4)
        append_n(c, 2, box="Projects/Keep")
        c.select("INBOX")
        c.ok("STORE 2 +FLAGS.SILENT (\\Flagged $Important)")
        c.ok("STORE 4 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")  # UIDNEXT stays past the expunged UID
        before = {b: status(c, b, ALL_STATUS) for b in ("INBOX", "Projects/Keep", "Sent")}
        r = c.ok("FETCH 1:* (UID FLAGS MODSEQ)")
        msgs_before = sorted((int(d["UID"]), sorted(flags_of(d) - {"\\RECENT"}), modseq_of(d))
                             for _, d in r.fetches())
    srv.restart()
    with imap_raw(srv, acct) as c:
        after = {b: status(c, b, ALL_STATUS) for b in ("INBOX", "Projects/Keep", "Sent")}
        assert after == before, "mailbox state changed across a restart:\nbefore %r\nafter  %r" % (before, after)
        info = select_info(c.select("INBOX"))
        assert info["UIDVALIDITY"] == before["INBOX"]["UIDVALIDITY"]
        assert info["UIDNEXT"] == before["INBOX"]["UIDNEXT"]
        assert info["HIGHESTMODSEQ"] == before["INBOX"]["HIGHESTMODSEQ"]
        r = c.ok("FETCH 1:* (UID FLAGS MODSEQ)")
        msgs_after = sorted((int(d["UID"]), sorted(flags_of(d) - {"\\RECENT"}), modseq_of(d))
                            for _, d in r.fetches())
        assert msgs_after == msgs_before
        r = c.append("INBOX", make_message(token("post")))
        assert int(r.code_of("APPENDUID").split()[2]) == before["INBOX"]["UIDNEXT"], \
            "first UID after a restart: %r (UIDNEXT was %d)" % (r, before["INBOX"]["UIDNEXT"])
        st = status(c, "INBOX", ALL_STATUS)
        assert st["HIGHESTMODSEQ"] > before["INBOX"]["HIGHESTMODSEQ"], (before, st)
    # a delivery after the restart, too
    smtp_deliver(srv, acct, make_message(token("post2")))
    with imap_raw(srv, acct) as c:
        st = status(c, "INBOX", ALL_STATUS)
        assert st["UIDNEXT"] == before["INBOX"]["UIDNEXT"] + 2 and st["MESSAGES"] == 5, st
    # the IMAP listeners come back after the restart, on both ports
    with imap_raw(srv, acct, tls="starttls") as c:
        c.ok("NOOP")


# --- CONDSTORE / QRESYNC --------------------------------------------------------------------
def test_condstore_changedsince_and_unchangedsince(server):
    acct = new_account(server)
    with imap_raw(server, acct) as a, imap_raw(server, acct) as b:
        uids = append_n(a, 4)
        r = a.ok("SELECT INBOX (CONDSTORE)")
        h0 = select_info(r)["HIGHESTMODSEQ"]
        assert h0, r
        r = a.ok("FETCH 1:* (MODSEQ)")
        ms = {n: modseq_of(d) for n, d in r.fetches()}
        assert len(ms) == 4 and all(0 < m <= h0 for m in ms.values()), r

        b.select("INBOX")
        b.ok("STORE 2 +FLAGS (\\Flagged)")
        r = a.ok("NOOP")
        f = dict(r.fetches())
        assert 2 in f and "MODSEQ" in f[2], \
            "with CONDSTORE on, an unsolicited FETCH carries MODSEQ (RFC 7162 3.2.4): %r" % r
        m2 = modseq_of(f[2])
        assert m2 > h0

        r = a.ok("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h0)
        f = dict(r.fetches())
        assert set(f) == {2}, "CHANGEDSINCE %d: only message 2 changed: %r" % (h0, r)
        assert modseq_of(f[2]) == m2 and "\\FLAGGED" in flags_of(f[2])
        r = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % m2)
        assert not r.fetches(), r

        r = a.ok("SEARCH MODSEQ %d" % (h0 + 1))
        assert r.search() == [2], r
        assert re.search(rb"\(MODSEQ \d+\)", r.starting("* SEARCH")[0]), \
            "SEARCH MODSEQ answers with (MODSEQ n) (RFC 7162 3.1.5): %r" % r

        # UNCHANGEDSINCE: message 2 changed after h0 -> MODIFIED, not stored
        r = a.ok("STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % h0)
        assert r.code == "MODIFIED 2", "STORE UNCHANGEDSINCE conflict: want OK [MODIFIED 2]: %r" % r
        assert "\\SEEN" not in flags_of(fetch1(a, "FLAGS", "2"))
        # 1 unchanged since ms[1], 2 changed since: 1 stored, 2 reported
        r = a.ok("STORE 1,2 (UNCHANGEDSINCE %d) +FLAGS (\\Answered)" % ms[1])
        assert r.code == "MODIFIED 2", r
        f = dict(r.fetches())
        assert 1 in f and "\\ANSWERED" in flags_of(f[1]) and modseq_of(f[1]) > m2, r
        assert "\\ANSWERED" not in flags_of(fetch1(a, "FLAGS", "2"))
        # UID STORE reports UIDs
        r = a.ok("UID STORE %d,%d (UNCHANGEDSINCE %d) +FLAGS (\\Draft)" % (uids[2], uids[3], 0))
        assert r.code and r.code.startswith("MODIFIED"), r
        assert parse_uidset(r.code.split()[1]) == [uids[2], uids[3]], r
        # HIGHESTMODSEQ grows with every change
        st = status(a, "INBOX", "HIGHESTMODSEQ")
        assert st["HIGHESTMODSEQ"] >= modseq_of(f[1]) > m2 > h0, st
        r = a.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE x)")
        assert r.status == "BAD", r


def test_qresync(server):
    acct = new_account(server)
    with imap_raw(server, acct) as a:
        uids = append_n(a, 6)
        r = a.ok("ENABLE QRESYNC")
        assert any(b"QRESYNC" in u.upper() for u in r.starting("* ENABLED")), r
        info = select_info(a.select("INBOX"))
        v, m0 = info["UIDVALIDITY"], info["HIGHESTMODSEQ"]
        a.ok("LOGOUT")

    with imap_raw(server, acct) as b:  # changes while the client is away
        b.select("INBOX")
        b.ok("UID STORE %d +FLAGS (\\Flagged)" % uids[1])
        b.ok("UID STORE %d:%d +FLAGS.SILENT (\\Deleted)" % (uids[2], uids[3]))
        b.ok("UID EXPUNGE %d:%d" % (uids[2], uids[3]))
        new = append_n(b, 1)

    with imap_raw(server, acct) as c:
        r = c.cmd("SELECT INBOX (QRESYNC (%d %d))" % (v, m0))
        assert r.status == "BAD", "QRESYNC parameter without ENABLE QRESYNC (RFC 7162 3.2.5): %r" % r
        c.ok("ENABLE QRESYNC")
        r = c.ok("SELECT INBOX (QRESYNC (%d %d))" % (v, m0))
        van = vanished(r)
        assert van and all(e for e, _ in van), "want * VANISHED (EARLIER): %r" % r
        assert sorted(sum((u for _, u in van), [])) == [uids[2], uids[3]], r
        f = {int(d["UID"]): d for _, d in r.fetches()}
        assert uids[1] in f and "\\FLAGGED" in flags_of(f[uids[1]]) and modseq_of(f[uids[1]]) > m0, r
        assert new[0] in f, "the new message comes as a FETCH too: %r" % r
        assert set(f) <= {uids[1], new[0]}, "unchanged messages reported: %r" % r
        info = select_info(r)
        assert info["EXISTS"] == 5 and info["HIGHESTMODSEQ"] > m0 and info["UIDVALIDITY"] == v, r
        h1 = info["HIGHESTMODSEQ"]

        # known UIDs limit VANISHED to them
        c.ok("UNSELECT")
        r = c.ok("SELECT INBOX (QRESYNC (%d %d %d:%d))" % (v, m0, uids[3], new[0]))
        assert sorted(sum((u for _, u in vanished(r)), [])) == [uids[3]], r
        # another UIDVALIDITY: no VANISHED and no FETCH
        c.ok("UNSELECT")
        r = c.ok("SELECT INBOX (QRESYNC (%d %d))" % (v + 1, m0))
        assert not vanished(r) and not r.fetches(), r

        # in the session: VANISHED instead of EXPUNGE
        with imap_raw(server, acct) as b:
            b.select("INBOX")
            b.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % uids[4])
            b.ok("UID EXPUNGE %d" % uids[4])
        r = c.ok("NOOP")
        assert not r.expunges(), "with QRESYNC, EXPUNGE is reported as VANISHED (RFC 7162 3.2.10): %r" % r
        assert vanished(r) == [(False, [uids[4]])], r

        r = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % m0)
        van = vanished(r)
        assert van and all(e for e, _ in van), r
        assert sorted(sum((u for _, u in van), [])) == [uids[2], uids[3], uids[4]], r
        assert {int(d["UID"]) for _, d in r.fetches()} == {uids[1], new[0]}, r
        r = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h1)
        assert sum((u for _, u in vanished(r)), []) == [uids[4]] and not r.fetches(), r
        r = c.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % m0)
        assert r.status == "BAD", "VANISHED is for UID FETCH only (RFC 7162 3.2.6): %r" % r


def test_status_highestmodseq_and_unseen_follow_changes(server):
    acct = new_account(server)
    with imap_raw(server, acct) as a:
        append_n(a, 3)
        s0 = status(a, "INBOX", ALL_STATUS)
        a.select("INBOX")
        a.ok("STORE 1 +FLAGS (\\Seen)")
        s1 = status(a, "INBOX", ALL_STATUS)
        assert s1["UNSEEN"] == s0["UNSEEN"] - 1 and s1["HIGHESTMODSEQ"] > s0["HIGHESTMODSEQ"], (s0, s1)
        a.ok("STORE 1 +FLAGS (\\Seen)")  # no change: the MODSEQ may stay
        s2 = status(a, "INBOX", ALL_STATUS)
        assert s2["HIGHESTMODSEQ"] >= s1["HIGHESTMODSEQ"]
        a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        s3 = status(a, "INBOX", ALL_STATUS)
        assert s3["MESSAGES"] == 2 and s3["HIGHESTMODSEQ"] > s2["HIGHESTMODSEQ"], (s2, s3)
        assert s3["UIDNEXT"] == s0["UIDNEXT"] and s3["UIDVALIDITY"] == s0["UIDVALIDITY"]
        r = a.ok("STATUS INBOX (HIGHESTMODSEQ)")
        assert imap_parse(r.starting("* STATUS")[0][9:])[1][0].upper() == "HIGHESTMODSEQ"


def test_parallel_sessions_append_and_fetch(server):
    """Eight sessions of one account at once (the IMAP worker pool, SQLite):
    every APPEND gets its own UID, every message reads back as appended."""
    import threading
    acct = new_account(server)
    results, errors = {}, []

    def worker(n):
        try:
            with imap_raw(server, acct) as c:
                mine = []
                for i in range(5):
                    msg = make_message(token("par%d-%d" % (n, i)))
                    r = c.append("INBOX", msg)
                    assert r.ok, r
                    mine.append((int(r.code_of("APPENDUID").split()[2]), msg))
                c.ok("SELECT INBOX")
                for uid, msg in mine:
                    assert fetch1(c, "(BODY.PEEK[])", str(uid), uid=True)["BODY[]"] == msg
                results[n] = mine
        except Exception as e:  # reported below
            errors.append("session %d: %r" % (n, e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, "\n".join(errors)
    uids = [u for mine in results.values() for u, _ in mine]
    assert len(uids) == 40 and len(set(uids)) == 40, sorted(uids)
    with imap_raw(server, acct) as c:
        st = status(c, "INBOX")
        assert st["MESSAGES"] == 40 and st["UIDNEXT"] > max(uids), st
