"""Reading the feed: the happy path, rollback, malformed and hostile feeds, forged items."""

from __future__ import annotations

import base64

import pytest

from rms.discovery import (
    FeedReason,
    FeedRejected,
    ItemReason,
    ParsedFeed,
    RecordReason,
    parse_feed,
)
from tests.discovery_support import (
    MEMBERS,
    NOW,
    OUTSIDER,
    SIGNER,
    altered,
    charter,
    record,
    resealed,
)
from vpn_discovery.server import render_feed

LINK = "https://discovery.test/feed.rss"


def item(description: str) -> str:
    return f"<item><title>VPN</title><description>{description}</description></item>"


def rss(*items: str) -> bytes:
    return f'<rss version="2.0"><channel><title>t</title>{"".join(items)}</channel></rss>'.encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parsed(data: bytes) -> ParsedFeed:
    result = parse_feed(data, NOW)
    assert isinstance(result, ParsedFeed), result
    return result


def refused(data: bytes, max_bytes: int = 1024 * 1024) -> FeedReason:
    result = parse_feed(data, NOW, max_bytes=max_bytes)
    assert isinstance(result, FeedRejected), result
    assert len(result.detail) <= 120
    return result.reason


def test_a_rendered_feed_gives_back_its_records() -> None:
    one, other = record(), record(vpn=charter(salt=bytes(16)))
    document = render_feed([one, other], link=LINK, now=NOW)
    result = parsed(document)
    assert result.records == {one.vpn_id: one, other.vpn_id: other}
    assert result.rejected == ()
    text = document.decode()
    assert f"<title>VPN {one.vpn_id}</title>" in text
    assert f'<guid isPermaLink="false">{one.vpn_id}:1</guid>' in text
    assert "<category>soliciting</category>" in text
    assert '<category domain="truecloud:members">3/8</category>' in text
    assert '<category domain="truecloud:guest-endpoint">[2001:db8::5]:51900</category>' in text


def test_an_empty_feed_is_a_feed() -> None:
    assert parsed(render_feed([], link=LINK, now=NOW)) == ParsedFeed({}, ())


def test_the_highest_seq_wins_in_any_order() -> None:
    old, new = record(seq=1), record(seq=2)
    for items in ([old, new], [new, old]):
        result = parsed(rss(*(item(b64(r.raw)) for r in items)))
        assert result.records == {new.vpn_id: new}


def test_pretty_printed_base64_is_read() -> None:
    text = b64(record().raw)
    wrapped = "\n      ".join(text[i : i + 64] for i in range(0, len(text), 64))
    assert len(parsed(rss(item(f"\n  {wrapped}\n"))).records) == 1


def test_forged_and_altered_items_are_dropped_and_the_genuine_kept() -> None:
    genuine = record()
    forged = resealed(record(seq=9), SIGNER, OUTSIDER.public_key, OUTSIDER)
    changed = altered(record(seq=8), MEMBERS, 0)
    result = parsed(rss(item(b64(forged)), item(b64(genuine.raw)), item(b64(changed))))
    assert result.records == {genuine.vpn_id: genuine}
    reasons = {(r.index, r.reason) for r in result.rejected}
    assert reasons == {(0, RecordReason.NOT_GUARDIAN), (2, RecordReason.BAD_SIGNATURE)}


def test_items_without_a_record_or_with_bad_base64_are_counted() -> None:
    result = parsed(
        rss(
            "<item><title>no description</title></item>",
            item(""),
            item("not base64!"),
            item("QUJD" * 1000),
            item(b64(b"short")),
        )
    )
    assert result.records == {}
    assert [r.reason for r in result.rejected] == [
        ItemReason.NO_RECORD,
        ItemReason.NO_RECORD,
        ItemReason.BAD_BASE64,
        ItemReason.BAD_BASE64,
        RecordReason.MALFORMED,
    ]


def test_items_past_the_cap_are_counted_once() -> None:
    raw = b64(record().raw)
    result = parse_feed(rss(*[item(raw)] * 5), NOW, max_items=3)
    assert isinstance(result, ParsedFeed)
    assert len(result.records) == 1
    assert [(r.index, r.reason) for r in result.rejected] == [(3, ItemReason.TOO_MANY)]
    assert "2 items" in result.rejected[0].detail


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"", FeedReason.NOT_XML),
        (b"not xml at all", FeedReason.NOT_XML),
        (b"<rss><channel>", FeedReason.NOT_XML),
        (b"\xff\xfe<\x00r\x00", FeedReason.NOT_XML),
        (b'<?xml version="1.0" encoding="x-unknown"?><rss/>', FeedReason.NOT_XML),
        (b"<html><body/></html>", FeedReason.NOT_RSS),
        (b'<feed xmlns="http://www.w3.org/2005/Atom"/>', FeedReason.NOT_RSS),
        (b"<rss/>", FeedReason.NOT_RSS),
        (b'<rss xmlns="urn:x"><channel/></rss>', FeedReason.NOT_RSS),
    ],
)
def test_malformed_feeds_are_refused(document: bytes, expected: FeedReason) -> None:
    assert refused(document) is expected


def test_an_oversized_feed_is_refused_before_parsing() -> None:
    assert refused(b"<rss>" + b" " * (1024 * 1024)) is FeedReason.OVERSIZED
    assert refused(rss(), max_bytes=10) is FeedReason.OVERSIZED


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<rss><channel><item><description>&lol3;</description></item></channel></rss>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss><channel><item><description>&xxe;</description></item></channel></rss>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<rss><channel/></rss>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE rss SYSTEM "http://127.0.0.1:9/rss.dtd">
<rss><channel/></rss>"""

PLAIN_DOCTYPE = b"""<!DOCTYPE rss><rss version="2.0"><channel/></rss>"""


@pytest.mark.parametrize(
    "document", [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, EXTERNAL_DTD, PLAIN_DOCTYPE]
)
def test_hostile_xml_is_refused_without_expanding_or_fetching(document: bytes) -> None:
    assert refused(document) is FeedReason.FORBIDDEN_XML


def test_an_xinclude_is_inert() -> None:
    document = (
        b'<rss xmlns:xi="http://www.w3.org/2001/XInclude"><channel><item><description>'
        b'<xi:include href="/etc/passwd" parse="text"/></description></item></channel></rss>'
    )
    result = parsed(document)
    assert [r.reason for r in result.rejected] == [ItemReason.NO_RECORD]


def test_deep_nesting_is_just_an_odd_feed() -> None:
    document = b"<rss><channel>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</channel></rss>"
    assert parsed(document) == ParsedFeed({}, ())
