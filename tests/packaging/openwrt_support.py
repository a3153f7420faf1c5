"""Helpers for the OpenWRT package tests: paths, the shells to run scripts in, and the
procd/UCI function stubs an init script is sourced with (OpenWRT's /etc/rc.common,
/lib/functions.sh and procd.sh do not exist on Debian)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
OPENWRT = ROOT / "openwrt"
FILES = OPENWRT / "rms" / "files"
LUCI = OPENWRT / "luci-app-rms"
SEP = "\x1f"  # between recorded arguments: no script value contains it

# bash, and busybox's ash (the shell OpenWRT runs init scripts with), when present.
SHELLS = [s for s in (["bash"], ["busybox", "ash"]) if shutil.which(s[0])]

# Stand-ins for OpenWRT's shell library: UCI values come from UCI_<section>_<option>
# variables; every procd call, logger line and file-system change is recorded in $LOG.
STUBS = r"""
record() {
	printf '%s' "$1" >>"$LOG"; shift
	for a in "$@"; do printf '\037%s' "$a" >>"$LOG"; done
	echo >>"$LOG"
}
config_load() { record config_load "$@"; }
config_get() {
	eval "__v=\${UCI_${2}_${3}-\$4}"
	eval "$1=\$__v"
}
config_get_bool() {
	eval "__v=\${UCI_${2}_${3}-\$4}"
	case "$__v" in 1|on|true|yes|enabled) __v=1 ;; *) __v=0 ;; esac
	eval "$1=\$__v"
}
procd_open_instance() { record procd_open_instance "$@"; }
procd_set_param() { record procd_set_param "$@"; }
procd_add_jail() { record procd_add_jail "$@"; }
procd_close_instance() { record procd_close_instance "$@"; }
procd_add_reload_trigger() { record procd_add_reload_trigger "$@"; }
logger() { record logger "$@"; }
mkdir() { record mkdir "$@"; }
chown() { record chown "$@"; }
chmod() { record chmod "$@"; }
"""


@dataclass(frozen=True)
class Run:
    """What a sourced script did: its exit code, output and the recorded calls."""

    code: int
    stdout: str
    stderr: str
    calls: list[list[str]]

    def params(self) -> dict[str, list[str]]:
        """procd_set_param NAME VALUES... as {NAME: VALUES}."""
        return {c[1]: c[2:] for c in self.calls if c[0] == "procd_set_param"}

    def named(self, name: str) -> list[list[str]]:
        """The recorded calls of one function, arguments only."""
        return [c[1:] for c in self.calls if c[0] == name]


def run_sourced(
    shell: list[str], script: Path, body: str, log: Path, env: Mapping[str, str]
) -> Run:
    """Source script after the stubs in shell, then run body; what happened."""
    text = f"{STUBS}\n. '{script}'\n{body}\n"
    full = {"PATH": os.environ["PATH"], "LOG": str(log), **env}
    log.write_text("")
    proc = subprocess.run(
        [*shell, "-c", text], env=full, capture_output=True, text=True, timeout=60, check=False
    )
    calls = [line.split(SEP) for line in log.read_text().splitlines()]
    return Run(proc.returncode, proc.stdout, proc.stderr, calls)


def load_uci2toml() -> ModuleType:
    """The converter shipped as /usr/libexec/rms/uci2toml, imported from its source file."""
    name = "openwrt_uci2toml"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FILES / "uci2toml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def converter_command(directory: Path) -> Path:
    """An executable that runs the converter with this interpreter (the router's python3)."""
    wrapper = directory / "uci2toml"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FILES / "uci2toml.py"}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper
