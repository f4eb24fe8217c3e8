"""Planner: what it produces for valid wishes (walking-skeleton worker types)."""
import pytest

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import (
    ENDPOINT_GROUPS, REMOVED_KEYS, ROUTING_ORDER, STREAMS, SYNAPSE_VERSION, WORKER_TYPES,
)
from helpers import names, planned, route_for, worker

SKELETON = {"synchrotron": 2, "client_reader": 1, "event_persister": 2, "federation_sender": 1,
            "pusher": 1, "media_repository": 1, "background": 1}


def test_monolith_has_no_worker_keys():
    result = planned({})
    shared = result["shared_config"]
    assert result["workers"] == []
    for key in ("instance_map", "stream_writers", "federation_sender_instances", "pusher_instances",
                "run_background_tasks_on", "media_instance_running_background_jobs"):
        assert key not in shared
    assert shared["enable_media_repo"] is True
    assert shared["redis"]["enabled"] is True
    assert result["database"]["processes"] == 1


def test_skeleton_names_are_stable_and_unique():
    result = planned(SKELETON)
    assert names(result, "synchrotron") == ["synchrotron1", "synchrotron2"]
    assert names(result, "event_persister") == ["event_persister1", "event_persister2"]
    all_names = [w["name"] for w in result["workers"]]
    assert len(all_names) == len(set(all_names)) == sum(SKELETON.values())
    assert planned(SKELETON) == result  # deterministic


def test_every_worker_uses_generic_app_and_has_health():
    result = planned(SKELETON)
    for w in result["workers"]:
        assert w["config"]["worker_app"] == "synapse.app.generic_worker"
        assert w["config"]["worker_name"] == w["name"]
        http = w["config"]["worker_listeners"][0]
        assert http["port"] == w["ports"]["http"]
        assert w["health_url"] == "http://10.0.0.10:%d/health" % w["ports"]["http"]
        assert w["unit"] == "matrix-synapse-worker@%s.service" % w["name"]
    assert worker(result, "pusher1")["config"]["worker_listeners"][0]["resources"][0]["names"] == ["health"]
    assert worker(result, "synchrotron1")["config"]["worker_listeners"][0]["resources"][0]["names"] == ["client"]


def test_ports_unique_per_host_and_clear_of_main():
    result = planned(SKELETON)
    seen = [(row["host"], row["port"]) for row in result["ports"]]
    assert len(seen) == len(set(seen))
    worker_ports = [row["port"] for row in result["ports"] if row["process"] != "main"]
    assert min(worker_ports) >= 18100
    assert 8008 not in worker_ports and 9093 not in worker_ports


def test_ports_are_stable_when_another_entry_scales():
    before = planned(SKELETON)
    after = planned(dict(SKELETON, pusher=3, client_reader=4, media_repository=2))
    for w in before["workers"]:
        again = [a for a in after["workers"] if a["name"] == w["name"]][0]
        assert again["ports"] == w["ports"] and again["config"] == w["config"], w["name"]


def test_stream_writers_and_instance_map():
    result = planned(SKELETON)
    shared = result["shared_config"]
    assert shared["stream_writers"]["events"] == ["event_persister1", "event_persister2"]
    assert shared["stream_writers"]["quarantined_media_changes"] == ["media_repository1"]
    for stream, writers in shared["stream_writers"].items():
        for name in writers:
            assert name in shared["instance_map"]
            entry = shared["instance_map"][name]
            listener = [li for li in worker(result, name)["config"]["worker_listeners"]
                        if li["port"] == entry["port"]]
            assert listener and "replication" in listener[0]["resources"][0]["names"]
    # Non-writers do not need an instance_map entry nor a replication listener.
    assert "synchrotron1" not in shared["instance_map"]
    assert "replication" not in worker(result, "synchrotron1")["ports"]


def test_c01_instance_map_main_points_at_replication_listener():
    result = planned({"client_reader": 2})
    shared = result["shared_config"]
    main = shared["instance_map"]["main"]
    replication_ports = [li["port"] for li in shared["listeners"]
                         if "replication" in li["resources"][0]["names"]]
    assert main["port"] in replication_ports
    assert main["host"] not in ("0.0.0.0", "::", "")
    assert shared["redis"]["enabled"] is True
    for w in result["workers"]:
        assert not [k for k in w["config"] if k.startswith("worker_replication_")]


@pytest.mark.parametrize("key", sorted(REMOVED_KEYS))
def test_c01_legacy_replication_keys_are_refused(key):
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as shared_err:
        planned({"client_reader": 2}, extra_config={key: "127.0.0.1"})
    assert "extra_config.%s" % key in str(shared_err.value)
    with pytest.raises(PlanError) as worker_err:
        planned({"client_reader": {"count": 2, "config": {key: 9093}}})
    assert "workers.client_reader.config.%s" % key in str(worker_err.value)
    assert "delete the key" in str(worker_err.value)


