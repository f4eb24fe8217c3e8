# -*- coding: utf-8 -*-
# Copyright: matrixops.synapse contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizing profiles and per-process tuning: tables, and the pure functions that read them.

A profile is a named worker layout (``PROFILES``). ``auto`` picks one from the main host's
cores and memory and the expected number of users, by the rules of ``choose``; the numbers
behind them are saturation throughputs measured on a 2-core host under the client load that
``benchmarks/layouts.py`` drives (docs/benchmarks.md), written next to each profile with
whether they were measured or extrapolated.

Tuning gives every process a database pool, a cache factor and systemd resource settings
from ``TUNING`` (one row per class of process, ``TYPE_CLASS`` maps worker types to classes),
scaled down when the host's memory cannot hold the layout's memory budget.

No Ansible, no I/O: the planner calls these and reports errors itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

# ------------------------------------------------------------------------------- profiles
#
#   workers:     the wish entries the profile stands for (type -> count)
#   min_cores:   fewest cores of the main host the layout is worth running on
#   saturation:  messages per second the layout sustains at saturation on ``min_cores`` cores,
#                sending and delivering every message (benchmarks/layouts.py load)
#   evidence:    where ``saturation`` comes from
Profile = namedtuple("Profile", "name description workers min_cores saturation evidence")

PROFILES = dict((p.name, p) for p in [
    Profile("monolith", "main only: every request on one process",
            {}, 1, 24.0,
            "measured: 24 msg/s on 2 cores (one process uses one core; the other one idles)"),
    Profile("small", "main + 1 synchrotron: /sync on the second core",
            {"synchrotron": 1}, 2, 50.0,
            "measured: 50 msg/s on 2 cores, 2.1x the monolith; the six-process layout (2 synchrotrons, "
            "event creator, event persister, client reader) reached only 28 msg/s there: every "
            "extra replication hop costs CPU on the same two cores"),
    Profile("medium", "main + 2 synchrotrons, a client reader and a federation sender",
            {"synchrotron": 2, "client_reader": 1, "federation_sender": 1}, 4, 100.0,
            "extrapolated, not measured: one busy process per core (as small shows on 2 cores, "
            "about 25 msg/s per core); the federation sender takes outbound federation off main"),
    Profile("large", "main + a full split: synchrotrons, initial syncs, readers, 2 event persisters, "
            "federation, pusher, media, background",
            {"synchrotron": 3, "initial_synchrotron": 1, "client_reader": 2, "event_persister": 2,
             "federation_reader": 1, "federation_sender": 1, "pusher": 1, "media_repository": 1,
             "background": 1}, 8, 200.0,
            "extrapolated, not measured: about 25 msg/s per core as on 2 cores; event persisters "
            "only pay once the hop from main to them has cores of its own to run on"),
])

# Names an operator may give as ``profile``: the profiles, and ``auto``.
AUTO = "auto"
PROFILE_NAMES = ("auto",) + tuple(sorted(PROFILES, key=lambda n: PROFILES[n].min_cores))

# How ``auto`` turns expected users into load, and how close to saturation a layout may run.
#   messages_per_user: peak messages per second per registered user (the busiest minute of a
#                      busy team: one message every 50 s each, in rooms of about 5 members)
#   headroom:          a layout is planned to run at most at this share of its saturation, so
#                      that send-to-delivery latency stays near its unloaded value
LOAD_MODEL = {"messages_per_user": 0.02, "headroom": 0.5}

# Memory the host keeps for everything but Synapse (PostgreSQL, Redis, HAProxy, the OS), and
# the least memory a Synapse process is given (it idles at about 120 MB RSS).
HOST_RESERVE_MB = 768
PROCESS_FLOOR_MB = 256


def capacity_users(profile):
    """Users a profile serves within the headroom of its saturation (LOAD_MODEL)."""
    return int(profile.saturation * LOAD_MODEL["headroom"] / LOAD_MODEL["messages_per_user"])


def processes_of(profile):
    return 1 + sum(profile.workers.values())


# ------------------------------------------------------------------------------- tuning
#
# One row per class of process:
#   cp_min, cp_max: its PostgreSQL connection pool
#   cache_factor:   caches.global_factor (Synapse's default is 0.5)
#   memory_high:    systemd MemoryHigh in MB (reclaim pressure above it)
#   memory_max:     systemd MemoryMax in MB (the kernel kills above it)
#   cpu_weight:     systemd CPUWeight (100 is systemd's default; only matters when cores are busy)
Tuning = namedtuple("Tuning", "cp_min cp_max cache_factor memory_high memory_max cpu_weight")

