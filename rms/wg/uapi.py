"""The WireGuard cross-platform UAPI text protocol, sans-IO (https://www.wireguard.com/xplatform/).

A request is `get=1` or `set=1` followed by key=value lines and a blank line; the answer is
key=value lines ending with `errno=N` and a blank line. Keys are lowercase hex. This module
only builds request bytes and parses answer bytes: the socket lives in `rms.wg.userspace`.

Parsing never trusts the peer: oversized, non-ASCII, malformed or incomplete answers raise
`UapiError` with a line number and key name but never a value, since a `get` answer carries
the interface's private key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from ipaddress import ip_network

from rms.wg.changes import (
    AddPeer,
    RemovePeer,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
    WgChange,
)
from rms.wg.errors import UapiError, errno_text
from rms.wg.keys import KeyFormatError, WgPrivateKey, WgPublicKey
from rms.wg.model import (
    MAX_PORT,
    ConfigError,
    Endpoint,
    InterfaceState,
    IPNetwork,
    PeerConfig,
    PeerState,
    sorted_peers,
)

GET_REQUEST = b"get=1\n\n"
TERMINATOR = b"\n\n"
# A peer takes about 400 bytes in a get answer; 4 MiB holds ten thousand of them.
MAX_RESPONSE = 4 * 1024 * 1024
MAX_PEERS = 10_000
_U64 = 2**64 - 1
_KEY_NAME = re.compile(r"[a-z_]{1,40}")


def build_set(changes: tuple[WgChange, ...]) -> bytes:
    """The `set=1` request applying changes; device settings go first, as the protocol asks."""
    device = [c for c in changes if isinstance(c, SetPrivateKey | SetListenPort)]
    peers = [c for c in changes if isinstance(c, RemovePeer | AddPeer | UpdatePeer)]
    lines = ["set=1"]
    lines.extend(_device_line(d) for d in device)
    for peer in peers:
        lines.extend(_peer_lines(peer))
    return ("\n".join(lines) + "\n\n").encode("ascii")


def _device_line(change: SetPrivateKey | SetListenPort) -> str:
    if isinstance(change, SetPrivateKey):
        return f"private_key={change.private_key.hex()}"
    return f"listen_port={change.port}"


def _peer_lines(change: RemovePeer | AddPeer | UpdatePeer) -> list[str]:
    if isinstance(change, RemovePeer):
        return [f"public_key={change.public_key.hex()}", "remove=true"]
    if isinstance(change, AddPeer):
        return _add_lines(change.peer)
    lines = [f"public_key={change.public_key.hex()}", "update_only=true"]
    if change.endpoint is not None:
        lines.append(f"endpoint={change.endpoint}")
    if change.persistent_keepalive is not None:
        lines.append(f"persistent_keepalive_interval={change.persistent_keepalive}")
    if change.allowed_ips is not None:
        lines.extend(_allowed_lines(change.allowed_ips))
    return lines


def _add_lines(peer: PeerConfig) -> list[str]:
    # replace_allowed_ips makes an add exact even if the peer already existed.
    lines = [f"public_key={peer.public_key.hex()}"]
    if peer.endpoint is not None:
        lines.append(f"endpoint={peer.endpoint}")
    lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
    if peer.preshared_key:
        lines.append(f"preshared_key={peer.preshared_key.hex()}")
    return lines + _allowed_lines(peer.allowed_ips)


def _allowed_lines(nets: frozenset[IPNetwork]) -> list[str]:
    ordered = sorted(nets, key=lambda n: (n.version, n.network_address.packed, n.prefixlen))
    return ["replace_allowed_ips=true", *(f"allowed_ip={n}" for n in ordered)]


def parse_errno(data: bytes) -> int:
    """The errno of a `set` answer (0 on success); UapiError if it is not one."""
    lines = _lines(data)
    if len(lines) != 1:
        raise UapiError("a set answer is one errno line")
    return _errno_of(lines[0], 1)


def check_set_answer(name: str, data: bytes) -> None:
    """Raise UapiError unless the `set` answer says errno=0."""
    code = parse_errno(data)
    if code != 0:
        raise UapiError(f"{name}: wireguard-go refused the change: {errno_text(code)}")


@dataclass
class _Peer:
    key: WgPublicKey
    endpoint: Endpoint | None = None
    allowed: set[IPNetwork] = field(default_factory=set)
    keepalive: int = 0
    sec: int = 0
    nsec: int = 0
    rx: int = 0
    tx: int = 0

    def freeze(self) -> PeerState:
        when = None if self.sec == 0 and self.nsec == 0 else self.sec + self.nsec / 1e9
        return PeerState(
            self.key, self.endpoint, frozenset(self.allowed), self.keepalive, when, self.rx, self.tx
        )


@dataclass
class _Device:
    state: InterfaceState
    peers: dict[WgPublicKey, _Peer] = field(default_factory=dict)
    current: _Peer | None = None


def parse_get(name: str, data: bytes) -> InterfaceState:
    """Parse a whole `get=1` answer into InterfaceState; UapiError if it is not one."""
    lines = _lines(data)
    if not lines:
        raise UapiError(f"{name}: empty get answer")
    code = _errno_of(lines[-1], len(lines))
    if code != 0:
        raise UapiError(f"{name}: wireguard-go refused get: {errno_text(code)}")
    device = _Device(InterfaceState(name))
    for number, line in enumerate(lines[:-1], start=1):
        key, value = _split(line, number)
        try:
            _apply_line(device, key, value)
        except (ValueError, KeyFormatError, ConfigError):
            raise UapiError(f"{name}: line {number}: bad value for {key}") from None
    if len(device.peers) > MAX_PEERS:
        raise UapiError(f"{name}: more than {MAX_PEERS} peers")
    peers = {k: p.freeze() for k, p in device.peers.items()}
    return replace(device.state, peers=sorted_peers(peers))


def _lines(data: bytes) -> list[str]:
    if len(data) > MAX_RESPONSE:
        raise UapiError(f"answer larger than {MAX_RESPONSE} bytes")
    if not data.endswith(TERMINATOR):
        raise UapiError("answer does not end with a blank line")
    try:
        text = data[: -len(TERMINATOR)].decode("ascii")
    except UnicodeDecodeError:
        raise UapiError("answer is not ASCII") from None
    if TERMINATOR.decode() in text:
        raise UapiError("answer holds more than one message")
    return text.split("\n") if text else []


def _split(line: str, number: int) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    if not sep:
        raise UapiError(f"line {number} is not key=value")
    if not _KEY_NAME.fullmatch(key):
        raise UapiError(f"line {number} has a malformed key")
    return key, value


def _errno_of(line: str, number: int) -> int:
    key, value = _split(line, number)
    if key != "errno" or not re.fullmatch(r"-?[0-9]{1,5}", value):
        raise UapiError(f"line {number}: the answer does not end with errno=N")
    return int(value)


def _apply_line(device: _Device, key: str, value: str) -> None:
    if key == "public_key":
        _start_peer(device, WgPublicKey.from_hex(value))
    elif device.current is None:
        _device_key(device, key, value)
    else:
        _peer_key(device.current, key, value)


def _start_peer(device: _Device, key: WgPublicKey) -> None:
    if key in device.peers:
        raise ValueError("peer listed twice")
    device.current = device.peers[key] = _Peer(key)


def _device_key(device: _Device, key: str, value: str) -> None:
    if key == "private_key":
        # Derive the public half at once; the private key is not kept anywhere.
        public = WgPrivateKey.from_hex(value).public_key()
        device.state = replace(device.state, public_key=public)
    elif key == "listen_port":
        device.state = replace(device.state, listen_port=_uint(value, MAX_PORT))
    # Other device keys (fwmark, future ones) are not ours to manage; the spec lets us skip.


def _peer_key(peer: _Peer, key: str, value: str) -> None:
    if key == "endpoint":
        peer.endpoint = Endpoint.parse(value)
    elif key == "allowed_ip":
        peer.allowed.add(ip_network(value))
    elif key == "persistent_keepalive_interval":
        peer.keepalive = _uint(value, MAX_PORT)
    elif key == "last_handshake_time_sec":
        peer.sec = _uint(value, _U64)
    elif key == "last_handshake_time_nsec":
        peer.nsec = _uint(value, 999_999_999)
    elif key == "rx_bytes":
        peer.rx = _uint(value, _U64)
    elif key == "tx_bytes":
        peer.tx = _uint(value, _U64)
    # preshared_key, protocol_version and unknown keys are read past.


def _uint(value: str, limit: int) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise ValueError("not an unsigned integer")
    number = int(value)
    if number > limit:
        raise ValueError("out of range")
    return number
