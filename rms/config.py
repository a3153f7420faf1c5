"""The daemon's configuration: a TOML file, environment overrides, and defaults that work alone.

Layout of the file (every key optional)::

    [node]
    state_dir = "/var/lib/rms"

    [control]
    socket = "/run/rms/control.sock"
    admin_group = "rms-admin"

    [log]
    format = "auto"      # auto | console | json
    level = "info"       # debug | info | warning | error

    [vpn]
    enabled = true
    backend = "auto"     # WireGuard: auto | kernel | userspace
    location = ""        # a UUID or a place name
    network = ""         # a UUID or a network name; empty: from the public address
    public_ips = []
    want = 0             # VPNs to be in: 0 = the policy's target (2), else 1 to 4

    [discovery]
    urls = []            # https://…/feed.rss of the discovery mirrors
    ca_file = ""         # PEM bundle to trust; empty: the system store

    [contribution]       # docs/entitlement.md
    storage = "20 GiB"
    cpu = 2.0            # cores

    [policy]             # trusted policy keys (hex) and how many must sign
    keys = []
    threshold = 1
    document = ""        # empty: <state_dir>/policy.json

    [webui]              # rms ui (docs/webui.md)
    address = "127.0.0.1"
    port = 8470

    [update]             # the component library (docs/updates.md)
    trusted_root = "/usr/share/rms/library-root.json"   # shipped with the install
    urls = []            # mirrors serving /library/; empty: the discovery urls
    directory = ""       # a local copy of the repository instead of mirrors
    cache_dir = ""       # empty: <state_dir>/library

Any key can be overridden by the environment variable ``RMS_<SECTION>_<KEY>`` in upper case,
for example ``RMS_NODE_STATE_DIR`` or ``RMS_LOG_LEVEL``; lists are comma-separated there.
The environment wins over the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rms.entitlement.arithmetic import ContributionError, parse_size
from rms.policy import DEFAULT as POLICY
from rms.tomlconfig import MAX_CONFIG_BYTES, ConfigError, LogSection, build, read_toml, require

__all__ = ["DEFAULT_CONFIG_PATH", "MAX_CONFIG_BYTES", "Config", "ConfigError", "load_config"]

DEFAULT_CONFIG_PATH = Path("/etc/rms/rms.toml")
WG_BACKENDS = ("auto", "kernel", "userspace")


@dataclass(frozen=True)
class NodeSection:
    """Where the node keeps its identity and state."""

    state_dir: Path = Path("/var/lib/rms")


@dataclass(frozen=True)
class ControlSection:
    """The local control API: a unix socket reachable by root and one admin group."""

    socket: Path = Path("/run/rms/control.sock")
    admin_group: str = "rms-admin"


@dataclass(frozen=True)
class VpnSection:
    """Membership of management VPNs (docs/management-vpns.md)."""

    enabled: bool = True
    backend: str = "auto"  # WireGuard backend: auto | kernel | userspace
    location: str = ""  # geographic location: a UUID, or a name hashed to one
    network: str = ""  # network endpoint: a UUID, or a name; empty = from the public address
    public_ips: tuple[str, ...] = ()  # where peers reach this node; empty = detected
    want: int = 0  # VPNs the node wants; 0 = the policy's target; bounded by its vpn_min/max

    def __post_init__(self) -> None:
        require(self.backend in WG_BACKENDS, f"vpn.backend must be one of {', '.join(WG_BACKENDS)}")
        top = POLICY.vpn_max
        require(0 <= self.want <= top, f"vpn.want must be 0 (the policy's target) or 1 to {top}")


@dataclass(frozen=True)
class DiscoverySection:
    """Where the discovery feed is and whom to trust for its HTTPS."""

    urls: tuple[str, ...] = ()  # the cloud's feed name(s); none: the node cannot join
    ca_file: str = ""  # empty: the system's trust store

    def __post_init__(self) -> None:
        for url in self.urls:
            require(url.startswith("https://"), f"discovery.urls: {url!r} is not an https:// URL")


@dataclass(frozen=True)
class ContributionSection:
    """What the node offers until its Volume Provider measures it (docs/entitlement.md)."""

    storage: str = "0"  # bytes offered, e.g. "20 GiB"; the web UI can change it
    cpu: float = 0.0  # CPU cores offered

    def __post_init__(self) -> None:
        try:
            parse_size(self.storage)
        except ContributionError as e:
            raise ConfigError(f"contribution.storage: {e}") from None
        require(0 <= self.cpu <= 4096, "contribution.cpu must lie in [0, 4096] cores")


@dataclass(frozen=True)
class PolicySection:
    """Whom the node trusts for the signed policy document (docs/entitlement.md)."""

    keys: tuple[str, ...] = ()  # the cloud's policy keys (ed25519 public keys, hex)
    threshold: int = 1  # how many of them must sign a document
    document: str = ""  # where updates drop a new document; empty: <state_dir>/policy.json

    def __post_init__(self) -> None:
        require(1 <= self.threshold <= max(1, len(self.keys)), "policy.threshold is too high")
        for key in self.keys:
            hexes = len(key) == 64 and all(c in "0123456789abcdefABCDEF" for c in key)
            require(hexes, f"policy.keys: {key[:20]!r} is not a 64-digit hex public key")
        require(len({k.lower() for k in self.keys}) == len(self.keys), "policy.keys: a key twice")


@dataclass(frozen=True)
class WebuiSection:
    """The local web UI of `rms ui` (docs/webui.md): loopback only."""

    address: str = "127.0.0.1"  # 127.0.0.1 or ::1
    port: int = 8470

    def __post_init__(self) -> None:
        require(self.address in ("127.0.0.1", "::1"), "webui.address must be 127.0.0.1 or ::1")
        require(0 <= self.port <= 65535, "webui.port must lie in [0, 65535]")


@dataclass(frozen=True)
class UpdateSection:
    """The component library (docs/updates.md): the trusted root and where to read from."""

    trusted_root: Path = Path("/usr/share/rms/library-root.json")  # shipped with the install
    urls: tuple[str, ...] = ()  # mirrors serving /library/; empty: discovery.urls
    directory: str = ""  # a local copy of the repository, used instead of mirrors
    cache_dir: str = ""  # what the node has seen and fetched; empty: <state_dir>/library

    def __post_init__(self) -> None:
        for url in self.urls:
            require(url.startswith("https://"), f"update.urls: {url!r} is not an https:// URL")


@dataclass(frozen=True)
class Config:
    """The whole configuration; later issues add sections here."""

    node: NodeSection = field(default_factory=NodeSection)
    control: ControlSection = field(default_factory=ControlSection)
    log: LogSection = field(default_factory=LogSection)
    vpn: VpnSection = field(default_factory=VpnSection)
    discovery: DiscoverySection = field(default_factory=DiscoverySection)
    contribution: ContributionSection = field(default_factory=ContributionSection)
    policy: PolicySection = field(default_factory=PolicySection)
    webui: WebuiSection = field(default_factory=WebuiSection)
    update: UpdateSection = field(default_factory=UpdateSection)


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    default_path: Path = DEFAULT_CONFIG_PATH,
) -> Config:
    """Read the file (if any), apply environment overrides, and validate every value."""
    env = os.environ if environ is None else environ
    explicit = path is not None or "RMS_CONFIG" in env
    chosen = path or Path(env.get("RMS_CONFIG", str(default_path)))
    raw = read_toml(chosen, required=explicit)
    source = str(chosen) if raw or chosen.exists() else "defaults"
    return build(Config, raw, source=source, env_prefix="RMS", environ=env)
