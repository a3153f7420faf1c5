"""What the healing controller asks the CFS service to do: one frozen dataclass per action.

The controller (`cfs.healing.Healer`) is sans-IO: it reads `zpool status` parses and the
outcomes of earlier actions, and returns these. The service carries each out and reports
back (`obtained`, `attached`, `replaced`, `renewed`, `failed`); nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from cfs.lease import Lease
from cfs.placement import Candidate


@dataclass(frozen=True, slots=True)
class Reattach:
    """Log in again to the slot's own lease (its provider may be back); same device path."""

    slot: int
    lease: Lease


@dataclass(frozen=True, slots=True)
class Obtain:
    """Find and claim one volume whose provider clashes with none of `keep`, nor is `avoid`."""

    slot: int
    keep: tuple[Candidate, ...]
    avoid: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Attach:
    """Bring up the lease's nested link and log in; report the device path."""

    slot: int
    lease: Lease


@dataclass(frozen=True, slots=True)
class Replace:
    """`zpool replace POOL OLD NEW`: the resilver onto the new volume starts."""

    slot: int
    old_device: str
    new_device: str


@dataclass(frozen=True, slots=True)
class Detach:
    """`zpool detach POOL DEVICE`: take one side of the slot's replacing pair out (a dead
    replacement, or the old device a finished resilver left behind)."""

    slot: int
    device: str


@dataclass(frozen=True, slots=True)
class Online:
    """`zpool clear` the pool and `zpool online` the device (resume after a reattach)."""

    slot: int
    device: str


@dataclass(frozen=True, slots=True)
class Release:
    """Detach the lease's device and link, then give the volume back to its provider."""

    lease: Lease
    why: str


@dataclass(frozen=True, slots=True)
class Renew:
    """Extend a lease before it expires."""

    lease: Lease


Action = Reattach | Obtain | Attach | Replace | Detach | Online | Release | Renew


def describe(action: Action) -> dict[str, object]:
    """Log fields for an action: names and ids only, never a secret."""
    fields: dict[str, object] = {"action": type(action).__name__.lower()}
    slot = getattr(action, "slot", None)
    if slot is not None:
        fields["slot"] = slot
    lease = getattr(action, "lease", None)
    if isinstance(lease, Lease):
        fields.update(lease=lease.lease_id, provider=lease.provider.provider[:16])
    if isinstance(action, Replace):
        fields.update(old=action.old_device, new=action.new_device)
    if isinstance(action, Detach):
        fields["device"] = action.device
    if isinstance(action, Release):
        fields["why"] = action.why
    if isinstance(action, Obtain):
        fields["avoid"] = len(action.avoid)
    return fields