def test_c02_no_empty_stream_writer_lists():
    for workers in ({}, {"synchrotron": 1}, {"event_persister": 1}, {"media_repository": 2}):
        shared = planned(workers)["shared_config"]
        writers = shared.get("stream_writers", {})
        assert all(len(v) >= 1 for v in writers.values())
        assert set(writers) <= set(STREAMS)
    assert "stream_writers" not in planned({"synchrotron": 3})["shared_config"]


def test_c11_media_background_jobs_pinned_to_one_media_worker():
    result = planned({"media_repository": 2, "client_reader": 1})
    shared = result["shared_config"]
    assert shared["media_instance_running_background_jobs"] == "media_repository1"
    assert shared["enable_media_repo"] is False
    for name in names(result, "media_repository"):
        assert worker(result, name)["config"]["enable_media_repo"] is True
        assert "media" in worker(result, name)["config"]["worker_listeners"][0]["resources"][0]["names"]


def test_c11_single_media_worker_still_names_itself():
    shared = planned({"media_repository": 1})["shared_config"]
    assert shared["media_instance_running_background_jobs"] == "media_repository1"


def test_c12_sharding_lists_are_exact():
    result = planned({"federation_sender": 3, "pusher": 2, "client_reader": 2})
    shared = result["shared_config"]
    assert shared["federation_sender_instances"] == names(result, "federation_sender")
    assert shared["pusher_instances"] == names(result, "pusher")
    assert "main" not in shared["federation_sender_instances"]
    for legacy in ("send_federation", "start_pushers"):
        assert legacy not in shared


def test_c12_no_sender_means_key_absent():
    shared = planned({"client_reader": 2})["shared_config"]
    assert "federation_sender_instances" not in shared and "pusher_instances" not in shared


@pytest.mark.parametrize("flag", ["send_federation", "start_pushers", "notify_appservices",
                                  "update_user_directory"])
def test_c12_legacy_duty_flags_refused(flag):
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"federation_sender": 0, "pusher": 0}, extra_config={flag: False})
    assert "extra_config.%s" % flag in str(err.value)


def test_background_duty():
    shared = planned({"background": 1})["shared_config"]
    assert shared["run_background_tasks_on"] == "background1"


def test_database_sizing():
    result = planned(SKELETON, database={"cp_max": 10, "reserve": 20})
    processes = 1 + sum(SKELETON.values())
    assert result["database"]["processes"] == processes
    assert result["database"]["connections_needed"] == processes * 10 + 20
    # Nothing runs yet: 130 needed, half again as much headroom (195), rounded up to fifty.
    assert result["database"]["max_connections"] == 200
    assert result["database"]["restarts_postgresql"] is False
    big = planned({"synchrotron": 30}, database={"cp_max": 10})
    assert big["database"]["max_connections"] == 500  # 31 * 10 + 20 = 330, * 1.5 = 495
    assert planned({"synchrotron": 1})["database"]["max_connections"] == 100  # PostgreSQL's default is the floor


def test_max_connections_keeps_what_runs_while_it_is_enough():
    """PostgreSQL restarts for max_connections only when the plan needs more than it runs with:
    a scale-down never lowers it, a scale-up within the headroom leaves it, and a raise leaves
    headroom for the next few workers."""
    def db(workers, running, **database):
        return planned(workers, database=dict(database, cp_max=10, running_max_connections=running))["database"]

    small = db({"synchrotron": 1}, None)
    assert (small["max_connections"], small["max_connections_running"], small["restarts_postgresql"]) == (100, None, False)
    # 1 + 7 processes * 10 + 20 = 100: still fits what runs.
    up = db({"synchrotron": 7}, 100)
    assert (up["connections_needed"], up["max_connections"], up["restarts_postgresql"]) == (100, 100, False)
    # One more does not: raised to 110 * 1.5 = 165, rounded up to 200; PostgreSQL restarts.
    more = db({"synchrotron": 8}, 100)
    assert (more["max_connections"], more["max_connections_running"], more["restarts_postgresql"]) == (200, 100, True)
    # Scaling down again keeps the raised value: no restart.
    down = db({"synchrotron": 1}, 200)
    assert (down["max_connections"], down["restarts_postgresql"]) == (200, False)
    # An operator's own higher value is kept too.
    assert db({"synchrotron": 1}, 1000)["max_connections"] == 1000
    # A declared value wins, in both directions.
    declared = db({"synchrotron": 1}, 1000, max_connections=300)
    assert (declared["max_connections"], declared["restarts_postgresql"]) == (300, True)
    assert db({"synchrotron": 1}, 300, max_connections=300)["restarts_postgresql"] is False


@pytest.mark.parametrize("running", [0, -5, "100", 1.5, True])
def test_running_max_connections_must_be_what_postgresql_reports(running):
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"synchrotron": 1}, database={"running_max_connections": running})
    assert "database.running_max_connections" in str(err.value)


def test_c14_declared_limit_too_small_is_refused():
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    workers = {"client_reader": 8, "synchrotron": 4, "event_persister": 2, "federation_sender": 4,
               "pusher": 2, "media_repository": 1, "background": 1}
    with pytest.raises(PlanError) as err:
        planned(workers, database={"cp_max": 10, "max_connections": 100})
    text = str(err.value)
    assert "database.max_connections" in text and "100" in text and "23 Synapse processes" in text
    ok = planned(workers, database={"cp_max": 10, "max_connections": 500})
    assert ok["database"]["max_connections"] == 500


