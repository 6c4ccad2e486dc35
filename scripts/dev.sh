#!/usr/bin/env bash
# Builds jitproxy and runs the all-in-one demo (`jitproxy dev`) on 127.0.0.1:8080
# with the embedded SQLite store in ./jitproxy-data. Extra arguments go to
# `jitproxy dev` (e.g. --data DIR). Works on a fresh Debian 12 machine with Go.
set -euo pipefail
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go build -o ./jitproxy ./cmd/jitproxy
exec ./jitproxy dev "$@"
