#!/usr/bin/env bash
# Starts the Docker engine unless one already answers. Prints nothing on success.
. "$(dirname "$0")/lib.sh"

if docker info >/dev/null 2>&1; then
  exit 0
fi
log "starting dockerd"
mkdir -p "$CACHE_DIR"
nohup dockerd >"$CACHE_DIR/dockerd.log" 2>&1 &
echo $! >"$CACHE_DIR/dockerd.pid"
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
log "dockerd did not answer within 30 s; see $CACHE_DIR/dockerd.log"
tail -n 30 "$CACHE_DIR/dockerd.log" >&2
exit 1
