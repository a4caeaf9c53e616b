#!/usr/bin/env bash
# infra/fuzz-sfu.sh — fuzz the SFU's network parsers: the libFuzzer targets mediasoup 3.27 ships in its
# npm tarball (worker/fuzzer: STUN, RTP + RTP streams, RTCP, the codec payload descriptors, SCTP, DTLS,
# utils), built with Debian's clang under AddressSanitizer + UndefinedBehaviorSanitizer, each run for a
# bounded time over a seed corpus we generate (infra/fuzz-seeds.mjs) plus the inputs of earlier findings
# (infra/fuzz-findings/).
#
#   npm run fuzz:sfu                          every group, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=600 npm run fuzz:sfu -- rtp rtcp     only these groups, 10 minutes each
#
# Groups: stun rtp rtcp codecs sctp dtls utils (upstream's MS_FUZZ_<GROUP> switches).
# Build: same sources and deviations as the worker (infra/mediasoup-src.sh), configured the way
# upstream's `invoke fuzzer` does (-Dms_build_fuzzer=true -Db_sanitize=address -Db_lundef=false; the
# target adds -fsanitize=address,undefined,fuzzer), cached by a stamp in .cache/mediasoup-fuzzer/.
# ASan reports stop a group (its input is kept); UBSan reports are collected and the group runs on.
# Output: .cache/fuzz/<group>/{corpus,crash-*,log.txt} and .cache/fuzz/report.txt (one line per group).
# Exit status: non-zero if any group found a crash, leak, timeout or undefined behaviour.
set -euo pipefail

# shellcheck source=infra/mediasoup-src.sh
source "$(dirname "${BASH_SOURCE[0]}")/mediasoup-src.sh"
ms_init fuzz-sfu

