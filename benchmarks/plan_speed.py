#!/usr/bin/env python3
"""How the planner's time grows with the number of workers.

Plans 10, 100 and 1,000 workers, spread round-robin over the catalogue's worker types
(types limited to one instance, or writing a one-writer stream, get one) and over 10 hosts,
several times each, and prints per size the median time and its ratio to the 10-worker plan.
A benchmark, not a test: it asserts nothing.

    .cache/venv/bin/python benchmarks/plan_speed.py [--repeats N]
"""
import argparse
import atexit
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SIZES = (10, 100, 1000)
HOSTS = ["hs%d" % i for i in range(10)]


def _import_collection():
    """Make this checkout importable as ansible_collections.matrixops.synapse."""
    base = tempfile.mkdtemp(prefix="matrixops-bench-")
    atexit.register(shutil.rmtree, base, True)
    os.makedirs(os.path.join(base, "ansible_collections", "matrixops"))
    os.symlink(ROOT, os.path.join(base, "ansible_collections", "matrixops", "synapse"))
    sys.path.insert(0, base)


_import_collection()
from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import (  # noqa: E402
    STREAMS, WORKER_TYPES,
)
from ansible_collections.matrixops.synapse.plugins.module_utils.planner import plan  # noqa: E402


def _cap(row):
    """Most instances of a catalogue row a plan may have (None: any number)."""
    if any(STREAMS[s].max_writers == 1 for s in row.streams):
        return 1
    return row.max_count


def wish_for(size):
    """A valid wish with ``size`` workers over the types and HOSTS."""
    rows = [WORKER_TYPES[n] for n in sorted(WORKER_TYPES) if not WORKER_TYPES[n].experimental]
    left = dict((r.name, _cap(r)) for r in rows)
    claimed = set()  # one-writer streams already given to a type
    counts = {}      # (type, host) -> instances
    placed = 0
    while placed < size:
        progress = False
        for row in rows:
            if placed == size:
                break
            single = set(s for s in row.streams if STREAMS[s].max_writers == 1)
            if left[row.name] == 0 or single & claimed:
                continue
            claimed |= single
            host = HOSTS[placed % len(HOSTS)]
            counts[(row.name, host)] = counts.get((row.name, host), 0) + 1
            if left[row.name] is not None:
                left[row.name] -= 1
            placed += 1
            progress = True
        if not progress:
            raise SystemExit("the catalogue cannot hold %d workers" % size)
    workers = dict(("%s_%s" % (t, h), {"types": [t], "count": n, "host": h}) for (t, h), n in counts.items())
    return {
        "main": {"host": HOSTS[0], "address": "10.0.0.100"},
        "redis": {"host": HOSTS[0]},
        "database": {"host": HOSTS[0]},
        "proxy": {"host": HOSTS[0]},
        "hosts": dict((h, {"address": "10.0.0.%d" % (100 + i)}) for i, h in enumerate(HOSTS)),
        "media_store_shared": True,
        "metrics": True,
        "workers": workers,
    }


def median_seconds(wish, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = plan(wish)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="plans per size (default 7)")
    args = parser.parse_args()

    plan(wish_for(SIZES[0]))  # warm-up: imports, regex compilation
    print("%8s %8s %8s %12s %10s" % ("workers", "types", "hosts", "median ms", "vs 10"))
    medians = {}
    for size in SIZES:
        wish = wish_for(size)
        seconds, result = median_seconds(wish, args.repeats)
        medians[size] = seconds
        print("%8d %8d %8d %12.2f %9.1fx" % (
            len(result["workers"]), len(set(w["types"][0] for w in result["workers"])), len(result["hosts"]),
            seconds * 1000, seconds / medians[SIZES[0]]))
    slope = math.log(medians[SIZES[-1]] / medians[SIZES[0]]) / math.log(SIZES[-1] / SIZES[0])
    print("summary: plan() median %s; time grows as workers^%.2f (1.0 = linear), %d repeats per size"
          % (", ".join("%d workers %.1f ms" % (s, medians[s] * 1000) for s in SIZES), slope, args.repeats))


if __name__ == "__main__":
    main()
