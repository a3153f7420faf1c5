"""`rms run`: start the node agent in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog

from rms import servicecli
from rms.audit.publish import attach_publication
from rms.config import Config, load_config
from rms.control.server import ControlSocketError
from rms.daemon import Daemon, DaemonError, StateDirLock, prepare_state_dir
from rms.dht.control import routes as dht_routes
from rms.dht.service import DhtService, VpnView, new_node_seed
from rms.entitlement.state import PolicyFile
from rms.entitlement.wiring import attach_accounting
from rms.gossip.adapter import GossipService
from rms.gossip.control import routes as broadcast_routes
from rms.gossip.core import Gossip
from rms.gossip.events import AnswerReceived, Delivered
from rms.gossip.exchange import Exchange
from rms.gossip.inbox import Inbox
from rms.identity import IdentityError, NodeIdentity, load_or_create
from rms.vpn.manager import VpnManager


def register(sub: Any) -> None:
    """Add `rms run` to the command line."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "run", help="run the node agent in the foreground"
    )
    parser.add_argument("--config", type=Path, help="TOML config file (default /etc/rms/rms.toml)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Load the config and identity, then run the daemon until it is told to stop."""
    errors = (IdentityError, DaemonError, ControlSocketError)
    return servicecli.launch("rms", lambda: load_config(args.config), run_daemon, errors)


def run_daemon(config: Config) -> None:
    """Run one daemon with this config, holding the state directory's lock."""
    prepare_state_dir(config.node.state_dir)
    with StateDirLock(config.node.state_dir):
        policy_file = PolicyFile.from_config(config)  # the signed policy, for every service
        policy = policy_file.start()
        identity = load_or_create(config.node.state_dir, lambda: new_node_seed(policy))
        daemon = Daemon(config, identity, policy_file)
        audits = attach_accounting(config, identity, daemon)
        if config.vpn.enabled:
            broadcast = open_broadcast(identity, daemon)
            vpns = VpnManager(config, identity, policy=daemon.policy, gossip=broadcast)
            vpns.attach(daemon.board)
            daemon.add_service("vpn", vpns.run)
            daemon.add_routes(vpns.routes())
            dht = open_dht(identity, daemon, vpns)
            attach_publication(audits, dht, identity, daemon)  # audit reports in the DHT
        _run(daemon.run())


def open_broadcast(identity: NodeIdentity, daemon: Daemon) -> GossipService:
    """The broadcast of resource requests over the node's VPNs, as a daemon service."""
    core = Gossip(identity, random.SystemRandom(), daemon.policy, now=time.time())
    log = structlog.get_logger("rms.gossip")

    def heard(event: Delivered | AnswerReceived) -> None:
        # Local services (volume-provider, cfs) take them through the exchange's routes.
        if isinstance(event, Delivered):
            log.info("gossip.request", kind=event.request.body.kind, hops_left=event.hops_left)
        else:
            log.info("gossip.answer", request=event.request.body.request_id.hex()[:8])
        exchange.heard(event)

    service = GossipService(core, heard)
    exchange = Exchange(service, Inbox(max_age_s=core.policy.gossip_max_age_s))
    daemon.board.add_section("broadcast", lambda: {**core.status(), **exchange.inbox.status()})
    daemon.add_service("gossip", service.run)
    daemon.add_routes(broadcast_routes(service, exchange.inbox.own_request))
    daemon.add_routes(exchange.routes())
    return service


def open_dht(identity: NodeIdentity, daemon: Daemon, vpns: VpnManager) -> DhtService:
    """The cloud-wide DHT on the node's management addresses, as a daemon service."""

    def views() -> list[VpnView]:
        me, found = identity.public_key, []
        for m in vpns.memberships.values():
            if m.ledger.current is not None:  # a roster is held (always, once started)
                others = tuple(k.node_key for k in m.roster.members if k.node_key != me)
                # The network each member's guardian-signed roster entry lists: its origin
                # for the DHT's per-origin limits (docs/dht.md, "Origins").
                networks = {k.node_key: k.network for k in m.roster.members if k.node_key != me}
                found.append(VpnView(m.vpn_id, str(m.address.ip), others, networks))
        return found

    state_dir = daemon.config.node.state_dir  # the last record seq per key survives restarts
    service = DhtService(identity, views, policy=daemon.policy, state_dir=state_dir)
    daemon.board.add_section("dht", service.status)
    daemon.board.add_check("dht", service.health)
    daemon.add_service("dht", service.run)
    daemon.add_routes(dht_routes(service))
    return service


def _run(main: Coroutine[Any, Any, None]) -> None:
    """The standard asyncio loop: the daemon's netlink I/O (pyroute2's AsyncIPRoute) needs
    AF_NETLINK datagram transports, which uvloop does not offer (docs/architecture.md)."""
    asyncio.run(main)
