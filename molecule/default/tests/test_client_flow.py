"""A real Matrix client (matrix-nio) talks to the homeserver through the proxy only.

Two users register (shared-secret admin registration), A creates a room and invites B, B
joins, A sends 20 messages, B receives all of them with an incremental /sync, and a file is
uploaded and downloaded back byte-identical. Then the processes' own logs prove which
process served each request group: a route that falls through to main fails the test.
"""

import asyncio
import hashlib
import os
import secrets

import pytest
from nio import AsyncClient, LoginResponse, RoomCreateResponse, SyncResponse, UploadResponse

from conftest import CLIENT_BASE_URL, journal, register, registration_secret

MESSAGES = 20


# Bob's incremental syncs ask for the whole timeline instead of the default 10 latest events.
SYNC_FILTER = {"room": {"timeline": {"limit": 100}}}


async def _flow(alice_id, bob_id, password, payload):
    alice = AsyncClient(CLIENT_BASE_URL, alice_id)
    bob = AsyncClient(CLIENT_BASE_URL, bob_id)
    try:
        assert isinstance(await alice.login(password), LoginResponse)
        assert isinstance(await bob.login(password), LoginResponse)
        created = await alice.room_create(name="walking skeleton", invite=[bob_id])
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        first = await bob.sync(timeout=0, sync_filter=SYNC_FILTER)
        assert isinstance(first, SyncResponse), first
        assert room_id in first.rooms.invite
        joined = await bob.join(room_id)
        assert getattr(joined, "room_id", None) == room_id, joined
        since = (await bob.sync(timeout=0, sync_filter=SYNC_FILTER)).next_batch

        sent = []
        for i in range(MESSAGES):
            body = f"message {i} {secrets.token_hex(4)}"
            resp = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
            assert getattr(resp, "event_id", None), resp
            sent.append(body)

        received = []
        for _ in range(30):
            resp = await bob.sync(timeout=3000, since=since, sync_filter=SYNC_FILTER)
            assert isinstance(resp, SyncResponse), resp
            since = resp.next_batch
            room = resp.rooms.join.get(room_id)
            if room:
                received += [e.body for e in room.timeline.events if hasattr(e, "body")]
            if len(received) >= MESSAGES:
                break

        uploaded, _ = await alice.upload(lambda *_: payload, content_type="application/octet-stream",
                                         filename="skeleton.bin", filesize=len(payload))
        assert isinstance(uploaded, UploadResponse), uploaded
        downloaded = await bob.download(uploaded.content_uri)
        # Reads that belong to the client_reader pool.
        members = await alice.joined_members(room_id)
        assert bob_id in [m.user_id for m in getattr(members, "members", [])], members
        history = await alice.room_messages(room_id, start="", limit=5)
        assert getattr(history, "chunk", None), history
        return room_id, sent, received, getattr(downloaded, "body", None)
    finally:
        await alice.close()
        await bob.close()


def run_flow(registration_host, client_api):
    """Register Alice (admin, no message rate limit) and Bob on the homeserver whose shared
    secret ``registration_host`` holds, then run the client flow through the proxy. Shared
    with the multi-host scenario."""
    shared_secret = registration_secret(registration_host)
    suffix = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    registered = register(client_api, shared_secret, f"alice_{suffix}", password, admin=True)
    alice, admin_token = registered["user_id"], registered["access_token"]
    bob = register(client_api, shared_secret, f"bob_{suffix}", password)["user_id"]
    # Twenty messages in a row would hit Synapse's default message rate limit: lift it for Alice.
    resp = client_api.post(f"/_synapse/admin/v1/users/{alice}/override_ratelimit", access_token=admin_token,
                           json_body={"messages_per_second": 0, "burst_count": 0})
    assert resp.status == 200, resp.body
    payload = os.urandom(200_000)
    room_id, sent, received, downloaded = asyncio.run(_flow(alice, bob, password, payload))
    return {"alice": alice, "bob": bob, "room_id": room_id, "sent": sent, "received": received,
            "payload": payload, "downloaded": downloaded}


def served(host, unit, user, fragment):
    """Access-log lines of ``unit`` on ``host`` for requests by ``user`` whose request line has
    ``fragment``. Shared with the multi-host scenario."""
    return [line for line in journal(host, unit).splitlines()
            if "Processed request" in line and "{%s}" % user in line and fragment in line]


@pytest.fixture(scope="module")
def flow(host, client_api):
    return run_flow(host, client_api)


def test_bob_receives_all_messages_in_order(flow):
    assert flow["received"][:MESSAGES] == flow["sent"]


def test_media_round_trip_is_byte_identical(flow):
    assert flow["downloaded"] is not None
    assert hashlib.sha256(flow["downloaded"]).hexdigest() == hashlib.sha256(flow["payload"]).hexdigest()


def _units(deployed, prefix):
    return [f"matrix-synapse-worker@{n}.service" for n in deployed.names(prefix)]


def test_sync_served_by_synchrotrons_not_main(host, deployed, flow):
    bob = flow["bob"]
    on_workers = sum(len(served(host, u, bob, "/sync")) for u in _units(deployed, "synchrotron"))
    assert on_workers >= 3
    assert served(host, "matrix-synapse.service", bob, "/sync") == []


def test_media_served_by_media_worker_not_main(host, deployed, flow):
    units = _units(deployed, "media_repository")
    assert sum(len(served(host, u, flow["alice"], "/upload")) for u in units) == 1
    assert sum(len(served(host, u, flow["bob"], "/download/")) for u in units) == 1
    for user in (flow["alice"], flow["bob"]):
        assert served(host, "matrix-synapse.service", user, "/media/") == []


def test_room_reads_served_by_client_reader_not_main(host, deployed, flow):
    units = _units(deployed, "client_reader")
    alice = flow["alice"]
    for fragment in ("/joined_members", "/messages"):
        assert sum(len(served(host, u, alice, fragment)) for u in units) >= 1, fragment
        assert served(host, "matrix-synapse.service", alice, fragment) == [], fragment


def test_events_persisted_by_event_persisters(host, deployed, flow):
    room = flow["room_id"]
    rows = host.check_output(
        "sudo -u postgres psql -d synapse -tA -c "
        f"\"SELECT instance_name, count(*) FROM events WHERE room_id = '{room}' GROUP BY instance_name\"")
    writers = dict(line.split("|") for line in rows.splitlines())
    persisters = set(deployed.names("event_persister"))
    assert set(writers) <= persisters and len(set(writers)) == 1, writers  # sharded by room
    assert sum(int(c) for c in writers.values()) >= MESSAGES
    # ...and the persister's own log shows main handing it the events over replication.
    (writer,) = writers
    lines = [line for line in journal(host, f"matrix-synapse-worker@{writer}.service").splitlines()
             if "Processed request" in line and "/_synapse/replication/send_events" in line]
    assert len(lines) >= MESSAGES
