"""The scrub audit core: when rounds start, what a finished scrub says of each provider."""

from __future__ import annotations

import pytest

from cfs.scrub import FORMAT, Member, ScrubRounds, error_count, provider_key
from cfs.zfs.status import PoolStatus, parse_status
from rms.audit import report as rep
from rms.identity import NodeIdentity

HOUR = 3600.0
T0 = 1_800_000_000.0
MEMBERS = [Member(f"{i:02x}" * 32, f"lease-{i}", f"/run/cfs/v{i}") for i in range(8)]
ALLOCATED = 8 * 40 * 128 * 1024  # 40 records on each device


def status(scan: str, cksum: dict[int, str] | None = None, state: str = "ONLINE") -> PoolStatus:
    rows = "\n".join(
        f"\t    {m.device}  {state if i == 0 else 'ONLINE'}  0  0  {(cksum or {}).get(i, '0')}"
        for i, m in enumerate(MEMBERS)
    )
    return parse_status(
        f"  pool: cfs\n state: ONLINE\n scrub: {scan}\nconfig:\n\n"
        f"\tNAME  STATE  READ WRITE CKSUM\n\tcfs  ONLINE  0  0  0\n"
        f"\t  raidz3-0  ONLINE  0  0  0\n{rows}\n\nerrors: No known data errors\n"
    )


IDLE = "none requested"
RUNNING = "scrub in progress, 12.50% done, 0h0m to go"
DONE = "scrub completed after 0h0m with 0 errors on Sat Nov 21 22:03:43 2026"
RESILVER = "resilver in progress, 40.00% done, 0h1m to go"


def test_error_counts_read_as_zpool_prints_them() -> None:
    assert [error_count(t) for t in ("0", "12", "1.50K", "2M")] == [0, 12, 1536, 2 << 20]
    assert error_count("-") is None and error_count("1e5") is None and error_count("") is None


def test_a_round_starts_when_due_and_the_dropper_alone_fails() -> None:
    rounds = ScrubRounds(HOUR, T0)
    assert rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + 10) == (False, [])
    start, found = rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + HOUR)
    assert start and found == []
    assert rounds.step(status(RUNNING), MEMBERS, ALLOCATED, T0 + HOUR + 10) == (False, [])
    start, found = rounds.step(status(DONE, {3: "7"}), MEMBERS, ALLOCATED, T0 + HOUR + 20)
    assert not start and len(found) == 8 and rounds.rounds == 1
    by_lease = {f.lease: f for f in found}
    assert by_lease["lease-3"].failed == 7 and by_lease["lease-3"].checked == 40
    assert all(f.failed == 0 and f.checked == 40 for f in found if f.lease != "lease-3")
    assert {f.round for f in found} == {int(T0 + HOUR + 20)}
    assert rounds.next_timer() == T0 + 2 * HOUR + 20


def test_only_new_errors_count_and_a_clear_resets_the_baseline() -> None:
    rounds = ScrubRounds(HOUR, T0)
    now = T0 + HOUR
    rounds.step(status(IDLE, {3: "5"}), MEMBERS, ALLOCATED, now)  # 5 errors before we began
    _, found = rounds.step(status(DONE, {3: "9"}), MEMBERS, ALLOCATED, now + 5)
    assert next(f.failed for f in found if f.lease == "lease-3") == 4
    now += 2 * HOUR
    assert rounds.step(status(IDLE, {3: "9"}), MEMBERS, ALLOCATED, now)[0]
    _, found = rounds.step(status(DONE, {3: "9"}), MEMBERS, ALLOCATED, now + 5)
    assert all(f.failed == 0 for f in found)  # repaired by the last scrub, nothing new
    now += 2 * HOUR
    assert rounds.step(status(IDLE, {3: "2"}), MEMBERS, ALLOCATED, now)[0]  # cleared since
    _, found = rounds.step(status(DONE, {3: "2"}), MEMBERS, ALLOCATED, now + 5)
    assert next(f.failed for f in found if f.lease == "lease-3") == 2


@pytest.mark.parametrize("scan", [RUNNING, RESILVER])
def test_no_round_starts_over_a_scan_or_with_a_volume_missing(scan: str) -> None:
    rounds = ScrubRounds(HOUR, T0)
    assert rounds.step(status(scan), MEMBERS, ALLOCATED, T0 + HOUR) == (False, [])
    assert rounds.step(status(IDLE), MEMBERS[:7], ALLOCATED, T0 + HOUR) == (False, [])
    assert rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + HOUR)[0]


def test_a_scrub_that_never_ends_or_turns_into_a_resilver_is_given_up() -> None:
    rounds = ScrubRounds(HOUR, T0, max_scrub_s=600)
    assert rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + HOUR)[0]
    assert rounds.step(status(RESILVER), MEMBERS, ALLOCATED, T0 + HOUR + 30) == (False, [])
    assert rounds.step(status(RESILVER), MEMBERS, ALLOCATED, T0 + HOUR + 601) == (False, [])
    assert rounds.started is None and rounds.rounds == 0
    assert rounds.next_timer() == T0 + 2 * HOUR + 601


def test_a_refused_scrub_is_tried_again_soon() -> None:
    rounds = ScrubRounds(HOUR, T0)
    assert rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + HOUR)[0]
    rounds.scrub_failed(T0 + HOUR)
    assert rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + HOUR + 30) == (False, [])
    assert rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + HOUR + 60)[0]


def test_a_device_gone_meanwhile_gets_no_verdict_and_checked_has_a_floor() -> None:
    rounds = ScrubRounds(HOUR, T0)
    rounds.step(status(IDLE), MEMBERS, 0, T0 + HOUR)
    moved = [*MEMBERS[:7], Member("ff" * 32, "lease-new", "/run/cfs/elsewhere")]
    _, found = rounds.step(status(DONE), moved, 0, T0 + HOUR + 5)
    assert len(found) == 7 and all(f.checked == 1 for f in found)


def test_a_finding_is_a_body_the_node_signs_as_it_is() -> None:
    auditor, provider = NodeIdentity.from_seed(b"\x01" * 32), NodeIdentity.from_seed(b"\x02" * 32)
    rounds = ScrubRounds(HOUR, T0)
    rounds.step(status(IDLE), MEMBERS, ALLOCATED, T0 + HOUR)
    _, found = rounds.step(status(DONE, {0: "3"}), MEMBERS, ALLOCATED, T0 + HOUR + 5)
    body = found[0].body(auditor.public_key, provider.public_key)
    assert body["format"] == FORMAT == rep.FORMAT
    checked = rep.check(rep.sign_report(body, auditor), T0 + HOUR + 5)
    assert checked.kind == "scrub" and checked.failed == 3 and not checked.passed
    with pytest.raises(ValueError, match="positive"):
        ScrubRounds(0, T0)


def test_a_provider_key_is_taken_only_when_it_is_the_key_of_the_id() -> None:
    node = NodeIdentity.from_seed(b"\x03" * 32)
    other = NodeIdentity.from_seed(b"\x04" * 32)
    node_id, key = node.node_id_hex, node.public_key
    assert provider_key(node_id, {"found": True, "public_key": key.hex()}) == key
    for answer in (
        {"public_key": other.public_key.hex()},  # forged: another node's key
        {"public_key": None},  # not found
        {"public_key": "zz" * 32},  # malformed
        {"public_key": key.hex() * 100},  # oversized
        [key.hex()],
        None,
    ):
        assert provider_key(node_id, answer) is None
