"""The web UI refuses strangers: no token, a wrong Host, cross-site forms, bad form values."""

from __future__ import annotations

import http.cookiejar
import re
import signal
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.integration.webui_support import WebUi, webui

__all__ = ["webui"]


def opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


def fetch(op: urllib.request.OpenerDirector, url: str, **kw: Any) -> tuple[int, str, Any]:
    data = kw.pop("data", None)
    if isinstance(data, dict):
        data = urllib.parse.urlencode(data).encode()
    req = urllib.request.Request(url, data=data, headers=kw.pop("headers", {}))
    try:
        with op.open(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def signed_in(ui: WebUi) -> tuple[urllib.request.OpenerDirector, str]:
    op = opener()
    status, html, headers = fetch(op, ui.url)
    assert status == 200
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match is not None
    return op, match.group(1)


def test_without_the_token_nothing_is_shown(webui: WebUi) -> None:
    status, html, _ = fetch(opener(), webui.base + "/")
    assert status == 401 and "rms ui" in html and "GiB" not in html
    status, _, _ = fetch(opener(), webui.base + "/?token=guess")
    assert status == 401


def test_a_foreign_host_header_is_refused(webui: WebUi) -> None:
    op, _ = signed_in(webui)
    status, _, _ = fetch(op, webui.base + "/", headers={"Host": "attacker.example:80"})
    assert status == 421


@pytest.mark.parametrize(
    ("path", "fields", "headers", "expected"),
    [
        ("/contribution", {"storage": "1 TiB", "cpu": "1"}, {}, 403),  # no CSRF field
        ("/contribution", {"storage": "1 TiB", "cpu": "1", "csrf": "00"}, {}, 403),
        ("/contribution", {"storage": "1 TiB", "cpu": "1", "csrf": "OK"},
         {"Origin": "http://attacker.example"}, 403),
        ("/contribution", {"storage": "-5 GiB", "cpu": "1", "csrf": "OK"}, {}, 400),
        ("/contribution", {"storage": "1 GiB", "cpu": "NaN", "csrf": "OK"}, {}, 400),
        ("/contribution", {"storage": "1 GiB", "cpu": "1e9", "csrf": "OK"}, {}, 400),
        ("/contribution", {"storage": "1 GiB", "csrf": "OK", "pad": "x" * 8000}, {}, 413),
        ("/contribution/apply", {"storage_bytes": "x", "cpu_millicores": "1", "csrf": "OK"},
         {}, 400),
        ("/contribution/apply", {"storage_bytes": str(2**64), "cpu_millicores": "1",
                                 "csrf": "OK"}, {}, 502),
        ("/contribution/apply", {"csrf": "OK"}, {}, 400),
    ],
)  # fmt: skip
def test_bad_forms_change_nothing(
    webui: WebUi, path: str, fields: dict[str, str], headers: dict[str, str], expected: int
) -> None:
    op, csrf = signed_in(webui)
    fields = {k: csrf if v == "OK" else v for k, v in fields.items()}
    status, _, _ = fetch(op, webui.base + path, data=fields, headers=headers)
    assert status == expected
    status, html, _ = fetch(op, webui.base + "/")
    assert "20.0 GiB" in html


def test_a_stopped_daemon_is_said_plainly(webui: WebUi) -> None:
    op, _ = signed_in(webui)
    webui.daemon.proc.send_signal(signal.SIGTERM)
    webui.daemon.proc.wait(10)
    status, html, _ = fetch(op, webui.base + "/")
    assert status == 503 and "daemon not running" in html
