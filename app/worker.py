"""`enricher worker`: wires settings, clients, agents and pages into one faust worker process."""

from __future__ import annotations

import logging
import sys

import faust
from mode import Service

from agents.profiles import ProfileAgent
from agents.support_reply import SupportAgent
from app.errors import TemplateError
from app.faust_app import build_app, declare_topics
from app.health import Health, attach_pages
from app.lanes import Lanes
from app.logs import logging_config
from app.resources import Resources
from app.settings import Settings

log = logging.getLogger(__name__)

EXIT_CONFIG = 2


class Runtime(Service):
    """Outlives the faust app in the worker: drains the lanes, then closes the clients."""

    def __init__(self, resources: Resources, lanes: Lanes) -> None:
        super().__init__()
        self._resources = resources
        self._lanes = lanes

    async def on_stop(self) -> None:
        grace_s = self._resources.settings.shutdown_grace_s
        if not await self._lanes.drain(grace_s):
            log.warning(
                "shutdown grace passed; abandoning unfinished work",
                extra={"buffered": self._lanes.buffered},
            )
        await self._lanes.close()
        await self._resources.aclose()


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; exits 2 when a prompt template is broken at start."""
    try:
        resources = Resources.build(settings)
    except TemplateError as error:
        print(f"enricher: prompt template error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    app = build_app(settings)
    topics = declare_topics(app, settings)
    lanes = Lanes(settings.max_buffered)

    def assigned_input_partitions() -> int:
        return sum(1 for tp in app.consumer.assignment() if tp.topic == settings.input_topic)

    health = Health(resources, assigned_input_partitions)
    SupportAgent(resources, topics, lanes, health).attach(app)
    ProfileAgent(resources.context, topics).attach(app)
    attach_pages(app, health)
    worker = faust.Worker(
        app,
        Runtime(resources, lanes),
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
