"""The host firewall (firewall_enabled: true in the example inventory): a machine on the same
network that is no part of the deployment reaches the proxy's entrypoints and nothing else;
the Synapse hosts reach what they need; only the proxy reaches Synapse's HTTP listeners.
Each refusal is shown to come from the firewall (its counter), not from a closed port."""

import pytest

from conftest import ADDRESS, MAIN, PROBE, PROXY, SYNAPSE_HOSTS, WORKERS, connect

TABLE = "inet matrixops_synapse"


def refused_count(host):
    """Packets the firewall of ``host`` refused so far (its counter before the final reject)."""
    with host.sudo():
        out = host.check_output(f"nft list table {TABLE}")
    line = next(line for line in out.splitlines() if "reject with tcp reset" in line)
    return int(line.split("packets ")[1].split()[0])


@pytest.fixture(scope="module")
def internal(deployment):
    """(address, port, what) of every listener that is not the proxy's entrypoints."""
    main_ports = deployment.shared["instance_map"]["main"]["port"], deployment.shared["listeners"][0]["port"]
    targets = [(ADDRESS[MAIN], 5432, "PostgreSQL"), (ADDRESS[MAIN], 6379, "Redis"),
               (ADDRESS[MAIN], main_ports[0], "main replication"), (ADDRESS[MAIN], main_ports[1], "main client")]
    for name, config in sorted(deployment.workers.items()):
        for listener in config["worker_listeners"]:
            names = [n for r in listener.get("resources", []) for n in r["names"]]
            targets.append((ADDRESS[deployment.placed[name]], listener["port"], f"{name} {'/'.join(names)}"))
    return targets


@pytest.mark.parametrize("name", SYNAPSE_HOSTS)
def test_ruleset_loaded_checked_and_kept_across_boots(hosts, name):
    host = hosts[name]
    assert host.service("matrixops-synapse-firewall.service").is_enabled
    with host.sudo():
        assert host.run("nft -c -f /etc/nftables.d/matrixops-synapse.nft").rc == 0
        assert "policy drop" in host.check_output(f"nft list chain {TABLE} input")


@pytest.mark.parametrize("action", ["restart", "reload"])
def test_table_comes_back_when_nftables_flushes_the_ruleset(hosts, action):
    """Debian's nftables.service flushes everything when it (re)starts or reloads."""
    host = hosts[WORKERS]
    with host.sudo():
        host.check_output(f"systemctl {action} nftables.service")
        assert "policy drop" in host.check_output(f"nft list chain {TABLE} input")


def test_outsider_reaches_the_proxy_entrypoints(hosts):
    results = connect(hosts[PROBE], [(ADDRESS[PROXY], 8080), (ADDRESS[PROXY], 8448)])
    assert set(results.values()) == {"open"}, results


def test_outsider_reaches_nothing_else(hosts, internal):
    before = {n: refused_count(hosts[n]) for n in SYNAPSE_HOSTS}
    results = connect(hosts[PROBE], [(a, p) for a, p, _ in internal])
    reached = [what for a, p, what in internal if results[(a, p)] == "open"]
    assert reached == [], reached
    after = {n: refused_count(hosts[n]) for n in SYNAPSE_HOSTS}
    # Every attempt was refused by a firewall, one count per attempt on the targeted host.
    per_host = {n: sum(1 for a, _, _ in internal if a == ADDRESS[n]) for n in SYNAPSE_HOSTS}
    for name in SYNAPSE_HOSTS:
        assert after[name] - before[name] >= per_host[name], (name, before, after)


def test_synapse_hosts_reach_postgresql_redis_and_replication(hosts, internal):
    needed = [(a, p) for a, p, what in internal if what in ("PostgreSQL", "Redis", "main replication")
              or what.endswith("replication")]
    assert len(needed) >= 5  # PostgreSQL, Redis, main's and two event persisters' replication
    for name in (WORKERS, PROXY):
        results = connect(hosts[name], needed)
        assert set(results.values()) == {"open"}, (name, results)


def test_only_the_proxy_reaches_synapse_http_listeners(hosts, deployment):
    targets = [(ADDRESS[MAIN], deployment.shared["listeners"][0]["port"])]
    for name in deployment.names("synchrotron") + deployment.names("client_reader"):
        if deployment.placed[name] != WORKERS:
            continue
        targets.append((ADDRESS[WORKERS], deployment.port(name, "client")))
    assert len(targets) >= 2
    from_proxy = connect(hosts[PROXY], targets)
    assert set(from_proxy.values()) == {"open"}, from_proxy
    # A worker host is a Synapse host, but it has no business with main's client listener.
    from_worker = connect(hosts[WORKERS], targets[:1])
    assert set(from_worker.values()) == {"Connection refused"}, from_worker
