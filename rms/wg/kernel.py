"""The kernel backend: `ip link add NAME type wireguard` and WireGuard's generic netlink.

Links are made and removed through rtnetlink (rms.wg.links); keys, port and peers go through
pyroute2's AsyncWireGuard, one `set` per device change group and one per peer, which is how
the kernel's WG_CMD_SET_DEVICE takes them. The translation both ways (change list to `set`
arguments, `info` messages to InterfaceState) is pure and unit-tested against pyroute2's own
message codec; the kernel itself cannot be exercised on the project's machines (no module),
see docs/wireguard.md.
"""

from __future__ import annotations

import base64
import errno
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any

import structlog
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import AsyncWireGuard

from rms.wg.changes import (
    AddPeer,
    Change,
    RemovePeer,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
    WgChange,
    describe_all,
    link_changes,
    wg_changes,
)
from rms.wg.errors import InterfaceNotFound, WireGuardError, WireGuardUnavailable
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.links import WIREGUARD_KIND, Links, netlink_failure
from rms.wg.model import (
    Endpoint,
    InterfaceState,
    IPNetwork,
    PeerState,
    check_name,
    sorted_peers,
)

log = structlog.get_logger("rms.wg")


def _b64(raw: bytes) -> str:
    # pyroute2 takes keys in base64; this string is handed to it and never kept.
    return base64.b64encode(raw).decode()


def netlink_requests(changes: tuple[WgChange, ...]) -> list[dict[str, Any]]:
    """Keyword arguments of AsyncWireGuard.set for each step of a change list, in order."""
    device: dict[str, Any] = {}
    for change in changes:
        if isinstance(change, SetPrivateKey):
            device["private_key"] = _b64(change.private_key.raw)
        elif isinstance(change, SetListenPort):
            device["listen_port"] = change.port
    peers = [
        {"peer": _peer_request(c)}
        for c in changes
        if isinstance(c, RemovePeer | AddPeer | UpdatePeer)
    ]
    return ([device] if device else []) + peers


def _peer_request(change: RemovePeer | AddPeer | UpdatePeer) -> dict[str, Any]:
    if isinstance(change, RemovePeer):
        return {"public_key": change.public_key.base64(), "remove": True}
    if isinstance(change, AddPeer):
        cfg = change.peer
        out: dict[str, Any] = {"public_key": cfg.public_key.base64()}
        out["persistent_keepalive"] = cfg.persistent_keepalive
        if cfg.preshared_key:
            out["preshared_key"] = base64.b64encode(cfg.preshared_key).decode()
        return out | _endpoint(cfg.endpoint) | _allowed(cfg.allowed_ips)
    out = {"public_key": change.public_key.base64(), "update_only": True}
    if change.persistent_keepalive is not None:
        out["persistent_keepalive"] = change.persistent_keepalive
    return out | _endpoint(change.endpoint) | _allowed(change.allowed_ips)


def _endpoint(endpoint: Endpoint | None) -> dict[str, Any]:
    if endpoint is None:
        return {}
    return {"endpoint_addr": str(endpoint.host), "endpoint_port": endpoint.port}


def _allowed(nets: frozenset[IPNetwork] | None) -> dict[str, Any]:
    if nets is None:
        return {}
    ordered = sorted(nets, key=lambda n: (n.version, n.network_address.packed, n.prefixlen))
    return {"replace_allowed_ips": True, "allowed_ips": [str(n) for n in ordered]}


@dataclass
class _Peer:
    key: WgPublicKey
    endpoint: Endpoint | None = None
    allowed: set[IPNetwork] = field(default_factory=set)
    keepalive: int = 0
    handshake: float | None = None
    rx: int = 0
    tx: int = 0


