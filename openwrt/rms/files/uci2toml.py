#!/usr/bin/env python3
"""Turn the UCI file /etc/config/rms into the TOML file `rms run --config` reads.

Installed on OpenWRT as /usr/libexec/rms/uci2toml and run by /etc/init.d/rms at each start:

    uci2toml /etc/config/rms /var/etc/rms/rms.toml

UCI (OpenWRT's config syntax) has `config TYPE ['NAME']` sections holding `option NAME
'VALUE'` and `list NAME 'VALUE'` lines; values are words or shell-quoted strings. Each
section whose TYPE is a section of the daemon's configuration (rms.config.Config) becomes
that TOML table; `service` (the init script's own settings) is skipped. A value is typed by
the daemon's field: booleans take 1/0, yes/no, on/off, true/false; a list field takes `list`
lines (or one `option`). An empty option keeps the daemon's default.

The result is checked by the daemon's own loader before it is written (atomically), so a
bad value fails here, with the file, the line or key, and the reason, and exit status 1;
misuse exits 2. The file is local input: oversized, non-UTF-8, unterminated quotes, unknown
sections or options, repeated sections, and values that try to smuggle TOML are refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rms.config import Config
from rms.tomlconfig import MAX_CONFIG_BYTES, MAX_LIST_ITEMS, ConfigError, build

SKIPPED_TYPES = frozenset({"service"})  # read by the init script, not by the daemon
MAX_LINE_CHARS = 4096
TRUTH = {"1": True, "yes": True, "on": True, "true": True, "enabled": True}
TRUTH |= {"0": False, "no": False, "off": False, "false": False, "disabled": False}


class UciError(Exception):
    """The UCI file cannot be turned into a configuration; the message says where and why."""


@dataclass
class Section:
    """One `config TYPE NAME` block: single options and lists, as written."""

    type: str
    name: str
    line: int
    options: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)


def parse_uci(text: str, source: str = "uci") -> list[Section]:
    """The sections of a UCI file; UciError naming the line when it is malformed."""
    if len(text) > MAX_CONFIG_BYTES:
        raise UciError(f"{source} is larger than {MAX_CONFIG_BYTES} bytes")
    sections: list[Section] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        words = _words(line, where)
        if not words or words[0] == "package":
            continue
        keyword, args = words[0], words[1:]
        if keyword == "config" and len(args) in (1, 2):
            name = args[1] if len(args) == 2 else f"@{args[0]}[{len(sections)}]"
            sections.append(Section(_ident(args[0], where), name, number))
        elif keyword in ("option", "list") and len(args) == 2 and sections:
            _add(sections[-1], keyword, _ident(args[0], where), _value(args[1], where), where)
        else:
            raise UciError(f"{where}: expected `config TYPE [NAME]`, `option K V` or `list K V`")
    return sections


def _words(line: str, where: str) -> list[str]:
    if len(line) > MAX_LINE_CHARS:
        raise UciError(f"{where}: line longer than {MAX_LINE_CHARS} characters")
    try:
        return shlex.split(line, comments=True, posix=True)
    except ValueError as e:
        raise UciError(f"{where}: {e}") from None


def _ident(word: str, where: str) -> str:
    if not word.replace("_", "").isalnum() or not word.isascii():
        raise UciError(f"{where}: {word!r} is not a UCI name (letters, digits and _)")
    return word


def _value(word: str, where: str) -> str:
    if not word.isprintable():
        raise UciError(f"{where}: a value holds a control character")
    return word


def _add(section: Section, keyword: str, key: str, value: str, where: str) -> None:
    if keyword == "list":
        items = section.lists.setdefault(key, [])
        if len(items) >= MAX_LIST_ITEMS:
            raise UciError(f"{where}: more than {MAX_LIST_ITEMS} items in list {key}")
        items.append(value)
    elif key in section.options:
        raise UciError(f"{where}: option {key} is set twice in one section")
    else:
        section.options[key] = value


def to_config(sections: Sequence[Section], source: str = "uci") -> dict[str, dict[str, object]]:
    """The TOML tables for these sections, typed by the daemon's configuration."""
    defaults = Config()
    known = {f.name for f in dataclasses.fields(Config)}
    tables: dict[str, dict[str, object]] = {}
    for s in sections:
        if s.type in SKIPPED_TYPES:
            continue
        where = f"{source}:{s.line}"
        if s.type not in known:
            raise UciError(f"{where}: unknown section type {s.type!r} (known: {sorted(known)})")
        if s.type in tables:
            raise UciError(f"{where}: a second `config {s.type}` section")
        tables[s.type] = _table(s, getattr(defaults, s.type), where)
    return tables


def _table(s: Section, section_defaults: object, where: str) -> dict[str, object]:
    table: dict[str, object] = {}
    for key in [*s.options, *s.lists]:
        if not hasattr(section_defaults, key):
            raise UciError(f"{where}: unknown option {s.type}.{key}")
        default = getattr(section_defaults, key)
        value = _typed(default, s.options.get(key), s.lists.get(key), f"{s.type}.{key}")
        if value is not None:
            table[key] = value
    return table


def _typed(default: object, option: str | None, items: list[str] | None, key: str) -> object:
    if isinstance(default, tuple):
        return [*([option] if option else []), *(items or [])]
    if items is not None:
        raise UciError(f"{key} takes one value: use `option`, not `list`")
    if not option:
        return None
    if isinstance(default, bool):
        if option.lower() not in TRUTH:
            raise UciError(f"{key} must be 1 or 0 (or yes/no, on/off, true/false)")
        return TRUTH[option.lower()]
    if isinstance(default, int):
        if not option.lstrip("-").isdigit():
            raise UciError(f"{key} must be a whole number")
        return int(option)
    if isinstance(default, float):
        try:
            return float(option)
        except ValueError:
            raise UciError(f"{key} must be a number") from None
    return option


def dump_toml(tables: dict[str, dict[str, object]]) -> str:
    """TOML text for tables of strings, booleans, whole numbers and lists of strings."""
    lines = ["# Written by uci2toml from /etc/config/rms at service start: edit that file."]
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # a non-finite float is refused by the daemon's loader
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    # A JSON string of printable characters is a TOML basic string (same escapes).
    return json.dumps(str(value), ensure_ascii=False)


def convert(uci_file: Path, toml_file: Path) -> None:
    """Read uci_file, check the result with the daemon's loader, write toml_file atomically."""
    try:
        text = uci_file.read_bytes()[: MAX_CONFIG_BYTES + 1].decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UciError(f"cannot read {uci_file}: {e}") from None
    tables = to_config(parse_uci(text, str(uci_file)), str(uci_file))
    rendered = dump_toml(tables)
    try:
        build(Config, tomllib.loads(rendered), source=str(uci_file))
    except ConfigError as e:
        raise UciError(str(e)) from None
    _write_atomically(toml_file, rendered)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".uci2toml-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """`uci2toml UCI_FILE TOML_FILE`: 0 written, 1 refused (reason on stderr), 2 misuse."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: uci2toml UCI_FILE TOML_FILE", file=sys.stderr)
        return 2
    try:
        convert(Path(args[0]), Path(args[1]))
    except (UciError, ConfigError) as e:
        print(f"uci2toml: {e}; {args[1]} was left as it was", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
