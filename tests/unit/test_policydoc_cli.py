"""`rms policy keygen|new|sign|show|verify` end to end on files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rms.cli.main import main


def keygen(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    path = tmp_path / name
    assert main(["policy", "keygen", str(path)]) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    return path, capsys.readouterr().out.strip()


def test_make_countersign_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (k1, p1), (k2, p2) = keygen(tmp_path, "a.key", capsys), keygen(tmp_path, "b.key", capsys)
    doc = tmp_path / "policy.json"
    assert main(["policy", "new", str(doc), "--version", "2", "--set", "vpn_capacity=10"]) == 0
    trust = ["--trust", p1, "--trust", p2]
    assert main(["policy", "verify", str(doc), *trust]) == 1
    assert "unsigned" in capsys.readouterr().err
    assert main(["policy", "sign", str(doc), "--key", str(k1)]) == 0
    assert main(["policy", "verify", str(doc), *trust]) == 1
    assert main(["policy", "sign", str(doc), "--key", str(k2)]) == 0
    capsys.readouterr()
    assert main(["policy", "verify", str(doc), *trust]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["policy"]["vpn_capacity"] == 10
    assert sorted(shown["signers"]) == sorted([p1, p2])
    assert main(["policy", "verify", str(doc), *trust, "--min-version", "3"]) == 1
    assert main(["policy", "show", str(doc)]) == 0


def test_new_from_a_base_document_keeps_its_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, doc = tmp_path / "v1.json", tmp_path / "v2.json"
    assert main(["policy", "new", str(base), "--version", "1", "--set", "vpn_max=3"]) == 0
    assert main(["policy", "new", str(doc), "--version", "2", "--from", str(base)]) == 0
    assert json.loads(doc.read_text())["policy"]["vpn_max"] == 3


def test_a_tampered_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, public = keygen(tmp_path, "a.key", capsys)
    doc = tmp_path / "p.json"
    main(["policy", "new", str(doc), "--version", "1"])
    main(["policy", "sign", str(doc), "--key", str(key)])
    data = json.loads(doc.read_text())
    data["policy"]["entitlement_ratio"] = 0.5
    doc.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["policy", "verify", str(doc), "--trust", public]) == 1
    assert "forged or altered" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["new", "OUT", "--version", "0"],
        ["new", "OUT", "--version", "1", "--set", "ratio"],
        ["new", "OUT", "--version", "1", "--set", "entitlement_ratio=0.9"],
        ["new", "OUT", "--version", "1", "--set", "nonsense=1"],
        ["sign", "MISSING", "--key", "MISSING"],
        ["verify", "OUT", "--trust", "nothex"],
    ],
)
def test_misuse_exits_2(tmp_path: Path, argv: list[str]) -> None:
    argv = [a.replace("OUT", str(tmp_path / "o.json")) for a in argv]
    argv = [a.replace("MISSING", str(tmp_path / "none")) for a in argv]
    assert main(["policy", *argv]) == 2


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"precious")
    assert main(["policy", "keygen", str(tmp_path / "k")]) == 2
    assert (tmp_path / "k").read_bytes() == b"precious"


def test_verify_without_any_trust_is_misuse(tmp_path: Path) -> None:
    cfg = tmp_path / "rms.toml"
    cfg.write_text("")
    doc = tmp_path / "p.json"
    main(["policy", "new", str(doc), "--version", "1"])
    assert main(["policy", "verify", str(doc), "--config", str(cfg)]) == 2
