#!/usr/bin/env bash
# Installs what the tests need to run openclaw itself (the reference implementation of the SQLite
# era): a node >= 24.16 from the npm registry's node-linux-<arch> package (Debian's node 20 is too
# old for openclaw) and openclaw@2026.9.6, both into a cache folder. Idempotent; prints nothing
# when everything is there. Prints the node bin folder on stdout with --print-nodebin.
# Env: OC_SQLITE_CACHE (default /tmp/oc-sqlite), OPENCLAW_VERSION (2026.9.6), NODE_BIN_VERSION (24.22.3).
set -euo pipefail
cache=${OC_SQLITE_CACHE:-/tmp/oc-sqlite}
oc_version=${OPENCLAW_VERSION:-2026.9.6}
node_version=${NODE_BIN_VERSION:-24.22.3}
mkdir -p "$cache/home"
command -v npm >/dev/null || { echo "install_openclaw: npm is missing (apt-get install nodejs npm)" >&2; exit 1; }

node_ok() { "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit((a===24&&b>=16)||a>=26?0:1)' 2>/dev/null; }
if command -v node >/dev/null && node_ok node; then
  nodebin=$(dirname "$(command -v node)")
else
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64|arm64) arch=arm64 ;; *) echo "install_openclaw: unsupported arch $(uname -m)" >&2; exit 1 ;; esac
  nodebin=$cache/nodebin/node_modules/node-linux-$arch/bin
  if ! [ -x "$nodebin/node" ] || ! node_ok "$nodebin/node"; then
    echo "setup: installing node $node_version into $cache (openclaw needs node >= 24.16)" >&2
    mkdir -p "$cache/nodebin"
    [ -f "$cache/nodebin/package.json" ] || echo '{"name":"nodebin","private":true}' > "$cache/nodebin/package.json"
    (cd "$cache/nodebin" && npm install "node-linux-$arch@$node_version" --no-audit --no-fund >/dev/null)
  fi
fi
if [ "$("$nodebin/node" -p "try{require('$cache/node_modules/openclaw/package.json').version}catch{''}")" != "$oc_version" ]; then
  echo "setup: installing openclaw@$oc_version into $cache" >&2
  [ -f "$cache/package.json" ] || echo '{"name":"oc-sqlite","private":true}' > "$cache/package.json"
  (cd "$cache" && PATH=$nodebin:$PATH npm install "openclaw@$oc_version" --ignore-scripts --no-audit --no-fund >/dev/null)
fi
if [ "${1:-}" = "--print-nodebin" ]; then echo "$nodebin"; fi
