"""One call that gives the daemon its entitlement, ledger and audit services (issue 6)."""

from __future__ import annotations

from rms.audit.service import AuditService
from rms.audit.service import attach as attach_audits
from rms.config import Config
from rms.daemon import Daemon
from rms.entitlement.control import attach as attach_entitlement
from rms.entitlement.service import EntitlementService
from rms.identity import NodeIdentity
from rms.ledger.store import LedgerStore
from rms.ledger.store import attach as attach_ledger


def attach_accounting(config: Config, identity: NodeIdentity, daemon: Daemon) -> AuditService:
    """Entitlement (status, routes, heartbeats), the ledger and the audits, in the daemon."""
    state_dir = config.node.state_dir
    entitlement = EntitlementService(config, policy_file=daemon.policy_file)
    attach_entitlement(entitlement, daemon)
    attach_ledger(LedgerStore(state_dir, identity, load=False), daemon)
    audits = AuditService(state_dir, identity, entitlement)
    attach_audits(audits, daemon)
    return audits  # the DHT, when it runs, publishes and fetches its reports
