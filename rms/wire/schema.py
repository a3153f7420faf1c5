"""Declarative body schemas: what a message body may hold, checked on encode and decode.

A body is a msgpack map of named fields. Each field has a type (`Int` with a range, `Bytes`
and `Str` with a maximum length, `Bool`, `List` of one item type with a maximum count, or a
nested `Map`) and is required or optional. Encoding is strict: a field the schema does not
name is a local error. Decoding ignores unknown fields (dropped from the decoded body, but
still under the size and depth caps) so that a later release can add an optional field
without cutting off the nodes that have not upgraded yet (docs/wire.md, "Body schemas").

Checks raise `SchemaViolation`, which the encoder turns into `EncodeError` and the decoder
into a `BAD_BODY` rejection; neither lets it escape to the caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "MAX_DEPTH",
    "Bool",
    "Bytes",
    "Field",
    "Int",
    "List",
    "Map",
    "SchemaViolation",
    "Str",
    "within_depth",
]

# Containers allowed inside one envelope, the envelope array itself included: deep enough
# for any schema we write, shallow enough that no walk over peer data can run away.
MAX_DEPTH = 16
MSGPACK_INT_MIN = -(2**63)
MSGPACK_INT_MAX = 2**64 - 1


class SchemaViolation(Exception):
    """A value does not fit its schema; `where` is the path to it inside the body."""

    def __init__(self, problem: str, where: tuple[str, ...] = ()) -> None:
        super().__init__(problem)
        self.problem = problem
        self.where = where

    def inside(self, part: str) -> SchemaViolation:
        """The same violation, one container further out."""
        return SchemaViolation(self.problem, (part, *self.where))

    def __str__(self) -> str:
        path = "".join(p if p.startswith("[") else f".{p}" for p in self.where)
        return f"body{path}: {self.problem}"


class Field(ABC):
    """One field type of a schema."""

    __slots__ = ()

    @abstractmethod
    def conform(self, value: object, depth: int, strict: bool) -> object:
        """`value` as the schema keeps it; raises SchemaViolation if it does not fit."""

    def depth(self) -> int:
        """How many containers deep this type nests (0 for a scalar)."""
        return 0


@dataclass(frozen=True, slots=True)
class Int(Field):
    """An integer in [min, max] (never a bool)."""

    min: int = MSGPACK_INT_MIN
    max: int = MSGPACK_INT_MAX

    def __post_init__(self) -> None:
        if not MSGPACK_INT_MIN <= self.min <= self.max <= MSGPACK_INT_MAX:
            raise ValueError(f"Int range [{self.min}, {self.max}] is empty or not msgpack's")

    def conform(self, value: object, depth: int, strict: bool) -> object:
        """`value` if it is an int in range."""
        if type(value) is not int:
            raise SchemaViolation(f"expected an integer, got {type(value).__name__}")
        if not self.min <= value <= self.max:
            raise SchemaViolation(f"integer out of range [{self.min}, {self.max}]")
        return value


@dataclass(frozen=True, slots=True)
class Bytes(Field):
    """A byte string of min_len..max_len bytes."""

    max_len: int
    min_len: int = 0

    def __post_init__(self) -> None:
        _check_bounds("Bytes", self.min_len, self.max_len)

    def conform(self, value: object, depth: int, strict: bool) -> object:
        """`value` if it is bytes of an allowed length."""
        if type(value) is not bytes:
            raise SchemaViolation(f"expected bytes, got {type(value).__name__}")
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaViolation(f"{len(value)} bytes, allowed {self.min_len}..{self.max_len}")
        return value


@dataclass(frozen=True, slots=True)
class Str(Field):
    """A text string of min_len..max_len characters."""

    max_len: int
    min_len: int = 0

    def __post_init__(self) -> None:
        _check_bounds("Str", self.min_len, self.max_len)

    def conform(self, value: object, depth: int, strict: bool) -> object:
        """`value` if it is a str of an allowed length."""
        if type(value) is not str:
            raise SchemaViolation(f"expected a string, got {type(value).__name__}")
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaViolation(
                f"{len(value)} characters, allowed {self.min_len}..{self.max_len}"
            )
        return value


@dataclass(frozen=True, slots=True)
class Bool(Field):
    """True or False."""

    def conform(self, value: object, depth: int, strict: bool) -> object:
        """`value` if it is a bool."""
        if type(value) is not bool:
            raise SchemaViolation(f"expected a bool, got {type(value).__name__}")
        return value


@dataclass(frozen=True, slots=True)
class List(Field):
    """Up to max_items values of one type; decoded as a tuple."""

    item: Field
    max_items: int

    def __post_init__(self) -> None:
        _check_bounds("List", 0, self.max_items)

    def depth(self) -> int:
        """One more than the item type."""
        return 1 + self.item.depth()

    def conform(self, value: object, depth: int, strict: bool) -> object:
        """`value` as a tuple of conforming items."""
        if not isinstance(value, list | tuple):
            raise SchemaViolation(f"expected a list, got {type(value).__name__}")
        if len(value) > self.max_items:
            raise SchemaViolation(f"{len(value)} items, allowed {self.max_items}")
        out = []
        for index, item in enumerate(value):
            try:
                out.append(self.item.conform(item, depth + 1, strict))
            except SchemaViolation as exc:
                raise exc.inside(f"[{index}]") from None
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Map(Field):
    """A map with named fields: `required` ones must be present, `optional` ones may be."""

    required: Mapping[str, Field]
    optional: Mapping[str, Field] = field(default_factory=dict)
    _all: Mapping[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        both = set(self.required) & set(self.optional)
        if both:
            raise ValueError(f"fields both required and optional: {sorted(both)}")
        object.__setattr__(self, "_all", {**self.required, **self.optional})

    def depth(self) -> int:
        """One more than the deepest field."""
        return 1 + max((f.depth() for f in self._all.values()), default=0)

    def conform(self, value: object, depth: int, strict: bool) -> object:
        """A dict of the conforming known fields of `value`."""
        return self.conform_map(value, depth, strict)

    def conform_map(self, value: object, depth: int, strict: bool) -> dict[str, object]:
        """A dict of the conforming known fields of `value` (typed for callers)."""
        if not isinstance(value, dict):
            raise SchemaViolation(f"expected a map, got {type(value).__name__}")
        out: dict[str, object] = {}
        for key, item in value.items():
            spec = self._all.get(key) if type(key) is str else None
            if spec is None:
                self._skip_unknown(key, item, depth, strict)
                continue
            try:
                out[key] = spec.conform(item, depth + 1, strict)
            except SchemaViolation as exc:
                raise exc.inside(key) from None
        for name in self.required:
            if name not in out:
                raise SchemaViolation(f"missing field {name!r}")
        return out

    @staticmethod
    def _skip_unknown(key: object, item: object, depth: int, strict: bool) -> None:
        if strict or type(key) is not str:
            raise SchemaViolation(f"unknown field {str(key)[:32]!r}")
        if not within_depth(item, MAX_DEPTH - depth):
            raise SchemaViolation(f"field {key[:32]!r} nests deeper than {MAX_DEPTH}")


def within_depth(value: object, budget: int) -> bool:
    """Whether `value` nests at most `budget` containers deep (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, budget)]
    while stack:
        item, left = stack.pop()
        if isinstance(item, dict):
            children: list[object] = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if left <= 0:
            return False
        stack.extend((child, left - 1) for child in children)
    return True


def _check_bounds(kind: str, low: int, high: int) -> None:
    if not 0 <= low <= high:
        raise ValueError(f"{kind} bounds {low}..{high} are not 0 <= min <= max")
