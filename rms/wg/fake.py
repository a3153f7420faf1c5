"""An in-memory WireGuard driver for unit tests of controllers (STYLE.md 3), never of WireGuard.

It keeps one InterfaceState per name and applies change lists with the same reference model
the mesh controller's property tests use (`rms.wg.mesh.apply_changes`), and it records every
call so a controller's test can assert on exactly what was asked. Tests of WireGuard itself
use wireguard-go (tests/integration/test_wg_userspace.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rms.wg.changes import Change, SetListenPort
from rms.wg.errors import InterfaceNotFound, WireGuardError
from rms.wg.keys import WgPrivateKey
from rms.wg.mesh import apply_changes
from rms.wg.model import InterfaceState, PeerState, check_name

FIRST_PORT = 40000  # where the fake hands out ports for listen_port 0


@dataclass
class FakeDriver:
    """WireGuardDriver in memory; `calls` lists (operation, name, changes) in order."""

    kind: str = "fake"
    interfaces: dict[str, InterfaceState] = field(default_factory=dict)
    calls: list[tuple[str, str, tuple[Change, ...]]] = field(default_factory=list)
    # An error here is raised once, by the next call of that operation ("apply", "get"...).
    failures: dict[str, WireGuardError] = field(default_factory=dict)

    async def create(self, name: str, private_key: WgPrivateKey, listen_port: int) -> None:
        """Add a down interface with no peers."""
        self._record("create", check_name(name))
        if name in self.interfaces:
            raise WireGuardError(f"{name} already exists")
        port = listen_port or FIRST_PORT + len(self.interfaces)
        self.interfaces[name] = InterfaceState(name, private_key.public_key(), port)

    async def delete(self, name: str) -> bool:
        """Forget the interface."""
        self._record("delete", name)
        return self.interfaces.pop(name, None) is not None

    async def exists(self, name: str) -> bool:
        """Whether the interface is known."""
        return name in self.interfaces

    async def names(self) -> list[str]:
        """The known interfaces, sorted."""
        return sorted(self.interfaces)

    async def get(self, name: str) -> InterfaceState:
        """The interface's state."""
        self._record("get", name)
        return self._state(name)

    async def apply(self, name: str, changes: tuple[Change, ...]) -> None:
        """Apply changes with the reference model."""
        self._record("apply", name, changes)
        state = self._state(name)
        if any(isinstance(c, SetListenPort) and self._port_taken(name, c.port) for c in changes):
            raise WireGuardError(f"{name}: listen port in use")
        self.interfaces[name] = apply_changes(state, changes)

    def handshake(self, name: str, peer: PeerState, when: float, rx: int = 0) -> None:
        """Pretend the peer completed a handshake at `when` and sent rx bytes."""
        state = self._state(name)
        done = replace(peer, last_handshake=when, rx_bytes=peer.rx_bytes + rx)
        others = tuple(p for p in state.peers if p.public_key != peer.public_key)
        peers = tuple(sorted((*others, done), key=lambda p: p.public_key.raw))
        self.interfaces[name] = replace(state, peers=peers)

    def _state(self, name: str) -> InterfaceState:
        found = self.interfaces.get(name)
        if found is None:
            raise InterfaceNotFound(f"{name}: no such interface")
        return found

    def _port_taken(self, name: str, port: int) -> bool:
        return any(s.listen_port == port for n, s in self.interfaces.items() if n != name)

    def _record(self, op: str, name: str, changes: tuple[Change, ...] = ()) -> None:
        self.calls.append((op, name, changes))
        failure = self.failures.pop(op, None)
        if failure is not None:
            raise failure
