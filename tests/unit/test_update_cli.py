"""`rms update` and `rms-repo` from the command line: exit codes, messages, files written."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from rms.cli.main import main as rms_main
from rms.config import ConfigError, load_config
from rms.update import repo as repo_cli
from tests.update_support import KEY_NAMES, PACKAGE, POLICY, Repo, make_repo


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # `rms update` set up logging on capsys's stream


@pytest.fixture
def published(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "publisher", datetime.now(UTC))


def config(tmp_path: Path, repo: Repo, **extra: str) -> Path:
    shipped = tmp_path / "shipped-root.json"
    shipped.write_bytes(repo.trusted_root.read_bytes())
    lines = [
        f'[node]\nstate_dir = "{tmp_path / "state"}"',
        f'[policy]\ndocument = "{tmp_path / "etc" / "policy.json"}"',
        f'[update]\ntrusted_root = "{shipped}"\ndirectory = "{repo.path}"',
        *(f'{k} = "{v}"' for k, v in extra.items()),
    ]
    path = tmp_path / "rms.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_check_lists_the_signed_targets(
    published: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        rms_main(["update", "check", "--json", "--config", str(config(tmp_path, published))]) == 0
    )
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed] == ["policy/policy.json", "rms_0.1.0_all.deb"]
    assert listed[1]["length"] == len(PACKAGE) and listed[1]["custom"] == {"version": "1"}


def test_install_puts_the_policy_where_the_daemon_reads_it(
    published: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, published)
    assert rms_main(["update", "install", "policy/policy.json", "--config", str(cfg)]) == 0
    assert (tmp_path / "etc" / "policy.json").read_bytes() == POLICY
    assert "verified and installed" in capsys.readouterr().out


def test_fetch_copies_the_verified_file(published: Repo, tmp_path: Path) -> None:
    out = tmp_path / "out.deb"
    cfg = str(config(tmp_path, published))
    assert (
        rms_main(["update", "fetch", "rms_0.1.0_all.deb", "--output", str(out), "--config", cfg])
        == 0
    )
    assert out.read_bytes() == PACKAGE


def test_a_tampered_library_exits_1_and_installs_nothing(
    published: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (target,) = (published.path / "targets" / "policy").glob("*.policy.json")
    target.write_bytes(POLICY.replace(b"0.4", b"0.9"))
    cfg = str(config(tmp_path, published))
    assert rms_main(["update", "install", "policy/policy.json", "--config", cfg]) == 1
    assert "refused, nothing was installed: tampered" in capsys.readouterr().err
    assert not (tmp_path / "etc" / "policy.json").exists()


def test_misuse_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert rms_main(["update", "check", "--config", str(empty)]) == 2
    assert "update.directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as leaves:
        rms_main(["update", "install"])
    assert leaves.value.code == 2


def test_the_update_section_refuses_plain_http(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[update]\nurls = ["http://mirror.example/library"]\n')
    with pytest.raises(ConfigError, match=r"update\.urls"):
        load_config(bad)


def run_repo(*argv: object) -> int:
    return repo_cli.main([str(a) for a in argv])


def test_rms_repo_signs_countersigns_and_publishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    k, repo = tmp_path / "keys", tmp_path / "repo"
    for name in KEY_NAMES:
        assert run_repo("keygen", k / f"{name}.key") == 0
    assert stat.S_IMODE((k / "root1.key").stat().st_mode) == 0o600
    assert run_repo("keygen", k / "root1.key") == 1  # never overwritten
    pub = {n: k / f"{n}.key.pub" for n in KEY_NAMES}
    init = ["init", repo, "--root", pub["root1"], "--root", pub["root2"], "--root", pub["root3"]]
    init += ["--targets", pub["targets1"], "--targets", pub["targets2"]]
    init += ["--snapshot", pub["snapshot"], "--timestamp", pub["ts"]]
    assert run_repo(*init) == 0
    package = tmp_path / "rms_0.2.0_all.deb"
    package.write_bytes(PACKAGE)
    assert run_repo("add", repo, package, "--meta", "version=0.2.0") == 0
    online = ["--snapshot-key", k / "snapshot.key", "--timestamp-key", k / "ts.key"]
    assert run_repo("sign", repo, "root", "--key", k / "root1.key") == 0
    assert run_repo("sign", repo, "root", "--key", k / "root2.key") == 0
    assert run_repo("sign", repo, "targets", "--key", k / "targets1.key") == 0
    capsys.readouterr()
    assert run_repo("publish", repo, *online) == 1  # not countersigned yet
    assert "1 of the 2 signatures" in capsys.readouterr().err
    assert not (repo / "metadata").exists()  # all or nothing
    assert run_repo("sign", repo, "targets", "--key", k / "root3.key") == 1  # not a targets key
    assert run_repo("sign", repo, "targets", "--key", k / "targets2.key") == 0
    assert run_repo("publish", repo, *online) == 0
    assert run_repo("timestamp", repo, "--timestamp-key", k / "ts.key") == 0
    capsys.readouterr()
    assert run_repo("status", repo) == 0
    status = capsys.readouterr().out
    assert "targets: v1" in status and "signatures 2 of 2" in status and "timestamp: v2" in status
    assert run_repo("add", repo, package, "--meta", "novalue") == 1
    assert run_repo("add", repo, package, "--name", "../escape.deb") == 1
    assert run_repo() == 2


def test_a_missing_oversized_or_garbage_trusted_root_exits_1(
    published: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, published)
    shipped = tmp_path / "shipped-root.json"
    shipped.write_bytes(b'{"signed": "not a root"}')
    assert rms_main(["update", "check", "--config", str(cfg)]) == 1
    assert "refused" in capsys.readouterr().err
    shipped.write_bytes(b" " * (64 * 1024 + 1))
    assert rms_main(["update", "check", "--config", str(cfg)]) == 1
    assert "larger than 65536 bytes" in capsys.readouterr().err
    shipped.unlink()
    assert rms_main(["update", "check", "--config", str(cfg)]) == 1
    assert "cannot read trusted root" in capsys.readouterr().err
