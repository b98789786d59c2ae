"""The embedded broker and Redis, child-process supervision, and how `enricher dev` reads settings."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.kafka.topics import PROFILE_PARTITIONS, TopicNames
from app.settings import SettingsError
from devstack.broker import create_topics
from devstack.dev_config import DevState, load_dev_settings, needs_mock, redacted_url
from devstack.processes import ManagedProcess, PortWalk, ProcessDied, free_port
from tests.helpers.kafka import at_least, partitions_of, produce, read_topic
from tests.helpers.polling import until

STUBBORN_CHILD = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    # A child started in the background inherits SIGINT ignored; start from Python's own default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in {ignored}:
        signal.signal(sig, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(grandchild.pid, flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (orphans may never be reaped in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def _stubborn(tmp_path: Path, ignored: str) -> tuple[ManagedProcess, int]:
    """A child ignoring `ignored` signals, with a grandchild; returns it and the grandchild pid."""
    log_path = tmp_path / "child.log"
    argv = [sys.executable, "-c", STUBBORN_CHILD.format(ignored=ignored)]
    process = ManagedProcess("stubborn", argv, log_path=log_path).start()

    async def started() -> bool:
        return bool(log_path.read_text().strip())

    await until(started, "the child printing its grandchild's pid", timeout_s=10)
    return process, int(log_path.read_text().split()[0])


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_free_ports_lie_below_the_ephemeral_range_and_come_once_each() -> None:
    ports = [free_port() for _ in range(20)]  # none bound in between, as a test picks several

    assert all(port < _ephemeral_low() for port in ports)
    assert len(set(ports)) == len(ports)


def test_a_port_in_use_is_skipped_and_with_none_left_an_ephemeral_one_is_given() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        given = PortWalk(range(port, port + 1)).take()

    assert given != port
    assert given >= _ephemeral_low()


RESOLVE_AND_RUN = """
import subprocess, sys
from devstack.broker import tansu_binary
print("imported", flush=True)
sys.stdin.read()  # until closed: all at once, as the suite's processes start their brokers
subprocess.run([tansu_binary(), "--version"], check=True, capture_output=True)
"""


def _resolving(home: Path) -> subprocess.Popen[bytes]:
    """A process that resolves the broker binary with `home` as its home directory once its
    stdin closes, and runs it; it says `imported` when ready to."""
    return subprocess.Popen(
        [sys.executable, "-c", RESOLVE_AND_RUN],
        env=os.environ | {"HOME": str(home)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _error_of(process: subprocess.Popen[bytes]) -> str:
    """What `process` wrote to stderr if it failed, '' if it succeeded."""
    assert process.stdout is not None
    assert process.stderr is not None
    with process.stdout, process.stderr:
        error = process.stderr.read().decode()
    return error if process.wait() != 0 else ""


def test_processes_resolving_the_broker_binary_at_once_each_get_one_they_can_run(tmp_path: Path) -> None:
    # The suite's parallel processes do this on a new machine: the first resolve copies the
    # binary into the home directory, here a new one for each round. Without the lock, nearly
    # every run of this test fails.
    for round_number in range(2):
        processes = [_resolving(tmp_path / f"home-{round_number}") for _ in range(8)]
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == b"imported\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()  # go
        failures = [_error_of(process) for process in processes]
        assert [failure for failure in failures if failure] == []


async def test_broker_round_trips_a_message(kafka: str) -> None:
    await produce(kafka, "devstack.roundtrip", "k1", b"hello")
    records = await read_topic(kafka, "devstack.roundtrip", until=at_least(1), timeout_s=10)
    assert [(r.key, r.value) for r in records] == [(b"k1", b"hello")]


async def test_create_topics_sets_partitions_and_tolerates_existing(kafka: str) -> None:
    topics = TopicNames.prefixed("devstack").partitions(3)
    await create_topics(kafka, topics)
    await create_topics(kafka, topics)  # already there: no error
    assert await partitions_of(kafka, "devstack.requests") == {0, 1, 2}
    assert await partitions_of(kafka, "devstack.replies.stream") == {0, 1, 2}
    assert await partitions_of(kafka, "devstack.profiles") == set(range(PROFILE_PARTITIONS))


async def test_embedded_redis_answers_and_is_not_the_machines(redis_url: str) -> None:
    assert ":6379/" not in redis_url
    async with aioredis.from_url(redis_url, socket_timeout=5.0) as client:
        assert await client.ping()


@pytest.mark.parametrize(
    ("ignored", "grace_s", "expected_code"),
    [
        # Python needs a moment to unwind on SIGINT, longer on a busy machine.
        ("()", 5.0, -2),
        # Ignored signals are waited out for the whole grace; the kernel's default action is instant.
        ("(signal.SIGINT,)", 0.5, -15),
        ("(signal.SIGINT, signal.SIGTERM)", 0.5, -9),
    ],
)
async def test_stop_escalates_and_leaves_no_process(
    tmp_path: Path, ignored: str, grace_s: float, expected_code: int
) -> None:
    process, grandchild = await _stubborn(tmp_path, ignored)
    code = await asyncio.to_thread(process.stop, grace_s)
    assert code == expected_code
    assert not _alive(process.pid)

    async def grandchild_gone() -> bool:
        return not _alive(grandchild)

    await until(grandchild_gone, "the grandchild gone, with the signal its group got", timeout_s=5)


async def test_wait_http_ok_reports_a_dead_child(tmp_path: Path) -> None:
    process = ManagedProcess(
        "dies", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"], log_path=tmp_path / "log"
    )
    with process, pytest.raises(ProcessDied, match="code 3"):
        await process.wait_http_ok(f"http://127.0.0.1:{free_port()}/", timeout_s=10)


def test_dev_settings_choose_the_mock_only_without_key_and_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in [n for n in os.environ if n.startswith(("OPENAI_", "KAFKA_", "REDIS_"))]:
        monkeypatch.delenv(name)
    assert needs_mock(load_dev_settings())
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    assert not needs_mock(load_dev_settings())
    monkeypatch.setenv("OPENAI_BASE_URL", "https://llm.example.com/v1")
    with pytest.raises(SettingsError, match="OPENAI_API_KEY"):
        load_dev_settings()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert not needs_mock(load_dev_settings())


def test_state_file_round_trips_and_hides_passwords(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = DevState(
        pid=os.getpid(),
        started_at="2026-01-01T00:00:00.000Z",
        kafka_bootstrap_servers="127.0.0.1:9092",
        redis_url=redacted_url("redis://user:secret@127.0.0.1:6380/0"),
        llm_base_url="http://127.0.0.1:8400/v1",
        web_port=6066,
        topics=TopicNames.prefixed("support"),
        pids={"worker": os.getpid()},
        embedded=["broker"],
        logs_dir=".enricher-dev",
    )
    state.save(path)
    assert DevState.load(path) == state
    assert "secret" not in path.read_text()
    assert DevState.load(tmp_path / "missing.json") is None
