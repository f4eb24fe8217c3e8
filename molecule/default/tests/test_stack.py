"""The deployed stack: every unit up, every process healthy, internals not exposed."""

import pytest

# The walking skeleton's wish in inventories/local/group_vars/all.yml.
EXPECTED_WORKERS = {
    "synchrotron": 2, "client_reader": 1, "event_persister": 2, "federation_sender": 1,
    "pusher": 1, "media_repository": 1, "background": 1,
}


def test_every_planned_worker_is_configured(deployed):
    for wtype, count in EXPECTED_WORKERS.items():
        assert deployed.names(wtype) == [f"{wtype}{i}" for i in range(1, count + 1)]
    assert len(deployed.workers) == sum(EXPECTED_WORKERS.values())


@pytest.mark.parametrize("unit", ["matrix-synapse.service", "redis-server.service",
                                  "postgresql@15-main.service", "haproxy.service"])
def test_service_units_active(host, unit):
    svc = host.service(unit)
    assert svc.is_running, unit
    assert svc.is_enabled, unit


def test_every_worker_unit_active_and_enabled(host, deployed):
    for name in deployed.workers:
        svc = host.service(f"matrix-synapse-worker@{name}.service")
        assert svc.is_running, name
        assert svc.is_enabled, name


def test_worker_units_ordered_after_main(host):
    unit = host.file("/etc/systemd/system/matrix-synapse-worker@.service").content_string
    assert "After=matrix-synapse.service" in unit
    assert "PartOf=matrix-synapse.target" in unit
    assert "Restart=on-failure" in unit
    assert host.check_output("systemctl show -p Type --value matrix-synapse.service") == "notify"


def test_every_process_answers_health(host, deployed):
    ports = [deployed.shared["listeners"][0]["port"]] + [deployed.http_port(n) for n in deployed.workers]
    for port in ports:
        out = host.check_output(f"curl -fsS http://127.0.0.1:{port}/health")
        assert out == "OK", port


def test_replication_listener_not_reachable_through_proxy(host, deployed, client_api, federation_api):
    # The path is refused on both entrypoints...
    for api in (client_api, federation_api):
        resp = api.post("/_synapse/replication/send_events/abc", json_body={})
        assert resp.status == 404, resp.status
        assert api.get("/_synapse/metrics").status == 404
    # ...while the replication listeners themselves do work on the private address.
    main_repl = deployed.shared["instance_map"]["main"]
    code = host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' http://{main_repl['host']}:{main_repl['port']}/_synapse/replication/x")
    assert code in ("400", "404", "405"), code  # answered by Synapse itself, not refused


def test_redis_requires_password_and_synapse_uses_it(host):
    with host.sudo():
        assert "NOAUTH" in host.run("redis-cli -h 127.0.0.1 ping").stdout
        password = host.file("/etc/matrix-synapse/secrets/redis_password").content_string.strip()
    assert host.run(f"REDISCLI_AUTH='{password}' redis-cli -h 127.0.0.1 ping").stdout.strip() == "PONG"
    clients = host.check_output(f"REDISCLI_AUTH='{password}' redis-cli -h 127.0.0.1 client list")
    # Main + every worker hold connections to Redis (pub/sub replication).
    assert clients.count("\n") + 1 >= 10


def test_database_collation_and_connections(host, deployed):
    out = host.check_output(
        "sudo -u postgres psql -tA -c \"SELECT datcollate, datctype, pg_encoding_to_char(encoding) "
        "FROM pg_database WHERE datname='synapse'\"")
    assert out == "C|C|UTF8"
    max_conn = int(host.check_output("sudo -u postgres psql -tA -c 'SHOW max_connections'"))
    # Every process's own pool (a worker's config may size its own) fits, with room to spare.
    shared = deployed.shared["database"]["args"]["cp_max"]
    pools = shared + sum(w.get("database", {}).get("args", {}).get("cp_max", shared) for w in deployed.workers.values())
    assert max_conn > pools


def test_no_secret_in_shared_config(host):
    with host.sudo():
        text = host.file("/etc/matrix-synapse/homeserver.yaml").content_string
        for name in ("macaroon_secret_key", "form_secret", "registration_shared_secret",
                     "worker_replication_secret", "redis_password", "database_password"):
            secret = host.file(f"/etc/matrix-synapse/secrets/{name}").content_string.strip()
            assert len(secret) >= 32
            assert secret not in text, name


def test_well_known_delegation(client_api):
    server = client_api.get("/.well-known/matrix/server")
    assert server.status == 200 and server.json() == {"m.server": "matrix.test:443"}
    client = client_api.get("/.well-known/matrix/client")
    assert client.status == 200 and client.json() == {"m.homeserver": {"base_url": "https://matrix.test"}}


def test_admin_api_restricted_to_admin_networks(host, client_api):
    # From the controller (through Docker's bridge, inside 172.16.0.0/12): allowed.
    assert client_api.get("/_synapse/admin/v1/server_version").status == 200
    # From the host itself (127.0.0.1, not in the list): refused by the proxy.
    code = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/_synapse/admin/v1/server_version")
    assert code == "403"
    code = host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/_matrix/client/versions")
    assert code == "200"
