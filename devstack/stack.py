"""`enricher dev`: broker, Redis, mock LLM, one worker and the chat gateway here, until Ctrl-C stops them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from contextlib import AsyncExitStack
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay

from app.context import ContextStore, encode_profile
from app.errors import fail
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import stop_client
from app.kafka.topics import TopicNames
from app.redis_client import connect
from app.schemas import Order, OrderItem, OrderStatus, rfc3339, utc_now
from app.settings import Settings
from devstack.broker import EmbeddedBroker, create_topics
from devstack.chat_gateway import DevChat, start_chat
from devstack.dev_config import STATE_DIR, STATE_PATH, DevState, needs_mock, redacted_url
from devstack.processes import ManagedProcess, ProcessDied, pick_port
from devstack.redis_server import EmbeddedRedis

BROKER_PORT, REDIS_PORT, MOCK_LLM_PORT, WEB_PORT = 9092, 16379, 8400, 6066
MOCK_LATENCY_MS = 300
READY_TIMEOUT_S = 90.0
READY_REPORT_S = 10.0
DEMO_PROFILES: dict[str, dict[str, str]] = {
    "cust-1": {"name": "Ada Lovelace", "tier": "gold", "plan": "Pro", "language": "en"},
    "cust-2": {"name": "Grace Hopper", "tier": "silver", "plan": "Team", "language": "en"},
    "cust-3": {"name": "Alan Turing", "tier": "standard", "plan": "Basic", "language": "en"},
}
# Each demo customer's orders (id, status, item, carrier, tracking number), placed a few days apart.
DEMO_ORDERS: dict[str, list[tuple[str, OrderStatus, str, str | None, str | None]]] = {
    "cust-1": [
        ("A-1042", "shipped", "Mechanical keyboard", "DHL", "00340434161234567890"),
        ("A-0977", "delivered", "Wireless mouse", "UPS", "1Z999AA10123456784"),
    ],
    "cust-2": [("B-2001", "packed", "USB-C dock", None, None)],
    "cust-3": [("C-3003", "returned", "Laptop stand", "DHL", "00340434169876543210")],
}


class DevStackError(Exception):
    """The dev stack cannot start or lost its worker; the message says why."""


def run_dev(settings: Settings) -> None:
    """Run the dev stack until SIGINT or SIGTERM, then stop all of it; exit 1 if it breaks."""
    try:
        previous = DevState.load()
        if previous is not None:
            raise DevStackError(f"another enricher dev runs (pid {previous.pid}); stop it first")
        STATE_DIR.mkdir(exist_ok=True)
        for old_log in STATE_DIR.glob("*.log"):
            old_log.unlink()
        asyncio.run(_serve(settings))
    except DevStackError as error:
        fail(str(error), command="enricher dev")


async def _serve(settings: Settings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    async with AsyncExitStack() as stack:
        startup = asyncio.create_task(_start(settings, stack))
        stop_wait = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({startup, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if startup.done():
                worker = startup.result()
                # A watch with no deadline, not a retry: a hand-written loop, not tenacity.
                while not stopping.is_set():
                    worker.check_alive()
                    await asyncio.wait({stop_wait}, timeout=1.0)
            print("\nstopping the worker, then what else enricher dev started ...", flush=True)
        except ProcessDied as died:
            raise DevStackError(f"the worker died:\n{died}") from None
        finally:
            for task in (startup, stop_wait):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    print("stopped.", flush=True)


async def _start(settings: Settings, stack: AsyncExitStack) -> ManagedProcess:
    """Start what is not configured elsewhere, then the worker; every stop goes on `stack`."""
    explicit = settings.model_fields_set
    pids: dict[str, int] = {}
    embedded: list[str] = []
    update: dict[str, object] = {}
    if not explicit & {"kafka_bootstrap_servers", "kafka_security_protocol"}:  # Tansu: PLAINTEXT only
        broker = EmbeddedBroker(pick_port(BROKER_PORT), log_path=STATE_DIR / "broker.log")
        await stack.enter_async_context(broker)
        update["kafka_bootstrap_servers"] = broker.bootstrap_servers
        pids["broker"] = broker.process.pid
        embedded.append("broker")
    if "redis_url" not in explicit:
        redis = stack.enter_context(EmbeddedRedis(pick_port(REDIS_PORT)))
        update["redis_url"] = SecretStr(redis.url)
        embedded.append("redis")
    if needs_mock(settings):
        update["openai_base_url"] = await _start_mock(stack, pids)
        embedded.append("mock_llm")
    if "web_port" not in explicit:
        update["web_port"] = pick_port(WEB_PORT)
    settings = settings.model_copy(update=update)
    security = KafkaSecurity.from_settings(settings)

    print(f"creating topics on {settings.kafka_bootstrap_servers} ...", flush=True)
    topics = TopicNames.of(settings)
    partitions = topics.partitions(settings.input_partitions)
    await create_topics(settings.kafka_bootstrap_servers, partitions, security)
    await _load_demo_customers(settings, security)

    worker = ManagedProcess(
        "worker",
        [sys.executable, "-m", "app.main", "worker"],
        env=os.environ | _worker_env(settings),
        log_path=STATE_DIR / "worker.log",
    )
    stack.callback(worker.stop, settings.shutdown_grace_s + 5.0)
    pids["worker"] = worker.start().pid
    await _wait_ready(worker, settings.web_port)
    try:
        chat = await start_chat(stack, settings, os.environ | _worker_env(settings))
    except (ProcessDied, TimeoutError) as error:
        raise DevStackError(f"the chat gateway did not start:\n{error}") from None

    pids["chat"] = chat.pid
    state = DevState(
        pid=os.getpid(),
        started_at=rfc3339(utc_now()),
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        redis_url=redacted_url(settings.redis_url.get_secret_value()),
        llm_base_url=settings.openai_base_url,
        web_port=settings.web_port,
        topics=topics,
        pids=pids,
        embedded=embedded,
        logs_dir=str(STATE_DIR),
    )
    state.save()
    stack.callback(STATE_PATH.unlink, missing_ok=True)
    print(_banner(state, settings, chat), flush=True)
    return worker


async def _start_mock(stack: AsyncExitStack, pids: dict[str, int]) -> str:
    port = pick_port(MOCK_LLM_PORT)
    argv = [sys.executable, "-m", "app.main", "mock-llm", "--port", str(port)]
    mock = ManagedProcess(
        "mock-llm", [*argv, "--latency-ms", str(MOCK_LATENCY_MS)], log_path=STATE_DIR / "mock-llm.log"
    )
    stack.callback(mock.stop, 5.0)
    pids["mock_llm"] = mock.start().pid
    base_url = f"http://127.0.0.1:{port}/v1"
    await mock.wait_http_ok(f"{base_url}/models", timeout_s=30.0)
    return base_url


def _worker_env(settings: Settings) -> dict[str, str]:
    """The variables that point the worker at what dev started (the rest it reads as usual);
    its log is for people unless ENRICHER_LOG_FORMAT says otherwise."""
    log_format = settings.log_format if "log_format" in settings.model_fields_set else "console"
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url.get_secret_value(),
        "OPENAI_BASE_URL": settings.openai_base_url,
        "ENRICHER_WEB_PORT": str(settings.web_port),
        "ENRICHER_LOG_FORMAT": log_format,
        "PYTHONUNBUFFERED": "1",
    }


def demo_orders() -> list[Order]:
    """The demo customers' orders, the first of each customer placed two days ago, the next before."""
    now = utc_now()
    return [
        Order(
            order_id=order_id,
            customer_id=customer_id,
            status=status,
            items=[OrderItem(sku=f"SKU-{order_id}", name=item, qty=1)],
            placed_at=now - timedelta(days=2 + 7 * n),
            updated_at=now - timedelta(hours=n),
            carrier=carrier,
            tracking_number=tracking,
        )
        for customer_id, orders in DEMO_ORDERS.items()
        for n, (order_id, status, item, carrier, tracking) in enumerate(orders)
    ]


