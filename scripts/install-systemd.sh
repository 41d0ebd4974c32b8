#!/usr/bin/env bash
# `make install-systemd` (root): install agfs-fuse for systemd and fstab use.
#
#   /opt/agfs-fuse/venv                 a venv with this checkout installed (not editable)
#   /usr/local/bin/agfs-fuse            -> the venv's agfs-fuse
#   /sbin/mount.fuse.agfs               -> the venv's mount.fuse.agfs (mount -t fuse.agfs, fstab)
#   /etc/systemd/system/agfs-fuse@.service
#   /etc/systemd/system/agfs-fuse-federation@.service
#   /etc/agfs-fuse/example.env          (NAME.env files you create are never touched)
#   /etc/agfs-fuse/example.federation.env, example.yaml   (the same for federations)
#
# Safe to run again: it upgrades the venv in place and replaces the links, the unit and
# the example. The directories can be overridden (for packaging, or a trial run into a
# scratch directory) with AGFS_PREFIX, AGFS_BINDIR, AGFS_SBINDIR, AGFS_UNITDIR and
# AGFS_CONFDIR; PYTHON picks the interpreter for the venv (default python3, >= 3.11).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
PREFIX=${AGFS_PREFIX:-/opt/agfs-fuse}
VENV=$PREFIX/venv
BINDIR=${AGFS_BINDIR:-/usr/local/bin}
SBINDIR=${AGFS_SBINDIR:-/sbin}
UNITDIR=${AGFS_UNITDIR:-/etc/systemd/system}
CONFDIR=${AGFS_CONFDIR:-/etc/agfs-fuse}
UNITS="agfs-fuse@.service agfs-fuse-federation@.service"
EXAMPLES="example.env example.federation.env example.yaml"

die() { echo "install-systemd: $*" >&2; exit 1; }
say() { echo "install-systemd: $*"; }

# Writing to /etc, /sbin and /opt needs root; a trial run into scratch directories does not.
if [ "$(id -u)" != 0 ] && [ -z "${AGFS_PREFIX:-}" ]; then
  die "run as root (sudo make install-systemd)"
fi
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11+)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PYTHON is $("$PYTHON" -V 2>&1); agfs-fuse needs Python >= 3.11 (set PYTHON=...)"
command -v fusermount3 >/dev/null || die "fusermount3 not found (apt-get install fuse3)"

# 1. The venv. Created once; a venv whose interpreter went away is recreated.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
  say "creating the venv $VENV"
  mkdir -p "$PREFIX"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (Debian: apt-get install python3-venv)"
fi

# 2. This checkout, installed (not editable: the service must not depend on this
# directory). Built from a scratch copy of the sources so that neither build/ nor
# *.egg-info lands in the checkout; --force-reinstall --no-deps after the first install
# so that a changed checkout with the same version number is really installed again.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r "$SRC/pyproject.toml" "$SRC/agfs_fuse" "$stage/"
[ -f "$SRC/README.md" ] && cp "$SRC/README.md" "$stage/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
say "installing agfs-fuse from $SRC into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$stage"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$stage"
for script in agfs-fuse mount.fuse.agfs; do
  [ -x "$VENV/bin/$script" ] || die "the venv has no $script after installing"
done

# 3. The commands. ln -sfn replaces an older link (or file) atomically enough for a rerun.
mkdir -p "$BINDIR" "$SBINDIR"
ln -sfn "$VENV/bin/agfs-fuse" "$BINDIR/agfs-fuse"
ln -sfn "$VENV/bin/mount.fuse.agfs" "$SBINDIR/mount.fuse.agfs"
say "linked $BINDIR/agfs-fuse and $SBINDIR/mount.fuse.agfs"

# 4. The units and the example configurations. NAME.env and NAME.yaml files may hold
# secrets (a token in AGFS_TOKEN or a backend's token:): the directory is root's only.
install -d -m 0755 "$UNITDIR"
for unit in $UNITS; do
  install -m 0644 "$SRC/systemd/$unit" "$UNITDIR/$unit"
done
install -d -m 0700 "$CONFDIR"
for example in $EXAMPLES; do
  install -m 0600 "$SRC/systemd/$example" "$CONFDIR/$example"
done
say "installed $UNITS in $UNITDIR and $EXAMPLES in $CONFDIR"

# 5. Tell systemd, when it is running (the check sd_booted(3) makes) and the unit went
# where it looks; in a container, a chroot or a trial run there is nothing to reload.
if [ -d /run/systemd/system ] && [ "$UNITDIR" = /etc/systemd/system ]; then
  systemctl daemon-reload
  say "systemctl daemon-reload done"
else
  say "skipped systemctl daemon-reload (systemd is not running, or the unit is not in /etc/systemd/system)"
fi

cat <<EOF

Next steps, for each mount NAME:
  cp $CONFDIR/example.env $CONFDIR/NAME.env   # set AGFS_URL, AGFS_MOUNTPOINT, AGFS_OPTIONS
  mkdir -p /mnt/agfs                           # the mountpoint: an existing, empty directory
  systemctl enable --now agfs-fuse@NAME
  systemctl status agfs-fuse@NAME; journalctl -u agfs-fuse@NAME

For a federation (several servers in one mount), NAME.yaml holds the backends:
  cp $CONFDIR/example.yaml $CONFDIR/NAME.yaml && chmod 600 $CONFDIR/NAME.yaml
  cp $CONFDIR/example.federation.env $CONFDIR/NAME.federation.env   # AGFS_MOUNTPOINT...
  systemctl enable --now agfs-fuse-federation@NAME

Or in /etc/fstab (mount(8) runs $SBINDIR/mount.fuse.agfs; a .yaml source is a federation):
  http://host:8080/api/v1 /mnt/agfs fuse.agfs _netdev,nofail 0 0
  $CONFDIR/NAME.yaml /mnt/agfs-fed fuse.agfs _netdev,nofail 0 0
EOF
