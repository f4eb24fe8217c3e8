#!/usr/bin/env bash
# Prints the memory each unit of the stack uses on a host (systemd's MemoryCurrent, i.e. the
# unit's cgroup: processes plus their page cache) and the Synapse processes' total RSS.
# Usage: scripts/stack-footprint.sh [CONTAINER]   (default synapse-local; "-" = this machine)
set -euo pipefail
target=${1:-synapse-local}
probe='
total=0
for unit in $(systemctl list-units --no-legend --plain --type=service "matrix-synapse*" \
    postgresql@*.service redis-server.service haproxy.service | awk "{print \$1}"); do
  bytes=$(systemctl show -p MemoryCurrent --value "$unit")
  [[ $bytes =~ ^[0-9]+$ ]] || continue
  total=$((total + bytes))
  printf "%-52s %6d MiB\n" "$unit" $((bytes / 1048576))
done
printf "%-52s %6d MiB\n" "total (all units)" $((total / 1048576))
rss=$(ps -eo rss=,args= | awk "/python -m synapse\\.app\\./ && !/awk/ {s+=\$1; n++} END {printf \"%d processes, %d MiB\", n, s/1024}")
printf "%-52s %s\n" "Synapse processes RSS" "$rss"
'
if [[ $target == - ]]; then
  bash -c "$probe"
else
  docker exec "$target" bash -c "$probe"
fi
