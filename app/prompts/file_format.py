"""The prompt file format and its reading: YAML front matter, a Jinja2 body, sample data.

A template is a file `prompts/<anything>.j2`:

    ---
    name: support_reply              # required
    description: Default reply.      # required
    kind: reply                      # or `fallback`: sent as the reply when the LLM cannot answer;
                                     # or `handoff`: sent when the conversation goes to a human
    variant: warm                    # optional A/B variant: same name and `when`, other variant
    weight: 1                        # optional share of conversations for this variant
    model: {temperature: 0.3, max_tokens: 400}          # optional
    when: {channel: chat, locale: de, tier: gold}       # optional, each key optional
    response: {text_field: reply, schema: {...}}         # optional: the answer is a JSON object
    tools: [order_status]            # optional: the tools.yaml tools the LLM may call for it;
                                     # without `tools:` every one, `tools: []` none
    ---
    {% block system %}...{% endblock %}      a fallback or handoff has one {% block reply %} instead
    {% block user %}...{% endblock %}

Variables (plain data only; a missing optional message field is ""):

    customer   profile fields, str -> str, possibly empty            every part
    message    message_id, conversation_id, customer_id, channel,     every part
               locale, sent_at, metadata; and `text`                  `text` in the user part only
    metadata   the message's metadata object                           every part
    now        the current time, RFC 3339                              every part
    history    [{role: "customer" | "agent", text, at}], oldest first  the user part only
    signals    what the embedded models found in the text: language,  every part
               sentiment, intent, pii (the kinds of personal data)
    reason     why the conversation goes to a human: kind, detail      a handoff template only
    orders     the customer's recent orders, newest first: order_id,  every part
               status, items [{sku, name, qty}], placed_at,
               updated_at, carrier, tracking_number ("" when unknown)
    knowledge  the help-center passages that best match the message,   every part
               best first: [{id, title, text, score}] (empty when
               none matches or ENRICHER_KNOWLEDGE_DIR has no article
               of its locale); put them in the user part: an answer
               repeating the system part is blocked by the guard

A reply template's `response:` (`response_schema.py`) makes the answer a JSON object its schema
describes, the customer's text one of its fields.

Samples, `prompts/samples/*.yaml` (or `.json`), hold a `customer`, a `history` and a `message`
(and optionally `signals` and `orders`); every template is rendered with each of them when it is loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from app.errors import TemplateError, one_line, where
from app.prompts.response_schema import ResponseFormat, ResponseSchema
from app.schemas import CustomerMessage, HistoryTurn, Order

FENCE = "---"
VARIABLES = frozenset({"customer", "history", "knowledge", "message", "metadata", "now", "orders", "signals"})
TemplateKind = Literal["reply", "fallback", "handoff"]
KIND_VARIABLES: dict[str, frozenset[str]] = {"handoff": frozenset({"reason"})}
# What a template is trial-rendered with when a sample names no signals: an English message of no
# known intent, neutral, without personal data.
SAMPLE_SIGNALS = {"language": "en", "sentiment": 0.0, "intent": "unknown", "pii": []}
# What a handoff template is trial-rendered and previewed with.
SAMPLE_REASON = {"kind": "intent", "detail": "rule 'asks for a person': intent wants_human"}
# A fallback and a handoff are sent to the customer as they are, without the LLM.
BLOCKS = {"reply": ("system", "user"), "fallback": ("reply",), "handoff": ("reply",)}
SYSTEM_SIDE_BLOCKS = frozenset({"system", "reply"})
SAMPLE_SUFFIXES = (".yaml", ".yml", ".json")
FrontT = TypeVar("FrontT", bound=BaseModel)
FIELD_PROBLEMS = {
    "missing": "is required",
    "extra_forbidden": "is not a known field (check the spelling)",
    "string_type": "must be text: put it in quotes",
    "string_pattern_mismatch": "may only use letters, digits, '_' and '-'",
}


def normalise(value: str) -> str:
    """Condition values compare case-insensitively; locales treat `de_AT` like `de-at`."""
    return value.strip().casefold().replace("_", "-")


def locale_chain(locale: str) -> list[str]:
    """The locales tried in order for a message: `de-AT` gives `de-at`, `de`, `en`."""
    full = normalise(locale)
    return list(dict.fromkeys(tag for tag in (full, full.split("-")[0], "en") if tag))


class Conditions(BaseModel):
    """The `when:` part: a template applies when every condition set here matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Annotated[str, Field(min_length=1)] | None = None
    locale: Annotated[str, Field(min_length=1)] | None = None
    tier: Annotated[str, Field(min_length=1)] | None = None
    intent: Annotated[str, Field(min_length=1)] | None = None  # an intent of intents.yaml
    language: Annotated[str, Field(min_length=1)] | None = None  # the language detected in the text

    @field_validator("channel", "locale", "tier", "intent", "language")
    @classmethod
    def _normalised(cls, value: str | None) -> str | None:
        return None if value is None else normalise(value)

    def matches(self, facts: dict[str, str]) -> bool:
        """Whether each set condition equals the (normalised) fact of the same name."""
        return all(facts.get(key) == value for key, value in self.model_dump().items() if value is not None)

    @property
    def specificity(self) -> tuple[int, bool, bool, bool, bool, bool]:
        """Sort key: more conditions win; on a tie tier beats intent beats locale beats language
        beats channel."""
        named = (self.tier, self.intent, self.locale, self.language, self.channel)
        tier, intent, locale, language, channel = (value is not None for value in named)
        return (sum((tier, intent, locale, language, channel)), tier, intent, locale, language, channel)


