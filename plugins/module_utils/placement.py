# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each worker instance runs, and whether the hosts can reach each other.

Pure functions used by the planner. The inventory places workers in two ways, which may be
mixed: a wish entry's own ``host:`` (``workers.<entry>.host``), and per-host placement lists
(``placement: {host: [entry or instance name, ...]}``, filled by ``playbooks/site.yml`` from
each host's ``synapse_worker_placement``). Every instance ends on exactly one host; anything
ambiguous or unreachable is an error naming the field and the fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

#: How the inventory spells the placement list (used in error messages only).
PLACEMENT_VAR = "synapse_worker_placement"


def instance_names(group):
    """The instance names of one normalised wish entry, in order."""
    if group["names"]:
        return list(group["names"])
    return ["%s%d" % (group["prefix"], i) for i in range(1, group["count"] + 1)]


def apply_placement(raw, groups, hosts, worker_hosts, main_host, exclusive, error):
    """Decide the host of every instance of ``groups`` (normalised wish entries).

    ``raw`` is the ``placement`` input: ``{host: [entry key or instance name, ...]}``; hosts
    mapped to None or to an empty list (no placement in the inventory) are ignored. ``hosts`` maps every host the
    planner knows to its address; ``worker_hosts`` are the hosts that may run workers (the
    ``hosts`` input, without main's host unless it is listed there). With ``exclusive``,
    workers never run on a host outside ``worker_hosts``, main's included.

    Sets ``group["host"]`` (where the entry's instances go unless placed one by one) and
    ``group["instance_hosts"]`` (instance name -> host). Reports problems through ``error``.
    """
    allowed = set(worker_hosts) if exclusive else set(worker_hosts) | set([main_host])
    by_key = dict((g["key"], g) for g in groups)
    owner = {}
    for group in groups:
        group["instance_hosts"] = {}
        for name in instance_names(group):
            owner.setdefault(name, group)

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        error("placement", "must be a mapping of inventory host to a list of workers entries or "
                           "instance names, got %s" % type(raw).__name__)
        raw = {}

    entry_place = {}     # entry key -> (host, field)
    instance_place = {}  # instance name -> (host, field)
    for host in sorted(raw, key=str):
        items = raw[host]
        if items is None or items == []:  # a host without synapse_worker_placement
            continue
        field = "placement.%s" % host
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            error(field, "must be a list of workers entries or instance names (%s of host %s), got %r"
                  % (PLACEMENT_VAR, host, items))
            continue
        if host not in allowed:
            error(field, "host %r is not a worker host (known: %s); add it to the synapse_workers group "
                         "(the planner's 'hosts'), or remove %s from it"
                  % (host, ", ".join(sorted(allowed)) or "none", PLACEMENT_VAR))
            continue
        for item in items:
            if item in by_key:
                target = entry_place
            elif item in owner:
                target = instance_place
            else:
                error(field, "%r is neither an entry of workers (%s) nor the name of one of their instances; "
                             "fix the name in %s of host %s"
                      % (item, ", ".join(sorted(by_key)) or "none", PLACEMENT_VAR, host))
                continue
            if item in target and target[item][0] != host:
                error(field, "places %r, which %s already places on host %s; a worker runs on one host: "
                             "keep it in one host's %s" % (item, target[item][1], target[item][0], PLACEMENT_VAR))
                continue
            target[item] = (host, field)

    for group in groups:
        key = group["key"]
        declared = group.get("host_given")
        field = "workers.%s.host" % key
        if key in entry_place:
            host, where = entry_place[key]
            if declared and declared != host:
                error(where, "places workers.%s on host %s, but its own host: says %s; keep one of the two"
                      % (key, host, declared))
                continue
            group["host"] = host
        for name in instance_names(group):
            if name not in instance_place:
                continue
            host, where = instance_place[name]
            if key in entry_place and entry_place[key][0] != host:
                error(where, "places instance %r on host %s, but %s places its whole entry workers.%s on "
                             "host %s; list either the entry or its instances"
                      % (name, host, entry_place[key][1], key, entry_place[key][0]))
            elif declared and declared != host:
                error(where, "places instance %r on host %s, but workers.%s.host says %s; keep one of the two"
                      % (name, host, key, declared))
            else:
                group["instance_hosts"][name] = host
        if not group["count"]:
            continue
        used = set(group["instance_hosts"].get(n, group["host"]) for n in instance_names(group))
        for host in sorted(used - allowed):
            if host == main_host and not declared and key not in entry_place:
                error(field, "is placed nowhere, so it would run on main's host %s, which is not a worker host; "
                             "place it with workers.%s.host or a host's %s, or add %s to the synapse_workers group"
                      % (host, key, PLACEMENT_VAR, host))
            else:
                error(field, "host %r is not a worker host (known: %s); add it to the synapse_workers group "
                             "or place the entry elsewhere" % (host, ", ".join(sorted(allowed)) or "none"))


def _is_loopback(address):
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_addresses(endpoints, error):
    """Every host of a deployment spanning several hosts must be reachable by the others.

    ``endpoints`` is a list of (field, host, address) for every host the plan names (main,
    worker hosts, Redis, PostgreSQL, the proxy). Refuses a host given two addresses, two hosts
    sharing one address (which would hide port clashes between them), and, as soon as more than
    one host is involved, any loopback address.
    """
    known = [(f, h, a) for f, h, a in endpoints if h is not None and a is not None]
    hosts = sorted(set(h for _, h, _ in known))
    first = {}
    by_address = {}
    reported = set()
    for field, host, address in known:
        if host in first and first[host][1] != address:
            error(field, "host %s is given the address %r here but %r in %s; one host has one private "
                         "address: make them agree" % (host, address, first[host][1], first[host][0]))
            continue
        first.setdefault(host, (field, address))
        other = by_address.setdefault(address, (host, field))
        if other[0] != host and (host, address) not in reported:
            reported.add((host, address))
            error(field, "host %s has the same address %r as host %s (%s); each host needs its own private "
                         "address (set synapse_private_address per host)" % (host, address, other[0], other[1]))
    if len(hosts) < 2:
        return
    for field, host, address in known:
        if _is_loopback(address) and host not in reported:
            reported.add(host)
            error(field, "host %s has the loopback address %r, but the deployment spans the hosts %s, which "
                         "cannot reach it there; set synapse_private_address of %s to its private address"
                  % (host, address, ", ".join(hosts), host))