TUNING = {
    # main: in small layouts it still creates and persists every event
    "main": Tuning(5, 10, 1.0, 1024, 1536, 100),
    # hot paths: /sync, room reads; big caches pay off there
    "sync": Tuning(5, 10, 1.0, 768, 1024, 100),
    "reader": Tuning(3, 8, 1.0, 768, 1024, 100),
    # writers of the events stream and event creation: write path, small caches
    "writer": Tuning(5, 10, 0.5, 512, 768, 100),
    # small stream writers (typing, receipts, presence, ...): little data, latency matters
    "stream": Tuning(2, 5, 0.25, 256, 512, 100),
    # duties off the request path: they may wait when cores are busy
    "duty": Tuning(2, 5, 0.25, 384, 768, 50),
    # periodic jobs (cleanups, statistics): last in line for CPU, but big queries
    "background": Tuning(2, 5, 0.25, 512, 1024, 20),
}

TYPE_CLASS = {
    "synchrotron": "sync", "initial_synchrotron": "sync",
    "client_reader": "reader", "encryption": "reader", "federation_reader": "reader",
    "federation_inbound": "reader", "user_dir": "reader", "sso_login": "reader",
    "event_persister": "writer", "event_creator": "writer",
    "typing_persister": "stream", "to_device": "stream", "account_data": "stream", "receipts": "stream",
    "receipts_account": "stream", "presence_writer": "stream", "push_rules": "stream",
    "device_lists": "stream", "thread_subscriptions": "stream",
    "federation_sender": "duty", "pusher": "duty", "appservice": "duty", "media_repository": "duty",
    "background": "background",
}


def tuning_for(members):
    """The tuning of a process running the worker types ``members`` (one, or several merged):
    per setting, the largest value of their rows (a merged process does the work of each)."""
    rows = [TUNING[TYPE_CLASS[m]] for m in members]
    return Tuning(*[max(values) for values in zip(*rows)])


def memory_budget_mb(rows):
    """MemoryHigh summed over the processes (their planned working set)."""
    return sum(r.memory_high for r in rows)


def fit_memory(rows, memory_mb):
    """Fit the processes' MemoryHigh into the host's memory after its reserve.

    Returns ``(rows, factor)``: the rows scaled by one common factor, except those that would
    fall below PROCESS_FLOOR_MB and stay at it (the factor is computed on the others), so that
    their sum fits; factor 1.0 when they already fit or the memory is unknown, None when even
    PROCESS_FLOOR_MB per process does not fit (every row is then at the floor)."""
    if memory_mb is None:
        return list(rows), 1.0
    available = memory_mb - HOST_RESERVE_MB
    if available < PROCESS_FLOOR_MB * len(rows):
        return [scaled(r, 0.0) for r in rows], None
    if memory_budget_mb(rows) <= available:
        return list(rows), 1.0
    at_floor = set()
    while True:
        free = available - PROCESS_FLOOR_MB * len(at_floor)
        factor = float(free) / sum(r.memory_high for i, r in enumerate(rows) if i not in at_floor)
        low = set(i for i, r in enumerate(rows) if i not in at_floor and r.memory_high * factor < PROCESS_FLOOR_MB)
        if not low:
            return [scaled(r, factor) for r in rows], factor
        at_floor |= low


def fits_memory(profile, memory_mb):
    if memory_mb is None:
        return True
    return memory_mb - HOST_RESERVE_MB >= PROCESS_FLOOR_MB * processes_of(profile)


