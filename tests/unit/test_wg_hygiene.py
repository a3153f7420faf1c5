"""Private keys never show: not in a repr, a str, an error message or a log line."""

from __future__ import annotations

import base64
from ipaddress import ip_interface, ip_network

import pytest
from structlog.testing import capture_logs

from rms.wg import uapi
from rms.wg.changes import AddPeer, SetPrivateKey, describe_all
from rms.wg.errors import KEY_MASK, UapiError, WireGuardError, os_error, scrub
from rms.wg.fake import FakeDriver
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.manager import EnsureResult, WireGuard
from rms.wg.mesh import plan
from rms.wg.model import Endpoint, InterfaceConfig, InterfaceState, PeerConfig

KEY = WgPrivateKey.generate()
PEER = WgPublicKey(bytes([9]) * 32)


def forms(key: WgPrivateKey) -> list[str]:
    """Every way a private key could be spelled in text."""
    b64 = base64.b64encode(key.raw).decode()
    return [key.hex(), key.hex().upper(), b64, b64.rstrip("="), repr(key.raw), str(list(key.raw))]


def assert_clean(text: str) -> None:
    for form in forms(KEY):
        assert form not in text, "a private key leaked"


def config() -> InterfaceConfig:
    peer = PeerConfig(PEER, Endpoint.parse("192.0.2.1:1"), frozenset({ip_network("fd00::/64")}))
    return InterfaceConfig("tcm0", KEY, 51820, frozenset({ip_interface("fd00::1/64")}), (peer,))


def test_values_that_hold_a_private_key_print_only_its_public_half() -> None:
    cfg = config()
    changes = plan(cfg, InterfaceState("tcm0"), 0.0)
    result = EnsureResult("tcm0", True, changes)
    for value in (KEY, cfg, SetPrivateKey(KEY), changes, result, describe_all(changes)):
        assert_clean(repr(value))
        assert_clean(str(value))
    assert KEY.public_key().base64() in repr(cfg)


def test_scrub_blanks_whole_keys_in_both_spellings() -> None:
    b64 = base64.b64encode(KEY.raw).decode()
    text = scrub(f"private_key={KEY.hex()} key {b64}, and {KEY.hex().upper()}.")
    assert_clean(text)
    assert text.count(KEY_MASK) == 3
    # Shorter hex (an errno, a short key fingerprint) stays readable.
    assert scrub("errno=-98 peer AbCd…wxyz 0123abcd") == "errno=-98 peer AbCd…wxyz 0123abcd"


def test_every_wireguard_error_is_scrubbed() -> None:
    for cls in (WireGuardError, UapiError):
        err = cls(f"leak {KEY.hex()} and {base64.b64encode(KEY.raw).decode()}")
        assert_clean(str(err))
        assert_clean(repr(err))
        assert_clean(err.message)
    assert_clean(str(os_error(f"writing {KEY.hex()}", PermissionError(13, "denied"))))


def test_a_get_answer_with_a_broken_key_line_keeps_the_key_out_of_the_error() -> None:
    broken = f"private_key={KEY.hex()[:-2]}zz\nlisten_port=1\nerrno=0\n\n".encode()
    with pytest.raises(UapiError) as caught:
        uapi.parse_get("tcm0", broken)
    assert_clean(str(caught.value))
    assert KEY.hex()[:-2] not in str(caught.value)


def test_parsed_state_keeps_no_private_key() -> None:
    answer = f"private_key={KEY.hex()}\nlisten_port=1\nerrno=0\n\n".encode()
    state = uapi.parse_get("tcm0", answer)
    assert state.public_key == KEY.public_key()
    assert_clean(repr(state))
    assert not any(isinstance(v, WgPrivateKey) for v in vars_of(state))


def vars_of(state: InterfaceState) -> list[object]:
    return [getattr(state, name) for name in state.__slots__]


async def test_ensure_logs_and_failures_never_carry_the_key() -> None:
    fake = FakeDriver()
    wg = WireGuard(fake, clock=lambda: 0.0)
    with capture_logs() as logs:
        await wg.ensure(config())
        fake.failures["apply"] = WireGuardError(f"refused {KEY.hex()}")
        other = WgPrivateKey.generate()
        with pytest.raises(WireGuardError) as caught:
            await wg.ensure(
                InterfaceConfig("tcm0", other, 51820, config().addresses, config().peers)
            )
    assert_clean(repr(logs))
    assert_clean(str(caught.value))
    assert other.hex() not in repr(logs) + str(caught.value)
    assert any(isinstance(c, AddPeer) for c in fake.calls[2][2])
