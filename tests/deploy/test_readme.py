"""The README's "Operating it" section against what it describes: the metrics the worker serves,
the alert rules, the dashboard's queries, env examples the worker's settings accept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.operator_tools.dlq_cli import dlq_cli
from tests.helpers.deploy_files import ALERTS, DEPLOY, REPO, contract_variables, load_yaml
from tests.helpers.envs import LoadSettings
from tests.helpers.promql import metric_names, served_families, served_names
from tests.helpers.promtool import check_expressions

README = REPO / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("\n## Operating it\n")
    assert text.index("\n### Restarts and crashes\n") < start < text.index("\n## Development\n")
    return text[start : text.index("\n## ", start + 1)]


def _subsection(title: str) -> str:
    return _section().split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]


def _table(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[2:]]


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _queries() -> list[str]:
    (block,) = _code_blocks(_subsection("Metrics"), "promql")
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_metrics_table_lists_every_metric_the_worker_serves_with_its_type() -> None:
    documented = {row[0].strip("`"): row[1] for row in _table(_subsection("Metrics"))}
    served = {  # a counter by its sample's name, as in PromQL; the others by the family's
        name + ("_total" if kind == "counter" else ""): kind
        for name, kind in served_families().items()
        if name.startswith("enricher_")
    }
    assert documented == served


def test_the_queries_read_metrics_the_worker_serves() -> None:
    queries = _queries()
    assert len(queries) >= 4
    for query in queries:
        assert metric_names(query), query
        assert metric_names(query) <= served_names(), query


def test_promtool_parses_the_queries(promtool: str, tmp_path: Path) -> None:
    check_expressions(promtool, {query: query for query in _queries()}, tmp_path)


def test_every_alert_is_explained_with_its_severity() -> None:
    explained = {row[0].strip("`"): row[1] for row in _table(_subsection("Alerts"))}
    rules = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]
    assert explained == {rule["alert"]: rule["labels"]["severity"] for rule in rules}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_the_managed_kafka_examples_are_accepted_by_the_worker(
    mechanism: str, settings_from: LoadSettings
) -> None:
    examples = [
        dict(line.split("=", 1) for line in block.splitlines() if line and not line.startswith("#"))
        for block in _code_blocks(_subsection("A managed Kafka"), "sh")
    ]
    (env,) = [example for example in examples if example.get("KAFKA_SASL_MECHANISM") == mechanism]
    assert set(env) <= set(contract_variables())
    settings = settings_from(env | {"OPENAI_API_KEY": "sk-placeholder-key-123456"})
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", mechanism)


def test_the_dead_letter_subsection_shows_every_dlq_command() -> None:
    section = _subsection("Re-driving dead letters")
    commands = {command.name or command.callback.__name__ for command in dlq_cli.registered_commands}
    assert commands == {"list", "show", "replay"}
    assert all(f"enricher dlq {command}" in section for command in commands)
    assert "--dry-run" in section


def test_where_things_are_names_the_deploy_files() -> None:
    text = README.read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| `deploy/` |")]
    paths = re.findall(r"`([\w./-]+)`", row.split("|")[3])
    named = [path for path in paths if path != "docker-compose.yml" and not path.startswith("tests/")]
    assert named
    assert all((DEPLOY / path).exists() for path in named), named
    files = {path.relative_to(DEPLOY).as_posix() for path in DEPLOY.rglob("*") if path.is_file()}
    assert all(any(f == p or f.startswith(p) for p in named) for f in files), sorted(files)
