"""The Volume Provider's configuration: one TOML file, every key checked (docs/volumes.md).

[provider]
data_dir = "/var/lib/volume-provider/volumes"  # one sparse file per leased volume
lease_file = "/var/lib/volume-provider/leases.bin"  # leases survive a restart (0600)
capacity_mib = 0          # storage contributed; 0: what the node contributes in the RMS
                          # (`rms contribute`, its [contribution] storage), followed live
location = ""             # geographic location: UUID or place name, as the RMS's [vpn]
network = ""              # network endpoint: UUID or name, as the RMS's [vpn]
port = 7950               # claim/renew/release, TCP, on the management addresses
listen = []               # addresses to serve on; empty: this node's management addresses
wg_port_first = 52400     # nested-VPN UDP ports: clear of the RMS 51820+ and 51900+, CFS 52000+
wg_port_count = 64
lease_s = 300
offer_ttl_s = 60
min_volume_mib = 16
max_per_request = 1
price = 0                 # hints in offers until accounting and audits land (issue 6)
reliability = 0

[rms]
socket = "/run/rms/control.sock"
state_dir = "/var/lib/rms"  # where the node key is (read once at start; root only)

[target]
backend = "tgt"           # the iSCSI target: "tgt" (the provider's own tgtd, the default),
                          # "lio" (the kernel's LIO through rtslib-fb), "truenas" (the
                          # TrueNAS middleware: zvols and SCST exports; docs/truenas-middleware.md)

[tgt]
control_port = 7952       # tgtd -C N: its control socket is /run/tgtd/socket.N
portal = "[::1]:3260"     # the portal tgtd starts with; volumes add theirs inside their VPN
log_dir = "/var/log/volume-provider"

[truenas]                 # read only with backend = "truenas"
url = "wss://127.0.0.1/api/current"           # wss:// only
api_key_file = "/run/secrets/truenas-api-key"  # first line is the key
ca_file = ""                                  # empty: the system trust store
parent_dataset = ""       # required with backend = "truenas": POOL/DATASET[/...]
basename = "iqn.2005-10.org.freenas.ctl"      # TrueNAS's iSCSI base name (checked at start)

[log]
format = "auto"
level = "info"
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from rms.tomlconfig import ConfigError, LogSection, build, read_toml, require
from rms.volumes.leases import DEFAULT_SECRET_LEN
from rms.volumes.terms import IQN_PREFIX
from rms.vpn.locality import UNKNOWN_LOCATION, as_uuid
from rms.wg.model import Endpoint
from volume_provider.target.truenas_rpc import TrueNasSection

__all__ = [
    "BACKENDS",
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "ProviderConfig",
    "lease_naming",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/volume-provider/volume-provider.toml")
MIB = 1024**2


@dataclass(frozen=True)
class ProviderSection:
    """What the provider contributes and how it serves it."""

    data_dir: Path = Path("/var/lib/volume-provider/volumes")
    lease_file: Path = Path("/var/lib/volume-provider/leases.bin")
    capacity_mib: int = 0
    location: str = ""
    network: str = ""
    port: int = 7950
    listen: tuple[str, ...] = ()
    wg_port_first: int = 52400
    wg_port_count: int = 64
    lease_s: int = 300
    offer_ttl_s: int = 60
    min_volume_mib: int = 16
    max_per_request: int = 1
    price: int = 0
    reliability: int = 0

    def __post_init__(self) -> None:
        require(self.capacity_mib >= 0, "provider.capacity_mib must be >= 0")
        require(1 <= self.port <= 65535, "provider.port must be in 1..65535")
        last = self.wg_port_first + self.wg_port_count - 1
        ok = 1 <= self.wg_port_first <= last <= 65535
        require(ok, "provider.wg_port_first .. + wg_port_count - 1 must lie in 1..65535")
        require(2 <= self.lease_s <= 86400, "provider.lease_s must be in 2..86400")
        require(1 <= self.offer_ttl_s <= 3600, "provider.offer_ttl_s must be in 1..3600")
        require(self.min_volume_mib >= 1, "provider.min_volume_mib must be >= 1")
        require(1 <= self.max_per_request <= 64, "provider.max_per_request must be in 1..64")
        require(0 <= self.reliability <= 1000, "provider.reliability is per mille, 0..1000")
        require(0 <= self.price <= 2**32, "provider.price must be in 0..2^32")
        for text in self.listen:
            try:
                IPv6Address(text)
            except ValueError:
                raise ConfigError(f"provider.listen: {text!r} is not an IPv6 address") from None

    @property
    def location_uuid(self) -> uuid.UUID:
        """The location as the RMS derives it from the same text."""
        return as_uuid("location", self.location or UNKNOWN_LOCATION)

    @property
    def network_uuid(self) -> uuid.UUID:
        """The network as the RMS derives it from the same text ("unknown" when empty)."""
        return as_uuid("network", self.network or UNKNOWN_LOCATION)


@dataclass(frozen=True)
class RmsSection:
    """Where the local RMS is."""

    socket: Path = Path("/run/rms/control.sock")
    state_dir: Path = Path("/var/lib/rms")


@dataclass(frozen=True)
class TgtSection:
    """The provider's own tgtd."""

    control_port: int = 7952
    portal: str = "[::1]:3260"
    log_dir: Path = Path("/var/log/volume-provider")

    def __post_init__(self) -> None:
        require(1 <= self.control_port <= 32767, "tgt.control_port must be in 1..32767 (tgtd -C)")
        try:
            Endpoint.parse(self.portal)
        except ValueError as e:
            raise ConfigError(f"tgt.portal: {e}") from None


