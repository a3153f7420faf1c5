"""The serving side of a DHT node: answering requests and relaying (docs/dht.md).

Functions of the node rather than methods, to keep `rms.dht.node` readable. The node has
already rate-limited every request per source origin; a reply to an address no round trip
has proven is at most `amplification` times the request (anti-amplification, as QUIC does,
RFC 9000 section 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rms.dht.ops import Pending
from rms.dht.records import RecordError, parse_record
from rms.dht.relay import Forward
from rms.dht.rpc import ANSWERS, addresses_of, fit_contacts, new_contact
from rms.dht.store import StoreOutcome
from rms.dht.types import Contact, Output, SockAddr
from rms.wire import Accepted, Envelope
from rms.wire.messages import dht as msgs
from rms.wire.registry import MessageType

if TYPE_CHECKING:
    from rms.dht.node import DhtNode

__all__ = ["relay", "send_relayed", "serve"]

BOX_OVERHEAD = 40  # NaCl box: 24-byte nonce and 16-byte tag
RELAY_INNER = 1100  # msgs.RELAY's `inner` cap
RECORD_OVERHEAD = 8


def serve(
    node: DhtNode, env: Envelope, data: bytes, addr: SockAddr, now: float,
    *, back: tuple[SockAddr, bytes] | None,
) -> list[Output]:  # fmt: skip
    """Answer a request, directly or (with `back`) boxed through the relay that brought it."""
    budget = _budget(node, env, data, addr, back is not None)
    reply_type, body = _reply(node, env, addr, now, budget, relayed=back is not None)
    out = _learn(node, env, addr, now) if back is None else []
    if back is None:
        return out + node._send_raw(addr, reply_type, body, now)
    return _reply_relayed(node, env.sender, reply_type, body, back, now=now)


def _budget(node: DhtNode, env: Envelope, data: bytes, addr: SockAddr, relayed: bool) -> int:
    cfg = node.config
    proven = node.reach.is_proven(addr, env.sender)
    budget = cfg.max_datagram if proven else cfg.amplification * len(data)
    if relayed:
        budget = min(budget, RELAY_INNER - BOX_OVERHEAD)
    return min(budget, cfg.max_datagram)


def _reply(
    node: DhtNode, env: Envelope, addr: SockAddr, now: float, budget: int, *, relayed: bool
) -> tuple[MessageType, dict[str, object]]:
    body, rid, kind = env.body, env.body["rid"], env.msg_type
    if kind == msgs.PING:
        return msgs.PONG, {"rid": rid}
    if kind == msgs.STORE:
        # A store counts against the network we heard it from. A relayed one comes from a
        # node we cannot place (its key is free to make), so it counts against the relay
        # that brought it, apart from that relay's own records (docs/dht.md, "Origins").
        origin = node.origins.of(addr[0])
        source = "relay:" + origin if relayed else origin
        return msgs.STORED, {"rid": rid, "ok": _store(node, body["record"], source, now)}
    target = body["target"] if kind == msgs.FIND_NODE else body["key"]
    closest = [c for c in node.table.closest(target, node.config.k) if c.key != env.sender]  # type: ignore[arg-type]
    if kind == msgs.FIND_VALUE:
        held = [r for r in node.store.get(target, now) if not r.multi]  # type: ignore[arg-type]
        if held and len(held[0].raw) + 200 <= budget:
            return msgs.VALUE, {"rid": rid, "contacts": [], "record": held[0].raw}
        return msgs.VALUE, {"rid": rid, "contacts": fit_contacts(closest, budget)}
    if kind == msgs.FIND_PROVIDERS:
        return msgs.PROVIDERS, _providers(node, rid, target, closest, budget, now=now)  # type: ignore[arg-type]
    return msgs.NODES, {"rid": rid, "contacts": fit_contacts(closest, budget)}


def _providers(
    node: DhtNode, rid: object, key: bytes, closest: list[Contact], budget: int, *, now: float
) -> dict[str, object]:
    records: list[bytes] = []
    left = budget - 200
    for record in node.store.get(key, now)[: msgs.MAX_PROVIDERS]:
        if record.multi and len(record.raw) + RECORD_OVERHEAD <= left:
            records.append(record.raw)
            left -= len(record.raw) + RECORD_OVERHEAD
    return {"rid": rid, "records": records, "contacts": fit_contacts(closest, left + 200)}


def _store(node: DhtNode, raw: object, source: str, now: float) -> bool:
    if not isinstance(raw, bytes):
        return False
    try:
        record = parse_record(raw)  # signature and key binding: forged records stop here
    except RecordError:
        node.counters["bad_record"] += 1
        return False
    max_ttl = node.config.policy.dht_max_record_ttl_s
    outcome = node.store.put(record, source, now, max_ttl)
    return outcome in (StoreOutcome.STORED, StoreOutcome.SAME)


def _learn(node: DhtNode, env: Envelope, addr: SockAddr, now: float) -> list[Output]:
    # A requester becomes a contact only after our own round trip to it (a ping) proves
    # that it listens at the address it sent from; we only bother if its bucket has room.
    addresses = addresses_of(env.body.get("from"))
    if env.sender == node.key or not any(a.sock == addr for a in addresses):
        return []
    # Keep its other addresses too: they tell us which VPNs it can relay into.
    ordered = sorted(addresses, key=lambda a: a.sock != addr)
    contact = new_contact(env.sender, tuple(ordered))
    if node.reach.direct_addr(contact) is None or node.table.get(contact.node_id) is not None:
        return []
    if node.table.has_room(contact.node_id) and not node._pinging(contact):
        return node._ping(contact, now)
    return []


def _reply_relayed(
    node: DhtNode, origin: bytes, reply_type: MessageType, body: dict[str, object],
    back: tuple[SockAddr, bytes], *, now: float,
) -> list[Output]:  # fmt: skip
    back_addr, back_rid = back
    data = node._encode(reply_type, body, now)
    boxed = None if data is None else node.boxes.seal(origin, data)
    if boxed is None or len(boxed) > RELAY_INNER:
        node.counters["too_large"] += 1
        return []
    return node._send_raw(back_addr, msgs.RELAYED, {"rid": back_rid, "inner": boxed}, now)


def relay(node: DhtNode, env: Envelope, data: bytes, addr: SockAddr, now: float) -> list[Output]:
    """Handle a `dht.relay`: forward it one hop, or serve it if we are its target."""
    body = env.body
    origin, path, inner, rid = body["origin"], body["path"], body["inner"], body["rid"]
    # The schema checked these types; the isinstance checks tell mypy.
    if not isinstance(path, tuple) or not isinstance(inner, bytes):
        return []
    if not isinstance(origin, bytes) or not isinstance(rid, bytes):
        return []
    if not path:
        return _serve_boxed(node, origin, inner, addr, rid, now=now)
    if not node.reach.is_proven(addr, env.sender) or not node.forwards.admit(origin, now):
        node.counters["relay_refused"] += 1  # unproven origins could reflect traffic
        return []
    hop = path[0]
    key, address = hop["k"], hop["a"]
    if address["v"] not in node.config.vpns:
        node.counters["relay_refused"] += 1
        return []
    next_addr = (address["h"], address["p"])
    new_rid = node.rng.randbytes(msgs.RID_SIZE)
    deadline = now + node.config.request_timeout_s * (1 + len(path))
    node.forwards.remember(new_rid, Forward(addr, rid, key, next_addr, deadline))
    fwd: dict[str, object] = {
        "rid": new_rid, "from": node._from, "origin": origin, "path": path[1:], "inner": inner,
    }  # fmt: skip
    return node._send_raw(next_addr, msgs.RELAY, fwd, now)


def _serve_boxed(
    node: DhtNode, origin: bytes, inner: bytes, addr: SockAddr, rid: bytes, *, now: float
) -> list[Output]:
    plain = node.boxes.open(origin, inner)
    result = None if plain is None else node.decoder.decode(plain, now)
    if not isinstance(result, Accepted) or result.envelope.sender != origin:
        node.counters["bad_relayed"] += 1
        return []
    env = result.envelope
    if env.msg_type not in ANSWERS:
        node.counters["bad_relayed"] += 1
        return []
    return serve(node, env, plain, addr, now, back=(addr, rid))  # type: ignore[arg-type]


def send_relayed(
    node: DhtNode, contact: Contact, rid: bytes, data: bytes, *, expects: MessageType,
    deadline: float, op_id: int | None, path: int, now: float,
) -> list[Output]:  # fmt: skip
    """Send our signed request `data` to `contact` through its route of relays."""
    first = contact.route[0]
    first_addr = node.reach.direct_addr(first)
    boxed = node.boxes.seal(contact.key, data)
    hops = [*contact.route[1:], contact]
    chain = [first, *hops]
    wire_hops = []
    for prev, hop in zip(chain, hops, strict=False):
        shared = {a.vpn for a in prev.addresses}
        address = next((a for a in hop.addresses if a.vpn in shared), None)
        if address is None:
            return []
        wire_hops.append({"k": hop.key, "a": address.wire()})
    if first_addr is None or boxed is None or len(boxed) > RELAY_INNER:
        return []
    body: dict[str, object] = {
        "rid": rid, "from": node._from, "origin": node.key, "path": wire_hops, "inner": boxed,
    }  # fmt: skip
    node.pending[rid] = Pending(
        expects, contact, first_addr, first.key, deadline, op_id, path, True, sent=now
    )
    return node._send_raw(first_addr, msgs.RELAY, body, now)
