"""Every row of the worker-type table, planned alone, gives what Synapse needs of that type."""
import pytest

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import (
    ENDPOINT_GROUPS, STREAMS, WORKER_TYPES, routed_groups,
)
from helpers import planned, route_for

ALL_TYPES = sorted(WORKER_TYPES)


def _plan_one(type_name, count=1):
    return planned({type_name: count}, allow_experimental=True)


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_row_planned_alone(type_name):
    row = WORKER_TYPES[type_name]
    result = _plan_one(type_name)
    shared = result["shared_config"]
    (worker,) = result["workers"]
    assert worker["name"] == type_name + "1"
    assert worker["types"] == [type_name]
    assert worker["restart_scope"] == row.restart
    listeners = worker["config"]["worker_listeners"]
    http = listeners[0]
    expected = [r for r in row.resources if r != "health"] or ["health"]
    assert http["resources"][0]["names"] == expected
    # Streams: each written stream names this worker; it has a replication listener and an
    # instance_map entry at that listener.
    for stream in row.streams:
        assert shared["stream_writers"][stream] == [worker["name"]]
    if row.streams:
        repl = [li for li in listeners if li.get("resources") and li["resources"][0]["names"] == ["replication"]]
        assert len(repl) == 1
        assert shared["instance_map"][worker["name"]] == {"host": "10.0.0.10", "port": repl[0]["port"]}
    else:
        assert "stream_writers" not in shared
        assert worker["name"] not in shared["instance_map"]
        assert "replication" not in worker["ports"]
    # Duties.
    for duty in row.duties:
        value = shared[duty.key]
        assert value == ([worker["name"]] if duty.kind == "list" else worker["name"])
    # Routing: the groups that prefer this type first are routed to it.
    for group_name in routed_groups(type_name):
        group = ENDPOINT_GROUPS[group_name]
        route = [r for r in result["routes"]["routes"] if r["group"] == group_name]
        assert route and route[0]["servers"][0]["name"] == worker["name"], group_name
        assert route[0]["sticky"] == group.sticky
    routed = set(r["group"] for r in result["routes"]["routes"])
    assert routed == set(routed_groups(type_name))
    for key, value in row.worker_config.items():
        assert worker["config"][key] == value


@pytest.mark.parametrize("type_name", [t for t in ALL_TYPES if WORKER_TYPES[t].max_count == 1])
def test_single_instance_types_refuse_two(type_name):
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        _plan_one(type_name, 2)
    assert "workers.%s.count" % type_name in [f for f, _ in err.value.errors]


@pytest.mark.parametrize("stream", sorted(s for s in STREAMS if STREAMS[s].max_writers == 1))
def test_single_writer_streams_refuse_two_writers(stream):
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    writers = [t for t in ALL_TYPES if stream in WORKER_TYPES[t].streams and WORKER_TYPES[t].max_count is None]
    assert writers, stream
    with pytest.raises(PlanError) as err:
        planned({writers[0]: 2})
    assert "exactly one writer" in err.value.format()


@pytest.mark.parametrize("stream", sorted(s for s in STREAMS if STREAMS[s].max_writers is None
                                          and not STREAMS[s].experimental))
def test_multi_writer_streams_accept_several(stream):
    writers = [t for t in ALL_TYPES if WORKER_TYPES[t].streams == (stream,)]
    assert writers, stream
    result = planned({writers[0]: 3})
    assert result["shared_config"]["stream_writers"][stream] == ["%s%d" % (writers[0], i) for i in (1, 2, 3)]


def test_c03_receipts_account_group_cannot_scale():
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"receipts_account": 2})
    text = err.value.format()
    assert "account_data" in text and "exactly one writer" in text and "workers.receipts_account" in text
    # Split into separate writers, receipts can scale while account data stays single.
    result = planned({"receipts": 3, "account_data": 1})
    writers = result["shared_config"]["stream_writers"]
    assert writers["receipts"] == ["receipts1", "receipts2", "receipts3"]
    assert writers["account_data"] == ["account_data1"]
    for stream in ("typing", "to_device", "account_data", "presence", "push_rules"):
        assert len(writers.get(stream, ["master"])) == 1


