"""`prompts/handoff.yaml`, the support team's rules for handing a conversation to a human: read with
each problem at its line, and the decision they make for one message.

    rules:
      - name: asks for a person        # free text, shown in the handoff reason
        phrases:                       # what customers write, by language (matched as below)
          en: [human please, talk/speak to/with person/human/agent]
          de: [mit mitarbeiter/menschen sprechen]
        intent: wants_human            # an intent of intents.yaml
      - name: the AI says so
        needs_human: true              # a structured answer's `needs_human` (decide(needs_human=...))
      - name: very upset customer
        sentiment_below: -0.6          # VADER compound score, between -1 and 1
        tiers: [gold, platinum]        # optional on any rule: only customers of these tiers
      - name: the AI keeps failing
        fallbacks_in_a_row: 3          # the fallback answered this many times in a row

A rule has one condition or several, and applies when any of them holds (and the customer is of
one of its tiers, if it names them): "asks for a person" by a phrase or by the intent. The first
rule that applies, in file order, decides. No file means no rules: nothing is handed off. Like
intents.yaml the file is read node by node (`yaml.compose`), since loading forgets the lines a
checker must report, and a key given twice.

`needs_human` holds only when the caller says the AI's structured answer had it: the pipeline
decides before the answer without it, and again on a structured answer that says `needs_human: true`.

A rule's phrases are matched on the customer's own words: `PhraseMatcher(phrases).find(text)`.
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

import difflib
import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein
from yaml.constructor import ConstructorError, SafeConstructor

from app.errors import TemplateError
from app.signals.noise import without_noise

T = TypeVar("T")
Problem = Callable[[int, str], None]
"""How the readers report a mistake: `problem(line, message)`."""

FILE_NAME = "handoff.yaml"
ReasonKind = Literal["phrase", "intent", "needs_human", "sentiment", "fallbacks"]
CONDITIONS: dict[str, ReasonKind] = {
    "phrases": "phrase",
    "intent": "intent",
    "needs_human": "needs_human",
    "sentiment_below": "sentiment",
    "fallbacks_in_a_row": "fallbacks",
}
KEYS = ("name", *CONDITIONS, "tiers")
STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
LANGUAGE = re.compile(r"[a-z]{2,3}")

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
class HandoffReason:
    """Why a conversation goes to a human: the handoff record's `reason`."""

    kind: ReasonKind
    detail: str

    def as_record(self) -> dict[str, str]:
        """`{"kind", "detail"}`, as the contract's handoff record has it."""
        return {"kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class MessageFacts:
    """What the rules look at in one message: its `text`, its signals `intent` and `sentiment` (None
    when unknown: such conditions do not hold), how many replies in a row its conversation has had
    from the fallback template, and whether the AI's structured answer to it said `needs_human`."""

    text: str = ""
    intent: str | None = None
    sentiment: float | None = None
    fallbacks_in_a_row: int = 0
    needs_human: bool = False


@dataclass(frozen=True)
class HandoffRule:
    """One rule of the file: its name, its line, its conditions (any of which will do) and the tiers
    it is limited to."""

    name: str
    line: int
    phrases: PhraseMatcher | None = None
    intent: str | None = None
    needs_human: bool = False
    sentiment_below: float | None = None
    fallbacks_in_a_row: int | None = None
    tiers: frozenset[str] = frozenset()
    """Case-folded; empty: every tier."""

    def describe(self) -> str:
        """The rule in words, as `enricher prompts check` lists it."""
        conditions = []
        if self.phrases is not None:
            languages = sorted({phrase.language for phrase in self.phrases.phrases})
            conditions.append(f"{len(self.phrases.phrases)} phrases ({', '.join(languages)})")
        if self.intent is not None:
            conditions.append(f"intent {self.intent}")
        if self.needs_human:
            conditions.append("the AI's answer says needs_human")
        if self.sentiment_below is not None:
            conditions.append(f"sentiment below {self.sentiment_below:g}")
        if self.fallbacks_in_a_row is not None:
            conditions.append(f"{self.fallbacks_in_a_row} fallback replies in a row")
        tiers = f", only tiers {', '.join(sorted(self.tiers))}" if self.tiers else ""
        return f"rule '{self.name}': {' or '.join(conditions)}{tiers}"

    def reason(self, facts: MessageFacts, tier: str) -> HandoffReason | None:
        """The reason this rule gives for a message with these facts, from a customer of this tier
        (`""` without a profile), or None when it does not apply."""
        tier = tier.strip().casefold()
        if self.tiers and tier not in self.tiers:
            return None
        held = self._held(facts)
        if held is None:
            return None
        kind, fact = held
        limited = f", tier {tier}" if self.tiers else ""
        return HandoffReason(kind, f"rule '{self.name}': {fact}{limited}")

    def _held(self, facts: MessageFacts) -> tuple[ReasonKind, str] | None:
        """The first of its conditions that holds, and what matched in words; None when none does."""
        if self.phrases is not None and (phrase := self.phrases.find(facts.text)) is not None:
            return "phrase", f'phrase "{phrase.text}" ({phrase.language}, line {phrase.line})'
        if self.intent is not None and facts.intent == self.intent:
            return "intent", f"intent {self.intent}"
        if self.needs_human and facts.needs_human:
            return "needs_human", "the AI's answer says needs_human"
        sentiment = facts.sentiment
        if self.sentiment_below is not None and sentiment is not None and sentiment < self.sentiment_below:
            return "sentiment", f"sentiment {sentiment:g} below {self.sentiment_below:g}"
        if self.fallbacks_in_a_row is not None and facts.fallbacks_in_a_row >= self.fallbacks_in_a_row:
            return "fallbacks", f"{facts.fallbacks_in_a_row} fallback replies in a row"
        return None


@dataclass(frozen=True)
class HandoffRules:
    """The rules of a file, in file order; none: nothing is handed off."""

    rules: tuple[HandoffRule, ...] = ()

    def decide(
        self,
        *,
        intent: str | None,
        sentiment: float | None,
        tier: str,
        fallbacks_in_a_row: int,
        text: str = "",
        needs_human: bool = False,
    ) -> HandoffReason | None:
        """Why this message's conversation goes to a human (the first rule that applies), or None.

        `text` is what the customer wrote, `intent` and `sentiment` the message's signals (None
        when unknown: such conditions do not hold), `tier` the customer's (`""` without a
        profile), `fallbacks_in_a_row` how many replies in a row the conversation has had from the
        fallback template, `needs_human` what the AI's structured answer said (False before the
        answer, or without a structured one).
        """
        facts = MessageFacts(text, intent, sentiment, fallbacks_in_a_row, needs_human)
        for rule in self.rules:
            reason = rule.reason(facts, tier)
            if reason is not None:
                return reason
        return None


NO_RULES = HandoffRules()


def read_rules(path: Path, intents: Collection[str]) -> tuple[HandoffRules, list[TemplateError]]:
    """The rules of the file that are right, and a problem (`file:line`) for each mistake in it.

    `intents` are the names intents.yaml defines: a rule on any other intent could never apply.
    No file: no rules and no problem.
    """
    found: list[tuple[int, str]] = []
    if not path.exists():
        return HandoffRules(), []
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        return HandoffRules(), [TemplateError(f"cannot read the file: {error}", str(path))]
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 1
        return HandoffRules(), [TemplateError(f"not valid YAML: {error.problem}", f"{path}:{line}")]

    def problem(line: int, message: str) -> None:
        found.append((line, message))

    items = _rule_nodes(root, problem)
    rules: list[HandoffRule] = []
    names: dict[str, int] = {}
    for item in items:
        rule = _read_rule(item, set(intents), problem)
        if rule is None:
            continue
        earlier = names.setdefault(rule.name.casefold(), rule.line)
        if earlier != rule.line:
            problem(rule.line, f"a rule named '{rule.name}' is on line {earlier} already: rename one")
            continue
        rules.append(rule)
    # A rule's own problems are found key by key, its missing parts after: report in file order.
    problems = [
        TemplateError(message, f"{path}:{line}") for line, message in sorted(found, key=lambda f: f[0])
    ]
    return HandoffRules(tuple(rules)), problems


def _rule_nodes(root: yaml.Node | None, problem: Problem) -> list[yaml.Node]:
    """The nodes of the `rules:` list; a problem when the file is not `rules:` and a list."""
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        problem(root.start_mark.line + 1, "the file must start with `rules:`, followed by `- name:` lines")
        return []
    items: list[yaml.Node] = []
    for key, value in root.value:
        line = key.start_mark.line + 1
        if key.value != "rules":
            problem(line, f"unknown key `{key.value}`: the file has only `rules:`")
        elif isinstance(value, yaml.SequenceNode):
            items += value.value
        elif not (isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null"):
            problem(line, "`rules:` must be followed by a list of rules, each starting with `- name:`")
    return items


def _read_rule(node: yaml.Node, intents: set[str], problem: Problem) -> HandoffRule | None:
    """One rule, or None after reporting each of its mistakes."""
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        problem(line, "a rule must be `name:` and its conditions, e.g. `- name: ...` then `intent: ...`")
        return None
    fields: dict[str, tuple[int, object]] = {}
    ok = True
    for key, value in node.value:
        key_line, name = key.start_mark.line + 1, str(key.value)
        if name not in KEYS:
            close = difflib.get_close_matches(name, KEYS, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"a rule has {', '.join(KEYS)}"
            problem(key_line, f"unknown key `{name}`: {hint}")
            ok = False
        elif name in fields:
            problem(key_line, f"`{name}` is given twice in this rule (first on line {fields[name][0]})")
            ok = False
        else:
            checked = _phrases(value, problem) if name == "phrases" else _value(name, value, intents)
            if isinstance(checked, _Wrong):
                problem(value.start_mark.line + 1, checked.message)
            ok = ok and checked is not None and not isinstance(checked, _Wrong)
            fields[name] = (key_line, checked)
    title = fields.get("name", (line, None))[1]
    label = f"rule '{title}'" if isinstance(title, str) else "this rule"
    if "name" not in fields:
        problem(line, "this rule has no `name:`: give it one, it is shown in the handoff reason")
        ok = False
    conditions = [key for key in CONDITIONS if key in fields]
    if not conditions:
        problem(line, f"{label} has no condition: give it one or more of {', '.join(CONDITIONS)}")
        ok = False
    if not ok or not isinstance(title, str):
        return None
    values = {key: value for key, (_, value) in fields.items()}
    tiers = values.pop("tiers", frozenset())
    return HandoffRule(
        name=title,
        line=line,
        phrases=_optional(values.get("phrases"), PhraseMatcher),
        intent=_optional(values.get("intent"), str),
        needs_human=values.get("needs_human") is True,
        sentiment_below=_optional(values.get("sentiment_below"), float),
        fallbacks_in_a_row=_optional(values.get("fallbacks_in_a_row"), int),
        tiers=tiers if isinstance(tiers, frozenset) else frozenset(),
    )


@dataclass(frozen=True)
class _Wrong:
    """A value that is not what its key needs, and what to write instead."""

    message: str


def _value(key: str, node: yaml.Node, intents: set[str]) -> object:
    """The value of `key`, checked; a _Wrong saying what is wrong with it otherwise."""
    if key == "name":
        text = " ".join((_text(node) or "").split())
        return text or _Wrong("`name` must be some words, e.g. `name: asks for a person`")
    if key == "intent":
        intent = _text(node)
        if intent in intents:
            return intent
        known = f"the intents are {', '.join(sorted(intents))}" if intents else "intents.yaml has none"
        written = f"`{node.value}`" if isinstance(node, yaml.ScalarNode) else "a list"
        return _Wrong(f"{written} is not an intent of intents.yaml: {known}")
    if key == "needs_human":
        if node.tag == BOOL_TAG and _construct(node) is True:
            return True
        return _Wrong("`needs_human` can only be `true`: the rule applies when the AI's answer says so")
    if key == "sentiment_below":
        number = _construct(node) if node.tag in (INT_TAG, FLOAT_TAG) else None
        if isinstance(number, int | float) and -1 < number < 1:
            return float(number)
        return _Wrong("`sentiment_below` must be a number between -1 and 1 (not either), e.g. -0.6")
    if key == "fallbacks_in_a_row":
        count = _construct(node) if node.tag == INT_TAG else None
        if isinstance(count, int) and count >= 1:
            return count
        return _Wrong("`fallbacks_in_a_row` must be a whole number, 1 or more, e.g. 3")
    tiers = node.value if isinstance(node, yaml.SequenceNode) else None
    names = [_text(item) for item in tiers or ()]
    if not tiers or any(not name or not name.strip() for name in names):
        return _Wrong("`tiers` must be a list of tier names, e.g. `tiers: [gold, platinum]`")
    return frozenset(name.strip().casefold() for name in names if name)


def _phrases(node: yaml.Node, problem: Problem) -> PhraseMatcher | _Wrong | None:
    """The phrases by language, prepared for matching; a _Wrong when the value is not phrases by
    language; None after reporting each wrong language or phrase at its line."""
    if not isinstance(node, yaml.MappingNode) or not node.value:
        return _Wrong("`phrases` must list phrases by language, e.g. `en: [human please, talk to a person]`")
    phrases: list[Phrase] = []
    lines: dict[tuple[frozenset[str], ...], int] = {}
    ok = True
    for key, value in node.value:
        language, line = str(key.value), key.start_mark.line + 1
        items = value.value if isinstance(value, yaml.SequenceNode) else None
        if not LANGUAGE.fullmatch(language):
            problem(line, f"`{language}` is not a language code: two letters, e.g. en, de, fr, es")
        elif not items:
            problem(line, f"`{language}:` must be followed by a list of phrases, e.g. `[human please]`")
        ok = ok and bool(items) and LANGUAGE.fullmatch(language) is not None
        for item in items or ():
            line = item.start_mark.line + 1
            phrase = _phrase(item, language, problem)
            if phrase is not None and (earlier := lines.setdefault(phrase.words, line)) != line:
                problem(line, f'"{phrase.text}" is the same phrase as line {earlier}')
                phrase = None
            ok = ok and phrase is not None
            phrases += [phrase] if phrase is not None else []
    return PhraseMatcher(phrases) if ok else None


def _phrase(node: yaml.Node, language: str, problem: Problem) -> Phrase | None:
    """One phrase, or None after reporting what is wrong with it."""
    line, written = node.start_mark.line + 1, _text(node)
    if written is None or not written.strip():
        problem(line, "a phrase must be words, e.g. `talk to a person` (in quotes if it is `yes` or `no`)")
        return None
    if any(character.isdigit() for character in written):
        problem(line, f'"{written}" has a number, and numbers are left out of messages: leave it out')
        return None
    try:
        phrase = Phrase.of(written, language, line)
    except ValueError as error:
        problem(line, str(error))
        return None
    if not phrase.words:
        problem(line, f'"{written}" has no words once a, the and the like are left out')
        return None
    return phrase


def _text(node: yaml.Node) -> str | None:
    """The node's text when YAML reads it as text (not a number, `yes` or a list); else None."""
    return str(node.value) if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG else None


def _construct(node: yaml.Node) -> object:
    try:  # a number YAML recognised; only an explicit tag (`!!int x`) may fail
        return SafeConstructor().construct_object(node)
    except (ConstructorError, ValueError):
        return None


def _optional(value: object, kind: type[T]) -> T | None:
    return value if isinstance(value, kind) else None


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
