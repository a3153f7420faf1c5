"""Protocol cores are sans-IO (STYLE.md 1): no I/O, clock, threads or pickle; no assert on
peer data; and they import no adapter. Every module of the protocol packages is classified
here as a core or an adapter, so a new module has to say which it is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "asyncio", "socket", "ssl", "time", "select", "selectors", "threading", "subprocess",
    "pickle", "marshal", "shelve", "aiohttp", "pyroute2", "urllib",
    "xml",  # XML is read only through defusedxml
}  # fmt: skip

CORES = [
    *(
        f"rms/wire/{m}.py"
        for m in ("__init__", "schema", "registry", "envelope", "decoder", "replay")
    ),
    *(f"rms/wire/messages/{m}.py" for m in ("__init__", "node", "admission", "roster")),
    *(f"rms/wg/{m}.py" for m in ("keys", "model", "changes", "errors", "uapi", "mesh")),
    *(f"rms/discovery/{m}.py" for m in ("record", "fields", "feed")),
    "vpn_discovery/store.py",
    "vpn_discovery/mirror.py",
    *(
        f"rms/admission/{m}.py"
        for m in ("__init__", "events", "fit", "guardian", "keybox", "newcomer", "planner", "slot")
    ),
    *(
        f"rms/membership/{m}.py"
        for m in (
            "__init__",
            "document",
            "events",
            "issuer",
            "ledger",
            "liveness",
            "roster",
            "sync",
        )
    ),
    "rms/net/__init__.py",
    "rms/net/framing.py",
    "rms/policy.py",
    "rms/overlay.py",
    "rms/wire/messages/gossip.py",
    *(
        f"rms/gossip/{m}.py"
        for m in ("__init__", "core", "events", "frames", "limits", "requests", "sim")
    ),
    "rms/gossip/inbox.py",
    *(f"rms/dht/{m}.py" for m in ("__init__", "lookup", "node", "ops", "puzzle", "records")),
    *(f"rms/dht/{m}.py" for m in ("reach", "relay", "routing", "rpc", "server", "store", "types")),
    "rms/wire/messages/dht.py",
    *(f"rms/entitlement/{m}.py" for m in ("__init__", "arithmetic", "availability")),
    "rms/policydoc.py",
    *(f"rms/ledger/{m}.py" for m in ("__init__", "canonical", "receipt", "chain")),
    *(f"rms/audit/{m}.py" for m in ("__init__", "report", "reputation", "dhtrecord")),
    *(f"cfs/{m}.py" for m in ("placement", "lease", "actions", "healing", "status", "scrub")),
    *(f"cfs/{m}.py" for m in ("leasefile", "grantrecord", "spare")),  # issue 5
    "cfs/zfs/status.py",
    "rms/update/__init__.py",
    "rms/update/roles.py",  # the component library's TUF metadata, `now` as an argument
    "rms/wire/messages/volumes.py",
    *(
        f"rms/volumes/{m}.py"
        for m in ("__init__", "client", "grants", "leases", "offers", "provider", "records")
    ),
    *(f"rms/volumes/{m}.py" for m in ("terms", "wire")),
]
ADAPTERS = [
    *(f"cfs/{m}.py" for m in ("service", "rmssource", "attach", "run")),  # issue 5, the CFS
    "cfs/leasestore.py",  # issue 5: the lease file on disk, taking a saved pool back
    "cfs/audit.py",  # issue 6: scrubs the pool, has the node sign and publish the reports
    "rms/dht/adapter.py",
    "rms/dht/service.py",  # the daemon's DHT: sockets per VPN address, control API lookups
    "rms/dht/control.py",
    "rms/dht/sim.py",  # the simulator: times its phases, prints a report
    "rms/dht/swarm.py",  # many real nodes on loopback sockets: tests and bench/dht.py
    "rms/dht/seqfile.py",  # the last record seq per key, in the state directory
    "rms/admission/server.py",
    "rms/admission/client.py",
    *(f"rms/entitlement/{m}.py" for m in ("state", "service", "control")),
    "rms/entitlement/wiring.py",
    "rms/ledger/store.py",
    "rms/audit/service.py",
    "rms/audit/publish.py",  # audit reports put in and fetched from the daemon's DHT
    "rms/membership/service.py",
    "rms/net/streams.py",
    "rms/discovery/__init__.py",  # re-exports the cores; the client is rms.discovery.client
    "rms/discovery/client.py",
    "rms/gossip/adapter.py",
    "rms/gossip/control.py",
    "rms/gossip/exchange.py",  # the long poll, answers and own answers for local services
    *(f"rms/update/{m}.py" for m in ("store", "tool", "repo", "fetcher", "client")),
]
PACKAGES = (
    "rms/wire",
    "rms/admission",
    "rms/membership",
    "rms/net",
    "rms/discovery",
    "rms/gossip",
    "rms/dht",
    "rms/entitlement",
    "rms/ledger",
    "rms/audit",
    "rms/volumes",
    "rms/update",
)
# Library modules a core may use besides other cores: the node key and package roots.
LIBRARIES = {"rms", "rms.identity", "rms.wire", "rms.discovery"}


def runtime_imports(path: Path) -> set[str]:
    """Modules imported outside `if TYPE_CHECKING:` blocks (absolute imports only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for child in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def dotted(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


@pytest.mark.parametrize("core", CORES)
def test_core_imports_no_io_clock_threads_or_pickle(core: str) -> None:
    roots = {name.split(".")[0] for name in runtime_imports(ROOT / core)}
    assert not roots & FORBIDDEN, f"{core} imports {roots & FORBIDDEN}"


@pytest.mark.parametrize("core", CORES)
def test_core_imports_only_cores_and_libraries_of_the_project(core: str) -> None:
    allowed = {dotted(c) for c in CORES} | LIBRARIES
    for name in runtime_imports(ROOT / core):
        if name.split(".")[0] in ("rms", "vpn_discovery"):
            assert name in allowed, f"{core} imports {name}"


@pytest.mark.parametrize("core", CORES)
def test_no_assert_on_peer_data_in_a_core(core: str) -> None:
    tree = ast.parse((ROOT / core).read_text(), filename=core)
    assert not any(isinstance(n, ast.Assert) for n in ast.walk(tree))


def test_every_protocol_module_is_a_core_or_an_adapter() -> None:
    found = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    known = set(CORES) | set(ADAPTERS)
    assert found <= known, f"unclassified: {sorted(found - known)}"
    assert all((ROOT / m).is_file() for m in known)


def test_the_checker_sees_an_io_import_but_not_a_type_only_one(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import asyncio\nfrom time import monotonic\nif TYPE_CHECKING:\n    import socket\n"
    )
    assert runtime_imports(sample) == {"asyncio", "time"}
