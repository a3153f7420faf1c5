"""Cloud-wide constants in one place (DESIGN.md: "one signed policy document").

Every node must agree on these, so they are not configuration: the values here are the
defaults of the policy document, which the entitlement issue turns into a document signed by
the cloud's policy keys and verified by every node. Until then every node uses `DEFAULT`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules every node applies the same way."""

    # Management VPNs (seed: "enforce cloud policies around ... VPN size and constitution").
    vpn_capacity: int = 8  # members per management VPN
    vpn_target: int = 2  # VPNs a node tries to belong to
    vpn_min: int = 1
    vpn_max: int = 4
    max_members_per_network: int = 3  # per network-endpoint UUID in one VPN
    max_members_per_location: int = 4  # per geographic-location UUID in one VPN

    # Guest admission.
    guest_slot_timeout_s: float = 20.0  # a guest holding the slot longer is cut off
    guest_attempts_per_minute: int = 30  # admission attempts a guardian serves per minute
    guest_backoff_initial_s: float = 0.5  # a newcomer that finds the slot busy waits this,
    guest_backoff_max_s: float = 8.0  # doubling up to this, with jitter

    # Discovery records and rosters.
    record_ttl_s: float = 600.0  # a VPN record expires unless its guardian republishes it
    record_republish_s: float = 120.0
    member_expiry_s: float = 300.0  # a member not heard from for this long leaves the roster
    member_heartbeat_s: float = 30.0
    member_probation_s: float = 90.0  # a member added while a guardian runs must speak by then

    # The cloud-wide DHT (docs/dht.md).
    dht_puzzle_bits: int = 8  # S/Kademlia static puzzle: zero bits of SHA-256(node_id)
    dht_record_ttl_s: float = 3600.0  # lifetime a publisher signs into its records
    dht_republish_s: float = 1800.0  # a publisher re-signs and re-stores this often
    dht_max_record_ttl_s: float = 86400.0  # a store refuses records expiring later than this

    # Entitlement (seed: "probably between one third and a half").
    entitlement_ratio: float = 0.4
    probation_s: float = 30 * 86400.0  # a new node's first 30 days (docs/entitlement.md)
    probation_factor: float = 0.5  # entitlement is scaled by this during probation
    availability_window_s: float = 30 * 86400.0  # uptime history the availability looks at
    uptime_heartbeat_s: float = 60.0  # the daemon records it is up this often
    uptime_gap_s: float = 180.0  # a longer silence between two heartbeats is downtime

    # Audits and reputation (docs/accounting.md).
    audit_min_reporters: int = 2  # independent auditors before a provider is warned
    audit_half_life_s: float = 7 * 86400.0  # audit evidence loses half its weight this fast
    audit_grace_s: float = 3 * 86400.0  # a warned owner has this long to repair
    audit_penalty_score: float = 0.5  # below this (corroborated) reputation, a penalty applies
    audit_penalty_factor: float = 0.5  # entitlement and placement weight while penalised

    # Broadcast of resource requests (docs/broadcast.md).
    gossip_max_hops: int = 16  # receivers clamp any hop count to this
    gossip_max_age_s: float = 60.0  # a request older than this is neither delivered nor sent on
    gossip_max_request_bytes: int = 2048  # one signed request, envelope included
    gossip_requests_per_s: float = 0.5  # per requester key, refilled continuously
    gossip_request_burst: int = 10  # a requester's bucket holds this many requests
    gossip_peer_checks_per_s: float = 500.0  # signature checks a neighbour may cost us
    gossip_peer_check_burst: int = 2000
    gossip_dedupe_capacity: int = 65536  # request digests remembered (about 6 MB)
    gossip_rate_table_capacity: int = 16384  # requester buckets kept

    def __post_init__(self) -> None:
        if not 1 <= self.vpn_min <= self.vpn_target <= self.vpn_max:
            raise ValueError("policy needs 1 <= vpn_min <= vpn_target <= vpn_max")
        if self.vpn_capacity < 2:
            raise ValueError("a management VPN must hold at least 2 members")
        if not 1 / 3 <= self.entitlement_ratio <= 1 / 2:
            raise ValueError("entitlement_ratio must lie in [1/3, 1/2]")
        for name in ("probation_factor", "audit_penalty_score", "audit_penalty_factor"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")
        if self.audit_min_reporters < 2:
            raise ValueError("audit_min_reporters must be at least 2 (corroboration)")
        if not 0 < self.member_heartbeat_s < self.member_probation_s <= self.member_expiry_s:
            raise ValueError("policy needs 0 < member_heartbeat_s < probation <= expiry")
        if not 0 < self.uptime_heartbeat_s < self.uptime_gap_s <= self.availability_window_s:
            raise ValueError("policy needs 0 < uptime_heartbeat_s < uptime_gap_s <= window")


DEFAULT = Policy()
