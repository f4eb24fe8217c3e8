"""Make this checkout importable as ansible_collections.matrixops.synapse."""
import os
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _collections_root():
    base = tempfile.mkdtemp(prefix="matrixops-collections-")
    ns = os.path.join(base, "ansible_collections", "matrixops")
    os.makedirs(ns)
    os.symlink(ROOT, os.path.join(ns, "synapse"))
    return base


sys.path.insert(0, _collections_root())
