"""The TrueNAS backend: zvols and iSCSI exports made through the TrueNAS middleware.

TrueNAS SCALE owns its ZFS pools and its iSCSI target (SCST), so on a TrueNAS box the
Volume Provider runs no tgtd: it asks the middleware (`truenas_rpc`) for each piece of a
volume's export and records nothing of its own. One volume is:

- a sparse zvol `PARENT/NAME` (`pool.dataset.create`, type VOLUME); `TargetConfig.backing`
  is that dataset name and must lie under the configured parent;
- a CHAP account (`iscsi.auth.create`, a fresh tag per user name; TrueNAS takes secrets of
  12-16 characters only);
- an initiator group (`iscsi.initiator.create`) naming the client's IQN, or any IQN;
- a target `NAME` (its IQN is TrueNAS's base name + ":" + NAME) with one portal group using
  CHAP with that tag, and `auth_networks` holding the client's address as the ACL;
- a DISK extent on `zvol/PARENT/NAME` mapped as LUN 1 (`iscsi.targetextent.create`).

A portal listening on the volume's address (or a wildcard one) is reused, else one is made.
Only targets whose alias starts with `truecloud ` are reported or touched: the box's other
iSCSI shares are its owner's. Removing a target keeps the zvol, as tgt keeps a backing file;
`destroy_backing` deletes it when the volume is released.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from volume_provider.target.changes import (
    AllowInitiator,
    BindAccount,
    CreateTarget,
    DenyInitiator,
    RemoveTarget,
    TargetChange,
    UnbindAccount,
)
from volume_provider.target.model import LUN, LunState, TargetConfig, TargetError, TargetState
from volume_provider.target.truenas_rpc import (
    MiddlewareClient,
    MiddlewareError,
    TrueNasSection,
    load_settings,
)

OWNER = "truecloud"  # alias and comment prefix of everything this driver creates
MAX_TRUENAS_SECRET = 16
_NAME = re.compile(r"^[-a-z0-9.:]{1,64}$")  # TrueNAS target names; extents take 64 at most
WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 -- portals TrueNAS may already have


class Rpc(Protocol):
    """What the driver needs of `MiddlewareClient`."""

    async def call(self, method: str, *params: Any, secrets: Sequence[str] = ()) -> Any:
        """Call one middleware method."""
        ...


def rows(result: Any, method: str) -> list[dict[str, Any]]:
    """A query result as a list of objects; TargetError if it is anything else."""
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise TargetError(f"malformed reply from TrueNAS to {method}: expected a list of objects")
    return result


def field(row: dict[str, Any], key: str, kind: type, method: str) -> Any:
    """row[key] if it has the expected type (bool is not an int here); TargetError else."""
    value = row.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TargetError(f"malformed reply from TrueNAS to {method}: {key} is not {kind.__name__}")
    return value


def created_id(result: Any, method: str) -> int:
    """The id of a created object."""
    if not isinstance(result, dict):
        raise TargetError(f"malformed reply from TrueNAS to {method}: expected an object")
    return int(field(result, "id", int, method))


def cidr(address: str) -> str:
    """The one-address network of an ACL entry."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def acl_address(network: str) -> str:
    """An auth_networks entry as an address when it names one host, else as given."""
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError:
        return network
    return str(net.network_address) if net.num_addresses == 1 else network


@dataclass
class Snapshot:
    """The middleware's iSCSI state as read by one `targets()`."""

    basename: str
    port: int
    targets: list[dict[str, Any]]
    extents: dict[int, dict[str, Any]]
    mappings: list[dict[str, Any]]
    auths: list[dict[str, Any]]
    sessions: list[dict[str, Any]]


