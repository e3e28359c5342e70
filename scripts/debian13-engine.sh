#!/usr/bin/env bash
# A second Docker engine for the compatibility tests: Debian 13's docker.io (26), beside the engine the suite uses.
#
#   bash scripts/debian13-engine.sh start overlay2|containerd   # prints the DOCKER_HOST to use
#   bash scripts/debian13-engine.sh stop overlay2|containerd
#   bash scripts/debian13-engine.sh wipe overlay2|containerd   # stop, then delete that store's images (GBs)
#
# Its root (.cache/debian13-engine/root) is made once with mmdebstrap from Debian 13 packages and entered in a
# private mount namespace with pivot_root (a plain chroot fails on `remount /` and when exec or HEALTHCHECK
# changes directory). Each image store ("containerd": the containerd snapshotter, the default of Docker Desktop
# 4.34+ and of fresh Docker Engine 29 installs) gets its own data root, exec root, pidfile and socket; no bridge,
# no iptables, like the first engine. Stop stops only the engine this script started, by its pid.
# Needs root and Debian's mmdebstrap (scripts/bootstrap.sh installs it). Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
command=${1:?start or stop} store=${2:?overlay2 or containerd}
case "$store" in overlay2|containerd) ;; *) echo "debian13-engine: unknown store $store" >&2; exit 2 ;; esac
home=$PWD/.cache/debian13-engine
root=$home/root
sockets=$home/$store
pidfile=$sockets/dockerd.pid
log() { printf 'debian13-engine: %s\n' "$*" >&2; }

if [ "$command" = stop ] || [ "$command" = wipe ]; then
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        rm -f "$pidfile"
    fi
    if [ "$command" = wipe ]; then  # its mounts lived in the engine's own mount namespace, gone with it
        rm -rf "$root/var/lib/docker-$store" || log "could not delete all of $root/var/lib/docker-$store"
    fi
    exit 0
fi
[ "$command" = start ] || { echo "debian13-engine: start or stop" >&2; exit 2; }

if [ ! -x "$root/usr/sbin/dockerd" ]; then
    log "making Debian 13's root with docker.io (mmdebstrap, about 30 s)"
    mirror=$(.venv/bin/python -c 'from imagebuild.debs import mirror; print(mirror())')
    rm -rf "$root.partial"
    mkdir -p "$home"
    mmdebstrap --variant=apt --include=docker.io,containerd,runc,iptables,mount,ca-certificates trixie \
        "$root.partial" "$mirror" >"$home.mmdebstrap.log" 2>&1 \
        || { log "mmdebstrap failed; see $home.mmdebstrap.log"; exit 1; }
    mv "$root.partial" "$root"
fi

mkdir -p "$sockets"
socket=$sockets/docker.sock
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "unix://$socket"
    exit 0
fi
group=$(getent group docker | cut -d: -f3 || true)
features='{}'
[ "$store" = containerd ] && features='{"features": {"containerd-snapshotter": true}}'
log "starting dockerd ($store store; log: $sockets/dockerd.log)"
# shellcheck disable=SC2016 # expanded by the inner shell
nohup unshare --mount --propagation private -- bash -c '
    set -euo pipefail
    root=$1 sockets=$2 store=$3 features=$4 group=$5
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=755 tmpfs "$root/run"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    mkdir -p "$root/run/host-socket" "$root/etc/docker" "$root/var/lib/docker-$store"
    mount --bind "$sockets" "$root/run/host-socket"
    printf "%s\n" "$features" >"$root/etc/docker/daemon.json"
    cd "$root"
    mkdir -p oldroot
    pivot_root . oldroot
    cd /
    umount -l /oldroot
    exec /usr/sbin/dockerd -H unix:///run/host-socket/docker.sock ${group:+-G "$group"} \
        --data-root "/var/lib/docker-$store" --exec-root /run/docker-exec --pidfile /run/dockerd.pid \
        --bridge=none --iptables=false --ip-forward=false --cgroup-parent=/debian13-engine
' engine "$root" "$sockets" "$store" "$features" "$group" >"$sockets/dockerd.log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 60); do
    DOCKER_HOST=unix://$socket docker version >/dev/null 2>&1 && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { log "dockerd ended; see $sockets/dockerd.log"; exit 1; }
    sleep 1
done
DOCKER_HOST=unix://$socket docker version >/dev/null 2>&1 || { log "dockerd did not answer in 60 s"; exit 1; }
echo "unix://$socket"
