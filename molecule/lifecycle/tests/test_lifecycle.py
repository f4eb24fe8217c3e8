"""Day-2 operations, step by step, on one converged host (Synapse of the previous minor release).

Each step re-runs playbooks/site.yml with a new wish, as an operator does, and then checks from
the processes' PIDs and start times that exactly the processes Synapse's rules require were
restarted, and that every message sent before the step is still there after it, through the
proxy. The tests run in file order and build on each other.
"""

from __future__ import annotations

import hashlib
import secrets
import urllib.parse

import pytest
from conftest import CATALOG, changed_count, postgres_server, processes, register, registration_secret, restarted

OLD_VERSION = "1.162.0"
W0 = {"synchrotron": 1, "client_reader": 1, "event_persister": 1, "media_repository": 1}
W1 = dict(W0, synchrotron=3, event_persister=2)          # scale up, incl. a second event persister
W2 = dict(W1, synchrotron=2)                             # scale down one pool
W3 = dict(W2, client_reader={"count": 1, "config": {"event_cache_size": "12K"}})  # one pool's own config
V3 = "/_matrix/client/v3"
STAGED = "/etc/matrix-synapse/.staged"
VENV = "/opt/matrix-synapse/venv"


def _q(value):
    return urllib.parse.quote(value, safe="")


class Chat:
    """Alice talks in a room Bob is in; every message she sent must stay visible to Bob."""

    def __init__(self, host, api):
        self.api = api
        secret = registration_secret(host)
        suffix = secrets.token_hex(3)
        password = secrets.token_urlsafe(12)
        alice = register(api, secret, f"alice_{suffix}", password, admin=True)
        bob = register(api, secret, f"bob_{suffix}", password)
        self.alice, self.bob = alice["access_token"], bob["access_token"]
        resp = api.post(f"/_synapse/admin/v1/users/{_q(alice['user_id'])}/override_ratelimit",
                        access_token=self.alice, json_body={"messages_per_second": 0, "burst_count": 0})
        assert resp.status == 200, resp.body
        room = api.post(f"{V3}/createRoom", access_token=self.alice, json_body={"invite": [bob["user_id"]]})
        assert room.status == 200, room.body
        self.room = room.json()["room_id"]
        joined = api.post(f"{V3}/join/{_q(self.room)}", access_token=self.bob, json_body={})
        assert joined.status == 200, joined.body
        self.sent: list[str] = []
        self.since = self.sync()["next_batch"]

    def sync(self, since=None, timeout=0):
        path = f"{V3}/sync?timeout={timeout}" + (f"&since={_q(since)}" if since else "")
        path += "&filter=" + _q('{"room": {"timeline": {"limit": 100}}}')
        resp = self.api.get(path, access_token=self.bob)
        assert resp.status == 200, (resp.status, resp.body[:300])
        return resp.json()

    def send(self, count, label):
        for i in range(count):
            body = f"{label} {i} {secrets.token_hex(3)}"
            resp = self.api.put(f"{V3}/rooms/{_q(self.room)}/send/m.room.message/{secrets.token_hex(8)}",
                                access_token=self.alice, json_body={"msgtype": "m.text", "body": body})
            assert resp.status == 200, (resp.status, resp.body[:300])
            self.sent.append(body)

    def history(self):
        resp = self.api.get(f"{V3}/rooms/{_q(self.room)}/messages?dir=b&limit=1000", access_token=self.bob)
        assert resp.status == 200, (resp.status, resp.body[:300])
        return [e["content"].get("body") for e in resp.json()["chunk"] if e.get("type") == "m.room.message"]

    def check_nothing_lost(self, wait):
        """Every message is in the room's history, and Bob's sync from his last token (taken
        before the step) delivers every message sent since."""
        wait(lambda: set(self.sent) <= set(self.history()), timeout=60, what="every message in the history")
        expected = [b for b in self.sent if b not in self.delivered]
        got: list[str] = []

        def delivered():
            body = self.sync(self.since, timeout=2000)
            self.since = body["next_batch"]
            timeline = body.get("rooms", {}).get("join", {}).get(self.room, {}).get("timeline", {})
            got.extend(e["content"].get("body") for e in timeline.get("events", []) if e.get("type") == "m.room.message")
            return set(expected) <= set(got)

        wait(delivered, timeout=90, interval=0.5, what="Bob's sync to deliver every message sent")
        self.delivered.update(expected)

    delivered: set[str] = set()


