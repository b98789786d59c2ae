"""Prometheus metrics of the worker; names are prefixed `enricher_`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "enricher_messages_total",
    "Input messages finished, by outcome: the reply's status (ok, fallback, handoff), coalesced,"
    " for_human, replayed, already_published or dead_lettered.",
    ["outcome"],
)
DEAD_LETTERS = Counter("enricher_dead_letters_total", "DLQ records by kind.", ["kind"])
SIGNALS = Counter(
    "enricher_signals_total",
    "What the embedded models found in messages: language, sentiment (tone), intent, pii kinds.",
    ["signal", "value"],
)
LLM_CALLS = Counter("enricher_llm_calls_total", "LLM attempts by model and outcome.", ["model", "outcome"])
LLM_LATENCY = Histogram(
    "enricher_llm_latency_seconds",
    "Duration of successful LLM attempts.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30),
)
LLM_TOKENS = Counter(
    "enricher_llm_tokens_total",
    "Tokens reported by the LLM API (kind prompt, cached or completion), by model and template.",
    ["model", "template", "kind"],
)
LLM_COST = Counter(
    "enricher_llm_cost_usd_total", "What the answers cost, by model and template.", ["model", "template"]
)
KNOWLEDGE_TOKENS = Histogram(
    "enricher_knowledge_tokens",
    "Tokens of the help-center passages each prompt carries (0 for a prompt with none).",
    buckets=(0, 50, 100, 200, 300, 400, 600, 800, 1200, 2000),
)
TOOL_CALL_LATENCY = Histogram(
    "enricher_tool_call_seconds",
    "Duration of the tool calls the LLM asked for, by tool (`undeclared` for a name it made up)"
    " and outcome (ok or error).",
    ["tool", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LLM_IN_FLIGHT = Gauge("enricher_llm_in_flight", "LLM calls in flight now.")
LLM_CIRCUIT_OPEN = Gauge("enricher_llm_circuit_open", "1 while the LLM circuit breaker holds new calls.")
LLM_CIRCUIT_OPENINGS = Counter("enricher_llm_circuit_openings_total", "Times the LLM circuit breaker opened.")
REPLY_LATENCY = Histogram(
    "enricher_reply_latency_seconds",
    "From consuming a message to its reply being published.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60, 120),
)
BUFFERED = Gauge("enricher_buffered_events", "Events taken from Kafka and not yet finished.")
REDIS_ERRORS = Counter("enricher_redis_errors_total", "Failed Redis operations.", ["operation"])
REDIS_SKIPPED = Counter(
    "enricher_redis_skipped_total", "Redis operations skipped during a cool-down.", ["operation"]
)
TEMPLATE_ERRORS = Counter("enricher_template_errors_total", "Templates rejected on load or reload.")
PROFILE_UPDATES = Counter("enricher_profile_updates_total", "Profile records applied.", ["action"])
ORDER_UPDATES = Counter(
    "enricher_order_updates_total",
    "Order records applied: put, stale (a later record of the order is kept) or delete.",
    ["action"],
)
CONSUMER_LAG = Gauge(
    "enricher_kafka_consumer_lag",
    "Records of an assigned partition after the committed offset (high-water mark of the last fetch).",
    ["topic", "partition"],
)
CONSUMED = Counter("enricher_records_consumed_total", "Records taken from the request topic.")
END_TO_END = Histogram(
    "enricher_end_to_end_seconds",
    "From the input record's timestamp to the broker's acknowledgement of its reply.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
PARTITIONS_UNREADABLE = Gauge(
    "enricher_kafka_partitions_unreadable",
    "1 for each assigned partition paused because its next record batch cannot be decoded.",
    ["topic", "partition"],
)
LLM_CONCURRENCY_LIMIT = Gauge(
    "enricher_llm_concurrency_limit",
    "LLM calls the worker lets be in flight now (adaptive, see app/llm/pacing.py).",
)
LLM_MODEL_COOLING = Gauge(
    "enricher_llm_model_cooling",
    "1 while a model is cooled down after refusing (see app/llm/health.py).",
    ["model"],
)
LLM_RATE_LIMITED = Counter("enricher_llm_rate_limited_total", "LLM attempts answered 429.", ["model"])
