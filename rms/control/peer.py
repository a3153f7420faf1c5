"""Who is on the other end of the control socket (SO_PEERCRED) and may they talk to us."""

from __future__ import annotations

import grp
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid (unix(7))


@dataclass(frozen=True)
class PeerCredentials:
    """The kernel's word on the connecting process."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """Read SO_PEERCRED from a connected unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def admin_gid(group: str) -> int | None:
    """The admin group's id, or None when the group does not exist on this host."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def supplementary_groups(pid: int, proc: Path = Path("/proc")) -> frozenset[int]:
    """The peer's supplementary groups from /proc; empty when they cannot be read."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("Groups:"):
            return frozenset(int(g) for g in line.split()[1:] if g.isdigit())
    return frozenset()


@dataclass(frozen=True)
class AccessPolicy:
    """Root, the daemon's own user, and members of the admin group may use the API."""

    admin_gid: int | None
    own_uid: int = field(default_factory=os.geteuid)

    def allows(self, peer: PeerCredentials, groups: frozenset[int]) -> bool:
        """Whether this peer may use the control API."""
        if peer.uid in (0, self.own_uid):
            return True
        if self.admin_gid is None:
            return False
        return peer.gid == self.admin_gid or self.admin_gid in groups
