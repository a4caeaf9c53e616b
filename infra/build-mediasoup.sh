#!/usr/bin/env bash
# infra/build-mediasoup.sh — build the mediasoup 3.27.x worker (C++) offline, from the npm tarball
# and Debian packages only.
#
# Why: `.npmrc` sets ignore-scripts=true, so mediasoup's postinstall (which downloads a prebuilt
# worker, or builds one with meson subprojects fetched from wrapdb/GitHub) never runs; this network
# reaches neither. The tarball ships every worker source (node_modules/mediasoup/worker), and every
# dependency exists in Debian except two, for which infra/mediasoup-build/ has small stand-ins
# (see infra/mediasoup-src.sh for the list, README "SFU build" for why each is safe).
#
# How: copy the worker sources to .cache/mediasoup-build/<version>/worker (node_modules is never
# modified), apply infra/mediasoup-build/, `meson setup --wrap-mode=nodownload` (release, as
# upstream's tasks.py does), `ninja mediasoup-worker` (only that target: a plain `ninja` would also
# build the worker's tests and fuzzers), check what it links, and install the binary to
#   .cache/mediasoup-worker/<version>/mediasoup-worker
# which sfu/src/workerBin.ts hands to createWorker({ workerBin }).
#
# Up-to-date check: skipped while that binary exists and its stamp holds the hash of (this script,
# infra/mediasoup-src.sh, infra/mediasoup-build/*, mediasoup version, CPU arch, compiler version,
# versions of the Debian build packages). Change any of them and the next run rebuilds from scratch.
#
# Missing apt packages are installed when running as root (or with sudo). About 4 minutes on 2 cores.
#
# Usage: bash infra/build-mediasoup.sh [--force]
# Env:   BUILD_JOBS (default: 2)   MEDIASOUP_BUILD_VERBOSE=1 (stream compiler output)
set -euo pipefail

# shellcheck source=infra/mediasoup-src.sh
source "$(dirname "${BASH_SOURCE[0]}")/mediasoup-src.sh"
ms_init build-mediasoup

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1
START=$SECONDS

OUT_DIR="$ROOT/.cache/mediasoup-worker/$VERSION"
BIN="$OUT_DIR/mediasoup-worker"
STAMP="$OUT_DIR/build.stamp"
WORK="$ROOT/.cache/mediasoup-build/$VERSION"
mkdir -p "$OUT_DIR"

# One build at a time (npm test and npm start may race on a fresh clone).
exec 9>"$ROOT/.cache/mediasoup-build.lock"
flock 9

# --- 1. apt packages (only when missing) --------------------------------------------------------
ms_apt "${MS_BUILD_PACKAGES[@]}"
CXX_VERSION="$(c++ --version | head -n1)"

# --- 2. up to date? ------------------------------------------------------------------------------
HASH="$(ms_inputs_hash "script $(sha256sum "$ROOT/infra/build-mediasoup.sh" | cut -d' ' -f1)" "c++ $CXX_VERSION")"
if ((FORCE == 0)) && [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  log "worker up to date: ${BIN#"$ROOT"/} (stamp ${HASH:0:12})"
  exit 0
fi
log "building the mediasoup $VERSION worker ($CXX_VERSION, $(uname -m)); about 4 min on 2 cores"

# --- 3. sources + our deviations ------------------------------------------------------------------
log "preparing ${WORK#"$ROOT"/}/worker (sources from node_modules + infra/mediasoup-build/)"
ms_prepare "$WORK"
W="$WORK/worker"

# --- 4. meson + ninja -------------------------------------------------------------------------------
log "meson setup (release, --wrap-mode=nodownload)"
# Unset MEDIASOUP_WORKER_BIN: upstream's build files treat it as "skip the build".
env -u MEDIASOUP_WORKER_BIN meson setup "$W/out" "$W" \
  --wrap-mode=nodownload --buildtype=release -Db_ndebug=true -Db_pie=true \
  > "$WORK/meson.log" 2>&1 || { tail -n 40 "$WORK/meson.log" >&2; die "meson setup failed (full log: $WORK/meson.log)"; }

JOBS="${BUILD_JOBS:-2}"
BUILD_LOG="$WORK/build.log"
log "compiling with ninja -j$JOBS mediasoup-worker (log: ${BUILD_LOG#"$ROOT"/})"
ninja_cmd=(env -u MEDIASOUP_WORKER_BIN ninja -C "$W/out" -j"$JOBS" mediasoup-worker)
if [[ "${MEDIASOUP_BUILD_VERBOSE:-0}" == "1" ]]; then
  "${ninja_cmd[@]}" 2>&1 | tee "$BUILD_LOG"
  rc=${PIPESTATUS[0]}
else
  "${ninja_cmd[@]}" > "$BUILD_LOG" 2>&1 &
  ninja_pid=$!
  # Heartbeat so CI logs show progress without ~400 lines of compiler output.
  while kill -0 "$ninja_pid" 2>/dev/null; do
    for _ in {1..30}; do kill -0 "$ninja_pid" 2>/dev/null && sleep 1; done
    kill -0 "$ninja_pid" 2>/dev/null || break
    log "  ... $(grep -o '^\[[0-9]*/[0-9]*\]' "$BUILD_LOG" | tail -n1 || true) $((SECONDS - START))s"
  done
  rc=0; wait "$ninja_pid" || rc=$?
fi
if ((rc != 0)); then
  grep -n -E 'error|Error' "$BUILD_LOG" | head -n 20 >&2 || true
  tail -n 30 "$BUILD_LOG" >&2
  die "ninja failed with status $rc (full log: $BUILD_LOG)"
fi

BUILT="$W/out/mediasoup-worker"
[[ -x "$BUILT" ]] || die "build finished but $BUILT is missing"

# --- 5. verify, install, stamp ------------------------------------------------------------------------
LDD="$(ldd "$BUILT")"
for lib in 'libssl\.so\.3' 'libcrypto\.so\.3' 'libsrtp2\.so\.1' 'libuv\.so\.1'; do
  grep -q "$lib" <<<"$LDD" || { echo "$LDD" >&2; die "worker does not link ${lib//\\/} (Debian's)"; }
done
if grep -q 'not found' <<<"$LDD"; then echo "$LDD" >&2; die "worker has unresolved shared libraries"; fi

cp "$BUILT" "$BIN.tmp.$$"
strip --strip-debug "$BIN.tmp.$$" 2>/dev/null || true
mv -f "$BIN.tmp.$$" "$BIN"
echo "$HASH" > "$STAMP"
log "ldd: $(grep -o -E 'lib(ssl|crypto|srtp2|uv)\.so\.[0-9]+ => [^ ]+' <<<"$LDD" | tr '\n' ' ')"
log "installed ${BIN#"$ROOT"/} ($(du -h "$BIN" | cut -f1)) in $((SECONDS - START))s"
