#!/usr/bin/env bash
# Worker layouts against the monolith (benchmarks/layouts.py): sets up the controller (venv,
# Docker engine, the Debian 12 systemd image) as scripts/deploy-local.sh does, then runs the
# benchmark with the given arguments. It deploys into the container synapse-bench
# (127.0.0.1:15080/15448) and removes it at the end (--keep keeps it).
#   bash benchmarks/layouts.sh                                   # monolith, auto, specialised
#   bash benchmarks/layouts.sh --layouts monolith,auto --step 10 # a short smoke run
. "$(dirname "$0")/../scripts/lib.sh"

bash "$REPO_ROOT/scripts/setup-controller.sh"
bash "$REPO_ROOT/scripts/docker-engine.sh"
bash "$REPO_ROOT/scripts/build-image.sh"
activate_venv
exec python "$REPO_ROOT/benchmarks/layouts.py" "$@"
