"""The constant POSIX sh scripts run on the target; all data arrives as quoted positional arguments.

Remote layout under the deploy root ($1 in every script):
    bundles/<UTC time>-<sha12>/    one folder per deployed version (bundle files + built engine)
    bundles/.incoming-<version>/   staging while copying, verifying, building; never used by a service
    current  -> bundles/<version>  switched atomically (ln -sfn to a temporary name, then mv -T)
    previous -> bundles/<version>  what `--rollback` switches back to
"""

from __future__ import annotations

# Prints what the target offers: one key=value per line. $2 = the lineside command (may be empty).
PROBE = r"""
have() { command -v "$1" >/dev/null 2>&1; }
echo "arch=$(uname -m)"
for tool in sha256sum tar mv ln; do have "$tool" && echo "$tool=yes" || echo "$tool=no"; done
if [ -n "$2" ] && have "$2"; then echo "lineside=$(command -v "$2")"; else echo "lineside="; fi
if have trtexec; then echo "trtexec=$(command -v trtexec)"
elif [ -x /usr/src/tensorrt/bin/trtexec ]; then echo "trtexec=/usr/src/tensorrt/bin/trtexec"
else echo "trtexec="; fi
have systemctl && [ -d /run/systemd/system ] && echo "systemd=yes" || echo "systemd=no"
echo "uid=$(id -u)"
[ -f /etc/nv_tegra_release ] && echo "l4t=$(head -n 1 /etc/nv_tegra_release)" || echo "l4t="
[ -L "$1/current" ] && echo "current=$(readlink "$1/current")" || echo "current="
"""

# Removes stale staging folders of interrupted deploys and creates a fresh one ($2 = staging name).
PREPARE = r"""
set -e
mkdir -p "$1/bundles"
cd "$1/bundles"
for stale in .incoming-*; do [ -e "$stale" ] && rm -rf -- "$stale"; done
mkdir -- "$2"
echo "root=$(cd "$1" && pwd)"
"""

# Unpacks the tar stream on stdin into the staging folder ($2).
RECEIVE = r"""
set -e
cd "$1/bundles/$2"
exec tar -xf - --no-same-owner
"""

# Checks the bundle files against the checksum list on stdin ($2 = staging, $3 = sub-folder).
VERIFY = r"""
set -e
cd "$1/bundles/$2/$3"
sha256sum -c -
"""

# Runs a command inside the staging bundle folder: "$@" after the 3 fixed arguments.
RUN_IN = r"""
set -e
cd "$1/bundles/$2/$3"
shift 3
exec "$@"
"""

# Moves the verified staging bundle to its version folder and switches `current` atomically.
PROMOTE_AND_SWITCH = r"""
set -e
cd "$1"
[ ! -e "bundles/$3" ] || { echo "version $3 already exists" >&2; exit 3; }
mv -- "bundles/$2/bundle" "bundles/$3"
rm -rf -- "bundles/$2"
old=""
[ -L current ] && old=$(readlink current)
ln -sfn "bundles/$3" .current.tmp
mv -T .current.tmp current
if [ -n "$old" ] && [ "$old" != "bundles/$3" ]; then
  ln -sfn "$old" .previous.tmp
  mv -T .previous.tmp previous
fi
echo "previous=$old"
"""

# Swaps `current` and `previous`.
ROLLBACK = r"""
set -e
cd "$1"
[ -L previous ] || { echo "no previous version to roll back to in $1" >&2; exit 3; }
prev=$(readlink previous)
[ -d "$prev" ] || { echo "previous version $prev is gone from $1" >&2; exit 3; }
cur=""
[ -L current ] && cur=$(readlink current)
ln -sfn "$prev" .current.tmp
mv -T .current.tmp current
if [ -n "$cur" ]; then
  ln -sfn "$cur" .previous.tmp
  mv -T .previous.tmp previous
fi
echo "current=$prev"
echo "previous=$cur"
"""

# Deletes version folders beyond the newest $2, never `current` or `previous`.
PRUNE = r"""
set -e
cd "$1/bundles"
cur=$(basename "$(readlink ../current 2>/dev/null || echo none)")
prev=$(basename "$(readlink ../previous 2>/dev/null || echo none)")
ls -1 | grep -E '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$' | sort -r | tail -n +"$(($2 + 1))" | while read -r old; do
  if [ "$old" != "$cur" ] && [ "$old" != "$prev" ]; then rm -rf -- "$old"; echo "removed=$old"; fi
done
"""

# Removes a staging folder after a failed deploy (best effort).
DISCARD = r"""
rm -rf -- "$1/bundles/$2"
"""

# Writes a file atomically from stdin ($2 = path relative to $1).
WRITE_FILE = r"""
set -e
cd "$1"
cat > "$2.tmp"
mv -f -- "$2.tmp" "$2"
"""

# Installs the unit ($2 = unit file under $1, $3 = unit name) and (re)starts it; needs root or sudo -n.
INSTALL_SERVICE = r"""
set -e
unit_src="$(cd "$1" && pwd)/$2"
if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "need root or passwordless sudo to install /etc/systemd/system/$3" >&2; exit 4; fi
$sudo install -m 0644 "$unit_src" "/etc/systemd/system/$3"
$sudo systemctl daemon-reload
$sudo systemctl enable "$3"
$sudo systemctl restart "$3"
"""

# Restarts the unit if it is installed and systemd runs (after a switch or rollback).
RESTART_SERVICE = r"""
[ -d /run/systemd/system ] && [ -f "/etc/systemd/system/$1" ] || { echo "restart=skipped"; exit 0; }
if [ "$(id -u)" = 0 ]; then systemctl restart "$1"; else sudo -n systemctl restart "$1"; fi
echo "restart=done"
"""
