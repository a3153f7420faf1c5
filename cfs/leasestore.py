"""The CFS's leases on disk, and taking a saved pool back after a restart (adapter).

`LeaseStore` writes the file of cfs/leasefile.py atomically (rms.atomicfile: a temporary
file in the same directory, mode 0600, fsync, rename, fsync of the directory): a crash
leaves the old file or the new one, never half of one. `keep_saved` writes it whenever the
set of leases or an expiry changes (a claim, a renewal, a release). `resume` is what a
restarted CFS does with it: hold the leases again (the source checks each record), attach
every volume, import the pool, and hand the slots to a new healer, which renews what is
due and heals the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

import structlog

from cfs.healing import Healer
from cfs.lease import KeepsLeases, Lease, VolumeError
from cfs.leasefile import LeaseFileError, SavedPool, SavedSlot, decode, encode
from cfs.service import Cfs
from cfs.zfs.status import ZfsError
from rms.atomicfile import write_atomic

MIN_TO_IMPORT = 5  # RAIDZ3 over 8: the pool comes back with 5 volumes
log = structlog.get_logger("cfs.leases")


class LeaseStore:
    """The lease file at path, keyed by the node (leasefile.mac_key)."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path, self.key = path, key

    def load(self) -> SavedPool | None:
        """The saved pool; None without a file; LeaseFileError when it cannot be used."""
        try:
            with self.path.open("rb") as f:
                data = f.read(1 << 20)  # leasefile refuses anything over its cap
        except FileNotFoundError:
            return None
        except OSError as e:
            raise LeaseFileError(f"cannot read {self.path}: {e.strerror}") from None
        return decode(data, self.key)

    def save(self, saved: SavedPool) -> None:
        """Replace the file atomically with saved (mode 0600: it holds secrets)."""
        write_atomic(self.path, encode(saved, self.key))

    def set_aside(self) -> Path:
        """Move an unusable file out of the way (kept for a person to look at)."""
        aside = self.path.with_name(self.path.name + ".bad")
        self.path.replace(aside)
        return aside

    def remove(self) -> None:
        """Forget the saved pool."""
        self.path.unlink(missing_ok=True)


def saved_of(cfs: Cfs, keeper: KeepsLeases) -> SavedPool | None:
    """What to save of a running CFS; None before its pool exists."""
    if cfs.healer is None:
        return None
    slots = []
    for s in cfs.healer.slots:
        new = s.new_lease
        slots.append(
            SavedSlot(
                s.lease,
                s.device,
                keeper.record(s.lease),
                new,
                s.new_device if new else "",
                keeper.record(new) if new else None,
            )
        )
    return SavedPool(cfs.spec.name, tuple(slots))


def fingerprint(saved: SavedPool | None) -> tuple[tuple[str, float], ...]:
    """What changes the file: the leases held and their expiries."""
    leases = saved.leases() if saved is not None else []
    return tuple((le.lease_id, round(le.expires_at, 3)) for le in leases)


async def keep_saved(
    cfs: Cfs, store: LeaseStore, keeper: KeepsLeases, stop: asyncio.Event, every_s: float
) -> None:
    """Save the leases whenever they change, and once more on stop."""
    last: tuple[tuple[str, float], ...] = ()
    while True:
        try:
            saved = saved_of(cfs, keeper)
            if saved is not None and fingerprint(saved) != last:
                store.save(saved)
                last = fingerprint(saved)
        except (OSError, LeaseFileError, VolumeError) as e:
            log.warning("cfs.leases_not_saved", path=str(store.path), reason=str(e))
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


def load_saved(store: LeaseStore) -> SavedPool | None:
    """The saved pool, or None; an unusable file is logged and set aside, never fatal."""
    try:
        return store.load()
    except LeaseFileError as e:
        try:
            aside = str(store.set_aside())
        except OSError as moved:
            aside = f"not moved: {moved.strerror}"
        log.error("cfs.leases_refused", path=str(store.path), reason=str(e), kept_as=aside)
        return None


def usable(saved: SavedPool, now: float) -> bool:
    """Whether enough leases are unexpired for the pool to come back (else: build anew)."""
    return sum(1 for s in saved.slots if s.lease.expires_at > now) >= MIN_TO_IMPORT


async def resume(cfs: Cfs, saved: SavedPool, keeper: KeepsLeases) -> None:
    """Take the saved pool back: adopt, attach, import, heal. VolumeError if it cannot."""
    if saved.pool != cfs.spec.name:
        raise VolumeError(f"the saved leases are of pool {saved.pool!r}, not {cfs.spec.name!r}")
    for lease in saved.leases():
        keeper.adopt(lease, _record_of(saved, lease))
    found = await asyncio.gather(*(_attach(cfs, le) for le in saved.leases()))
    up = sum(1 for path in found[: len(saved.slots)] if path is not None)
    if up < MIN_TO_IMPORT:
        await _detach_all(cfs, saved.leases())
        raise VolumeError(f"only {up} of {len(saved.slots)} saved volumes answer; retrying")
    # where each volume is now (the same path unless run_dir moved), else where it was
    devices = [str(p) if p else s.device for p, s in zip(found, saved.slots, strict=False)]
    replacing = iter(found[len(saved.slots) :])
    try:
        await cfs.zfs.import_pool(cfs.spec.name, _unique([Path(d).parent for d in devices]))
    except ZfsError as e:
        await _detach_all(cfs, saved.leases())
        raise VolumeError(f"import of pool {cfs.spec.name!r} failed: {e}") from None
    healer = Healer(list(zip((s.lease for s in saved.slots), devices, strict=True)), cfs.policy)
    for i, s in enumerate(saved.slots):
        if s.replacement is not None:
            path = next(replacing)
            healer.resume_replacement(i, s.replacement, str(path or s.replacement_device))
    cfs.healer = healer
    log.info("cfs.pool_resumed", pool=cfs.spec.name, attached=up, volumes=len(saved.slots))


def _record_of(saved: SavedPool, lease: Lease) -> dict[str, object]:
    for s in saved.slots:
        if s.lease is lease:
            return s.state
        if s.replacement is lease:
            return s.replacement_state or {}
    return {}


async def _attach(cfs: Cfs, lease: Lease) -> Path | None:
    try:
        return await cfs.attacher.attach(lease)
    except VolumeError as e:
        log.warning("cfs.resume_attach_failed", lease=lease.lease_id, reason=str(e))
        return None


async def _detach_all(cfs: Cfs, leases: Sequence[Lease]) -> None:
    await asyncio.gather(*(cfs.attacher.detach(le) for le in leases))


def _unique(paths: Sequence[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))
