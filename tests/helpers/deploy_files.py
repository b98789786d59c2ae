"""The deployment files, parsed: docker-compose.yml, deploy/**, and the variable names of
docs/CONTRACT.md's configuration table."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "stream-enricher.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"
CONTRACT = REPO / "docs" / "CONTRACT.md"
WORKER = "worker"

_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE))


def service(name: str) -> dict[str, Any]:
    return dict(compose()["services"][name])


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def mounts(service_name: str) -> dict[PurePosixPath, Path]:
    """The bind mounts of a compose service (short syntax): container path to the host path,
    resolved against the repository; named volumes left out."""
    found: dict[PurePosixPath, Path] = {}
    for volume in service(service_name).get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith((".", "/")):
            found[PurePosixPath(target)] = (REPO / source).resolve()
    return found


def host_path(service_name: str, container_path: str) -> Path:
    """The host file a container path of a service comes from, through its bind mounts."""
    wanted = PurePosixPath(container_path)
    for target, source in mounts(service_name).items():
        if wanted == target or target in wanted.parents:
            return source / wanted.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted into {service_name}")


def interpolated(text: str, shell: Mapping[str, str] | None = None) -> str:
    """`text` with `${VAR}`, `${VAR:-default}` and `${VAR:?message}` as compose interpolates them
    in a shell environment of `shell` only; a required variable that is unset gets a placeholder
    value (compose would refuse to start)."""
    given = shell or {}

    def interpolate(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2) or "", match.group(3) or ""
        if given.get(name):
            return given[name]
        return "placeholder" if "?" in operator else default

    return _INTERPOLATION.sub(interpolate, text)


def interpolations() -> list[tuple[str, str]]:
    """Every `${VAR...}` of docker-compose.yml: the variable and its operator (`:-`, `:?`, ...)."""
    return [(match.group(1), match.group(2) or "") for match in _INTERPOLATION.finditer(COMPOSE.read_text())]


def environment(service_name: str, shell: Mapping[str, str] | None = None) -> dict[str, str]:
    """A service's environment (mapping syntax), interpolated as compose would in a shell
    environment of `shell` only (see `interpolated`)."""
    raw = service(service_name).get("environment", {})
    return {name: interpolated(str(value), shell) for name, value in raw.items()}


def contract_variables() -> dict[str, str]:
    """Every variable of docs/CONTRACT.md's configuration table, with its "as built" cell."""
    text = CONTRACT.read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]):
            found[name] = cells[-1]
    return found
