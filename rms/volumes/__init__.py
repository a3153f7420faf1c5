"""The remote volume protocol, shared by the Volume Provider and the CFS (docs/volumes.md).

Sans-IO library: `ProviderCore` (offers, claims, leases, expiry, capacity) and `ClientCore`
(claim, verify a grant, renew, release), the terms that ride in the broadcast, and the
addressing of a volume's nested VPN. The services import it; the RMS only relays terms.
"""

from rms.volumes.client import (
    ClientCore,
    ClientEvent,
    ClientLease,
    Granted,
    PendingClaim,
    Refused,
    Rejected,
    Released,
    Renewed,
)
from rms.volumes.grants import GrantSecrets, open_secrets, seal_secrets
from rms.volumes.leases import Action, Export, Lease, ProviderSettings, Reason, Unexport
from rms.volumes.provider import Outcome, ProviderCore
from rms.volumes.terms import (
    ISCSI_PORT,
    VOLUME_PORT,
    Offer,
    OfferTerms,
    RequestTerms,
    StorageRequest,
    inner_addresses,
    iqn_for,
    pick_endpoint,
    volume_prefix,
)
from rms.volumes.wire import MAX_MESSAGE

__all__ = [
    "ISCSI_PORT",
    "MAX_MESSAGE",
    "VOLUME_PORT",
    "Action",
    "ClientCore",
    "ClientEvent",
    "ClientLease",
    "Export",
    "Granted",
    "GrantSecrets",
    "Lease",
    "Offer",
    "OfferTerms",
    "Outcome",
    "PendingClaim",
    "ProviderCore",
    "ProviderSettings",
    "Reason",
    "Refused",
    "Rejected",
    "Released",
    "Renewed",
    "RequestTerms",
    "StorageRequest",
    "Unexport",
    "inner_addresses",
    "iqn_for",
    "open_secrets",
    "pick_endpoint",
    "seal_secrets",
    "volume_prefix",
]
