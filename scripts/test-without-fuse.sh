#!/usr/bin/env bash
# Run the tests that need no /dev/fuse (pytest -m "not mount") where there is none: as root, in a
# private mount namespace whose /dev is a fresh tmpfs holding the usual nodes but no fuse. Proves
# that the fast half really runs without FUSE. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "test-without-fuse: needs root (unshare and mount a private /dev)" >&2
    exit 2
fi
exec unshare --mount --propagation private bash -euo pipefail -c '
mount -t tmpfs -o mode=0755 nofuse-dev /dev
mknod -m 0666 /dev/null c 1 3; mknod -m 0666 /dev/zero c 1 5; mknod -m 0666 /dev/full c 1 7
mknod -m 0666 /dev/random c 1 8; mknod -m 0666 /dev/urandom c 1 9; mknod -m 0666 /dev/tty c 5 0
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
mkdir /dev/shm /dev/pts; mount -t tmpfs -o mode=1777 shm /dev/shm
if [ -e /dev/fuse ]; then echo "test-without-fuse: /dev/fuse still there" >&2; exit 2; fi
echo "test-without-fuse: no /dev/fuse here" >&2
exec .venv/bin/python -m pytest -m "not mount" "$@"
' test-without-fuse "$@"