def state_from_messages(name: str, messages: Iterable[Any]) -> InterfaceState:
    """InterfaceState from the messages of an `info` dump (a long peer list spans several)."""
    public: WgPublicKey | None = None
    port = 0
    peers: dict[WgPublicKey, _Peer] = {}
    for msg in messages:
        # The dump also carries WGDEVICE_A_PRIVATE_KEY; it is never read.
        if (raw := msg.get_attr("WGDEVICE_A_PUBLIC_KEY")) is not None:
            public = WgPublicKey.from_base64(_text(raw))
        if (found := msg.get_attr("WGDEVICE_A_LISTEN_PORT")) is not None:
            port = int(found)
        for nla in msg.get_attr("WGDEVICE_A_PEERS") or ():
            _merge_peer(peers, nla)
    frozen = {
        k: PeerState(k, p.endpoint, frozenset(p.allowed), p.keepalive, p.handshake, p.rx, p.tx)
        for k, p in peers.items()
    }
    return InterfaceState(name, public, port, sorted_peers(frozen))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _merge_peer(peers: dict[WgPublicKey, _Peer], nla: Any) -> None:
    key = WgPublicKey.from_base64(_text(nla.get_attr("WGPEER_A_PUBLIC_KEY")))
    # A peer continued in the next message of the dump repeats only its key and more IPs.
    peer = peers.setdefault(key, _Peer(key))
    if (ep := nla.get_attr("WGPEER_A_ENDPOINT")) is not None:
        peer.endpoint = Endpoint(ip_address(ep["addr"]), int(ep["port"]))
    if (keepalive := nla.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL")) is not None:
        peer.keepalive = int(keepalive)
    if (hs := nla.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")) is not None and hs["tv_sec"]:
        peer.handshake = hs["tv_sec"] + hs["tv_nsec"] / 1e9
    peer.rx = int(nla.get_attr("WGPEER_A_RX_BYTES") or peer.rx)
    peer.tx = int(nla.get_attr("WGPEER_A_TX_BYTES") or peer.tx)
    for allowed in nla.get_attr("WGPEER_A_ALLOWEDIPS") or ():
        peer.allowed.add(ip_network(allowed["addr"]))


class KernelDriver:
    """WireGuard through the Linux kernel module, in the caller's network namespace."""

    kind = "kernel"

    def __init__(
        self, *, links: Links | None = None, wireguard: Callable[[], Any] = AsyncWireGuard
    ) -> None:
        self._links = links or Links()
        self._wireguard = wireguard

    async def probe(self) -> None:
        """Raise WireGuardUnavailable unless a kernel WireGuard link can be made here."""
        name = f"tcwprobe{secrets.token_hex(3)}"
        await self._links.add_wireguard(name)
        await self._links.delete(name)

    async def create(self, name: str, private_key: WgPrivateKey, listen_port: int) -> None:
        """Add the wireguard link and set its key and port; remove it again on failure."""
        await self._links.add_wireguard(check_name(name))
        first: list[WgChange] = [SetPrivateKey(private_key)]
        first += [SetListenPort(listen_port)] if listen_port else []
        try:
            await self._set(name, tuple(first))
        except BaseException:
            await self._links.delete(name)
            raise
        log.info("wg.created", interface=name, backend=self.kind)

    async def delete(self, name: str) -> bool:
        """Delete the wireguard link; False when there was none."""
        if not await self.exists(name):
            return False
        return await self._links.delete(name)

    async def exists(self, name: str) -> bool:
        """Whether a link of kind wireguard is called name."""
        link = await self._links.read(check_name(name))
        return link is not None and link.kind == WIREGUARD_KIND

    async def names(self) -> list[str]:
        """The names of every kernel WireGuard link here."""
        return await self._links.names_of_kind(WIREGUARD_KIND)

    async def get(self, name: str) -> InterfaceState:
        """The interface's state from generic netlink plus its link's addresses and flag."""
        link = await self._links.read(check_name(name))
        if link is None or link.kind != WIREGUARD_KIND:
            raise InterfaceNotFound(f"{name}: no kernel WireGuard link of that name")
        async with self._wireguard() as wg:
            await self._bind(wg)
            try:
                messages = [m async for m in await wg.info(name)]
            except NetlinkError as e:
                raise netlink_failure(f"reading WireGuard state of {name}", e) from None
        state = state_from_messages(name, messages)
        return InterfaceState(
            name, state.public_key, state.listen_port, state.peers, link.addresses, link.up
        )

    async def apply(self, name: str, changes: tuple[Change, ...]) -> None:
        """Apply the WireGuard part through generic netlink, then the link part."""
        wg = wg_changes(changes)
        if wg:
            await self._set(check_name(name), wg)
        await self._links.apply(name, link_changes(changes))

    async def _set(self, name: str, changes: tuple[WgChange, ...]) -> None:
        async with self._wireguard() as wg:
            await self._bind(wg)
            for request in netlink_requests(changes):
                try:
                    await wg.set(name, **request)
                except NetlinkError as e:
                    asked = "; ".join(describe_all(changes))
                    raise netlink_failure(f"{name}: WireGuard set ({asked})", e) from None
                except ValueError:
                    # pyroute2 validates keys itself; its message is dropped, it may quote one.
                    raise WireGuardError(f"{name}: pyroute2 rejected a WireGuard set") from None

    @staticmethod
    async def _bind(wg: Any) -> None:
        try:
            await wg.setup_endpoint()
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                raise WireGuardUnavailable(
                    "kernel WireGuard is not available (no `wireguard` generic netlink "
                    "family); use the userspace backend"
                ) from None
            raise netlink_failure("opening WireGuard generic netlink", e) from None
        except OSError as e:
            raise WireGuardError(f"opening generic netlink failed: {e.strerror}") from None
