"""Leases, pool statuses and candidates for the CFS unit tests (no I/O)."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface

from cfs.initiator.driver import VolumeTarget
from cfs.lease import Lease, Tunnel, portal_of
from cfs.placement import Candidate
from cfs.zfs.status import PoolStatus, ScanStatus, VdevStatus, parse_scan
from rms.wg.keys import WgPrivateKey

POOL = "cfs"
GIB = 1 << 30


def candidate(n: int, rel: float = 0.5) -> Candidate:
    """Provider n, distinct from every other n in location, network and /24."""
    return Candidate(f"{n:064x}", f"loc-{n}", f"net-{n}", ip_address(f"198.18.{n}.10"), rel)


def lease(n: int, expires_at: float = 1000.0, size: int = GIB) -> Lease:
    """A lease on provider n with a fresh tunnel key."""
    peer = ip_address(f"fd00:{n:x}::1")
    target = VolumeTarget(
        portal_of(peer), f"iqn.2026-11.cloud.true:vol{n}", 1, f"u{n}", f"s{n}" * 8
    )
    tunnel = Tunnel(
        WgPrivateKey.generate(),
        ip_interface(f"fd00:{n:x}::2/128"),
        WgPrivateKey.generate().public_key(),
        f"198.18.{n}.10:{51000 + n}",
        peer,
    )
    return Lease(f"lease-{n}", candidate(n), size, expires_at, target, tunnel)


def device(n: int) -> str:
    return f"/run/cfs/bridges/vol{n}/mnt/disk"


def status(
    states: dict[str, str], *, scan: str = "none requested", pool_state: str = "ONLINE"
) -> PoolStatus:
    """A pool status with one raidz3 group over the given devices and states."""
    rows = [
        VdevStatus(POOL, pool_state, "0", "0", "0", 0),
        VdevStatus("raidz3-0", pool_state, "0", "0", "0", 1),
    ]
    rows += [VdevStatus(d, st, "0", "0", "0", 2) for d, st in states.items()]
    scanned: ScanStatus = parse_scan(scan)
    return PoolStatus(POOL, pool_state, tuple(rows), scanned, "No known data errors")
