"""The CFS service: obtain 8 volumes, build the RAIDZ3 pool, keep it healthy (asyncio adapter).

The decisions are the cores' (`cfs.placement.place`, `cfs.healing.Healer`); this module
only carries them out: it asks the `VolumeSource` for offers and leases, attaches them
(`cfs.attach.Attacher`), runs `zpool` (`PoolDriver`), feeds every outcome back to the
healer and publishes the `pool` status section. Shutdown is orderly: export the pool, then
detach every volume; leases are not released (the volumes still hold the pool's data), they
lapse unless a later run renews them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cfs.actions import (
    Action,
    Attach,
    Detach,
    Obtain,
    Online,
    Reattach,
    Release,
    Renew,
    Replace,
    describe,
)
from cfs.attach import Attacher
from cfs.healing import Healer, Policy, SlotState
from cfs.lease import Lease, VolumeError, VolumeSource
from cfs.placement import POOL_WIDTH, PlacementRefused, place
from cfs.status import pool_section
from cfs.zfs.driver import PoolDriver
from cfs.zfs.status import PoolStatus, ZfsError, ZfsTimeout

Publish = Callable[[dict[str, Any]], Awaitable[None]]
PARALLEL = (Reattach, Attach, Renew, Release)
REACH_EVERY_S = 15.0  # how often a built pool checks that spares are within reach
PROBE_EVERY = 5  # steps between block reads of every volume (10 s at the default poll_s)
# The last bound on one action (a replace is offline 20 s + clear 60 s + replace 60 s +
# status 20 s at most): whatever hangs below it, the healing loop goes on.
ACTION_TIMEOUT_S = 240.0
MIN_WAIT_S = 0.5  # the watch loop never spins (a lab run logged 858 failed steps in seconds)
ESCALATE_AFTER = 3  # zpool commands cut in a row before the stall is logged as an error
log = structlog.get_logger("cfs")


@dataclass(frozen=True)
class PoolSpec:
    """What pool to build: name, mount point, volume size, and whose node this is."""

    name: str
    mountpoint: Path
    volume_size: int
    own_id: str


class Cfs:
    """One node's Cloud File System."""

    def __init__(
        self,
        spec: PoolSpec,
        *,
        source: VolumeSource,
        attacher: Attacher,
        zfs: PoolDriver,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        reach: Callable[[], Awaitable[None]] | None = None,
        audit: Callable[[Cfs, asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.spec, self.source, self.attacher, self.zfs = spec, source, attacher, zfs
        self.audit = audit  # issue 6: scrub audits of the providers (cfs.audit)
        self.policy, self.clock = policy, clock
        self.reach = reach  # asks for more VPNs while too few providers are reachable
        self.healer: Healer | None = None
        self.last_status: PoolStatus | None = None
        self.usage: tuple[int, int] | None = None
        self.problem = ""
        self._steps = 0
        self._escalated = False  # the current zpool stall was logged as an error

    # -- building -----------------------------------------------------------------------

    async def build(self) -> None:
        """Obtain 8 volumes on distinct providers, attach them, create the pool."""
        leases = await self._obtain_all()
        members: list[tuple[Lease, str]] = []
        try:
            for lease in leases:
                members.append((lease, str(await self.attacher.attach(lease))))
            devices = [Path(d) for _, d in members]
            await self.zfs.create_raidz3(self.spec.name, devices, self.spec.mountpoint)
        except (VolumeError, ZfsError):
            for lease, _ in members:
                await self.attacher.detach(lease)
            await self._release_all(leases, "pool not built")
            raise
        self.healer = Healer(members, self.policy)
        log.info("cfs.pool_created", pool=self.spec.name, volumes=len(members))

    async def _obtain_all(self) -> list[Lease]:
        """8 leases on distinct providers; a provider that fails its claim is placed around."""
        offers = await self.source.offers(self.spec.volume_size)
        leases: list[Lease] = []
        failed: list[str] = []
        try:
            while len(leases) < POOL_WIDTH:
                kept = tuple(lease.provider for lease in leases)
                chosen = place(
                    offers, count=POOL_WIDTH - len(leases), own_id=self.spec.own_id,
                    keep=kept, avoid=failed,
                )  # fmt: skip
                for candidate in chosen:
                    try:
                        leases.append(await self.source.obtain(candidate, self.spec.volume_size))
                    except VolumeError as e:
                        log.warning(
                            "cfs.claim_failed", provider=candidate.provider[:16], reason=str(e)
                        )
                        failed.append(candidate.provider)
        except PlacementRefused:
            await self._release_all(leases, "pool not built")
            raise
        return leases

    async def _release_all(self, leases: Sequence[Lease], why: str) -> None:
        for lease in leases:
            await self._release(Release(lease, why))

    # -- running ------------------------------------------------------------------------

    async def step(self) -> None:
        """Read the pool, let the healer decide, carry out what it asks."""
        healer = self._healer()
        now = self.clock()
        try:
            status = await self.zfs.status(self.spec.name)
        except ZfsError as e:
            self.problem = str(e)
            log.warning("cfs.status_failed", reason=str(e))
            actions = healer.handle_timer(now)
        else:
            self.last_status, self.problem = status, ""
            self.usage = await self._usage()
            actions = healer.pool_status(status, now) + healer.handle_timer(now)
        await self.carry_out(actions + await self._sessions(now))

    async def _sessions(self, now: float) -> list[Action]:
        """Losses the initiator saw first: a broken session, a bridge that died; and, every
        `probe_every` steps, a block read from each volume (an idle pool sends none)."""
        healer, actions = self._healer(), []
        self._steps += 1
        online = [i for i, s in enumerate(healer.slots) if s.state is SlotState.ONLINE]
        if self._steps % PROBE_EVERY == 0:
            targets = [healer.slots[i].lease.target for i in online]
            answers = await asyncio.gather(*(self.attacher.initiator.probe(t) for t in targets))
            for i, ok in zip(online, answers, strict=True):
                if not ok:
                    actions += healer.device_failed(i, "probe read failed", now)
        for i in online:
            state = await self.attacher.initiator.state(healer.slots[i].lease.target)
            if not (state.attached and state.healthy):
                actions += healer.device_failed(i, f"session {state.detail or 'gone'}", now)
        return actions

    async def _usage(self) -> tuple[int, int] | None:
        try:
            return await self.zfs.usage(self.spec.name)
        except ZfsError:
            return None

    async def carry_out(self, actions: list[Action]) -> None:
        """Do the actions and feed their outcomes back, until nothing more follows.

        Logins, renewals and releases of different leases run side by side (a dead
        provider costs a login timeout, and three of them should not cost three); obtains
        and pool changes run one at a time, so that each placement sees the one before.
        """
        queue = list(actions)
        while queue:
            parallel = [a for a in queue if isinstance(a, PARALLEL)]
            queue = [a for a in queue if not isinstance(a, PARALLEL)]
            for each in parallel:
                log.info("cfs.heal", **describe(each))
            for follow in await asyncio.gather(*(self._do(a) for a in parallel)):
                queue += follow
            if queue and not isinstance(queue[0], PARALLEL):
                one = queue.pop(0)
                log.info("cfs.heal", **describe(one))
                queue += await self._do(one)

    async def _do(self, action: Action) -> list[Action]:
        handlers: dict[type, Callable[[Any], Awaitable[list[Action]]]] = {
            Reattach: self._reattach,
            Attach: self._attach_new,
            Obtain: self._obtain,
            Replace: self._replace,
            Detach: self._detach,
            Online: self._online,
            Release: self._release,
            Renew: self._renew,
        }
        try:
            async with asyncio.timeout(ACTION_TIMEOUT_S):
                return await handlers[type(action)](action)
        except TimeoutError:
            return self._timed_out(action)
        finally:
            self._check_stall()

    def _timed_out(self, action: Action) -> list[Action]:
        """An action that outlived its last bound: report it failed, never wait for it."""
        why = f"did not finish in {ACTION_TIMEOUT_S:.0f} s"
        log.error("cfs.action_stalled", reason=why, **describe(action))
        if isinstance(action, Renew):
            return self._healer().renew_failed(action.lease.lease_id, why, self.clock())
        slot = getattr(action, "slot", None)
        if slot is None:
            return []
        return self._healer().failed(slot, type(action).__name__.lower(), why, self.clock())

    def _check_stall(self) -> None:
        """Log once when zpool commands keep hitting their bound (zfs-fuse is wedged)."""
        stall = self.zfs.stall
        if stall is None or stall[1] < ESCALATE_AFTER:
            self._escalated = stall is not None and self._escalated
        elif not self._escalated:
            self._escalated = True
            log.error(
                "cfs.zfs_stalled", command=stall[0], in_a_row=stall[1],
                advice="zfs-fuse waits on a dead device; healing retries with back-off; "
                "if it lasts, restart zfs-fuse (the pool is imported again)",
            )  # fmt: skip

    async def _reattach(self, action: Reattach) -> list[Action]:
        return await self._attach(action.slot, action.lease, "reattach", self.attacher.reattach)

    async def _attach_new(self, action: Attach) -> list[Action]:
        return await self._attach(action.slot, action.lease, "attach", self.attacher.attach)

    async def _replace(self, action: Replace) -> list[Action]:
        healer, new = self._healer(), Path(action.new_device)
        try:
            # zfs may still count the dead device as ONLINE (the initiator saw the loss
            # first); offline it so the replace does not wait on writes to it.
            await self.zfs.offline(self.spec.name, action.old_device)
        except ZfsError as e:
            log.info("cfs.offline_skipped", device=action.old_device, reason=str(e))
        try:
            if self.last_status is not None and self.last_status.state == "SUSPENDED":
                # a suspended pool refuses a replace; a clear otherwise only risks waiting
                # on a dead device zfs still counts ONLINE (the lab saw it hang for 60 s)
                await self.zfs.clear(self.spec.name)
            await self.zfs.replace(self.spec.name, action.old_device, new)
        except ZfsTimeout as e:
            # a `zpool replace` cut at its bound may still be carried out by the daemon
            # (the lab saw one land on a volume already given back): keep the new lease
            # and let the statuses decide; the new device missing from the table once
            # zpool answers again means it was not, and the slot obtains another
            log.info("cfs.replace_late", device=str(new), reason=str(e))
        except ZfsError as e:
            if not await self._has_device(str(new)):
                return healer.failed(action.slot, "replace", str(e), self.clock())
            log.info("cfs.replace_late", device=str(new), reason=str(e))
        return healer.replaced(action.slot, self.clock())

    async def _has_device(self, device: str) -> bool | None:
        """Whether zpool lists device; None when zpool does not answer."""
        try:
            return (await self.zfs.status(self.spec.name)).device(device) is not None
        except ZfsError:
            return None

    async def _detach(self, action: Detach) -> list[Action]:
        healer = self._healer()
        try:
            await self.zfs.detach(self.spec.name, action.device)
        except ZfsError as e:
            if await self._has_device(action.device) is not False:
                return healer.failed(action.slot, "detach", str(e), self.clock())
            log.info("cfs.detach_late", device=action.device, reason=str(e))
        return healer.detached(action.slot, action.device, self.clock())

    async def _renew(self, action: Renew) -> list[Action]:
        try:
            renewed = await self.source.renew(action.lease)
        except VolumeError as e:
            return self._healer().renew_failed(action.lease.lease_id, str(e), self.clock())
        return self._healer().renewed(renewed, self.clock())

    async def _attach(
        self, slot: int, lease: Lease, step: str, how: Callable[[Lease], Awaitable[Path]]
    ) -> list[Action]:
        try:
            device = await how(lease)
        except VolumeError as e:
            return self._healer().failed(slot, step, str(e), self.clock())
        return self._healer().attached(slot, lease.lease_id, str(device), self.clock())

    async def _obtain(self, action: Obtain) -> list[Action]:
        healer = self._healer()
        try:
            offers = await self.source.offers(self.spec.volume_size)
            # keep as of now, not as of the action: the slots before may have got theirs
            keep = healer.keep(action.slot)
            (candidate,) = place(
                offers, count=1, own_id=self.spec.own_id, keep=keep, avoid=action.avoid
            )
            lease = await self.source.obtain(candidate, self.spec.volume_size)
        except (PlacementRefused, VolumeError) as e:
            return healer.failed(action.slot, "obtain", str(e), self.clock())
        return healer.obtained(action.slot, lease, self.clock())

    async def _online(self, action: Online) -> list[Action]:
        try:
            # clear first: it resumes a suspended pool without waiting for a txg, which
            # `online` does (and would wait for forever while the pool is suspended).
            await self.zfs.clear(self.spec.name)
            await self.zfs.online(self.spec.name, action.device)
        except ZfsError as e:
            log.warning("cfs.online_failed", device=action.device, reason=str(e))
        return []

    async def _release(self, action: Release) -> list[Action]:
        await self.attacher.detach(action.lease)
        try:
            await self.source.release(action.lease)
        except VolumeError as e:
            # The lease lapses at its expiry anyway; the provider wipes the volume then.
            log.warning("cfs.release_failed", lease=action.lease.lease_id, reason=str(e))
        return []

    async def run(
        self, stop: asyncio.Event, publish: Publish | None = None, every_s: float = 5.0
    ) -> None:
        """Keep the pool healthy until stop is set, publishing status; then shut down."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(stop), name="cfs-watch")
                tg.create_task(self._renew_apart(stop), name="cfs-renew")
                if self.audit is not None:
                    tg.create_task(self.audit(self, stop), name="cfs-audit")
                if publish is not None:
                    tg.create_task(self._publish(stop, publish, every_s), name="cfs-status")
                if self.reach is not None:
                    tg.create_task(self._keep_reach(stop, self.reach), name="cfs-reach")
        finally:
            await self.shutdown()

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            await _wait(stop, self._next_wait())

    async def _renew_apart(self, stop: asyncio.Event) -> None:
        """Renew due leases even while a step waits on a long zpool command (a replace
        took up to a minute under zfs-fuse; a lease must not lapse meanwhile)."""
        while not stop.is_set():
            await self.carry_out(self._healer().renewals(self.clock()))
            await _wait(stop, self.policy.poll_s)

    def _next_wait(self) -> float:
        due, poll = self._healer().next_timer(self.clock()), self.policy.poll_s
        if due is None or self.problem:
            return poll  # zpool did not answer: do not spin on a daemon that is gone
        return max(MIN_WAIT_S, min(poll, due - self.clock()))

    async def _publish(self, stop: asyncio.Event, publish: Publish, every_s: float) -> None:
        while not stop.is_set():
            try:
                await publish(self.snapshot())
            except Exception as e:  # the RMS may be restarting; the pool goes on regardless
                log.debug("cfs.publish_failed", reason=str(e))
            await _wait(stop, every_s)

    async def _keep_reach(self, stop: asyncio.Event, reach: Callable[[], Awaitable[None]]) -> None:
        # spares for healing must be reachable before a loss, not found after it (docs/cfs.md)
        while not stop.is_set():
            await _wait(stop, REACH_EVERY_S)
            await reach()

    async def shutdown(self) -> None:
        """Export the pool and detach every volume (leases kept; see the module doc)."""
        try:
            await self.zfs.export(self.spec.name)
        except ZfsError as e:
            log.warning("cfs.export_failed", pool=self.spec.name, reason=str(e))
        if self.healer is not None:
            for lease in self.healer.held():  # the spare's too
                await self.attacher.detach(lease)
        log.info("cfs.stopped", pool=self.spec.name)

    def snapshot(self) -> dict[str, Any]:
        """The `pool` status section (see docs/cfs.md)."""
        return pool_section(
            self.spec.name,
            status=self.last_status,
            usage=self.usage,
            healer=self.healer,
            problem=self.problem,
            now=self.clock(),
            stall=self.zfs.stall,
        )

    def _healer(self) -> Healer:
        if self.healer is None:
            raise RuntimeError("the pool is not built yet")
        return self.healer


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return


__all__ = ["POOL_WIDTH", "Cfs", "PoolSpec"]
