"""Message families, one module each; `default_registry()` knows all of them.

To add a family (e.g. `dht.*`): write `rms/wire/messages/dht.py` exporting `TYPES`, then add
it to `FAMILIES` below (docs/wire.md, "Adding a message family").
"""

from __future__ import annotations

from rms.wire.messages import admission, dht, gossip, node, roster, volumes
from rms.wire.registry import MessageType, Registry

__all__ = ["FAMILIES", "default_registry"]

FAMILIES: tuple[tuple[MessageType, ...], ...] = (
    node.TYPES,
    admission.TYPES,
    roster.TYPES,
    gossip.TYPES,
    dht.TYPES,
    volumes.TYPES,
)


def default_registry() -> Registry:
    """A registry of every message family this release speaks."""
    return Registry(t for family in FAMILIES for t in family)
