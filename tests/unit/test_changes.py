"""What applying a plan changes on the hosts: steps with hosts and units, the preview table,
the record, the file checksums and the topology picture (module_utils/changes.py)."""
from ansible_collections.matrixops.synapse.plugins.module_utils.changes import changes
from ansible_collections.matrixops.synapse.plugins.module_utils.restarts import process_of_file, touched_from_files
from helpers import planned

BASE = {"synchrotron": 2, "client_reader": 1, "event_persister": 1, "pusher": 1}
CONF = "/etc/matrix-synapse"


def _files(plan, **overrides):
    """Checksums of the files the roles write for ``plan`` on its one host, hs1."""
    files = {CONF + "/homeserver.yaml": "h1", CONF + "/log/main.yaml": "l-main",
             "/etc/systemd/system/matrix-synapse.service": "u-main",
             "/etc/systemd/system/matrix-synapse-worker@.service": "u-worker"}
    for w in plan["workers"]:
        files[CONF + "/workers/%s.yaml" % w["name"]] = "w-" + w["name"]
        files[CONF + "/log/%s.yaml" % w["name"]] = "l-" + w["name"]
    files.update(overrides)
    return {"hs1": files}


def _converged(workers=None, **kwargs):
    plan = planned(workers if workers is not None else BASE, **kwargs)
    return plan, changes(None, plan, _files(plan))["record"]


def test_nothing_changed_nothing_happens():
    plan, record = _converged()
    result = changes(record, plan, _files(plan))
    assert result["steps"] == [] and result["changed"] is False
    assert result["preview"][-1] == "No Synapse process starts, stops or restarts."
    assert result["record"] == record  # a converged run rewrites the same record


def test_no_record_restarts_everything_main_first_with_hosts_and_units():
    plan = planned(BASE)
    result = changes(None, plan, _files(plan))
    first, second = result["steps"]
    assert first["processes"] == [{"name": "main", "host": "hs1", "unit": "matrix-synapse.service",
                                   "health_url": "http://10.0.0.10:8008/health", "backends": []}]
    assert first["action"] == "restart" and first["hosts"] == ["hs1"]
    assert [p["unit"] for p in second["processes"]][:2] == [
        "matrix-synapse-worker@client_reader1.service", "matrix-synapse-worker@event_persister1.service"]
    assert "No deployed plan is recorded" in "\n".join(result["preview"])


def test_scale_up_preview_lists_added_instances_and_steps():
    plan, record = _converged()
    bigger = planned(dict(BASE, synchrotron=3))
    result = changes(record, bigger, _files(bigger))
    assert result["added"] == ["synchrotron3"]
    assert [s["action"] for s in result["steps"]] == ["start"]
    text = "\n".join(result["preview"])
    assert "  + synchrotron3" in text and "1. start" in text and "workers added" in text


def test_log_config_change_is_a_rolling_restart_drained_in_its_backends():
    plan, record = _converged()
    files = _files(plan, **{CONF + "/log/client_reader1.yaml": "edited"})
    (step,) = changes(record, plan, files)["steps"]
    assert step["rolling"] is True and [p["name"] for p in step["processes"]] == ["client_reader1"]
    backends = step["processes"][0]["backends"]
    assert "room_messages" in backends and "client_read" in backends and "sync" not in backends


def test_shared_file_change_restarts_everything_main_first():
    plan, record = _converged()
    for path in (CONF + "/homeserver.yaml", CONF + "/secrets/worker_replication_secret",
                 "/etc/systemd/system/matrix-synapse-worker@.service"):
        result = changes(record, plan, _files(plan, **{path: "new"}))
        assert [p["name"] for p in result["steps"][0]["processes"]] == ["main"], path
        assert len(result["steps"][1]["processes"]) == len(plan["workers"]), path
        assert result["touched"]["shared"] == ["hs1:" + path]


def test_a_failed_run_leaves_the_old_record_so_the_next_run_still_restarts():
    plan, record = _converged()
    edited = _files(plan, **{CONF + "/homeserver.yaml": "new"})
    first = changes(record, plan, edited)
    assert first["steps"]
    # The run failed before writing first["record"]: the next run compares with the old one.
    again = changes(record, plan, edited)
    assert again["steps"] == first["steps"]
    # Once recorded, nothing is left to do.
    assert changes(first["record"], plan, edited)["steps"] == []


def test_upgrade_preview_and_record_version():
    plan, record = _converged(synapse_version="1.162.0")
    new = planned(BASE)
    result = changes(record, new, _files(new))
    assert result["upgrade"] == {"from": "1.162.0", "to": new["synapse_version"]}
    assert [s["action"] for s in result["steps"]] == ["stop", "restart", "start"]
    assert "Upgrade: Synapse 1.162.0 -> " + new["synapse_version"] in result["preview"]
    assert result["record"]["synapse_version"] == new["synapse_version"]


def test_moved_worker_stops_on_its_old_host_and_starts_on_the_new_one():
    hosts = {"hs1": {"address": "10.0.0.10"}, "hs2": {"address": "10.0.0.11"}}
    old = planned(dict(BASE, client_reader={"count": 1, "host": "hs1"}), hosts=hosts)
    new = planned(dict(BASE, client_reader={"count": 1, "host": "hs2"}), hosts=hosts)
    record = changes(None, old, {"hs1": {}})["record"]
    stop, start = changes(record, new, {"hs1": {}, "hs2": {}})["steps"]
    assert (stop["action"], stop["hosts"]) == ("stop", ["hs1"])
    assert (start["action"], start["hosts"]) == ("start", ["hs2"])
    assert start["processes"][0]["health_url"].startswith("http://10.0.0.11:")


def test_process_of_file():
    assert process_of_file(CONF + "/workers/synchrotron1.yaml", CONF) == "synchrotron1"
    assert process_of_file(CONF + "/log/main.yaml", CONF + "/") == "main"
    assert process_of_file("/etc/systemd/system/matrix-synapse.service", CONF) == "main"
    assert process_of_file("/etc/systemd/system/matrix-synapse-worker@pusher1.service.d/50-limits.conf",
                           CONF) == "pusher1"
    for shared in (CONF + "/homeserver.yaml", CONF + "/secrets/form_secret", CONF + "/signing.key",
                   "/etc/systemd/system/matrix-synapse-worker@.service", "/etc/systemd/system/matrix-synapse.target"):
        assert process_of_file(shared, CONF) is None, shared


def test_files_of_new_and_removed_workers_say_nothing():
    plan = planned(BASE)
    before = {"hs1": {CONF + "/log/gone1.yaml": "x"}}
    now = {"hs1": {CONF + "/log/synchrotron1.yaml": "new worker"}}
    assert touched_from_files(before, now, CONF, plan) == {"shared": [], "main": [], "workers": {}}


def test_mermaid_shows_hosts_processes_streams_and_routes():
    text = changes(None, planned(BASE), {})["mermaid"]
    assert text.startswith("flowchart LR\n")
    assert 'subgraph host_hs1["hs1"]' in text
    assert 'event_persister1["event_persister1<br/>writes: events"]' in text
    assert "proxy -- sync --> synchrotron2" in text
    assert "proxy -- other --> main" in text


def test_preview_says_which_layout_and_why():
    """The check-mode table names the layout auto chose and the reason, not only the steps."""
    plan = planned({}, profile="auto", sizing={"cores": 2, "memory_mb": 4096})
    text = "\n".join(changes(None, plan, _files(plan))["preview"])
    assert "Layout: main + 1 worker(s)" in text and "profile small (chosen by auto)" in text
    assert "  why: " in text
    assert "pool " not in text  # per-process tuning stays in the planning step's output
