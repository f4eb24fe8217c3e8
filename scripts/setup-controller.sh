#!/usr/bin/env bash
# Installs everything the controller needs: Debian packages (Docker engine, debootstrap),
# a Python venv with ansible-core, molecule and the test tools, and makes this collection
# visible to Ansible as matrixops.synapse. Safe to run again.
. "$(dirname "$0")/lib.sh"

need_apt=()
if [[ ${MATRIXOPS_WITH_DOCKER:-1} != 0 ]]; then
  command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
  command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
  command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
fi
if ((${#need_apt[@]})); then
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

mkdir -p "$CACHE_DIR"
stamp=$VENV/.requirements.sha
want=$(sha256sum "$REPO_ROOT/requirements-dev.txt" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "creating controller venv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$REPO_ROOT/requirements-dev.txt"
  echo "$want" >"$stamp"
fi

# The collection under test, where Ansible looks for matrixops.synapse.
mkdir -p "$COLLECTIONS_ROOT/ansible_collections/matrixops"
ln -sfn "$REPO_ROOT" "$COLLECTIONS_ROOT/ansible_collections/matrixops/synapse"
log "controller ready"
