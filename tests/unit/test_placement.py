"""Placement of workers across hosts (issue 5): inventory placement lists, per-entry host:,
the rules that refuse ambiguous or unreachable placements, and what every host agrees on."""
import ipaddress

import pytest

from ansible_collections.matrixops.synapse.plugins.module_utils.planner import PlanError, plan

from helpers import wish

# Three hosts as in inventories/multi-host: A runs main, Redis and PostgreSQL; B and C run
# workers; C also runs the proxy. Only B and C are in the synapse_workers group.
A, B, C = "host-a", "host-b", "host-c"
ADDR = {A: "10.0.0.10", B: "10.0.0.11", C: "10.0.0.12"}
WORKER_HOSTS = {B: {"address": ADDR[B]}, C: {"address": ADDR[C]}}


def three_hosts(workers, placement=None, exclusive=True, **overrides):
    """A wish as playbooks/site.yml builds it for the three hosts."""
    result = wish(workers, main={"host": A, "address": ADDR[A]}, redis={"host": A, "address": ADDR[A]},
                  database={"host": A, "address": ADDR[A]}, proxy={"host": C, "address": ADDR[C]},
                  hosts=dict(WORKER_HOSTS), placement=placement or {}, exclusive_hosts=exclusive)
    result.update(overrides)
    return result


def errors_of(the_wish):
    with pytest.raises(PlanError) as err:
        plan(the_wish)
    return err.value.errors


def by_name(result):
    return dict((w["name"], w) for w in result["workers"])


WISH = {"synchrotron": 2, "event_persister": 2, "client_reader": 1, "media_repository": 1,
        "federation_sender": 1, "pusher": {"count": 1, "host": C}}
PLACEMENT = {B: ["event_persister", "media_repository", "synchrotron1"],
             C: ["synchrotron2", "client_reader", "federation_sender"],
             A: [], "host-d": None}  # hosts without synapse_worker_placement


def test_inventory_placement_puts_entries_and_single_instances_on_their_hosts():
    result = plan(three_hosts(WISH, PLACEMENT))
    hosts = dict((n, w["host"]) for n, w in by_name(result).items())
    assert hosts == {
        "event_persister1": B, "event_persister2": B, "media_repository1": B, "synchrotron1": B,
        "synchrotron2": C, "client_reader1": C, "federation_sender1": C, "pusher1": C,
    }
    assert result["hosts"] == [A, B, C]
    assert result["main"]["host"] == A


def test_every_listener_binds_to_its_hosts_private_address():
    result = plan(three_hosts(WISH, PLACEMENT))
    for worker in result["workers"]:
        assert worker["address"] == ADDR[worker["host"]]
        for listener in worker["config"]["worker_listeners"]:
            assert listener["bind_addresses"] == [ADDR[worker["host"]]], worker["name"]
        assert worker["health_url"].startswith("http://%s:" % ADDR[worker["host"]])
    shared = result["shared_config"]
    for listener in shared["listeners"]:
        assert listener["bind_addresses"] == [ADDR[A]]
    for name, entry in shared["instance_map"].items():
        expected = ADDR[A] if name == "main" else ADDR[by_name(result)[name]["host"]]
        assert entry["host"] == expected
    assert shared["redis"]["host"] == ADDR[A] and shared["database"]["args"]["host"] == ADDR[A]
    for route in result["routes"]["routes"]:
        for server in route["servers"]:
            assert server["address"] == ADDR[by_name(result)[server["name"]]["host"]]
    assert result["routes"]["internal_url"] == "http://%s:8080" % ADDR[C]


def test_instances_split_across_hosts_get_ports_of_their_own_host():
    result = plan(three_hosts({"synchrotron": 2}, {B: ["synchrotron1"], C: ["synchrotron2"]}))
    one, two = by_name(result)["synchrotron1"], by_name(result)["synchrotron2"]
    assert (one["host"], two["host"]) == (B, C)
    assert one["ports"] == two["ports"]  # the first slot of the synchrotron block on each host
    pairs = [(row["host"], row["port"]) for row in result["ports"]]
    assert len(pairs) == len(set(pairs))


def test_plan_does_not_depend_on_the_order_hosts_come_in():
    forward = plan(three_hosts(WISH, PLACEMENT))
    backward = plan(three_hosts(WISH, dict(reversed(list(PLACEMENT.items())))))
    assert forward == backward


def test_per_entry_host_still_works_and_may_agree_with_placement():
    result = plan(three_hosts({"synchrotron": {"count": 2, "host": B}}, {B: ["synchrotron"]}))
    assert {w["host"] for w in result["workers"]} == {B}
    result = plan(three_hosts({"synchrotron": {"count": 2, "host": B}}))
    assert {w["host"] for w in result["workers"]} == {B}


