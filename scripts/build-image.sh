#!/usr/bin/env bash
# Builds the Debian 12 image with systemd as PID 1 used as the target host (no registry here:
# debootstrap a rootfs, import it, add the systemd entry point). Skips when the image exists;
# MATRIXOPS_REBUILD_IMAGE=1 forces a rebuild.
. "$(dirname "$0")/lib.sh"

if [[ ${MATRIXOPS_REBUILD_IMAGE:-0} != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi

mirror=${DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | grep -oE 'https?://[^ ]+' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
security=${mirror%/debian}/debian-security

work=$(mktemp -d "${TMPDIR:-/tmp}/matrixops-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
log "debootstrap bookworm from $mirror (about a minute)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,ca-certificates,curl,gnupg \
  bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }

cat >"$rootfs/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SRC
echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/10no-check-valid-until"

# The egress proxy intercepts HTTPS: the containers need the same extra CAs as this host.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
fi

: >"$rootfs/etc/machine-id"
for unit in getty.target console-getty.service systemd-logind.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  systemd-remount-fs.service systemd-firstboot.service; do
  ln -sfn /dev/null "$rootfs/etc/systemd/system/$unit"
done

# Stale lists would make apt's cache_valid_time believe the cache is fresh.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
touch -d @0 "$rootfs/var/lib/apt/lists"

log "importing rootfs as ${IMAGE}-base"
tar -C "$rootfs" -c . | docker import - "${IMAGE}-base" >/dev/null
cat >"$work/Dockerfile" <<DF
FROM ${IMAGE}-base
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
DF
docker build -q -t "$IMAGE" "$work" >/dev/null
log "image $IMAGE ready"
