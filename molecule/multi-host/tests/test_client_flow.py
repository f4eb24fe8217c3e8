"""The walking skeleton's real Matrix client (matrix-nio) through the proxy on its own host:
two users, a room, 20 messages, an incremental /sync, a media round trip. The journals of the
hosts then prove that /sync, event persisting and media ran on the worker hosts, not on main.
"""

import hashlib

import pytest

from conftest import MAIN, journal, load

# The client flow itself is the default scenario's (same users, room, messages, media).
_default_flow = load("matrixops_default_client_flow", "molecule/default/tests/test_client_flow.py")
MESSAGES = _default_flow.MESSAGES


@pytest.fixture(scope="module")
def flow(hosts, client_api):
    return _default_flow.run_flow(hosts[MAIN], client_api)


served = _default_flow.served


def worker_lines(hosts, deployment, prefix, user, fragment):
    """Matching lines per worker named ``prefix``*, read on the host that runs it."""
    return {name: served(hosts[deployment.placed[name]], f"matrix-synapse-worker@{name}.service", user, fragment)
            for name in deployment.names(prefix)}


def test_bob_receives_all_messages_in_order(flow):
    assert flow["received"][:MESSAGES] == flow["sent"]


def test_media_round_trip_is_byte_identical(flow):
    assert flow["downloaded"] is not None
    assert hashlib.sha256(flow["downloaded"]).hexdigest() == hashlib.sha256(flow["payload"]).hexdigest()


def test_sync_served_on_the_worker_hosts_not_on_main(hosts, deployment, flow):
    lines = worker_lines(hosts, deployment, "synchrotron", flow["bob"], "/sync")
    assert sum(len(v) for v in lines.values()) >= 3, lines
    for name, found in lines.items():
        if found:
            assert deployment.placed[name] != MAIN
    assert served(hosts[MAIN], "matrix-synapse.service", flow["bob"], "/sync") == []


def test_events_persisted_on_the_worker_host(hosts, deployment, flow):
    room = flow["room_id"]
    rows = hosts[MAIN].check_output(
        "sudo -u postgres psql -d synapse -tA -c "
        f"\"SELECT instance_name, count(*) FROM events WHERE room_id = '{room}' GROUP BY instance_name\"")
    writers = dict(line.split("|") for line in rows.splitlines())
    assert set(writers) <= set(deployment.names("event_persister")) and len(writers) == 1, writers
    assert sum(int(c) for c in writers.values()) >= MESSAGES
    (writer,) = writers
    where = deployment.placed[writer]
    assert where != MAIN
    # Main handed the events to the persister over replication, across hosts.
    lines = [line for line in journal(hosts[where], f"matrix-synapse-worker@{writer}.service").splitlines()
             if "Processed request" in line and "/_synapse/replication/send_events" in line]
    assert len(lines) >= MESSAGES


def test_media_served_by_the_media_worker_on_its_host(hosts, deployment, flow):
    uploads = worker_lines(hosts, deployment, "media_repository", flow["alice"], "/upload")
    downloads = worker_lines(hosts, deployment, "media_repository", flow["bob"], "/download/")
    assert sum(len(v) for v in uploads.values()) == 1 and sum(len(v) for v in downloads.values()) == 1
    for user in (flow["alice"], flow["bob"]):
        assert served(hosts[MAIN], "matrix-synapse.service", user, "/media/") == []


def test_room_reads_served_on_the_proxy_host(hosts, deployment, flow):
    for fragment in ("/joined_members", "/messages"):
        lines = worker_lines(hosts, deployment, "client_reader", flow["alice"], fragment)
        assert sum(len(v) for v in lines.values()) >= 1, fragment
        assert served(hosts[MAIN], "matrix-synapse.service", flow["alice"], fragment) == [], fragment
