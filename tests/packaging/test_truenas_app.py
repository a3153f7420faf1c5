"""The TrueNAS SCALE app renders, from each of its test values, to a docker compose file of
the expected structure, whose embedded configs the daemons themselves accept.

There is no Docker engine on the project's machines, so `docker compose config` cannot run:
the template is rendered with Jinja2 as the TrueNAS renderer does (ix_values.yaml merged
under the test values) and the result is checked here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from rms.config import Config
from rms.tomlconfig import build
from tests.packaging.openwrt_support import ROOT
from volume_provider.config import parse_config

APP = ROOT / "truenas" / "truecloud"
TEST_VALUES = sorted((APP / "templates" / "test_values").glob("*.yaml"))
COMPOSE_KEYS = {"services", "configs", "volumes", "networks", "secrets", "name"}
SERVICE_KEYS = {
    "image", "command", "restart", "network_mode", "cap_drop", "cap_add", "security_opt",
    "devices", "configs", "volumes", "healthcheck", "deploy", "depends_on",
}  # fmt: skip
PYPROJECT = (ROOT / "pyproject.toml").read_text()
VERSION = re.search(r'^version = "(.+)"', PYPROJECT, re.M)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """over on top of base, recursively for mappings (how the renderer merges values)."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def render(values: dict[str, Any]) -> dict[str, Any]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(APP / "templates"),
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
        autoescape=False,  # YAML, not HTML: every user string goes through tojson
    )
    base = yaml.safe_load((APP / "ix_values.yaml").read_text())
    text = env.get_template("docker-compose.yaml").render(values=merge(base, values))
    compose = yaml.safe_load(text)
    assert isinstance(compose, dict)
    return compose


