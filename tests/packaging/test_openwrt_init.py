"""The OpenWRT scripts: shellcheck, and the procd init script's start_service and the
uci-defaults script run in bash and busybox ash against stubbed procd and UCI functions."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rms.config import load_config
from tests.packaging.openwrt_support import (
    FILES,
    LUCI,
    OPENWRT,
    SHELLS,
    Run,
    converter_command,
    run_sourced,
)

INIT = FILES / "rms.init"
SCRIPTS = [
    INIT,
    FILES / "rms.uci-defaults",
    FILES / "postinst",
    FILES / "prerm",
    OPENWRT / "build-ipk.sh",
    LUCI / "postinst",
    LUCI / "root/usr/libexec/rpcd/luci.rms",
]
needs_shell = pytest.mark.skipif(not SHELLS, reason="no bash or busybox")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_passes_on_every_openwrt_script() -> None:
    proc = subprocess.run(
        ["shellcheck", "--format=gcc", *map(str, SCRIPTS)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def start(shell: list[str], tmp_path: Path, uci: dict[str, str], convert: str = "") -> Run:
    toml = tmp_path / "var/etc/rms/rms.toml"
    body = (
        f"CONVERT='{convert or converter_command(tmp_path)}'\n"
        f"UCI_FILE='{FILES / 'rms.config'}'\nTOML='{toml}'\n"
        'start_service; echo "rc=$?"\nservice_triggers'
    )
    env = {f"UCI_{k}": v for k, v in uci.items()}
    return run_sourced(shell, INIT, body, tmp_path / "calls", env)


@needs_shell
@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[-1])
def test_start_service_runs_rms_as_rms_with_net_admin_and_respawn(
    shell: list[str], tmp_path: Path
) -> None:
    run = start(shell, tmp_path, {"node_state_dir": str(tmp_path / "state")})
    assert run.stdout.strip() == "rc=0", run.stderr
    toml = tmp_path / "var/etc/rms/rms.toml"
    params = run.params()
    assert params["command"] == ["/usr/bin/rms", "run", "--config", str(toml)]
    assert params["respawn"] == ["3600", "5", "5"]
    assert params["capabilities"] == ["/etc/capabilities/rms.json"]
    assert (params["user"], params["group"], params["no_new_privs"]) == (["rms"], ["rms"], ["1"])
    assert params["file"] == [str(FILES / "rms.config")]
    assert run.named("procd_open_instance") == [["rms"]]
    assert run.named("procd_add_jail") == [["rms", "requirejail"]]  # caps need ujail
    assert run.named("procd_add_reload_trigger") == [["rms"]]
    assert ["-p", str(tmp_path / "state"), "/var/run/rms"] in run.named("mkdir")
    # The TOML the daemon is started with is the shipped UCI defaults, and the daemon takes it.
    config = load_config(toml)
    assert (config.vpn.backend, config.log.format) == ("kernel", "json")
    assert str(config.node.state_dir) == "/etc/rms"  # from the UCI file, not the stub


def test_the_capabilities_file_grants_net_admin_and_nothing_else() -> None:
    caps = json.loads((FILES / "rms.capabilities.json").read_text())
    assert set(caps) == {"bounding", "effective", "ambient", "permitted", "inheritable"}
    assert all(v == ["CAP_NET_ADMIN"] for v in caps.values())


@needs_shell
@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[-1])
def test_malformed_respawn_values_fall_back_and_custom_ones_are_kept(
    shell: list[str], tmp_path: Path
) -> None:
    odd = {"service_respawn_threshold": "soon; reboot", "service_respawn_timeout": "",
           "service_respawn_retry": "9"}  # fmt: skip
    run = start(shell, tmp_path, odd)
    assert run.params()["respawn"] == ["3600", "5", "9"]


@needs_shell
@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[-1])
def test_a_disabled_service_starts_nothing(shell: list[str], tmp_path: Path) -> None:
    run = start(shell, tmp_path, {"service_enabled": "0"})
    assert run.stdout.strip() == "rc=0"
    assert run.named("procd_open_instance") == []


@needs_shell
@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[-1])
def test_a_config_the_converter_refuses_starts_nothing_and_says_why(
    shell: list[str], tmp_path: Path
) -> None:
    refuse = tmp_path / "refuse"
    refuse.write_text("#!/bin/sh\necho 'uci2toml: vpn.backend must be one of ...' >&2\nexit 1\n")
    refuse.chmod(0o755)
    run = start(shell, tmp_path, {}, convert=str(refuse))
    assert run.stdout.strip() == "rc=1"
    assert run.named("procd_open_instance") == []
    (said,) = run.named("logger")
    assert said[:2] == ["-t", "rms"] and "not started" in said[2]


FUNCTIONS = r"""
user_exists() { grep -q "^$1:" "$IPKG_INSTROOT/etc/passwd"; }
group_add_next() { echo "$1:x:370:" >>"$IPKG_INSTROOT/etc/group"; echo 370; }
user_add() { echo "$1:x:${2:-370}:$3:$4:$5:$6" >>"$IPKG_INSTROOT/etc/passwd"; }
"""


@needs_shell
@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[-1])
def test_uci_defaults_adds_the_rms_account_once_and_its_state_dir(
    shell: list[str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/ash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "lib/functions.sh").write_text(FUNCTIONS)
    uci = tmp_path / "bin"
    uci.mkdir()
    (uci / "uci").write_text("#!/bin/sh\necho /srv/rms\n")  # `uci -q get rms.node.state_dir`
    (uci / "uci").chmod(0o755)
    script = FILES / "rms.uci-defaults"
    for _ in range(2):  # idempotent: a second run adds no second account
        run = run_sourced(
            shell, script, "", tmp_path / "calls",
            {"IPKG_INSTROOT": str(root), "PATH": f"{uci}:/usr/bin:/bin"},
        )  # fmt: skip
        assert run.code == 0, run.stderr
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert [line for line in passwd if line.startswith("rms:")] == [
        "rms:x:370:370:True Cloud node agent:/var/run/rms:/bin/false"
    ]
    assert ["-p", f"{root}/srv/rms"] in run.named("mkdir")
    assert ["0700", f"{root}/srv/rms"] in run.named("chmod")
