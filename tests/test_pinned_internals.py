"""Modules that touch a library's internals name it in `PINNED`; the installed version must be
the one constraints.txt pins, so that an upgrade is made on purpose and checked by these tests."""

from __future__ import annotations

import importlib
import re
from importlib import metadata

import pytest

from tests.helpers.workers import REPO

TOUCHING_INTERNALS = ("app.kafka.internals", "app.llm.stream", "app.prompts.sandbox", "app.tokens")


def pinned_versions() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pins = (re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line) for line in lines)
    return {re.sub(r"[-_.]+", "-", pin[1]).lower(): pin[2] for pin in pins if pin}


@pytest.mark.parametrize("module", TOUCHING_INTERNALS)
def test_the_installed_version_is_the_pinned_one(module: str) -> None:
    pins = pinned_versions()
    distributions = importlib.import_module(module).PINNED
    assert distributions
    for distribution in distributions:
        assert metadata.version(distribution) == pins[distribution], f"{module} relies on {distribution}"
