"""Parsing `tgtadm --mode target --op show` output into `TargetState`s.

The format is tgt's (usr/target.c, `tgt_target_show_all`): a `Target N: IQN` line, then
indented sections. Parsing keys on section titles and `Key: value` pairs rather than on
exact indentation, and an unexpected shape raises `TargetError` naming the line: tgt's
output is local, so a surprise is our bug or a tgt version change, never a peer's input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from volume_provider.target.model import LunState, TargetError, TargetState

_TARGET = re.compile(r"^Target (\d+): (\S+)$")
_SIZE = re.compile(r"^(\d+) MB, Block size: (\d+)$")
_SECTIONS = {
    "System information:": "system",
    "I_T nexus information:": "nexus",
    "LUN information:": "lun",
    "Account information:": "account",
    "ACL information:": "acl",
}


@dataclass
class _Target:
    """A target while its lines are being read."""

    tid: int
    iqn: str
    section: str = ""
    luns: list[dict[str, str]] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    acl: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    def freeze(self) -> TargetState:
        luns = tuple(_lun(x) for x in self.luns)
        return TargetState(
            self.iqn, self.tid, luns, tuple(self.accounts), tuple(self.acl), tuple(self.sessions)
        )


def parse_show(text: str) -> list[TargetState]:
    """The targets of a `tgtadm --mode target --op show` output, in tid order."""
    targets: list[_Target] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if m := _TARGET.match(line):
            targets.append(_Target(int(m[1]), m[2]))
        elif not targets:
            raise TargetError(
                f"tgtadm output line {number}: expected 'Target N: IQN', got {line!r}"
            )
        else:
            _feed(targets[-1], line, number)
    return sorted((t.freeze() for t in targets), key=lambda t: t.tid)


def _feed(target: _Target, line: str, number: int) -> None:
    """Account for one line inside a target block."""
    if line in _SECTIONS:
        target.section = _SECTIONS[line]
    elif target.section == "lun":
        _feed_lun(target, line, number)
    elif target.section == "account":
        target.accounts.append(line)
    elif target.section == "acl":
        target.acl.append(line)
    elif target.section == "nexus" and line.startswith("IP Address:"):
        target.sessions.append(line.split(":", 1)[1].strip())


def _feed_lun(target: _Target, line: str, number: int) -> None:
    key, sep, value = line.partition(":")
    if not sep:
        raise TargetError(f"tgtadm output line {number}: expected 'Key: value', got {line!r}")
    if key == "LUN":
        target.luns.append({"LUN": value.strip()})
    elif not target.luns:
        raise TargetError(f"tgtadm output line {number}: LUN detail before any 'LUN: N'")
    else:
        target.luns[-1][key] = value.strip()


def _lun(fields: dict[str, str]) -> LunState:
    """A LUN from its `Key: value` fields; TargetError when a needed one is malformed."""
    size = _SIZE.match(fields.get("Size", ""))
    if not fields["LUN"].isdigit() or size is None:
        raise TargetError(f"tgtadm output: malformed LUN block {fields!r}")
    path = fields.get("Backing store path")
    backing = None if path in (None, "None") else path
    return LunState(int(fields["LUN"]), backing, int(size[1]), int(size[2]))
