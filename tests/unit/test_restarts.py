"""Restart scope: what a change between two plans restarts, and in which order (C17)."""
from ansible_collections.matrixops.synapse.plugins.module_utils.restarts import restart_plan
from helpers import planned

BASE = {"synchrotron": 2, "client_reader": 1, "event_persister": 2, "federation_sender": 2, "pusher": 1,
        "background": 1}


def _with(**changes):
    workers = dict(BASE)
    workers.update(changes)
    return planned(dict((k, v) for k, v in workers.items() if v is not None))


def test_no_change_no_restart():
    result = restart_plan(planned(BASE), planned(BASE))
    assert result["steps"] == [] and result["reasons"] == []


def test_first_deployment_starts_main_first():
    # restart: starts what is stopped, and what already runs (deployed before any record) reloads.
    result = restart_plan(None, planned(BASE))
    assert result["steps"][0] == {"action": "restart", "units": ["main"], "rolling": False}
    assert result["steps"][1]["action"] == "restart" and "synchrotron1" in result["steps"][1]["units"]
    assert len(result["steps"]) == 2


def test_monolith_first_deployment_is_main_alone():
    assert restart_plan(None, planned({}))["steps"] == [{"action": "restart", "units": ["main"], "rolling": False}]


def _switch_steps(workers):
    return [
        {"action": "stop", "units": workers, "rolling": False},
        {"action": "stop", "units": ["main"], "rolling": False},
        {"action": "switch_venv", "units": [], "rolling": False},
        {"action": "start", "units": ["main"], "rolling": False},
        {"action": "start", "units": workers, "rolling": False},
    ]


def test_upgrade_stops_workers_then_main_switches_venv_then_main_alone_then_workers():
    old = planned(BASE, synapse_version="1.162.0")
    new = planned(BASE)
    result = restart_plan(old, new)
    assert result["steps"] == _switch_steps(sorted(w["name"] for w in new["workers"]))
    assert result["upgrade"] == {"from": "1.162.0", "to": new["synapse_version"]}


def test_a_venv_to_switch_at_the_same_version_is_handled_like_an_upgrade():
    result = restart_plan(planned(BASE), planned(BASE), switch_venv="not the release's")
    assert result["steps"] == _switch_steps(sorted(w["name"] for w in planned(BASE)["workers"]))
    assert result["upgrade"] is None and result["reasons"][0].startswith("not the release's: stop every worker")


def test_a_venv_to_switch_without_a_record_stops_what_may_run_first():
    result = restart_plan(None, planned({"synchrotron": 1}), switch_venv="a directory of its own")
    assert result["steps"] == _switch_steps(["synchrotron1"])


def test_worker_moved_to_another_host_is_removed_and_added():
    hosts = {"hs1": {"address": "10.0.0.10"}, "hs2": {"address": "10.0.0.11"}}
    old = planned(dict(BASE, client_reader={"count": 1, "host": "hs1"}), hosts=hosts)
    new = planned(dict(BASE, client_reader={"count": 1, "host": "hs2"}), hosts=hosts)
    result = restart_plan(old, new)
    assert result["added"] == result["removed"] == ["client_reader1"]
    assert result["steps"] == [{"action": "stop", "units": ["client_reader1"], "rolling": False},
                               {"action": "start", "units": ["client_reader1"], "rolling": False}]


def test_files_changed_outside_the_plan():
    plan = planned(BASE)
    shared = restart_plan(plan, plan, {"shared": ["hs1:/etc/matrix-synapse/homeserver.yaml"]})["steps"]
    assert shared[0] == {"action": "restart", "units": ["main"], "rolling": False}
    assert sorted(shared[1]["units"]) == sorted(w["name"] for w in plan["workers"])
    main_only = restart_plan(plan, plan, {"main": ["/etc/matrix-synapse/log/main.yaml"]})["steps"]
    assert main_only == [{"action": "restart", "units": ["main"], "rolling": False}]
    own = restart_plan(plan, plan, {"workers": {"synchrotron2": ["/etc/matrix-synapse/log/synchrotron2.yaml"]}})
    assert own["steps"] == [{"action": "restart", "units": ["synchrotron2"], "rolling": True}]


def test_c17_event_persisters_changed_restarts_everything_in_order():
    old = planned(dict(BASE, event_persister=2, federation_sender=2))
    new = planned(dict(BASE, event_persister=3, federation_sender=3))
    steps = restart_plan(old, new)["steps"]
    assert steps[0] == {"action": "stop", "units": ["event_persister1", "event_persister2"], "rolling": False}
    assert steps[1] == {"action": "start", "units": ["event_persister1", "event_persister2", "event_persister3"],
                        "rolling": False}
    assert steps[2] == {"action": "stop", "units": ["federation_sender1", "federation_sender2"], "rolling": False}
    assert steps[3]["action"] == "start" and steps[3]["units"] == [
        "federation_sender1", "federation_sender2", "federation_sender3"]
    assert steps[4] == {"action": "restart", "units": ["main"], "rolling": False}
    others = steps[5]["units"]
    assert steps[5]["action"] == "restart" and "synchrotron1" in others and "pusher1" in others
    assert not set(others) & {"event_persister1", "federation_sender1"}
    assert len(steps) == 6


