"""truecloud-firstboot's use of the owner's truecloud.toml from the SD card's FAT partition:
only a file that rms's own loader accepts becomes /etc/rms/rms.toml; malformed, oversized and
hostile files are set aside with a reason and the defaults kept. Runs the real script with the
project's real `rms` (its config loader) on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.debroot import TOP

SCRIPT = TOP / "packaging" / "pi-image" / "truecloud-firstboot"
GOOD = '[discovery]\nurls = ["https://mirror.example.org/feed.rss"]\n\n[vpn]\nlocation = "Lyon"\n'


def firstboot(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "TRUECLOUD_BOOT": str(tmp_path / "boot"),
        "TRUECLOUD_ETC": str(tmp_path / "etc"),
        # A socket that is never there: `rms status` must not find a real daemon.
        "RMS_CONTROL_SOCKET": str(tmp_path / "absent.sock"),
    }
    return subprocess.run(
        ["sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    (tmp_path / "boot").mkdir()
    (tmp_path / "etc").mkdir()
    return tmp_path / "boot"


def installed(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "rms" / "rms.toml"


def test_no_file_changes_nothing(tmp_path: Path, boot: Path) -> None:
    done = firstboot(tmp_path, "config")
    assert done.returncode == 0, done.stderr
    assert not installed(tmp_path).exists()


def test_a_good_file_becomes_the_agents_config(tmp_path: Path, boot: Path) -> None:
    (boot / "truecloud.toml").write_text(GOOD)
    done = firstboot(tmp_path, "config")
    assert done.returncode == 0, done.stderr
    assert installed(tmp_path).read_text() == GOOD
    assert installed(tmp_path).stat().st_mode & 0o777 == 0o644
    assert (boot / "truecloud.toml.applied").exists()
    assert not (boot / "truecloud.toml").exists()


def test_a_second_run_keeps_the_applied_config(tmp_path: Path, boot: Path) -> None:
    (boot / "truecloud.toml").write_text(GOOD)
    firstboot(tmp_path, "config")
    (boot / "truecloud.toml.applied").write_text("[vpn]\nbackend = 'none'\n")
    done = firstboot(tmp_path, "config")
    assert done.returncode == 0
    assert installed(tmp_path).read_text() == GOOD


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[discovery\nurls = [", "truecloud.toml"),  # malformed TOML
        (b"\xff\xfe[vpn]\n", "truecloud.toml"),  # not UTF-8
        (b"[nonsense]\nkey = 1\n", "nonsense"),  # unknown section
        (b'[vpn]\nbackend = "kernel-module-of-mine"\n', "vpn.backend"),  # bad value
        (b'[discovery]\nurls = ["http://evil.example/feed.rss"]\n', "https"),  # downgraded feed
        (b'[node]\nstate_dir = ["/", "/etc"]\n', "state_dir"),  # wrong type
    ],
)
def test_a_bad_file_is_set_aside_and_defaults_kept(
    tmp_path: Path, boot: Path, content: bytes, reason: str
) -> None:
    (boot / "truecloud.toml").write_bytes(content)
    done = firstboot(tmp_path, "config")
    assert done.returncode == 0, done.stderr
    assert "was not used, the defaults are kept" in done.stderr
    assert reason in done.stderr
    assert not installed(tmp_path).exists()
    assert (boot / "truecloud.toml.rejected").read_bytes() == content


def test_an_oversized_file_is_not_even_parsed(tmp_path: Path, boot: Path) -> None:
    (boot / "truecloud.toml").write_text("# " + "x" * (300 * 1024) + "\n")
    done = firstboot(tmp_path, "config")
    assert done.returncode == 0
    assert "at most 262144" in done.stderr
    assert not installed(tmp_path).exists()
    assert (boot / "truecloud.toml.rejected").exists()


def test_an_unknown_step_is_misuse(tmp_path: Path, boot: Path) -> None:
    done = firstboot(tmp_path, "reboot-everything")
    assert done.returncode == 2
    assert "usage" in done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="scripts/dev.sh installs it")
def test_image_scripts_pass_shellcheck() -> None:
    pi = TOP / "packaging" / "pi-image"
    subprocess.run(
        ["shellcheck", "-s", "sh", str(pi / "truecloud-firstboot"), str(pi / "customize.sh")],
        check=True,
    )
    subprocess.run(["shellcheck", str(pi / "build-pi-image.sh")], check=True)


def test_build_refuses_misuse(tmp_path: Path) -> None:
    build = TOP / "packaging" / "pi-image" / "build-pi-image.sh"
    for args in (["--size", "big"], ["--deb", str(tmp_path / "missing.deb")], ["--what"]):
        done = subprocess.run(
            [str(build), *args], capture_output=True, text=True, check=False, env=dict(os.environ)
        )
        assert done.returncode == 2, args
