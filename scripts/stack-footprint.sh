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
rss=0; pss=0; n=0
for pid in $(pgrep -f "python -m synapse\\.app\\."); do
  read -r r p < <(awk "/^Rss:/ {r=\$2} /^Pss:/ {p=\$2} END {print r, p}" /proc/$pid/smaps_rollup 2>/dev/null) || continue
  rss=$((rss + r)); pss=$((pss + p)); n=$((n + 1))
done
printf "%-52s %d processes: RSS %d MiB, PSS %d MiB (shared pages counted once)\n" "Synapse" $n $((rss / 1024)) $((pss / 1024))
'
if [[ $target == - ]]; then
  bash -c "$probe"
else
  docker exec "$target" bash -c "$probe"
fi
