"""Redis clients for one server or a Redis Cluster: bounded pools, socket timeouts, short retries."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError

RedisClient = Redis | RedisCluster
"""What `connect` returns; every command the project sends works on both."""
AnyPipeline = Pipeline | ClusterPipeline
"""What `RedisClient.pipeline` returns."""

OPERATION_TIMEOUT_S = 2.0

# RedisClusterException (e.g. no node reachable, a slot not covered) is not a RedisError. A write
# on a pooled connection that the peer closed (a node killed) leaks the transport's own error:
# RuntimeError with uvloop, TypeError or AttributeError on CPython 3.12+ (redis-py#4287); the
# client drops that connection, so only this call fails. Only redis-py code runs in these calls.
FAILURES = (RedisError, RedisClusterException, TimeoutError, OSError, RuntimeError, TypeError, AttributeError)
"""What a Redis call raises when Redis, or the node holding a key, cannot answer."""


def connect(redis_url: str, max_connections: int, *, cluster: bool) -> RedisClient:
    """A client for `redis_url` (`rediss://` for TLS): one server, or with `cluster` a Redis
    Cluster that the URL names any node of.

    At most `max_connections` connections (per node on a cluster), socket timeouts, and a
    retry of two: a command waits seconds, not minutes, for a dead node.
    """
    options = {
        "socket_timeout": OPERATION_TIMEOUT_S,
        "socket_connect_timeout": OPERATION_TIMEOUT_S,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        "decode_responses": True,
    }
    if cluster:
        # The client follows MOVED and finds a promoted replica by itself. Without full
        # coverage the slots of a lost shard fail alone instead of every command.
        return RedisCluster.from_url(
            redis_url, max_connections=max_connections, require_full_coverage=False, **options
        )
    pool = BlockingConnectionPool.from_url(
        redis_url, max_connections=max_connections, timeout=OPERATION_TIMEOUT_S, **options
    )
    return Redis.from_pool(pool)


def connection_cap(client: RedisClient) -> int:
    """How many commands the client can have on the wire at once (to one node)."""
    if isinstance(client, RedisCluster):
        return int(client.connection_kwargs["max_connections"])
    return int(client.connection_pool.max_connections)


async def answers(client: RedisClient) -> bool:
    """True when Redis answers PING; on a cluster, every primary (a replica serves no command)."""
    if isinstance(client, RedisCluster):
        return bool(await client.ping(target_nodes=RedisCluster.PRIMARIES))
    return bool(await client.ping())