class ModelSettings(BaseModel):
    """The `model:` part: sampling settings passed to the LLM with this template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None


class FrontMatter(BaseModel):
    """The YAML between the two `---` lines at the top of a template file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    description: Annotated[str, Field(min_length=1)]
    kind: TemplateKind = "reply"
    variant: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    model: ModelSettings = Field(default_factory=ModelSettings)
    when: Conditions = Field(default_factory=Conditions)
    response: ResponseFormat | None = None
    tools: tuple[Annotated[str, Field(min_length=1)], ...] | None = None

    @field_validator("tools")
    @classmethod
    def _tools_of_a_reply(cls, tools: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        if tools and info.data.get("kind", "reply") != "reply":
            raise PydanticCustomError("tools_kind", "is only for reply templates: this one is sent as it is")
        return tools

    @field_validator("response")
    @classmethod
    def _checked_response(
        cls, response: ResponseFormat | None, info: ValidationInfo
    ) -> ResponseFormat | None:
        if response is None:
            return None
        if info.data.get("kind", "reply") != "reply":
            raise PydanticCustomError(
                "response_kind", "is only for reply templates: this one is sent as it is"
            )
        found = response.problem()
        if found is not None:
            location, problem = found
            raise PydanticCustomError(
                "response_schema",
                "is wrong at `{at}`: {problem}",
                {"at": where(location), "problem": problem},
            )
        return response


@dataclass(frozen=True)
class PromptFile:
    """A parsed template file; `body` is padded with blank lines so its line numbers are the file's."""

    path: Path
    source: str
    front: FrontMatter
    body: str


@dataclass(frozen=True)
class PromptTemplate:
    """What a template file says about itself; `version` is a hash of its source, for tracing replies."""

    name: str
    version: str
    variant: str | None
    weight: float
    path: Path
    description: str
    temperature: float | None
    max_tokens: int | None
    conditions: Conditions
    kind: TemplateKind
    # Not compared: the version stands for the whole source, and a schema is no hashable value.
    response: ResponseSchema | None = field(default=None, compare=False)
    """When set, the answer is a JSON object of this schema (a structured reply)."""
    tools: tuple[str, ...] | None = None
    """The tools of tools.yaml the LLM may call for it; None: every one."""

    @property
    def response_format(self) -> dict[str, Any] | None:
        """The call's `response_format` for a structured reply, else None (`response_schema.py`)."""
        return self.response.request_format(self.name) if self.response is not None else None

    @property
    def is_fallback(self) -> bool:
        """Whether it is sent as the reply when the LLM cannot answer."""
        return self.kind == "fallback"

    @property
    def sent_as_is(self) -> bool:
        """Whether its text goes to the customer as it is, without the LLM (a fallback, a handoff)."""
        return self.kind != "reply"

    @property
    def label(self) -> str:
        """How tools name it: `support_reply`, `support_reply (variant warm)`, `fallback (fallback)`."""
        kind = f" ({self.kind})" if self.sent_as_is else ""
        variant = f" (variant {self.variant})" if self.variant else ""
        return f"{self.name}{variant}{kind}"


class SamplePassage(BaseModel):
    """A help-center passage of a sample, as the template variable `knowledge` holds one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    text: str
    score: float = 1.0


class Sample(BaseModel):
    """Example data templates are rendered with when they are loaded and previewed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer: dict[str, str] = Field(default_factory=dict)
    history: list[HistoryTurn] = Field(default_factory=list)
    message: CustomerMessage
    signals: dict[str, Any] = Field(default_factory=lambda: dict(SAMPLE_SIGNALS))
    orders: list[Order] = Field(default_factory=list)
    knowledge: list[SamplePassage] = Field(default_factory=list)
    """The help-center passages found for the message, best first, so that a template's
    `{% if knowledge %}` part is trial-rendered too."""

    def passages(self) -> list[dict[str, str | float]]:
        """`knowledge` as the template variable holds it."""
        return [passage.model_dump() for passage in self.knowledge]


def read_text(path: Path) -> str:
    """A file's text as UTF-8, or a TemplateError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TemplateError(f"cannot read: {error}", str(path)) from None


def read_prompt_file(path: Path) -> PromptFile:
    """Split a template file into validated front matter and its Jinja2 body."""
    source = read_text(path)
    front, body = split_front_matter(path, source, FrontMatter)
    return PromptFile(path=path, source=source, front=front, body=body)


def split_front_matter(path: Path, source: str, model: type[FrontT]) -> tuple[FrontT, str]:
    """A file's front matter validated as `model`, and the text after it, padded with blank lines so
    that its line numbers are the file's; a TemplateError with `file:line` when the front matter is
    missing, unclosed or wrong (templates and help-center articles share this format)."""
    lines = source.split("\n")
    if lines[0].strip() != FENCE:
        raise TemplateError("the file must start with a '---' line opening the front matter", f"{path}:1")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == FENCE), None)
    if end is None:
        raise TemplateError("the front matter is not closed by a second '---' line", f"{path}:1")
    front = _front_matter(path, "\n".join(lines[1:end]), model)
    return front, "\n" * (end + 1) + "\n".join(lines[end + 1 :])


def _front_matter(path: Path, text: str, model: type[FrontT]) -> FrontT:
    # The front matter starts on the file's line 2 and YAML counts lines from 0.
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 2 if error.problem_mark else 1
        raise TemplateError(f"front matter is not valid YAML: {error.problem}", f"{path}:{line}") from None
    if not isinstance(document, dict):
        raise TemplateError("front matter must be `key: value` lines", f"{path}:1")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        field = where(first["loc"])
        problem = FIELD_PROBLEMS.get(first["type"], first["msg"])
        # A missing key has no line of its own: point at the opening '---' (line 1).
        line = _key_lines(text).get(str(first["loc"][0]), -1) + 2
        raise TemplateError(f"front matter field `{field}` {problem}", f"{path}:{line}") from None


def front_matter_line(file: PromptFile, key: str) -> int:
    """The file's line of front matter field `key`, or 1 (the opening `---`) when it has none."""
    lines = file.source.split("\n")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == FENCE), len(lines))
    return _key_lines("\n".join(lines[1:end])).get(key, -1) + 2


