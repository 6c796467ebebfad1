#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (root or sudo): system packages, then .venv, then
# a `sessionfs` launcher on the user's PATH (as pipx would).
# Usage: scripts/setup.sh [--test]   (--test also installs the editors the mount tests drive)
# The .venv is built from Debian's own interpreter (/usr/bin/python3) when it exists, so the
# tests run on the Python a fresh machine has (3.11.2 on Debian 12), not on a newer build that
# happens to be first on PATH. PYTHON=... overrides; a .venv built from another interpreter is
# rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(fuse3 python3-venv)
if [ "${1:-}" = "--test" ]; then
  packages+=(nodejs npm curl vim nano emacs-nox jq perl util-linux rsync)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# node and npm may come from elsewhere than Debian's packages (node is the JSON.stringify oracle;
# npm installs openclaw and the node it needs, below)
if [ "${1:-}" = "--test" ] && command -v node >/dev/null; then
  missing=("${missing[@]/nodejs}")
fi
if [ "${1:-}" = "--test" ] && command -v npm >/dev/null; then
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
if [ "${1:-}" = "--test" ]; then
  bash scripts/openclaw/install.sh
fi

# The launcher: a symlink to the venv's script (its #! names the venv's python), where the
# user's shell looks: /usr/local/bin for root, ~/.local/bin otherwise (pipx's place).
if [ "$(id -u)" -eq 0 ]; then
  bindir=/usr/local/bin
else
  bindir="$HOME/.local/bin"
fi
target="$PWD/.venv/bin/sessionfs"
launcher="$bindir/sessionfs"
if [ -e "$launcher" ] && [ ! -L "$launcher" ]; then
  echo "setup: $launcher exists and is not our symlink; left alone (use $target)" >&2
elif [ "$(readlink "$launcher" 2>/dev/null || true)" != "$target" ]; then
  mkdir -p "$bindir"
  ln -sfn "$target" "$launcher"
  echo "setup: installed $launcher -> $target" >&2
fi
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "setup: $bindir is not on your PATH; add it (export PATH=\"$bindir:\$PATH\"; Debian's ~/.profile does at the next login)" >&2 ;;
esac
