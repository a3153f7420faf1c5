#!/usr/bin/env bash
# Build a Raspberry Pi SD card image (arm64, Debian 12) with True Cloud installed.
#
#   packaging/pi-image/build-pi-image.sh [--out FILE] [--deb FILE] [--reduced] [--size MIB]
#
# mmdebstrap builds the arm64 root under qemu-user emulation; the image is then assembled
# without loop devices or mounts: an MBR with a FAT32 partition (label RASPIFIRM, the Pi's
# firmware, kernel and config) and an ext4 root (label RASPIROOT), the labels Debian's
# raspi-firmware package boots from. --reduced leaves out the kernel, firmware, ssh and
# networking (the test builds it: same script, a fraction of the time); it does not boot.
# Prints the image's path on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
out="$top/dist/truecloud-pi-arm64.img"
deb=""
reduced=0
size=""
suite=bookworm
boot_mib=256
first_mib=4  # the first partition starts 4 MiB in: aligned for SD cards' erase blocks

usage() {
    echo "usage: build-pi-image.sh [--out FILE] [--deb FILE] [--reduced] [--size MIB]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --deb) [ $# -ge 2 ] || usage; deb=$2; shift 2 ;;
        --size) [ $# -ge 2 ] || usage; size=$2; shift 2 ;;
        --reduced) reduced=1; shift ;;
        *) usage ;;
    esac
done
[ -z "$size" ] || [[ "$size" =~ ^[0-9]+$ ]] || { echo "build-pi-image.sh: --size is MiB" >&2; exit 2; }
[ -z "$deb" ] || [ -f "$deb" ] || { echo "build-pi-image.sh: no such .deb: $deb" >&2; exit 2; }
if [ "$(id -u)" -ne 0 ]; then
    echo "build-pi-image.sh: run as root (mmdebstrap --mode=root, chroot under emulation)" >&2
    exit 2
fi

work=$(mktemp -d /var/tmp/truecloud-pi.XXXXXX)
cleanup() {
    # mmdebstrap unmounts what it mounted; refuse to delete through anything left mounted.
    if grep -q " $work" /proc/self/mountinfo; then
        echo "build-pi-image.sh: $work still has mounts; left in place" >&2
        return
    fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
say() { printf '==> %s\n' "$*" >&2; }

# arm64 binaries run through qemu-user-static, registered with binfmt_misc (PLATFORM.md).
enable_emulation() {
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        update-binfmts --enable qemu-aarch64
    fi
}

packages() {
    local list="systemd-sysv,ca-certificates,fdisk,e2fsprogs,util-linux"
    if [ "$reduced" -eq 0 ]; then
        list+=",linux-image-arm64,raspi-firmware,firmware-brcm80211,initramfs-tools,udev,kmod"
        list+=",netbase,iproute2,openssh-server,systemd-timesyncd,systemd-resolved,dbus"
    fi
    echo "$list"
}

# The root file system: Debian arm64 plus the package and the first-boot service.
build_root() {
    local depends
    cp "$deb" "$work/truecloud.deb"
    # The package's dependencies come in with the root, so dpkg installs it with no network
    # inside the chroot (whose resolv.conf systemd-resolved replaces in the full image).
    depends=$(dpkg-deb -f "$deb" Depends | sed -e 's/ *([^)]*)//g' -e 's/, */,/g')
    # shellcheck disable=SC2016  # "$1" is the root, expanded by mmdebstrap's hook shell
    nice mmdebstrap --mode=root --architectures=arm64 --variant=minbase \
        --components="main non-free-firmware" --include="$(packages),$depends" \
        --setup-hook='mkdir -p "$1/boot/firmware"' \
        --customize-hook="copy-in $work/truecloud.deb /tmp" \
        --customize-hook='chroot "$1" dpkg -i /tmp/truecloud.deb' \
        --customize-hook='rm "$1/tmp/truecloud.deb"' \
        --customize-hook='chroot "$1" rms --version' \
        --customize-hook="upload $here/truecloud-firstboot /usr/local/sbin/truecloud-firstboot" \
        --customize-hook='chmod 0755 "$1/usr/local/sbin/truecloud-firstboot"' \
        --customize-hook="upload $here/truecloud-firstboot.service /etc/systemd/system/truecloud-firstboot.service" \
        --customize-hook="$here/customize.sh \"\$1\" $reduced" \
        "$suite" "$work/root" >&2
}

# The FAT partition: what the firmware boots, plus the owner's settings template.
boot_partition() {
    local fat="$work/boot.img"
    mkfs.vfat -F 32 -n RASPIFIRM -C "$fat" $((boot_mib * 1024)) >/dev/null
    if [ -n "$(ls -A "$work/root/boot/firmware")" ]; then
        mcopy -s -p -i "$fat" "$work/root/boot/firmware"/* ::/
    fi
    rm -rf "${work:?}/root/boot/firmware"/*
}

# The ext4 root, populated straight from the directory (no mount, owners and modes kept).
root_partition() {
    local used mib
    used=$(du -sm "$work/root" | cut -f1)
    mib=$((used + used / 4 + 64))
    mkfs.ext4 -q -L RASPIROOT -d "$work/root" "$work/root.img" "${mib}M" >&2
    echo "$mib"
}

assemble() {
    local root_mib=$1 total
    total=$((first_mib + boot_mib + root_mib))
    if [ -n "$size" ] && [ "$size" -gt "$total" ]; then total=$size; fi
    mkdir -p "$(dirname "$out")"
    rm -f "$out"
    truncate -s "${total}M" "$out"
    sfdisk --quiet "$out" <<EOF
label: dos
start=$((first_mib * 2048)), size=$((boot_mib * 2048)), type=c, bootable
start=$(((first_mib + boot_mib) * 2048)), type=83
EOF
    dd if="$work/boot.img" of="$out" bs=1M seek="$first_mib" conv=notrunc,sparse status=none
    dd if="$work/root.img" of="$out" bs=1M seek=$((first_mib + boot_mib)) conv=notrunc,sparse \
        status=none
}

main() {
    local root_mib
    enable_emulation
    if [ -z "$deb" ]; then
        say "building the .deb"
        deb=$("$top/packaging/build-deb.sh" --out "$work/dist")
    fi
    say "building the arm64 root (mmdebstrap under qemu-user)"
    build_root
    say "assembling $out"
    boot_partition
    root_mib=$(root_partition)
    assemble "$root_mib"
    echo "$out"
}

main
