"""Real wireguard-go between two network namespaces joined by a veth pair.

Each side runs the driver agent (tests/integration/test_wg_agent.py) under
`nsenter --net=/run/netns/NS`, so wireguard-go, its TUN device and the rtnetlink calls all
live in that namespace. Interface names are unique per test: wireguard-go's UAPI sockets
share /var/run/wireguard across namespaces (PLATFORM.md). Whatever happens, `finally` kills
every process left in the test's namespaces, removes their sockets and deletes them.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Interface, ip_network
from pathlib import Path
from typing import Any

import pytest

from rms.lab.procs import NsId, nsfs_id, pids_in, stop_all
from rms.overlay import member_address
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.model import Endpoint, InterfaceConfig, PeerConfig
from rms.wg.userspace import RUN_DIR
from tests.integration.test_wg_agent import config_json

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("wireguard-go") is None, reason="wireguard-go missing"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter missing"),
    pytest.mark.timeout(60),
]
ROOT = Path(__file__).resolve().parents[2]
UNDERLAY = {"a": "192.0.2.1", "b": "192.0.2.2"}
PORTS = {"a": 51821, "b": 51822}
ECHO_PORT = 7999


class Agent:
    """One agent process inside one namespace."""

    def __init__(self, netns: str, log_dir: Path) -> None:
        self.log = log_dir / f"agent-{netns}.log"
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{netns}", "--", sys.executable, "-m",
                 "tests.integration.test_wg_agent", str(log_dir)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run one command; AssertionError with the agent's log if it failed."""
        answer = self.try_call(op, **args)
        assert answer["ok"], f"{op}: {answer['error']}\n{self.log.read_text()[-2000:]}"
        return answer

    def try_call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        assert ready, f"{op}: no answer in 20 s\n{self.log.read_text()[-2000:]}"
        line = self.proc.stdout.readline()
        assert line, f"{op}: agent died\n{self.log.read_text()[-2000:]}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        """End the agent; the interfaces it made stay, as they would for a restarted RMS."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Side:
    """One end of the tunnel."""

    netns: str
    ifname: str
    key: WgPrivateKey
    address: IPv6Interface
    agent: Agent

    def peer(self, keepalive: int = 0) -> PeerConfig:
        """How the other side sees this one."""
        host = UNDERLAY[self.netns[-1]]
        return PeerConfig(
            self.key.public_key(),
            Endpoint.parse(f"{host}:{PORTS[self.netns[-1]]}"),
            frozenset({ip_network(f"{self.address.ip}/128")}),
            keepalive,
        )

    def config(self, *peers: PeerConfig) -> InterfaceConfig:
        port = PORTS[self.netns[-1]]
        return InterfaceConfig(self.ifname, self.key, port, frozenset({self.address}), peers)

    def ensure(self, *peers: PeerConfig) -> dict[str, Any]:
        return self.agent.call("ensure", config=config_json(self.config(*peers)))

    def state(self) -> dict[str, Any]:
        found: dict[str, Any] = self.agent.call("state", name=self.ifname)["state"]
        return found


@dataclass
class Pair:
    prefix: str
    a: Side
    b: Side
    log_dir: Path
    agents: list[Agent] = field(default_factory=list)

    def new_agent(self, side: Side) -> Agent:
        agent = Agent(side.netns, self.log_dir)
        self.agents.append(agent)
        return agent


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def build_namespaces(prefix: str) -> None:
    for end in "ab":
        ip("netns", "add", f"{prefix}{end}")
        ip("-n", f"{prefix}{end}", "link", "set", "lo", "up")
    ip("-n", f"{prefix}a", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
       "netns", f"{prefix}b")  # fmt: skip
    for end in "ab":
        ip("-n", f"{prefix}{end}", "addr", "add", f"{UNDERLAY[end]}/24", "dev", "eth0")
        ip("-n", f"{prefix}{end}", "link", "set", "eth0", "up")


