# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes a change between two plans must restart, and in which order.

Pure logic over two results of ``planner.plan``: the plan deployed now (``old``, None on a
fresh host) and the plan about to be applied (``new``). Synapse's rules (docs/workers.md):

- the set of writers of a stream changes (events sharded by room, the other multi-writer
  streams by their id generators): every process must restart, the writers of the changed
  streams stopped together first, then started, then main, then every other worker;
- ``federation_sender_instances`` changes: stop every federation sender together, then start;
  when the list is or becomes unset (main sends), main restarts between the two;
- ``pusher_instances`` changes: restart main and every pusher;
- a single-instance duty moves (user directory, appservices, background tasks, media jobs):
  restart main and the old and new holders;
- any other change of the shared config: restart every process, main first;
- a worker's own config changes: restart that worker alone, one at a time (rolling);
- new workers start, removed workers stop; nothing else is disturbed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import MAIN, MAIN_WRITER

LIST_DUTIES = ("federation_sender_instances", "pusher_instances")
SINGLE_DUTIES = ("update_user_directory_from_worker", "notify_appservices_from_worker",
                 "run_background_tasks_on", "media_instance_running_background_jobs")
# Key suffix of the digest of homeserver.yaml's settings from outside the plan (see
# touched_from_files).
BASE_DIGEST_SUFFIX = "#outside-plan"
# Shared keys whose change is handled by a specific rule above.
_RULED = ("stream_writers", "instance_map") + LIST_DUTIES + SINGLE_DUTIES


def _workers(plan):
    return dict((w["name"], w) for w in (plan or {}).get("workers", []))


def _duty(shared, key):
    """Who performs a list duty: the list given, or main (Synapse's "master") when unset."""
    value = shared.get(key)
    return [MAIN_WRITER] if value is None else _names(value)


