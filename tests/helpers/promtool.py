"""promtool (Debian's `prometheus` package): run it, and have it parse PromQL expressions."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

# Grafana's variables, replaced by values Prometheus parses the same way.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$instance": ".*"}


def run(promtool: str, *args: str, cwd: Path | None = None) -> str:
    """promtool's output; fails the test, showing it, unless promtool exits 0."""
    result = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def check_expressions(promtool: str, expressions: Mapping[str, str], directory: Path) -> None:
    """Have promtool parse every expression (as the expression of a recording rule each), Grafana's
    variables replaced; fails naming the rule of the first expression it refuses."""
    rules = []
    for number, expr in enumerate(expressions.values()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"check:expression_{number}", "expr": expr})
    path = directory / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    names = "\n".join(f"check:expression_{n}: {where}" for n, where in enumerate(expressions))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + names
