"""Logs are JSON off a terminal and never carry a secret."""

from __future__ import annotations

import io
import json

import structlog

from rms.logs import REDACTED, configure_logging


def test_json_lines_when_not_a_terminal_and_secrets_redacted() -> None:
    out = io.StringIO()
    configure_logging("auto", "info", stream=out)
    try:
        log = structlog.get_logger("t").bind(node_id="abc")
        log.info("key_loaded", private_key="SECRET-BYTES", chap_secret="hunter2", peer="p1")
        log.debug("hidden")
    finally:
        structlog.reset_defaults()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "key_loaded"
    assert event["node_id"] == "abc"
    assert event["peer"] == "p1"
    assert event["private_key"] == REDACTED
    assert event["chap_secret"] == REDACTED
    assert "SECRET-BYTES" not in out.getvalue()
    assert "hunter2" not in out.getvalue()


def test_console_format_is_plain_text() -> None:
    out = io.StringIO()
    configure_logging("console", "debug", stream=out)
    try:
        structlog.get_logger("t").debug("hello", n=1)
    finally:
        structlog.reset_defaults()
    assert "hello" in out.getvalue()
    assert not out.getvalue().lstrip().startswith("{")
