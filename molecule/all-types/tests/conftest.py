"""Helpers of the ``all-types`` scenario: the default scenario's conftest, on this scenario's ports.

Everything (the loopback-only HTTP client, ``wait_until``, the ``deployed`` fixture, ``journal``)
comes from ../../default/tests/conftest.py, which reads MATRIXOPS_CLIENT_URL and
MATRIXOPS_FEDERATION_URL when it is imported: point them at the loopback ports this scenario
publishes (19080/19448, see ../molecule.yml) first, unless the caller already did. The loopback
rule of that conftest still applies: a non-loopback URL is refused before a socket opens.
"""

from __future__ import annotations

import importlib.util
import os
import sys

os.environ.setdefault("MATRIXOPS_CLIENT_URL", "http://127.0.0.1:19080")
os.environ.setdefault("MATRIXOPS_FEDERATION_URL", "http://127.0.0.1:19448")

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "default", "tests", "conftest.py")
_spec = importlib.util.spec_from_file_location("matrixops_default_conftest", _DEFAULT)
_default = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _default  # dataclasses look their module up while the class is created
_spec.loader.exec_module(_default)

# Re-export the helpers and fixtures (pytest finds fixtures among a conftest's attributes).
LOOPBACK_HOSTS = _default.LOOPBACK_HOSTS
CLIENT_BASE_URL = _default.CLIENT_BASE_URL
FEDERATION_BASE_URL = _default.FEDERATION_BASE_URL
HttpClient = _default.HttpClient
Response = _default.Response
Deployed = _default.Deployed
wait_until = _default.wait_until
journal = _default.journal
client_api = _default.client_api
federation_api = _default.federation_api
wait = _default.wait
deployed = _default.deployed
register = _default.register
registration_secret = _default.registration_secret
served_by = _default.served_by
