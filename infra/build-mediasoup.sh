#!/usr/bin/env bash
# infra/build-mediasoup.sh — build the mediasoup 3.8.4 worker (C++) offline.
#
# Why: `.npmrc` sets ignore-scripts=true, so mediasoup's own postinstall (which runs
# `make -C worker`) never runs, and it would fail here anyway. This script builds the
# worker from the sources bundled in the npm tarball (node_modules/mediasoup/worker,
# which includes every C/C++ dependency and gyp), with three fixes, all kept in
# infra/mediasoup-build/:
#   1. sitecustomize.py        the bundled gyp predates Python 3.10; put the
#                              collections.Mapping/MutableSet/... aliases back
#                              (loaded via PYTHONPATH while gyp runs).
#   2. sigstksz-compat.h       force-included into C++ files: glibc >= 2.34 makes
#                              SIGSTKSZ non-constant, which breaks the bundled abseil.
#                              On GCC >= 13 we also force-include <cstdint> (headers
#                              stopped including it transitively).
#   3. openssl.gyp +           link Debian's maintained OpenSSL 3 (-lssl -lcrypto,
#      mediasoup-worker.gyp.patch   libssl-dev) instead of compiling the bundled,
#                              end-of-life OpenSSL 1.1.1k.
#
# How: copy node_modules/mediasoup/worker to .cache/mediasoup-build/<version>/worker
# (node_modules is never modified), apply the fixes there, run gyp + make the way
# worker/Makefile's default target does (Release, -j2), and install the binary to
#   .cache/mediasoup-worker/<version>/mediasoup-worker
# which sfu/src/workerBin.ts hands to mediasoup through MEDIASOUP_WORKER_BIN.
#
# Up-to-date check: the build is skipped when that binary exists and its stamp file
# holds the hash of (this script + infra/mediasoup-build/* + mediasoup version + CPU
# arch + GCC version). Edit any of them and the next run rebuilds from scratch.
#
# Missing apt packages (build-essential, python3, libssl-dev, patch) are installed
# when running as root (or with sudo available). Takes ~3 minutes on 2 cores.
#
# Usage: bash infra/build-mediasoup.sh [--force]
# Env:   BUILD_JOBS (default: 2)   MEDIASOUP_BUILD_VERBOSE=1 (stream compiler output)
set -euo pipefail

log() { printf '[build-mediasoup] %s\n' "$*"; }
die() { printf '[build-mediasoup] ERROR: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATCH_DIR="$ROOT/infra/mediasoup-build"
SRC="$ROOT/node_modules/mediasoup/worker"
EXPECTED_VERSION="3.8.4"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1
START=$SECONDS

# --- 0. inputs ------------------------------------------------------------------
[[ -f "$ROOT/node_modules/mediasoup/package.json" && -d "$SRC" ]] \
  || die "node_modules/mediasoup is missing; run 'npm ci' first"
VERSION="$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$ROOT/node_modules/mediasoup/package.json" | head -n1)"
[[ "$VERSION" == "$EXPECTED_VERSION" ]] \
  || die "node_modules has mediasoup $VERSION, but the patches in infra/mediasoup-build/ are for $EXPECTED_VERSION"

OUT_DIR="$ROOT/.cache/mediasoup-worker/$VERSION"
BIN="$OUT_DIR/mediasoup-worker"
STAMP="$OUT_DIR/build.stamp"
WORK="$ROOT/.cache/mediasoup-build/$VERSION"
mkdir -p "$OUT_DIR" "$ROOT/.cache"

# One build at a time (npm test and npm start may race on a fresh clone).
exec 9>"$ROOT/.cache/mediasoup-build.lock"
flock 9

# --- 1. apt packages (only when missing) -----------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in build-essential python3 libssl-dev patch; do pkg_installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  log "installing missing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

GCC_VERSION="$(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)"
GCC_MAJOR="${GCC_VERSION%%.*}"

