# shellcheck shell=bash
# Common settings for the project's scripts. Source it; do not run it.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${MATRIXOPS_CACHE_DIR:-$REPO_ROOT/.cache}
VENV=${MATRIXOPS_VENV:-$CACHE_DIR/venv}
COLLECTIONS_ROOT=$CACHE_DIR/collections
IMAGE=${MATRIXOPS_IMAGE:-matrixops/debian-systemd:bookworm}
export REPO_ROOT CACHE_DIR VENV COLLECTIONS_ROOT IMAGE

export NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0
export ANSIBLE_COLLECTIONS_PATH=$COLLECTIONS_ROOT
export ANSIBLE_CONFIG=$REPO_ROOT/ansible.cfg

log() { printf '==> %s\n' "$*" >&2; }

activate_venv() {
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
}
