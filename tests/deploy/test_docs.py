"""The docs against what they describe: the metrics, alerts and env examples of docs/operating.md,
the files of docs/architecture.md and the README's flow, the commands and figures of
docs/performance.md, and every link between the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.operator_tools.dead_letters import dlq_cli
from tests.helpers.deploy_files import ALERTS, DEPLOY, REPO, contract_variables, load_yaml
from tests.helpers.envs import LoadSettings
from tests.helpers.promql import metric_names, served_families, served_names
from tests.helpers.promtool import check_expressions

DOCS = REPO / "docs"
README = REPO / "README.md"
OPERATING = DOCS / "operating.md"
ARCHITECTURE = DOCS / "architecture.md"
PERFORMANCE = DOCS / "performance.md"
BENCH_RESULTS = REPO / "bench" / "results"
MARKDOWN = [README, REPO / "prompts" / "README.md", *sorted(DOCS.glob("*.md"))]

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", flags=re.DOTALL | re.MULTILINE)


def _section(path: Path, title: str) -> str:
    """The text under the `## title` heading of a doc, down to the next `## ` heading."""
    text = path.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table of a text: its rows (the header first, the rule left out) of cells."""
    tables: list[list[list[str]]] = []
    rows: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("| "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            tables.append([row for row in rows if not all(set(cell) <= {"-"} for cell in row)])
            rows = []
    return tables


def _body(text: str) -> list[list[str]]:
    """The rows below the header of the one table of a text."""
    (table,) = _tables(text)
    return table[1:]


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _queries() -> list[str]:
    (block,) = _code_blocks(_section(OPERATING, "Metrics"), "promql")
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.MULTILINE))


def _make_bench_modules() -> list[str]:
    recipe = (REPO / "Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"-m (bench\.\w+)", recipe)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    prose = _FENCE.sub("", path.read_text())
    return {_slug(line.lstrip("#")) for line in prose.splitlines() if line.startswith("#")}


def test_the_metrics_table_lists_every_metric_the_worker_serves_with_its_type() -> None:
    documented = {row[0].strip("`"): row[1] for row in _body(_section(OPERATING, "Metrics"))}
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
    explained = {row[0].strip("`"): row[1] for row in _body(_section(OPERATING, "Alerts"))}
    rules = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]
    assert explained == {rule["alert"]: rule["labels"]["severity"] for rule in rules}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_the_managed_kafka_examples_are_accepted_by_the_worker(
    mechanism: str, settings_from: LoadSettings
) -> None:
    examples = [
        dict(line.split("=", 1) for line in block.splitlines() if line and not line.startswith("#"))
        for block in _code_blocks(_section(OPERATING, "A managed Kafka"), "sh")
    ]
    (env,) = [example for example in examples if example.get("KAFKA_SASL_MECHANISM") == mechanism]
    assert set(env) <= set(contract_variables())
    settings = settings_from(env | {"OPENAI_API_KEY": "sk-placeholder-key-123456"})
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", mechanism)


def test_the_dead_letter_section_shows_every_dlq_command() -> None:
    section = _section(OPERATING, "Re-driving dead letters")
    commands = {command.name or command.callback.__name__ for command in dlq_cli.registered_commands}
    assert commands == {"list", "show", "replay"}
    assert all(f"enricher dlq {command}" in section for command in commands)
    assert "--dry-run" in section


def test_the_module_map_names_every_file_of_app_and_agents_and_no_other() -> None:
    named = re.findall(r"^- `([\w./-]+)`:", _section(ARCHITECTURE, "Where things are"), flags=re.MULTILINE)
    assert len(named) == len(set(named)), "a file named twice"
    assert [path for path in named if not (REPO / path).exists()] == []
    modules = {
        path.relative_to(REPO).as_posix()
        for package in ("app", "agents")
        for path in (REPO / package).rglob("*.py")
        if path.name != "__init__.py"
    }
    assert modules - set(named) == set(), "files the module map leaves out"


def test_the_module_map_covers_the_deploy_files() -> None:
    section = _section(ARCHITECTURE, "Where things are")
    named = re.findall(r"^- `deploy/([\w./-]+)`:", section, flags=re.MULTILINE)
    assert named
    files = {path.relative_to(DEPLOY).as_posix() for path in DEPLOY.rglob("*") if path.is_file()}
    assert all(any(f == p or f.startswith(p) for p in named) for f in files), sorted(files)


def test_the_readme_flow_names_files_that_exist() -> None:
    (flow,) = _code_blocks(_section(README, "The flow"), "")
    paths = re.findall(r"\b((?:app|agents)/[\w/]+(?:\.py|/))", flow)
    assert len(paths) >= 10
    assert [path for path in paths if not (REPO / path).exists()] == []


@pytest.mark.parametrize(
    ("doc", "commands"),
    [
        (README, {"run", "test"}),
        (PERFORMANCE, {"bench", "profile"}),
        (ARCHITECTURE, {"test", "lint", "bench", "profile"}),
    ],
)
def test_the_make_commands_a_doc_shows_are_the_makefiles(doc: Path, commands: set[str]) -> None:
    shown = set(re.findall(r"^make (\w+)", "".join(_code_blocks(doc.read_text(), "sh")), flags=re.MULTILINE))
    assert shown == commands
    assert commands <= _make_targets()


def test_performance_names_each_benchmark_make_bench_runs_in_its_order() -> None:
    section = _section(PERFORMANCE, "Running the benchmarks")
    paragraph = section.split("`make bench` runs, in turn,", 1)[1].split("\n\n", 1)[0]
    named = [f"bench.{name}" for name in re.findall(r"`(?:python -m )?bench\.(\w+)`", paragraph)]
    assert named == _make_bench_modules()


def test_the_figures_quoted_from_bench_results_are_the_results() -> None:
    """A table of docs/performance.md whose header is that of a table in bench/results/ quotes it whole."""
    results = [table for path in sorted(BENCH_RESULTS.glob("*.md")) for table in _tables(path.read_text())]
    headers = {tuple(table[0]) for table in results}
    quoted = [table for table in _tables(PERFORMANCE.read_text()) if tuple(table[0]) in headers]
    assert len(quoted) >= 5  # the latest run, the provider's limits (two), the embedded models, the profile
    assert [table for table in quoted if table not in results] == []


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_link_of_a_doc_points_at_a_file_and_heading_of_the_repository(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(_FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):  # a page of a running service, not of the repository
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        inside = path.is_relative_to(REPO) and path.exists()
        if not inside or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(target)
    assert broken == []