@pytest.fixture(scope="module")
def life(host, client_api):
    chat = Chat(host, client_api)
    chat.delivered = set()
    chat.send(5, "before everything")
    payload = secrets.token_bytes(100_000)
    upload = client_api.request("POST", "/_matrix/media/v3/upload?filename=keep.bin", access_token=chat.alice,
                                headers={"Content-Type": "application/octet-stream"}, data=payload)
    assert upload.status == 200, upload.body
    with host.sudo():
        kept = {path: host.file(path).sha256sum for path in (
            "/etc/matrix-synapse/signing.key", *(f"/etc/matrix-synapse/secrets/{n}" for n in (
                "macaroon_secret_key", "form_secret", "registration_shared_secret", "worker_replication_secret",
                "redis_password", "database_password")))}
    return {"chat": chat, "media": (upload.json()["content_uri"], payload), "kept": kept,
            "postgres": postgres_server(host)}


def _installed_files(host):
    """Checksums of the installed Synapse configuration, units and drop-ins (what a restart or a
    reboot loads), of the proxy's and PostgreSQL's settings, and the units enabled at boot."""
    with host.sudo():
        listing = host.check_output(
            "find /etc/matrix-synapse /etc/haproxy /etc/postgresql/15/main/conf.d"
            " -path '/etc/matrix-synapse/.staged' -prune"
            " -o -type f ! -name deployed.json ! -name topology.mmd -print0 | sort -z | xargs -0 sha256sum;"
            " find /etc/systemd/system -path '*/matrix-synapse*' -type f -print0 | sort -z | xargs -0 sha256sum;"
            " find /etc/systemd/system -name 'matrix-synapse*' -type l | sort")
    return listing


def _apply(playbook, wish, *args, version=OLD_VERSION, **extra):
    rc, out = playbook.run(dict({"synapse_workers": wish, "synapse_version": version}, **extra), *args)
    return rc, out


def _step(host, playbook, life, wish, wait, postgres_restarts=False, **kwargs):
    """Send messages, apply ``wish``, and return the processes before and after. PostgreSQL
    restarts only when the step says so."""
    life["chat"].send(3, "before step")
    before = processes(host)
    rc, out = _apply(playbook, wish, **kwargs)
    assert rc == 0, out[-6000:]
    after = processes(host)
    assert (postgres_server(host) != life["postgres"]) is postgres_restarts, out[-6000:]
    life["postgres"] = postgres_server(host)
    life["chat"].check_nothing_lost(wait)
    return before, after, out


def test_converged_small_plan(host, life, wait):
    running = processes(host)
    assert set(running) == {"main", "synchrotron1", "client_reader1", "event_persister1", "media_repository1"}
    life["chat"].check_nothing_lost(wait)
    with host.sudo():
        assert host.file("/etc/matrix-synapse/deployed.json").contains('"synapse_version": "%s"' % OLD_VERSION)
        topology = host.file("/etc/matrix-synapse/topology.mmd").content_string
    assert topology.startswith("flowchart LR") and "event_persister1" in topology


def test_check_mode_on_a_converged_host_changes_nothing(host, playbook):
    before = processes(host)
    rc, out = _apply(playbook, W0, "--check")
    assert rc == 0, out[-6000:]
    assert changed_count(out) == 0
    assert "No Synapse process starts, stops or restarts." in out
    assert processes(host) == before


