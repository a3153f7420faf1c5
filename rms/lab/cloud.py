"""What makes the lab a cloud: names, trust, and each host's configuration file.

Every lab host sees the lab's hosts file as /etc/hosts: the discovery feed's well-known name
resolves to every mirror (a client tries them in turn, as it would a name with several A
records), and each host has its own name. The lab's certificate authority signs each
mirror's HTTPS certificate; nodes trust only that CA for the feed.

Nodes get diverse localities so that guardians' placement rules have something to work on:
node k is in location `lab-location-((k-1) mod L)` and network `lab-network-((k-1) mod N)`,
L = 4 and N = 6 unless `rms lab up --locations L --networks N` says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rms.lab.ca import LabCA
from rms.lab.layout import MIRROR, LabPaths, NodePlan, discovery_name
from rms.lab.library import build_library, copy_published, trusted_root
from rms.lab.storage import write_storage_files
from rms.lab.system import LabUsageError

LOCATIONS = 4
NETWORKS = 6
MAX_DIVERSITY = 1000
MIRROR_PORT = 443
# Paths as a host sees them inside its own mount namespace (/var/lib/rms is its state dir).
HOST_STATE = Path("/var/lib/rms")
NODE_CONFIG = HOST_STATE / "rms.toml"
MIRROR_CONFIG = HOST_STATE / "mirror.toml"
CA_CERT = HOST_STATE / "lab-ca.pem"
LIBRARY_ROOT = HOST_STATE / "library-root.json"  # a node's shipped trust anchor (updates.md)
LIBRARY_COPY = HOST_STATE / "library"  # a mirror's copy of the component library
TLS_NAME = "tls"
ANTI_ENTROPY_S = 10.0


@dataclass(frozen=True)
class Diversity:
    """How many locations and networks the lab's nodes are spread over (round robin)."""

    locations: int = LOCATIONS
    networks: int = NETWORKS

    def __post_init__(self) -> None:
        for value in (self.locations, self.networks):
            if not 1 <= value <= MAX_DIVERSITY:
                raise LabUsageError(f"--locations and --networks take 1 to {MAX_DIVERSITY}")


def host_name(paths: LabPaths, host: str) -> str:
    """A lab host's own name."""
    return f"{host}.{paths.name}.test"


def feed_url(paths: LabPaths) -> str:
    """The discovery feed's URL at its well-known name."""
    return f"https://{discovery_name(paths.name)}/feed.rss"


def hosts_text(paths: LabPaths, hosts: Sequence[NodePlan]) -> str:
    """/etc/hosts for every lab host."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for h in hosts:
        lines.append(f"{h.address.ip}\t{host_name(paths, h.name)} {h.name}")
        lines.append(f"{h.address6.ip}\t{host_name(paths, h.name)} {h.name}")
    for h in hosts:
        if h.kind == MIRROR:
            lines.append(f"{h.address.ip}\t{discovery_name(paths.name)}")
    return "\n".join(lines) + "\n"


def toml_list(items: Sequence[str]) -> str:
    """A TOML array of strings (JSON's string escapes are valid TOML basic strings)."""
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def node_config(paths: LabPaths, node: NodePlan, spread: Diversity = Diversity()) -> str:
    """The rms.toml of a lab node."""
    ips = [str(node.address.ip), str(node.address6.ip)]
    return (
        "[vpn]\n"
        f"public_ips = {toml_list(ips)}\n"
        f'location = "lab-location-{(node.index - 1) % spread.locations}"\n'
        f'network = "lab-network-{(node.index - 1) % spread.networks}"\n'
        "\n[discovery]\n"
        f"urls = {toml_list([feed_url(paths)])}\n"
        f'ca_file = "{CA_CERT}"\n'
        "\n[contribution]\n"  # node N offers N x 10 GiB: each ends with its own entitlement
        f'storage = "{10 * node.index} GiB"\n'
        "cpu = 1.0\n"
        "\n[update]\n"
        f'trusted_root = "{LIBRARY_ROOT}"\n'
    )


def mirror_config(paths: LabPaths, mirror: NodePlan, mirrors: Sequence[NodePlan]) -> str:
    """The vpn-discovery.toml of a lab mirror: HTTPS at the well-known name, the others as peers."""
    peers = [f"https://{host_name(paths, m.name)}" for m in mirrors if m.name != mirror.name]
    return (
        "[server]\n"
        'listen = ["0.0.0.0", "::"]\n'
        f"port = {MIRROR_PORT}\n"
        f'cert_file = "{HOST_STATE / TLS_NAME}.pem"\n'
        f'key_file = "{HOST_STATE / TLS_NAME}.key"\n'
        f'public_url = "{feed_url(paths)}"\n'
        "\n[store]\n"
        f'state_file = "{HOST_STATE / "records.msgpack"}"\n'
        "\n[peers]\n"
        f"urls = {toml_list(peers)}\n"
        f'ca_file = "{HOST_STATE / "ca.pem"}"\n'
        f"anti_entropy_s = {ANTI_ENTROPY_S}\n"
        "\n[log]\n"
        'format = "json"\n'
        "\n[library]\n"
        f'directory = "{LIBRARY_COPY}"\n'
    )


def write_trust(paths: LabPaths, hosts: Sequence[NodePlan], spread: Diversity) -> None:
    """Make the lab CA, then every host's certificate or trust file, config and /etc/hosts."""
    ca = LabCA.create(f"True Cloud lab {paths.name} CA")
    ca.save(paths.ca_dir)
    paths.ca_dir.chmod(0o700)
    write_hosts(paths, hosts)
    build_library(paths)
    mirrors = [h for h in hosts if h.kind == MIRROR]
    for host in hosts:
        write_host_files(paths, host, mirrors, ca, spread)


def write_hosts(paths: LabPaths, hosts: Sequence[NodePlan]) -> None:
    """(Re)write the lab's hosts file in place: every host's bind of it sees the change."""
    paths.hosts_file.write_text(hosts_text(paths, hosts))


def write_host_files(
    paths: LabPaths,
    host: NodePlan,
    mirrors: Sequence[NodePlan],
    ca: LabCA,
    spread: Diversity,
) -> None:
    """A mirror's certificate and config, or a node's CA certificate and config."""
    state = paths.node_state_dir(host.name)
    if host.kind == MIRROR:
        names = [discovery_name(paths.name), host_name(paths, host.name)]
        ca.write_server(state, TLS_NAME, names, [str(host.address.ip), str(host.address6.ip)])
        (state / MIRROR_CONFIG.name).write_text(mirror_config(paths, host, mirrors))
        copy_published(paths, state / LIBRARY_COPY.name)
    else:
        (state / CA_CERT.name).write_bytes(ca.cert_pem())
        (state / LIBRARY_ROOT.name).write_bytes(trusted_root(paths).read_bytes())
        (state / NODE_CONFIG.name).write_text(node_config(paths, host, spread))
        write_storage_files(state, host, spread.locations, spread.networks)
