"""The contract's topics in one table: what each is called and how many partitions it gets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from app.settings import Settings

PROFILE_PARTITIONS = 4  # profiles are few and small; input-sized partitioning buys nothing
CONTROL_PARTITIONS = 4  # commands are fewer still; any worker of the group carries out any of them
SETTING_OF = {  # field: the variable that names it
    "input": "ENRICHER_INPUT_TOPIC",
    "reply": "ENRICHER_REPLY_TOPIC",
    "stream": "ENRICHER_STREAM_TOPIC",
    "dlq": "ENRICHER_DLQ_TOPIC",
    "profile": "ENRICHER_PROFILE_TOPIC",
    "handoff": "ENRICHER_HANDOFF_TOPIC",
    "control": "ENRICHER_CONTROL_TOPIC",
    "orders": "ENRICHER_ORDERS_TOPIC",
}


@dataclass(frozen=True)
class TopicNames:
    """The eight topics a worker reads and writes, by their role in the contract."""

    input: str
    reply: str
    stream: str
    dlq: str
    profile: str
    handoff: str
    control: str
    orders: str

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        """The names the settings give."""
        return cls(
            input=settings.input_topic,
            reply=settings.reply_topic,
            stream=settings.stream_topic,
            dlq=settings.dlq_topic,
            profile=settings.profile_topic,
            handoff=settings.handoff_topic,
            control=settings.control_topic,
            orders=settings.orders_topic,
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
            handoff=f"{prefix}.handoffs",
            control=f"{prefix}.control",
            orders=f"{prefix}.orders",
        )

    def env(self) -> dict[str, str]:
        """The variables that give a worker these names."""
        return {SETTING_OF[role]: name for role, name in asdict(self).items()}

    def partitions(self, input_partitions: int) -> dict[str, int]:
        """Each topic with its partition count: replies, chunks, dead letters and handoffs (all keyed by
        conversation) as many as the input, and orders, which come as often as messages do."""
        return {
            self.input: input_partitions,
            self.reply: input_partitions,
            self.stream: input_partitions,
            self.dlq: input_partitions,
            self.profile: PROFILE_PARTITIONS,
            self.handoff: input_partitions,
            self.control: CONTROL_PARTITIONS,
            self.orders: input_partitions,
        }
