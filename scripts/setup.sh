#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine (as root, or with sudo): installs the
# Debian packages proofline's tests use (nats-server for the external-NATS
# mode, rsyslog for the syslog sink, promtool for the alert rules, zstd,
# ssh-agent, Chromium for the console's browser tests), the chDB engine
# library (libchdb, from the npm registry), the MCP tools the hook is
# tested against and playwright-core (npm), litewitness (Go module proxy),
# the Go modules, and builds bin/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need_pkgs+=(nats-server)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
command -v zstd >/dev/null 2>&1 || need_pkgs+=(zstd)   # the file sink's tests read its files with the zstd CLI
[ -x /usr/sbin/rsyslogd ] || need_pkgs+=(rsyslog)   # a real syslog receiver for the syslog sink's tests
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)   # promtool tests the shipped alert rules
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || need_pkgs+=(rsyslog-gnutls)   # rsyslog's TLS driver
# ssh-agent holds litewitness's key in the witness tests.
command -v ssh-agent >/dev/null 2>&1 || need_pkgs+=(openssh-client)
apt_updated=""
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  apt_updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# Debian's Chromium, driven headless by playwright-core in the console's
# browser tests; without its recommends (a desktop's worth of packages the
# tests do not use), with one font so text has metrics in screenshots.
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium"
  [ -n "$apt_updated" ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

if [ -x scripts/install-chdb.sh ]; then
  $SUDO scripts/install-chdb.sh
fi

# MCP software the hook's e2e tests run against (conformance suite,
# TypeScript SDK, everything server, Node 22), pinned by tools/npm's lock.
$SUDO scripts/install-npm-tools.sh

command -v go >/dev/null 2>&1 || { echo "setup: Go is required (https://go.dev/doc/install); this machine has none on PATH" >&2; exit 1; }
go mod download

# litewitness and witnessctl (filippo.io/torchwood; v0.6.1 is the newest
# that builds with this Go), a witness nobody here wrote, for the e2e
# witness tests; installed outside the repository so they are built once.
TOOLS_BIN=/usr/local/lib/proofline-tools/bin
TORCHWOOD=v0.6.1
if [ ! -x "$TOOLS_BIN/litewitness" ] || [ ! -x "$TOOLS_BIN/witnessctl" ] || [ "$(cat "$TOOLS_BIN/.torchwood-version" 2>/dev/null)" != "$TORCHWOOD" ]; then
  echo "setup: installing litewitness and witnessctl $TORCHWOOD into $TOOLS_BIN"
  $SUDO mkdir -p "$TOOLS_BIN"
  $SUDO env "PATH=$PATH" GOBIN="$TOOLS_BIN" GOMODCACHE="$(go env GOMODCACHE)" GOCACHE="$(go env GOCACHE)" \
    go install "filippo.io/torchwood/cmd/litewitness@$TORCHWOOD" "filippo.io/torchwood/cmd/witnessctl@$TORCHWOOD"
  echo "$TORCHWOOD" | $SUDO tee "$TOOLS_BIN/.torchwood-version" >/dev/null
fi
mkdir -p bin
go build -o bin/ ./cmd/...
echo "setup: built $(ls bin | tr '\n' ' ')"
