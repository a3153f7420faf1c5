"""The mirror's configuration: one TOML file, every key checked (docs/discovery.md).

[server]
listen = ["0.0.0.0", "::"]
port = 443
cert_file = "/etc/vpn-discovery/tls/cert.pem"
key_file = "/etc/vpn-discovery/tls/key.pem"
public_url = "https://discovery.example.org/feed.rss"

[feed]
default_items = 16
max_items = 64

[store]
state_file = "/var/lib/vpn-discovery/records.msgpack"
max_records = 4096
per_founder = 4
save_interval_s = 2.0

[peers]
urls = ["https://mirror-2.example.org", "https://mirror-3.example.org"]
ca_file = ""              # PEM bundle to trust for peers; empty: the system store
anti_entropy_s = 30.0
timeout_s = 5.0
max_sync_bytes = 8388608

[log]
format = "auto"           # auto | console | json
level = "info"

[library]
directory = ""            # a component library repository to serve at /library/ (docs/updates.md)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rms.discovery.feed import MAX_FEED_ITEMS
from rms.tomlconfig import ConfigError, LogSection, build, read_toml
from rms.tomlconfig import require as _require

__all__ = ["DEFAULT_CONFIG_PATH", "ConfigError", "MirrorConfig", "load_config", "parse_config"]

DEFAULT_CONFIG_PATH = Path("/etc/vpn-discovery/vpn-discovery.toml")


@dataclass(frozen=True)
class ServerSection:
    """Where the mirror listens, with which certificate, and the feed's public URL."""

    # A public feed listens on every address by design; asyncio makes IPv6 sockets v6-only.
    listen: tuple[str, ...] = ("0.0.0.0", "::")  # noqa: S104
    port: int = 443
    cert_file: Path = Path("/etc/vpn-discovery/tls/cert.pem")
    key_file: Path = Path("/etc/vpn-discovery/tls/key.pem")
    public_url: str = "https://localhost/feed.rss"

    def __post_init__(self) -> None:
        _require(bool(self.listen), "server.listen needs at least one address")
        _require(1 <= self.port <= 65535, "server.port must be in 1..65535")
        _require(self.public_url.startswith("https://"), "server.public_url must be https://")


@dataclass(frozen=True)
class FeedSection:
    """How many records one feed request returns."""

    default_items: int = 16
    max_items: int = 64

    def __post_init__(self) -> None:
        _require(
            1 <= self.default_items <= self.max_items <= MAX_FEED_ITEMS,
            f"feed needs 1 <= default_items <= max_items <= {MAX_FEED_ITEMS}",
        )


@dataclass(frozen=True)
class StoreSection:
    """Where records persist and how many the mirror keeps."""

    state_file: Path = Path("/var/lib/vpn-discovery/records.msgpack")
    max_records: int = 4096
    per_founder: int = 4
    save_interval_s: float = 2.0

    def __post_init__(self) -> None:
        _require(self.max_records >= 1, "store.max_records must be at least 1")
        _require(self.per_founder >= 1, "store.per_founder must be at least 1")
        _require(self.save_interval_s > 0, "store.save_interval_s must be positive")


@dataclass(frozen=True)
class PeersSection:
    """The other mirrors: whom to push to and pull from, and whom to trust for their HTTPS."""

    urls: tuple[str, ...] = ()
    ca_file: str = ""
    anti_entropy_s: float = 30.0
    timeout_s: float = 5.0
    max_sync_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for url in self.urls:
            _require(url.startswith("https://"), f"peers.urls: {url!r} is not an https:// URL")
        _require(self.anti_entropy_s > 0, "peers.anti_entropy_s must be positive")
        _require(self.timeout_s > 0, "peers.timeout_s must be positive")
        _require(self.max_sync_bytes >= 1024, "peers.max_sync_bytes must be at least 1024")


@dataclass(frozen=True)
class LibrarySection:
    """A copy of the component library's repository, served at /library/; empty: none."""

    directory: str = ""


@dataclass(frozen=True)
class MirrorConfig:
    """The whole configuration of one mirror."""

    server: ServerSection = field(default_factory=ServerSection)
    feed: FeedSection = field(default_factory=FeedSection)
    store: StoreSection = field(default_factory=StoreSection)
    peers: PeersSection = field(default_factory=PeersSection)
    log: LogSection = field(default_factory=LogSection)
    library: LibrarySection = field(default_factory=LibrarySection)


def load_config(path: Path) -> MirrorConfig:
    """Read and check the TOML file at `path`; raises ConfigError."""
    return build(MirrorConfig, read_toml(path, required=True), source=str(path))


def parse_config(raw: dict[str, Any]) -> MirrorConfig:
    """Build the configuration from parsed TOML; raises ConfigError."""
    return build(MirrorConfig, raw, source="config")
