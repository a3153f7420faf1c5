"""The CFS service over fakes of its drivers: build, heal a lost volume, renew, shut down.

The fakes stand in for the volume protocol, the initiator and zpool only to test the
service's wiring of the controllers (STYLE.md 3); the real drivers are tested in
tests/integration/test_storage_*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from cfs.attach import Attacher, interface_name
from cfs.cli import main
from cfs.config import CfsConfig, ConfigError, load_config, parse_size
from cfs.healing import Policy
from cfs.initiator.driver import AttachState, InitiatorError, VolumeTarget
from cfs.lease import Lease, VolumeError
from cfs.placement import Candidate, PlacementRefused
from cfs.service import PROBE_EVERY, Cfs, PoolSpec
from cfs.zfs.status import PoolStatus, ZfsError
from rms.wg.fake import FakeDriver
from rms.wg.manager import WireGuard
from tests.unit.cfs_support import GIB, POOL, candidate, lease, status

OWN = "ee" * 32


@dataclass
class FakeSource:
    """Offers from providers 1..n; leases on demand; records releases and renewals."""

    n: int = 12
    dead: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)

    async def offers(self, size: int) -> list[Candidate]:
        return [
            candidate(i) for i in range(1, self.n + 1) if candidate(i).provider not in self.dead
        ]

    async def obtain(self, c: Candidate, size: int) -> Lease:
        if c.provider in self.dead:
            raise VolumeError("provider silent")
        return lease(int(c.provider, 16), expires_at=10_000.0, size=size)

    async def renew(self, le: Lease) -> Lease:
        self.renewed.append(le.lease_id)
        return le.renewed(le.expires_at + 1000)

    async def release(self, le: Lease) -> None:
        self.released.append(le.lease_id)


@dataclass
class FakeInitiator:
    """Logins succeed unless the target's provider is dead."""

    source: FakeSource
    attached: dict[str, VolumeTarget] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    probes: int = 0
    kind: str = "fake"

    async def attach(self, target: VolumeTarget) -> Path:
        n = int(target.iqn.rsplit("vol", 1)[1])
        if candidate(n).provider in self.source.dead:
            raise InitiatorError(f"login to {target.iqn} failed: no route")
        self.attached[target.slug] = target
        return Path(f"/run/cfs/{target.slug}/disk")

    async def detach(self, target: VolumeTarget) -> bool:
        return self.attached.pop(target.slug, None) is not None

    async def probe(self, target: VolumeTarget) -> bool:
        self.probes += 1
        return target.slug in self.attached and target.slug not in self.silent

    async def state(self, target: VolumeTarget) -> AttachState:
        attached = target.slug in self.attached
        return AttachState(attached, None, attached and target.slug not in self.broken, "failed")


@dataclass
class FakePool:
    """zpool in memory: devices and their states; a replace resilvers on the next status."""

    devices: dict[str, str] = field(default_factory=dict)
    replacing: dict[str, str] = field(default_factory=dict)
    exported: bool = False
    calls: list[str] = field(default_factory=list)
    suspended: bool = False
    late: bool = False  # replace is carried out, but the command is cut at its bound
    stall: tuple[str, int] | None = None

    async def create_raidz3(self, name: str, devices: Sequence[Path], mountpoint: Path) -> None:
        self.devices = {str(d): "ONLINE" for d in devices}

    async def status(self, name: str) -> PoolStatus:
        if self.replacing:
            done = dict(self.devices)
            for old, new in self.replacing.items():
                done.pop(old)
                done[new] = "ONLINE"
            self.devices, self.replacing = done, {}
            return status(done, scan="resilver completed after 0h0m with 0 errors")
        bad = sum(1 for s in self.devices.values() if s != "ONLINE")
        state = "SUSPENDED" if self.suspended else "DEGRADED" if bad else "ONLINE"
        return status(self.devices, pool_state=state)

    async def replace(self, name: str, old: str, new: Path) -> None:
        self.calls.append(f"replace {old} {new}")
        self.replacing[old] = str(new)
        if self.late:
            raise ZfsError("zpool replace did not finish in 60.0 s")

    async def online(self, name: str, device: str) -> None:
        self.devices[device] = "ONLINE"

    async def offline(self, name: str, device: str) -> None:
        self.calls.append(f"offline {device}")
        self.devices[device] = "OFFLINE"

    async def detach(self, name: str, device: str) -> None:
        self.calls.append(f"detach {device}")
        self.devices.pop(device, None)

    async def usage(self, name: str) -> tuple[int, int]:
        return 5 * GIB, GIB

    async def scrub(self, name: str) -> None: ...
    async def clear(self, name: str) -> None:
        self.calls.append("clear")
        self.suspended = False

    async def destroy(self, name: str) -> None: ...
    async def pools(self) -> list[str]:
        return [POOL]

    async def export(self, name: str) -> None:
        self.exported = True

    async def import_pool(self, name: str, directories: Sequence[Path]) -> None:
        self.calls.append("import")
        self.exported = False


