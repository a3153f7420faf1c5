"""Fixtures of the lab tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.lab.support import lab


@pytest.fixture
def lab_name() -> Iterator[str]:
    """A fresh lab name, torn down after the test whatever happened."""
    name = "t" + secrets.token_hex(4)
    try:
        yield name
    finally:
        lab(name, "down")
