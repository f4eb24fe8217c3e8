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
    ({"workers": {"background": 1, "appservice": 1}, "worker_port_base": 7908}, "worker_port_base", "port 8008"),
    ({"workers": {"event_persister": 1}, "worker_port_base": 8593}, "worker_port_base", "port 9093"),
    ({"workers": {"appservice": 1}, "worker_port_base": 6379}, "worker_port_base", "redis"),
    ({"workers": {"appservice": 1}, "worker_port_base": 8080}, "worker_port_base", "proxy"),
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
    # Cardinality per stream and per type (C03).
    ({"workers": {"typing_persister": 2}}, "workers.typing_persister.count", "exactly one writer"),
    ({"workers": {"to_device": 2}}, "workers.to_device.count", "exactly one writer"),
    ({"workers": {"presence_writer": 3}}, "workers.presence_writer.count", "exactly one writer"),
    ({"workers": {"push_rules": 2}}, "workers.push_rules.count", "exactly one writer"),
    ({"workers": {"account_data": 2}}, "workers.account_data.count", "exactly one writer"),
    ({"workers": {"receipts_account": 2}}, "workers.receipts_account.count", "exactly one writer"),
    ({"workers": {"receipts_account": 1, "account_data": 1}}, "workers.account_data/receipts_account.count",
     "exactly one writer"),
    ({"workers": {"appservice": 2}}, "workers.appservice.count", "notify_appservices_from_worker"),
    ({"workers": {"user_dir": 2}}, "workers.user_dir.count", "update_user_directory_from_worker"),
    ({"workers": {"sso_login": 2}}, "workers.sso_login.count", "one process"),
    # Merged processes.
    ({"workers": {"mix": {"types": ["typing_persister", "receipts"], "count": 2}}}, "workers.mix.count",
     "exactly one writer"),
    ({"workers": {"mix": {"types": ["background", "pusher"], "count": 3}}}, "workers.mix.count", "at most 1"),
    ({"workers": {"mix": {"types": ["typing_persister", "typo"]}}}, "workers.mix.types", "unknown worker type"),
    ({"workers": {"mix": {"types": []}}}, "workers.mix.types", "non-empty list"),
    ({"workers": {"mix": {"types": ["pusher", "pusher"]}}}, "workers.mix.types", "twice"),
    ({"workers": {"pusher": {"types": ["pusher", "background"]}}}, "workers.pusher", "cannot be named after"),
    ({"workers": {"Mix": {"types": ["pusher"]}}}, "workers.Mix", "lower-case"),
    # Names.
    ({"workers": {"synchrotron": {"count": 1, "names": ["sync_a", "sync_b"]}}}, "workers.synchrotron.names",
     "count is 1"),
    ({"workers": {"synchrotron": {"names": ["a1"]}, "client_reader": {"names": ["a1"]}}}, "workers.synchrotron",
     "not unique"),
    ({"workers": {"synchrotron": {"names": ["main"]}}}, "workers.synchrotron", "not allowed"),
    ({"workers": {"synchrotron": {"names": ["Sync-1"]}}}, "workers.synchrotron", "not allowed"),
    ({"workers": {"synchrotron": {"count": 1, "name": "Sync"}}}, "workers.synchrotron.name", "lower-case"),
    ({"workers": {"synchrotron": {"names": "sync1"}}}, "workers.synchrotron.names", "list of instance names"),
    # Limits.
    ({"workers": {"synchrotron": {"count": 1, "limits": {"memory_max": "lots"}}}},
     "workers.synchrotron.limits.memory_max", "512M"),
    ({"workers": {"synchrotron": {"count": 1, "limits": {"cpu_weight": 0}}}},
     "workers.synchrotron.limits.cpu_weight", "1 to 10000"),
    ({"workers": {"synchrotron": {"count": 1, "limits": {"cpu_quota": "1.5"}}}},
     "workers.synchrotron.limits.cpu_quota", "150%"),
    ({"workers": {"synchrotron": {"count": 1, "limits": {"memory_high": "2G", "memory_max": "1G"}}}},
     "workers.synchrotron.limits.memory_high", "must not exceed"),
    ({"workers": {"synchrotron": {"count": 1, "limits": {"swap": "1G"}}}}, "workers.synchrotron.limits.swap",
     "unknown limit"),
    # Versions, experimental, metrics.
    ({"workers": {"device_lists": 1}, "synapse_version": "1.134.2"}, "workers.device_lists", "1.135"),
    ({"workers": {"receipts": 2}, "synapse_version": "1.95.1"}, "workers.receipts.count", "1.96"),
    ({"workers": {"thread_subscriptions": 1}}, "workers.thread_subscriptions", "allow_experimental"),
    ({"metrics": "yes"}, "metrics", "true or false"),
    ({"metrics": True, "main": {"metrics_port": 9093}}, "main.metrics_port", "already used"),
    # Legacy flags and removed keys in per-worker config.
    ({"workers": {"pusher": {"count": 1, "config": {"start_pushers": False}}}},
     "workers.pusher.config.start_pushers", "legacy flag"),
    ({"workers": {"synchrotron": {"count": 1, "config": {"worker_replication_http_tls": True}}}},
     "workers.synchrotron.config.worker_replication_http_tls", "delete the key"),
    ({"extra_config": {"worker_main_http_uri": "http://x"}}, "extra_config.worker_main_http_uri", "unused"),
    ({"extra_config": {"send_federation": False}}, "extra_config.send_federation", "legacy flag"),
    ({"extra_config": {"federation_sender_instances": ["x"]}}, "extra_config.federation_sender_instances",
     "computed by"),
    # Ports on one host.
    ({"workers": {"appservice": 1}, "worker_port_base": 5432}, "worker_port_base", "postgresql"),
    ({"workers": {"appservice": 1}, "worker_port_base": 8448}, "worker_port_base", "federation entrypoint"),
    ({"workers": {"synchrotron": 1}, "worker_port_base": 65600}, "worker_port_base", "between 1024"),
    ({"redis": {"port": 8008}}, "redis.port", "already used"),
    ({"proxy": {"client_port": 70000}}, "proxy.client_port", "between 1 and 65535"),
    ({"hosts": {"hs2": {"address": "::"}}}, "hosts.hs2.address", "wildcard"),
    ({"proxy": {"address": "0.0.0.0"}}, "proxy.address", "wildcard"),
    ({"workers": {"synchrotron": 101}}, "workers.synchrotron.count", "worker_port_block"),
    ({"worker_port_block": 0}, "worker_port_block", "1 to 10000"),
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


