"""The Raspberry Pi SD image, inspected without booting: partition table (sfdisk --json), the
FAT partition (mtools), the ext4 root (debugfs): the package installed, the first-boot service
enabled, nothing that must differ per card baked in.

The image is the reduced one (build-pi-image.sh --reduced: no kernel, firmware or ssh), which
the same script builds in a few minutes under qemu-user; docs/install.md says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.debroot import TOP, build_deb, run

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap --mode=root needs root"),
    pytest.mark.skipif(
        shutil.which("mmdebstrap") is None or shutil.which("qemu-aarch64-static") is None,
        reason="scripts/dev.sh installs mmdebstrap and qemu-user-static",
    ),
]

BUILD = TOP / "packaging" / "pi-image" / "build-pi-image.sh"
SECTOR = 512
ELF_MACHINE_AARCH64 = 0xB7


@dataclass
class Image:
    """The image, its partition table and its two partitions as files of their own."""

    path: Path
    table: dict[str, object]
    fat: Path
    root: Path

    def debugfs(self, request: str) -> str:
        return run(["debugfs", "-R", request, self.root])

    def cat(self, path: str) -> bytes:
        done = subprocess.run(
            ["debugfs", "-R", f"cat {path}", str(self.root)], capture_output=True, check=True
        )
        return done.stdout


def partitions(table: dict[str, object]) -> list[dict[str, object]]:
    parts = table["partitions"]
    assert isinstance(parts, list)
    return parts


def cut(image: Path, part: dict[str, object], dest: Path) -> Path:
    """Copy one partition out of the image (sparse), to read it without a loop device."""
    start, size = int(str(part["start"])), int(str(part["size"]))
    run(["dd", f"if={image}", f"of={dest}", f"bs={SECTOR}", f"skip={start}", f"count={size}",
         "conv=sparse", "status=none"])  # fmt: skip
    return dest


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    work = tmp_path_factory.mktemp("pi")
    deb = build_deb(work / "dist")
    built = run([BUILD, "--reduced", "--deb", deb, "--out", work / "pi.img"], timeout=2400)
    path = Path(built.strip().splitlines()[-1])
    table = json.loads(run(["sfdisk", "--json", path]))["partitiontable"]
    fat_part, root_part = partitions(table)
    return Image(
        path, table, cut(path, fat_part, work / "fat"), cut(path, root_part, work / "root")
    )


def test_partition_table_is_fat_boot_then_ext4_root(image: Image) -> None:
    assert image.table["label"] == "dos"
    boot, root = partitions(image.table)
    assert boot["type"] == "c" and boot.get("bootable") is True
    assert root["type"] == "83"
    assert int(str(boot["start"])) * SECTOR % (4 << 20) == 0, "boot not aligned to 4 MiB"
    assert int(str(root["start"])) == int(str(boot["start"])) + int(str(boot["size"]))
    assert run(["blkid", "-o", "value", "-s", "TYPE", image.fat]).strip() == "vfat"
    assert run(["blkid", "-o", "value", "-s", "LABEL", image.fat]).strip() == "RASPIFIRM"
    assert run(["blkid", "-o", "value", "-s", "TYPE", image.root]).strip() == "ext4"
    assert run(["blkid", "-o", "value", "-s", "LABEL", image.root]).strip() == "RASPIROOT"
    run(["e2fsck", "-fn", image.root])


def test_boot_partition_boots_the_root_by_label_and_offers_the_settings(image: Image) -> None:
    names = run(["mdir", "-b", "-i", image.fat, "::/"]).split()
    assert {"::/config.txt", "::/cmdline.txt", "::/truecloud.toml.example"} <= set(names)
    cmdline = run(["mtype", "-i", image.fat, "::/cmdline.txt"])
    assert "root=LABEL=RASPIROOT" in cmdline
    fstab = image.cat("/etc/fstab").decode()
    assert "LABEL=RASPIROOT / ext4" in fstab and "LABEL=RASPIFIRM /boot/firmware vfat" in fstab


def dpkg_status(image: Image) -> dict[str, dict[str, str]]:
    packages = {}
    for stanza in image.cat("/var/lib/dpkg/status").decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line[:40])
        if "Package" in fields:
            packages[fields["Package"]] = fields
    return packages


def test_the_package_is_installed_in_an_arm64_root(image: Image) -> None:
    packages = dpkg_status(image)
    ours = packages["truecloud"]
    assert ours["Status"] == "install ok installed"
    assert ours["Architecture"] == "all"
    assert packages["python3.11"]["Architecture"] == "arm64"
    assert packages["python3-nacl"]["Status"] == "install ok installed"
    elf = image.cat("/usr/bin/python3.11")
    assert elf[:4] == b"\x7fELF"
    assert int.from_bytes(elf[18:20], "little") == ELF_MACHINE_AARCH64
    assert b"from rms.cli.main import main" in image.cat("/usr/bin/rms")


def link_target(image: Image, path: str) -> str:
    stat = image.debugfs(f"stat {path}")
    assert "Type: symlink" in stat, stat
    return stat.split("Fast link dest:")[1].split()[0].strip('"')


def test_first_boot_service_enabled_and_agent_left_to_it(image: Image) -> None:
    wants = "/etc/systemd/system/multi-user.target.wants"
    target = link_target(image, f"{wants}/truecloud-firstboot.service")
    assert target.endswith("/truecloud-firstboot.service")
    unit = image.cat("/etc/systemd/system/truecloud-firstboot.service").decode()
    assert "ExecStart=/usr/local/sbin/truecloud-firstboot" in unit
    assert image.debugfs("stat /usr/local/sbin/truecloud-firstboot").count("Mode:  0755") == 1
    # rms starts from the first-boot service, after the owner's settings are in place.
    listing = image.debugfs(f"ls -l {wants}")
    assert "rms.service" not in listing
    assert b"rms run" in image.cat("/lib/systemd/system/rms.service")


def test_nothing_per_card_is_baked_in(image: Image) -> None:
    assert image.cat("/etc/machine-id") == b""
    assert (
        "File not found"
        in subprocess.run(
            ["debugfs", "-R", "stat /var/lib/rms/node.key", str(image.root)],
            capture_output=True,
            text=True,
            check=False,
        ).stderr
    )
    assert "ssh_host" not in image.debugfs("ls /etc/ssh")
