"""The entitlement service's state files and policy file, with a hand-set clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rms import policydoc
from rms.config import Config, ConfigError, ContributionSection, NodeSection, PolicySection
from rms.entitlement.arithmetic import ContributionError
from rms.entitlement.service import EntitlementService, measured_report
from rms.identity import NodeIdentity
from rms.policy import DEFAULT

GIB = 2**30
KEYS = [NodeIdentity.from_seed(bytes([i]) * 32) for i in (7, 8, 9)]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(state: Path, keys: int = 2, storage: str = "20 GiB") -> Config:
    trusted = tuple(k.public_key.hex() for k in KEYS[:keys])
    return Config(
        node=NodeSection(state_dir=state),
        contribution=ContributionSection(storage=storage, cpu=2.0),
        policy=PolicySection(keys=trusted, threshold=min(2, max(1, keys))),
    )


def signed(version: int, signers: list[NodeIdentity] = KEYS[:2], **fields: Any) -> bytes:
    return policydoc.signed_document(fields, version, "t", list(signers))


def test_a_new_node_is_in_probation_with_the_configured_offer(tmp_path: Path) -> None:
    service = EntitlementService(config(tmp_path), Clock())
    service.beat()
    snap = service.snapshot()
    assert snap["contribution"]["storage_bytes"] == 20 * GIB
    assert snap["contribution"]["source"] == "config"
    assert snap["entitlement"] == {"storage_bytes": 4 * GIB, "cpu_millicores": 400}
    assert snap["probation"]["active"] is True
    assert snap["volume_size_bytes"] == 4 * GIB // 5
    assert snap["policy"]["source"] == "built-in defaults"


def test_after_probation_with_downtime_the_entitlement_follows_availability(
    tmp_path: Path,
) -> None:
    clock = Clock(0.0)
    service = EntitlementService(config(tmp_path), clock)
    day = 86400.0
    while clock.now < 40 * day:
        if not 10 * day <= clock.now < 13 * day:  # three days down
            service.history.beat(clock.now, service.policy)
        clock.now += 120.0
    service.beat()
    snap = service.snapshot()
    assert snap["probation"]["active"] is False
    assert snap["availability"] == pytest.approx(27 / 30, abs=1e-4)
    assert snap["entitlement"]["storage_bytes"] == pytest.approx(0.4 * 0.9 * 20 * GIB, rel=1e-4)


def test_a_changed_offer_survives_a_restart_and_a_preview_changes_nothing(
    tmp_path: Path,
) -> None:
    clock = Clock()
    service = EntitlementService(config(tmp_path), clock)
    preview = service.preview({"storage_bytes": 50 * GIB})
    assert preview["entitlement"]["storage_bytes"] == 10 * GIB
    assert service.snapshot()["contribution"]["storage_bytes"] == 20 * GIB
    service.set_offer({"storage_bytes": 50 * GIB})
    again = EntitlementService(config(tmp_path), clock)
    assert again.snapshot()["contribution"] | {"source": "x"} == {
        "storage_bytes": 50 * GIB, "cpu_millicores": 2000, "leased_bytes": None,
        "audited_bytes": None, "verified_storage_bytes": 50 * GIB, "source": "x",
        "capacity_bytes": None, "measured_at": None,
    }  # fmt: skip
    assert again.source == "changed"


def test_a_measurement_without_a_changed_offer_keeps_following_the_config(
    tmp_path: Path,
) -> None:
    service = EntitlementService(config(tmp_path), Clock())
    report = {"capacity_bytes": 40 * GIB, "leased_bytes": 10 * GIB, "audited_bytes": 5 * GIB}
    service.set_measured(measured_report(report))
    again = EntitlementService(config(tmp_path, storage="30 GiB"), Clock())
    c = again.snapshot()["contribution"]
    assert c["storage_bytes"] == 30 * GIB and c["capacity_bytes"] == 40 * GIB
    assert c["verified_storage_bytes"] == 25 * GIB
    assert c["measured_at"] == 1_000_000.0


def test_the_entitlement_follows_the_measured_contribution(tmp_path: Path) -> None:
    clock = Clock()
    service = EntitlementService(config(tmp_path), clock)  # offers 20 GiB, new: x 2/5 x 1/2
    service.beat()
    assert service.snapshot()["entitlement"]["storage_bytes"] == 4 * GIB
    report = {"capacity_bytes": 5 * GIB, "leased_bytes": 0, "audited_bytes": None}
    snap = service.set_measured(measured_report(report))
    assert snap["contribution"]["verified_storage_bytes"] == 5 * GIB
    assert snap["entitlement"]["storage_bytes"] == GIB
    report = {"capacity_bytes": 5 * GIB, "leased_bytes": 4 * GIB, "audited_bytes": 2 * GIB}
    snap = service.set_measured(measured_report(report))
    assert snap["entitlement"]["storage_bytes"] == 3 * GIB * 2 // 10


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        None,
        {},
        {"leased_bytes": 1},  # no capacity
        {"capacity_bytes": 1},  # no leased
        {"capacity_bytes": 1, "leased_bytes": 1, "extra": 1},
        {"capacity_bytes": -1, "leased_bytes": 0},
        {"capacity_bytes": 1, "leased_bytes": -5},
        {"capacity_bytes": 2**63, "leased_bytes": 0},
        {"capacity_bytes": 10**40, "leased_bytes": 0},
        {"capacity_bytes": 1.5, "leased_bytes": 0},
        {"capacity_bytes": True, "leased_bytes": 0},
        {"capacity_bytes": "1", "leased_bytes": 0},
        {"capacity_bytes": None, "leased_bytes": 0},
        {"capacity_bytes": 10, "leased_bytes": 5, "audited_bytes": 6},  # audits vouch for more
        {"capacity_bytes": 10, "leased_bytes": 5, "audited_bytes": -1},
        {"capacity_bytes": 10, "leased_bytes": 5, "audited_bytes": [5]},
        {"k" * 10000: 1},
    ],
)
def test_bad_measured_reports_are_refused(body: object) -> None:
    with pytest.raises(ContributionError):
        measured_report(body)


def test_a_measured_report_may_leave_audits_out() -> None:
    got = measured_report({"capacity_bytes": 10, "leased_bytes": 5})
    assert got == {"capacity_bytes": 10, "leased_bytes": 5, "audited_bytes": None}


@pytest.mark.parametrize("name", ["uptime.json", "contribution.json"])
@pytest.mark.parametrize(
    "junk",
    [b"\xff\x00", b"{}", b'{"format": "truecloud-contribution/1", "source": "changed"}'],
)
def test_damaged_state_files_are_set_aside(tmp_path: Path, name: str, junk: bytes) -> None:
    (tmp_path / name).write_bytes(junk)
    service = EntitlementService(config(tmp_path), Clock())
    assert service.snapshot()["contribution"]["storage_bytes"] == 20 * GIB
    assert (tmp_path / f"{name}.damaged").read_bytes() == junk


def test_a_signed_policy_is_applied_and_a_rollback_refused_after_restart(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_bytes(signed(5, probation_factor=1.0))
    service = EntitlementService(config(tmp_path), Clock())
    snap = service.snapshot()
    assert snap["policy"]["version"] == 5 and snap["policy"]["problem"] is None
    assert snap["entitlement"]["storage_bytes"] == 8 * GIB
    (tmp_path / "policy.json").write_bytes(signed(4))
    again = EntitlementService(config(tmp_path), Clock())
    state = again.policy_file.state
    assert state.version == 5 and "older" in str(state.problem)


@pytest.mark.parametrize(
    "data",
    [signed(2, signers=[]), signed(2, signers=[KEYS[0]]), signed(2, signers=[KEYS[2], KEYS[0]])],
)
def test_unsigned_or_untrusted_policies_are_refused(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "policy.json").write_bytes(data)
    state = EntitlementService(config(tmp_path), Clock()).policy_file.state
    assert state.version is None and state.policy == DEFAULT
    assert "refused" in str(state.problem)


def test_a_forged_policy_is_refused(tmp_path: Path) -> None:
    doc = json.loads(signed(3))
    doc["policy"]["entitlement_ratio"] = 0.5
    (tmp_path / "policy.json").write_text(json.dumps(doc))
    state = EntitlementService(config(tmp_path), Clock()).policy_file.state
    assert state.version is None and "forged or altered" in str(state.problem)


def test_without_trusted_keys_a_document_is_ignored_with_a_problem(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_bytes(signed(3))
    state = EntitlementService(config(tmp_path, keys=0), Clock()).policy_file.state
    assert state.version is None and "no trusted policy keys" in str(state.problem)


def test_a_new_document_is_kept_on_refresh_and_applied_at_the_next_start(
    tmp_path: Path,
) -> None:
    service = EntitlementService(config(tmp_path), Clock())
    assert service.policy_file.state.version is None
    (tmp_path / "policy.json").write_bytes(signed(9, entitlement_ratio=0.5))
    assert service.policy_file.refresh().version == 9
    assert service.policy.entitlement_ratio == 0.4  # the daemon runs with what it started with
    assert "restart rms to apply it" in str(service.policy_file.problem())
    shown = service.snapshot()["policy"]
    assert shown["version"] is None and shown["accepted"] == 9
    again = EntitlementService(config(tmp_path), Clock())
    assert again.policy.entitlement_ratio == 0.5 and again.policy_file.problem() is None


@pytest.mark.parametrize(
    ("keys", "threshold"),
    [(("ab" * 32, "AB" * 32), 2), (("zz" * 32,), 1), (("ab" * 32,), 2), (("ab" * 31,), 1)],
)
def test_bad_policy_trust_in_the_config_is_refused(keys: tuple[str, ...], threshold: int) -> None:
    with pytest.raises(ConfigError):
        PolicySection(keys=keys, threshold=threshold)


def test_contribution_section_refuses_bad_sizes() -> None:
    for storage, cpu in (("lots", 1.0), ("-1 GiB", 1.0), ("1 GiB", -1.0), ("1 GiB", 5000.0)):
        with pytest.raises(ConfigError):
            ContributionSection(storage=storage, cpu=cpu)
