"""What the studio shows: the directory's templates, each with its conditions and token counts, the
problems `enricher prompts check` reports, and a template rendered for one message; the help-center
passages the worker would give a message; and the newest customer messages, to try a draft on.

The passages are found as the worker finds them (the masked message and history, the message's
locale), on an index of the gateway's own that is built in the background while it starts and
reloaded on each edit of an article. The newest messages are read off the input topic without a
consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from app.errors import BadInput, TemplateError
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, consumer_from_beginning, read_to_end, stop_client
from app.knowledge.index import BackgroundKnowledge, Hit
from app.prompts.cli import intents_report, over_budget, sample_tokens
from app.prompts.file_format import Sample, read_samples, read_text
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary, PromptTemplate, RenderedPrompt
from app.prompts.loading import load_directory
from app.prompts.studio.draft import Problem
from app.schemas import CustomerMessage, HistoryTurn, parse_message
from app.settings import Settings
from app.signals.models import Embedder, in_background
from app.signals.pii import mask, prompt_texts
from app.tokens import count_chat, count_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    """A directory's templates that load, with their text and token counts, and every problem."""

    library: PromptLibrary
    samples: Mapping[Path, Sample]
    tokens: Mapping[PromptTemplate, Mapping[str, int]]
    problems: Sequence[Problem]

    @classmethod
    def load(cls, directory: Path, model: str, max_tokens: int) -> Catalog:
        """Load and check `directory` as `enricher prompts check` does; the templates that load are
        counted even when another file is broken, so their counts show while it is fixed."""
        loaded = load_directory(directory)
        library, errors = PromptLibrary(loaded.entries, loaded.handoff_rules), loaded.problems
        samples = read_samples(directory) if loaded.entries else {}  # loading refused them otherwise
        tokens = sample_tokens(library, samples, model)
        errors += over_budget(tokens, max_tokens) + intents_report(directory / INTENTS_FILE)[1]
        return cls(library, samples, tokens, [Problem.of(error) for error in errors])

    def file(self, name: str) -> PromptTemplate | None:
        """The template loaded from the file `name` (`support_reply.j2`)."""
        return next((t for t in self.library.templates if t.path.name == name), None)

    def summary(self) -> dict[str, Any]:
        """The JSON of `GET /api/studio/templates`."""
        return {
            "templates": [_template_json(t, self.tokens.get(t, {})) for t in self.library.templates],
            "problems": [vars(problem) for problem in self.problems],
            "sample": next(iter(self.samples.values())).message.text if self.samples else "",
        }


def _template_json(template: PromptTemplate, tokens: Mapping[str, int]) -> dict[str, Any]:
    return {
        "file": template.path.name,
        "name": template.name,
        "label": template.label,
        "description": template.description,
        "kind": template.kind,
        "variant": template.variant,
        "weight": template.weight,
        "version": template.version,
        "conditions": template.conditions.model_dump(exclude_none=True),
        "model": {"temperature": template.temperature, "max_tokens": template.max_tokens},
        "tokens": dict(tokens),
        "source": read_text(template.path),
    }


def message_for(
    sample: Sample, template: PromptTemplate, text: str, customer_id: str | None
) -> CustomerMessage:
    """The first sample's message with `text` from `customer_id`, on the channel and locale the
    template's `when:` asks for (as `enricher prompts render FILE` shows a file); ValidationError
    when the text is not a valid message."""
    conditions = template.conditions
    updates = {
        "text": text,
        "customer_id": customer_id,
        "channel": conditions.channel,
        "locale": conditions.locale,
    }
    document = sample.message.model_dump() | {
        key: value for key, value in updates.items() if value is not None
    }
    return CustomerMessage.model_validate(document)


def rendered_json(rendered: RenderedPrompt, model: str) -> dict[str, Any]:
    """The chat messages as they would go to the LLM, each with its tokens, and the prompt's total.

    The message, the history and the profile are masked already (`render_for`), as they go to
    the LLM.
    """
    return {
        "messages": [
            {"role": m["role"], "content": m["content"], "tokens": count_text(m["content"], model)}
            for m in rendered.messages
        ],
        "prompt_tokens": count_chat(rendered.messages, model),
        "to_llm": not rendered.template.sent_as_is,
        "masked": True,
    }


def worker_choice(library: PromptLibrary, message: CustomerMessage, customer: Mapping[str, str]) -> str:
    """The file the worker answers this message with (its reply template)."""
    return library.select(message, customer).path.name


class StudioKnowledge:
    """The help-center of ENRICHER_KNOWLEDGE_DIR as the studio shows it; `start` and `stop` belong to
    the gateway's lifespan. A broken help-center leaves the studio without passages, not down."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._knowledge: BackgroundKnowledge | None = None
        self._watching: asyncio.Task[None] | None = None
        self._problem = "the help-center is not loaded"

    def start(self) -> None:
        """Check the articles, and index them in the background (WordLlama loads in a thread)."""
        try:
            self._knowledge = BackgroundKnowledge(self._directory, in_background(Embedder, "embedder"))
        except TemplateError as error:
            self._problem = f"the help-center does not load: {error}"
            log.error("the studio shows no help-center passages", extra={"error": str(error)})
            return
        self._watching = asyncio.create_task(self._knowledge.watch())

    async def stop(self) -> None:
        """Stop following the articles' edits."""
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    def problem(self) -> str | None:
        """Why no passages can be found now (indexing, or a broken help-center); None once they can."""
        return self._problem if self._knowledge is None else self._knowledge.problem()

    def passages_for(
        self, message: CustomerMessage, customer: Mapping[str, str], history: Sequence[HistoryTurn]
    ) -> list[Hit]:
        """The passages the worker would give `message` from `customer` after `history`, best first
        (none while the index is being built)."""
        if self._knowledge is None:
            return []
        texts = prompt_texts(message, history, customer)
        asked, turns, _profile = mask(texts, message.locale).prompt_parts(message, history, customer)
        return self._knowledge.passages_for(asked, turns)


def passages_json(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """What the studio shows of each passage: its article's id and title, its heading path, and its
    score."""
    return [
        {
            "id": hit.passage.article_id,
            "title": hit.passage.title,
            "heading": hit.passage.heading,
            "score": round(hit.score, 3),
        }
        for hit in hits
    ]


async def recent_messages(settings: Settings, count: int) -> list[CustomerMessage]:
    """The newest `count` records of the input topic that are valid messages, oldest first.

    Each partition is read from `count` records before its end, so the topic's newest `count`
    are among what is read (Tansu's end offsets undercount, which only makes the window longer).
    Records the worker would dead-letter are left out, so fewer may come back. Raises KafkaError,
    TimeoutError, or TopicMissing when the input topic does not exist.
    """
    consumer = await consumer_from_beginning(
        settings.kafka_bootstrap_servers,
        [settings.input_topic],
        security=KafkaSecurity.from_settings(settings),
    )
    try:
        await _seek_back(consumer, count)
        records = await read_to_end(consumer)
    finally:
        await stop_client(consumer)
    newest = sorted(records, key=lambda record: (record.timestamp, record.partition, record.offset))
    messages = []
    for record in newest:
        try:
            messages.append(parse_message(record.value, settings.max_input_chars, record.headers))
        except BadInput:
            continue
    return messages[-count:]


async def _seek_back(consumer: AIOKafkaConsumer, count: int) -> None:
    partitions = sorted(consumer.assignment())
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        starts = await consumer.beginning_offsets(partitions)
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        ends = await consumer.end_offsets(partitions)
    for partition in partitions:
        consumer.seek(partition, max(starts[partition], ends[partition] - count))
