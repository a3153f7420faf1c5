"""The optional hot spare: a ninth volume, leased and attached ahead of need (sans-IO).

Issue 5, "Healing": *an optional hot spare shortens the window*. With `[healing] hot_spare
= true` the controller keeps one more volume, on a provider distinct from the pool's 8,
leased, renewed and logged in to but outside the pool. A loss that would obtain a
replacement takes the spare instead when it fits the slot (a provider the slot does not
avoid, clashing with none of the others): the broadcast for offers, the claim and the
login are skipped and `zpool replace` runs at once. A new spare is obtained once the pool
is whole again. It is not a ZFS `spare` vdev: zfs-fuse has no daemon that would activate
one, and the CFS decides which slot needs it anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from cfs.actions import Action, Attach, Release
from cfs.lease import Lease
from cfs.placement import POOL_WIDTH, Candidate

SPARE = POOL_WIDTH  # the spare's slot number in actions and outcomes (one past the pool's)


class SpareState(StrEnum):
    """Where the spare is."""

    NONE = "none"
    OBTAINING = "obtaining"
    ATTACHING = "attaching"
    READY = "ready"


@dataclass
class Spare:
    """The hot spare, if wanted."""

    wanted: bool
    lease: Lease | None = None
    device: str = ""
    state: SpareState = SpareState.NONE
    retry_at: float = 0.0
    delay: float = 0.0
    avoid: set[str] = field(default_factory=set)

    def due(self, now: float, pool_whole: bool) -> bool:
        """Whether to ask for a spare now (only while no slot is being healed)."""
        return self.wanted and self.state is SpareState.NONE and pool_whole and self.retry_at <= now

    def obtained(self, lease: Lease) -> list[Action]:
        """A spare was claimed: log in to it."""
        if self.state is not SpareState.OBTAINING:
            return [Release(lease, "spare not needed any more")]
        self.lease, self.state = lease, SpareState.ATTACHING
        return [Attach(SPARE, lease)]

    def attached(self, lease_id: str, device: str) -> bool:
        """The spare's login succeeded; whether it was the spare's."""
        if self.state is not SpareState.ATTACHING or self.lease is None:
            return False
        if self.lease.lease_id != lease_id:
            return False
        self.device, self.state, self.delay = device, SpareState.READY, 0.0
        return True

    def failed(self, now: float, retry_s: float, max_retry_s: float) -> list[Action]:
        """Obtaining or attaching the spare failed: give back what was got, retry later."""
        actions: list[Action] = []
        if self.lease is not None:
            self.avoid.add(self.lease.provider.provider)
            actions.append(Release(self.lease, "spare failed"))
        self.lease, self.device, self.state = None, "", SpareState.NONE
        self.delay = min(max(self.delay * 2, retry_s), max_retry_s)
        self.retry_at = now + self.delay
        return actions

    def take(self, fits: Callable[[Candidate], bool]) -> tuple[Lease, str] | None:
        """Hand the ready spare over to a slot, if it fits there."""
        if self.state is not SpareState.READY or self.lease is None:
            return None
        if not fits(self.lease.provider):
            return None
        taken = (self.lease, self.device)
        self.lease, self.device, self.state = None, "", SpareState.NONE
        return taken

    def expired(self, now: float) -> list[Action]:
        """A spare whose lease lapsed (renewals failed) is given up."""
        if self.lease is None or self.lease.expires_at > now:
            return []
        lease, self.lease, self.device, self.state = self.lease, None, "", SpareState.NONE
        return [Release(lease, "spare lease expired")]

    def row(self, now: float) -> dict[str, object] | None:
        """The spare in the status, or None when none is wanted."""
        if not self.wanted:
            return None
        row: dict[str, object] = {"state": self.state.value}
        if self.lease is not None:
            row.update(
                provider=self.lease.provider.provider,
                lease=self.lease.lease_id,
                device=self.device,
                lease_expires_in_s=round(self.lease.expires_at - now, 1),
            )
        return row
