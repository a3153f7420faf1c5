"""The lab's one boundary with the operating system's tools: errors are translated here, once.

Every iproute2, mount and util-linux call of the lab goes through `run_tool`, so a missing
binary, a non-zero exit or a hang becomes a `LabError` that says which command failed and
what it printed, and the lab logic above never sees `OSError` or `CalledProcessError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# The tools `rms lab` cannot work without; later issues add wireguard-go, tgtd, zfs-fuse.
REQUIRED_TOOLS = ("ip", "nsenter", "unshare", "mount", "umount")
TOOL_TIMEOUT_S = 30.0
EXIT_OK = 0
EXIT_DOWN = 1
EXIT_MISUSE = 2
EXIT_INTERRUPTED = 130


class LabError(Exception):
    """Something the lab needs failed; the message says what and what to do next."""

    exit_code = EXIT_DOWN


class LabUsageError(LabError):
    """The lab was asked for something it cannot do as asked (bad name, not root…)."""

    exit_code = EXIT_MISUSE


def run_tool(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float = TOOL_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a tool to completion and return its stdout; any failure becomes a LabError."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else dict(env),
        )
    except FileNotFoundError as e:
        raise LabError(f"`{argv[0]}` is not installed: {e.strerror}") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"`{_show(argv)}` did not finish within {timeout:.0f} s") from e
    except OSError as e:
        raise LabError(f"cannot run `{_show(argv)}`: {e.strerror}") from e
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip() or "no output"
        raise LabError(f"`{_show(argv)}` failed (exit {done.returncode}): {said}")
    return done.stdout


def _show(argv: Sequence[str]) -> str:
    """A command line short enough for an error message."""
    text = " ".join(argv)
    return text if len(text) <= 160 else text[:157] + "..."


def require_root() -> None:
    """Refuse to go on unless running as root: namespaces and mounts need it."""
    if os.geteuid() != 0:
        raise LabUsageError(
            "the lab creates network namespaces and mounts, so it must run as root "
            "(try `sudo .venv/bin/rms lab …`)"
        )


def missing_tools(tools: Sequence[str] = REQUIRED_TOOLS) -> list[str]:
    """The required tools that are not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def require_tools() -> None:
    """Refuse to go on when a tool the lab drives is missing, naming the packages."""
    missing = missing_tools()
    if missing:
        raise LabUsageError(
            f"missing tools: {', '.join(missing)}; install them with "
            "`apt-get install iproute2 util-linux mount` (or run scripts/dev.sh setup)"
        )


def tool_path(tool: str) -> str:
    """The absolute path of a tool, as needed by posix_spawn."""
    found = shutil.which(tool)
    if found is None:
        raise LabError(f"`{tool}` is not installed")
    return found


def python_bin_dir() -> Path:
    """The directory of the running interpreter: its `rms` script sits next to it."""
    return Path(sys.executable).parent


def node_environ(base: Mapping[str, str], *, strip_rms: bool) -> dict[str, str]:
    """The environment for a command inside a node: our venv first on PATH.

    With strip_rms, the host's RMS_* overrides (config path, state dir…) are dropped, so a
    node's daemon runs on the defaults its own mount namespace provides.
    """
    env = {k: v for k, v in base.items() if not (strip_rms and k.startswith("RMS_"))}
    path = env.get("PATH", os.defpath)
    env["PATH"] = f"{python_bin_dir()}{os.pathsep}{path}"
    return env
