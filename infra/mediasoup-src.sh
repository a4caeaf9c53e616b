# infra/mediasoup-src.sh — sourced by infra/build-mediasoup.sh (the worker) and infra/fuzz-sfu.sh
# (the libFuzzer targets): what both need to turn mediasoup's npm tarball into a buildable tree.
#
#   ms_init <log-tag>          checks node_modules/mediasoup (3.27.x) and sets ROOT, SRC, VERSION
#   ms_apt <package>...        installs the Debian packages that are missing (root or sudo)
#   ms_inputs_hash <extra>...  hash of everything a build depends on (for the .cache stamps)
#   ms_prepare <dir>           copies the worker sources to <dir>/worker and applies our deviations
#
# The deviations live in infra/mediasoup-build/ (README "SFU build" explains each one):
#   meson-version.patch       meson >= 1.1.0 -> >= 1.0.1 (Debian 12's meson builds it unchanged)
#   dtls-bio-callback.patch   upstream bug fix: the DTLS BIO callback answered 1 to every BIO_ctrl(),
#                             which crashes the worker on OpenSSL builds with kTLS (Debian's)
#   subprojects/*             local stand-ins for every wrapdb/GitHub download, each wrapping
#                             Debian's package with dependency() (libuv, openssl, abseil-cpp,
#                             flatbuffers), plus libsrtp3 (libsrtp 3 API on libsrtp2) and
#                             unordered_dense (std containers)
#   unordered-dense.wrap      says which local subproject provides dependency('unordered_dense')

MS_SUPPORTED='3.27.'
# Debian packages the worker build needs (bookworm names; also in trixie).
MS_BUILD_PACKAGES=(build-essential meson ninja-build pkg-config patch libuv1-dev libssl-dev libsrtp2-dev
  flatbuffers-compiler libflatbuffers-dev libabsl-dev)

log() { printf '[%s] %s\n' "$MS_TAG" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$MS_TAG" "$*" >&2; exit 1; }

ms_init() {
  MS_TAG="$1"
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  PATCH_DIR="$ROOT/infra/mediasoup-build"
  SRC="$ROOT/node_modules/mediasoup/worker"
  [[ -f "$ROOT/node_modules/mediasoup/package.json" && -f "$SRC/meson.build" ]] \
    || die "node_modules/mediasoup is missing; run 'npm ci' first"
  VERSION="$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$ROOT/node_modules/mediasoup/package.json" | head -n1)"
  [[ "$VERSION" == "$MS_SUPPORTED"* ]] \
    || die "node_modules has mediasoup $VERSION, but infra/mediasoup-build/ is for ${MS_SUPPORTED}x"
}

ms_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  log "installing missing apt packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Installed versions of the given Debian packages, one "name version" per line.
ms_pkg_versions() {
  dpkg-query -W -f='${Package} ${Version}\n' "$@" 2>/dev/null | LC_ALL=C sort
}

ms_inputs_hash() {
  (
    cd "$ROOT"
    echo "mediasoup $VERSION"
    echo "arch $(uname -m)"
    printf '%s\n' "$@"
    ms_pkg_versions "${MS_BUILD_PACKAGES[@]}"
    find infra/mediasoup-src.sh infra/mediasoup-build -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -d' ' -f1
}

ms_prepare() {
  local work="$1"
  rm -rf "$work"
  mkdir -p "$work"
  # node_modules is never modified: everything happens on a copy.
  tar -C "$SRC/.." --exclude='worker/out' --exclude='worker/subprojects' -cf - worker | tar -C "$work" -xf -
  local w="$work/worker"
  local p
  for p in meson-version.patch dtls-bio-callback.patch; do
    patch -s -p1 --forward --batch -d "$work" < "$PATCH_DIR/$p" || die "$p did not apply"
  done
  # No wrap file of upstream's is kept: each would download its source. Ours are local directories.
  mkdir -p "$w/subprojects"
  cp -R "$PATCH_DIR/subprojects/." "$w/subprojects/"
  cp "$PATCH_DIR/unordered-dense.wrap" "$w/subprojects/"
  local wrap
  for wrap in "$SRC"/subprojects/*.wrap; do
    wrap="$(basename "$wrap" .wrap)"
    case "$wrap" in
      unordered-dense) ;;             # provided through our unordered-dense.wrap
      wingetopt | catch2) ;;          # Windows only / worker unit tests only: never configured here
      *) [[ -f "$w/subprojects/$wrap/meson.build" ]] || die "no local stand-in for upstream subproject '$wrap'" ;;
    esac
  done
}
