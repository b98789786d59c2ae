"""Redis as the context cache and reply store: profiles, recent orders, conversation history, stored replies.

Redis is a cache here: when it fails, reads answer with less context and writes are
skipped, the failure is counted, and Redis is left alone for a short cool-down instead
of paying a timeout on every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError
from redis.asyncio.cluster import RedisCluster
from redis.typing import EncodableT

from app import handoff
from app.errors import ContextUnavailable
from app.handoff import HeldConversations
from app.observability import metrics
from app.redis_client import FAILURES, OPERATION_TIMEOUT_S, AnyPipeline, RedisClient, answers, connection_cap
from app.redis_keys import failure_key, history_key, orders_key, profile_key, published_key, reply_key
from app.schemas import ErrorInfo, HistoryTurn, Order, Reply, reply_id_for

log = logging.getLogger(__name__)

T = TypeVar("T")

COOL_DOWN_S = 5.0
CATCH_UP_WAIT_S = 10.0  # for the handoff topics' first reading, once, while Redis is down at start
# A customer asks about their latest orders: 20 covers a frequent buyer's last months and keeps
# the hash, read with every message of theirs, small.
MAX_ORDERS_KEPT = 20

# A reply and its turns live in two keys, which a Redis Cluster puts in different hash slots
# (the contract's key names have no hash tags), so each is written by a script of its own.
# The turns run first: after a crash between the two, the redelivery finds no reply and asks
# the LLM again (its turns are skipped: the first answer's stay); the other way round it would
# be answered from the store and its turns would never be written.

# Appends the turns of ARGV[1] unless that message_id is in the history already; trims the
# history to ARGV[2] turns and sets its expiry to ARGV[3] seconds.
APPEND_TURNS = """
local history_key = KEYS[1]
local message_id, keep, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for _, item in ipairs(redis.call('LRANGE', history_key, 0, -1)) do
  local ok, turn = pcall(cjson.decode, item)
  if ok and type(turn) == 'table' and turn['message_id'] == message_id then
    return 0
  end
end
for i = 4, #ARGV do redis.call('RPUSH', history_key, ARGV[i]) end
redis.call('LTRIM', history_key, -keep, -1)
redis.call('EXPIRE', history_key, ttl)
return 1
"""

# Keeps the order ARGV[2] (JSON) as field ARGV[1] of the customer's orders hash unless the hash has
# a later record of it (`updated_at` ARGV[3] is older); then drops the orders placed longest ago
# (`placed_at`) beyond ARGV[4] and sets the hash's expiry to ARGV[5] seconds. The times are RFC 3339
# in UTC with milliseconds, so comparing them as text compares them as times.
PUT_ORDER = """
local key, order_id, value, updated_at = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local keep, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local earlier = redis.call('HGET', key, order_id)
if earlier then
  local ok, old = pcall(cjson.decode, earlier)
  if ok and type(old) == 'table' and type(old['updated_at']) == 'string'
      and old['updated_at'] > updated_at then
    return 0
  end
end
redis.call('HSET', key, order_id, value)
local fields = redis.call('HGETALL', key)
if #fields / 2 > keep then
  local placed = {}
  for i = 1, #fields, 2 do
    local ok, order = pcall(cjson.decode, fields[i + 1])
    local at = ''
    if ok and type(order) == 'table' and type(order['placed_at']) == 'string' then at = order['placed_at'] end
    table.insert(placed, {at, fields[i]})
  end
  table.sort(placed, function(a, b) return a[1] < b[1] end)
  for i = 1, #placed - keep do redis.call('HDEL', key, placed[i][2]) end
end
redis.call('EXPIRE', key, ttl)
return 1
"""

# Stores the reply unless one is stored already; returns the one stored before, or nil.
# (SET NX GET does the same from Redis 7.0 on only.)
STORE_REPLY = """
local earlier = redis.call('GET', KEYS[1])
if not earlier then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
end
return earlier
"""


@dataclass(frozen=True)
class Context:
    """What Redis knows about the messages of one conversation answered together."""

    stored: dict[str, Reply] = field(default_factory=dict)
    """The stored reply of each message answered before, by message id."""
    published: frozenset[str] = frozenset()
    """The messages whose stored reply the broker took before."""
    failures: dict[str, ErrorInfo] = field(default_factory=dict)
    """Why the stored fallback reply of a message not published yet was made: its dead letter."""
    profile: dict[str, str] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)
    """The customer's recent orders, newest first (by `placed_at`)."""
    history: list[HistoryTurn] = field(default_factory=list)
    human: bool = False
    """A human has the conversation (`conversation:{id}:state`, or while Redis cannot be read the
    worker's `HeldConversations`): the AI answers nothing."""
    fallbacks: int = 0
    """The conversation's latest replies that were the fallback, in a row."""


