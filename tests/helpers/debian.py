"""Commands from Debian packages, installed with apt-get where they are missing and can be."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
NO_SERVICE_STARTS = "#!/bin/sh\n# written by tests/helpers/debian.py while it installs a package\nexit 101\n"
APT_TIMEOUT_S = 300


@contextmanager
def _services_not_started() -> Iterator[None]:
    """Keep the package's daemon from being started by its maintainer scripts (e.g. prometheus on
    port 9090): invoke-rc.d and deb-systemd-invoke start nothing while policy-rc.d exits 101. An
    existing policy-rc.d is left as it is."""
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text(NO_SERVICE_STARTS)
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _found(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


def debian_command(package: str, *names: str) -> str:
    """The path of the first of `names` on PATH; when none is there, Debian's `package` is
    installed (`apt-get install --no-install-recommends`, `apt-get update` first if that fails),
    without starting any service it ships. Skips the test where it cannot be had: not root, no
    apt-get, or the install failed. Costs one `shutil.which` once installed."""
    if found := _found(names):
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"{names[0]} is not installed, and apt-get cannot install {package} here (needs root)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    with _services_not_started():
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if result.returncode != 0:  # perhaps no package lists yet
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=APT_TIMEOUT_S)
            result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    if found := _found(names):
        return found
    reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
    pytest.skip(f"{names[0]} is not installed and `apt-get install {package}` failed: {reason}")
