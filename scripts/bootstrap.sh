#!/usr/bin/env bash
# Prepare a fresh Debian machine for testing: Debian packages (Docker engine, mmdebstrap for the second engine's root,
# docker-registry, htpasswd, headless Chromium for the /docs test, wrk for the benchmark, Prometheus and promtool
# for the metrics test, qemu-user-static for the arm64 image's tests: tests/emulation.py registers it), a running
# Docker engine, and the .venv with the pinned Python packages.
# Idempotent: a second run only checks. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

log() { printf 'bootstrap: %s\n' "$*" >&2; }

missing=()
for pair in dockerd:docker.io mmdebstrap:mmdebstrap docker-registry:docker-registry htpasswd:apache2-utils \
        chromium-headless-shell:chromium-headless-shell wrk:wrk promtool:prometheus \
        qemu-aarch64-static:qemu-user-static; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# Debian's own Python with venv: the compatibility tests build as a user who is not root (tests/container/
# test_engines.py); Debian 13's Docker engine for them comes from scripts/debian13-engine.sh.
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi

if ! docker version >/dev/null 2>&1; then
    # No bridge and no iptables: containers under test use the host's loopback (--network host).
    log "starting dockerd (log: .cache/dockerd.log)"
    nohup dockerd --bridge=none --iptables=false --ip-forward=false >.cache/dockerd.log 2>&1 &
    echo $! >.cache/dockerd.pid
    for _ in $(seq 1 60); do
        docker version >/dev/null 2>&1 && break
        sleep 1
    done
    docker version >/dev/null 2>&1 || { log "dockerd did not come up in 60 s; see .cache/dockerd.log"; exit 1; }
fi

stamp=$(cat requirements.txt requirements-build.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$stamp" ]; then
    log "creating .venv"
    python3 -m venv .venv
    # pip's own output goes to a log: this host's pip configuration is chatty.
    .venv/bin/python -m pip install -q --require-hashes -r requirements.txt >.cache/pip.log 2>&1 \
        || { log "pip install failed; see .cache/pip.log"; exit 1; }
    .venv/bin/python -m pip install -q -r requirements-dev.txt >>.cache/pip.log 2>&1 \
        || { log "pip install failed; see .cache/pip.log"; exit 1; }
    # this checkout's packages, editable, with their console commands (sms-build, sms-serve, ...)
    .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . >>.cache/pip.log 2>&1 \
        || { log "pip install -e . failed; see .cache/pip.log"; exit 1; }
    echo "$stamp" >.venv/.stamp
fi
log "ready"
