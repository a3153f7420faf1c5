"""Reading the discovery feed: RSS 2.0 whose items each carry one signed VPN record.

Only the record inside an item's <description> (standard base64 of the signed bytes) is
trusted; titles, guids and categories are for people and ignored here. The XML is parsed
with defusedxml with DTDs, entity declarations and external references forbidden, so a
hostile feed cannot expand entities or make us read anything. Every failure is a value:
`FeedRejected` for the whole feed, `RejectedItem` for one item; nothing raises on feed
input. Sans-IO: the caller passes the bytes and the wall-clock time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from rms.discovery.fields import RecordReason
from rms.discovery.record import (
    DEFAULT_MAX_SKEW_S,
    MAX_RECORD_BYTES,
    Rejected,
    VpnRecord,
    latest,
    verify_record,
)

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

MAX_FEED_BYTES = 1024 * 1024
MAX_FEED_ITEMS = 256
# Base64 of the largest record, plus room for the whitespace a pretty-printer adds.
MAX_ITEM_TEXT = (MAX_RECORD_BYTES + 2) // 3 * 4 + 64
MAX_DETAIL = 120


class FeedReason(enum.Enum):
    """Why a whole feed was refused."""

    OVERSIZED = "oversized"
    NOT_XML = "not_xml"
    FORBIDDEN_XML = "forbidden_xml"  # a DTD, an entity declaration, an external reference
    NOT_RSS = "not_rss"


class ItemReason(enum.Enum):
    """Why one item was dropped before its record was checked."""

    NO_RECORD = "no_record"
    BAD_BASE64 = "bad_base64"
    TOO_MANY = "too_many"


@dataclass(frozen=True, slots=True)
class FeedRejected:
    """A feed that could not be read at all."""

    reason: FeedReason
    detail: str


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """One dropped item: its position in the feed, and why."""

    index: int
    reason: ItemReason | RecordReason
    detail: str


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """The verified records of a feed (the winner per VPN) and the items dropped."""

    records: dict[uuid.UUID, VpnRecord]
    rejected: tuple[RejectedItem, ...]


def parse_feed(
    data: bytes,
    now: float,
    *,
    max_bytes: int = MAX_FEED_BYTES,
    max_items: int = MAX_FEED_ITEMS,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> ParsedFeed | FeedRejected:
    """Verify every record in a feed received at wall-clock `now` (s); never raises on input."""
    if len(data) > max_bytes:
        return FeedRejected(FeedReason.OVERSIZED, f"{len(data)} bytes, the cap is {max_bytes}")
    root = _parse_xml(bytes(data))
    if isinstance(root, FeedRejected):
        return root
    channel = root.find("channel") if root.tag == "rss" else None
    if channel is None:
        return FeedRejected(FeedReason.NOT_RSS, f"root <{_short(root.tag)}> is no RSS channel")
    items = channel.findall("item")
    records: list[VpnRecord] = []
    rejected: list[RejectedItem] = []
    for index, item in enumerate(items[:max_items]):
        outcome = _item(index, item, now, max_skew_s)
        if isinstance(outcome, RejectedItem):
            rejected.append(outcome)
        else:
            records.append(outcome)
    if len(items) > max_items:
        extra = len(items) - max_items
        rejected.append(RejectedItem(max_items, ItemReason.TOO_MANY, f"{extra} items past the cap"))
    return ParsedFeed(latest(records), tuple(rejected))


def _parse_xml(data: bytes) -> Element | FeedRejected:
    try:
        root: Element = fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        return FeedRejected(FeedReason.FORBIDDEN_XML, f"refused: {type(exc).__name__}")
    except ParseError as exc:
        return FeedRejected(FeedReason.NOT_XML, f"not XML: {_short(str(exc))}")
    except (ValueError, LookupError, RecursionError) as exc:  # e.g. an unknown encoding
        return FeedRejected(FeedReason.NOT_XML, f"not XML: {type(exc).__name__}")
    return root


def _item(index: int, item: Element, now: float, max_skew_s: float) -> VpnRecord | RejectedItem:
    text = item.findtext("description")
    if not text or not text.strip():
        return RejectedItem(index, ItemReason.NO_RECORD, "the item has no <description>")
    if len(text) > MAX_ITEM_TEXT:
        return RejectedItem(index, ItemReason.BAD_BASE64, f"{len(text)} characters, too long")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return RejectedItem(index, ItemReason.BAD_BASE64, "the description is not base64")
    result = verify_record(raw, now, max_skew_s=max_skew_s)
    if isinstance(result, Rejected):
        return RejectedItem(index, result.reason, result.detail)
    return result


def _short(text: str) -> str:
    return text[:MAX_DETAIL].replace("\n", " ")