def tear_down(prefix: str, agents: list[Agent]) -> None:
    """Leave nothing: agents, every process in our namespaces, sockets, namespaces."""
    for agent in agents:
        agent.close()
    ours: set[NsId] = set()
    for end in "ab":
        found = nsfs_id(Path(f"/run/netns/{prefix}{end}"))
        if found is not None:
            ours.add(found)
    stop_all(lambda: pids_in(ours), grace_s=3.0)
    for sock in RUN_DIR.glob(f"{prefix}*.sock"):
        sock.unlink(missing_ok=True)
    for end in "ab":
        subprocess.run(["ip", "netns", "del", f"{prefix}{end}"], capture_output=True, check=False)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    prefix = f"tcw{secrets.token_hex(3)}"
    vpn = uuid.uuid4()
    agents: list[Agent] = []
    try:
        build_namespaces(prefix)
        sides = []
        for end in "ab":
            agent = Agent(f"{prefix}{end}", tmp_path)
            agents.append(agent)
            address = member_address(vpn, secrets.token_bytes(32))
            sides.append(Side(f"{prefix}{end}", f"{prefix}{end}0", WgPrivateKey.generate(),
                              address, agent))  # fmt: skip
        result = Pair(prefix, sides[0], sides[1], tmp_path, agents)
        yield result
    finally:
        tear_down(prefix, agents)
    assert not Path(f"/run/netns/{prefix}a").exists()


