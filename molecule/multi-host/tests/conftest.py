"""Helpers of the ``multi-host`` scenario: the default scenario's conftest (HTTP client, user
registration, journal readers) on this scenario's ports, plus one testinfra host per container
and what is deployed where.

The tests never use testinfra's parametrised ``host`` fixture (it would run each test once per
container): each test asks for the hosts it needs by role.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "molecule" / "_lib"))
from matrixops_scenario import load, use_default_helpers  # noqa: E402

use_default_helpers("http://127.0.0.1:16080", "http://127.0.0.1:16448")
# Re-exported: pytest finds fixtures among a conftest's attributes.
from matrixops_default_conftest import (  # noqa: E402,F401
    CLIENT_BASE_URL, HttpClient, client_api, federation_api, journal, register, registration_secret, served_by,
    wait, wait_until,
)

#: The containers of molecule.yml, by role.
MAIN, WORKERS, PROXY, PROBE = "synapse-mh-a", "synapse-mh-b", "synapse-mh-c", "synapse-mh-probe"
SYNAPSE_HOSTS = (MAIN, WORKERS, PROXY)
#: Their addresses on the scenario's docker network (host_vars/*/20-scenario.yml).
ADDRESS = {MAIN: "172.30.216.11", WORKERS: "172.30.216.12", PROXY: "172.30.216.13", PROBE: "172.30.216.14"}


@pytest.fixture(scope="session")
def hosts(request) -> dict[str, Any]:
    """A testinfra host for every container of the scenario, by name."""
    inventory = request.config.getoption("ansible_inventory") or os.environ.get("MOLECULE_INVENTORY_FILE")
    assert inventory, "molecule passes the inventory to testinfra (--ansible-inventory)"
    return {name: testinfra.get_host("ansible://" + name, ansible_inventory=inventory)
            for name in (MAIN, WORKERS, PROXY, PROBE)}


@dataclass
class Deployment:
    """What is really configured: the shared config (read on main's host) and, per host, the
    workers whose own config file is there."""

    shared: dict[str, Any]
    workers: dict[str, dict[str, Any]]  # name -> its config file
    placed: dict[str, str]               # name -> host

    def on(self, host: str) -> list[str]:
        return sorted(n for n, h in self.placed.items() if h == host)

    def names(self, prefix: str) -> list[str]:
        return sorted(n for n in self.workers if n.startswith(prefix))

    def port(self, name: str, resource: str) -> int:
        """Port of the listener of worker ``name`` serving ``resource``."""
        for listener in self.workers[name]["worker_listeners"]:
            if any(resource in r["names"] for r in listener.get("resources", [])):
                return listener["port"]
        raise KeyError(f"{name} has no listener with {resource}")


def read_yaml(host: Any, path: str) -> Any:
    with host.sudo():
        return yaml.safe_load(host.file(path).content_string)


@pytest.fixture(scope="session")
def deployment(hosts) -> Deployment:
    shared = read_yaml(hosts[MAIN], "/etc/matrix-synapse/homeserver.yaml")
    workers, placed = {}, {}
    for name in SYNAPSE_HOSTS:
        host = hosts[name]
        files = host.check_output("ls /etc/matrix-synapse/workers").split()
        for file in files:
            if file.endswith(".yaml"):
                worker = file[: -len(".yaml")]
                workers[worker] = read_yaml(host, f"/etc/matrix-synapse/workers/{file}")
                placed[worker] = name
    return Deployment(shared, workers, placed)


PROBE_SCRIPT = r"""
import socket, sys
for target in sys.argv[1:]:
    address, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((address, int(port)))
        print(target, "open")
    except socket.timeout:
        print(target, "timeout")
    except OSError as err:
        print(target, err.strerror or type(err).__name__)
    finally:
        s.close()
"""


def connect(host: Any, targets: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Try a TCP connection from ``host`` to each (address, port): 'open' or why not."""
    args = " ".join(f"{a}:{p}" for a, p in targets)
    out = host.check_output(f"python3 -c {_quote(PROBE_SCRIPT)} {args}")
    result = {}
    for line in out.splitlines():
        target, _, outcome = line.partition(" ")
        address, port = target.rsplit(":", 1)
        result[(address, int(port))] = outcome
    return result


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
