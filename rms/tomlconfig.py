"""Configuration files of every True Cloud program: TOML sections checked key by key.

A program describes its configuration as a frozen dataclass of sections, each a frozen
dataclass whose field defaults give the types. `load` reads the file (size-capped, UTF-8
TOML), applies `PREFIX_SECTION_KEY` environment overrides when asked, refuses unknown
sections and keys, and converts every value to its field's type, so a bad file stops the
program with the file, the key and the reason, before anything starts.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import isfinite
from pathlib import Path
from typing import Any, TypeVar

MAX_CONFIG_BYTES = 256 * 1024
MAX_VALUE_CHARS = 4096
MAX_LIST_ITEMS = 64
LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


@dataclass(frozen=True)
class LogSection:
    """How a program logs: the `[log]` section every True Cloud program has."""

    format: str = "auto"  # auto (console on a terminal, JSON otherwise) | console | json
    level: str = "info"

    def __post_init__(self) -> None:
        require(self.format in LOG_FORMATS, f"log.format must be one of {', '.join(LOG_FORMATS)}")
        require(self.level in LOG_LEVELS, f"log.level must be one of {', '.join(LOG_LEVELS)}")


class _EnvValue(str):
    """A value that came from the environment, where lists are comma-separated text."""

    __slots__ = ()


def require(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok (for sections' own checks)."""
    if not ok:
        raise ConfigError(message)


def read_toml(path: Path, *, required: bool) -> dict[str, Any]:
    """The parsed file; {} when it is absent and not required."""
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


def build(
    root: type[T],
    raw: Mapping[str, Any],
    *,
    source: str,
    env_prefix: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """The configuration `root` from parsed TOML (and the environment, given a prefix)."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    if env_prefix is not None and environ is not None:
        _apply_env(root, merged, env_prefix, environ)
    sections = {f.name: _section_type(f) for f in dataclasses.fields(root)}  # type: ignore[arg-type]
    unknown = sorted(set(merged) - set(sections))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}")
    built: dict[str, Any] = {}
    for name, values in merged.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        try:
            built[name] = _section(name, sections[name], values)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return root(**built)


def _section_type(f: dataclasses.Field[Any]) -> type[Any]:
    factory: Any = f.default_factory
    return type(factory())


def _apply_env(
    root: type[Any], merged: dict[str, Any], prefix: str, environ: Mapping[str, str]
) -> None:
    for f in dataclasses.fields(root):
        for key in (k.name for k in dataclasses.fields(_section_type(f))):
            name = f"{prefix}_{f.name}_{key}".upper()
            if name in environ:
                target = merged.setdefault(f.name, {})
                if isinstance(target, dict):
                    target[key] = _EnvValue(environ[name])


def _section(name: str, cls: type[Any], values: dict[str, Any]) -> Any:
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(unknown)}")
    kwargs = {k: coerce(f"{name}.{k}", getattr(defaults, k), v) for k, v in values.items()}
    return cls(**kwargs)


def coerce(where: str, default: object, value: object) -> object:
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
    if isinstance(value, _EnvValue) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    raise ConfigError(f"{where} must be true or false")


def _to_int(where: str, value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, _EnvValue) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ConfigError(f"{where} must be a whole number")


def _to_float(where: str, value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, _EnvValue):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not isfinite(number):
        raise ConfigError(f"{where} must be a finite number")
    return number


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
