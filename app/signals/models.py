"""The embedded models behind a reply's `signals`, loaded once per process: `SignalModels.load(dir)`.

`read(texts)` says what a customer's message is (language, sentiment, intent, kinds of personal
data) and hides the personal data of its conversation's texts before they leave for the remote
LLM; the masking's `restore` puts it back into the answer (`detect(text)` reads one text alone).
Nothing here touches the network: every model is a file inside an installed package
(tests/signals/test_offline.py proves it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.prompts.intents_file import FILE_NAME, IntentSet, load_intents
from app.signals import pii
from app.signals.embedding import Embedder
from app.signals.intent import IntentMatch, IntentMatcher
from app.signals.language import LanguageDetector
from app.signals.masking import Masked, mask, wording
from app.signals.pii import PiiKind
from app.signals.sentiment import SentimentScorer

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

        Language and intent are read off the message's wording (`masking.wording`) and remembered
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
