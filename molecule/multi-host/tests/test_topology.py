"""Three hosts, one plan: each process where the inventory placed it, every host agreeing on
names, addresses, ports and secrets, every listener on its host's private address."""

import hashlib
import json

import pytest

from conftest import ADDRESS, MAIN, PROXY, SYNAPSE_HOSTS, WORKERS, connect, read_yaml

# inventories/multi-host/host_vars (linked from this scenario's host_vars): entries and single
# instances placed per host. Main's host is not in synapse_workers and runs no worker.
PLACED = {
    MAIN: [],
    WORKERS: ["background1", "event_persister1", "event_persister2", "media_repository1", "synchrotron1"],
    PROXY: ["client_reader1", "federation_sender1", "pusher1", "synchrotron2"],
}


def test_each_worker_runs_on_the_host_the_inventory_placed_it(hosts, deployment):
    for name, expected in PLACED.items():
        assert deployment.on(name) == expected, name
        active = hosts[name].check_output(
            "systemctl list-units --state=active --no-legend --plain 'matrix-synapse-worker@*' | awk '{print $1}'")
        assert sorted(u[len("matrix-synapse-worker@"):-len(".service")] for u in active.split()) == expected, name
    assert hosts[MAIN].service("matrix-synapse.service").is_running
    for name in (WORKERS, PROXY):
        assert not hosts[name].file("/etc/systemd/system/matrix-synapse.service").exists
    assert hosts[PROXY].service("haproxy.service").is_running
    assert not hosts[WORKERS].exists("haproxy") and not hosts[MAIN].exists("haproxy")


@pytest.mark.parametrize("path", [
    "/etc/matrix-synapse/homeserver.yaml",
    "/etc/matrix-synapse/secrets/worker_replication_secret",
    "/etc/matrix-synapse/secrets/redis_password",
    "/etc/matrix-synapse/signing.key",
])
def test_every_host_has_the_same_shared_config_and_secrets(hosts, path):
    digests = {}
    for name in SYNAPSE_HOSTS:
        with hosts[name].sudo():
            digests[name] = hashlib.sha256(hosts[name].file(path).content).hexdigest()
    assert len(set(digests.values())) == 1, digests


def test_replication_secret_is_on_and_shared(hosts, deployment):
    """Main's replication listener answers only with the secret, and the copy on a worker host works."""
    assert deployment.shared["worker_replication_secret_path"] == "/etc/matrix-synapse/secrets/worker_replication_secret"
    url = "http://%s:%d/_synapse/replication/get_repl_stream_updates/typing/t1?from_token=0&upto_token=0" % (
        ADDRESS[MAIN], deployment.shared["instance_map"]["main"]["port"])
    worker = hosts[WORKERS]
    with worker.sudo():
        secret = worker.file(deployment.shared["worker_replication_secret_path"]).content_string.strip()
    assert len(secret) >= 32

    def status(*header):
        args = " ".join("-H '%s'" % h for h in header)
        return worker.check_output("curl -s -o /dev/null -w '%%{http_code}' %s '%s'" % (args, url))

    assert status() != "200"
    assert status("Authorization: Bearer not-the-secret") != "200"
    assert status("Authorization: Bearer " + secret) == "200"


def test_instance_map_and_routes_use_each_hosts_private_address(hosts, deployment):
    for name, entry in deployment.shared["instance_map"].items():
        expected = ADDRESS[MAIN] if name == "main" else ADDRESS[deployment.placed[name]]
        assert entry["host"] == expected, name
    assert deployment.shared["redis"]["host"] == ADDRESS[MAIN]
    assert deployment.shared["database"]["args"]["host"] == ADDRESS[MAIN]
    # The proxy on its own host sends each request to the private address of the host running
    # the process (HAProxy's own view of its servers, from its admin socket).
    servers = hosts[PROXY].check_output("echo 'show servers state' | socat stdio /run/haproxy/admin.sock")
    seen = {}
    for line in servers.splitlines()[2:]:
        fields = line.split()
        if len(fields) > 5:
            seen[fields[3]] = fields[4]  # srv_name -> srv_addr
    for worker, where in deployment.placed.items():
        if worker in seen:
            assert seen[worker] == ADDRESS[where], worker
    assert seen.get("main") == ADDRESS[MAIN]
    assert {seen[w] for w in seen if w != "main"} == {ADDRESS[WORKERS], ADDRESS[PROXY]}


def _listening(host):
    """(address, port, process) of every listening TCP socket on ``host``."""
    with host.sudo():
        out = host.check_output("ss -ltnpH")
    result = []
    for line in out.splitlines():
        fields = line.split()
        local, users = fields[3], " ".join(fields[5:])
        address, _, port = local.rpartition(":")
        process = users.split('"')[1] if '"' in users else "?"
        result.append((address.strip("[]"), int(port), process))
    return result


@pytest.mark.parametrize("name", SYNAPSE_HOSTS)
def test_listeners_bind_the_private_address_only(hosts, name):
    for address, port, process in _listening(hosts[name]):
        if address == "127.0.0.11":
            continue  # Docker's embedded DNS resolver, not ours
        if process == "haproxy":
            # The entrypoints are the public face of the deployment, on purpose.
            assert name == PROXY and port in (8080, 8448), (address, port)
        elif process in ("postgres", "redis-server"):
            assert address in ("127.0.0.1", ADDRESS[name]), (process, address, port)
        else:
            assert address == ADDRESS[name], (process, address, port)


def test_a_worker_on_another_host_reaches_main_redis_and_postgresql(hosts, deployment):
    main = deployment.shared["instance_map"]["main"]["port"]
    results = connect(hosts[WORKERS], [(ADDRESS[MAIN], main), (ADDRESS[MAIN], 5432), (ADDRESS[MAIN], 6379)])
    assert set(results.values()) == {"open"}, results


def test_redis_wants_the_password(hosts):
    out = hosts[WORKERS].check_output(
        "python3 -c \"import socket; s=socket.create_connection(('%s', 6379), 3); s.sendall(b'PING\\r\\n');"
        " print(s.recv(100).decode())\"" % ADDRESS[MAIN])
    assert out.startswith("-NOAUTH"), out


def test_postgresql_accepts_only_synapse_hosts(hosts):
    with hosts[MAIN].sudo():
        rules = hosts[MAIN].check_output(
            "sudo -u postgres psql -tA -c \"SELECT type, database, user_name, address, netmask, auth_method "
            "FROM pg_hba_file_rules WHERE type = 'host'\"")
    remote = set()
    for line in rules.splitlines():
        kind, database, user, address, netmask, method = line.split("|")
        if address not in ("127.0.0.1", "::1"):
            assert (database, user, netmask, method) == ("{synapse}", "{synapse}", "255.255.255.255", "scram-sha-256"), line
            remote.add(address)
    assert remote == {ADDRESS[n] for n in SYNAPSE_HOSTS}


def test_the_deployed_record_names_every_host(hosts):
    with hosts[MAIN].sudo():
        record = json.loads(hosts[MAIN].file("/etc/matrix-synapse/deployed.json").content_string)
    plan = record["plan"]
    assert plan["hosts"] == sorted(SYNAPSE_HOSTS)
    assert plan["services"]["proxy"] == {"host": PROXY, "address": ADDRESS[PROXY],
                                         "client_port": 8080, "federation_port": 8448}
    assert read_yaml(hosts[WORKERS], "/etc/matrix-synapse/homeserver.yaml")["instance_map"] == \
        plan["shared_config"]["instance_map"]
