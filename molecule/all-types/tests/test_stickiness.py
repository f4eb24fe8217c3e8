"""Stickiness and failover of the proxy, with real /sync requests of one user.

The sync pool (two synchrotrons in this scenario) is balanced by a hash of the user: every
/sync of one user lands on the same synchrotron, so its caches stay warm. When that
synchrotron dies, the user's next syncs are answered by the other one, without an error;
when the whole pool is down, main answers (the sync group can fall back to main). The
synchrotrons are started again at the end, and the user returns to the first one.
"""

from __future__ import annotations

import secrets
import urllib.parse

import pytest
from conftest import register, registration_secret, served_by

SYNCS = 6


def _unit(name):
    return f"matrix-synapse-worker@{name}.service"


@pytest.fixture(scope="module")
def syncer(host, client_api):
    """A fresh user and its first sync token."""
    password = secrets.token_urlsafe(12)
    reg = register(client_api, registration_secret(host), f"sticky_{secrets.token_hex(3)}", password)
    first = client_api.get("/_matrix/client/v3/sync?timeout=0", access_token=reg["access_token"])
    assert first.status == 200, first.body
    return {"token": reg["access_token"], "since": first.json()["next_batch"]}


def _syncs(host, client_api, syncer, wait, count=SYNCS):
    """``count`` incremental syncs, each tagged with a probe parameter Synapse ignores; returns
    the processes that served each one (from their access logs)."""
    start = host.check_output("date +%s")
    needles = {}
    for _ in range(count):
        probe = secrets.token_hex(6)
        path = (f"/_matrix/client/v3/sync?timeout=0&since={urllib.parse.quote(syncer['since'])}"
                f"&org.matrixops.probe={probe}")
        resp = client_api.get(path, access_token=syncer["token"])
        assert resp.status == 200, (resp.status, resp.body[:300])
        needles[probe] = f"org.matrixops.probe={probe} "
    result: dict[str, set[str]] = {}

    def logged():
        result.update(served_by(host, start, needles))
        return all(result.values())

    wait(logged, timeout=30, what="the probe syncs in the journal")
    return [next(iter(sorted(p))) if len(p) == 1 else sorted(p) for p in result.values()]


def _wait_backend_state(host, wait, server, state):
    """Wait until HAProxy's health checks see ``server`` of the sync backend in ``state``."""
    def seen():
        out = host.check_output("echo 'show servers state sync' | "
                                "python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); "
                                "s.connect('/run/haproxy/admin.sock'); s.sendall(sys.stdin.buffer.read()); "
                                "print(s.makefile().read())\"")
        for line in out.splitlines():
            fields = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state ... (2 = running, 0 = stopped)
            if len(fields) > 5 and fields[3] == server:
                return fields[5] == {"up": "2", "down": "0"}[state]
        return False

    wait(seen, timeout=60, interval=1, what=f"HAProxy to see {server} {state}")


def test_one_users_syncs_stay_on_one_synchrotron(host, client_api, syncer, wait, deployed):
    served = _syncs(host, client_api, syncer, wait)
    assert len(set(map(str, served))) == 1, served
    assert served[0] in deployed.names("synchrotron"), served


def test_sync_survives_its_synchrotron_and_the_whole_pool(host, client_api, syncer, wait, deployed):
    pool = deployed.names("synchrotron")
    assert len(pool) == 2
    (home,) = set(map(str, _syncs(host, client_api, syncer, wait, count=2)))
    other = next(n for n in pool if n != home)
    try:
        # Killed without warning: the very next syncs must not fail, even before the health
        # checks notice (the proxy redispatches a refused connection to another server).
        host.run_expect([0], f"systemctl kill --signal=SIGKILL {_unit(home)} && systemctl stop {_unit(home)}")
        assert set(map(str, _syncs(host, client_api, syncer, wait))) == {other}
        _wait_backend_state(host, wait, home, "down")
        assert set(map(str, _syncs(host, client_api, syncer, wait))) == {other}

        host.run_expect([0], f"systemctl stop {_unit(other)}")
        _wait_backend_state(host, wait, other, "down")
        assert set(map(str, _syncs(host, client_api, syncer, wait))) == {"main"}
    finally:
        host.run(f"systemctl start {_unit(home)} {_unit(other)}")
    for name in pool:
        _wait_backend_state(host, wait, name, "up")
    # Consistent hashing: back on the synchrotron it started on.
    assert set(map(str, _syncs(host, client_api, syncer, wait))) == {home}
