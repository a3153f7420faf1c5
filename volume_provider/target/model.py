"""What an iSCSI target should be (`TargetConfig`) and what it is (`TargetState`), and errors.

The CHAP secret travels as a `ChapSecret`, whose str() and repr() never show it, so a
config printed in a log line, a status output or an exception carries no secret. Only a
driver calls `reveal()`, at the moment it hands the secret to tgtadm or rtslib.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

LUN = 1  # the one data LUN of a volume; tgt keeps LUN 0 for its controller
MASK = "[secret]"
# RFC 7143 §12.1.3: a CHAP secret should be at least 12 bytes; tgt/LIO take at most 255.
MIN_SECRET, MAX_SECRET = 12, 255
_IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[A-Za-z0-9.:_-]+)?$")


class TargetError(Exception):
    """A target operation failed; the message never contains a CHAP secret."""

    def __init__(self, message: str, *secrets: str) -> None:
        for secret in secrets:
            if secret:
                message = message.replace(secret, MASK)
        super().__init__(message)


class TargetConflict(TargetError):
    """The desired state cannot be reached without destroying data; nothing was changed."""


class ChapSecret:
    """A CHAP secret that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not MIN_SECRET <= len(value) <= MAX_SECRET or not value.isprintable():
            raise TargetError(
                f"a CHAP secret must be {MIN_SECRET}-{MAX_SECRET} printable characters"
            )
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that hands it to the target."""
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChapSecret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def check_iqn(iqn: str) -> str:
    """iqn if it is a well-formed iSCSI qualified name (RFC 7143 §4.2.7.1); TargetError else."""
    if not _IQN.match(iqn) or len(iqn) > 223:
        raise TargetError(f"{iqn!r} is not an iSCSI qualified name (iqn.YYYY-MM.domain:name)")
    return iqn


@dataclass(frozen=True)
class Portal:
    """Where a target listens: an address and a TCP port."""

    address: str
    port: int = 3260

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)
        if not 0 < self.port < 65536:
            raise TargetError(f"portal port {self.port} is out of range")

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class TargetConfig:
    """One volume's export: one target, one LUN, CHAP in, and one allowed initiator."""

    iqn: str
    tid: int
    backing: str
    size: int
    chap_user: str
    chap_secret: ChapSecret
    initiator_address: str
    portal: Portal
    initiator_iqn: str | None = None

    def __post_init__(self) -> None:
        check_iqn(self.iqn)
        ipaddress.ip_address(self.initiator_address)
        if self.tid < 1 or self.size <= 0 or not self.chap_user.isprintable():
            raise TargetError(f"target {self.iqn}: tid, size and CHAP user must be valid")


@dataclass(frozen=True)
class LunState:
    """A LUN as the target reports it."""

    lun: int
    backing: str | None
    size_mb: int
    block_size: int


@dataclass(frozen=True)
class TargetState:
    """A target as the backend reports it (secrets are never readable back)."""

    iqn: str
    tid: int
    luns: tuple[LunState, ...] = ()
    accounts: tuple[str, ...] = ()
    acl: tuple[str, ...] = ()
    sessions: tuple[str, ...] = field(default=())  # connected initiators' addresses

    def lun(self, number: int) -> LunState | None:
        """The LUN with this number, if present."""
        return next((x for x in self.luns if x.lun == number), None)
