"""The phrases of prompts/handoff.yaml that hand a conversation to a person, matched on the
customer's own words: `PhraseMatcher(phrases).find(text)`.

A message is read as `noise.without_noise` leaves it (no signature, link, id or order number), in
lower case without accents, cut into sentences at . ! ? ; and line breaks, each a list of words
without the articles ("a", "der", "la" ...); a hyphen joins ("human-readable" is one word). A
phrase's word may be several words separated by `/`, any of which will do: `talk/speak to/with
human/person`. A phrase matches when its words come in its order in one sentence, and:
- a phrase of three words or more may have one other word between two of its words, so that
  "talk to a person" hears "talk to a real person" (a shorter one must be exact: "human please"
  must not hear "human resources please");
- a phrase of one word matches only a clause of its own, "Human!" or "..., operator?", so that
  `human` does not hear "human resources";
- a word of five letters or more may have one typo (two from nine letters): "huamn", "manger";
- a negation shortly before it in its clause ("don't", "nicht", "pas", "no") means it is not
  asked for: "I don't need to talk to a human". A comma ends a clause: "No, I want a human".

Everything is prepared once per file (the reload): a message costs a dictionary look-up per word,
plus, for a long word seen for the first time, a look-up among the phrases' words of about its
length (rapidfuzz). bench/handoff.py measures it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein

from app.signals.noise import without_noise

# Left out of the phrases and the messages alike: "speak to a person" is "speak to the person".
ARTICLES = frozenset().union(
    ("a", "an", "the"),
    ("der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer", "eines"),
    ("le", "la", "les", "l", "un", "une", "des", "du", "d"),
    ("el", "la", "los", "las", "un", "una", "unos", "unas"),
)
# A negation up to NEGATION_REACH words before a phrase, in its clause, undoes it. ("n't" is read
# as part of its word: "don't" negates, "can't" does not: "can't I talk to a human?" asks for one.)
NEGATIONS = frozenset().union(
    ("not", "no", "never", "dont", "doesnt", "didnt", "without"),
    ("nicht", "kein", "keine", "keinen", "keinem", "nie", "ohne"),
    ("ne", "n", "pas", "jamais", "sans"),
    ("no", "nunca", "sin", "ni"),
)
NEGATION_REACH = 3
LONG_PHRASE = 3
"""Words from which a phrase may have one other word between two of its words."""
TYPO_FROM = 5
TWO_TYPOS_FROM = 9
WORDS_REMEMBERED = 10_000
SENTENCE = re.compile(r"[.!?;¿¡\n]+")
CLAUSE = re.compile(r"[,:()\[\]\"«»]+")
# A word of letters; a hyphen, or an apostrophe's "n't", joins two (see `folded`).
WORD = re.compile(r"[^\W\d_]+")
JOINING = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])|(?<=n)['\u2019](?=t\b)")
ACCENT = re.compile(r"[\u0300-\u036f]")

Alternatives = frozenset[str]


@dataclass(frozen=True)
class Phrase:
    """A phrase of the file, as written, with its language and line, and the words it matches: for
    each of its words, the spellings that will do."""

    text: str
    language: str
    line: int
    words: tuple[Alternatives, ...]

    @classmethod
    def of(cls, text: str, language: str, line: int) -> Phrase:
        """The phrase `text` of the file, its words read as a message's are (see the module).

        Raises ValueError when one of the alternatives of a word is several words (`a/talk to`).
        """
        words: list[Alternatives] = []
        for written in text.split():
            if "/" not in written:
                words += [frozenset([word]) for word in words_of(written)]
                continue
            alternatives = [words_of(alternative) for alternative in written.split("/")]
            if any(len(alternative) > 1 for alternative in alternatives):
                raise ValueError(f"`{written}`: each word between the `/` must be one word")
            words.append(frozenset(word for alternative in alternatives for word in alternative))
        return cls(text, language, line, tuple(word for word in words if word))


@dataclass(frozen=True)
class Sentence:
    """A sentence of a message: its words, and for each the position where its clause starts."""

    words: tuple[str, ...]
    clause_starts: tuple[int, ...]

    def alone(self, at: int) -> bool:
        """Whether the word at `at` is a clause of its own."""
        end = at + 1
        return self.clause_starts[at] == at and (end == len(self.words) or self.clause_starts[end] == end)

    def negated(self, start: int, end: int) -> bool:
        """Whether a negation comes shortly before the words from `start` to `end` (in its clause),
        or between them: "I don't need a human", "I do not want a human"."""
        since = max(self.clause_starts[start], start - NEGATION_REACH)
        return any(word in NEGATIONS for word in self.words[since:end])


def folded(text: str) -> str:
    """Lower case, without accents (`Müller` as `muller`), hyphens and "n't" joining their words."""
    return JOINING.sub("", ACCENT.sub("", unicodedata.normalize("NFKD", text.casefold())))


def words_of(text: str) -> list[str]:
    """The words of a piece of text as phrases and messages are compared: folded, articles left out."""
    return [word for word in WORD.findall(folded(text)) if word not in ARTICLES]


def sentences(text: str) -> list[Sentence]:
    """A customer's text as sentences of words, its noise left out (see the module's docstring)."""
    found = []
    for sentence in SENTENCE.split(folded(without_noise(text))):
        words: list[str] = []
        starts: list[int] = []
        for clause in CLAUSE.split(sentence):
            start = len(words)
            for word in words_of(clause):
                words.append(word)
                starts.append(start)
        if words:
            found.append(Sentence(tuple(words), tuple(starts)))
    return found


class PhraseMatcher:
    """The phrases of one file, prepared for matching many messages."""

    def __init__(self, phrases: Iterable[Phrase]) -> None:
        self.phrases = tuple(phrase for phrase in phrases if phrase.words)
        self._starting: dict[str, list[Phrase]] = defaultdict(list)
        for phrase in self.phrases:
            for word in phrase.words[0]:
                self._starting[word].append(phrase)
        vocabulary = {word for phrase in self.phrases for words in phrase.words for word in words}
        self._vocabulary = frozenset(vocabulary)
        self._by_length: dict[int, list[str]] = defaultdict(list)
        for word in sorted(vocabulary):
            if len(word) >= TYPO_FROM:
                self._by_length[len(word)].append(word)
        self._spelled = functools.lru_cache(maxsize=WORDS_REMEMBERED)(self._spelling)

    def find(self, text: str) -> Phrase | None:
        """The first phrase the customer's text says, in the text's order; None when none."""
        if not self.phrases:
            return None
        for sentence in sentences(text):
            spelled = [self._spelled(word) for word in sentence.words]
            for start, word in enumerate(spelled):
                for phrase in self._starting.get(word, ()):
                    if self._says(phrase, sentence, spelled, start):
                        return phrase
        return None

    @staticmethod
    def _says(phrase: Phrase, sentence: Sentence, spelled: Sequence[str], start: int) -> bool:
        """Whether `phrase`, its first word at `start`, is said there and not negated."""
        if len(phrase.words) == 1:
            return sentence.alone(start) and not sentence.negated(start, start)
        reach = 2 if len(phrase.words) >= LONG_PHRASE else 1
        at = start
        for alternatives in phrase.words[1:]:
            ahead = spelled[at + 1 : at + 1 + reach]
            step = next((step for step, word in enumerate(ahead) if word in alternatives), None)
            if step is None:
                return False
            at += 1 + step
        return not sentence.negated(start, at)

    def _spelling(self, word: str) -> str:
        """The phrases' word `word` is a typo of, or `word` itself."""
        if word in self._vocabulary or len(word) < TYPO_FROM:
            return word
        typos = 2 if len(word) >= TWO_TYPOS_FROM else 1
        candidates = [
            known
            for length in range(len(word) - typos, len(word) + typos + 1)
            for known in self._by_length.get(length, ())
        ]
        best = process.extractOne(word, candidates, scorer=DamerauLevenshtein.distance, score_cutoff=typos)
        return best[0] if best is not None else word
