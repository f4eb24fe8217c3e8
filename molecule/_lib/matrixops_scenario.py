"""What the scenarios' test suites share, loaded straight from the checkout.

``use_default_helpers(client_url, federation_url)`` points the default scenario's conftest
(loopback-only HTTP client, registration, journal readers, fixtures) at another scenario's
published ports and registers it as the module ``matrixops_default_conftest``, so that a
scenario's conftest can ``from matrixops_default_conftest import ...`` what it needs.
``load(name, path)`` imports any other file of the checkout; ``catalog()`` is plugins/module_utils/catalog.py, which needs only the standard library.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, relative_path: str):
    """The Python file at ``relative_path`` (from the checkout's root) as the module ``name``."""
    return _load(name, ROOT / relative_path)


def _load(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def use_default_helpers(client_url: str, federation_url: str):
    """The default scenario's conftest, reading these URLs unless the caller set others."""
    os.environ.setdefault("MATRIXOPS_CLIENT_URL", client_url)
    os.environ.setdefault("MATRIXOPS_FEDERATION_URL", federation_url)
    return _load("matrixops_default_conftest", ROOT / "molecule" / "default" / "tests" / "conftest.py")


def catalog():
    return _load("matrixops_catalog", ROOT / "plugins" / "module_utils" / "catalog.py")