def test_single_host_deployments_are_unchanged():
    """Without placement or exclusive_hosts, entries default to main's host as before."""
    result = plan(wish({"synchrotron": 1}))
    assert result["workers"][0]["host"] == "hs1"


def test_main_host_may_run_workers_when_it_is_a_worker_host():
    hosts = dict(WORKER_HOSTS)
    hosts[A] = {"address": ADDR[A]}
    result = plan(three_hosts({"background": 1, "synchrotron": 1}, {C: ["synchrotron"]}, hosts=hosts))
    assert dict((w["type"], w["host"]) for w in result["workers"]) == {"background": A, "synchrotron": C}


def test_services_say_where_redis_postgresql_and_the_proxy_run():
    services = plan(three_hosts({"synchrotron": 1}, {B: ["synchrotron"]}))["services"]
    assert services == {
        "redis": {"host": A, "address": ADDR[A], "port": 6379},
        "database": {"host": A, "address": ADDR[A], "port": 5432},
        "proxy": {"host": C, "address": ADDR[C], "client_port": 8080, "federation_port": 8448},
    }


# --------------------------------------------------------------------------- refused placements

def _one(errors, field):
    matching = [m for f, m in errors if f == field]
    assert matching, errors
    return matching[0]


def test_unknown_host_in_placement():
    message = _one(errors_of(three_hosts({"synchrotron": 1}, {"host-z": ["synchrotron"]})), "placement.host-z")
    assert "not a worker host" in message and "synapse_workers" in message and "synapse_worker_placement" in message


def test_placement_on_a_host_outside_the_worker_group():
    # A (main, Redis, PostgreSQL) is not in synapse_workers: placing a worker there is refused.
    message = _one(errors_of(three_hosts({"synchrotron": 1}, {A: ["synchrotron"]})), "placement.host-a")
    assert "not a worker host" in message and "host-b, host-c" in message


def test_entry_host_outside_the_worker_group():
    message = _one(errors_of(three_hosts({"synchrotron": {"count": 1, "host": A}})), "workers.synchrotron.host")
    assert "not a worker host" in message


def test_entry_placed_nowhere_when_main_runs_no_workers():
    message = _one(errors_of(three_hosts({"synchrotron": 1, "pusher": 1}, {B: ["synchrotron"]})),
                   "workers.pusher.host")
    assert "placed nowhere" in message and "main's host host-a" in message and "synapse_worker_placement" in message


def test_entry_placed_on_two_hosts():
    errors = errors_of(three_hosts({"synchrotron": 2}, {B: ["synchrotron"], C: ["synchrotron"]}))
    message = _one(errors, "placement.host-c")
    assert "already places on host host-b" in message and "one host" in message


def test_instance_placed_on_two_hosts():
    errors = errors_of(three_hosts({"synchrotron": 2}, {B: ["synchrotron1"], C: ["synchrotron1", "synchrotron2"]}))
    assert "'synchrotron1'" in _one(errors, "placement.host-c")


def test_entry_and_one_of_its_instances_on_different_hosts():
    errors = errors_of(three_hosts({"synchrotron": 2}, {B: ["synchrotron"], C: ["synchrotron2"]}))
    message = _one(errors, "placement.host-c")
    assert "list either the entry or its instances" in message


def test_placement_against_the_entrys_own_host():
    errors = errors_of(three_hosts({"synchrotron": {"count": 1, "host": B}}, {C: ["synchrotron"]}))
    assert "keep one of the two" in _one(errors, "placement.host-c")
    errors = errors_of(three_hosts({"synchrotron": {"count": 2, "host": B}}, {C: ["synchrotron2"]}))
    assert "keep one of the two" in _one(errors, "placement.host-c")


def test_unknown_entry_or_instance_name():
    errors = errors_of(three_hosts({"synchrotron": 2}, {B: ["synchrotorn"]}))
    message = _one(errors, "placement.host-b")
    assert "'synchrotorn'" in message and "synchrotron" in message
    # An instance the count does not create is unknown too.
    assert "'synchrotron3'" in _one(errors_of(three_hosts({"synchrotron": 2}, {B: ["synchrotron3"]})),
                                     "placement.host-b")


def test_placement_must_be_a_list_of_names():
    assert "must be a list" in _one(errors_of(three_hosts({"synchrotron": 1}, {B: {"synchrotron": 1}})),
                                    "placement.host-b")
    assert "must be a mapping" in _one(errors_of(three_hosts({"synchrotron": 1}, ["synchrotron"])), "placement")


