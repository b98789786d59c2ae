"""The embedded models, loading in a thread while the worker starts, so that a restart does not wait
for them (about 0.7 s here, next to a join that takes seconds)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from app.signals.intents_file import FILE_NAME, load_intents
from app.signals.models import SignalModels


class BackgroundModels:
    """`SignalModels` for `prompts_dir`, loading from the moment this is made.

    The intents file is read and checked at once, so a broken one stops the worker at start
    with its `file:line` (TemplateError); the models themselves load in the background.
    """

    def __init__(self, prompts_dir: Path) -> None:
        intents = load_intents(prompts_dir / FILE_NAME)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signal-models")
        self._loading: Future[SignalModels] = executor.submit(SignalModels.of, intents)
        executor.shutdown(wait=False)

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