def _names(value):
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def restart_plan(old, new, touched=None, switch_venv=None):
    """Return ``{"added", "removed", "reconfigured", "reasons", "steps", "upgrade"}``.

    ``steps`` is an ordered list of ``{"action": "stop"|"start"|"restart"|"switch_venv",
    "units": [...], "rolling": bool}``; an empty list means nothing restarts. ``switch_venv``
    (no units) points the processes' virtualenv at the plan's release while nothing runs.

    ``touched`` says which files on the hosts changed outside the plan (see
    ``touched_from_files``): ``{"shared": [paths], "main": [paths], "workers": {name: [paths]}}``.
    ``switch_venv``: why the virtualenv the processes run from is not the plan's release even
    though the version is unchanged (None when it is); handled like an upgrade.
    """
    touched = touched or {}
    new_workers = _workers(new)
    old_workers = _workers(old)
    # A worker moved to another host is a new instance there and a removed one where it was.
    moved = sorted(n for n in set(new_workers) & set(old_workers)
                   if new_workers[n].get("host") != old_workers[n].get("host"))
    added = sorted(set(new_workers) - set(old_workers) | set(moved))
    removed = sorted(set(old_workers) - set(new_workers) | set(moved))
    kept = sorted(set(new_workers) & set(old_workers) - set(moved))
    reconfigured = [n for n in kept if new_workers[n]["config"] != old_workers[n]["config"]
                    or new_workers[n].get("systemd") != old_workers[n].get("systemd")
                    or n in touched.get("workers", {})]
    result = {"added": added, "removed": removed, "reconfigured": reconfigured, "reasons": [], "steps": [],
              "upgrade": None}
    if old is None and switch_venv:
        # Stop whatever of the plan may already run before its virtualenv changes under it.
        old, old_workers = new, new_workers
        result["added"], result["removed"], result["reconfigured"] = sorted(new_workers), [], []
    if old is None:
        # Processes may already run (a host deployed before the plan was recorded): restart,
        # which starts what is stopped and reloads what runs.
        result["reasons"].append("no deployed plan recorded: (re)start everything, main first")
        result["steps"] = [s for s in [_step("restart", [MAIN]), _step("restart", sorted(new_workers))]
                           if s["units"]]
        return result
    upgrade = old.get("synapse_version") != new.get("synapse_version")
    if upgrade or switch_venv:
        # Workers must never run schema migrations: main upgrades the database alone. Each
        # release has its own virtualenv, installed while the old one still runs; the processes
        # move to it while none of them runs.
        if upgrade:
            result["upgrade"] = {"from": old.get("synapse_version"), "to": new.get("synapse_version")}
            result["reasons"].append("Synapse %s -> %s: stop every worker, then main, switch to the new release's "
                                     "virtualenv, start main and wait until it is healthy (schema migrations), "
                                     "then start the workers" % (old.get("synapse_version"), new.get("synapse_version")))
        else:
            result["reasons"].append("%s: stop every worker, then main, switch to the release's virtualenv, "
                                     "start main, then the workers" % switch_venv)
        result["steps"] = [s for s in [_step("stop", sorted(old_workers)), _step("stop", [MAIN]),
                                       _step("switch_venv", []), _step("start", [MAIN]),
                                       _step("start", sorted(new_workers))] if s["units"] or s["action"] == "switch_venv"]
        return result

    old_shared = old.get("shared_config", {})
    new_shared = new.get("shared_config", {})
    steps = []
    full = False       # every process restarts
    main = False       # main restarts
    restart = set()    # kept workers to restart together (not rolling)

    old_writers = old_shared.get("stream_writers", {})
    new_writers = new_shared.get("stream_writers", {})
    changed_streams = sorted(s for s in set(old_writers) | set(new_writers)
                             if old_writers.get(s) != new_writers.get(s))
    if changed_streams:
        full = True
        writers = set()
        for stream in changed_streams:
            writers |= set(old_writers.get(stream, [])) | set(new_writers.get(stream, []))
        writers.discard("master")
        result["reasons"].append("writers of %s changed: stop those writers together, start them, then "
                                 "restart main and every other worker" % ", ".join(changed_streams))
        stopping = sorted(w for w in writers if w in old_workers)
        starting = sorted(w for w in writers if w in new_workers)
        if stopping:
            steps.append(_step("stop", stopping))
        if starting:
            steps.append(_step("start", starting))
        handled = set(stopping) | set(starting)
    else:
        handled = set()

    # Unset, the duty is main's (Synapse reads a missing list as ["master"]): going from no
    # sender worker to one, or back, moves federation sending to or from main, which only
    # takes it up or gives it up when it restarts, between the old senders' stop and the new
    # senders' start, so that two processes never send at once.
    senders_old = _duty(old_shared, "federation_sender_instances")
    senders_new = _duty(new_shared, "federation_sender_instances")
    main_done = False
    if senders_old != senders_new:
        stopping = sorted(n for n in senders_old if n not in handled and n != MAIN_WRITER)
        starting = sorted(n for n in senders_new if n not in handled and n != MAIN_WRITER)
        main_done = MAIN_WRITER in senders_old or MAIN_WRITER in senders_new
        if stopping:
            steps.append(_step("stop", stopping))
        if main_done:
            steps.append(_step("restart", [MAIN]))
        if starting:
            steps.append(_step("start", starting))
        handled |= set(stopping) | set(starting)
        if not starting:
            how = "stop every federation sender worker, then restart main, which sends federation again"
        elif main_done and MAIN_WRITER in senders_old:
            how = "restart main, which stops sending federation, then start the federation senders"
        else:
            how = "stop every federation sender together, then start the new set"
        result["reasons"].append("federation_sender_instances changed: " + how)

    pushers_old = _duty(old_shared, "pusher_instances")
    pushers_new = _duty(new_shared, "pusher_instances")
    if pushers_old != pushers_new:
        main = True
        restart |= set(n for n in pushers_old + pushers_new if n in new_workers and n in old_workers)
        result["reasons"].append("pusher_instances changed: restart main and every pusher")

    for key in SINGLE_DUTIES:
        if old_shared.get(key) != new_shared.get(key):
            main = True
            restart |= set(n for n in _names(old_shared.get(key)) + _names(new_shared.get(key))
                           if n in new_workers and n in old_workers)
            result["reasons"].append("%s moved: restart main and its old and new holder" % key)

    rest_old = dict((k, v) for k, v in old_shared.items() if k not in _RULED)
    rest_new = dict((k, v) for k, v in new_shared.items() if k not in _RULED)
    if rest_old != rest_new:
        full = True
        keys = sorted(k for k in set(rest_old) | set(rest_new) if rest_old.get(k) != rest_new.get(k))
        result["reasons"].append("shared settings changed (%s): restart every process, main first"
                                 % ", ".join(keys))
    if touched.get("shared"):
        full = True
        result["reasons"].append("files every process reads changed (%s): restart every process, main first"
                                 % ", ".join(sorted(touched["shared"])))
    if touched.get("main") and not full:
        main = True
        result["reasons"].append("main's own files changed (%s): restart main" % ", ".join(sorted(touched["main"])))

    # Removed workers stop before anything else happens to the rest.
    if removed:
        steps.insert(0, _step("stop", sorted(n for n in removed if n not in handled)))
        handled |= set(removed) - set(added)  # a moved worker still starts on its new host
        result["reasons"].append("workers removed: stop %s" % ", ".join(removed))

    if full:
        if not main_done:
            steps.append(_step("restart", [MAIN]))
        others = sorted(n for n in new_workers if n not in handled and n not in added)
        if others:
            steps.append(_step("restart", others))
        handled |= set(others)
    elif main and not main_done:
        steps.append(_step("restart", [MAIN]))
    together = sorted(n for n in restart if n not in handled)
    if together:
        steps.append(_step("restart", together))
        handled |= set(together)
    rolling = [n for n in reconfigured if n not in handled]
    if rolling:
        steps.append(_step("restart", rolling, rolling=True))
        result["reasons"].append("own config of %s changed: restart each alone, one at a time"
                                 % ", ".join(rolling))
        handled |= set(rolling)
    fresh = [n for n in added if n not in handled]
    if fresh:
        steps.append(_step("start", fresh))
        result["reasons"].append("workers added: start %s" % ", ".join(fresh))
    result["steps"] = [s for s in steps if s["units"]]
    return result