def test_c03_combined_and_separate_writer_of_one_stream_refused():
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"receipts_account": 1, "account_data": 1})
    assert "account_data" in err.value.format()


@pytest.mark.parametrize("version,workers,fragment", [
    ("1.95.0", {"receipts": 2}, "since Synapse 1.96"),
    ("1.134.0", {"device_lists": 1}, "1.135"),
    ("1.151.0", {"media_repository": 1}, "1.152"),
    ("1.104.0", {"push_rules": 1}, "1.105"),
    ("1.58.0", {"user_dir": 1}, "1.59"),
])
def test_c03_writers_newer_than_target_version_refused(version, workers, fragment):
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned(workers, synapse_version=version)
    assert fragment in err.value.format()


def test_c03_receipts_single_writer_fine_before_multi():
    result = planned({"receipts": 1}, synapse_version="1.95.0")
    assert result["shared_config"]["stream_writers"]["receipts"] == ["receipts1"]


def test_c05_presence_routed_to_presence_writer():
    result = planned({"client_reader": 4, "presence_writer": 1})
    for method in ("GET", "PUT"):
        assert route_for(result, "/_matrix/client/v3/presence/@other:example.org/status", method) == \
            ["presence_writer1"]
    worker = [w for w in result["workers"] if w["name"] == "presence_writer1"][0]
    assert "client" in worker["config"]["worker_listeners"][0]["resources"][0]["names"]
    assert "presence_writer1" in result["shared_config"]["instance_map"]


def test_c10_media_on_both_entrypoints():
    result = planned({"client_reader": 2, "media_repository": 1})
    for entrypoint in ("client", "federation"):
        for path in ("/_matrix/media/v3/download/example.org/abc",
                     "/_matrix/client/v1/media/download/example.org/abc",
                     "/_matrix/federation/v1/media/download/abc"):
            assert route_for(result, path, entrypoint=entrypoint) == ["media_repository1"], (entrypoint, path)
    assert result["shared_config"]["enable_media_repo"] is False


def test_writer_routes_beat_generic_pools():
    result = planned({"client_reader": 2, "account_data": 1, "device_lists": 2, "push_rules": 1,
                      "typing_persister": 1, "to_device": 1, "receipts": 1, "encryption": 1})
    assert route_for(result, "/_matrix/client/v3/user/@a:x/account_data/m.direct") == ["account_data1"]
    assert route_for(result, "/_matrix/client/v3/user/@a:x/account_data/m.direct", "PUT") == ["account_data1"]
    assert route_for(result, "/_matrix/client/v3/keys/upload", "POST") == ["device_lists1", "device_lists2"]
    assert route_for(result, "/_matrix/client/v3/keys/query", "POST") == ["encryption1"]
    assert route_for(result, "/_matrix/client/v3/pushrules/global/", "GET") == ["push_rules1"]
    assert route_for(result, "/_matrix/client/v3/rooms/!r:x/typing/@a:x", "PUT") == ["typing_persister1"]
    assert route_for(result, "/_matrix/client/v3/sendToDevice/m.x/1", "PUT") == ["to_device1"]
    assert route_for(result, "/_matrix/client/v3/rooms/!r:x/receipt/m.read/$e", "POST") == ["receipts1"]


def test_generic_pools_take_writer_groups_only_where_synapse_allows():
    result = planned({"client_reader": 2})
    # GET-only reads go to the pool; writes stay on main.
    assert route_for(result, "/_matrix/client/v3/pushrules/global/", "GET") == ["client_reader1", "client_reader2"]
    assert route_for(result, "/_matrix/client/v3/pushrules/global/override/x", "PUT") == ["main"]
    assert route_for(result, "/_matrix/client/v3/rooms/!r:x/typing/@a:x", "PUT") == ["main"]
    assert route_for(result, "/_matrix/client/v3/keys/upload", "POST") == ["client_reader1", "client_reader2"]


