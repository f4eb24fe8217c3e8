"""Helpers of the ``lifecycle`` scenario: the default scenario's conftest, on this scenario's ports,
plus running playbooks/site.yml again from the tests and reading the processes' PIDs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MATRIXOPS_CLIENT_URL", "http://127.0.0.1:17080")
os.environ.setdefault("MATRIXOPS_FEDERATION_URL", "http://127.0.0.1:17448")

ROOT = Path(__file__).resolve().parents[3]
_DEFAULT = ROOT / "molecule" / "default" / "tests" / "conftest.py"
_spec = importlib.util.spec_from_file_location("matrixops_default_conftest", _DEFAULT)
_default = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _default  # dataclasses look their module up while the class is created
_spec.loader.exec_module(_default)

HttpClient = _default.HttpClient
wait_until = _default.wait_until
client_api = _default.client_api
federation_api = _default.federation_api
wait = _default.wait
deployed = _default.deployed
register = _default.register
registration_secret = _default.registration_secret
served_by = _default.served_by

HOST = "synapse-life"


def _load_catalog():
    spec = importlib.util.spec_from_file_location("matrixops_catalog", ROOT / "plugins" / "module_utils" / "catalog.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CATALOG = _load_catalog()


class Playbook:
    """Runs playbooks/site.yml against this scenario's inventory, as an operator re-runs it."""

    def __init__(self, inventory: str) -> None:
        self.inventory = inventory

    def run(self, extra: dict, *args: str) -> tuple[int, str]:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(extra, f)
        try:
            proc = subprocess.run(
                ["ansible-playbook", "-i", self.inventory, str(ROOT / "playbooks" / "site.yml"),
                 "-e", "@" + f.name, *args],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=str(ROOT),
                timeout=1800)
        finally:
            os.unlink(f.name)
        return proc.returncode, proc.stdout


def changed_count(output: str) -> int:
    """The changed= count of the scenario's host in the play recap."""
    match = re.search(r"^%s\s*:\s*ok=\d+\s+changed=(\d+)" % re.escape(HOST), output, re.M)
    assert match, output[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="session")
def playbook(request) -> Playbook:
    inventory = request.config.getoption("ansible_inventory") or os.environ.get("MOLECULE_INVENTORY_FILE")
    assert inventory, "molecule passes the inventory to testinfra (--ansible-inventory)"
    return Playbook(inventory)


def processes(host) -> dict[str, dict[str, int]]:
    """Every Synapse unit systemd has loaded: name -> pid, active (start time, monotonic µs),
    inactive (last stop time), state."""
    out = host.check_output(
        "systemctl show -p Id -p MainPID -p ActiveState -p ActiveEnterTimestampMonotonic "
        "-p InactiveEnterTimestampMonotonic matrix-synapse.service 'matrix-synapse-worker@*.service'")
    result = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        unit = props.get("Id", "")
        if not unit or unit == "matrix-synapse-worker@.service":
            continue
        name = "main" if unit == "matrix-synapse.service" else unit[len("matrix-synapse-worker@"):-len(".service")]
        result[name] = {"pid": int(props["MainPID"]), "state": props["ActiveState"],
                        "active": int(props["ActiveEnterTimestampMonotonic"] or 0),
                        "inactive": int(props["InactiveEnterTimestampMonotonic"] or 0)}
    return {name: p for name, p in result.items() if p["state"] == "active"}


def restarted(before: dict, after: dict) -> set[str]:
    """Processes running before and after whose PID changed."""
    return {n for n in before if n in after and before[n]["pid"] != after[n]["pid"]}
