"""The routing table against Synapse's own list of worker-capable endpoints.

Runs the pinned Synapse's `python -m synapse._scripts.generate_workers_map` and checks every
endpoint it prints: a request matching it is routed to a worker by the routing table of a
plan with every worker type, or the endpoint is listed in catalog.KEPT_ON_MAIN with a reason.
"""
import os
import re
import subprocess

import pytest
import yaml

from ansible_collections.matrixops.synapse.plugins.module_utils.catalog import KEPT_ON_MAIN, WORKER_TYPES
from helpers import planned, route_for
from test_synapse_oracle import ensure_oracle_venv


def example_path(regex):
    """A concrete path matching ``regex``: optional groups dropped, alternatives resolved to
    v3 (or the first), wildcards replaced by a segment."""
    text = regex.lstrip("^").rstrip("$")
    group = re.compile(r"\(([^()]*)\)(\?)?")
    while True:
        m = group.search(text)
        if not m:
            break
        alternatives = m.group(1).split("|")
        replacement = "" if m.group(2) else ("v3" if "v3" in alternatives else alternatives[0])
        text = text[:m.start()] + replacement + text[m.end():]
    text = text.replace("[^/]+", "abc").replace(".*", "abc").replace("\\.", ".")
    return re.sub(r"(.)\?", "", text)


def parse_map(text):
    """[(section, method or None, regex)] from generate_workers_map's output."""
    rows, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            section = line.lstrip("# ")
        elif line:
            method = None
            if line.startswith("GET "):
                method, line = "GET", line[4:].strip()
            rows.append((section, method, line))
    return rows


@pytest.fixture(scope="module")
def synapse_map(tmp_path_factory):
    venv = ensure_oracle_venv()
    python = os.path.join(venv, "bin", "python")
    root = tmp_path_factory.mktemp("workers-map")
    key = root / "signing.key"
    subprocess.run([python, "-m", "synapse._scripts.generate_signing_key", "-o", str(key)], check=True)
    (root / "log.yaml").write_text("version: 1\nroot: {level: WARNING}\n")
    config = {
        "server_name": "map.example.test", "report_stats": False, "signing_key_path": str(key),
        "log_config": str(root / "log.yaml"), "media_store_path": str(root / "media"),
        "database": {"name": "sqlite3", "args": {"database": str(root / "map.db")}},
        "macaroon_secret_key": "x" * 32, "form_secret": "y" * 32, "registration_shared_secret": "z" * 32,
        "listeners": [{"port": 8008, "type": "http", "resources": [{"names": ["client", "federation"]}]}],
    }
    (root / "homeserver.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([python, "-m", "synapse._scripts.generate_workers_map", "--config-path",
                           str(root / "homeserver.yaml")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = parse_map(proc.stdout)
    assert len(rows) > 100, proc.stdout[:2000]
    return rows


def _entrypoint(path):
    return "federation" if path.startswith(("/_matrix/federation", "/_matrix/key")) else "client"


def test_every_worker_capable_endpoint_is_routed_or_kept_on_main(synapse_map):
    plan = planned(dict((t, 1) for t in WORKER_TYPES if t not in ("account_data", "thread_subscriptions")))
    unrouted = []
    for section, method, regex in synapse_map:
        path = example_path(regex)
        assert re.match(regex, path), (regex, path)
        methods = [method] if method else ["POST", "GET"]
        served = [route_for(plan, path, m, _entrypoint(path)) for m in methods]
        if all(s == ["main"] for s in served) and regex not in KEPT_ON_MAIN:
            unrouted.append("%s  (%s)  e.g. %s" % (regex, section, path))
    assert not unrouted, "worker-capable endpoints neither routed nor in KEPT_ON_MAIN:\n" + "\n".join(unrouted)


def test_kept_on_main_list_is_current(synapse_map):
    printed = set(regex for _, _, regex in synapse_map)
    stale = sorted(set(KEPT_ON_MAIN) - printed)
    assert not stale, "KEPT_ON_MAIN lists endpoints Synapse no longer prints: %s" % stale
    for regex, reason in KEPT_ON_MAIN.items():
        assert len(reason) > 20, regex


def test_example_paths():
    assert example_path(r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/typing/.*$") == \
        "/_matrix/client/v3/rooms/abc/typing/abc"
    assert example_path(r"^/_matrix/federation/v1/send/.*/?$") == "/_matrix/federation/v1/send/abc"
    assert example_path(r"^/_matrix/client/(r0|v3|unstable)/room_keys/keys(/.*)?(/.*)?$") == \
        "/_matrix/client/v3/room_keys/keys"