async def _load_demo_customers(settings: Settings, security: KafkaSecurity) -> None:
    """Put the demo customers' profiles and orders into Redis now, and on the profile and orders
    topics as a real source would.

    Writing Redis directly (any tool may) means a message sent before the worker's profile and
    orders agents have caught up still finds its customer.
    """
    redis = connect(settings.redis_url.get_secret_value(), 2, cluster=settings.redis_cluster == "on")
    context = ContextStore(redis, history_turns=0, ttl_s=1, orders_ttl_s=settings.orders_ttl_s)
    orders = demo_orders()
    try:
        for customer_id, profile in DEMO_PROFILES.items():
            await context.put_profile(customer_id, encode_profile(profile))
        for order in orders:
            await context.put_order(order)
    finally:
        await context.aclose()
    options = security.client_options()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", **options)
    try:
        async with asyncio.timeout(15.0):
            await producer.start()
        for customer_id, profile in DEMO_PROFILES.items():
            value = json.dumps(profile).encode()
            send = producer.send_and_wait(settings.profile_topic, value, key=customer_id.encode())
            async with asyncio.timeout(15.0):
                await send
        for order in orders:
            value = json.dumps(order.as_record()).encode()
            send = producer.send_and_wait(settings.orders_topic, value, key=order.customer_id.encode())
            async with asyncio.timeout(15.0):
                await send
    finally:
        await stop_client(producer)


