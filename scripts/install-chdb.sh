#!/usr/bin/env bash
# Installs libchdb — the ClickHouse engine as a shared library, which
# proofline runs in-process by default — from the npm registry package
# @chdb/lib-linux-x64-gnu (the official chDB build; the registry is the one
# place our machines can fetch it from) into PREFIX (default
# /usr/local/lib/chdb). proofline loads PREFIX/libchdb.so at run time
# (--chdb-lib PATH or CHDB_LIB_PATH point elsewhere).
#
# Usage: scripts/install-chdb.sh [PREFIX]
#
# Idempotent: a PREFIX whose .version marker names the pinned version is left
# alone. The tarball is checked against a pinned sha512 before anything is
# extracted, and only libchdb.so is taken from it.
set -euo pipefail

VERSION="26.5.3"
# sha512 of the registry tarball (its dist.integrity
# sha512-fPrLmRt5Moor9yGz4mazbrNje4t7X9KB2mTGkXFWRxRBs2iKy8yh6jx11xsa0Qr3iDFMU/yHqd+bVdYJXu3QaQ==, in hex).
SHA512="7cfacb991b79328a2bf721b3e266b36eb3637b8b7b5fd281da64c6917156471441b3688acbcca1ea3c75d71b1ad10af788314c53fc87a9df9b55d6095eedd069"
PACKAGE="@chdb/lib-linux-x64-gnu"
PREFIX="${1:-/usr/local/lib/chdb}"
lib="$PREFIX/libchdb.so"
marker="$PREFIX/.version"

if [ -f "$lib" ] && [ "$(cat "$marker" 2>/dev/null)" = "$VERSION" ]; then
  echo "install-chdb: libchdb $VERSION already at $lib"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) echo "install-chdb: this script fetches the linux x86_64 build only; on $(uname -s)/$(uname -m) point CHDB_LIB_PATH at a libchdb.so $VERSION, or use a ClickHouse server with --clickhouse DSN" >&2
     exit 1 ;;
esac

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install-chdb: npm is missing; installing it with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  else
    echo "install-chdb: npm is required (as root: apt-get install -y npm)" >&2
    exit 1
  fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "install-chdb: fetching $PACKAGE@$VERSION from the npm registry (166 MB)"
# A private cache: the tarball is needed once, not kept in ~/.npm.
tarball="$(cd "$tmp" && npm pack --silent --cache "$tmp/cache" "$PACKAGE@$VERSION" | tail -n 1)"
tarball="$tmp/$tarball"

got="$(sha512sum "$tarball" | cut -d ' ' -f 1)"
if [ "$got" != "$SHA512" ]; then
  echo "install-chdb: $PACKAGE@$VERSION does not match the pinned sha512 (got $got)" >&2
  exit 1
fi

tar -xzf "$tarball" -C "$tmp" package/libchdb.so
mkdir -p "$PREFIX"
# Copy next to the target, then rename: a process loading the library never
# sees a half-written file.
install -m 0755 "$tmp/package/libchdb.so" "$lib.tmp.$$"
mv -f "$lib.tmp.$$" "$lib"
echo "$VERSION" > "$marker"
echo "install-chdb: installed libchdb $VERSION at $lib"
