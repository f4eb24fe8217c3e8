"""Shared helpers for the testinfra tests of the ``default`` scenario.

Molecule runs these with ``pytest --connection=ansible --ansible-inventory=...``, so the
``host`` fixture (from pytest-testinfra) reaches every instance through Ansible's docker
connection. HTTP checks go through the ports the scenario publishes on the controller's
loopback interface (see ``published_ports`` in ../molecule.yml); never use a container's
bridge address: that traffic is not allowed on the machines this project runs on.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

import pytest

#: Host names the HTTP helpers accept. Anything else is refused before a socket opens.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

CLIENT_BASE_URL = os.environ.get("MATRIXOPS_CLIENT_URL", "http://127.0.0.1:18080")
FEDERATION_BASE_URL = os.environ.get("MATRIXOPS_FEDERATION_URL", "http://127.0.0.1:18448")


def _assert_loopback(url: str) -> None:
    hostname = urllib.parse.urlsplit(url).hostname or ""
    if hostname in LOOPBACK_HOSTS:
        return
    try:
        if ipaddress.ip_address(hostname).is_loopback:
            return
    except ValueError:
        pass
    raise AssertionError(f"tests may only talk to loopback addresses, not {url!r}")


@dataclass
class Response:
    """What :class:`HttpClient` returns; non-2xx statuses are returned, not raised."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class HttpClient:
    """Minimal HTTP client (stdlib only) bound to one loopback base URL."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        _assert_loopback(base_url)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        access_token: str | None = None,
    ) -> Response:
        """``json_body`` is sent as JSON; ``data`` (raw bytes, e.g. a media upload) otherwise."""
        url = self.url(path)
        _assert_loopback(url)
        hdrs = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        if access_token:
            hdrs["Authorization"] = f"Bearer {access_token}"
        req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
        # No proxy, ever: an environment HTTP(S)_PROXY must not capture loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, dict(err.headers.items()), err.read())

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Response:
        return self.request("PUT", path, **kwargs)


def wait_until(
    check: Callable[[], Any], *, timeout: float = 60.0, interval: float = 1.0, what: str = "condition"
) -> Any:
    """Call ``check`` until it returns a truthy value without raising; return that value."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, AssertionError, ValueError) as err:  # connection refused, reset, bad JSON
            last_error = err
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last_error!r}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def client_api() -> HttpClient:
    """Client-server API through the proxy (container port 8080, published on loopback)."""
    return HttpClient(CLIENT_BASE_URL)


@pytest.fixture(scope="session")
def federation_api() -> HttpClient:
    """Federation API through the proxy (container port 8448, published on loopback)."""
    return HttpClient(FEDERATION_BASE_URL)


@pytest.fixture(scope="session")
def wait() -> Callable[..., Any]:
    """The :func:`wait_until` helper as a fixture, for tests that poll."""
    return wait_until


# --------------------------------------------------------------------------- deployed topology

import yaml  # noqa: E402  (PyYAML comes with ansible-core)


@dataclass
class Deployed:
    """What is really configured on the host: main and every worker's own config file."""

    shared: dict[str, Any]
    workers: dict[str, dict[str, Any]]

    def names(self, prefix: str) -> list[str]:
        return sorted(n for n in self.workers if n.startswith(prefix))

    def http_port(self, name: str) -> int:
        return self.workers[name]["worker_listeners"][0]["port"]


def journal(host: Any, unit: str, since: str | None = None) -> str:
    """The journal of one systemd unit on the host (as root)."""
    cmd = f"journalctl --no-pager -o cat -u {unit}"
    if since:
        cmd += f" --since '{since}'"
    return host.check_output(cmd + " 2>/dev/null || true")


@pytest.fixture(scope="module")
def deployed(host: Any) -> Deployed:
    with host.sudo():
        shared = yaml.safe_load(host.file("/etc/matrix-synapse/homeserver.yaml").content_string)
        names = host.check_output("ls /etc/matrix-synapse/workers").split()
        workers = {
            n[: -len(".yaml")]: yaml.safe_load(host.file(f"/etc/matrix-synapse/workers/{n}").content_string)
            for n in names
            if n.endswith(".yaml")
        }
    return Deployed(shared, workers)


# --------------------------------------------------------------------------- users and logs

import hashlib  # noqa: E402
import hmac  # noqa: E402


def registration_secret(host: Any) -> str:
    """The shared registration secret the playbook generated on the host."""
    with host.sudo():
        return host.file("/etc/matrix-synapse/secrets/registration_shared_secret").content_string.strip()


def register(client_api: HttpClient, shared_secret: str, localpart: str, password: str,
             admin: bool = False) -> dict[str, Any]:
    """Shared-secret registration (Synapse's admin API), as register_new_matrix_user does it.

    Returns Synapse's answer: user_id, access_token, device_id.
    """
    nonce = client_api.get("/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                             b"admin" if admin else b"notadmin"]))
    resp = client_api.post("/_synapse/admin/v1/register", json_body={
        "nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": mac.hexdigest()})
    assert resp.status == 200, resp.body
    return resp.json()


def served_by(host: Any, since: str, needles: dict[str, str]) -> dict[str, set[str]]:
    """Which Synapse processes logged each request since ``since`` (seconds since the epoch).

    ``needles`` maps a label to a fragment of the access-log request line (for example
    ``'"GET /_matrix/client/v3/sync?since=... '``); the answer maps each label to the process
    names ("main" or a worker's name) whose "Processed request" lines contain it.
    """
    out = host.check_output(
        f"journalctl --no-pager -o json --output-fields=_SYSTEMD_UNIT,MESSAGE --since @{since} "
        "-u matrix-synapse.service -u 'matrix-synapse-worker@*'")
    served: dict[str, set[str]] = {label: set() for label in needles}
    for line in out.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE")
        if not isinstance(message, str) or "Processed request" not in message:
            continue
        unit = entry.get("_SYSTEMD_UNIT", "")
        process = unit[len("matrix-synapse-worker@"):-len(".service")] if "@" in unit else "main"
        for label, needle in needles.items():
            if needle in message:
                served[label].add(process)
    return served
