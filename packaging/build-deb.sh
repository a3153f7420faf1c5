#!/usr/bin/env bash
# Build the True Cloud Debian package (Architecture: all) from this checkout.
#
#   packaging/build-deb.sh --library-root ROOT.json [--out DIR] [--release N]
#
# ROOT.json is the component library's root metadata (root v1 as `rms-repo` published it,
# REPO/metadata/1.root.json): the package ships it as /usr/share/rms/library-root.json, the
# one trust anchor `rms update` starts from (docs/updates.md). It may also be given as
# $TRUECLOUD_LIBRARY_ROOT. The build checks it with `rms-repo check-root` and stops without it.
#
# The project's Python packages go to /usr/lib/truecloud with the pure-Python wheels Debian 12
# lacks (packaging/debian/vendor.txt); every other Python dependency becomes a Depends on the
# Debian package named in packaging/debian/python-deps.txt. Console scripts go to /usr/bin, the
# systemd units to /lib/systemd/system. Prints the path of the .deb on stdout.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deb_dir="$top/packaging/debian"
out="$top/dist"
release=1
package=truecloud
libdir=usr/lib/truecloud
debian_python=3.11  # Debian 12's python3
library_root=${TRUECLOUD_LIBRARY_ROOT:-}

usage() {
    echo "usage: packaging/build-deb.sh --library-root ROOT.json [--out DIR] [--release N]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --release) [ $# -ge 2 ] || usage; release=$2; shift 2 ;;
        --library-root) [ $# -ge 2 ] || usage; library_root=$2; shift 2 ;;
        *) usage ;;
    esac
done
[[ "$release" =~ ^[0-9]+$ ]] || { echo "build-deb.sh: --release must be a number" >&2; exit 2; }
if [ -z "$library_root" ]; then
    echo "build-deb.sh: name the component library's root metadata with --library-root" \
        "(or TRUECLOUD_LIBRARY_ROOT): the package ships it as the trust anchor of rms update;" \
        "the library's key holders publish it as REPO/metadata/1.root.json (docs/updates.md)" >&2
    exit 2
fi
[ -f "$library_root" ] || { echo "build-deb.sh: no such file: $library_root" >&2; exit 2; }

if [ -z "${PYTHON:-}" ]; then
    if [ -x "$top/.venv/bin/python" ]; then PYTHON="$top/.venv/bin/python"; else PYTHON=python3; fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/root"

# Lines of a packaging/debian list file without comments and blank lines.
entries() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$1"; }

# pyproject.toml's version and its runtime dependencies' names (lower case, no specifiers).
project_field() {
    "$PYTHON" - "$top/pyproject.toml" "$1" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
if sys.argv[2] == "version":
    print(project["version"])
else:
    for dep in project["dependencies"]:
        print(re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower())
EOF
}

# The Depends line: every pyproject dependency must be mapped (to Debian or to "vendor").
debian_depends() {
    local dep target deps=()
    while read -r dep; do
        target=$(entries "$deb_dir/python-deps.txt" | awk -v d="$dep" 'tolower($1) == d {print $2}')
        if [ -z "$target" ]; then
            echo "build-deb.sh: $dep (pyproject.toml) is not in packaging/debian/python-deps.txt" >&2
            exit 1
        fi
        if [ "$target" = vendor ]; then
            entries "$deb_dir/vendor.txt" | grep -qi "^$dep==" || {
                echo "build-deb.sh: $dep is marked vendor but not pinned in vendor.txt" >&2
                exit 1
            }
        else
            deps+=("$target")
        fi
    done < <(project_field dependencies)
    while read -r dep; do deps+=("$dep"); done < <(entries "$deb_dir/extra-depends.txt")
    local joined
    joined=$(printf '%s, ' "${deps[@]}")
    echo "${joined%, }"
}

# pip install into the package's library directory; its chatter only shows when it fails.
pip_target() {
    if ! "$PYTHON" -m pip install -q --no-deps --no-compile --target "$stage/$libdir" "$@" \
        >"$work/pip.log" 2>&1; then
        cat "$work/pip.log" >&2
        exit 1
    fi
}

# The pure-Python wheel of each vendored requirement: PyPI's py3-none-any wheel even where a
# compiled one exists for this machine, else one built from the sdist (checked pure below).
vendor_wheels() {
    local req
    mkdir -p "$work/wheels"
    while read -r req; do
        if ! "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --platform any \
            --implementation py --abi none --python-version "$debian_python" \
            -d "$work/wheels" "$req" >"$work/pip.log" 2>&1; then
            "$PYTHON" -m pip wheel -q --no-deps -w "$work/wheels" "$req" >"$work/pip.log" 2>&1 \
                || { cat "$work/pip.log" >&2; exit 1; }
        fi
    done < <(entries "$deb_dir/vendor.txt")
}

