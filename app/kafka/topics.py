"""The contract's topics in one table: what each is called and how many partitions it gets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from app.settings import Settings

PROFILE_PARTITIONS = 4  # profiles are few and small; input-sized partitioning buys nothing
SETTING_OF = {  # field: the variable that names it
    "input": "ENRICHER_INPUT_TOPIC",
    "reply": "ENRICHER_REPLY_TOPIC",
    "stream": "ENRICHER_STREAM_TOPIC",
    "dlq": "ENRICHER_DLQ_TOPIC",
    "profile": "ENRICHER_PROFILE_TOPIC",
}


@dataclass(frozen=True)
class TopicNames:
    """The five topics a worker reads and writes, by their role in the contract."""

    input: str
    reply: str
    stream: str
    dlq: str
    profile: str

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        """The names the settings give."""
        return cls(
            input=settings.input_topic,
            reply=settings.reply_topic,
            stream=settings.stream_topic,
            dlq=settings.dlq_topic,
            profile=settings.profile_topic,
        )

    @classmethod
    def prefixed(cls, prefix: str) -> TopicNames:
        """The contract's default names with `prefix` for `support`/`customer`: one set per test or run."""
        return cls(
            input=f"{prefix}.requests",
            reply=f"{prefix}.replies",
            stream=f"{prefix}.replies.stream",
            dlq=f"{prefix}.requests.dlq",
            profile=f"{prefix}.profiles",
        )

    def env(self) -> dict[str, str]:
        """The variables that give a worker these names."""
        return {SETTING_OF[role]: name for role, name in asdict(self).items()}

    def partitions(self, input_partitions: int) -> dict[str, int]:
        """Each topic with its partition count: replies, chunks and dead letters as many as the input."""
        return {
            self.input: input_partitions,
            self.reply: input_partitions,
            self.stream: input_partitions,
            self.dlq: input_partitions,
            self.profile: PROFILE_PARTITIONS,
        }