def values_of(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("path", TEST_VALUES, ids=lambda p: p.stem)
def test_renders_to_compose_with_host_network_net_admin_tun_and_healthchecks(path: Path) -> None:
    values = values_of(path)
    compose = render(values)
    assert set(compose) <= COMPOSE_KEYS and "services" in compose
    ix = yaml.safe_load((APP / "ix_values.yaml").read_text())
    image = f"{ix['images']['image']['repository']}:{ix['images']['image']['tag']}"
    wanted = {"rms"} | ({"volume-provider"} if values["provider"]["enabled"] else set())
    assert set(compose["services"]) == wanted
    for name, svc in compose["services"].items():
        assert set(svc) <= SERVICE_KEYS, name
        assert svc["image"] == image
        assert svc["network_mode"] == "host"
        assert (svc["cap_drop"], svc["cap_add"]) == (["ALL"], ["NET_ADMIN"])
        assert svc["devices"] == ["/dev/net/tun:/dev/net/tun"]
        assert svc["restart"] == "unless-stopped"
        check = svc["healthcheck"]
        assert check["test"][0] == "CMD" and check["test"][1] in ("rms", "volume-provider")
        assert {"interval", "timeout", "retries", "start_period"} <= set(check)
        for mount in svc["volumes"]:
            assert mount["type"] in ("bind", "volume") and mount["target"].startswith("/")
            if mount["type"] == "bind":
                assert mount["source"].startswith("/mnt/"), mount
            else:
                assert mount["source"] in compose["volumes"]
        for config in svc["configs"]:
            assert config["source"] in compose["configs"]
    rms = compose["services"]["rms"]
    assert rms["command"][:2] == ["rms", "run"]
    assert {m["target"] for m in rms["volumes"]} == {"/var/lib/rms", "/run/rms"}


@pytest.mark.parametrize("path", TEST_VALUES, ids=lambda p: p.stem)
def test_the_embedded_configs_are_ones_the_daemons_accept(path: Path, tmp_path: Path) -> None:
    values = values_of(path)
    configs = render(values)["configs"]
    rms = build(Config, tomllib.loads(configs["rms-config"]["content"]), source="app")
    assert rms.discovery.urls == tuple(values["truecloud"]["discovery_urls"])
    assert rms.vpn.public_ips == tuple(values["truecloud"]["public_ips"])
    assert rms.vpn.location == values["truecloud"]["location"]
    assert str(rms.control.socket) == "/run/rms/control.sock"
    if not values["provider"]["enabled"]:
        assert set(configs) == {"rms-config"}  # no API key rendered anywhere
        return
    provider = parse_config(tomllib.loads(configs["provider-config"]["content"]))
    assert provider.provider.capacity_mib == values["provider"]["capacity_gib"] * 1024
    assert provider.rms.socket == rms.control.socket
    # The provider runs no tgtd on TrueNAS: its volumes are zvols exported by the middleware.
    assert provider.target.backend == "truenas"
    settings = provider.truenas
    assert settings.parent_dataset == values["provider"]["parent_dataset"]
    assert (settings.url, settings.ca_file) == (values["provider"]["middleware_url"], "")
    assert settings.basename == values["provider"]["iscsi_basename"]
    vp = render(values)["services"]["volume-provider"]
    key_mount = next(c for c in vp["configs"] if c["source"] == "truenas-api-key")
    assert (key_mount["target"], key_mount["mode"]) == (str(settings.api_key_file), 0o400)
    assert configs["truenas-api-key"]["content"] == values["provider"]["api_key"]
    assert "truenas-ca" not in configs
    # Leases live on the mounted storage, so a restarted container keeps its volumes.
    data = next(v for v in vp["volumes"] if v["target"] == str(provider.provider.data_dir))
    assert provider.provider.lease_file.parent == Path(data["target"])


def test_a_ca_certificate_is_mounted_and_named_in_the_provider_config() -> None:
    values = values_of(APP / "templates/test_values/provider-values.yaml")
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    values["provider"]["middleware_ca"] = pem
    compose = render(values)
    provider = parse_config(tomllib.loads(compose["configs"]["provider-config"]["content"]))
    assert compose["configs"]["truenas-ca"]["content"] == pem
    vp = compose["services"]["volume-provider"]
    mount = next(c for c in vp["configs"] if c["source"] == "truenas-ca")
    assert (mount["target"], mount["mode"]) == (provider.truenas.ca_file, 0o444)


def test_hostile_values_stay_values() -> None:
    values = values_of(APP / "templates/test_values/provider-values.yaml")
    sneaky = 'x"\n[control]\nsocket = "/tmp/evil"\n'
    values["truecloud"]["location"] = sneaky
    values["provider"]["parent_dataset"] = 'tank/a"\nextra: yes'
    compose = render(values)
    rms = build(Config, tomllib.loads(compose["configs"]["rms-config"]["content"]), source="app")
    assert rms.vpn.location == sneaky
    assert str(rms.control.socket) == "/run/rms/control.sock"
    provider = tomllib.loads(compose["configs"]["provider-config"]["content"])
    assert provider["truenas"] == {"url": "wss://127.0.0.1/api/current",
                                   "api_key_file": "/run/secrets/truenas-api-key",
                                   "ca_file": "",
                                   "parent_dataset": 'tank/a"\nextra: yes',
                                   "basename": "iqn.2005-10.org.freenas.ctl"}  # fmt: skip
    assert provider["target"] == {"backend": "truenas"}


def test_a_missing_answer_fails_the_render_clearly() -> None:
    values = values_of(APP / "templates/test_values/basic-values.yaml")
    del values["storage"]["state"]
    with pytest.raises(jinja2.UndefinedError, match="state"):
        render(values)


def test_app_metadata_versions_and_questions_agree() -> None:
    app = yaml.safe_load((APP / "app.yaml").read_text())
    ix = yaml.safe_load((APP / "ix_values.yaml").read_text())
    assert VERSION is not None
    assert app["name"] == APP.name and app["app_version"] == VERSION[1]
    assert str(ix["images"]["image"]["tag"]) == VERSION[1]
    assert [c["name"] for c in app["capabilities"]] == ["NET_ADMIN"]
    questions = yaml.safe_load((APP / "questions.yaml").read_text())
    top = {q["variable"] for q in questions["questions"]}
    groups = {g["name"] for g in questions["groups"]}
    assert {q["group"] for q in questions["questions"]} <= groups
    for path in TEST_VALUES:  # every answer a test gives is a question the form asks
        assert set(values_of(path)) - {"ix_volumes"} == top
    key = _attr(questions, "provider", "api_key")
    assert key["schema"]["private"] is True


def _attr(questions: dict[str, Any], top: str, name: str) -> dict[str, Any]:
    group = next(q for q in questions["questions"] if q["variable"] == top)
    found = next(a for a in group["schema"]["attrs"] if a["variable"] == name)
    assert isinstance(found, dict)
    return found


def test_the_image_recipe_copies_what_exists_and_provides_the_commands() -> None:
    dockerfile = (ROOT / "truenas" / "Dockerfile").read_text()
    sources = [w for line in dockerfile.splitlines() if line.startswith("COPY ")
               for w in line.split()[1:-1]]  # fmt: skip
    assert sources and all((ROOT / s).exists() for s in sources)
    scripts = set(re.findall(r'^([a-z-]+) = "', PYPROJECT.split("[project.scripts]")[1], re.M))
    compose = render(values_of(APP / "templates/test_values/provider-values.yaml"))
    commands = {svc["command"][0] for svc in compose["services"].values()}
    commands |= {svc["healthcheck"]["test"][1] for svc in compose["services"].values()}
    assert commands <= scripts
