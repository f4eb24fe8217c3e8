"""Small builders shared by the planner tests."""
import copy

from ansible_collections.matrixops.synapse.plugins.module_utils.planner import plan

BASE_WISH = {
    "main": {"host": "hs1", "address": "10.0.0.10"},
    "redis": {"host": "hs1", "address": "10.0.0.10"},
    "database": {"host": "hs1", "address": "10.0.0.10"},
    "proxy": {"host": "hs1"},
}


def wish(workers=None, **overrides):
    result = copy.deepcopy(BASE_WISH)
    result["workers"] = workers or {}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key].update(value)
        else:
            result[key] = value
    return result


def planned(workers=None, **overrides):
    return plan(wish(workers, **overrides))


def names(result, wtype):
    return [w["name"] for w in result["workers"] if w["type"] == wtype]


def worker(result, name):
    return next(w for w in result["workers"] if w["name"] == name)


def route_for(result, path, method="GET", entrypoint="client"):
    """Which processes the routing table sends a request to (first match wins, else main)."""
    import re
    path, _, query = path.partition("?")
    params = set(part.split("=")[0] for part in query.split("&") if part)
    for route in result["routes"]["routes"]:
        if entrypoint not in route["entrypoints"]:
            continue
        if route["methods"] and method not in route["methods"]:
            continue
        if route.get("without_query") in params:
            continue
        if any(re.search(p, path) for p in route["patterns"]):
            return [s["name"] for s in route["servers"]]
    return ["main"]