def test_federation_senders_changed_stop_all_then_start():
    result = restart_plan(_with(federation_sender=2), _with(federation_sender=1))
    assert result["steps"] == [
        {"action": "stop", "units": ["federation_sender1", "federation_sender2"], "rolling": False},
        {"action": "start", "units": ["federation_sender1"], "rolling": False},
    ]
    assert "main" not in [u for s in result["steps"] for u in s["units"]]


def test_removing_the_last_federation_sender_hands_sending_back_to_main():
    # No federation_sender_instances means main sends (Synapse's default is ["master"]).
    result = restart_plan(_with(federation_sender=1), _with(federation_sender=None))
    assert result["steps"] == [
        {"action": "stop", "units": ["federation_sender1"], "rolling": False},
        {"action": "restart", "units": ["main"], "rolling": False},
    ]
    assert any("restart main, which sends federation again" in r for r in result["reasons"])
    assert not any("then start" in r for r in result["reasons"])


def test_the_first_federation_sender_starts_after_main_stopped_sending():
    result = restart_plan(_with(federation_sender=None), _with(federation_sender=2))
    assert result["steps"] == [
        {"action": "restart", "units": ["main"], "rolling": False},
        {"action": "start", "units": ["federation_sender1", "federation_sender2"], "rolling": False},
    ]
    assert any("restart main, which stops sending federation" in r for r in result["reasons"])


def test_main_restarts_once_when_senders_and_other_shared_settings_change():
    old, new = _with(federation_sender=None), _with(federation_sender=1, event_persister=3)
    steps = restart_plan(old, new)["steps"]
    mains = [i for i, s in enumerate(steps) if "main" in s["units"]]
    assert len(mains) == 1
    # main restarts after the event writers started and before the new sender starts
    persisters_start = next(i for i, s in enumerate(steps) if s["action"] == "start" and "event_persister3" in s["units"])
    sender_start = next(i for i, s in enumerate(steps) if "federation_sender1" in s["units"])
    assert persisters_start < mains[0] < sender_start


def test_pushers_changed_restart_main_and_pushers():
    result = restart_plan(_with(pusher=1), _with(pusher=2))
    assert result["steps"] == [
        {"action": "restart", "units": ["main"], "rolling": False},
        {"action": "restart", "units": ["pusher1"], "rolling": False},
        {"action": "start", "units": ["pusher2"], "rolling": False},
    ]


def test_duty_moved_restarts_main():
    result = restart_plan(_with(background=None), _with(background=1))
    assert result["steps"][0] == {"action": "restart", "units": ["main"], "rolling": False}
    assert result["steps"][-1] == {"action": "start", "units": ["background1"], "rolling": False}
    assert any("run_background_tasks_on" in r for r in result["reasons"])


def test_pure_http_pool_change_touches_only_that_pool():
    result = restart_plan(_with(synchrotron=2), _with(synchrotron=4))
    assert result["steps"] == [{"action": "start", "units": ["synchrotron3", "synchrotron4"], "rolling": False}]
    down = restart_plan(_with(synchrotron=4), _with(synchrotron=2))
    assert down["steps"] == [{"action": "stop", "units": ["synchrotron3", "synchrotron4"], "rolling": False}]
    assert down["removed"] == ["synchrotron3", "synchrotron4"]


def test_own_config_change_is_rolling():
    old = planned(dict(BASE, client_reader={"count": 2}))
    new = planned(dict(BASE, client_reader={"count": 2, "config": {"event_cache_size": "20K"}}))
    result = restart_plan(old, new)
    assert result["steps"] == [{"action": "restart", "units": ["client_reader1", "client_reader2"], "rolling": True}]


def test_shared_setting_change_restarts_everything_main_first():
    old = planned(BASE)
    new = planned(BASE, database={"cp_max": 15})
    steps = restart_plan(old, new)["steps"]
    assert steps[0] == {"action": "restart", "units": ["main"], "rolling": False}
    assert sorted(steps[1]["units"]) == sorted(w["name"] for w in new["workers"])


def test_other_stream_writers_changed_restart_everything():
    old = planned(dict(BASE, device_lists=1))
    new = planned(dict(BASE, device_lists=2))
    steps = restart_plan(old, new)["steps"]
    assert steps[0] == {"action": "stop", "units": ["device_lists1"], "rolling": False}
    assert steps[1] == {"action": "start", "units": ["device_lists1", "device_lists2"], "rolling": False}
    assert steps[2]["units"] == ["main"]
