"""The healing controller of a CFS pool (sans-IO: `now` is an argument, actions come out).

Issue 5, "Healing": notice a lost or faulted volume, obtain a replacement from another
provider, `zpool replace`, follow the resilver, release the dead lease; renew leases before
they expire. Each of the 8 slots of the RAIDZ3 pool walks this path:

    online --lost--> reattaching --fails--> obtaining -> attaching -> replacing
       ^                 |                         ^                      |
       +---- back -------+                         |  abandoning <-- resilvering
       |                                           +--(replacement lost)  |
       +-------------------------- resilver done (old lease released) ---+

A lost volume is first logged in to again with its own lease (a provider that restarted is
back in seconds and costs only the delta), then replaced. A replacement is asked for only
while at most 3 slots are lost: RAIDZ3 cannot rebuild anything with 4 gone, so then the
controller keeps trying to reattach until enough volumes are back (the pool resumes after
`zpool clear`). A failed step is retried after `retry_s`, doubling up to `max_retry_s`; a
provider that failed us is avoided for that slot. Leases are renewed `renew_margin_s`
before they expire; a lease that expires anyway counts as a lost volume.

A replacement can die during its own resilver. If zfs had already finished the replace (the
old device is gone from the table) the new volume simply is the slot's and it is lost like
any other; otherwise the dead replacement is taken back out (`zpool detach`), its lease
released and another one obtained. A resilver that ended while zfs still lists the old
device (it keeps it after errors) is completed by detaching the old device.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from cfs.actions import Action, Attach, Detach, Obtain, Online, Reattach, Release, Renew, Replace
from cfs.lease import Lease
from cfs.placement import Candidate
from cfs.spare import SPARE, Spare, SpareState
from cfs.zfs.status import PoolStatus, VdevStatus

PARITY = 3
BAD_STATES = frozenset({"UNAVAIL", "FAULTED", "REMOVED", "OFFLINE"})
HISTORY = 32
LINGER_POLLS = 3  # statuses a finished resilver may still list the old device before detach


class SlotState(StrEnum):
    """Where one slot is on its healing path."""

    ONLINE = "online"
    REATTACHING = "reattaching"
    WAITING = "waiting"  # lost, with a retry due at `retry_at`
    OBTAINING = "obtaining"
    ATTACHING = "attaching"
    REPLACING = "replacing"
    QUEUED = "queued"  # attached, waiting for the running resilver to end before replace
    RESILVERING = "resilvering"
    ABANDONING = "abandoning"  # a replacement died before its resilver ended: zpool detach


@dataclass
class Slot:
    """One of the pool's volumes: its lease and device, and the one replacing it, if any."""

    lease: Lease
    device: str
    state: SlotState = SlotState.ONLINE
    new_lease: Lease | None = None
    new_device: str = ""
    retry_at: float = 0.0
    delay: float = 0.0
    avoid: set[str] = field(default_factory=set)
    reattached: bool = False  # a reattach already brought it back once in this loss
    lingering: int = 0  # statuses since the resilver ended with the old device still listed


@dataclass(frozen=True)
class Policy:
    """The controller's timings (seconds)."""

    renew_margin_s: float = 60.0
    retry_s: float = 2.0
    max_retry_s: float = 60.0
    poll_s: float = 2.0  # how often the adapter reads `zpool status`
    hot_spare: bool = False  # keep a ninth volume attached, used at once on a loss


