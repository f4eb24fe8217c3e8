#!/usr/bin/env bash
# The README's deploy command: on a fresh Debian machine, installs what the controller needs,
# starts the Docker engine, builds the Debian 12 systemd image, starts one container as the
# target host and runs playbooks/site.yml against it with inventories/local.
# Environment: MATRIXOPS_CONTAINER (default synapse-local), MATRIXOPS_CLIENT_PORT (8080),
# MATRIXOPS_FEDERATION_PORT (8448); extra arguments go to ansible-playbook.
. "$(dirname "$0")/lib.sh"

container=${MATRIXOPS_CONTAINER:-synapse-local}
client_port=${MATRIXOPS_CLIENT_PORT:-8080}
federation_port=${MATRIXOPS_FEDERATION_PORT:-8448}

bash "$REPO_ROOT/scripts/setup-controller.sh"
bash "$REPO_ROOT/scripts/docker-engine.sh"
bash "$REPO_ROOT/scripts/build-image.sh"
activate_venv

if ! docker container inspect "$container" >/dev/null 2>&1; then
  log "starting container $container (Debian 12, systemd as PID 1)"
  docker run -d --name "$container" --hostname "$container" \
    --cap-add SYS_ADMIN --cap-add SYS_PTRACE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    -p "127.0.0.1:${client_port}:8080" -p "127.0.0.1:${federation_port}:8448" \
    "$IMAGE" >/dev/null
else
  # Published ports are fixed when a container is created: refuse to point Synapse's public URL
  # at a port the existing container does not publish.
  published=$(docker container inspect -f '{{range $p, $b := .HostConfig.PortBindings}}{{$p}}={{(index $b 0).HostPort}} {{end}}' "$container")
  if [[ " $published " != *" 8080/tcp=${client_port} "* || " $published " != *" 8448/tcp=${federation_port} "* ]]; then
    log "container $container publishes ${published:-no ports}, not ${client_port} (client) and ${federation_port} (federation)."
    log "Ports are set when the container is created: remove it (docker rm -f $container) or use its ports."
    exit 2
  fi
  if [[ $(docker container inspect -f '{{.State.Running}}' "$container") != true ]]; then
    docker start "$container" >/dev/null
  fi
fi
for _ in $(seq 1 30); do
  state=$(docker exec "$container" systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 1
done

cd "$REPO_ROOT"
ansible-playbook -i inventories/local/hosts.yml \
  -e "ansible_host=$container" \
  -e "synapse_public_baseurl=http://127.0.0.1:${client_port}/" \
  playbooks/site.yml "$@"

for arg in "$@"; do
  if [[ $arg == --check || $arg == -C ]]; then
    log "check mode: nothing was changed (the preview above says what a run would do)"
    exit 0
  fi
done

cat <<MSG

Synapse is up behind the proxy:
  client API      http://127.0.0.1:${client_port}/   (try: curl http://127.0.0.1:${client_port}/_matrix/client/versions)
  federation API  http://127.0.0.1:${federation_port}/
Create a user (admin, with Synapse's own tool, inside the host):
  docker exec -i $container /opt/matrix-synapse/venv/bin/register_new_matrix_user \\
    -c /etc/matrix-synapse/homeserver.yaml -u alice -p 'choose-a-password' -a http://127.0.0.1:8008
See the processes:  docker exec $container systemctl list-units 'matrix-synapse*'
Remove everything:   docker rm -f $container
MSG