def test_fallback_ranking():
    assert route_for(planned({"synchrotron": 1, "initial_synchrotron": 1}),
                     "/_matrix/client/v3/initialSync") == ["initial_synchrotron1"]
    assert route_for(planned({"synchrotron": 2}), "/_matrix/client/v3/initialSync") == ["synchrotron1", "synchrotron2"]
    assert route_for(planned({"federation_reader": 2}), "/_matrix/federation/v1/send/123", "PUT",
                     "federation") == ["federation_reader1", "federation_reader2"]
    assert route_for(planned({"federation_reader": 2, "federation_inbound": 1}), "/_matrix/federation/v1/send/1",
                     "PUT", "federation") == ["federation_inbound1"]
    assert route_for(planned({"user_dir": 1, "client_reader": 1}),
                     "/_matrix/client/v3/user_directory/search", "POST") == ["user_dir1"]


def test_event_creator_sticky_per_room():
    result = planned({"event_creator": 2})
    route = [r for r in result["routes"]["routes"] if r["group"] == "event_send"][0]
    assert route["sticky"] == "room"
    assert route_for(result, "/_matrix/client/v3/rooms/!r:x/send/m.room.message/1", "PUT") == \
        ["event_creator1", "event_creator2"]


def test_merged_process():
    result = planned({"stream_misc": {"types": ["typing_persister", "to_device", "presence_writer"]}})
    (worker,) = result["workers"]
    assert worker["name"] == "stream_misc1"
    assert worker["types"] == ["typing_persister", "to_device", "presence_writer"]
    writers = result["shared_config"]["stream_writers"]
    assert writers == {"typing": ["stream_misc1"], "to_device": ["stream_misc1"], "presence": ["stream_misc1"]}
    for path, method in (("/_matrix/client/v3/rooms/!r:x/typing/@a:x", "PUT"),
                         ("/_matrix/client/v3/sendToDevice/m.x/1", "PUT"),
                         ("/_matrix/client/v3/presence/@a:x/status", "GET")):
        assert route_for(result, path, method) == ["stream_misc1"]


def test_merged_process_with_single_writer_stream_cannot_scale():
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"stream_misc": {"types": ["typing_persister", "receipts"], "count": 2}})
    assert "typing" in err.value.format() and "exactly one writer" in err.value.format()


def test_merged_process_inherits_strictest_rules():
    result = planned({"fed": {"types": ["federation_sender", "event_persister"], "count": 2}})
    assert {w["restart_scope"] for w in result["workers"]} == {"all"}
    shared = result["shared_config"]
    assert shared["federation_sender_instances"] == ["fed1", "fed2"]
    assert shared["stream_writers"]["events"] == ["fed1", "fed2"]
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"duties": {"types": ["background", "pusher"], "count": 2}})
    assert "run_background_tasks_on" in err.value.format()


def test_names_prefix_and_explicit_names():
    result = planned({"synchrotron": {"count": 2, "name": "sync"}, "pusher": {"names": ["push_a", "push_b"]}})
    names = [w["name"] for w in result["workers"]]
    assert names == ["push_a", "push_b", "sync1", "sync2"]
    assert result["shared_config"]["pusher_instances"] == ["push_a", "push_b"]


def test_limits_become_systemd_settings():
    result = planned({"synchrotron": {"count": 1, "limits": {"memory_high": "768M", "memory_max": "1G",
                                                              "cpu_weight": 200, "cpu_quota": "150%"}}})
    assert result["workers"][0]["systemd"] == {"MemoryHigh": "768M", "MemoryMax": "1G", "CPUWeight": "200",
                                               "CPUQuota": "150%"}


