"""Helpers of the ``all-types`` scenario: the default scenario's conftest, on this scenario's ports.

Everything (the loopback-only HTTP client, ``wait_until``, the ``deployed`` fixture, ``journal``)
comes from ../../default/tests/conftest.py, which reads MATRIXOPS_CLIENT_URL and
MATRIXOPS_FEDERATION_URL when it is imported: point them at the loopback ports this scenario
publishes (19080/19448, see ../molecule.yml) first, unless the caller already did. The loopback
rule of that conftest still applies: a non-loopback URL is refused before a socket opens.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "_lib"))
from matrixops_scenario import catalog, use_default_helpers  # noqa: E402

use_default_helpers("http://127.0.0.1:19080", "http://127.0.0.1:19448")
# Re-exported: pytest finds fixtures among a conftest's attributes.
from matrixops_default_conftest import (  # noqa: E402,F401
    CLIENT_BASE_URL, FEDERATION_BASE_URL, LOOPBACK_HOSTS, Deployed, HttpClient, Response, client_api, deployed,
    federation_api, journal, register, registration_secret, served_by, wait, wait_until,
)

CATALOG = catalog()