def test_scale_up_with_a_new_event_persister_restarts_everything_in_order(host, playbook, life, wait):
    # The preview first: the new workers' files are staged in check mode too, and Synapse's
    # parser accepts them (main and the workers share this host: the staging must not be lost
    # when the shared role is included a second time).
    rc, out = _apply(playbook, W1, "--check")
    assert rc == 0, out[-6000:]
    assert "  + synchrotron3" in out and "  + event_persister2" in out and "writers of events changed" in out
    before, after, out = _step(host, playbook, life, W1, wait)
    # The events stream's writers changed: every process restarts (C17).
    assert restarted(before, after) == set(before)
    assert set(after) == set(before) | {"synchrotron2", "synchrotron3", "event_persister2"}
    # Persisters first (stopped together, started together), then main, then the others.
    persisters = [after[n]["active"] for n in ("event_persister1", "event_persister2")]
    assert max(persisters) < after["main"]["active"]
    for name in ("synchrotron1", "client_reader1", "media_repository1"):
        assert after[name]["active"] > after["main"]["active"], name
    assert "writers of events changed" in out


def test_preview_of_a_scale_down_lists_it_and_touches_nothing(host, playbook):
    before = processes(host)
    rc, out = _apply(playbook, W2, "--check")
    assert rc == 0, out[-6000:]
    assert "  - synchrotron3" in out
    assert "1. stop" in out and "synchrotron3" in out.split("1. stop", 1)[1].splitlines()[0]
    assert processes(host) == before
    with host.sudo():
        assert host.file("/etc/matrix-synapse/workers/synchrotron3.yaml").exists


def test_scale_down_stops_only_the_removed_instance(host, playbook, life, wait):
    before, after, _ = _step(host, playbook, life, W2, wait)
    assert set(before) - set(after) == {"synchrotron3"}
    assert restarted(before, after) == set()
    with host.sudo():
        assert not host.file("/etc/matrix-synapse/workers/synchrotron3.yaml").exists
    assert not host.service("matrix-synapse-worker@synchrotron3").is_enabled


def test_diff_preview_of_a_pool_change_shows_the_config_and_no_secret(host, playbook, life):
    rc, out = _apply(playbook, W3, "--check", "--diff")
    assert rc == 0, out[-6000:]
    assert "+event_cache_size: 12K" in out
    assert "~ client_reader1" in out and "rolling" in out
    with host.sudo():
        values = [host.file(f"/etc/matrix-synapse/secrets/{n}").content_string.strip() for n in (
            "macaroon_secret_key", "form_secret", "registration_shared_secret", "worker_replication_secret",
            "redis_password", "database_password")]
    assert [v for v in values if v in out] == []


def test_pool_change_rolls_only_that_pool(host, playbook, life, wait):
    before, after, out = _step(host, playbook, life, W3, wait)
    assert restarted(before, after) == {"client_reader1"}
    assert "Drain at the proxy, client_reader1" in out