class ContextStore:
    """Profile, history and reply store over one Redis client; degrades when Redis fails."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        history_turns: int,
        ttl_s: int,
        held: HeldConversations | None = None,
        orders_ttl_s: int = 1,
    ) -> None:
        self._redis = redis
        self.held = held
        """What decides whether a human holds a conversation while Redis cannot be read."""
        self._history_turns = history_turns
        self._ttl_s = ttl_s
        self._orders_ttl_s = orders_ttl_s
        self._skip_until = 0.0
        self._unmarked: set[str] = set()
        self._marking = asyncio.Lock()
        # A cluster's node pools raise when full instead of waiting: a burst must wait here,
        # not be taken for an outage and cool down.
        self._slots = asyncio.Semaphore(connection_cap(redis))

    async def _guarded(self, operation: str, call: Awaitable[Any], default: T) -> T:
        # redis-py types results as bytes | str; with decode_responses they are str.
        if time.monotonic() < self._skip_until:
            if asyncio.iscoroutine(call):
                call.close()
            metrics.REDIS_SKIPPED.labels(operation).inc()
            return default
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S * 2), self._slots:
                result: T = await call
                return result
        except FAILURES as error:
            self._skip_until = time.monotonic() + COOL_DOWN_S
            metrics.REDIS_ERRORS.labels(operation).inc()
            log.warning(
                "redis unavailable; going on with less context",
                extra={"operation": operation, "error": type(error).__name__},
            )
            return default

    async def lookup(
        self, message_ids: Sequence[str], customer_id: str | None, conversation_id: str
    ) -> Context:
        """Stored replies (and whether each was published) of messages of one conversation, and
        the profile, recent orders and recent history, in one round trip (one per node on a cluster,
        in parallel).
        A human's conversation stays theirs `ttl_s` longer: each message renews the state's expiry.

        Anything Redis cannot give (down, missing, malformed) is left out; whether a human holds the
        conversation is then what the handoff topics say (`held`).
        """
        pipe = self._redis.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.get(reply_key(message_id))
            pipe.exists(published_key(message_id))
        pipe.hgetall(profile_key(customer_id or ""))
        pipe.hgetall(orders_key(customer_id or ""))
        pipe.lrange(history_key(conversation_id), -self._history_turns, -1)  # nothing kept when 0
        handoff.queue_lookup(pipe, conversation_id, self._ttl_s)
        results: list[Any] = await self._guarded("lookup", pipe.execute(), [])
        if not results:
            return Context(human=await self._held_by_human(conversation_id))
        *replies, fields, orders, items = results[: -handoff.LOOKUP_RESULTS]
        human, fallbacks = handoff.read_lookup(results[-handoff.LOOKUP_RESULTS :])
        stored, published = {}, set()
        for message_id, stored_raw, was_published in zip(
            message_ids, replies[::2], replies[1::2], strict=True
        ):
            reply = _reply_of(stored_raw, message_id)
            if reply is not None:
                stored[message_id] = reply
                if was_published:
                    published.add(message_id)
        unpublished = [m for m, reply in stored.items() if reply.status == "fallback" and m not in published]
        return Context(
            stored=stored,
            published=frozenset(published),
            failures=await self._failures(unpublished),
            profile=dict(fields) if customer_id else {},
            orders=_orders_of(orders, customer_id) if customer_id else [],
            history=_turns_of(items, conversation_id),
            # Redis misses a handoff made while it was down; the handoff topics have it.
            human=human or (self.held is not None and self.held.holds(conversation_id, time.time())),
            fallbacks=fallbacks,
        )

    async def _held_by_human(self, conversation_id: str) -> bool:
        """Whether a human holds the conversation by the handoff topics, once they were read."""
        if self.held is None:
            return False
        if not self.held.caught_up.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CATCH_UP_WAIT_S):
                    await self.held.caught_up.wait()
        return self.held.holds(conversation_id, time.time())

    async def _failures(self, message_ids: Sequence[str]) -> dict[str, ErrorInfo]:
        """The stored failure of each message, where Redis has one. Asked for only after a crash
        between a fallback reply and its published mark, so a round trip of its own."""
        if not message_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)  # GETs, not MGET: on a cluster the keys' slots differ
        for message_id in message_ids:
            pipe.get(failure_key(message_id))
        found: list[str | None] = await self._guarded("lookup", pipe.execute(), [])
        failures = {}
        for message_id, raw in zip(message_ids, found, strict=False):
            try:
                failures[message_id] = ErrorInfo.model_validate_json(raw or "")
            except ValidationError:
                continue
        return failures

    async def profile(self, customer_id: str | None) -> dict[str, str]:
        """The customer's profile fields, or {} when unknown or Redis is down."""
        if not customer_id:
            return {}
        fields: dict[str, str] = await self._guarded(
            "profile", self._redis.hgetall(profile_key(customer_id)), {}
        )
        return fields

    async def record(
        self,
        reply: Reply,
        turns: list[HistoryTurn],
        fallbacks_before: int = 0,
        failure: ErrorInfo | None = None,
    ) -> dict[str, Reply]:
        """Add the reply's turns to the history (once per reply), then store the reply for each
        message it answers, unless one is stored already, with the `failure` a fallback reply was
        made for; count a fallback reply into the conversation's fallbacks in a row
        (`fallbacks_before` of them), or end the count.

        One round trip on a single server (a pipeline runs its commands in order); two on a
        cluster, turns first, as the keys may live on different nodes.

        Returns the reply that counts for each message: this one, or one stored before it by
        another worker (then this one answers only the others, if any).
        """
        value = reply.model_dump_json()

        def history(pipe: AnyPipeline) -> None:
            self._queue_turns(pipe, reply.conversation_id, reply.message_id, turns)
            handoff.queue_streak(
                pipe,
                reply.conversation_id,
                fallback=reply.status == "fallback",
                before=fallbacks_before,
                ttl_s=self._ttl_s,
            )

        def replies(pipe: AnyPipeline) -> None:
            if failure is not None:  # before the replies: a stored fallback always has its failure
                for message_id in reply.answers:
                    pipe.set(failure_key(message_id), failure.model_dump_json(), ex=self._ttl_s)
            for message_id in reply.answers:  # its own message last: once its key is there, all are
                pipe.eval(STORE_REPLY, 1, reply_key(message_id), value, self._ttl_s)

        results = await self._in_order("record", (history, replies))
        stored_before = results[-len(reply.answers) :] if results else []
        counts: dict[str, Reply] = {}
        for message_id, raw in zip(reply.answers, stored_before, strict=False):
            earlier = _reply_of(raw, message_id)
            if earlier is not None:
                counts[message_id] = earlier
        rest = [message_id for message_id in reply.answers if message_id not in counts]
        if counts and rest:
            # Another worker answered some of these meanwhile (a rebalance handed them over while
            # this one was answering): this reply answers the others only.
            reply = reply.model_copy(
                update={"message_id": rest[-1], "reply_id": reply_id_for(rest[-1]), "answers": rest}
            )
            overwrite = self._redis.pipeline(transaction=False)
            for message_id in rest:
                overwrite.set(reply_key(message_id), reply.model_dump_json(), ex=self._ttl_s)
            await self._guarded("record", overwrite.execute(), None)
        return counts | dict.fromkeys(rest, reply)

    async def add_turns(self, conversation_id: str, message_id: str, turns: list[HistoryTurn]) -> None:
        """Add `turns` to the conversation's history unless those of `message_id` are there."""
        if not self._history_turns:
            return
        pipe = self._redis.pipeline(transaction=False)
        self._queue_turns(pipe, conversation_id, message_id, turns)
        await self._guarded("record", pipe.execute(), None)

    def _queue_turns(
        self, pipe: AnyPipeline, conversation_id: str, message_id: str, turns: list[HistoryTurn]
    ) -> None:
        # EVAL, not EVALSHA: a pipeline of scripts would ask SCRIPT EXISTS first, a round trip
        # more each time; Redis compiles the script once and finds it by its hash after that.
        if self._history_turns:
            args: list[EncodableT] = [message_id, self._history_turns, self._ttl_s]
            args += [turn.model_dump_json() for turn in turns]
            pipe.eval(APPEND_TURNS, 1, history_key(conversation_id), *args)

    async def _in_order(self, operation: str, stages: Sequence[Callable[[AnyPipeline], None]]) -> list[Any]:
        """The results of each stage's commands, which Redis runs in the order of `stages`; []
        when Redis fails. One round trip on a single server; one per stage on a cluster, where
        the stages' keys may be on different nodes and a pipeline runs each node's part at once."""
        batches = [stages] if not isinstance(self._redis, RedisCluster) else [[stage] for stage in stages]
        results: list[Any] = []
        for batch in batches:
            pipe = self._redis.pipeline(transaction=False)
            for stage in batch:
                stage(pipe)
            done: list[Any] | None = await self._guarded(operation, pipe.execute(), None)
            if done is None:
                return []
            results += done
        return results

    async def hand_to_human(self, conversation_id: str) -> None:
        """A human has the conversation now, until it is released or nothing happens in it for `ttl_s`.

        `held` knows at once: the handoff topic tells it later, and Redis may be down.
        """
        if self.held is not None:
            self.held.handed_over(conversation_id, time.time())
        state = handoff.hand_over(self._redis, conversation_id, self._ttl_s)
        await self._guarded("hand_to_human", state, None)

    async def release(self, conversation_id: str, at_s: float) -> bool:
        """Give the conversation back to the AI, as the control topic's command of `at_s` says
        (`app.handoff.release`): True when a human had it; raises ContextUnavailable when
        Redis fails.

        `held` first: once the state is gone from Redis, this worker's set must not hold the
        conversation either (other workers' sets learn it from the control topic a moment later).
        """
        if self.held is not None:
            self.held.released(conversation_id, at_s)
        return await handoff.release(self._redis, conversation_id)

    async def mark_published(self, message_ids: Sequence[str]) -> None:
        """Remember that the broker took the reply to these messages, for as long as the reply.

        Marks asked for while another write of marks is under way go together in the next one:
        under load, one round trip marks many replies instead of one each.
        """
        self._unmarked.update(message_ids)
        async with self._marking:
            if self._unmarked.isdisjoint(message_ids):
                return  # written while this call waited, by the write before it
            batch, self._unmarked = self._unmarked, set()
            pipe = self._redis.pipeline(transaction=False)
            for message_id in batch:
                pipe.set(published_key(message_id), 1, ex=self._ttl_s)
            await self._guarded("mark_published", pipe.execute(), None)

    async def put_profile(self, customer_id: str, fields: Mapping[str, str]) -> None:
        """Replace the customer's profile hash with `fields`; raises ContextUnavailable."""
        key = profile_key(customer_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if fields:
                encoded: dict[EncodableT, EncodableT] = dict(fields.items())
                pipe.hset(key, mapping=encoded)
            await self._must("put_profile", pipe.execute())

    async def delete_profile(self, customer_id: str) -> None:
        """Forget the customer's profile (a tombstone); raises ContextUnavailable."""
        await self._must("delete_profile", self._redis.delete(profile_key(customer_id)))

    async def put_order(self, order: Order) -> bool:
        """Keep `order` among its customer's orders unless a later record of it is kept already;
        only the MAX_ORDERS_KEPT placed last stay, for `orders_ttl_s` after the latest record.
        True when it was kept; raises ContextUnavailable."""
        record = order.as_record()
        put = self._redis.eval(
            PUT_ORDER,
            1,
            orders_key(order.customer_id),
            order.order_id,
            json.dumps(record),
            record["updated_at"],
            MAX_ORDERS_KEPT,
            self._orders_ttl_s,
        )
        return bool(await self._must("put_order", put))

    async def delete_orders(self, customer_id: str) -> None:
        """Forget the customer's orders (a tombstone); raises ContextUnavailable."""
        await self._must("delete_orders", self._redis.delete(orders_key(customer_id)))

    async def orders(self, customer_id: str) -> list[Order]:
        """The customer's recent orders, newest first; raises ContextUnavailable."""
        fields = await self._must("orders", self._redis.hgetall(orders_key(customer_id)))
        return _orders_of(fields, customer_id)

    async def _must(self, operation: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S * 2), self._slots:
                return await call
        except FAILURES as error:
            metrics.REDIS_ERRORS.labels(operation).inc()
            raise ContextUnavailable(f"{operation}: {type(error).__name__}") from error

    async def ping(self) -> bool:
        """True when Redis answers now (used by readiness)."""
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT_S), self._slots:
                return await answers(self._redis)
        except FAILURES:
            return False

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self._redis.aclose()


