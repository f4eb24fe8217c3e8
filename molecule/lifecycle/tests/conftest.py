"""Helpers of the ``lifecycle`` scenario: the default scenario's conftest, on this scenario's ports,
plus running playbooks/site.yml again from the tests and reading the processes' PIDs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "molecule" / "_lib"))
from matrixops_scenario import catalog, use_default_helpers  # noqa: E402

use_default_helpers("http://127.0.0.1:17080", "http://127.0.0.1:17448")
# Re-exported: pytest finds fixtures among a conftest's attributes.
from matrixops_default_conftest import (  # noqa: E402,F401
    HttpClient, client_api, deployed, federation_api, register, registration_secret, served_by, wait, wait_until,
)

HOST = "synapse-life"
CATALOG = catalog()


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


def postgres_server(host) -> str:
    """PostgreSQL's postmaster: its PID and start time, from postmaster.pid. A restart changes it."""
    with host.sudo():
        lines = host.file("/var/lib/postgresql/15/main/postmaster.pid").content_string.splitlines()
    return f"pid {lines[0]} started {lines[2]}"