ALL_GROUPS=(stun rtp rtcp codecs sctp dtls utils)
FUZZ_GROUPS=("$@")
((${#FUZZ_GROUPS[@]})) || FUZZ_GROUPS=("${ALL_GROUPS[@]}")
for g in "${FUZZ_GROUPS[@]}"; do
  [[ " ${ALL_GROUPS[*]} " == *" $g "* ]] || die "unknown group '$g' (groups: ${ALL_GROUPS[*]})"
done
SECONDS_EACH="${FUZZ_SECONDS:-60}"
[[ "$SECONDS_EACH" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive number of seconds"

# --- 1. toolchain: Debian's clang and the matching compiler-rt (sanitizers + libFuzzer) ---------------
ms_apt "${MS_BUILD_PACKAGES[@]}" clang llvm
CLANG_MAJOR="$(clang -dumpversion | cut -d. -f1)"
ms_apt "libclang-rt-$CLANG_MAJOR-dev"
CLANG_VERSION="$(clang --version | head -n1)"

# --- 2. build (cached) ----------------------------------------------------------------------------------
OUT_DIR="$ROOT/.cache/mediasoup-fuzzer/$VERSION"
BIN="$OUT_DIR/mediasoup-worker-fuzzer"
STAMP="$OUT_DIR/build.stamp"
WORK="$ROOT/.cache/mediasoup-build/$VERSION-fuzzer"
mkdir -p "$OUT_DIR"
exec 9>"$ROOT/.cache/mediasoup-build.lock"   # one worker build at a time, shared with build-mediasoup.sh
flock 9
# Configured the way upstream's `invoke fuzzer` does; the target adds -fsanitize=address,undefined,fuzzer.
MESON_OPTS=(--wrap-mode=nodownload --buildtype=release -Dms_build_fuzzer=true -Db_sanitize=address -Db_lundef=false)
HASH="$(ms_inputs_hash "fuzzer: meson setup ${MESON_OPTS[*]}; ninja mediasoup-worker-fuzzer" "clang $CLANG_VERSION")"
if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  log "fuzzer up to date: ${BIN#"$ROOT"/}"
else
  START=$SECONDS
  log "building mediasoup-worker-fuzzer $VERSION ($CLANG_VERSION, ASan + UBSan + libFuzzer); this takes minutes (log: ${WORK#"$ROOT"/}/build.log)"
  ms_prepare "$WORK"
  W="$WORK/worker"
  CC=clang CXX=clang++ env -u MEDIASOUP_WORKER_BIN meson setup "$W/out" "$W" "${MESON_OPTS[@]}" \
    > "$WORK/meson.log" 2>&1 || { tail -n 40 "$WORK/meson.log" >&2; die "meson setup failed (full log: $WORK/meson.log)"; }
  ninja -C "$W/out" -j"${BUILD_JOBS:-2}" mediasoup-worker-fuzzer > "$WORK/build.log" 2>&1 || {
    grep -n -E 'error' "$WORK/build.log" | head -n 20 >&2 || true
    tail -n 30 "$WORK/build.log" >&2
    die "ninja failed (full log: $WORK/build.log)"
  }
  cp "$W/out/mediasoup-worker-fuzzer" "$BIN"
  echo "$HASH" > "$STAMP"
  log "built ${BIN#"$ROOT"/} in $((SECONDS - START))s"
fi
flock -u 9   # fuzzing itself does not block worker builds

# --- 3. seed corpus ---------------------------------------------------------------------------------------
FUZZ_DIR="$ROOT/.cache/fuzz"
SEEDS="$FUZZ_DIR/seeds"
rm -rf "$SEEDS"
bash "$ROOT/infra/node.sh" "$ROOT/infra/fuzz-seeds.mjs" "$SEEDS"

# --- 4. run each group for a bounded time -----------------------------------------------------------------
SYMBOLIZER="$(command -v "llvm-symbolizer-$CLANG_MAJOR" || command -v llvm-symbolizer || true)"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:symbolize=1${SYMBOLIZER:+:external_symbolizer_path=$SYMBOLIZER}"
# UBSan reports do not stop a run (each site is reported once, then fuzzing goes on); ASan errors do.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0"
REPORT="$FUZZ_DIR/report.txt"
: > "$REPORT.tmp"
failed=0
for g in "${FUZZ_GROUPS[@]}"; do
  dir="$FUZZ_DIR/$g"
  mkdir -p "$dir/corpus"
  # The group's own seeds plus every other seed (parsers see each other's packets on the wire too).
  cp -n "$SEEDS"/* "$dir/corpus/" 2>/dev/null || true
  # Inputs that found something before (infra/fuzz-findings/<group>-*) are re-run every time.
  cp -n "$ROOT/infra/fuzz-findings/$g"-* "$dir/corpus/" 2>/dev/null || true
  rm -f "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*
  upper="$(tr '[:lower:]' '[:upper:]' <<<"$g")"
  log "fuzzing $g for ${SECONDS_EACH}s ($(find "$dir/corpus" -type f | wc -l) inputs in its corpus)"
  rc=0
  env "MS_FUZZ_$upper=1" MS_FUZZ_LOG_LEVEL=none "$BIN" \
    -max_total_time="$SECONDS_EACH" -max_len=1400 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$dir/corpus" > "$dir/log.txt" 2>&1 || rc=$?
  stat() { grep -o "stat::$1: *[0-9]*" "$dir/log.txt" | tail -n1 | grep -o '[0-9]*$' || echo '?'; }
  runs="$(stat number_of_executed_units)"
  speed="$(stat average_exec_per_sec)"
  cov="$(grep -o 'cov: [0-9]*' "$dir/log.txt" | tail -n1 | grep -o '[0-9]*' || echo '?')"
  corpus="$(find "$dir/corpus" -type f | wc -l)"
  artifacts="$(find "$dir" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)"
  asan="$(grep -c -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$dir/log.txt" || true)"
  # Distinct undefined-behaviour sites (file:line:col), e.g. "Packet.cpp:1693:16".
  ub="$(grep -o -E '[A-Za-z0-9_]+\.(cpp|hpp|cc|h):[0-9]+:[0-9]+: runtime error' "$dir/log.txt" | sed 's/: runtime error//' | sort -u | paste -sd, - || true)"
  verdict=clean
  if ((rc != 0 || artifacts > 0 || asan > 0)); then verdict="CRASH (exit $rc, ${artifacts} inputs kept; see ${dir#"$ROOT"/}/log.txt)"; failed=1; fi
  if [[ -n "$ub" ]]; then verdict="$([[ $verdict == clean ]] && echo '' || echo "$verdict; ")UB at $ub"; failed=1; fi
  printf '%-7s %4ss  %10s runs  %7s exec/s  cov %5s  corpus %5s  %s\n' "$g" "$SECONDS_EACH" "$runs" "$speed" "$cov" "$corpus" "$verdict" | tee -a "$REPORT.tmp"
done
{
  echo "mediasoup $VERSION worker parsers, $CLANG_VERSION, ASan + UBSan, $(date -u +%Y-%m-%dT%H:%MZ)"
  cat "$REPORT.tmp"
} > "$REPORT"
rm -f "$REPORT.tmp"
log "report: ${REPORT#"$ROOT"/}"
exit "$failed"
