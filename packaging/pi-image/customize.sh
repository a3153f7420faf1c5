#!/bin/sh
# mmdebstrap customize hook of build-pi-image.sh: make the root a Pi node's.
#   customize.sh ROOT REDUCED(0|1)
set -eu
root=$1
reduced=$2

# Both partitions by label, as Debian's raspi-firmware expects (its default ROOTPART).
cat >"$root/etc/fstab" <<FSTAB
LABEL=RASPIROOT / ext4 rw,noatime 0 1
LABEL=RASPIFIRM /boot/firmware vfat rw,noatime,umask=0077 0 2
FSTAB
echo truecloud >"$root/etc/hostname"

# The owner's settings template on the FAT partition (truecloud-firstboot reads truecloud.toml).
{
    echo "# Copy this file to truecloud.toml on this partition before the first boot; it"
    echo "# becomes /etc/rms/rms.toml. Set discovery.urls to the cloud's mirrors."
    echo "#"
    cat "$root/usr/share/doc/truecloud/rms.toml.example"
} >"$root/boot/firmware/truecloud.toml.example"

if [ "$reduced" -eq 1 ]; then
    # No firmware package: the two files the Pi firmware reads, as raspi-firmware writes them.
    printf '[all]\narm_64bit=1\nenable_uart=1\n' >"$root/boot/firmware/config.txt"
    echo "console=tty0 root=LABEL=RASPIROOT rw fsck.repair=yes rootwait" \
        >"$root/boot/firmware/cmdline.txt"
else
    # Wired network by DHCP; names resolved by systemd-resolved.
    mkdir -p "$root/etc/systemd/network"
    printf '[Match]\nName=e*\n\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/10-wired.network"
    chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
    # Every card makes its own ssh host keys at first boot (truecloud-firstboot).
    rm -f "$root"/etc/ssh/ssh_host_*
fi

# The agent starts from truecloud-firstboot, once the owner's settings are in place.
chroot "$root" systemctl disable rms.service
chroot "$root" systemctl enable truecloud-firstboot.service

# Each card gets its own machine id at first boot; no apt lists in the image.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/apt/lists/*
