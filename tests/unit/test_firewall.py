"""The host firewall computed from the plan: each port open only to the hosts that need it."""
import pytest

from ansible_collections.matrixops.synapse.plugins.module_utils.firewall import ANY, FirewallError, host_rules
from ansible_collections.matrixops.synapse.plugins.module_utils.planner import plan

from test_placement import ADDR, A, B, C, three_hosts

OUTSIDER = "host-d"  # in the inventory, runs nothing of Synapse's

SYNAPSE_HOSTS = sorted("%s/32" % ADDR[h] for h in (A, B, C))
PROXY = ["%s/32" % ADDR[C]]


@pytest.fixture(scope="module")
def result():
    return plan(three_hosts(
        {"synchrotron": 2, "event_persister": 1, "pusher": 1, "media_repository": 1},
        {B: ["synchrotron1", "event_persister", "pusher", "media_repository"], C: ["synchrotron2"]}))


def table(rules):
    return dict((r["port"], r["sources"]) for r in rules if r["protocol"] == "tcp")


def worker(result, name):
    return next(w for w in result["workers"] if w["name"] == name)


def test_database_host_opens_postgresql_redis_and_main_to_the_right_hosts(result):
    rules = table(host_rules(result, A))
    assert rules == {
        22: ANY,
        5432: SYNAPSE_HOSTS,
        6379: SYNAPSE_HOSTS,
        8008: PROXY,          # main's client listener: the proxy only
        9093: SYNAPSE_HOSTS,  # main's replication listener
    }


def test_worker_host_opens_routed_http_to_the_proxy_and_replication_to_synapse_hosts(result):
    rules = table(host_rules(result, B))
    for name in ("synchrotron1", "media_repository1"):
        assert rules[worker(result, name)["ports"]["http"]] == PROXY, name
    persister = worker(result, "event_persister1")
    assert rules[persister["ports"]["replication"]] == SYNAPSE_HOSTS
    # The persister's client listener is routed (room event sends); the pusher's is health-only.
    pusher = worker(result, "pusher1")
    assert pusher["ports"]["http"] not in rules
    assert 8080 not in rules and 5432 not in rules and 6379 not in rules
    assert rules[22] == ANY


def test_proxy_host_opens_its_entrypoints_to_anyone(result):
    rules = table(host_rules(result, C))
    assert rules[8080] == ANY and rules[8448] == ANY
    assert rules[worker(result, "synchrotron2")["ports"]["http"]] == PROXY  # proxy and worker on one host


def test_a_host_running_nothing_keeps_only_ssh(result):
    assert table(host_rules(result, OUTSIDER)) == {22: ANY}


def test_no_port_of_the_plan_is_open_to_anyone_except_the_entrypoints(result):
    for host in (A, B, C):
        open_to_all = [r["port"] for r in host_rules(result, host) if r["sources"] == ANY]
        assert sorted(open_to_all) == ([22, 8080, 8448] if host == C else [22]), host


def test_every_listener_of_the_plan_is_covered_or_deliberately_closed(result):
    """A listener another host must reach is open to exactly those hosts."""
    routed = set(s["name"] for r in result["routes"]["routes"] for s in r["servers"])
    for row in result["ports"]:
        rules = table(host_rules(result, row["host"]))
        if row["listener"] == "replication":
            assert rules[row["port"]] == SYNAPSE_HOSTS
        elif row["listener"] == "client" or row["process"] in routed:
            assert rules[row["port"]] == PROXY
        else:
            assert row["port"] not in rules


def test_metrics_only_from_metrics_sources():
    result = plan(three_hosts({"synchrotron": 1}, {B: ["synchrotron"]}, metrics=True))
    metrics_port = next(r["port"] for r in result["ports"] if r["host"] == B and r["listener"] == "metrics")
    assert metrics_port not in table(host_rules(result, B))
    rules = host_rules(result, B, metrics_sources=["192.0.2.7", "2001:db8::/64"])
    rule = next(r for r in rules if r["port"] == metrics_port)
    assert rule["ipv4"] == ["192.0.2.7/32"] and rule["ipv6"] == ["2001:db8::/64"]
    assert rule["sources"] == ["192.0.2.7/32", "2001:db8::/64"]


def test_sources_split_per_ip_version():
    hosts = {B: {"address": "fd00::11"}, C: {"address": ADDR[C]}}
    result = plan(three_hosts({"event_persister": 1}, {B: ["event_persister"]}, hosts=hosts))
    rule = next(r for r in host_rules(result, A) if r["port"] == 5432)
    # C only runs the proxy here: it is no Synapse host, so it gets no access to PostgreSQL.
    assert rule["ipv4"] == ["%s/32" % ADDR[A]] and rule["ipv6"] == ["fd00::11/128"]


def test_ssh_port_sources_and_extra_rules(result):
    rules = host_rules(result, B, ssh_port=2222, ssh_sources=["192.0.2.0/24"],
                       extra_rules=[{"port": 68, "protocol": "udp", "purpose": "DHCP"},
                                    {"port": "9100", "sources": ["10.9.9.9"], "purpose": "node exporter"}])
    ssh = next(r for r in rules if r["port"] == 2222)
    assert ssh["sources"] == ["192.0.2.0/24"] and 22 not in table(rules)
    dhcp = next(r for r in rules if r["protocol"] == "udp")
    assert (dhcp["port"], dhcp["sources"]) == (68, ANY)
    assert table(rules)[9100] == ["10.9.9.9/32"]


@pytest.mark.parametrize("kwargs, field, text", [
    ({"ssh_port": 0}, "ssh_port", "from 1 to 65535"),
    ({"ssh_sources": ["not-an-address"]}, "ssh_sources", "not an address"),
    ({"metrics_sources": "10.0.0.0/33"}, "metrics_sources", "not an address"),
    ({"extra_rules": [{"port": 9100, "protocol": "sctp"}]}, "extra_rules[0].protocol", "tcp or udp"),
    ({"extra_rules": [{"port": 9100, "from": "x"}]}, "extra_rules[0]", "unknown key(s) from"),
    ({"extra_rules": ["9100"]}, "extra_rules[0]", "must be a mapping"),
    ({"extra_rules": [{"port": 5432}]}, "tcp/5432", "one port can only be opened once"),
])
def test_bad_input_names_the_field(result, kwargs, field, text):
    with pytest.raises(FirewallError) as err:
        host_rules(result, A, **kwargs)
    assert any(f == field and text in m for f, m in err.value.errors), err.value.errors


def test_plan_without_services_is_refused(result):
    old = dict(result)
    del old["services"]
    with pytest.raises(FirewallError) as err:
        host_rules(old, A)
    assert err.value.errors[0][0] == "plan.services.proxy.address"
