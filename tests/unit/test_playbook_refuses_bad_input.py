"""The site playbook refuses a bad wish before it connects to any host.

The inventory points at a container that does not exist: had the playbook gone past the plan,
it would report the host unreachable. It must instead fail in the planning task, naming the
field, with no Python traceback.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

# Errors name the inventory variable the operator set (site.yml maps the planner's fields).
CASES = [
    ({"synapse_workers": {"synchrotorn": 2}}, "synapse_workers.synchrotorn: unknown worker type", "unknown worker"),
    ({"synapse_workers": {"background": 2}}, "synapse_workers.background.count:", "at most 1"),
    ({"synapse_extra_config": {"worker_replication_host": "127.0.0.1"}},
     "synapse_extra_config.worker_replication_host:", "instance_map.main"),
    ({"synapse_workers": {"typing_persister": 2}}, "synapse_workers.typing_persister.count", "exactly one writer"),
    # a list where a mapping belongs: the planner's message, not Ansible's type conversion error
    ({"synapse_workers": ["synchrotron"]}, "synapse_workers: must be a mapping of worker type", "count",
     "unable to convert"),
    ({"synapse_workers": {"account_data": 1}, "synapse_database_cp_min": 9, "synapse_database_cp_max": 3},
     "synapse_database_cp_min: must not exceed synapse_database_cp_max", "(9 > 3)"),
    # host facts given, so that nothing is gathered from the (absent) main host
    ({"synapse_profile": "huge", "synapse_host_cores": 2, "synapse_host_memory_mb": 4096}, "synapse_profile:",
     "valid profiles: auto, monolith, small, medium, large"),
    # host facts as -e key=value gives them (strings) reach the planner as numbers: only the
    # bad limit is reported, not the sizing
    ({"synapse_profile": "auto", "synapse_host_cores": "2", "synapse_host_memory_mb": "1024",
      "synapse_main_limits": {"memory_max": "lots"}}, "synapse_main_limits.memory_max", "must be a size",
     "synapse_host_cores: must"),
]


@pytest.mark.parametrize("extra,field,fragment,absent", [c + (None,) * (4 - len(c)) for c in CASES],
                         ids=[c[1] for c in CASES])
def test_bad_wish_stops_before_any_host(tmp_path, extra, field, fragment, absent):
    collections = os.path.join(str(tmp_path), "collections")
    os.makedirs(os.path.join(collections, "ansible_collections", "matrixops"))
    os.symlink(ROOT, os.path.join(collections, "ansible_collections", "matrixops", "synapse"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               NO_COLOR="1", ANSIBLE_FORCE_COLOR="0")
    extra = dict(extra, ansible_host="matrixops-no-such-container")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run(
        [playbook, "-i", os.path.join(ROOT, "inventories/local/hosts.yml"), "-e", json.dumps(extra),
         os.path.join(ROOT, "playbooks/site.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Compute the plan" in out
    assert field in out and fragment in out, out[-3000:]
    assert absent is None or absent not in out, out[-3000:]
    assert "UNREACHABLE" not in out and "unreachable=1" not in out
    assert "Traceback" not in out
    assert "changed=0" in out
