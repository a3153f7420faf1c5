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

    [discovery]
    urls = []            # https://…/feed.rss of the discovery mirrors
    ca_file = ""         # PEM bundle to trust; empty: the system store

Any key can be overridden by the environment variable ``RMS_<SECTION>_<KEY>`` in upper case,
for example ``RMS_NODE_STATE_DIR`` or ``RMS_LOG_LEVEL``; lists are comma-separated there.
The environment wins over the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path("/etc/rms/rms.toml")
MAX_CONFIG_BYTES = 256 * 1024
MAX_VALUE_CHARS = 4096
MAX_LIST_ITEMS = 64
LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
WG_BACKENDS = ("auto", "kernel", "userspace")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _EnvValue(str):
    """A value that came from the environment, where lists are comma-separated text."""

    __slots__ = ()


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
class LogSection:
    """How the daemon logs."""

    format: str = "auto"
    level: str = "info"

    def __post_init__(self) -> None:
        if self.format not in LOG_FORMATS:
            raise ConfigError(f"log.format must be one of {', '.join(LOG_FORMATS)}")
        if self.level not in LOG_LEVELS:
            raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}")


@dataclass(frozen=True)
class VpnSection:
    """Membership of management VPNs (docs/management-vpns.md)."""

    enabled: bool = True
    backend: str = "auto"  # WireGuard backend: auto | kernel | userspace
    location: str = ""  # geographic location: a UUID, or a name hashed to one
    network: str = ""  # network endpoint: a UUID, or a name; empty = from the public address
    public_ips: tuple[str, ...] = ()  # where peers reach this node; empty = detected

    def __post_init__(self) -> None:
        if self.backend not in WG_BACKENDS:
            raise ConfigError(f"vpn.backend must be one of {', '.join(WG_BACKENDS)}")


@dataclass(frozen=True)
class DiscoverySection:
    """Where the discovery feed is and whom to trust for its HTTPS."""

    urls: tuple[str, ...] = ()  # the cloud's feed name(s); none: the node cannot join
    ca_file: str = ""  # empty: the system's trust store

    def __post_init__(self) -> None:
        for url in self.urls:
            if not url.startswith("https://"):
                raise ConfigError(f"discovery.urls: {url!r} is not an https:// URL")


@dataclass(frozen=True)
class Config:
    """The whole configuration; later issues add sections here."""

    node: NodeSection = field(default_factory=NodeSection)
    control: ControlSection = field(default_factory=ControlSection)
    log: LogSection = field(default_factory=LogSection)
    vpn: VpnSection = field(default_factory=VpnSection)
    discovery: DiscoverySection = field(default_factory=DiscoverySection)


_SECTIONS: dict[str, type[Any]] = {
    "node": NodeSection,
    "control": ControlSection,
    "log": LogSection,
    "vpn": VpnSection,
    "discovery": DiscoverySection,
}


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    default_path: Path = DEFAULT_CONFIG_PATH,
) -> Config:
    """Read the file (if any), apply environment overrides, and validate every value."""
    env = os.environ if environ is None else environ
    explicit = path is not None or "RMS_CONFIG" in env
    chosen = path or Path(env.get("RMS_CONFIG", str(default_path)))
    raw = _read_toml(chosen, required=explicit)
    merged = _apply_env(raw, env)
    return _build(merged, source=str(chosen) if chosen.exists() else "defaults")


def _read_toml(path: Path, *, required: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for section in dataclasses.fields(Config):
        for key in _section_type(section.name).__dataclass_fields__:
            name = f"RMS_{section.name}_{key}".upper()
            if name in env:
                target = merged.setdefault(section.name, {})
                if isinstance(target, dict):
                    target[key] = _EnvValue(env[name])
    return merged


def _section_type(name: str) -> type[Any]:
    return _SECTIONS[name]


def _build(merged: dict[str, Any], source: str) -> Config:
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}")
    sections: dict[str, Any] = {}
    for name in known:
        value = merged.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _build_section(name, value, source)
    return Config(**sections)


def _build_section(name: str, values: dict[str, Any], source: str) -> Any:
    cls = _section_type(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [{name}]: {', '.join(unknown)}")
    kwargs = {k: _coerce(f"{name}.{k}", fields[k].default, v) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _coerce(where: str, default: object, value: object) -> object:
    """Convert a TOML or environment value to the type of the field's default."""
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise ConfigError(f"{where} is longer than {MAX_VALUE_CHARS} characters")
    # bool before int: True is an int to Python, but not to a person writing a config.
    for kind, convert in _CONVERTERS:
        if isinstance(default, kind):
            return convert(where, value)
    raise ConfigError(f"{where} has an unsupported type")


def _to_bool(where: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    raise ConfigError(f"{where} must be true or false")


def _to_int(where: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ConfigError(f"{where} must be a whole number")


def _to_float(where: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{where} must be a number")


def _to_strings(where: str, value: object) -> tuple[str, ...]:
    # The environment cannot carry a TOML array: there a list is comma-separated.
    items = value.split(",") if isinstance(value, _EnvValue) else value
    if not isinstance(items, list | tuple) or len(items) > MAX_LIST_ITEMS:
        raise ConfigError(f"{where} must be a list of at most {MAX_LIST_ITEMS} strings")
    out = tuple(_to_str(where, item).strip() for item in items)
    return tuple(item for item in out if item)


def _to_path(where: str, value: object) -> Path:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{where} must be a non-empty path")
    return Path(value)


def _to_str(where: str, value: object) -> str:
    if not isinstance(value, str) or "\0" in value or len(value) > MAX_VALUE_CHARS:
        raise ConfigError(f"{where} must be a string")
    return value


_TRUTH = {"true": True, "yes": True, "on": True, "1": True}
_TRUTH |= {"false": False, "no": False, "off": False, "0": False}
_CONVERTERS: tuple[tuple[type, Callable[[str, object], object]], ...] = (
    (bool, _to_bool),
    (int, _to_int),
    (float, _to_float),
    (tuple, _to_strings),
    (Path, _to_path),
    (str, _to_str),
)