def test_media_workers_split_by_placement_need_a_shared_store():
    workers = {"media_repository": 2}
    placement = {B: ["media_repository1"], C: ["media_repository2"]}
    message = _one(errors_of(three_hosts(workers, placement)), "workers.media_repository.host")
    assert "media_store_shared" in message and "host-b, host-c" in message
    assert plan(three_hosts(workers, placement, media_store_shared=True))


def test_port_clash_on_one_host_only():
    """The proxy's client port on C collides with the synchrotron block there, not on B."""
    fine = plan(three_hosts({"synchrotron": 1}, {B: ["synchrotron"]}))
    port = by_name(fine)["synchrotron1"]["ports"]["http"]
    clashing = dict(three_hosts({"synchrotron": 1}, {C: ["synchrotron"]}))
    clashing["proxy"] = dict(clashing["proxy"], client_port=port)
    message = _one(errors_of(clashing), "worker_port_base")
    assert "port %d on host host-c is already used by the proxy (client entrypoint)" % port in message
    assert "worker_port_base" in message
    # The same proxy port with the synchrotron on B: no clash, since nothing else listens there on B.
    moved = dict(clashing, placement={B: ["synchrotron"]})
    assert by_name(plan(moved))["synchrotron1"]["ports"]["http"] == port


def test_port_clash_with_postgresql_on_its_host_only():
    hosts = dict(WORKER_HOSTS)
    hosts[A] = {"address": ADDR[A]}
    clashing = three_hosts({"synchrotron": 1}, {A: ["synchrotron"]}, hosts=hosts)
    port = by_name(plan(dict(clashing, placement={B: ["synchrotron"]})))["synchrotron1"]["ports"]["http"]
    clashing["database"] = dict(clashing["database"], port=port)
    assert "already used by postgresql" in _one(errors_of(clashing), "worker_port_base")


# --------------------------------------------------------------------------- reachability

def test_loopback_address_refused_when_the_deployment_spans_hosts():
    hosts = {B: {"address": "127.0.0.1"}, C: {"address": ADDR[C]}}
    message = _one(errors_of(three_hosts({"synchrotron": 1}, {B: ["synchrotron"]}, hosts=hosts)),
                   "hosts.host-b.address")
    assert "loopback" in message and "synapse_private_address of host-b" in message


def test_loopback_main_refused_with_a_remote_proxy():
    the_wish = wish({"synchrotron": 1}, main={"host": "hs1", "address": "127.0.0.1"},
                    redis={"host": "hs1", "address": "127.0.0.1"}, database={"host": "hs1", "address": "127.0.0.1"},
                    proxy={"host": "edge", "address": "10.0.0.30"})
    assert "loopback" in _one(errors_of(the_wish), "main.address")


def test_loopback_fine_on_one_host():
    the_wish = wish({"synchrotron": 1}, main={"host": "hs1", "address": "127.0.0.1"},
                    redis={"host": "hs1", "address": "127.0.0.1"}, database={"host": "hs1", "address": "127.0.0.1"},
                    proxy={"host": "hs1"})
    assert plan(the_wish)["workers"][0]["address"] == "127.0.0.1"


def test_two_hosts_with_one_address():
    hosts = {B: {"address": ADDR[B]}, C: {"address": ADDR[B]}}
    errors = errors_of(three_hosts({"synchrotron": 1}, {B: ["synchrotron"]}, hosts=hosts,
                                   proxy={"host": C, "address": ADDR[B]}))
    assert any("same address" in m and "host-b" in m for _, m in errors), errors


def test_one_host_with_two_addresses():
    errors = errors_of(three_hosts({"synchrotron": 1}, {B: ["synchrotron"]},
                                   redis={"host": B, "address": "10.0.0.99"}))
    assert "make them agree" in _one(errors, "redis.address")


def test_ipv6_private_addresses():
    hosts = {B: {"address": "fd00::11"}, C: {"address": "fd00::12"}}
    result = plan(three_hosts({"synchrotron": 1}, {B: ["synchrotron"]}, hosts=hosts,
                              proxy={"host": C, "address": "fd00::12"}))
    worker = result["workers"][0]
    assert worker["config"]["worker_listeners"][0]["bind_addresses"] == ["fd00::11"]
    assert worker["health_url"].startswith("http://[fd00::11]:")
    assert ipaddress.ip_address(result["services"]["proxy"]["address"]).version == 6


@pytest.mark.parametrize("key", ["worker_replication_secret", "worker_replication_secret_path"])
def test_replication_secret_cannot_be_overridden(key):
    """One secret for every host: the collection writes it; a per-entry or shared override is refused."""
    assert "same file is given to every host" in _one(
        errors_of(wish({}, extra_config={key: "x"})), "extra_config.%s" % key)
    assert "delete the key" in _one(
        errors_of(wish({"synchrotron": {"count": 1, "config": {key: "x"}}})), "workers.synchrotron.config.%s" % key)
