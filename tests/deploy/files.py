"""The deployment files, parsed: docker-compose.yml, deploy/**, and the variable names of
docs/CONTRACT.md's configuration table."""

from __future__ import annotations

import json
import re
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


def environment(service_name: str) -> dict[str, str]:
    """A service's environment (mapping syntax) with `${VAR:-default}` and `${VAR:?message}` as
    compose would interpolate them in an empty shell environment; a required variable gets a
    placeholder value."""

    def interpolate(match: re.Match[str]) -> str:
        operator, default = match.group(2) or "", match.group(3) or ""
        return "placeholder" if "?" in operator else default

    raw = service(service_name).get("environment", {})
    return {name: _INTERPOLATION.sub(interpolate, str(value)) for name, value in raw.items()}


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