# The project (from a copy, so the checkout gets no build/ or egg-info) and the vendored wheels.
install_python() {
    mkdir -p "$work/src" "$stage/$libdir"
    cp -r "$top/pyproject.toml" "$top/README.md" "$work/src/"
    for pkg in rms vpn_discovery volume_provider cfs; do
        cp -r "$top/$pkg" "$work/src/$pkg"
    done
    find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
    pip_target "$work/src"
    vendor_wheels
    pip_target "$work/wheels"/*.whl
    # pip's scripts name the build's Python; direct_url.json names the build directory.
    rm -rf "${stage:?}/$libdir/bin" "$stage/$libdir"/*.dist-info/direct_url.json
    if find "$stage/$libdir" -name '*.so*' | grep -q .; then
        echo "build-deb.sh: a vendored wheel has compiled code; the package is arch all" >&2
        exit 1
    fi
}

# /usr/bin wrappers for the console scripts the project's entry points name.
install_scripts() {
    local ep name target module func
    ep=$(echo "$stage/$libdir"/truecloud-*.dist-info/entry_points.txt)
    mkdir -p "$stage/usr/bin"
    sed -n '/^\[console_scripts\]/,/^\[/p' "$ep" | grep ' = ' | while read -r name _ target; do
        module=${target%%:*}
        func=${target##*:}
        cat >"$stage/usr/bin/$name" <<EOF
#!/usr/bin/python3
import sys

sys.path.insert(0, "/$libdir")
from $module import $func

sys.exit($func())
EOF
        chmod 0755 "$stage/usr/bin/$name"
    done
}

# The library's root, checked by the project's own tool before it becomes the trust anchor.
install_library_root() {
    local said
    if ! said=$(PYTHONPATH="$top" "$PYTHON" -m rms.update.repo check-root "$library_root" 2>&1)
    then
        echo "build-deb.sh: $said" >&2
        exit 1
    fi
    echo "build-deb.sh: ships $said" >&2
    install -D -m 0644 "$library_root" "$stage/usr/share/rms/library-root.json"
}

install_system_files() {
    local unit doc="$stage/usr/share/doc/$package"
    mkdir -p "$stage/lib/systemd/system" "$stage/usr/lib/tmpfiles.d" "$doc"
    for unit in "$deb_dir"/*.service; do
        install -m 0644 "$unit" "$stage/lib/systemd/system/"
    done
    install -m 0644 "$deb_dir/truecloud.tmpfiles" "$stage/usr/lib/tmpfiles.d/$package.conf"
    install -m 0644 "$deb_dir/copyright" "$doc/copyright"
    install -m 0644 "$deb_dir/rms.toml.example" "$doc/rms.toml.example"
    install -m 0644 "$top/docs/install.md" "$doc/install.md"
}

write_control() {
    local version=$1 depends=$2 size
    mkdir -p "$stage/DEBIAN"
    size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
    {
        echo "Package: $package"
        echo "Version: $version"
        echo "Architecture: all"
        echo "Maintainer: True Cloud developers <truecloud@localhost>"
        echo "Installed-Size: $size"
        echo "Depends: $depends"
        echo "Recommends: wireguard-go, ca-certificates"
        echo "Suggests: tgt, libiscsi-bin, zfs-fuse | zfsutils-linux, fuse3"
        echo "Section: net"
        echo "Priority: optional"
        echo "Description: True Cloud node: a volunteer cloud of WireGuard VPNs"
        echo " The Resource Management Service (rms) joins the cloud's WireGuard management"
        echo " VPNs found through a signed discovery feed, and runs as an unprivileged user"
        echo " with CAP_NET_ADMIN only. The Volume Provider and the Cloud File System run as"
        echo " separate root helpers for the iSCSI target and ZFS."
    } >"$stage/DEBIAN/control"
    for script in postinst prerm postrm; do
        install -m 0755 "$deb_dir/$script" "$stage/DEBIAN/$script"
    done
    (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' \
        | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
}

main() {
    local upstream version deb depends
    upstream=$(project_field version)
    version="$upstream-$release"
    install_library_root  # first: a bad root or an unmapped dependency stops the build at once
    depends=$(debian_depends)
    install_python
    install_scripts
    install_system_files
    write_control "$version" "$depends"
    mkdir -p "$out"
    deb="$out/${package}_${version}_all.deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    echo "$deb"
}

main