def _reply_of(raw: str | None, message_id: str) -> Reply | None:
    """The stored reply, if it answers `message_id` (alone, or with others queued before it)."""
    if raw is None:
        return None
    try:
        reply = Reply.model_validate_json(raw)
    except ValidationError:
        return None
    return reply if message_id in reply.answers else None


def _turns_of(items: list[str], conversation_id: str) -> list[HistoryTurn]:
    """Valid turns of this conversation; a turn stored for another one is dropped."""
    turns: list[HistoryTurn] = []
    for item in items:
        try:
            turn = HistoryTurn.model_validate_json(item)
        except ValidationError:
            continue
        if turn.conversation_id in (None, conversation_id):
            turns.append(turn)
    return turns


def _orders_of(fields: Mapping[Any, Any], customer_id: str) -> list[Order]:
    """Valid orders of this customer, newest first; a malformed one, or one of someone else, is dropped."""
    orders: list[Order] = []
    for raw in fields.values():  # str: the client decodes responses
        try:
            order = Order.model_validate_json(raw)
        except ValidationError:
            continue
        if order.customer_id == customer_id:
            orders.append(order)
    return sorted(orders, key=lambda order: order.placed_at, reverse=True)


def encode_profile(document: Mapping[str, object]) -> dict[str, str]:
    """Profile fields as Redis hash values: strings as they are, everything else as JSON."""
    return {
        str(name): value if isinstance(value, str) else json.dumps(value)
        for name, value in document.items()
        if value is not None
    }