NAMES = {"workers": "synapse_workers", "database.cp_min": "synapse_database_cp_min",
         "database.cp_max": "synapse_database_cp_max", "allow_experimental": "synapse_allow_experimental",
         "metrics": "synapse_metrics", "main.limits": "synapse_main_limits"}


def test_errors_can_name_the_variables_the_operator_set():
    with pytest.raises(PlanError) as info:
        planned({"synchrotron": -1, "background": {"count": 1, "limits": {"memory_max": "lots"}}},
                database={"cp_min": 9, "cp_max": 3}, main={"limits": {"cpu_weight": 0}})
    renamed = dict(info.value.renamed(NAMES).errors)
    assert "synapse_workers.synchrotron.count" in renamed
    assert "synapse_workers.background.limits.memory_max" in renamed
    assert "synapse_main_limits.cpu_weight" in renamed
    assert renamed["synapse_database_cp_min"].startswith("must not exceed synapse_database_cp_max (")
    assert not [f for f in renamed if f.startswith(("workers.", "database.", "main."))]


def test_renaming_touches_field_names_in_messages_not_plain_words():
    error = PlanError([("workers.x", "set allow_experimental: true to use it; metrics and workers stay"),
                       ("hosts", "also used by workers.y[0]")])
    renamed = error.renamed(NAMES).errors
    assert renamed[0] == ("synapse_workers.x", "set synapse_allow_experimental: true to use it; metrics and workers stay")
    assert renamed[1] == ("hosts", "also used by synapse_workers.y[0]")
    assert error.renamed({}).errors == error.errors


def test_too_many_instances_for_the_port_block_names_the_count_asked_and_the_variable_to_set():
    with pytest.raises(PlanError) as info:
        planned({"synchrotron": 150})
    renamed = dict(info.value.renamed(dict(NAMES, worker_port_block="synapse_worker_port_block")).errors)
    assert renamed["synapse_workers.synchrotron.count"] == (
        "150 instances of synapse_workers.synchrotron on host hs1 need 150 ports, more than the 100 each entry "
        "has; lower the count, place some of them on other hosts, or set synapse_worker_port_block: 150 or more")


def test_a_number_given_as_a_string_is_refused_with_the_way_to_give_it():
    with pytest.raises(PlanError) as info:
        planned({"synchrotron": "2"}, database={"cp_max": "40"}, worker_port_base="18100")
    errors = dict(info.value.renamed(dict(NAMES, worker_port_base="synapse_worker_port_base")).errors)
    assert errors["synapse_database_cp_max"] == (
        "must be a positive integer, got the string '40': give numbers as YAML or JSON "
        "(-e '{\"name\": 40}' or -e @vars.yml), -e name=value passes strings")
    assert "got the string '2': give numbers" in errors["synapse_workers.synchrotron.count"]
    assert "got the string '18100': give numbers" in errors["synapse_worker_port_base"]
    # Anything else is quoted as it is.
    with pytest.raises(PlanError) as info:
        planned({"synchrotron": "two"})
    assert "got 'two'" in info.value.format()
