#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (root or sudo): system packages, then .venv, then
# a `sessionfs` launcher on the user's PATH (as pipx would).
# Usage: scripts/setup.sh [--test] [--force]   (--test also installs the editors the mount tests
# drive; --force points the `sessionfs` launcher here even when it belongs to another checkout)
# The .venv is built from Debian's own interpreter (/usr/bin/python3) when it exists, so the
# tests run on the Python a fresh machine has (3.11.2 on Debian 12), not on a newer build that
# happens to be first on PATH. PYTHON=... overrides; a .venv built from another interpreter is
# rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

test=0 force=0
for arg in "$@"; do
  case "$arg" in
    --test) test=1 ;;
    --force) force=1 ;;
    *) echo "setup: unknown option $arg (usage: scripts/setup.sh [--test] [--force])" >&2; exit 2 ;;
  esac
done

packages=(fuse3 python3-venv)
if [ "$test" = 1 ]; then
  packages+=(nodejs npm curl vim nano emacs-nox jq moreutils perl util-linux rsync)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# node and npm may come from elsewhere than Debian's packages (node is the JSON.stringify oracle;
# npm installs openclaw and the node it needs, below)
if [ "$test" = 1 ] && command -v node >/dev/null; then
  missing=("${missing[@]/nodejs}")
fi
if [ "$test" = 1 ] && command -v npm >/dev/null; then
  missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "setup: missing packages ${missing[*]} and no sudo here; as root run:" >&2
      echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
      echo "then run this script again." >&2
      exit 1
    fi
    SUDO=(sudo)
  fi
  echo "setup: installing ${missing[*]}" >&2
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x /usr/bin/python3 ]; then
  PY=/usr/bin/python3
else
  PY=python3
fi
# The interpreter a venv was made from: its base prefix and exact version.
identity='import sys; print(sys.base_prefix, sys.version)'
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c "$identity")" != "$("$PY" -c "$identity")" ]; then
  echo "setup: .venv was built from another interpreter; rebuilding it from $PY" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.sessionfs-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

# The tests check the SQLite era against openclaw itself (its import, SDK reader and Gateway):
# node >= 24 and openclaw 2026.9.6 from the npm registry, into a cache (scripts/openclaw/install.sh).
if [ "$test" = 1 ]; then
  bash scripts/openclaw/install.sh
fi

# The launcher: a symlink to the venv's script (its #! names the venv's python), where the
# user's shell looks: /usr/local/bin for root, ~/.local/bin otherwise (pipx's place).
if [ "$(id -u)" -eq 0 ]; then
  bindir=/usr/local/bin
else
  bindir="$HOME/.local/bin"
fi
# A launcher of another checkout (a symlink to a sessionfs that exists) is that checkout's: it
# is replaced only with --force; a dangling one is replaced, saying what it pointed to.
target="$PWD/.venv/bin/sessionfs"
launcher="$bindir/sessionfs"
current="$(readlink "$launcher" 2>/dev/null || true)"
if [ -e "$launcher" ] && [ ! -L "$launcher" ]; then
  echo "setup: $launcher exists and is not our symlink; left alone (use $target)" >&2
elif [ -n "$current" ] && [ "$current" != "$target" ] && [ -e "$launcher" ] && [ "$force" = 0 ]; then
  echo "setup: $launcher belongs to another checkout ($current); left alone (use $target, or run scripts/setup.sh --force to point it here)" >&2
elif [ "$current" != "$target" ]; then
  mkdir -p "$bindir"
  ln -sfn "$target" "$launcher"
  if [ -n "$current" ]; then
    echo "setup: installed $launcher -> $target (it pointed to $current)" >&2
  else
    echo "setup: installed $launcher -> $target" >&2
  fi
fi
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "setup: $bindir is not on your PATH; add it (export PATH=\"$bindir:\$PATH\"; Debian's ~/.profile does at the next login)" >&2 ;;
esac
