#!/usr/bin/env bash
# Installs libchdb (the ClickHouse engine as a shared library) from the npm
# registry package @chdb/lib-linux-x64-gnu, the official chDB build, into
# PREFIX (default /usr/local/lib/chdb). proofline loads it at run time
# (--chdb-lib PATH or CHDB_LIB_PATH elsewhere). Idempotent.
set -euo pipefail
VERSION="26.5.3"
PREFIX="${1:-/usr/local/lib/chdb}"
marker="$PREFIX/.version"
if [ -f "$PREFIX/libchdb.so" ] && [ "$(cat "$marker" 2>/dev/null)" = "$VERSION" ]; then
  echo "install-chdb: libchdb $VERSION already in $PREFIX"
  exit 0
fi
case "$(uname -m)" in
  x86_64) ;;
  *) echo "install-chdb: only linux x86_64 builds are fetched by this script; set CHDB_LIB_PATH to a libchdb.so for $(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null 2>&1 || { echo "install-chdb: npm is required (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "install-chdb: fetching @chdb/lib-linux-x64-gnu@$VERSION (about 166 MB)"
(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$VERSION" >/dev/null)
tar -xzf "$tmp"/chdb-lib-linux-x64-gnu-"$VERSION".tgz -C "$tmp" package/libchdb.so
mkdir -p "$PREFIX"
install -m 0755 "$tmp/package/libchdb.so" "$PREFIX/libchdb.so.tmp"
mv -f "$PREFIX/libchdb.so.tmp" "$PREFIX/libchdb.so"
echo "$VERSION" > "$marker"
echo "install-chdb: installed $PREFIX/libchdb.so ($VERSION)"
