# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What applying a plan changes on the hosts: the ordered restart steps with the host, unit
and health URL of every process, the preview table operators read in check mode, the record
of the deployment written next to the plan, and a Mermaid picture of the topology.

Pure logic, no I/O: the inputs are the record of the last successful deployment (or None),
the new plan and the checksums of the Synapse files on each host now, the staged ones included
(the roles write Synapse's files to a staging directory first; they are installed only once
Synapse's parser accepted them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import MAIN
from ansible_collections.matrixops.synapse.plugins.module_utils.restarts import (
    SYSTEMD_DIR, process_of_file, restart_plan, touched_from_files,
)

RECORD_FORMAT = 1
# The staging directory's subdirectory for systemd units and drop-ins (laid out as SYSTEMD_DIR).
STAGED_UNITS = "/systemd"


def _process_index(plan):
    """name -> {name, host, unit, health_url} for main and every worker of ``plan``."""
    index = {}
    if not plan:
        return index
    main = plan["main"]
    index[MAIN] = {"name": MAIN, "host": main["host"], "unit": "matrix-synapse.service",
                   "health_url": main["health_url"]}
    for w in plan.get("workers", []):
        index[w["name"]] = {"name": w["name"], "host": w["host"], "unit": w["unit"], "health_url": w["health_url"]}
    return index


def _backends(plan):
    """worker name -> the proxy backends (route groups) it serves in."""
    result = {}
    for route in plan.get("routes", {}).get("routes", []):
        for server in route["servers"]:
            result.setdefault(server["name"], []).append(route["group"])
    return result


def staged_files(files_found, plan, config_dir, staging_dir=None):
    """Split what was found on each host into the files as they will be once the staged files
    are installed, and the staged files to install.

    ``files_found``: ``{host: {path: checksum}}`` of every Synapse file on the host, those under
    ``staging_dir`` (default ``config_dir/.staged``, laid out as ``config_dir``, with systemd's
    units and drop-ins in its ``systemd`` directory, laid out as ``/etc/systemd/system``) included.
    A staged file counts at the path it is installed to. Staged files of workers the plan does
    not run on that host are left out: they are never installed (cleanup removes them).

    Returns ``(files_now, install)``: ``files_now`` is ``{host: {path: checksum}}`` without any
    staged path; ``install`` is ``{host: [{"src", "dest"}]}``, the staged files whose content
    differs from the installed file (or that are new), sorted by destination.
    """
    config_dir = config_dir.rstrip("/")
    staging_dir = (staging_dir or config_dir + "/.staged").rstrip("/")
    workers_on = {}
    for w in plan.get("workers", []):
        workers_on.setdefault(w["host"], set()).add(w["name"])
    main_host = plan.get("main", {}).get("host")
    files_now, install = {}, {}
    for host, found in (files_found or {}).items():
        in_use, staged = {}, {}
        for path, checksum in found.items():
            if path.startswith(staging_dir + STAGED_UNITS + "/"):
                staged[SYSTEMD_DIR + path[len(staging_dir + STAGED_UNITS):]] = (path, checksum)
            elif path.startswith(staging_dir + "/"):
                staged[config_dir + path[len(staging_dir):]] = (path, checksum)
            else:
                in_use[path] = checksum
        # Installed files of workers the plan does not run here are removed by cleanup: the
        # record must not keep them (the next run would see them go).
        kept = (None, MAIN) + tuple(workers_on.get(host, ()))
        now = dict((path, checksum) for path, checksum in in_use.items()
                   if process_of_file(path, config_dir) in kept)
        todo = []
        for dest, (src, checksum) in sorted(staged.items()):
            owner = process_of_file(dest, config_dir)
            if owner == MAIN and host != main_host:
                continue
            if owner not in (None, MAIN) and owner not in workers_on.get(host, ()):
                continue
            now[dest] = checksum
            if in_use.get(dest) != checksum:
                todo.append({"src": src, "dest": dest})
        files_now[host] = now
        if todo:
            install[host] = todo
    return files_now, install


def venv_mismatch(venv, plan):
    """Why the processes on some host would not run from the plan's release virtualenv, or None.

    ``venv``: ``{"release": path of the plan's release virtualenv, "current": {host: what the
    virtualenv path the units run from points at now: a path, "" when it is a directory of its
    own, None when it does not exist}}``.
    """
    if not venv or not venv.get("release"):
        return None
    release = venv["release"].rstrip("/")
    wrong = sorted((h, t) for h, t in (venv.get("current") or {}).items()
                   if h in plan["hosts"] and t is not None and (t or "").rstrip("/") != release)
    if not wrong:
        return None
    return "the virtualenv the processes run from is not %s on %s" % (release, ", ".join(
        "%s (%s)" % (h, t or "a directory of its own") for h, t in wrong))


def changes(record, plan, files_found, config_dir="/etc/matrix-synapse", staging_dir=None, venv=None):
    """Everything the apply phase of the playbook needs.

    ``record``: what ``changes`` returned as ``record`` after the last successful run (None on
    a host never deployed with a record). ``files_found``: ``{host: {path: checksum}}``, the
    staged files included (see ``staged_files``). ``venv``: see ``venv_mismatch``; a version
    change always switches the virtualenv.
    """
    files_now, install = staged_files(files_found, plan, config_dir, staging_dir)
    old_plan = (record or {}).get("plan")
    touched = None
    if record:
        touched = touched_from_files(record.get("files", {}), files_now, config_dir, plan)
    result = restart_plan(old_plan, plan, touched, venv_mismatch(venv, plan))
    new_index = _process_index(plan)
    old_index = _process_index(old_plan)
    backends = _backends(plan)
    steps = []
    for step in result["steps"]:
        processes = []
        for name in step["units"]:
            # A stop acts where the process ran; a start where the new plan puts it.
            where = old_index if step["action"] == "stop" and name in old_index else new_index
            proc = dict(where.get(name) or old_index[name])
            proc["backends"] = backends.get(name, []) if step["rolling"] else []
            processes.append(proc)
        hosts = plan["hosts"] if step["action"] == "switch_venv" else sorted(set(p["host"] for p in processes))
        steps.append({"action": step["action"], "rolling": step["rolling"], "processes": processes,
                      "hosts": hosts})
    result["steps"] = steps
    result["touched"] = touched or {"shared": [], "main": [], "workers": {}}
    result["install"] = install
    result["changed"] = bool(steps)
    # What PostgreSQL runs with now is not part of the deployed plan: the run after a raise of
    # max_connections must find the record as it left it.
    database = dict((k, v) for k, v in plan.get("database", {}).items()
                    if k not in ("max_connections_running", "restarts_postgresql"))
    result["record"] = {"format": RECORD_FORMAT, "synapse_version": plan["synapse_version"],
                        "plan": dict(plan, database=database), "files": files_now}
    result["preview"] = preview(result, old_plan, plan)
    result["mermaid"] = mermaid(plan)
    return result


def _describe(worker):
    types = worker.get("types") or [worker["type"]]
    return "%-24s %-28s on %s, port %d" % (worker["name"], "+".join(types), worker["host"], worker["ports"]["http"])


def preview(result, old_plan, plan):
    """The readable table of what the run changes: instances added and removed, restarts in
    order with their reasons. A list of lines."""
    workers = dict((w["name"], w) for w in plan.get("workers", []))
    old_workers = dict((w["name"], w) for w in (old_plan or {}).get("workers", []))
    hosts = sorted(set([plan["main"]["host"]] + [w["host"] for w in workers.values()]))
    lines = ["Synapse %s: main + %d worker(s) on %d host(s) (%s)"
             % (plan["synapse_version"], len(workers), len(hosts), ", ".join(hosts))]
    # Which layout the plan follows and why (profile, host facts): the per-process tuning lines
    # of the summary are left to the planning step's own output.
    lines.extend(line for line in plan.get("layout", {}).get("summary", [])
                 if line.startswith(("Layout:", "  why:", "  warning:")))
    if old_plan is None:
        lines.append("No deployed plan is recorded on the main host: this run deploys the plan.")
    if result.get("upgrade"):
        lines.append("Upgrade: Synapse %(from)s -> %(to)s" % result["upgrade"])
    database = plan.get("database") or {}
    if database.get("restarts_postgresql"):
        lines.append("PostgreSQL restarts once Synapse accepted the configuration: max_connections %s -> %s "
                     "(%s needed); every Synapse process reconnects"
                     % (database["max_connections_running"], database["max_connections"],
                        database["connections_needed"]))
    for name in result["added"]:
        lines.append("  + %s" % _describe(workers[name]))
    for name in result["removed"]:
        lines.append("  - %s" % _describe(old_workers[name]))
    for name in result["reconfigured"]:
        lines.append("  ~ %s" % _describe(workers[name]))
    if not result["steps"]:
        lines.append("No Synapse process starts, stops or restarts.")
        return lines
    lines.append("Steps, in order:")
    for n, step in enumerate(result["steps"], 1):
        action = step["action"] + (" (rolling, drained at the proxy)" if step["rolling"] else "")
        if step["action"] == "switch_venv":
            what = "the release's virtualenv on " + ", ".join(step["hosts"])
        else:
            what = ", ".join(p["name"] for p in step["processes"])
        lines.append("  %d. %-40s %s" % (n, action, what))
    lines.append("Why:")
    lines.extend("  - %s" % reason for reason in result["reasons"])
    return lines


def _node(name):
    return name.replace("-", "_").replace(".", "_")


def mermaid(plan):
    """A Mermaid flowchart of the plan: the proxy's route groups, every process per host, the
    streams each writer owns, and the shared services."""
    lines = ["flowchart LR",
             "  %% Generated by matrixops.synapse from the worker plan (Synapse " + plan["synapse_version"] + ")"]
    lines.append('  proxy(["frontend proxy"])')
    by_host = {}
    by_host.setdefault(plan["main"]["host"], []).append(MAIN)
    for w in plan.get("workers", []):
        by_host.setdefault(w["host"], []).append(w["name"])
    writers = {}
    for stream, names in sorted(plan["shared_config"].get("stream_writers", {}).items()):
        for name in names:
            writers.setdefault(name, []).append(stream)
    for host in sorted(by_host):
        lines.append('  subgraph host_%s["%s"]' % (_node(host), host))
        for name in by_host[host]:
            label = name
            if writers.get(name):
                label += "<br/>writes: " + ", ".join(writers[name])
            lines.append('    %s["%s"]' % (_node(name), label))
        lines.append("  end")
    for route in plan.get("routes", {}).get("routes", []):
        for server in route["servers"]:
            lines.append("  proxy -- %s --> %s" % (route["group"], _node(server["name"])))
    lines.append("  proxy -- other --> %s" % _node(MAIN))
    lines.append('  redis[("Redis")]')
    lines.append('  postgresql[("PostgreSQL")]')
    for host in sorted(by_host):
        # Every process of a host talks to both: one link per host keeps the picture readable.
        lines.append("  host_%s -.- redis" % _node(host))
        lines.append("  host_%s -.- postgresql" % _node(host))
    return "\n".join(lines) + "\n"
