"""Metric names on both sides: those a PromQL expression reads, and those the worker serves."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import app.observability.metrics  # noqa: F401  (registers the worker's metrics in REGISTRY)

# The samples prometheus-client serves for a metric family of each type.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
SCRAPE_SERIES = frozenset({"up"})  # written by Prometheus itself for every target

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_NUMBERS = re.compile(r"(?<![\w:.])\d[\w.]*")  # 0.99, 1e, 3600, 15m (a duration after offset)
_IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*")
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan", "Inf", "NaN"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (function names, labels, keywords and Grafana
    variables left out)."""
    text = _STRINGS.sub(" ", expr)
    text = _VARIABLES.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def served_families() -> dict[str, str]:
    """Every metric family in the worker's registry: name (as prometheus-client keeps it, without
    `_total`) to type."""
    return {family.name: family.type for family in REGISTRY.collect()}


def served_names() -> set[str]:
    """Every sample name a worker's /metrics can serve, plus what Prometheus adds per target."""
    names = {name + suffix for name, kind in served_families().items() for suffix in SAMPLE_SUFFIXES[kind]}
    return names | SCRAPE_SERIES
