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
    assert [s["action"] for s in result["steps"]] == ["stop", "stop", "switch_venv", "start", "start"]
    assert result["steps"][2]["hosts"] == ["hs1"] and result["steps"][2]["processes"] == []
    assert "Upgrade: Synapse 1.162.0 -> " + new["synapse_version"] in result["preview"]
    assert "  3. switch_venv                              the release's virtualenv on hs1" in result["preview"]
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


# Staging: the roles write Synapse's files under CONF/.staged first; they count at the path they
# are installed to, and only those that differ from the installed file are installed.
STAGED = CONF + "/.staged"


UNITS = "/etc/systemd/system"


def _staged(files):
    """The same files as ``_files`` gives, as the roles stage them (systemd's under systemd/)."""
    staged = dict((STAGED + path[len(CONF):], checksum) for path, checksum in files.items() if path.startswith(CONF + "/"))
    staged.update((STAGED + "/systemd" + path[len(UNITS):], checksum) for path, checksum in files.items()
                  if path.startswith(UNITS + "/"))
    return staged


def test_staged_copies_of_the_installed_files_install_nothing_and_restart_nothing():
    plan, record = _converged()
    files = _files(plan)["hs1"]
    result = changes(record, plan, {"hs1": dict(files, **_staged(files))})
    assert result["install"] == {} and result["steps"] == []
    assert result["record"] == record  # staged paths never enter the record


def test_a_staged_change_counts_as_if_installed_and_is_listed_for_install():
    plan, record = _converged()
    files = _files(plan)["hs1"]
    staged = _staged(files)
    staged[STAGED + "/log/client_reader1.yaml"] = "edited"
    result = changes(record, plan, {"hs1": dict(files, **staged)})
    assert result["install"] == {"hs1": [{"src": STAGED + "/log/client_reader1.yaml",
                                          "dest": CONF + "/log/client_reader1.yaml"}]}
    assert result["reconfigured"] == ["client_reader1"]
    assert result["record"]["files"]["hs1"][CONF + "/log/client_reader1.yaml"] == "edited"
    assert not [p for p in result["record"]["files"]["hs1"] if p.startswith(STAGED)]


def test_a_refused_run_leaves_the_record_so_the_fixed_run_restarts_and_the_reverted_run_does_not():
    plan, record = _converged()
    files = _files(plan)["hs1"]
    refused = dict(_staged(files), **{STAGED + "/homeserver.yaml": "refused"})
    # The refused run stopped at the gate: nothing installed, no new record. Fixed input:
    fixed = changes(record, plan, {"hs1": dict(files, **dict(refused, **{STAGED + "/homeserver.yaml": "fixed"}))})
    assert [i["dest"] for i in fixed["install"]["hs1"]] == [CONF + "/homeserver.yaml"]
    assert fixed["steps"] and fixed["touched"]["shared"] == ["hs1:" + CONF + "/homeserver.yaml"]
    # Input put back as it was: the staged file equals the installed one again.
    reverted = changes(record, plan, {"hs1": dict(files, **_staged(files))})
    assert reverted["install"] == {} and reverted["steps"] == []


def test_new_workers_files_are_installed_and_stale_staged_files_are_not():
    plan, record = _converged()
    bigger = planned(dict(BASE, synchrotron=3))
    files = _files(plan)["hs1"]
    staged = _staged(_files(bigger)["hs1"])
    staged[STAGED + "/workers/federation_sender1.yaml"] = "left by a refused run"
    staged[STAGED + "/log/federation_sender1.yaml"] = "left by a refused run"
    result = changes(record, bigger, {"hs1": dict(files, **staged)})
    assert sorted(i["dest"] for i in result["install"]["hs1"]) == [
        CONF + "/log/synchrotron3.yaml", CONF + "/workers/synchrotron3.yaml"]
    assert CONF + "/workers/federation_sender1.yaml" not in result["record"]["files"]["hs1"]
    assert result["added"] == ["synchrotron3"] and [s["action"] for s in result["steps"]] == ["start"]


