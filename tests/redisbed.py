"""Test-bed helpers shared by the suite: backend handles and key snapshots.

Import from tests as ``from redisbed import Backend, dump_keys`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

__all__ = [
    "AsyncClient",
    "Backend",
    "BackendKind",
    "ClusterBed",
    "SyncClient",
    "adump_keys",
    "dump_keys",
]

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster
BackendKind = Literal["standalone", "cluster"]


@dataclass
class ClusterBed:
    """Where the cluster tier runs: a `LocalCluster` we started, or ``$SESSIONFENCE_CLUSTER_URL``."""

    url: str
    startup_nodes: list[tuple[str, int]]
    started_locally: bool


@dataclass
class Backend:
    """One Redis deployment under test; hands out raw clients (bytes replies) and closes them at teardown."""

    kind: BackendKind
    url: str
    _async_clients: list[AsyncClient] = field(default_factory=list, repr=False)
    _sync_clients: list[SyncClient] = field(default_factory=list, repr=False)

    @property
    def is_cluster(self) -> bool:
        return self.kind == "cluster"

    def async_client(self) -> AsyncClient:
        client: AsyncClient
        if self.is_cluster:
            client = redis.asyncio.cluster.RedisCluster.from_url(self.url, decode_responses=False)
        else:
            client = redis.asyncio.Redis.from_url(self.url, decode_responses=False)
        self._async_clients.append(client)
        return client

    def sync_client(self) -> SyncClient:
        client: SyncClient
        if self.is_cluster:
            client = redis.cluster.RedisCluster.from_url(self.url, decode_responses=False)
        else:
            client = redis.Redis.from_url(self.url, decode_responses=False)
        self._sync_clients.append(client)
        return client

    async def aclose(self) -> None:
        clients, self._async_clients = self._async_clients, []
        for client in clients:
            # A test may have used the client on another event loop (asyncio.run); closing is best effort.
            with contextlib.suppress(Exception):
                await client.aclose()
        self.close()

    def close(self) -> None:
        clients, self._sync_clients = self._sync_clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def dump_keys(client: SyncClient, pattern: str) -> dict[bytes, bytes]:
    """DUMP of every key matching ``pattern``, found with SCAN (on every primary of a cluster).

    Compare two snapshots to assert that an operation changed nothing. DUMP covers type, encoding and value
    (not the TTL). A key deleted between SCAN and DUMP is left out.
    """
    snapshot: dict[bytes, bytes] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        value = client.dump(key)
        if value is not None:
            snapshot[bytes(key)] = bytes(value)
    return dict(sorted(snapshot.items()))


async def adump_keys(client: AsyncClient, pattern: str) -> dict[bytes, bytes]:
    """`dump_keys` for async clients."""
    snapshot: dict[bytes, bytes] = {}
    async for key in client.scan_iter(match=pattern, count=1000):
        value = await client.dump(key)
        if value is not None:
            snapshot[bytes(key)] = bytes(value)
    return dict(sorted(snapshot.items()))
