"""A provider whose iSCSI target imposes names and secrets (TrueNAS: its base name, CHAP
secrets of 12-16 characters) grants `BASE:<volume id hex>` and secrets of that length; the
client accepts any valid base followed by its own volume's id, and nothing else."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rms.volumes import GrantSecrets, ProviderSettings, Rejected
from rms.volumes.grants import seal_secrets
from rms.volumes.terms import IQN_PREFIX, iqn_for, names_volume, valid_iqn_base
from rms.wire import encode
from rms.wire.messages import volumes as msg
from tests.unit.volumes_support import CLIENT, NOW, PROVIDER, pair, settings

TRUENAS = "iqn.2005-10.org.freenas.ctl"
VID = bytes(range(16))


def test_a_truenas_provider_grants_its_names_and_short_secrets() -> None:
    p = pair(iqn_base=TRUENAS, chap_secret_len=16)
    lease = p.lease()
    assert lease.secrets.iqn == f"{TRUENAS}:{lease.volume_id.hex()}"
    assert len(lease.secrets.chap_secret) == 16
    (kept,) = p.provider.leases.values()
    assert kept.secrets.iqn == lease.secrets.iqn


def test_the_default_provider_keeps_the_clouds_names_and_24_characters() -> None:
    lease = pair().lease()
    assert lease.secrets.iqn == iqn_for(lease.volume_id) == f"{IQN_PREFIX}:{lease.volume_id.hex()}"
    assert len(lease.secrets.chap_secret) == 24


@pytest.mark.parametrize(
    "iqn",
    [
        f"{IQN_PREFIX}:{VID.hex()}",
        f"{TRUENAS}:{VID.hex()}",
        f"iqn.2024-01.example.nas:tank:{VID.hex()}",
    ],
)
def test_names_for_this_volume(iqn: str) -> None:
    assert names_volume(iqn, VID)


@pytest.mark.parametrize(
    "iqn",
    [
        f"{IQN_PREFIX}:{bytes(16).hex()}",  # another volume
        f"{IQN_PREFIX}:{VID.hex().upper()}",
        f"{IQN_PREFIX}{VID.hex()}",
        VID.hex(),
        f":{VID.hex()}",
        f"eui.02004567A425678D:{VID.hex()}",
        f"IQN.2005-10.ORG.FREENAS.CTL:{VID.hex()}",
        f"iqn.2005-10.org freenas:{VID.hex()}",
        f"iqn.2005-10.org.freenas\n:{VID.hex()}",
        f"iqn.2005-10.:{VID.hex()}",
        f"iqn.2005-10.org.x::{VID.hex()}",
        f"iqn.{'a' * 200}:{VID.hex()}",
        f"iqn.2005-10.org.{'a' * 200}:{VID.hex()}",
        "",
    ],
)
def test_names_that_are_not_this_volumes(iqn: str) -> None:
    assert not names_volume(iqn, VID)


def test_iqn_bases() -> None:
    assert valid_iqn_base(IQN_PREFIX) and valid_iqn_base(TRUENAS)
    assert not valid_iqn_base("iqn.2005-10.org.freenas.ctl:")
    assert not valid_iqn_base("naa.60014055")
    assert valid_iqn_base("iqn.2005-10.o" + "a" * 177)  # 190 + 33 = 223 bytes
    assert not valid_iqn_base("iqn.2005-10.o" + "a" * 178)


@pytest.mark.parametrize(
    "changes",
    [
        {"iqn_base": "iqn.bad base"},
        {"iqn_base": ""},
        {"chap_secret_len": 11},
        {"chap_secret_len": 256},
    ],
)
def test_settings_refuse_names_and_secrets_no_target_takes(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        settings(256 << 20, **changes)
    assert isinstance(settings(iqn_base=TRUENAS, chap_secret_len=12), ProviderSettings)


def test_a_grant_naming_another_volume_under_the_providers_base_is_rejected() -> None:
    p = pair(iqn_base=TRUENAS, chap_secret_len=16)
    claim_id, data = p.claim(p.offer())
    p.provider.handle(data, NOW)
    lease = next(iter(p.provider.leases.values()))

    def forged(secrets: GrantSecrets) -> bytes:
        body = {
            "claim_id": claim_id,
            "volume_id": lease.volume_id,
            "client": CLIENT.node_id,
            "size": lease.size,
            "expires_ms": lease.expires_ms,
            "box": seal_secrets(secrets, PROVIDER, CLIENT.public_key),
        }
        return encode(PROVIDER, msg.GRANT, body, NOW)

    other = replace(lease.secrets, iqn=f"{TRUENAS}:{bytes(16).hex()}")
    assert p.client.receive(forged(other), PROVIDER.public_key, NOW) == Rejected("bad_grant")
    hostile = replace(lease.secrets, iqn=f"{TRUENAS}\n[x]:{lease.volume_id.hex()}")
    assert p.client.receive(forged(hostile), PROVIDER.public_key, NOW) == Rejected("bad_grant")
    assert p.client.leases == {}