def wireguard_go_pids(prefix: str) -> list[int]:
    """Running (not zombie) wireguard-go processes serving one of this test's interfaces."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        named = any(arg.startswith(prefix.encode()) for arg in cmdline)
        if b"wireguard-go" in cmdline[0] and named and state != "Z":
            found.append(int(stat.parent.name))
    return found


def link_exists(side: Side) -> bool:
    shown = subprocess.run(["ip", "-n", side.netns, "link", "show", side.ifname],
                           capture_output=True, check=False)  # fmt: skip
    return shown.returncode == 0


def connect(pair: Pair, extra: tuple[PeerConfig, ...] = ()) -> None:
    """Bring the tunnel up both ways and prove UDP passes over the overlay addresses."""
    assert pair.a.ensure(pair.b.peer(), *extra)["created"]
    assert pair.b.ensure(pair.a.peer())["created"]
    pair.b.agent.call("echo", host=str(pair.b.address.ip), port=ECHO_PORT)
    reply = pair.a.agent.call("ping", host=str(pair.b.address.ip), port=ECHO_PORT, payload="hi")
    assert reply["reply"] == "hi"


def random_peer(n: int) -> PeerConfig:
    key = WgPublicKey(secrets.token_bytes(32))
    return PeerConfig(key, None, frozenset({ip_network(f"fd00::{n}/128")}), 0)


def test_a_tunnel_carries_udp_and_reports_a_recent_handshake(pair: Pair) -> None:
    connect(pair)
    state = pair.a.state()
    assert state["up"] and state["addresses"] == [str(pair.a.address)]
    assert state["public_key"] == pair.a.key.public_key().base64()
    seen = state["peers"][pair.b.key.public_key().base64()]
    assert seen["last_handshake"] is not None
    assert time.time() - seen["last_handshake"] < 30
    assert seen["rx"] > 0 and seen["tx"] > 0
    assert seen["endpoint"] == f"{UNDERLAY['b']}:{PORTS['b']}"
    assert pair.a.ensure(pair.b.peer()) == {"ok": True, "created": False, "changes": []}


def test_peer_changes_touch_only_the_difference(pair: Pair) -> None:
    c, d = random_peer(0xC), random_peer(0xD)
    connect(pair, extra=(c,))
    b_key = pair.b.key.public_key().base64()
    before = pair.a.state()["peers"][b_key]
    swapped = pair.a.ensure(pair.b.peer(), d)
    assert swapped["changes"] == [
        f"remove peer {short(c.public_key)}",
        f"add peer {short(d.public_key)}",
    ]
    keepalive = pair.a.ensure(pair.b.peer(keepalive=25), d)
    assert keepalive["changes"] == [f"update peer {short(pair.b.key.public_key())}: keepalive"]
    after = pair.a.state()["peers"]
    assert set(after) == {b_key, d.public_key.base64()}
    assert after[b_key]["last_handshake"] == before["last_handshake"], "the session was kept"
    assert after[b_key]["rx"] >= before["rx"] and after[b_key]["keepalive"] == 25
    assert wg_show_peers(pair.a) == sorted([b_key, d.public_key.base64()])
    reply = pair.a.agent.call("ping", host=str(pair.b.address.ip), port=ECHO_PORT, payload="2")
    assert reply["reply"] == "2"
    assert pair.a.ensure(pair.b.peer(keepalive=25), d)["changes"] == []


def short(key: WgPublicKey) -> str:
    text = key.base64()
    return f"{text[:4]}…{text[-5:-1]}"


def wg_show_peers(side: Side) -> list[str]:
    """The peers as wireguard-tools' `wg` reads them from the same UAPI socket."""
    shown = subprocess.run(
        ["nsenter", f"--net=/run/netns/{side.netns}", "wg", "show", side.ifname, "peers"],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    return sorted(shown.stdout.split())


def test_remove_leaves_no_process_socket_or_link(pair: Pair) -> None:
    connect(pair)
    pid = pair.a.agent.call("pid", name=pair.a.ifname)["pid"]
    assert pid in wireguard_go_pids(pair.prefix)
    assert pair.a.agent.call("remove", name=pair.a.ifname)["removed"]
    assert not Path(f"/proc/{pid}").exists(), "stopped and reaped by the agent that started it"
    assert not (RUN_DIR / f"{pair.a.ifname}.sock").exists()
    assert not link_exists(pair.a)
    assert not pair.a.agent.call("remove", name=pair.a.ifname)["removed"]
    assert pair.a.agent.call("state", name=pair.a.ifname)["state"] is None


def test_an_interface_outlives_its_agent_and_is_adopted(pair: Pair) -> None:
    connect(pair)
    pid = pair.a.agent.call("pid", name=pair.a.ifname)["pid"]
    pair.a.agent.close()
    pair.a.agent = pair.new_agent(pair.a)
    assert pair.a.ensure(pair.b.peer()) == {"ok": True, "created": False, "changes": []}
    assert pair.a.agent.call("pid", name=pair.a.ifname)["pid"] == pid
    assert pair.a.agent.call("remove", name=pair.a.ifname)["removed"]
    assert pid not in wireguard_go_pids(pair.prefix)
    assert not (RUN_DIR / f"{pair.a.ifname}.sock").exists()


def test_failed_starts_leave_nothing_behind(pair: Pair) -> None:
    ip("-n", pair.a.netns, "link", "add", pair.a.ifname, "type", "veth", "peer", "name", "x0")
    failed = pair.a.agent.try_call("ensure", config=config_json(pair.a.config()))
    assert not failed["ok"] and "while starting" in failed["error"], failed
    assert wireguard_go_pids(pair.prefix) == []
    assert not (RUN_DIR / f"{pair.a.ifname}.sock").exists()
    assert pair.b.ensure()["created"]
    taken = InterfaceConfig(f"{pair.prefix}b1", WgPrivateKey.generate(), PORTS["b"])
    clash = pair.b.agent.try_call("ensure", config=config_json(taken))
    assert not clash["ok"] and "EADDRINUSE" in clash["error"], clash
    assert len(wireguard_go_pids(pair.prefix)) == 1
    assert not (RUN_DIR / f"{taken.name}.sock").exists()


def test_a_same_named_interface_of_another_namespace_is_never_touched(pair: Pair) -> None:
    assert pair.a.ensure()["created"]
    before = pair.a.state()
    intruder = InterfaceConfig(pair.a.ifname, WgPrivateKey.generate(), 0, peers=(random_peer(1),))
    for op, args in (
        ("state", {"name": pair.a.ifname}),
        ("ensure", {"config": config_json(intruder)}),
        ("remove", {"name": pair.a.ifname}),
    ):
        answer = pair.b.agent.try_call(op, **args)
        assert not answer["ok"] and "ForeignInterface" in answer["error"], (op, answer)
    assert pair.a.state() == before
