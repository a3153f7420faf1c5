"""luci-app-rms: the rpcd plugin over the real `rms status --json` (agent down, config
refused) and over hostile output, and the LuCI view rendered in node with LuCI's view,
rpc, poll and E() stood in for."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.openwrt_support import LUCI, SHELLS

PLUGIN = LUCI / "root/usr/libexec/rpcd/luci.rms"
VIEW = LUCI / "htdocs/luci-static/resources/view/rms/status.js"
RMS = Path(sys.executable).parent / "rms"
RUNNING = {
    "schema_version": 1, "node_id": "ab" * 32, "version": "0.1.0", "state": "running",
    "uptime_s": 93784.0, "pid": 42, "problems": [],
    "vpns": [{"uuid": "0f0e", "role": "member", "members": 8, "address": "fd00::1",
              "peers": [{"handshake_age_s": 3.0}, {"handshake_age_s": None}]}],
}  # fmt: skip


def plugin(
    shell: list[str], tmp_path: Path, *args: str, rms: Path = RMS, config: Path | None = None
) -> dict[str, object]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "RMS_BIN": str(rms),
        "RMS_CONFIG_TOML": str(config or tmp_path / "rms.toml"),
        "TMPDIR": str(tmp_path),
    }
    proc = subprocess.run(
        [*shell, str(PLUGIN), *args], env=env, input="{}", capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert isinstance(reply, dict)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp.")] == []
    return reply


def fake_rms(tmp_path: Path, body: str) -> Path:
    """An `rms` that prints what a broken or hostile one might (the real one cannot)."""
    path = tmp_path / "bin" / "rms"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


shells = pytest.mark.parametrize("shell", [["sh"], *SHELLS], ids=lambda s: s[-1])


@shells
def test_list_names_the_status_method(shell: list[str], tmp_path: Path) -> None:
    assert plugin(shell, tmp_path, "list") == {"status": {}}
    assert "error" in plugin(shell, tmp_path, "call", "reboot")


@shells
def test_status_of_a_node_whose_agent_is_down(shell: list[str], tmp_path: Path) -> None:
    config = tmp_path / "rms.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path}/none.sock"\n')
    reply = plugin(shell, tmp_path, "call", "status", config=config)
    assert reply["state"] == "down" and "none.sock" in str(reply["reason"])


@shells
def test_status_when_rms_refuses_its_config(shell: list[str], tmp_path: Path) -> None:
    config = tmp_path / "rms.toml"
    config.write_text("[control\n")
    reply = plugin(shell, tmp_path, "call", "status", config=config)
    assert reply["state"] == "unknown" and "not valid TOML" in str(reply["reason"])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("echo '<html>oops</html>'; echo 'rms: broken' >&2; exit 3", "rms: broken"),
        ("echo '[1, 2]'", "no JSON object"),
        ("exit 0", "no JSON object"),
        ("head -c 300000 /dev/zero | tr '\\0' ' '; echo '{}'", "more than 262144 bytes"),
        ("printf '%s' '{\"state\": \"running\"'", "no JSON object"),
    ],
)
def test_hostile_or_broken_output_becomes_an_unknown_state(
    tmp_path: Path, body: str, reason: str
) -> None:
    reply = plugin(["sh"], tmp_path, "call", "status", rms=fake_rms(tmp_path, body))
    assert reply["state"] == "unknown" and reason in str(reply["reason"])


def test_a_running_status_passes_through_unchanged(tmp_path: Path) -> None:
    body = f"cat <<'EOF'\n{json.dumps(RUNNING)}\nEOF"
    assert plugin(["sh"], tmp_path, "call", "status", rms=fake_rms(tmp_path, body)) == RUNNING


HARNESS = r"""
const fs = require('fs');
const [src, statusJson] = [fs.readFileSync(process.argv[2], 'utf8'), process.argv[3]];
const declared = [], polls = [];
function E(tag, attrs, children) {
  return { tag, attrs: attrs || {}, children: [].concat(children || []) };
}
function text(n) { return typeof n === 'string' ? n : n.children.map(text).join(' | '); }
const answer = () => Promise.resolve(JSON.parse(statusJson));
const rpc = { declare(spec) { declared.push(spec); return answer; } };
const view = { extend(o) { return o; } };
const poll = { add(fn, every) { polls.push(every); } };
const page = new Function('E', '_', 'view', 'rpc', 'poll', src)(E, s => s, view, rpc, poll);
page.load().then(s => {
  const root = page.render(s);
  console.log(JSON.stringify({ declared, polls, text: text(root) }));
});
"""


def render(tmp_path: Path, status: object) -> dict[str, object]:
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    proc = subprocess.run(
        ["node", str(harness), str(VIEW), json.dumps(status)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert isinstance(result, dict)
    return result


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_view_asks_luci_rms_and_shows_node_state_and_vpns(tmp_path: Path) -> None:
    out = render(tmp_path, RUNNING)
    assert out["declared"] == [{"object": "luci.rms", "method": "status", "expect": {"": {}}}]
    assert out["polls"] == [10]
    text = str(out["text"])
    for shown in ("running", "ab" * 32, "1d 2h 3m", "0f0e", "member", "fd00::1", "1/2"):
        assert shown in text, shown


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize(
    "status",
    [
        {"schema_version": 1, "state": "down", "reason": "daemon not running"},
        {"state": "unknown", "vpns": "not a list", "problems": ["<b>x</b>"]},
        [],
        None,
    ],
)
def test_the_view_renders_down_odd_and_empty_statuses(tmp_path: Path, status: object) -> None:
    text = str(render(tmp_path, status)["text"])
    assert "In no management VPN yet." in text
    if isinstance(status, dict) and "reason" in status:
        assert "daemon not running" in text
    if isinstance(status, dict) and "problems" in status:
        assert "<b>x</b>" in text  # a text node: E() escapes it in the browser