# --- 2. up to date? ----------------------------------------------------------------
HASH="$(
  cd "$ROOT"
  {
    echo "mediasoup $VERSION"
    echo "arch $(uname -m)"
    echo "gcc $GCC_VERSION"
    LC_ALL=C sha256sum infra/build-mediasoup.sh infra/mediasoup-build/*
  } | sha256sum | cut -d' ' -f1
)"
if ((FORCE == 0)) && [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  log "worker up to date: ${BIN#"$ROOT"/} (stamp ${HASH:0:12})"
  exit 0
fi
log "building mediasoup $VERSION worker (gcc $GCC_VERSION, $(uname -m)); this takes ~3 min on 2 cores"

# --- 3. scratch copy -----------------------------------------------------------------
rm -rf "$WORK"
mkdir -p "$WORK"
log "copying worker sources to ${WORK#"$ROOT"/}/worker (without the bundled OpenSSL source)"
# The bundled OpenSSL 1.1.1k source is left out on purpose: nothing may compile or
# include it by accident.
tar -C "$SRC/.." \
  --exclude='worker/deps/openssl/openssl' \
  --exclude='worker/deps/webrtc-fuzzer-corpora' \
  --exclude='worker/out' \
  -cf - worker | tar -C "$WORK" -xf -
W="$WORK/worker"

# --- 4. patches ------------------------------------------------------------------------
log "patch 1/3: gyp on python3 (sitecustomize.py on PYTHONPATH)"
PYTHON_BIN="$(command -v python3)"
# 3.8.4's gyp also exists as deps/gyp; drop stale bytecode so it recompiles under this python.
find "$W/deps/gyp" -name '__pycache__' -type d -prune -exec rm -rf {} +

log "patch 2/3: SIGSTKSZ constant for the bundled abseil (force-included header)"
cp "$PATCH_DIR/sigstksz-compat.h" "$WORK/sigstksz-compat.h"
EXTRA_CXXFLAGS="-include $WORK/sigstksz-compat.h"
if ((GCC_MAJOR >= 13)); then
  log "         gcc $GCC_MAJOR >= 13: also force-including <cstdint>"
  EXTRA_CXXFLAGS+=" -include cstdint"
fi

log "patch 3/3: link Debian's OpenSSL 3 (libssl-dev) instead of bundled OpenSSL 1.1.1k"
cp "$PATCH_DIR/openssl.gyp" "$W/deps/openssl/openssl.gyp"
patch -s -p1 --forward -d "$W" < "$PATCH_DIR/mediasoup-worker.gyp.patch" \
  || die "mediasoup-worker.gyp.patch did not apply"
OPENSSL_INCLUDE_DIR="$(pkg-config --variable=includedir openssl 2>/dev/null || echo /usr/include)"
[[ -f "$OPENSSL_INCLUDE_DIR/openssl/ssl.h" ]] || die "no OpenSSL headers in $OPENSSL_INCLUDE_DIR (libssl-dev)"

# --- 5. gyp + make (what worker/Makefile's default target does) -----------------------
log "running gyp ($PYTHON_BIN $("$PYTHON_BIN" -c 'import platform; print(platform.python_version())'))"
(
  cd "$W"
  PYTHONPATH="$PATCH_DIR${PYTHONPATH:+:$PYTHONPATH}" MEDIASOUP_OUT_DIR="$W/out" \
    "$PYTHON_BIN" ./scripts/configure.py -R mediasoup-worker \
      "-Dopenssl_include_dir=$OPENSSL_INCLUDE_DIR"
) > "$WORK/gyp.log" 2>&1 || { tail -n 40 "$WORK/gyp.log" >&2; die "gyp failed (full log: $WORK/gyp.log)"; }

JOBS="${BUILD_JOBS:-2}"
BUILD_LOG="$WORK/build.log"
log "compiling with make -j$JOBS (log: ${BUILD_LOG#"$ROOT"/})"
# Unset MEDIASOUP_WORKER_BIN: the worker's own build files treat it as "skip the build".
make_cmd=(env -u MEDIASOUP_WORKER_BIN MEDIASOUP_BUILDTYPE=Release
  CXXFLAGS="${CXXFLAGS:-} $EXTRA_CXXFLAGS"
  make -j"$JOBS" BUILDTYPE=Release -C "$W/out")
if [[ "${MEDIASOUP_BUILD_VERBOSE:-0}" == "1" ]]; then
  "${make_cmd[@]}" 2>&1 | tee "$BUILD_LOG"
  rc=${PIPESTATUS[0]}
else
  "${make_cmd[@]}" > "$BUILD_LOG" 2>&1 &
  make_pid=$!
  # Heartbeat so CI logs show progress without ~500 lines of compiler output.
  while kill -0 "$make_pid" 2>/dev/null; do
    for _ in {1..20}; do kill -0 "$make_pid" 2>/dev/null && sleep 1; done
    kill -0 "$make_pid" 2>/dev/null || break
    log "  ... $(grep -c -E '^ *(CC|CXX)\(target\)' "$BUILD_LOG" || true) files compiled, $((SECONDS - START))s"
  done
  rc=0; wait "$make_pid" || rc=$?
fi
if ((rc != 0)); then
  grep -n -E 'error|Error' "$BUILD_LOG" | head -n 20 >&2 || true
  tail -n 30 "$BUILD_LOG" >&2
  die "make failed with status $rc (full log: $BUILD_LOG)"
fi

BUILT="$W/out/Release/mediasoup-worker"
[[ -x "$BUILT" ]] || die "build finished but $BUILT is missing"

# --- 6. verify, install, stamp ----------------------------------------------------------
LDD="$(ldd "$BUILT")"
grep -q 'libssl\.so\.3' <<<"$LDD"    || { echo "$LDD" >&2; die "worker does not link libssl.so.3"; }
grep -q 'libcrypto\.so\.3' <<<"$LDD" || { echo "$LDD" >&2; die "worker does not link libcrypto.so.3"; }
if grep -qa 'OpenSSL 1\.1\.1' "$BUILT"; then die "worker still contains the bundled OpenSSL 1.1.1"; fi
if grep -q 'not found' <<<"$LDD"; then echo "$LDD" >&2; die "worker has unresolved shared libraries"; fi

cp "$BUILT" "$BIN.tmp.$$"
strip --strip-debug "$BIN.tmp.$$" 2>/dev/null || true
mv -f "$BIN.tmp.$$" "$BIN"
echo "$HASH" > "$STAMP"
log "ldd: $(grep -o -E 'lib(ssl|crypto)\.so\.[0-9]+ => [^ ]+' <<<"$LDD" | tr '\n' ' ')"
log "installed ${BIN#"$ROOT"/} ($(du -h "$BIN" | cut -f1)) in $((SECONDS - START))s"
