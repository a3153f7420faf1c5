"""Message types and the registry a decoder accepts.

A message type is a dotted name (`family.kind`, e.g. `node.ping`) and the schema of its
body. Each message family lives in its own module under `rms.wire.messages` and exports its
types; `default_registry()` gathers every family. A registry is immutable: build a new one
with `extended()` rather than registering into a global at import time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rms.wire.schema import MAX_DEPTH, Map

__all__ = ["MAX_TYPE_NAME", "MessageType", "Registry"]

MAX_TYPE_NAME = 64
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


@dataclass(frozen=True, slots=True)
class MessageType:
    """A named message kind and the schema of its body."""

    name: str
    body: Map

    def __post_init__(self) -> None:
        if len(self.name) > MAX_TYPE_NAME or not _TYPE_NAME.fullmatch(self.name):
            raise ValueError(
                f"message type name {self.name!r} must be dotted lowercase "
                f"(`family.kind`), at most {MAX_TYPE_NAME} characters"
            )
        # +1: the envelope array encloses the body.
        if self.body.depth() + 1 > MAX_DEPTH:
            raise ValueError(f"{self.name}: body schema nests deeper than {MAX_DEPTH}")

    def __hash__(self) -> int:
        # Schemas hold dicts; a type is known by its name within a registry anyway.
        return hash(self.name)


class Registry:
    """An immutable set of message types, looked up by name."""

    __slots__ = ("_types",)

    def __init__(self, types: Iterable[MessageType] = ()) -> None:
        found: dict[str, MessageType] = {}
        for msg_type in types:
            if msg_type.name in found:
                raise ValueError(f"message type {msg_type.name!r} is registered twice")
            found[msg_type.name] = msg_type
        self._types = found

    def get(self, name: str) -> MessageType | None:
        """The type called `name`, or None."""
        return self._types.get(name)

    def extended(self, types: Iterable[MessageType]) -> Registry:
        """A new registry with these types added."""
        return Registry([*self._types.values(), *types])

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[MessageType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        return f"Registry({sorted(self._types)})"
