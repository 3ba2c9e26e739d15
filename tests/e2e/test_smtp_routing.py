"""Where mail goes: postmaster (RFC 5321 4.5.1) and IPv6 listeners."""
import smtplib
import socket

import pytest

from helpers import make_message, split_trace, token


def send(port, rcpts, tok, host="127.0.0.1", family_host=None):
    with smtplib.SMTP(host, port, local_hostname="client.example.org", timeout=10) as s:
        return s.sendmail("sender@example.org", rcpts, make_message(tok))


def test_postmaster_goes_to_configured_account(make_server):
    srv = make_server(settings={"smtp.postmaster": "alice@example.test"})
    tok = token()
    # Every local domain's postmaster, and the bare <postmaster> (4.5.1).
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=10) as s:
        s.ehlo("client.example.org")
        s.mail("sender@example.org")
        assert s.rcpt("postmaster@example.test")[0] == 250
        assert s.rcpt("PostMaster@example2.test")[0] == 250
        assert s.rcpt("<postmaster>")[0] == 250
        # Not a route to other domains' postmasters.
        assert s.rcpt("postmaster@other.org")[0] == 550
        assert s.data(make_message(tok))[0] == 250
    found = srv.find("alice@example.test", tok)
    assert len(found) == 1  # three addresses of one account: one copy
    assert "for <postmaster@example.test>" in split_trace(found[0])[1]


def test_postmaster_account_of_its_own_wins(make_server):
    srv = make_server(settings={"smtp.postmaster": "alice@example.test"},
                      accounts=("alice@example.test", "postmaster@example.test"))
    tok = token()
    send(srv.smtp_port, ["postmaster@example.test"], tok)
    assert len(srv.find("postmaster@example.test", tok)) == 1
    assert srv.find("alice@example.test", tok) == []


def test_postmaster_without_setting_is_unknown(make_server):
    srv = make_server()
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=10) as s:
        s.ehlo("client.example.org")
        s.mail("sender@example.org")
        code, msg = s.rcpt("postmaster@example.test")
        assert code == 550 and b"5.1.1" in msg


def test_ipv6_listener(make_server):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    srv = make_server(start=False)
    port6 = srv.smtp_port + 1
    srv.set_conf("listen", "smtp", "127.0.0.1:%d, [::1]:%d" % (srv.smtp_port, port6))
    srv.start()
    tok = token()
    send(port6, ["bob@example.test"], tok, host="::1")
    found = srv.find("bob@example.test", tok)
    assert len(found) == 1
    received = split_trace(found[0])[1]
    assert "([IPv6:::1])" in received, received
    # The IPv4 listener still answers.
    tok2 = token()
    send(srv.smtp_port, ["bob@example.test"], tok2)
    assert len(srv.find("bob@example.test", tok2)) == 1
