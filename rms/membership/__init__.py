"""VPN membership: the signed roster, which version a node holds, and its replication.

Sans-IO throughout (docs/admission.md, "The roster" and "Replication"): `roster` (the
values), `document` (signing and verifying versions), `ledger` (which version is held),
`issuer` (a guardian signs new versions; `found_roster` makes a VPN's first), `liveness`
(a guardian's last-heard times) and `sync` (the replication core). The asyncio adapter for
member-to-member RPC is `rms.membership.service`, which this package does not import.
"""
