"""Planner: bad input is refused with an error naming the field and the fix."""
import pytest

from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError
from helpers import planned

BAD = [
    ({"workers": {"synchrotorn": 2}}, "workers.synchrotorn", "unknown worker type"),
    ({"workers": {"synchrotron": -1}}, "workers.synchrotron.count", "integer of 0 or more"),
    ({"workers": {"synchrotron": "2"}}, "workers.synchrotron.count", "integer of 0 or more"),
    ({"workers": {"synchrotron": 1.5}}, "workers.synchrotron.count", "integer of 0 or more"),
    ({"workers": {"synchrotron": True}}, "workers.synchrotron.count", "integer of 0 or more"),
    ({"workers": {"synchrotron": {"count": 2, "replicas": 3}}}, "workers.synchrotron", "unknown option"),
    ({"workers": {"background": 2}}, "workers.background.count", "at most 1"),
    ({"workers": {"synchrotron": {"count": 1, "host": "nowhere"}}}, "workers.synchrotron.host", "unknown host"),
    ({"workers": {"synchrotron": 2}, "worker_port_base": 8007}, "worker_port_base", "port 8008"),
    ({"workers": {"event_persister": 1}, "worker_port_base": 9093}, "worker_port_base", "port 9093"),
    ({"workers": {"synchrotron": 1}, "worker_port_base": 6379}, "worker_port_base", "redis"),
    ({"workers": {"synchrotron": 1}, "worker_port_base": 8080}, "worker_port_base", "proxy"),
    ({"workers": {"synchrotron": 1}, "worker_port_base": 80}, "worker_port_base", "between 1024"),
    ({"main": {"replication_port": 8008}}, "main.replication_port", "already used"),
    ({"main": {"address": "0.0.0.0"}}, "main.address", "wildcard"),
    ({"workers": {"event_persister": 2}, "synapse_version": "1.20.0"}, "workers.event_persister",
     "needs Synapse 1.21"),
    ({"synapse_version": "latest"}, "synapse_version", "1.163.2"),
    ({"workers": ["synchrotron"]}, "workers", "must be a mapping"),
    ({"extra_config": {"instance_map": {}}}, "extra_config.instance_map", "computed by the planner"),
    ({"extra_config": {"stream_writers": {"events": []}}}, "extra_config.stream_writers", "computed by"),
    ({"workers": {"synchrotron": {"count": 1, "config": {"worker_name": "x"}}}},
     "workers.synchrotron.config.worker_name", "computed by"),
    ({"database": {"cp_min": 20, "cp_max": 10}}, "database.cp_min", "must not exceed"),
    ({"database": {"cp_max": 0}}, "database.cp_max", "positive integer"),
]


@pytest.mark.parametrize("overrides,field,fragment", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_input_is_refused(overrides, field, fragment):
    overrides = dict(overrides)
    workers = overrides.pop("workers", {})
    with pytest.raises(PlanError) as err:
        planned(workers, **overrides)
    fields = [f for f, _ in err.value.errors]
    assert field in fields, err.value.format()
    assert fragment in err.value.format()


def test_all_problems_reported_at_once():
    with pytest.raises(PlanError) as err:
        planned({"synchrotorn": 1, "pusher": -2}, extra_config={"worker_replication_port": 9092})
    fields = set(f for f, _ in err.value.errors)
    assert fields == {"workers.synchrotorn", "workers.pusher.count", "extra_config.worker_replication_port"}
