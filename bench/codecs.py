"""`python -m bench.codecs`: bytes kept and CPU per record of each producer codec, on reply records.

Replies of the mock's shape (varied text, ids and numbers) are packed into record batches of 1,
3 and 10, the sizes a chat workload's producer sends with a few ms of linger, the way aiokafka
packs them; written to bench/results/codecs.md.
"""

from __future__ import annotations

import json
import random
import time
import uuid

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from bench.report import RESULTS_DIR

RESULTS = RESULTS_DIR / "codecs.md"
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BATCH_SIZES = (1, 3, 10)
RECORDS = 3000
WORDS = [
    "order",
    "shipped",
    "yesterday",
    "arrive",
    "within",
    "two",
    "business",
    "days",
    "track",
    "account",
    "page",
    "anything",
    "else",
    "help",
    "refund",
    "return",
    "label",
    "warehouse",
    "delivery",
    "courier",
    "thanks",
    "message",
    "sorry",
    "delay",
    "invoice",
    "payment",
    "card",
]


def reply(number: int, rng: random.Random) -> bytes:
    """One reply record as the worker publishes it."""
    text = f"Hi Customer{number}, " + " ".join(rng.choice(WORDS) for _ in range(40))
    return json.dumps(
        {
            "reply_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "message_id": f"m-{number}",
            "conversation_id": f"conv-{number % 300}",
            "customer_id": f"cust-{number % 50}",
            "text": text,
            "status": "ok",
            "model": "gpt-4o-mini",
            "prompt": {"name": "support_reply", "version": "a1b2c3d4e5f6", "variant": None},
            "usage": {"prompt_tokens": 400 + number % 50, "completion_tokens": 57, "total_tokens": 469},
            "latency_ms": 800 + number % 90,
            "created_at": f"2026-11-25T04:00:01.{number % 1000:03d}Z",
        }
    ).encode()


def measure(records: list[bytes], codec: int, batch_size: int) -> tuple[int, float]:
    """Total bytes of the batches, and CPU microseconds per record to build them."""
    total, started = 0, time.process_time()
    for start in range(0, len(records), batch_size):
        builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 1 << 20)
        for offset, value in enumerate(records[start : start + batch_size]):
            builder.append(offset, timestamp=None, key=b"conv", value=value, headers=[])
        total += len(builder.build())
    return total, (time.process_time() - started) / len(records) * 1e6


def main() -> None:
    """Measure every codec at every batch size and write the table."""
    rng = random.Random(7)
    records = [reply(number, rng) for number in range(RECORDS)]
    for codec in CODECS.values():  # warm up each codec's library before timing it
        measure(records[:100], codec, 1)
    lines = [
        "| batch of | " + " | ".join(CODECS) + " |",
        "| --- | " + " | ".join("---" for _ in CODECS) + " |",
    ]
    for size in BATCH_SIZES:
        plain, _ = measure(records, CODECS["none"], size)
        cells = []
        for codec in CODECS.values():
            total, cpu_us = measure(records, codec, size)
            cells.append(f"{total / plain:.0%}, {cpu_us:.0f} µs")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    RESULTS.write_text("# Producer codecs on reply records: bytes kept, CPU per record\n\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