class Healer:
    """Keeps the pool's 8 volumes alive; feed it observations, carry out what it returns."""

    def __init__(self, members: list[tuple[Lease, str]], policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.slots = [Slot(lease, device) for lease, device in members]
        self.history: deque[str] = deque(maxlen=HISTORY)
        self._renewing: set[str] = set()
        self._renew_tries: dict[str, int] = {}  # renewals failed in a row, per lease
        self._renew_at = {s.lease.lease_id: self._due(s.lease) for s in self.slots}
        self.scan = ""
        self.resilver_percent: float | None = None
        self.spare = Spare(self.policy.hot_spare)
        self._resilvering = False  # as of the last status

    # -- observations -------------------------------------------------------------------

    def pool_status(self, status: PoolStatus, now: float) -> list[Action]:
        """A fresh `zpool status`: notice losses, follow resilvers."""
        self.scan = status.scan.text
        resilvering = status.scan.kind == "resilver" and status.scan.in_progress
        self.resilver_percent = status.scan.percent if resilvering else None
        self._resilvering = resilvering
        actions: list[Action] = []
        for i, slot in enumerate(self.slots):
            if slot.state is SlotState.ONLINE:
                leaf = status.device(slot.device)
                if leaf is None or leaf.state in BAD_STATES:
                    state = "missing" if leaf is None else leaf.state
                    actions += self._lose(i, f"device {state}", now, reattach=True)
            elif slot.state is SlotState.RESILVERING:
                actions += self._follow_resilver(i, status, resilvering, now)
        return actions + self._next_replace(now)

    def _next_replace(self, now: float) -> list[Action]:
        """One `zpool replace` at a time: a replace restarts a running resilver, and doing
        so made zfs-fuse 0.7 abort in the lab (dsl_pool_scrub_cancel_sync assertion)."""
        busy = (SlotState.REPLACING, SlotState.RESILVERING, SlotState.ABANDONING)
        if self._resilvering or any(s.state in busy for s in self.slots):
            return []
        i = next((i for i, s in enumerate(self.slots) if s.state is SlotState.QUEUED), None)
        if i is None:
            return []
        s = self.slots[i]
        s.state = SlotState.REPLACING
        self._note(now, f"slot {i}: replacing {s.device} by {s.new_device}")
        return [Replace(i, s.device, s.new_device)]

    def device_failed(self, slot: int, why: str, now: float) -> list[Action]:
        """The initiator says the slot's session broke (zpool may not have noticed yet)."""
        if self.slots[slot].state is not SlotState.ONLINE:
            return []
        return self._lose(slot, why, now, reattach=True)

    def resume_replacement(self, slot: int, lease: Lease, device: str) -> None:
        """After a restart: the slot was resilvering onto lease (device); follow it again."""
        s = self.slots[slot]
        s.new_lease, s.new_device, s.state = lease, device, SlotState.RESILVERING
        self._renew_at[lease.lease_id] = self._due(lease)

    def obtained(self, slot: int, lease: Lease, now: float) -> list[Action]:
        """The service claimed a replacement volume for the slot."""
        if slot == SPARE:
            self._renew_at[lease.lease_id] = self._due(lease)
            self._note(now, f"spare: got volume {lease.lease_id} from {_short(lease)}")
            return self.spare.obtained(lease)
        s = self.slots[slot]
        if s.state is not SlotState.OBTAINING:
            return [Release(lease, "not needed any more")]
        s.new_lease, s.state = lease, SlotState.ATTACHING
        self._renew_at[lease.lease_id] = self._due(lease)
        self._note(now, f"slot {slot}: got volume {lease.lease_id} from {_short(lease)}")
        return [Attach(slot, lease)]

    def attached(self, slot: int, lease_id: str, device: str, now: float) -> list[Action]:
        """The service logged in to a lease of the slot (its own again, or the new one)."""
        if slot == SPARE:
            if self.spare.attached(lease_id, device):
                self._note(now, f"spare: ready at {device}")
            return []
        s = self.slots[slot]
        if s.state is SlotState.REATTACHING and lease_id == s.lease.lease_id:
            s.device, s.state, s.reattached = device, SlotState.ONLINE, True
            self._note(now, f"slot {slot}: provider back, volume reattached")
            return [Online(slot, device)]
        if s.state is SlotState.ATTACHING and s.new_lease and lease_id == s.new_lease.lease_id:
            if not self._may_replace():
                # more were lost while this one was obtained: RAIDZ3 cannot rebuild onto
                # it now; give it back and wait for volumes to return (or for a resilver)
                new, s.new_lease, s.new_device = s.new_lease, None, ""
                self._forget(new.lease_id)
                s.state, s.retry_at = SlotState.WAITING, now + self._back_off(s)
                self._note(now, f"slot {slot}: more than {PARITY} lost, replacement held back")
                return [Release(new, "more than 3 lost")]
            s.new_device, s.state = device, SlotState.QUEUED
            return self._next_replace(now)
        return []

    def replaced(self, slot: int, now: float) -> list[Action]:
        """`zpool replace` was accepted: the resilver runs."""
        s = self.slots[slot]
        if s.state is SlotState.REPLACING:
            s.state = SlotState.RESILVERING
            self._note(now, f"slot {slot}: resilvering onto {s.new_device}")
        return []

    def failed(self, slot: int, step: str, reason: str, now: float) -> list[Action]:
        """A step of the slot's healing failed; back off, then go on (or around it)."""
        if slot == SPARE:
            self._note(now, f"spare: {step} failed: {reason}")
            if self.spare.lease is not None:
                self._forget(self.spare.lease.lease_id)
            return self.spare.failed(now, self.policy.retry_s, self.policy.max_retry_s)
        s = self.slots[slot]
        self._note(now, f"slot {slot}: {step} failed: {reason}")
        if s.state is SlotState.ABANDONING:
            # zfs may have completed the replace meanwhile (detach then says "only
            # applicable to mirror and replacing vdevs"): let the next status decide again
            s.state, s.retry_at = SlotState.RESILVERING, now + self._back_off(s)
            return []
        if s.state is SlotState.RESILVERING:
            return []  # detaching a lingering old device: the next statuses try again
        actions: list[Action] = []
        if s.new_lease is not None and s.state in (SlotState.ATTACHING, SlotState.REPLACING):
            s.avoid.add(s.new_lease.provider.provider)
            actions.append(Release(s.new_lease, f"{step} failed"))
            self._forget(s.new_lease.lease_id)
            s.new_lease, s.new_device = None, ""
        if s.state is SlotState.REATTACHING and self._may_replace():
            return actions + self._obtain(slot, now)
        s.state = SlotState.WAITING
        s.retry_at = now + self._back_off(s)
        return actions

    def detached(self, slot: int, device: str, now: float) -> list[Action]:
        """`zpool detach` took device out of the slot's replacing pair."""
        s = self.slots[slot]
        if s.state is SlotState.ABANDONING and device == s.new_device:
            return self._drop_new(slot, "replacement lost during its resilver", now)
        return []  # the old device of a finished resilver: the next status completes it

    def renewed(self, lease: Lease, now: float) -> list[Action]:
        """A lease was extended."""
        self._renewing.discard(lease.lease_id)
        self._renew_tries.pop(lease.lease_id, None)
        for s in self.slots:
            if s.lease.lease_id == lease.lease_id:
                s.lease = lease
            elif s.new_lease and s.new_lease.lease_id == lease.lease_id:
                s.new_lease = lease
        if self.spare.lease is not None and self.spare.lease.lease_id == lease.lease_id:
            self.spare.lease = lease
        if lease.lease_id in self._renew_at:
            self._renew_at[lease.lease_id] = self._due(lease)
        return []

    def renew_failed(self, lease_id: str, reason: str, now: float) -> list[Action]:
        """A renewal failed; try again after retry_s, doubling up to max_retry_s (the lease
        of a dead provider would otherwise be asked for every poll until it expires)."""
        self._renewing.discard(lease_id)
        tries = self._renew_tries[lease_id] = self._renew_tries.get(lease_id, 0) + 1
        if lease_id in self._renew_at:
            delay = min(self.policy.retry_s * 2 ** min(tries - 1, 16), self.policy.max_retry_s)
            self._renew_at[lease_id] = now + delay
        if tries == 1:
            self._note(now, f"lease {lease_id}: renewal failed: {reason}")
        return []

    def handle_timer(self, now: float) -> list[Action]:
        """Renewals that are due, expiries, and retries whose time has come."""
        actions: list[Action] = []
        for i, s in enumerate(self.slots):
            if s.state is SlotState.ONLINE and s.lease.expires_at <= now:
                actions += self._lose(i, "lease expired", now, reattach=False)
            elif s.state is SlotState.WAITING and s.retry_at <= now:
                actions += self._retry(i, now)
        if self.spare.due(now, self.lost() == 0):
            self.spare.state = SpareState.OBTAINING
            actions.append(Obtain(SPARE, self.keep(SPARE), tuple(sorted(self.spare.avoid))))
        if self.spare.lease is not None and self.spare.lease.expires_at <= now:
            self._forget(self.spare.lease.lease_id)
            actions += self.spare.expired(now)
        return actions + self.renewals(now)

    def renewals(self, now: float) -> list[Action]:
        """Only the renewals that are due (the service also asks for these on their own,
        so that a long pool operation never makes a lease lapse)."""
        actions: list[Action] = []
        for lease in self._leases():
            due = self._renew_at.get(lease.lease_id, self._due(lease))
            if due <= now and lease.lease_id not in self._renewing and lease.expires_at > now:
                self._renewing.add(lease.lease_id)
                actions.append(Renew(lease))
        return actions

    def next_timer(self, now: float | None = None) -> float | None:
        """When handle_timer next has something to do (never a time it would let pass
        without acting, such as the renewal of a lease expired by `now`: the service would
        wake up again at once)."""
        times = [s.retry_at for s in self.slots if s.state is SlotState.WAITING]
        if self.spare.wanted and self.spare.state is SpareState.NONE and self.lost() == 0:
            times.append(self.spare.retry_at)
        times += [s.lease.expires_at for s in self.slots if s.state is SlotState.ONLINE]
        times += [
            self._renew_at.get(le.lease_id, self._due(le))
            for le in self._leases()
            if le.lease_id not in self._renewing and (now is None or le.expires_at > now)
        ]
        return min(times, default=None)

    # -- what the status shows --------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, object]:
        """The volumes, each one's provider and state, and the recent healing steps."""
        volumes = []
        for i, s in enumerate(self.slots):
            row: dict[str, object] = {
                "slot": i,
                "provider": s.lease.provider.provider,
                "lease": s.lease.lease_id,
                "device": s.device,
                "state": s.state.value,
                "lease_expires_in_s": round(s.lease.expires_at - now, 1),
            }
            if s.new_lease is not None:
                row["replacement"] = {
                    "provider": s.new_lease.provider.provider,
                    "device": s.new_device,
                }
            volumes.append(row)
        out = {"volumes": volumes, "healing": list(self.history), "lost": self.lost()}
        spare = self.spare.row(now)
        if spare is not None:
            out["spare"] = spare
        return out

    def lost(self) -> int:
        """How many slots are not online."""
        return sum(1 for s in self.slots if s.state is not SlotState.ONLINE)

    # -- the steps ----------------------------------------------------------------------

    def _lose(self, slot: int, why: str, now: float, *, reattach: bool) -> list[Action]:
        s = self.slots[slot]
        self._note(now, f"slot {slot}: volume of {_short(s.lease)} lost ({why})")
        s.state, s.delay, s.avoid = SlotState.WAITING, 0.0, {s.lease.provider.provider}
        if reattach and not s.reattached:
            s.state = SlotState.REATTACHING
            return [Reattach(slot, s.lease)]
        s.reattached = False
        if self._may_replace():
            return self._obtain(slot, now)
        s.state, s.retry_at = SlotState.WAITING, now + self.policy.retry_s
        return []

    def _retry(self, slot: int, now: float) -> list[Action]:
        s = self.slots[slot]
        if self._may_replace():
            return self._obtain(slot, now)
        s.state = SlotState.REATTACHING
        return [Reattach(slot, s.lease)]

    def _may_replace(self) -> bool:
        """Whether the pool can rebuild a volume: no more than PARITY slots are lost."""
        return self.lost() <= PARITY

    def _obtain(self, slot: int, now: float) -> list[Action]:
        s = self.slots[slot]
        others = self.keep(slot, with_spare=False)
        taken = self.spare.take(
            lambda c: c.provider not in s.avoid and not any(c.clashes(k) for k in others)
        )
        if taken is not None:
            s.new_lease, s.new_device = taken
            s.state = SlotState.QUEUED
            self._note(now, f"slot {slot}: the hot spare {_short(taken[0])} steps in")
            return self._next_replace(now)
        s.state = SlotState.OBTAINING
        return [Obtain(slot, self.keep(slot), tuple(sorted(s.avoid)))]

    def keep(self, slot: int, *, with_spare: bool = True) -> tuple[Candidate, ...]:
        """The providers a replacement for slot must differ from, as of now: the other
        slots', every replacement already obtained (several slots may heal at once) and
        the hot spare's (the pool and its spare stay distinct)."""
        keep = tuple(o.lease.provider for j, o in enumerate(self.slots) if j != slot)
        keep += tuple(o.new_lease.provider for o in self.slots if o.new_lease is not None)
        spare = self.spare.lease
        return keep + ((spare.provider,) if spare is not None and with_spare else ())

    def _follow_resilver(
        self, slot: int, status: PoolStatus, resilvering: bool, now: float
    ) -> list[Action]:
        s = self.slots[slot]
        new, old = status.device(s.new_device), status.device(s.device)
        if new is None or new.state in BAD_STATES:
            return self._replacement_lost(slot, "missing" if new is None else new.state, old, now)
        if resilvering or new.state != "ONLINE":
            return []
        if old is None:
            return self._finish_resilver(slot, now)
        # zfs keeps the old device after a resilver with errors; detaching it completes
        # the replace (its data is on the new device as far as it can be rebuilt)
        s.lingering += 1
        if s.lingering < LINGER_POLLS:
            return []
        s.lingering = 0
        self._note(now, f"slot {slot}: resilver ended, detaching the old device")
        return [Detach(slot, s.device)]

    def _replacement_lost(
        self, slot: int, state: str, old: VdevStatus | None, now: float
    ) -> list[Action]:
        s = self.slots[slot]
        if old is None and state != "missing":
            # the replace had completed: the new volume is the slot's own, and it is lost
            return self._finish_resilver(slot, now) + self._lose(
                slot, f"device {state}", now, reattach=True
            )
        if state == "missing":
            return self._drop_new(slot, "replacement not in the pool", now)
        if now < s.retry_at:
            return []  # a detach failed: wait out its back-off
        self._note(now, f"slot {slot}: replacement {_short_new(s)} lost ({state}), detaching")
        s.state = SlotState.ABANDONING
        return [Detach(slot, s.new_device)]

    def _drop_new(self, slot: int, why: str, now: float) -> list[Action]:
        """Give the slot's replacement back and look for another (or wait)."""
        s = self.slots[slot]
        actions: list[Action] = []
        if s.new_lease is not None:
            s.avoid.add(s.new_lease.provider.provider)
            actions.append(Release(s.new_lease, why))
            self._forget(s.new_lease.lease_id)
        s.new_lease, s.new_device = None, ""
        self._note(now, f"slot {slot}: {why}")
        if self._may_replace():
            return actions + self._obtain(slot, now)
        s.state, s.retry_at = SlotState.WAITING, now + self._back_off(s)
        return actions

    def _finish_resilver(self, slot: int, now: float) -> list[Action]:
        s = self.slots[slot]
        if s.new_lease is None:
            return []
        old = s.lease
        self._forget(old.lease_id)
        s.lease, s.device, s.new_lease, s.new_device = s.new_lease, s.new_device, None, ""
        s.state, s.reattached, s.delay, s.lingering = SlotState.ONLINE, False, 0.0, 0
        self._note(now, f"slot {slot}: resilver done on {_short(s.lease)}, old lease released")
        return [Release(old, "replaced")]

    def _back_off(self, s: Slot) -> float:
        s.delay = min(max(s.delay * 2, self.policy.retry_s), self.policy.max_retry_s)
        return s.delay

    def _due(self, lease: Lease) -> float:
        return lease.expires_at - self.policy.renew_margin_s

    def _leases(self) -> list[Lease]:
        held = [s.lease for s in self.slots]
        held += [s.new_lease for s in self.slots if s.new_lease is not None]
        return held + ([self.spare.lease] if self.spare.lease is not None else [])

    def held(self) -> list[Lease]:
        """Every lease the pool holds: the slots', their replacements' and the spare's."""
        return self._leases()

    def _forget(self, lease_id: str) -> None:
        self._renew_at.pop(lease_id, None)
        self._renewing.discard(lease_id)
        self._renew_tries.pop(lease_id, None)

    def _note(self, now: float, text: str) -> None:
        self.history.append(f"{now:.0f} {text}")


def _short(lease: Lease) -> str:
    return lease.provider.provider[:12]


def _short_new(slot: Slot) -> str:
    return "?" if slot.new_lease is None else _short(slot.new_lease)
