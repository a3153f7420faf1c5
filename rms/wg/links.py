"""The link side of a WireGuard interface, through pyroute2's rtnetlink in this namespace.

Both backends share it: addresses and the up flag live on the network link, whoever made
it (wireguard-go's TUN device or the kernel's wireguard link). Netlink errors are
translated here, once, into WireGuardError. Each call opens its own rtnetlink socket in
the caller's current network namespace, so a driver serves the namespace it runs in.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_interface
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from rms.wg.changes import AddAddress, LinkChange, RemoveAddress, SetLinkUp
from rms.wg.errors import WireGuardError, WireGuardUnavailable, errno_text
from rms.wg.model import IPInterface, managed_addresses

IFF_UP = 0x1
WIREGUARD_KIND = "wireguard"


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What rtnetlink says about one link."""

    index: int
    kind: str | None
    up: bool
    addresses: frozenset[IPInterface]  # IPv6 link-local ones left out


def netlink_failure(action: str, err: NetlinkError) -> WireGuardError:
    """Translate a netlink error into a WireGuardError naming the action."""
    code = int(err.code)
    if code in (errno.EPERM, errno.EACCES):
        return WireGuardUnavailable(
            f"{action} failed: {errno_text(code)}; run as root or with CAP_NET_ADMIN"
        )
    return WireGuardError(f"{action} failed: {errno_text(code)}")


class Links:
    """Addresses, up flag, creation and deletion of links by name."""

    def __init__(self, factory: Callable[[], Any] = AsyncIPRoute) -> None:
        self._factory = factory

    async def read(self, name: str) -> LinkInfo | None:
        """The link called name, or None when there is none."""
        async with self._factory() as ipr:
            index = await self._index(ipr, name)
            if index is None:
                return None
            try:
                (msg,) = await ipr.link("get", index=index)
                addresses = await self._addresses(ipr, index)
            except NetlinkError as e:
                if e.code == errno.ENODEV:
                    return None  # deleted under our feet
                raise netlink_failure(f"reading link {name}", e) from None
        kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        return LinkInfo(index, kind, bool(msg["flags"] & IFF_UP), addresses)

    async def apply(self, name: str, changes: tuple[LinkChange, ...]) -> None:
        """Apply link changes in order; re-adding or re-removing an address is not an error."""
        if not changes:
            return
        async with self._factory() as ipr:
            index = await self._index(ipr, name)
            if index is None:
                raise WireGuardError(f"link {name} is gone; nothing was changed on it")
            for change in changes:
                await self._apply_one(ipr, name, index, change)

    async def add_wireguard(self, name: str) -> None:
        """Create a kernel WireGuard link; WireGuardUnavailable when the kernel has none."""
        async with self._factory() as ipr:
            try:
                await ipr.link("add", ifname=name, kind=WIREGUARD_KIND)
            except NetlinkError as e:
                if e.code in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                    raise WireGuardUnavailable(
                        f"kernel WireGuard is not available ({errno_text(e.code)} for "
                        "`ip link add type wireguard`); use the userspace backend"
                    ) from None
                raise netlink_failure(f"creating link {name}", e) from None

    async def delete(self, name: str) -> bool:
        """Delete the link called name; False when there was none."""
        async with self._factory() as ipr:
            index = await self._index(ipr, name)
            if index is None:
                return False
            try:
                await ipr.link("del", index=index)
            except NetlinkError as e:
                if e.code == errno.ENODEV:
                    return False
                raise netlink_failure(f"deleting link {name}", e) from None
        return True

    async def names_of_kind(self, kind: str) -> list[str]:
        """The names of every link of this kind, sorted."""
        found = []
        async with self._factory() as ipr:
            try:
                async for msg in await ipr.link("dump"):
                    if msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == kind:
                        found.append(str(msg.get("ifname")))
            except NetlinkError as e:
                raise netlink_failure("listing links", e) from None
        return sorted(found)

    @staticmethod
    async def _index(ipr: Any, name: str) -> int | None:
        try:
            found = await ipr.link_lookup(ifname=name)
        except NetlinkError as e:
            raise netlink_failure(f"looking up link {name}", e) from None
        return int(found[0]) if found else None

    @staticmethod
    async def _addresses(ipr: Any, index: int) -> frozenset[IPInterface]:
        found: set[IPInterface] = set()
        async for msg in await ipr.addr("dump", index=index):
            # On point-to-point links IFA_LOCAL is ours and IFA_ADDRESS the far end.
            address = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            if address:
                found.add(ip_interface(f"{address}/{msg['prefixlen']}"))
        return managed_addresses(frozenset(found))

    @staticmethod
    async def _apply_one(ipr: Any, name: str, index: int, change: LinkChange) -> None:
        try:
            if isinstance(change, SetLinkUp):
                await ipr.link("set", index=index, state="up")
            elif isinstance(change, AddAddress):
                await ipr.addr("add", **_address_args(index, change.address))
            else:
                await ipr.addr("del", **_address_args(index, change.address))
        except NetlinkError as e:
            if _harmless(change, e.code):
                return
            raise netlink_failure(f"{change.describe()} on {name}", e) from None


def _address_args(index: int, address: IPInterface) -> dict[str, Any]:
    args: dict[str, Any] = {
        "index": index,
        "address": str(address.ip),
        "prefixlen": address.network.prefixlen,
    }
    if address.version == 6:
        # No duplicate address detection: the address works at once, as in the lab.
        args["flags"] = IFA_F_NODAD
    return args


def _harmless(change: LinkChange, code: int) -> bool:
    """Errors that mean the change is already in place."""
    if isinstance(change, AddAddress):
        return code == errno.EEXIST
    if isinstance(change, RemoveAddress):
        return code == errno.EADDRNOTAVAIL
    return False
