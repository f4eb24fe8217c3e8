#!/usr/bin/env bash
# Runs ansible-playbook from the project's controller venv (created on first use), for your
# own inventories: bash scripts/run-playbook.sh -i inventories/my-vm/hosts.yml playbooks/site.yml
# Installs no Docker engine (MATRIXOPS_WITH_DOCKER=0); every argument goes to ansible-playbook.
export MATRIXOPS_WITH_DOCKER=${MATRIXOPS_WITH_DOCKER:-0}
. "$(dirname "$0")/lib.sh"
bash "$REPO_ROOT/scripts/setup-controller.sh"
activate_venv
cd "$REPO_ROOT"
exec ansible-playbook "$@"
