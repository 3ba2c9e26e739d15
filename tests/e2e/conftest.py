"""Fixtures for correio's end-to-end tests.

- `server`: the module's shared server (domains example.test and
  example2.test; accounts alice@example.test, bob@example.test,
  carol@example2.test). Checked after every test: still running, no
  sanitizer report in its log. Restarted for the next test if it died.
- `make_server(settings=..., accounts=..., domains=..., start=True)`: a
  server of the test's own; stopped and removed when the test ends.
- `module_make_server`: the same, shared by a module.

Every server's stderr goes to DIR/server.log; when a server stops the
log is searched for AddressSanitizer / UBSan / LeakSanitizer reports and
the test fails if one is found. Every test runs under an alarm
(default 90 s; @pytest.mark.time_limit(N) to change it).
"""
import os
import signal

import pytest

import helpers
from helpers import DEFAULT_ACCOUNTS, DEFAULT_DOMAINS, Server


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): wall-clock limit of one test")


def pytest_report_header(config):
    return "correio binary: %s" % helpers.BIN


def pytest_sessionstart(session):
    if not os.access(helpers.BIN, os.X_OK):
        raise pytest.UsageError("CORREIO_BIN %s is not an executable (build it: make build/asan/correio)"
                                % helpers.BIN)


class _Timeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request):
    m = request.node.get_closest_marker("time_limit")
    seconds = int(m.args[0]) if m else 90

    def on_alarm(signum, frame):
        raise _Timeout("test exceeded its time limit of %d s" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class _Pool:
    def __init__(self):
        self.servers = []

    def make(self, settings=None, accounts=DEFAULT_ACCOUNTS, domains=DEFAULT_DOMAINS, start=True,
             name=None, **kw):
        s = Server(domains=domains, accounts=accounts, settings=settings,
                   name=name or "server%d" % (len(self.servers) + 1), **kw)
        self.servers.append(s)
        if start:
            s.start()
        return s

    def close(self):
        errors = []
        for s in self.servers:
            try:
                s.cleanup()
            except Exception as e:  # keep stopping the others
                errors.append(str(e))
        self.servers = []
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def make_server():
    pool = _Pool()
    try:
        yield pool.make
    finally:
        pool.close()


@pytest.fixture(scope="module")
def module_make_server():
    pool = _Pool()
    try:
        yield pool.make
    finally:
        pool.close()


@pytest.fixture(scope="module")
def _module_server():
    pool = _Pool()
    try:
        yield pool.make(name="default")
    finally:
        pool.close()


@pytest.fixture
def server(_module_server):
    yield from helpers.guard(_module_server)