def test_routing_table_routes_groups_to_their_workers():
    result = planned(SKELETON)
    assert route_for(result, "/_matrix/client/v3/sync") == ["synchrotron1", "synchrotron2"]
    assert route_for(result, "/_matrix/client/v3/rooms/!r:x/messages") == ["client_reader1"]
    assert route_for(result, "/_matrix/client/v3/rooms/!r:x/send/m.room.message/1", "PUT") == ["main"]
    assert route_for(result, "/_synapse/replication/send_events/x") == ["main"]
    media = ["media_repository1"]
    for entrypoint in ("client", "federation"):
        for path in ("/_matrix/media/v3/download/example.org/abc",
                     "/_matrix/client/v1/media/download/example.org/abc",
                     "/_matrix/federation/v1/media/download/abc"):
            assert route_for(result, path, entrypoint=entrypoint) == media
    assert route_for(result, "/_matrix/media/v3/upload", "POST") == media
    # Routes follow ROUTING_ORDER and only name existing workers.
    order = [r["group"] for r in result["routes"]["routes"]]
    assert order == [g for g in ROUTING_ORDER if g in order]
    existing = set(w["name"] for w in result["workers"])
    for route in result["routes"]["routes"]:
        assert set(s["name"] for s in route["servers"]) <= existing


def test_c07_admin_room_regex_is_anchored():
    result = planned({"client_reader": 2})
    assert route_for(result, "/_synapse/admin/v1/rooms/!r:example.org") == ["client_reader1", "client_reader2"]
    assert route_for(result, "/_synapse/admin/v1/rooms/!r:example.org/members") == ["main"]


def test_c05_presence_never_on_generic_pool():
    result = planned({"client_reader": 4})
    assert route_for(result, "/_matrix/client/v3/presence/@other:example.org/status") == ["main"]


def test_sticky_keys():
    routes = dict((r["group"], r) for r in planned(SKELETON)["routes"]["routes"])
    assert routes["sync"]["sticky"] == "user"
    assert routes["room_messages"]["sticky"] == "room"
    assert routes["media"]["main_fallback"] is False
    assert routes["sync"]["main_fallback"] is True


def test_catalogue_is_consistent():
    assert SYNAPSE_VERSION.count(".") == 2
    for wtype in WORKER_TYPES.values():
        for stream in wtype.streams:
            assert stream in STREAMS
    assert set(ROUTING_ORDER) == set(ENDPOINT_GROUPS)
    for group in ENDPOINT_GROUPS.values():
        assert group.prefer and set(group.prefer) <= set(WORKER_TYPES), group.name
        for pattern in group.patterns:
            assert pattern.startswith("^/")


def test_module_returns_plan(monkeypatch, capsys):
    import json
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes
    from ansible_collections.matrixops.synapse.plugins.modules import worker_plan

    args = {"ANSIBLE_MODULE_ARGS": {"main": {"host": "hs1", "address": "127.0.0.1"},
                                    "workers": {"synchrotron": 1}, "_ansible_check_mode": True}}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps(args)))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit):
        worker_plan.main()
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is False
    assert [w["name"] for w in out["workers"]] == ["synchrotron1"]


def test_c15_services_beside_synapse_get_the_router_not_main():
    """Bridges and bots must talk to the router: main alone 404s what moved to workers."""
    result = planned({"media_repository": 1, "typing_persister": 1})
    routes = result["routes"]
    assert routes["internal_url"] == "http://10.0.0.10:8080"
    main_listener = result["shared_config"]["listeners"][0]
    assert "client" in main_listener["resources"][0]["names"]
    assert routes["internal_url"] != "http://10.0.0.10:%d" % main_listener["port"]
    assert main_listener["bind_addresses"] == ["10.0.0.10"]  # never 0.0.0.0: not handed out
    assert route_for(result, "/_matrix/media/v3/upload", "POST") == ["media_repository1"]
    assert route_for(result, "/_matrix/client/v3/rooms/!r:example.org/typing/@u:example.org",
                     "PUT") == ["typing_persister1"]


def test_c15_router_on_its_own_host():
    result = planned({"synchrotron": 1}, hosts={"hs1": {"address": "10.0.0.10"}},
                     proxy={"host": "edge", "address": "10.0.0.30", "client_port": 8081})
    assert result["routes"]["internal_url"] == "http://10.0.0.30:8081"


def test_a_small_cp_max_alone_lowers_the_default_cp_min_with_it():
    result = planned({"synchrotron": 1}, database={"cp_max": 3})
    args = result["shared_config"]["database"]["args"]
    assert (args["cp_min"], args["cp_max"]) == (3, 3)
    for worker in result["workers"]:
        own = worker["config"].get("database", {}).get("args", {})
        assert own.get("cp_min", 3) <= own.get("cp_max", 3)
