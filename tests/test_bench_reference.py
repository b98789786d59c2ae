"""The reference worker's pure parts, and the bench tables that set every figure beside its own."""

from __future__ import annotations

import json
from collections import deque

from bench import limits
from bench.checker import Latency, Verdict
from bench.reference import Item, finished_prefix, parse, prompt
from bench.report import Reference, Results, markdown, targets
from bench.scenarios import Load, LoadResult, Params, Sample, StallResult


def test_a_record_that_is_no_message_is_skipped() -> None:
    message = {"message_id": "m1", "conversation_id": "c1", "text": "hi"}

    assert parse(json.dumps(message).encode()) == message
    assert parse(None) is None
    assert parse(b"not json") is None
    assert parse(b"[1, 2]") is None
    assert parse(json.dumps({"message_id": "m1", "text": "hi"}).encode()) is None


def test_the_prompt_has_the_profile_the_history_and_the_text_last() -> None:
    history = [
        json.dumps({"role": "customer", "text": "where is it?", "message_id": "m0", "at": "t"}),
        "not json",
        json.dumps({"role": "agent", "text": "on its way", "message_id": "m0", "at": "t"}),
    ]

    chat = prompt({"text": "still not here"}, {"name": "Ada", "plan": "pro"}, history)

    assert chat[0]["role"] == "system"
    assert "- name: Ada\n- plan: pro" in chat[0]["content"]
    assert [turn["role"] for turn in chat[1:]] == ["user", "assistant", "user"]
    assert "<customer_message>\nstill not here\n</customer_message>" in chat[-1]["content"]
    assert "(no profile on file)" in prompt({"text": "x"}, {}, [])[0]["content"]


def test_only_the_finished_prefix_of_a_partition_is_committed() -> None:
    items = [Item(10), Item(11), Item(12), Item(13)]
    queue = deque(items)
    items[1].done = items[2].done = True

    assert finished_prefix(queue) is None  # 10 is not finished: 11 and 12 wait
    items[0].done = True
    assert finished_prefix(queue) == 13
    assert [item.offset for item in queue] == [13]
    assert finished_prefix(queue) is None


def load_result(
    name: str, msg_per_s: float, cpu_s_per_1k: float, p99_ms: float, rate: float | None
) -> LoadResult:
    load = Load(name, 600, 60, 64, rate)
    return LoadResult(
        load=load,
        complete=True,
        duration_s=600 / msg_per_s,
        throughput_per_s=msg_per_s,
        latency=Latency(600, p99_ms / 2, p99_ms * 0.9, p99_ms, p99_ms * 1.1),
        verdict=Verdict(600, 600, 0, 0, 0, 0, 0),
        cpu_s={"worker": cpu_s_per_1k * 0.6, "mock_llm": 1.0, "broker": 0.5, "bench": 0.2},
        worker_cpu_s_per_1k=cpu_s_per_1k,
        worker_peak_rss_mb=200.0,
        mock_max_in_flight=64,
        mock_calls=600,
        replies=600,
    )


def stall() -> StallResult:
    samples = [Sample(t, 200.0, 1024.0) for t in range(8)]
    return StallResult(5000, 1024, 1.0, samples, Verdict(5000, 0, 5000, 0, 0, 0, 0), 200.0)


def test_every_figure_of_the_run_stands_beside_the_reference() -> None:
    def runs(msg_per_s: float, cpu: float, p99: float) -> tuple[LoadResult, ...]:
        return tuple(load_result("throughput", msg_per_s * k, cpu * k, p99, None) for k in (0.9, 1.0, 1.1))

    results = Results(
        params=Params(repeats=3),
        throughput=runs(190.0, 3.0, 3000.0),
        baseline=load_result("baseline", 4.8, 9.0, 9000.0, None),
        half_load=tuple(load_result("half-load", 160.0, 4.0, p99, 160.0) for p99 in (400.0, 420.0, 440.0)),
        stall=stall(),
        reference=Reference(
            throughput=runs(200.0, 2.0, 2800.0),
            baseline=load_result("baseline", 4.9, 5.0, 8900.0, None),
            half_load=tuple(
                load_result("half-load", 160.0, 2.5, p99, 160.0) for p99 in (360.0, 380.0, 400.0)
            ),
            stall=stall(),
        ),
    )

    rows = {row.target: row for row in targets(results)}
    text = markdown(
        results,
        list(rows.values()),
        {"cores": 2, "cpu_model": "x", "python": "3", "kernel": "k", "date": "d"},
    )

    speed = rows["Flat-out throughput against the reference's (same run)"]
    assert speed.measured.startswith("0.95x (190 vs 200 msg/s)")
    assert speed.passed
    cpu = rows["Worker CPU per 1,000 replies (throughput run) against the reference's (same run)"]
    assert cpu.measured.startswith("1.50x (3.00 vs 2.00 s)")
    assert cpu.passed is False
    p99 = rows["p99 at half load against the reference's (same run)"]
    assert p99.measured.startswith("+40 ms (420 vs 380 ms)")
    assert p99.passed
    assert "| throughput 2/3 | 600 / 60 | 64 | flat out | 190.0 | 200.0 | 0.95 |" in text
    assert "| 3.00 | 2.00 | 1.50 |" in text
    assert "| half-load 1/3 |" in text
    assert "| 400 | 360 | +40 |" in text


def test_the_limits_targets_are_shares_of_the_reference_flat_out() -> None:
    by_name = {scenario.name: scenario for scenario in limits.SCENARIOS}

    assert by_name["request-quota"].wanted_per_s(100.0) == 135.0
    assert by_name["concurrency-quota"].wanted_per_s(300.0) == 0.9 * 200
    assert by_name["concurrency-quota"].wanted_per_s(150.0) == 0.9 * 150
    assert by_name["hung-calls"].wanted_per_s(150.0) == 0.8 * 150
    assert by_name["hung-calls-half-load"].wanted_per_s(150.0) is None
    assert by_name["exhausted-main-model"].wanted_per_s(150.0) == 0.9 * 150

    run = load_result("hung-calls", 130.0, 3.0, 1500.0, 75.0)
    row = limits.judge(by_name["hung-calls-half-load"], run, run, 150.0)
    text = limits.markdown(
        [row],
        limits.summary(run, 150.0),
        limits.summary(run, 150.0),
        {"cores": 2, "cpu_model": "x", "python": "3", "date": "d"},
    )

    assert row["passed"]
    assert row["adaptive"]["of_reference"] == 0.87
    assert "(75 msg/s)" in row["limit"]
    assert "| 0.87 |" in text