def test_metrics_listeners():
    result = planned({"synchrotron": 2}, metrics=True)
    shared = result["shared_config"]
    assert shared["enable_metrics"] is True
    assert [li for li in shared["listeners"] if li["type"] == "metrics"][0]["port"] == 9000
    ports = set()
    for w in result["workers"]:
        metrics = [li for li in w["config"]["worker_listeners"] if li["type"] == "metrics"]
        assert len(metrics) == 1
        ports.add(metrics[0]["port"])
    assert len(ports) == 2
    no_metrics = planned({"synchrotron": 2})
    assert all(li["type"] == "http" for w in no_metrics["workers"] for li in w["config"]["worker_listeners"])


def test_experimental_type_needs_opt_in():
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"thread_subscriptions": 1})
    assert "allow_experimental" in err.value.format()
    assert planned({"thread_subscriptions": 1}, allow_experimental=True)["shared_config"]["stream_writers"] == \
        {"thread_subscriptions": ["thread_subscriptions1"]}


def test_placement_on_another_host():
    result = planned({"synchrotron": {"count": 2, "host": "hs2"}, "event_persister": 1},
                     hosts={"hs2": {"address": "10.0.0.11"}})
    sync = [w for w in result["workers"] if w["type"] == "synchrotron"]
    assert {w["host"] for w in sync} == {"hs2"} and {w["address"] for w in sync} == {"10.0.0.11"}
    assert [w["ports"]["http"] for w in sync] == [19600, 19601]  # synchrotron's block of 100 on hs2
    assert sorted(result["hosts"]) == ["hs1", "hs2"]
    for w in sync:
        assert w["config"]["worker_listeners"][0]["bind_addresses"] == ["10.0.0.11"]


def test_initial_syncs_in_their_own_pool():
    result = planned({"synchrotron": 2, "initial_synchrotron": 1})
    assert route_for(result, "/_matrix/client/v3/sync?since=s1_2&timeout=30000") == ["synchrotron1", "synchrotron2"]
    assert route_for(result, "/_matrix/client/v3/sync?timeout=0") == ["initial_synchrotron1"]
    assert route_for(result, "/_matrix/client/v3/sync") == ["initial_synchrotron1"]
    only_sync = planned({"synchrotron": 2})
    assert route_for(only_sync, "/_matrix/client/v3/sync") == ["synchrotron1", "synchrotron2"]


def test_media_workers_on_several_hosts_need_a_shared_store():
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    hosts = {"hs2": {"address": "10.0.0.11"}}
    wish = {"media_repository": 1, "media2": {"types": ["media_repository"], "host": "hs2"}}
    with pytest.raises(PlanError) as err:
        planned(wish, hosts=hosts)
    assert "workers.media2/media_repository.host" in err.value.format() and "media_store_shared" in err.value.format()
    result = planned(wish, hosts=hosts, media_store_shared=True)
    assert result["shared_config"]["media_instance_running_background_jobs"] == "media21"
    # All on one other host: fine without a shared store.
    assert planned({"media_repository": {"count": 2, "host": "hs2"}}, hosts=hosts)


def test_type_limit_holds_across_entries():
    from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
    with pytest.raises(PlanError) as err:
        planned({"sso_login": 1, "web": {"types": ["sso_login", "client_reader"]}})
    assert "workers.sso_login/web.count" in err.value.format()


def test_media_jobs_pinned_to_main_without_media_workers():
    shared = planned({"client_reader": 2})["shared_config"]
    assert shared["enable_media_repo"] is True
    assert shared["media_instance_running_background_jobs"] == "master"


def test_pip_requirements_cap_what_an_older_release_does_not():
    """Synapse before 1.163.0 does not cap txredisapi, whose 1.6.0 stops main at start-up."""
    from ansible_collections.matrixops.synapse.plugins.module_utils import catalog

    assert catalog.pip_requirements("1.162.0") == ["matrix-synapse[postgres,redis]==1.162.0", "txredisapi<1.6.0"]
    assert catalog.pip_requirements(catalog.SYNAPSE_VERSION) == [
        "matrix-synapse[postgres,redis]==%s" % catalog.SYNAPSE_VERSION]
    for fixed_in, requirement, why in catalog.PIP_CONSTRAINTS:
        catalog.version_tuple(fixed_in)
        assert requirement and why
