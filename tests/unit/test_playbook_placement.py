"""The site playbook reads placement from the inventory (inventories/multi-host) and refuses a
bad one in the planning task, before it connects to any host (the example's hosts are
documentation addresses that cannot be reached)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

INVENTORY = os.path.join(ROOT, "inventories", "multi-host", "hosts.yml")

CASES = [
    # Errors name the inventory variables (site.yml's field_names). Extra vars reach every host: each one then claims the synchrotrons.
    ({"synapse_worker_placement": ["synchrotron"]},
     [("synapse_worker_placement.matrix-a", "not a worker host"),
      ("synapse_worker_placement.matrix-c", "already places on host matrix-b")]),
    # Every host on 127.0.0.1: unreachable from the others, and indistinguishable.
    ({"synapse_private_address": "127.0.0.1"},
     [("synapse_private_address", "loopback"), ("hosts.matrix-b.address", "same address")]),
    # A wish the example's host_vars no longer match.
    ({"synapse_workers": {"synchrotron": 2, "sso_login": 1}},
     [("synapse_worker_placement.matrix-b", "'event_persister' is neither an entry"),
      ("synapse_workers.sso_login.host", "placed nowhere, so it would run on main's host matrix-a")]),
]


def run_site(tmp_path, extra):
    collections = os.path.join(str(tmp_path), "collections")
    os.makedirs(os.path.join(collections, "ansible_collections", "matrixops"))
    os.symlink(ROOT, os.path.join(collections, "ansible_collections", "matrixops", "synapse"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               NO_COLOR="1", ANSIBLE_FORCE_COLOR="0")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run(
        [playbook, "-i", INVENTORY, "-e", json.dumps(extra), os.path.join(ROOT, "playbooks/site.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("extra,expected", CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_placement_stops_before_any_host(tmp_path, extra, expected):
    rc, out = run_site(tmp_path, extra)
    assert rc != 0
    assert "Compute the plan" in out
    # The callback prints each error as "field: ..." then its message (folded over lines).
    for field, fragment in expected:
        assert "field: " + field in out, (field, out[-3000:])
        assert fragment in " ".join(out.split()), (fragment, out[-3000:])
    assert "UNREACHABLE" not in out and "unreachable=1" not in out
    assert "Traceback" not in out
    assert "changed=0" in out
