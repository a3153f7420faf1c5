#!/usr/bin/env bash
# The project's two entry points, for a fresh Debian 12 machine, as root:
#   scripts/dev.sh demo   set everything up, then bring up a local cloud in the lab
#   scripts/dev.sh test   set everything up, then run ruff, mypy --strict and the test suite
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$top/.venv"

# Debian packages the lab needs (PLATFORM.md): userspace WireGuard, the tgt iSCSI target, the
# libiscsi initiator tools, zfs-fuse, FUSE, nftables and iproute2, plus Python to build the venv.
debs=(wireguard-go wireguard-tools tgt libiscsi-bin zfs-fuse fuse3 nftables iproute2
      util-linux python3 python3-venv python3-dev gcc shellcheck nodejs busybox
      mmdebstrap qemu-user-static binfmt-support arch-test fdisk dosfstools mtools
      chromium)

say() { printf '==> %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/dev.sh: run this as root (the lab creates network namespaces)" >&2
        exit 2
    fi
}

install_debs() {
    local missing=()
    for p in "${debs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

install_venv() {
    local stamp="$venv/.truecloud-stamp" want
    want=$(sha256sum "$top/pyproject.toml" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ]; then
        say "creating the virtual environment in .venv"
        /usr/bin/python3 -m venv "$venv"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing the project and its Python packages into .venv"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q -e "${top}[dev]"
        echo "$want" >"$stamp"
    fi
}

setup() {
    need_root
    install_debs
    install_venv
}

run_tests() {
    cd "$top"
    say "ruff"
    "$venv/bin/ruff" check .
    "$venv/bin/ruff" format --check .
    say "mypy --strict"
    "$venv/bin/mypy"
    if [ $# -gt 0 ]; then
        say "pytest $*"
        "$venv/bin/pytest" -p no:cacheprovider "$@"
        return
    fi
    # The labs first, in a pytest of their own, while the machine is fresh; then the rest. Both
    # always run, so one failing part does not hide the other's results.
    local failed=0
    say "pytest tests/lab"
    "$venv/bin/pytest" -p no:cacheprovider tests/lab || failed=1
    say "pytest (everything else)"
    "$venv/bin/pytest" -p no:cacheprovider --ignore=tests/lab || failed=1
    return "$failed"
}

run_demo() {
    cd "$top"
    # 10 nodes, each its own location and network: enough distinct providers for node1's
    # Cloud File System to place its 8 volumes (docs/cfs.md), so the demo shows a live pool.
    local n="${NODES:-10}"
    "$venv/bin/rms" lab up --nodes "$n" --locations "$n" --networks "$n"
}

case "${1:-}" in
    demo) setup; run_demo ;;
    test) shift; setup; run_tests "$@" ;;
    setup) setup ;;
    *) echo "usage: scripts/dev.sh demo|test|setup" >&2; exit 2 ;;
esac
