"""Test-bed helpers shared by the suite: backend handles and key snapshots.

Import from tests as ``from redisbed import Backend, dump_keys`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

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


def _stable(kind: Any, dumped: bytes, read: Any) -> bytes:
    """DUMP of a hashtable-encoded hash or set follows its dict order, which incremental rehashing (advanced by
    plain reads such as HGET) may change; compare those by sorted contents instead."""
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "hash":
        return b"hash:" + repr(sorted(read("hash").items())).encode()
    if kind == "set":
        return b"set:" + repr(sorted(read("set"))).encode()
    if kind == "zset":
        return b"zset:" + repr(read("zset")).encode()
    return dumped


def dump_keys(client: SyncClient, pattern: str) -> dict[bytes, bytes]:
    """A snapshot of every key matching ``pattern``, found with SCAN (on every primary of a cluster).

    Compare two snapshots to assert that an operation changed nothing. Strings, lists and streams are compared
    by DUMP (type, encoding and value; not the TTL); hashes, sets and sorted sets by their sorted contents.
    A key deleted between SCAN and DUMP is left out.
    """
    snapshot: dict[bytes, bytes] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        value = client.dump(key)
        if value is None:
            continue

        def read(kind: str, key: Any = key) -> Any:
            if kind == "hash":
                return client.hgetall(key)
            if kind == "set":
                return client.smembers(key)
            return client.zrange(key, 0, -1, withscores=True)

        snapshot[bytes(key)] = _stable(client.type(key), bytes(value), read)
    return dict(sorted(snapshot.items()))


async def adump_keys(client: AsyncClient, pattern: str) -> dict[bytes, bytes]:
    """`dump_keys` for async clients."""
    snapshot: dict[bytes, bytes] = {}
    async for key in client.scan_iter(match=pattern, count=1000):
        value = await client.dump(key)
        if value is None:
            continue
        kind = await client.type(key)
        contents: dict[str, Any] = {
            "hash": await client.hgetall(key) if kind in (b"hash", "hash") else None,
            "set": await client.smembers(key) if kind in (b"set", "set") else None,
            "zset": await client.zrange(key, 0, -1, withscores=True) if kind in (b"zset", "zset") else None,
        }
        snapshot[bytes(key)] = _stable(kind, bytes(value), contents.__getitem__)
    return dict(sorted(snapshot.items()))
