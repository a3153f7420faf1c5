"""The CFS configuration file (TOML), checked key by key before anything starts.

```toml
[cfs]
entitlement = "2 GiB"      # E; each of the 8 volumes is E/5 (a configured value until the
                           # RMS's entitlement reaches the CFS)
pool = "cfs"
mountpoint = "/srv/cfs"
run_dir = "/run/cfs"       # bridges' mount points and logs
initiator = "libiscsi"     # libiscsi (userspace bridge) | open-iscsi
initiator_iqn = "iqn.2026-11.cloud.true:cfs"
wireguard = "auto"         # auto | kernel | userspace
identity_file = "/var/lib/rms/node.key"   # the node key: claims are signed by the node
distinct_blocks = true     # providers in distinct /24s (IPv6: /48s) too; the lab turns it off
                           # (its nodes share 198.18.0.0/24 while their network UUIDs differ)
location = ""              # this node's location and network: UUIDs or names, as the
network = ""               # RMS's [vpn] (sent in requests so providers can tell)
state_file = "/var/lib/cfs/leases.json"   # the leases, so a restart takes its pool back

[healing]
poll_s = 2.0               # how often `zpool status` is read
renew_margin_s = 60.0      # renew a lease this long before it expires
retry_s = 2.0              # first back-off of a failed step (doubles up to max_retry_s)
max_retry_s = 60.0
offer_wait_s = 5.0         # how long to collect offers after a broadcast
hot_spare = false          # keep a ninth volume attached, taken at once on a loss

[rms]
socket = "/run/rms/control.sock"
status_interval_s = 5.0    # how often the `pool` status section is sent to the RMS
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rms.tomlconfig import ConfigError, LogSection, build, read_toml
from rms.tomlconfig import require as _require
from rms.vpn.locality import UNKNOWN_LOCATION, as_uuid

__all__ = ["CfsConfig", "ConfigError", "load_config", "parse_size"]

DEFAULT_CONFIG_PATH = Path("/etc/cfs/cfs.toml")
MIN_VOLUME = 64 << 20  # ZFS refuses devices smaller than 64 MiB
SHARE = 5  # each volume is E/5 (seed: "each one fifth the size of the user's entitlement")
_UNITS = {
    "": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_size(text: str) -> int:
    """`2 GiB`, `500MB`, `1073741824` as bytes; ConfigError if it is not a size."""
    found = _SIZE.fullmatch(text) if len(text) <= 32 else None
    unit = _UNITS.get(found[2].lower()) if found else None
    if found is None or unit is None:
        raise ConfigError(f"{text!r} is not a size (e.g. '2 GiB', '500 MB')")
    return int(float(found[1]) * unit)


@dataclass(frozen=True)
class CfsSection:
    """The pool: its size, name and where it lives."""

    entitlement: str = "2 GiB"
    pool: str = "cfs"
    mountpoint: Path = Path("/srv/cfs")
    run_dir: Path = Path("/run/cfs")
    initiator: str = "libiscsi"
    initiator_iqn: str = "iqn.2026-11.cloud.true:cfs"
    wireguard: str = "auto"
    identity_file: Path = Path("/var/lib/rms/node.key")
    distinct_blocks: bool = True
    location: str = ""
    network: str = ""
    state_file: Path = Path("/var/lib/cfs/leases.json")

    def __post_init__(self) -> None:
        _require(self.state_file.is_absolute(), "cfs.state_file must be an absolute path")
        for name in ("location", "network"):
            _require(len(getattr(self, name)) <= 200, f"cfs.{name} is at most 200 characters")
        _require(
            self.volume_size >= MIN_VOLUME,
            f"cfs.entitlement {self.entitlement!r} gives volumes below 64 MiB (E/5)",
        )
        _require(
            re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", self.pool) is not None,
            "cfs.pool is a letter then up to 63 letters, digits, '_', '.' or '-'",
        )
        _require(self.mountpoint.is_absolute(), "cfs.mountpoint must be an absolute path")
        _require(self.initiator in ("libiscsi", "open-iscsi"), "cfs.initiator: libiscsi|open-iscsi")
        _require(
            self.wireguard in ("auto", "kernel", "userspace"),
            "cfs.wireguard: auto|kernel|userspace",
        )

    @property
    def entitlement_bytes(self) -> int:
        """E in bytes."""
        return parse_size(self.entitlement)

    @property
    def volume_size(self) -> int:
        """E/5, rounded down to whole MiB (iSCSI LUNs and ZFS like round sizes)."""
        return self.entitlement_bytes // SHARE >> 20 << 20


def uuid_bytes(kind: str, text: str) -> bytes:
    """A configured location/network (a UUID, or a name hashed as the RMS does) as 16 bytes."""
    return as_uuid(kind, text or UNKNOWN_LOCATION).bytes


@dataclass(frozen=True)
class HealingSection:
    """The healing controller's timings."""

    poll_s: float = 2.0
    renew_margin_s: float = 60.0
    retry_s: float = 2.0
    max_retry_s: float = 60.0
    offer_wait_s: float = 5.0
    hot_spare: bool = False

    def __post_init__(self) -> None:
        for name in ("poll_s", "renew_margin_s", "retry_s", "max_retry_s", "offer_wait_s"):
            _require(getattr(self, name) > 0, f"healing.{name} must be positive")
        _require(self.retry_s <= self.max_retry_s, "healing.retry_s must be <= max_retry_s")


@dataclass(frozen=True)
class RmsSection:
    """How the CFS reaches its node's RMS."""

    socket: Path = Path("/run/rms/control.sock")
    status_interval_s: float = 5.0

    def __post_init__(self) -> None:
        _require(self.status_interval_s > 0, "rms.status_interval_s must be positive")


@dataclass(frozen=True)
class CfsConfig:
    """The whole CFS configuration."""

    cfs: CfsSection = field(default_factory=CfsSection)
    healing: HealingSection = field(default_factory=HealingSection)
    rms: RmsSection = field(default_factory=RmsSection)
    log: LogSection = field(default_factory=LogSection)


def load_config(path: Path) -> CfsConfig:
    """Read and check the TOML file at `path`; ConfigError says where and why."""
    return build(CfsConfig, read_toml(path, required=True), source=str(path))
