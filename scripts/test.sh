#!/usr/bin/env bash
# Runs jitproxy's whole test suite: formatting, vet, the static build, unit and
# integration tests (with the race detector on the packages with concurrency).
# Installs what the tests need (Debian packages) when it is missing, so it
# works on a fresh Debian 12 machine with Go; CI calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests drive for real: headless Chromium (browser login), OpenSSH's
# client and server (the SSH bastion), asciinema (recordings play in it),
# PostgreSQL (the PostgreSQL endpoint).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v asciinema >/dev/null 2>&1 || need+=(asciinema)
# PostgreSQL 15's server and psql (the PostgreSQL endpoint's tests).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "not gofmt-ed:"; echo "$bad"; exit 1; fi

echo "== go vet"
go vet ./...

echo "== static build"
CGO_ENABLED=0 go build -o /dev/null ./cmd/jitproxy

echo "== go test"
# -race everywhere: the packages are small and most of them are concurrent.
go test -race -count=1 -timeout 20m ./...

echo "== fuzz (short): PostgreSQL startup and framing"
# The seed corpus runs in go test above; this explores a little past it.
go test -run '^$' -fuzz '^FuzzStartup$' -fuzztime 10s ./proxy/postgres/
go test -run '^$' -fuzz '^FuzzFraming$' -fuzztime 10s ./proxy/postgres/
