"""Entitlement arithmetic, exact and pure: E = ratio x verified contribution x availability.

Seed 002: "The RMS will calculate the user's cloud storage entitlement based on their
contribution (probably between one third and a half allowing for system overheads and
outages)". Every figure is an int of bytes or millicores and every factor an exact Fraction,
so a 1 EiB contribution computes as exactly as a 1 KiB one and two nodes always agree on the
last byte. Nothing here reads the clock: `now` is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import floor

from rms.policy import Policy

MAX_AMOUNT = 2**63 - 1  # bytes or millicores: what a signed 64-bit counter holds


class ContributionError(ValueError):
    """A contribution figure that cannot be used (negative, too large, not an int)."""


def _amount(name: str, value: object) -> int:
    if type(value) is not int:
        raise ContributionError(f"{name} must be a whole number, not {type(value).__name__}")
    if not 0 <= value <= MAX_AMOUNT:
        raise ContributionError(f"{name} must lie in [0, 2**63 - 1]")
    return value


@dataclass(frozen=True, slots=True)
class Contribution:
    """What a node gives: storage offered, what the Volume Provider measures of it (the
    capacity it really has room for, the part leased, the leased part passing audits), and
    CPU offered. The measured figures are None until the provider reports them
    (docs/entitlement.md, "Contribution inputs"); `audited_bytes` stays None while no audit
    result is known."""

    storage_bytes: int = 0
    cpu_millicores: int = 0
    leased_bytes: int | None = None
    audited_bytes: int | None = None
    capacity_bytes: int | None = None

    def __post_init__(self) -> None:
        _amount("storage_bytes", self.storage_bytes)
        _amount("cpu_millicores", self.cpu_millicores)
        for name in ("leased_bytes", "audited_bytes", "capacity_bytes"):
            value = getattr(self, name)
            if value is not None:
                _amount(name, value)

    @property
    def measured(self) -> bool:
        """Whether the provider has reported what it really offers."""
        return self.capacity_bytes is not None or self.leased_bytes is not None

    def verified_storage(self) -> int:
        """Bytes that count: the lower of the offer and the capacity the provider really has,
        less the leased part, plus the leased bytes that pass audits.

        Free room the provider really has is available to the cloud, so it counts; leased
        space counts where audits vouch for it (all of it while no audit result is known: a
        failing provider loses entitlement through its reputation, docs/accounting.md).
        Reports larger than what they are part of are clamped to it.
        """
        offered = self.storage_bytes
        if self.capacity_bytes is not None:
            offered = min(offered, self.capacity_bytes)
        if self.leased_bytes is None:
            return offered
        leased = min(self.leased_bytes, offered)
        audited = leased if self.audited_bytes is None else min(self.audited_bytes, leased)
        return offered - leased + audited


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The result, with every factor that went into it so a person can check it."""

    storage_bytes: int
    cpu_millicores: int
    verified_storage_bytes: int
    ratio: Fraction
    availability: Fraction
    probation: bool
    probation_left_s: float
    factor: Fraction  # probation x reputation penalty

    def as_json(self) -> dict[str, object]:
        """Plain JSON: ints stay ints, fractions become rounded floats."""
        return {
            "storage_bytes": self.storage_bytes,
            "cpu_millicores": self.cpu_millicores,
            "verified_storage_bytes": self.verified_storage_bytes,
            "ratio": round(float(self.ratio), 6),
            "availability": round(float(self.availability), 6),
            "probation": self.probation,
            "probation_left_s": round(self.probation_left_s, 1),
            "factor": round(float(self.factor), 6),
        }


def exact(value: float) -> Fraction:
    """A policy float as the decimal a person wrote (0.4 is 2/5, not its binary neighbour)."""
    return Fraction(repr(float(value)))


def probation_left(policy: Policy, first_seen: float | None, now: float) -> float:
    """Seconds of probation left for a node first seen at `first_seen` (None: not yet seen)."""
    if first_seen is None:
        return policy.probation_s
    return max(0.0, min(policy.probation_s, first_seen + policy.probation_s - now))


def scaled(amount: int, factor: Fraction) -> int:
    """floor(amount x factor), exactly, never below zero or above the amount's range."""
    if factor <= 0 or amount == 0:
        return 0
    return min(MAX_AMOUNT, floor(amount * factor))


def entitlement(
    policy: Policy,
    contribution: Contribution,
    availability: Fraction,
    *,
    first_seen: float | None,
    now: float,
    reputation_factor: Fraction = Fraction(1),
) -> Entitlement:
    """Storage and processing entitlement as the policy gives them (DESIGN.md)."""
    if not 0 <= availability <= 1:
        raise ContributionError("availability must lie in [0, 1]")
    if not 0 <= reputation_factor <= 1:
        raise ContributionError("reputation_factor must lie in [0, 1]")
    left = probation_left(policy, first_seen, now)
    factor = reputation_factor * (exact(policy.probation_factor) if left > 0 else 1)
    ratio = exact(policy.entitlement_ratio)
    common = ratio * availability * factor
    verified = contribution.verified_storage()
    return Entitlement(
        storage_bytes=scaled(verified, common),
        cpu_millicores=scaled(contribution.cpu_millicores, common),
        verified_storage_bytes=verified,
        ratio=ratio,
        availability=availability,
        probation=left > 0,
        probation_left_s=left,
        factor=factor,
    )


def volume_size(policy_entitlement: int, data_columns: int = 5) -> int:
    """The size of each of the CFS's 8 volumes: E/5, so RAIDZ3 over 8 gives E usable."""
    return policy_entitlement // data_columns


_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5}
_UNITS |= {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4, "PB": 1000**5}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50, "EIB": 2**60}


def parse_size(text: str) -> int:
    """'20 GiB', '500GB', '1.5 TiB', '4096' -> bytes; ContributionError when it is not one."""
    cleaned = text.strip().upper().replace("_", "")
    if not cleaned or len(cleaned) > 40:
        raise ContributionError(f"{text[:40]!r} is not a size like '20 GiB'")
    number = cleaned.rstrip("KMGTPEIB ")
    unit = cleaned[len(number) :].strip()
    if unit not in _UNITS:
        raise ContributionError(f"unknown unit {unit!r} in {text!r} (use B, GB, GiB, TiB …)")
    try:
        value = Fraction(number.strip())
    except (ValueError, ZeroDivisionError):
        raise ContributionError(f"{text!r} is not a size like '20 GiB'") from None
    return _amount("size", floor(value * _UNITS[unit]))


def parse_offer(storage: str, cpu: str | None) -> dict[str, int]:
    """A person's offer ('20 GiB', '1.5' cores) as the control API's body; ContributionError
    when either is not a size or a number of cores in [0, 4096]."""
    offer = {"storage_bytes": parse_size(storage)}
    if cpu is not None:
        try:
            cores = Fraction(cpu.strip())
        except (ValueError, ZeroDivisionError):
            raise ContributionError(f"{cpu[:40]!r} is not a number of CPU cores") from None
        if not 0 <= cores <= 4096:
            raise ContributionError("CPU cores must lie between 0 and 4096")
        offer["cpu_millicores"] = floor(cores * 1000)
    return offer


def format_size(amount: int) -> str:
    """Bytes as a short binary-unit string, e.g. 21474836480 -> '20.0 GiB'."""
    if amount < 1024:
        return f"{amount} B"
    exponent = min(6, (amount.bit_length() - 1) // 10)
    unit = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")[exponent]
    return f"{amount / 1024**exponent:.1f} {unit}"
