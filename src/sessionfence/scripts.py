"""Loading lua/*.lua and running them by EVALSHA, for the async store and its sync twin.

Each operation is one file in the top-level ``lua/`` folder (shipped in the wheel as ``sessionfence/lua``);
the files in ``lua/lib/`` are a shared prelude prepended to every operation. A script missing from the server's
cache (restart, failover, SCRIPT FLUSH) is re-sent once with EVAL, which also caches it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .codec import error_from_reply
from .errors import BackendError, BackendUnavailable

__all__ = [
    "AsyncClient",
    "Script",
    "SyncClient",
    "async_client_from_url",
    "lua_dir",
    "run_async",
    "run_sync",
    "script",
    "sync_client_from_url",
]

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster


def async_client_from_url(url: str, *, cluster: bool = False) -> AsyncClient:
    """A standalone client, or a cluster client (every namespace lives in one slot, so scripts run unchanged)."""
    if cluster:
        return redis.asyncio.cluster.RedisCluster.from_url(url)
    return redis.asyncio.Redis.from_url(url)


def sync_client_from_url(url: str, *, cluster: bool = False) -> SyncClient:
    if cluster:
        return redis.cluster.RedisCluster.from_url(url)
    return redis.Redis.from_url(url)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: bytes
    sha: str


def lua_dir() -> Path:
    """The installed package data, else the repository's top-level lua/ (editable installs)."""
    packaged = Path(str(resources.files("sessionfence"))) / "lua"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "lua"


@cache
def _prelude() -> bytes:
    lib = lua_dir() / "lib"
    return b"".join(p.read_bytes() + b"\n" for p in sorted(lib.glob("*.lua")))


@cache
def script(name: str) -> Script:
    path = lua_dir() / f"{name}.lua"
    source = _prelude() + path.read_bytes()
    return Script(name, source, hashlib.sha1(source).hexdigest())


def _translate(exc: RedisError) -> BackendError | Exception:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return BackendUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ResponseError):
        mapped = error_from_reply(str(exc))
        if mapped is not None:
            return mapped
    return BackendError(f"{type(exc).__name__}: {exc}")


async def run_async(client: AsyncClient, name: str, keys: list[str], args: list[Any]) -> Any:
    s = script(name)
    try:
        try:
            return await cast(Any, client).evalsha(s.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await cast(Any, client).eval(s.source, len(keys), *keys, *args)
    except RedisError as exc:
        raise _translate(exc) from exc


def run_sync(client: SyncClient, name: str, keys: list[str], args: list[Any]) -> Any:
    s = script(name)
    try:
        try:
            return cast(Any, client).evalsha(s.sha, len(keys), *keys, *args)
        except NoScriptError:
            return cast(Any, client).eval(s.source, len(keys), *keys, *args)
    except RedisError as exc:
        raise _translate(exc) from exc
