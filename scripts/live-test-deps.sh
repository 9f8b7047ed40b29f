#!/usr/bin/env bash
# Installs what `cargo test --features live` needs (run as root; idempotent and quiet):
# libpcap's headers to build the `live` feature, nginx and Python `websockets` for the peers that
# tests/live.rs runs on loopback, curl to scrape /metrics like Prometheus would.
set -euo pipefail

need=()
dpkg -s libpcap-dev >/dev/null 2>&1 || need+=(libpcap-dev)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v pip3 >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! python3 -c 'import websockets, sys; sys.exit(int(websockets.__version__.split(".")[0]) < 13)' 2>/dev/null; then
    # Debian's Python is "externally managed": the flag lets pip install next to it.
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        --break-system-packages 'websockets>=13' >/dev/null
fi