BACKENDS = ("tgt", "lio", "truenas")


@dataclass(frozen=True)
class TargetSection:
    """Which iSCSI target exports the volumes."""

    backend: str = "tgt"

    def __post_init__(self) -> None:
        choices = ", ".join(f'"{b}"' for b in BACKENDS)
        require(self.backend in BACKENDS, f"target.backend must be one of {choices}")


@dataclass(frozen=True)
class ProviderConfig:
    """The whole configuration of one Volume Provider."""

    provider: ProviderSection = field(default_factory=ProviderSection)
    rms: RmsSection = field(default_factory=RmsSection)
    target: TargetSection = field(default_factory=TargetSection)
    tgt: TgtSection = field(default_factory=TgtSection)
    truenas: TrueNasSection = field(default_factory=TrueNasSection)
    log: LogSection = field(default_factory=LogSection)


TRUENAS_SECRET_LEN = 16  # TrueNAS takes CHAP secrets of 12-16 characters


def lease_naming(config: ProviderConfig) -> tuple[str, int]:
    """The target-name base and CHAP secret length of this provider's leases: the cloud's
    own, or what TrueNAS imposes (its base name, secrets of at most 16 characters)."""
    if config.target.backend == "truenas":
        return config.truenas.basename, TRUENAS_SECRET_LEN
    return IQN_PREFIX, DEFAULT_SECRET_LEN


def _checked(config: ProviderConfig, source: str) -> ProviderConfig:
    """The checks that span sections."""
    if config.target.backend == "truenas" and not config.truenas.parent_dataset:
        raise ConfigError(
            f'{source}: truenas.parent_dataset is required with target.backend = "truenas"'
        )
    return config


def load_config(path: Path | None) -> ProviderConfig:
    """Read and check the TOML file (the default path may be absent); raises ConfigError."""
    chosen = path or DEFAULT_CONFIG_PATH
    raw = read_toml(chosen, required=path is not None)
    return _checked(build(ProviderConfig, raw, source=str(chosen)), str(chosen))


def parse_config(raw: dict[str, Any]) -> ProviderConfig:
    """Build the configuration from parsed TOML; raises ConfigError."""
    return _checked(build(ProviderConfig, raw, source="config"), "config")
