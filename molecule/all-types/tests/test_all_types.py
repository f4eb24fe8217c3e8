"""Every worker type of the catalogue deployed at once on one host, checked end to end.

The expectations are derived from the scenario's wish (../host_vars/synapse-all.yml) and the
catalogue (plugins/module_utils/catalog.py), never from the plan the playbook computed, so a
planner that drops a writer or a duty fails here.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from conftest import CATALOG, register, registration_secret, served_by

SCENARIO = Path(__file__).resolve().parent.parent
ROOT = SCENARIO.parent.parent


WISH = yaml.safe_load((SCENARIO / "host_vars" / "synapse-all.yml").read_text())["synapse_workers"]
# The types this scenario cannot run, and why, are explained in ../host_vars/synapse-all.yml.
LEFT_OUT = {"account_data"}

PLANNED = {wtype: [f"{wtype}{i}" for i in range(1, count + 1)] for wtype, count in sorted(WISH.items())}
ALL_WORKERS = sorted(name for names in PLANNED.values() for name in names)


def _expected_writers():
    writers: dict[str, list[str]] = {}
    for wtype, names in PLANNED.items():
        for stream in CATALOG.WORKER_TYPES[wtype].streams:
            writers.setdefault(stream, []).extend(names)
    return {stream: sorted(names) for stream, names in writers.items()}


def _expected_duties():
    duties: dict[str, object] = {}
    for wtype, names in PLANNED.items():
        for duty in CATALOG.WORKER_TYPES[wtype].duties:
            duties[duty.key] = names if duty.kind == "list" else names[0]
    return duties


EXPECTED_WRITERS = _expected_writers()
EXPECTED_DUTIES = _expected_duties()


# --------------------------------------------------------------------------- the wish itself

def test_wish_runs_every_catalogue_type_but_the_documented_ones():
    assert set(WISH) | LEFT_OUT == set(CATALOG.WORKER_TYPES), \
        "a catalogue type is missing from host_vars/synapse-all.yml (or LEFT_OUT names one it runs)"
    assert not set(WISH) & LEFT_OUT
    # The sharded types run two instances each, to exercise the sharding.
    assert WISH["event_persister"] == WISH["device_lists"] == WISH["synchrotron"] == 2


def test_every_stream_of_the_catalogue_has_a_writer():
    assert set(CATALOG.STREAMS) == set(EXPECTED_WRITERS)


# --------------------------------------------------------------------------- units and health

def test_every_planned_worker_is_configured(deployed):
    assert sorted(deployed.workers) == ALL_WORKERS
    for name, config in deployed.workers.items():
        assert config["worker_name"] == name
        assert config["worker_app"] == "synapse.app.generic_worker"


def _unit_states(host, units):
    out = host.check_output("systemctl show -p Id -p ActiveState -p SubState -p UnitFileState "
                            + " ".join(units))
    states = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[props["Id"]] = props
    return states


def test_every_worker_unit_active_and_enabled(host):
    units = [f"matrix-synapse-worker@{name}.service" for name in ALL_WORKERS]
    states = _unit_states(host, units + ["matrix-synapse.service"])
    bad = {unit: (s["ActiveState"], s["SubState"], s["UnitFileState"]) for unit, s in states.items()
           if (s["ActiveState"], s["SubState"], s["UnitFileState"]) != ("active", "running", "enabled")}
    assert set(states) == set(units) | {"matrix-synapse.service"}
    assert not bad, bad


def test_every_process_answers_health(host, deployed):
    targets = {"main": (deployed.shared["listeners"][0]["bind_addresses"][0], deployed.shared["listeners"][0]["port"])}
    for name, config in deployed.workers.items():
        listener = config["worker_listeners"][0]
        targets[name] = (listener["bind_addresses"][0], listener["port"])
    # One round trip for all of them: curl runs on the host, against each process's own port.
    script = "; ".join(f"echo {name} $(curl -sS -m 10 http://{addr}:{port}/health 2>&1)"
                       for name, (addr, port) in sorted(targets.items()))
    answers = dict(line.split(" ", 1) for line in host.check_output(script).splitlines())
    assert len(targets) == len(ALL_WORKERS) + 1
    assert {name: answer for name, answer in answers.items() if answer != "OK"} == {}
    assert set(answers) == set(targets)


def test_both_entrypoints_answer(client_api, federation_api):
    # (The proxy does not expose /health: only Matrix paths.)
    assert client_api.get("/_matrix/client/versions").status == 200
    assert federation_api.get("/_matrix/federation/v1/version").status == 200


# --------------------------------------------------------------------------- shared config

def test_every_stream_writer_is_configured(deployed):
    writers = {stream: sorted(names) for stream, names in deployed.shared.get("stream_writers", {}).items()}
    assert writers == EXPECTED_WRITERS
    # Spelled out, for the reader: the combined receipts_account writes two streams.
    assert writers["account_data"] == ["receipts_account1"]
    assert writers["receipts"] == ["receipts1", "receipts_account1"]
    assert writers["events"] == ["event_persister1", "event_persister2"]


def test_every_writer_is_in_the_instance_map_with_a_replication_listener(deployed):
    instance_map = deployed.shared["instance_map"]
    writers = sorted(set(n for names in EXPECTED_WRITERS.values() for n in names))
    assert sorted(instance_map) == sorted(writers + ["main"])
    for name in writers:
        replication = [lst for lst in deployed.workers[name]["worker_listeners"]
                       if any("replication" in r["names"] for r in lst.get("resources", []))]
        assert [lst["port"] for lst in replication] == [instance_map[name]["port"]], name


def test_every_duty_key_is_configured(deployed):
    assert EXPECTED_DUTIES == {
        "federation_sender_instances": ["federation_sender1"],
        "pusher_instances": ["pusher1"],
        "run_background_tasks_on": "background1",
        "update_user_directory_from_worker": "user_dir1",
        "notify_appservices_from_worker": "appservice1",
        "media_instance_running_background_jobs": "media_repository1",
    }
    assert {key: deployed.shared.get(key) for key in EXPECTED_DUTIES} == EXPECTED_DUTIES
    # Media is served by the media worker only.
    assert deployed.shared["enable_media_repo"] is False
    assert deployed.workers["media_repository1"]["enable_media_repo"] is True


# --------------------------------------------------------------------------- writers at work

def _q(value):
    return urllib.parse.quote(value, safe="")


# (case, process prefix that must serve it). Every request goes through the proxy's entrypoints;
# one per endpoint group of the routing table at least, write methods included, federation
# paths on the federation entrypoint.
SERVED_BY = {
    "login": "client_reader",
    "create_room": "client_reader",
    "room_members": "client_reader",
    "send_event": "event_creator",
    "set_state": "event_creator",
    "set_profile": "event_creator",
    "room_messages": "client_reader",
    "typing": "typing_persister",
    "receipt": "receipts",
    "read_markers": "receipts",
    "account_data": "receipts_account",
    "room_tags": "receipts_account",
    "room_tag_delete": "receipts_account",
    "presence": "presence_writer",
    "push_rules": "push_rules",
    "push_rule_get": "push_rules",
    "push_rule_delete": "push_rules",
    "to_device": "to_device",
    "device_update": "device_lists",
    "keys_upload": "device_lists",
    "keys_query": "encryption",
    "keys_claim": "encryption",
    "user_directory": "user_dir",
    "admin_user_get": "client_reader",
    "initial_sync": "initial_synchrotron",
    "incremental_sync": "synchrotron",
    "media_upload": "media_repository",
    "media_download": "media_repository",
    "federation_version": "federation_reader",
    "federation_key_query": "federation_reader",
    "federation_profile": "federation_reader",
    "federation_send": "federation_inbound",
    "federation_media": "media_repository",
    "sso_redirect": "sso_login",
}
# Answers other than 200 that prove the right process handled the request:
#   sso_redirect: SSO is not configured here, so the sso_login worker refuses the redirect;
#   admin_user_get: the caller is no server admin;
#   federation_*: an unsigned request, refused by the process that would serve a signed one.
EXPECTED_STATUS = {"sso_redirect": (400, 404), "admin_user_get": (403,), "federation_profile": (401,),
                   "federation_send": (401,), "federation_media": (401,)}


@pytest.fixture(scope="module")
def writers_at_work(host, client_api, federation_api, wait):
    """One request per endpoint group, then who logged each one in the journal."""
    shared_secret = registration_secret(host)
    since = host.check_output("date +%s")
    suffix = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    localpart = f"all_{suffix}"
    reg = register(client_api, shared_secret, localpart, password)
    user, device = reg["user_id"], reg["device_id"]
    tok = {"access_token": reg["access_token"]}
    v3 = "/_matrix/client/v3"
    calls: dict[str, tuple[str, str, object, str]] = {}

    def call(case, method, path, body=None, api=client_api, **kwargs):
        resp = api.request(method, path, json_body=body, **kwargs)
        calls[case] = (method, path, resp, "federation" if api is federation_api else "client")
        return resp

    call("login", "POST", f"{v3}/login", {"type": "m.login.password", "password": password,
                                          "identifier": {"type": "m.id.user", "user": localpart}})
    room = call("create_room", "POST", f"{v3}/createRoom", {"name": "all types"}, **tok).json()["room_id"]
    event = call("send_event", "PUT", f"{v3}/rooms/{_q(room)}/send/m.room.message/t{suffix}",
                 {"msgtype": "m.text", "body": "every worker type"}, **tok).json()["event_id"]
    call("set_state", "PUT", f"{v3}/rooms/{_q(room)}/state/m.room.topic/", {"topic": "routing"}, **tok)
    call("set_profile", "PUT", f"{v3}/profile/{_q(user)}/displayname", {"displayname": "All Types"}, **tok)
    call("room_members", "GET", f"{v3}/rooms/{_q(room)}/members", **tok)
    call("room_messages", "GET", f"{v3}/rooms/{_q(room)}/messages?dir=b&limit=5", **tok)
    call("typing", "PUT", f"{v3}/rooms/{_q(room)}/typing/{_q(user)}", {"typing": True, "timeout": 10000}, **tok)
    call("receipt", "POST", f"{v3}/rooms/{_q(room)}/receipt/m.read/{_q(event)}", {}, **tok)
    call("read_markers", "POST", f"{v3}/rooms/{_q(room)}/read_markers",
         {"m.fully_read": event, "m.read": event}, **tok)
    call("account_data", "PUT", f"{v3}/user/{_q(user)}/account_data/org.matrixops.test", {"n": 1}, **tok)
    call("room_tags", "PUT", f"{v3}/user/{_q(user)}/rooms/{_q(room)}/tags/u.matrixops", {"order": 0.5}, **tok)
    call("room_tag_delete", "DELETE", f"{v3}/user/{_q(user)}/rooms/{_q(room)}/tags/u.matrixops", **tok)
    call("presence", "PUT", f"{v3}/presence/{_q(user)}/status", {"presence": "online"}, **tok)
    call("push_rules", "PUT", f"{v3}/pushrules/global/override/org.matrixops.test",
         {"actions": ["notify"], "conditions": [{"kind": "event_match", "key": "content.body",
                                                 "pattern": "matrixops"}]}, **tok)
    call("push_rule_get", "GET", f"{v3}/pushrules/global/override/org.matrixops.test", **tok)
    call("push_rule_delete", "DELETE", f"{v3}/pushrules/global/override/org.matrixops.test", **tok)
    call("to_device", "PUT", f"{v3}/sendToDevice/org.matrixops.test/d{suffix}",
         {"messages": {user: {"*": {"n": 1}}}}, **tok)
    call("device_update", "PUT", f"{v3}/devices/{_q(device)}", {"display_name": "all types"}, **tok)
    call("keys_upload", "POST", f"{v3}/keys/upload", {}, **tok)
    call("keys_query", "POST", f"{v3}/keys/query", {"device_keys": {user: []}}, **tok)
    call("keys_claim", "POST", f"{v3}/keys/claim", {"one_time_keys": {user: {device: "signed_curve25519"}}},
         **tok)
    call("user_directory", "POST", f"{v3}/user_directory/search", {"search_term": "all"}, **tok)
    call("admin_user_get", "GET", f"/_synapse/admin/v2/users/{_q(user)}", **tok)
    batch = call("initial_sync", "GET", f"{v3}/sync?timeout=0", **tok).json()["next_batch"]
    call("incremental_sync", "GET", f"{v3}/sync?timeout=0&since={_q(batch)}", **tok)
    uri = call("media_upload", "POST", "/_matrix/media/v3/upload?filename=all.txt", data=b"every worker type",
               headers={"Content-Type": "text/plain"}, **tok).json()["content_uri"]
    server_name, media_id = uri[len("mxc://"):].split("/", 1)
    call("media_download", "GET", f"/_matrix/client/v1/media/download/{server_name}/{media_id}", **tok)
    call("federation_version", "GET", "/_matrix/federation/v1/version", api=federation_api)
    call("federation_key_query", "POST", "/_matrix/key/v2/query", {"server_keys": {}}, api=federation_api)
    call("federation_profile", "GET", f"/_matrix/federation/v1/query/profile?user_id={_q(user)}",
         api=federation_api)
    call("federation_send", "PUT", f"/_matrix/federation/v1/send/t{suffix}", {"pdus": [], "edus": []},
         api=federation_api)
    call("federation_media", "GET", f"/_matrix/federation/v1/media/download/{media_id}", api=federation_api)
    call("sso_redirect", "GET", f"{v3}/login/sso/redirect?redirectUrl={_q('http://127.0.0.1/')}")

    needles = {case: f'"{method} {path} ' for case, (method, path, _, _) in calls.items()}
    last: dict[str, set[str]] = {}

    def who_served():
        last.update(served_by(host, since, needles))
        return all(last.values())

    try:  # journald may lag a little behind the responses
        wait(who_served, timeout=30, what="every request in the journal")
    except AssertionError:
        pass  # the test of each case says which one is missing
    return {case: (resp.status, resp.body[:300], last.get(case, set()), _group_of(entrypoint, method, path))
            for case, (method, path, resp, entrypoint) in calls.items()}


def _group_of(entrypoint, method, path):
    """The endpoint group of the catalogue a request falls in, tried in routing order."""
    bare, _, query = path.partition("?")
    params = urllib.parse.parse_qs(query)
    for name in CATALOG.ROUTING_ORDER:
        group = CATALOG.ENDPOINT_GROUPS[name]
        if entrypoint not in group.entrypoints or (group.methods and method not in group.methods):
            continue
        if group.without_query and group.without_query in params:
            continue
        if any(re.search(p, bare) for p in group.patterns):
            return name
    return None


def test_every_route_group_is_exercised(writers_at_work):
    """The cases above hit every endpoint group that a worker type of this plan serves."""
    routed = {name for name in CATALOG.ROUTING_ORDER
              if any(t in WISH for t in CATALOG.ENDPOINT_GROUPS[name].prefer)}
    hit = {group for (_, _, _, group) in writers_at_work.values()}
    assert routed - hit == set()


def test_media_download_is_byte_identical(writers_at_work):
    status, body, _, _ = writers_at_work["media_download"]
    assert (status, body) == (200, b"every worker type")


@pytest.mark.parametrize("case", sorted(SERVED_BY))
def test_request_served_by_its_worker(writers_at_work, case):
    status, body, served, _ = writers_at_work[case]
    assert status in EXPECTED_STATUS.get(case, (200,)), (status, body)
    prefix = SERVED_BY[case]
    expected = set(n for n in PLANNED[prefix])
    assert served and served <= expected, f"{case} was served by {sorted(served) or 'nobody'}, not {prefix}"


# --------------------------------------------------------------------------- footprint

def test_stack_memory_footprint(host, capsys):
    """Not a limit: writes the stack's memory (systemd MemoryCurrent per unit) to a report."""
    out = host.check_output("systemctl show -p Id -p MemoryCurrent 'matrix-synapse*' 'postgresql*' "
                            "'redis-server*' 'haproxy*'")
    units = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id", "").endswith(".service") and props.get("MemoryCurrent", "").isdigit():
            units[props["Id"]] = int(props["MemoryCurrent"])
    rss = host.check_output("ps -eo rss=,args= | awk '/python -m synapse[.]app[.]/ {s+=$1; n++} "
                            "END {printf \"%d %d\", n, s/1024}'").split()
    total = sum(units.values())
    lines = [f"{unit:<52} {value // 1048576:6d} MiB" for unit, value in sorted(units.items())]
    lines += [f"{'total (all units)':<52} {total // 1048576:6d} MiB",
              f"{'Synapse processes RSS':<52} {rss[0]} processes, {rss[1]} MiB",
              f"measured {time.strftime('%Y-%m-%d %H:%M:%S')} after the all-types verify: "
              f"{len(ALL_WORKERS)} workers + main"]
    report = "\n".join(lines) + "\n"
    reports = Path(os.environ.get("CACHE_DIR") or ROOT / ".cache") / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "all-types-footprint.txt").write_text(report)
    with capsys.disabled():
        print("\n==> all-types stack memory (also in %s)\n%s" % (reports / "all-types-footprint.txt", report))
    assert len([u for u in units if u.startswith("matrix-synapse")]) == len(ALL_WORKERS) + 1