class TrueNasDriver:
    """The `TargetDriver` over the TrueNAS middleware; applies changes, decides nothing."""

    kind = "truenas"

    def __init__(self, rpc: Rpc, parent: str) -> None:
        self.rpc = rpc
        self.parent = parent.strip("/")

    async def snapshot(self) -> Snapshot:
        """Read the global config, targets, extents, mappings and CHAP accounts."""
        conf = await self.rpc.call("iscsi.global.config")
        if not isinstance(conf, dict):
            raise TargetError("malformed reply from TrueNAS to iscsi.global.config")
        basename = field(conf, "basename", str, "iscsi.global.config")
        port = conf.get("listen_port", 3260)
        extents = rows(await self.rpc.call("iscsi.extent.query"), "iscsi.extent.query")
        return Snapshot(
            basename,
            port if isinstance(port, int) else 3260,
            [t for t in await self._query("iscsi.target.query") if _ours(t)],
            {field(e, "id", int, "iscsi.extent.query"): e for e in extents},
            await self._query("iscsi.targetextent.query"),
            await self._query("iscsi.auth.query"),
            await self._query("iscsi.global.sessions"),
        )

    async def targets(self) -> list[TargetState]:
        """Every target this driver made, with its LUN, CHAP users and ACL."""
        snap = await self.snapshot()
        sizes = await self._volsizes()
        return [self._state(snap, t, sizes) for t in snap.targets]

    def _state(self, snap: Snapshot, target: dict[str, Any], sizes: dict[str, int]) -> TargetState:
        tid = field(target, "id", int, "iscsi.target.query")
        luns = []
        for m in snap.mappings:
            if m.get("target") == tid and (ext := snap.extents.get(m.get("extent", -1))):
                backing = str(ext.get("disk", "")).removeprefix("zvol/")
                lun = field(m, "lunid", int, "iscsi.targetextent.query")
                luns.append(LunState(lun, backing, sizes.get(backing, 0) >> 20, 512))
        tags = {g.get("auth") for g in _groups(target)}
        users = tuple(str(a.get("user")) for a in snap.auths if a.get("tag") in tags)
        networks = target.get("auth_networks") or []
        name = field(target, "name", str, "iscsi.target.query")
        acl = tuple(acl_address(str(n)) for n in networks)
        iqn = f"{snap.basename}:{name}"
        peers = [x for x in snap.sessions if x.get("target") in (iqn, name)]
        sessions = tuple(str(x.get("initiator_addr", "?")) for x in peers)
        return TargetState(iqn, tid, tuple(luns), users, acl, sessions)

    async def apply(self, changes: Sequence[TargetChange]) -> None:
        """Apply the changes in order; stop at the first failure."""
        for change in changes:
            match change:
                case CreateTarget(config):
                    await self._create(config)
                case RemoveTarget(_, tid, accounts):
                    await self._remove(tid, accounts)
                case BindAccount(tid, user, secret):
                    tag = await self._auth_tag(user, secret.reveal())
                    await self._update_groups(tid, auth=tag)
                case UnbindAccount(tid, user):
                    await self._unbind(tid, user)
                case AllowInitiator(tid, address):
                    await self._edit_networks(tid, add=cidr(address))
                case DenyInitiator(tid, address):
                    await self._edit_networks(tid, drop=address)

    @classmethod
    def from_settings(cls, path: Path) -> TrueNasDriver:
        """The driver a truenas.toml describes (docs/truenas-middleware.md)."""
        return cls.from_section(load_settings(path))

    @classmethod
    def from_section(cls, section: TrueNasSection) -> TrueNasDriver:
        """The driver a `[truenas]` section describes (the API key is read now)."""
        return cls(MiddlewareClient(section.endpoint()), section.parent_dataset)

    async def zvols(self) -> dict[str, int]:
        """Every zvol under the parent dataset, with its size in bytes."""
        return await self._volsizes()

    async def create_zvol(self, backing: str, size: int) -> None:
        """A new sparse zvol; TargetError if one of that name is there already."""
        self._check_backing(backing)
        if backing in await self._volsizes():
            raise TargetError(f"zvol {backing} exists already; it was left as is")
        await self._ensure_zvol(backing, size)

    async def destroy_backing(self, backing: str) -> None:
        """Delete a released volume's zvol (and so its data); absent is fine."""
        self._check_backing(backing)
        if backing in await self._volsizes():
            await self.rpc.call("pool.dataset.delete", backing, {"recursive": False})

    # -- creation -------------------------------------------------------------------------

    async def _create(self, c: TargetConfig) -> None:
        snap = await self.snapshot()
        name = self._name(c.iqn, snap.basename)
        self._check_backing(c.backing)
        secret = c.chap_secret.reveal()
        if len(secret) > MAX_TRUENAS_SECRET:
            raise TargetError(f"target {c.iqn}: TrueNAS takes CHAP secrets of 12-16 characters")
        if c.portal.port != snap.port:
            raise TargetError(f"target {c.iqn}: TrueNAS serves iSCSI on port {snap.port}")
        await self._ensure_zvol(c.backing, c.size)
        tag = await self._auth_tag(c.chap_user, secret)
        portal = await self._portal(c.portal.address)
        group = await self.rpc.call(
            "iscsi.initiator.create",
            {"initiators": [c.initiator_iqn] if c.initiator_iqn else [], "comment": _mark(name)},
        )
        made = {"initiator": created_id(group, "iscsi.initiator.create")}
        try:
            await self._export(c, name, portal, made, tag)
        except TargetError:
            # A half-made export could accept logins without CHAP or ACL: take it away.
            await self._undo(made)
            raise

    async def _export(
        self, c: TargetConfig, name: str, portal: int, made: dict[str, int], tag: int
    ) -> None:
        group = {
            "portal": portal,
            "initiator": made["initiator"],
            "authmethod": "CHAP",
            "auth": tag,
        }
        target = await self.rpc.call(
            "iscsi.target.create",
            {"name": name, "alias": _mark(name), "mode": "ISCSI", "groups": [group],
             "auth_networks": [cidr(c.initiator_address)]},
        )  # fmt: skip
        made["target"] = created_id(target, "iscsi.target.create")
        extent = await self.rpc.call(
            "iscsi.extent.create",
            {"name": name, "type": "DISK", "disk": f"zvol/{c.backing}", "comment": _mark(name)},
        )
        made["extent"] = created_id(extent, "iscsi.extent.create")
        mapping = {"target": made["target"], "extent": made["extent"], "lunid": LUN}
        created_id(await self.rpc.call("iscsi.targetextent.create", mapping), "targetextent")

    async def _undo(self, made: dict[str, int]) -> None:
        if "target" in made:
            await self.rpc.call("iscsi.target.delete", made["target"], True)
        if "extent" in made:
            await self.rpc.call("iscsi.extent.delete", made["extent"], False, True)
        await self.rpc.call("iscsi.initiator.delete", made["initiator"])

    def _name(self, iqn: str, basename: str) -> str:
        name = iqn.removeprefix(f"{basename}:")
        if name == iqn or not _NAME.match(name):
            raise TargetError(
                f"target {iqn}: on TrueNAS a target's IQN is {basename}:NAME with NAME of at "
                "most 64 lower-case letters, digits, '-', '.' or ':'"
            )
        return name

    def _check_backing(self, backing: str) -> None:
        if not backing.startswith(f"{self.parent}/") or ".." in backing.split("/"):
            raise TargetError(f"zvol {backing} is not under {self.parent}; it was left alone")

    async def _ensure_zvol(self, backing: str, size: int) -> None:
        have = (await self._volsizes()).get(backing)
        if have is None:
            await self.rpc.call(
                "pool.dataset.create",
                {"name": backing, "type": "VOLUME", "volsize": size, "sparse": True},
            )
        elif have != size:
            raise TargetError(f"zvol {backing} exists with another size; it was left as is")

    async def _auth_tag(self, user: str, secret: str) -> int:
        auths = await self._query("iscsi.auth.query")
        for a in auths:
            if a.get("user") == user:
                return int(field(a, "tag", int, "iscsi.auth.query"))
        tag = 1 + max(
            (int(a.get("tag", 0)) for a in auths if isinstance(a.get("tag"), int)), default=0
        )
        entry = {"tag": tag, "user": user, "secret": secret}
        created_id(await self.rpc.call("iscsi.auth.create", entry, secrets=[secret]), "auth")
        return tag

    async def _portal(self, address: str) -> int:
        portals = await self._query("iscsi.portal.query")
        for p in portals:
            ips = {str(x.get("ip")) for x in p.get("listen", []) if isinstance(x, dict)}
            if address in ips or ips & set(WILDCARDS):
                return int(field(p, "id", int, "iscsi.portal.query"))
        made = await self.rpc.call(
            "iscsi.portal.create", {"listen": [{"ip": address}], "comment": OWNER}
        )
        return created_id(made, "iscsi.portal.create")

    # -- changes in place and removal ---------------------------------------------------

    async def _target(self, tid: int) -> dict[str, Any]:
        for t in await self._query("iscsi.target.query"):
            if t.get("id") == tid and _ours(t):
                return t
        raise TargetError(f"TrueNAS has no target {tid} of ours")

    async def _update_groups(self, tid: int, auth: int) -> None:
        groups = [
            {**g, "authmethod": "CHAP", "auth": auth} for g in _groups(await self._target(tid))
        ]
        await self.rpc.call("iscsi.target.update", tid, {"groups": groups})

    async def _unbind(self, tid: int, user: str) -> None:
        auths = await self._query("iscsi.auth.query")
        tags = {a.get("tag") for a in auths if a.get("user") == user}
        if any(g.get("auth") in tags for g in _groups(await self._target(tid))):
            raise TargetError(f"target {tid}: unbinding {user} would leave it without CHAP")
        await self._drop_unused_auths(auths, tags)

    async def _edit_networks(self, tid: int, add: str = "", drop: str = "") -> None:
        have = [str(n) for n in (await self._target(tid)).get("auth_networks") or []]
        want = [n for n in have if acl_address(n) != drop]
        want += [add] if add and add not in have else []
        if not want:  # TrueNAS reads an empty list as "every network"
            raise TargetError(f"target {tid}: an empty ACL would admit every address")
        await self.rpc.call("iscsi.target.update", tid, {"auth_networks": want})

    async def _remove(self, tid: int, accounts: Sequence[str]) -> None:
        target = await self._target(tid)
        for m in await self._query("iscsi.targetextent.query"):
            if m.get("target") == tid:
                await self.rpc.call("iscsi.extent.delete", m.get("extent"), False, True)
        await self.rpc.call("iscsi.target.delete", tid, True)
        for g in _groups(target):
            if isinstance(g.get("initiator"), int):
                await self._delete_quietly("iscsi.initiator.delete", g["initiator"])
        auths = await self._query("iscsi.auth.query")
        await self._drop_unused_auths(
            auths, {a.get("tag") for a in auths if a.get("user") in accounts}
        )
        await self._drop_unused_portals()

    async def _drop_unused_auths(self, auths: list[dict[str, Any]], tags: set[Any]) -> None:
        used = {g.get("auth") for t in await self._query("iscsi.target.query") for g in _groups(t)}
        for a in auths:
            if a.get("tag") in tags - used:
                await self.rpc.call("iscsi.auth.delete", a.get("id"))

    async def _drop_unused_portals(self) -> None:
        used = {
            g.get("portal") for t in await self._query("iscsi.target.query") for g in _groups(t)
        }
        for p in await self._query("iscsi.portal.query"):
            if p.get("comment") == OWNER and p.get("id") not in used:
                await self._delete_quietly("iscsi.portal.delete", p.get("id"))

    async def _delete_quietly(self, method: str, ident: Any) -> None:
        """Delete a leftover; one already gone (or still in use elsewhere) is not an error."""
        with contextlib.suppress(MiddlewareError):
            await self.rpc.call(method, ident)

    async def _query(self, method: str) -> list[dict[str, Any]]:
        return rows(await self.rpc.call(method), method)

    async def _volsizes(self) -> dict[str, int]:
        """Size in bytes of every zvol under the parent dataset."""
        method = "pool.dataset.query"
        found = rows(await self.rpc.call(method, [["id", "^", f"{self.parent}/"]]), method)
        sizes = {}
        for d in found:
            if d.get("type") == "VOLUME":
                volsize = field(d, "volsize", dict, method)
                sizes[str(field(d, "id", str, method))] = int(field(volsize, "parsed", int, method))
        return sizes


def _ours(target: dict[str, Any]) -> bool:
    return str(target.get("alias") or "").startswith(f"{OWNER} ")


def _mark(name: str) -> str:
    return f"{OWNER} {name}"


def _groups(target: dict[str, Any]) -> list[dict[str, Any]]:
    groups = target.get("groups")
    return [g for g in groups if isinstance(g, dict)] if isinstance(groups, list) else []