def make(
    source: FakeSource | None = None,
) -> tuple[Cfs, FakeSource, FakeInitiator, FakePool, FakeDriver]:
    src = source or FakeSource()
    ini, pool, wg = FakeInitiator(src), FakePool(), FakeDriver()
    cfs = Cfs(
        PoolSpec(POOL, Path("/srv/cfs"), GIB, OWN),
        source=src,
        attacher=Attacher(WireGuard(wg), ini),
        zfs=pool,
        policy=Policy(renew_margin_s=60, retry_s=1),
        clock=lambda: 100.0,
    )
    return cfs, src, ini, pool, wg


async def test_build_places_eight_attaches_links_and_creates_the_pool() -> None:
    cfs, _, ini, pool, wg = make()
    await cfs.build()
    assert len(pool.devices) == 8 and len(ini.attached) == 8 and len(wg.interfaces) == 8
    assert cfs.healer is not None
    slots = cfs.healer.slots
    assert len({s.lease.provider.location for s in slots}) == 8
    link = wg.interfaces[interface_name(slots[0].lease)]
    assert [p.public_key for p in link.peers] == [slots[0].lease.tunnel.peer_key]


async def test_build_refuses_with_too_few_providers_and_claims_nothing() -> None:
    cfs, src, _, pool, _ = make(FakeSource(n=7))
    with pytest.raises(PlacementRefused, match="only 7 of 8"):
        await cfs.build()
    assert not pool.devices and not src.released


async def test_a_failed_login_at_build_undoes_everything() -> None:
    src = FakeSource()
    cfs, _, ini, pool, wg = make(src)
    real_obtain = src.obtain

    async def obtain_then_die(c: Candidate, size: int) -> Lease:
        got = await real_obtain(c, size)
        if c.provider == candidate(5).provider:
            src.dead.add(c.provider)
        return got

    src.obtain = obtain_then_die  # type: ignore[method-assign]
    with pytest.raises(VolumeError, match="attach of lease lease-5 failed"):
        await cfs.build()
    assert not ini.attached and not wg.interfaces and not pool.devices
    assert len(src.released) == 8


async def test_lost_provider_is_replaced_resilvered_and_released() -> None:
    cfs, src, ini, pool, _ = make()
    await cfs.build()
    assert cfs.healer is not None
    lost, device = cfs.healer.slots[2].lease, cfs.healer.slots[2].device
    src.dead.add(lost.provider.provider)
    pool.devices[device] = "UNAVAIL"
    await cfs.step()  # reattach fails, obtain, attach, replace
    assert pool.calls[0] == f"offline {device}" and pool.calls[1].startswith(f"replace {device}")
    await cfs.step()  # the resilver is done: the old lease goes
    assert src.released == [lost.lease_id]
    assert cfs.healer.lost() == 0
    providers = {s.lease.provider.provider for s in cfs.healer.slots}
    assert len(providers) == 8 and lost.provider.provider not in providers
    snap = cfs.snapshot()
    assert snap["state"] == "ONLINE" and snap["size_bytes"] == 5 * GIB
    assert all(v["zfs_state"] == "ONLINE" for v in snap["volumes"])
    assert lost.target.slug not in ini.attached


async def test_a_replace_cut_at_its_bound_but_done_is_followed_not_undone() -> None:
    cfs, src, _, pool, _ = make()
    await cfs.build()
    assert cfs.healer is not None
    lost, device = cfs.healer.slots[5].lease, cfs.healer.slots[5].device
    src.dead.add(lost.provider.provider)
    pool.devices[device], pool.late = "UNAVAIL", True
    await cfs.step()  # the replace times out, yet the new device is in the pool
    assert not any("replace failed" in line for line in cfs.healer.history)
    await cfs.step()
    assert src.released == [lost.lease_id] and cfs.healer.lost() == 0


async def test_renewals_and_an_orderly_stop() -> None:
    cfs, src, ini, pool, wg = make()
    await cfs.build()
    cfs.clock = lambda: 9_950.0
    stop = asyncio.Event()
    published: list[dict[str, object]] = []

    async def publish(section: dict[str, object]) -> None:
        published.append(section)
        stop.set()

    await asyncio.wait_for(cfs.run(stop, publish, every_s=0.01), 5)
    assert len(src.renewed) == 8
    assert published and published[0]["name"] == POOL
    assert pool.exported and not ini.attached and not wg.interfaces
    assert not src.released  # the data stays on the volumes


async def test_status_failure_is_a_problem_not_a_crash() -> None:
    cfs, _, _, pool, _ = make()
    await cfs.build()

    async def broken(name: str) -> PoolStatus:
        raise ZfsError("zpool status failed: no such pool")

    pool.status = broken  # type: ignore[method-assign]
    await cfs.step()
    assert cfs.snapshot()["problem"] == "zpool status failed: no such pool"