def test_main_files_staged_on_a_worker_host_are_not_installed_there():
    plan = planned({"synchrotron": {"count": 1, "host": "hs2"}},
                   hosts={"hs1": {"address": "10.0.0.10"}, "hs2": {"address": "10.0.0.11"}})
    found = {"hs2": {STAGED + "/homeserver.yaml": "h1", STAGED + "/log/main.yaml": "l-main",
                     STAGED + "/workers/synchrotron1.yaml": "w", STAGED + "/log/synchrotron1.yaml": "l"}}
    result = changes(None, plan, found)
    assert sorted(i["dest"] for i in result["install"]["hs2"]) == [
        CONF + "/homeserver.yaml", CONF + "/log/synchrotron1.yaml", CONF + "/workers/synchrotron1.yaml"]


def test_staging_dir_can_be_set():
    plan, record = _converged()
    files = _files(plan)["hs1"]
    elsewhere = dict(("/srv/stage" + p[len(STAGED):], c) for p, c in _staged(files).items())
    elsewhere["/srv/stage/homeserver.yaml"] = "new"
    result = changes(record, plan, {"hs1": dict(files, **elsewhere)}, CONF, "/srv/stage/")
    assert result["install"] == {"hs1": [{"src": "/srv/stage/homeserver.yaml", "dest": CONF + "/homeserver.yaml"}]}


VENV = "/opt/matrix-synapse/venv-" + planned(BASE)["synapse_version"]


def test_processes_already_on_the_release_venv_switch_nothing():
    plan, record = _converged()
    result = changes(record, plan, _files(plan), venv={"release": VENV, "current": {"hs1": VENV}})
    assert result["steps"] == []


def test_a_venv_directory_of_its_own_or_another_release_is_switched_on_every_host():
    hosts = {"hs1": {"address": "10.0.0.10"}, "hs2": {"address": "10.0.0.11"}}
    plan = planned(dict(BASE, client_reader={"count": 1, "host": "hs2"}), hosts=hosts)
    record = changes(None, plan, {})["record"]
    for current in ({"hs1": VENV, "hs2": ""}, {"hs1": "/opt/matrix-synapse/venv-1.0.0", "hs2": VENV}):
        result = changes(record, plan, {}, venv={"release": VENV, "current": current})
        switch = [s for s in result["steps"] if s["action"] == "switch_venv"]
        assert len(switch) == 1 and switch[0]["hosts"] == ["hs1", "hs2"], current
        assert "not %s on" % VENV in result["reasons"][0]
    # absent (a host never deployed gets the link from synapse_common) or a host without processes
    result = changes(record, plan, {}, venv={"release": VENV, "current": {"hs1": None, "elsewhere": ""}})
    assert result["steps"] == []


DIGEST = CONF + "/homeserver.yaml#outside-plan"


def test_a_pusher_change_rewrites_homeserver_yaml_but_restarts_only_main_and_pushers():
    old = planned(dict(BASE, pusher=1))
    record = changes(None, old, _files(old, **{DIGEST: "d1"}))["record"]
    new = planned(dict(BASE, pusher=2))
    result = changes(record, new, _files(new, **{CONF + "/homeserver.yaml": "h2", DIGEST: "d1"}))
    assert result["touched"]["shared"] == []
    assert [(s["action"], [p["name"] for p in s["processes"]]) for s in result["steps"]] == [
        ("restart", ["main"]), ("restart", ["pusher1"]), ("start", ["pusher2"])]


