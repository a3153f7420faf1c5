"""Memberships kept on disk, so a restarted daemon is still the member it was.

One file per VPN in `<state dir>/vpns/<vpn id>.msgpack`, mode 0600 (it holds the node's
WireGuard private key in that VPN, and a guardian's guest keys), written atomically. It keeps
the slot, the key, the guardians trusted for the roster, the last roster held (its signed
bytes, verified again on load), and for a guardian the VPN's charter and guest keys. A file
that does not check out is moved aside as `.bad` and logged, never trusted and never fatal:
the node then joins afresh.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import structlog

from rms.discovery.record import Charter, Delegation
from rms.membership.document import SignedRoster, verify_roster
from rms.policy import Policy
from rms.vpn.names import MAX_SLOTS
from rms.wg.keys import KeyFormatError, WgPrivateKey

FORMAT = 1
MAX_FILE_BYTES = 256 * 1024
log = structlog.get_logger("rms.vpn")


class StoreError(Exception):
    """A saved membership that cannot be used; the message says why (never a key)."""


@dataclass(frozen=True)
class SavedGuardian:
    """What a guardian needs beyond membership: the charter and the guest link's keys."""

    charter: Charter
    guest_interface_key: WgPrivateKey
    guest_slot_key: WgPrivateKey


@dataclass(frozen=True)
class SavedVpn:
    """One membership as it is kept on disk."""

    slot: int
    wg_key: WgPrivateKey
    trusted: frozenset[bytes]
    roster: SignedRoster
    guardian: SavedGuardian | None = None

    @property
    def vpn_id(self) -> uuid.UUID:
        """The VPN this membership is in."""
        return self.roster.roster.vpn_id


def encode(saved: SavedVpn) -> bytes:
    """The file's bytes."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "vpn_id": saved.vpn_id.bytes,
        "slot": saved.slot,
        "wg_key": saved.wg_key.raw,
        "trusted": sorted(saved.trusted),
        "roster": saved.roster.data,
    }
    if saved.guardian is not None:
        g = saved.guardian
        d = g.charter.delegation
        body["guardian"] = {
            "founder_key": g.charter.founder_key,
            "salt": g.charter.salt,
            "delegation": [d.version, list(d.guardians), d.signature],
            "guest_interface_key": g.guest_interface_key.raw,
            "guest_slot_key": g.guest_slot_key.raw,
        }
    packed: bytes = msgpack.packb(body)
    return packed


def decode(data: bytes, policy: Policy) -> SavedVpn:
    """A saved membership from the file's bytes; StoreError when anything is off."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_FILE_BYTES)
    except (ValueError, msgpack.UnpackException) as e:
        raise StoreError(f"not a membership file: {type(e).__name__}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise StoreError("not a membership file of this format")
    try:
        return _decode(body, policy)
    except (KeyError, TypeError, ValueError, KeyFormatError) as e:
        raise StoreError(f"a field is missing or wrong ({type(e).__name__})") from None


def _decode(body: dict[str, Any], policy: Policy) -> SavedVpn:
    vpn_id = uuid.UUID(bytes=body["vpn_id"])
    slot = int(body["slot"])
    if not 0 <= slot < MAX_SLOTS:
        raise StoreError(f"slot {slot} is out of range")
    trusted = frozenset(bytes(k) for k in body["trusted"])
    roster = verify_roster(
        bytes(body["roster"]), vpn_id=vpn_id, trusted_guardians=trusted, policy=policy
    )
    if not isinstance(roster, SignedRoster):
        raise StoreError(f"the saved roster does not verify: {roster.detail}")
    guardian = _guardian(body["guardian"]) if "guardian" in body else None
    if guardian is not None and guardian.charter.vpn_id != vpn_id:
        raise StoreError("the saved charter is for another VPN")
    return SavedVpn(slot, WgPrivateKey(bytes(body["wg_key"])), trusted, roster, guardian)


def _guardian(g: dict[str, Any]) -> SavedGuardian:
    version, guardians, signature = g["delegation"]
    delegation = Delegation(int(version), tuple(bytes(k) for k in guardians), bytes(signature))
    charter = Charter(bytes(g["founder_key"]), bytes(g["salt"]), delegation)
    return SavedGuardian(
        charter,
        WgPrivateKey(bytes(g["guest_interface_key"])),
        WgPrivateKey(bytes(g["guest_slot_key"])),
    )


class MembershipStore:
    """The directory of saved memberships."""

    def __init__(self, directory: Path, policy: Policy) -> None:
        self.directory = directory
        self.policy = policy

    def path(self, vpn_id: uuid.UUID) -> Path:
        """The file of one VPN."""
        return self.directory / f"{vpn_id}.msgpack"

    def save(self, saved: SavedVpn) -> None:
        """Write atomically, mode 0600 from the start."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.path(saved.vpn_id)
        tmp = final.with_name(final.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(encode(saved))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(final)

    def forget(self, vpn_id: uuid.UUID) -> None:
        """Remove a VPN's file (the node left it or was removed)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(vpn_id).unlink()

    def load_all(self) -> Iterator[SavedVpn]:
        """Every usable saved membership; unusable files are moved aside and logged."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.msgpack")):
            try:
                yield self._load(path)
            except StoreError as e:
                log.warning("vpn.saved_membership_unusable", file=str(path), reason=str(e))
                with contextlib.suppress(OSError):
                    path.replace(path.with_name(path.name + ".bad"))

    def _load(self, path: Path) -> SavedVpn:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise StoreError(f"cannot read it: {e.strerror}") from None
        if len(data) > MAX_FILE_BYTES:
            raise StoreError(f"larger than {MAX_FILE_BYTES} bytes")
        saved = decode(data, self.policy)
        if path.name != f"{saved.vpn_id}.msgpack":
            raise StoreError("its name does not match the VPN inside")
        return saved
