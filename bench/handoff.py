"""The handoff decision on the labelled messages (bench/data/handoff_messages.yaml): recall and false
handoffs of the shipped rules (prompts/handoff.yaml), beside the intent alone as it decided before
and the two together; and the CPU a decision costs per message, and a reload.

`python -m bench.handoff` writes bench/results/handoff.md. The figures are the test split's, which
the shipped phrases were not written against; the dev split's are given beside them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from app.pipeline import HANDOFF_INTENT_CONFIDENCE
from app.prompts.handoff_rules import FILE_NAME, HandoffRules, read_rules
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.intents_file import load_intents
from app.signals.models import SignalModels
from bench.handoff_messages import Labelled, Score, Split, labelled, score
from bench.report import machine

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
RESULTS = Path(__file__).parent / "results" / "handoff.md"
ROUNDS = 200
RELOADS = 20
RECALL_TARGET = 0.95
FALSE_HANDOFFS_TARGET = 0.02


def shipped_rules() -> HandoffRules:
    """The rules of prompts/handoff.yaml, checked against the shipped intents."""
    rules, problems = read_rules(PROMPTS / FILE_NAME, load_intents(PROMPTS / INTENTS_FILE).names)
    if problems:
        raise SystemExit("\n".join(map(str, problems)))
    return rules


def by_rules(rules: HandoffRules) -> Callable[[Labelled], bool]:
    """Whether the rules hand a message over, from a customer without a tier or fallbacks."""
    return lambda message: (
        rules.decide(intent=None, sentiment=None, tier="", fallbacks_in_a_row=0, text=message.text)
        is not None
    )


def by_intent(models: SignalModels) -> Callable[[Labelled], bool]:
    """Whether the intent `wants_human` hands a message over, at the pipeline's cut."""

    def hands_over(message: Labelled) -> bool:
        signals, _ = models.read([message.text])
        return signals.intent == "wants_human" and signals.intent_confidence >= HANDOFF_INTENT_CONFIDENCE

    return hands_over


def quantiles(values: list[float]) -> str:
    cut = statistics.quantiles(values, n=100)
    return f"median {cut[49]:.1f}, p90 {cut[89]:.1f}, p99 {cut[98]:.1f}"


def decision_us(rules: HandoffRules, texts: list[str], *, fresh: bool) -> list[float]:
    """Microseconds of each decision; with `fresh`, on rules read anew each round, so that no word
    of the round has been seen (as after a reload)."""
    timings = []
    for _ in range(ROUNDS // 10 if fresh else ROUNDS):
        if fresh:
            rules = shipped_rules()
        for text in texts:
            started = time.perf_counter()
            rules.decide(intent=None, sentiment=None, tier="", fallbacks_in_a_row=0, text=text)
            timings.append((time.perf_counter() - started) * 1e6)
    return timings


def reload_ms() -> list[float]:
    """Milliseconds to read, check and prepare prompts/handoff.yaml."""
    timings = []
    for _ in range(RELOADS):
        started = time.perf_counter()
        shipped_rules()
        timings.append((time.perf_counter() - started) * 1e3)
    return timings


def row(label: str, scores: dict[Split, Score]) -> str:
    test, dev = scores["test"], scores["dev"]
    return (
        f"| {label} | {test.recall:.3f} ({len(test.missed)} missed) | "
        f"{test.false_handoffs:.3f} ({len(test.wrongly_handed_over)}) | "
        f"{dev.recall:.3f} | {dev.false_handoffs:.3f} |"
    )


def main() -> None:
    rules, models = shipped_rules(), SignalModels.load(PROMPTS)
    splits: dict[Split, list[Labelled]] = {"dev": labelled("dev"), "test": labelled("test")}
    phrases, intent = by_rules(rules), by_intent(models)
    deciders = {
        "the shipped rules (phrases)": phrases,
        f"the intent wants_human ≥ {HANDOFF_INTENT_CONFIDENCE} alone (before)": intent,
        "phrases or the intent": lambda message: phrases(message) or intent(message),
    }
    scores = {
        label: {split: score(splits[split], hands) for split in splits} for label, hands in deciders.items()
    }
    shipped = scores["the shipped rules (phrases)"]["test"]
    texts = [message.text for message in splits["test"]]
    asks = sum(message.asks for message in splits["test"])
    warm, fresh = decision_us(rules, texts, fresh=False), decision_us(rules, texts, fresh=True)
    lines = [
        f"# The handoff decision: {len(texts)} labelled test messages ({asks} asking for a person, "
        f"{len(texts) - asks} near misses), {sum(map(len, splits.values()))} in all",
        "",
        f"Targets: recall ≥ {RECALL_TARGET}, false handoffs ≤ {FALSE_HANDOFFS_TARGET}, on the test split. "
        f"Shipped rules: recall {shipped.recall:.3f}, false handoffs {shipped.false_handoffs:.3f}: "
        + (
            "met."
            if shipped.recall >= RECALL_TARGET and shipped.false_handoffs <= FALSE_HANDOFFS_TARGET
            else "NOT met."
        ),
        "",
        "| decision | recall, test | false handoffs, test | recall, dev | false handoffs, dev |",
        "| --- | --- | --- | --- | --- |",
        *(row(label, by_split) for label, by_split in scores.items()),
        "",
        "Wrong on the test split, but for the intent alone's misses:",
        "",
        *(
            f"- {label}: {'missed' if message.asks else 'handed over'} {message.text!r} ({message.language})"
            for label, by_split in scores.items()
            for message in (*by_split["test"].missed, *by_split["test"].wrongly_handed_over)
            if label in ("the shipped rules (phrases)", "phrases or the intent") or not message.asks
        ),
        "",
        "CPU of the decision, one call timed at a time (the intent is not counted: the worker reads it for",
        f"every message anyway); machine: {', '.join(f'{key} {value}' for key, value in machine().items())}",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| µs per message, words seen before | {quantiles(warm)} |",
        f"| µs per message, after a reload (no word seen) | {quantiles(fresh)} |",
        f"| ms to read, check and prepare handoff.yaml (a reload) | {quantiles(reload_ms())} |",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
