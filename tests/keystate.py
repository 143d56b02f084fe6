"""Logical key snapshots: key -> (type, content), stable across reads.

`redisbed.dump_keys` compares DUMP payloads, but DUMP of a hashtable-encoded hash or set serializes in dict
order, which incremental rehashing (triggered by plain reads such as HGET) may change: two DUMPs of an
unchanged hash can differ. These helpers read each key by type instead, so equal snapshots mean equal data.
"""

from __future__ import annotations

from typing import Any

from redisbed import AsyncClient, SyncClient

__all__ = ["astate", "state"]


def _content(kind: bytes, value: Any) -> Any:
    if kind in (b"hash",):
        return tuple(sorted(value.items()))
    if kind == b"set":
        return tuple(sorted(value))
    return value if not isinstance(value, list) else tuple(_freeze(v) for v in value)


def _freeze(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _read_sync(client: SyncClient, key: bytes, kind: bytes) -> Any:
    if kind == b"string":
        return client.get(key)
    if kind == b"hash":
        return client.hgetall(key)
    if kind == b"set":
        return client.smembers(key)
    if kind == b"zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"stream":
        return client.xrange(key)
    return None


async def _read_async(client: AsyncClient, key: bytes, kind: bytes) -> Any:
    if kind == b"string":
        return await client.get(key)
    if kind == b"hash":
        return await client.hgetall(key)
    if kind == b"set":
        return await client.smembers(key)
    if kind == b"zset":
        return await client.zrange(key, 0, -1, withscores=True)
    if kind == b"list":
        return await client.lrange(key, 0, -1)
    if kind == b"stream":
        return await client.xrange(key)
    return None


def _kind(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()


def state(client: SyncClient, pattern: str) -> dict[bytes, tuple[bytes, Any]]:
    out: dict[bytes, tuple[bytes, Any]] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        kind = _kind(client.type(key))
        if kind != b"none":
            out[bytes(key)] = (kind, _content(kind, _read_sync(client, key, kind)))
    return dict(sorted(out.items()))


async def astate(client: AsyncClient, pattern: str) -> dict[bytes, tuple[bytes, Any]]:
    out: dict[bytes, tuple[bytes, Any]] = {}
    async for key in client.scan_iter(match=pattern, count=1000):
        kind = _kind(await client.type(key))
        if kind != b"none":
            out[bytes(key)] = (kind, _content(kind, await _read_async(client, key, kind)))
    return dict(sorted(out.items()))
