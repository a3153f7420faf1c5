"""Seeded identities and records for the discovery tests, and a way to craft bad ones."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
from aiohttp import web

from rms.discovery import Charter, RecordBody, VpnRecord, found, sign_record
from rms.discovery.fields import RECORD_CONTEXT
from rms.identity import NodeIdentity
from rms.lab.ca import LabCA, ServerFiles
from rms.wg.keys import WgPrivateKey

NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)
FOUNDER = NodeIdentity.from_seed(bytes([1]) * 32)
GUARDIAN = NodeIdentity.from_seed(bytes([2]) * 32)
OUTSIDER = NodeIdentity.from_seed(bytes([3]) * 32)
SALT = bytes(range(16))
GUEST_KEY = WgPrivateKey(bytes([0x40]) * 32)
GUARDIAN_WG = WgPrivateKey(bytes([0x50]) * 32)

# Payload positions (docs/discovery.md, "The record").
VPN_ID, FOUNDER_KEY, SALT_POS, DELEGATION, SIGNER = 1, 2, 3, 4, 5
PUBLIC_IPS, GUEST_PORT, GUEST_PUB, GUEST_PRIV, SOLICITING = 6, 7, 8, 9, 10
MEMBERS, CAPACITY, SEQ, ISSUED_AT, EXPIRES_AT = 11, 12, 13, 14, 15


def charter(salt: bytes = SALT, version: int = 1) -> Charter:
    """FOUNDER's VPN, with GUARDIAN as its one guardian."""
    return found(FOUNDER, salt, [GUARDIAN.public_key], version)


def body(**changes: Any) -> RecordBody:
    """A soliciting VPN with two public addresses."""
    base = RecordBody(
        public_ips=("198.18.0.5", "2001:db8::5"),
        guest_port=51900,
        guest_public_key=GUARDIAN_WG.public_key(),
        guest_private_key=GUEST_KEY,
        soliciting=True,
        members=3,
        capacity=8,
    )
    return dataclasses.replace(base, **changes)


def record(
    seq: int = 1,
    *,
    signer: NodeIdentity = GUARDIAN,
    vpn: Charter | None = None,
    now: float = NOW,
    ttl_s: float = 600.0,
    **changes: Any,
) -> VpnRecord:
    """A valid record of `vpn` (default: charter()) signed by `signer` at `now`."""
    return sign_record(signer, vpn or charter(), body(**changes), now=now, ttl_s=ttl_s, seq=seq)


def fields_of(rec: VpnRecord) -> list[Any]:
    """The record's payload as a mutable list, to alter and re-sign."""
    values: list[Any] = msgpack.unpackb(rec.raw[64:], use_list=True)
    return values


def craft(fields: list[Any], signer: NodeIdentity) -> bytes:
    """Record bytes for any payload, properly signed by `signer`."""
    payload: bytes = msgpack.packb(fields)
    return signer.sign(RECORD_CONTEXT + payload) + payload


def resealed(rec: VpnRecord, position: int, value: Any, signer: NodeIdentity) -> bytes:
    """The record with one payload field changed and signed again by `signer`."""
    fields = fields_of(rec)
    fields[position] = value
    return craft(fields, signer)


def altered(rec: VpnRecord, position: int, value: Any) -> bytes:
    """The record with one payload field changed, keeping the original signature."""
    fields = fields_of(rec)
    fields[position] = value
    payload: bytes = msgpack.packb(fields)
    return rec.raw[:64] + payload


@contextlib.asynccontextmanager
async def https_app(app: web.Application, tls: ServerFiles) -> AsyncIterator[str]:
    """Serve `app` over HTTPS on a free loopback port; yields its base URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=context).start()
        yield f"https://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        await runner.cleanup()
        sock.close()


def lab_tls(directory: Path, name: str = "mirror") -> ServerFiles:
    """A fresh lab CA and a certificate for the discovery name and 127.0.0.1."""
    return LabCA.create().write_server(directory, name, ["discovery.test"], ["127.0.0.1"])
