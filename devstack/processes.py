"""Child processes for `enricher dev`, the tests and the benchmark: start, wait until they answer, stop."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

import aiohttp

from app.polling import NotYet, poll

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
# Variables a developer's shell may hold that must not leak into a worker started for a test
# or a benchmark: it is configured by exactly the environment it is given.
CONTRACT_PREFIXES = ("ENRICHER_", "KAFKA_", "REDIS_", "OPENAI_")
HTTP_POLL_S = 0.2
LINUX_EPHEMERAL_LOW = 32768
FIRST_UNPRIVILEGED_PORT = 1024
LISTENING_PORTS = 12_000


class ProcessDied(RuntimeError):
    """A child process exited while we were waiting for it to become ready."""


def _listening_ports() -> range:
    """Ports for children to listen on: below the kernel's ephemeral range, where outgoing
    connections take their local ports (empty if the range leaves no room below it)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = LINUX_EPHEMERAL_LOW  # not Linux: macOS's range starts higher still
    return range(max(FIRST_UNPRIVILEGED_PORT, low - LISTENING_PORTS), low)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortWalk:
    """Hands out the listening ports in turn, from a random place, skipping the ones in use.

    A port bound to 0 and released (the usual way to find a free one) comes from the ephemeral
    range, and can become the local port of an outgoing connection before the child meant to
    listen on it starts: the suite, with thousands of connections, once saw a worker fail so
    ("address already in use"). Ports below that range are never taken that way; each process
    walks them from its own random place, so the suite's parallel processes rarely try one
    port at once, and one process never hands out a port twice in a row.
    """

    def __init__(self, ports: range) -> None:
        self._ports = ports
        self._next = random.randrange(len(ports)) if ports else 0

    def take(self) -> int:
        for _ in self._ports:
            port = self._ports[self._next]
            self._next = (self._next + 1) % len(self._ports)
            if _bindable(port):
                return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # none left below the range
            sock.bind(("127.0.0.1", 0))
            ephemeral: int = sock.getsockname()[1]
            return ephemeral


_ports = PortWalk(_listening_ports())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now, for a child to listen on."""
    return _ports.take()


def pick_port(preferred: int) -> int:
    """`preferred` if it can be bound on 127.0.0.1, otherwise a free port."""
    return preferred if _bindable(preferred) else free_port()


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

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the child to exit by itself; its exit code (raises TimeoutExpired after `timeout_s`)."""
        return None if self._popen is None else self._popen.wait(timeout_s)

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
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:

        async def answers() -> None:
            if alive is not None:
                alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):  # not listening yet
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            raise NotYet(f"{url} did not answer 200 within {timeout_s:.0f} s")

        await poll(answers, timeout_s, HTTP_POLL_S)


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