def test_a_config_synapse_refuses_restarts_nothing(host, playbook, life, wait, client_api):
    life["chat"].send(2, "before a refused change")
    before = processes(host)
    installed = _installed_files(host)
    # Check mode already previews a setting from outside the plan (every process restarts) and
    # runs Synapse's parser on it.
    # Bigger pools need more PostgreSQL connections than it allows: the preview says it restarts.
    bigger = {"synapse_enable_registration": True, "synapse_database_cp_max": 30}
    rc, out = _apply(playbook, dict(W3, synchrotron=3), "--check", **bigger)
    assert rc != 0
    assert "files every process reads changed" in out and "  + synchrotron3" in out, out[-6000:]
    assert "PostgreSQL restarts once Synapse accepted the configuration: max_connections 100 -> " in out
    assert "Check mode: a real run would stop here" in " ".join(out.split()), out[-4000:]
    # Refused for the setting, by every process that loads it, the new one included (its file
    # was staged in check mode).
    assert "synchrotron3 on synapse-life" in " ".join(out.split()) and "FileNotFoundError" not in out
    assert processes(host) == before and _installed_files(host) == installed
    # A refused shared setting together with a new synchrotron, bigger pools and an upgrade: none
    # may take effect, no process stops for the upgrade (the new release installs beside the
    # old), and PostgreSQL does not restart (its new settings wait outside conf.d).
    rc, out = _apply(playbook, dict(W3, synchrotron=3), version=CATALOG.SYNAPSE_VERSION, **bigger)
    assert rc != 0
    assert "refuses the new configuration: main on synapse-life" in " ".join(out.split()), out[-4000:]
    assert "open registration without any verification" in out
    assert "Nothing was installed or restarted" in out
    assert processes(host) == before and postgres_server(host) == life["postgres"]
    # Not one installed file changed (haproxy.cfg included: no route to a process not running),
    # so a restart or a reboot loads what runs now; the refused files wait in the staging dir.
    assert _installed_files(host) == installed
    assert not host.service("matrix-synapse-worker@synchrotron3").is_enabled
    assert host.file(VENV).linked_to == f"{VENV}-{OLD_VERSION}"
    with host.sudo():
        assert "enable_registration: true" in host.file(f"{STAGED}/homeserver.yaml").content_string
        assert host.file(f"{STAGED}/workers/synchrotron3.yaml").exists
    life["chat"].check_nothing_lost(wait)  # the stack kept serving
    # Put right, the files are back to what runs: nothing restarts, the refused leftovers go.
    rc, out = _apply(playbook, W3)
    assert rc == 0, out[-6000:]
    assert processes(host) == before and postgres_server(host) == life["postgres"]
    assert "No Synapse process starts, stops or restarts." in out and "PostgreSQL restarts" not in out
    assert _installed_files(host) == installed
    with host.sudo():
        assert not host.file(f"{STAGED}/workers/synchrotron3.yaml").exists


# Bigger pools with the upgrade: more connections than PostgreSQL allows (7 processes x 20 + 20).
POOLS = {"synapse_database_cp_max": 20}


def test_upgrade_to_the_pinned_release_keeps_everything(host, playbook, life, wait, client_api, federation_api):
    new = CATALOG.SYNAPSE_VERSION
    assert new != OLD_VERSION
    before, after, out = _step(host, playbook, life, W3, wait, version=new, postgres_restarts=True, **POOLS)
    assert restarted(before, after) == set(before) and set(after) == set(before)
    # Raised once, after Synapse's parser accepted the configuration, with headroom.
    assert "max_connections 100 -> 250 (160 needed)" in out
    with host.sudo():
        assert host.check_output("runuser -u postgres -- psql -tAc 'SHOW max_connections'") == "250"
    workers = [n for n in after if n != "main"]
    # Workers stopped before main, main started (schema migrations) before any worker.
    assert all(after[n]["inactive"] < after["main"]["inactive"] for n in workers)
    assert all(after[n]["active"] > after["main"]["active"] for n in workers)
    assert f"Upgrade: Synapse {OLD_VERSION} -> {new}" in out
    version = federation_api.get("/_matrix/federation/v1/version").json()["server"]["version"]
    assert version == new
    # Media, signing key and secrets survive.
    uri, payload = life["media"]
    server, media_id = uri[len("mxc://"):].split("/", 1)
    media = client_api.get(f"/_matrix/client/v1/media/download/{server}/{media_id}", access_token=life["chat"].alice)
    assert media.status == 200 and hashlib.sha256(media.body).digest() == hashlib.sha256(payload).digest()
    with host.sudo():
        assert {path: host.file(path).sha256sum for path in life["kept"]} == life["kept"]
    # Every process runs from the new release's virtualenv; the old one stays for a rollback.
    assert host.file(VENV).linked_to == f"{VENV}-{new}"
    assert host.file(f"{VENV}-{OLD_VERSION}/bin/python").exists


def test_run_after_the_upgrade_changes_nothing(host, playbook, life):
    before = processes(host)
    rc, out = _apply(playbook, W3, version=CATALOG.SYNAPSE_VERSION, **POOLS)
    assert rc == 0, out[-6000:]
    assert changed_count(out) == 0
    assert processes(host) == before and postgres_server(host) == life["postgres"]