@pytest.mark.parametrize(
    ("text", "size"), [("2 GiB", 2 * GIB), ("500MB", 500 * 10**6), ("1073741824", GIB)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "two GiB", "2 XB", "-1 GiB", "9" * 40, "1e9"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "cfs.toml"
    path.write_text('[cfs]\nentitlement = "1 GiB"\n[healing]\npoll_s = 0.5\n')
    config = load_config(path)
    assert config.cfs.volume_size == (GIB // 5) >> 20 << 20
    for bad in (
        '[cfs]\nentitlement = "100 MiB"\n',
        "[cfs]\nbogus = 1\n",
        "[healing]\nretry_s = -1\n",
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(path)
    assert CfsConfig().cfs.volume_size > 0


def test_cfs_run_exits_2_on_a_bad_config_and_1_without_a_node_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cfs.toml"
    path.write_text(f'[cfs]\nlocation = "{"x" * 201}"\n')
    assert main(["run", "--config", str(path)]) == 2
    assert "cfs.location is at most 200" in capsys.readouterr().err
    path.write_text(f'[cfs]\nidentity_file = "{tmp_path / "none.key"}"\n[log]\nformat = "json"\n')
    try:
        assert main(["run", "--config", str(path)]) == 1
    finally:
        structlog.reset_defaults()  # the command set up logging on capsys's stream
    assert "cannot read the node key" in capsys.readouterr().err


async def test_only_a_suspended_pool_is_cleared_before_a_replace() -> None:
    for suspended, expected in ((False, ["offline", "replace"]), (True, ["offline", "clear"])):
        cfs, src, ini, pool, _ = make()
        await cfs.build()
        assert cfs.healer is not None
        lost = cfs.healer.slots[2].lease
        ini.broken.add(lost.target.slug)
        src.dead.add(lost.provider.provider)
        pool.suspended = suspended
        await cfs.step()
        assert [c.split()[0] for c in pool.calls][:2] == expected
        assert pool.calls[-1].startswith("replace")


async def test_a_broken_session_is_noticed_before_zpool_sees_it() -> None:
    cfs, src, ini, pool, _ = make()
    await cfs.build()
    assert cfs.healer is not None
    lost = cfs.healer.slots[4].lease
    ini.broken.add(lost.target.slug)
    src.dead.add(lost.provider.provider)
    await cfs.step()  # zpool still says ONLINE; the session check starts the healing
    assert [c.split()[0] for c in pool.calls] == ["offline", "replace"]
    assert any("session failed" in line for line in cfs.healer.history)


async def test_a_provider_that_fails_its_claim_is_placed_around() -> None:
    src = FakeSource()
    cfs, _, _, pool, _ = make(src)
    real_obtain = src.obtain
    refusing = candidate(12).provider

    async def obtain(c: Candidate, size: int) -> Lease:
        if c.provider in (refusing, candidate(1).provider):
            raise VolumeError("claim refused: over_capacity")
        return await real_obtain(c, size)

    src.obtain = obtain  # type: ignore[method-assign]
    await cfs.build()
    assert cfs.healer is not None and len(pool.devices) == 8
    used = {s.lease.provider.provider for s in cfs.healer.slots}
    assert candidate(1).provider not in used and refusing not in used


async def test_two_slots_healing_at_once_get_distinct_providers() -> None:
    cfs, src, _, pool, _ = make()
    await cfs.build()
    assert cfs.healer is not None
    for slot in (1, 2):
        src.dead.add(cfs.healer.slots[slot].lease.provider.provider)
        pool.devices[cfs.healer.slots[slot].device] = "UNAVAIL"
    for _ in range(3):  # one replace at a time: the second after the first resilver ended
        await cfs.step()
    providers = [s.lease.provider.provider for s in cfs.healer.slots]
    assert cfs.healer.lost() == 0 and len(set(providers)) == 8


async def test_a_silent_volume_of_an_idle_pool_is_found_by_the_probe_reads() -> None:
    cfs, src, ini, pool, _ = make()
    await cfs.build()
    assert cfs.healer is not None
    lost = cfs.healer.slots[6].lease
    ini.silent.add(lost.target.slug)  # no I/O error yet: nothing reads from it
    src.dead.add(lost.provider.provider)
    for _ in range(PROBE_EVERY - 1):
        await cfs.step()
    assert cfs.healer.lost() == 0 and ini.probes == 0
    await cfs.step()
    assert ini.probes == 8 and pool.calls[-1].startswith("replace")
    assert any("probe read failed" in line for line in cfs.healer.history)


async def test_a_false_alarm_keeps_the_healthy_session() -> None:
    cfs, _, ini, pool, wg = make()
    await cfs.build()
    assert cfs.healer is not None
    slot = cfs.healer.slots[3]
    await cfs.carry_out(cfs.healer.device_failed(3, "probe read slow", 100.0))
    assert slot.lease.target.slug in ini.attached and len(wg.interfaces) == 8
    assert cfs.healer.lost() == 0 and pool.calls == ["clear"]  # the online's clear only