def scaled(row, factor):
    """A tuning row with its memory settings scaled by ``factor`` (never below the floors:
    PROCESS_FLOOR_MB for MemoryHigh, half as much again for MemoryMax), and its cache factor
    scaled as much as its MemoryHigh really was."""
    if factor >= 1.0:
        return row
    high = max(PROCESS_FLOOR_MB, int(row.memory_high * factor) // 16 * 16)
    top = max(PROCESS_FLOOR_MB * 3 // 2, high + PROCESS_FLOOR_MB // 2, int(row.memory_max * factor) // 16 * 16)
    top = min(top, row.memory_max)
    return row._replace(memory_high=high, memory_max=top,
                        cache_factor=round(max(0.05, row.cache_factor * high / row.memory_high), 2))


# ------------------------------------------------------------------------------- auto
#
# ``auto`` looks at the profiles from the fewest processes up. A profile is possible when the
# host has its min_cores and the memory for PROCESS_FLOOR_MB per process after the reserve.
# Without expected users it takes the biggest possible profile (the load is unknown: use the
# host). With expected users it takes the smallest possible profile whose capacity_users
# covers them (fewer processes: less memory, fewer hops), and the biggest possible one, with a
# warning, when none does.


def choose(cores, memory_mb, users):
    """(profile name, reasons, warnings) for ``auto``."""
    order = sorted(PROFILES.values(), key=lambda p: (p.min_cores, processes_of(p)))
    possible, reasons = [], []
    for p in order:
        if cores < p.min_cores:
            reasons.append("%s: needs %d cores, the main host has %d" % (p.name, p.min_cores, cores))
        elif not fits_memory(p, memory_mb):
            reasons.append("%s: needs %d MB (%d processes x %d MB + %d MB reserve), the main host has %d MB"
                           % (p.name, HOST_RESERVE_MB + PROCESS_FLOOR_MB * processes_of(p), processes_of(p),
                              PROCESS_FLOOR_MB, HOST_RESERVE_MB, memory_mb))
        else:
            possible.append(p)
    warnings = []
    if not possible:
        # Main alone is the least a homeserver runs: plan it, and say the host is too small.
        possible = [order[0]]
        warnings.append("the main host (%d cores, %s MB) is below what even %s needs; expect swapping or "
                        "out-of-memory kills" % (cores, memory_mb, order[0].name))
    if users is None:
        chosen = possible[-1]
        why = ("%s: the biggest layout this host can run (%d cores%s); no expected users given"
               % (chosen.name, cores, ", %d MB" % memory_mb if memory_mb is not None else ""))
    else:
        covering = [p for p in possible if capacity_users(p) >= users]
        if covering:
            chosen = covering[0]
            why = ("%s: the smallest layout this host can run that serves %d users (about %d users at "
                   "%d%% of %.0f msg/s)" % (chosen.name, users, capacity_users(chosen),
                                             LOAD_MODEL["headroom"] * 100, chosen.saturation))
        else:
            chosen = possible[-1]
            why = ("%s: the biggest layout this host can run; it serves about %d users, fewer than the "
                   "%d expected" % (chosen.name, capacity_users(chosen), users))
            warnings.append("%d expected users exceed what %s on this host serves (about %d): add cores "
                            "to the main host or place workers on more hosts" % (users, chosen.name,
                                                                                 capacity_users(chosen)))
    reasons = [why, "basis: %s" % chosen.evidence] + ["not possible: %s" % r for r in reasons]
    return chosen.name, reasons, warnings


# ------------------------------------------------------------------------------- resolving a wish

SIZING_KEYS = ("cores", "memory_mb", "expected_users")


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _explicit_types(workers):
    """Worker types the operator's own entries run (an entry's key, or its merged ``types``)."""
    covered = {}
    for key, spec in workers.items():
        members = spec.get("types") if isinstance(spec, dict) else None
        for member in (members if isinstance(members, list) else [key]):
            if isinstance(member, str):
                covered[member] = key
    return covered


def resolve(profile, sizing, workers):
    """Merge a profile into the operator's worker entries.

    Returns ``(workers, layout, errors)``: the wish's worker entries with the profile's added
    (an explicit entry for a type, or a merged entry running it, replaces the profile's entry
    for that type), the ``layout`` record the plan reports, and ``(field, message)`` errors.
    """
    errors = []
    sizing_in = sizing if sizing is not None else {}
    if not isinstance(sizing_in, dict):
        errors.append(("sizing", "must be a mapping with %s, got %s" % (", ".join(SIZING_KEYS),
                                                                         type(sizing_in).__name__)))
        sizing_in = {}
    facts = {}
    for key in sorted(sizing_in):
        value = sizing_in[key]
        if key not in SIZING_KEYS:
            errors.append(("sizing.%s" % key, "unknown key; allowed: %s" % ", ".join(SIZING_KEYS)))
        elif value is None:
            continue
        elif not _int(value) or value < (0 if key == "expected_users" else 1):
            errors.append(("sizing.%s" % key, "must be a %s integer, got %r"
                           % ("non-negative" if key == "expected_users" else "positive", value)))
        else:
            facts[key] = value
    layout = {"requested": profile, "profile": None, "source": "workers", "reasons": [], "warnings": [],
              "sizing": dict((k, facts.get(k)) for k in SIZING_KEYS)}
    if profile is None:
        layout["reasons"].append("no profile: the worker entries as given")
        return workers, layout, errors
    if not isinstance(profile, str) or profile not in PROFILE_NAMES:
        errors.append(("profile", "unknown profile %r; valid profiles: %s" % (profile, ", ".join(PROFILE_NAMES))))
        return workers, layout, errors
    if profile == AUTO:
        if "cores" not in facts:
            errors.append(("sizing.cores", "profile auto needs the main host's number of cores (playbooks/"
                                           "site.yml takes it from the main host's facts, or set "
                                           "synapse_host_cores)"))
        if errors:
            return workers, layout, errors
        name, reasons, warnings = choose(facts["cores"], facts.get("memory_mb"), facts.get("expected_users"))
        layout.update(source="auto", profile=name)
        layout["reasons"].extend("auto chose %s" % r if i == 0 else r for i, r in enumerate(reasons))
        layout["warnings"].extend(warnings)
    else:
        if errors:
            return workers, layout, errors
        layout.update(source="profile", profile=profile)
        layout["reasons"].append("profile %s: %s (%s)" % (profile, PROFILES[profile].description,
                                                          PROFILES[profile].evidence))
    merged = dict(workers) if isinstance(workers, dict) else workers
    if isinstance(workers, dict):
        covered = _explicit_types(workers)
        for wtype, count in sorted(PROFILES[layout["profile"]].workers.items()):
            if wtype in covered:
                layout["reasons"].append("workers.%s given explicitly: replaces the profile's %s x%d"
                                         % (covered[wtype], wtype, count))
            else:
                merged[wtype] = count
    return merged, layout, errors
