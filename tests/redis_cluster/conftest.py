"""A Redis Cluster (three primaries, a replica each) for the session, emptied for every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from devstack.redis_cluster import EmbeddedRedisCluster


@pytest.fixture(scope="session")
async def redis_cluster() -> AsyncIterator[EmbeddedRedisCluster]:
    """The session's cluster; a test that kills a node starts a cluster of its own instead."""
    async with EmbeddedRedisCluster() as cluster:
        yield cluster


@pytest.fixture
async def cluster_url(redis_cluster: EmbeddedRedisCluster) -> str:
    """The REDIS_URL of the session's cluster (one node), emptied: a cluster has one database."""
    async with RedisCluster.from_url(redis_cluster.url) as client:
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    return redis_cluster.url