async def _wait_ready(worker: ManagedProcess, web_port: int) -> None:
    url = f"http://127.0.0.1:{web_port}/readyz"
    print(f"waiting for the worker to be ready ({url}) ...", flush=True)

    def still_waiting(attempt: RetryCallState) -> None:
        waited = attempt.seconds_since_start or 0.0
        print(f"  still waiting ({waited:.0f} s; log: {worker.log_path})", flush=True)

    # Attempts of READY_REPORT_S each, so that a slow start says it is still on its way.
    retrying = AsyncRetrying(
        stop=stop_after_delay(READY_TIMEOUT_S),
        retry=retry_if_exception_type(TimeoutError),
        before_sleep=still_waiting,
        reraise=True,
    )
    try:
        await retrying(worker.wait_http_ok, url, timeout_s=READY_REPORT_S)
    except ProcessDied as died:
        raise DevStackError(f"the worker did not start:\n{died}") from None
    except TimeoutError:
        tail = worker.log_tail()
        raise DevStackError(f"the worker was not ready after {READY_TIMEOUT_S:.0f} s:\n{tail}") from None


def _banner(state: DevState, settings: Settings, chat: DevChat) -> str:
    def origin(name: str, embedded: str) -> str:
        return f"({embedded})" if name in state.embedded else "(as configured)"

    topics = state.topics
    customers = ", ".join(f"{key} {value['name']} ({value['tier']})" for key, value in DEMO_PROFILES.items())
    web = f"http://127.0.0.1:{state.web_port}"
    return f"""
enricher dev is running; Ctrl-C stops all of it.
  broker   {state.kafka_bootstrap_servers} {origin("broker", "embedded Tansu, memory only")}
  redis    {state.redis_url} {origin("redis", "embedded valkey")}
  llm      {state.llm_base_url} {origin("mock_llm", "built-in mock")}, \
model {settings.model}
  worker   pid {state.pids["worker"]}, {web}/readyz  {web}/metrics
  chat     {chat.url}  (the chat page: pick a demo customer and write)
  studio   {chat.studio_url}
  topics   {topics.input} -> {topics.reply} (chunks {topics.stream}, \
dead letters {topics.dlq}, profiles {topics.profile}, orders {topics.orders})
  logs     {state.logs_dir}/
  demo customers: {customers}

In another terminal:
  .venv/bin/enricher send "Where is my order?" --conversation c1 --customer cust-1
  .venv/bin/enricher send --order A-1042 --status delivered --customer cust-1
"""
