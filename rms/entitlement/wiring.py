"""One call that gives the daemon its entitlement, ledger and audit services (issue 6)."""

from __future__ import annotations

from rms.config import Config
from rms.daemon import Daemon
from rms.entitlement.control import attach as attach_entitlement
from rms.entitlement.service import EntitlementService
from rms.identity import NodeIdentity
from rms.ledger.control import attach as attach_ledger
from rms.ledger.store import LedgerStore


def attach_accounting(config: Config, identity: NodeIdentity, daemon: Daemon) -> None:
    """Entitlement (status, routes, heartbeats) and the ledger, wired into the daemon."""
    entitlement = EntitlementService(config)
    attach_entitlement(entitlement, daemon)
    attach_ledger(LedgerStore(config.node.state_dir, identity), daemon)
