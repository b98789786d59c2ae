"""The embedded models, loading in a thread while the worker starts, so that a restart does not wait
for them (about 0.7 s here, next to a join that takes seconds); and the intents file read again
when the support team edits it. WordLlama is loaded once per process (`in_background(Embedder)`)
and shared by the signal models and the help-center's index (app/knowledge/source.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from app.errors import TemplateError
from app.observability import metrics
from app.prompts.intents_file import FILE_NAME, load_intents
from app.signals.embedding import Embedder
from app.signals.models import SignalModels

log = logging.getLogger(__name__)
Loaded = TypeVar("Loaded")


def in_background(load: Callable[[], Loaded], name: str) -> Future[Loaded]:
    """`load()` running in a thread of its own (named `name`) from now on; its result, or what it
    raised, in the future."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    loading = executor.submit(load)
    executor.shutdown(wait=False)
    return loading


class BackgroundModels:
    """`SignalModels` for `prompts_dir`, loading from the moment this is made.

    The intents file is read and checked at once, so a broken one stops the worker at start
    with its `file:line` (TemplateError); the models themselves load in the background, on
    `embedder` once it has loaded.
    """

    def __init__(self, prompts_dir: Path, embedder: Future[Embedder]) -> None:
        self._path = prompts_dir / FILE_NAME
        self._seen = _state(self._path)
        intents = load_intents(self._path)
        self._loading = in_background(lambda: SignalModels.of(intents, embedder.result()), "signal-models")

    def problem(self) -> str | None:
        """Why the models cannot answer yet (loading, or failed to load), for readiness; None once
        they can."""
        if not self._loading.done():
            return "the embedded models are still loading"
        error = self._loading.exception()
        return (
            None if error is None else f"the embedded models failed to load: {type(error).__name__}: {error}"
        )

    async def get(self) -> SignalModels:
        """The models, once loaded (at once after the first time)."""
        if self._loading.done():
            return self._loading.result()
        return await asyncio.wrap_future(self._loading)

    def reread(self) -> None:
        """Read the intents file again if it changed, and match against it from then on. A broken
        file is rejected with its `file:line` and the last good intents keep serving.

        Blocks (about 0.5 s, the examples are embedded anew): call it in a thread, as the prompt
        source's reload does (`PromptSource.follow`).
        """
        seen = _state(self._path)
        if seen == self._seen or self._loading.exception() is not None:
            return
        self._seen = seen
        try:
            intents = load_intents(self._path)
        except TemplateError as error:
            log.error("intents rejected; the last good ones keep serving", extra={"error": str(error)})
            metrics.TEMPLATE_ERRORS.inc()  # after the line: whoever sees the count can read why
            return
        self._loading.result().follow(intents)
        log.info("intents reloaded", extra={"intents": list(intents.names)})


def _state(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the file, None when it is absent: any edit changes it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