def touched_from_files(before, now, config_dir, new_plan):
    """Which processes files changed for, outside what the plan itself says.

    ``homeserver.yaml`` holds the plan's shared config and settings from outside the plan
    (server name, registration, extra config, secret paths). A digest of the latter comes with
    the files as ``homeserver.yaml`` + ``BASE_DIGEST_SUFFIX``: when it is unchanged, a change
    of the file is the plan's, and the plan's rules decide (a pusher change restarts main and
    the pushers, not every process).

    ``before`` and ``now`` map each host to ``{path: checksum}`` of the Synapse files on it
    (``before`` as recorded with the deployed plan). Files of workers the new plan does not
    run, or that are new with a new worker, say nothing: those workers stop or start anyway.
    """
    workers = dict((w["name"], w["host"]) for w in new_plan.get("workers", []))
    main_host = new_plan.get("main", {}).get("host")
    shared_file = config_dir.rstrip("/") + "/homeserver.yaml"
    result = {"shared": [], "main": [], "workers": {}}
    for host in sorted(set(before or {}) | set(now or {})):
        old_files = (before or {}).get(host, {})
        new_files = (now or {}).get(host, {})
        for path in sorted(set(old_files) | set(new_files)):
            if path == shared_file + BASE_DIGEST_SUFFIX or old_files.get(path) == new_files.get(path):
                continue
            if path == shared_file and old_files.get(path) is not None and \
                    old_files.get(path + BASE_DIGEST_SUFFIX) is not None and \
                    old_files.get(path + BASE_DIGEST_SUFFIX) == new_files.get(path + BASE_DIGEST_SUFFIX):
                # Only the plan's part of the shared file changed: the plan's own rules
                # (writers, duties, other shared keys) say what restarts.
                continue
            owner = process_of_file(path, config_dir)
            if owner is None:
                result["shared"].append("%s:%s" % (host, path))
            elif owner == MAIN:
                if host == main_host:
                    result["main"].append(path)
            elif workers.get(owner) == host and path in old_files:
                result["workers"].setdefault(owner, []).append(path)
    return result


# Where the units and drop-ins of the Synapse processes are installed.
SYSTEMD_DIR = "/etc/systemd/system"


def process_of_file(path, config_dir):
    """The one process a Synapse file belongs to (``main`` or a worker's name), or None for
    files every process on the host reads (shared config, secrets, signing key, the worker
    unit template)."""
    config_dir = config_dir.rstrip("/")
    for prefix, suffix in ((config_dir + "/workers/", ".yaml"), (config_dir + "/log/", ".yaml")):
        if path.startswith(prefix) and path.endswith(suffix) and "/" not in path[len(prefix):]:
            return path[len(prefix):-len(suffix)]
    unit_dir = SYSTEMD_DIR + "/"
    if path == unit_dir + "matrix-synapse.service" or path.startswith(unit_dir + "matrix-synapse.service.d/"):
        return MAIN
    prefix = unit_dir + "matrix-synapse-worker@"
    if path.startswith(prefix) and ".service.d/" in path:
        return path[len(prefix):path.index(".service.d/")]
    return None


def _step(action, units, rolling=False):
    return {"action": action, "units": list(units), "rolling": rolling}