def _key_lines(text: str) -> dict[str, int]:
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line for key, _ in node.value if isinstance(key, yaml.ScalarNode)}


def describe(file: PromptFile) -> PromptTemplate:
    """The PromptTemplate a parsed file describes."""
    front = file.front
    return PromptTemplate(
        name=front.name,
        version=hashlib.sha256(file.source.encode()).hexdigest()[:12],
        variant=front.variant,
        weight=front.weight,
        path=file.path,
        description=front.description,
        temperature=front.model.temperature,
        max_tokens=front.model.max_tokens,
        conditions=front.when,
        kind=front.kind,
        response=ResponseSchema.of(front.response) if front.response is not None else None,
        tools=front.tools,
    )


def read_samples(directory: Path) -> dict[Path, Sample]:
    """Every sample in `directory/samples`; a TemplateError if there is none or one is broken."""
    folder = directory / "samples"
    paths = sorted(p for p in folder.glob("*") if p.suffix in SAMPLE_SUFFIXES)
    if not paths:
        raise TemplateError("no sample data: add a samples/*.yaml file", str(folder))
    return {path: _read_sample(path) for path in paths}


def _read_sample(path: Path) -> Sample:
    try:
        return Sample.model_validate(yaml.safe_load(read_text(path)))
    except yaml.YAMLError as error:
        raise TemplateError(f"not valid YAML or JSON: {error}", str(path)) from None
    except ValidationError as error:
        raise TemplateError(f"invalid sample: {one_line(error)}", str(path)) from None