def test_a_setting_from_outside_the_plan_restarts_every_process():
    plan = planned(BASE)
    record = changes(None, plan, _files(plan, **{DIGEST: "d1"}))["record"]
    for digest in ("d2", None):  # changed, or unknown (a record without a digest)
        files = _files(plan, **{CONF + "/homeserver.yaml": "h2"})
        if digest:
            files["hs1"][DIGEST] = digest
        old_record = record if digest else dict(record, files={"hs1": dict(
            (p, c) for p, c in record["files"]["hs1"].items() if p != DIGEST)})
        result = changes(old_record, plan, files)
        assert result["touched"]["shared"] == ["hs1:" + CONF + "/homeserver.yaml"], digest
        assert result["steps"][0]["processes"][0]["name"] == "main"


def test_files_of_removed_workers_stay_out_of_the_record():
    plan, record = _converged()
    smaller = planned(dict(BASE, synchrotron=1))
    # the removed worker's files are still installed when the run takes stock (cleanup is later)
    result = changes(record, smaller, _files(plan))
    assert result["removed"] == ["synchrotron2"]
    assert not [p for p in result["record"]["files"]["hs1"] if "synchrotron2" in p]
    # so the next run, after cleanup removed them, finds what it recorded
    again = changes(result["record"], smaller, _files(smaller))
    assert again["steps"] == [] and again["record"] == result["record"]


def test_a_raise_of_max_connections_is_previewed_and_kept_out_of_the_record():
    """The preview says PostgreSQL restarts and why; the record holds the plan, not what the
    server ran with, so the run after the raise finds the record unchanged."""
    plan, record = _converged(database={"cp_max": 10, "running_max_connections": 100})
    assert "PostgreSQL" not in "\n".join(changes(record, plan, _files(plan))["preview"])
    bigger_workers = dict(BASE, synchrotron=9)  # 13 processes * 10 + 20 = 150 > 100
    bigger = planned(bigger_workers, database={"cp_max": 10, "running_max_connections": 100})
    result = changes(record, bigger, _files(bigger))
    assert ("PostgreSQL restarts once Synapse accepted the configuration: max_connections 100 -> 250 "
            "(150 needed); every Synapse process reconnects") in result["preview"]
    after = planned(bigger_workers, database={"cp_max": 10, "running_max_connections": 250})
    again = changes(result["record"], after, _files(after))
    assert again["record"] == result["record"] and again["steps"] == []
    assert "PostgreSQL" not in "\n".join(again["preview"])


def test_units_and_drop_ins_are_staged_too_and_installed_to_systemds_directory():
    """A new worker's drop-in and a changed unit template wait in the staging directory's
    systemd/ like the configuration; a stale worker's drop-in is never installed."""
    plan, record = _converged()
    bigger = planned(dict(BASE, synchrotron=3))
    files = _files(plan)["hs1"]
    staged = _staged(_files(bigger, **{
        UNITS + "/matrix-synapse-worker@.service": "u-worker-new",
        UNITS + "/matrix-synapse-worker@synchrotron3.service.d/50-limits.conf": "limits"})["hs1"])
    staged[STAGED + "/systemd/matrix-synapse-worker@federation_sender1.service.d/50-limits.conf"] = "stale"
    result = changes(record, bigger, {"hs1": dict(files, **staged)})
    assert sorted((i["src"], i["dest"]) for i in result["install"]["hs1"]) == [
        (STAGED + "/log/synchrotron3.yaml", CONF + "/log/synchrotron3.yaml"),
        (STAGED + "/systemd/matrix-synapse-worker@.service", UNITS + "/matrix-synapse-worker@.service"),
        (STAGED + "/systemd/matrix-synapse-worker@synchrotron3.service.d/50-limits.conf",
         UNITS + "/matrix-synapse-worker@synchrotron3.service.d/50-limits.conf"),
        (STAGED + "/workers/synchrotron3.yaml", CONF + "/workers/synchrotron3.yaml")]
    # The unit template every worker runs from changed: every worker restarts with it.
    assert "hs1:" + UNITS + "/matrix-synapse-worker@.service" in result["touched"]["shared"]
    assert not [p for p in result["record"]["files"]["hs1"] if "federation_sender1" in p or p.startswith(STAGED)]
